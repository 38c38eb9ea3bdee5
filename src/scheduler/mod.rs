//! The scheduler: runs each journey at its cron slots, for the long-running agent.
//!
//! It owns *when* runs happen and nothing else: it calls what runs a journey
//! ([`RunJourney`], the runner in production), and hands each result to whoever
//! listens on its channel (the agent pushes them to the sinks). Rules it keeps:
//!
//! - **Slots come from the journey's cron schedule in UTC**, shifted by a stable
//!   offset derived from the probe's and the journey's names (less than the
//!   journey's period and at most `spread`), so that many probes and journeys
//!   don't all fire in the same second, and a given probe always fires a given
//!   journey at the same point of its period.
//! - **No overlap, across reloads too:** a slot that comes while the journey's
//!   previous run is still going (or waiting for a place under the cap) is
//!   skipped and counted, never queued. The per-journey state (in flight, slots
//!   skipped) lives in [`Runs`], keyed by journey name, so a reload's new
//!   schedules see the old generation's run still going.
//! - **A global cap** on runs in flight (a semaphore shared across reloads).
//! - **Nothing starts after shutdown begins:** a slot whose run was still waiting
//!   for a place under the cap is a skipped slot, not a run.
//! - Time comes from a [`Clock`]: the wall clock in production, and in tests a
//!   clock that follows tokio's paused time, so schedules are tested in virtual
//!   seconds. Sleeping uses tokio's monotonic timer; slots are recomputed from the
//!   clock after every wake-up, so a wall-clock jump shifts the next slot rather
//!   than producing a burst of runs.

mod clock;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use clock::{Clock, PausedClock, SystemClock};

use crate::runner::{RunResult, Runner};
use crate::spec::Journey;

/// Runs one journey once: the runner in production, a stand-in in the
/// scheduler's own tests. `cancel` asks the run to stop early (its cleanup still
/// runs).
pub trait RunJourney: Send + Sync + 'static {
    fn run_journey<'a>(
        &'a self,
        journey: &'a Journey,
        cancel: &'a CancellationToken,
    ) -> Pin<Box<dyn Future<Output = RunResult> + Send + 'a>>;
}

impl RunJourney for Runner {
    fn run_journey<'a>(
        &'a self,
        journey: &'a Journey,
        cancel: &'a CancellationToken,
    ) -> Pin<Box<dyn Future<Output = RunResult> + Send + 'a>> {
        Box::pin(self.run_until(journey, cancel))
    }
}

/// Stands in for the runner where no network may be waited on (tests of the
/// scheduler and the agent on paused time): a run of journey `j` takes
/// `durations[j]` (default: `default_duration`) of tokio time, or ends early
/// when cancelled, then cleans up for `cleanup` (which ignores cancellation, as
/// a real cleanup does). It records when each run started, by `clock`.
#[derive(Debug)]
pub struct StandIn {
    clock: Arc<dyn Clock>,
    durations: HashMap<String, Duration>,
    default_duration: Duration,
    cleanup: Duration,
    started: Mutex<Vec<(String, DateTime<Utc>)>>,
}

impl StandIn {
    pub fn new(
        clock: Arc<dyn Clock>,
        default_duration: Duration,
        durations: &[(&str, Duration)],
        cleanup: Duration,
    ) -> Arc<StandIn> {
        let durations = durations.iter().map(|(name, d)| (name.to_string(), *d)).collect();
        Arc::new(StandIn { clock, durations, default_duration, cleanup, started: Mutex::new(Vec::new()) })
    }

    /// Every run started so far: the journey and when.
    pub fn started(&self) -> Vec<(String, DateTime<Utc>)> {
        self.started.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl RunJourney for StandIn {
    fn run_journey<'a>(
        &'a self,
        journey: &'a Journey,
        cancel: &'a CancellationToken,
    ) -> Pin<Box<dyn Future<Output = RunResult> + Send + 'a>> {
        Box::pin(async move {
            let started_at = self.clock.now();
            self.started
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push((journey.name.clone(), started_at));
            let duration = self.durations.get(&journey.name).copied().unwrap_or(self.default_duration);
            let cancelled = tokio::select! {
                () = tokio::time::sleep(duration) => false,
                () = cancel.cancelled() => true,
            };
            tokio::time::sleep(self.cleanup).await;
            stand_in_result(journey, started_at, duration, cancelled)
        })
    }
}

