//! The Prometheus remote-write 1.0 sink: delivers [`Sample`]s to VictoriaMetrics or
//! any other remote-write receiver, and loses none that fit the spool.
//!
//! # How samples travel
//!
//! 1. [`Sink::push`] puts samples in a bounded in-memory queue. When the queue is
//!    full, its **oldest** samples spill to the spool directory, so the spool always
//!    holds older samples than the queue. What cannot be spooled (no spool, an
//!    unwritable one) stays in memory up to the queue's capacity, still deliverable;
//!    only the excess, oldest first, is dropped and counted.
//! 2. A **delivery round** takes the queue, sends the spool's files (oldest first)
//!    and then what it took, in batches of at most `max_batch_samples`. A file is
//!    deleted only after the receiver accepted its samples.
//! 3. **Write-ahead.** As soon as one attempt of a round fails, everything the round
//!    still holds is written to the spool before it retries, and while the
//!    receiver stays unreachable every round writes what it took to the spool
//!    before sending anything. So during an outage memory only ever holds what was
//!    pushed since the last round began: a SIGKILL loses at most one
//!    `push_interval` of samples (plus, at the very start of an outage, those of the
//!    first failing attempt: at once when the receiver refuses connections, up to
//!    `timeout` when it does not answer).
//! 4. [`Sink::flush`] (what `fediprobe once` calls before exiting) is one round
//!    with a deadline; what it could not deliver goes to the spool, and what cannot
//!    be spooled is dropped and counted in [`FlushReport::dropped`].
//!    [`Sink::spawn_background`] (the long-running agent) starts a round every
//!    interval, each with the interval as its deadline.
//! 5. Samples older than `max_sample_age` are never sent: a receiver would store
//!    them nowhere (VictoriaMetrics silently drops what is older than its
//!    retention, and answers 2xx). They are dropped and counted as expired.
//!
//! Retries follow [`RetryPolicy`]: connection errors, timeouts, 5xx and 429 are
//! retried with backoff until the deadline; any other 4xx drops the batch at once.
//!
//! # Files
//!
//! `config.rs` (options), `encode.rs` (protobuf + snappy), `service.rs` (HTTP),
//! `retry.rs` (what is retried, backoff), `spool.rs` (the on-disk format and lock).
//!
//! # Replaying old samples
//!
//! Samples keep their original timestamps through the queue and the spool, so a
//! replay after an outage writes them at the time the runs happened.
//! VictoriaMetrics accepts such old timestamps (within its retention). **A
//! Prometheus receiver rejects samples older than its head block** (roughly the
//! last one to three hours) unless `storage.tsdb.out_of_order_time_window` is set
//! to cover the longest outage you want to survive; without it, a long outage's
//! replay is rejected (counted as rejected, never retried).
//!
//! # Delivery guarantee
//!
//! At least once. A sample leaves the queue or the spool only when the receiver
//! accepted it, rejected it for good, or it was counted as dropped; cancelling a
//! round puts what it held in memory back in the queue. A request that timed out
//! *after* the receiver stored it is sent again, so the receiver may get a sample
//! twice, with the same labels, timestamp and value. The stored result is exactly
//! once when the receiver deduplicates: VictoriaMetrics with
//! `-dedup.minScrapeInterval=1ms` keeps one sample per series per millisecond
//! (fediprobe never writes two samples of a series in one millisecond), on a
//! cluster on both vmselect and vmstorage; vmagent does not deduplicate. A
//! Prometheus receiver stores an identical sample (same series, timestamp and
//! value) once: a resend of a series' newest sample is accepted silently, and a
//! resend older than the series' newest sample is refused as out of order (HTTP
//! 400), which the sink counts as rejected although the first copy is stored, so
//! with Prometheus `rejected_samples_total` can overstate what was lost after a
//! slow push.

mod config;
pub mod encode;
mod retry;
mod service;
pub mod spool;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use config::{
    Auth, RemoteWriteOptions, default_flush_timeout, default_max_batch_samples, default_max_sample_age,
    default_queue_capacity_samples, default_spool_max_bytes, default_timeout,
};
pub use retry::{
    Disposition, RetryPolicy, default_initial_backoff, default_max_backoff, default_multiplier, parse_retry_after,
};

