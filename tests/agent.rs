//! `fediprobe run` as a Deployment runs it: journeys on every-second schedules
//! against the sandbox, samples into a real VictoriaMetrics, signals from outside.
//! No assertion depends on how long anything takes: the tests count runs and
//! samples and compare orderings, and the agent's own timing (slots, skips,
//! the shutdown bound) is tested in virtual time at the end of this file and in
//! the scheduler's tests.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fediprobe::sandbox::{Fault, Sandbox, SandboxConfig};
use fediprobe::scheduler::{PausedClock, StandIn};
use support::agent::{AgentProcess, Ended, runs_logged, runs_stored};
use support::victoria::{VictoriaMetrics, free_port};

/// A journey file running `path` every second.
fn every_second(name: &str, path: &str) -> String {
    format!(
        "name: {name}\ninstance: main\nschedule: '* * * * * *'\nslo: {{ availability: 99% }}\nsteps:\n  - name: get\n    request: {{ path: {path} }}\n"
    )
}

/// The agent's folder: journeys, token and config (agent section `agent`,
/// `remote_write` to `vm` if any).
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
}

fn setup(sandbox: &Sandbox, journeys: &[(&str, String)], vm: Option<&VictoriaMetrics>, agent: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("journeys")).unwrap();
    for (file, text) in journeys {
        std::fs::write(dir.path().join("journeys").join(file), text).unwrap();
    }
    let port = free_port();
    let config = write_config(sandbox, dir.path(), port, vm, agent);
    Setup { dir, config, port }
}

