//! Where the time of an HTTP exchange goes: DNS, TCP connect, TLS handshake,
//! writing the request, waiting for the response head, reading the body.
//!
//! The phases are **contiguous**: the [`Recorder`] always has exactly one phase
//! open while an exchange runs, and entering the next phase closes the previous
//! one at the same instant. So the phases of a step add up to the time the step
//! spent in HTTP exchanges, even when an exchange is cut short by a timeout (the
//! phase it was in gets the time up to the moment its phases are taken).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// One phase of an HTTP exchange. The names are the `phase` label values of
/// `fediprobe_http_phase_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Resolving the host name; zero for an IP literal and on a reused connection.
    Dns,
    /// The TCP handshake; zero on a reused connection.
    Connect,
    /// The TLS handshake; zero for `http://` and on a reused connection.
    Tls,
    /// Writing the request (head and body) to the socket.
    Send,
    /// From the request's last byte written to the response head received: the
    /// server's time, plus the network's round trip.
    Ttfb,
    /// Reading the response body, from the head to the last byte.
    Transfer,
}

impl Phase {
    pub const ALL: [Phase; 6] = [Phase::Dns, Phase::Connect, Phase::Tls, Phase::Send, Phase::Ttfb, Phase::Transfer];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Dns => "dns",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Send => "send",
            Phase::Ttfb => "ttfb",
            Phase::Transfer => "transfer",
        }
    }
}

/// Time spent in each phase. Serialised as seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Phases {
    #[serde(serialize_with = "seconds")]
    pub dns: Duration,
    #[serde(serialize_with = "seconds")]
    pub connect: Duration,
    #[serde(serialize_with = "seconds")]
    pub tls: Duration,
    #[serde(serialize_with = "seconds")]
    pub send: Duration,
    #[serde(serialize_with = "seconds")]
    pub ttfb: Duration,
    #[serde(serialize_with = "seconds")]
    pub transfer: Duration,
    /// Not a phase: the time from the kernel receiving an exchange's last byte
    /// to the probe reading it and closing the exchange, and from the kernel
    /// completing a TCP handshake to the probe opening its next phase (a busy or
    /// late thread: the probe's own delay). Left out of [`Phases::total`] and of
    /// the step's duration; not reported.
    #[serde(skip)]
    pub after_arrival: Duration,
    /// Not a phase: from the moment the first phase opened (the request began
    /// to go out: its DNS, its TCP connect, or its first byte on a reused
    /// connection) to the moment the probe closed the last one. Less
    /// [`Phases::after_arrival`], this is the step's clock: the probe's own work
    /// before the request (templates, the URL) and after the answer (checks,
    /// captures) stays out of it. `None` when no exchange began.
    #[serde(skip)]
    pub span: Option<(Instant, Instant)>,
}

