//! `fediprobe report`: an SLO report people can read, built from the per-run
//! samples in VictoriaMetrics (or Prometheus) over its HTTP query API, and
//! written as a static HTML page ([`html`]), Markdown ([`markdown`]) and JSON
//! (the [`model`] types, serialised).
//!
//! ## What the numbers are
//!
//! **Window.** The report covers `(start, end]`, a whole number of days; `end`
//! is the time asked for (default: now), rounded down to five minutes. Days are
//! UTC calendar days, each labelled with its own date; the first and the last
//! are partial when the window does not start or end at midnight. Windows are
//! left-open, as VictoriaMetrics and Prometheus 3 evaluate range selectors.
//!
//! **Coverage.** The part of the window with runs (at five-minute resolution)
//! is stated next to the window: a 30-day report over 40 minutes of data says
//! it covers 40 minutes.
//!
//! **Counts.** Everything is counted from the raw per-run series of
//! `docs/metrics.md`, summed over regions and accounts with `sum by (journey, region)`
//! (and, for the per-account lines of a journey run as several probe accounts,
//! over regions with `sum by (journey, account)` for the whole window):
//!
//! | SLI | valid runs | good runs |
//! |---|---|---|
//! | availability | `count_over_time(fediprobe_journey_success[w])` | `sum_over_time(fediprobe_journey_success[w])` |
//! | latency | `sum_over_time(fediprobe_journey_success[w])` | `sum_over_time(fediprobe_journey_latency_ok[w])` |
//! | delay (federation) | `count_over_time(fediprobe_journey_delay_ok[w])` | `sum_over_time(fediprobe_journey_delay_ok[w])` |
//!
//! evaluated once at `end` with `w` = the window, and at daily steps with
//! `w = 1d`. The SLI is `good / valid`, an exact ratio of runs; all regions
//! pooled is the sum of the regions' counts. **Budget remaining** is
//! `1 − (bad / valid) / (1 − objective)` over the report's window (below zero
//! when overspent).
//!
//! **APDEX**, for journeys with an APDEX objective: per region,
//! `sum_over_time` and `count_over_time` of `fediprobe_journey_apdex_score`
//! over the window (the score of a run is 1, 0.5 or 0; probe errors have
//! none), summed over accounts; the APDEX is the sum over the count, all
//! regions pooled by adding both, as the recording rules do.
//!
//! **Incidents.** Where the generated rules' page condition held, asked of the
//! backend every minute over the raw samples ([`incidents`]): one definition of
//! a burn, the rules' own PromQL.
//!
//! **Federation delay.** Per direction (`source`, `destination`) and region:
//! the count of `fediprobe_federation_delay_seconds` samples in the window and
//! `quantile_over_time` at 0.5, 0.95 and 0.99 (linear interpolation between
//! samples; the worst series when several journeys or accounts measure the same
//! direction). No such series: the report says there are no federation journeys.
//!
//! **Missing data** is reported, not fatal: a journey without samples from a
//! region listed in `rules.regions` (or from any region) gets a line in
//! `problems`. Only a backend without samples for any journey is an error.

pub mod chart;
pub mod compute;
pub mod html;
pub mod incidents;
pub mod markdown;
pub mod model;
pub mod query;
pub mod words;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::generate::slo::{self, Sli, prom_duration};
use crate::spec::{Config, Journey};
pub use model::Report;
use model::{
    AccountCount, ApdexCount, ApdexReport, Count, Day, FederationDelay, IndicatorReport, Instance, JourneyReport,
    RegionApdex, RegionCount, Window,
};
pub use query::Backend;

/// What `end` is rounded to, and the resolution of the coverage.
pub const STEP: i64 = 300;
const DAY: i64 = 86_400;

/// Why no report could be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{reason}")]
    BadUrl { reason: String },
    #[error("cannot reach the metrics backend at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "the metrics backend at {url} refused a query (HTTP {status}: {message}); is {url} the base URL of its \
         Prometheus query API, e.g. http://victoria-metrics:8428? The query was: {query}"
    )]
    Rejected { url: String, status: u16, query: String, message: String },
    #[error("the metrics backend at {url} did not answer like a Prometheus query API: {reason}")]
    Malformed { url: String, reason: String },
    #[error(
        "no samples for any journey in the window {start} to {end} at {url}: is it the backend the probes write to, \
         and have they run in that time?"
    )]
    NoData { url: String, start: DateTime<Utc>, end: DateTime<Utc> },
}