fn write_config(sandbox: &Sandbox, dir: &Path, port: u16, vm: Option<&VictoriaMetrics>, agent: &str) -> PathBuf {
    let alpha = sandbox.instance("alpha").unwrap();
    std::fs::write(dir.join("main.token"), alpha.account("probe").unwrap().token.expose()).unwrap();
    let mut yaml = format!(
        "probe: {{ region: test }}\ninstances:\n  main: {{ url: {}, account: probe, token: {{ file: main.token }}, rate_limits: {{ api_calls: 100000, statuses: 100000, deletes: 100000 }} }}\njourneys: [journeys]\nagent: {{ listen: 127.0.0.1:{port}, spread: 0s, push_interval: 1s, {agent} }}\n",
        alpha.base_url
    );
    if let Some(vm) = vm {
        yaml.push_str(&format!("remote_write: {{ url: {}, flush_timeout: 5s }}\n", vm.write_url()));
    }
    let path = dir.join("fediprobe.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

async fn start(setup: &Setup) -> AgentProcess {
    AgentProcess::start(&setup.config, setup.port, "info").await
}

#[tokio::test]
async fn every_run_logged_is_stored_once_at_a_whole_second_and_none_is_invented() {
    // Deduplicating, as operators are told to run it: on a loaded machine a push
    // answered after its timeout is rightly sent again (at-least-once); this
    // counts runs invented or lost, not resends.
    let vm = VictoriaMetrics::start_deduplicating();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let journeys =
        [("a.yaml", every_second("home", "/api/v1/timelines/home")), ("b.yaml", every_second("health", "/health"))];
    let setup = setup(&sandbox, &journeys, Some(&vm), "shutdown_grace: 5s");
    let agent = start(&setup).await;
    let series =
        "fediprobe_journey_success_total{journey=\"health\",instance=\"main\",region=\"test\",account=\"probe\"}";
    agent.wait_for_metric(series, Duration::from_secs(30), |runs| runs >= 3.0).await;
    let (status, body) = agent.get("/healthz").await.unwrap();
    assert_eq!((status, body.trim()), (200, "ok"));
    assert_eq!(agent.get("/readyz").await.unwrap().0, 200);
    assert_eq!(agent.metric("fediprobe_journeys{}").await, Some(2.0));
    let Ended { code, stderr } = agent.stop().await;
    assert_eq!(code, Some(0), "{stderr}");

    let logged = runs_logged(&stderr);
    let total: usize = logged.values().map(Vec::len).sum();
    let stored = runs_stored(&vm, total);
    assert_eq!(stored, logged, "exactly the runs logged, each once");
    for (journey, runs) in &logged {
        assert!(runs.len() >= 3, "{journey}: {runs:?}");
        // When slots fall (whole seconds, exactly one run each) is tested in
        // virtual time below; here, only the order, which no load can change.
        assert!(runs.windows(2).all(|w| w[0] < w[1]), "{journey}: runs in order, none twice: {runs:?}");
    }
}

#[tokio::test]
async fn a_journey_slower_than_its_period_skips_slots_and_counts_them() {
    let vm = VictoriaMetrics::start_deduplicating();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.instance("alpha").unwrap().faults().inject(
        None,
        "/api/v1/notifications",
        Fault::Latency(Duration::from_millis(2500)),
    );
    let journeys = [("slow.yaml", every_second("slow", "/api/v1/notifications"))];
    let setup = setup(&sandbox, &journeys, Some(&vm), "shutdown_grace: 10s");
    let agent = start(&setup).await;
    let skipped = "fediprobe_schedule_skipped_slots_total{journey=\"slow\"}";
    agent.wait_for_metric(skipped, Duration::from_secs(30), |skipped| skipped >= 2.0).await;
    let Ended { code, stderr } = agent.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    let logged = runs_logged(&stderr);
    let timestamps = &logged["slow"];
    assert!(timestamps.windows(2).all(|w| w[1] - w[0] >= 2500), "runs never overlap: {timestamps:?}");
    assert_eq!(runs_stored(&vm, timestamps.len()), logged);
}

#[tokio::test]
async fn sighup_with_a_broken_file_keeps_the_old_config_running() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let journeys = [("a.yaml", every_second("home", "/api/v1/timelines/home"))];
    let setup = setup(&sandbox, &journeys, None, "shutdown_grace: 5s");
    let agent = start(&setup).await;
    let broken = setup.dir.path().join("journeys/b.yaml");
    std::fs::write(&broken, "name: broken\ninstance: main\nschedule: 'every now and then'\nslo: {}\nsteps: []\n")
        .unwrap();
    agent.signal("HUP");
    agent.wait_for_metric("fediprobe_config_reload_failures_total{}", Duration::from_secs(10), |f| f == 1.0).await;
    let runs = "fediprobe_journey_success_total{journey=\"home\",instance=\"main\",region=\"test\",account=\"probe\"}";
    let before = agent.metric(runs).await.unwrap_or(0.0);
    agent.wait_for_metric(runs, Duration::from_secs(30), |now| now >= before + 2.0).await;
    assert_eq!(agent.metric("fediprobe_journeys{}").await, Some(1.0), "the old journeys keep running");

    // Mended, the next SIGHUP takes it.
    std::fs::write(&broken, every_second("health", "/health")).unwrap();
    agent.signal("HUP");
    agent.wait_for_metric("fediprobe_journeys{}", Duration::from_secs(10), |j| j == 2.0).await;
    let Ended { code, stderr } = agent.stop().await;
    assert_eq!(code, Some(0));
    assert!(stderr.contains("old one keeps running"), "{stderr}");
    assert!(stderr.contains("b.yaml:3:11"), "the reload error points at the file: {stderr}");
    assert!(!stderr.contains("take effect at the next restart"), "agent and remote_write did not change: {stderr}");
}

/// Posts a status, reads it back slowly, deletes it in cleanup.
fn slow_post() -> String {
    "name: slow-post\ninstance: main\nschedule: '*/3 * * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: post\n    request: { method: POST, path: /api/v1/statuses, form: { status: 'x ${nonce}', visibility: private } }\n    capture: { id: $.id }\n  - name: read\n    request: { path: '/api/v1/statuses/${id}' }\ncleanup:\n  - name: delete\n    request: { method: DELETE, path: '/api/v1/statuses/${id}' }\n".into()
}

/// The statuses in the probe's home timeline that `slow_post` made.
async fn posts_in_home(sandbox: &Sandbox) -> Vec<serde_json::Value> {
    let alpha = sandbox.instance("alpha").unwrap();
    fediprobe::install_crypto_provider();
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/timelines/home", alpha.base_url))
        .bearer_auth(alpha.account("probe").unwrap().token.expose())
        .send()
        .await
        .unwrap();
    let home: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    home.as_array().unwrap().iter().filter(|s| s["content"].as_str().unwrap().contains("<p>x fp")).cloned().collect()
}

/// Runs `slow_post` with its read-back taking `read_latency`; once a run has
/// posted (its status is in the home timeline) and is reading back, sends
/// SIGTERM, and returns what the agent left and how it exited.
async fn sigterm_during_slow_read(read_latency: Duration, grace: &str) -> (VictoriaMetrics, Sandbox, Ended) {
    let vm = VictoriaMetrics::start();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.instance("alpha").unwrap().faults().inject(
        Some(http::Method::GET),
        "/api/v1/statuses/",
        Fault::Latency(read_latency),
    );
    let setup = setup(&sandbox, &[("p.yaml", slow_post())], Some(&vm), &format!("shutdown_grace: {grace}"));
    let agent = start(&setup).await;
    let mut posted = Vec::new();
    for _ in 0..400 {
        posted = posts_in_home(&sandbox).await;
        if !posted.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(posted.len(), 1, "a run posted and is reading back: {posted:?}\n{}", agent.stderr());
    assert_eq!(agent.metric("fediprobe_runs_in_flight{}").await, Some(1.0));
    let ended = agent.stop().await;
    (vm, sandbox, ended)
}

#[tokio::test]
async fn sigterm_during_a_slow_run_finishes_it_runs_cleanup_and_flushes() {
    let (vm, sandbox, Ended { code, stderr }) = sigterm_during_slow_read(Duration::from_secs(2), "20s").await;
    assert_eq!(code, Some(0), "{stderr}");
    let success = vm.export_at_least("fediprobe_journey_success", 1);
    assert_eq!(success[0].1.len(), 1);
    assert_eq!(success[0].1[0].1, 1.0, "the run in flight finished normally");
    assert_eq!(posts_in_home(&sandbox).await, Vec::<serde_json::Value>::new(), "cleanup deleted the post");
    assert_eq!(runs_stored(&vm, 1), runs_logged(&stderr), "the one run, stored once");
}

#[tokio::test]
async fn after_the_grace_period_runs_are_cancelled_but_still_clean_up() {
    let (vm, sandbox, Ended { code, stderr }) = sigterm_during_slow_read(Duration::from_secs(20), "300ms").await;
    assert_eq!(code, Some(0), "{stderr}");
    let outcomes = vm.export_at_least("fediprobe_journey_outcome", 1);
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].0["outcome"], "probe_error");
    assert_eq!(outcomes[0].0["reason"], "cancelled");
    assert!(vm.export("fediprobe_journey_success").is_empty(), "a cancelled run counts for nothing");
    // The post existed while the run was reading back (checked before SIGTERM);
    // the cancelled run's cleanup deleted it.
    assert_eq!(posts_in_home(&sandbox).await, Vec::<serde_json::Value>::new(), "cleanup deleted the post");
    assert!(stderr.contains("cancelling runs in flight"), "{stderr}");
}

