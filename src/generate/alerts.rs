//! The alerting rules, generic over journeys: each rule covers every journey at
//! once and reads a journey's objective from its recorded objective series
//! (`journey:fediprobe_slo_objective:ratio`), so ten journeys cost no more rule
//! text than one (a Kubernetes object must stay under the 262,144-byte
//! annotation of client-side apply).
//!
//! - **Burn pages and tickets** per journey and SLI, as the SRE workbook has them
//!   (both windows over `factor × budget`, no `for:`: the short window gives the
//!   fast reset).
//! - **`FediprobeInstanceUnavailable`**, the page for a whole-instance outage: at
//!   least half of an instance's journeys burn their availability budget at page
//!   level. It carries only `instance`, so an outage is one alert however many
//!   journeys it breaks; the Alertmanager example inhibits the per-journey alerts
//!   of that instance while it fires.
//! - **Quorum.** A burn condition is evaluated per region: region `r` burns when
//!   its error ratio exceeds `factor × budget` over both the long and the short
//!   window. A burn alert fires only when at least `page_quorum` regions burn, so
//!   one vantage point's own network trouble does not page; its value is the
//!   worst burning region's error ratio over the long window. A region that burns
//!   at page level while the quorum is not met opens the `FediprobeRegionOnlyBurn`
//!   ticket after 15 minutes.
//! - **Silence**: `FediprobeJourneyAbsent` fires for a region that reported a
//!   journey within the last day and then stopped; a fresh deploy, with no earlier
//!   data, raises nothing.
//! - **Probe errors**: too large a share of a region's runs ended in `probe_error`.
//!
//! The conditions are built by [`BurnQuery`], which the report uses too, with the
//! recorded ratios replaced by the raw per-run expressions they record: one
//! definition of a burn, asked of the backend.

use std::collections::BTreeMap;
use std::time::Duration;

use super::naming::{self, Naming};
use super::rules::Plan;
use super::runbooks::AlertKind;
use super::slo::{self, BurnWindow, Severity, Sli, prom_duration};

/// How long a region must burn alone before the region-only ticket fires.
pub const REGION_ONLY_FOR: Duration = Duration::from_secs(15 * 60);
/// A region is silent after this many periods of its journey without a run…
pub const ABSENT_PERIODS: u32 = 3;
/// …and never after less than this: a CronJob's pod can take a minute to start
/// and a run's samples are pushed after the run.
pub const ABSENT_MIN_SILENCE: Duration = Duration::from_secs(5 * 60);
/// …nor, on a scaled-down clock, under this much real time: a run's samples take
/// seconds to be pushed and to become searchable, however fast the rules run.
pub const ABSENT_FLOOR: Duration = Duration::from_secs(30);
/// How far back a region must have reported for its silence to be news. A
/// region silent for longer than this is no longer an alert (it was one for a
/// day); a region that never reported, such as at a fresh deploy, never is.
pub const ABSENT_MEMORY: Duration = Duration::from_secs(86_400);
/// The probe-error share is taken over at least this long (and at least
/// [`PROBE_ERROR_MIN_RUNS`] periods), so one error of a rare journey is not a share.
pub const PROBE_ERROR_WINDOW: Duration = Duration::from_secs(3600);
pub const PROBE_ERROR_MIN_RUNS: u32 = 6;
/// The share of an instance's journeys that must burn at page level for the
/// instance-level page.
pub const INSTANCE_SHARE: f64 = 0.5;

/// How old the oldest undelivered sample of an agent may get before the
/// undelivered-samples ticket: two rule evaluations of the fast burn windows'
/// shortest (5 m), so a backend restart or a short network blip stays quiet, and
/// an outage long enough to leave the SLO recordings blind does not.
pub const UNDELIVERED_AGE: Duration = Duration::from_secs(10 * 60);

/// The template that renders an alert's value as a percentage.
pub const VALUE_PERCENT: &str = "{{ $value | humanizePercentage }}";
const JOURNEY: &str = "{{ $labels.journey }}";
const REGION: &str = "{{ $labels.region }}";

/// The template that names the alerting instance, under the rules' instance label.
fn instance(naming: &Naming) -> String {
    format!("{{{{ $labels.{} }}}}", naming.instance_label())
}

/// The labels a journey-level condition over the raw samples keeps (the
/// report's); the rules' own are [`Naming::journey_key`].
pub const JOURNEY_KEY: &str = "journey, instance, sli";

