//! Where the scheduler (and the agent) read the time of day: the system's wall
//! clock in production, or a clock that follows tokio's paused time in tests, so
//! that an every-second schedule can be tested over virtual minutes without
//! waiting for them.

use std::fmt::Debug;

use chrono::{DateTime, Utc};

/// The time of day, in UTC.
pub trait Clock: Send + Sync + Debug + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that starts at a given time of day and then advances with tokio's
/// clock: under `tokio::time::pause()` it moves only when tokio's time does
/// (auto-advanced while every task sleeps, or `tokio::time::advance`), so a test
/// of a schedule runs in virtual time, exactly.
#[derive(Debug, Clone, Copy)]
pub struct PausedClock {
    start: DateTime<Utc>,
    started: tokio::time::Instant,
}

impl PausedClock {
    /// A clock reading `start` now. Must be called within a tokio runtime.
    pub fn starting_at(start: DateTime<Utc>) -> PausedClock {
        PausedClock { start, started: tokio::time::Instant::now() }
    }
}

impl Clock for PausedClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().duration_since(self.started);
        self.start + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
    }
}
