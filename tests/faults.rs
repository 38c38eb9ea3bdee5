//! The fault suite: every way an instance (or the network to it) can misbehave,
//! each with the outcome and reason the probe must report, within a bounded time.
//! One table, [`cases`]; each row names the hostile server, the journey's steps,
//! the expected outcome and reason, and the most the run may take.
//!
//! Servers are the sandbox with its fault knobs where they fit, and small hostile
//! servers written here (raw bytes on a loopback `TcpListener`, a TLS server with
//! generated certificates, a websocket server) for the rest. Names resolve
//! through a fixed table ([`Resolver::fixed`]): no lookup ever leaves the machine.

mod support;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fediprobe::runner::{ControlTarget, Outcome, Reason, Resolver, RunResult, Runner, Target};
use fediprobe::sandbox::{Fault, Sandbox, SandboxConfig};
use fediprobe::secret::Secret;
use fediprobe::spec::Journey;
use futures_util::SinkExt;
use http_body_util::Full;
use rustls::pki_types::CertificateDer;
use support::victoria::free_port;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// The names the tests' resolver knows; every other name does not exist.
const KNOWN_NAME: &str = "localhost";
const OTHER_NAME: &str = "other-name.fediprobe.test";
const UNKNOWN_NAME: &str = "no-such-instance.fediprobe.test";

fn resolver() -> Resolver {
    let loopback = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    Resolver::fixed([(KNOWN_NAME.to_owned(), loopback.clone()), (OTHER_NAME.to_owned(), loopback)])
}

/// What answers the journey's requests.
enum Server {
    /// The sandbox's `alpha`, with `fault` on every path.
    Sandbox(Fault),
    /// The sandbox, but the probe's token is missing.
    MissingToken,
    /// A port nobody listens on.
    Refused,
    /// A host name that does not resolve.
    Unresolvable,
    /// Raw bytes on loopback: reads the request head, then does what it likes.
    Raw(RawBehaviour),
    /// A TLS server whose certificate is wrong in some way.
    Tls(TlsProblem),
    /// `main` is the sandbox (for the step the stream opens before), `peer` a
    /// websocket server that behaves like this.
    Stream(StreamBehaviour),
}

#[derive(Clone, Copy)]
enum RawBehaviour {
    HeadersNeverCome,
    Slowloris,
    HugeAnnounced,
    HugeChunked,
    MalformedJson,
    TruncatedBody,
    WrongContentType,
    RedirectLoop,
    TooManyRequests,
    GarbageStatusLine,
}

#[derive(Clone, Copy)]
enum TlsProblem {
    Untrusted,
    Expired,
    WrongName,
}

#[derive(Clone, Copy)]
enum StreamBehaviour {
    Silent,
    GarbageOnly,
    GarbageThenMatch,
}

struct Case {
    name: &'static str,
    server: Server,
    /// The journey's `steps:` (and optional `deadline:`) lines, indented for the top level.
    journey: &'static str,
    outcome: Outcome,
    reason: Option<Reason>,
    /// The most the whole run (steps and cleanup) may take: the deadline that
    /// must hold, plus slack for a busy machine.
    bound: Duration,
}

const GET_JSON: &str = "steps:\n  - name: get\n    timeout: 3s\n    request: { path: /api/v1/timelines/public, auth: false }\n    expect: { json: [ { path: '$[0].id', exists: true } ] }\n";
const GET_ANY: &str =
    "steps:\n  - name: get\n    timeout: 3s\n    request: { path: /api/v1/timelines/public, auth: false }\n";
const GET_AUTHED: &str = "steps:\n  - name: get\n    timeout: 3s\n    request: { path: /api/v1/timelines/home }\n";
const GET_FOLLOWING: &str =
    "steps:\n  - name: get\n    timeout: 3s\n    request: { path: /start, auth: false, follow_redirects: true }\n";
const SLOW_DEADLINE: &str = "deadline: 2s\nsteps:\n  - name: get\n    timeout: 2s\n    request: { path: /api/v1/timelines/public, auth: false }\n";
const STREAM: &str = "steps:\n  - name: ping\n    request: { path: /health, auth: false }\n  - name: arrive\n    instance: peer\n    timeout: 3s\n    stream: { open_before: ping, event: update, within: 2s }\n    expect: { json: [ { path: '$.content', equals: hello } ] }\n";

