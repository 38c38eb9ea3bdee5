//! The *Probes* dashboard: the probes' own health. Which of the expected
//! regions report, how long ago each journey last ran, and, for the long-running
//! agent (the Deployment variant, scraped on `/metrics`), push health, spool and
//! queue, runs in flight and skipped slots.
//!
//! The agent's own series carry no `region` of their own: the PodMonitor and
//! VMPodScrape under `deploy/` copy it from the pod's `fediprobe/region` label.

use std::time::Duration;

use super::build::{self, Board, Style, column, instant, series};
use super::journey::SPANS;
use super::model::{Dashboard, Override, Thresholds};
use crate::generate::alerts::ABSENT_PERIODS;
use crate::generate::naming::Naming;
use crate::generate::slo::{self, prom_duration};
use crate::metrics;
use crate::spec::Journey;
use crate::spec::config::RulesConfig;

pub const UID: &str = "fediprobe-probes";

/// The shortest look-back of the "which regions report" panel.
const MIN_REPORT_WINDOW: Duration = Duration::from_secs(15 * 60);

pub fn dashboard(naming: &Naming, rules: &RulesConfig, journeys: &[Journey]) -> Dashboard {
    let selector = |extra: &str| build::selector(naming, extra);
    let longest_period =
        journeys.iter().map(|j| slo::period(&j.schedule.cron)).max().unwrap_or(Duration::from_secs(60));
    let silent = longest_period * ABSENT_PERIODS;
    let report_window = prom_duration(MIN_REPORT_WINDOW.max(silent));
    let outcome = metrics::JOURNEY_OUTCOME;
    // The agent's own series, read under the same `rules.selector` as the rules' alert on them.
    let agent = format!("region=~\"$region\"{}", naming.more_matchers());
    let mut board = Board::new();

    board.row("Which regions report");
    let mut reporting = format!(
        "count by (region) (\n  count by (region, journey) (\n    count_over_time({outcome}{{journey=~\"$journey\",instance=~\"$instance\"{more}}}[{report_window}])\n  )\n)",
        more = naming.more_matchers()
    );
    for region in &rules.regions {
        reporting.push_str(&format!("\nor\nlabel_replace(vector(0), \"region\", \"{region}\", \"\", \"\")"));
    }
    let n = journeys.len() as f64;
    board.add(
        build::stat(
            &format!("Journeys reporting per region (last {report_window})"),
            &format!(
                "How many journeys each region reported a run of (any outcome) in the last {report_window}, out of \
                 {} in the config. Every region the rules expect ({}) is shown, at 0 when silent.",
                journeys.len(),
                rules.regions.join(", ")
            ),
            "short",
            Thresholds::absolute("red", &[(1.0, "orange"), (n.max(1.0), "green")]),
            Vec::new(),
            vec![series(reporting, "{{region}}")],
        ),
        24,
        4,
    );
    let lookback = prom_duration(Duration::from_secs(3600).max(silent * 2));
    board.add(
        build::table(
            "Since each journey's last run",
            &format!(
                "Per region and journey, how long ago the last run (any outcome) started, looking back {lookback}. \
                 Amber after {} without a run ({ABSENT_PERIODS} periods of the slowest schedule), red after twice \
                 that.",
                prom_duration(silent)
            ),
            // The newest sample's own timestamp while it is within the lookback
            // (exact, and there from the first run on); the minute-stepped
            // subquery only for runs older than that.
            vec![instant(format!(
                "time() - max by (region, journey) (\n  timestamp({outcome}{sel})\n  or\n  max_over_time(timestamp({outcome}{sel})[{lookback}:1m])\n)",
                sel = selector("")
            ))],
            &["Since the last run"],
            &[],
            vec![Override::by_name(
                "Since the last run",
                column(
                    "s",
                    Some(0),
                    Some(Thresholds::absolute(
                        "green",
                        &[(silent.as_secs_f64(), "orange"), (2.0 * silent.as_secs_f64(), "red")],
                    )),
                ),
            )],
        ),
        12,
        9,
    );
    board.add(
        build::timeseries(
            "Runs per region, by outcome",
            "Runs reported per span, by region and outcome: a probe that stops reporting drops to nothing here.",
            "short",
            Style::Bars,
            None,
            vec![series(
                format!("sum by (region, outcome) (count_over_time({outcome}{}[$span]))", selector("")),
                "{{region}} {{outcome}}",
            )],
        ),
        12,
        9,
    );

    // CronJob pods live for one run and are never scraped: they push only their
    // runs' samples, which the rows above read. Say so where the panels stay empty.
    board.row("Long-running agents only (Deployment variant, scraped from /metrics; empty with CronJobs)");
    board.add(
        build::timeseries(
            "Since the last accepted push",
            "How long ago the metrics backend last accepted a push, per agent. The agent reports itself not ready \
             after 2 minutes with samples waiting (dashed line).",
            "s",
            Style::Lines,
            Some(Thresholds::absolute("transparent", &[(120.0, "red")])),
            vec![series(
                format!(
                    "time() - max by (region, pod) (fediprobe_remote_write_last_success_timestamp_seconds{{{agent}}} > 0)"
                ),
                "{{region}} {{pod}}",
            )],
        ),
        12,
        8,
    );
    let per_second = |name: &str, legend: &str| {
        series(
            format!("sum by (region) (rate(fediprobe_remote_write_{name}_total{{{agent}}}[$__rate_interval]))"),
            &format!("{legend} {{{{region}}}}"),
        )
    };
    board.add(
        build::timeseries(
            "Push traffic",
            "Samples accepted, spooled, dropped (lost) and rejected (refused for good) per second, and push requests \
             retried per second. Anything dropped is a hole in the SLIs.",
            "short",
            Style::Lines,
            None,
            vec![
                per_second("sent_samples", "sent"),
                per_second("spooled_samples", "spooled"),
                per_second("dropped_samples", "dropped"),
                per_second("rejected_samples", "rejected"),
                per_second("retried_requests", "retried requests"),
            ],
        ),
        12,
        8,
    );
    board.add(
        build::timeseries(
            "Spool size",
            "Bytes waiting in the spool directory for the backend to come back.",
            "bytes",
            Style::Lines,
            None,
            vec![series(
                format!("max by (region, pod) (fediprobe_remote_write_spool_bytes{{{agent}}})"),
                "{{region}} {{pod}}",
            )],
        ),
        8,
        8,
    );
    board.add(
        build::timeseries(
            "Samples waiting in memory",
            "The push queue, with what a push holds in flight: samples not yet delivered nor spooled.",
            "short",
            Style::Lines,
            None,
            vec![series(
                format!("max by (region, pod) (fediprobe_remote_write_queue_samples{{{agent}}})"),
                "{{region}} {{pod}}",
            )],
        ),
        8,
        8,
    );
    board.add(
        build::timeseries(
            "Oldest undelivered sample",
            "Age of the oldest sample an agent has not delivered yet (in memory, in flight or in the spool); 0 when \
             nothing waits. It grows with a backend outage; past 10 minutes the FediprobeSamplesUndelivered ticket \
             opens, and until the backlog arrives the SLIs of that region count fewer runs than were made.",
            "s",
            Style::Lines,
            None,
            vec![series(
                format!("max by (region, pod) (fediprobe_remote_write_oldest_undelivered_age_seconds{{{agent}}})"),
                "{{region}} {{pod}}",
            )],
        ),
        24,
        8,
    );
    board.add(
        build::timeseries(
            "Runs in flight and skipped slots",
            "Runs going now per agent (not those waiting for a place under max_concurrent_runs), and slots skipped \
             per span: the journey's previous run was still going (a journey slower than its schedule), or shutdown \
             began before the run could start.",
            "short",
            Style::Lines,
            None,
            vec![
                series(format!("sum by (region, pod) (fediprobe_runs_in_flight{{{agent}}})"), "in flight {{region}} {{pod}}"),
                series(
                    format!(
                        "sum by (region, journey) (increase(fediprobe_schedule_skipped_slots_total{{{agent},journey=~\"$journey\"}}[$span]))"
                    ),
                    "skipped {{region}} {{journey}}",
                ),
            ],
        ),
        8,
        8,
    );

    build::dashboard(
        UID,
        "fediprobe / Probes",
        "The probes' own health: which regions report, last runs (both variants, from the pushed samples); push \
         health, spool and queue of the long-running agent (Deployment variant only: CronJob pods are never \
         scraped, so those panels stay empty with CronJobs). Generated by `fediprobe dashboards`; do not edit, \
         regenerate.",
        "now-6h",
        {
            let mut vars = build::standard_variables(naming, outcome, true, true);
            vars.push(build::custom_variable("span", "Span", &SPANS, "15m"));
            vars
        },
        board,
    )
}