/// What [`StandIn`] reports: a run of `journey` without steps, started at
/// `started_at`, that succeeded or, when `cancelled`, ended in
/// `probe_error`/`cancelled`.
fn stand_in_result(journey: &Journey, started_at: DateTime<Utc>, duration: Duration, cancelled: bool) -> RunResult {
    use crate::runner::{Outcome, Reason};
    let (outcome, reason) =
        if cancelled { (Outcome::ProbeError, Some(Reason::Cancelled)) } else { (Outcome::Success, None) };
    RunResult { reason, ..RunResult::without_steps(&journey.name, &journey.instance, started_at, duration, outcome) }
}

/// One journey's schedule state, shared by every generation of schedules (it
/// survives reloads), and what the agent's `/metrics` shows of it.
#[derive(Debug, Default)]
pub struct JourneyStatus {
    pub name: String,
    /// The probe account this copy of the journey runs as, when not the
    /// instance's primary one (`Journey::run_as`): each account's copy has its
    /// own slots and state.
    pub account: Option<String>,
    /// Unix seconds of the last run's start (0 before the first).
    pub last_run_unix: AtomicI64,
    /// Unix seconds of the next slot.
    pub next_run_unix: AtomicI64,
    /// Slots skipped: the previous run was still going or waiting for a place
    /// under the cap, or shutdown began before the run could start.
    pub skipped_slots: AtomicU64,
    /// Whether a run of the journey is going or waiting to start.
    pub in_flight: AtomicBool,
    /// The offset applied to every slot, in milliseconds.
    pub offset_ms: AtomicU64,
}

/// Shared by every generation of schedules (across reloads): the cap on runs
/// in flight, the runs themselves (so shutdown can wait for all of them), the
/// per-journey state, and the tokens that stop new runs and cancel running ones.
#[derive(Debug, Clone)]
pub struct Runs {
    semaphore: Arc<Semaphore>,
    tracker: TaskTracker,
    /// Cancelled when shutdown begins: no run starts after it.
    stopping: CancellationToken,
    /// Cancelled once the shutdown grace period is over: runs stop early.
    cancel: CancellationToken,
    /// Runs started (holding a place under the cap) and not finished.
    running: Arc<AtomicUsize>,
    journeys: Arc<Mutex<HashMap<String, Arc<JourneyStatus>>>>,
    clock: Arc<dyn Clock>,
    /// Where runs execute: `None` on the runtime the schedules run on; the agent
    /// gives its runs a runtime of their own (see `agent::RunsThread`), so that a
    /// run's clock is not held up by the HTTP server, the log or the pushes.
    runtime: Option<tokio::runtime::Handle>,
}

/// How a shutdown's [`Runs::drain`] went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Runs still going at the end of the grace period, cancelled then.
    pub cancelled: usize,
    /// Of those, runs whose cleanup had not ended within the cleanup bound:
    /// abandoned (what they posted is found by the next start's leftover sweep).
    pub abandoned: usize,
}

impl Runs {
    pub fn new(max_concurrent_runs: usize, clock: Arc<dyn Clock>) -> Self {
        Runs {
            semaphore: Arc::new(Semaphore::new(max_concurrent_runs.max(1))),
            tracker: TaskTracker::new(),
            stopping: CancellationToken::new(),
            cancel: CancellationToken::new(),
            running: Arc::new(AtomicUsize::new(0)),
            journeys: Arc::new(Mutex::new(HashMap::new())),
            clock,
            runtime: None,
        }
    }

