//! The remote-write sink against a real VictoriaMetrics: exact values, labels and
//! millisecond timestamps arrive; an outage loses nothing and duplicates nothing;
//! damaged spool files do not block the rest.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fediprobe::sink::Sample;
use fediprobe::sink::remote_write::spool::{self, Spool, encode_file};
use fediprobe::sink::remote_write::{RemoteWriteOptions, RetryPolicy, Sink};
use support::victoria::{ExportedSeries, VictoriaMetrics, free_port};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn options(url: url::Url, spool_dir: Option<&Path>) -> RemoteWriteOptions {
    let mut options = RemoteWriteOptions::new(url);
    options.spool_dir = spool_dir.map(Path::to_owned);
    options.timeout = Duration::from_secs(2);
    options.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        multiplier: 2.0,
    };
    options
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A run's samples: `runs` runs of one journey, one sample per run per series,
/// a minute apart, ending ten minutes ago, tagged with `batch`.
fn journey_samples(batch: &str, first_ms: i64, runs: i64) -> Vec<Sample> {
    (0..runs)
        .flat_map(|run| {
            let at = first_ms + run * 60_000 + 7; // odd milliseconds survive exactly
            let common =
                [("batch", batch.to_owned()), ("journey", "home".to_owned()), ("region", "eu-west".to_owned())];
            [
                Sample::new("fediprobe_test_success", common.clone(), (run % 2) as f64, at),
                Sample::new("fediprobe_test_duration_seconds", common, 0.125 + run as f64, at),
            ]
        })
        .collect()
}

/// Every (labels, timestamp, value) in `exported`, one entry per stored sample.
fn flatten(exported: &[ExportedSeries]) -> Vec<(BTreeMap<String, String>, i64, f64)> {
    let mut all: Vec<_> =
        exported.iter().flat_map(|(labels, samples)| samples.iter().map(|(t, v)| (labels.clone(), *t, *v))).collect();
    all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    all
}

fn expected(samples: &[Sample]) -> Vec<(BTreeMap<String, String>, i64, f64)> {
    let mut all: Vec<_> = samples
        .iter()
        .map(|sample| {
            let labels = sample.labels.iter().cloned().collect::<BTreeMap<_, _>>();
            (labels, sample.timestamp_ms, sample.value)
        })
        .collect();
    all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    all
}

#[tokio::test]
async fn delivers_exact_values_labels_and_millisecond_timestamps() {
    let vm = VictoriaMetrics::start();
    let sink = Sink::new(options(vm.write_url(), None)).unwrap();
    let t = now_ms() - 600_000;
    sink.push(vec![
        Sample::new("fediprobe_exact", [("region", "eu-west"), ("journey", "home")], 0.123, t + 1),
        Sample::new("fediprobe_exact", [("journey", "home"), ("region", "eu-west")], 42.0, t + 2),
        Sample::new("fediprobe_exact", [("journey", "post"), ("region", "eu-west")], 1.5, t + 999),
    ])
    .await;

    let report = sink.flush(Duration::from_secs(10)).await;
    assert_eq!((report.delivered, report.dropped, report.rejected), (3, 0, 0));

    let exported = vm.export_at_least("fediprobe_exact", 3);
    assert_eq!(
        exported,
        vec![
            (
                labels(&[("__name__", "fediprobe_exact"), ("journey", "home"), ("region", "eu-west")]),
                vec![(t + 1, 0.123), (t + 2, 42.0)],
            ),
            (
                labels(&[("__name__", "fediprobe_exact"), ("journey", "post"), ("region", "eu-west")]),
                vec![(t + 999, 1.5)],
            ),
        ]
    );
}

