//! The runner: executes one journey once against real instances and returns a
//! plain [`RunResult`].
//!
//! It owns the steps (request, poll), the HTTP exchange ([`http`]), checking and
//! capturing ([`check`]) and the instances' tokens ([`target`]). It knows nothing
//! about schedules or metric sinks.
//!
//! Invariants:
//! - **No hidden retries.** A request that fails, fails the run; only a `poll`
//!   step repeats, and only while its assertions don't hold yet.
//! - **Durations come from the monotonic clock**; the wall clock is read once, for
//!   the run's timestamp.
//! - **Cleanup always runs**, after success, failure or the deadline, each step
//!   within its own timeout, and never changes the run's outcome.
//! - **Tokens never leave** except in the `Authorization` header of requests to
//!   their own instance; anything shown is scrubbed of them.

pub mod check;
pub mod connect;
mod h1;
pub mod http;
pub mod multipart;
pub mod phases;
mod received;
pub mod result;
pub mod stream;
pub mod sweep;
pub mod target;

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use std::collections::HashMap;

use crate::spec::journey::{Body, FailAs, Journey, RequestSpec, Step, StepKind, StreamSpec};
use crate::spec::template::Var;
use check::Body as ResponseBody;
pub use connect::Resolver;
pub use result::{Delivery, Outcome, Phase, Phases, Reason, RunResult, StepError, StepResult, StepStatus};
pub use target::{Target, targets_from_config};

/// Runs journeys against a fixed set of targets.
#[derive(Debug, Clone)]
pub struct Runner {
    targets: Vec<Target>,
    tls: connect::Tls,
    resolver: connect::Resolver,
    /// Where the probe checks its own network before blaming an instance.
    control: Option<ControlTarget>,
}

/// A host and port the probe can always reach when its own network works (the
/// metrics backend, a well-known host): see [`Runner::with_control_target`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlTarget {
    pub host: url::Host<String>,
    pub port: u16,
}

impl ControlTarget {
    /// The host and port of an `http(s)` URL (the scheme's port when none is given).
    pub fn of_url(url: &url::Url) -> Option<ControlTarget> {
        Some(ControlTarget { host: url.host()?.to_owned(), port: url.port_or_known_default()? })
    }
}

impl std::fmt::Display for ControlTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            url::Host::Ipv6(ip) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

/// How long the probe's own connectivity check may take.
pub const CONTROL_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a step is in its run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Main,
    Cleanup,
}

struct RunState<'a> {
    journey: &'a Journey,
    nonce: String,
    captures: Vec<(String, String)>,
    client: http::Client,
    /// Streams opened for later `stream` steps, by the stream step's name.
    streams: HashMap<String, Result<stream::OpenStream, stream::OpenError>>,
    /// What opening each of those streams took (its `/api/v2/instance` request
    /// included), by the stream step's name: charged to that step, not to the step
    /// it opened before.
    openings: HashMap<String, (Duration, Phases)>,
    /// When each step that ran ended (its last answer arrived), for delivery delays.
    step_ends: HashMap<String, Instant>,
    /// Instances whose REST API accepted the probe's token in this run (a 2xx to a
    /// request that carried it): evidence that a streaming 401 is not the token's.
    token_accepted: std::collections::HashSet<String>,
    /// The time the run's steps spent reading answers after they had arrived
    /// ([`Phases::after_arrival`]): the probe's delay, taken off a step's end to
    /// find when its answer arrived (`step_ends`).
    after_arrival: Duration,
}

impl Runner {
    pub fn new(targets: Vec<Target>) -> Self {
        Runner { targets, tls: connect::Tls::default(), resolver: connect::Resolver::System, control: None }
    }