    /// Runs execute on `runtime` from now on, instead of on the runtime the
    /// schedules run on (where they wait for their slots).
    pub fn on_runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Runs going now, across every generation; not those waiting for a place
    /// under the cap.
    pub fn in_flight(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// The state of `journey` (of its copy for one probe account: see
    /// `Journey::run_key`), created on first use and kept across reloads.
    fn status(&self, journey: &Journey) -> Arc<JourneyStatus> {
        let mut journeys = self.journeys.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        journeys
            .entry(journey.run_key())
            .or_insert_with(|| {
                Arc::new(JourneyStatus {
                    name: journey.name.clone(),
                    account: journey.run_as.clone(),
                    ..Default::default()
                })
            })
            .clone()
    }

    /// Stops every run from starting from now on (runs going continue).
    pub fn stop_starting(&self) {
        self.stopping.cancel();
    }

    /// Shutdown: no run starts any more; runs going may finish within `grace`;
    /// then they are cancelled, and their cleanup gets `cleanup_bound` more, after
    /// which they are abandoned. So this returns within `grace + cleanup_bound`.
    pub async fn drain(&self, grace: Duration, cleanup_bound: Duration) -> Drained {
        self.stopping.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_ok() {
            return Drained::default();
        }
        let cancelled = self.tracker.len();
        tracing::warn!(in_flight = cancelled, "shutdown grace period over; cancelling runs in flight");
        self.cancel.cancel();
        if tokio::time::timeout(cleanup_bound, self.tracker.wait()).await.is_ok() {
            return Drained { cancelled, abandoned: 0 };
        }
        let abandoned = self.tracker.len();
        tracing::warn!(
            abandoned,
            cleanup_bound = %humantime::format_duration(cleanup_bound),
            "cancelled runs still cleaning up at the bound; abandoning them (the next start's leftover sweep deletes what they posted)"
        );
        Drained { cancelled, abandoned }
    }
}

/// One generation of schedules: every journey of one loaded config.
#[derive(Debug)]
pub struct Schedules {
    statuses: Vec<Arc<JourneyStatus>>,
    stop: CancellationToken,
}

impl Schedules {
    /// Starts the generation's schedule (one task for all its journeys). Results go to `results`. A journey the previous
    /// generation also had keeps its state (a run of it still going, its
    /// skipped-slot count).
    pub fn start(
        journeys: Vec<Journey>,
        runner: Arc<dyn RunJourney>,
        runs: &Runs,
        probe_name: &str,
        spread: Duration,
        results: mpsc::UnboundedSender<RunResult>,
    ) -> Schedules {
        let stop = CancellationToken::new();
        let mut statuses = Vec::new();
        let mut periods = Periods::default();
        let mut schedule_keys: HashMap<String, usize> = HashMap::new();
        let mut entries = Vec::with_capacity(journeys.len());
        for journey in journeys {
            let offset = periods.offset_for(probe_name, &journey, spread);
            let status = runs.status(&journey);
            status.offset_ms.store(offset.as_millis() as u64, Ordering::Relaxed);
            statuses.push(status.clone());
            let normalized = journey.schedule.normalized();
            let granularity = resolution_secs(&normalized);
            let next = schedule_keys.len();
            let schedule = *schedule_keys.entry(normalized).or_insert(next);
            entries.push(Entry { journey: Arc::new(journey), offset, status, schedule, granularity });
        }
        let schedule = ScheduleLoop { entries, runner, runs: runs.clone(), results, stop: stop.clone() };
        // Beside the runs it starts: starting one is then no hand-over between threads.
        match &runs.runtime {
            Some(runtime) => runtime.spawn(schedule.run()),
            None => tokio::spawn(schedule.run()),
        };
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

/// One journey (one account's copy) in a generation's schedule.
struct Entry {
    journey: Arc<Journey>,
    offset: Duration,
    status: Arc<JourneyStatus>,
    /// Which distinct schedule text it has (for [`NextSlots`]).
    schedule: usize,
    /// The schedule's resolution in seconds: 60 for 5 fields, 1 with seconds.
    granularity: i64,
}

/// Every journey of a generation waits for its slots in one task, on one timer:
/// a heap of next slots, the earliest slept for. (A task and a timer per journey
/// — a thousand of each — made the timer wheel, the wake-ups and the cron
/// look-ups most of the agent's CPU per run.)
struct ScheduleLoop {
    entries: Vec<Entry>,
    runner: Arc<dyn RunJourney>,
    runs: Runs,
    results: mpsc::UnboundedSender<RunResult>,
    stop: CancellationToken,
}

impl ScheduleLoop {
    async fn run(self) {
        let clock = self.runs.clock.clone();
        let mut next_slots = NextSlots::default();
        let mut heap = BinaryHeap::with_capacity(self.entries.len());
        let now = clock.now();
        for index in 0..self.entries.len() {
            self.queue(&mut heap, &mut next_slots, index, now);
        }
        let stopped = async {
            tokio::select! {
                () = self.stop.cancelled() => {}
                () = self.runs.stopping.cancelled() => {}
            }
        };
        tokio::pin!(stopped);
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        loop {
            let Some(&Reverse((slot, index))) = heap.peek() else {
                return;
            };
            let now = clock.now();
            if now < slot {
                // Slots are recomputed from the clock after every wake-up: a wake-up
                // before the slot (the wall clock moved under the monotonic timer)
                // waits again, a jump forward fires each journey once, not a burst.
                let wait = (slot - now).to_std().unwrap_or_default();
                sleep.as_mut().reset(tokio::time::Instant::now() + wait);
                tokio::select! {
                    () = sleep.as_mut() => {}
                    () = &mut stopped => return,
                }
                continue;
            }
            heap.pop();
            if self.stop.is_cancelled() || self.runs.stopping.is_cancelled() {
                return;
            }
            self.fire(index, slot);
            self.queue(&mut heap, &mut next_slots, index, slot.max(clock.now()));
        }
    }

    /// Puts the entry's first slot strictly after `after` on the heap.
    fn queue(
        &self,
        heap: &mut BinaryHeap<Reverse<(DateTime<Utc>, usize)>>,
        next_slots: &mut NextSlots,
        index: usize,
        after: DateTime<Utc>,
    ) {
        let entry = &self.entries[index];
        match next_slots.next_slot(entry, after) {
            Some(slot) => {
                entry.status.next_run_unix.store(slot.timestamp(), Ordering::Relaxed);
                heap.push(Reverse((slot, index)));
            }
            None => {
                tracing::error!(journey = %entry.journey.name, "the schedule has no next slot; the journey stops");
            }
        }
    }

    /// Starts the entry's run for `slot`, unless its previous run is still going.
    fn fire(&self, index: usize, slot: DateTime<Utc>) {
        let entry = &self.entries[index];
        if entry.status.in_flight.swap(true, Ordering::AcqRel) {
            entry.status.skipped_slots.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(journey = %entry.journey.name, slot = %slot, "the previous run is still going; slot skipped");
            return;
        }
        let journey = entry.journey.clone();
        let runner = self.runner.clone();
        let status = entry.status.clone();
        let results = self.results.clone();
        let runs = self.runs.clone();
        let run = async move {
            let permit = tokio::select! {
                biased;
                () = runs.stopping.cancelled() => None,
                permit = runs.semaphore.clone().acquire_owned() => permit.ok(),
            };
            // A run that never started is not a run: shutdown began while it
            // waited for a place under the cap.
            let Some(_permit) = permit.filter(|_| !runs.stopping.is_cancelled()) else {
                status.skipped_slots.fetch_add(1, Ordering::Relaxed);
                status.in_flight.store(false, Ordering::Release);
                tracing::info!(journey = %journey.name, slot = %slot, "shutting down; slot skipped, its run never started");
                return;
            };
            runs.running.fetch_add(1, Ordering::AcqRel);
            status.last_run_unix.store(runs.clock.now().timestamp(), Ordering::Relaxed);
            let result = runner.run_journey(&journey, &runs.cancel).await;
            runs.running.fetch_sub(1, Ordering::AcqRel);
            status.in_flight.store(false, Ordering::Release);
            let _ = results.send(result);
        };
        match &self.runs.runtime {
            Some(runtime) => self.runs.tracker.spawn_on(run, runtime),
            None => self.runs.tracker.spawn(run),
        };
    }
}

/// How far apart a schedule's cron times can be told apart, in seconds, from its
/// normalized text: Kubernetes' 5 fields fire at second 0 of a minute; 6 fields
/// (and `@` aliases, to be safe) are taken to the second.
fn resolution_secs(normalized: &str) -> i64 {
    if normalized.split(' ').count() == 5 { 60 } else { 1 }
}

/// Next slots, each cron look-up made once per schedule and resolution step: the
/// first cron time strictly after `t` is the one strictly after `t` cut to the
/// schedule's resolution (cron times are whole seconds, and whole minutes for 5
/// fields), and a thousand journeys on one schedule with offsets spread over a
/// minute ask about one or two minutes. (croner's look-up was an eighth of the
/// agent's CPU when made per journey per slot.)
#[derive(Default)]
struct NextSlots(HashMap<(usize, i64), Option<DateTime<Utc>>>);

impl NextSlots {
    /// Look-ups kept before the memo starts again: a few hundred per schedule
    /// are in use at any time.
    const KEPT: usize = 4096;

    fn next_slot(&mut self, entry: &Entry, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset = chrono::Duration::from_std(entry.offset).ok()?;
        let base_after = after - offset;
        let step = base_after.timestamp().div_euclid(entry.granularity);
        if self.0.len() >= Self::KEPT {
            self.0.clear();
        }
        let base = *self.0.entry((entry.schedule, step)).or_insert_with(|| {
            let cut = DateTime::<Utc>::from_timestamp(step * entry.granularity, 0)?;
            entry.journey.schedule.cron.find_next_occurrence(&cut, false).ok()
        });
        Some(base? + offset)
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

/// A stable offset for this probe and journey (its copy for one probe account):
/// FNV-1a of the probe's name and the journey's run key, reduced
/// below the journey's period (minus a margin) and `spread`. Zero when `spread` is zero.
pub fn offset_for(probe_name: &str, journey: &Journey, spread: Duration) -> Duration {
    offset_within(probe_name, journey, spread, || period(journey))
}

/// The journeys' periods, each schedule walked once: finding a period walks up
/// to 10 000 cron firings, and a thousand journeys usually share a handful of
/// schedules, so the agent's start costs a few walks, not one per journey.
#[derive(Debug, Default)]
pub struct Periods(HashMap<String, Option<Duration>>);

impl Periods {
    /// [`offset_for`], with the journey's period looked up by its schedule.
    pub fn offset_for(&mut self, probe_name: &str, journey: &Journey, spread: Duration) -> Duration {
        offset_within(probe_name, journey, spread, || {
            *self.0.entry(journey.schedule.normalized()).or_insert_with(|| period(journey))
        })
    }
}

/// The offset, asking for the period only when `spread` is not zero.
fn offset_within(
    probe_name: &str,
    journey: &Journey,
    spread: Duration,
    period: impl FnOnce() -> Option<Duration>,
) -> Duration {
    if spread.is_zero() {
        return Duration::ZERO;
    }
    let period = period().unwrap_or(spread);
    // Stay clear of the next slot: at most 90% of the period.
    let limit = spread.min(period.mul_f64(0.9)).as_millis() as u64;
    if limit == 0 {
        return Duration::ZERO;
    }
    // Keyed by the account's copy too, so a journey's runs as several accounts
    // don't all fire in the same second (the primary's key is the journey's name,
    // as before there were several).
    Duration::from_millis(fnv1a(format!("{probe_name}/{}", journey.run_key()).as_bytes()) % limit)
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
    fn offsets_with_periods_shared_by_schedule_are_the_same_as_walking_each_journey() {
        // Schedules that read the same once normalised share a walk; each journey
        // must still get exactly the offset of its own walk.
        let schedules = ["*/5 * * * *", "*/5  *  * * *", "* * * * *", "0,50 * * * *", "* * * * * *", "0 9 1 1 *"];
        let journeys: Vec<Journey> =
            (0..60).map(|i| journey(&format!("j{i}"), schedules[i % schedules.len()])).collect();
        let mut periods = Periods::default();
        for spread in [Duration::ZERO, Duration::from_secs(30), Duration::from_secs(3600)] {
            for j in &journeys {
                assert_eq!(periods.offset_for("eu-west", j, spread), offset_for("eu-west", j, spread), "{}", j.name);
            }
        }
        assert!(periods.0.len() <= schedules.len(), "one walk per distinct schedule: {}", periods.0.len());
    }

    #[test]
    fn remembered_slots_are_the_slots_a_look_up_per_journey_gives() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T10:02:00Z").unwrap().with_timezone(&Utc);
        let mut next_slots = NextSlots::default();
        for (i, schedule) in
            ["* * * * *", "*/5 * * * *", "0 */2 * * *", "*/10 * * * * *", "30 * * * * *"].iter().enumerate()
        {
            let j = Arc::new(journey("j", schedule));
            let granularity = resolution_secs(schedule);
            for offset_ms in [0, 1, 999, 1_234, 29_999, 59_999] {
                let offset = Duration::from_millis(offset_ms);
                let entry = Entry { journey: j.clone(), offset, status: Arc::default(), schedule: i, granularity };
                // Times on and off whole seconds and minutes, over a few hours.
                let mut at = start;
                for step in 0..2_000u32 {
                    at += chrono::Duration::milliseconds(i64::from(step % 7) * 997 + i64::from(step % 3) * 60_000);
                    assert_eq!(
                        next_slots.next_slot(&entry, at),
                        next_slot(&j, offset, at),
                        "{schedule} offset {offset_ms} ms at {at}"
                    );
                }
            }
        }
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

/// The scheduler on tokio's paused time: every figure is exact, because the
/// clock and the timers only move when every task waits.
#[cfg(test)]
mod paused_time {

    use super::*;
    use crate::runner::{Outcome, Reason};
    use crate::spec::parse_journey_str;

    fn journey(name: &str, schedule: &str) -> Journey {
        let text = format!(
            "name: {name}\ninstance: main\nschedule: '{schedule}'\nslo: {{ availability: 99% }}\nsteps:\n  - name: s\n    request: {{ path: /health }}\n"
        );
        parse_journey_str(std::path::Path::new("t.yaml"), &text).0.unwrap()
    }

    /// Half a second before a whole second, so slots are half a second away.
    fn clock() -> PausedClock {
        PausedClock::starting_at("2026-01-01T00:00:00.500Z".parse().unwrap())
    }

    fn start(
        journeys: &[Journey],
        runner: &Arc<StandIn>,
        runs: &Runs,
    ) -> (Schedules, mpsc::UnboundedReceiver<RunResult>, mpsc::UnboundedSender<RunResult>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let schedules = Schedules::start(journeys.to_vec(), runner.clone(), runs, "probe", Duration::ZERO, tx.clone());
        (schedules, rx, tx)
    }

    fn received(rx: &mut mpsc::UnboundedReceiver<RunResult>) -> Vec<RunResult> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn seconds(started: &[(String, DateTime<Utc>)], name: &str) -> Vec<String> {
        started.iter().filter(|(j, _)| j == name).map(|(_, at)| at.format("%M:%S%.3f").to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_every_second_schedule_runs_once_at_each_slot_for_a_virtual_minute() {
        let clock = clock();
        let runner = StandIn::new(
            Arc::new(clock),
            Duration::ZERO,
            &[("a", Duration::from_millis(300)), ("b", Duration::from_millis(900))],
            Duration::ZERO,
        );
        let runs = Runs::new(32, Arc::new(clock));
        let (schedules, mut rx, _tx) =
            start(&[journey("a", "* * * * * *"), journey("b", "* * * * * *")], &runner, &runs);
        tokio::time::sleep(Duration::from_millis(60_100)).await; // up to 01:00.600
        schedules.stop();
        assert_eq!(runs.drain(Duration::from_secs(5), Duration::from_secs(5)).await, Drained::default());

        let expected: Vec<String> = (1..=60).map(|s| format!("{:02}:{:02}.000", s / 60, s % 60)).collect();
        let started = runner.started();
        assert_eq!(seconds(&started, "a"), expected, "one run per slot, at the slot");
        assert_eq!(seconds(&started, "b"), expected);
        assert_eq!(received(&mut rx).len(), 120);
        assert!(schedules.statuses().iter().all(|s| s.skipped_slots.load(Ordering::Relaxed) == 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_longer_than_its_period_skips_the_slots_it_covers_and_counts_them() {
        let clock = clock();
        let runner =
            StandIn::new(Arc::new(clock), Duration::ZERO, &[("slow", Duration::from_millis(2500))], Duration::ZERO);
        let runs = Runs::new(32, Arc::new(clock));
        let (schedules, mut rx, _tx) = start(&[journey("slow", "* * * * * *")], &runner, &runs);
        tokio::time::sleep(Duration::from_millis(10_100)).await; // up to 00:10.600
        // Runs at 1, 4, 7 and 10 (each 2.5 s); 2-3, 5-6 and 8-9 are skipped.
        assert_eq!(seconds(&runner.started(), "slow"), ["00:01.000", "00:04.000", "00:07.000", "00:10.000"]);
        assert_eq!(schedules.statuses()[0].skipped_slots.load(Ordering::Relaxed), 6);
        assert_eq!(runs.in_flight(), 1);
        schedules.stop();
        runs.drain(Duration::from_secs(5), Duration::from_secs(5)).await;
        assert_eq!(received(&mut rx).len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_during_a_long_run_neither_starts_a_second_copy_nor_loses_the_skipped_count() {
        let clock = clock();
        let runner =
            StandIn::new(Arc::new(clock), Duration::ZERO, &[("long", Duration::from_millis(4200))], Duration::ZERO);
        let runs = Runs::new(32, Arc::new(clock));
        let journeys = [journey("long", "* * * * * *")];
        let (first, mut rx, tx) = start(&journeys, &runner, &runs);
        tokio::time::sleep(Duration::from_millis(2_100)).await; // 00:02.600: the run of 00:01 going, 00:02 skipped
        assert_eq!(first.statuses()[0].skipped_slots.load(Ordering::Relaxed), 1);
        // The reload: the old generation stops, a new one starts with the same journey.
        first.stop();
        let second = Schedules::start(journeys.to_vec(), runner.clone(), &runs, "probe", Duration::ZERO, tx);
        tokio::time::sleep(Duration::from_millis(2_000)).await; // 00:04.600: slots 3 and 4 skipped too
        assert_eq!(seconds(&runner.started(), "long"), ["00:01.000"], "no second copy of the running journey");
        assert_eq!(second.statuses()[0].skipped_slots.load(Ordering::Relaxed), 3, "the count survives the reload");
        tokio::time::sleep(Duration::from_millis(1_000)).await; // 00:05.600: the run ended at 05.200; slot 05 skipped
        tokio::time::sleep(Duration::from_millis(1_000)).await; // 00:06.600: slot 06 runs
        assert_eq!(seconds(&runner.started(), "long"), ["00:01.000", "00:06.000"]);
        second.stop();
        runs.drain(Duration::from_secs(10), Duration::from_secs(5)).await;
        assert_eq!(received(&mut rx).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn after_shutdown_begins_no_run_starts_and_runs_waiting_for_the_cap_are_skipped_slots() {
        let clock = clock();
        let names = ["a", "b", "c", "d"];
        let runner = StandIn::new(Arc::new(clock), Duration::from_secs(4), &[], Duration::ZERO);
        // A cap of one: at 00:10 one run starts, three wait for the place.
        let runs = Runs::new(1, Arc::new(clock));
        let journeys: Vec<Journey> = names.iter().map(|n| journey(n, "*/10 * * * * *")).collect();
        let (schedules, mut rx, _tx) = start(&journeys, &runner, &runs);
        tokio::time::sleep(Duration::from_millis(10_000)).await; // 00:10.500
        assert_eq!(runs.in_flight(), 1, "only the running run, not the three waiting");
        let drained = runs.drain(Duration::from_secs(30), Duration::from_secs(5)).await;
        assert_eq!(drained, Drained::default(), "the running run finished within the grace period");
        drop(schedules);
        tokio::time::sleep(Duration::from_secs(30)).await; // past 00:20 and 00:30: nothing starts
        assert_eq!(runner.started().len(), 1, "no run started after shutdown began: {:?}", runner.started());
        let results = received(&mut rx);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].outcome, Outcome::Success, "no invented cancelled runs");
        let skipped: u64 =
            runs.journeys.lock().unwrap().values().map(|status| status.skipped_slots.load(Ordering::Relaxed)).sum();
        assert_eq!(skipped, 3, "the three slots that never started are skipped slots");
        assert_eq!(runs.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_takes_at_most_the_grace_period_plus_the_cleanup_bound() {
        let clock = clock();
        // Cancelled at the end of the grace period, one run cleans up in 1 s; the
        // other's cleanup hangs for 100 s and is abandoned at the bound.
        let quick = StandIn::new(
            Arc::new(clock),
            Duration::ZERO,
            &[("quick", Duration::from_secs(60))],
            Duration::from_secs(1),
        );
        let hung = StandIn::new(
            Arc::new(clock),
            Duration::ZERO,
            &[("hung", Duration::from_secs(60))],
            Duration::from_secs(100),
        );
        let runs = Runs::new(32, Arc::new(clock));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _a = Schedules::start(
            vec![journey("quick", "* * * * * *")],
            quick.clone(),
            &runs,
            "p",
            Duration::ZERO,
            tx.clone(),
        );
        let _b = Schedules::start(vec![journey("hung", "* * * * * *")], hung.clone(), &runs, "p", Duration::ZERO, tx);
        tokio::time::sleep(Duration::from_secs(1)).await; // both running since 00:01
        let began = tokio::time::Instant::now();
        let drained = runs.drain(Duration::from_secs(2), Duration::from_secs(3)).await;
        assert_eq!(tokio::time::Instant::now() - began, Duration::from_secs(5), "grace + cleanup bound, exactly");
        assert_eq!(drained, Drained { cancelled: 2, abandoned: 1 });
        let results = received(&mut rx);
        assert_eq!(results.len(), 1, "the cancelled run that cleaned up reports");
        assert_eq!((results[0].journey.as_str(), results[0].reason), ("quick", Some(Reason::Cancelled)));
    }
}
