//! The *Overview* dashboard: the page an admin opens when paged. Per journey, the
//! status the alerts give it now, each SLI against its objective over the SLO
//! window, the error budget left, and the burn rates over the alerts' windows.
//!
//! Everything here reads the series the rules generator records
//! (`journey:fediprobe_slo_*`, burn rates included, or their `mastodon:journey_*`
//! names) and the alerts' own `ALERTS` series, pooled over all regions as the
//! SLO is, under the config's naming knobs ([`Naming`]); the Journey detail
//! dashboard breaks it down.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use super::build::{self, Board, Style, column, instant, pooled_matchers, region_matchers, series};
use super::model::{Dashboard, MappingResult, Override, Property, Thresholds, ValueMapping};
use crate::generate::naming::{self, Name, Naming};
use crate::generate::runbooks::AlertKind;
use crate::generate::slo::{self, BURN_WINDOWS, BurnWindow, Severity, Sli, prom_duration};
use crate::spec::Journey;

pub const UID: &str = "fediprobe-overview";

/// The SLIs some journey has an objective for, in [`Sli::ALL`] order: the
/// series the panels read (one name per SLI under the `mastodon` scheme).
pub fn slis(journeys: &[Journey]) -> Vec<Sli> {
    Sli::ALL.into_iter().filter(|s| journeys.iter().any(|j| slo::indicators(j).iter().any(|i| i.sli == *s))).collect()
}

/// A recorded series of every SLI in `slis`, pooled over the regions.
fn pooled(naming: &Naming, slis: &[Sli], name: impl Fn(Sli) -> Name, extra: &str) -> String {
    build::recorded(naming, slis.iter().map(|s| name(*s)).collect(), &pooled_matchers(naming, extra))
}

/// `1 - errors over the SLO window`, for every window the journeys use (a
/// journey's SLO-window ratio is recorded under its own window's name only).
fn sli_over_slo_window(naming: &Naming, slis: &[Sli], windows: &BTreeSet<Duration>) -> String {
    let parts: Vec<String> =
        windows.iter().map(|w| format!("(1 - {})", pooled(naming, slis, |s| naming::ratio(s, *w), ""))).collect();
    parts.join("\nor\n")
}

/// The burn rate over `w` the rules record (the error ratio ÷ the error budget:
/// 1 spends the budget exactly over the SLO window).
pub fn burn_rate(naming: &Naming, slis: &[Sli], w: Duration) -> String {
    pooled(naming, slis, |s| naming::burn_rate(s, w), "")
}

/// 2 while a page fires for the journey, 1 while only a ticket does, else 0 (for
/// every journey the rules know, through its objective series). The instance
/// page has no `journey` and is left out: the journeys' own alerts still fire in
/// `ALERTS` while Alertmanager inhibits their notifications.
fn status(naming: &Naming, slis: &[Sli]) -> String {
    let names: Vec<String> = AlertKind::ALL
        .into_iter()
        .filter(|k| !matches!(k, AlertKind::InstanceUnavailable | AlertKind::SamplesUndelivered))
        .map(|k| naming.name(naming::alert(k)))
        .collect();
    let alerts = |severity: Severity| {
        format!(
            "max by (journey) (ALERTS{{alertname=~\"{}\",alertstate=\"firing\",severity=\"{}\",journey!=\"\",{}}})",
            names.join("|"),
            naming.severity(severity),
            pooled_matchers(naming, "")
        )
    };
    format!(
        "2 * {}\nor\n{}\nor\n0 * max by (journey) ({})",
        alerts(Severity::Page),
        alerts(Severity::Ticket),
        pooled(naming, slis, naming::objective, "")
    )
}

fn status_mappings() -> Vec<ValueMapping> {
    let result = |text, color, index| MappingResult { text, color, index };
    vec![ValueMapping {
        kind: "value",
        options: [
            ("0".to_owned(), result("OK", "green", 0)),
            ("1".to_owned(), result("TICKET", "orange", 1)),
            ("2".to_owned(), result("PAGE", "red", 2)),
        ]
        .into_iter()
        .collect(),
    }]
}

/// The burn factor each alert window uses, when every journey has the same SLO
/// window (the factors scale with it); `None` when they differ.
fn uniform_factor(window: &BurnWindow, windows: &BTreeSet<Duration>) -> Option<f64> {
    match windows.iter().collect::<Vec<_>>().as_slice() {
        [only] => Some(window.factor(**only)),
        _ => None,
    }
}

/// Cell colours of a burn-rate column: amber above 1× for the page windows and
/// red at the page factor; amber at the ticket factor for the ticket windows.
fn burn_thresholds(window: &BurnWindow, factor: Option<f64>) -> Thresholds {
    match (window.severity, factor) {
        (Severity::Page, Some(f)) => Thresholds::absolute("green", &[(1.0, "orange"), (f, "red")]),
        (Severity::Ticket, Some(f)) => Thresholds::absolute("green", &[(f, "orange")]),
        (_, None) => Thresholds::absolute("green", &[(1.0, "orange")]),
    }
}

