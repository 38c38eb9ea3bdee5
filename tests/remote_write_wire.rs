//! The remote-write sink on the wire: a local HTTP server captures what the sink
//! sends and answers with scripted statuses; the tests decode the snappy+protobuf
//! bodies and check headers, labels, grouping, timestamps and the retry rules.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fediprobe::secret::Secret;
use fediprobe::sink::Sample;
use fediprobe::sink::remote_write::encode::{decode_body, proto};
use fediprobe::sink::remote_write::{Auth, RemoteWriteOptions, RetryPolicy, Sink};

/// One request the server received.
#[derive(Debug, Clone)]
struct Captured {
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

/// A scripted answer: status, optional `Retry-After`, body.
type Answer = (u16, Option<&'static str>, &'static str);

#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Answer>>,
    received: Mutex<Vec<Captured>>,
}

async fn receive(State(script): State<Arc<Script>>, headers: HeaderMap, body: Bytes) -> Response {
    script.received.lock().unwrap().push(Captured { headers, body, at: Instant::now() });
    let answer = script.answers.lock().unwrap().pop_front();
    let (status, retry_after, body) = answer.unwrap_or((204, None, ""));
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    if let Some(value) = retry_after {
        response.headers_mut().insert("retry-after", value.parse().unwrap());
    }
    response
}

/// Starts a capturing server on 127.0.0.1 that gives `answers` in order, then 204.
async fn start_server(answers: Vec<Answer>) -> (SocketAddr, Arc<Script>) {
    let script = Arc::new(Script { answers: Mutex::new(answers.into()), received: Mutex::default() });
    let app = axum::Router::new().route("/api/v1/write", axum::routing::post(receive)).with_state(Arc::clone(&script));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, script)
}

fn options(address: SocketAddr) -> RemoteWriteOptions {
    let mut options = RemoteWriteOptions::new(format!("http://{address}/api/v1/write").parse().unwrap());
    // Short waits keep the tests fast; the policy's shape is unchanged.
    options.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_secs(2),
        multiplier: 2.0,
    };
    // The samples carry a fixed 2023 timestamp (T0); expiry has its own tests.
    options.max_sample_age = Duration::from_secs(100 * 365 * 86_400);
    options
}

fn received(script: &Script) -> Vec<Captured> {
    script.received.lock().unwrap().clone()
}

fn label_pairs(series: &proto::TimeSeries) -> Vec<(&str, &str)> {
    series.labels.iter().map(|label| (label.name.as_str(), label.value.as_str())).collect()
}

/// A decoded series: its labels in wire order, its (timestamp, value) samples.
type SeriesSeen<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>);

const T0: i64 = 1_700_000_000_123;

#[tokio::test]
async fn sends_snappy_protobuf_with_the_remote_write_headers_and_sorted_grouped_series() {
    let (address, script) = start_server(vec![]).await;
    let mut options = options(address);
    options.headers.push(("X-Scope-OrgID".into(), "probes".into()));
    options.auth = Some(Auth::Bearer(Secret::new("tok-very-secret")));
    let sink = Sink::new(options).unwrap();

    sink.push(vec![
        Sample::new("fediprobe_journey_success", [("region", "eu"), ("journey", "home")], 1.0, T0 + 60_000),
        Sample::new("fediprobe_journey_duration_seconds", [("journey", "home"), ("region", "eu")], 0.25, T0),
        Sample::new("fediprobe_journey_success", [("journey", "home"), ("region", "eu")], 0.0, T0),
        Sample::new("fediprobe_journey_success", [("journey", "post"), ("region", "eu")], 1.0, T0 + 1),
    ])
    .await;
    let report = sink.flush(Duration::from_secs(5)).await;
    assert_eq!((report.delivered, report.dropped, report.rejected, report.spooled), (4, 0, 0, 0));

    let requests = received(&script);
    assert_eq!(requests.len(), 1);
    let headers = &requests[0].headers;
    assert_eq!(headers["content-encoding"], "snappy");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["x-prometheus-remote-write-version"], "0.1.0");
    assert_eq!(headers["user-agent"], concat!("fediprobe/", env!("CARGO_PKG_VERSION")));
    assert_eq!(headers["x-scope-orgid"], "probes");
    assert_eq!(headers["authorization"], "Bearer tok-very-secret");

    let request = decode_body(&requests[0].body).expect("snappy block + protobuf WriteRequest");
    assert!(request.metadata.is_empty());
    let series: Vec<SeriesSeen<'_>> = request
        .timeseries
        .iter()
        .map(|series| {
            let samples = series.samples.iter().map(|s| (s.timestamp, s.value)).collect();
            (label_pairs(series), samples)
        })
        .collect();
    assert_eq!(
        series,
        vec![
            (
                vec![("__name__", "fediprobe_journey_duration_seconds"), ("journey", "home"), ("region", "eu")],
                vec![(T0, 0.25)],
            ),
            (
                vec![("__name__", "fediprobe_journey_success"), ("journey", "home"), ("region", "eu")],
                vec![(T0, 0.0), (T0 + 60_000, 1.0)],
            ),
            (
                vec![("__name__", "fediprobe_journey_success"), ("journey", "post"), ("region", "eu")],
                vec![(T0 + 1, 1.0)],
            ),
        ]
    );
    let stats = sink.stats();
    assert_eq!(stats.sent_samples, 4);
    assert_eq!(stats.queue_len, 0);
    assert!(stats.last_success_unix.is_some());
}

