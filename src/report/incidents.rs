//! Incidents: the periods in which the generated rules' own page condition held,
//! found by asking the backend to evaluate that condition (built by
//! [`crate::generate::alerts::BurnQuery`] over the raw per-run samples, since the
//! recorded ratios may not exist for the history asked about) every minute, as
//! the rules' alert group is evaluated. There is no second definition of a burn
//! in Rust: what the report calls a page is what the alert would have done.
//!
//! - A **page** incident is a stretch of consecutive evaluations at which the
//!   journey-level page condition held for the SLI (either window pair: 14.4×
//!   over 1h and 5m, or 6× over 6h and 30m, from at least `page_quorum` regions).
//!   It runs from the first such evaluation to the first at which the condition
//!   no longer held (the end of the window when it still held then: ongoing).
//! - A **region-only** incident (with a quorum above one) is a stretch in which
//!   one region's condition held without the quorum: the region-only ticket's
//!   condition, without its 15-minute `for:`.
//! - **Bad runs** are those of the regions concerned from the short window before
//!   the first evaluation (the runs that made it fire) to the incident's end;
//!   **budget spent** is bad runs ÷ (budget × valid runs in the report's window).

use std::collections::BTreeMap;
use std::time::Duration;

use super::model::{Incident, IncidentKind};
use super::query::Backend;
use super::{ReportError, compute};
use crate::generate::alerts::BurnQuery;
use crate::generate::rules::Plan;
use crate::generate::slo::{self, BURN_WINDOWS, Indicator, Severity, prom_duration};
use crate::spec::Journey;

/// How often the rules' alert group is evaluated: the resolution of incidents.
pub const EVALUATION_STEP: i64 = 60;

/// The incidents of one indicator of `journey` in `(start, end]`.
pub async fn find(
    backend: &Backend,
    plan: &Plan<'_>,
    journey: &Journey,
    ind: &Indicator,
    (start, end): (i64, i64),
    valid_runs: u64,
) -> Result<Vec<Incident>, ReportError> {
    let query = BurnQuery::Raw {
        journey: journey.name.clone(),
        objective: ind.objective.fraction(),
        slo_window: journey.slo.window,
    };
    let pages: Vec<_> = BURN_WINDOWS.iter().filter(|b| b.severity == Severity::Page).collect();
    let first = (start / EVALUATION_STEP + 1) * EVALUATION_STEP;
    let budget_runs = ind.objective.budget() * valid_runs as f64;
    let lead = BURN_WINDOWS[0].short.as_secs() as i64;
    let mut out = Vec::new();

    let page = pages.iter().map(|w| query.journey_condition(plan, ind.sli, w)).collect::<Vec<_>>().join("\nor\n");
    let times: Vec<i64> = backend
        .range(&page, first, end, EVALUATION_STEP)
        .await?
        .into_iter()
        .flat_map(|(_, p)| p)
        .map(|(t, _)| t)
        .collect();
    for (from, to) in stretches(times) {
        let bad = bad_runs(backend, journey, ind, "", from - lead, to, end).await?;
        let regions = bad.iter().filter(|(_, n)| **n > 0).map(|(r, _)| r.clone()).collect();
        let total = bad.values().sum();
        out.push(incident(IncidentKind::Page, (from, to), end, regions, total, budget_runs));
    }
    if plan.rules.page_quorum > 1 {
        let alone =
            pages.iter().map(|w| query.region_only_condition(plan, ind.sli, w)).collect::<Vec<_>>().join("\nor\n");
        let mut per_region: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (labels, points) in backend.range(&alone, first, end, EVALUATION_STEP).await? {
            let region = labels.get("region").cloned().unwrap_or_default();
            per_region.entry(region).or_default().extend(points.into_iter().map(|(t, _)| t));
        }
        for (region, times) in per_region {
            for (from, to) in stretches(times) {
                let bad = bad_runs(backend, journey, ind, &region, from - lead, to, end).await?.values().sum();
                out.push(incident(IncidentKind::RegionOnly, (from, to), end, vec![region.clone()], bad, budget_runs));
            }
        }
    }
    out.sort_by(|a, b| a.start.cmp(&b.start).then(a.regions.cmp(&b.regions)));
    Ok(out)
}

fn incident(
    kind: IncidentKind,
    (from, to): (i64, i64),
    window_end: i64,
    regions: Vec<String>,
    bad_runs: u64,
    budget_runs: f64,
) -> Incident {
    let ongoing = to >= window_end;
    let end = if ongoing { window_end } else { to + EVALUATION_STEP };
    Incident {
        kind,
        start: compute::time(from),
        end: compute::time(end),
        duration_seconds: end - from,
        ongoing,
        regions,
        bad_runs,
        budget_spent: if budget_runs > 0.0 { bad_runs as f64 / budget_runs } else { 0.0 },
    }
}

/// The bad runs of the indicator in `(from, min(to + step, window_end)]` per
/// region, of `region` or (empty) every region.
async fn bad_runs(
    backend: &Backend,
    journey: &Journey,
    ind: &Indicator,
    region: &str,
    from: i64,
    to: i64,
    window_end: i64,
) -> Result<BTreeMap<String, u64>, ReportError> {
    let until = (to + EVALUATION_STEP).min(window_end);
    let range = Duration::from_secs((until - from).max(1) as u64);
    let mut selector = format!("journey=\"{}\"", journey.name);
    if !region.is_empty() {
        selector.push_str(&format!(",region=\"{region}\""));
    }
    let (good, valid) = slo::good_and_valid(ind.sli, &format!("{{{selector}}}"), range);
    let expr = format!("sum by (region) ({valid}) - sum by (region) ({good})");
    tracing::debug!(expr, range = prom_duration(range), "bad runs");
    Ok(backend
        .instant(&expr, until)
        .await?
        .into_iter()
        .map(|(labels, v)| (labels.get("region").cloned().unwrap_or_default(), v.round().max(0.0) as u64))
        .collect())
}

/// Consecutive evaluation times (one step apart) as `(first, last)` stretches.
fn stretches(mut times: Vec<i64>) -> Vec<(i64, i64)> {
    times.sort_unstable();
    times.dedup();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for t in times {
        match out.last_mut() {
            Some((_, last)) if t - *last == EVALUATION_STEP => *last = t,
            _ => out.push((t, t)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluations_a_step_apart_are_one_stretch() {
        assert_eq!(stretches(vec![180, 60, 120, 300, 360, 600]), [(60, 180), (300, 360), (600, 600)]);
        assert_eq!(stretches(vec![]), []);
    }
}