#[tokio::test]
async fn a_changed_journey_file_is_picked_up_without_a_signal_and_agent_changes_are_flagged() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let journeys = [("a.yaml", every_second("home", "/api/v1/timelines/home"))];
    let setup = setup(&sandbox, &journeys, None, "shutdown_grace: 5s, reload_check: 200ms");
    let agent = start(&setup).await;
    std::fs::write(setup.dir.path().join("journeys/b.yaml"), every_second("health", "/health")).unwrap();
    agent.wait_for_metric("fediprobe_journeys{}", Duration::from_secs(10), |j| j == 2.0).await;
    let health = "fediprobe_schedule_offset_seconds{journey=\"health\"}";
    assert!(agent.metric(health).await.is_some(), "the new journey has its schedule series");
    assert!(!agent.stderr().contains("take effect at the next restart"), "only journeys changed");
    // A journey removed: its schedule series go with it.
    std::fs::remove_file(setup.dir.path().join("journeys/b.yaml")).unwrap();
    agent.wait_for_metric("fediprobe_journeys{}", Duration::from_secs(10), |j| j == 1.0).await;
    assert_eq!(agent.metric(health).await, None, "a removed journey keeps no schedule series");
    assert!(agent.metric("fediprobe_schedule_offset_seconds{journey=\"home\"}").await.is_some());
    // A changed `agent` section is taken with the rest, and flagged as needing a restart.
    write_config(&sandbox, setup.dir.path(), setup.port, None, "shutdown_grace: 6s, reload_check: 200ms");
    agent.wait_for_metric("fediprobe_config_reloads_total{}", Duration::from_secs(10), |r| r == 3.0).await;
    let Ended { code, stderr } = agent.stop().await;
    assert_eq!(code, Some(0));
    assert!(stderr.contains("a journey file changed: config reloaded"), "{stderr}");
    assert_eq!(stderr.matches("take effect at the next restart").count(), 1, "{stderr}");
}

