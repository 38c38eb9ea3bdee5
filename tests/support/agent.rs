//! `fediprobe run` as a separate process, as a Deployment runs it: started on a
//! config in a temporary directory, its stderr written to a file there (so a
//! chatty agent never blocks on a full pipe and the log can be read at any
//! moment), its endpoints read over loopback, signals sent from outside.

#![allow(dead_code)] // Each test binary uses a different part of the helpers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_fediprobe");

/// A running agent.
pub struct AgentProcess {
    child: Child,
    /// The port of its `/healthz`, `/readyz` and `/metrics`.
    pub port: u16,
    log: PathBuf,
}

/// How a stopped or killed agent ended.
pub struct Ended {
    /// The exit code; `None` when a signal killed it.
    pub code: Option<i32>,
    /// Everything it logged.
    pub stderr: String,
}

impl AgentProcess {
    /// Starts `fediprobe run -c config` serving on `port`, logging at `log_level`
    /// (`FEDIPROBE_LOG`) to `<config's folder>/agent-N.log`, and waits (up to
    /// 30 s: a loaded machine starts processes slowly) until `/healthz` answers.
    pub async fn start(config: &Path, port: u16, log_level: &str) -> AgentProcess {
        let dir = config.parent().expect("config in a folder");
        let log =
            (0..).map(|n| dir.join(format!("agent-{n}.log"))).find(|path| !path.exists()).expect("a free log name");
        let child = Command::new(BIN)
            .args(["run", "-c", config.to_str().expect("UTF-8 path")])
            .env("FEDIPROBE_LOG", log_level)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("start fediprobe");
        let mut agent = AgentProcess { child, port, log };
        for _ in 0..600 {
            if agent.get("/healthz").await.is_some() {
                return agent;
            }
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!("the agent exited with {status}:\n{}", agent.stderr());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the agent did not answer /healthz within 30 s:\n{}", agent.stderr());
    }

    /// Its log so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET one of its endpoints: status and body, `None` when it does not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        fediprobe::install_crypto_provider();
        let response = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port)).await.ok()?;
        Some((response.status().as_u16(), response.text().await.ok()?))
    }

    /// The value of one line of `/metrics`, e.g. `fediprobe_config_reloads_total{}`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics").await?;
        text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// Polls `series` (every 100 ms, up to `limit`) until `done` holds for its
    /// value; panics with the log otherwise.
    pub async fn wait_for_metric(&self, series: &str, limit: Duration, done: impl Fn(f64) -> bool) -> f64 {
        let polls = limit.as_millis() / 100;
        let mut last = None;
        for _ in 0..polls.max(1) {
            last = self.metric(series).await;
            if let Some(value) = last
                && done(value)
            {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{series} is {last:?} after {limit:?}:\n{}", self.stderr());
    }

    /// Sends a signal (`TERM`, `HUP`, `KILL`, …).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Waits (up to 120 s) for the process to end.
    pub async fn wait(mut self) -> Ended {
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the agent did not exit within 120 s:\n{}", self.stderr()))
            .expect("wait for the agent");
        Ended { code: status.code(), stderr: self.stderr() }
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn stop(self) -> Ended {
        self.signal("TERM");
        self.wait().await
    }

    /// Kills it with SIGKILL (no shutdown, no flush) and waits.
    pub async fn kill(self) -> Ended {
        self.signal("KILL");
        let ended = self.wait().await;
        assert_eq!(ended.code, None, "killed by a signal");
        ended
    }
}

/// The runs an agent logged ("run finished"), per journey: each run's start in
/// ms since the epoch (the timestamp of its samples), in log order.
pub fn runs_logged(stderr: &str) -> BTreeMap<String, Vec<i64>> {
    let mut runs: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for line in stderr.lines().filter(|line| line.contains("run finished")) {
        let field = |name: &str| {
            line.split_whitespace().find_map(|word| word.strip_prefix(&format!("{name}="))).map(str::to_owned)
        };
        let (Some(journey), Some(started)) = (field("journey"), field("started_ms")) else {
            panic!("a run line without journey or started_ms: {line}");
        };
        runs.entry(journey).or_default().push(started.parse().expect("started_ms is a number"));
    }
    runs
}

/// The samples of `fediprobe_journey_outcome` VictoriaMetrics holds, per journey:
/// one per run (whatever its outcome), by timestamp; read once at least
/// `at_least` are visible and the count has settled.
pub fn runs_stored(vm: &super::victoria::VictoriaMetrics, at_least: usize) -> BTreeMap<String, Vec<i64>> {
    let mut runs: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (labels, samples) in vm.export_settled("fediprobe_journey_outcome", at_least) {
        runs.entry(labels["journey"].clone()).or_default().extend(samples.iter().map(|(t, _)| *t));
    }
    for timestamps in runs.values_mut() {
        timestamps.sort();
    }
    runs
}
