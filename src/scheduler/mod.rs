//! The scheduler: runs each journey at its cron slots, for the long-running agent.
//!
//! It owns *when* runs happen and nothing else: it calls the runner, and hands
//! each result to whoever listens on its channel (the agent pushes them to the
//! sinks). Rules it keeps:
//!
//! - **Slots come from the journey's cron schedule in UTC**, shifted by a stable
//!   offset derived from the probe's and the journey's names (less than the
//!   journey's period and at most `spread`), so that many probes and journeys
//!   don't all fire in the same second, and a given probe always fires a given
//!   journey at the same point of its period.
//! - **No overlap:** a slot that comes while the journey's previous run is still
//!   going is skipped and counted, never queued.
//! - **A global cap** on runs in flight (a semaphore shared across reloads).
//! - Sleeping uses the monotonic clock; slots are recomputed from the wall clock
//!   after every wake-up, so a wall-clock jump shifts the next slot rather than
//!   producing a burst of runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::runner::{RunResult, Runner};
use crate::spec::Journey;

/// What the agent's `/metrics` shows of one journey's schedule.
#[derive(Debug, Default)]
pub struct JourneyStatus {
    pub name: String,
    /// Unix seconds of the last run's start (0 before the first).
    pub last_run_unix: AtomicI64,
    /// Unix seconds of the next slot.
    pub next_run_unix: AtomicI64,
    /// Slots skipped because the previous run was still going.
    pub skipped_slots: AtomicU64,
    /// Whether a run is going now.
    pub in_flight: AtomicBool,
    /// The offset applied to every slot, in milliseconds.
    pub offset_ms: AtomicU64,
}

/// Shared by every generation of schedules (across reloads): the cap on runs
/// in flight, the runs themselves (so shutdown can wait for all of them), and the
/// token that cancels runs once the shutdown grace period is over.
#[derive(Debug, Clone)]
pub struct Runs {
    semaphore: Arc<Semaphore>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Runs {
    pub fn new(max_concurrent_runs: usize) -> Self {
        Runs {
            semaphore: Arc::new(Semaphore::new(max_concurrent_runs.max(1))),
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
        }
    }

    /// Runs started and not finished, across every generation.
    pub fn in_flight(&self) -> usize {
        self.tracker.len()
    }

    /// Waits for every run in flight, up to `grace`; then cancels the rest (their
    /// cleanup still runs) and waits for them to end. Returns whether any had to be
    /// cancelled.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_ok() {
            return false;
        }
        tracing::warn!(in_flight = self.tracker.len(), "shutdown grace period over; cancelling runs in flight");
        self.cancel.cancel();
        self.tracker.wait().await;
        true
    }
}

/// One generation of schedules: every journey of one loaded config.
#[derive(Debug)]
pub struct Schedules {
    statuses: Vec<Arc<JourneyStatus>>,
    stop: CancellationToken,
}

impl Schedules {
    /// Starts a task per journey. Results go to `results`.
    pub fn start(
        journeys: Vec<Journey>,
        runner: Arc<Runner>,
        runs: &Runs,
        probe_name: &str,
        spread: Duration,
        results: mpsc::UnboundedSender<RunResult>,
    ) -> Schedules {
        let stop = CancellationToken::new();
        let mut statuses = Vec::new();
        for journey in journeys {
            let offset = offset_for(probe_name, &journey, spread);
            let status = Arc::new(JourneyStatus {
                name: journey.name.clone(),
                offset_ms: AtomicU64::new(offset.as_millis() as u64),
                ..Default::default()
            });
            statuses.push(status.clone());
            let task = JourneyTask {
                journey: Arc::new(journey),
                offset,
                status,
                runner: runner.clone(),
                runs: runs.clone(),
                results: results.clone(),
                stop: stop.clone(),
            };
            tokio::spawn(task.run());
        }
        Schedules { statuses, stop }
    }

    pub fn statuses(&self) -> &[Arc<JourneyStatus>] {
        &self.statuses
    }

    /// Stops starting runs; runs in flight go on (they belong to [`Runs`]).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Schedules {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct JourneyTask {
    journey: Arc<Journey>,
    offset: Duration,
    status: Arc<JourneyStatus>,
    runner: Arc<Runner>,
    runs: Runs,
    results: mpsc::UnboundedSender<RunResult>,
    stop: CancellationToken,
}

