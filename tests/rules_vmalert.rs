//! The generated rules, loaded by a real `vmalert` against a real
//! VictoriaMetrics backfilled with probe samples, fire the page they should and
//! deliver it to a notifier (a local server standing in for Alertmanager).
//!
//! The rules are those of the bundled home-timeline journey from
//! `deploy/fediprobe.yaml`, with the groups' intervals shortened to one second
//! so that the test takes seconds; the expressions are unchanged.
//!
//! Alerts that must hold for a while (`for: 15m`) cannot fire in a test that
//! lasts seconds, so they are tested with vmalert's replay mode instead: vmalert
//! evaluates the rules over an hour of backfilled history, minute by minute, and
//! writes the `ALERTS` series it would have produced, `for:` included.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use fediprobe::generate::{self, Format, Rule, RuleFile, RuleGroup};
use serde_json::Value;
use support::rules::deploy_rules;
use support::tools;
use support::victoria::{VictoriaMetrics, free_port};
use support::vmalert::replay;

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

    // A wait for the page to reach the notifier, bounded only to catch a hang;
    // the rules need two evaluations (record the ratios, then alert on them).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
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
                "no FediprobeAvailabilityFastBurn page within 60 s\nnotifier got: {:?}\nvmalert alerts: {state}",
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
    // Whether a burn seen everywhere also raises the region-only ticket cannot be
    // seen here: that ticket waits 15 minutes (`for: 15m`) and this run lasts
    // seconds. `vmalert_replay_tickets_a_lone_region_and_never_a_quorum` below
    // replays an hour of history for it.
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

/// Instances of the replayed history: on `lonely` only eu-west fails, on
/// `everywhere` every region fails. The rules group by instance, so both
/// stories play out in one replay without touching each other.
const LONELY: &str = "lonely";
const EVERYWHERE: &str = "everywhere";

/// Minutes of good runs before the trouble, and minutes of trouble.
const GOOD_MINUTES: i64 = 120;
const BAD_MINUTES: i64 = 60;

/// One run a minute (5 s past it) from every region of both instances: good for
/// `GOOD_MINUTES`, then failing on `lonely` from eu-west only and on
/// `everywhere` from every region, for `BAD_MINUTES`.
fn region_story_samples(start_s: i64) -> String {
    let mut text = String::new();
    for instance in [LONELY, EVERYWHERE] {
        for region in REGIONS {
            let labels =
                format!("journey=\"home-timeline\",instance=\"{instance}\",region=\"{region}\",account=\"fediprobe\"");
            for minute in 0..GOOD_MINUTES + BAD_MINUTES {
                let failing = minute >= GOOD_MINUTES && (instance == EVERYWHERE || region == "eu-west");
                let t = (start_s + minute * 60 + 5) * 1000;
                text.push_str(&format!("fediprobe_journey_success{{{labels}}} {} {t}\n", u8::from(!failing)));
            }
        }
    }
    text
}

/// The generated home-timeline rules that the fast-burn page and the
/// region-only ticket over 1h need: the journey's availability objective (as
/// recorded for each of the two instances of the story), the per-region 5m and
/// 1h error ratios (one file) and the two alerts (a second file), unchanged.
fn page_and_region_only_rules() -> (RuleFile, RuleFile) {
    let rules = deploy_rules(&["home-timeline"]);
    let group = |name: &str| rules.groups.iter().find(|g| g.name == name).unwrap_or_else(|| panic!("no {name} group"));
    let availability = |labels: &std::collections::BTreeMap<String, String>| {
        labels.get("sli").map(String::as_str) == Some("availability")
    };
    let mut records = Vec::new();
    for rule in &group("fediprobe-objectives").rules {
        if let Rule::Record(r) = rule
            && r.record == "journey:fediprobe_slo_objective:ratio"
            && availability(&r.labels)
        {
            for instance in [LONELY, EVERYWHERE] {
                let mut r = r.clone();
                r.labels.insert("instance".into(), instance.into());
                records.push(Rule::Record(r));
            }
        }
    }
    records.extend(
        group("fediprobe-sli")
            .rules
            .iter()
            .filter(|rule| match rule {
                Rule::Record(r) => {
                    availability(&r.labels)
                        && [
                            "journey_region:fediprobe_slo_errors:ratio_5m",
                            "journey_region:fediprobe_slo_errors:ratio_1h",
                        ]
                        .contains(&r.record.as_str())
                }
                Rule::Alert(_) => false,
            })
            .cloned(),
    );
    let alerts: Vec<Rule> = group("fediprobe-alerts")
        .rules
        .iter()
        .filter(|rule| match rule {
            Rule::Alert(a) => {
                availability(&a.labels)
                    && a.labels.get("window").map(String::as_str) == Some("1h")
                    && ["FediprobeAvailabilityFastBurn", "FediprobeRegionOnlyBurn"].contains(&a.alert.as_str())
            }
            Rule::Record(_) => false,
        })
        .cloned()
        .collect();
    assert_eq!((records.len(), alerts.len()), (4, 2), "the generated rules changed shape:\n{rules:#?}");
    // vmalert's replay mode cannot run the `query` template function the
    // summaries use to state each journey's objective (live vmalert and
    // Prometheus can: see the live test above). This replay is about when
    // alerts fire, so it runs the alerts without their text.
    let alerts = alerts
        .into_iter()
        .map(|rule| match rule {
            Rule::Alert(mut a) => {
                a.annotations.clear();
                Rule::Alert(a)
            }
            other => other,
        })
        .collect();
    let interval = group("fediprobe-alerts").interval.clone();
    let file = |name: &str, rules: Vec<Rule>| RuleFile {
        groups: vec![RuleGroup { name: name.to_owned(), interval: interval.clone(), rules }],
    };
    (file("records", records), file("alerts", alerts))
}