#[tokio::test]
async fn sends_basic_auth_and_never_shows_the_password() {
    let (address, script) = start_server(vec![]).await;
    let mut options = options(address);
    options.auth = Some(Auth::Basic { username: "probe".into(), password: Secret::new("hunter2") });
    assert!(!format!("{options:?}").contains("hunter2"));
    let sink = Sink::new(options).unwrap();
    assert!(!format!("{sink:?}").contains("hunter2"));
    sink.push(vec![Sample::new("m", [("a", "b")], 1.0, T0)]).await;
    assert_eq!(sink.flush(Duration::from_secs(5)).await.delivered, 1);
    // base64("probe:hunter2")
    assert_eq!(received(&script)[0].headers["authorization"], "Basic cHJvYmU6aHVudGVyMg==");
}

#[tokio::test]
async fn does_not_retry_a_400_and_counts_the_batch_as_rejected() {
    let (address, script) = start_server(vec![(400, None, "bad label set\nsecond line")]).await;
    let sink = Sink::new(options(address)).unwrap();
    sink.push(vec![Sample::new("m", [("a", "1")], 1.0, T0), Sample::new("m", [("a", "2")], 1.0, T0)]).await;

    let report = sink.flush(Duration::from_secs(5)).await;

    assert_eq!(received(&script).len(), 1, "a 400 must not be retried");
    assert_eq!((report.delivered, report.rejected, report.dropped), (0, 2, 0));
    let stats = sink.stats();
    assert_eq!((stats.rejected_samples, stats.retried_requests, stats.sent_samples), (2, 0, 0));
    // The batch is gone for good: a second flush sends nothing.
    sink.flush(Duration::from_secs(1)).await;
    assert_eq!(received(&script).len(), 1);
}

#[tokio::test]
async fn retries_503_until_it_succeeds() {
    let (address, script) = start_server(vec![(503, None, "busy"), (503, None, "busy")]).await;
    let sink = Sink::new(options(address)).unwrap();
    sink.push(vec![Sample::new("m", [("a", "1")], 1.0, T0)]).await;

    let report = sink.flush(Duration::from_secs(10)).await;

    assert_eq!((report.delivered, report.rejected, report.dropped), (1, 0, 0));
    let requests = received(&script);
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|request| request.body == requests[0].body), "retries resend the same body");
    assert_eq!(sink.stats().retried_requests, 2);
}

#[tokio::test]
async fn retries_429_after_the_retry_after_delay() {
    let (address, script) = start_server(vec![(429, Some("1"), "slow down")]).await;
    let sink = Sink::new(options(address)).unwrap();
    sink.push(vec![Sample::new("m", [("a", "1")], 1.0, T0)]).await;

    let report = sink.flush(Duration::from_secs(10)).await;

    assert_eq!(report.delivered, 1);
    let requests = received(&script);
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= Duration::from_millis(950), "waited only {waited:?} despite Retry-After: 1");
}

#[tokio::test]
async fn splits_into_batches_of_max_batch_samples() {
    let (address, script) = start_server(vec![]).await;
    let mut options = options(address);
    options.max_batch_samples = 4;
    let sink = Sink::new(options).unwrap();
    let samples: Vec<Sample> = (0..10).map(|i| Sample::new("m", [("i", i.to_string())], 1.0, T0 + i)).collect();
    sink.push(samples).await;

    assert_eq!(sink.flush(Duration::from_secs(5)).await.delivered, 10);

    let sizes: Vec<usize> =
        received(&script).iter().map(|request| decode_body(&request.body).unwrap().timeseries.len()).collect();
    assert_eq!(sizes, [4, 4, 2]);
}

