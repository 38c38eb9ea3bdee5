//! The journey model: what a journey file says. Its parser is `read_journey`.
//!
//! A journey names its target instance, its cron schedule, its SLO and a list of
//! steps, plus cleanup steps that always run. Each field documents its default.
//! Parsed types carry source positions; what a run produced lives in
//! `crate::runner`, never here.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::diag::Pos;
use super::template::{JsonTemplate, Template, Var};
use super::values::Objective;

/// Default journey deadline: the whole run, all steps (cleanup has its own budget).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);
/// Default timeout of one request (one attempt, for a poll).
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default interval between a poll's attempts.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default SLO window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 86_400);

/// What a journey's duration covers, unless the journey says otherwise.
pub const DEFAULT_MEASURES: &str = "each step from its request going out to its last response byte \
received, at the probe, including DNS, TCP and TLS on a fresh connection, summed over the steps; the \
probe's own work and cleanup excluded";

#[derive(Debug, Clone)]
pub struct Journey {
    pub name: String,
    pub description: Option<String>,
    /// What the journey's duration covers, stated for the dashboards and the report.
    pub measures: String,
    pub file: PathBuf,
    /// The instance the journey's samples are labelled with, and the default target of its steps.
    pub instance: String,
    pub instance_pos: Pos,
    /// Which of the instance's probe accounts the journey runs as (`accounts:`):
    /// default the primary one only.
    pub accounts: AccountChoice,
    /// The account this copy of the journey runs as, on its own instance: `None`
    /// is the instance's primary account (every journey as read from its file);
    /// [`super::accounts::runs`] makes one copy per chosen account.
    pub run_as: Option<String>,
    pub schedule: Schedule,
    pub slo: Slo,
    /// Default 60 s: the whole run (not cleanup) must end within it.
    pub deadline: Duration,
    pub steps: Vec<Step>,
    /// Run after the steps whatever happened, e.g. delete what the journey posted.
    pub cleanup: Vec<Step>,
}

impl Journey {
    /// Every instance the journey talks to (its own first), with where it is named.
    pub fn instances(&self) -> Vec<(&str, Pos)> {
        let mut out = vec![(self.instance.as_str(), self.instance_pos)];
        for step in self.steps.iter().chain(&self.cleanup).flat_map(Step::leaves) {
            if let Some((name, pos)) = &step.instance
                && !out.iter().any(|(n, _)| n == name)
            {
                out.push((name.as_str(), *pos));
            }
        }
        out
    }

    /// The instance a step talks to.
    pub fn step_instance<'a>(&'a self, step: &'a Step) -> &'a str {
        step.instance.as_ref().map(|(n, _)| n.as_str()).unwrap_or(&self.instance)
    }

    /// What tells this copy's runs apart from the other accounts' copies of the
    /// same journey: its name on the primary account (so the single-account case
    /// keeps its schedule state and offsets), `NAME@ACCOUNT` on another.
    pub fn run_key(&self) -> String {
        match &self.run_as {
            None => self.name.clone(),
            Some(account) => format!("{}@{account}", self.name),
        }
    }

    /// The account a step's requests go out as on `instance`: this copy's on the
    /// journey's own instance, the primary one (`None`) on any other (the
    /// federation journeys' counterpart).
    pub fn account_on(&self, instance: &str) -> Option<&str> {
        if instance == self.instance { self.run_as.as_deref() } else { None }
    }
}

/// Which probe accounts of its instance a journey runs as.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AccountChoice {
    /// The instance's primary account (`account:` in the config): the default.
    #[default]
    Primary,
    /// Every probe account of the instance, a run each (`accounts: all`).
    All,
    /// The accounts named, by user name, with where each is named (`accounts: [a, b]`).
    Named(Vec<(String, Pos)>),
}

/// A cron schedule in Kubernetes CronJob syntax (5 fields; an optional leading
/// seconds field is accepted), evaluated in UTC.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub text: String,
    /// Shared by every journey with the same text: croner's `Cron` is about 5 KB,
    /// and a journey is held in several copies (as loaded, per account, per
    /// schedule), so 1 000 journeys kept 15 MB of copies of a few schedules.
    pub cron: std::sync::Arc<Cron>,
    pub pos: Pos,
}

/// Why a schedule is not a cron expression fediprobe accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Neither Kubernetes' 5 fields nor 6 with seconds.
    #[error("a schedule has 5 fields (minute hour day-of-month month day-of-week), this one has {0}")]
    FieldCount(usize),
    /// The cron parser refused it (its message says where).
    #[error("{0}")]
    Cron(String),
}