    /// Resolves host names with `resolver` instead of the system's (tests and
    /// sandboxes: a fixed table, so that no lookup leaves the machine).
    pub fn with_resolver(mut self, resolver: connect::Resolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Before a run's network failure counts against the instance, the probe
    /// checks its own connectivity by one TCP connect to `control` (within
    /// [`CONTROL_CHECK_TIMEOUT`]); when that fails too, the run ends in
    /// `probe_error`/`probe_network`. The reasons checked are those
    /// [`Reason::may_be_the_probes_network`] lists. `None`: no check.
    pub fn with_control_target(mut self, control: Option<ControlTarget>) -> Self {
        self.control = control;
        self
    }

    /// Trusts `roots` (DER certificates, e.g. a private CA's) besides the
    /// platform's roots for every HTTPS connection this runner's runs make.
    pub fn with_extra_roots(
        mut self,
        roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<Self, connect::TlsSetupError> {
        self.tls = connect::Tls::with_extra_roots(roots)?;
        Ok(self)
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The target a run of `journey` talks to on instance `name`: the account the
    /// journey's copy runs as on its own instance, the primary account elsewhere.
    fn target(&self, journey: &Journey, name: &str) -> Result<&Target, StepError> {
        self.target_as(name, journey.account_on(name))
    }

    /// Instance `name` as its probe account `account` (`None`: its primary one).
    pub fn target_as(&self, name: &str, account: Option<&str>) -> Result<&Target, StepError> {
        let mut on_instance = self.targets.iter().filter(|t| t.name == name).peekable();
        if on_instance.peek().is_none() {
            return Err(StepError::new(Reason::Config, format!("instance `{name}` is not configured")));
        }
        match account {
            None => on_instance.find(|t| t.primary).ok_or_else(|| {
                StepError::new(Reason::Config, format!("instance `{name}` has no primary probe account"))
            }),
            Some(account) => on_instance.find(|t| t.account == account).ok_or_else(|| {
                StepError::new(
                    Reason::Config,
                    format!("account `{account}` is not a probe account of instance `{name}` in the config"),
                )
            }),
        }
    }

    /// The user names of instance `name`'s probe accounts, the primary first.
    pub fn account_names(&self, name: &str) -> Vec<String> {
        let mut on_instance: Vec<&Target> = self.targets.iter().filter(|t| t.name == name).collect();
        on_instance.sort_by_key(|t| !t.primary);
        on_instance.into_iter().map(|t| t.account.clone()).collect()
    }

    /// Runs `journey` once: its steps within its deadline, then its cleanup.
    pub async fn run(&self, journey: &Journey) -> RunResult {
        self.run_until(journey, &CancellationToken::new()).await
    }

    /// Like [`run`](Self::run), but `cancel` stops the steps early (the run ends in
    /// `probe_error`/`cancelled`); cleanup still runs, within its own step timeouts.
    pub async fn run_until(&self, journey: &Journey, cancel: &CancellationToken) -> RunResult {
        // Set-up that is the process's, not the instance's, happens before the
        // clock: the root store is read from disk once per process (a journey may
        // reach any configured instance, so any `https://` one asks for it).
        if self.targets.iter().any(|t| t.base_url.scheme() == "https") {
            self.tls.prepare();
        }
        let started_at = chrono::Utc::now();
        // The `account` label: the user name this copy of the journey runs as
        // (the name the config gives when it is not configured: the run then
        // ends in `probe_error`/`config`, still telling which account it was for).
        let account = match self.target(journey, &journey.instance) {
            Ok(target) => target.account.clone(),
            Err(_) => journey.run_as.clone().unwrap_or_default(),
        };
        // A new client per run: its first request pays DNS, TCP and TLS as a user's would.
        let mut state = RunState {
            journey,
            nonce: new_nonce(started_at),
            captures: Vec::new(),
            client: http::Client::with_resolver(self.tls.clone(), self.resolver.clone()),
            streams: HashMap::new(),
            openings: HashMap::new(),
            step_ends: HashMap::new(),
            token_accepted: Default::default(),
            after_arrival: Duration::ZERO,
        };

        let start = Instant::now();
        let deadline = start + journey.deadline;
        let mut steps = Vec::new();
        let mut failed: Option<(String, StepError)> = None;
        for step in &journey.steps {
            if failed.is_some() {
                steps.push(skipped(journey, step, "an earlier step failed"));
                continue;
            }
            let read_late_before = state.after_arrival;
            let result = tokio::select! {
                result = async {
                    self.open_streams_before(&mut state, step).await;
                    self.run_step(&mut state, step, Stage::Main, Some(deadline)).await
                } => result,
                () = cancel.cancelled() => cancelled(journey, step),
            };
            let end = Instant::now();
            // A delivery delay counts from when the post's answer arrived, as the
            // frame that ends it is stamped with when it arrived.
            let read_late = state.after_arrival - read_late_before;
            state.step_ends.insert(step.name.clone(), end.checked_sub(read_late).unwrap_or(end));
            if let Some(error) = &result.error {
                failed = Some((step.name.clone(), error.clone()));
            }
            steps.push(result);
        }
        // The run's clock is its steps': the instance's time and the network's,
        // not the probe's between them (preparing the next request, checking the
        // last answer). A skipped step's is zero.
        let duration = steps.iter().map(|s| s.duration).sum();

        let mut cleanup = Vec::new();
        for step in &journey.cleanup {
            cleanup.push(self.run_step(&mut state, step, Stage::Cleanup, None).await);
        }
        for c in cleanup.iter().filter(|c| c.status == StepStatus::Failed) {
            tracing::warn!(
                journey = %journey.name,
                step = %c.name,
                error = %c.error.as_ref().map(|e| e.message.as_str()).unwrap_or(""),
                "cleanup step failed; what the journey created may be left on the instance"
            );
        }

        if let Some((name, error)) = &mut failed {
            let step = steps.iter_mut().find(|s| s.name == *name);
            if let Some(step) = step.filter(|s| network_failure(error, s))
                && let Some(problem) = self.probe_network_problem().await
            {
                error.reason = Reason::ProbeNetwork;
                error.message = format!("{}; {problem}", error.message);
                step.error = Some(error.clone());
            }
        }
        let (outcome, reason, failed_step) = match &failed {
            None => (Outcome::Success, None, None),
            Some((name, error)) => (error.reason.outcome(), Some(error.reason), Some(name.clone())),
        };
        let latency_ok =
            outcome == Outcome::Success && journey.slo.latency.as_ref().is_none_or(|l| duration <= l.threshold);
        let delay_ok = journey
            .slo
            .delay
            .as_ref()
            .and_then(|objective| delay_verdict(journey, &steps, outcome, objective.threshold));
        let apdex = apdex_zone(&journey.slo, outcome, duration);
        let mut result = RunResult {
            journey: journey.name.clone(),
            instance: journey.instance.clone(),
            account,
            started_at,
            duration,
            outcome,
            reason,
            latency_ok,
            delay_ok,
            apdex,
            failed_step,
            steps,
            cleanup,
            captures: state.captures,
        };
        // A hostile server could echo the `Authorization` header back.
        result.scrub();
        result
    }

    /// Whether the probe's own network is down: `Some(why)` when the control
    /// target cannot be reached either. `None` without a control target.
    async fn probe_network_problem(&self) -> Option<String> {
        let control = self.control.as_ref()?;
        let connected =
            tokio::time::timeout(CONTROL_CHECK_TIMEOUT, connect::tcp(&self.resolver, &control.host, control.port))
                .await;
        let why = match connected {
            Ok(Ok(_)) => return None,
            Ok(Err(e)) => e.message,
            Err(_) => format!("no TCP connection within {}", humantime::format_duration(CONTROL_CHECK_TIMEOUT)),
        };
        tracing::warn!(control = %control, error = %why, "the probe's control target is unreachable too");
        Some(format!(
            "the probe's control target {control} is unreachable too ({why}): the probe's own network is down, not the instance"
        ))
    }

    async fn run_step(
        &self,
        state: &mut RunState<'_>,
        step: &Step,
        stage: Stage,
        deadline: Option<Instant>,
    ) -> StepResult {
        let instance = state.journey.step_instance(step).to_owned();
        let mut result = passed(step, &instance);
        // A cleanup step whose variables were never captured has nothing to clean up.
        if stage == Stage::Cleanup
            && let Some(missing) = missing_capture(step, &state.captures)
        {
            result.status = StepStatus::Skipped;
            result.skipped_because = Some(format!("`${{{missing}}}` was never captured"));
            return result;
        }
        // A step that creates what an earlier step did not find is not needed when it was found.
        if let Some(name) = &step.if_missing
            && state.captures.iter().any(|(n, _)| n == name)
        {
            result.status = StepStatus::Skipped;
            result.skipped_because = Some(format!("`${{{name}}}` was found by an earlier step"));
            return result;
        }
        let start = Instant::now();
        // A request step's clock runs from its request's first phase to its last
        // answer's arrival (`Phases::clocked`): the probe's own work before the
        // request and after the answer is not the instance's. `after_arrival` is
        // the time from the last answer's arrival to the probe reading it.
        let (outcome, clocked, after_arrival) = match &step.kind {
            // Boxed: a future is as large as its largest state, and every run in
            // flight carries its own, so the stream and parallel steps' large states
            // are allocated only by the runs that have such a step, while it runs.
            // A stream step waits for its frame while its fallback's polls run beside
            // the wait, so their reads are no end of its clock: nothing taken out.
            StepKind::Stream(spec) => {
                let outcome = Box::pin(self.stream_step(state, step, spec, &instance, deadline, &mut result)).await;
                (outcome, None, Duration::ZERO)
            }
            StepKind::Parallel(members) => Box::pin(self.parallel_step(state, members, deadline, &mut result)).await,
            _ => {
                let outcome = self.attempt_step(state, &state.client, step, &instance, deadline, &mut result).await;
                (outcome, Some(request_clock(start, &result)), read_after_arrival(&result))
            }
        };
        result.duration = clocked.unwrap_or_else(|| start.elapsed().saturating_sub(after_arrival));
        state.after_arrival += after_arrival;
        let sent_token = step.kind.request().is_some_and(|r| r.auth) && !matches!(step.kind, StepKind::Stream(_));
        if sent_token && result.http_status.is_some_and(|s| (200..300).contains(&s)) {
            state.token_accepted.insert(instance.clone());
        }
        // Opening a stream happened before the step it opened before; it is this step's work.
        if let Some((took, phases)) = state.openings.remove(&step.name) {
            result.duration += took.saturating_sub(phases.after_arrival);
            state.after_arrival += phases.after_arrival;
            result.phases.get_or_insert_default().add(&phases);
        }
        // A prerequisite check is the probe's set-up only when the answer says so: its
        // content says "not following" (an assertion), or the account is not found
        // (404). A 5xx, a timeout or a refused connection there is the instance's.
        let says_not_following = |e: &StepError| match e.reason {
            Reason::Assertion => true,
            Reason::HttpStatus => result.http_status == Some(404),
            _ => false,
        };
        let outcome = match (outcome, step.fail_as) {
            (Err(mut e), Some(FailAs::NotFollowing)) if says_not_following(&e) => {
                e.reason = Reason::NotFollowing;
                e.message =
                    format!("{}; the receiving account must follow the posting one (see the README)", e.message);
                Err(e)
            }
            (outcome, _) => outcome,
        };
        match outcome {
            Ok(captured) => {
                for (name, value) in captured {
                    state.captures.retain(|(n, _)| *n != name);
                    state.captures.push((name, value));
                }
            }
            Err(error) => {
                result.status = StepStatus::Failed;
                result.error = Some(error);
            }
        }
        result
    }

    /// Runs a `parallel` group's members at once, each on its own new
    /// connection (as an app's concurrent requests over HTTP/1.1), and collects
    /// their captures. The group fails with its first failing member's error.
    /// Also returns the group's clock, from its first request's first phase to
    /// its last answer's arrival, and the time since that arrival.
    async fn parallel_step(
        &self,
        state: &mut RunState<'_>,
        members: &[Step],
        deadline: Option<Instant>,
        result: &mut StepResult,
    ) -> (Result<Vec<(String, String)>, StepError>, Option<Duration>, Duration) {
        let shared: &RunState<'_> = state;
        let runs = members.iter().map(|member| async move {
            let instance = shared.journey.step_instance(member).to_owned();
            let mut member_result = passed(member, &instance);
            let client = http::Client::with_resolver(self.tls.clone(), self.resolver.clone());
            let start = Instant::now();
            let outcome = self.attempt_step(shared, &client, member, &instance, deadline, &mut member_result).await;
            // Its request began at its first phase, and its clock ended at its answer.
            let began = member_result.phases.and_then(|p| p.span).map_or(start, |(began, _)| Instant::from_std(began));
            member_result.duration = request_clock(start, &member_result);
            if let Err(error) = &outcome {
                member_result.status = StepStatus::Failed;
                member_result.error = Some(error.clone());
            }
            (member, member_result, outcome, began)
        });
        let done = futures_util::future::join_all(runs).await;
        let now = Instant::now();
        let began = done.iter().map(|(.., began)| *began).min();
        let arrived = done.iter().map(|(_, member, _, began)| *began + member.duration).max();
        let (clocked, after_arrival) = match (began, arrived) {
            (Some(began), Some(arrived)) => (Some(arrived.saturating_duration_since(began)), now - arrived.min(now)),
            _ => (None, Duration::ZERO),
        };
        let mut captured = Vec::new();
        let mut first_error = None;
        for (member, member_result, outcome, _) in done {
            result.attempts += member_result.attempts;
            let sent_token = member.kind.request().is_some_and(|r| r.auth);
            if sent_token && member_result.http_status.is_some_and(|s| (200..300).contains(&s)) {
                state.token_accepted.insert(member_result.instance.clone());
            }
            match outcome {
                Ok(values) => captured.extend(values),
                Err(mut error) if first_error.is_none() => {
                    error.message = format!("step `{}`: {}", member.name, error.message);
                    first_error = Some(error);
                }
                Err(_) => {}
            }
            result.parallel.push(member_result);
        }
        let outcome = match first_error {
            Some(error) => Err(error),
            None => Ok(captured),
        };
        (outcome, clocked, after_arrival)
    }

    async fn attempt_step(
        &self,
        state: &RunState<'_>,
        client: &http::Client,
        step: &Step,
        instance: &str,
        deadline: Option<Instant>,
        result: &mut StepResult,
    ) -> Result<Vec<(String, String)>, StepError> {
        let target = self.target(state.journey, instance)?;
        let (spec, poll) = match &step.kind {
            StepKind::Request(r) => (r, None),
            StepKind::Poll(p) => (&p.request, Some(p)),
            StepKind::Stream(_) | StepKind::Parallel(_) => {
                unreachable!("stream steps run in stream_step, parallel groups in parallel_step")
            }
        };
        // The step ends at the earliest of: the journey's deadline, the poll's `within`.
        let step_end = match (deadline, poll.map(|p| Instant::now() + p.within)) {
            (Some(d), Some(p)) => Some(d.min(p)),
            (d, p) => d.or(p),
        };
        let request = self.prepare(state, step, spec, target)?;
        // A poll's last answered attempt whose assertion did not hold: when the
        // window then ends while another attempt is in flight, that is what the
        // user saw (the thing never appeared), not a slow server.
        let mut unmet: Option<StepError> = None;
        loop {
            let by_timeout = Instant::now() + step.timeout;
            let attempt_end = step_end.map_or(by_timeout, |e| e.min(by_timeout));
            result.attempts += 1;
            // Boxed, so that the exchange's state is allocated while it runs rather
            // than carried inline in every run's future.
            let sent = tokio::time::timeout_at(attempt_end, Box::pin(http::send(client, &request))).await;
            // Taken after every attempt, the failed and the timed-out ones included.
            result.phases.get_or_insert_default().add(&client.take_phases());
            let response = match sent {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    let window_ended = attempt_end < by_timeout && deadline.is_none_or(|d| d > attempt_end);
                    if let (true, Some(p), Some(e)) = (window_ended, poll, unmet.take()) {
                        return Err(still_not_true(
                            e,
                            result.attempts,
                            p.within,
                            " (the last attempt was still waiting for its answer when the window ended)",
                        ));
                    }
                    let what = if attempt_end < by_timeout && deadline.is_some_and(|d| d <= attempt_end) {
                        format!(
                            "the journey's deadline of {} passed",
                            humantime::format_duration(state.journey.deadline)
                        )
                    } else if attempt_end < by_timeout {
                        "the poll ran out of time".to_owned()
                    } else {
                        format!("no complete response within {}", humantime::format_duration(step.timeout))
                    };
                    return Err(StepError::new(
                        Reason::Timeout,
                        format!("{} {}: {what}", request.method, request.url.path()),
                    ));
                }
            };
            result.http_status = Some(response.status);
            let what = format!("{} {}", request.method, request.url.path());
            if let Some(e) = check::status_error(&step.expect, &response, request.bearer.is_some(), &what) {
                return Err(e);
            }
            let mut body = ResponseBody::new(&response);
            let mut lookup = |v: &Var| lookup_var(state, target, v);
            let checked = check::check_expect(&step.expect, &response, &mut body, &mut lookup)
                .and_then(|()| check::capture(&step.captures, &response, &mut body));
            match (checked, poll, step_end) {
                (Ok(captured), _, _) => return Ok(captured),
                // A poll waits for its assertions to hold; anything else ends it at once.
                (Err(e), Some(p), Some(limit)) if e.reason == Reason::Assertion => {
                    let next = Instant::now() + p.interval;
                    if next >= limit {
                        return Err(still_not_true(e, result.attempts, p.within, ""));
                    }
                    unmet = Some(e);
                    tokio::time::sleep_until(next).await;
                }
                (Err(e), _, _) => return Err(e),
            }
        }
    }

    /// Opens the streams of later `stream` steps that open before `step`. The time
    /// and the HTTP phases this takes are kept for the stream step they belong to.
    async fn open_streams_before(&self, state: &mut RunState<'_>, step: &Step) {
        let journey = state.journey;
        for later in &journey.steps {
            let StepKind::Stream(spec) = &later.kind else { continue };
            if spec.open_before != step.name {
                continue;
            }
            let began = Instant::now();
            let opened = match self.target(journey, journey.step_instance(later)) {
                Err(e) => Err(stream::OpenError::Fatal(e)),
                Ok(target) => {
                    let client = &state.client;
                    // Boxed, for the same reason as the stream step itself.
                    match tokio::time::timeout(later.timeout, Box::pin(stream::open(client, target, spec))).await {
                        Ok(opened) => opened,
                        Err(_) => Err(stream::OpenError::Unusable(StepError::new(
                            Reason::Timeout,
                            format!("the stream did not open within {}", humantime::format_duration(later.timeout)),
                        ))),
                    }
                }
            };
            state.openings.insert(later.name.clone(), (began.elapsed(), state.client.take_phases()));
            if let Err(e) = &opened {
                tracing::debug!(journey = %journey.name, step = %later.name, error = %e.error().message, "stream not opened");
            }
            state.streams.insert(later.name.clone(), opened);
        }
    }

    /// Waits for the event on the stream opened earlier and, when the journey has a
    /// fallback, polls for it in parallel from one interval after the post on.
    async fn stream_step(
        &self,
        state: &mut RunState<'_>,
        step: &Step,
        spec: &StreamSpec,
        instance: &str,
        deadline: Option<Instant>,
        result: &mut StepResult,
    ) -> Result<Vec<(String, String)>, StepError> {
        let target = self.target(state.journey, instance)?;
        let by_within = Instant::now() + spec.within;
        let until = deadline.map_or(by_within, |d| d.min(by_within));
        let not_delivered = || {
            StepError::new(
                Reason::NotDelivered,
                format!(
                    "no `{}` event on {instance}'s `{}` stream matched within {}",
                    spec.event,
                    spec.stream,
                    humantime::format_duration(spec.within)
                ),
            )
        };
        result.attempts = 1;
        let opened = state.streams.remove(&step.name).unwrap_or_else(|| {
            Err(stream::OpenError::Fatal(StepError::new(
                Reason::Config,
                format!("the stream was never opened (`open_before: {}` did not run)", spec.open_before),
            )))
        });
        let mut stream_failed = None;
        let mut open = match opened {
            Ok(open) => Some(open),
            Err(stream::OpenError::Fatal(e)) => return Err(e),
            // The REST API took the same token in this run: the streaming service is at fault.
            Err(stream::OpenError::UnexplainedRefusal(mut e)) if state.token_accepted.contains(instance) => {
                e.message = format!("{}; the REST API accepted the same token in this run", e.message);
                stream_failed = Some(e);
                None
            }
            // Nothing shows the token is good yet: the fallback's poll asks the REST API
            // with the same token (a 401 there ends the run as the token's)...
            Err(stream::OpenError::UnexplainedRefusal(e)) if spec.fallback.is_some() => {
                stream_failed = Some(e);
                None
            }
            // ...and without one, a 401 is the token's until shown otherwise.
            Err(stream::OpenError::UnexplainedRefusal(mut e)) => {
                e.reason = Reason::Unauthorized;
                e.message =
                    format!("{}; the token was not used on the REST API before, so it may be the token", e.message);
                return Err(e);
            }
            Err(stream::OpenError::Unusable(e)) => {
                stream_failed = Some(e);
                None
            }
        };
        let fallback = spec.fallback.as_ref();
        if open.is_none() && fallback.is_none() {
            result.stream_error = stream_failed.clone();
            return Err(stream_failed.unwrap_or_else(not_delivered));
        }
        if let Some(e) = &stream_failed {
            tracing::info!(journey = %state.journey.name, step = %step.name, error = %e.message, "stream unusable; polling instead");
        }
        let poll_request = fallback.map(|f| self.prepare(state, step, &f.request, target)).transpose()?;
        let what = poll_request.as_ref().map(|r| format!("{} {}", r.method, r.url.path())).unwrap_or_default();
        let sent_token = poll_request.as_ref().is_some_and(|r| r.bearer.is_some());
        let posted = state.step_ends.get(&spec.delay_from).copied().unwrap_or_else(Instant::now);
        let state_ref: &RunState<'_> = state;
        let poller = fallback.zip(poll_request.as_ref()).map(|(f, request)| stream::Poller {
            client: &state_ref.client,
            request,
            interval: f.interval,
            timeout: step.timeout,
        });
        let waited = stream::wait_for_arrival(
            open.as_mut(),
            &spec.event,
            posted,
            until,
            poller,
            |response| {
                let mut body = check::Body::new(response);
                let mut lookup = |v: &Var| lookup_var(state_ref, target, v);
                check::check_expect(&step.expect, response, &mut body, &mut lookup)?;
                check::capture(&step.captures, response, &mut body)
            },
            |response| {
                let mut lookup = |v: &Var| lookup_var(state_ref, target, v);
                let expect = fallback.map(|f| &f.expect).unwrap_or(&step.expect);
                stream::check_response(expect, response, &what, sent_token, &mut lookup)?;
                let mut body = check::Body::new(response);
                check::capture(&step.captures, response, &mut body)
            },
            &mut stream_failed,
        )
        .await;
        // The fallback's polls are this step's requests.
        if fallback.is_some() {
            result.phases.get_or_insert_default().add(&state.client.take_phases());
        }
        result.stream_error = stream_failed;
        match waited? {
            Some(arrival) => {
                result.delivery = Some(delivery(state, spec, instance, &arrival));
                Ok(arrival.captured)
            }
            None => Err(not_delivered()),
        }
    }

    fn prepare(
        &self,
        state: &RunState<'_>,
        step: &Step,
        spec: &RequestSpec,
        target: &Target,
    ) -> Result<http::Request, StepError> {
        let mut lookup = |v: &Var| lookup_var(state, target, v);
        let path = spec.path.render(&mut lookup)?;
        let mut url = target.base_url.join(&path).map_err(|e| {
            StepError::new(Reason::Config, format!("step `{}`: `{path}` does not make a URL: {e}", step.name))
        })?;
        if !spec.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in &spec.query {
                pairs.append_pair(name, &value.render(&mut lookup)?);
            }
        }
        let mut headers = Vec::new();
        for (name, value) in &spec.headers {
            headers.push((name.clone(), value.render(&mut lookup)?));
        }
        let body = match &spec.body {
            None => None,
            Some(Body::Form(fields)) => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                for (name, value) in fields {
                    form.append_pair(name, &value.render(&mut lookup)?);
                }
                Some(("application/x-www-form-urlencoded", form.finish().into_bytes().into()))
            }
            Some(Body::Json(template)) => {
                let value = template.render(&mut lookup)?;
                Some(("application/json", serde_json::to_vec(&value).unwrap_or_default().into()))
            }
            Some(Body::Multipart(parts)) => {
                let mut fields = Vec::with_capacity(parts.len());
                for (name, part) in parts {
                    fields.push(match part {
                        crate::spec::journey::Part::Text(value) => {
                            multipart::Field::Text { name, value: value.render(&mut lookup)? }
                        }
                        crate::spec::journey::Part::File(file) => multipart::Field::File {
                            name,
                            filename: file.filename.render(&mut lookup)?,
                            content_type: &file.content_type,
                            bytes: multipart::file_bytes(file, &state.nonce),
                        },
                    });
                }
                let body = multipart::encode(&fields)
                    .map_err(|e| StepError::new(Reason::Config, format!("step `{}`: {e}", step.name)))?;
                Some((multipart::CONTENT_TYPE, body))
            }
        };
        let bearer = if spec.auth {
            Some(target.token.clone().map_err(|e| StepError::new(Reason::Config, e.to_string()))?)
        } else {
            None
        };
        Ok(http::Request {
            method: spec.method.clone(),
            url,
            headers,
            bearer,
            body,
            follow_redirects: spec.follow_redirects,
        })
    }
}

