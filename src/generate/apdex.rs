//! The APDEX rules: each journey's APDEX per region and pooled, recorded over
//! the same windows as the SLIs, its objective and thresholds as series, and a
//! ticket when it stays under its objective. Called from [`super::rules`], one
//! line per rule group; nothing here exists for journeys without `slo.apdex`.
//!
//! **The figure.** Every scored run pushes `fediprobe_journey_apdex_score`: 1
//! (succeeded within T), 0.5 (succeeded within the tolerating bound), 0
//! (slower, or failed however fast); a `probe_error` run pushes none. The APDEX
//! over `w` is
//!
//! ```text
//! sum by (journey, instance, region) (sum_over_time(fediprobe_journey_apdex_score[w]))
//! /
//! sum by (journey, instance, region) (count_over_time(fediprobe_journey_apdex_score[w]))
//! ```
//!
//! which is `(satisfied + tolerating / 2) / runs` exactly: the sum of scores
//! over their count, not an average of per-account averages (two probe
//! accounts with different run counts would weigh wrongly).
//!
//! **The ticket, and why two windows and no `for:`.** APDEX is a level, not a
//! budget that burns, so the alert is a plain comparison with the objective,
//! pooled over regions as the SLO is. It must say "users have been served
//! slowly for a while", not "one run was slow": the 6 h APDEX under the
//! objective says *for a while* (360 runs of a journey run every minute, 36 of
//! one run every ten), and the 30 m APDEX under it too says *still now*, so the
//! ticket resolves within half an hour of the recovery instead of six hours.
//! A `for:` on one window would do neither as well: on a short window it flaps
//! with a journey of few runs (one slow run out of three is 0.83), on a long
//! one it resolves hours late, and its pending state is lost whenever the rule
//! evaluator restarts without restoring it. The same two windows are the
//! workbook's for the 6× burn alert, so a slow spell shows up on the same
//! timescale as an availability burn.
//!
//! **Names and labels** come from the rules' [`super::naming::Naming`], like
//! every other rule's: the record and alert names of the config's scheme
//! (`journey:fediprobe_apdex:ratio_<w>` or `mastodon:journey_apdex:ratio_<w>`),
//! its instance label, severities, static labels, selector and runbook
//! annotation, so the mixin renders these rules from the same code.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::model::{AlertingRule, RecordingRule, Rule};
use super::naming::Name;
use super::rules::Plan;
use super::runbooks::AlertKind;
use super::slo::{self, Severity, prom_duration};
use crate::metrics::JOURNEY_APDEX;
use crate::spec::Journey;

/// The APDEX objective of each journey that has one (e.g. 0.9), with `window`.
pub const OBJECTIVE_RECORD: &str = "journey:fediprobe_apdex_objective:ratio";
/// The satisfied (`bound="satisfied"`) and tolerating (`bound="tolerating"`)
/// thresholds of each journey's APDEX, in seconds.
pub const THRESHOLD_RECORD: &str = "journey:fediprobe_apdex_threshold:seconds";

/// The window the ticket needs the APDEX under its objective over: for a while…
pub const ALERT_LONG: Duration = Duration::from_secs(6 * 3600);
/// …and still now.
pub const ALERT_SHORT: Duration = Duration::from_secs(30 * 60);

/// The objective's name in every scheme.
pub fn objective_name() -> Name {
    Name::new("apdex_objective", OBJECTIVE_RECORD, "mastodon:journey_apdex:objective")
}

/// The thresholds' name in every scheme.
pub fn threshold_name() -> Name {
    Name::new("apdex_threshold", THRESHOLD_RECORD, "mastodon:journey_apdex:threshold_seconds")
}

/// The per-region APDEX over `w` in every scheme.
pub fn region_name(w: Duration) -> Name {
    let w = prom_duration(w);
    Name::new(
        format!("apdex_region_{w}"),
        format!("journey_region:fediprobe_apdex:ratio_{w}"),
        format!("mastodon:journey_apdex_region:ratio_{w}"),
    )
}