#[tokio::test]
async fn an_outage_spools_everything_and_a_later_run_delivers_each_sample_exactly_once() {
    let spool_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url: url::Url = format!("http://127.0.0.1:{port}/api/v1/write").parse().unwrap();
    let first = now_ms() - 3_600_000;
    let batches = [
        journey_samples("a", first, 5),
        journey_samples("b", first + 600_000, 5),
        journey_samples("c", first + 1_200_000, 5),
    ];

    // First process (a CronJob run): the receiver is down (connection refused).
    // Batch "a" is flushed alone; "b" overflows the tiny queue and spills at push.
    {
        let mut opts = options(url.clone(), Some(spool_dir.path()));
        opts.queue_capacity_samples = 4;
        let sink = support::spool::sink(opts);
        sink.push(batches[0].clone()).await;
        let report = sink.flush(Duration::from_millis(300)).await;
        assert_eq!((report.delivered, report.dropped, report.spooled), (0, 0, 10));
        sink.push(batches[1].clone()).await;
        assert!(sink.stats().queue_len <= 4);
        let report = sink.flush(Duration::from_millis(300)).await;
        assert_eq!((report.delivered, report.dropped, report.spooled), (0, 0, 20));
        assert!(report.nothing_dropped());
        let stats = sink.stats();
        assert_eq!((stats.spooled_samples, stats.dropped_samples, stats.sent_samples), (20, 0, 0));
        assert!(stats.spool_bytes > 0);
    }

    // Second process: the receiver comes back on the same address.
    let vm = VictoriaMetrics::start_on(port);
    let sink = support::spool::sink(options(url, Some(spool_dir.path())));
    sink.push(batches[2].clone()).await;
    let report = sink.flush(Duration::from_secs(10)).await;
    assert_eq!((report.delivered, report.dropped, report.spooled, report.rejected), (30, 0, 0, 0));
    assert_eq!(sink.stats().spool_bytes, 0);
    let left: Vec<_> = std::fs::read_dir(spool_dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name != spool::LOCK_FILE)
        .collect();
    assert!(left.is_empty(), "delivered spool files are deleted: {left:?}");

    // A further flush must not send anything again.
    assert_eq!(sink.flush(Duration::from_secs(2)).await.delivered, 0);

    let all: Vec<Sample> = batches.concat();
    assert_eq!(flatten(&vm.export_at_least("fediprobe_test_.*", all.len())), expected(&all));
}

#[tokio::test]
async fn damaged_spool_files_do_not_stop_delivery_of_the_rest() {
    let spool_dir = tempfile::tempdir().unwrap();
    let first = now_ms() - 1_800_000;
    let good_before = journey_samples("good-1", first, 3);
    let truncated = journey_samples("truncated", first + 300_000, 3);
    let good_after = journey_samples("good-2", first + 600_000, 3);

    // Oldest first: garbage, a good file, a truncated file, another good file.
    std::fs::write(spool_dir.path().join("00000000000000000001.spool"), b"\x00garbage, not a spool file").unwrap();
    {
        let mut spool = support::spool::open(spool_dir.path(), u64::MAX);
        spool.write(&good_before).unwrap();
    }
    let truncated_bytes = encode_file(&truncated);
    // Cut into the last record: the first five samples survive.
    let truncated_path = spool_dir.path().join(format!("{:020}.spool", u64::MAX / 2));
    std::fs::write(&truncated_path, &truncated_bytes[..truncated_bytes.len() - 5]).unwrap();
    {
        let mut spool = support::spool::open(spool_dir.path(), u64::MAX);
        // Named after the truncated file, so written after it.
        spool.write(&good_after).unwrap();
    }

    let vm = VictoriaMetrics::start();
    let sink = support::spool::sink(options(vm.write_url(), Some(spool_dir.path())));
    let report = sink.flush(Duration::from_secs(10)).await;

    let survivors = &truncated[..truncated.len() - 1];
    assert_eq!(report.delivered as usize, good_before.len() + survivors.len() + good_after.len());
    assert_eq!((report.dropped, report.spooled), (0, 0));
    let expected_samples: Vec<Sample> = [good_before.as_slice(), survivors, good_after.as_slice()].concat();
    assert_eq!(flatten(&vm.export_at_least("fediprobe_test_.*", expected_samples.len())), expected(&expected_samples));

    let mut left: Vec<String> = std::fs::read_dir(spool_dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != spool::LOCK_FILE)
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec!["00000000000000000001.spool.corrupt".to_owned(), format!("{:020}.spool.corrupt", u64::MAX / 2),]
    );
}