/// The time a step's exchanges spent being read after their answers had arrived.
/// A request step's clock: its phases' ([`Phases::clocked`]), or, when no
/// exchange began, the time since `start`.
fn request_clock(start: Instant, result: &StepResult) -> Duration {
    result
        .phases
        .and_then(|p| p.clocked())
        .unwrap_or_else(|| start.elapsed().saturating_sub(read_after_arrival(result)))
}

fn read_after_arrival(result: &StepResult) -> Duration {
    result.phases.map_or(Duration::ZERO, |p| p.after_arrival)
}

/// Whether a failure may be the probe's own network rather than the instance:
/// no TCP connection (`connect`), no name resolution (`dns`), or a `timeout`
/// before any connection was up (the step spent no time in TLS, sending or
/// waiting for a response). Anything later means the probe reached the instance.
fn network_failure(error: &StepError, step: &StepResult) -> bool {
    match error.reason {
        Reason::Connect | Reason::Dns => true,
        Reason::Timeout => {
            step.phases.is_none_or(|p| p.tls.is_zero() && p.send.is_zero() && p.ttfb.is_zero() && p.transfer.is_zero())
        }
        _ => false,
    }
}

/// The delivery a stream step saw, timed from the `delay_from` step's end.
fn delivery(state: &RunState<'_>, spec: &StreamSpec, destination: &str, arrival: &stream::Arrival) -> Delivery {
    let journey = state.journey;
    let from = journey.steps.iter().find(|s| s.name == spec.delay_from);
    let source = from.map(|s| journey.step_instance(s)).unwrap_or(&journey.instance).to_owned();
    let since_post = |at: Instant| {
        state.step_ends.get(&spec.delay_from).map(|end| at.saturating_duration_since(*end)).unwrap_or_default()
    };
    let seen_after = since_post(arrival.at);
    Delivery {
        source,
        destination: destination.to_owned(),
        event: spec.event.clone(),
        method: arrival.method,
        delay: arrival.bounded.then_some(seen_after),
        seen_after,
        absent_after: since_post(arrival.absent_until),
    }
}