/// Where a burn condition reads its ratios and its threshold from.
pub enum BurnQuery {
    /// The rules: recorded per-region ratios, the threshold from each journey's
    /// recorded objective for SLO window `slo_window`.
    Recorded { slo_window: Duration, saturates: bool },
    /// The report: one journey's ratios straight from the per-run samples (so
    /// that history from before the rules existed is judged the same way), its
    /// objective as a number.
    Raw { journey: String, objective: f64, slo_window: Duration },
}

impl BurnQuery {
    /// The labels a journey-level condition keeps.
    fn key(&self, plan: &Plan<'_>) -> String {
        match self {
            BurnQuery::Recorded { .. } => plan.naming.journey_key(),
            BurnQuery::Raw { .. } => JOURNEY_KEY.to_owned(),
        }
    }

    fn slo_window(&self) -> Duration {
        match self {
            BurnQuery::Recorded { slo_window, .. } | BurnQuery::Raw { slo_window, .. } => *slo_window,
        }
    }

    /// The per-region error ratio of `sli` over `window`.
    fn ratio(&self, plan: &Plan<'_>, sli: Sli, window: Duration) -> String {
        match self {
            BurnQuery::Recorded { .. } => {
                format!("{}{{sli=\"{}\"}}", plan.name(naming::region_ratio(sli, window)), sli.label())
            }
            BurnQuery::Raw { journey, .. } => {
                let sel = format!("{{journey=\"{journey}\"}}");
                // The same labels as the recorded series, so the conditions match alike.
                format!(
                    "label_replace(\n{},\n\"sli\", \"{}\", \"\", \"\")",
                    indent(&slo::error_ratio(sli, &sel, super::rules::BY_REGION, plan.range(window)), 2),
                    sli.label()
                )
            }
        }
    }

    /// `ratio` above `factor × budget`: compared with each journey's recorded
    /// objective, or with the number. When `factor × budget` reaches 100% the
    /// alert means "every run failed" (a loose objective over a long window):
    /// `>= 1` then, as `> 1` could never hold.
    fn exceeds(&self, plan: &Plan<'_>, ratio: &str, sli: Sli, factor: f64) -> String {
        match self {
            BurnQuery::Recorded { slo_window, saturates } => {
                let objective = objective_selector(plan, sli, *slo_window);
                let key = self.key(plan);
                let above = format!("{ratio}\n> on ({key}) group_left ()\n({factor} * (1 - {objective}))");
                if *saturates {
                    format!(
                        "(\n{}\nor\n{}\n)",
                        indent(&above, 2),
                        indent(&format!("{ratio} >= 1\nand on ({key})\n{objective}"), 2)
                    )
                } else {
                    above
                }
            }
            BurnQuery::Raw { objective, .. } => {
                let t = slo::Threshold::new(
                    factor,
                    crate::spec::values::Objective::new(*objective).expect("a valid objective"),
                );
                format!("{ratio}\n{}", t.promql())
            }
        }
    }

    /// Per region: the long and the short window both over the threshold; the
    /// value is the long window's ratio.
    pub fn region_condition(&self, plan: &Plan<'_>, sli: Sli, window: &BurnWindow) -> String {
        let factor = window.factor(self.slo_window());
        let long = self.exceeds(plan, &self.ratio(plan, sli, window.long), sli, factor);
        let short = self.exceeds(plan, &self.ratio(plan, sli, window.short), sli, factor);
        format!("(\n{}\n)\nand\n(\n{}\n)", indent(&long, 2), indent(&short, 2))
    }

    /// Per journey: enough regions burn. The value is the worst region's ratio.
    pub fn journey_condition(&self, plan: &Plan<'_>, sli: Sli, window: &BurnWindow) -> String {
        let condition = self.region_condition(plan, sli, window);
        let key = self.key(plan);
        let worst = format!("max by ({key}) (\n{}\n)", indent(&condition, 2));
        let q = plan.rules.page_quorum;
        if q > 1 { format!("{worst}\nand on ({key})\n{}", quorum(&key, &condition, q)) } else { worst }
    }

    /// Per region, for the region-only ticket: this region burns, the quorum does not.
    pub fn region_only_condition(&self, plan: &Plan<'_>, sli: Sli, window: &BurnWindow) -> String {
        let condition = self.region_condition(plan, sli, window);
        let key = self.key(plan);
        format!("{condition}\nunless on ({key})\n{}", quorum(&key, &condition, plan.rules.page_quorum))
    }
}

