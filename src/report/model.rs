//! The report's data: what `report.json` holds, and what the HTML and Markdown
//! pages are rendered from. Counts are whole runs; ratios are `good / valid`
//! of those counts, never interpolated; times are RFC 3339 in UTC.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Everything one report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the report was made.
    pub generated_at: DateTime<Utc>,
    pub window: Window,
    /// The instances the journeys measure, with their public host names.
    pub instances: Vec<Instance>,
    /// Every region that reported any journey, or is expected to (`rules.regions`).
    pub regions: Vec<String>,
    /// How many regions must see a fast burn for it to page (`rules.page_quorum`).
    pub page_quorum: usize,
    pub journeys: Vec<JourneyReport>,
    /// Federation delay per direction and region; empty when no federation journey reported.
    pub federation: Vec<FederationDelay>,
    /// Data that is missing, e.g. `no samples for journey X from region Y in the window`.
    pub problems: Vec<String>,
}

/// The stretch of time the report covers: `(start, end]`, whole days.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub days: u32,
    /// The part of the window with samples (five-minute resolution), or `None`
    /// when it has none: a 30-day report over 40 minutes of data says so.
    pub coverage: Option<Coverage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    /// The name journeys use (`instance:` label).
    pub name: String,
    /// The instance's host, e.g. `mastodon.example`.
    pub host: String,
}

/// One journey: its objective in words and each indicator as measured.
#[derive(Debug, Clone, Serialize)]
pub struct JourneyReport {
    pub name: String,
    pub description: Option<String>,
    pub instance: String,
    /// What the journey's duration covers.
    pub measures: String,
    /// The journey's own SLO window (the alerts' burn factors scale with it).
    pub slo_window_days: u64,
    /// The objective in words, e.g. `99.5% of runs succeed; 95% of successful runs within 500ms`.
    pub objective: String,
    /// The regions whose probes reported this journey in the window.
    pub measured_from: Vec<String>,
    pub indicators: Vec<IndicatorReport>,
    /// The journey's APDEX over the window, when it has an APDEX objective.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apdex: Option<ApdexReport>,
}

/// A journey's APDEX over the window: `score_sum / runs`, where each scored run
/// counts 1 (satisfied), 0.5 (tolerating) or 0 (frustrated, failed runs
/// included), so `score_sum` is `satisfied + tolerating / 2`. Probe errors have
/// no score and are not runs here.
#[derive(Debug, Clone, Serialize)]
pub struct ApdexReport {
    /// T: a successful run within it satisfies.
    pub threshold_seconds: f64,
    /// A successful run within it (and over T) is tolerated.
    pub tolerating_seconds: f64,
    /// The lowest acceptable APDEX, e.g. 0.85.
    pub objective: f64,
    /// The objective in words.
    pub objective_text: String,
    /// All regions pooled.
    #[serde(flatten)]
    pub total: ApdexCount,
    /// Whether the APDEX meets the objective; absent without runs.
    pub met: Option<bool>,
    pub regions: Vec<RegionApdex>,
}

/// Scored runs and the sum of their scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ApdexCount {
    pub runs: u64,
    pub score_sum: f64,
    /// `score_sum / runs`; absent without runs.
    pub score: Option<f64>,
}

impl ApdexCount {
    pub fn new(runs: u64, score_sum: f64) -> ApdexCount {
        ApdexCount { runs, score_sum, score: (runs > 0).then(|| score_sum / runs as f64) }
    }
}

impl std::ops::Add for ApdexCount {
    type Output = ApdexCount;

    fn add(self, other: ApdexCount) -> ApdexCount {
        ApdexCount::new(self.runs + other.runs, self.score_sum + other.score_sum)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionApdex {
    pub region: String,
    #[serde(flatten)]
    pub count: ApdexCount,
}

/// One SLI of one journey over the window.
#[derive(Debug, Clone, Serialize)]
pub struct IndicatorReport {
    /// `availability` or `latency`.
    pub sli: &'static str,
    /// The objective as a fraction, e.g. 0.995.
    pub objective: f64,
    /// The latency threshold, for the latency SLI.
    pub threshold_seconds: Option<f64>,
    /// The objective of this indicator in words.
    pub objective_text: String,
    /// All regions pooled.
    #[serde(flatten)]
    pub total: Count,
    /// `1 − (bad / valid) / (1 − objective)`: below zero when overspent; absent without runs.
    pub budget_remaining: Option<f64>,
    /// Whether the measured ratio meets the objective; absent without runs.
    pub met: Option<bool>,
    pub regions: Vec<RegionCount>,
    /// All regions pooled, per probe account the journey ran as, over the
    /// window: only when it ran as more than one (a user unlike the others
    /// shows here even when the pooled ratio is fine); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountCount>,
    /// One entry per day of the window, oldest first; days without runs included (zero counts).
    pub daily: Vec<Day>,
    pub incidents: Vec<Incident>,
}

/// Runs counted by an SLI: `valid` runs, of which `good` met it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Count {
    pub valid_runs: u64,
    pub good_runs: u64,
    pub bad_runs: u64,
    /// `good_runs / valid_runs`; absent without valid runs.
    pub ratio: Option<f64>,
}

impl Count {
    pub fn new(valid: u64, good: u64) -> Count {
        let good = good.min(valid);
        let ratio = (valid > 0).then(|| good as f64 / valid as f64);
        Count { valid_runs: valid, good_runs: good, bad_runs: valid - good, ratio }
    }
}

impl std::ops::Add for Count {
    type Output = Count;

    fn add(self, other: Count) -> Count {
        Count::new(self.valid_runs + other.valid_runs, self.good_runs + other.good_runs)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionCount {
    pub region: String,
    #[serde(flatten)]
    pub count: Count,
}

/// Runs of one probe account (its user name, the `account` label).
#[derive(Debug, Clone, Serialize)]
pub struct AccountCount {
    pub account: String,
    #[serde(flatten)]
    pub count: Count,
}

/// One day of the window: `(start, start + 24h]`.
#[derive(Debug, Clone, Serialize)]
pub struct Day {
    pub start: DateTime<Utc>,
    #[serde(flatten)]
    pub count: Count,
    pub regions: Vec<RegionCount>,
}

/// Whether an incident paged (enough regions burned) or only some regions burned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// The fast-burn page condition held, with the region quorum.
    Page,
    /// One region burned at page level while fewer than the quorum did (the region-only ticket).
    RegionOnly,
}

/// A period where a burn-rate alert condition held.
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub kind: IncidentKind,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub duration_seconds: i64,
    /// True when the condition still held at the window's end.
    pub ongoing: bool,
    /// The regions that burned during the period.
    pub regions: Vec<String>,
    /// Runs of those regions in the period that counted against the SLI.
    pub bad_runs: u64,
    /// `bad_runs / (budget × valid runs in the window, all regions)`.
    pub budget_spent: f64,
}

/// Federation delay percentiles of one direction seen from one region.
#[derive(Debug, Clone, Serialize)]
pub struct FederationDelay {
    pub source: String,
    pub destination: String,
    pub region: String,
    /// Delay samples (deliveries measured) in the window.
    pub samples: u64,
    pub p50_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
}