/// The delay verdict of a run (`delay_ok`), for a journey with a delay objective.
///
/// Only a post that was made gets one: when no stream step ran after its
/// `delay_from` step passed, there is none. A post seen within `threshold` is good
/// (for a delivery without a figure, when it was seen within it); one known to
/// have been missing after `threshold`, or never seen, or a run that failed after
/// posting, is a miss; a delivery without a figure that straddles the threshold
/// has no verdict: the probe cannot tell.
fn delay_verdict(journey: &Journey, steps: &[StepResult], outcome: Outcome, threshold: Duration) -> Option<bool> {
    let passed = |name: &str| steps.iter().any(|s| s.name == name && s.status == StepStatus::Passed);
    let posted = journey.steps.iter().zip(steps).any(|(step, result)| match &step.kind {
        StepKind::Stream(spec) => result.status != StepStatus::Skipped && passed(&spec.delay_from),
        _ => false,
    });
    // A probe error counts neither way, for the delay as for availability.
    if !posted || outcome == Outcome::ProbeError {
        return None;
    }
    if outcome != Outcome::Success {
        return Some(false);
    }
    let deliveries: Vec<&Delivery> = steps.iter().filter_map(|s| s.delivery.as_ref()).collect();
    if deliveries.iter().any(|d| d.seen_after <= threshold) {
        Some(true)
    } else if deliveries.iter().all(|d| d.absent_after > threshold) {
        Some(false)
    } else {
        None
    }
}

