//! HTTP phase timings over real loopback connections: the phases add up to the
//! step's duration, a reused connection has no DNS, connect or TLS phase, a timed
//! out request keeps its time, and TLS (against a local server with a generated
//! certificate) has its own phase and fails as `tls` when the certificate is not
//! trusted.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fediprobe::runner::{Outcome, Phase, Reason, RunResult, Runner, StepResult, Target};
use fediprobe::sandbox::{Fault, Sandbox, SandboxConfig};
use fediprobe::secret::Secret;
use fediprobe::spec::Journey;
use http_body_util::Full;
use rustls::pki_types::CertificateDer;
use tokio::sync::Notify;

/// The server's wait that the tests put into the exchanges they time: a wait
/// the phases must show in full, on any machine.
const SERVER_WAIT: Duration = Duration::from_millis(200);

/// Two unauthenticated GETs to the same instance, the first to `first`.
fn two_requests(first: &str, timeout: &str) -> Journey {
    support::journeys::parse(&format!(
        "name: two\ninstance: main\nschedule: '* * * * *'\nslo: {{ availability: 99% }}\nsteps:\n  - name: first\n    timeout: {timeout}\n    request: {{ path: {first}, auth: false }}\n  - name: second\n    request: {{ path: /api/v2/instance, auth: false }}\n"
    ))
}

fn main_target(url: &str) -> Target {
    Target::new("main", url.parse().unwrap(), "probe", Secret::new("unused-token"))
}

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default()).await.expect("sandbox starts")
}

fn show(result: &RunResult) -> String {
    serde_json::to_string_pretty(result).unwrap()
}

/// The phases are contiguous and are the step: a step of one exchange is
/// clocked from its first phase's start to its answer's arrival, so its duration
/// is their sum exactly, and the probe's own work before the request (rendering
/// it) and after the answer (checking it) is in neither.
fn assert_phases_add_up(step: &StepResult, result: &RunResult) {
    let phases = step.phases.unwrap_or_else(|| panic!("step {} has no phases: {}", step.name, show(result)));
    assert_eq!(phases.total(), step.duration, "the phases are the step's duration: {}", show(result));
}

#[tokio::test]
async fn phases_add_up_to_the_step_duration_and_the_wait_is_ttfb() {
    let sandbox = sandbox().await;
    let alpha = sandbox.instance("alpha").unwrap();
    alpha.faults().inject(None, "/health", Fault::Latency(SERVER_WAIT));
    alpha.faults().inject(None, "/api/v2/instance", Fault::SlowBody { total: SERVER_WAIT });
    let result = Runner::new(vec![main_target(&alpha.base_url)]).run(&two_requests("/health", "5s")).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", show(&result));
    for step in &result.steps {
        assert_phases_add_up(step, &result);
    }
    // The server waits before it answers: the response head cannot arrive
    // sooner after the request's last byte, on any machine.
    let first = result.steps[0].phases.unwrap();
    assert!(first.ttfb >= SERVER_WAIT, "the server's wait is ttfb: {first:?}");
    assert!(first.transfer < first.ttfb, "a body sent at once is no wait: {first:?}");
    // The head comes at once and the body trickles over SERVER_WAIT after it.
    let second = result.steps[1].phases.unwrap();
    assert!(second.ttfb + second.transfer >= SERVER_WAIT, "{second:?}");
    assert!(second.transfer > second.ttfb, "a trickling body is transfer: {second:?}");

    // The same values in `--output json`, in seconds.
    let json = serde_json::to_value(&result).unwrap();
    let ttfb = json["steps"][0]["phases"]["ttfb"].as_f64().unwrap();
    assert!((ttfb - first.ttfb.as_secs_f64()).abs() < 1e-9);
    for phase in Phase::ALL {
        assert!(json["steps"][1]["phases"][phase.as_str()].is_f64(), "{json}");
    }
}

/// A run's clock is its steps': the probe's work between them (checking one
/// answer, preparing the next request) is not the instance's time.
#[tokio::test]
async fn a_run_is_clocked_by_its_exchanges_not_the_probes_work_between_them() {
    let sandbox = sandbox().await;
    let alpha = sandbox.instance("alpha").unwrap();
    let start = std::time::Instant::now();
    let result = Runner::new(vec![main_target(&alpha.base_url)]).run(&two_requests("/health", "5s")).await;
    let elapsed = start.elapsed();
    assert_eq!(result.outcome, Outcome::Success, "{}", show(&result));
    let phases: Duration = result.steps.iter().map(|s| s.phases.unwrap().total()).sum();
    assert_eq!(result.duration, phases, "{}", show(&result));
    assert!(result.duration < elapsed, "{}", show(&result));
}

