//! The alerting rules of one journey: burn-rate pages and tickets with a region
//! quorum, the region-only ticket, silence, and probe errors.
//!
//! **Quorum.** A burn condition is evaluated per region: region `r` burns when
//! its error ratio exceeds `factor × budget` over both the long and the short
//! window. A burn alert fires only when at least `page_quorum` regions burn
//! (default 2 of 2 or more), so one vantage point's own network trouble does not
//! page; its value is the worst burning region's error ratio over the long
//! window. A region that burns at page level while the quorum is not met opens
//! the separate `FediprobeRegionOnlyBurn` ticket after 15 minutes (long enough
//! for the other regions, which run at their own offsets, to catch up at the
//! start of a real incident).

use std::collections::BTreeMap;
use std::time::Duration;

use super::rules::{BY_REGION, region_ratio_record};
use super::runbooks::AlertKind;
use super::slo::{self, BurnWindow, Indicator, Threshold, prom_duration};
use crate::spec::Journey;
use crate::spec::config::RulesConfig;

/// How long a region must burn alone before the region-only ticket fires.
pub const REGION_ONLY_FOR: Duration = Duration::from_secs(15 * 60);
/// A region is silent after this many periods of its journey without a run.
pub const ABSENT_PERIODS: u32 = 3;
/// The probe-error share is taken over at least this long (and at least
/// [`PROBE_ERROR_MIN_RUNS`] periods), so one error of a rare journey is not a share.
pub const PROBE_ERROR_WINDOW: Duration = Duration::from_secs(3600);
pub const PROBE_ERROR_MIN_RUNS: u32 = 6;

/// How old the oldest undelivered sample of an agent may get before the
/// undelivered-samples ticket: two rule evaluations of the fast burn windows'
/// shortest (5 m), so a backend restart or a short network blip stays quiet, and
/// an outage long enough to leave the SLO recordings blind does not.
pub const UNDELIVERED_AGE: Duration = Duration::from_secs(10 * 60);

/// The template that renders an alert's value as a percentage.
pub const VALUE_PERCENT: &str = "{{ $value | humanizePercentage }}";

/// What the alert builders need to know about one journey.
pub struct JourneyRules<'a> {
    pub rules: &'a RulesConfig,
    pub journey: &'a Journey,
    pub indicators: Vec<Indicator>,
    /// The longest gap between two runs of the journey's schedule.
    pub period: Duration,
}

impl<'a> JourneyRules<'a> {
    pub fn new(rules: &'a RulesConfig, journey: &'a Journey) -> Self {
        let period = slo::period(&journey.schedule.cron);
        JourneyRules { rules, journey, indicators: slo::indicators(journey), period }
    }

    /// The selector of one indicator's recorded series.
    pub fn selector(&self, ind: &Indicator) -> String {
        format!("{{journey=\"{}\",sli=\"{}\"}}", self.journey.name, ind.sli.label())
    }

    fn labels(&self, severity: &str, extra: &[(&str, String)]) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("severity".to_owned(), severity.to_owned()),
            ("journey".to_owned(), self.journey.name.clone()),
        ]);
        labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        labels
    }

    fn annotations(&self, kind: AlertKind, summary: String, description: String) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("summary".to_owned(), summary),
            ("description".to_owned(), description),
            ("runbook_url".to_owned(), kind.runbook_url(&self.rules.runbook_url)),
        ])
    }

    /// "Fetch the home timeline …" after a description, or nothing.
    fn about(&self) -> String {
        match &self.journey.description {
            Some(d) => format!(" The journey: {}", d.trim()),
            None => String::new(),
        }
    }
}

/// `(long > t and short > t)` per region; the value is the long window's ratio.
fn region_condition(ctx: &JourneyRules<'_>, ind: &Indicator, window: &BurnWindow, threshold: Threshold) -> String {
    let sel = ctx.selector(ind);
    let t = threshold.promql();
    format!(
        "(\n  {long}{sel} {t}\n  and\n  {short}{sel} {t}\n)",
        long = region_ratio_record(window.long),
        short = region_ratio_record(window.short),
    )
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}

/// `count by (…) (condition) >= quorum`: the regions that see the burn are enough.
fn quorum(condition: &str, quorum: usize) -> String {
    format!("count by (journey, instance, sli) (\n{}\n) >= {quorum}", indent(condition, 2))
}

