//! The chaos suite: `fediprobe run` as a separate process against a real
//! VictoriaMetrics, through the faults a monitoring agent meets in its worst
//! hour, counting every run the agent logged against every sample stored, per
//! journey. Each case asserts exact figures: no run missing beyond the stated
//! bound, none stored twice, none invented. Runs are counted by their start
//! (the timestamp of their samples, `started_ms` in the log); stored runs by the
//! `fediprobe_journey_outcome` samples (one per run, whatever the outcome).
//!
//! Every wait is a bounded poll on a count; no assertion depends on how long
//! anything takes. The whole suite takes about a minute of wall time.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fediprobe::sandbox::{Fault, Sandbox, SandboxConfig};
use support::agent::{AgentProcess, Ended, runs_logged, runs_stored};
use support::slow_backend::SlowBackend;
use support::victoria::{VictoriaMetrics, free_port};

/// A journey file running GET `path` on the sandbox every second.
fn every_second(name: &str, path: &str) -> String {
    format!(
        "name: {name}\ninstance: main\nschedule: '* * * * * *'\ndeadline: 20s\nslo: {{ availability: 99% }}\nsteps:\n  - name: get\n    timeout: 15s\n    request: {{ path: {path}, auth: false }}\n"
    )
}

/// One probe's folder: journeys, token, config, spool.
struct Probe {
    dir: tempfile::TempDir,
    sandbox: Sandbox,
    port: u16,
}

