//! The Grafana dashboards, generated from the same config and journeys as the
//! rules: *Overview* ([`overview`]), *Journey detail* ([`journey`]),
//! *Federation* ([`federation`]) and *Probes* ([`probes`]).
//!
//! Each is a typed [`model::Dashboard`] (Grafana 10/11 JSON, schema version 39)
//! with a `datasource` variable (any Prometheus-type data source, VictoriaMetrics
//! included) and `region`, `journey` and `instance` variables. Queries are PromQL
//! that Prometheus and VictoriaMetrics both accept, and read the series the rules
//! generator records wherever one exists (`journey:fediprobe_slo_*`), under the
//! same naming knobs as the rules (`rules:` names, severities, instance label,
//! selector: one [`Naming`]), so every panel has data whatever the knobs.
//!
//! Like the rules, generation is a pure function of its input: the same config
//! and journeys give byte-identical files, so the committed copies under
//! `deploy/dashboards/` can be checked for staleness.

pub mod apdex;
pub mod build;
pub mod federation;
pub mod journey;
pub mod model;
pub mod overview;
pub mod probes;

use crate::generate::naming::Naming;
use crate::spec::Journey;
use crate::spec::config::RulesConfig;

pub use model::Dashboard;

/// One generated dashboard and the file name it is written under.
#[derive(Debug, Clone)]
pub struct DashboardFile {
    pub file_name: String,
    pub dashboard: Dashboard,
}

/// Every dashboard for `journeys` (sorted by name first, so the output is
/// stable), reading the series under the config's `rules:` naming knobs.
pub fn generate(rules: &RulesConfig, journeys: &[Journey]) -> Vec<DashboardFile> {
    generate_with(&Naming::from_rules(rules), rules, journeys)
}

/// The same, with `naming` for the record and alert names, severities,
/// instance label and selector (the mixin's template gives placeholders).
pub fn generate_with(naming: &Naming, rules: &RulesConfig, journeys: &[Journey]) -> Vec<DashboardFile> {
    let mut sorted: Vec<Journey> = journeys.to_vec();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    [
        overview::dashboard(naming, &sorted),
        journey::dashboard(naming),
        federation::dashboard(naming),
        probes::dashboard(naming, rules, &sorted),
    ]
    .into_iter()
    .map(|dashboard| DashboardFile { file_name: format!("{}.json", dashboard.uid), dashboard })
    .collect()
}

/// A dashboard as pretty-printed JSON with a final line break.
pub fn render(dashboard: &Dashboard) -> String {
    let mut text = serde_json::to_string_pretty(dashboard).expect("dashboard structs serialise to JSON");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::parse_journey_str;

    fn journey(name: &str, window: &str) -> Journey {
        let text = format!(
            "name: {name}\ninstance: main\nschedule: \"*/5 * * * *\"\nslo: {{ availability: 99.5%, window: {window} }}\nsteps:\n  - name: s\n    request: {{ path: /api/v1/instance }}\n"
        );
        let (journey, diagnostics) = parse_journey_str(Path::new("j.yaml"), &text);
        journey.unwrap_or_else(|| panic!("{diagnostics}"))
    }

    fn rules() -> RulesConfig {
        RulesConfig { regions: vec!["a".into(), "b".into()], page_quorum: 2, ..RulesConfig::defaults_for("a") }
    }

    fn exprs(files: &[DashboardFile]) -> Vec<String> {
        files.iter().flat_map(|f| &f.dashboard.panels).flat_map(|p| &p.targets).map(|t| t.expr.clone()).collect()
    }

    #[test]
    fn every_slo_window_gets_its_own_ratio_and_the_burn_colours_need_one_window() {
        let files = generate(&rules(), &[journey("a", "30d"), journey("b", "90d")]);
        let all = exprs(&files).join("\n");
        assert!(all.contains("journey:fediprobe_slo_errors:ratio_30d"), "{all}");
        assert!(all.contains("journey:fediprobe_slo_errors:ratio_90d"), "{all}");
        let one = render(&generate(&rules(), &[journey("a", "30d")])[0].dashboard);
        assert!(one.contains("14.4"), "the 30d page factor colours the 1h burn column");
    }

    #[test]
    fn every_expected_region_is_shown_even_when_silent() {
        let files = generate(&rules(), &[journey("a", "30d")]);
        let all = exprs(&files).join("\n");
        for region in ["a", "b"] {
            assert!(all.contains(&format!("label_replace(vector(0), \"region\", \"{region}\", \"\", \"\")")));
        }
    }

    #[test]
    fn panels_have_unique_ids_and_stay_on_the_grid() {
        for file in generate(&rules(), &[journey("a", "30d")]) {
            let mut ids: Vec<u32> = file.dashboard.panels.iter().map(|p| p.id).collect();
            ids.dedup();
            assert_eq!(ids.len(), file.dashboard.panels.len(), "{}", file.file_name);
            for p in &file.dashboard.panels {
                assert!(p.grid_pos.x + p.grid_pos.w <= 24, "{} in {}", p.title, file.file_name);
                for t in &p.targets {
                    assert!(!t.ref_id.is_empty() && !t.expr.is_empty(), "{} in {}", p.title, file.file_name);
                }
            }
        }
    }

    #[test]
    fn output_is_deterministic_whatever_the_journey_order() {
        let a = generate(&rules(), &[journey("a", "30d"), journey("b", "90d")]);
        let b = generate(&rules(), &[journey("b", "90d"), journey("a", "30d")]);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(render(&x.dashboard), render(&y.dashboard));
        }
    }
}
