//! The APDEX panels: per region on the *Journey detail* dashboard, per journey
//! on the *Overview*, and the Overview's row that puts the probes' availability
//! and APDEX beside the server-side figures of a Mastodon observability stack
//! (toot.community's mastodon-observability records
//! `mastodon:web_availability:availability_30d` and `mastodon:edge_apdex:overall`,
//! both ratios keyed by `namespace`).
//!
//! **When the server-side series do not exist** the row says nothing about
//! them: each of its panels draws the probes' series and the server's in one
//! panel, so a missing server series is one line or tile fewer, never an error
//! or a "No data" panel. Nothing joins the two: a server's `namespace` is not a
//! probe's `instance`, and they measure different things (the server's
//! requests at the ingress, the probe's journeys from outside, network and TLS
//! included), so they are shown side by side, not divided.

use std::collections::BTreeSet;
use std::time::Duration;

use super::build::{self, Board, Style, column, instant, pooled_matchers, region_matchers, series};
use super::model::{Override, Panel, Thresholds};
use crate::generate::apdex::{objective_name, pooled_name, region_name};
use crate::generate::naming::{self, Naming};
use crate::generate::slo::{Sli, prom_duration};
use crate::spec::Journey;

/// The server-side availability the row shows, when the stack records it.
pub const SERVER_AVAILABILITY: &str = "mastodon:web_availability:availability_30d";
/// The server-side APDEX (at the ingress, 100 ms / 500 ms in that stack).
pub const SERVER_APDEX: &str = "mastodon:edge_apdex:overall";

/// The window the APDEX trends are drawn over: long enough that a journey run
/// every ten minutes has six runs in it.
const TREND_WINDOW: Duration = Duration::from_secs(3600);

/// The APDEX bands of the APDEX specification, for colouring: under 0.5
/// unacceptable, under 0.85 poor to fair, from 0.85 good.
fn bands() -> Thresholds {
    Thresholds::absolute("red", &[(0.5, "orange"), (0.85, "green")])
}

/// `expr` for each window in `windows`, or'd: a journey's figure over its own SLO window.
fn over_windows(windows: &BTreeSet<Duration>, expr: impl Fn(Duration) -> String) -> String {
    windows.iter().map(|w| expr(*w)).collect::<Vec<_>>().join("\nor\n")
}

/// The *Journey detail* panel: the journey's APDEX per region over 1h, and its objective.
pub fn journey_panel(naming: &Naming) -> Panel {
    let mut panel = build::timeseries(
        "APDEX per region (1h)",
        "The journey's APDEX over the last hour per region: (satisfied + tolerating ÷ 2) ÷ runs, where a run \
         satisfies when it succeeds within the journey's `apdex.threshold`, is tolerated when it succeeds within \
         `apdex.tolerating`, and frustrates otherwise (a failed run always does; probe errors are not counted). \
         The dashed series is the objective; the ticket fires when the APDEX of all regions pooled is under it \
         over 6h and 30m.",
        "percentunit",
        Style::Lines,
        None,
        vec![
            series(
                build::recorded(naming, vec![region_name(TREND_WINDOW)], &region_matchers(naming, "")),
                "{{region}}",
            ),
            series(
                format!("max({})", build::recorded(naming, vec![objective_name()], &pooled_matchers(naming, ""))),
                "objective",
            ),
        ],
    );
    if let Some(fc) = panel.field_config.as_mut() {
        fc.defaults.no_value = Some("No APDEX objective for this journey".to_owned());
        fc.overrides.push(Override::by_name(
            "objective",
            vec![super::model::Property {
                id: "custom.lineStyle",
                value: serde_json::json!({ "fill": "dash", "dash": [10, 10] }),
            }],
        ));
    }
    panel
}