/// What to report on.
#[derive(Debug, Clone)]
pub struct Options {
    /// The window's length in days; default: the longest SLO window of the journeys.
    pub days: Option<u32>,
    /// The window's end; default: `now`.
    pub end: Option<DateTime<Utc>>,
    /// The time the report is made.
    pub now: DateTime<Utc>,
}

/// The measures the report reads, per `(journey, region)` (or `(journey,
/// account)`), as `(time, value)` points.
type Table = BTreeMap<(String, String), Vec<(i64, f64)>>;

/// The three per-run measures at one resolution.
struct Measures {
    /// `count_over_time(success)`: availability's valid runs.
    runs: Table,
    /// `sum_over_time(success)`: availability's good runs, latency's valid runs.
    successes: Table,
    /// `sum_over_time(latency_ok)`: latency's good runs.
    fast: Table,
    /// `count_over_time(delay_ok)`: delay's valid runs (federation journeys).
    delay_runs: Table,
    /// `sum_over_time(delay_ok)`: delay's good runs.
    delivered_in_time: Table,
}

/// Queries `backend` and computes the report for `journeys` under `config`.
pub async fn build(
    backend: &Backend,
    config: &Config,
    journeys: &[Journey],
    options: &Options,
) -> Result<Report, ReportError> {
    let end = options.end.unwrap_or(options.now).timestamp().div_euclid(STEP) * STEP;
    let days = options
        .days
        .unwrap_or_else(|| journeys.iter().map(|j| (j.slo.window.as_secs() as i64 / DAY) as u32).max().unwrap_or(30))
        .max(1);
    let start = end - i64::from(days) * DAY;
    let selector = journey_selector(journeys);

    let whole = || Resolution::Instant { at: end, window: end - start };
    let totals = measures(backend, &selector, whole(), "region").await?;
    let by_account = measures(backend, &selector, whole(), "account").await?;
    // Days are UTC calendar days (labelled with their own date); the first and
    // last are partial when the window does not start or end at midnight.
    let mut bounds = vec![start];
    bounds.extend((start.div_euclid(DAY) + 1..=(end - 1).div_euclid(DAY)).map(|d| d * DAY));
    bounds.push(end);
    let mut daily = Vec::new();
    for pair in bounds.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let resolution = Resolution::Instant { at: to, window: to - from };
        daily.push((from, to, measures(backend, &selector, resolution, "region").await?));
    }
    let resolution = Resolution::Range { from: start + STEP, to: end, step: STEP };
    let buckets = measures(backend, &selector, resolution, "region").await?;

    let coverage = coverage(&buckets.runs, start, end);
    if totals.runs.is_empty() {
        return Err(ReportError::NoData {
            url: backend.display_url(),
            start: compute::time(start),
            end: compute::time(end),
        });
    }

    let apdex_tables = apdex_measures(backend, &selector, end, end - start).await?;
    let plan = crate::generate::rules::Plan::new(&config.rules, journeys, 1);
    let mut problems = Vec::new();
    let mut all_regions: BTreeSet<String> = config.rules.regions.iter().cloned().collect();
    let mut reports = Vec::new();
    let mut sorted: Vec<&Journey> = journeys.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for journey in sorted {
        let seen: BTreeSet<String> =
            totals.runs.keys().filter(|(j, _)| *j == journey.name).map(|(_, r)| r.clone()).collect();
        if seen.is_empty() {
            problems.push(format!("no samples for journey {} from any region in the window", journey.name));
        } else {
            for region in config.rules.regions.iter().filter(|r| !seen.contains(*r)) {
                problems.push(format!("no samples for journey {} from region {region} in the window", journey.name));
            }
        }
        let regions: Vec<String> = config
            .rules
            .regions
            .iter()
            .cloned()
            .chain(seen.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        all_regions.extend(regions.iter().cloned());
        let context = JourneyContext { journey, regions: &regions, end };
        let mut indicators = Vec::new();
        for ind in slo::indicators(journey) {
            let mut report = indicator(&context, &ind, &totals, &daily);
            report.accounts = per_account(&context, &ind, &by_account);
            report.incidents =
                incidents::find(backend, &plan, journey, &ind, (start, end), report.total.valid_runs).await?;
            indicators.push(report);
        }
        reports.push(JourneyReport {
            name: journey.name.clone(),
            description: journey.description.as_ref().map(|d| d.trim().to_owned()),
            instance: journey.instance.clone(),
            measures: journey.measures.clone(),
            slo_window_days: journey.slo.window.as_secs() / DAY as u64,
            objective: slo::indicators(journey).iter().map(compute::objective_text).collect::<Vec<_>>().join("; "),
            measured_from: seen.into_iter().collect(),
            indicators,
            apdex: journey.slo.apdex.as_ref().map(|a| apdex_report(&context, a, &apdex_tables)),
        });
    }

    let used: BTreeSet<&str> = journeys.iter().map(|j| j.instance.as_str()).collect();
    let instances = config
        .instances
        .iter()
        .filter(|i| used.contains(i.name.as_str()))
        .map(|i| {
            let host = i.url.host_str().unwrap_or_default();
            let host = match i.url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            Instance { name: i.name.clone(), host }
        })
        .collect();
    let federation = federation(backend, end, end - start).await?;
    Ok(Report {
        generated_at: options.now,
        window: Window { start: compute::time(start), end: compute::time(end), days, coverage },
        instances,
        regions: all_regions.into_iter().collect(),
        page_quorum: config.rules.page_quorum,
        journeys: reports,
        federation,
        problems,
    })
}

