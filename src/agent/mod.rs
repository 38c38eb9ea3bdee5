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
//! 4. on SIGTERM or SIGINT, start no run any more (a slot whose run was still
//!    waiting for a place under the cap is a skipped slot), let runs in flight
//!    finish within `shutdown_grace` (then cancel them: their cleanup gets
//!    [`CLEANUP_BOUND`] more, then they are abandoned to the next start's leftover
//!    sweep), flush or spool every sample within `flush_timeout`, and exit 0. The
//!    whole shutdown takes at most [`shutdown_bound`], which the Deployment's
//!    `terminationGracePeriodSeconds` must cover.
//!
//! # Readiness
//!
//! The agent serves no traffic, so readiness only says whether the config loaded
//! and the schedules run: `/readyz` answers 200 from the moment the endpoints are
//! up until shutdown begins (then 503), and nothing else changes it. A backend
//! outage does not make the agent unready, so it can never stall a rollout, and
//! the answer never flaps. Undelivered samples show where they belong: in the
//! backlog metrics (`fediprobe_remote_write_oldest_undelivered_age_seconds`, …)
//! and the generated `FediprobeSamplesUndelivered` alert.
//!
//! # Time
//!
//! Every time of day the agent and its schedules read comes from the
//! [`Clock`] in [`Options`], so tests run the agent on tokio's paused time.

mod http;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::runner::{RunResult, Runner, targets_from_config};
use crate::scheduler::{Clock, RunJourney, Runs, Schedules, SystemClock};
use crate::sink::exposition::Exposition;
use crate::sink::remote_write::{FlushReport, Sink};
use crate::spec::config::{AgentConfig, RemoteWriteConfig};
use crate::spec::{self, Loaded};

/// How long cancelled runs' cleanup may take at shutdown before they are
/// abandoned: one cleanup step at its default 10 s timeout, plus the 2 s check of
/// the probe's own network, with a margin. What an abandoned run posted carries
/// its marker, and the next start's leftover sweep deletes it.
pub const CLEANUP_BOUND: Duration = Duration::from_secs(15);

/// The longest a shutdown takes, from SIGTERM to exit: runs finish within
/// `shutdown_grace`, cancelled ones clean up within [`CLEANUP_BOUND`], the last
/// push takes at most `flush_timeout` (zero without remote write). With the
/// defaults, 30 + 15 + 30 = 75 s; a Deployment's `terminationGracePeriodSeconds`
/// must be at least this (the bundled one has 80).
pub fn shutdown_bound(agent: &AgentConfig, remote_write: Option<&RemoteWriteConfig>) -> Duration {
    agent.shutdown_grace + CLEANUP_BOUND + remote_write.map_or(Duration::ZERO, |rw| rw.flush_timeout)
}

/// What `fediprobe run` was asked to do.
#[derive(Clone)]
pub struct Options {
    pub config: PathBuf,
    /// Overrides the config's `remote_write.url`.
    pub remote_write_url: Option<url::Url>,
    /// Overrides the config's `agent.listen`.
    pub listen: Option<SocketAddr>,
    /// Where the time of day comes from (the system's clock; tests: tokio's).
    pub clock: Arc<dyn Clock>,
    /// Runs the journeys instead of the runner the config describes (tests of
    /// the agent's life on paused time, where no real network may be waited on).
    pub runner: Option<Arc<dyn RunJourney>>,
    /// Cancelled to stop the agent as SIGTERM does (tests, embedding).
    pub shutdown: CancellationToken,
}