/// The whole agent in one process on tokio's paused time: an every-second
/// journey runs at each whole second of a virtual minute, and a stop asked for
/// while a run goes returns once it finished, without another starting.
#[tokio::test(start_paused = true)]
async fn the_agent_on_paused_time_runs_every_slot_of_a_virtual_minute_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("journeys")).unwrap();
    std::fs::write(dir.path().join("journeys/a.yaml"), every_second("tick", "/health")).unwrap();
    // An instance nobody serves: the injected runner never contacts it, and the
    // leftover sweep's attempts are refused at once.
    std::fs::write(
        dir.path().join("fediprobe.yaml"),
        "probe: { region: test }\ninstances:\n  main: { url: 'http://127.0.0.1:9', account: probe, token: { env: FEDIPROBE_TEST_UNSET_TOKEN } }\njourneys: [journeys]\nagent: { listen: '127.0.0.1:0', spread: 0s, shutdown_grace: 30s, reload_check: 0s }\n",
    )
    .unwrap();
    let clock = PausedClock::starting_at("2026-01-01T00:00:00.500Z".parse().unwrap());
    let runner = StandIn::new(Arc::new(clock), Duration::from_millis(700), &[], Duration::ZERO);
    let mut options = fediprobe::agent::Options::new(dir.path().join("fediprobe.yaml"));
    options.clock = Arc::new(clock);
    options.runner = Some(runner.clone());
    let shutdown = options.shutdown.clone();
    let agent = tokio::spawn(fediprobe::agent::run(options));
    tokio::time::sleep(Duration::from_millis(60_100)).await; // 01:00.600: the run of 01:00 is going
    shutdown.cancel();
    let report = agent.await.unwrap().unwrap();
    assert_eq!(report, Default::default(), "no remote write: nothing to flush");
    let started: Vec<String> = runner.started().iter().map(|(_, at)| at.format("%M:%S%.3f").to_string()).collect();
    let expected: Vec<String> = (1..=60).map(|s| format!("{:02}:{:02}.000", s / 60, s % 60)).collect();
    assert_eq!(started, expected, "one run at each slot, none after the stop");
}

/// The bundled Deployment gives a SIGTERM'd agent long enough to finish:
/// `terminationGracePeriodSeconds` covers the agent's whole shutdown bound
/// (`shutdown_grace` + the cleanup bound + `flush_timeout`) for every overlay's
/// config, so Kubernetes never SIGKILLs a stopping agent in the middle of its
/// final push.
#[test]
fn the_deployments_termination_grace_period_covers_the_agents_shutdown_bound() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let deployment = std::fs::read_to_string(root.join("deploy/components/deployment/deployment.yaml")).unwrap();
    let grace: u64 = deployment
        .lines()
        .find_map(|line| line.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .expect("the Deployment sets terminationGracePeriodSeconds")
        .trim()
        .parse()
        .unwrap();
    let overlays = std::fs::read_dir(root.join("deploy/overlays")).unwrap();
    let mut checked = 0;
    for overlay in overlays {
        let path = overlay.unwrap().path().join("fediprobe.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let (config, diagnostics) = fediprobe::spec::parse_config_str(&path, &text);
        let config = config.unwrap_or_else(|| panic!("{diagnostics}"));
        let bound = fediprobe::agent::shutdown_bound(&config.agent, config.remote_write.as_ref());
        assert!(
            Duration::from_secs(grace) > bound,
            "{}: the agent may take {bound:?} to stop, the Deployment gives it {grace} s",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 3, "every overlay checked");
}