impl Schedule {
    /// The schedule's text with its fields separated by single spaces: journeys
    /// whose schedules read the same run together (one CronJob per schedule).
    pub fn normalized(&self) -> String {
        self.text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The cron expression `text`. Parsed once per distinct text in a thread
    /// (a thousand journeys on a handful of schedules, at every start and reload:
    /// croner's parse was a third of the agent's start-up).
    pub fn parse(text: &str) -> Result<std::sync::Arc<Cron>, ScheduleError> {
        type Parsed = Result<std::sync::Arc<Cron>, ScheduleError>;
        thread_local! {
            static PARSED: std::cell::RefCell<std::collections::HashMap<String, Parsed>> = Default::default();
        }
        /// Bounds the memo over a process's reloads; a config rarely has more.
        const MEMO_MAX: usize = 256;
        PARSED.with_borrow_mut(|parsed| {
            if let Some(known) = parsed.get(text) {
                return known.clone();
            }
            if parsed.len() >= MEMO_MAX {
                parsed.clear();
            }
            let result = Schedule::parse_uncached(text).map(std::sync::Arc::new);
            parsed.insert(text.to_owned(), result.clone());
            result
        })
    }

    fn parse_uncached(text: &str) -> Result<Cron, ScheduleError> {
        let fields = text.split_whitespace().count();
        if !text.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(ScheduleError::FieldCount(fields));
        }
        CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| ScheduleError::Cron(e.to_string()))
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Schedule { text: s.to_owned(), cron: Schedule::parse(s)?, pos: Pos::default() })
    }
}

#[derive(Debug, Clone)]
pub struct Slo {
    /// Share of runs that must succeed, e.g. 99.5%.
    pub availability: Objective,
    /// Share of runs that must succeed within a threshold, e.g. 95% within 300 ms.
    pub latency: Option<LatencyObjective>,
    /// For journeys with a `stream` step measuring delivery: share of runs whose
    /// post arrives within a threshold, e.g. 99% within 30 s.
    pub delay: Option<LatencyObjective>,
    /// An APDEX objective: the score of the runs (satisfied 1, tolerating ½,
    /// frustrated 0) averaged over a window must stay at or above it.
    pub apdex: Option<ApdexObjective>,
    /// The rolling window, 30 days unless set (whole days, 7 to 90).
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct LatencyObjective {
    pub threshold: Duration,
    pub objective: Objective,
}

/// `apdex: { threshold: 100ms, tolerating: 500ms, objective: 0.90 }`: a run is
/// satisfied when it succeeds within `threshold`, tolerating when it succeeds
/// within `tolerating`, frustrated otherwise. A failed run is frustrated however
/// fast it failed (an error page is no faster service); a `probe_error` run has
/// no score at all (it is not the instance's doing).
#[derive(Debug, Clone)]
pub struct ApdexObjective {
    /// T: at or under it, a successful run satisfies.
    pub threshold: Duration,
    /// Default 4 × `threshold`, as the APDEX specification has it: at or under
    /// it, a successful run is tolerated.
    pub tolerating: Duration,
    /// The lowest acceptable score, e.g. 0.90.
    pub objective: Objective,
}

/// How the APDEX method files one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApdexZone {
    Satisfied,
    Tolerating,
    Frustrated,
}

impl ApdexZone {
    /// The run's score: 1, 0.5 or 0. Averaged over runs, it is the APDEX,
    /// `(satisfied + tolerating / 2) / runs`.
    pub fn score(self) -> f64 {
        match self {
            ApdexZone::Satisfied => 1.0,
            ApdexZone::Tolerating => 0.5,
            ApdexZone::Frustrated => 0.0,
        }
    }
}

impl ApdexObjective {
    /// `tolerating` when the journey does not say: four times the threshold.
    pub const DEFAULT_TOLERATING_FACTOR: u32 = 4;

