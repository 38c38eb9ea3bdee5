//! The whole on-call pipeline, end to end, as an SRE adopting fediprobe runs it:
//! the agent (`fediprobe run`) probes the sandbox and pushes to VictoriaMetrics,
//! which also scrapes the agent's `/metrics`; vmalert evaluates the generated
//! rules and notifies a real Alertmanager configured with the shipped routing
//! and inhibition example (`deploy/monitoring/alertmanager/alertmanager.yaml`),
//! whose receivers are webhooks on loopback. Then the instance goes down (its
//! proxy answers 502 to everything, as when Mastodon's web processes are gone)
//! and comes back.
//!
//! Time runs sixty times faster than in production: the rules are generated with
//! a time divisor of 60 (a 1h window is queried over 1m, groups run every 1-2 s),
//! the journeys run every second or two, and the backends' lookback is scaled
//! alike (5 s for 5 minutes). Record names, labels, burn factors and
//! expressions are the production ones. Every wait is bounded; nothing asserts a
//! duration.
//!
//! What it asserts: one page (one Alertmanager group at the pager) for the whole
//! outage, with the per-journey alerts inhibited while the instance page fires;
//! the page resolves after recovery; no absent-data alert at start (or ever,
//! since nothing stops reporting); no delay alert for runs that never posted;
//! the Overview SLO table has every row at any moment; every dashboard query
//! returns a series once data exists.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::post;
use fediprobe::generate::{self, Format, dashboards};
use fediprobe::sandbox::{Fault, InstanceConfig, Limit, RateLimits, Sandbox, SandboxConfig};
use serde_json::Value;
use support::tools;
use support::victoria::{VictoriaMetrics, free_port};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_fediprobe");
/// Production time ÷ test time.
const TIME_DIVISOR: u32 = 60;
/// The backends' lookback for instant queries: production's 5 minutes, scaled.
const LOOKBACK: &str = "5s";

const INSTANCE_PAGE: &str = "FediprobeInstanceUnavailable";

/// Notifications Alertmanager sent, per receiver path (`pager`, `tickets`).
type Inbox = Arc<Mutex<Vec<(String, Value)>>>;

async fn start_webhooks() -> (u16, Inbox) {
    let inbox: Inbox = Arc::default();
    let app = Router::new()
        .route(
            "/{receiver}",
            post(|State(inbox): State<Inbox>, UrlPath(receiver): UrlPath<String>, body: String| async move {
                if let Ok(json) = serde_json::from_str::<Value>(&body) {
                    inbox.lock().unwrap().push((receiver, json));
                }
                "ok"
            }),
        )
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, inbox)
}

/// A child process killed when the test ends, however it ends.
fn spawn(program: &Path, args: &[String]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()))
}

/// The shipped Alertmanager example, its receivers pointed at the loopback
/// webhooks and its waits scaled like the rest of the test.
fn alertmanager_config(webhooks: u16) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring/alertmanager/alertmanager.yaml"),
    )
    .unwrap();
    let mut out = text.clone();
    for (from, to) in [
        ("http://pager.invalid/fediprobe", format!("http://127.0.0.1:{webhooks}/pager")),
        ("http://tickets.invalid/fediprobe", format!("http://127.0.0.1:{webhooks}/tickets")),
        ("group_wait: 30s", "group_wait: 1s".to_owned()),
        ("group_interval: 5m", "group_interval: 5s".to_owned()),
    ] {
        assert!(out.contains(from), "the Alertmanager example no longer has `{from}`");
        out = out.replace(from, &to);
    }
    out
}

/// A bundled journey's file with its schedule replaced.
fn journey(name: &str, schedule: &str) -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("journeys/{name}.yaml"))).unwrap();
    let line = text.lines().find(|l| l.starts_with("schedule:")).expect("a schedule line");
    text.replace(line, &format!("schedule: '{schedule}'"))
}

fn generous() -> RateLimits {
    let plenty = Limit::new(1_000_000, Duration::from_secs(60));
    RateLimits { api: plenty, unauthenticated_api: plenty, statuses: plenty, deletes: plenty, media: plenty }
}