#[tokio::test]
async fn a_second_request_in_the_run_reuses_the_connection() {
    let sandbox = sandbox().await;
    let alpha = sandbox.instance("alpha").unwrap();
    let result = Runner::new(vec![main_target(&alpha.base_url)]).run(&two_requests("/health", "5s")).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", show(&result));
    let (first, second) = (result.steps[0].phases.unwrap(), result.steps[1].phases.unwrap());
    assert!(first.connect > Duration::ZERO, "{first:?}");
    assert_eq!((second.dns, second.connect, second.tls), (Duration::ZERO, Duration::ZERO, Duration::ZERO));
    // The sandbox's small answer comes in one packet: its body arrives with its
    // head, so its transfer time may be nothing.
    assert!(second.ttfb > Duration::ZERO, "{second:?}");
    assert_eq!(second.total(), second.send + second.ttfb + second.transfer);

    // A new run opens a new connection.
    let again = Runner::new(vec![main_target(&alpha.base_url)]).run(&two_requests("/health", "5s")).await;
    assert!(again.steps[0].phases.unwrap().connect > Duration::ZERO);
}

#[tokio::test]
async fn an_ip_literal_has_no_dns_phase_and_a_host_name_has_one() {
    let sandbox = sandbox().await;
    let alpha = sandbox.instance("alpha").unwrap();
    let url: url::Url = alpha.base_url.parse().unwrap();
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    let by_ip = Runner::new(vec![main_target(url.as_str())]).run(&two_requests("/health", "5s")).await;
    assert_eq!(by_ip.steps[0].phases.unwrap().dns, Duration::ZERO, "{}", show(&by_ip));

    // `localhost` may resolve to ::1 first, where the sandbox does not listen:
    // the connector moves on to 127.0.0.1.
    alpha.faults().inject(None, "/health", Fault::Latency(SERVER_WAIT));
    let by_name = format!("http://localhost:{}", url.port().unwrap());
    let result = Runner::new(vec![main_target(&by_name)]).run(&two_requests("/health", "5s")).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", show(&result));
    assert!(result.steps[0].phases.unwrap().dns > Duration::ZERO, "{}", show(&result));
    assert_phases_add_up(&result.steps[0], &result);
}

#[tokio::test]
async fn a_timed_out_request_keeps_its_time_in_the_phase_it_was_in() {
    let sandbox = sandbox().await;
    let alpha = sandbox.instance("alpha").unwrap();
    alpha.faults().inject(None, "/health", Fault::Latency(Duration::from_secs(5)));
    let result = Runner::new(vec![main_target(&alpha.base_url)]).run(&two_requests("/health", "300ms")).await;
    assert_eq!((result.outcome, result.reason), (Outcome::Failure, Some(Reason::Timeout)), "{}", show(&result));
    // The deadline cannot pass sooner than 300 ms after the step began, and the
    // time went to waiting for the answer, not to connecting or sending.
    assert!(result.steps[0].duration >= Duration::from_millis(300), "{}", show(&result));
    let phases = result.steps[0].phases.unwrap();
    assert!(phases.ttfb > phases.dns + phases.connect + phases.send, "{phases:?}");
    assert_eq!(phases.transfer, Duration::ZERO);
    assert_phases_add_up(&result.steps[0], &result);
    assert!(result.steps[1].phases.is_none(), "a skipped step made no request");
}

