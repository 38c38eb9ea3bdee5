//! The *Overview* dashboard: the page an admin opens when paged. Per journey, the
//! status the alerts give it now, each SLI against its objective over the SLO
//! window, the error budget left, and the burn rates over the alerts' windows.
//!
//! Everything here reads the series the rules generator records
//! (`journey:fediprobe_slo_*`) and the alerts' own `ALERTS` series, pooled over
//! all regions as the SLO is; the Journey detail dashboard breaks it down.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use super::build::{self, Board, Style, column, instant, pooled_selector, series};
use super::model::{Dashboard, MappingResult, Override, Property, Thresholds, ValueMapping};
use crate::generate::rules::{BUDGET_REMAINING_RECORD, OBJECTIVE_RECORD, ratio_record, region_ratio_record};
use crate::generate::slo::{BURN_WINDOWS, BurnWindow, Severity, prom_duration};
use crate::spec::Journey;

pub const UID: &str = "fediprobe-overview";

/// `1 - errors over the SLO window`, for every window the journeys use (a
/// journey's SLO-window ratio is recorded under its own window's name only).
fn sli_over_slo_window(windows: &BTreeSet<Duration>) -> String {
    let sel = pooled_selector("");
    let parts: Vec<String> = windows.iter().map(|w| format!("(1 - {}{sel})", ratio_record(*w))).collect();
    parts.join("\nor\n")
}

/// The error ratio over `w` divided by the error budget: 1 spends the budget
/// exactly over the SLO window.
pub fn burn_rate(w: Duration) -> String {
    let sel = pooled_selector("");
    format!("{}{sel}\n/ on (journey, instance, sli)\n(1 - {OBJECTIVE_RECORD}{sel})", ratio_record(w))
}

/// 2 while a page fires for the journey, 1 while only a ticket does, else 0 (for
/// every journey the rules know, through its objective series). The instance
/// page has no `journey` and is left out: the journeys' own alerts still fire in
/// `ALERTS` while Alertmanager inhibits their notifications.
fn status() -> String {
    let alerts = |severity: &str| {
        format!(
            "max by (journey) (ALERTS{{alertname=~\"Fediprobe.+\",alertstate=\"firing\",severity=\"{severity}\",journey!=\"\",journey=~\"$journey\",instance=~\"$instance\"}})"
        )
    };
    format!(
        "2 * {}\nor\n{}\nor\n0 * max by (journey) ({OBJECTIVE_RECORD}{})",
        alerts("page"),
        alerts("ticket"),
        pooled_selector("")
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

pub fn dashboard(journeys: &[Journey]) -> Dashboard {
    let windows: BTreeSet<Duration> = journeys.iter().map(|j| j.slo.window).collect();
    let window_names: Vec<String> = windows.iter().map(|w| prom_duration(*w)).collect();
    let pooled = pooled_selector("");
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
            vec![series(status(), "{{journey}}")],
        ),
        24,
        4,
    );

    board.row("Objectives (all regions pooled)");
    let mut targets = vec![
        instant(format!("{OBJECTIVE_RECORD}{pooled}")),
        instant(sli_over_slo_window(&windows)),
        instant(format!("{BUDGET_REMAINING_RECORD}{pooled}")),
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
        targets.push(instant(burn_rate(window.long)));
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
            vec![series(sli_over_slo_window(&windows), "{{journey}} {{sli}}")],
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
            vec![series(format!("{BUDGET_REMAINING_RECORD}{pooled}"), "{{journey}} {{sli}}")],
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
                vec![series(burn_rate(window.long), "{{journey}} {{sli}}")],
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
                format!("{}{}", region_ratio_record(BURN_WINDOWS[0].long), build::selector("")),
                "{{journey}} {{sli}} {{region}}",
            )],
        ),
        24,
        8,
    );

    super::apdex::overview_rows(&mut board, journeys);

    build::dashboard(
        UID,
        "fediprobe / Overview",
        "Per journey: status, SLIs against their objectives, error budget and burn rates. Generated by `fediprobe \
         dashboards` from the journeys; do not edit, regenerate.",
        "now-24h",
        build::standard_variables("fediprobe_journey_outcome", true, true),
        board,
    )
}