#[tokio::test]
async fn refuses_invalid_samples_at_push_and_counts_them() {
    let (address, script) = start_server(vec![]).await;
    let sink = Sink::new(options(address)).unwrap();
    let nameless = Sample { labels: vec![("a".into(), "1".into())], value: 1.0, timestamp_ms: T0 };
    sink.push(vec![nameless, Sample::new("m", [("a", "1")], 1.0, T0)]).await;

    let report = sink.flush(Duration::from_secs(5)).await;

    assert_eq!(report.delivered, 1);
    assert_eq!(sink.stats().rejected_samples, 1);
    assert_eq!(received(&script).len(), 1);
}

#[tokio::test]
async fn gives_up_at_the_deadline_and_counts_drops_without_a_spool() {
    let (address, script) = start_server(vec![(500, None, ""); 1000]).await;
    let sink = Sink::new(options(address)).unwrap();
    sink.push(vec![Sample::new("m", [("a", "1")], 1.0, T0)]).await;

    let started = Instant::now();
    let report = sink.flush(Duration::from_millis(500)).await;

    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!((report.delivered, report.dropped, report.spooled), (0, 1, 0));
    assert!(!report.nothing_dropped());
    assert!(received(&script).len() >= 2, "5xx is retried until the deadline");
}

#[tokio::test]
async fn background_task_pushes_every_interval_and_flushes_on_shutdown() {
    let (address, script) = start_server(vec![]).await;
    let sink = Sink::new(options(address)).unwrap();
    let task = sink.spawn_background(Duration::from_millis(50));

    sink.push(vec![Sample::new("m", [("a", "1")], 1.0, T0)]).await;
    let started = Instant::now();
    while received(&script).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "background task never pushed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sink.push(vec![Sample::new("m", [("a", "1")], 2.0, T0 + 1)]).await;
    let report = task.shutdown(Duration::from_secs(5)).await;

    assert_eq!(sink.stats().sent_samples, 2);
    assert_eq!(report.dropped, 0);
    assert_eq!(sink.stats().queue_len, 0);
}

#[tokio::test]
async fn cancelling_a_flush_puts_undelivered_samples_back_in_the_queue() {
    let (address, script) = start_server(vec![(503, None, ""); 1000]).await;
    let sink = Sink::new(options(address)).unwrap();
    sink.push(vec![Sample::new("m", [("a", "1")], 1.0, T0)]).await;

    let cancelled = tokio::time::timeout(Duration::from_millis(200), sink.flush(Duration::from_secs(60))).await;

    assert!(cancelled.is_err(), "the flush was still retrying");
    assert!(!received(&script).is_empty());
    let stats = sink.stats();
    assert_eq!((stats.queue_len, stats.dropped_samples), (1, 0));
}

#[tokio::test]
async fn a_full_spool_drops_its_oldest_files_and_counts_them() {
    // Nothing listens on this port: every push is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let spool_dir = tempfile::tempdir().unwrap();
    let mut options = options(SocketAddr::from(([127, 0, 0, 1], port)));
    options.spool_dir = Some(spool_dir.path().to_owned());
    let batch = |first: i64| -> Vec<Sample> {
        (0..10).map(|i| Sample::new("m", [("i", i.to_string())], 1.0, first + i)).collect()
    };
    let one_file_bytes = fediprobe::sink::remote_write::spool::encode_file(&batch(T0)).len() as u64;
    options.spool_max_bytes = one_file_bytes + one_file_bytes / 2;
    let sink = Sink::new(options).unwrap();

    sink.push(batch(T0)).await;
    let first = sink.flush(Duration::from_millis(200)).await;
    assert_eq!((first.spooled, first.dropped), (10, 0));
    sink.push(batch(T0 + 1000)).await;
    let second = sink.flush(Duration::from_millis(200)).await;

    assert_eq!((second.delivered, second.spooled, second.dropped), (0, 10, 10));
    assert!(!second.nothing_dropped());
    let stats = sink.stats();
    assert_eq!((stats.spooled_samples, stats.dropped_samples), (20, 10));
    assert_eq!(stats.spool_bytes, one_file_bytes);
}
