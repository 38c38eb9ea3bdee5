//! The rule groups for a set of journeys, generic over journeys: one set of
//! rules covers every journey, reading each journey's objective from a recorded
//! series, so the rules grow by a few lines per journey (its objectives), not by
//! a copy of every rule. That keeps each generated Kubernetes object well under
//! the 262,144-byte annotation of `kubectl apply` (client-side).
//!
//! | group | every | what |
//! |---|---|---|
//! | `fediprobe-objectives` | 1m | each journey's objectives, as series |
//! | `fediprobe-sli` | 1m | error ratios over 5m–6h, per region and pooled |
//! | `fediprobe-slo` | 2m | error ratios over 1d, 3d and the SLO windows, the error budget left |
//! | `fediprobe-alerts` | 1m | pages, tickets, the instance page, silence, probe errors |
//! | `fediprobe-agent` | 1m | the long-running agents' own health (samples they cannot deliver) |
//!
//! **Evaluation intervals.** Every group runs at most every two minutes, so the
//! newest sample of every recorded series is always within the 5-minute lookback
//! of an instant query (VictoriaMetrics and Prometheus alike), even after a missed
//! evaluation: a dashboard table built from them never loses rows.
//!
//! **Dependencies.** vmalert writes recorded series through remote write, so a
//! rule that reads a series recorded in the same evaluation sees the previous
//! one's. Only constants (the objectives) and the alerts read recorded series; the
//! error budget left is computed from the raw samples in the same expression as the
//! SLO-window ratio, so it never lags the SLI it is derived from.
//!
//! Recorded series (every one labelled `journey`, `instance`, `sli`):
//!
//! | record | what |
//! |---|---|
//! | `journey_region:fediprobe_slo_errors:ratio_<w>` | error ratio over `w`, per region |
//! | `journey:fediprobe_slo_errors:ratio_<w>` | error ratio over `w`, all regions pooled |
//! | `journey:fediprobe_slo_objective:ratio` | the objective (e.g. 0.995), with a `window` label |
//! | `journey:fediprobe_slo_threshold:seconds` | the latency or delay threshold (e.g. 0.5) |
//! | `journey:fediprobe_slo_burn_rate:ratio_<w>` | error ratio over `w` ÷ error budget, all regions pooled |
//! | `journey:fediprobe_slo_error_budget_remaining:ratio` | 1 − (errors over the SLO window ÷ budget) |
//!
//! These are the `fediprobe` scheme's names; the config's `rules:` section can
//! choose others, another instance label, severities, static labels and the
//! runbook annotation's key ([`super::naming`]): every builder asks
//! [`Plan::naming`] for them.
//!
//! Windows: 5m, 30m, 1h, 2h, 6h, 1d, 3d and the journeys' SLO windows (30d unless
//! they say). An SLO window that is none of the others is recorded only for the
//! journeys that use it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::alerts;
use super::model::{RecordingRule, Rule, RuleFile, RuleGroup};
use super::naming::{self, Naming};
use super::slo::{self, BurnWindow, Severity, Sli, prom_duration};
use crate::spec::Journey;
use crate::spec::config::RulesConfig;

/// How often the objectives, the short-window ratios and the alerts are evaluated.
pub const FAST_INTERVAL: Duration = Duration::from_secs(60);
/// How often the long-window ratios and the budget are evaluated: at most half
/// the 5-minute lookback of an instant query, so one missed evaluation leaves no gap.
pub const SLOW_INTERVAL: Duration = Duration::from_secs(120);

/// The per-region error ratio recorded for window `w` (the `fediprobe` scheme's
/// name, the same for every SLI).
pub fn region_ratio_record(w: Duration) -> String {
    naming::region_ratio(Sli::Availability, w).fediprobe
}

/// The error ratio over all regions recorded for window `w` (the `fediprobe` scheme's name).
pub fn ratio_record(w: Duration) -> String {
    naming::ratio(Sli::Availability, w).fediprobe
}

pub const OBJECTIVE_RECORD: &str = "journey:fediprobe_slo_objective:ratio";
/// A journey's latency or delay threshold in seconds, for the alerts' text and the dashboards.
pub const THRESHOLD_RECORD: &str = "journey:fediprobe_slo_threshold:seconds";
pub const BUDGET_REMAINING_RECORD: &str = "journey:fediprobe_slo_error_budget_remaining:ratio";

