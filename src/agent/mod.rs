//! The long-running agent behind `fediprobe run`: journeys on their schedules for
//! weeks, samples pushed in the background, health and metrics served, reloads on
//! SIGHUP, and a clean stop on SIGTERM.
//!
//! It wires the other parts together and owns no logic of theirs: the scheduler
//! decides when, the runner runs, `metrics` turns results into samples, the sinks
//! deliver them. Lifecycle:
//!
//! 1. load the config (any error: exit 2, nothing started);
//! 2. start the sinks, the schedules and the HTTP server;
//! 3. on SIGHUP, load the config again: if it is valid, the schedules are replaced
//!    (runs in flight finish); if not, every diagnostic is logged and the old
//!    config keeps running;
//! 4. on SIGTERM or SIGINT, stop scheduling, let runs in flight finish within the
//!    grace period (then cancel them: their cleanup still runs), flush or spool
//!    every sample, and exit 0.

mod http;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::runner::{RunResult, Runner, targets_from_config};
use crate::scheduler::{Runs, Schedules};
use crate::sink::exposition::Exposition;
use crate::sink::remote_write::{FlushReport, Sink};
use crate::spec::{self, Loaded};

/// What `fediprobe run` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    /// Overrides the config's `remote_write.url`.
    pub remote_write_url: Option<url::Url>,
    /// Overrides the config's `agent.listen`.
    pub listen: Option<SocketAddr>,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    InvalidConfig(String),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Sink(String),
}

/// State shared with the HTTP handlers.
pub(crate) struct Shared {
    pub exposition: Exposition,
    pub sink: Option<Sink>,
    pub runs: Runs,
    pub generation: Mutex<Generation>,
    pub push_interval: Duration,
    pub started: std::time::Instant,
}

/// The config now running and its schedules.
pub(crate) struct Generation {
    pub schedules: Schedules,
    /// The runner the schedules use, for the leftover sweep.
    pub runner: Arc<Runner>,
    /// How old a marked status must be to be swept: the longest journey deadline.
    pub sweep_min_age: Duration,
    pub region: String,
    pub journeys: usize,
    /// The journey files and folders the config names, watched for changes.
    pub journey_paths: Vec<PathBuf>,
    /// How often to look for changed files (`agent.reload_check`; zero: never).
    pub reload_check: Duration,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

fn load(path: &std::path::Path) -> Result<Loaded, String> {
    match spec::load_config(path) {
        Ok(loaded) => {
            for warning in loaded.warnings.iter() {
                tracing::warn!("{warning}");
            }
            Ok(loaded)
        }
        Err(diagnostics) => Err(format!("{diagnostics}{} errors in {}", diagnostics.error_count(), path.display())),
    }
}

/// Runs the agent until SIGTERM or SIGINT. Returns the final flush's report.
pub async fn run(options: Options) -> Result<FlushReport, StartError> {
    let loaded = load(&options.config).map_err(StartError::InvalidConfig)?;
    let agent = loaded.config.agent.clone();
    let listen = options.listen.unwrap_or(agent.listen);

    let (sink, flush_timeout) = match crate::wiring::remote_write_options(
        loaded.config.remote_write.as_ref(),
        options.remote_write_url.as_ref(),
    )
    .map_err(StartError::Sink)?
    {
        Some((sink_options, flush_timeout)) => {
            (Some(Sink::new(sink_options).map_err(|e| StartError::Sink(e.to_string()))?), flush_timeout)
        }
        None => {
            tracing::warn!("no remote_write in the config: samples are only served on /metrics");
            (None, Duration::ZERO)
        }
    };
    let background = sink.as_ref().map(|s| s.spawn_background(agent.push_interval));

    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| StartError::Listen { address: listen, source })?;
    let runs = Runs::new(agent.max_concurrent_runs);
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let generation = start_generation(&loaded, &runs, &results_tx, 0, 0);
    let shared = Arc::new(Shared {
        exposition: Exposition::new(),
        sink: sink.clone(),
        runs: runs.clone(),
        generation: Mutex::new(generation),
        push_interval: agent.push_interval,
        started: std::time::Instant::now(),
    });
    let consumer = tokio::spawn(consume(results_rx, shared.clone()));
    let sweeper = tokio::spawn(sweep_leftovers(shared.clone()));
    let server = tokio::spawn(http::serve(listener, shared.clone()));
    tracing::info!(address = %listen, journeys = loaded.journeys.len(), "fediprobe agent running");

    wait_for_signals(&options, &shared, &runs, &results_tx).await;

