//! The rule groups for a set of journeys: per journey, a group evaluated every
//! minute (SLI ratios over 5m–6h, pages, the region and data alerts) and one
//! evaluated every five minutes (ratios over 1d, 3d and the SLO window, the
//! error budget left, tickets); and one `fediprobe-agent` group for the
//! long-running agents' own health (samples they cannot deliver).
//!
//! Recorded series (every one labelled `journey`, `instance`, `sli`):
//!
//! | record | what |
//! |---|---|
//! | `journey_region:fediprobe_slo_errors:ratio_<w>` | error ratio over `w`, per region |
//! | `journey:fediprobe_slo_errors:ratio_<w>` | error ratio over `w`, all regions pooled |
//! | `journey:fediprobe_slo_objective:ratio` | the objective (e.g. 0.995), with a `window` label |
//! | `journey:fediprobe_slo_error_budget_remaining:ratio` | 1 − (errors over the SLO window ÷ budget) |
//!
//! Windows: 5m, 30m, 1h, 2h, 6h, 1d, 3d and the journey's SLO window (30d unless it says).

use std::collections::BTreeMap;
use std::time::Duration;

use super::alerts::{self, JourneyRules};
use super::model::{RecordingRule, Rule, RuleFile, RuleGroup};
use super::slo::{self, Indicator, Severity, prom_duration};
use crate::spec::Journey;
use crate::spec::config::RulesConfig;

/// How often the fast group (ratios up to 6h, pages) is evaluated.
pub const FAST_INTERVAL: Duration = Duration::from_secs(60);
/// How often the slow group (ratios over days, budget, tickets) is evaluated.
pub const SLOW_INTERVAL: Duration = Duration::from_secs(300);

/// The per-region error ratio recorded for window `w`.
pub fn region_ratio_record(w: Duration) -> String {
    format!("journey_region:fediprobe_slo_errors:ratio_{}", prom_duration(w))
}

/// The error ratio over all regions recorded for window `w`.
pub fn ratio_record(w: Duration) -> String {
    format!("journey:fediprobe_slo_errors:ratio_{}", prom_duration(w))
}

pub const OBJECTIVE_RECORD: &str = "journey:fediprobe_slo_objective:ratio";
pub const BUDGET_REMAINING_RECORD: &str = "journey:fediprobe_slo_error_budget_remaining:ratio";

/// The labels the region ratios keep, and the pooled ones.
pub const BY_REGION: &str = "journey, instance, region";
pub const POOLED: &str = "journey, instance";

/// Every rule group for `journeys` (in name order, so the output is stable).
pub fn generate(rules: &RulesConfig, journeys: &[Journey]) -> RuleFile {
    let mut sorted: Vec<&Journey> = journeys.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut groups = Vec::new();
    for journey in sorted {
        let ctx = JourneyRules::new(rules, journey);
        groups.push(fast_group(&ctx));
        groups.push(slow_group(&ctx));
    }
    groups.push(RuleGroup {
        name: "fediprobe-agent".to_owned(),
        interval: prom_duration(FAST_INTERVAL),
        rules: vec![Rule::Alert(alerts::samples_undelivered(rules))],
    });
    RuleFile { groups }
}

fn fast_group(ctx: &JourneyRules<'_>) -> RuleGroup {
    let mut rules = Vec::new();
    for ind in &ctx.indicators {
        rules.push(objective_record(ctx, ind));
        rules.extend(ratio_records(ctx, ind, &slo::SHORT_WINDOWS));
    }
    for ind in &ctx.indicators {
        for window in slo::BURN_WINDOWS.iter().filter(|b| b.severity == Severity::Page) {
            rules.push(Rule::Alert(alerts::burn(ctx, ind, window)));
        }
    }
    if ctx.rules.page_quorum > 1 {
        for ind in &ctx.indicators {
            for window in slo::BURN_WINDOWS.iter().filter(|b| b.severity == Severity::Page) {
                rules.push(Rule::Alert(alerts::region_only(ctx, ind, window)));
            }
        }
    }
    rules.push(Rule::Alert(alerts::absent(ctx)));
    rules.push(Rule::Alert(alerts::probe_errors(ctx)));
    RuleGroup { name: format!("fediprobe-{}", ctx.journey.name), interval: prom_duration(FAST_INTERVAL), rules }
}