/// The same stream step with a short `silence`: a quiet stream is broken, long before `within`.
const STREAM_SILENCE: &str = "steps:\n  - name: ping\n    request: { path: /health, auth: false }\n  - name: arrive\n    instance: peer\n    timeout: 3s\n    stream: { open_before: ping, event: update, within: 60s, silence: 1s }\n    expect: { json: [ { path: '$.content', equals: hello } ] }\n";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn cases() -> Vec<Case> {
    use Outcome::{Failure, ProbeError, Success};
    let case = |name, server, journey, outcome, reason: Option<Reason>, bound| Case {
        name,
        server,
        journey,
        outcome,
        reason,
        bound,
    };
    vec![
        case("500", Server::Sandbox(Fault::Status(500)), GET_ANY, Failure, Some(Reason::HttpStatus), secs(5)),
        case(
            "502 from the proxy",
            Server::Sandbox(Fault::Status(502)),
            GET_ANY,
            Failure,
            Some(Reason::HttpStatus),
            secs(5),
        ),
        case("503", Server::Sandbox(Fault::Status(503)), GET_ANY, Failure, Some(Reason::HttpStatus), secs(5)),
        case(
            "504 from the proxy",
            Server::Sandbox(Fault::Status(504)),
            GET_ANY,
            Failure,
            Some(Reason::HttpStatus),
            secs(5),
        ),
        case("connection refused", Server::Refused, GET_ANY, Failure, Some(Reason::Connect), secs(5)),
        case(
            "connection dropped before a response",
            Server::Sandbox(Fault::DropConnection),
            GET_ANY,
            Failure,
            Some(Reason::ConnectionClosed),
            secs(5),
        ),
        case(
            "reset mid-body",
            Server::Sandbox(Fault::ResetMidBody),
            GET_ANY,
            Failure,
            Some(Reason::ConnectionClosed),
            secs(5),
        ),
        case(
            "headers that never come",
            Server::Raw(RawBehaviour::HeadersNeverCome),
            GET_ANY,
            Failure,
            Some(Reason::Timeout),
            secs(3 + 5),
        ),
        case(
            "slowloris body, one byte a second: the deadline holds",
            Server::Raw(RawBehaviour::Slowloris),
            SLOW_DEADLINE,
            Failure,
            Some(Reason::Timeout),
            secs(2 + 5),
        ),
        case(
            "2 GB body announced",
            Server::Raw(RawBehaviour::HugeAnnounced),
            GET_ANY,
            Failure,
            Some(Reason::BodyTooLarge),
            secs(10),
        ),
        case(
            "2 GB chunked body, capped while read",
            Server::Raw(RawBehaviour::HugeChunked),
            GET_ANY,
            Failure,
            Some(Reason::BodyTooLarge),
            secs(10),
        ),
        case(
            "malformed JSON",
            Server::Raw(RawBehaviour::MalformedJson),
            GET_JSON,
            Failure,
            Some(Reason::InvalidJson),
            secs(5),
        ),
        case(
            "truncated JSON",
            Server::Sandbox(Fault::MalformedJson),
            GET_JSON,
            Failure,
            Some(Reason::InvalidJson),
            secs(5),
        ),
        case(
            "body shorter than announced",
            Server::Raw(RawBehaviour::TruncatedBody),
            GET_ANY,
            Failure,
            Some(Reason::ConnectionClosed),
            secs(5),
        ),
        case(
            "wrong content type (an HTML page)",
            Server::Raw(RawBehaviour::WrongContentType),
            GET_JSON,
            Failure,
            Some(Reason::InvalidJson),
            secs(5),
        ),
        case(
            "not HTTP at all",
            Server::Raw(RawBehaviour::GarbageStatusLine),
            GET_ANY,
            Failure,
            Some(Reason::Protocol),
            secs(5),
        ),
        case(
            "redirect loop",
            Server::Raw(RawBehaviour::RedirectLoop),
            GET_FOLLOWING,
            Failure,
            Some(Reason::RedirectLoop),
            secs(5),
        ),
        case("untrusted certificate", Server::Tls(TlsProblem::Untrusted), GET_ANY, Failure, Some(Reason::Tls), secs(5)),
        case("expired certificate", Server::Tls(TlsProblem::Expired), GET_ANY, Failure, Some(Reason::Tls), secs(5)),
        case(
            "certificate for another host name",
            Server::Tls(TlsProblem::WrongName),
            GET_ANY,
            Failure,
            Some(Reason::Tls),
            secs(5),
        ),
        case("host name that does not resolve", Server::Unresolvable, GET_ANY, Failure, Some(Reason::Dns), secs(5)),
        case(
            "429 with Retry-After",
            Server::Raw(RawBehaviour::TooManyRequests),
            GET_ANY,
            ProbeError,
            Some(Reason::RateLimited),
            secs(5),
        ),
        case(
            "401 on the probe's token",
            Server::Sandbox(Fault::Status(401)),
            GET_AUTHED,
            ProbeError,
            Some(Reason::Unauthorized),
            secs(5),
        ),
        case("missing token", Server::MissingToken, GET_AUTHED, ProbeError, Some(Reason::Config), secs(5)),
        case(
            "stream accepts, then is silent",
            Server::Stream(StreamBehaviour::Silent),
            STREAM,
            Failure,
            Some(Reason::NotDelivered),
            secs(2 + 5),
        ),
        case(
            "stream silent longer than `silence` (no fallback): broken, not waited for",
            Server::Stream(StreamBehaviour::Silent),
            STREAM_SILENCE,
            Failure,
            Some(Reason::ConnectionClosed),
            secs(1 + 10),
        ),
        case(
            "stream sends only garbage frames",
            Server::Stream(StreamBehaviour::GarbageOnly),
            STREAM,
            Failure,
            Some(Reason::NotDelivered),
            secs(2 + 5),
        ),
        case(
            "stream sends garbage, then the event",
            Server::Stream(StreamBehaviour::GarbageThenMatch),
            STREAM,
            Success,
            None,
            secs(5),
        ),
    ]
}