/// The Overview's APDEX row and the row beside the server-side view, for the
/// journeys with an APDEX objective (nothing when none has one, but the
/// server-side availability beside the probes').
pub fn overview_rows(naming: &Naming, board: &mut Board, journeys: &[Journey]) {
    let windows: BTreeSet<Duration> = journeys.iter().map(|j| j.slo.window).collect();
    let apdex_windows: BTreeSet<Duration> =
        journeys.iter().filter(|j| j.slo.apdex.is_some()).map(|j| j.slo.window).collect();
    let pooled = |name| build::recorded(naming, vec![name], &pooled_matchers(naming, ""));
    let apdex_over_window = over_windows(&apdex_windows, |w| pooled(pooled_name(w)));

    if !apdex_windows.is_empty() {
        board.row("APDEX (all regions pooled)");
        let (long, short) = (crate::generate::apdex::ALERT_LONG, crate::generate::apdex::ALERT_SHORT);
        let names = [
            "Objective".to_owned(),
            "APDEX over the SLO window".to_owned(),
            format!("APDEX {}", prom_duration(long)),
            format!("APDEX {}", prom_duration(short)),
        ];
        let mut overrides = vec![Override::by_name(&names[0], column("none", Some(2), None))];
        overrides.extend(names[1..].iter().map(|n| Override::by_name(n, column("none", Some(2), Some(bands())))));
        // One label set for every column (`journey`, `instance`), so the table
        // joins them into one row per journey.
        let per_journey = |expr: String| instant(format!("max by ({}) (\n{expr}\n)", naming.pooled()));
        board.add(
            build::table(
                "APDEX per journey",
                &format!(
                    "For each journey with an APDEX objective: the objective, and the APDEX over its SLO window and \
                     over the ticket's two windows (the ticket fires when both {} and {} are under the objective). \
                     Colours are the APDEX bands (under 0.5 unacceptable, from 0.85 good), not the journey's \
                     objective.",
                    prom_duration(long),
                    prom_duration(short)
                ),
                vec![
                    per_journey(pooled(objective_name())),
                    per_journey(apdex_over_window.clone()),
                    per_journey(pooled(pooled_name(long))),
                    per_journey(pooled(pooled_name(short))),
                ],
                &names.iter().map(String::as_str).collect::<Vec<_>>(),
                &[],
                overrides,
            ),
            12,
            8,
        );
        board.add(
            build::timeseries(
                "APDEX over 1h",
                "Each journey's APDEX over the last hour, all regions pooled.",
                "percentunit",
                Style::Lines,
                None,
                vec![series(pooled(pooled_name(TREND_WINDOW)), "{{journey}}")],
            ),
            12,
            8,
        );
    }

    board.row("Beside the server-side view");
    let availability = over_windows(&windows, |w| {
        format!(
            "1 - {}",
            build::recorded(
                naming,
                vec![naming::ratio(Sli::Availability, w)],
                &pooled_matchers(naming, "sli=\"availability\""),
            )
        )
    });
    board.add(
        build::timeseries(
            "Availability: probes and server",
            &format!(
                "Each journey's availability as the probes measure it over its SLO window ({}), beside the \
                 server's own `{SERVER_AVAILABILITY}` per namespace when the Mastodon observability stack records \
                 it (without it, only the probes' lines are drawn). The server counts its 5xx answers to user \
                 requests at the application; the probes count journeys that failed from outside, network, TLS \
                 and wrong content included.",
                windows.iter().map(|w| prom_duration(*w)).collect::<Vec<_>>().join(", ")
            ),
            "percentunit",
            Style::Lines,
            None,
            vec![series(availability, "{{journey}} (probes)"), series(SERVER_AVAILABILITY, "server {{namespace}}")],
        ),
        if apdex_windows.is_empty() { 24 } else { 12 },
        8,
    );
    if !apdex_windows.is_empty() {
        board.add(
            build::timeseries(
                "APDEX: probes and the edge",
                &format!(
                    "Each journey's APDEX over the last hour as the probes measure it, beside the ingress's \
                     `{SERVER_APDEX}` per namespace when the stack records it (without it, only the probes' lines \
                     are drawn). The edge times requests inside the cluster (100 ms / 500 ms in that stack); a \
                     probe's run includes DNS, TCP and TLS from outside, and each journey states its own \
                     thresholds. A probe APDEX well under the edge's points between the user and the ingress."
                ),
                "percentunit",
                Style::Lines,
                None,
                vec![
                    series(pooled(pooled_name(TREND_WINDOW)), "{{journey}} (probes)"),
                    series(SERVER_APDEX, "edge {{namespace}}"),
                ],
            ),
            12,
            8,
        );
    }
}