fn slow_group(ctx: &JourneyRules<'_>) -> RuleGroup {
    let mut rules = Vec::new();
    let mut windows = slo::LONG_WINDOWS.to_vec();
    if !windows.contains(&ctx.journey.slo.window) {
        windows.push(ctx.journey.slo.window);
    }
    for ind in &ctx.indicators {
        rules.extend(ratio_records(ctx, ind, &windows));
        rules.push(budget_remaining_record(ctx, ind));
    }
    for ind in &ctx.indicators {
        for window in slo::BURN_WINDOWS.iter().filter(|b| b.severity == Severity::Ticket) {
            rules.push(Rule::Alert(alerts::burn(ctx, ind, window)));
        }
    }
    RuleGroup { name: format!("fediprobe-{}-slow", ctx.journey.name), interval: prom_duration(SLOW_INTERVAL), rules }
}

/// The static labels of a journey's recorded series. `journey` repeats what the
/// expression already carries; stated here, it keeps each rule unique within the
/// file (`promtool check rules` lints same-name, same-label rules as duplicates).
fn sli_labels(ctx: &JourneyRules<'_>, ind: &Indicator) -> BTreeMap<String, String> {
    BTreeMap::from([("journey".to_owned(), ctx.journey.name.clone()), ("sli".to_owned(), ind.sli.label().to_owned())])
}

/// Per region, then pooled, for each window.
fn ratio_records(ctx: &JourneyRules<'_>, ind: &Indicator, windows: &[Duration]) -> Vec<Rule> {
    let name = &ctx.journey.name;
    let mut out = Vec::new();
    for &w in windows {
        out.push(Rule::Record(RecordingRule {
            record: region_ratio_record(w),
            expr: ind.ratio(name, BY_REGION, w),
            labels: sli_labels(ctx, ind),
        }));
        out.push(Rule::Record(RecordingRule {
            record: ratio_record(w),
            expr: ind.ratio(name, POOLED, w),
            labels: sli_labels(ctx, ind),
        }));
    }
    out
}

/// The objective as a series, so that dashboards need not repeat the journey files.
fn objective_record(ctx: &JourneyRules<'_>, ind: &Indicator) -> Rule {
    let mut labels = sli_labels(ctx, ind);
    labels.insert("instance".into(), ctx.journey.instance.clone());
    labels.insert("window".into(), prom_duration(ctx.journey.slo.window));
    Rule::Record(RecordingRule {
        record: OBJECTIVE_RECORD.to_owned(),
        expr: format!("vector({})", ind.objective.fraction()),
        labels,
    })
}

fn budget_remaining_record(ctx: &JourneyRules<'_>, ind: &Indicator) -> Rule {
    Rule::Record(RecordingRule {
        record: BUDGET_REMAINING_RECORD.to_owned(),
        expr: format!(
            "1 - (\n  {}{}\n  /\n  {}\n)",
            ratio_record(ctx.journey.slo.window),
            ctx.selector(ind),
            slo::round(ind.objective.budget())
        ),
        labels: sli_labels(ctx, ind),
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
        assert_eq!(absent.expr.matches("absent_over_time").count(), 3);
        assert!(absent.expr.contains("[3m]"), "{}", absent.expr);
    }

    #[test]
    fn a_90_day_window_scales_the_burn_factors() {
        let file = generate(&config(&["a"], 1), &[journey("{ availability: 99.5%, window: 90d }", "*/5 * * * *")]);
        let thresholds: Vec<&str> = file
            .alerts()
            .filter(|a| a.alert.contains("AvailabilityFastBurn") || a.alert.contains("AvailabilitySlowBurn"))
            .map(|a| a.expr.split("} ").nth(1).unwrap().lines().next().unwrap())
            .collect();
        assert_eq!(thresholds, ["> 0.216", "> 0.09", "> 0.045", "> 0.015"]);
        assert!(file.records().any(|r| r.record == "journey:fediprobe_slo_errors:ratio_90d"));
        let absent = file.alerts().find(|a| a.alert == AlertKind::JourneyAbsent.name()).unwrap();
        assert!(absent.expr.contains("[15m]"), "{}", absent.expr);
    }
}