/// A journey against `main` (and `peer`) with `body` (steps, optional deadline).
fn journey(body: &str) -> Journey {
    support::journeys::with_steps("fault", body)
}

fn target(name: &str, url: &str) -> Target {
    Target::new(name, url.parse().unwrap(), "probe", Secret::new("fault-suite-token"))
}

fn show(result: &RunResult) -> String {
    serde_json::to_string_pretty(result).unwrap()
}

/// The process's resident memory, from `/proc/self/status`, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test]
async fn every_fault_ends_in_its_outcome_and_reason_within_its_bound() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let alpha = sandbox.instance("alpha").unwrap();
    let pki = Pki::new();
    let mut failures = Vec::new();
    for case in cases() {
        alpha.faults().clear();
        let mut targets = Vec::new();
        let mut roots = vec![pki.ca.clone()];
        match &case.server {
            Server::Sandbox(fault) => {
                alpha.faults().inject(None, "/", fault.clone());
                targets.push(target("main", &alpha.base_url));
            }
            Server::MissingToken => {
                let mut t = target("main", &alpha.base_url);
                t.token = Err(fediprobe::runner::target::TokenError {
                    instance: "main".into(),
                    account: None,
                    cause: fediprobe::runner::target::SecretError::EnvNotSet("FAULT_TOKEN".into()),
                });
                targets.push(t);
            }
            Server::Refused => targets.push(target("main", &format!("http://127.0.0.1:{}", free_port()))),
            Server::Unresolvable => targets.push(target("main", &format!("https://{UNKNOWN_NAME}"))),
            Server::Raw(behaviour) => targets.push(target("main", &raw_server(*behaviour).await)),
            Server::Tls(problem) => {
                if matches!(problem, TlsProblem::Untrusted) {
                    roots.clear();
                }
                targets.push(target("main", &tls_server(&pki, *problem).await));
            }
            Server::Stream(behaviour) => {
                targets.push(target("main", &alpha.base_url));
                targets.push(target("peer", &websocket_server(*behaviour).await));
            }
        }
        let runner = Runner::new(targets).with_resolver(resolver()).with_extra_roots(roots).unwrap();
        let journey = journey(case.journey);
        let rss_before = rss_bytes();
        let started = Instant::now();
        let result = tokio::time::timeout(case.bound + secs(30), runner.run(&journey))
            .await
            .unwrap_or_else(|_| panic!("{}: the run did not end at all", case.name));
        let took = started.elapsed();
        let grown = rss_bytes().saturating_sub(rss_before);
        let mut problems = Vec::new();
        if (result.outcome, result.reason) != (case.outcome, case.reason) {
            problems.push(format!(
                "ended {}/{:?}, expected {}/{:?}",
                result.outcome.as_str(),
                result.reason.map(Reason::as_str),
                case.outcome.as_str(),
                case.reason.map(Reason::as_str)
            ));
        }
        if took > case.bound {
            problems.push(format!("took {took:?}, more than {:?}", case.bound));
        }
        // The 10 MiB cap, a few buffers and the allocator's slack: never the 2 GB.
        if grown > 100 * 1024 * 1024 {
            problems.push(format!("resident memory grew by {} MiB", grown / (1024 * 1024)));
        }
        if result.error().is_some_and(|e| e.message.contains("fault-suite-token")) {
            problems.push("the error message shows the token".to_owned());
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n{}", case.name, problems.join("; "), show(&result)));
        }
    }
    assert!(failures.is_empty(), "{} fault cases went wrong:\n{}", failures.len(), failures.join("\n\n"));
}