impl Options {
    /// Options for `config` with every default: the system clock, the runner
    /// the config describes, stopped by signals.
    pub fn new(config: PathBuf) -> Options {
        Options {
            config,
            remote_write_url: None,
            listen: None,
            clock: Arc::new(SystemClock),
            runner: None,
            shutdown: CancellationToken::new(),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("config", &self.config)
            .field("remote_write_url", &self.remote_write_url)
            .field("listen", &self.listen)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config or a journey is invalid: every diagnostic, then a count.
    #[error("{0}")]
    InvalidConfig(InvalidConfig),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
    /// The remote-write credentials cannot be read.
    #[error(transparent)]
    Secret(#[from] crate::wiring::RemoteWriteSecretError),
    /// The remote-write sink cannot be built (a bad URL or header, the spool).
    #[error("remote write: {0}")]
    Sink(#[from] crate::sink::remote_write::SinkError),
    /// SIGHUP, SIGTERM or SIGINT cannot be listened for.
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
    /// The thread or runtime the runs execute on cannot be started.
    #[error("cannot start the runs' runtime: {0}")]
    Runtime(std::io::Error),
}

/// The thread the agent's runs execute on, with a single-threaded runtime of its
/// own. Everything else the agent does (the scheduler's timers, the per-run log
/// line and samples, `/metrics`, remote-write pushes, the leftover sweep) stays on
/// the main runtime, so a run's clock sees only the network and the server: a
/// response wakes the thread that timestamps it, as curl's does, and that thread
/// is never busy encoding a scrape or writing a log line. Runs are I/O-bound and
/// capped by `max_concurrent_runs`; one thread carries them (1 000 runs a minute
/// use about 2 % of it).
struct RunsThread {
    handle: tokio::runtime::Handle,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunsThread {
    fn start() -> std::io::Result<RunsThread> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let thread = std::thread::Builder::new().name("fediprobe-runs".to_owned()).spawn(move || {
            // Runs abandoned at shutdown are dropped with the runtime, on this thread.
            runtime.block_on(stopped.cancelled());
        })?;
        Ok(RunsThread { handle, stop, thread: Some(thread) })
    }

    /// Stops the runtime (after the drain: only abandoned runs are left on it)
    /// and waits for its thread, off the async workers.
    async fn stop(mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for RunsThread {
    /// An agent that returns early (or panics) does not leave the thread behind.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A config (or one of its journeys) that did not load: its diagnostics, shown
/// with the count of errors and the file.
#[derive(Debug, thiserror::Error)]
#[error("{diagnostics}{} in {}", crate::spec::diag::count(diagnostics.error_count(), "error"), path.display())]
pub struct InvalidConfig {
    /// The config file.
    pub path: std::path::PathBuf,
    /// Everything wrong with it.
    pub diagnostics: spec::Diagnostics,
}

/// State shared with the HTTP handlers.
pub(crate) struct Shared {
    pub exposition: Exposition,
    pub sink: Option<Sink>,
    pub runs: Runs,
    pub generation: Mutex<Generation>,
    /// Set when shutdown begins: `/readyz` answers 503 from then on.
    pub stopping: AtomicBool,
    pub clock: Arc<dyn Clock>,
    /// The `agent` and `remote_write` settings the process started with: a
    /// reload cannot change them, and says so only when they changed.
    pub started_with: (AgentConfig, Option<RemoteWriteConfig>),
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

fn load(path: &std::path::Path) -> Result<Loaded, InvalidConfig> {
    match spec::load_config(path) {
        Ok(loaded) => {
            for warning in loaded.warnings.iter() {
                tracing::warn!("{warning}");
            }
            Ok(loaded)
        }
        Err(diagnostics) => Err(InvalidConfig { path: path.to_owned(), diagnostics }),
    }
}

/// Runs the agent until SIGTERM or SIGINT (or `options.shutdown`). Returns the
/// final flush's report.
pub async fn run(options: Options) -> Result<FlushReport, StartError> {
    // Listened for first: until a handler is installed a SIGHUP kills the process
    // (its default action), and a reload sent as soon as `/healthz` answers, or a
    // ConfigMap change at start, must not.
    let signals = Signals::listen().map_err(StartError::Signals)?;
    let loaded = load(&options.config).map_err(StartError::InvalidConfig)?;
    let agent = loaded.config.agent.clone();
    let listen = options.listen.unwrap_or(agent.listen);

    let (sink, flush_timeout) = match crate::wiring::remote_write_options(
        loaded.config.remote_write.as_ref(),
        options.remote_write_url.as_ref(),
    )? {
        Some((sink_options, flush_timeout)) => (Some(Sink::new(sink_options)?), flush_timeout),
        None => {
            tracing::warn!("no remote_write in the config: samples are only served on /metrics");
            (None, Duration::ZERO)
        }
    };
    let background = sink.as_ref().map(|s| s.spawn_background(agent.push_interval));

    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| StartError::Listen { address: listen, source })?;
    // The runner's runs get a thread and a runtime of their own; a stand-in runner
    // (tests on paused time) stays on the runtime whose clock the test controls.
    let runs_thread = match options.runner {
        None => Some(RunsThread::start().map_err(StartError::Runtime)?),
        Some(_) => None,
    };
    let runs = Runs::new(agent.max_concurrent_runs, options.clock.clone());
    let runs = match &runs_thread {
        Some(thread) => runs.on_runtime(thread.handle.clone()),
        None => runs,
    };
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let generation = start_generation(&loaded, &options, &runs, &results_tx, 0, 0);
    // The files as loaded, taken before `/healthz` answers: a file changed once
    // the agent is up (a ConfigMap update at start, a test) differs from it.
    let seen = files_fingerprint(&options.config, &generation.journey_paths);
    let shared = Arc::new(Shared {
        exposition: Exposition::keeping(crate::metrics::EXPOSED),
        sink: sink.clone(),
        runs: runs.clone(),
        generation: Mutex::new(generation),
        stopping: AtomicBool::new(false),
        clock: options.clock.clone(),
        started_with: (agent.clone(), loaded.config.remote_write.clone()),
    });
    shared.exposition.register_collector(Box::new(http::ScheduleSeries::of(&shared)));
    let consumer_stop = CancellationToken::new();
    let consumer = tokio::spawn(consume(results_rx, shared.clone(), consumer_stop.clone()));
    let sweeper = tokio::spawn(sweep_leftovers(shared.clone()));
    let server = tokio::spawn(http::serve(listener, shared.clone()));
    tracing::info!(address = %listen, journeys = loaded.journeys.len(), "fediprobe agent running");

    wait_for_signals(signals, seen, &options, &shared, &runs, &results_tx).await;

    // Shutdown, bounded by `shutdown_bound`: no new runs, runs in flight finish
    // (or are cancelled after the grace period, and abandoned after the cleanup
    // bound), every result of a finished run reaches the sinks, the sink flushes
    // or spools.
    shared.stopping.store(true, Ordering::Relaxed);
    runs.stop_starting();
    lock(&shared.generation).schedules.stop();
    drop(results_tx);
    let drained = runs.drain(agent.shutdown_grace, CLEANUP_BOUND).await;
    if drained.cancelled > 0 {
        tracing::warn!(
            cancelled = drained.cancelled,
            abandoned = drained.abandoned,
            "some runs were cancelled at shutdown"
        );
    }
    // Abandoned runs still hold a sender: the consumer takes what was sent and stops.
    consumer_stop.cancel();
    let _ = consumer.await;
    server.abort();
    sweeper.abort();
    if let Some(thread) = runs_thread {
        thread.stop().await;
    }
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
    options: &Options,
    runs: &Runs,
    results: &mpsc::UnboundedSender<RunResult>,
    reloads_ok: u64,
    reloads_failed: u64,
) -> Generation {
    let control = crate::wiring::control_target(&loaded.config);
    let runner = Arc::new(Runner::new(targets_from_config(&loaded.config)).with_control_target(control));
    for target in runner.targets() {
        if let Err(e) = &target.token {
            tracing::warn!(instance = %target.name, account = %target.account, "{e}; its journeys will end in probe_error");
        }
    }
    let runs_journeys: Arc<dyn RunJourney> = match &options.runner {
        Some(injected) => injected.clone(),
        None => runner.clone(),
    };
    // Each journey once per probe account it runs as, each copy on its own slots.
    let schedules = Schedules::start(
        loaded.runs.clone(),
        runs_journeys,
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

/// The signals the agent answers, listened for from its start.
#[cfg(unix)]
struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn listen() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }
}

#[cfg(unix)]
async fn wait_for_signals(
    signals: Signals,
    mut seen: u64,
    options: &Options,
    shared: &Shared,
    runs: &Runs,
    results: &mpsc::UnboundedSender<RunResult>,
) {
    let Signals { mut hangup, mut terminate, mut interrupt } = signals;
    // Files are looked at every `reload_check`; a tick that never fires when it is off.
    let check_every = lock(&shared.generation).reload_check;
    let mut check =
        tokio::time::interval(if check_every.is_zero() { Duration::from_secs(86_400 * 365) } else { check_every });
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A change in the watched folders sets `changed`; without a watcher every
    // check compares the files' metadata.
    let mut changed = false;
    let watch = |shared: &Shared| {
        if check_every.is_zero() {
            return None;
        }
        FileWatch::start(&options.config, &lock(&shared.generation).journey_paths)
    };
    let mut watcher = watch(shared);
    // As the files are now: the first comparison is with them, not with nothing
    // (which read every file again a minute after start).
    let mut seen_stamp = if check_every.is_zero() {
        0
    } else {
        let paths = lock(&shared.generation).journey_paths.clone();
        files_stamp(&options.config, &paths)
    };
    let mut checks: u32 = 0;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                seen = reload_and_fingerprint(options, shared, runs, results, "SIGHUP");
                watcher = watch(shared);
            }
            _ = check.tick(), if !check_every.is_zero() => {
                checks = checks.wrapping_add(1);
                let paths = lock(&shared.generation).journey_paths.clone();
                let mut stamp_moved = || {
                    let stamp = files_stamp(&options.config, &paths);
                    std::mem::replace(&mut seen_stamp, stamp) != stamp
                };
                let due = if watcher.is_some() {
                    // Changes come as events. The metadata is still compared every
                    // `METADATA_EVERY_WATCHED` checks, for file systems whose changes
                    // inotify does not see (a network mount changed from another host).
                    std::mem::take(&mut changed) || (checks.is_multiple_of(METADATA_EVERY_WATCHED) && stamp_moved())
                } else {
                    // The files' metadata, one `stat` each; their contents only when it
                    // changed, or every `CONTENTS_EVERY` checks (a rewrite of the same
                    // size within the file system's timestamp tick leaves it as it was).
                    // Reading a thousand journey files every 10 s was a third of the
                    // agent's CPU, and their `stat` alone 15 %: hence the watcher.
                    stamp_moved() | (checks.is_multiple_of(CONTENTS_EVERY))
                };
                if due && files_fingerprint(&options.config, &paths) != seen {
                    seen = reload_and_fingerprint(options, shared, runs, results, "the config or a journey file changed");
                    watcher = watch(shared);
                }
            }
            event = FileWatch::next_of(&mut watcher) => match event {
                Some(relevant) => changed |= relevant,
                None => {
                    tracing::warn!("the config's and journeys' folders are no longer watched; comparing every file's \
                                    metadata every reload_check instead");
                    watcher = None;
                }
            },
            _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); return; }
            _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); return; }
            () = options.shutdown.cancelled() => { tracing::info!("asked to stop"); return; }
        }
    }
}