/// A page or a ticket: the SLI burns its budget `factor`× too fast over both windows, from enough regions.
pub fn burn(ctx: &JourneyRules<'_>, ind: &Indicator, window: &BurnWindow) -> super::AlertingRule {
    let slo_window = ctx.journey.slo.window;
    let factor = window.factor(slo_window);
    let threshold = Threshold::new(factor, ind.objective);
    let condition = region_condition(ctx, ind, window, threshold);
    let worst = format!("max by (journey, instance, sli) (\n{}\n)", indent(&condition, 2));
    let q = ctx.rules.page_quorum;
    let expr =
        if q > 1 { format!("{worst}\nand on (journey, instance, sli)\n{}", quorum(&condition, q)) } else { worst };
    let kind = AlertKind::burn(ind.sli, window.severity);
    let long = prom_duration(window.long);
    let short = prom_duration(window.short);
    let name = &ctx.journey.name;
    let summary = format!(
        "{name}: {VALUE_PERCENT} {bad} over the last {long} (objective: {objective})",
        bad = ind.bad_words(),
        objective = ind.objective_words(slo_window),
    );
    let seen =
        if q > 1 { format!("Seen from at least {q} regions; the value is the worst of them. ") } else { String::new() };
    let description = format!(
        "{seen}At {factor}× the rate the objective allows (an error ratio {t}), {share}% of the {w} error budget \
         goes in {long}; the ratio is still that high over the last {short}.{about}",
        t = threshold.promql(),
        share = slo::round(window.budget_share(slo_window) * 100.0),
        w = prom_duration(slo_window),
        about = ctx.about(),
    );
    super::AlertingRule {
        alert: kind.name().to_owned(),
        expr,
        for_: None,
        labels: ctx.labels(window.severity.label(), &[("sli", ind.sli.label().to_owned()), ("window", long)]),
        annotations: ctx.annotations(kind, summary, description),
    }
}

/// A ticket: one region burns at page level, but fewer than `page_quorum` regions do.
pub fn region_only(ctx: &JourneyRules<'_>, ind: &Indicator, window: &BurnWindow) -> super::AlertingRule {
    let slo_window = ctx.journey.slo.window;
    let threshold = Threshold::new(window.factor(slo_window), ind.objective);
    let condition = region_condition(ctx, ind, window, threshold);
    let q = ctx.rules.page_quorum;
    let expr = format!("{condition}\nunless on (journey, instance, sli)\n{}", quorum(&condition, q));
    let long = prom_duration(window.long);
    let name = &ctx.journey.name;
    let summary = format!(
        "{name}: {VALUE_PERCENT} {bad} over the last {long} from {{{{ $labels.region }}}} only (objective: {objective})",
        bad = ind.bad_words(),
        objective = ind.objective_words(slo_window),
    );
    let description = format!(
        "Region {{{{ $labels.region }}}} sees the {sli} of {name} burn fast enough to page (error ratio {t} over \
         {long} and {short}), but fewer than {q} regions see it, so nobody was paged. Either this vantage point has \
         trouble of its own (its network, DNS, the probe), or users near it do.{about}",
        sli = ind.sli.label(),
        t = threshold.promql(),
        short = prom_duration(window.short),
        about = ctx.about(),
    );
    super::AlertingRule {
        alert: AlertKind::RegionOnlyBurn.name().to_owned(),
        expr,
        for_: Some(prom_duration(REGION_ONLY_FOR)),
        labels: ctx.labels("ticket", &[("sli", ind.sli.label().to_owned()), ("window", long)]),
        annotations: ctx.annotations(AlertKind::RegionOnlyBurn, summary, description),
    }
}