/// The recorded objectives of `sli` for journeys whose SLO window is `slo_window`.
pub fn objective_selector(plan: &Plan<'_>, sli: Sli, slo_window: Duration) -> String {
    format!("{}{{sli=\"{}\",window=\"{}\"}}", plan.name(naming::objective(sli)), sli.label(), prom_duration(slo_window))
}

pub fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}

/// `count by (…) (condition) >= quorum`: the regions that see the burn are enough.
fn quorum(key: &str, condition: &str, quorum: usize) -> String {
    format!("count by ({key}) (\n{}\n) >= {quorum}", indent(condition, 2))
}

fn labels(plan: &Plan<'_>, severity: Severity, extra: &[(&str, String)]) -> BTreeMap<String, String> {
    plan.naming.labels(Some(severity), extra)
}

fn annotations(plan: &Plan<'_>, kind: AlertKind, summary: String, description: String) -> BTreeMap<String, String> {
    let (runbook_key, runbook) = plan.naming.runbook(kind);
    BTreeMap::from([("summary".to_owned(), summary), ("description".to_owned(), description), (runbook_key, runbook)])
}

/// The `alert:` name of `kind`.
fn alert_name(plan: &Plan<'_>, kind: AlertKind) -> String {
    plan.name(naming::alert(kind))
}

/// A template that reads one of the alerting journey's recorded SLO facts
/// (`record` for its `journey` and `sli`) at notification time and formats it
/// with `format`: the rules are generic, so the journey's own objective and
/// threshold are looked up, not written into each rule.
fn lookup(record: String, format: &str) -> String {
    format!(
        "{{{{ with printf \"{record}{{journey=%q,sli=%q}}\" $labels.journey $labels.sli | query }}}}\
         {{{{ . | first | value | {format} }}}}{{{{ end }}}}"
    )
}

/// The alerting journey's objective, e.g. `99.5%`.
fn objective(plan: &Plan<'_>, sli: Sli) -> String {
    lookup(plan.name(naming::objective(sli)), "humanizePercentage")
}

/// The alerting journey's latency or delay threshold, e.g. `500ms`.
fn threshold(plan: &Plan<'_>, sli: Sli) -> String {
    lookup(plan.name(naming::threshold(sli)), "humanizeDuration")
}

/// What counts against an SLI, in words, e.g. `of runs failed`.
pub fn bad_words(plan: &Plan<'_>, sli: Sli) -> String {
    match sli {
        Sli::Availability => "of runs failed".to_owned(),
        Sli::Latency => format!("of successful runs took longer than {}", threshold(plan, sli)),
        Sli::Delay => format!("of posts were not delivered within {}", threshold(plan, sli)),
    }
}

/// The objective in words, e.g. `99.5% of runs succeed over 30d`.
pub fn objective_words(plan: &Plan<'_>, sli: Sli, slo_window: Duration) -> String {
    let w = prom_duration(slo_window);
    let objective = objective(plan, sli);
    match sli {
        Sli::Availability => format!("{objective} of runs succeed over {w}"),
        Sli::Latency => format!("{objective} of successful runs within {} over {w}", threshold(plan, sli)),
        Sli::Delay => format!("{objective} of posts delivered within {} over {w}", threshold(plan, sli)),
    }
}

/// A page or a ticket for every journey whose objective of `sli` is over `slo_window`.
pub fn burn(plan: &Plan<'_>, sli: Sli, window: &BurnWindow, slo_window: Duration) -> super::AlertingRule {
    let query = BurnQuery::Recorded { slo_window, saturates: plan.saturates(sli, window, slo_window) };
    let factor = window.factor(slo_window);
    let kind = AlertKind::burn(sli, window.severity);
    let long = prom_duration(window.long);
    let short = prom_duration(window.short);
    let w = prom_duration(slo_window);
    let q = plan.rules.page_quorum;
    let summary = format!(
        "{JOURNEY}: {VALUE_PERCENT} {} over the last {long} (objective: {})",
        bad_words(plan, sli),
        objective_words(plan, sli, slo_window)
    );
    let seen =
        if q > 1 { format!("Seen from at least {q} regions; the value is the worst of them. ") } else { String::new() };
    let description = format!(
        "{seen}At {factor}× the rate the objective allows (an error ratio above {factor} × (1 − objective)), \
         {share}% of the {w} error budget goes in {long}; the ratio is still that high over the last {short}.",
        share = slo::round(window.budget_share(slo_window) * 100.0),
    );
    super::AlertingRule {
        alert: alert_name(plan, kind),
        expr: query.journey_condition(plan, sli, window),
        for_: None,
        labels: labels(plan, window.severity, &[("sli", sli.label().to_owned()), ("window", long)]),
        annotations: annotations(plan, kind, summary, description),
    }
}

