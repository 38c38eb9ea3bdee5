//! The Prometheus remote-write 1.0 sink: delivers [`Sample`]s to VictoriaMetrics or
//! any other remote-write receiver, and loses none that fit the spool.
//!
//! # How samples travel
//!
//! 1. [`Sink::push`] puts samples in a bounded in-memory queue. When the queue is
//!    full, its **oldest** samples spill to the spool directory (or, without one,
//!    are dropped and counted), so the spool always holds older samples than the
//!    queue.
//! 2. [`Sink::flush`] (what `fediprobe once` calls before exiting) first sends the
//!    spool's files, oldest first, then the queue in timestamp order, in batches of
//!    at most `max_batch_samples`. A file is deleted only after the receiver accepted
//!    its samples. What cannot be delivered before the deadline goes to the spool;
//!    what cannot be spooled is dropped and counted in [`FlushReport::dropped`].
//! 3. [`Sink::spawn_background`] (the long-running agent) does the same every
//!    interval, but keeps undelivered samples in the queue between rounds.
//!
//! Retries follow [`RetryPolicy`]: connection errors, timeouts, 5xx and 429 are
//! retried with backoff until the deadline; any other 4xx drops the batch at once.
//!
//! # Files
//!
//! `config.rs` (options), `encode.rs` (protobuf + snappy), `service.rs` (HTTP),
//! `retry.rs` (what is retried, backoff), `spool.rs` (the on-disk format).
//!
//! # Replaying old samples
//!
//! Samples keep their original timestamps through the queue and the spool, so a
//! replay after an outage writes them at the time the runs happened.
//! VictoriaMetrics accepts such old timestamps. **A Prometheus receiver rejects
//! samples older than its head block** (roughly the last one to three hours) unless
//! `storage.tsdb.out_of_order_time_window` is set to cover the longest outage you
//! want to survive; without it, a long outage's replay is rejected (counted as
//! rejected, never retried).
//!
//! # Delivery guarantee
//!
//! At least once. A sample leaves the queue or the spool only when the receiver
//! accepted it, rejected it for good, or it was counted as dropped; cancelling a
//! flush puts undelivered samples back in the queue. A request that timed out
//! *after* the receiver stored it is sent again, and the receiver then holds the
//! sample twice; run VictoriaMetrics with `-dedup.minScrapeInterval=1ms` if the
//! `count_over_time` rules must never count such a run twice.

mod config;
pub mod encode;
mod retry;
mod service;
pub mod spool;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use config::{
    Auth, RemoteWriteOptions, default_max_batch_samples, default_queue_capacity_samples, default_spool_max_bytes,
    default_timeout,
};
pub use retry::{
    Disposition, RetryPolicy, default_initial_backoff, default_max_backoff, default_multiplier, parse_retry_after,
};

use super::Sample;
use service::{Attempt, Service};
use spool::Spool;

/// Why a [`Sink`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The URL is unusable (never includes the URL's credentials).
    #[error("remote-write URL is invalid: {0}")]
    InvalidUrl(String),
    /// An extra header has an invalid name or value, or would replace a header the
    /// protocol fixes. The value is not shown: it may be a tenant token.
    #[error("extra header `{name}` is invalid or reserved by remote-write")]
    InvalidHeader {
        /// The header's name as configured.
        name: String,
    },
    /// A numeric option is out of range.
    #[error("remote-write option `{option}` {problem}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The spool directory cannot be created or read.
    #[error("cannot open the spool directory {}: {source}", dir.display())]
    Spool {
        /// The directory.
        dir: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// What one [`Sink::flush`] did with the samples it handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Samples the receiver accepted during this flush (spooled and queued ones).
    pub delivered: u64,
    /// Samples waiting in the spool when the flush returned, to be sent by a later
    /// flush or run (including ones spooled by earlier runs and still undelivered).
    pub spooled: u64,
    /// Samples lost during this flush: undeliverable and unspoolable, or evicted
    /// from a full spool.
    pub dropped: u64,
    /// Samples the receiver refused for good (a 4xx other than 429), during this
    /// flush.
    pub rejected: u64,
}

impl FlushReport {
    /// Whether nothing was lost: `fediprobe once` exits 0 iff this holds.
    pub fn nothing_dropped(&self) -> bool {
        self.dropped == 0
    }
}

/// The sink's counters since it was built, for the agent's own `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Samples the receiver accepted.
    pub sent_samples: u64,
    /// Push requests sent again after a retryable failure.
    pub retried_requests: u64,
    /// Samples written to the spool.
    pub spooled_samples: u64,
    /// Samples lost (no spool, spool write failed, or evicted from a full spool).
    pub dropped_samples: u64,
    /// Samples refused for good: by the receiver (4xx), or invalid at push (no
    /// `__name__`, duplicate label).
    pub rejected_samples: u64,
    /// Samples waiting in memory now.
    pub queue_len: u64,
    /// Bytes in the spool now.
    pub spool_bytes: u64,
    /// When the receiver last accepted a push, in seconds since the Unix epoch.
    pub last_success_unix: Option<i64>,
}