/// The labels the region ratios keep, and the pooled ones (with the default
/// instance label; the rules ask [`Naming::by_region`] and [`Naming::pooled`]).
pub const BY_REGION: &str = "journey, instance, region";
pub const POOLED: &str = "journey, instance";

/// What the rule builders need: the config's `rules:` section, the journeys,
/// and how much faster than real time the rules run (1 in production).
pub struct Plan<'a> {
    pub rules: &'a RulesConfig,
    /// Sorted by name, so the output is stable.
    pub journeys: Vec<&'a Journey>,
    /// Every window, interval and `for:` is divided by this; record names,
    /// labels and burn factors keep their real-time values. Only tests that
    /// cannot wait an hour for an hour's window set it above 1.
    pub time_divisor: u32,
    /// The names, severities, labels and runbook annotation the rules are
    /// written with: the config's knobs, or the mixin's placeholders.
    pub naming: Naming,
}

impl<'a> Plan<'a> {
    pub fn new(rules: &'a RulesConfig, journeys: &'a [Journey], time_divisor: u32) -> Plan<'a> {
        let mut sorted: Vec<&Journey> = journeys.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        Plan { rules, journeys: sorted, time_divisor: time_divisor.max(1), naming: Naming::from_rules(rules) }
    }

    /// The same plan written with another naming (the mixin's template).
    pub fn with_naming(self, naming: Naming) -> Plan<'a> {
        Plan { naming, ..self }
    }

    /// `name` as the rules spell it.
    pub fn name(&self, name: naming::Name) -> String {
        self.naming.name(name)
    }

    /// A real-time duration as the rules run it.
    pub fn scaled(&self, d: Duration) -> Duration {
        d / self.time_divisor
    }

    /// The range a window `w` is queried over.
    pub fn range(&self, w: Duration) -> Duration {
        self.scaled(w)
    }

    /// The journeys' SLO windows, each once.
    pub fn slo_windows(&self) -> BTreeSet<Duration> {
        self.journeys.iter().map(|j| j.slo.window).collect()
    }

    /// The SLIs some journey has an objective for, in [`Sli::ALL`] order.
    pub fn slis(&self) -> Vec<Sli> {
        Sli::ALL.into_iter().filter(|s| self.journeys.iter().any(|j| has(j, *s))).collect()
    }

    /// Whether `sli` of some journey over `slo_window` has `factor × budget` at
    /// or above 100% for `window` (so its alert must compare with `>= 1`).
    pub fn saturates(&self, sli: Sli, window: &BurnWindow, slo_window: Duration) -> bool {
        self.journeys
            .iter()
            .filter(|j| j.slo.window == slo_window)
            .flat_map(|j| slo::indicators(j))
            .any(|ind| ind.sli == sli && slo::Threshold::new(window.factor(slo_window), ind.objective).inclusive)
    }

    /// Whether some journey has an objective of `sli` over `slo_window`.
    fn uses(&self, sli: Sli, slo_window: Duration) -> bool {
        self.journeys.iter().any(|j| j.slo.window == slo_window && has(j, sli))
    }

    /// Journey names grouped by a duration computed from each journey's period.
    fn by_period(&self, of_period: impl Fn(Duration) -> Duration) -> BTreeMap<Duration, Vec<&'a str>> {
        let mut out: BTreeMap<Duration, Vec<&str>> = BTreeMap::new();
        for j in &self.journeys {
            out.entry(of_period(slo::period(&j.schedule.cron))).or_default().push(j.name.as_str());
        }
        out
    }

    fn interval(&self, d: Duration) -> String {
        prom_duration(self.scaled(d))
    }
}

fn has(journey: &Journey, sli: Sli) -> bool {
    slo::indicators(journey).iter().any(|i| i.sli == sli)
}

/// Every rule group for `journeys`.
pub fn generate(rules: &RulesConfig, journeys: &[Journey]) -> RuleFile {
    generate_scaled(rules, journeys, 1)
}

/// The rules with every window and interval divided by `time_divisor`: the
/// same expressions on a faster clock, for tests of the whole pipeline.
pub fn generate_scaled(rules: &RulesConfig, journeys: &[Journey], time_divisor: u32) -> RuleFile {
    generate_plan(&Plan::new(rules, journeys, time_divisor))
}

/// Every rule group of a plan.
pub fn generate_plan(plan: &Plan<'_>) -> RuleFile {
    let agent = RuleGroup {
        name: "fediprobe-agent".to_owned(),
        interval: plan.interval(FAST_INTERVAL),
        rules: vec![Rule::Alert(alerts::samples_undelivered(plan))],
    };
    RuleFile { groups: vec![objectives_group(plan), sli_group(plan), slo_group(plan), alerts_group(plan), agent] }
}