/// Reloads, and returns the fingerprint of the files as they were *before*
/// the reload read them: a file changed while reloading then differs from it,
/// and the next check reloads again instead of taking the change as seen.
/// (When the reload points at other journey folders, those are fingerprinted
/// afresh.)
fn reload_and_fingerprint(
    options: &Options,
    shared: &Shared,
    runs: &Runs,
    results: &mpsc::UnboundedSender<RunResult>,
    why: &str,
) -> u64 {
    let paths_before = lock(&shared.generation).journey_paths.clone();
    let before = files_fingerprint(&options.config, &paths_before);
    reload(options, shared, runs, results, why);
    let paths_after = lock(&shared.generation).journey_paths.clone();
    if paths_after == paths_before { before } else { files_fingerprint(&options.config, &paths_after) }
}

/// Without a watcher: how many reload checks may pass on unchanged metadata
/// before the files' contents are read anyway. With the default `reload_check`,
/// once a minute.
#[cfg(unix)]
const CONTENTS_EVERY: u32 = 6;

/// With a watcher: how often the metadata is compared beside the events, a
/// safety net for network mounts (every 5 minutes with the default
/// `reload_check`). A `stat` of a thousand journey files is about 18 ms of CPU on
/// a VM: once a minute, 4 % of an agent's CPU at 1 000 runs a minute.
#[cfg(unix)]
const METADATA_EVERY_WATCHED: u32 = 30;