/// A ticket per region that has not reported the journey for [`ABSENT_PERIODS`] periods.
pub fn absent(ctx: &JourneyRules<'_>) -> super::AlertingRule {
    let period = ctx.period;
    let silence = period * ABSENT_PERIODS;
    let s = prom_duration(silence);
    let j = &ctx.journey;
    let expr = ctx
        .rules
        .regions
        .iter()
        .map(|r| {
            format!(
                "absent_over_time(fediprobe_journey_outcome{{journey=\"{}\",instance=\"{}\",region=\"{r}\"}}[{s}])",
                j.name, j.instance
            )
        })
        .collect::<Vec<_>>()
        .join("\nor\n");
    let summary = format!("{}: no run reported from {{{{ $labels.region }}}} for {s}", j.name);
    let description = format!(
        "The journey runs on the schedule `{}` (at most {} between runs), yet region {{{{ $labels.region }}}} has \
         reported no outcome of it, not even a probe error, for {s}. Its SLIs from that region are blind, and the \
         region no longer counts towards the page quorum.",
        j.schedule.text,
        prom_duration(period),
    );
    super::AlertingRule {
        alert: AlertKind::JourneyAbsent.name().to_owned(),
        expr: format!("{expr}\n"),
        for_: None,
        labels: ctx.labels("ticket", &[]),
        annotations: ctx.annotations(AlertKind::JourneyAbsent, summary, description),
    }
}

/// The window the probe-error share is taken over, for a journey run every `period`.
pub fn probe_error_window(period: Duration) -> Duration {
    PROBE_ERROR_WINDOW.max(period * PROBE_ERROR_MIN_RUNS)
}

/// A ticket when more than `probe_error_ratio` of a region's runs are probe errors.
pub fn probe_errors(ctx: &JourneyRules<'_>) -> super::AlertingRule {
    let j = &ctx.journey;
    let w = prom_duration(probe_error_window(ctx.period));
    let ratio = slo::round(ctx.rules.probe_error_ratio);
    let expr = format!(
        "(\n  sum by ({BY_REGION}) (count_over_time(fediprobe_journey_outcome{{journey=\"{name}\",outcome=\"probe_error\"}}[{w}]))\n  \
         /\n  sum by ({BY_REGION}) (count_over_time(fediprobe_journey_outcome{{journey=\"{name}\"}}[{w}]))\n) > {ratio}",
        name = j.name,
    );
    let summary = format!(
        "{}: {VALUE_PERCENT} of runs from {{{{ $labels.region }}}} ended in probe_error over the last {w} \
         (more than {}%)",
        j.name,
        slo::round(ratio * 100.0)
    );
    let description = "Probe errors are the probe's own failures (bad config or token, the probe's network, its own \
                       rate limit), not the instance's: they count neither for nor against the SLO, so while they \
                       last the SLO is measured on fewer runs, or not at all."
        .to_owned();
    super::AlertingRule {
        alert: AlertKind::ProbeErrors.name().to_owned(),
        expr,
        for_: None,
        labels: ctx.labels("ticket", &[]),
        annotations: ctx.annotations(AlertKind::ProbeErrors, summary, description),
    }
}

/// A ticket per region whose long-running agent holds samples it cannot deliver
/// for [`UNDELIVERED_AGE`], or lost samples within the last hour. From the
/// agent's own `/metrics` (scraped, not pushed: the push is what is failing).
pub fn samples_undelivered(rules: &RulesConfig) -> super::AlertingRule {
    let age = UNDELIVERED_AGE.as_secs();
    let expr = format!(
        "max by (region) (fediprobe_remote_write_oldest_undelivered_age_seconds) > {age}\nor\n\
         sum by (region) (increase(fediprobe_remote_write_dropped_samples_total[1h])) > 0\n"
    );
    let summary = "fediprobe in {{ $labels.region }}: samples not delivered to the metrics backend".to_owned();
    let description = format!(
        "The agent in {{{{ $labels.region }}}} has held a sample it could not push for more than {}, or lost \
         samples in the last hour. Until they arrive, every SLO of that region is measured \
         on fewer runs than it had: the burn alerts see less than users do.",
        prom_duration(UNDELIVERED_AGE)
    );
    let kind = AlertKind::SamplesUndelivered;
    super::AlertingRule {
        alert: kind.name().to_owned(),
        expr,
        for_: None,
        labels: BTreeMap::from([("severity".to_owned(), "ticket".to_owned())]),
        annotations: BTreeMap::from([
            ("summary".to_owned(), summary),
            ("description".to_owned(), description),
            ("runbook_url".to_owned(), kind.runbook_url(&rules.runbook_url)),
        ]),
    }
}