#[tokio::test]
async fn phases_become_one_sample_per_phase_per_step() {
    let sandbox = sandbox().await;
    let alpha = sandbox.instance("alpha").unwrap();
    let result = Runner::new(vec![main_target(&alpha.base_url)]).run(&two_requests("/health", "5s")).await;
    let samples = fediprobe::metrics::samples_for_run(&result, "here");
    let label = |s: &fediprobe::sink::Sample, name: &str| {
        s.labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    let phases: Vec<_> = samples
        .iter()
        .filter(|s| label(s, "__name__") == fediprobe::metrics::HTTP_PHASE)
        .map(|s| (label(s, "step"), label(s, "phase"), s.value))
        .collect();
    assert_eq!(phases.len(), 12, "{phases:?}");
    let connect_of_second = phases.iter().find(|(s, p, _)| s == "second" && p == "connect").unwrap();
    assert_eq!(connect_of_second.2, 0.0);
    let ttfb_of_first = phases.iter().find(|(s, p, _)| s == "first" && p == "ttfb").unwrap();
    assert_eq!(ttfb_of_first.2, result.steps[0].phases.unwrap().ttfb.as_secs_f64());
}

/// A private CA and a certificate it issued for `localhost` and 127.0.0.1.
struct Pki {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "fediprobe test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Pki { ca: ca.der().clone(), chain: vec![leaf.der().clone(), ca.der().clone()], key: key.into() }
}

/// A TLS server on loopback answering 200 `ok` to everything, over HTTP/2 or
/// HTTP/1.1 as ALPN decides (only HTTP/1.1 when `http2` is false), told on
/// `requests` as each request comes in. Returns its URL.
async fn tls_server(pki: &Pki, http2: bool, requests: Option<Arc<Notify>>) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
    config.alpn_protocols = if http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            let requests = requests.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let io = hyper_util::rt::TokioIo::new(tls);
                // The HTTP version the request came in, for the journey to check.
                // Each answer waits SERVER_WAIT first, as a busy instance would.
                let service = hyper::service::service_fn(|request: hyper::Request<hyper::body::Incoming>| {
                    if let Some(requests) = &requests {
                        requests.notify_one();
                    }
                    async move {
                        tokio::time::sleep(SERVER_WAIT).await;
                        let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                        let version = format!("{:?}", request.version()).parse().unwrap();
                        response.headers_mut().insert("x-version", version);
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                }
            });
        }
    });
    format!("https://localhost:{port}")
}

/// Two GETs over the same connection, each checking the HTTP version it went over.
fn two_tls_requests(version: &str) -> Journey {
    support::journeys::parse(&format!(
        "name: tls\ninstance: main\nschedule: '* * * * *'\nslo: {{ availability: 99% }}\nsteps:\n  - name: first\n    request: {{ path: /one, auth: false }}\n    expect: {{ headers: {{ x-version: {version} }} }}\n  - name: second\n    request: {{ path: /two, auth: false }}\n    expect: {{ headers: {{ x-version: {version} }} }}\n"
    ))
}

async fn tls_handshake_is_its_own_phase_and_is_not_repeated(http2: bool) {
    let pki = pki();
    let url = tls_server(&pki, http2, None).await;
    let runner = Runner::new(vec![main_target(&url)]).with_extra_roots(vec![pki.ca.clone()]).unwrap();
    let result = runner.run(&two_tls_requests(if http2 { "HTTP/2.0" } else { "HTTP/1.1" })).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", show(&result));
    let (first, second) = (result.steps[0].phases.unwrap(), result.steps[1].phases.unwrap());
    assert!(first.tls > Duration::ZERO && first.connect > Duration::ZERO, "{first:?}");
    assert_eq!((second.dns, second.connect, second.tls), (Duration::ZERO, Duration::ZERO, Duration::ZERO));
    for step in &result.steps {
        assert_phases_add_up(step, &result);
    }
}

#[tokio::test]
async fn tls_handshake_is_its_own_phase_and_is_not_repeated_over_http2() {
    tls_handshake_is_its_own_phase_and_is_not_repeated(true).await;
}

#[tokio::test]
async fn tls_handshake_is_its_own_phase_and_is_not_repeated_over_http1() {
    tls_handshake_is_its_own_phase_and_is_not_repeated(false).await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_failure_with_reason_tls() {
    let pki = pki();
    let url = tls_server(&pki, true, None).await;
    let result = Runner::new(vec![main_target(&url)]).run(&two_tls_requests("HTTP/2.0")).await;
    assert_eq!((result.outcome, result.reason), (Outcome::Failure, Some(Reason::Tls)), "{}", show(&result));
    let message = &result.error().unwrap().message;
    assert!(message.to_lowercase().contains("certificate"), "{message}");
    assert!(result.steps[0].phases.unwrap().tls > Duration::ZERO);
}

/// How long the tests below hold the probe's thread busy once the server has
/// the request: longer than the server's wait, so that an answer counted when it
/// was read rather than when it arrived would show by far.
const BUSY: Duration = Duration::from_millis(600);

/// One unauthenticated GET of `/one`.
fn one_request() -> Journey {
    support::journeys::parse(
        "name: one\ninstance: main\nschedule: '* * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: first\n    request: { path: /one, auth: false }\n",
    )
}

/// Runs [`one_request`] on a thread of its own that is held busy for [`BUSY`]
/// from the moment the server has the request: the server answers after
/// [`SERVER_WAIT`], while the thread that would read the answer cannot.
fn run_on_a_thread_busy_when_the_answer_comes(runner: Runner, request_came: Arc<Notify>) -> RunResult {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let busy = tokio::spawn(async move {
            request_came.notified().await;
            std::thread::sleep(BUSY);
        });
        let result = runner.run(&one_request()).await;
        busy.await.unwrap();
        result
    })
}