/// An instant query's result at `time` (unix seconds), with the scaled lookback.
fn query(vm: &VictoriaMetrics, expr: &str, time: f64) -> Vec<Value> {
    query_with(vm, expr, time, LOOKBACK)
}

/// An instant query with the lookback `step` (VictoriaMetrics's instant-query lookback).
fn query_with(vm: &VictoriaMetrics, expr: &str, time: f64, step: &str) -> Vec<Value> {
    let params: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("query", expr)
        .append_pair("time", &format!("{time:.3}"))
        .append_pair("step", step)
        .finish();
    let (status, body) = vm.get(&format!("/api/v1/query?{params}")).expect("query answers");
    assert_eq!(status, 200, "query {expr}: {body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    json["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Waits (bounded by `limit`) until `done` holds, checking twice a second.
async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {limit:?}\n{}", context());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The alert names of a notification, with their status.
fn alerts_of(notification: &Value) -> Vec<(String, String)> {
    notification["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (a["labels"]["alertname"].as_str().unwrap_or("").to_owned(), a["status"].as_str().unwrap_or("").to_owned())
        })
        .collect()
}

/// Grafana's variables replaced by values a query may take.
fn substitute(expr: &str) -> String {
    let mut out = expr.to_owned();
    for (var, value) in [
        ("$__rate_interval", "30s"),
        ("$__interval", "5s"),
        ("$__range", "10m"),
        ("$span", "1m"),
        ("$region", ".*"),
        ("$journey", ".*"),
        ("$instance", ".*"),
    ] {
        out = out.replace(var, value);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_instance_outage_pages_once_and_resolves() {
    fediprobe::install_crypto_provider();
    let (vmalert_bin, alertmanager_bin) = (tools::vmalert(), tools::alertmanager());
    let dir = tempfile::tempdir().unwrap();

    // The instances, with rate limits a probe run every second never reaches.
    let sandbox = Sandbox::start(SandboxConfig {
        instances: ["alpha", "beta"].map(|n| InstanceConfig { limits: generous(), ..InstanceConfig::new(n) }).into(),
    })
    .await
    .unwrap();
    let (alpha, beta) = (sandbox.instance("alpha").unwrap(), sandbox.instance("beta").unwrap());

    // The agent's config and journeys: five journeys on `main`, one of them
    // federating to `peer` and one notified from it (every dashboard series exists).
    let agent_port = free_port();
    std::fs::create_dir(dir.path().join("journeys")).unwrap();
    for (name, schedule) in [
        ("home-timeline", "* * * * * *"),
        ("instance-health", "* * * * * *"),
        ("verify-credentials", "* * * * * *"),
        ("federation-main-to-peer", "*/2 * * * * *"),
        ("notification-delay", "*/2 * * * * *"),
    ] {
        std::fs::write(dir.path().join(format!("journeys/{name}.yaml")), journey(name, schedule)).unwrap();
    }
    std::fs::write(dir.path().join("main.token"), alpha.account("probe").unwrap().token.expose()).unwrap();
    std::fs::write(dir.path().join("peer.token"), beta.account("probe").unwrap().token.expose()).unwrap();
    let vm_port = free_port();
    let limits = "rate_limits: { api_calls: 1000000, account_api_calls: 1000000, unauthenticated_api_calls: 1000000, \
         statuses: 1000000, deletes: 1000000, media: 1000000 }";
    let config = format!(
        "probe: {{ region: test }}\n\
         instances:\n  main: {{ url: {}, account: probe, token: {{ file: main.token }}, {limits} }}\n  \
         peer: {{ url: {}, account: probe, token: {{ file: peer.token }}, {limits} }}\n\
         journeys: [journeys]\n\
         agent: {{ listen: 127.0.0.1:{agent_port}, spread: 0s, push_interval: 1s, shutdown_grace: 5s, reload_check: 0s }}\n\
         remote_write: {{ url: http://127.0.0.1:{vm_port}/api/v1/write, flush_timeout: 5s }}\n\
         rules: {{ regions: [test], page_quorum: 1 }}\n",
        alpha.base_url, beta.base_url
    );
    let config_path = dir.path().join("fediprobe.yaml");
    std::fs::write(&config_path, config).unwrap();
    let loaded = fediprobe::spec::load_config(&config_path).unwrap_or_else(|d| panic!("{d}"));

    // VictoriaMetrics, scraping the agent's /metrics as the PodMonitor would
    // (with the pod's region and name).
    let scrape = dir.path().join("scrape.yaml");
    std::fs::write(
        &scrape,
        format!(
            "scrape_configs:\n  - job_name: fediprobe-agent\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{agent_port}']\n        labels: {{ region: test, pod: fediprobe-agent }}\n"
        ),
    )
    .unwrap();
    let vm = VictoriaMetrics::start_with(
        vm_port,
        &["-search.disableCache", &format!("-promscrape.config={}", scrape.display())],
    );

    // Alertmanager with the shipped example, and its webhooks.
    let (webhooks, inbox) = start_webhooks().await;
    let am_config = dir.path().join("alertmanager.yaml");
    std::fs::write(&am_config, alertmanager_config(webhooks)).unwrap();
    let am_port = free_port();
    let _alertmanager = spawn(
        &alertmanager_bin,
        &[
            format!("--config.file={}", am_config.display()),
            format!("--storage.path={}", dir.path().join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            // No clustering: it would listen on every interface.
            "--cluster.listen-address=".to_owned(),
        ],
    );

    // vmalert with the rules of these journeys, sixty times faster.
    let rules = generate::rules::generate_scaled(&loaded.config.rules, &loaded.journeys, TIME_DIVISOR);
    let rule_file = dir.path().join("rules.yaml");
    std::fs::write(&rule_file, generate::render(&rules, Format::Rules)).unwrap();
    let vm_url = vm.base_url();
    let _vmalert = spawn(
        &vmalert_bin,
        &[
            format!("-rule={}", rule_file.display()),
            format!("-datasource.url={vm_url}"),
            format!("-remoteWrite.url={vm_url}"),
            format!("-remoteRead.url={vm_url}"),
            format!("-notifier.url=http://127.0.0.1:{am_port}"),
            format!("-httpListenAddr=127.0.0.1:{}", free_port()),
            "-evaluationInterval=1s".to_owned(),
            format!("-datasource.queryStep={LOOKBACK}"),
            "-remoteWrite.flushInterval=200ms".to_owned(),
            "-loggerLevel=ERROR".to_owned(),
        ],
    );

    let mut agent = Command::new(BIN)
        .args(["run", "-c", config_path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let started = now();

    // Healthy: wait until every journey's objectives and SLO-window ratios are
    // recorded, then read the Overview's SLO table at moments spread over a
    // dozen seconds: every row, every time.
    let naming = fediprobe::generate::naming::Naming::from_rules(&loaded.config.rules);
    let overview = dashboards::overview::dashboard(&naming, &loaded.journeys);
    let overview_json = serde_json::to_value(&overview).unwrap();
    // A row per journey and SLI in the SLO table, per journey with an APDEX
    // objective in the APDEX table.
    let slo_rows: usize = loaded.journeys.iter().map(|j| fediprobe::generate::slo::indicators(j).len()).sum();
    let apdex_rows = loaded.journeys.iter().filter(|j| j.slo.apdex.is_some()).count();
    let table_exprs: Vec<(String, usize)> = overview_json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "table")
        .flat_map(|p| {
            let rows = if p["title"] == "APDEX per journey" { apdex_rows } else { slo_rows };
            p["targets"].as_array().cloned().unwrap_or_default().into_iter().map(move |t| (t, rows))
        })
        .map(|(t, rows)| (substitute(t["expr"].as_str().unwrap()), rows))
        .collect();
    assert!(table_exprs.len() >= 3, "the Overview has its SLO table: {table_exprs:?}");
    wait_until(
        "every SLO table row recorded",
        Duration::from_secs(60),
        || {
            vm.force_flush();
            table_exprs.iter().all(|(e, rows)| query(&vm, e, now()).len() == *rows)
        },
        || format!("{:?}", table_exprs.iter().map(|(e, _)| (e, query(&vm, e, now()).len())).collect::<Vec<_>>()),
    )
    .await;
    for i in 0..24 {
        tokio::time::sleep(Duration::from_millis(500 + (i * 37) % 300)).await;
        let t = now();
        for (expr, rows) in &table_exprs {
            let got = query(&vm, expr, t).len();
            assert_eq!(got, *rows, "at {t}, the table query returned {got} of {rows} rows:\n{expr}");
        }
    }
    assert!(agent.try_wait().unwrap().is_none(), "the agent is still running");

    // Every dashboard query returns a series now that data exists (the status
    // panels fall back to 0 without alerts); those about failures have data
    // once something fails, and are asked again during the outage.
    let empty_now = || {
        vm.force_flush();
        let mut empty = Vec::new();
        for file in dashboards::generate(&loaded.config.rules, &loaded.journeys) {
            let json = serde_json::to_value(&file.dashboard).unwrap();
            for panel in json["panels"].as_array().unwrap() {
                for target in panel["targets"].as_array().into_iter().flatten() {
                    let expr = substitute(target["expr"].as_str().unwrap());
                    // Grafana's own lookback: some panels' subqueries step by a
                    // real minute, which the scaled lookback cannot bridge.
                    if query_with(&vm, &expr, now(), "5m").is_empty() {
                        empty.push((format!("{} / {}", file.file_name, panel["title"]), expr));
                    }
                }
            }
        }
        empty
    };
    let (about_failures, empty): (Vec<_>, Vec<_>) =
        empty_now().into_iter().partition(|(_, expr)| expr.contains("outcome!=\"success\""));
    // A Mastodon observability stack's own series, drawn beside the probes'
    // when the backend has them: this one has not, and they draw nothing.
    let server_side = [dashboards::apdex::SERVER_AVAILABILITY, dashboards::apdex::SERVER_APDEX];
    let (absent_stack, empty): (Vec<_>, Vec<_>) =
        empty.into_iter().partition(|(_, expr)| server_side.iter().any(|s| expr.contains(s)));
    assert_eq!(absent_stack.len(), server_side.len(), "each server-side query is asked, and finds nothing");
    assert!(empty.is_empty(), "dashboard queries without a series while data exists:\n{empty:#?}");
    assert!(inbox.lock().unwrap().is_empty(), "nothing was notified while healthy: {:?}", inbox.lock().unwrap());

    // The outage: every request to `main` gets the proxy's 502.
    let outage_at = now() - started;
    alpha.faults().inject(None, "/", Fault::Status(502));
    let pager_has = |name: &str, status: &str| {
        inbox
            .lock()
            .unwrap()
            .iter()
            .any(|(r, n)| r == "pager" && alerts_of(n).iter().any(|(a, s)| a == name && s == status))
    };
    let show = || format!("{:#?}", inbox.lock().unwrap());
    wait_until("the instance page", Duration::from_secs(60), || pager_has(INSTANCE_PAGE, "firing"), show).await;

    // Some minutes of outage (scaled), then recovery.
    tokio::time::sleep(Duration::from_secs(20)).await;
    alpha.faults().clear();
    wait_until(
        "the page resolved",
        Duration::from_secs(120),
        || {
            inbox
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|(r, _)| r == "pager")
                .is_some_and(|(_, n)| n["status"] == "resolved")
        },
        show,
    )
    .await;
    assert!(agent.try_wait().unwrap().is_none(), "the agent is still running");
    // The failure panels have data now that runs failed (their subqueries step
    // by whole minutes, so a failure shows from the next minute on).
    wait_until(
        "failure panels with a series",
        Duration::from_secs(75),
        || !empty_now().iter().any(|q| about_failures.contains(q)),
        || format!("{:#?}", empty_now().into_iter().filter(|q| about_failures.contains(q)).collect::<Vec<_>>()),
    )
    .await;

    let notifications = inbox.lock().unwrap().clone();
    let pages: Vec<&Value> = notifications.iter().filter(|(r, _)| r == "pager").map(|(_, n)| n).collect();
    let groups: BTreeSet<&str> = pages.iter().map(|n| n["groupKey"].as_str().unwrap()).collect();
    assert_eq!(groups.len(), 1, "one page (one group at the pager) for one outage: {pages:#?}");
    for page in &pages {
        let alerts = alerts_of(page);
        if alerts.iter().any(|(a, s)| a == INSTANCE_PAGE && s == "firing") {
            let others: Vec<_> = alerts.iter().filter(|(a, s)| a != INSTANCE_PAGE && s == "firing").collect();
            assert!(others.is_empty(), "the instance page inhibits the per-journey alerts, yet: {others:?}");
        }
        assert_eq!(page["commonLabels"]["instance"], "main", "{page:#}");
    }

    // What vmalert itself fired, from its ALERTS series: never an absent-data
    // alert (not at start, and nothing stopped reporting), never a delay alert
    // (the federation runs failed at their post: no post, no delay verdict).
    vm.force_flush();
    let fired: BTreeMap<String, f64> =
        query_with(&vm, "count by (alertname) (count_over_time(ALERTS[15m]))", now(), "5m")
            .into_iter()
            .map(|s| {
                let name = s["metric"]["alertname"].as_str().unwrap_or_default().to_owned();
                (name, s["value"][1].as_str().unwrap_or("0").parse().unwrap_or(0.0))
            })
            .collect();
    assert!(fired.contains_key(INSTANCE_PAGE), "{fired:?}");
    let when = |alert: &str| {
        query_with(
            &vm,
            &format!("max_over_time(timestamp(ALERTS{{alertname=\"{alert}\"}})[15m:1s]) - {started}"),
            now(),
            "5m",
        )
    };
    assert!(
        !fired.contains_key("FediprobeJourneyAbsent"),
        "an absent-data alert fired: {fired:?}, last at (s after start, outage at {outage_at}): {:#?}",
        when("FediprobeJourneyAbsent")
    );
    assert!(
        !fired.keys().any(|a| a.starts_with("FediprobeFederationDelay")),
        "a delay alert fired for runs that never posted: {fired:?}"
    );
    sandbox.shutdown().await;
}

/// The routing and inhibition example is valid, and routes what the rules emit
/// where it says: pages to the pager, tickets to the ticket queue.
#[test]
fn the_alertmanager_example_checks_and_routes_pages_and_tickets() {
    let amtool = tools::amtool();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring/alertmanager/alertmanager.yaml");
    let config = format!("--config.file={}", file.display());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    tools::assert_success(
        "amtool check-config",
        &tools::run(&amtool, &["check-config", &file.to_string_lossy()], root),
    );
    for (labels, receiver) in [
        (&["alertname=FediprobeInstanceUnavailable", "severity=page", "instance=main"][..], "fediprobe-pager"),
        (
            &["alertname=FediprobeAvailabilityFastBurn", "severity=page", "instance=main", "journey=j"],
            "fediprobe-pager",
        ),
        (&["alertname=FediprobeJourneyAbsent", "severity=ticket", "instance=main", "journey=j"], "fediprobe-tickets"),
    ] {
        let mut args = vec!["config", "routes", "test", config.as_str()];
        args.extend(labels);
        let output = tools::run(&amtool, &args, root);
        tools::assert_success("amtool config routes test", &output);
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), receiver, "{labels:?}");
    }
    // Every alert the rules can emit is routed by severity: the example names them all.
    let rules =
        generate::generate(&support::rules::load_deploy().config.rules, &support::rules::load_deploy().journeys);
    for alert in rules.alerts() {
        assert!(alert.alert.starts_with("Fediprobe"), "{} is outside the example's matchers", alert.alert);
        assert!(["page", "ticket"].contains(&alert.labels["severity"].as_str()));
    }
}