fn objectives_group(plan: &Plan<'_>) -> RuleGroup {
    let mut rules = Vec::new();
    for journey in &plan.journeys {
        for ind in slo::indicators(journey) {
            let labels = plan.naming.labels(
                None,
                &[
                    ("journey", journey.name.clone()),
                    (plan.naming.instance_label(), journey.instance.clone()),
                    ("sli", ind.sli.label().to_owned()),
                    ("window", prom_duration(journey.slo.window)),
                ],
            );
            if let Some(threshold) = ind.threshold {
                let mut labels = labels.clone();
                labels.remove("window");
                rules.push(Rule::Record(RecordingRule {
                    record: plan.name(naming::threshold(ind.sli)),
                    expr: format!("vector({})", threshold.as_secs_f64()),
                    labels,
                }));
            }
            rules.push(Rule::Record(RecordingRule {
                record: plan.name(naming::objective(ind.sli)),
                expr: format!("vector({})", ind.objective.fraction()),
                labels,
            }));
        }
    }
    rules.extend(super::apdex::objective_records(plan));
    RuleGroup { name: "fediprobe-objectives".into(), interval: plan.interval(FAST_INTERVAL), rules }
}

fn sli_group(plan: &Plan<'_>) -> RuleGroup {
    let mut rules = Vec::new();
    for sli in plan.slis() {
        rules.extend(ratio_records(plan, sli, &slo::SHORT_WINDOWS, None));
    }
    rules.extend(super::apdex::short_records(plan));
    RuleGroup { name: "fediprobe-sli".into(), interval: plan.interval(FAST_INTERVAL), rules }
}

fn slo_group(plan: &Plan<'_>) -> RuleGroup {
    let mut rules = Vec::new();
    let standard: BTreeSet<Duration> = slo::SHORT_WINDOWS.iter().chain(&slo::LONG_WINDOWS).copied().collect();
    for sli in plan.slis() {
        rules.extend(ratio_records(plan, sli, &slo::LONG_WINDOWS, None));
        for w in plan.slo_windows() {
            if !plan.uses(sli, w) {
                continue;
            }
            if !standard.contains(&w) {
                rules.extend(ratio_records(plan, sli, &[w], Some(&alerts::objective_selector(plan, sli, w))));
            }
            rules.push(budget_remaining_record(plan, sli, w));
        }
    }
    rules.extend(super::apdex::long_records(plan));
    RuleGroup { name: "fediprobe-slo".into(), interval: plan.interval(SLOW_INTERVAL), rules }
}

fn alerts_group(plan: &Plan<'_>) -> RuleGroup {
    let mut rules = Vec::new();
    let page_windows: Vec<&BurnWindow> = slo::BURN_WINDOWS.iter().filter(|b| b.severity == Severity::Page).collect();
    let ticket_windows: Vec<&BurnWindow> =
        slo::BURN_WINDOWS.iter().filter(|b| b.severity == Severity::Ticket).collect();
    rules.push(Rule::Alert(alerts::instance_unavailable(plan)));
    for windows in [&page_windows, &ticket_windows] {
        for sli in plan.slis() {
            for w in plan.slo_windows().into_iter().filter(|w| plan.uses(sli, *w)) {
                for window in windows.iter() {
                    rules.push(Rule::Alert(alerts::burn(plan, sli, window, w)));
                }
            }
        }
    }
    if plan.rules.page_quorum > 1 {
        for sli in plan.slis() {
            for w in plan.slo_windows().into_iter().filter(|w| plan.uses(sli, *w)) {
                for window in &page_windows {
                    rules.push(Rule::Alert(alerts::region_only(plan, sli, window, w)));
                }
            }
        }
    }
    for (silence, names) in plan.by_period(|p| alerts::silence(plan, p)) {
        rules.push(Rule::Alert(alerts::absent(plan, &names, silence)));
    }
    for (window, names) in plan.by_period(|p| alerts::probe_error_window(plan, p)) {
        rules.push(Rule::Alert(alerts::probe_errors(plan, &names, window)));
    }
    rules.extend(super::apdex::alerts(plan));
    RuleGroup { name: "fediprobe-alerts".into(), interval: plan.interval(FAST_INTERVAL), rules }
}