struct JourneyContext<'a> {
    journey: &'a Journey,
    regions: &'a [String],
    end: i64,
}

/// One indicator of one journey from the three resolutions of measures.
fn indicator(
    ctx: &JourneyContext<'_>,
    ind: &slo::Indicator,
    totals: &Measures,
    daily: &[(i64, i64, Measures)],
) -> IndicatorReport {
    let name = ctx.journey.name.as_str();
    let count_at = |m: &Measures, region: &str, t: i64| -> Count {
        let (valid, good) = match ind.sli {
            Sli::Availability => (&m.runs, &m.successes),
            Sli::Latency => (&m.successes, &m.fast),
            Sli::Delay => (&m.delay_runs, &m.delivered_in_time),
        };
        Count::new(value_at(valid, name, region, t), value_at(good, name, region, t))
    };
    let per_region = |m: &Measures, t: i64| -> Vec<RegionCount> {
        ctx.regions.iter().map(|r| RegionCount { region: r.clone(), count: count_at(m, r, t) }).collect()
    };
    let pooled = |rc: &[RegionCount]| rc.iter().fold(Count::default(), |acc, r| acc + r.count);

    let regions = per_region(totals, ctx.end);
    let total = pooled(&regions);
    let budget = ind.objective.budget();
    let daily: Vec<Day> = daily
        .iter()
        .map(|(from, to, m)| {
            let regions = per_region(m, *to);
            Day { start: compute::time(*from), count: pooled(&regions), regions }
        })
        .collect();

    IndicatorReport {
        sli: ind.sli.label(),
        objective: ind.objective.fraction(),
        threshold_seconds: ind.threshold.map(|t| t.as_secs_f64()),
        objective_text: compute::objective_text(ind),
        total,
        budget_remaining: compute::budget_remaining(total, budget),
        met: total.ratio.map(|r| r >= ind.objective.fraction()),
        regions,
        accounts: Vec::new(),
        daily,
        incidents: Vec::new(),
    }
}

