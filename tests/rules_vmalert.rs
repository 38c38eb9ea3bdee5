//! The generated rules, loaded by a real `vmalert` against a real
//! VictoriaMetrics backfilled with probe samples, fire the page they should and
//! deliver it to a notifier (a local server standing in for Alertmanager).
//!
//! The rules are those of the bundled home-timeline journey from
//! `deploy/fediprobe.yaml`, with the groups' intervals shortened to one second
//! so that the test takes seconds; the expressions are unchanged.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use fediprobe::generate::{self, Format};
use serde_json::Value;
use support::rules::deploy_rules;
use support::tools;
use support::victoria::{VictoriaMetrics, free_port};

const REGIONS: [&str; 3] = ["ap-southeast", "eu-west", "us-east"];

/// A running vmalert, killed when dropped.
struct Vmalert {
    child: Child,
    port: u16,
}

impl Drop for Vmalert {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Alerts as vmalert posted them to the notifier (`/api/v2/alerts` bodies).
type Received = Arc<Mutex<Vec<Value>>>;

async fn start_notifier() -> (u16, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/api/v2/alerts",
            post(|State(r): State<Received>, body: String| async move {
                if let Ok(Value::Array(alerts)) = serde_json::from_str(&body) {
                    r.lock().unwrap().extend(alerts);
                }
                "ok"
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, received)
}

/// Two hours of good runs, then every run failing for the last hour, from
/// every region: a fast burn that must page.
fn fast_burn_samples(now_ms: i64) -> String {
    let mut text = String::new();
    for region in REGIONS {
        let labels = format!("journey=\"home-timeline\",instance=\"main\",region=\"{region}\",account=\"fediprobe\"");
        for minutes_ago in (0..180).rev() {
            let t = now_ms - minutes_ago * 60_000 - 5_000;
            let ok = u8::from(minutes_ago >= 60);
            text.push_str(&format!("fediprobe_journey_success{{{labels}}} {ok} {t}\n"));
            text.push_str(&format!("fediprobe_journey_latency_ok{{{labels}}} {ok} {t}\n"));
            let outcome = if ok == 1 { "outcome=\"success\"" } else { "outcome=\"failure\",reason=\"http_status\"" };
            text.push_str(&format!("fediprobe_journey_outcome{{{labels},{outcome}}} 1 {t}\n"));
        }
    }
    text
}

fn is_page(alert: &Value) -> bool {
    let labels = &alert["labels"];
    labels["alertname"] == "FediprobeAvailabilityFastBurn"
        && labels["severity"] == "page"
        && labels["journey"] == "home-timeline"
        && labels["window"] == "1h"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmalert_pages_on_a_backfilled_fast_burn() {
    let vmalert_bin = tools::vmalert();
    let vm = VictoriaMetrics::start_with(free_port(), &["-search.disableCache"]);
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    vm.import_prometheus(&fast_burn_samples(now_ms));

    let mut rules = deploy_rules(&["home-timeline"]);
    for group in &mut rules.groups {
        group.interval = "1s".to_owned();
    }
    let dir = tempfile::tempdir().unwrap();
    let rule_file = dir.path().join("rules.yaml");
    std::fs::write(&rule_file, generate::render(&rules, Format::Rules)).unwrap();

    let (notifier_port, received) = start_notifier().await;
    let port = free_port();
    let child = Command::new(&vmalert_bin)
        .arg(format!("-rule={}", rule_file.display()))
        .arg(format!("-datasource.url={}", vm.base_url()))
        .arg(format!("-remoteWrite.url={}", vm.base_url()))
        .arg(format!("-remoteRead.url={}", vm.base_url()))
        .arg(format!("-notifier.url=http://127.0.0.1:{notifier_port}"))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-evaluationInterval=1s")
        .arg("-remoteWrite.flushInterval=200ms")
        .arg("-loggerLevel=ERROR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start vmalert: {e}"));
    let mut vmalert = Vmalert { child, port };

    // A bounded wait for the page to reach the notifier; the rules need two
    // evaluations (record the ratios, then alert on them).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if received.lock().unwrap().iter().any(is_page) {
            break;
        }
        if let Some(status) = vmalert.child.try_wait().unwrap() {
            panic!("vmalert exited with {status}");
        }
        if tokio::time::Instant::now() > deadline {
            let state = reqwest_free_get(vmalert.port, "/api/v1/alerts");
            panic!(
                "no FediprobeAvailabilityFastBurn page within 30 s\nnotifier got: {:?}\nvmalert alerts: {state}",
                received.lock().unwrap()
            );
        }
        // VictoriaMetrics makes freshly written samples searchable every few
        // seconds; flushing makes vmalert's recorded ratios visible at once.
        vm.force_flush();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let alerts = received.lock().unwrap().clone();
    let page = alerts.iter().find(|a| is_page(a)).unwrap();
    assert_eq!(page["labels"]["sli"], "availability");
    assert_eq!(page["annotations"]["runbook_url"], "runbooks/availability-fast-burn.md");
    let summary = page["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(
            "home-timeline: 100% of runs failed over the last 1h (objective: 99.5% of runs succeed over 30d)"
        ),
        "{summary}"
    );
    // One region alone would not page; here all three fail, so no region-only ticket either.
    assert!(!alerts.iter().any(|a| a["labels"]["alertname"] == "FediprobeRegionOnlyBurn"), "{alerts:?}");
}

/// vmalert's own API, read with a plain HTTP/1.0 GET for the failure message.
fn reqwest_free_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return "(vmalert not answering)".into();
    };
    let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}
