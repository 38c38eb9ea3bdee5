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

use super::{Shared, lock};

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

/// Ready from the moment the endpoints answer (the config loaded, the schedules
/// started) until shutdown begins. Nothing else moves it: see the module doc.
async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.stopping.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down\n");
    }
    (StatusCode::OK, "ready\n")
}

/// Updating and encoding the metrics is synchronous work proportional to the
/// journeys; it runs on the blocking pool, so that a scrape never holds a
/// runtime worker that a run's next wake-up (and so its clock) waits for.
async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let body = match tokio::task::spawn_blocking(move || encode_metrics(&shared)).await {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "encoding /metrics failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], String::new());
        }
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}

fn encode_metrics(shared: &Shared) -> String {
    let e = &shared.exposition;
    {
        let generation = lock(&shared.generation);
        for status in generation.schedules.statuses() {
            // A copy run as another account than the primary one is told apart by
            // `account`; the primary's series keep the label set they always had.
            let mut labels = vec![("journey", status.name.as_str())];
            if let Some(account) = &status.account {
                labels.push(("account", account.as_str()));
            }
            let labels = labels.as_slice();
            e.set_gauge(
                "fediprobe_schedule_last_run_timestamp_seconds",
                "When the journey's last run started (Unix seconds).",
                labels,
                status.last_run_unix.load(Ordering::Relaxed) as f64,
            );
            e.set_gauge(
                "fediprobe_schedule_next_run_timestamp_seconds",
                "When the journey's next slot is (Unix seconds).",
                labels,
                status.next_run_unix.load(Ordering::Relaxed) as f64,
            );
            e.set_counter(
                "fediprobe_schedule_skipped_slots_total",
                "Slots skipped: the journey's previous run was still going or waiting to start, or shutdown began \
                 before the run could start.",
                labels,
                status.skipped_slots.load(Ordering::Relaxed) as f64,
            );
            e.set_gauge(
                "fediprobe_schedule_offset_seconds",
                "The stable offset added to every slot of the journey.",
                labels,
                status.offset_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            );
        }
        e.set_gauge("fediprobe_journeys", "Journeys in the running config.", &[], generation.journeys as f64);
        e.set_counter(
            "fediprobe_config_reloads_total",
            "Successful reloads (SIGHUP).",
            &[],
            generation.reloads_ok as f64,
        );
        e.set_counter(
            "fediprobe_config_reload_failures_total",
            "Reloads refused because the new config was invalid.",
            &[],
            generation.reloads_failed as f64,
        );
    }
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