/// The pooled APDEX over `w` in every scheme.
pub fn pooled_name(w: Duration) -> Name {
    let w = prom_duration(w);
    Name::new(
        format!("apdex_{w}"),
        format!("journey:fediprobe_apdex:ratio_{w}"),
        format!("mastodon:journey_apdex:ratio_{w}"),
    )
}

/// The APDEX per region recorded over window `w`, as the default scheme (and
/// the dashboards) name it.
pub fn region_record(w: Duration) -> String {
    region_name(w).fediprobe
}

/// The APDEX over all regions recorded over window `w`, as the default scheme names it.
pub fn pooled_record(w: Duration) -> String {
    pooled_name(w).fediprobe
}

/// PromQL for the APDEX over `range`, aggregated `by` the given labels, of
/// the raw samples as `plan`'s naming reads them (its selector, its instance
/// label): the module doc's formula.
pub fn expr(plan: &Plan<'_>, by: &str, range: Duration) -> String {
    let w = prom_duration(range);
    let over =
        |function: &str| plan.naming.relabel(&format!("{function}({JOURNEY_APDEX}{}[{w}])", plan.naming.selector()));
    format!("sum by ({by}) ({})\n/\nsum by ({by}) ({})", over("sum_over_time"), over("count_over_time"))
}

fn apdex_journeys<'a>(plan: &Plan<'a>) -> Vec<&'a Journey> {
    plan.journeys.iter().copied().filter(|j| j.slo.apdex.is_some()).collect()
}

/// Each journey's objective and thresholds: for the `fediprobe-objectives` group.
pub fn objective_records(plan: &Plan<'_>) -> Vec<Rule> {
    let mut out = Vec::new();
    for journey in apdex_journeys(plan) {
        let apdex = journey.slo.apdex.as_ref().expect("filtered on apdex");
        let key = |k: &str, v: String| {
            plan.naming.labels(
                None,
                &[("journey", journey.name.clone()), (plan.naming.instance_label(), journey.instance.clone()), (k, v)],
            )
        };
        for (bound, seconds) in [("satisfied", apdex.threshold), ("tolerating", apdex.tolerating)] {
            out.push(Rule::Record(RecordingRule {
                record: plan.name(threshold_name()),
                expr: format!("vector({})", seconds.as_secs_f64()),
                labels: key("bound", bound.to_owned()),
            }));
        }
        out.push(Rule::Record(RecordingRule {
            record: plan.name(objective_name()),
            expr: format!("vector({})", apdex.objective.fraction()),
            labels: key("window", prom_duration(journey.slo.window)),
        }));
    }
    out
}

/// The APDEX over the short windows (5m–6h): for the `fediprobe-sli` group.
pub fn short_records(plan: &Plan<'_>) -> Vec<Rule> {
    if apdex_journeys(plan).is_empty() {
        return Vec::new();
    }
    records(plan, &slo::SHORT_WINDOWS, None)
}

/// The APDEX over 1d, 3d and the journeys' SLO windows: for the `fediprobe-slo`
/// group. An SLO window none of the others is recorded only for the journeys
/// whose SLO it is.
pub fn long_records(plan: &Plan<'_>) -> Vec<Rule> {
    let journeys = apdex_journeys(plan);
    if journeys.is_empty() {
        return Vec::new();
    }
    let mut out = records(plan, &slo::LONG_WINDOWS, None);
    let standard: BTreeSet<Duration> = slo::SHORT_WINDOWS.iter().chain(&slo::LONG_WINDOWS).copied().collect();
    let windows: BTreeSet<Duration> = journeys.iter().map(|j| j.slo.window).collect();
    for w in windows.into_iter().filter(|w| !standard.contains(w)) {
        let only = format!("{}{{window=\"{}\"}}", plan.name(objective_name()), prom_duration(w));
        out.extend(records(plan, &[w], Some(&only)));
    }
    out
}