pub fn dashboard(naming: &Naming, journeys: &[Journey]) -> Dashboard {
    let windows: BTreeSet<Duration> = journeys.iter().map(|j| j.slo.window).collect();
    let window_names: Vec<String> = windows.iter().map(|w| prom_duration(*w)).collect();
    let slis = slis(journeys);
    let objective = pooled(naming, &slis, naming::objective, "");
    let budget_remaining = pooled(naming, &slis, naming::budget_remaining, "");
    let mut board = Board::new();

    board.row("Status: what the alerts say now");
    board.add(
        build::stat(
            "Status per journey",
            "PAGE while a page-severity fediprobe alert fires for the journey, TICKET while only a ticket does, \
             else OK. Read from the alerts' own ALERTS series, so it agrees with what paged you (including the \
             region quorum).",
            "none",
            Thresholds::absolute("green", &[(1.0, "orange"), (2.0, "red")]),
            status_mappings(),
            vec![series(status(naming, &slis), "{{journey}}")],
        ),
        24,
        4,
    );

    board.row("Objectives (all regions pooled)");
    // One label set for every column (`journey`, the instance label, `sli`):
    // the objective's `window`, the series' names and any static labels of the
    // config would otherwise keep the table's merge from joining them into one row.
    let per_sli = |expr: String| instant(format!("max by ({}) (\n{expr}\n)", naming.journey_key()));
    let mut targets = vec![
        per_sli(objective.clone()),
        per_sli(sli_over_slo_window(naming, &slis, &windows)),
        per_sli(budget_remaining.clone()),
    ];
    let mut columns = vec!["Objective", "SLI over the window", "Budget left"];
    let burn_names: Vec<String> = BURN_WINDOWS.iter().map(|b| format!("Burn {}", prom_duration(b.long))).collect();
    let mut overrides = vec![
        Override::by_name("Objective", column("percentunit", Some(2), None)),
        Override::by_name("SLI over the window", column("percentunit", Some(3), None)),
        Override::by_name(
            "Budget left",
            column("percentunit", Some(1), Some(Thresholds::absolute("red", &[(0.0, "orange"), (0.25, "green")]))),
        ),
        Override::by_name(
            "journey",
            vec![Property {
                id: "links",
                value: json!([{
                    "title": "Journey detail",
                    "url": "/d/fediprobe-journey/?var-journey=${__data.fields.journey}&var-datasource=${datasource}&${__url_time_range}",
                }]),
            }],
        ),
    ];
    for (window, name) in BURN_WINDOWS.iter().zip(&burn_names) {
        targets.push(per_sli(burn_rate(naming, &slis, window.long)));
        columns.push(name);
        let thresholds = burn_thresholds(window, uniform_factor(window, &windows));
        overrides.push(Override::by_name(name, column("suffix:×", Some(2), Some(thresholds))));
    }
    board.add(
        build::table(
            "Service level objectives",
            &format!(
                "Per journey and SLI (availability, latency): the objective over its window ({}), the SLI measured \
                 over that window, the error budget left, and the burn rates over the alerts' long windows (1× \
                 spends the budget exactly over the window; pages start at {}× over 1h). Click a journey for its \
                 detail.",
                window_names.join(", "),
                uniform_factor(&BURN_WINDOWS[0], &windows).map_or("14.4 (for 30d)".to_owned(), |f| f.to_string()),
            ),
            targets,
            &columns,
            &[],
            overrides,
        ),
        24,
        10,
    );

    board.row("Trends");
    board.add(
        build::timeseries(
            "SLI over the SLO window",
            "The share of good runs over the journey's whole SLO window, as the error budget sees it.",
            "percentunit",
            Style::Lines,
            None,
            vec![series(sli_over_slo_window(naming, &slis, &windows), "{{journey}} {{sli}}")],
        ),
        12,
        9,
    );
    board.add(
        build::timeseries(
            "Error budget left",
            "1 − errors over the SLO window ÷ the budget. Below 0, the objective is missed for the window.",
            "percentunit",
            Style::Lines,
            Some(Thresholds::absolute("red", &[(0.0, "transparent")])),
            vec![series(budget_remaining, "{{journey}} {{sli}}")],
        ),
        12,
        9,
    );
    for window in BURN_WINDOWS.iter().filter(|b| b.severity == Severity::Page) {
        let long = prom_duration(window.long);
        let factor = uniform_factor(window, &windows);
        board.add(
            build::timeseries(
                &format!("Burn rate over {long}"),
                &format!(
                    "The error ratio over {long} ÷ the error budget. The dashed line is the page threshold{} (the \
                     alert also needs the {} window above it, from enough regions).",
                    factor.map_or(String::new(), |f| format!(", {f}×")),
                    prom_duration(window.short),
                ),
                "suffix:×",
                Style::Lines,
                factor.map(|f| Thresholds::absolute("transparent", &[(f, "red")])),
                vec![series(burn_rate(naming, &slis, window.long), "{{journey}} {{sli}}")],
            ),
            12,
            8,
        );
    }

    board.add(
        build::timeseries(
            "Error ratio per region over 1h",
            "Each region's own error ratio over 1h, per journey and SLI: one region alone above the others is that \
             vantage point's trouble (or its users'), and does not page on its own.",
            "percentunit",
            Style::Lines,
            None,
            vec![series(
                build::recorded(
                    naming,
                    slis.iter().map(|s| naming::region_ratio(*s, BURN_WINDOWS[0].long)).collect(),
                    &region_matchers(naming, ""),
                ),
                "{{journey}} {{sli}} {{region}}",
            )],
        ),
        24,
        8,
    );

    super::apdex::overview_rows(naming, &mut board, journeys);

    build::dashboard(
        UID,
        "fediprobe / Overview",
        "Per journey: status, SLIs against their objectives, error budget and burn rates. Generated by `fediprobe \
         dashboards` from the journeys; do not edit, regenerate.",
        "now-24h",
        build::standard_variables(naming, "fediprobe_journey_outcome", true, true),
        board,
    )
}
