//! What a run produced: plain data, serialisable for `--output json`, and the
//! only thing the metric sinks and the CLI see of a run.

use std::time::Duration;

use serde::Serialize;

pub use super::phases::{Phase, Phases};

/// How a run ended. Only `Success` and `Failure` count toward an SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// The instance's fault: an error status, a timeout, wrong content, a connection problem.
    Failure,
    /// Not the instance's fault: bad config, a missing token, the probe's own rate limit.
    ProbeError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::ProbeError => "probe_error",
        }
    }
}

/// Why a run did not succeed: a small fixed set, safe as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A status the step did not expect (5xx, an unexpected 4xx or 3xx).
    HttpStatus,
    /// A step, or the journey's deadline, ran out of time.
    Timeout,
    /// The TCP connection could not be made.
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The instance's name did not resolve.
    Dns,
    /// The connection closed before the response was complete.
    ConnectionClosed,
    /// The response was not valid HTTP.
    Protocol,
    /// Redirects went on for longer than a client follows them.
    RedirectLoop,
    /// The response body was larger than the probe reads.
    BodyTooLarge,
    /// The body was not JSON where JSON was needed.
    InvalidJson,
    /// The response did not have the expected content.
    Assertion,
    /// A federated post never arrived.
    NotDelivered,
    /// 429 from the server's own limiter: the probe's own schedule exceeded the instance's limits.
    RateLimited,
    /// 429 without the server's rate-limit headers or body: a CDN, WAF or proxy in
    /// front of the instance throttled the probe as it would a user.
    ProxyRateLimited,
    /// 403 that is not the server's JSON error (an HTML page): a CDN, WAF or proxy
    /// in front of the instance refused the request as it would a user's.
    ProxyForbidden,
    /// 401, or 403 with the server's JSON error, on the probe's token (or its scopes).
    Unauthorized,
    /// The probe's config or environment is incomplete (missing token, unset variable).
    Config,
    /// The probe stopped the run itself (shutting down).
    Cancelled,
    /// A prerequisite of a federation journey is missing: the receiving account
    /// does not follow the posting one.
    NotFollowing,
    /// A network failure (`connect`, `dns`, a timeout before connecting) while the
    /// probe's control target was unreachable too: the probe's own network is down.
    ProbeNetwork,
    /// The instance's streaming URL is one the probe does not send its token to:
    /// not `wss://` for an `https://` instance, or on a host that is neither the
    /// instance's, under its parent domain, nor in its `streaming_hosts`. The
    /// stream is not opened (a `stream` step polls its fallback instead).
    StreamingUrl,
}

impl Reason {
    pub const ALL: [Reason; 21] = [
        Reason::HttpStatus,
        Reason::Timeout,
        Reason::Connect,
        Reason::Tls,
        Reason::Dns,
        Reason::ConnectionClosed,
        Reason::Protocol,
        Reason::RedirectLoop,
        Reason::BodyTooLarge,
        Reason::InvalidJson,
        Reason::Assertion,
        Reason::NotDelivered,
        Reason::ProxyRateLimited,
        Reason::ProxyForbidden,
        Reason::RateLimited,
        Reason::Unauthorized,
        Reason::Config,
        Reason::Cancelled,
        Reason::NotFollowing,
        Reason::ProbeNetwork,
        Reason::StreamingUrl,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HttpStatus => "http_status",
            Reason::Timeout => "timeout",
            Reason::Connect => "connect",
            Reason::Tls => "tls",
            Reason::Dns => "dns",
            Reason::ConnectionClosed => "connection_closed",
            Reason::Protocol => "protocol",
            Reason::RedirectLoop => "redirect_loop",
            Reason::BodyTooLarge => "body_too_large",
            Reason::InvalidJson => "invalid_json",
            Reason::Assertion => "assertion",
            Reason::NotDelivered => "not_delivered",
            Reason::RateLimited => "rate_limited",
            Reason::ProxyRateLimited => "proxy_rate_limited",
            Reason::ProxyForbidden => "proxy_forbidden",
            Reason::Unauthorized => "unauthorized",
            Reason::Config => "config",
            Reason::Cancelled => "cancelled",
            Reason::NotFollowing => "not_following",
            Reason::ProbeNetwork => "probe_network",
            Reason::StreamingUrl => "streaming_url",
        }
    }

    /// Whose fault a problem with this reason is.
    pub fn outcome(self) -> Outcome {
        match self {
            Reason::RateLimited
            | Reason::Unauthorized
            | Reason::Config
            | Reason::Cancelled
            | Reason::NotFollowing
            | Reason::ProbeNetwork
            | Reason::StreamingUrl => Outcome::ProbeError,
            _ => Outcome::Failure,
        }
    }
}

/// An assertion that did not hold, with what was expected and what came.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssertionFailure {
    /// The assertion as written, e.g. `$.visibility equals "private"`.
    pub assertion: String,
    pub expected: String,
    pub actual: String,
}

/// Why a step did not pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepError {
    pub reason: Reason,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertion: Option<AssertionFailure>,
}