/// A fingerprint of the config file and of every journey file under `paths`
/// (their contents, not their times: a Kubernetes ConfigMap update swaps a
/// symlink, and editors may keep the mtime). Unreadable files count as empty.
fn files_fingerprint(config: &std::path::Path, paths: &[PathBuf]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(config).unwrap_or_default().hash(&mut hasher);
    for_each_file(paths, |file| {
        file.hash(&mut hasher);
        std::fs::read(file).unwrap_or_default().hash(&mut hasher);
    });
    hasher.finish()
}

/// The folders holding the config and the journey files (not their subfolders),
/// watched with inotify on the agent's runtime (no thread of its own). A change
/// to one of the files the agent reads there — written and closed, created,
/// deleted, renamed over, a Kubernetes ConfigMap's `..data` symlink swapped —
/// is a reason to read the files at the next check. Writes to other files there
/// (a log beside the config) are not even reported: the watch asks for entries
/// changing and files closed after writing, not for every write.
#[cfg(target_os = "linux")]
struct FileWatch {
    events: inotify::EventStream<Vec<u8>>,
    /// Each watch's folder, and whether it is a journey folder (where every
    /// `*.yaml`/`*.yml` counts) or holds only named files (the config, journey
    /// files given one by one).
    folders: Vec<(inotify::WatchDescriptor, PathBuf, bool)>,
    named: Vec<PathBuf>,
}