use super::Sample;
use service::{Attempt, Service};
use spool::{OpenError, Spool};

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
    /// Another process uses the spool directory. (A directory that merely cannot
    /// be written is no error: the sink reports it and keeps samples in memory.)
    #[error(transparent)]
    SpoolInUse(OpenError),
}

/// What one [`Sink::flush`] did with the samples it handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Samples the receiver accepted during this flush (spooled and queued ones).
    pub delivered: u64,
    /// Samples waiting in the spool when the flush returned, to be sent by a later
    /// flush or run (including ones spooled by earlier runs and still undelivered).
    pub spooled: u64,
    /// Samples lost during this flush: undeliverable and unspoolable, evicted
    /// from a full spool, or older than `max_sample_age` (those also in `expired`).
    pub dropped: u64,
    /// Of `dropped`, samples older than `max_sample_age`.
    pub expired: u64,
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
    /// Samples lost (no room in memory and none in the spool, evicted from a full
    /// spool, or expired).
    pub dropped_samples: u64,
    /// Of `dropped_samples`, those older than `max_sample_age`.
    pub expired_samples: u64,
    /// Samples refused for good: by the receiver (4xx), or invalid at push (no
    /// `__name__`, duplicate label).
    pub rejected_samples: u64,
    /// Samples waiting in memory now: the queue and what a delivery round holds
    /// in memory (in flight).
    pub queue_len: u64,
    /// Bytes in the spool now.
    pub spool_bytes: u64,
    /// Samples in the spool now (including a file being sent).
    pub spool_samples: u64,
    /// The timestamp (ms since the epoch) of the oldest sample not yet delivered,
    /// in the queue, in flight or in the spool; `None` when nothing waits.
    pub oldest_undelivered_ms: Option<i64>,
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
    /// What a delivery round holds in memory now: how many samples, and the
    /// oldest one's timestamp.
    in_flight: Mutex<(u64, Option<i64>)>,
    /// Whether the receiver's last answer was a failure: rounds then write what
    /// they take to the spool before sending anything.
    failing: AtomicBool,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    retried: AtomicU64,
    spooled: AtomicU64,
    dropped: AtomicU64,
    expired: AtomicU64,
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
    /// The first attempt failed and the caller asked to hear of it at once (to
    /// write the batch ahead to the spool before retrying).
    Failing,
}

/// When [`Inner::send_batch`] returns on a retryable failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Persist {
    /// Retry until the deadline.
    UntilDeadline,
    /// Return [`BatchOutcome::Failing`] after the first failed attempt.
    StopAtFirstFailure,
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
        let mut queue = lock(&inner.queue);
        let mut samples: Vec<Sample> = queue.drain(..).collect();
        samples.sort_by_key(|sample| sample.timestamp_ms);
        let pending = Pending { inner, samples: samples.into() };
        // Published before the queue's lock is released, so that the backlog
        // gauges always find these samples in exactly one place.
        pending.publish();
        drop(queue);
        pending
    }

    /// Tells the gauges what the round holds now.
    fn publish(&self) {
        let oldest = self.samples.front().map(|sample| sample.timestamp_ms);
        *lock(&self.inner.in_flight) = (self.samples.len() as u64, oldest);
    }

    /// Forgets the first `count` samples (delivered, rejected or spooled).
    fn settle(&mut self, count: usize) {
        self.samples.drain(..count.min(self.samples.len()));
        self.publish();
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.samples.is_empty() {
            requeue(self.inner, std::mem::take(&mut self.samples));
        }
        *lock(&self.inner.in_flight) = (0, None);
    }
}

/// Puts `samples` back at the front of the queue (they are older than anything
/// pushed meanwhile), spilling the overflow to the spool.
/// The round no longer holds them: the in-flight gauge is cleared under the
/// queue's lock, so the backlog gauges never count them twice.
fn requeue(inner: &Inner, samples: VecDeque<Sample>) {
    let mut queue = lock(&inner.queue);
    for sample in samples.into_iter().rev() {
        queue.push_front(sample);
    }
    *lock(&inner.in_flight) = (0, None);
    inner.spill_overflow(&mut queue);
}

