//! Mastodon's rate limits, and how much of them the journeys' schedules use.
//!
//! A probe that runs into the instance's limits measures its own schedule, not
//! the instance: `check` adds up, per instance, what every journey does per run
//! times how often its schedule fires in the worst window, and compares that with
//! the limits Mastodon enforces (from its `config/initializers/rack_attack.rb` and
//! the per-account limits on statuses, deletes and media).

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::journey::{Journey, Step, StepKind};

/// One limit Mastodon enforces on an account or a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// What is counted, in words ("statuses posted").
    pub what: &'static str,
    pub max: u32,
    pub per: Duration,
}

pub const API_CALLS: Limit = Limit { what: "API calls", max: 300, per: Duration::from_secs(5 * 60) };
/// Calls without a token are limited per IP address: all of a probe's journeys share it.
pub const UNAUTHENTICATED_API_CALLS: Limit =
    Limit { what: "unauthenticated API calls", max: 300, per: Duration::from_secs(5 * 60) };
pub const STATUSES: Limit = Limit { what: "statuses posted", max: 300, per: Duration::from_secs(3 * 3600) };
pub const DELETES: Limit = Limit { what: "statuses deleted", max: 30, per: Duration::from_secs(30 * 60) };
pub const MEDIA: Limit = Limit { what: "media uploads", max: 30, per: Duration::from_secs(30 * 60) };

/// Mastodon's defaults. An instance may have raised them (`rate_limits` in the config).
pub const LIMITS: [Limit; 5] = [API_CALLS, UNAUTHENTICATED_API_CALLS, STATUSES, DELETES, MEDIA];

/// Which limits one request counts against. Only `/api/` paths are throttled
/// (`/health` and the like are not); a request without a token counts per IP.
pub fn limits_hit(method: &http::Method, path: &str, authenticated: bool) -> Vec<Limit> {
    if !path.starts_with("/api/") {
        return Vec::new();
    }
    let mut out = vec![if authenticated { API_CALLS } else { UNAUTHENTICATED_API_CALLS }];
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["", "api", "v1", "statuses"]) => out.push(STATUSES),
        ("DELETE", ["", "api", "v1", "statuses", _]) => out.push(DELETES),
        ("POST", ["", "api", "v1" | "v2", "media"]) => out.push(MEDIA),
        _ => {}
    }
    out
}

/// The most requests a step can make in one run: one, or every attempt of a poll.
pub fn worst_case_attempts(step: &Step) -> u32 {
    match &step.kind {
        StepKind::Request(_) => 1,
        StepKind::Poll(p) => polls(p.within, p.interval),
        // Opening the stream is not rate limited; its fallback polls (worst case: the
        // stream is down for the whole wait) are.
        StepKind::Stream(s) => s.fallback.as_ref().map_or(0, |f| polls(s.within, f.interval)),
    }
}

fn polls(within: Duration, interval: Duration) -> u32 {
    let interval = interval.as_secs_f64().max(0.001);
    (within.as_secs_f64() / interval).ceil() as u32 + 1
}

/// How many times a journey uses each limit per run, on each instance it talks to.
pub fn usage_per_run(journey: &Journey) -> Vec<(String, Limit, u32)> {
    let mut out: Vec<(String, Limit, u32)> = Vec::new();
    for step in journey.steps.iter().chain(&journey.cleanup) {
        let instance = journey.step_instance(step).to_owned();
        let Some(request) = step.kind.request() else { continue };
        let attempts = worst_case_attempts(step);
        for limit in limits_hit(&request.method, &request.path.to_string(), request.auth) {
            match out.iter_mut().find(|(i, l, _)| *i == instance && l.what == limit.what) {
                Some(entry) => entry.2 += attempts,
                None => out.push((instance.clone(), limit, attempts)),
            }
        }
    }
    out
}

/// A fixed reference week, so that `check` (and the generators) never read the
/// clock: a Monday at 00:00 UTC.
fn reference_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().expect("valid date")
}

/// The shortest and the longest gap between consecutive firings of `cron` over
/// the reference week and one day more (so the wrap into the next week is seen),
/// looking at no more than `cap` firings. `None` when it fires fewer than twice.
pub fn gaps(cron: &croner::Cron, cap: usize) -> Option<(Duration, Duration)> {
    let start = reference_start();
    let end = start + chrono::Duration::days(8);
    let (mut shortest, mut longest) = (i64::MAX, 0i64);
    let mut previous: Option<i64> = None;
    for t in cron.iter_from(start, croner::Direction::Forward).take(cap) {
        if t >= end {
            break;
        }
        if let Some(p) = previous {
            shortest = shortest.min(t.timestamp() - p);
            longest = longest.max(t.timestamp() - p);
        }
        previous = Some(t.timestamp());
    }
    (longest > 0).then(|| (Duration::from_secs(shortest as u64), Duration::from_secs(longest as u64)))
}