/// A closed loopback port as the instance, and a control target that listens:
/// the instance is down, the probe's network is fine.
#[tokio::test]
async fn a_refused_connection_is_the_instances_fault_when_the_control_target_answers() {
    let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control_port = control.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = control.accept().await {
            drop(socket);
        }
    });
    let result = run_against_closed_port(control_port).await;
    assert_eq!((result.outcome, result.reason), (Outcome::Failure, Some(Reason::Connect)), "{}", show(&result));
}

/// A closed loopback port as the instance and as the control target: the probe's
/// own network is down, which must not count against the instance.
#[tokio::test]
async fn a_refused_connection_is_a_probe_error_when_the_control_target_is_unreachable_too() {
    let result = run_against_closed_port(free_port()).await;
    assert_eq!((result.outcome, result.reason), (Outcome::ProbeError, Some(Reason::ProbeNetwork)), "{}", show(&result));
    let message = &result.error().unwrap().message;
    assert!(message.contains("control target") && message.contains("own network"), "{message}");
    let samples = fediprobe::metrics::samples_for_run(&result, "here");
    assert!(
        !samples.iter().any(|s| s.name() == Some(fediprobe::metrics::JOURNEY_SUCCESS)),
        "a probe_error run has no success sample"
    );
}

/// An unresolvable control target name counts as unreachable; an instance whose
/// failure is not about the network (a 503) is never checked.
#[tokio::test]
async fn only_network_failures_trigger_the_control_check() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let alpha = sandbox.instance("alpha").unwrap();
    alpha.faults().inject(None, "/", Fault::Status(503));
    let control = ControlTarget { host: url::Host::Domain(UNKNOWN_NAME.to_owned()), port: 443 };
    let runner =
        Runner::new(vec![target("main", &alpha.base_url)]).with_resolver(resolver()).with_control_target(Some(control));
    let result = runner.run(&journey(GET_ANY)).await;
    assert_eq!((result.outcome, result.reason), (Outcome::Failure, Some(Reason::HttpStatus)), "{}", show(&result));
}

async fn run_against_closed_port(control_port: u16) -> RunResult {
    let instance = format!("http://127.0.0.1:{}", free_port());
    let control = ControlTarget { host: url::Host::Ipv4(Ipv4Addr::LOCALHOST), port: control_port };
    let runner = Runner::new(vec![target("main", &instance)]).with_control_target(Some(control));
    runner.run(&journey(GET_ANY)).await
}

