//! `fediprobe run` as a Deployment runs it: journeys on every-second schedules
//! against the sandbox, samples into a real VictoriaMetrics, signals from outside.
//! No test depends on the machine's clock beyond a second or two of slack.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fediprobe::sandbox::{Fault, Sandbox, SandboxConfig};
use support::victoria::{VictoriaMetrics, free_port};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_fediprobe");

struct Agent {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// A journey file running `path` every second.
fn every_second(name: &str, path: &str) -> String {
    format!(
        "name: {name}\ninstance: main\nschedule: '* * * * * *'\nslo: {{ availability: 99% }}\nsteps:\n  - name: get\n    request: {{ path: {path} }}\n"
    )
}

fn config(
    sandbox: &Sandbox,
    dir: &Path,
    port: u16,
    vm: Option<&VictoriaMetrics>,
    grace: &str,
    reload_check: &str,
) -> PathBuf {
    let alpha = sandbox.instance("alpha").unwrap();
    std::fs::write(dir.join("main.token"), alpha.account("probe").unwrap().token.expose()).unwrap();
    let mut yaml = format!(
        "probe: {{ region: test }}\ninstances:\n  main: {{ url: {}, account: probe, token: {{ file: main.token }}, rate_limits: {{ api_calls: 100000, statuses: 100000, deletes: 100000 }} }}\njourneys: [journeys]\nagent: {{ listen: 127.0.0.1:{port}, spread: 0s, push_interval: 1s, shutdown_grace: {grace}, reload_check: {reload_check} }}\n",
        alpha.base_url
    );
    if let Some(vm) = vm {
        yaml.push_str(&format!("remote_write: {{ url: {}, flush_timeout: 5s }}\n", vm.write_url()));
    }
    let path = dir.join("fediprobe.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

impl Agent {
    async fn start(sandbox: &Sandbox, journeys: &[(&str, String)], vm: Option<&VictoriaMetrics>, grace: &str) -> Agent {
        Self::start_with(sandbox, journeys, vm, grace, "0s").await
    }

    /// Like `start`, looking at its files every `reload_check` (`0s`: never).
    async fn start_with(
        sandbox: &Sandbox,
        journeys: &[(&str, String)],
        vm: Option<&VictoriaMetrics>,
        grace: &str,
        reload_check: &str,
    ) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("journeys")).unwrap();
        for (file, text) in journeys {
            std::fs::write(dir.path().join("journeys").join(file), text).unwrap();
        }
        let port = free_port();
        let config = config(sandbox, dir.path(), port, vm, grace, reload_check);
        let child = Command::new(BIN)
            .args(["run", "-c", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut agent = Agent { child, port, dir };
        for _ in 0..200 {
            if agent.get("/healthz").await.is_some() {
                return agent;
            }
            if let Ok(Some(status)) = agent.child.try_wait() {
                let mut stderr = String::new();
                agent.child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
                panic!("the agent exited with {status}:\n{stderr}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the agent did not answer /healthz within 10 s");
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        fediprobe::install_crypto_provider();
        let response = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port)).await.ok()?;
        Some((response.status().as_u16(), response.text().await.ok()?))
    }

    /// The value of one line of `/metrics`, e.g. `fediprobe_config_reloads_total{}`.
    async fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics").await?;
        text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code and stderr.
    async fn stop(mut self) -> (Option<i32>, String) {
        self.signal("TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.expect("exits").unwrap();
        let mut stderr = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
        (status.code(), stderr)
    }
}

#[tokio::test]
async fn runs_match_the_schedule_without_overlap_and_land_in_victoria_metrics() {
    let vm = VictoriaMetrics::start();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let journeys =
        [("a.yaml", every_second("home", "/api/v1/timelines/home")), ("b.yaml", every_second("health", "/health"))];
    let agent = Agent::start(&sandbox, &journeys, Some(&vm), "5s").await;
    let started = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let (status, body) = agent.get("/healthz").await.unwrap();
    assert_eq!((status, body.trim()), (200, "ok"));
    assert_eq!(agent.get("/readyz").await.unwrap().0, 200);
    assert!(agent.metric("fediprobe_journeys{}").await == Some(2.0));
    let stopped = chrono::Utc::now().timestamp_millis();
    let (code, stderr) = agent.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("run finished"), "one log line per run: {stderr}");

    // Slots are whole seconds (spread 0s): one run per second between start and stop.
    let slots = (stopped / 1000 - started / 1000) as usize;
    let success = vm.export_at_least("fediprobe_journey_success", 2 * slots.saturating_sub(1));
    assert_eq!(success.len(), 2);
    for (labels, samples) in &success {
        let seconds: Vec<i64> = samples.iter().map(|(t, _)| t / 1000).collect();
        let mut distinct = seconds.clone();
        distinct.dedup();
        assert_eq!(distinct, seconds, "{}: one run per slot, never two: {seconds:?}", labels["journey"]);
        assert!(
            samples.len() + 1 >= slots && samples.len() <= slots + 1,
            "{}: {} runs for {slots} slots",
            labels["journey"],
            samples.len()
        );
        assert!(samples.iter().all(|(_, v)| *v == 1.0));
    }
}

#[tokio::test]
async fn a_journey_slower_than_its_period_skips_slots_and_counts_them() {
    let vm = VictoriaMetrics::start();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.instance("alpha").unwrap().faults().inject(
        None,
        "/api/v1/notifications",
        Fault::Latency(Duration::from_millis(2500)),
    );
    let agent =
        Agent::start(&sandbox, &[("slow.yaml", every_second("slow", "/api/v1/notifications"))], Some(&vm), "10s").await;
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let skipped = agent.metric("fediprobe_schedule_skipped_slots_total{journey=\"slow\"}").await.unwrap();
    assert!(skipped >= 2.0, "skipped {skipped}");
    let (code, stderr) = agent.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    let success = vm.export_at_least("fediprobe_journey_success", 2);
    let timestamps: Vec<i64> = success[0].1.iter().map(|(t, _)| *t).collect();
    assert!(timestamps.windows(2).all(|w| w[1] - w[0] >= 2500), "runs never overlap: {timestamps:?}");
}

#[tokio::test]
async fn sighup_with_a_broken_file_keeps_the_old_config_running() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let agent = Agent::start(&sandbox, &[("a.yaml", every_second("home", "/api/v1/timelines/home"))], None, "5s").await;
    let broken = agent.dir.path().join("journeys/b.yaml");
    std::fs::write(&broken, "name: broken\ninstance: main\nschedule: 'every now and then'\nslo: {}\nsteps: []\n")
        .unwrap();
    agent.signal("HUP");
    let runs = "fediprobe_journey_success_total{journey=\"home\",instance=\"main\",region=\"test\",account=\"probe\"}";
    let mut failures = None;
    for _ in 0..50 {
        failures = agent.metric("fediprobe_config_reload_failures_total{}").await;
        if failures == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(failures, Some(1.0));
    let before = agent.metric(runs).await.unwrap_or(0.0);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(agent.metric(runs).await.unwrap() >= before + 1.0, "the old journeys keep running");
    assert_eq!(agent.metric("fediprobe_journeys{}").await, Some(1.0));

    // Mended, the next SIGHUP takes it.
    std::fs::write(&broken, every_second("health", "/health")).unwrap();
    agent.signal("HUP");
    let mut journeys = None;
    for _ in 0..50 {
        journeys = agent.metric("fediprobe_journeys{}").await;
        if journeys == Some(2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reloaded = journeys == Some(2.0);
    let (code, stderr) = agent.stop().await;
    assert!(reloaded, "the mended config was not taken: {stderr}");
    assert_eq!(code, Some(0));
    assert!(stderr.contains("old one keeps running"), "{stderr}");
    assert!(stderr.contains("b.yaml:3:11"), "the reload error points at the file: {stderr}");
}

/// Posts a status, reads it back slowly, deletes it in cleanup.
fn slow_post() -> String {
    "name: slow-post\ninstance: main\nschedule: '*/3 * * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: post\n    request: { method: POST, path: /api/v1/statuses, form: { status: 'x ${nonce}', visibility: private } }\n    capture: { id: $.id }\n  - name: read\n    request: { path: '/api/v1/statuses/${id}' }\ncleanup:\n  - name: delete\n    request: { method: DELETE, path: '/api/v1/statuses/${id}' }\n".into()
}

async fn wait_for_in_flight(agent: &Agent) {
    for _ in 0..400 {
        if agent.metric("fediprobe_runs_in_flight{}").await == Some(1.0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no run started within 40 s");
}

/// Runs `slow_post` with its read-back taking `read_latency`, sends SIGTERM while
/// a run is in flight, and returns what the agent left and how it exited.
async fn sigterm_during_slow_read(
    read_latency: Duration,
    grace: &str,
) -> (VictoriaMetrics, Sandbox, Option<i32>, String) {
    let vm = VictoriaMetrics::start();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.instance("alpha").unwrap().faults().inject(
        Some(http::Method::GET),
        "/api/v1/statuses/",
        Fault::Latency(read_latency),
    );
    let agent = Agent::start(&sandbox, &[("p.yaml", slow_post())], Some(&vm), grace).await;
    wait_for_in_flight(&agent).await;
    let (code, stderr) = agent.stop().await;
    (vm, sandbox, code, stderr)
}

#[tokio::test]
async fn sigterm_during_a_slow_run_finishes_it_runs_cleanup_and_flushes() {
    let (vm, _sandbox, code, stderr) = sigterm_during_slow_read(Duration::from_secs(2), "20s").await;
    assert_eq!(code, Some(0), "{stderr}");
    let success = vm.export_at_least("fediprobe_journey_success", 1);
    assert_eq!(success[0].1.len(), 1);
    assert_eq!(success[0].1[0].1, 1.0, "the run in flight finished normally");
    let steps = vm.export_at_least("fediprobe_step_duration_seconds", 3);
    assert!(steps.iter().any(|(l, _)| l["step"] == "delete"), "cleanup ran: {steps:?}");
}

#[tokio::test]
async fn after_the_grace_period_runs_are_cancelled_but_still_clean_up() {
    let (vm, sandbox, code, stderr) = sigterm_during_slow_read(Duration::from_secs(20), "300ms").await;
    assert_eq!(code, Some(0), "{stderr}");
    let outcomes = vm.export_at_least("fediprobe_journey_outcome", 1);
    assert_eq!(outcomes[0].0["outcome"], "probe_error");
    assert_eq!(outcomes[0].0["reason"], "cancelled");
    assert!(vm.export("fediprobe_journey_success").is_empty(), "a cancelled run counts for nothing");
    // Cleanup ran: the status the run posted is gone from the probe's home timeline.
    let alpha = sandbox.instance("alpha").unwrap();
    fediprobe::install_crypto_provider();
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/timelines/home", alpha.base_url))
        .bearer_auth(alpha.account("probe").unwrap().token.expose())
        .send()
        .await
        .unwrap();
    let home: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let leftovers: Vec<&serde_json::Value> =
        home.as_array().unwrap().iter().filter(|s| s["content"].as_str().unwrap().contains("<p>x fp")).collect();
    assert!(leftovers.is_empty(), "the cancelled run's cleanup deleted its post: {leftovers:?}");
    assert!(stderr.contains("cancelling runs in flight"), "{stderr}");
}

#[tokio::test]
async fn a_changed_journey_file_is_picked_up_without_a_signal() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let journeys = [("a.yaml", every_second("home", "/api/v1/timelines/home"))];
    let agent = Agent::start_with(&sandbox, &journeys, None, "5s", "200ms").await;
    std::fs::write(agent.dir.path().join("journeys/b.yaml"), every_second("health", "/health")).unwrap();
    let mut journeys = None;
    for _ in 0..50 {
        journeys = agent.metric("fediprobe_journeys{}").await;
        if journeys == Some(2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, stderr) = agent.stop().await;
    assert_eq!(journeys, Some(2.0), "the new journey file was not picked up: {stderr}");
    assert_eq!(code, Some(0));
    assert!(stderr.contains("a journey file changed: config reloaded"), "{stderr}");
}