fn lookup_var(state: &RunState<'_>, target: &Target, var: &Var) -> Result<String, StepError> {
    match var {
        Var::Nonce => Ok(state.nonce.clone()),
        Var::Account => Ok(target.account.clone()),
        Var::Env(name) => std::env::var(name)
            .map_err(|_| StepError::new(Reason::Config, format!("environment variable {name} is not set"))),
        Var::Capture(name) => state
            .captures
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| StepError::new(Reason::Config, format!("`${{{name}}}` was never captured"))),
    }
}

fn missing_capture(step: &Step, captures: &[(String, String)]) -> Option<String> {
    let request = step.kind.request()?;
    let mut vars: Vec<&Var> = request.path.vars().collect();
    for (_, t) in request.query.iter().chain(&request.headers) {
        vars.extend(t.vars());
    }
    if let Some(body) = &request.body {
        vars.extend(body.vars());
    }
    vars.into_iter().find_map(|v| match v {
        Var::Capture(name) if !captures.iter().any(|(n, _)| n == name) => Some(name.clone()),
        _ => None,
    })
}

fn cancelled(journey: &Journey, step: &Step) -> StepResult {
    let mut result = skipped(journey, step, "");
    result.status = StepStatus::Failed;
    result.skipped_because = None;
    result.error = Some(StepError::new(Reason::Cancelled, "the probe is shutting down; the run was stopped"));
    result
}