/// Samples of one test series, `count` of them a second apart, ending `ago_ms` ago.
fn series(name: &str, count: i64, ago_ms: i64) -> Vec<Sample> {
    let last = now_ms() - ago_ms;
    (0..count).map(|i| Sample::new(name, [("i", i.to_string())], i as f64, last - (count - 1 - i) * 1000)).collect()
}

/// Waits (up to 20 s, polling) until `done` holds; panics naming `what` otherwise.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within 20 s: {what}");
}

/// Pushes five samples through a receiver that answers the first push after the
/// sink's timeout, into a VictoriaMetrics started with `flags`; waits until
/// `count_over_time` of each series is `expected` (panics after 15 s otherwise)
/// and returns how many pushes reached VictoriaMetrics.
async fn push_answered_late(flags: &[&str], expected: f64) -> usize {
    let vm = VictoriaMetrics::start_with(free_port(), flags);
    let backend = support::slow_backend::SlowBackend::start(vm.write_url(), 1, Duration::from_millis(1500)).await;
    let mut opts = options(backend.write_url(), None);
    opts.timeout = Duration::from_millis(300);
    let sink = support::spool::sink(opts);
    let samples = series("fediprobe_test_late", 5, 600_000);
    sink.push(samples.clone()).await;
    let report = sink.flush(Duration::from_secs(10)).await;
    assert_eq!((report.delivered, report.dropped), (5, 0), "the resend is accepted");
    assert_eq!(backend.forwarded(), 2, "the batch went out twice, and both reached VictoriaMetrics");
    let now = now_ms() / 1000;
    for i in 0..5 {
        vm.wait_for_value(&format!("count_over_time(fediprobe_test_late{{i=\"{i}\"}}[1h])"), now, expected);
    }
    backend.forwarded()
}

#[tokio::test]
async fn a_push_answered_after_its_timeout_is_sent_again_and_dedup_stores_each_run_once() {
    // Without deduplication the resent batch is stored twice: every run counts twice.
    assert_eq!(push_answered_late(&[], 2.0).await, 2);
    // With the flag the README and deploy/monitoring set, each run counts once.
    assert_eq!(push_answered_late(&["-dedup.minScrapeInterval=1ms"], 1.0).await, 2);
}

#[tokio::test]
async fn once_a_round_fails_what_it_held_is_on_disk_before_the_next_round() {
    let spool_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url: url::Url = format!("http://127.0.0.1:{port}/api/v1/write").parse().unwrap();
    let sink = support::spool::sink(options(url, Some(spool_dir.path())));
    let task = sink.spawn_background(Duration::from_millis(300));
    let first = series("fediprobe_test_ahead", 10, 60_000);
    sink.push(first.clone()).await;
    // The receiver is down: the round that took them writes them ahead at its first failure.
    until("the first round's samples are in the spool", || Spool::peek(spool_dir.path()).len() == 10).await;
    let stats = sink.stats();
    assert_eq!((stats.queue_len, stats.spool_samples, stats.dropped_samples), (0, 10, 0));
    assert!(stats.oldest_undelivered_ms == Some(first[0].timestamp_ms), "{stats:?}");
    // While it stays down, each round writes what it took before sending anything.
    let second = series("fediprobe_test_ahead_2", 3, 30_000);
    sink.push(second.clone()).await;
    until("the next round's samples are in the spool", || Spool::peek(spool_dir.path()).len() == 13).await;
    assert_eq!(sink.stats().queue_len, 0);

    let vm = VictoriaMetrics::start_on(port);
    until("the spool is delivered", || sink.stats().spool_samples == 0).await;
    let report = task.shutdown(Duration::from_secs(5)).await;
    assert_eq!((report.dropped, report.spooled), (0, 0));
    let all = [first, second].concat();
    assert_eq!(flatten(&vm.export_at_least("fediprobe_test_ahead.*", all.len())), expected(&all));
    assert_eq!(sink.stats().sent_samples, 13, "each sample sent once");
}