    // Shutdown: no new runs, runs in flight finish (or are cancelled after the
    // grace period), every result reaches the sinks, the sink flushes or spools.
    lock(&shared.generation).schedules.stop();
    drop(results_tx);
    let cancelled = runs.drain(agent.shutdown_grace).await;
    if cancelled {
        tracing::warn!("some runs were cancelled at shutdown; their cleanup ran");
    }
    lock(&shared.generation).schedules.stop();
    let _ = consumer.await;
    server.abort();
    sweeper.abort();
    let report = match background {
        Some(task) => task.shutdown(flush_timeout).await,
        None => FlushReport::default(),
    };
    tracing::info!(
        delivered = report.delivered,
        spooled = report.spooled,
        dropped = report.dropped,
        rejected = report.rejected,
        "fediprobe agent stopped"
    );
    Ok(report)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn start_generation(
    loaded: &Loaded,
    runs: &Runs,
    results: &mpsc::UnboundedSender<RunResult>,
    reloads_ok: u64,
    reloads_failed: u64,
) -> Generation {
    let control = crate::wiring::control_target(&loaded.config);
    let runner = Arc::new(Runner::new(targets_from_config(&loaded.config)).with_control_target(control));
    for target in runner.targets() {
        if let Err(e) = &target.token {
            tracing::warn!(instance = %target.name, "{e}; its journeys will end in probe_error");
        }
    }
    let schedules = Schedules::start(
        loaded.journeys.clone(),
        runner.clone(),
        runs,
        &loaded.config.probe.name,
        loaded.config.agent.spread,
        results.clone(),
    );
    Generation {
        schedules,
        runner,
        sweep_min_age: crate::wiring::sweep_min_age(&loaded.journeys),
        region: loaded.config.probe.region.clone(),
        journeys: loaded.journeys.len(),
        journey_paths: loaded.config.journeys.clone(),
        reload_check: loaded.config.agent.reload_check,
        reloads_ok,
        reloads_failed,
    }
}

#[cfg(unix)]
async fn wait_for_signals(options: &Options, shared: &Shared, runs: &Runs, results: &mpsc::UnboundedSender<RunResult>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hangup), Ok(mut terminate), Ok(mut interrupt)) =
        (signal(SignalKind::hangup()), signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot listen for signals; stopping");
        return;
    };
    // Files are looked at every `reload_check`; a tick that never fires when it is off.
    let check_every = lock(&shared.generation).reload_check;
    let mut check =
        tokio::time::interval(if check_every.is_zero() { Duration::from_secs(86_400 * 365) } else { check_every });
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = files_fingerprint(&options.config, &lock(&shared.generation).journey_paths);
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                reload(options, shared, runs, results, "SIGHUP");
                seen = files_fingerprint(&options.config, &lock(&shared.generation).journey_paths);
            }
            _ = check.tick(), if !check_every.is_zero() => {
                let paths = lock(&shared.generation).journey_paths.clone();
                if files_fingerprint(&options.config, &paths) != seen {
                    reload(options, shared, runs, results, "the config or a journey file changed");
                    // Whatever the outcome, these contents were looked at; a reload
                    // may also point at other journey folders.
                    seen = files_fingerprint(&options.config, &lock(&shared.generation).journey_paths);
                }
            }
            _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); return; }
            _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); return; }
        }
    }
}

/// A fingerprint of the config file and of every journey file under `paths`
/// (their contents, not their times: a Kubernetes ConfigMap update swaps a
/// symlink, and editors may keep the mtime). Unreadable files count as empty.
fn files_fingerprint(config: &std::path::Path, paths: &[PathBuf]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(config).unwrap_or_default().hash(&mut hasher);
    for path in paths {
        let mut files: Vec<PathBuf> = if path.is_dir() {
            std::fs::read_dir(path).into_iter().flatten().flatten().map(|e| e.path()).collect()
        } else {
            vec![path.clone()]
        };
        files.sort();
        for file in files {
            file.hash(&mut hasher);
            std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
        }
    }
    hasher.finish()
}

#[cfg(not(unix))]
async fn wait_for_signals(_: &Options, _: &Shared, _: &Runs, _: &mpsc::UnboundedSender<RunResult>) {
    let _ = tokio::signal::ctrl_c().await;
}

/// Loads the config again; keeps the old one running when the new one is invalid.
fn reload(options: &Options, shared: &Shared, runs: &Runs, results: &mpsc::UnboundedSender<RunResult>, why: &str) {
    let mut generation = lock(&shared.generation);
    match load(&options.config) {
        Err(diagnostics) => {
            generation.reloads_failed += 1;
            tracing::error!("{why}: the new config is invalid; the old one keeps running\n{diagnostics}");
        }
        Ok(loaded) => {
            let (ok, failed) = (generation.reloads_ok + 1, generation.reloads_failed);
            generation.schedules.stop();
            *generation = start_generation(&loaded, runs, results, ok, failed);
            tracing::info!(journeys = loaded.journeys.len(), "{why}: config reloaded");
            if loaded.config.agent != crate::spec::config::AgentConfig::default()
                || loaded.config.remote_write.is_some()
            {
                tracing::info!("changes to `agent` and `remote_write` take effect at the next restart");
            }
        }
    }
}

/// How often the agent sweeps leftover statuses, after the sweep at start
/// (`check` counts it against the rate limits).
const SWEEP_EVERY: Duration = crate::spec::limits::AGENT_SWEEP_EVERY;

/// Deletes leftover statuses (see `runner::sweep`) at start and then every
/// [`SWEEP_EVERY`], with the config running at the time.
async fn sweep_leftovers(shared: Arc<Shared>) {
    loop {
        let (runner, min_age) = {
            let generation = lock(&shared.generation);
            (generation.runner.clone(), generation.sweep_min_age)
        };
        crate::wiring::sweep(&runner, min_age).await;
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}

/// Turns each result into samples for the sinks, and logs one line per run.
async fn consume(mut results: mpsc::UnboundedReceiver<RunResult>, shared: Arc<Shared>) {
    while let Some(result) = results.recv().await {
        let region = lock(&shared.generation).region.clone();
        tracing::info!(
            journey = %result.journey,
            instance = %result.instance,
            outcome = result.outcome.as_str(),
            reason = result.reason.map(|r| r.as_str()).unwrap_or(""),
            duration_ms = (result.duration.as_secs_f64() * 1000.0).round() as u64,
            failed_step = result.failed_step.as_deref().unwrap_or(""),
            "run finished"
        );
        let samples = crate::metrics::samples_for_run(&result, &region);
        shared.exposition.observe(&samples);
        if let Some(sink) = &shared.sink {
            sink.push(samples).await;
        }
    }
}