    /// Where a run of `duration` that `succeeded` (or failed) falls. Both bounds
    /// are inclusive: a run of exactly T satisfies.
    pub fn zone(&self, succeeded: bool, duration: Duration) -> ApdexZone {
        match (succeeded, duration) {
            (true, d) if d <= self.threshold => ApdexZone::Satisfied,
            (true, d) if d <= self.tolerating => ApdexZone::Tolerating,
            _ => ApdexZone::Frustrated,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub pos: Pos,
    /// Another instance than the journey's, for journeys that span two.
    pub instance: Option<(String, Pos)>,
    /// Default 10 s: one request (one attempt of a poll).
    pub timeout: Duration,
    pub kind: StepKind,
    pub expect: Expect,
    pub captures: Vec<Capture>,
    /// What a failure of this step means, when it is not the instance's fault: a
    /// prerequisite check (e.g. that a follow exists) says `fail_as: not_following`.
    pub fail_as: Option<FailAs>,
    /// Default none. `if_missing: id` runs the step only when no earlier step
    /// captured `id` (skipped otherwise): how a journey creates what it keeps,
    /// e.g. the standing status `favourite` finds, once.
    pub if_missing: Option<String>,
}

/// The reasons a step may claim for its own failures (assertions and HTTP statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAs {
    /// The receiving account does not follow the posting one: the probe's set-up is incomplete.
    NotFollowing,
}

impl FailAs {
    pub const NAMES: &'static [&'static str] = &["not_following"];
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Request(RequestSpec),
    Poll(PollSpec),
    Stream(StreamSpec),
    /// Steps sent at the same time, as an app fetches what it shows when opened:
    /// the group lasts until the last answer. Each is a `request` or a `poll`,
    /// with its own connection (an app's cold start over HTTP/1.1 opens one per
    /// concurrent request), its own phases and its own result; none may use a
    /// sibling's captures, the steps after the group may use them all.
    Parallel(Vec<Step>),
}

impl StepKind {
    /// The HTTP request the step makes (for a stream, its polling fallback's, if any).
    pub fn request(&self) -> Option<&RequestSpec> {
        match self {
            StepKind::Request(r) => Some(r),
            StepKind::Poll(p) => Some(&p.request),
            StepKind::Stream(s) => s.fallback.as_ref().map(|f| &f.request),
            StepKind::Parallel(_) => None,
        }
    }
}

impl Step {
    /// The steps that make requests: a parallel group's members, or the step itself.
    pub fn leaves(&self) -> Vec<&Step> {
        match &self.kind {
            StepKind::Parallel(members) => members.iter().collect(),
            _ => vec![self],
        }
    }
}

pub const STEP_KINDS: &[&str] = &["request", "poll", "stream", "parallel"];

/// Waits on the instance's streaming API (`/api/v1/streaming?stream=…` over a
/// websocket) for an event whose parsed payload passes the step's `expect`.
/// The socket is opened just before the step `open_before` runs, so that what
/// that step causes (a post on another instance) cannot be missed.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Default `user`: the account's home feed and notifications.
    pub stream: String,
    /// Default `update`: a status inserted into the home feed.
    pub event: String,
    /// The earlier step before which the socket is opened.
    pub open_before: String,
    /// The earlier step whose response starts the delivery delay; default `open_before`.
    pub delay_from: String,
    /// Default 5 min (and never past the journey's deadline): no matching event by
    /// then is a failure with reason `not_delivered`.
    pub within: Duration,
    /// Polling to fall back on when the stream cannot be used.
    pub fallback: Option<FallbackSpec>,
    /// Default 45 s: a stream with no frame at all, not even a ping, for this long
    /// counts as broken (Mastodon's streaming server pings every 30 s), so a
    /// server that accepts and then stays silent switches to the fallback.
    pub silence: Duration,
}

pub const DEFAULT_STREAM_WITHIN: Duration = Duration::from_secs(300);
pub const DEFAULT_STREAM_SILENCE: Duration = Duration::from_secs(45);

/// A stream step's fallback: poll a request until its own `expect` holds.
#[derive(Debug, Clone)]
pub struct FallbackSpec {
    pub request: RequestSpec,
    /// Default 2 s between attempts.
    pub interval: Duration,
    pub expect: Expect,
}

#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// Default GET.
    pub method: http::Method,
    /// Path on the instance, starting with `/`.
    pub path: Template,
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Body>,
    /// Default false: a redirect is a response like any other, as a probe must see it.
    pub follow_redirects: bool,
    /// Default true: send the instance's token as `Authorization: Bearer`.
    pub auth: bool,
}

#[derive(Debug, Clone)]
pub enum Body {
    Form(Vec<(String, Template)>),
    Json(JsonTemplate),
    /// `multipart/form-data`, as apps upload media: text fields and files.
    Multipart(Vec<(String, Part)>),
}