/// A handle on the remote-write sink. Cheap to clone; clones share the queue,
/// the spool and the counters.
#[derive(Debug, Clone)]
pub struct Sink {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: RemoteWriteOptions,
    service: Service,
    /// Lock order: `queue` before `spool`, never the other way round.
    queue: Mutex<VecDeque<Sample>>,
    spool: Option<Mutex<Spool>>,
    /// Held by whoever is sending, so that a flush and the background task never
    /// send the same spool file or interleave batches.
    sending: tokio::sync::Mutex<()>,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    retried: AtomicU64,
    spooled: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    /// 0 means never.
    last_success_unix: AtomicI64,
}

/// What became of one batch.
enum BatchOutcome {
    Delivered,
    Rejected,
    /// The receiver stayed unreachable (or kept answering 5xx/429) until the deadline.
    GaveUp,
}

/// Samples a delivery round took from the queue and has not yet delivered, spooled
/// or rejected. If the round is cancelled (its future dropped: a caller's timeout,
/// the background task stopping), they go back to the front of the queue, so that
/// cancelling a flush never loses samples.
struct Pending<'a> {
    inner: &'a Inner,
    samples: VecDeque<Sample>,
}

impl<'a> Pending<'a> {
    /// Takes the whole queue, in timestamp order (stable, so samples with equal
    /// timestamps keep their push order).
    fn take_queue(inner: &'a Inner) -> Self {
        let mut samples: Vec<Sample> = lock(&inner.queue).drain(..).collect();
        samples.sort_by_key(|sample| sample.timestamp_ms);
        Pending { inner, samples: samples.into() }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.samples.is_empty() {
            requeue(self.inner, std::mem::take(&mut self.samples));
        }
    }
}

/// Puts `samples` back at the front of the queue (they are older than anything
/// pushed meanwhile), spilling the overflow to the spool.
fn requeue(inner: &Inner, samples: VecDeque<Sample>) {
    let mut queue = lock(&inner.queue);
    for sample in samples.into_iter().rev() {
        queue.push_front(sample);
    }
    inner.spill_overflow(&mut queue);
}

/// What a delivery round does with queued samples it could not deliver.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Undelivered {
    /// Write them to the spool (or drop them): the process is about to exit.
    Spool,
    /// Put them back at the front of the queue for the next round.
    Requeue,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sink {
    /// Checks the options, builds the HTTP client and opens the spool (indexing
    /// files left by earlier runs, which the next flush sends first).
    pub fn new(options: RemoteWriteOptions) -> Result<Sink, SinkError> {
        if options.max_batch_samples == 0 {
            return Err(SinkError::InvalidOption { option: "max_batch_samples", problem: "must be at least 1" });
        }
        let service = Service::new(&options)?;
        let spool = match &options.spool_dir {
            None => None,
            // An unusable spool directory (a full disk, a file in its place) must not
            // stop the probe from measuring: it is reported, and samples that cannot
            // be delivered are dropped and counted until the directory can be written.
            Some(dir) => Some(Mutex::new(Spool::open(dir, options.spool_max_bytes).unwrap_or_else(|source| {
                let error = SinkError::Spool { dir: dir.clone(), source };
                tracing::error!(%error, "samples that cannot be delivered will be dropped until the spool can be written");
                Spool::unavailable(dir, options.spool_max_bytes)
            }))),
        };
        Ok(Sink {
            inner: Arc::new(Inner {
                options,
                service,
                queue: Mutex::new(VecDeque::new()),
                spool,
                sending: tokio::sync::Mutex::new(()),
                counters: Counters::default(),
            }),
        })
    }

    /// Enqueues samples for the next flush. Invalid samples (no `__name__`, a
    /// duplicate or empty label name) are logged and counted as rejected. When the
    /// queue exceeds its capacity, its oldest samples spill to the spool.
    pub async fn push(&self, samples: Vec<Sample>) {
        let mut valid = Vec::with_capacity(samples.len());
        for sample in samples {
            match encode::check_sample(&sample) {
                Ok(()) => valid.push(sample),
                Err(error) => {
                    tracing::warn!(%error, metric = sample.name().unwrap_or_default(), "dropping an invalid sample");
                    self.inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let mut queue = lock(&self.inner.queue);
        queue.extend(valid);
        self.inner.spill_overflow(&mut queue);
    }

    /// Delivers everything: the spool's files (oldest first), then the queue, until
    /// `deadline` has passed. What is left goes to the spool; what cannot be spooled
    /// is dropped and counted.
    pub async fn flush(&self, deadline: Duration) -> FlushReport {
        let deadline = Instant::now() + deadline;
        self.inner.deliver(deadline, Undelivered::Spool).await
    }

    /// The counters (for `/metrics`).
    pub fn stats(&self) -> SinkStats {
        let counters = &self.inner.counters;
        let last_success = counters.last_success_unix.load(Ordering::Relaxed);
        SinkStats {
            sent_samples: counters.sent.load(Ordering::Relaxed),
            retried_requests: counters.retried.load(Ordering::Relaxed),
            spooled_samples: counters.spooled.load(Ordering::Relaxed),
            dropped_samples: counters.dropped.load(Ordering::Relaxed),
            rejected_samples: counters.rejected.load(Ordering::Relaxed),
            queue_len: lock(&self.inner.queue).len() as u64,
            spool_bytes: self.inner.spool.as_ref().map_or(0, |spool| lock(spool).total_bytes()),
            last_success_unix: (last_success != 0).then_some(last_success),
        }
    }

    /// Starts the long-running agent's delivery task: every `interval` it sends the
    /// spool and the queue, retrying until the next round is due, and keeps what it
    /// could not deliver in the queue (overflowing to the spool). Stop it with
    /// [`BackgroundTask::shutdown`], which also runs a final [`flush`](Self::flush).
    /// Must be called within a Tokio runtime.
    pub fn spawn_background(&self, interval: Duration) -> BackgroundTask {
        let stop = Arc::new(Notify::new());
        let inner = Arc::clone(&self.inner);
        let task_stop = Arc::clone(&stop);
        let interval = interval.max(Duration::from_millis(10));
        let handle = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = task_stop.notified() => break,
                    () = tokio::time::sleep(interval) => {
                        let deadline = Instant::now() + interval;
                        // Stop promptly even in the middle of a round: the final
                        // flush picks up where the round left off.
                        tokio::select! {
                            () = task_stop.notified() => break,
                            _ = inner.deliver(deadline, Undelivered::Requeue) => {}
                        }
                    }
                }
            }
        });
        BackgroundTask { sink: self.clone(), stop, handle: Some(handle) }
    }
}