/// The step's clock, and the run's, end when the answer arrived (the kernel's
/// receive time), not when the busy probe thread got round to reading it: that
/// delay is the probe's, and the figure is the server's and the network's.
fn assert_the_busy_time_is_not_counted(result: &RunResult) {
    assert_eq!(result.outcome, Outcome::Success, "{}", show(result));
    let step = &result.steps[0];
    let phases = step.phases.unwrap();
    assert!(phases.ttfb >= SERVER_WAIT, "the server's wait is still counted: {}", show(result));
    assert!(step.duration >= SERVER_WAIT, "{}", show(result));
    assert!(
        step.duration < SERVER_WAIT + BUSY / 2 && result.duration < SERVER_WAIT + BUSY / 2,
        "the thread was busy for {BUSY:?} after the answer arrived, and that was counted: {}",
        show(result)
    );
    assert_phases_add_up(step, result);
}

/// A plain HTTP/1.1 server on a thread of its own for one connection: it reads
/// the request head, calls `before_answering`, answers 200 `ok`, and waits for
/// the probe to close. Returns its URL.
fn one_answer_server(before_answering: impl FnOnce() + Send + 'static) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut socket, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0, "the probe closed before its request was complete");
            request.extend_from_slice(&buf[..n]);
        }
        before_answering();
        socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").unwrap();
        let _ = socket.read(&mut buf);
    });
    url
}

#[test]
fn an_answer_read_late_by_a_busy_probe_counts_when_it_arrived() {
    let request_came = Arc::new(Notify::new());
    let told = request_came.clone();
    let url = one_answer_server(move || {
        told.notify_one();
        std::thread::sleep(SERVER_WAIT);
    });
    let result = run_on_a_thread_busy_when_the_answer_comes(Runner::new(vec![main_target(&url)]), request_came);
    assert_the_busy_time_is_not_counted(&result);
}

#[test]
fn an_answer_read_late_by_a_busy_probe_counts_when_it_arrived_over_tls() {
    for http2 in [true, false] {
        let pki = pki();
        let request_came = Arc::new(Notify::new());
        // The server's own runtime: the probe's thread being busy must not hold it up.
        let server = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let url = server.block_on(tls_server(&pki, http2, Some(request_came.clone())));
        let runner = Runner::new(vec![main_target(&url)]).with_extra_roots(vec![pki.ca.clone()]).unwrap();
        let result = run_on_a_thread_busy_when_the_answer_comes(runner, request_came);
        assert_the_busy_time_is_not_counted(&result);
    }
}

/// The TCP handshake ends when the kernel got the SYN-ACK (its own measure of
/// the handshake), not when the probe's thread, busy with something else, saw
/// the connection up: here the thread is held busy from the moment the run
/// waits for its connection (the first moment it waits at all) for [`BUSY`],
/// while the server answers at once.
#[test]
fn a_connection_seen_late_by_a_busy_probe_counts_when_its_handshake_ended() {
    let url = one_answer_server(|| {});
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let result = runtime.block_on(async {
        // Runs as soon as the run first waits: for its TCP connection.
        let busy = tokio::spawn(async { std::thread::sleep(BUSY) });
        let result = Runner::new(vec![main_target(&url)]).run(&one_request()).await;
        busy.await.unwrap();
        result
    });
    assert_eq!(result.outcome, Outcome::Success, "{}", show(&result));
    let step = &result.steps[0];
    let phases = step.phases.unwrap();
    assert!(
        phases.connect < BUSY / 2 && step.duration < BUSY / 2 && result.duration < BUSY / 2,
        "the thread was busy for {BUSY:?} after the handshake ended, and that was counted: {}",
        show(&result)
    );
    assert!(phases.connect > Duration::ZERO, "{phases:?}");
    assert!(phases.total() <= step.duration, "{}", show(&result));
}