impl JourneyTask {
    async fn run(self) {
        let mut last_slot: Option<DateTime<Utc>> = None;
        loop {
            let now = Utc::now();
            let after = last_slot.map_or(now, |l| l.max(now));
            let Some(slot) = next_slot(&self.journey, self.offset, after) else {
                tracing::error!(journey = %self.journey.name, "the schedule has no next slot; the journey stops");
                return;
            };
            self.status.next_run_unix.store(slot.timestamp(), Ordering::Relaxed);
            let wait = (slot - now).to_std().unwrap_or_default();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.stop.cancelled() => return,
            }
            // Woken early (the wall clock moved under a monotonic sleep): wait again.
            if Utc::now() < slot {
                continue;
            }
            last_slot = Some(slot);
            if self.status.in_flight.swap(true, Ordering::AcqRel) {
                self.status.skipped_slots.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(journey = %self.journey.name, slot = %slot, "the previous run is still going; slot skipped");
                continue;
            }
            let journey = self.journey.clone();
            let runner = self.runner.clone();
            let status = self.status.clone();
            let results = self.results.clone();
            let semaphore = self.runs.semaphore.clone();
            let cancel = self.runs.cancel.clone();
            self.runs.tracker.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                status.last_run_unix.store(Utc::now().timestamp(), Ordering::Relaxed);
                let result = runner.run_until(&journey, &cancel).await;
                status.in_flight.store(false, Ordering::Release);
                let _ = results.send(result);
            });
        }
    }
}

/// The first slot strictly after `after`: a cron time plus the journey's offset.
pub fn next_slot(journey: &Journey, offset: Duration, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let offset = chrono::Duration::from_std(offset).ok()?;
    let base = journey.schedule.cron.find_next_occurrence(&(after - offset), false).ok()?;
    Some(base + offset)
}

/// The journey's period as far as the offset is concerned: the shortest gap
/// between two of its slots (over the spec's reference week, at most 10 000
/// firings, so an every-second schedule costs nothing at start), which is what
/// the offset must stay under to never push a slot past the next one.
pub fn period(journey: &Journey) -> Option<Duration> {
    crate::spec::limits::gaps(&journey.schedule.cron, 10_000).map(|(shortest, _)| shortest)
}

/// A stable offset for this probe and journey: FNV-1a of both names, reduced
/// below the journey's period (minus a margin) and `spread`. Zero when `spread` is zero.
pub fn offset_for(probe_name: &str, journey: &Journey, spread: Duration) -> Duration {
    if spread.is_zero() {
        return Duration::ZERO;
    }
    let period = period(journey).unwrap_or(spread);
    // Stay clear of the next slot: at most 90% of the period.
    let limit = spread.min(period.mul_f64(0.9)).as_millis() as u64;
    if limit == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(fnv1a(format!("{probe_name}/{}", journey.name).as_bytes()) % limit)
}

/// FNV-1a, 64 bits: stable across Rust versions and platforms (the standard
/// library's hasher is not), which is what a schedule offset must be.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_journey_str;

    fn journey(name: &str, schedule: &str) -> Journey {
        let text = format!(
            "name: {name}\ninstance: main\nschedule: '{schedule}'\nslo: {{ availability: 99% }}\nsteps:\n  - name: s\n    request: {{ path: /health }}\n"
        );
        parse_journey_str(std::path::Path::new("t.yaml"), &text).0.unwrap()
    }

    #[test]
    fn offsets_are_stable_spread_and_below_the_period() {
        let j = journey("home", "*/5 * * * *");
        let a = offset_for("eu-west", &j, Duration::from_secs(30));
        assert_eq!(a, offset_for("eu-west", &j, Duration::from_secs(30)), "stable");
        assert!(a < Duration::from_secs(30));
        let others: Vec<Duration> = ["us-east", "ap-southeast", "eu-west-2"]
            .iter()
            .map(|p| offset_for(p, &j, Duration::from_secs(30)))
            .collect();
        assert!(others.iter().any(|o| *o != a), "different probes get different offsets");
        let every_second = journey("fast", "* * * * * *");
        assert!(offset_for("eu-west", &every_second, Duration::from_secs(30)) < Duration::from_millis(900));
        assert_eq!(offset_for("eu-west", &j, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn slots_are_cron_times_plus_the_offset() {
        let j = journey("home", "*/5 * * * *");
        let at = DateTime::parse_from_rfc3339("2026-01-01T10:02:00Z").unwrap().with_timezone(&Utc);
        let slot = next_slot(&j, Duration::from_secs(7), at).unwrap();
        assert_eq!(slot.to_rfc3339(), "2026-01-01T10:05:07+00:00");
        // Strictly after: asking at the slot itself gives the next one.
        assert_eq!(next_slot(&j, Duration::from_secs(7), slot).unwrap().to_rfc3339(), "2026-01-01T10:10:07+00:00");
        assert_eq!(period(&j), Some(Duration::from_secs(300)));
    }
}