/// The most times `cron` fires within any window of length `per`, looking at a
/// reference week (plus one window, so windows that wrap are seen). Stops counting
/// at `cap` (a schedule firing every second would otherwise take a while).
pub fn max_runs_in_window(cron: &croner::Cron, per: Duration, cap: usize) -> usize {
    let start = reference_start();
    let end = start + chrono::Duration::days(7) + chrono::Duration::from_std(per).unwrap_or_default();
    let mut times: Vec<i64> = Vec::new();
    for t in cron.iter_from(start, croner::Direction::Forward) {
        if t >= end || times.len() >= cap {
            break;
        }
        times.push(t.timestamp());
    }
    let span = per.as_secs() as i64;
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= span {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// One limit the schedules would exceed on one instance.
#[derive(Debug, Clone)]
pub struct Overrun {
    pub instance: String,
    pub limit: Limit,
    /// The most uses in one window, all journeys together.
    pub worst: u64,
    /// Each journey's share, largest first: (journey index, uses in the window).
    pub journeys: Vec<(usize, u64)>,
}

/// Every limit the journeys' schedules exceed together, per instance, with the
/// limits `limits_for` gives for each instance name.
pub fn check(journeys: &[Journey], limits_for: &dyn Fn(&str) -> Vec<Limit>) -> Vec<Overrun> {
    let mut overruns: Vec<Overrun> = Vec::new();
    let usages: Vec<Vec<(String, Limit, u32)>> = journeys.iter().map(usage_per_run).collect();
    let mut instances: Vec<&str> = usages.iter().flatten().map(|(i, _, _)| i.as_str()).collect();
    instances.sort();
    instances.dedup();
    for instance in instances {
        for limit in limits_for(instance) {
            let mut shares: Vec<(usize, u64)> = Vec::new();
            for (index, usage) in usages.iter().enumerate() {
                for (i, l, per_run) in usage {
                    if i == instance && l.what == limit.what {
                        let runs = max_runs_in_window(&journeys[index].schedule.cron, limit.per, 1_000_000);
                        shares.push((index, runs as u64 * u64::from(*per_run)));
                    }
                }
            }
            // Summing each journey's worst window over-estimates a little when the
            // worst windows of different journeys don't coincide; for a limit, erring
            // on the safe side is right.
            let worst: u64 = shares.iter().map(|(_, n)| n).sum();
            if worst > u64::from(limit.max) {
                shares.sort_by_key(|share| std::cmp::Reverse(share.1));
                overruns.push(Overrun { instance: instance.to_owned(), limit, worst, journeys: shares });
            }
        }
    }
    overruns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::journey::Schedule;

    #[test]
    fn counts_runs_in_the_worst_window() {
        let every_minute = Schedule::parse("* * * * *").unwrap();
        assert_eq!(max_runs_in_window(&every_minute, Duration::from_secs(30 * 60), usize::MAX), 30);
        let hourly = Schedule::parse("0 * * * *").unwrap();
        assert_eq!(max_runs_in_window(&hourly, Duration::from_secs(3 * 3600), usize::MAX), 3);
        let burst = Schedule::parse("0-9 3 * * *").unwrap();
        assert_eq!(max_runs_in_window(&burst, Duration::from_secs(30 * 60), usize::MAX), 10);
    }

    #[test]
    fn gaps_are_the_shortest_and_longest_between_firings() {
        let gaps = |s: &str| gaps(&Schedule::parse(s).unwrap(), usize::MAX);
        assert_eq!(gaps("*/5 * * * *"), Some((Duration::from_secs(300), Duration::from_secs(300))));
        assert_eq!(gaps("0,50 * * * *"), Some((Duration::from_secs(600), Duration::from_secs(3000))));
        assert_eq!(gaps("0 9 * * 1"), Some((Duration::from_secs(7 * 86_400), Duration::from_secs(7 * 86_400))));
        assert_eq!(gaps("0 9 1 1 *"), None);
    }

    #[test]
    fn classifies_requests_like_mastodon() {
        assert!(limits_hit(&http::Method::POST, "/api/v1/statuses", true).contains(&STATUSES));
        assert!(limits_hit(&http::Method::DELETE, "/api/v1/statuses/${id}", true).contains(&DELETES));
        assert!(limits_hit(&http::Method::POST, "/api/v2/media", true).contains(&MEDIA));
        assert_eq!(limits_hit(&http::Method::GET, "/api/v1/timelines/home", true), vec![API_CALLS]);
        assert_eq!(limits_hit(&http::Method::POST, "/api/v1/statuses/${id}/favourite", true), vec![API_CALLS]);
        assert_eq!(limits_hit(&http::Method::GET, "/api/v2/instance", false), vec![UNAUTHENTICATED_API_CALLS]);
        assert!(limits_hit(&http::Method::GET, "/health", false).is_empty());
    }
}