/// A poll's failure once its window is over: the last assertion that did not hold.
fn still_not_true(e: StepError, attempts: u32, within: Duration, note: &str) -> StepError {
    StepError {
        reason: e.reason,
        message: format!(
            "still not true after {attempts} attempts in {}{note}: {}",
            humantime::format_duration(within),
            e.message
        ),
        assertion: e.assertion,
    }
}

fn skipped(journey: &Journey, step: &Step, because: &str) -> StepResult {
    StepResult {
        status: StepStatus::Skipped,
        skipped_because: Some(because.to_owned()),
        ..passed(step, journey.step_instance(step))
    }
}

/// A step's result before it runs: passed, nothing measured yet.
fn passed(step: &Step, instance: &str) -> StepResult {
    StepResult {
        name: step.name.clone(),
        instance: instance.to_owned(),
        status: StepStatus::Passed,
        duration: Duration::ZERO,
        attempts: 0,
        http_status: None,
        phases: None,
        error: None,
        skipped_because: None,
        delivery: None,
        stream_error: None,
        parallel: Vec::new(),
    }
}

const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// Random characters at the end of a nonce.
const NONCE_RANDOM_CHARS: usize = 6;

/// A value unique to one run, used to mark what the run creates: `fp` then the
/// start time in base 36 then random characters, e.g. `fpmd3k9x2a7q4w`.
pub fn new_nonce(started_at: chrono::DateTime<chrono::Utc>) -> String {
    use rand::Rng;
    let mut millis = started_at.timestamp_millis().max(0) as u64;
    let mut time = Vec::new();
    while millis > 0 {
        time.push(DIGITS[(millis % 36) as usize]);
        millis /= 36;
    }
    time.reverse();
    let mut rng = rand::rng();
    let random: String = (0..NONCE_RANDOM_CHARS).map(|_| DIGITS[rng.random_range(0..36)] as char).collect();
    format!("fp{}{random}", String::from_utf8_lossy(&time))
}