/// The error ratio of `sli` over `w` from the raw samples, aggregated `by` the
/// given labels (the instance label copied first when the rules use another).
pub fn raw_error_ratio(plan: &Plan<'_>, sli: Sli, by: &str, w: Duration) -> String {
    slo::error_ratio_with(sli, plan.naming.selector(), by, plan.range(w), &|expr| plan.naming.relabel(expr))
}

/// Per region, then pooled, then the pooled burn rate, for each window; only
/// for the journeys in `only` (a selector of objective series) when given.
///
/// The burn rate (error ratio ÷ the journey's error budget: 1 spends the budget
/// exactly over the SLO window) is what a Mastodon stack's dashboards plot. It
/// is computed from the raw samples, like the ratio beside it, not from the
/// ratio recorded in the same evaluation (which vmalert would only see one
/// evaluation later).
fn ratio_records(plan: &Plan<'_>, sli: Sli, windows: &[Duration], only: Option<&str>) -> Vec<Rule> {
    let labels = plan.naming.labels(None, &[("sli", sli.label().to_owned())]);
    let pooled = plan.naming.pooled();
    let restrict = |expr: String| match only {
        Some(sel) => format!("(\n{}\n)\nand on ({pooled})\n{sel}", alerts::indent(&expr, 2)),
        None => expr,
    };
    let mut out = Vec::new();
    for &w in windows {
        let by_region = raw_error_ratio(plan, sli, &plan.naming.by_region(), w);
        let all = raw_error_ratio(plan, sli, &pooled, w);
        let burn = format!(
            "(\n{}\n)\n/ on ({pooled}) group_left ()\n(1 - {}{{sli=\"{}\"}})",
            alerts::indent(&all, 2),
            plan.name(naming::objective(sli)),
            sli.label()
        );
        for (name, expr) in
            [(naming::region_ratio(sli, w), by_region), (naming::ratio(sli, w), all), (naming::burn_rate(sli, w), burn)]
        {
            out.push(Rule::Record(RecordingRule {
                record: plan.name(name),
                expr: restrict(expr),
                labels: labels.clone(),
            }));
        }
    }
    out
}