/// What a delivery round does with samples it holds in memory and could not
/// deliver (nor write ahead to the spool).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Undelivered {
    /// Write them to the spool (or drop them): the process is about to exit.
    Spool,
    /// Put them back at the front of the queue for the next round.
    Requeue,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
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
            Some(dir) => Some(Mutex::new(match Spool::open(dir, options.spool_max_bytes) {
                Ok(spool) => spool,
                // Two processes on one spool would send each other's files twice.
                Err(error @ OpenError::Locked { .. }) => return Err(SinkError::SpoolInUse(error)),
                // An unusable spool directory (a full disk, a file in its place) must
                // not stop the probe from measuring: it is reported, samples wait in
                // memory (up to the queue's capacity) until the directory can be written.
                Err(error @ OpenError::Io { .. }) => {
                    tracing::error!(
                        %error,
                        "samples wait in memory only (a kill loses them) until the spool can be written"
                    );
                    Spool::unavailable(dir, options.spool_max_bytes)
                }
            })),
        };
        Ok(Sink {
            inner: Arc::new(Inner {
                options,
                service,
                queue: Mutex::new(VecDeque::new()),
                spool,
                sending: tokio::sync::Mutex::new(()),
                counters: Counters::default(),
                in_flight: Mutex::new((0, None)),
                failing: AtomicBool::new(false),
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
    /// is dropped and counted. Safe to cancel: what the flush held in memory goes
    /// back to the queue.
    pub async fn flush(&self, deadline: Duration) -> FlushReport {
        let deadline = Instant::now() + deadline;
        self.inner.deliver(deadline, Undelivered::Spool).await
    }

    /// The counters (for `/metrics`).
    pub fn stats(&self) -> SinkStats {
        let counters = &self.inner.counters;
        let last_success = counters.last_success_unix.load(Ordering::Relaxed);
        // Lock order: queue, in flight, spool; the queue's lock is held throughout
        // so that samples moving between the queue and a round are counted once.
        let queue = lock(&self.inner.queue);
        let (in_flight, in_flight_oldest) = *lock(&self.inner.in_flight);
        let queue_oldest = queue.iter().map(|sample| sample.timestamp_ms).min();
        let (spool_bytes, spool_samples, spool_oldest) = match &self.inner.spool {
            None => (0, 0, None),
            Some(spool) => {
                let spool = lock(spool);
                (spool.total_bytes(), spool.total_samples(), spool.oldest_ms())
            }
        };
        SinkStats {
            sent_samples: counters.sent.load(Ordering::Relaxed),
            retried_requests: counters.retried.load(Ordering::Relaxed),
            spooled_samples: counters.spooled.load(Ordering::Relaxed),
            dropped_samples: counters.dropped.load(Ordering::Relaxed),
            expired_samples: counters.expired.load(Ordering::Relaxed),
            rejected_samples: counters.rejected.load(Ordering::Relaxed),
            queue_len: queue.len() as u64 + in_flight,
            spool_bytes,
            spool_samples,
            oldest_undelivered_ms: [queue_oldest, in_flight_oldest, spool_oldest].into_iter().flatten().min(),
            last_success_unix: (last_success != 0).then_some(last_success),
        }
    }

    /// Starts the long-running agent's delivery task: a round starts every
    /// `interval` (at a fixed rate, so that nothing waits in memory longer than one
    /// interval before a round takes it), retries until the next round is due, and
    /// keeps what it could neither deliver nor spool in the queue. Stop it with
    /// [`BackgroundTask::shutdown`], which also runs a final [`flush`](Self::flush).
    /// Must be called within a Tokio runtime.
    pub fn spawn_background(&self, interval: Duration) -> BackgroundTask {
        let stop = Arc::new(Notify::new());
        let inner = Arc::clone(&self.inner);
        let task_stop = Arc::clone(&stop);
        let interval = interval.max(Duration::from_millis(10));
        let handle = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = task_stop.notified() => break,
                    _ = ticks.tick() => {
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
    /// Spills the queue's oldest samples to the spool until it is within capacity,
    /// a batch at a time so that spool files stay batch-sized. What cannot be
    /// spooled stays in the queue up to its capacity (still deliverable); only the
    /// excess, oldest first, is dropped and counted.
    fn spill_overflow(&self, queue: &mut VecDeque<Sample>) {
        let capacity = self.options.queue_capacity_samples;
        while queue.len() > capacity {
            let count = queue.len().min(self.options.max_batch_samples);
            let batch: Vec<Sample> = queue.iter().take(count).cloned().collect();
            tracing::debug!(samples = batch.len(), "remote-write queue is full; spilling its oldest samples");
            if self.try_spool(&batch).is_ok() {
                queue.drain(..count);
                continue;
            }
            let excess = queue.len() - capacity;
            queue.drain(..excess);
            tracing::warn!(
                samples = excess,
                capacity,
                "dropping the oldest samples: the queue is full and they cannot be spooled"
            );
            self.counters.dropped.fetch_add(excess as u64, Ordering::Relaxed);
            break;
        }
    }

    /// Writes `batch` to the spool as one file. Samples that the write evicts from a
    /// full spool are counted as dropped, and their number returned. Fails
    /// (counting nothing) when there is no spool or it cannot be written.
    fn try_spool(&self, batch: &[Sample]) -> Result<u64, ()> {
        let Some(spool) = &self.spool else {
            return Err(());
        };
        match lock(spool).write(batch) {
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
                    self.counters.dropped.fetch_add(evicted_samples, Ordering::Relaxed);
                }
                Ok(evicted_samples)
            }
            Err(error) => {
                tracing::warn!(%error, samples = batch.len(), "cannot write the spool; keeping the samples in memory");
                Err(())
            }
        }
    }

    /// Writes `batch` to the spool, or drops it (counted) when that fails; returns
    /// how many samples were lost.
    fn spool_or_drop(&self, batch: &[Sample]) -> u64 {
        self.try_spool(batch).unwrap_or_else(|()| {
            tracing::warn!(samples = batch.len(), "dropping samples: they can be neither delivered nor spooled");
            self.counters.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
            batch.len() as u64
        })
    }

    /// Writes what the round holds to the spool, batch by batch; what is written
    /// leaves the round (the spool now holds it). Returns whether everything was.
    fn write_ahead(&self, pending: &mut Pending<'_>, report: &mut FlushReport) -> bool {
        while !pending.samples.is_empty() {
            let count = pending.samples.len().min(self.options.max_batch_samples);
            let batch: Vec<Sample> = pending.samples.iter().take(count).cloned().collect();
            match self.try_spool(&batch) {
                Ok(evicted) => report.dropped += evicted,
                Err(()) => return false,
            }
            tracing::debug!(
                samples = count,
                oldest_ms = batch.first().map_or(0, |s| s.timestamp_ms),
                newest_ms = batch.last().map_or(0, |s| s.timestamp_ms),
                "receiver failing: samples written ahead to the spool"
            );
            pending.settle(count);
        }
        true
    }

    /// Drops (and counts) the samples older than `max_sample_age`: from the
    /// round's memory, and whole spool files (older files' samples are filtered
    /// when they are read).
    fn expire(&self, pending: &mut Pending<'_>, report: &mut FlushReport) {
        let cutoff = self.expiry_cutoff_ms();
        let before = pending.samples.len();
        pending.samples.retain(|sample| sample.timestamp_ms >= cutoff);
        let mut expired = (before - pending.samples.len()) as u64;
        pending.publish();
        if let Some(spool) = &self.spool {
            expired += lock(spool).expire_files_before(cutoff);
        }
        self.count_expired(expired, report);
    }

    fn expiry_cutoff_ms(&self) -> i64 {
        now_ms().saturating_sub(i64::try_from(self.options.max_sample_age.as_millis()).unwrap_or(i64::MAX))
    }

    fn count_expired(&self, expired: u64, report: &mut FlushReport) {
        if expired == 0 {
            return;
        }
        tracing::warn!(
            samples = expired,
            max_sample_age = %humantime::format_duration(self.options.max_sample_age),
            "dropping samples older than max_sample_age: a receiver would not keep them"
        );
        self.counters.expired.fetch_add(expired, Ordering::Relaxed);
        self.counters.dropped.fetch_add(expired, Ordering::Relaxed);
        report.expired += expired;
        report.dropped += expired;
    }

    /// One delivery round: spool first, then the queue, until `deadline`.
    async fn deliver(&self, deadline: Instant, undelivered: Undelivered) -> FlushReport {
        let _sending = self.sending.lock().await;
        let mut report = FlushReport::default();
        let mut pending = Pending::take_queue(self);
        self.expire(&mut pending, &mut report);
        // While the receiver is failing, what this round took is on disk before
        // anything is sent: a kill loses nothing the round holds.
        let mut spool_writable = true;
        if self.failing.load(Ordering::Relaxed) {
            spool_writable = self.write_ahead(&mut pending, &mut report);
        }
        let mut reachable = self.deliver_spool(deadline, &mut report).await;

        let batch_len = self.options.max_batch_samples;
        while reachable && !pending.samples.is_empty() {
            let count = pending.samples.len().min(batch_len);
            let batch: Vec<Sample> = pending.samples.iter().take(count).cloned().collect();
            let persist = if spool_writable && self.spool.is_some() {
                Persist::StopAtFirstFailure
            } else {
                Persist::UntilDeadline
            };
            match self.send_batch(&batch, deadline, persist).await {
                BatchOutcome::Delivered => report.delivered += count as u64,
                BatchOutcome::Rejected => report.rejected += count as u64,
                BatchOutcome::GaveUp => {
                    reachable = false;
                    continue;
                }
                BatchOutcome::Failing => {
                    spool_writable = self.write_ahead(&mut pending, &mut report);
                    if spool_writable {
                        reachable = self.deliver_spool(deadline, &mut report).await;
                    }
                    continue;
                }
            }
            pending.settle(count);
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
        drop(pending);
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
            let cutoff = self.expiry_cutoff_ms();
            let before = samples.len();
            samples.retain(|sample| sample.timestamp_ms >= cutoff);
            let expired = (before - samples.len()) as u64;
            samples.sort_by_key(|sample| sample.timestamp_ms);
            let outcome = if samples.is_empty() {
                BatchOutcome::Delivered
            } else {
                self.send_batch(&samples, deadline, Persist::UntilDeadline).await
            };
            match outcome {
                BatchOutcome::Delivered => {
                    tracing::debug!(file = %file.path.display(), samples = samples.len(), "spool file delivered");
                    report.delivered += samples.len() as u64;
                }
                BatchOutcome::Rejected => report.rejected += samples.len() as u64,
                BatchOutcome::GaveUp | BatchOutcome::Failing => return false,
            }
            self.count_expired(expired, report);
            if let Err(error) = lock(spool).remove(&file.path) {
                tracing::warn!(file = %file.path.display(), %error, "cannot delete a delivered spool file; its samples may be sent again");
            }
        }
    }

    /// Sends one batch, retrying per the [`RetryPolicy`] until `deadline` (or,
    /// with [`Persist::StopAtFirstFailure`], returning after the first failure).
    async fn send_batch(&self, batch: &[Sample], deadline: Instant, persist: Persist) -> BatchOutcome {
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
                    self.failing.store(false, Ordering::Relaxed);
                    self.counters.sent.fetch_add(samples, Ordering::Relaxed);
                    self.counters.last_success_unix.store(now_ms() / 1000, Ordering::Relaxed);
                    return BatchOutcome::Delivered;
                }
                Attempt::Rejected { status, body_line } => {
                    // The receiver answered: it is up, so rounds need not write ahead.
                    self.failing.store(false, Ordering::Relaxed);
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
                    self.failing.store(true, Ordering::Relaxed);
                    if persist == Persist::StopAtFirstFailure {
                        tracing::debug!(%reason, samples, "remote-write push failed; writing the round ahead to the spool");
                        return BatchOutcome::Failing;
                    }
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