impl Body {
    /// Every variable the body's templates use.
    pub fn vars(&self) -> Vec<&Var> {
        match self {
            Body::Form(fields) => fields.iter().flat_map(|(_, t)| t.vars()).collect(),
            Body::Json(json) => json.vars(),
            Body::Multipart(parts) => parts
                .iter()
                .flat_map(|(_, part)| match part {
                    Part::Text(t) => t.vars().collect::<Vec<_>>(),
                    Part::File(file) => file.filename.vars().collect(),
                })
                .collect(),
        }
    }
}

/// One field of a `multipart:` body.
#[derive(Debug, Clone)]
pub enum Part {
    /// A text field, e.g. a media `description`.
    Text(Template),
    File(FilePart),
}

/// A file field: its bytes, the file name sent, and its content type.
#[derive(Debug, Clone)]
pub struct FilePart {
    pub content: FileContent,
    /// Default: the file's own name, or `fediprobe.png` for a generated image.
    pub filename: Template,
    /// Default: from the file name's extension (png, jpg, jpeg, gif, webp, mp4,
    /// webm, mp3, ogg); required for other files.
    pub content_type: String,
}

/// Where a file field's bytes come from.
#[derive(Debug, Clone)]
pub enum FileContent {
    /// `file: NAME`: a file in the journey's folder, read when the journey is loaded.
    Bytes(std::sync::Arc<Vec<u8>>),
    /// `generate: png`: a valid PNG image of `size`×`size` pixels (default 64),
    /// different for every run (its pixels depend on the run's nonce), made
    /// when the request is sent: bundled journeys need no file beside them.
    Png { size: u32 },
}

/// The largest file a `multipart:` body may carry (Mastodon's own limit for
/// video is 99 MB; a probe has no business sending more).
pub const MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;
/// The largest generated image side, in pixels.
pub const MAX_GENERATED_SIDE: u32 = 4096;

#[derive(Debug, Clone)]
pub struct PollSpec {
    pub request: RequestSpec,
    /// Default 1 s between attempts.
    pub interval: Duration,
    /// How long to keep trying (bounded by the journey deadline too).
    pub within: Duration,
}

/// What a response must look like.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Accepted statuses; empty means any 2xx.
    pub status: Vec<u16>,
    pub headers: Vec<HeaderAssert>,
    pub json: Vec<JsonAssert>,
}

#[derive(Debug, Clone)]
pub struct HeaderAssert {
    pub name: String,
    pub predicate: Predicate,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct JsonAssert {
    /// Default false: the assertion holds when any matched value passes. With
    /// `every: true`, every matched value must pass (and an empty match passes).
    pub every: bool,
    pub path_text: String,
    pub path: serde_json_path::JsonPath,
    pub predicate: Predicate,
    pub pos: Pos,
}

/// One test of a value. For a JSONPath that matches several values, the
/// assertion holds when it holds for any of them (`exists` and `count` look at the whole match).
#[derive(Debug, Clone)]
pub enum Predicate {
    Equals(JsonTemplate),
    NotEquals(JsonTemplate),
    Contains(Template),
    Matches(regex::Regex),
    Exists(bool),
    Type(JsonType),
    MinLength(usize),
    Count(usize),
}

impl Predicate {
    pub const KEYS: &'static [&'static str] =
        &["equals", "not_equals", "contains", "matches", "exists", "type", "min_length", "count"];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    String,
    Number,
    Boolean,
    Array,
    Object,
    Null,
}

impl JsonType {
    pub const NAMES: &'static [&'static str] = &["string", "number", "boolean", "array", "object", "null"];

    pub fn of(value: &serde_json::Value) -> JsonType {
        match value {
            serde_json::Value::Null => JsonType::Null,
            serde_json::Value::Bool(_) => JsonType::Boolean,
            serde_json::Value::Number(_) => JsonType::Number,
            serde_json::Value::String(_) => JsonType::String,
            serde_json::Value::Array(_) => JsonType::Array,
            serde_json::Value::Object(_) => JsonType::Object,
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone)]
pub struct Capture {
    pub name: String,
    pub source: CaptureSource,
    /// Default false: a capture that finds nothing fails the step. With
    /// `optional: true` the variable is left unset instead (see `Step::if_missing`).
    pub optional: bool,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub enum CaptureSource {
    Json { text: String, path: serde_json_path::JsonPath },
    Header(String),
}

pub use super::read_journey::read_journey;