/// The running delivery task of [`Sink::spawn_background`]. Dropping it stops the
/// task without a final flush; undelivered samples stay in the sink's queue.
#[derive(Debug)]
pub struct BackgroundTask {
    sink: Sink,
    stop: Arc<Notify>,
    handle: Option<JoinHandle<()>>,
}

impl BackgroundTask {
    /// Stops the task and flushes what is left, like [`Sink::flush`].
    pub async fn shutdown(mut self, deadline: Duration) -> FlushReport {
        self.stop.notify_one();
        if let Some(handle) = self.handle.take()
            && let Err(error) = handle.await
        {
            tracing::warn!(%error, "remote-write background task ended abnormally");
        }
        self.sink.flush(deadline).await
    }
}

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        // Ask the task to stop rather than aborting it: a round in progress puts
        // what it has not delivered back into the queue.
        self.stop.notify_one();
    }
}

impl Inner {
    /// Spills the queue's oldest samples to the spool (or drops them) until it is
    /// within capacity, a batch at a time so that spool files stay batch-sized.
    fn spill_overflow(&self, queue: &mut VecDeque<Sample>) {
        let capacity = self.options.queue_capacity_samples;
        while queue.len() > capacity {
            let count = queue.len().min(self.options.max_batch_samples);
            let batch: Vec<Sample> = queue.drain(..count).collect();
            tracing::debug!(samples = batch.len(), "remote-write queue is full; spilling its oldest samples");
            self.spool_or_drop(&batch);
        }
    }

    /// Writes `batch` to the spool; returns how many samples were lost (not
    /// spoolable, or evicted from the full spool).
    fn spool_or_drop(&self, batch: &[Sample]) -> u64 {
        let lost = match &self.spool {
            None => {
                tracing::warn!(samples = batch.len(), "dropping samples: no spool directory is configured");
                batch.len() as u64
            }
            Some(spool) => match lock(spool).write(batch) {
                Ok(evicted) => {
                    self.counters.spooled.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    let evicted_samples: u64 = evicted.iter().map(|file| file.samples).sum();
                    if !evicted.is_empty() {
                        tracing::warn!(
                            files = evicted.len(),
                            samples = evicted_samples,
                            max_bytes = self.options.spool_max_bytes,
                            "spool is full; dropped its oldest files"
                        );
                    }
                    evicted_samples
                }
                Err(error) => {
                    tracing::warn!(%error, samples = batch.len(), "dropping samples: cannot write the spool");
                    batch.len() as u64
                }
            },
        };
        self.counters.dropped.fetch_add(lost, Ordering::Relaxed);
        lost
    }