/// The page for a whole-instance outage: at least [`INSTANCE_SHARE`] of the
/// instance's journeys with an availability objective burn it at page level.
pub fn instance_unavailable(plan: &Plan<'_>) -> super::AlertingRule {
    let mut burning = Vec::new();
    for slo_window in plan.slo_windows() {
        let query = BurnQuery::Recorded {
            slo_window,
            saturates: slo::BURN_WINDOWS.iter().any(|b| plan.saturates(Sli::Availability, b, slo_window)),
        };
        for window in slo::BURN_WINDOWS.iter().filter(|b| b.severity == Severity::Page) {
            burning.push(query.journey_condition(plan, Sli::Availability, window));
        }
    }
    let burning = burning.join("\nor\n");
    let by = plan.naming.instance_label();
    let expr = format!(
        "count by ({by}) (\n{}\n)\n/ on ({by})\ncount by ({by}) ({}{{sli=\"availability\"}})\n>= {INSTANCE_SHARE}",
        indent(&burning, 2),
        plan.name(naming::objective(Sli::Availability))
    );
    let instance = instance(&plan.naming);
    let kind = AlertKind::InstanceUnavailable;
    let summary = format!(
        "{instance} is failing its users: {VALUE_PERCENT} of its journeys burn their availability budget fast enough to page"
    );
    let description = format!(
        "At least {}% of the journeys probing {instance} fail fast enough to page on their own. This is one \
         incident, not one per journey: the per-journey alerts of this instance are inhibited while this one \
         fires (see the Alertmanager example). Check the instance as a whole first (is it up, is its proxy or \
         database down), then the Overview dashboard for the journeys still failing once it is back.",
        slo::round(INSTANCE_SHARE * 100.0)
    );
    super::AlertingRule {
        alert: alert_name(plan, kind),
        expr,
        for_: None,
        labels: labels(plan, Severity::Page, &[]),
        annotations: annotations(plan, kind, summary, description),
    }
}

/// A ticket: one region burns at page level, but fewer than `page_quorum` regions do.
pub fn region_only(plan: &Plan<'_>, sli: Sli, window: &BurnWindow, slo_window: Duration) -> super::AlertingRule {
    let query = BurnQuery::Recorded { slo_window, saturates: plan.saturates(sli, window, slo_window) };
    let long = prom_duration(window.long);
    let q = plan.rules.page_quorum;
    let summary = format!(
        "{JOURNEY}: {VALUE_PERCENT} {} over the last {long} from {REGION} only (objective: {})",
        bad_words(plan, sli),
        objective_words(plan, sli, slo_window)
    );
    let description = format!(
        "Region {REGION} sees the {sli} of {JOURNEY} burn fast enough to page (error ratio above {factor} × \
         (1 − objective) over {long} and {short}), but fewer than {q} regions see it, so nobody was paged. Either \
         this vantage point has trouble of its own (its network, DNS, the probe), or users near it do.",
        sli = sli.label(),
        factor = window.factor(slo_window),
        short = prom_duration(window.short),
    );
    super::AlertingRule {
        alert: alert_name(plan, AlertKind::RegionOnlyBurn),
        expr: query.region_only_condition(plan, sli, window),
        for_: Some(prom_duration(plan.scaled(REGION_ONLY_FOR))),
        labels: labels(plan, Severity::Ticket, &[("sli", sli.label().to_owned()), ("window", long)]),
        annotations: annotations(plan, AlertKind::RegionOnlyBurn, summary, description),
    }
}

/// The silence after which a journey run every `period` is absent.
pub fn silence(plan: &Plan<'_>, period: Duration) -> Duration {
    (period * ABSENT_PERIODS).max(plan.scaled(ABSENT_MIN_SILENCE)).max(ABSENT_FLOOR)
}

