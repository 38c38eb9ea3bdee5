//! The table of real-world server behaviours: what real Mastodon, GoToSocial,
//! Pleroma/Akkoma and the proxies in front of them actually send, each row with
//! the outcome, reason and figures the probe must record for it. Where the
//! fault suite (`faults.rs`) asks "does the probe survive a hostile server", this
//! table asks "does every sample tell the truth about whose fault it was and what
//! a user felt".
//!
//! Each row starts a fresh sandbox (`alpha` as `main`, `beta` as `peer`), gives it
//! the behaviour, runs a journey (a bundled one where one exists) and checks the
//! result and the samples `metrics::samples_for_run` makes of it. Behaviours the
//! sandbox has no knob for (other servers' exact error shapes, a websocket that
//! refuses a subscription) are small servers on loopback written here. No row
//! asserts a duration: figures are checked by what is present, by their bounds'
//! order (a figure is never above when the post was seen, nor below when it was
//! known missing) and against the journey's own settings.

mod support;

use std::time::Duration;

use fediprobe::metrics::{self, samples_for_run};
use fediprobe::runner::stream::Method;
use fediprobe::runner::{Outcome, Reason, RunResult, Runner, StepStatus, Target};
use fediprobe::sandbox::{Fault, Sandbox, SandboxConfig};
use fediprobe::secret::Secret;
use fediprobe::sink::Sample;
use fediprobe::spec::Journey;
use fediprobe::spec::journey::StepKind;
use futures_util::SinkExt;
use http::Method as HttpMethod;
use support::journeys;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// What the instance (or what is in front of it) does.
#[derive(Clone)]
enum Behaviour {
    /// Nothing unusual.
    Healthy,
    /// `fault` on `instance` (`alpha` or `beta`) for requests whose path starts
    /// with `path` (and whose method is `method`, if given).
    Fault { instance: &'static str, method: Option<HttpMethod>, path: &'static str, fault: Fault },
    /// Neither probe account follows the other.
    NoFollows,
    /// `beta`'s streaming server cannot look tokens up: 401 and "An unexpected error occurred".
    StreamingTokenLookupFailing,
    /// `beta`'s websockets open, then carry nothing at all, not even pings.
    StreamingSilent,
    /// `beta`'s streaming API is down (503), and `alpha`'s `path` answers slowly:
    /// the stream step starts well after the post.
    StreamingDownAndSlow { path: &'static str, latency: Duration },
    /// `peer`'s token is one nobody issued.
    BadPeerToken,
    /// `main` is a server written here that answers every request with this head and body.
    Raw((&'static str, &'static str)),
    /// Every delivery from `alpha` is lost.
    DeliveriesDropped,
    /// Deliveries from `alpha` take `delay`, `beta`'s home timeline answers 500,
    /// and `beta`'s streaming API is down when `streaming_down`.
    SlowDeliveryHomeFailing { delay: Duration, streaming_down: bool },
    /// `beta` advertises its streaming API on a host of its own (Mastodon's
    /// `STREAMING_API_BASE_URL`), which answers the websocket upgrade with this
    /// head and body.
    PeerStreamingAnswers((&'static str, &'static str)),
    /// `peer` is a websocket server that accepts, then refuses the subscription
    /// with Mastodon's scope error frame (and keeps the socket open).
    ScopeErrorFrame,
}

/// What the run must record beyond its outcome and reason.
#[derive(Clone, Copy, Default)]
struct Figures {
    /// How the post was seen; `None`: no delivery at all.
    method: Option<Method>,
    /// For a delivery: whether it has a delay figure.
    delay_figure: Option<bool>,
    /// The `delay_ok` sample: `None` none at all, `Some(v)` its value.
    delay_ok: Option<bool>,
    /// A `fediprobe_stream_failed` sample with this reason.
    stream_failed: Option<Reason>,
    /// Whether the error message must contain this.
    message: Option<&'static str>,
}

struct Row {
    name: &'static str,
    behaviour: Behaviour,
    journey: fn() -> Journey,
    outcome: Outcome,
    reason: Option<Reason>,
    figures: Figures,
}

const GET_AUTHED: &str = "steps:\n  - name: get\n    request: { path: /api/v1/timelines/home }\n";

fn get_authed() -> Journey {
    journeys::with_steps("get-authed", GET_AUTHED)
}

fn federation() -> Journey {
    journeys::bundled("federation-main-to-peer")
}

fn federation_quick() -> Journey {
    journeys::bundled_edited("federation-main-to-peer", |t| {
        assert!(t.contains("within: 5m"), "the bundled journey's `within` changed: update this edit");
        t.replace("within: 5m", "within: 3s")
    })
}

fn home_timeline() -> Journey {
    journeys::bundled("home-timeline")
}

fn post_status() -> Journey {
    journeys::bundled("post-status")
}

/// A journey against `main` with a delay objective (30 s, 99%), whose steps are `body`.
fn with_delay_objective(name: &str, body: &str) -> Journey {
    journeys::parse(&format!(
        "name: {name}\ninstance: main\nschedule: '* * * * *'\nslo: {{ availability: 99%, delay: {{ threshold: 30s, objective: 99% }} }}\n{body}"
    ))
}

/// A post, then the stream on peer (opened before the post) with a fallback, and
/// no REST request to peer before: the streaming API's answer is all there is.
fn stream_only_with_fallback() -> Journey {
    with_delay_objective(
        "stream-only",
        "deadline: 20s\nsteps:\n  - name: post\n    request: { method: POST, path: /api/v1/statuses, form: { status: 'x ${nonce}', visibility: private } }\n    capture: { uri: $.uri, id: $.id }\n  - name: arrive\n    instance: peer\n    stream:\n      open_before: post\n      within: 10s\n      fallback:\n        request: { path: /api/v1/timelines/home }\n        interval: 1s\n        expect: { json: [ { path: '$[*].uri', equals: '${uri}' } ] }\n    expect: { json: [ { path: $.uri, equals: '${uri}' } ] }\ncleanup:\n  - name: delete\n    request: { method: DELETE, path: '/api/v1/statuses/${id}' }\n",
    )
}

/// The same without a fallback.
fn stream_only() -> Journey {
    with_delay_objective(
        "stream-only",
        "deadline: 20s\nsteps:\n  - name: post\n    request: { method: POST, path: /api/v1/statuses, form: { status: 'x ${nonce}', visibility: private } }\n    capture: { uri: $.uri, id: $.id }\n  - name: arrive\n    instance: peer\n    stream: { open_before: post, within: 10s }\n    expect: { json: [ { path: $.uri, equals: '${uri}' } ] }\ncleanup:\n  - name: delete\n    request: { method: DELETE, path: '/api/v1/statuses/${id}' }\n",
    )
}

/// A post, a slow step on main, then the stream step with a 1 s fallback: the
/// fallback's first poll cannot be sent within one interval of the post.
fn late_stream_step() -> Journey {
    with_delay_objective(
        "late-stream-step",
        "deadline: 30s\nsteps:\n  - name: post\n    request: { method: POST, path: /api/v1/statuses, form: { status: 'x ${nonce}', visibility: private } }\n    capture: { uri: $.uri, id: $.id }\n  - name: slow\n    request: { path: /api/v1/accounts/verify_credentials }\n  - name: arrive\n    instance: peer\n    stream:\n      open_before: post\n      within: 20s\n      fallback:\n        request: { path: /api/v1/timelines/home }\n        interval: 1s\n        expect: { json: [ { path: '$[*].uri', equals: '${uri}' } ] }\n    expect: { json: [ { path: $.uri, equals: '${uri}' } ] }\ncleanup:\n  - name: delete\n    request: { method: DELETE, path: '/api/v1/statuses/${id}' }\n",
    )
}

fn rows() -> Vec<Row> {
    use Outcome::{Failure, ProbeError, Success};
    let fault = |instance, method, path, fault| Behaviour::Fault { instance, method, path, fault };
    let none = Figures::default();
    let no_post = Figures { delay_ok: None, ..none };
    let by_stream = Figures { method: Some(Method::Stream), delay_figure: Some(true), delay_ok: Some(true), ..none };
    // The streaming API refused; the fallback poll saw the post on its schedule.
    let polled_after_refusal = Figures {
        method: Some(Method::Poll),
        delay_figure: Some(true),
        delay_ok: Some(true),
        stream_failed: Some(Reason::HttpStatus),
        ..none
    };
    let row =
        |name, behaviour, journey, outcome, reason, figures| Row { name, behaviour, journey, outcome, reason, figures };
    vec![
        row("healthy federation", Behaviour::Healthy, federation, Success, None, by_stream),
        // Item 1: a prerequisite's 5xx is the instance's; only "not following" or a 404 is the set-up.
        row(
            "503 on accounts/lookup (prerequisite)",
            fault("beta", None, "/api/v1/accounts/lookup", Fault::Status(503)),
            federation,
            Failure,
            Some(Reason::HttpStatus),
            no_post,
        ),
        row(
            "500 on accounts/relationships (prerequisite)",
            fault("beta", None, "/api/v1/accounts/relationships", Fault::Status(500)),
            federation,
            Failure,
            Some(Reason::HttpStatus),
            no_post,
        ),
        row(
            "502 from nginx on accounts/lookup",
            fault("beta", None, "/api/v1/accounts/lookup", Fault::Status(502)),
            federation,
            Failure,
            Some(Reason::HttpStatus),
            no_post,
        ),
        row(
            "connection dropped on accounts/relationships",
            fault("beta", None, "/api/v1/accounts/relationships", Fault::DropConnection),
            federation,
            Failure,
            Some(Reason::ConnectionClosed),
            no_post,
        ),
        row(
            "404 for the account on lookup",
            fault("beta", None, "/api/v1/accounts/lookup", Fault::Status(404)),
            federation,
            ProbeError,
            Some(Reason::NotFollowing),
            no_post,
        ),
        row(
            "relationships say not following",
            Behaviour::NoFollows,
            federation,
            ProbeError,
            Some(Reason::NotFollowing),
            no_post,
        ),
        // Item 4: no delay verdict for a post that was never made.
        row(
            "500 on the post",
            fault("alpha", Some(HttpMethod::POST), "/api/v1/statuses", Fault::Status(500)),
            federation,
            Failure,
            Some(Reason::HttpStatus),
            no_post,
        ),
        row(
            "connection dropped on the post",
            fault("alpha", Some(HttpMethod::POST), "/api/v1/statuses", Fault::DropConnection),
            federation,
            Failure,
            Some(Reason::ConnectionClosed),
            no_post,
        ),
        row(
            "post made, never delivered: a miss",
            Behaviour::DeliveriesDropped,
            federation_quick,
            Failure,
            Some(Reason::NotDelivered),
            Figures { delay_ok: Some(false), ..none },
        ),
        // Item 2: a silent stream must not inflate the figure past one fallback interval.
        row(
            "stream silent after the post (no frame, no ping)",
            Behaviour::StreamingSilent,
            federation,
            Success,
            None,
            Figures { method: Some(Method::Poll), delay_figure: Some(true), delay_ok: Some(true), ..none },
        ),
        row(
            "stream unusable and the poll starts more than an interval after the post",
            Behaviour::StreamingDownAndSlow {
                path: "/api/v1/accounts/verify_credentials",
                latency: Duration::from_millis(2500),
            },
            late_stream_step,
            Success,
            None,
            // Seen within 30 s for sure, but when exactly is not known to within an interval.
            Figures {
                method: Some(Method::Poll),
                delay_figure: Some(false),
                delay_ok: Some(true),
                stream_failed: Some(Reason::HttpStatus),
                ..none
            },
        ),
        row(
            "fallback poll's 500 while the stream still works: the stream sees the post",
            Behaviour::SlowDeliveryHomeFailing { delay: Duration::from_millis(2500), streaming_down: false },
            federation,
            Success,
            None,
            by_stream,
        ),
        row(
            "fallback poll's 500 with the stream down: a post made, not seen",
            Behaviour::SlowDeliveryHomeFailing { delay: Duration::from_millis(100), streaming_down: true },
            federation,
            Failure,
            Some(Reason::HttpStatus),
            Figures { delay_ok: Some(false), stream_failed: Some(Reason::HttpStatus), ..none },
        ),
        // Item 3: the streaming 401s.
        row(
            "streaming 401 'An unexpected error occurred', token accepted by REST",
            Behaviour::StreamingTokenLookupFailing,
            federation,
            Success,
            None,
            polled_after_refusal,
        ),
        row(
            "streaming 401 unexplained, token unproven, fallback proves it on REST",
            Behaviour::StreamingTokenLookupFailing,
            stream_only_with_fallback,
            Success,
            None,
            polled_after_refusal,
        ),
        row(
            "streaming 401 unexplained, token unproven, no fallback",
            Behaviour::StreamingTokenLookupFailing,
            stream_only,
            ProbeError,
            Some(Reason::Unauthorized),
            Figures { message: Some("An unexpected error occurred"), ..none },
        ),
        row(
            "streaming 401 'Invalid access token'",
            Behaviour::BadPeerToken,
            stream_only_with_fallback,
            ProbeError,
            Some(Reason::Unauthorized),
            Figures { message: Some("Invalid access token"), ..none },
        ),
        row(
            "Mastodon before 4.2: streaming 401 'Unauthorized' for any error, token accepted by REST",
            Behaviour::PeerStreamingAnswers(MASTODON_4_1_STREAMING_401),
            federation,
            Success,
            None,
            polled_after_refusal,
        ),
        row(
            "Mastodon 4.3+: streaming 500 'An unexpected error occurred'",
            Behaviour::PeerStreamingAnswers(MASTODON_4_3_STREAMING_500),
            federation,
            Success,
            None,
            polled_after_refusal,
        ),
        row(
            "Mastodon 4.3+: streaming 401 'Invalid access token' while REST took the token",
            Behaviour::PeerStreamingAnswers(MASTODON_4_3_STREAMING_INVALID_TOKEN),
            federation,
            ProbeError,
            Some(Reason::Unauthorized),
            Figures { message: Some("Invalid access token"), ..none },
        ),
        row(
            "502 from nginx on the streaming path only",
            Behaviour::PeerStreamingAnswers(NGINX_502),
            federation,
            Success,
            None,
            polled_after_refusal,
        ),
        row(
            "subscription refused for scopes (error frame, socket kept open)",
            Behaviour::ScopeErrorFrame,
            stream_only,
            ProbeError,
            Some(Reason::Unauthorized),
            Figures { message: Some("required scopes"), ..none },
        ),
        // Item 5: 429 and 403, by who sent them.
        row(
            "Mastodon's own 429 (X-RateLimit-*)",
            fault("alpha", None, "/", Fault::Status(429)),
            get_authed,
            ProbeError,
            Some(Reason::RateLimited),
            none,
        ),
        row(
            "bare 429 from a proxy (HTML, no X-RateLimit-*)",
            fault("alpha", None, "/", Fault::Proxy(429)),
            get_authed,
            Failure,
            Some(Reason::ProxyRateLimited),
            none,
        ),
        row(
            "Pleroma/Akkoma 429 {\"error\":\"Throttled\"}",
            Behaviour::Raw(PLEROMA_THROTTLED),
            get_authed,
            ProbeError,
            Some(Reason::RateLimited),
            none,
        ),
        row(
            "GoToSocial 429 with X-RateLimit-*",
            Behaviour::Raw(GOTOSOCIAL_429),
            get_authed,
            ProbeError,
            Some(Reason::RateLimited),
            none,
        ),
        row(
            "Cloudflare-style 429 (Retry-After, HTML)",
            Behaviour::Raw(CDN_429),
            get_authed,
            Failure,
            Some(Reason::ProxyRateLimited),
            none,
        ),
        row(
            "Mastodon 403 (scopes, JSON)",
            fault("alpha", None, "/", Fault::Status(403)),
            get_authed,
            ProbeError,
            Some(Reason::Unauthorized),
            none,
        ),
        row(
            "HTML 403 from a WAF",
            fault("alpha", None, "/", Fault::Proxy(403)),
            get_authed,
            Failure,
            Some(Reason::ProxyForbidden),
            none,
        ),
        row(
            "GoToSocial 403 (JSON)",
            Behaviour::Raw(GOTOSOCIAL_403),
            get_authed,
            ProbeError,
            Some(Reason::Unauthorized),
            none,
        ),
        row(
            "GoToSocial 401 (JSON)",
            Behaviour::Raw(GOTOSOCIAL_401),
            get_authed,
            ProbeError,
            Some(Reason::Unauthorized),
            none,
        ),
        // Other things real servers and proxies do.
        row(
            "502 from nginx (HTML)",
            fault("alpha", None, "/", Fault::Proxy(502)),
            home_timeline,
            Failure,
            Some(Reason::HttpStatus),
            none,
        ),
        row(
            "504 from nginx (HTML)",
            fault("alpha", None, "/", Fault::Proxy(504)),
            home_timeline,
            Failure,
            Some(Reason::HttpStatus),
            none,
        ),
        row(
            "503 with Retry-After (maintenance page)",
            fault("alpha", None, "/", Fault::Proxy(503)),
            home_timeline,
            Failure,
            Some(Reason::HttpStatus),
            none,
        ),
        row(
            "206 home timeline with Mastodon-Async-Refresh",
            fault("alpha", None, "/api/v1/timelines/home", Fault::AsyncRefresh),
            home_timeline,
            Success,
            None,
            none,
        ),
        row(
            "422 with Mastodon's validation error on the post",
            fault("alpha", Some(HttpMethod::POST), "/api/v1/statuses", Fault::Status(422)),
            post_status,
            Failure,
            Some(Reason::HttpStatus),
            Figures { message: Some("Validation failed"), ..none },
        ),
    ]
}

// Raw responses of other servers, as they send them: the head (status line and
// headers, without Content-Length) and the body.
const PLEROMA_THROTTLED: (&str, &str) = (
    "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json; charset=utf-8\r\n",
    "{\"error\":\"Throttled\"}",
);
const GOTOSOCIAL_429: (&str, &str) = (
    "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json; charset=utf-8\r\nX-Ratelimit-Limit: 300\r\nX-Ratelimit-Remaining: 0\r\nX-Ratelimit-Reset: 2026-11-30T10:05:00Z\r\n",
    "{\"error\":\"Too Many Requests\"}",
);
const CDN_429: (&str, &str) = (
    "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/html; charset=UTF-8\r\nRetry-After: 60\r\nServer: cloudflare\r\n",
    "<!DOCTYPE html><html><body><h1>Error 1015</h1><p>You are being rate limited</p></body></html>",
);
const GOTOSOCIAL_403: (&str, &str) = (
    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json; charset=utf-8\r\n",
    "{\"error\":\"Forbidden: token has insufficient scope\"}",
);
const GOTOSOCIAL_401: (&str, &str) = (
    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json; charset=utf-8\r\n",
    "{\"error\":\"Unauthorized: token not supplied or invalid\"}",
);

// What the streaming server (or what is in front of it) answers a websocket upgrade.
/// Mastodon up to 4.1: the `ws` library's refusal, whatever went wrong.
const MASTODON_4_1_STREAMING_401: (&str, &str) =
    ("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Type: text/html\r\n", "Unauthorized");
/// Mastodon 4.3 and later, its token lookup failing (the database unreachable).
const MASTODON_4_3_STREAMING_500: (&str, &str) = (
    "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\nContent-Type: text/plain\r\nX-Error-Message: An unexpected error occurred\r\n",
    "",
);
/// Mastodon 4.3 and later, a token it does not know.
const MASTODON_4_3_STREAMING_INVALID_TOKEN: (&str, &str) = (
    "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Type: text/plain\r\nX-Error-Message: Invalid access token\r\n",
    "",
);
const NGINX_502: (&str, &str) = (
    "HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\nContent-Type: text/html\r\nConnection: close\r\n",
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
);

#[tokio::test]
async fn every_real_world_behaviour_ends_in_its_outcome_reason_and_figures() {
    let mut failures = Vec::new();
    for row in rows() {
        let result = tokio::time::timeout(Duration::from_secs(60), run_row(&row))
            .await
            .unwrap_or_else(|_| panic!("{}: the run did not end", row.name));
        let samples = samples_for_run(&result, "eu-west");
        let problems = check(&row, &(row.journey)(), &result, &samples);
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n{}",
                row.name,
                problems.join("; "),
                serde_json::to_string_pretty(&result).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{} behaviours went wrong:\n{}", failures.len(), failures.join("\n\n"));
}

async fn run_row(row: &Row) -> RunResult {
    let mut config = SandboxConfig::default();
    if matches!(row.behaviour, Behaviour::NoFollows) {
        for instance in &mut config.instances {
            instance.federation.seed_probe_follows = false;
        }
    }
    let sandbox = Sandbox::start(config).await.unwrap();
    let beta = sandbox.instance("beta").unwrap();
    let mut targets = fediprobe::sandbox::probe_targets(&sandbox);
    match &row.behaviour {
        Behaviour::Healthy | Behaviour::NoFollows => {}
        Behaviour::Fault { instance, method, path, fault } => {
            sandbox.instance(instance).unwrap().faults().inject(method.clone(), path, fault.clone());
        }
        Behaviour::StreamingTokenLookupFailing => beta.federation().set_streaming_token_lookup_failing(true),
        Behaviour::StreamingSilent => {
            beta.federation().set_streaming_silent(true);
            sandbox.instance("alpha").unwrap().federation().set_delay(Duration::from_millis(250));
        }
        Behaviour::StreamingDownAndSlow { path, latency } => {
            beta.federation().set_streaming_down(true);
            sandbox.instance("alpha").unwrap().faults().inject(None, path, Fault::Latency(*latency));
        }
        Behaviour::BadPeerToken => set_token(&mut targets, "peer", "not-a-token-anyone-issued"),
        Behaviour::Raw((head, body)) => set_url(&mut targets, "main", &raw_server(head, body).await),
        Behaviour::DeliveriesDropped => sandbox.instance("alpha").unwrap().federation().set_drop_all(true),
        Behaviour::SlowDeliveryHomeFailing { delay, streaming_down } => {
            sandbox.instance("alpha").unwrap().federation().set_delay(*delay);
            beta.faults().inject(None, "/api/v1/timelines/home", Fault::Status(500));
            beta.federation().set_streaming_down(*streaming_down);
        }
        Behaviour::PeerStreamingAnswers((head, body)) => {
            let streaming = raw_server(head, body).await.replacen("http://", "ws://", 1);
            beta.federation().set_streaming_url(Some(streaming));
        }
        Behaviour::ScopeErrorFrame => set_url(&mut targets, "peer", &scope_error_server().await),
    }
    let result = Runner::new(targets).run(&(row.journey)()).await;
    sandbox.shutdown().await;
    result
}

fn check(row: &Row, journey: &Journey, result: &RunResult, samples: &[Sample]) -> Vec<String> {
    let mut problems = Vec::new();
    if (result.outcome, result.reason) != (row.outcome, row.reason) {
        problems.push(format!(
            "ended {}/{:?}, expected {}/{:?}",
            result.outcome.as_str(),
            result.reason.map(Reason::as_str),
            row.outcome.as_str(),
            row.reason.map(Reason::as_str)
        ));
    }
    let named = |name: &'static str| samples.iter().filter(move |s| s.name() == Some(name));
    let label = |s: &Sample, key: &str| s.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let figures = row.figures;

    // Item 10: a latency figure only for a successful run; the duration for every measured run.
    let latency = named(metrics::JOURNEY_LATENCY).count();
    let duration = named(metrics::JOURNEY_DURATION).count();
    let expect_latency = usize::from(result.outcome == Outcome::Success);
    let expect_duration = usize::from(result.outcome != Outcome::ProbeError);
    if (latency, duration) != (expect_latency, expect_duration) {
        problems.push(format!("{latency} latency and {duration} duration samples"));
    }

    // Items 2 and 4: the delivery, its figure, and the delay verdict.
    let delivery = result.steps.iter().find_map(|s| s.delivery.as_ref());
    if delivery.map(|d| d.method) != figures.method {
        problems.push(format!("delivery seen by {:?}, expected {:?}", delivery.map(|d| d.method), figures.method));
    }
    if let Some(d) = delivery {
        if d.delay.is_some() != figures.delay_figure.unwrap_or(false) {
            problems.push(format!("delay figure {:?}, expected one: {:?}", d.delay, figures.delay_figure));
        }
        // A figure is when the post was seen; the arrival lies after it was last known missing.
        if d.delay.is_some_and(|delay| delay != d.seen_after) || d.absent_after > d.seen_after {
            problems.push(format!("figure {:?} outside its bounds {:?}..{:?}", d.delay, d.absent_after, d.seen_after));
        }
        // The silent stream's default `silence` (45 s) must not leak into the figure.
        if d.delay.is_some_and(|delay| delay >= Duration::from_secs(45)) {
            problems.push(format!("figure {:?} as long as the silence that broke the stream", d.delay));
        }
        let figure_samples = named(metrics::FEDERATION_DELAY).count();
        let unbounded: Vec<f64> = named(metrics::FEDERATION_DELAY_UNBOUNDED).map(|s| s.value).collect();
        let expected_unbounded = if d.delay.is_some() { 0.0 } else { 1.0 };
        if figure_samples != usize::from(d.delay.is_some()) || unbounded != [expected_unbounded] {
            problems.push(format!("{figure_samples} delay samples, unbounded {unbounded:?}"));
        }
        if let Some(sample) = named(metrics::FEDERATION_DELAY).next()
            && label(sample, "method").as_deref() != Some(d.method.as_str())
        {
            problems.push(format!("delay sample labelled {:?}", label(sample, "method")));
        }
    } else if named(metrics::FEDERATION_DELAY).count() + named(metrics::FEDERATION_DELAY_UNBOUNDED).count() > 0 {
        problems.push("delay samples without a delivery".to_owned());
    }
    let delay_ok: Vec<f64> = named(metrics::JOURNEY_DELAY_OK).map(|s| s.value).collect();
    let expected: Vec<f64> = figures.delay_ok.map(|ok| if ok { 1.0 } else { 0.0 }).into_iter().collect();
    if result.outcome != Outcome::ProbeError && delay_ok != expected {
        problems.push(format!("delay_ok samples {delay_ok:?}, expected {expected:?}"));
    }

    // Item 3: the stream's own failure, counted with its reason.
    let stream_failed: Vec<Option<String>> = named(metrics::STREAM_FAILED).map(|s| label(s, "reason")).collect();
    let expected: Vec<Option<String>> =
        figures.stream_failed.map(|r| Some(r.as_str().to_owned())).into_iter().collect();
    if result.outcome != Outcome::ProbeError && stream_failed != expected {
        problems.push(format!("stream failures {stream_failed:?}, expected {expected:?}"));
    }

    // Item 7: every step's phases are its own requests', so they fit in its duration.
    for step in result.steps.iter().chain(&result.cleanup) {
        if let Some(phases) = &step.phases
            && phases.total() > step.duration
        {
            problems.push(format!(
                "step {}: phases {:?} exceed its duration {:?}",
                step.name,
                phases.total(),
                step.duration
            ));
        }
        if step.status == StepStatus::Skipped && step.phases.is_some() {
            problems.push(format!("skipped step {} has phases", step.name));
        }
    }
    // A stream step asked `/api/v2/instance` for the streaming URL before it opened:
    // that request is its own, not the step's it opened before.
    for (spec, step) in journey.steps.iter().zip(&result.steps) {
        if matches!(spec.kind, StepKind::Stream(_)) && step.status != StepStatus::Skipped && step.phases.is_none() {
            problems.push(format!("stream step {} has no phases of its own", step.name));
        }
    }

    if let Some(text) = figures.message
        && !result.error().is_some_and(|e| e.message.contains(text))
    {
        problems.push(format!("the error message does not say {text:?}"));
    }
    problems
}

fn set_token(targets: &mut [Target], name: &str, token: &str) {
    let target = targets.iter_mut().find(|t| t.name == name).unwrap();
    target.token = Ok(Secret::new(token));
}

fn set_url(targets: &mut [Target], name: &str, url: &str) {
    let target = targets.iter_mut().find(|t| t.name == name).unwrap();
    target.base_url = url.parse().unwrap();
}

/// A loopback server answering every request with `response` (keeping the
/// connection for the next request, as keep-alive servers do).
async fn raw_server(head: &'static str, body: &'static str) -> String {
    let response = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // Bounded: a test client sends a handful of requests at most.
                for _ in 0..16 {
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// A websocket server that accepts the probe's stream, then answers as Mastodon
/// does when the token lacks `read:statuses`: an error frame, the socket open.
async fn scope_error_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                // A plain request (the probe's `/api/v2/instance`) fails the handshake and is dropped.
                let Ok(mut socket) = tokio_tungstenite::accept_async(tcp).await else { return };
                let frame =
                    serde_json::json!({ "error": "Access token does not have the required scopes", "status": 401 });
                let _ = socket.send(Message::text(frame.to_string())).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}