/// The minutes (as offsets from `start_s`) at which the `ALERTS` series of
/// `alertname` in `state` has a sample, per (instance, region) — region empty
/// for alerts without one.
fn alert_minutes(
    vm: &VictoriaMetrics,
    alertname: &str,
    state: &str,
    start_s: i64,
) -> std::collections::BTreeMap<(String, String), Vec<i64>> {
    vm.export("ALERTS")
        .into_iter()
        .filter(|(labels, _)| labels["alertname"] == alertname && labels["alertstate"] == state)
        .map(|(labels, samples)| {
            let key = (labels["instance"].clone(), labels.get("region").cloned().unwrap_or_default());
            (key, samples.iter().map(|(t, _)| (t / 1000 - start_s) / 60).collect())
        })
        .collect()
}

/// The quorum, over time: a burn seen from one region alone raises the
/// region-only ticket once it has lasted 15 minutes (`for: 15m`), and never a
/// page; a burn seen from every region pages and never raises the region-only
/// ticket, not even after the same 15 minutes — which a region-only rule that
/// ignored the quorum would.
#[test]
fn vmalert_replay_tickets_a_lone_region_and_never_a_quorum() {
    let vm = VictoriaMetrics::start_with(free_port(), &["-search.disableCache"]);
    // Whole minutes, as the rules' 1m group would evaluate them.
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 / 60 * 60;
    let start_s = now_s - (GOOD_MINUTES + BAD_MINUTES) * 60;
    vm.import_prometheus(&region_story_samples(start_s));
    let runs = (2 * REGIONS.len() as i64 * (GOOD_MINUTES + BAD_MINUTES)) as f64;
    vm.wait_for_value("sum(count_over_time(fediprobe_journey_success[4h]))", now_s, runs);

    // The ratios first, then the alerts on them: the alerts read what the first
    // replay recorded, once all of it is searchable (no race with vmalert's
    // writes, whatever the machine's speed).
    let (records, alerts) = page_and_region_only_rules();
    let dir = tempfile::tempdir().unwrap();
    let (from_s, to_s) = (start_s + (GOOD_MINUTES - 60) * 60, now_s);
    replay(&vm, &records, dir.path(), from_s, to_s);
    let evaluations = ((to_s - from_s) / 60 + 1) as f64;
    for ratio in ["ratio_5m", "ratio_1h"] {
        let query = format!("sum(count_over_time(journey_region:fediprobe_slo_errors:{ratio}[4h]))");
        vm.wait_for_value(&query, now_s, 2.0 * REGIONS.len() as f64 * evaluations);
    }
    replay(&vm, &alerts, dir.path(), from_s, to_s);
    vm.force_flush();

    // The 1h error ratio passes 14.4 × 0.5% = 7.2% with the fifth failed run.
    let burning_from = GOOD_MINUTES + 5;
    let last = GOOD_MINUTES + BAD_MINUTES;
    let minutes = |from: i64, to: i64| (from..=to).collect::<Vec<i64>>();
    let key = |instance: &str, region: &str| (instance.to_owned(), region.to_owned());

    let pages = alert_minutes(&vm, "FediprobeAvailabilityFastBurn", "firing", start_s);
    assert_eq!(
        pages,
        [(key(EVERYWHERE, ""), minutes(burning_from, last))].into(),
        "the page fires as soon as two regions burn, and only where they do"
    );
    let tickets = alert_minutes(&vm, "FediprobeRegionOnlyBurn", "firing", start_s);
    assert_eq!(
        tickets,
        [(key(LONELY, "eu-west"), minutes(burning_from + 15, last))].into(),
        "the region-only ticket fires for the lone region after 15 minutes, and never where the quorum pages"
    );
    let pending = alert_minutes(&vm, "FediprobeRegionOnlyBurn", "pending", start_s);
    assert_eq!(
        pending,
        [(key(LONELY, "eu-west"), minutes(burning_from, burning_from + 14))].into(),
        "where the quorum pages, the region-only ticket is not even pending"
    );
}