#[tokio::test]
async fn an_unwritable_spool_keeps_what_fits_in_memory_and_delivers_it_when_the_backend_returns() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the spool directory should be: every spool write fails.
    let spool_path = dir.path().join("spool");
    std::fs::write(&spool_path, b"not a directory").unwrap();
    let port = free_port();
    let url: url::Url = format!("http://127.0.0.1:{port}/api/v1/write").parse().unwrap();
    let mut opts = options(url, Some(&spool_path));
    opts.queue_capacity_samples = 5;
    let sink = support::spool::sink(opts);
    let task = sink.spawn_background(Duration::from_millis(300));
    let samples = series("fediprobe_test_overflow", 12, 60_000);
    sink.push(samples.clone()).await;
    // Only what does not fit in memory is lost: the seven oldest.
    let stats = sink.stats();
    assert_eq!((stats.queue_len, stats.dropped_samples), (5, 7));
    until("a round has failed", || sink.stats().retried_requests > 0).await;
    assert_eq!((sink.stats().queue_len, sink.stats().dropped_samples), (5, 7), "failed rounds lose nothing more");

    let vm = VictoriaMetrics::start_on(port);
    until("the five kept in memory are delivered", || sink.stats().sent_samples == 5).await;
    let report = task.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.dropped, 0);
    assert_eq!(flatten(&vm.export_at_least("fediprobe_test_overflow", 5)), expected(&samples[7..]));
    assert_eq!(sink.stats().dropped_samples, 7);
}

#[tokio::test]
async fn samples_older_than_max_sample_age_are_dropped_and_counted_never_sent() {
    let spool_dir = tempfile::tempdir().unwrap();
    let hour = 3_600_000;
    // A spool file from an outage three hours ago, and one mixing old and recent samples.
    {
        let mut spool = support::spool::open(spool_dir.path(), u64::MAX);
        spool.write(&series("fediprobe_test_age_spooled_old", 3, 3 * hour)).unwrap();
        let mut mixed = series("fediprobe_test_age_spooled_old", 2, 2 * hour);
        mixed.extend(series("fediprobe_test_age_spooled_recent", 2, 600_000));
        spool.write(&mixed).unwrap();
    }
    let vm = VictoriaMetrics::start();
    let mut opts = options(vm.write_url(), Some(spool_dir.path()));
    opts.max_sample_age = Duration::from_secs(3600);
    let sink = support::spool::sink(opts);
    let mut queued = series("fediprobe_test_age_queued_old", 1, 90 * 60_000);
    queued.extend(series("fediprobe_test_age_queued_recent", 4, 60_000));
    sink.push(queued.clone()).await;
    let report = sink.flush(Duration::from_secs(10)).await;
    assert_eq!((report.delivered, report.expired, report.dropped), (6, 6, 6));
    assert_eq!(sink.stats().expired_samples, 6);
    let recent: Vec<Sample> = [series("fediprobe_test_age_spooled_recent", 2, 0), queued[1..].to_vec()].concat();
    let stored = vm.export_at_least("fediprobe_test_age_.*", recent.len());
    assert!(stored.iter().all(|(labels, _)| labels["__name__"].ends_with("_recent")), "{stored:?}");
    assert_eq!(stored.iter().map(|(_, s)| s.len()).sum::<usize>(), 6);
}