/// Per region, then pooled, for each window; only for the journeys in `only`
/// (a selector of objective series) when given.
fn records(plan: &Plan<'_>, windows: &[Duration], only: Option<&str>) -> Vec<Rule> {
    let pooled = plan.naming.pooled();
    let mut out = Vec::new();
    for &w in windows {
        for (name, by) in [(region_name(w), plan.naming.by_region()), (pooled_name(w), pooled.clone())] {
            let apdex = expr(plan, &by, plan.range(w));
            let expr = match only {
                Some(sel) => format!("(\n{}\n)\nand on ({pooled})\n{sel}", super::alerts::indent(&apdex, 2)),
                None => apdex,
            };
            let labels = plan.naming.labels(None, &[]);
            out.push(Rule::Record(RecordingRule { record: plan.name(name), expr, labels }));
        }
    }
    out
}

/// A journey's objective or threshold, looked up when the alert is rendered
/// (the rule covers every journey), e.g. `0.9` or `100ms`.
fn lookup(record: &str, matchers: &str, args: &str, format: &str) -> String {
    format!(
        "{{{{ with printf \"{record}{{{matchers}}}\" {args} | query }}}}\
         {{{{ . | first | value | {format} }}}}{{{{ end }}}}"
    )
}

/// The ticket: the APDEX over [`ALERT_LONG`] and over [`ALERT_SHORT`] both
/// under the journey's objective. For the `fediprobe-alerts` group.
pub fn alerts(plan: &Plan<'_>) -> Vec<Rule> {
    if apdex_journeys(plan).is_empty() {
        return Vec::new();
    }
    let pooled = plan.naming.pooled();
    let objective_record = plan.name(objective_name());
    let under =
        |w: Duration| format!("{}\n< on ({pooled}) group_left ()\n{objective_record}", plan.name(pooled_name(w)));
    let expr = format!(
        "(\n{}\n)\nand on ({pooled})\n(\n{}\n)",
        super::alerts::indent(&under(ALERT_LONG), 2),
        super::alerts::indent(&under(ALERT_SHORT), 2)
    );
    let objective = lookup(&objective_record, "journey=%q", "$labels.journey", "printf \"%.2f\"");
    let threshold_record = plan.name(threshold_name());
    let bound = |name: &str| {
        lookup(&threshold_record, "journey=%q,bound=%q", &format!("$labels.journey \"{name}\""), "humanizeDuration")
    };
    let instance = format!("{{{{ $labels.{} }}}}", plan.naming.instance_label());
    let long = prom_duration(ALERT_LONG);
    let short = prom_duration(ALERT_SHORT);
    let summary = format!(
        "{{{{ $labels.journey }}}}: APDEX {{{{ $value | printf \"%.2f\" }}}} over the last {long}, under its \
         objective of {objective}"
    );
    let description = format!(
        "Pooled over every region, the runs of {{{{ $labels.journey }}}} on {instance} scored an \
         APDEX under {objective} over the last {long} and still over the last {short}: too few runs succeeded \
         within {satisfied} (satisfied), and too many took longer than {tolerating} or failed (frustrated). \
         Runs between the two count half.",
        satisfied = bound("satisfied"),
        tolerating = bound("tolerating"),
    );
    let kind = AlertKind::ApdexLow;
    let (runbook_key, runbook) = plan.naming.runbook(kind);
    vec![Rule::Alert(AlertingRule {
        alert: plan.name(super::naming::alert(kind)),
        expr,
        for_: None,
        labels: plan.naming.labels(Some(Severity::Ticket), &[("window", long)]),
        annotations: BTreeMap::from([
            ("summary".to_owned(), summary),
            ("description".to_owned(), description),
            (runbook_key, runbook),
        ]),
    })]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::config::RulesConfig;
    use crate::spec::parse_journey_str;

    fn journey(name: &str, slo: &str) -> Journey {
        let text = format!(
            "name: {name}\ninstance: main\nschedule: \"* * * * *\"\nslo: {slo}\nsteps:\n  - name: s\n    request: {{ path: /api/v1/instance }}\n"
        );
        let (journey, diagnostics) = parse_journey_str(Path::new("j.yaml"), &text);
        journey.unwrap_or_else(|| panic!("{diagnostics}"))
    }

    #[test]
    fn journeys_without_apdex_get_no_apdex_rules() {
        let rules = RulesConfig::defaults_for("a");
        let journeys = [journey("j", "{ availability: 99.5% }")];
        let plan = Plan::new(&rules, &journeys, 1);
        let all = [objective_records(&plan), short_records(&plan), long_records(&plan), alerts(&plan)];
        assert!(all.iter().all(Vec::is_empty));
    }

    #[test]
    fn the_rules_knobs_name_and_label_the_apdex_rules_too() {
        use crate::spec::config::{NameScheme, Severities};
        let rules = RulesConfig {
            names: NameScheme::Mastodon,
            severities: Severities { page: "critical".into(), ticket: "warning".into() },
            instance_label: "namespace".into(),
            labels: BTreeMap::from([("team".to_owned(), "social".to_owned())]),
            ..RulesConfig::defaults_for("a")
        };
        let journeys = [journey("j", "{ availability: 99.5%, apdex: { threshold: 100ms, objective: 0.9 } }")];
        let plan = Plan::new(&rules, &journeys, 1);
        for rule in [objective_records(&plan), short_records(&plan), long_records(&plan)].concat() {
            let Rule::Record(r) = rule else { unreachable!() };
            assert!(r.record.starts_with("mastodon:journey_apdex"), "{}", r.record);
            assert_eq!(r.labels.get("team").map(String::as_str), Some("social"), "{r:?}");
            assert!(!r.expr.contains("instance,") && !r.labels.contains_key("instance"), "{r:?}");
        }
        let Some(Rule::Alert(alert)) = alerts(&plan).pop() else { panic!("no APDEX alert") };
        assert_eq!(alert.alert, "MastodonJourneyApdexWarning");
        assert_eq!(alert.labels["severity"], "warning");
        assert!(alert.expr.contains("on (journey, namespace)"), "{}", alert.expr);
    }

    #[test]
    fn a_default_tolerating_bound_is_four_times_the_threshold_and_odd_windows_are_restricted() {
        let rules = RulesConfig::defaults_for("a");
        let journeys = [
            journey("j", "{ availability: 99.5%, apdex: { threshold: 250ms, objective: 0.9 }, window: 90d }"),
            journey("k", "{ availability: 99.5% }"),
        ];
        let plan = Plan::new(&rules, &journeys, 1);
        let objectives = objective_records(&plan);
        let exprs: Vec<String> = objectives
            .iter()
            .map(|r| match r {
                Rule::Record(r) => format!("{} {:?} {}", r.record, r.labels.values().collect::<Vec<_>>(), r.expr),
                Rule::Alert(_) => unreachable!(),
            })
            .collect();
        assert!(exprs[0].ends_with("vector(0.25)") && exprs[0].contains("satisfied"), "{exprs:?}");
        assert!(exprs[1].ends_with("vector(1)") && exprs[1].contains("tolerating"), "{exprs:?}");
        assert!(exprs[2].ends_with("vector(0.9)") && exprs[2].contains("90d"), "{exprs:?}");
        let long = long_records(&plan);
        let Some(Rule::Record(r)) = long.iter().find(|r| matches!(r, Rule::Record(r) if r.record.ends_with("_90d")))
        else {
            panic!("no 90d record in {long:?}")
        };
        assert!(r.expr.contains("[90d]") && r.expr.contains("window=\"90d\""), "{}", r.expr);
    }
}
