//! The *Federation* dashboard: how long a post takes from instance A to a
//! follower's feed on instance B, per direction; how often it never arrives; and
//! whether arrival was seen on the streaming API or by polling.
//!
//! Reads `fediprobe_federation_delay_seconds{source,destination,method}` (one
//! sample per delivered run whose delay the probe could bound; `method` is
//! `stream` or `poll`), `fediprobe_federation_delay_unbounded` (one per delivered
//! run: 1 when it has no figure), `fediprobe_stream_failed{step,reason}` and the
//! runs whose outcome reason is `not_delivered`. Its second row reads
//! `fediprobe_notification_delay_seconds` (the same labels): how long a mention
//! from one instance takes to be notified on the other.

use super::build::{self, Board, Style, series};
use super::journey::SPANS;
use super::model::Dashboard;
use crate::generate::naming::Naming;
use crate::metrics;

pub const UID: &str = "fediprobe-federation";

/// The per-run federation delay; `source`, `destination` and `method` labels.
pub const FEDERATION_DELAY: &str = "fediprobe_federation_delay_seconds";

/// p50, p95 and p99 of a per-run delay series over the span, per direction.
fn percentiles_per_direction(metric: &str, sel: &str) -> Vec<super::model::Target> {
    [("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")]
        .into_iter()
        .map(|(q, name)| {
            series(
                format!("max by (source, destination) (quantile_over_time({q}, {metric}{sel}[$span]))"),
                &format!("{name} {{{{source}}}} → {{{{destination}}}}"),
            )
        })
        .collect()
}

pub fn dashboard(naming: &Naming) -> Dashboard {
    let selector = |extra: &str| build::selector(naming, extra);
    let sel = selector("");
    let mut board = Board::new();

    board.row("Delay per direction");
    let mut heat = build::heatmap(
        "Delay, every direction",
        "Each delivered run's delay (POST response at the probe to arrival at the probe, on its monotonic clock), \
         bucketed by Grafana on a log scale.",
        "s",
        vec![series(format!("max_over_time({FEDERATION_DELAY}{sel}[$__interval])"), "{{source}} → {{destination}}")],
    );
    heat.interval = Some("1m".to_owned());
    board.add(heat, 12, 9);
    let percentiles = percentiles_per_direction(FEDERATION_DELAY, &sel);
    board.add(
        build::timeseries(
            "Delay percentiles per direction",
            "p50, p95 and p99 of the delay over the span, per direction (the worst region and account).",
            "s",
            Style::Lines,
            None,
            percentiles,
        ),
        12,
        9,
    );

    board.row("Notification delay per direction");
    let notification_percentiles = percentiles_per_direction(metrics::NOTIFICATION_DELAY, &sel);
    board.add(
        build::timeseries(
            "Notification delay percentiles per direction",
            "A mention posted on the source instance, until the `notification` event for it is read from the \
             mentioned account's stream on the destination (or found by polling its notifications): federation \
             plus the destination's notification work. p50, p95 and p99 over the span (the worst region and account).",
            "s",
            Style::Lines,
            None,
            notification_percentiles,
        ),
        24,
        8,
    );

    board.row("Misses and method");
    let misses = selector("reason=\"not_delivered\"");
    board.add(
        build::timeseries(
            "Posts that never arrived",
            "Runs that failed with `not_delivered`: the post did not reach the other instance within the \
             journey's deadline, per span.",
            "short",
            Style::Bars,
            None,
            // `or 0 × runs`: a healthy span shows 0 for every journey and region that ran, not "No data".
            vec![series(
                format!(
                    "sum by (journey, region) (count_over_time({out}{misses}[$span]))\nor\n0 * sum by (journey, region) \
                     (count_over_time({out}{valid}[$span]))",
                    out = metrics::JOURNEY_OUTCOME,
                    valid = selector("outcome!=\"probe_error\""),
                ),
                "{{journey}} {{region}}",
            )],
        ),
        8,
        8,
    );
    board.add(
        build::timeseries(
            "Miss ratio",
            "The share of measured runs (success or failure) that ended `not_delivered`, per journey.",
            "percentunit",
            Style::Lines,
            None,
            vec![series(
                format!(
                    "(\n  sum by (journey) (count_over_time({out}{misses}[$span]))\n  or\n  0 * sum by (journey) \
                     (count_over_time({out}{valid}[$span]))\n)\n/\nsum by (journey) (count_over_time({out}{valid}[$span]))",
                    out = metrics::JOURNEY_OUTCOME,
                    valid = selector("outcome!=\"probe_error\""),
                ),
                "{{journey}}",
            )],
        ),
        8,
        8,
    );
    board.add(
        build::timeseries(
            "Stream vs poll",
            "How arrivals were seen: on the destination's streaming API (`stream`), or by the polling fallback \
             (`poll`). A growing poll share means streaming is down or late.",
            "short",
            Style::Percent,
            None,
            vec![series(
                format!("sum by (method) (count_over_time({}{sel}[$span]))", metrics::FEDERATION_DELAY_UNBOUNDED),
                "{{method}}",
            )],
        ),
        8,
        8,
    );

    board.row("Streaming API and figures");
    board.add(
        build::timeseries(
            "Streaming API failures, by reason",
            "Runs whose stream could not be used (refused, a 5xx, closed, silent, a 401 while the REST API \
             accepted the same token), per span and reason. The fallback poll took over where the journey has one.",
            "short",
            Style::Bars,
            None,
            // `or 0 × deliveries`: a healthy span shows 0 for every federation
            // journey that delivered, not "No data".
            vec![series(
                format!(
                    "sum by (journey, reason) (count_over_time({}{sel}[$span]))\nor\n0 * sum by (journey) \
                     (count_over_time({}{sel}[$span]))",
                    metrics::STREAM_FAILED,
                    metrics::FEDERATION_DELAY_UNBOUNDED,
                ),
                "{{journey}} {{reason}}",
            )],
        ),
        12,
        8,
    );
    board.add(
        build::timeseries(
            "Deliveries without a delay figure",
            "The share of delivered posts whose arrival the probe could not bound within one fallback interval \
             (a poll that could not keep its schedule found it): they have no delay figure, and a delay verdict \
             only when the bound alone decides it.",
            "percentunit",
            Style::Lines,
            None,
            vec![series(
                format!(
                    "sum by (source, destination) (sum_over_time({u}{sel}[$span]))\n/\nsum by (source, destination) \
                     (count_over_time({u}{sel}[$span]))",
                    u = metrics::FEDERATION_DELAY_UNBOUNDED
                ),
                "{{source}} → {{destination}}",
            )],
        ),
        12,
        8,
    );

    build::dashboard(
        UID,
        "fediprobe / Federation",
        "Federation and notification delay per direction, delivery misses, stream vs poll. Generated by `fediprobe dashboards`; do \
         not edit, regenerate.",
        "now-24h",
        {
            let mut vars = build::standard_variables(naming, FEDERATION_DELAY, true, false);
            vars.push(build::custom_variable("span", "Span", &SPANS, "1h"));
            vars
        },
        board,
    )
}