#[cfg(target_os = "linux")]
impl FileWatch {
    /// `None`, with a warning, when the folders cannot be watched (inotify's
    /// limits reached, a folder missing): the checks then compare every file's
    /// metadata.
    fn start(config: &std::path::Path, paths: &[PathBuf]) -> Option<FileWatch> {
        use inotify::WatchMask;
        let mut named: Vec<PathBuf> = vec![config.to_path_buf()];
        let mut folders: Vec<(PathBuf, bool)> = Vec::new();
        for path in paths {
            if path.is_dir() {
                folders.push((path.clone(), true));
            } else {
                named.push(path.clone());
            }
        }
        for file in &named {
            let folder = folder_of(file);
            if !folders.iter().any(|(f, _)| *f == folder) {
                folders.push((folder, false));
            }
        }
        let mask = WatchMask::CLOSE_WRITE
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF;
        let started = (|| {
            let inotify = inotify::Inotify::init()?;
            let mut watched = Vec::new();
            for (folder, journeys) in folders {
                watched.push((inotify.watches().add(&folder, mask)?, folder, journeys));
            }
            Ok::<_, std::io::Error>(FileWatch {
                events: inotify.into_event_stream(vec![0; 4096])?,
                folders: watched,
                named,
            })
        })();
        match started {
            Ok(watch) => Some(watch),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot watch the config's and journeys' folders for changes; comparing every file's metadata \
                     every reload_check instead"
                );
                None
            }
        }
    }

    /// The next event of `watch`: whether it changed a file the agent reads;
    /// `None` when the watch ended. Never ready without a watch.
    async fn next_of(watch: &mut Option<FileWatch>) -> Option<bool> {
        use futures_util::StreamExt as _;
        use inotify::EventMask;
        let Some(watch) = watch else { return std::future::pending().await };
        let event = match watch.events.next().await? {
            Ok(event) => event,
            // A failed read may have lost a change.
            Err(_) => return Some(true),
        };
        // Events were lost, or a watched folder itself went or moved.
        if event
            .mask
            .intersects(EventMask::Q_OVERFLOW | EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED)
        {
            return Some(true);
        }
        let (Some(name), Some((_, folder, journeys))) =
            (event.name, watch.folders.iter().find(|(wd, _, _)| *wd == event.wd))
        else {
            return Some(false);
        };
        Some(
            // A ConfigMap's `..data`, `..data_tmp` and `..<timestamp>` entries.
            name.to_string_lossy().starts_with("..")
                || watch.named.iter().any(|n| n.file_name() == Some(name.as_os_str()) && folder_of(n) == *folder)
                || (*journeys && crate::spec::load::is_journey_file_name(std::path::Path::new(&name))),
        )
    }
}