/// When the run that made `word` started, if `word` is shaped like a nonce of
/// [`new_nonce`] from this century (2020 to 2100): how leftovers are recognised.
pub fn nonce_time(word: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let rest = word.strip_prefix("fp")?;
    if !(NONCE_RANDOM_CHARS + 8..=NONCE_RANDOM_CHARS + 9).contains(&rest.len())
        || !rest.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        return None;
    }
    let time = &rest[..rest.len() - NONCE_RANDOM_CHARS];
    let millis = time.bytes().try_fold(0u64, |acc, b| {
        let digit = DIGITS.iter().position(|d| *d == b)? as u64;
        acc.checked_mul(36)?.checked_add(digit)
    })?;
    const FROM: u64 = 1_577_836_800_000; // 2020-01-01
    const UNTIL: u64 = 4_102_444_800_000; // 2100-01-01
    if !(FROM..UNTIL).contains(&millis) {
        return None;
    }
    chrono::DateTime::from_timestamp_millis(millis as i64)
}

/// Where a run falls on its journey's APDEX scale: `None` without an APDEX
/// objective, and for a `probe_error` run (not the instance's doing: no score).
/// A failed run is frustrated, however fast it failed.
pub fn apdex_zone(
    slo: &crate::spec::journey::Slo,
    outcome: Outcome,
    duration: Duration,
) -> Option<crate::spec::journey::ApdexZone> {
    let apdex = slo.apdex.as_ref()?;
    (outcome != Outcome::ProbeError).then(|| apdex.zone(outcome == Outcome::Success, duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_recognised_and_dated_and_other_words_are_not() {
        let now = chrono::Utc::now();
        let nonce = new_nonce(now);
        assert_eq!(nonce_time(&nonce).map(|t| t.timestamp_millis()), Some(now.timestamp_millis()));
        for word in [
            "fediprobe",
            "fp",
            "fpmd3k9x2a",
            "FPMD3K9X2A7Q4W",
            "fpzzzzzzzzzzzzzzz",
            "fp00000000000000",
            "fpmd3k9x2a7q4w!",
        ] {
            assert_eq!(nonce_time(word), None, "{word}");
        }
    }
}
