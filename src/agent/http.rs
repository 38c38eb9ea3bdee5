//! The agent's own HTTP endpoints: `/healthz` (alive), `/readyz` (config loaded
//! and schedules running, until shutdown begins: see the agent's module doc for
//! why a backend outage does not change it), `/metrics` (cumulative run metrics,
//! the scheduler's and the sink's own health, the delivery backlog).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::{Shared, lock};
use crate::scheduler::JourneyStatus;

pub(crate) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the health and metrics server stopped");
    }
}

/// The per-journey schedule series, read from the scheduler's statuses while
/// `/metrics` is encoded (a `prometheus-client` collector): nothing is stored
/// per journey between scrapes, and a journey a reload removed has no series
/// left. Setting them into families before each scrape was 4,000 label sets
/// allocated, hashed and looked up for 1,000 journeys, most of a scrape's CPU.
#[derive(Debug)]
pub(crate) struct ScheduleSeries(std::sync::Weak<Shared>);

impl ScheduleSeries {
    pub(crate) fn of(shared: &Arc<Shared>) -> Self {
        ScheduleSeries(Arc::downgrade(shared))
    }
}

/// A schedule family: name, help, its value for a journey, its type.
type ScheduleFamily = (&'static str, &'static str, fn(&JourneyStatus) -> f64, MetricType);

impl Collector for ScheduleSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(shared) = self.0.upgrade() else { return Ok(()) };
        // The exposition is locked, then the generation; nothing takes them the
        // other way round.
        let generation = lock(&shared.generation);
        let statuses = generation.schedules.statuses();
        let families: [ScheduleFamily; 4] = [
            (
                "fediprobe_schedule_last_run_timestamp_seconds",
                "When the journey's last run started (Unix seconds).",
                |s| s.last_run_unix.load(Ordering::Relaxed) as f64,
                MetricType::Gauge,
            ),
            (
                "fediprobe_schedule_next_run_timestamp_seconds",
                "When the journey's next slot is (Unix seconds).",
                |s| s.next_run_unix.load(Ordering::Relaxed) as f64,
                MetricType::Gauge,
            ),
            (
                // `_total` is the encoder's, as for every counter.
                "fediprobe_schedule_skipped_slots",
                "Slots skipped: the previous run was still going or waiting to start, or shutdown began before the \
                 run could start.",
                |s| s.skipped_slots.load(Ordering::Relaxed) as f64,
                MetricType::Counter,
            ),
            (
                "fediprobe_schedule_offset_seconds",
                "The stable offset added to every slot of the journey.",
                |s| s.offset_ms.load(Ordering::Relaxed) as f64 / 1000.0,
                MetricType::Gauge,
            ),
        ];
        for (name, help, value, kind) in families {
            let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
            for status in statuses {
                // A copy run as another account than the primary one is told apart by
                // `account`; the primary's series keep the label set they always had.
                let account = status.account.as_deref();
                let both = [("journey", status.name.as_str()), ("account", account.unwrap_or_default())];
                let labels = &both[..if account.is_some() { 2 } else { 1 }];
                let family = metric.encode_family(&labels)?;
                let v = value(status);
                match kind {
                    MetricType::Counter => ConstCounter::new(v).encode(family)?,
                    _ => ConstGauge::new(v).encode(family)?,
                }
            }
        }
        Ok(())
    }
}

/// Ready from the moment the endpoints answer (the config loaded, the schedules
/// started) until shutdown begins. Nothing else moves it: see the module doc.
async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.stopping.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down\n");
    }
    (StatusCode::OK, "ready\n")
}

/// Updating and encoding the metrics is synchronous work proportional to the
/// journeys (a few milliseconds for a thousand), done on the agent's own thread:
/// runs have theirs (`RunsThread`), so a scrape holds up no run's clock. (It was
/// on the blocking pool, whose idle threads live 10 s: every scrape 15 s apart
/// started a thread and faulted in its stack and heap.)
async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let body = encode_metrics(&shared);
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}

fn encode_metrics(shared: &Shared) -> String {
    let e = &shared.exposition;
    // The per-journey schedule series are [`ScheduleSeries`], read while encoding
    // (which locks the exposition, then the generation: never the other way round).
    let (journeys, reloads_ok, reloads_failed) = {
        let generation = lock(&shared.generation);
        (generation.journeys, generation.reloads_ok, generation.reloads_failed)
    };
    e.set_gauge("fediprobe_journeys", "Journeys in the running config.", &[], journeys as f64);
    e.set_counter("fediprobe_config_reloads_total", "Successful reloads (SIGHUP).", &[], reloads_ok as f64);
    e.set_counter(
        "fediprobe_config_reload_failures_total",
        "Reloads refused because the new config was invalid.",
        &[],
        reloads_failed as f64,
    );
    e.set_gauge(
        "fediprobe_runs_in_flight",
        "Runs going now, all journeys (not those waiting for a place under max_concurrent_runs).",
        &[],
        shared.runs.in_flight() as f64,
    );
    if let Some(sink) = &shared.sink {
        let s = sink.stats();
        e.set_counter(
            "fediprobe_remote_write_sent_samples_total",
            "Samples the receiver accepted.",
            &[],
            s.sent_samples as f64,
        );
        e.set_counter(
            "fediprobe_remote_write_retried_requests_total",
            "Push requests retried.",
            &[],
            s.retried_requests as f64,
        );
        e.set_counter(
            "fediprobe_remote_write_spooled_samples_total",
            "Samples written to the spool.",
            &[],
            s.spooled_samples as f64,
        );
        e.set_counter(
            "fediprobe_remote_write_dropped_samples_total",
            "Samples lost: no room in memory nor in the spool, evicted from a full spool, or expired.",
            &[],
            s.dropped_samples as f64,
        );
        e.set_counter(
            "fediprobe_remote_write_expired_samples_total",
            "Of the samples lost, those older than remote_write.max_sample_age.",
            &[],
            s.expired_samples as f64,
        );
        e.set_counter(
            "fediprobe_remote_write_rejected_samples_total",
            "Samples refused for good.",
            &[],
            s.rejected_samples as f64,
        );
        e.set_gauge(
            "fediprobe_remote_write_queue_samples",
            "Samples waiting in memory, including those a push holds in flight.",
            &[],
            s.queue_len as f64,
        );
        e.set_gauge("fediprobe_remote_write_spool_bytes", "Bytes in the spool.", &[], s.spool_bytes as f64);
        e.set_gauge("fediprobe_remote_write_spool_samples", "Samples in the spool.", &[], s.spool_samples as f64);
        let now_ms = shared.clock.now().timestamp_millis();
        e.set_gauge(
            "fediprobe_remote_write_oldest_undelivered_age_seconds",
            "Age of the oldest sample not yet delivered (in memory, in flight or in the spool); 0 when none waits.",
            &[],
            s.oldest_undelivered_ms.map_or(0.0, |oldest| (now_ms - oldest).max(0) as f64 / 1000.0),
        );
        e.set_gauge(
            "fediprobe_remote_write_last_success_timestamp_seconds",
            "When the receiver last accepted a push (Unix seconds; 0 never).",
            &[],
            s.last_success_unix.unwrap_or(0) as f64,
        );
    }
    e.encode()
}