/// Where inotify is not (other Unixes): no watch, the checks compare metadata.
#[cfg(not(target_os = "linux"))]
struct FileWatch;

#[cfg(not(target_os = "linux"))]
impl FileWatch {
    fn start(_: &std::path::Path, _: &[PathBuf]) -> Option<FileWatch> {
        None
    }

    async fn next_of(_: &mut Option<FileWatch>) -> Option<bool> {
        std::future::pending().await
    }
}

/// The folder a file is in (`.` for a bare name).
#[cfg(target_os = "linux")]
fn folder_of(path: &std::path::Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A fingerprint of the same files' metadata, as `stat` gives it through their
/// symlinks: device, inode, size, modification and change times. A ConfigMap's
/// swapped symlink leads to another inode; an edit changes the change time even
/// when the editor keeps the modification time. Unreadable files count as absent.
#[cfg(unix)]
fn files_stamp(config: &std::path::Path, paths: &[PathBuf]) -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut stamp = |file: &std::path::Path| {
        file.hash(&mut hasher);
        if let Ok(m) = std::fs::metadata(file) {
            (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()).hash(&mut hasher);
        }
    };
    stamp(config);
    for_each_file(paths, stamp);
    hasher.finish()
}

/// Every journey file under `paths` (a folder's entries, or the file itself), in order.
fn for_each_file(paths: &[PathBuf], mut each: impl FnMut(&std::path::Path)) {
    for path in paths {
        let mut files: Vec<PathBuf> = if path.is_dir() {
            // The files the loader reads there: a log or spool in a journey folder
            // changes all the time and is no reason to reload.
            std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| crate::spec::load::is_journey_file_name(p))
                .collect()
        } else {
            vec![path.clone()]
        };
        files.sort();
        for file in &files {
            each(file);
        }
    }
}