    /// One delivery round: spool first, then the queue, until `deadline`.
    async fn deliver(&self, deadline: Instant, undelivered: Undelivered) -> FlushReport {
        let _sending = self.sending.lock().await;
        let mut report = FlushReport::default();
        let mut reachable = self.deliver_spool(deadline, &mut report).await;

        let mut pending = Pending::take_queue(self);
        let batch_len = self.options.max_batch_samples;
        while reachable && !pending.samples.is_empty() {
            let count = pending.samples.len().min(batch_len);
            let batch: Vec<Sample> = pending.samples.iter().take(count).cloned().collect();
            match self.send_batch(&batch, deadline).await {
                BatchOutcome::Delivered => report.delivered += count as u64,
                BatchOutcome::Rejected => report.rejected += count as u64,
                BatchOutcome::GaveUp => {
                    reachable = false;
                    continue;
                }
            }
            pending.samples.drain(..count);
        }
        let left_over = std::mem::take(&mut pending.samples);
        if !left_over.is_empty() {
            match undelivered {
                Undelivered::Spool => {
                    let left_over = Vec::from(left_over);
                    for batch in left_over.chunks(batch_len) {
                        report.dropped += self.spool_or_drop(batch);
                    }
                }
                Undelivered::Requeue => requeue(self, left_over),
            }
        }
        report.spooled = self.spool.as_ref().map_or(0, |spool| lock(spool).total_samples());
        report
    }

    /// Sends the spool's files, oldest first, one request each. Returns whether the
    /// receiver is still worth trying (false once a file could not be delivered).
    async fn deliver_spool(&self, deadline: Instant, report: &mut FlushReport) -> bool {
        let Some(spool) = &self.spool else {
            return true;
        };
        // Files already tried in this round; a file is never tried twice per round
        // even if it cannot be deleted or quarantined.
        let mut tried: Vec<PathBuf> = Vec::new();
        loop {
            let next = lock(spool).files().find(|file| !tried.contains(&file.path)).cloned();
            let Some(file) = next else {
                return true;
            };
            let read = Spool::read(&file.path);
            if let Some(damage) = &read.damage {
                if let Err(error) = lock(spool).quarantine(&file.path, damage, &read.samples) {
                    tracing::warn!(file = %file.path.display(), %error, "cannot quarantine a damaged spool file; skipping it");
                    tried.push(file.path);
                }
                // An intact rewrite of the readable part, if any, is picked up next.
                continue;
            }
            tried.push(file.path.clone());
            let mut samples = read.samples;
            samples.sort_by_key(|sample| sample.timestamp_ms);
            let outcome =
                if samples.is_empty() { BatchOutcome::Delivered } else { self.send_batch(&samples, deadline).await };
            match outcome {
                BatchOutcome::Delivered => report.delivered += samples.len() as u64,
                BatchOutcome::Rejected => report.rejected += samples.len() as u64,
                BatchOutcome::GaveUp => return false,
            }
            if let Err(error) = lock(spool).remove(&file.path) {
                tracing::warn!(file = %file.path.display(), %error, "cannot delete a delivered spool file; its samples may be sent again");
            }
        }
    }

    /// Sends one batch, retrying per the [`RetryPolicy`] until `deadline`.
    async fn send_batch(&self, batch: &[Sample], deadline: Instant) -> BatchOutcome {
        let body = Bytes::from(encode::encode_body(batch));
        let samples = batch.len() as u64;
        let mut attempt: u32 = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return BatchOutcome::GaveUp;
            }
            let timeout = self.options.timeout.min(remaining);
            match self.service.send(body.clone(), timeout).await {
                Attempt::Accepted => {
                    self.counters.sent.fetch_add(samples, Ordering::Relaxed);
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX));
                    self.counters.last_success_unix.store(now, Ordering::Relaxed);
                    return BatchOutcome::Delivered;
                }
                Attempt::Rejected { status, body_line } => {
                    tracing::warn!(
                        status,
                        body = %body_line,
                        samples,
                        "remote-write receiver rejected a batch; dropping it (never retried)"
                    );
                    self.counters.rejected.fetch_add(samples, Ordering::Relaxed);
                    return BatchOutcome::Rejected;
                }
                Attempt::Retry { retry_after, reason } => {
                    let wait = self.options.retry.wait_before_retry(attempt, retry_after);
                    if Instant::now() + wait >= deadline {
                        tracing::warn!(%reason, samples, "remote-write receiver still failing at the deadline; keeping the batch");
                        return BatchOutcome::GaveUp;
                    }
                    tracing::debug!(%reason, attempt, wait_ms = wait.as_millis() as u64, "remote-write push failed; retrying");
                    tokio::time::sleep(wait).await;
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }
}