impl StepError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        StepError { reason, message: message.into(), assertion: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Passed,
    Failed,
    /// Not run: an earlier step failed, or (cleanup) what it needs was never captured.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub name: String,
    /// The instance the step talked to.
    pub instance: String,
    pub status: StepStatus,
    /// A request step: from its first request's first phase (the request going
    /// out) to its last answer's arrival, all attempts of a poll and the waits
    /// between them, redirects followed included (`Phases::clocked`). A
    /// `stream` step: the wait for its event, its stream's opening included.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// Requests made (more than one for a poll).
    pub attempts: u32,
    /// The last response's HTTP status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Where the time of the step's HTTP exchanges went, summed over all its
    /// attempts and redirects (like `duration`). Absent when no request was made.
    /// For one exchange they add up to `duration`; for a poll, `duration` also
    /// has the waits between attempts and the probe's work between them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<Phases>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// Why the step was skipped, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_because: Option<String>,
    /// For a `stream` step that saw its post arrive: how and how fast.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// For a `stream` step: why the streaming API could not be used, when it could
    /// not (the fallback poll, if any, took over).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_error: Option<StepError>,
    /// For a `parallel` group: its members' own results, each with its own
    /// duration and phases (the group's `duration` is until the last answer; it
    /// has no phases itself, since its members' overlap).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parallel: Vec<StepResult>,
}

impl StepResult {
    /// Scrubs the step's texts, and its parallel members' (see `RunResult::scrub`).
    fn scrub(&mut self) {
        use crate::secret::scrub_in_place as clean;
        for e in self.error.iter_mut().chain(self.stream_error.iter_mut()) {
            clean(&mut e.message);
            if let Some(a) = &mut e.assertion {
                clean(&mut a.assertion);
                clean(&mut a.actual);
                clean(&mut a.expected);
            }
        }
        if let Some(why) = &mut self.skipped_because {
            clean(why);
        }
        for member in &mut self.parallel {
            member.scrub();
        }
    }

    /// This result and its parallel group's members' results.
    pub fn with_members(&self) -> impl Iterator<Item = &StepResult> {
        std::iter::once(self).chain(&self.parallel)
    }
}

/// A post seen arriving on another instance.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The instance the post was made on.
    pub source: String,
    /// The instance it arrived on.
    pub destination: String,
    /// The streaming event awaited: `update` (a post in a home feed: federation
    /// delay) or `notification` (a mention notified: notification delay).
    pub event: String,
    /// How it was first seen: `stream`, or `poll` (the fallback, when the stream
    /// could not be used or the poll saw it first).
    pub method: super::stream::Method,
    /// The delay figure: arrival (frame read, or poll response read) minus the end
    /// of the `delay_from` step, on the probe's monotonic clock; never negative.
    /// Never more than one fallback interval (plus the finding poll's own response
    /// time) above the true arrival; absent when the probe cannot bound it so
    /// tightly (a poll that could not be sent on its schedule found it).
    #[serde(serialize_with = "optional_seconds")]
    pub delay: Option<Duration>,
    /// When it was seen, after the post: the delay is at most this.
    #[serde(serialize_with = "seconds")]
    pub seen_after: Duration,
    /// The latest moment it was known not to have arrived, after the post (zero:
    /// not known beyond the post itself): the delay is at least this.
    #[serde(serialize_with = "seconds")]
    pub absent_after: Duration,
}

/// One run of one journey.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub journey: String,
    pub instance: String,
    pub account: String,
    /// Wall-clock time at the start of the run: the samples' timestamp.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The sum of the steps' durations (cleanup excluded), monotonic: the
    /// probe's own work between steps is not in it.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Successful and within the SLO's latency threshold (just successful, without one).
    pub latency_ok: bool,
    /// For journeys with a delay objective, when a post was made: successful, and
    /// the post arrived within its threshold. A failed run after the post (a post
    /// never delivered included) is a miss. Absent when no post was made, and when
    /// a delivery without a figure cannot tell (see `Delivery::delay`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ok: Option<bool>,
    /// For journeys with an APDEX objective: where the run falls (a failed run
    /// is frustrated). Absent for a `probe_error` run, which has no score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apdex: Option<crate::spec::journey::ApdexZone>,
    /// The step that decided a failure or probe error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    pub steps: Vec<StepResult>,
    pub cleanup: Vec<StepResult>,
    /// Values captured from responses, by name.
    pub captures: Vec<(String, String)>,
}

impl RunResult {
    /// A run with no steps, no reason, nothing captured and none of the
    /// verdicts an SLO gives: what a stand-in for the runner reports (the
    /// scheduler's and the tests'), its other fields set by struct update.
    pub fn without_steps(
        journey: &str,
        instance: &str,
        started_at: chrono::DateTime<chrono::Utc>,
        duration: Duration,
        outcome: Outcome,
    ) -> RunResult {
        RunResult {
            journey: journey.to_owned(),
            instance: instance.to_owned(),
            account: String::new(),
            started_at,
            duration,
            outcome,
            reason: None,
            latency_ok: outcome == Outcome::Success,
            delay_ok: None,
            apdex: None,
            failed_step: None,
            steps: Vec::new(),
            cleanup: Vec::new(),
            captures: Vec::new(),
        }
    }

    /// The error of the step that decided the outcome.
    pub fn error(&self) -> Option<&StepError> {
        let name = self.failed_step.as_deref()?;
        self.steps.iter().find(|s| s.name == name)?.error.as_ref()
    }

    /// Removes every secret the process knows, and every piece of one (see
    /// [`crate::secret::scrub`]), from all the free text a result shows: error
    /// messages, assertions' values, skip reasons, captured values. Whatever a
    /// server echoed back ends up in one of them.
    pub fn scrub(&mut self) {
        use crate::secret::scrub_in_place as clean;
        for step in self.steps.iter_mut().chain(self.cleanup.iter_mut()) {
            step.scrub();
        }
        for (_, value) in &mut self.captures {
            clean(value);
        }
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn optional_seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}
