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
use std::sync::atomic::{AtomicU64, Ordering};
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
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The instant of a connection's latest write to its socket, set by the
/// connection's I/O wrapper (which runs in the connection's own task) and read by
/// the recorder to split [`Phase::Send`] from [`Phase::Ttfb`].
#[derive(Debug, Default)]
pub(crate) struct WriteClock {
    /// Nanoseconds since [`epoch`], plus one (zero: nothing written yet).
    last_write: AtomicU64,
}

impl WriteClock {
    pub(crate) fn wrote(&self) {
        let nanos = epoch().elapsed().as_nanos() as u64 + 1;
        self.last_write.store(nanos, Ordering::Relaxed);
    }

    fn last_write(&self) -> Option<Instant> {
        match self.last_write.load(Ordering::Relaxed) {
            0 => None,
            n => Some(epoch() + Duration::from_nanos(n - 1)),
        }
    }
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
}

#[derive(Debug)]
struct Open {
    phase: Phase,
    since: Instant,
    /// For [`Phase::Send`]: the connection's write clock, which tells where writing
    /// the request ended and waiting for the response began.
    writes: Option<Arc<WriteClock>>,
}

impl RecorderState {
    fn close(&mut self, at: Instant) {
        let Some(open) = self.open.take() else { return };
        let at = at.max(open.since);
        match (open.phase, open.writes.and_then(|w| w.last_write())) {
            (Phase::Send, Some(written)) if written > open.since => {
                let written = written.min(at);
                self.done.send += written - open.since;
                self.done.ttfb += at - written;
            }
            (phase, _) => *self.done.slot(phase) += at - open.since,
        }
    }
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, RecorderState> {
        // Plain durations: a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Closes the open phase now and opens `phase`.
    pub(crate) fn enter(&self, phase: Phase) {
        self.enter_with(phase, None);
    }

    /// Opens [`Phase::Send`] on a connection whose writes `clock` sees; when it
    /// closes, the time after the last write before that counts as [`Phase::Ttfb`].
    pub(crate) fn enter_send(&self, clock: Arc<WriteClock>) {
        self.enter_with(Phase::Send, Some(clock));
    }

    fn enter_with(&self, phase: Phase, writes: Option<Arc<WriteClock>>) {
        let now = Instant::now();
        let mut state = self.lock();
        state.close(now);
        state.open = Some(Open { phase, since: now, writes });
    }

    /// Closes the open phase now: the exchange is over.
    pub(crate) fn finish(&self) {
        self.lock().close(Instant::now());
    }

    /// The phases recorded since the last call, closing the open phase now.
    pub(crate) fn take(&self) -> Phases {
        let mut state = self.lock();
        state.close(Instant::now());
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

    #[test]
    fn the_last_write_splits_sending_from_waiting() {
        let recorder = Recorder::default();
        let clock = Arc::new(WriteClock::default());
        recorder.enter_send(clock.clone());
        std::thread::sleep(Duration::from_millis(2));
        clock.wrote();
        std::thread::sleep(Duration::from_millis(5));
        recorder.enter(Phase::Transfer);
        let phases = recorder.take();
        assert!(phases.send >= Duration::from_millis(2), "{phases:?}");
        assert!(phases.ttfb >= Duration::from_millis(5), "{phases:?}");
    }
}