/// The indicator per probe account over the window (all regions pooled), when
/// the journey ran as more than one account; empty otherwise.
fn per_account(ctx: &JourneyContext<'_>, ind: &slo::Indicator, by_account: &Measures) -> Vec<AccountCount> {
    let name = ctx.journey.name.as_str();
    let (valid, good) = match ind.sli {
        Sli::Availability => (&by_account.runs, &by_account.successes),
        Sli::Latency => (&by_account.successes, &by_account.fast),
        Sli::Delay => (&by_account.delay_runs, &by_account.delivered_in_time),
    };
    let accounts: Vec<&String> = by_account.runs.keys().filter(|(j, _)| j == name).map(|(_, a)| a).collect();
    if accounts.len() < 2 {
        return Vec::new();
    }
    accounts
        .into_iter()
        .map(|account| AccountCount {
            account: account.clone(),
            count: Count::new(value_at(valid, name, account, ctx.end), value_at(good, name, account, ctx.end)),
        })
        .collect()
}

/// One journey's APDEX from the window's score sums and counts.
fn apdex_report(
    ctx: &JourneyContext<'_>,
    objective: &crate::spec::journey::ApdexObjective,
    (sums, counts): &(Table, Table),
) -> ApdexReport {
    let at = |table: &Table, region: &str| {
        table
            .get(&(ctx.journey.name.clone(), region.to_owned()))
            .and_then(|points| points.iter().find(|(t, _)| *t == ctx.end))
            .map_or(0.0, |(_, v)| *v)
    };
    let regions: Vec<RegionApdex> = ctx
        .regions
        .iter()
        .map(|r| RegionApdex {
            region: r.clone(),
            count: ApdexCount::new(at(counts, r).round().max(0.0) as u64, at(sums, r)),
        })
        .collect();
    let total = regions.iter().fold(ApdexCount::default(), |acc, r| acc + r.count);
    ApdexReport {
        threshold_seconds: objective.threshold.as_secs_f64(),
        tolerating_seconds: objective.tolerating.as_secs_f64(),
        objective: objective.objective.fraction(),
        objective_text: compute::apdex_text(objective),
        met: total.score.map(|s| s >= objective.objective.fraction()),
        total,
        regions,
    }
}

/// The score sums and the scored runs per `(journey, region)` over the window
/// ending at `end`.
async fn apdex_measures(
    backend: &Backend,
    selector: &str,
    end: i64,
    window: i64,
) -> Result<(Table, Table), ReportError> {
    let w = prom_duration(Duration::from_secs(window as u64));
    let metric = crate::metrics::JOURNEY_APDEX;
    let mut tables = Vec::new();
    for function in ["sum_over_time", "count_over_time"] {
        let query = format!("sum by (journey, region) ({function}({metric}{selector}[{w}]))");
        let table: Table = backend
            .instant(&query, end)
            .await?
            .into_iter()
            .filter_map(|(labels, v)| {
                Some(((labels.get("journey")?.clone(), labels.get("region")?.clone()), vec![(end, v)]))
            })
            .collect();
        tables.push(table);
    }
    let counts = tables.pop().unwrap_or_default();
    let sums = tables.pop().unwrap_or_default();
    Ok((sums, counts))
}

/// The part of `(start, end]` with runs, from five-minute counts: from the start
/// of the first bucket with a run to the end of the last.
fn coverage(runs: &Table, start: i64, end: i64) -> Option<model::Coverage> {
    let times = runs.values().flatten().filter(|(t, v)| *v > 0.0 && *t > start && *t <= end + STEP).map(|(t, _)| *t);
    let (first, last) = times.fold(None, |acc: Option<(i64, i64)>, t| match acc {
        None => Some((t, t)),
        Some((a, b)) => Some((a.min(t), b.max(t))),
    })?;
    Some(model::Coverage { start: compute::time((first - STEP).max(start)), end: compute::time(last.min(end)) })
}

/// The value of `(journey, region)` (or account) at time `t`, as a whole number of runs; 0 when absent.
fn value_at(table: &Table, journey: &str, region: &str, t: i64) -> u64 {
    table
        .get(&(journey.to_owned(), region.to_owned()))
        .and_then(|points| points.binary_search_by_key(&t, |(time, _)| *time).ok().map(|i| points[i].1))
        .map(|v| v.round().max(0.0) as u64)
        .unwrap_or(0)
}

