//! Rate limits as Mastodon enforces them, and the headers that report them.
//!
//! Mastodon has two kinds of limiter, and the sandbox copies both:
//! - rack-attack throttles (300 API calls per 5 min per token, 300 per 5 min per
//!   IP unauthenticated, 30 status deletes and 30 media uploads per 30 min per
//!   account) count in fixed
//!   windows aligned to the epoch: the window resets at `now + period - now % period`;
//! - `Mastodon::RateLimiter` (300 statuses per 3 h per account) counts from the
//!   first hit and resets `period` after it.
//!
//! `X-RateLimit-Reset` is ISO-8601 with microseconds, as Ruby's `iso8601(6)`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// One limit: at most `max` requests per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub period: Duration,
}

impl Limit {
    pub const fn new(max: u32, period: Duration) -> Limit {
        Limit { max, period }
    }
}

/// The limits of one instance. Defaults are Mastodon's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Authenticated API calls per token. Default: 300 per 5 minutes.
    pub api: Limit,
    /// Unauthenticated API calls per IP. Default: 300 per 5 minutes.
    pub unauthenticated_api: Limit,
    /// `POST /api/v1/statuses` per account. Default: 300 per 3 hours.
    pub statuses: Limit,
    /// `DELETE /api/v1/statuses/:id` per account. Default: 30 per 30 minutes.
    pub deletes: Limit,
    /// `POST /api/v1/media` and `/api/v2/media` per account. Default: 30 per 30 minutes.
    pub media: Limit,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            api: Limit::new(300, Duration::from_secs(5 * 60)),
            unauthenticated_api: Limit::new(300, Duration::from_secs(5 * 60)),
            statuses: Limit::new(300, Duration::from_secs(3 * 60 * 60)),
            deletes: Limit::new(30, Duration::from_secs(30 * 60)),
            media: Limit::new(30, Duration::from_secs(30 * 60)),
        }
    }
}

/// Which counter a request is counted in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Bucket {
    Token(u64),
    Ip(std::net::IpAddr),
    Statuses(u64),
    Deletes(u64),
    Media(u64),
}

/// The state of one counter after a hit, for the headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Usage {
    pub limit: u32,
    pub remaining: u32,
    pub reset: DateTime<Utc>,
    /// Whether this hit went over the limit.
    pub exceeded: bool,
}

impl Usage {
    pub(crate) fn reset_header(&self) -> String {
        self.reset.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }

    /// Whole seconds until the reset, rounded up, for `Retry-After`.
    pub(crate) fn retry_after_secs(&self, now: DateTime<Utc>) -> i64 {
        let millis = (self.reset - now).num_milliseconds().max(0);
        (millis + 999) / 1000
    }
}

#[derive(Debug)]
struct Window {
    reset: DateTime<Utc>,
    count: u32,
}

/// The counters of one instance.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limits: RateLimits,
    windows: Mutex<HashMap<Bucket, Window>>,
}

impl RateLimiter {
    pub(crate) fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter { limits, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts one request in `bucket` and reports the counter's state.
    pub(crate) fn hit(&self, bucket: Bucket, now: DateTime<Utc>) -> Usage {
        let (limit, aligned) = match bucket {
            Bucket::Token(_) => (self.limits.api, true),
            Bucket::Ip(_) => (self.limits.unauthenticated_api, true),
            Bucket::Deletes(_) => (self.limits.deletes, true),
            Bucket::Media(_) => (self.limits.media, true),
            Bucket::Statuses(_) => (self.limits.statuses, false),
        };
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let window = windows.entry(bucket).or_insert(Window { reset: now, count: 0 });
        if window.reset <= now {
            window.count = 0;
            window.reset = next_reset(now, limit.period, aligned);
        }
        window.count = window.count.saturating_add(1);
        Usage {
            limit: limit.max,
            remaining: limit.max.saturating_sub(window.count),
            reset: window.reset,
            exceeded: window.count > limit.max,
        }
    }

    /// Whether the next hit on `bucket` would go over, without counting it. Used
    /// for limits that only count successful actions (statuses).
    pub(crate) fn would_exceed(&self, bucket: &Bucket, now: DateTime<Utc>) -> Option<Usage> {
        let limit = match bucket {
            Bucket::Statuses(_) => self.limits.statuses,
            Bucket::Deletes(_) => self.limits.deletes,
            Bucket::Media(_) => self.limits.media,
            Bucket::Token(_) => self.limits.api,
            Bucket::Ip(_) => self.limits.unauthenticated_api,
        };
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let window = windows.get(bucket)?;
        (window.reset > now && window.count >= limit.max).then_some(Usage {
            limit: limit.max,
            remaining: 0,
            reset: window.reset,
            exceeded: true,
        })
    }
}

fn next_reset(now: DateTime<Utc>, period: Duration, aligned: bool) -> DateTime<Utc> {
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1);
    let offset = if aligned { period_ms - now.timestamp_millis().rem_euclid(period_ms) } else { period_ms };
    now + TimeDelta::milliseconds(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_and_flags_the_hit_over_the_limit() {
        let limits = RateLimits { deletes: Limit::new(2, Duration::from_secs(60)), ..RateLimits::default() };
        let limiter = RateLimiter::new(limits);
        let now = Utc::now();
        let first = limiter.hit(Bucket::Deletes(1), now);
        assert_eq!((first.remaining, first.exceeded), (1, false));
        assert!(first.reset > now && first.reset <= now + TimeDelta::seconds(60));
        assert_eq!(first.reset.timestamp() % 60, 0, "rack-attack windows are aligned");
        assert!(!limiter.hit(Bucket::Deletes(1), now).exceeded);
        let third = limiter.hit(Bucket::Deletes(1), now);
        assert_eq!((third.remaining, third.exceeded), (0, true));
        assert!(!limiter.hit(Bucket::Deletes(2), now).exceeded, "per account");
        assert!(!limiter.hit(Bucket::Deletes(1), third.reset).exceeded, "window resets");
    }

    #[test]
    fn reset_header_has_microseconds() {
        let usage = Usage {
            limit: 300,
            remaining: 1,
            reset: DateTime::parse_from_rfc3339("2026-11-21T21:05:00Z").unwrap().with_timezone(&Utc),
            exceeded: false,
        };
        assert_eq!(usage.reset_header(), "2026-11-21T21:05:00.000000Z");
    }
}
