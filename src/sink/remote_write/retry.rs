//! Which failed pushes are retried, and how long to wait between attempts.

use std::time::{Duration, SystemTime};

use http::StatusCode;
use rand::Rng;

/// The retry policy of the remote-write sink: which outcomes of a push are retried,
/// and the backoff between attempts.
///
/// Exactly these are **retried**, with exponential backoff and full jitter
/// (each wait is uniform in `0..=min(max_backoff, initial_backoff * multiplier^n)`):
///
/// - connection errors (refused, reset, DNS, TLS handshake),
/// - timeouts (of the whole request, [`RemoteWriteOptions::timeout`](super::RemoteWriteOptions::timeout)),
/// - every `5xx` status,
/// - `429 Too Many Requests`.
///
/// On `429` and `503` a `Retry-After` header (delay in seconds, or an HTTP date) is
/// honoured instead of the computed backoff, capped at `max_backoff` so that one
/// response cannot stall the sink for hours.
///
/// Every **other `4xx`** is never retried: the receiver has said the batch itself is
/// wrong (bad labels, too old for a Prometheus head block, …), so sending it again
/// cannot help. The sink logs the status and the first line of the body, drops the
/// batch and counts its samples as rejected. `2xx` is success; `1xx` and `3xx`
/// (reqwest follows redirects) are treated like a rejecting `4xx`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Upper bound of the first wait. Default: [`default_initial_backoff`] (250 ms).
    pub initial_backoff: Duration,
    /// Upper bound of any wait. Default: [`default_max_backoff`] (30 s).
    pub max_backoff: Duration,
    /// Growth of the bound per attempt. Default: [`default_multiplier`] (2).
    pub multiplier: f64,
}

/// Default of [`RetryPolicy::initial_backoff`]: 250 ms.
pub fn default_initial_backoff() -> Duration {
    Duration::from_millis(250)
}

/// Default of [`RetryPolicy::max_backoff`]: 30 s.
pub fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

/// Default of [`RetryPolicy::multiplier`]: 2.
pub fn default_multiplier() -> f64 {
    2.0
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            multiplier: default_multiplier(),
        }
    }
}

/// What to do after one push attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The receiver accepted the batch.
    Accepted,
    /// Try again, after `retry_after` if the receiver said so, else after a backoff.
    Retry {
        /// The receiver's `Retry-After`, when present and valid on a 429 or 503.
        retry_after: Option<Duration>,
    },
    /// Never send this batch again.
    Reject,
}

impl RetryPolicy {
    /// Classifies a response status (see the type's docs for the rules).
    /// `retry_after` is the raw `Retry-After` header, if any; `now` is used to turn
    /// an HTTP date into a delay.
    pub fn classify_status(&self, status: StatusCode, retry_after: Option<&str>, now: SystemTime) -> Disposition {
        if status.is_success() {
            Disposition::Accepted
        } else if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            Disposition::Retry { retry_after: retry_after.and_then(|value| parse_retry_after(value, now)) }
        } else if status.is_server_error() {
            Disposition::Retry { retry_after: None }
        } else {
            Disposition::Reject
        }
    }

    /// Classifies a failure to get any response: connection errors and timeouts are
    /// always retried.
    pub fn classify_transport_error(&self) -> Disposition {
        Disposition::Retry { retry_after: None }
    }

    /// The upper bound of the wait before retry number `attempt` (0 for the first
    /// retry): `min(max_backoff, initial_backoff * multiplier^attempt)`.
    pub fn backoff_bound(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.max(1.0).powi(attempt.min(64) as i32);
        let bound = self.initial_backoff.as_secs_f64() * factor;
        if !bound.is_finite() || bound >= self.max_backoff.as_secs_f64() {
            self.max_backoff
        } else {
            Duration::from_secs_f64(bound)
        }
    }

    /// The wait before retry number `attempt`: the receiver's `Retry-After` (capped at
    /// `max_backoff`) when given, else a uniformly random wait up to
    /// [`backoff_bound`](Self::backoff_bound) ("full jitter", so that many probes
    /// recovering from the same outage do not push in lockstep).
    pub fn wait_before_retry(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(delay) => delay.min(self.max_backoff),
            None => {
                let bound = self.backoff_bound(attempt);
                let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(rand::rng().random_range(0..=nanos))
            }
        }
    }
}

/// Parses a `Retry-After` value: a delay in whole seconds, or an HTTP date (a date
/// in the past means "now"). Anything else is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, retry_after: Option<&str>) -> Disposition {
        RetryPolicy::default().classify_status(
            StatusCode::from_u16(status).unwrap(),
            retry_after,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )
    }

    #[test]
    fn success_statuses_are_accepted() {
        assert_eq!(classify(200, None), Disposition::Accepted);
        assert_eq!(classify(204, None), Disposition::Accepted);
    }

    #[test]
    fn retries_5xx_and_429_but_never_other_4xx() {
        for status in [500, 502, 503, 504, 599, 429] {
            assert!(matches!(classify(status, None), Disposition::Retry { .. }), "{status} must be retried");
        }
        for status in [400, 401, 403, 404, 409, 413, 422, 301] {
            assert_eq!(classify(status, None), Disposition::Reject, "{status}");
        }
        assert!(matches!(RetryPolicy::default().classify_transport_error(), Disposition::Retry { retry_after: None }));
    }

    #[test]
    fn honours_retry_after_in_seconds_and_as_http_date_on_429_and_503_only() {
        assert_eq!(classify(429, Some("7")), Disposition::Retry { retry_after: Some(Duration::from_secs(7)) });
        // 1_700_000_000 is Tue, 14 Nov 2023 22:13:20 GMT.
        assert_eq!(
            classify(503, Some("Tue, 14 Nov 2023 22:13:25 GMT")),
            Disposition::Retry { retry_after: Some(Duration::from_secs(5)) }
        );
        assert_eq!(
            classify(503, Some("Tue, 14 Nov 2023 22:00:00 GMT")),
            Disposition::Retry { retry_after: Some(Duration::ZERO) }
        );
        assert_eq!(classify(503, Some("soon")), Disposition::Retry { retry_after: None });
        assert_eq!(classify(500, Some("7")), Disposition::Retry { retry_after: None });
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_maximum_with_full_jitter() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff_bound(0), Duration::from_millis(250));
        assert_eq!(policy.backoff_bound(1), Duration::from_millis(500));
        assert_eq!(policy.backoff_bound(3), Duration::from_secs(2));
        assert_eq!(policy.backoff_bound(20), Duration::from_secs(30));
        assert_eq!(policy.backoff_bound(u32::MAX), Duration::from_secs(30));
        for attempt in 0..10 {
            assert!(policy.wait_before_retry(attempt, None) <= policy.backoff_bound(attempt));
        }
        assert_eq!(policy.wait_before_retry(0, Some(Duration::from_secs(3600))), Duration::from_secs(30));
    }
}