impl Phases {
    pub fn get(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Dns => self.dns,
            Phase::Connect => self.connect,
            Phase::Tls => self.tls,
            Phase::Send => self.send,
            Phase::Ttfb => self.ttfb,
            Phase::Transfer => self.transfer,
        }
    }

    fn slot(&mut self, phase: Phase) -> &mut Duration {
        match phase {
            Phase::Dns => &mut self.dns,
            Phase::Connect => &mut self.connect,
            Phase::Tls => &mut self.tls,
            Phase::Send => &mut self.send,
            Phase::Ttfb => &mut self.ttfb,
            Phase::Transfer => &mut self.transfer,
        }
    }

    /// The sum of all phases.
    pub fn total(&self) -> Duration {
        Phase::ALL.iter().map(|p| self.get(*p)).sum()
    }

    pub fn add(&mut self, other: &Phases) {
        for phase in Phase::ALL {
            *self.slot(phase) += other.get(phase);
        }
        self.after_arrival += other.after_arrival;
        self.span = match (self.span, other.span) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (span, other) => span.or(other),
        };
    }

    /// The time from the first phase's opening to the last one's closing, less
    /// the probe's own delays within ([`Phases::span`]): the phases' sum for one
    /// exchange, and for several (a poll's attempts) the time between them too.
    pub fn clocked(&self) -> Option<Duration> {
        self.span.map(|(began, ended)| (ended - began).saturating_sub(self.after_arrival))
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// What a connection's I/O wrapper saw last, set by the wrapper (which runs in
/// the connection's own task, or the run's for HTTP/1.1) and read by the
/// recorder: the latest writes, the last of which before the answer came splits
/// [`Phase::Send`] from [`Phase::Ttfb`], and the instant the latest read's bytes
/// were received, where the response head's and last byte's phases end.
#[derive(Debug, Default)]
pub(crate) struct IoClock {
    /// The latest [`WRITES_KEPT`] writes, each in nanoseconds since [`epoch`]
    /// plus one (zero: none), the latest at `writes % WRITES_KEPT`.
    last_writes: [AtomicU64; WRITES_KEPT],
    writes: AtomicUsize,
    /// The same for the latest read: when the kernel received its bytes where
    /// that is known, else when it was read (an end of stream, an error).
    last_received: AtomicU64,
}

/// How many of a connection's latest writes are kept: an HTTP/2 connection
/// writes after the answer arrives (flow control, acknowledgements) before the
/// exchange closes, and those writes are no part of sending the request.
const WRITES_KEPT: usize = 4;

impl IoClock {
    pub(crate) fn wrote(&self) {
        let slot = self.writes.fetch_add(1, Ordering::Relaxed).wrapping_add(1) % WRITES_KEPT;
        self.last_writes[slot].store(since_epoch(Instant::now()), Ordering::Relaxed);
    }

    pub(crate) fn received(&self, at: Instant) {
        self.last_received.fetch_max(since_epoch(at), Ordering::Relaxed);
    }

    /// How long ago the latest read's bytes were received (zero before any read).
    pub(crate) fn received_ago(&self) -> Duration {
        self.last_received().map_or(Duration::ZERO, |at| at.elapsed())
    }

    /// The latest write kept that was not after `at`.
    fn last_write_by(&self, at: Instant) -> Option<Instant> {
        self.last_writes.iter().filter_map(|w| from_epoch(w.load(Ordering::Relaxed))).filter(|w| *w <= at).max()
    }

    fn last_received(&self) -> Option<Instant> {
        from_epoch(self.last_received.load(Ordering::Relaxed))
    }
}

/// `at` as nanoseconds since [`epoch`] plus one (an instant before the epoch as
/// the epoch itself).
fn since_epoch(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_nanos() as u64 + 1
}

fn from_epoch(nanos: u64) -> Option<Instant> {
    nanos.checked_sub(1).map(|n| epoch() + Duration::from_nanos(n))
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Records the phases of one run's exchanges, one step at a time.
///
/// It lives in the run's HTTP client rather than in the exchange's future so that
/// an exchange dropped by a timeout still leaves its time behind. The lock is only
/// ever held for a few assignments, never across an `.await`.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    state: Mutex<RecorderState>,
}

#[derive(Debug, Default)]
struct RecorderState {
    open: Option<Open>,
    done: Phases,
    /// The clock of the connection an exchange is under way on, from its
    /// [`Phase::Send`] to its end.
    connection: Option<Arc<IoClock>>,
    /// When the probe went on after a handshake it saw late ([`Recorder::connected`]):
    /// the time until the next phase opens is its own too.
    went_on: Option<Instant>,
}

#[derive(Debug)]
struct Open {
    phase: Phase,
    since: Instant,
}

impl RecorderState {
    fn close(&mut self, at: Instant) {
        let Some(open) = self.open.take() else { return };
        let at = at.max(open.since);
        let written = self.connection.as_ref().and_then(|c| c.last_write_by(at));
        match (open.phase, written) {
            // The time after the request's last byte went out is waiting for the answer.
            (Phase::Send, Some(written)) if written > open.since => {
                self.done.send += written - open.since;
                self.done.ttfb += at - written;
            }
            (phase, _) => *self.done.slot(phase) += at - open.since,
        }
    }

    /// When what the exchange has read so far arrived: the connection's latest
    /// receive, if it came while the open phase was open, else `now`.
    fn arrival(&self, now: Instant) -> Instant {
        let since = self.open.as_ref().map(|o| o.since);
        let received = self.connection.as_ref().and_then(|c| c.last_received());
        match (since, received) {
            (Some(since), Some(received)) if received >= since => received.min(now),
            _ => now,
        }
    }

    fn open(&mut self, phase: Phase, since: Instant) {
        if let Some(went_on) = self.went_on.take() {
            self.done.after_arrival += since.saturating_duration_since(went_on);
        }
        self.done.span.get_or_insert((since, since));
        self.open = Some(Open { phase, since });
    }

    /// The probe has closed the exchange's phases `now`: the span ends here.
    fn ended(&mut self, now: Instant) {
        if let Some((_, end)) = &mut self.done.span {
            *end = now;
        }
        self.went_on = None;
    }
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, RecorderState> {
        // Plain durations: a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Closes the open phase now and opens `phase`.
    pub(crate) fn enter(&self, phase: Phase) {
        let now = Instant::now();
        let mut state = self.lock();
        state.close(now);
        state.open(phase, now);
    }

    /// Opens [`Phase::Send`] of an exchange on the connection whose I/O `clock`
    /// sees: when it closes, the time after the last write before that counts as
    /// [`Phase::Ttfb`].
    pub(crate) fn enter_send(&self, clock: Arc<IoClock>) {
        let now = Instant::now();
        let mut state = self.lock();
        state.close(now);
        state.connection = Some(clock);
        state.open(Phase::Send, now);
    }

    /// The TCP handshake ended `at` (the kernel's measure of it, earlier than
    /// the moment the probe saw the connection up): the open phase closes
    /// there, and the time since then is [`Phases::after_arrival`]. The next
    /// phase opens when it is entered.
    pub(crate) fn connected(&self, at: Instant) {
        let now = Instant::now();
        let mut state = self.lock();
        let at = state.open.as_ref().map_or(now, |open| at.max(open.since).min(now));
        state.close(at);
        state.done.after_arrival += now - at;
        state.ended(now);
        state.went_on = Some(now);
    }

    /// The response head has been read: the open phase closes, and
    /// [`Phase::Transfer`] opens, when the bytes read so far arrived.
    pub(crate) fn head_received(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        let arrived = state.arrival(now);
        state.close(arrived);
        state.open(Phase::Transfer, arrived);
    }

    /// The exchange is over: the open phase closes when the bytes read last
    /// arrived; the time since then is [`Phases::after_arrival`].
    pub(crate) fn finish(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        let arrived = state.arrival(now);
        state.close(arrived);
        state.done.after_arrival += now - arrived;
        state.ended(now);
        state.connection = None;
    }

    /// The phases recorded since the last call, closing the open phase now
    /// (an exchange cut short: its span ends here too).
    pub(crate) fn take(&self) -> Phases {
        let mut state = self.lock();
        if state.open.is_some() {
            let now = Instant::now();
            state.close(now);
            state.ended(now);
        }
        state.went_on = None;
        state.connection = None;
        std::mem::take(&mut state.done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_contiguous_and_an_open_phase_is_closed_when_taken() {
        let recorder = Recorder::default();
        let start = Instant::now();
        recorder.enter(Phase::Connect);
        std::thread::sleep(Duration::from_millis(2));
        recorder.enter(Phase::Transfer);
        std::thread::sleep(Duration::from_millis(2));
        let phases = recorder.take();
        let elapsed = start.elapsed();
        assert!(phases.connect >= Duration::from_millis(2));
        assert!(phases.transfer >= Duration::from_millis(2));
        assert_eq!(phases.dns, Duration::ZERO);
        assert!(phases.total() <= elapsed);
        assert_eq!(recorder.take(), Phases::default(), "taking resets");
    }

    /// A recorder with an exchange's `send` opened on a new connection's clock,
    /// and an instant taken just before.
    fn exchange() -> (Recorder, Arc<IoClock>, Instant) {
        let (recorder, clock) = (Recorder::default(), Arc::new(IoClock::default()));
        let began = Instant::now();
        recorder.enter_send(clock.clone());
        (recorder, clock, began)
    }

    #[test]
    fn the_last_write_splits_sending_from_waiting() {
        let (recorder, clock, _) = exchange();
        std::thread::sleep(Duration::from_millis(2));
        clock.wrote();
        std::thread::sleep(Duration::from_millis(5));
        recorder.enter(Phase::Transfer);
        let phases = recorder.take();
        assert!(phases.send >= Duration::from_millis(2), "{phases:?}");
        assert!(phases.ttfb >= Duration::from_millis(5), "{phases:?}");
    }

    #[test]
    fn the_exchange_ends_when_its_last_bytes_arrived_not_when_they_were_read() {
        let (recorder, clock, began) = exchange();
        clock.wrote();
        std::thread::sleep(Duration::from_millis(3));
        let head = Instant::now();
        clock.received(head);
        std::thread::sleep(Duration::from_millis(5));
        recorder.head_received();
        let last = head + Duration::from_millis(2);
        clock.received(last);
        // Received earlier than the latest: the latest stands.
        clock.received(head);
        std::thread::sleep(Duration::from_millis(5));
        recorder.finish();
        let phases = recorder.take();
        assert!(phases.ttfb >= Duration::from_millis(3) && phases.ttfb <= head - began, "{phases:?}");
        assert_eq!(phases.transfer, last - head, "{phases:?}");
        assert!(phases.after_arrival >= Duration::from_millis(8), "{phases:?}");
    }

    #[test]
    fn a_write_after_the_answer_arrived_is_no_part_of_sending() {
        let (recorder, clock, began) = exchange();
        std::thread::sleep(Duration::from_millis(2));
        clock.wrote();
        std::thread::sleep(Duration::from_millis(5));
        let answered = Instant::now();
        clock.received(answered);
        // HTTP/2 flow control, acknowledgements: written after the answer came.
        for _ in 0..WRITES_KEPT - 1 {
            clock.wrote();
        }
        recorder.head_received();
        recorder.finish();
        let phases = recorder.take();
        assert!(phases.send >= Duration::from_millis(2), "{phases:?}");
        assert!(phases.send + Duration::from_millis(5) <= answered - began, "{phases:?}");
        assert!(phases.ttfb >= Duration::from_millis(5), "{phases:?}");
    }

    #[test]
    fn the_clock_is_the_phases_alone_not_the_probes_work_before_between_or_after_them() {
        let recorder = Recorder::default();
        let start = Instant::now();
        // Preparing the request: no phase open yet.
        std::thread::sleep(Duration::from_millis(4));
        recorder.enter(Phase::Connect);
        std::thread::sleep(Duration::from_millis(2));
        let handshake_ended = Instant::now();
        // The probe sees the connection up late, and goes on slowly to the request.
        std::thread::sleep(Duration::from_millis(3));
        recorder.connected(handshake_ended);
        std::thread::sleep(Duration::from_millis(3));
        let clock = Arc::new(IoClock::default());
        recorder.enter_send(clock.clone());
        clock.wrote();
        std::thread::sleep(Duration::from_millis(2));
        clock.received(Instant::now());
        recorder.head_received();
        recorder.finish();
        // Checking the answer: after the exchange.
        std::thread::sleep(Duration::from_millis(4));
        let phases = recorder.take();
        assert!(phases.after_arrival >= Duration::from_millis(6), "{phases:?}");
        assert_eq!(phases.clocked(), Some(phases.total()), "{phases:?}");
        // The probe's own 14 ms (preparing, going on, checking) are out of it.
        assert!(phases.total() + Duration::from_millis(14) <= start.elapsed(), "{phases:?}");
        assert_eq!(Recorder::default().take().clocked(), None, "no exchange, no clock");
    }

    #[test]
    fn a_receive_before_the_exchange_began_is_not_its_arrival() {
        let recorder = Recorder::default();
        let clock = Arc::new(IoClock::default());
        clock.received(Instant::now());
        std::thread::sleep(Duration::from_millis(2));
        recorder.enter_send(clock.clone());
        clock.wrote();
        std::thread::sleep(Duration::from_millis(3));
        recorder.finish();
        let phases = recorder.take();
        assert_eq!(phases.after_arrival, Duration::ZERO, "{phases:?}");
        assert!(phases.ttfb >= Duration::from_millis(3), "{phases:?}");
    }
}