/// A ticket per region that reported the journeys of `names` within
/// [`ABSENT_MEMORY`] and has not for `silence`.
pub fn absent(plan: &Plan<'_>, names: &[&str], silence: Duration) -> super::AlertingRule {
    let s = prom_duration(silence);
    let sel = format!("{{journey=~\"{}\"{}}}", names.join("|"), plan.naming.more_matchers());
    let by = plan.naming.by_region();
    let seen = |range: Duration| {
        let present = format!("present_over_time(fediprobe_journey_outcome{sel}[{}])", prom_duration(range));
        format!("max by ({by}) ({})", plan.naming.relabel(&present))
    };
    let expr = format!("{}\nunless\n{}", seen(plan.scaled(ABSENT_MEMORY).max(silence * 2)), seen(silence));
    let summary = format!("{JOURNEY}: no run reported from {REGION} for {s}");
    let description = format!(
        "Region {REGION} reported runs of {JOURNEY} on {instance} within the last {memory}, and has reported no \
         outcome of it, not even a probe error, for {s} (three periods of its schedule, at least {min}). Its SLIs \
         from that region are blind, and the region no longer counts towards the page quorum.",
        memory = prom_duration(plan.scaled(ABSENT_MEMORY)),
        min = prom_duration(plan.scaled(ABSENT_MIN_SILENCE)),
        instance = instance(&plan.naming),
    );
    super::AlertingRule {
        alert: alert_name(plan, AlertKind::JourneyAbsent),
        expr,
        for_: None,
        labels: labels(plan, Severity::Ticket, &[("silence", s)]),
        annotations: annotations(plan, AlertKind::JourneyAbsent, summary, description),
    }
}

/// The window the probe-error share is taken over, for a journey run every `period`.
pub fn probe_error_window(plan: &Plan<'_>, period: Duration) -> Duration {
    plan.scaled(PROBE_ERROR_WINDOW).max(period * PROBE_ERROR_MIN_RUNS)
}

/// A ticket when more than `probe_error_ratio` of a region's runs of one of
/// `names` are probe errors over `window`.
pub fn probe_errors(plan: &Plan<'_>, names: &[&str], window: Duration) -> super::AlertingRule {
    let w = prom_duration(window);
    let ratio = slo::round(plan.rules.probe_error_ratio);
    let by = plan.naming.by_region();
    let matchers = format!("journey=~\"{}\"{}", names.join("|"), plan.naming.more_matchers());
    let errors = plan
        .naming
        .relabel(&format!("count_over_time(fediprobe_journey_outcome{{{matchers},outcome=\"probe_error\"}}[{w}])"));
    let all = plan.naming.relabel(&format!("count_over_time(fediprobe_journey_outcome{{{matchers}}}[{w}])"));
    let expr = format!("(\n  sum by ({by}) ({errors})\n  /\n  sum by ({by}) ({all})\n) > {ratio}");
    let summary = format!(
        "{JOURNEY}: {VALUE_PERCENT} of runs from {REGION} ended in probe_error over the last {w} (more than {}%)",
        slo::round(ratio * 100.0)
    );
    let description = "Probe errors are the probe's own failures (bad config or token, the probe's network, its own \
                       rate limit), not the instance's: they count neither for nor against the SLO, so while they \
                       last the SLO is measured on fewer runs, or not at all."
        .to_owned();
    super::AlertingRule {
        alert: alert_name(plan, AlertKind::ProbeErrors),
        expr,
        for_: None,
        labels: labels(plan, Severity::Ticket, &[("window", w)]),
        annotations: annotations(plan, AlertKind::ProbeErrors, summary, description),
    }
}

/// A ticket per region whose long-running agent holds samples it cannot deliver
/// for [`UNDELIVERED_AGE`], or lost samples within the last hour. From the
/// agent's own `/metrics` (scraped, not pushed: the push is what is failing).
pub fn samples_undelivered(plan: &Plan<'_>) -> super::AlertingRule {
    let age = UNDELIVERED_AGE.as_secs();
    let sel = plan.naming.selector();
    let expr = format!(
        "max by (region) (fediprobe_remote_write_oldest_undelivered_age_seconds{sel}) > {age}\nor\n\
         sum by (region) (increase(fediprobe_remote_write_dropped_samples_total{sel}[1h])) > 0\n"
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
        alert: alert_name(plan, kind),
        expr,
        for_: None,
        labels: labels(plan, Severity::Ticket, &[]),
        annotations: annotations(plan, kind, summary, description),
    }
}