impl Probe {
    async fn new(journeys: &[(&str, String)]) -> Probe {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("journeys")).unwrap();
        for (name, text) in journeys {
            std::fs::write(dir.path().join("journeys").join(format!("{name}.yaml")), text).unwrap();
        }
        let alpha = sandbox.instance("alpha").unwrap();
        std::fs::write(dir.path().join("main.token"), alpha.account("probe").unwrap().token.expose()).unwrap();
        Probe { dir, sandbox, port: free_port() }
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// Writes the config: pushing to `write_url`, with `remote_write` and
    /// `agent` settings (`key: value, …`) added to or replacing the suite's.
    fn config(&self, write_url: &url::Url, remote_write: &str, agent: &str) -> PathBuf {
        let alpha = self.sandbox.instance("alpha").unwrap();
        let remote_write =
            settings(&[("spool_dir", "spool"), ("timeout", "1s"), ("flush_timeout", "5s")], remote_write);
        let agent = settings(
            &[("spread", "0s"), ("push_interval", "1s"), ("shutdown_grace", "20s"), ("reload_check", "0s")],
            agent,
        );
        let yaml = format!(
            "probe: {{ region: test }}\ninstances:\n  main: {{ url: {}, account: probe, token: {{ file: main.token }}, rate_limits: {{ api_calls: 1000000, unauthenticated_api_calls: 1000000 }} }}\njourneys: [journeys]\nremote_write: {{ url: '{write_url}', {remote_write} }}\nagent: {{ listen: '127.0.0.1:{}', {agent} }}\n",
            alpha.base_url, self.port
        );
        let path = self.dir.path().join("fediprobe.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    }

    async fn start(&self, config: &Path) -> AgentProcess {
        AgentProcess::start(config, self.port, "info").await
    }
}

/// `defaults` with the `key: value, …` pairs of `extra` replacing or added to
/// them, as the inside of a YAML flow mapping.
fn settings(defaults: &[(&str, &str)], extra: &str) -> String {
    let mut all: BTreeMap<String, String> = defaults.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for pair in extra.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once(':').expect("key: value");
        all.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    all.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
}

/// A write URL where nothing listens (yet): the backend is down.
fn down(port: u16) -> url::Url {
    format!("http://127.0.0.1:{port}/api/v1/write").parse().unwrap()
}

/// Polls `/readyz` `times` times (every 100 ms) and returns the statuses seen.
async fn readiness(agent: &AgentProcess, times: usize) -> BTreeMap<u16, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..times {
        let status = agent.get("/readyz").await.map_or(0, |(status, _)| status);
        *seen.entry(status).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

fn total(runs: &BTreeMap<String, Vec<i64>>) -> usize {
    runs.values().map(Vec::len).sum()
}

/// Checks that VictoriaMetrics holds exactly the samples the `logged` runs
/// produced, less the `dropped` ones: `stored + dropped = produced`. A run of
/// these journeys always has the same series, so produced = runs × the samples
/// of one complete run (the most stored at one timestamp).
fn assert_stored_plus_dropped_is_produced(vm: &VictoriaMetrics, logged: &BTreeMap<String, Vec<i64>>, dropped: usize) {
    let per_run = |series: &[support::victoria::ExportedSeries]| {
        let mut per_timestamp: BTreeMap<i64, usize> = BTreeMap::new();
        for (_, samples) in series {
            for (t, _) in samples {
                *per_timestamp.entry(*t).or_default() += 1;
            }
        }
        per_timestamp.values().copied().max().unwrap_or(0)
    };
    let regex = "fediprobe_(journey|step|http)_.*";
    let samples_per_run = per_run(&vm.export_settled(regex, 1));
    let produced = total(logged) * samples_per_run;
    let stored: usize = vm.export_settled(regex, produced - dropped).iter().map(|(_, s)| s.len()).sum();
    assert_eq!(
        stored + dropped,
        produced,
        "stored {stored} + dropped {dropped} = produced ({samples_per_run} per run)"
    );
}

#[tokio::test]
async fn a_backend_outage_loses_nothing_duplicates_nothing_and_readiness_never_flaps() {
    let probe = Probe::new(&[
        ("health", every_second("health", "/health")),
        ("home", every_second("home", "/api/v1/timelines/public")),
    ])
    .await;
    // Deduplicating, as README and deploy/monitoring tell operators to run it: the
    // backend stops with a push in flight, stores it and dies before answering, and
    // the agent rightly sends it again (remote-write is at-least-once). Without
    // the flag that run is stored twice; `a_backend_answering_after_the_timeout…`
    // shows both sides of that.
    let vm = VictoriaMetrics::start_deduplicating();
    let config = probe.config(&vm.write_url(), "", "");
    let agent = probe.start(&config).await;
    agent.wait_for_metric("fediprobe_remote_write_sent_samples_total{}", Duration::from_secs(30), |s| s > 0.0).await;

    // The outage: rounds fail, what they hold goes to the spool, readiness holds.
    let stopped = vm.stop();
    agent.wait_for_metric("fediprobe_remote_write_spool_samples{}", Duration::from_secs(30), |s| s > 0.0).await;
    let during = readiness(&agent, 30).await;
    assert_eq!(during, BTreeMap::from([(200, 30)]), "/readyz during the outage");
    let age = agent.metric("fediprobe_remote_write_oldest_undelivered_age_seconds{}").await.unwrap();
    assert!(age > 0.0, "the backlog's age shows the outage: {age}");

    // The backend returns: the spool drains.
    let vm = stopped.start();
    agent.wait_for_metric("fediprobe_remote_write_spool_samples{}", Duration::from_secs(30), |s| s == 0.0).await;
    let Ended { code, stderr } = agent.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    let logged = runs_logged(&stderr);
    assert_eq!(runs_stored(&vm, total(&logged)), logged, "every run logged is stored, once");
}

#[tokio::test]
async fn sigkill_during_an_outage_loses_at_most_one_push_interval_and_the_restart_sends_the_rest_once() {
    let probe = Probe::new(&[
        ("health", every_second("health", "/health")),
        ("home", every_second("home", "/api/v1/timelines/public")),
    ])
    .await;
    let port = free_port();
    let config = probe.config(&down(port), "", "");
    let first = probe.start(&config).await;
    // Several rounds fail while runs go on; then the node is lost.
    first.wait_for_metric("fediprobe_remote_write_spool_samples{}", Duration::from_secs(30), |s| s >= 60.0).await;
    let killed = first.kill().await;
    let logged_before_kill = runs_logged(&killed.stderr);

    // The backend is back; the next start sends the spool first.
    let vm = VictoriaMetrics::start_on(port);
    let second = probe.start(&config).await;
    second.wait_for_metric("fediprobe_remote_write_spool_samples{}", Duration::from_secs(30), |s| s == 0.0).await;
    let Ended { code, stderr } = second.stop().await;
    assert_eq!(code, Some(0), "{stderr}");

    let logged_after = runs_logged(&stderr);
    let mut logged = logged_before_kill.clone();
    for (journey, runs) in &logged_after {
        logged.entry(journey.clone()).or_default().extend(runs);
    }
    // Every run of the second process must arrive (it stopped cleanly): wait for
    // all of them before counting, so that a row VictoriaMetrics has not made
    // searchable yet is not taken for a lost run.
    let mut stored = runs_stored(&vm, 1);
    for _ in 0..60 {
        let arrived = logged_after
            .iter()
            .all(|(journey, runs)| runs.iter().all(|t| stored.get(journey).is_some_and(|stored| stored.contains(t))));
        if arrived {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        stored = runs_stored(&vm, 1);
    }
    for (journey, runs) in &logged {
        let stored: Vec<i64> = stored.get(journey).cloned().unwrap_or_default();
        let unique: BTreeSet<i64> = stored.iter().copied().collect();
        assert_eq!(unique.len(), stored.len(), "{journey}: none stored twice: {stored:?}");
        let logged_set: BTreeSet<i64> = runs.iter().copied().collect();
        assert!(unique.is_subset(&logged_set), "{journey}: none invented");
        // The missing runs are the killed process's last ones: those pushed since
        // its last delivery round began (one push interval: at most two runs of an
        // every-second journey, by jitter) plus at most one the round was writing.
        let before_kill = &logged_before_kill[journey];
        let missing: Vec<i64> = runs.iter().copied().filter(|t| !unique.contains(t)).collect();
        assert!(missing.len() <= 3, "{journey}: {} runs lost: {missing:?}", missing.len());
        assert_eq!(
            missing,
            before_kill[before_kill.len() - missing.len()..],
            "{journey}: only the newest runs are lost"
        );
    }
}

#[tokio::test]
async fn an_unwritable_spool_keeps_what_fits_in_memory_and_counts_exactly_what_it_drops() {
    let probe = Probe::new(&[("health", every_second("health", "/health"))]).await;
    std::fs::write(probe.spool(), b"a file where the spool directory should be").unwrap();
    let port = free_port();
    let config = probe.config(&down(port), "queue_capacity: 40", "");
    let agent = probe.start(&config).await;
    agent.wait_for_metric("fediprobe_remote_write_dropped_samples_total{}", Duration::from_secs(30), |d| d > 0.0).await;
    assert_eq!(readiness(&agent, 10).await, BTreeMap::from([(200, 10)]), "/readyz while samples are dropped");
    let vm = VictoriaMetrics::start_on(port);
    agent.wait_for_metric("fediprobe_remote_write_queue_samples{}", Duration::from_secs(30), |q| q < 40.0).await;
    let dropped = agent.metric("fediprobe_remote_write_dropped_samples_total{}").await.unwrap() as usize;
    let Ended { code, stderr } = agent.stop().await;
    // Dropping stopped once the backend was back, and the memory was delivered.
    assert_eq!(code, Some(0), "{stderr}");
    let logged = runs_logged(&stderr);
    assert_stored_plus_dropped_is_produced(&vm, &logged, dropped);
    let stored = runs_stored(&vm, 1);
    // What was kept is the newest: the runs stored are the last ones logged.
    let kept = &stored["health"];
    assert_eq!(kept[..], logged["health"][logged["health"].len() - kept.len()..], "the oldest were dropped");
}

#[tokio::test]
async fn a_full_spool_drops_its_oldest_files_counts_them_and_delivers_the_rest_once() {
    let probe = Probe::new(&[("health", every_second("health", "/health"))]).await;
    let port = free_port();
    let config = probe.config(&down(port), "spool_max_bytes: 4000", "");
    let agent = probe.start(&config).await;
    agent.wait_for_metric("fediprobe_remote_write_dropped_samples_total{}", Duration::from_secs(30), |d| d > 0.0).await;
    let vm = VictoriaMetrics::start_on(port);
    agent.wait_for_metric("fediprobe_remote_write_spool_samples{}", Duration::from_secs(30), |s| s == 0.0).await;
    let dropped = agent.metric("fediprobe_remote_write_dropped_samples_total{}").await.unwrap() as usize;
    let Ended { code, stderr } = agent.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("spooled=0 dropped=0"), "the final flush delivered everything: {stderr}");
    let logged = runs_logged(&stderr);
    assert_stored_plus_dropped_is_produced(&vm, &logged, dropped);
    let stored = runs_stored(&vm, 1);
    let unique: BTreeSet<i64> = stored["health"].iter().copied().collect();
    assert_eq!(unique.len(), stored["health"].len(), "none stored twice");
}

#[tokio::test]
async fn queue_overflow_spills_to_the_spool_and_loses_nothing() {
    let probe = Probe::new(&[
        ("health", every_second("health", "/health")),
        ("home", every_second("home", "/api/v1/timelines/public")),
    ])
    .await;
    let port = free_port();
    // A queue smaller than one push interval's samples: it overflows between rounds.
    let config = probe.config(&down(port), "queue_capacity: 10", "push_interval: 4s");
    let agent = probe.start(&config).await;
    agent
        .wait_for_metric("fediprobe_remote_write_spooled_samples_total{}", Duration::from_secs(30), |s| s >= 60.0)
        .await;
    let vm = VictoriaMetrics::start_on(port);
    agent.wait_for_metric("fediprobe_remote_write_spool_samples{}", Duration::from_secs(30), |s| s == 0.0).await;
    assert_eq!(agent.metric("fediprobe_remote_write_dropped_samples_total{}").await, Some(0.0));
    let Ended { code, stderr } = agent.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    let logged = runs_logged(&stderr);
    assert_eq!(runs_stored(&vm, total(&logged)), logged, "every run logged is stored, once");
}

#[tokio::test]
async fn a_reload_during_a_long_run_starts_no_second_copy_and_keeps_the_skipped_count() {
    let probe = Probe::new(&[("slow", every_second("slow", "/api/v1/timelines/public"))]).await;
    probe.sandbox.instance("alpha").unwrap().faults().inject(
        None,
        "/api/v1/timelines/public",
        Fault::Latency(Duration::from_secs(3)),
    );
    // Deduplicating, as operators are told to run it: on a loaded machine a push
    // can be answered after its 1 s timeout and rightly sent again (at-least-once;
    // CI once stored one such batch twice); what this case counts is runs started,
    // not resends — a second copy of a run has another start time and still shows.
    let vm = VictoriaMetrics::start_deduplicating();
    let config = probe.config(&vm.write_url(), "", "reload_check: 200ms");
    let agent = probe.start(&config).await;
    let skipped = "fediprobe_schedule_skipped_slots_total{journey=\"slow\"}";
    let before = agent.wait_for_metric(skipped, Duration::from_secs(30), |s| s >= 3.0).await;
    agent.wait_for_metric("fediprobe_runs_in_flight{}", Duration::from_secs(10), |r| r == 1.0).await;
    // A ConfigMap update: another journey appears; the slow one is reloaded with it.
    std::fs::write(probe.dir.path().join("journeys/health.yaml"), every_second("health", "/health")).unwrap();
    agent.wait_for_metric("fediprobe_journeys{}", Duration::from_secs(10), |j| j == 2.0).await;
    let after = agent.metric(skipped).await.unwrap();
    assert!(after >= before, "the skipped count survives the reload: {before} before, {after} after");
    // The slow run still going at the reload keeps its slots skipped.
    agent.wait_for_metric(skipped, Duration::from_secs(30), |s| s >= after + 2.0).await;
    let Ended { code, stderr } = agent.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    let logged = runs_logged(&stderr);
    let slow = &logged["slow"];
    assert!(slow.windows(2).all(|w| w[1] - w[0] >= 3000), "no overlapping runs of the slow journey: {slow:?}");
    assert_eq!(runs_stored(&vm, total(&logged)), logged, "every run logged is stored, once");
}

#[tokio::test]
async fn sigterm_with_a_backlog_starts_no_run_and_invents_none() {
    // Twelve journeys every second, two places: most slots wait for a place.
    let journeys: Vec<(String, String)> =
        (0..12).map(|i| (format!("j{i:02}"), every_second(&format!("j{i:02}"), "/api/v1/timelines/public"))).collect();
    let borrowed: Vec<(&str, String)> = journeys.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let probe = Probe::new(&borrowed).await;
    probe.sandbox.instance("alpha").unwrap().faults().inject(
        None,
        "/api/v1/timelines/public",
        Fault::Latency(Duration::from_millis(700)),
    );
    // Deduplicating, as operators are told to run it: on a loaded machine a push
    // can be answered after its timeout and rightly sent again (at-least-once);
    // what this case counts is runs started and invented, not resends.
    let vm = VictoriaMetrics::start_deduplicating();
    let config = probe.config(&vm.write_url(), "", "max_concurrent_runs: 2");
    let agent = probe.start(&config).await;
    agent.wait_for_metric("fediprobe_remote_write_sent_samples_total{}", Duration::from_secs(30), |s| s > 0.0).await;
    for _ in 0..10 {
        let running = agent.metric("fediprobe_runs_in_flight{}").await.unwrap();
        assert!(running <= 2.0, "runs_in_flight counts running runs only: {running}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Ended { code, stderr } = agent.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    let stopping = stderr.lines().find(|l| l.contains("SIGTERM: stopping")).expect("the SIGTERM line");
    let stopped_at =
        chrono::DateTime::parse_from_rfc3339(stopping.split_whitespace().next().unwrap()).unwrap().timestamp_millis();
    let logged = runs_logged(&stderr);
    for (journey, runs) in &logged {
        assert!(
            runs.iter().all(|t| *t <= stopped_at),
            "{journey}: a run started after SIGTERM: {runs:?} vs {stopped_at}"
        );
    }
    assert!(!stderr.contains("reason=cancelled"), "no run invented as cancelled");
    assert!(stderr.contains("slot skipped, its run never started"), "waiting slots are skipped slots");
    assert_eq!(runs_stored(&vm, total(&logged)), logged, "every run logged is stored, once");
}

#[tokio::test]
async fn a_backend_answering_after_the_timeout_with_dedup_stores_each_run_once() {
    let probe = Probe::new(&[("health", every_second("health", "/health"))]).await;
    let vm = VictoriaMetrics::start_deduplicating();
    // The first three pushes are stored but answered after the 1 s timeout.
    let backend = SlowBackend::start(vm.write_url(), 3, Duration::from_millis(2500)).await;
    let config = probe.config(&backend.write_url(), "", "");
    let agent = probe.start(&config).await;
    for _ in 0..300 {
        if backend.forwarded() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(backend.forwarded() >= 5, "{} pushes:\n{}", backend.forwarded(), agent.stderr());
    agent.wait_for_metric("fediprobe_remote_write_spool_samples{}", Duration::from_secs(30), |s| s == 0.0).await;
    let Ended { code, stderr } = agent.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    let logged = runs_logged(&stderr);
    let runs = logged["health"].len() as f64;
    assert!(backend.forwarded() as f64 > runs, "some runs were pushed more than once");
    // Evaluated a second after the last run, so that the window holds every run.
    let after_the_last_run = logged["health"].last().unwrap() / 1000 + 2;
    let query = "sum(count_over_time(fediprobe_journey_outcome{journey=\"health\"}[1h]))";
    vm.wait_for_value(query, after_the_last_run, runs);
}
