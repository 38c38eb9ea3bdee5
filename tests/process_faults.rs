//! Process faults: `fediprobe run` killed with SIGKILL while its backend is down
//! loses at most the samples it had not spooled, and the next start sends the
//! spool, each sample once; a spool directory that cannot be written (a file
//! where the directory should be, as a full disk would refuse it) is reported,
//! the samples are counted as lost, and nothing crashes.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use fediprobe::sandbox::{Sandbox, SandboxConfig};
use fediprobe::sink::remote_write::spool::Spool;
use support::victoria::{VictoriaMetrics, free_port};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_fediprobe");

/// A config running one journey every second against the sandbox, pushing to
/// `backend_port` with `spool` as the spool directory and a small queue, so that
/// samples spill to the spool within a few runs.
fn config(sandbox: &Sandbox, dir: &Path, backend_port: u16, spool: &Path, agent_port: u16) -> PathBuf {
    let alpha = sandbox.instance("alpha").unwrap();
    std::fs::create_dir_all(dir.join("journeys")).unwrap();
    std::fs::write(
        dir.join("journeys/health.yaml"),
        "name: health\ninstance: main\nschedule: '* * * * * *'\ndeadline: 2s\nslo: { availability: 99% }\nsteps:\n  - name: get\n    timeout: 1s\n    request: { path: /health, auth: false }\n",
    )
    .unwrap();
    std::fs::write(dir.join("main.token"), alpha.account("probe").unwrap().token.expose()).unwrap();
    let yaml = format!(
        "probe: {{ region: test }}\ninstances:\n  main: {{ url: {}, account: probe, token: {{ file: main.token }} }}\njourneys: [journeys]\nremote_write: {{ url: 'http://127.0.0.1:{backend_port}/api/v1/write', spool_dir: '{}', queue_capacity: 15, flush_timeout: 2s, timeout: 1s }}\nagent: {{ listen: '127.0.0.1:{agent_port}', spread: 0s, push_interval: 1s, shutdown_grace: 2s }}\n",
        alpha.base_url,
        spool.display()
    );
    let path = dir.join("fediprobe.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn start_agent(config: &Path) -> Child {
    Command::new(BIN)
        .args(["run", "-c", config.to_str().unwrap()])
        .env_remove("FEDIPROBE_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap().success());
}

async fn wait(child: Child) -> Output {
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.expect("exits").unwrap()
}

/// The timestamps of the `fediprobe_journey_success` samples in the spool's files
/// (read without the lock: the agent may hold it).
fn spooled_success_timestamps(spool: &Path) -> Vec<i64> {
    Spool::peek(spool)
        .into_iter()
        .filter(|s| s.name() == Some(fediprobe::metrics::JOURNEY_SUCCESS))
        .map(|s| s.timestamp_ms)
        .collect()
}

/// Waits (10 s at most: a bound against hanging) until the agent on `port`
/// serves its `/metrics`.
async fn wait_until_serving(port: u16) {
    for _ in 0..100 {
        if metric(port, "fediprobe_journeys{}").await.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metric(port: u16, series: &str) -> Option<f64> {
    fediprobe::install_crypto_provider();
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn a_sigkilled_agent_loses_only_unspooled_samples_and_the_next_start_sends_the_spool_once() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (backend_port, agent_port) = (free_port(), free_port());
    let spool = dir.path().join("spool");
    let config = config(&sandbox, dir.path(), backend_port, &spool, agent_port);

    let agent = start_agent(&config);
    // Runs every second; the backend is down, so each round writes ahead to the spool.
    let mut spooled = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if spool.is_dir() {
            spooled = spooled_success_timestamps(&spool);
            if spooled.len() >= 2 {
                break;
            }
        }
    }
    assert!(spooled.len() >= 2, "samples reach the spool while the backend is down: {spooled:?}");
    // Killed mid-push: no shutdown, no flush.
    signal(&agent, "KILL");
    let output = wait(agent).await;
    assert_eq!(output.status.code(), None, "killed by a signal");
    let spooled: BTreeSet<i64> = spooled_success_timestamps(&spool).into_iter().collect();
    assert!(!spooled.is_empty());

    // The backend comes back; the next start (a CronJob's `once`) sends the spool first.
    let vm = VictoriaMetrics::start_on(backend_port);
    let output = Command::new(BIN).args(["once", "-c", config.to_str().unwrap()]).output().await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let exported = vm.export_at_least(fediprobe::metrics::JOURNEY_SUCCESS, spooled.len() + 1);
    assert_eq!(exported.len(), 1, "{exported:?}");
    let timestamps: Vec<i64> = exported[0].1.iter().map(|(t, _)| *t).collect();
    let unique: BTreeSet<i64> = timestamps.iter().copied().collect();
    assert_eq!(unique.len(), timestamps.len(), "each sample arrives once: {timestamps:?}");
    assert!(spooled.is_subset(&unique), "every spooled sample arrived: {spooled:?} vs {unique:?}");
    assert_eq!(unique.len(), spooled.len() + 1, "the spooled runs and `once`'s own run: {unique:?}");
    let left = support::spool::open(&spool, u64::MAX).total_samples();
    assert_eq!(left, 0, "the spool is empty once delivered");
}

#[tokio::test]
async fn once_with_an_unwritable_spool_reports_it_counts_the_loss_and_exits_3() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A file where the spool directory should be: every write under it fails.
    let spool = dir.path().join("spool");
    std::fs::write(&spool, b"not a directory").unwrap();
    let config = config(&sandbox, dir.path(), free_port(), &spool, free_port());
    let output = Command::new(BIN)
        .args(["once", "-c", config.to_str().unwrap()])
        .env_remove("FEDIPROBE_LOG")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(3), "samples lost: {stdout}\n{stderr}");
    assert!(stdout.contains("health") && stdout.contains("success"), "the run was still measured: {stdout}");
    assert!(stderr.contains("cannot open the spool directory"), "{stderr}");
    assert!(stderr.contains("samples lost"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn an_agent_whose_spool_becomes_unwritable_keeps_measuring_and_counts_the_loss() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let agent_port = free_port();
    let config = config(&sandbox, dir.path(), free_port(), &spool, agent_port);
    let agent = start_agent(&config);
    wait_until_serving(agent_port).await;
    // The disk under the spool goes away: a file takes the directory's place.
    std::fs::remove_dir_all(&spool).unwrap();
    std::fs::write(&spool, b"not a directory").unwrap();
    // The queue holds 15 samples (about three runs); past that, with no spool,
    // the oldest are dropped.
    let mut dropped = 0.0;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        dropped = metric(agent_port, "fediprobe_remote_write_dropped_samples_total{}").await.unwrap_or(0.0);
        if dropped > 0.0 {
            break;
        }
    }
    assert!(dropped > 0.0, "samples that cannot be spooled are counted as dropped");
    assert!(metric(agent_port, "fediprobe_runs_in_flight{}").await.is_some(), "still serving /metrics");
    signal(&agent, "TERM");
    let output = wait(agent).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The queue is full at shutdown, the backend down and the spool unwritable:
    // what it holds is lost too, and the exit status says so.
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("samples were lost at shutdown"), "{stderr}");
    assert!(stderr.contains("cannot write the spool"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_second_process_on_the_same_spool_stops_with_an_error_naming_it() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let first_port = free_port();
    let config = config(&sandbox, dir.path(), free_port(), &spool, first_port);
    let first = start_agent(&config);
    wait_until_serving(first_port).await;
    assert!(metric(first_port, "fediprobe_journeys{}").await.is_some(), "the first agent runs");
    // A CronJob's `once` (or a second agent) pointed at the same directory.
    let output = Command::new(BIN)
        .args(["once", "-c", config.to_str().unwrap()])
        .env_remove("FEDIPROBE_LOG")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("the spool directory {} is in use by another fediprobe process", spool.display())),
        "{stderr}"
    );
    assert!(stderr.contains("give each process its own `spool_dir`"), "{stderr}");
    signal(&first, "TERM");
    let output = wait(first).await;
    assert!(output.status.code().is_some(), "the first agent stops normally");
}