/// Ctrl-C is listened for when it is awaited.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn listen() -> std::io::Result<Signals> {
        Ok(Signals)
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(
    _: Signals,
    _: u64,
    options: &Options,
    _: &Shared,
    _: &Runs,
    _: &mpsc::UnboundedSender<RunResult>,
) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = options.shutdown.cancelled() => {}
    }
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
            *generation = start_generation(&loaded, options, runs, results, ok, failed);
            tracing::info!(journeys = loaded.journeys.len(), "{why}: config reloaded");
            let (agent, remote_write) = &shared.started_with;
            if loaded.config.agent != *agent || loaded.config.remote_write != *remote_write {
                tracing::warn!("changes to `agent` and `remote_write` take effect at the next restart");
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

/// How long the results of runs wait to be recorded together. Recording each run as
/// it ended woke the agent's main thread once per run, and a thread's wake-up is
/// most of the cost of recording a run; batched, 1 000 runs a minute wake it about
/// twice a second. Runs are timed and stamped when they happen: only their log
/// lines, `/metrics` and the push queue see them up to this much later.
const RECORD_EVERY: Duration = Duration::from_millis(500);

/// Turns each result into samples for the sinks, and logs one line per run, the
/// results that arrived within [`RECORD_EVERY`] of each other together. Ends when
/// every sender is gone, or when `stop` is cancelled (after taking every result
/// already sent).
async fn consume(mut results: mpsc::UnboundedReceiver<RunResult>, shared: Arc<Shared>, stop: CancellationToken) {
    let mut batch = Vec::new();
    loop {
        let result = tokio::select! {
            result = results.recv() => result,
            () = stop.cancelled() => {
                results.close();
                results.recv().await
            }
        };
        let Some(result) = result else { return };
        batch.push(result);
        while let Ok(result) = results.try_recv() {
            batch.push(result);
        }
        record(&shared, &mut batch).await;
        tokio::select! {
            () = tokio::time::sleep(RECORD_EVERY) => {}
            () = stop.cancelled() => {}
        }
    }
}

/// Logs and records the runs in `batch` (in the order they ended), leaving it empty.
async fn record(shared: &Shared, batch: &mut Vec<RunResult>) {
    let region = lock(&shared.generation).region.clone();
    let mut samples = Vec::new();
    crate::secret::ScrubbedStderr::together(|| {
        for result in batch.drain(..) {
            tracing::info!(
                journey = %result.journey,
                instance = %result.instance,
                started_ms = result.started_at.timestamp_millis(),
                outcome = result.outcome.as_str(),
                reason = result.reason.map(|r| r.as_str()).unwrap_or(""),
                // To the microsecond: whole milliseconds hid the spread of fast runs.
                duration_ms = (result.duration.as_secs_f64() * 1e6).round() / 1e3,
                failed_step = result.failed_step.as_deref().unwrap_or(""),
                "run finished"
            );
            samples.extend(crate::metrics::samples_for_run(&result, &region));
        }
    });
    shared.exposition.observe(&samples);
    if let Some(sink) = &shared.sink {
        sink.push(samples).await;
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Whether a change to a file the agent reads is reported within 5 s.
    async fn flagged(watch: &mut Option<FileWatch>) -> bool {
        tokio::time::timeout(Duration::from_secs(5), async { while FileWatch::next_of(watch).await != Some(true) {} })
            .await
            .is_ok()
    }

    /// Whether nothing that counts is reported within 300 ms.
    async fn quiet(watch: &mut Option<FileWatch>) -> bool {
        tokio::time::timeout(Duration::from_millis(300), async {
            while FileWatch::next_of(watch).await != Some(true) {}
        })
        .await
        .is_err()
    }

    #[tokio::test]
    async fn the_watch_reports_changes_to_the_files_read_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("fediprobe.yaml");
        let journeys = dir.path().join("journeys");
        std::fs::create_dir(&journeys).unwrap();
        std::fs::write(&config, "probe: {}\n").unwrap();
        let journey = journeys.join("home.yaml");
        std::fs::write(&journey, "name: home\n").unwrap();
        let mut watch = FileWatch::start(&config, std::slice::from_ref(&journeys));
        assert!(watch.is_some(), "a watch");

        // Our own reads (the contents check) are not changes.
        files_fingerprint(&config, std::slice::from_ref(&journeys));
        assert!(quiet(&mut watch).await, "reading the files is no change");
        // Other files beside the config or among the journeys (a log, a spool).
        let mut log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        std::fs::write(journeys.join("notes.txt"), "not a journey\n").unwrap();
        std::fs::create_dir(dir.path().join("spool")).unwrap();
        assert!(quiet(&mut watch).await, "files the agent does not read are no change");
        // A log written to while open is not even an event.
        use std::io::Write as _;
        writeln!(log, "a line").unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), FileWatch::next_of(&mut watch)).await.is_err(),
            "writes to an open file are not reported"
        );

        // An in-place edit of the same size.
        std::fs::write(&journey, "name: hone\n").unwrap();
        assert!(flagged(&mut watch).await, "an edit in place");
        // A new file renamed over the journey.
        let next = journeys.join("..home.tmp");
        std::fs::write(&next, "name: home2\n").unwrap();
        std::fs::rename(&next, &journey).unwrap();
        assert!(flagged(&mut watch).await, "a rename over the file");
        // A new journey file.
        std::fs::write(journeys.join("post.yml"), "name: post\n").unwrap();
        assert!(flagged(&mut watch).await, "a new journey file");
        // The config, in its own folder.
        std::fs::write(&config, "probe: { region: eu }\n").unwrap();
        assert!(flagged(&mut watch).await, "the config");
        // A ConfigMap's update: its `..data` symlink swapped.
        std::os::unix::fs::symlink("..2026_11_30", dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        assert!(flagged(&mut watch).await, "a ConfigMap's swapped symlink");
    }

    #[tokio::test]
    async fn a_folder_that_cannot_be_watched_means_no_watch() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone").join("journeys");
        assert!(FileWatch::start(&dir.path().join("fediprobe.yaml"), &[missing]).is_none());
    }
}