/// `{journey=~"a|b"}` for the journeys' names.
fn journey_selector(journeys: &[Journey]) -> String {
    let names: Vec<String> = journeys.iter().map(|j| regex::escape(&j.name)).collect();
    format!("{{journey=~\"{}\"}}", promql_string(&names.join("|")))
}

/// A PromQL string literal's content: backslashes and quotes escaped.
fn promql_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

enum Resolution {
    /// One value at `at` over the last `window` seconds.
    Instant { at: i64, window: i64 },
    /// Values every `step` seconds from `from` to `to`, each over the last `step` seconds.
    Range { from: i64, to: i64, step: i64 },
}

/// The per-run measures at one resolution, per journey and `by` (`region` or `account`).
async fn measures(
    backend: &Backend,
    selector: &str,
    resolution: Resolution,
    by: &str,
) -> Result<Measures, ReportError> {
    let query = |function: &str, metric: &str, window: i64| {
        let w = prom_duration(Duration::from_secs(window as u64));
        format!("sum by (journey, {by}) ({function}({metric}{selector}[{w}]))")
    };
    let mut tables = Vec::new();
    for (function, metric) in [
        ("count_over_time", "fediprobe_journey_success"),
        ("sum_over_time", "fediprobe_journey_success"),
        ("sum_over_time", "fediprobe_journey_latency_ok"),
        ("count_over_time", "fediprobe_journey_delay_ok"),
        ("sum_over_time", "fediprobe_journey_delay_ok"),
    ] {
        let series = match resolution {
            Resolution::Instant { at, window } => backend
                .instant(&query(function, metric, window), at)
                .await?
                .into_iter()
                .map(|(labels, v)| (labels, vec![(at, v)]))
                .collect(),
            Resolution::Range { from, to, step } => {
                backend.range(&query(function, metric, step), from, to, step).await?
            }
        };
        tracing::debug!(function, metric, series = series.len(), "queried");
        let table: Table = series
            .into_iter()
            .filter_map(|(labels, points)| Some(((labels.get("journey")?.clone(), labels.get(by)?.clone()), points)))
            .collect();
        tables.push(table);
    }
    let delivered_in_time = tables.pop().unwrap_or_default();
    let delay_runs = tables.pop().unwrap_or_default();
    let fast = tables.pop().unwrap_or_default();
    let successes = tables.pop().unwrap_or_default();
    let runs = tables.pop().unwrap_or_default();
    Ok(Measures { runs, successes, fast, delay_runs, delivered_in_time })
}

/// Federation delay per direction and region over the window.
async fn federation(backend: &Backend, end: i64, window: i64) -> Result<Vec<FederationDelay>, ReportError> {
    let w = prom_duration(Duration::from_secs(window as u64));
    let metric = "fediprobe_federation_delay_seconds";
    let by = "source, destination, region";
    let key = |labels: &query::Labels| {
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        (get("source"), get("destination"), get("region"))
    };
    let counts = backend.instant(&format!("sum by ({by}) (count_over_time({metric}[{w}]))"), end).await?;
    let mut out: BTreeMap<(String, String, String), FederationDelay> = counts
        .iter()
        .map(|(labels, v)| {
            let (source, destination, region) = key(labels);
            let delay = FederationDelay {
                source: source.clone(),
                destination: destination.clone(),
                region: region.clone(),
                samples: v.round() as u64,
                p50_seconds: None,
                p95_seconds: None,
                p99_seconds: None,
            };
            ((source, destination, region), delay)
        })
        .collect();
    if out.is_empty() {
        return Ok(Vec::new());
    }
    for (i, q) in ["0.5", "0.95", "0.99"].into_iter().enumerate() {
        let query = format!("max by ({by}) (quantile_over_time({q}, {metric}[{w}]))");
        for (labels, v) in backend.instant(&query, end).await? {
            if let Some(d) = out.get_mut(&key(&labels)) {
                let slot = match i {
                    0 => &mut d.p50_seconds,
                    1 => &mut d.p95_seconds,
                    _ => &mut d.p99_seconds,
                };
                *slot = Some(v);
            }
        }
    }
    Ok(out.into_values().collect())
}
