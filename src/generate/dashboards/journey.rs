//! The *Journey detail* dashboard: one journey (the `journey` variable) per
//! region over time: its SLIs, latency percentiles, the success ratio and
//! latency per probe account, where a run's time goes (steps, HTTP phases), and
//! what went wrong (outcome reasons, recent failures).
//!
//! Per-run samples are gauges with one sample per run, so percentiles are
//! `quantile_over_time` over the `span` variable per series (region × account),
//! and the worst series of a region is shown. Latency percentiles are over
//! successful runs only (`fediprobe_journey_latency_seconds`).

use super::build::{self, Board, Style, column, instant, region_matchers, series};
use super::model::{Dashboard, Override, Thresholds};
use crate::generate::naming::{self, Naming};
use crate::generate::slo::{SHORT_WINDOWS, Sli};
use crate::metrics;

pub const UID: &str = "fediprobe-journey";

/// The HTTP phases of a request, one sample per run, step and phase. Named in
/// `DESIGN.md`; panels stay empty until the runner emits it.
pub const HTTP_PHASE: &str = "fediprobe_http_phase_seconds";

/// Choices of the `span` variable: what percentiles and counts are taken over.
pub const SPANS: [&str; 4] = ["5m", "15m", "1h", "6h"];

pub fn dashboard(naming: &Naming) -> Dashboard {
    let selector = |extra: &str| build::selector(naming, extra);
    let mut board = Board::new();

    board.row("$journey per region");
    for (sli, title, what) in [
        (Sli::Availability, "Success ratio per region (5m)", "The share of runs that succeeded"),
        (
            Sli::Latency,
            "Within the latency threshold per region (5m)",
            "The share of successful runs within the journey's latency threshold",
        ),
    ] {
        board.add(
            build::timeseries(
                title,
                &format!("{what} over the last 5 minutes, per region (recorded by the SLO rules)."),
                "percentunit",
                Style::Lines,
                None,
                vec![series(
                    format!(
                        "1 - {}",
                        build::recorded(
                            naming,
                            vec![naming::region_ratio(sli, SHORT_WINDOWS[0])],
                            &region_matchers(naming, &format!("sli=\"{}\"", sli.label())),
                        )
                    ),
                    "{{region}}",
                )],
            ),
            12,
            8,
        );
    }
    let percentiles = [("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")]
        .into_iter()
        .map(|(q, name)| {
            series(
                format!(
                    "max by (region) (quantile_over_time({q}, {}{}[$span]))",
                    metrics::JOURNEY_LATENCY,
                    selector("")
                ),
                &format!("{name} {{{{region}}}}"),
            )
        })
        .collect();
    board.add(
        build::timeseries(
            "Latency percentiles per region",
            "Durations of successful runs over the span: p50, p95 and p99 of each probe account's runs, the \
             worst account of each region. Failed runs are left out (a refused connection fails in a \
             millisecond and would make an outage look fast). The duration covers what the journey's \
             `measures` says.",
            "s",
            Style::Lines,
            None,
            percentiles,
        ),
        24,
        9,
    );

    board.add(super::apdex::journey_panel(naming), 24, 8);
    // The rules pool a journey's probe accounts (its SLO is the instance's);
    // these two slice the raw per-run series by account, so a user unlike the
    // probe (a long home timeline) shows up even when the pooled SLI is fine.
    board.row("$journey per probe account");
    let ratio_by_account = format!(
        "sum by (account) (sum_over_time({success}{sel}[$span]))\n/\nsum by (account) (count_over_time({success}{sel}[$span]))",
        success = metrics::JOURNEY_SUCCESS,
        sel = selector("")
    );
    board.add(
        build::timeseries(
            "Success ratio per account",
            "The share of runs that succeeded over the span, per probe account (all selected regions). The SLO \
             and its alerts pool the accounts; this shows which account's users the failures hit.",
            "percentunit",
            Style::Lines,
            None,
            vec![series(ratio_by_account, "{{account}}")],
        ),
        12,
        8,
    );
    board.add(
        build::timeseries(
            "Latency p95 per account",
            "The p95 of successful runs' durations over the span, per probe account (the worst region): an \
             account that follows hundreds waits for a longer home timeline than a fresh one.",
            "s",
            Style::Lines,
            None,
            vec![series(
                format!(
                    "max by (account) (quantile_over_time(0.95, {}{}[$span]))",
                    metrics::JOURNEY_LATENCY,
                    selector("")
                ),
                "p95 {{account}}",
            )],
        ),
        12,
        8,
    );

    board.row("Where the time goes");
    board.add(
        build::timeseries(
            "Step durations (mean, stacked)",
            "The mean duration of each step over the span, all selected regions: the stack is a typical run \
             (cleanup steps included, which the journey's duration excludes).",
            "s",
            Style::Stacked,
            None,
            vec![series(
                format!("avg by (step) (avg_over_time({}{}[$span]))", metrics::STEP_DURATION, selector("")),
                "{{step}}",
            )],
        ),
        12,
        9,
    );
    board.add(
        build::timeseries(
            "HTTP phases (mean, stacked)",
            "DNS, connect, TLS, time to first byte and transfer of each step's requests, mean over the span.",
            "s",
            Style::Stacked,
            None,
            vec![series(
                format!("avg by (step, phase) (avg_over_time({HTTP_PHASE}{}[$span]))", selector("")),
                "{{step}} {{phase}}",
            )],
        ),
        12,
        9,
    );

    board.row("What went wrong");
    board.add(
        build::timeseries(
            "Runs that did not succeed, by reason",
            "Failures (the instance's fault) and probe errors (the probe's own: token, config, its own rate \
             limit) per span, by reason.",
            "short",
            Style::Bars,
            None,
            vec![series(
                format!(
                    "sum by (outcome, reason) (count_over_time({}{}[$span]))",
                    metrics::JOURNEY_OUTCOME,
                    selector("outcome!=\"success\"")
                ),
                "{{outcome}} {{reason}}",
            )],
        ),
        12,
        9,
    );
    let failures = selector("outcome!=\"success\"");
    let by = "journey, region, account, outcome, reason";
    board.add(
        build::table(
            "Recent failures",
            "Runs that did not succeed in the time range, per region, account and reason: how many, and when the \
             last one started.",
            vec![
                instant(format!("sum by ({by}) (count_over_time({}{failures}[$__range]))", metrics::JOURNEY_OUTCOME)),
                instant(format!(
                    "1000 * max by ({by}) (max_over_time(timestamp({}{failures})[$__range:1m]))",
                    metrics::JOURNEY_OUTCOME
                )),
            ],
            &["Runs", "Last"],
            &[],
            vec![
                Override::by_name("Runs", column("short", Some(0), Some(Thresholds::absolute("orange", &[])))),
                Override::by_name("Last", column("dateTimeAsIso", None, None)),
            ],
        ),
        12,
        9,
    );

    build::dashboard(
        UID,
        "fediprobe / Journey detail",
        "One journey per region: SLIs, latency percentiles, steps, HTTP phases, failures. Generated by \
         `fediprobe dashboards`; do not edit, regenerate.",
        "now-6h",
        {
            let mut vars = build::standard_variables(naming, metrics::JOURNEY_OUTCOME, false, false);
            vars.push(build::custom_variable("span", "Span", &SPANS, "15m"));
            vars
        },
        board,
    )
}