/// `1 − (errors over the SLO window ÷ budget)` for the journeys whose objective
/// of `sli` is over `slo_window`, from the raw samples (not from the recorded
/// ratio, which vmalert would only see one evaluation later).
fn budget_remaining_record(plan: &Plan<'_>, sli: Sli, slo_window: Duration) -> Rule {
    let pooled = plan.naming.pooled();
    let ratio = raw_error_ratio(plan, sli, &pooled, slo_window);
    Rule::Record(RecordingRule {
        record: plan.name(naming::budget_remaining(sli)),
        expr: format!(
            "1 - (\n{}\n)\n/ on ({pooled}) group_left ()\n(1 - {})",
            alerts::indent(&ratio, 2),
            alerts::objective_selector(plan, sli, slo_window)
        ),
        labels: plan.naming.labels(None, &[("sli", sli.label().to_owned())]),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::generate::runbooks::AlertKind;
    use crate::spec::parse_journey_str;

    fn journey(slo: &str, schedule: &str) -> Journey {
        let text = format!(
            "name: j\ninstance: main\nschedule: \"{schedule}\"\nslo: {slo}\nsteps:\n  - name: s\n    request: {{ path: /api/v1/instance }}\n"
        );
        let (journey, diagnostics) = parse_journey_str(Path::new("j.yaml"), &text);
        journey.unwrap_or_else(|| panic!("{diagnostics}"))
    }

    fn config(regions: &[&str], quorum: usize) -> RulesConfig {
        RulesConfig {
            regions: regions.iter().map(|r| r.to_string()).collect(),
            page_quorum: quorum,
            ..RulesConfig::defaults_for("eu-west")
        }
    }

    #[test]
    fn one_region_pages_without_a_quorum_and_has_no_region_only_ticket() {
        let file = generate(&config(&["eu-west"], 1), &[journey("{ availability: 99.5% }", "* * * * *")]);
        assert!(file.alerts().all(|a| a.alert != AlertKind::RegionOnlyBurn.name()));
        let page = file.alerts().find(|a| a.alert == AlertKind::AvailabilityFastBurn.name()).unwrap();
        assert!(!page.expr.contains("count by"), "{}", page.expr);
        assert!(file.alerts().all(|a| a.alert != AlertKind::LatencyFastBurn.name()), "no latency objective");
    }

    #[test]
    fn a_quorum_of_two_counts_regions_and_adds_the_region_only_ticket() {
        let file = generate(&config(&["a", "b", "c"], 2), &[journey("{ availability: 99.5% }", "* * * * *")]);
        let page = file.alerts().find(|a| a.alert == AlertKind::AvailabilityFastBurn.name()).unwrap();
        assert!(
            page.expr.contains("count by (journey, instance, sli)") && page.expr.ends_with(">= 2"),
            "{}",
            page.expr
        );
        assert_eq!(file.alerts().filter(|a| a.alert == AlertKind::RegionOnlyBurn.name()).count(), 2);
        let absent = file.alerts().find(|a| a.alert == AlertKind::JourneyAbsent.name()).unwrap();
        assert!(absent.expr.contains("[5m]") && absent.expr.contains("[1d]"), "{}", absent.expr);
    }

    #[test]
    fn rules_are_generic_over_journeys_so_more_journeys_add_only_their_objectives() {
        let one = generate(&config(&["a", "b"], 2), &[journey("{ availability: 99.5% }", "* * * * *")]);
        let two = generate(
            &config(&["a", "b"], 2),
            &[journey("{ availability: 99.5% }", "* * * * *"), {
                let mut j = journey("{ availability: 99% }", "* * * * *");
                j.name = "k".into();
                j
            }],
        );
        assert_eq!(one.alerts().count(), two.alerts().count());
        assert_eq!(one.records().count() + 1, two.records().count(), "one more objective series");
        assert_eq!(
            one.groups.iter().map(|g| g.rules.len()).sum::<usize>() + 1,
            two.groups.iter().map(|g| g.rules.len()).sum::<usize>()
        );
    }

    #[test]
    fn a_90_day_window_scales_the_burn_factors_and_saturates_at_every_run_failing() {
        let file = generate(&config(&["a"], 1), &[journey("{ availability: 95%, window: 90d }", "*/5 * * * *")]);
        let fast = file.alerts().find(|a| a.alert == AlertKind::AvailabilityFastBurn.name()).unwrap();
        assert!(
            fast.expr
                .contains("(43.2 * (1 - journey:fediprobe_slo_objective:ratio{sli=\"availability\",window=\"90d\"}))"),
            "{}",
            fast.expr
        );
        assert!(fast.expr.contains(">= 1\n"), "43.2 × 5% is over 100%: {}", fast.expr);
        assert!(file.records().any(|r| r.record == "journey:fediprobe_slo_errors:ratio_90d"));
        let absent = file.alerts().find(|a| a.alert == AlertKind::JourneyAbsent.name()).unwrap();
        assert!(absent.expr.contains("[15m]"), "{}", absent.expr);
    }

    #[test]
    fn every_group_is_evaluated_within_half_an_instant_querys_lookback() {
        // Prometheus's and VictoriaMetrics's default lookback for an instant
        // query is 5 minutes: with at most 2 minutes between evaluations, a
        // recorded series always has a sample in it, even after one missed
        // evaluation, so the Overview's table never loses rows.
        let file = generate(&config(&["a"], 1), &[journey("{ availability: 99.5% }", "* * * * *")]);
        for group in &file.groups {
            let interval = humantime::parse_duration(&group.interval).unwrap();
            assert!(interval <= Duration::from_secs(150), "{} every {}", group.name, group.interval);
        }
    }

    #[test]
    fn the_budget_is_computed_from_raw_samples_not_from_a_ratio_recorded_in_the_same_evaluation() {
        let file = generate(&config(&["a"], 1), &[journey("{ availability: 99.5% }", "* * * * *")]);
        let budget = file.records().find(|r| r.record == BUDGET_REMAINING_RECORD).unwrap();
        assert!(budget.expr.contains("count_over_time(fediprobe_journey_success[30d])"), "{}", budget.expr);
        assert!(!budget.expr.contains("fediprobe_slo_errors"), "{}", budget.expr);
    }

    #[test]
    fn a_time_divisor_shortens_ranges_and_intervals_but_not_names() {
        let file = generate_scaled(&config(&["a"], 1), &[journey("{ availability: 99.5% }", "* * * * * *")], 60);
        assert!(file.groups.iter().all(|g| g.interval == "1s" || g.interval == "2s"));
        let r = file.records().find(|r| r.record == "journey:fediprobe_slo_errors:ratio_1h").unwrap();
        assert!(r.expr.contains("[1m]"), "{}", r.expr);
    }
}