/// Serves every connection on a loopback port with `handle`; returns the base URL.
async fn serve<F, Fut>(handle: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = Arc::new(handle);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(handle(socket));
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// Reads until the end of the request head (the test requests have no body).
async fn read_head(socket: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

async fn raw_server(behaviour: RawBehaviour) -> String {
    serve(move |mut socket| async move {
        let _ = read_head(&mut socket).await;
        let _ = respond(&mut socket, behaviour).await;
        // Hold the connection open a while, as a hostile server would.
        tokio::time::sleep(secs(60)).await;
    })
    .await
}

const TWO_GB: u64 = 2 * 1024 * 1024 * 1024;

async fn respond(socket: &mut TcpStream, behaviour: RawBehaviour) -> std::io::Result<()> {
    let simple = |status: &str, headers: &str, body: &str| {
        format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n{body}", body.len())
    };
    match behaviour {
        RawBehaviour::HeadersNeverCome => Ok(()),
        RawBehaviour::Slowloris => {
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
                .await?;
            loop {
                socket.write_all(b" ").await?;
                tokio::time::sleep(secs(1)).await;
            }
        }
        RawBehaviour::HugeAnnounced | RawBehaviour::HugeChunked => {
            let chunked = matches!(behaviour, RawBehaviour::HugeChunked);
            let head = if chunked {
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned()
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {TWO_GB}\r\n\r\n")
            };
            socket.write_all(head.as_bytes()).await?;
            // Streamed from one small buffer: the 2 GB never exist anywhere.
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0u64;
            while sent < TWO_GB {
                if chunked {
                    socket.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                }
                socket.write_all(&chunk).await?;
                if chunked {
                    socket.write_all(b"\r\n").await?;
                }
                sent += chunk.len() as u64;
            }
            Ok(())
        }
        RawBehaviour::MalformedJson => {
            let body = r#"[{"id": "1",, "content": }"#;
            socket.write_all(simple("200 OK", "Content-Type: application/json\r\n", body).as_bytes()).await
        }
        RawBehaviour::TruncatedBody => {
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{\"id\"")
                .await?;
            socket.shutdown().await
        }
        RawBehaviour::WrongContentType => {
            let body = "<!DOCTYPE html><html><body><h1>We're sorry</h1></body></html>";
            socket.write_all(simple("200 OK", "Content-Type: text/html\r\n", body).as_bytes()).await
        }
        RawBehaviour::RedirectLoop => {
            // Keep-alive: every redirect on the same connection, for as long as asked.
            let mut hops = 0;
            loop {
                let response = simple("302 Found", &format!("Location: /hop/{hops}\r\n"), "");
                socket.write_all(response.as_bytes()).await?;
                hops += 1;
                if read_head(socket).await.is_empty() {
                    return Ok(());
                }
            }
        }
        RawBehaviour::TooManyRequests => {
            let body = r#"{"error":"Too many requests"}"#;
            let headers = "Content-Type: application/json\r\nRetry-After: 300\r\nX-RateLimit-Remaining: 0\r\n";
            socket.write_all(simple("429 Too Many Requests", headers, body).as_bytes()).await
        }
        RawBehaviour::GarbageStatusLine => socket.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await,
    }
}

/// A private CA and the certificates the TLS cases serve.
struct Pki {
    ca: CertificateDer<'static>,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "fediprobe fault suite CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki { ca: issuer.der().clone(), issuer }
    }

    /// A leaf for `names`, valid now or (`expired`) only in 2020.
    fn leaf(
        &self,
        names: &[&str],
        expired: bool,
    ) -> (Vec<CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (vec![cert.der().clone(), self.ca.clone()], key.into())
    }
}

/// A TLS server answering 200 to everything, with a certificate that is
/// untrusted (self-signed), expired, or for another name. Returns its URL.
async fn tls_server(pki: &Pki, problem: TlsProblem) -> String {
    let (chain, key, host) = match problem {
        TlsProblem::Untrusted => {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![KNOWN_NAME.to_owned()]).unwrap().self_signed(&key).unwrap();
            (vec![cert.der().clone()], key.into(), KNOWN_NAME)
        }
        TlsProblem::Expired => {
            let (chain, key) = pki.leaf(&[KNOWN_NAME], true);
            (chain, key, KNOWN_NAME)
        }
        TlsProblem::WrongName => {
            let (chain, key) = pki.leaf(&[KNOWN_NAME], false);
            (chain, key, OTHER_NAME)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let url = serve(move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = hyper::service::service_fn(|_request: hyper::Request<hyper::body::Incoming>| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"[]"))))
            });
            let io = hyper_util::rt::TokioIo::new(tls);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        }
    })
    .await;
    url.replace("http://127.0.0.1", &format!("https://{host}"))
}

/// A websocket server on every path (a plain request, like the probe's
/// `/api/v2/instance`, fails the handshake and is dropped). Returns its URL.
async fn websocket_server(behaviour: StreamBehaviour) -> String {
    serve(move |tcp| async move {
        let Ok(mut socket) = tokio_tungstenite::accept_async(tcp).await else { return };
        let update = |payload: &str| {
            Message::text(serde_json::json!({ "stream": ["user"], "event": "update", "payload": payload }).to_string())
        };
        let garbage = vec![
            Message::text("not json at all"),
            Message::text("{\"event\":"),
            Message::text("{\"event\": 42, \"payload\": []}"),
            Message::text("{\"error\":\"Error parsing\",\"status\":400}"),
            Message::text("[1, 2, 3]"),
            Message::binary(vec![0xff, 0x00, 0xfe, 0x80]),
            Message::text("{\"stream\":[\"user\"],\"event\":\"update\",\"payload\":42}"),
            update("{not json"),
            update("{\"content\": \"someone else's post\"}"),
            Message::text("\u{feff}\u{0}\u{1f4a9}"),
        ];
        match behaviour {
            StreamBehaviour::Silent => {}
            StreamBehaviour::GarbageOnly => {
                for message in garbage {
                    let _ = socket.send(message).await;
                }
            }
            StreamBehaviour::GarbageThenMatch => {
                for message in garbage {
                    let _ = socket.send(message).await;
                }
                let _ = socket.send(update("{\"content\": \"hello\"}")).await;
            }
        }
        // Accepted, then silent: the socket stays open, nothing more is sent.
        tokio::time::sleep(secs(60)).await;
        drop(socket);
    })
    .await
}
