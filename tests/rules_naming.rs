//! The rules' knobs at work, under `promtool test rules`: the burn-rate series
//! hold the error ratio ÷ the budget, and with the Mastodon stack's knobs
//! (`tests/mixin/mastodon.yaml`: `mastodon` names, critical/warning, static
//! labels, `namespace`, the `runbook` annotation, a selector) the same failure
//! pages under the stack's names and labels, reads only the selected series,
//! and its summary still finds the journey's objective.
//!
//! The home-timeline journey (every minute, 99.5% availability over 30d) from
//! three regions; every expected value is written out by hand.

mod support;

use std::path::Path;

use fediprobe::generate::output::to_yaml;
use fediprobe::generate::{self, Format};
use fediprobe::spec;
use serde_json::{Value, json};
use support::rules::root;
use support::tools;

const JOURNEY: &str = "home-timeline";
const REGIONS: [&str; 3] = ["ap-southeast", "eu-west", "us-east"];

/// The rules of `config` (a path in the repository) for the home-timeline journey.
fn rules_of(config: &str) -> String {
    let loaded = spec::load_config(&root().join(config)).unwrap_or_else(|d| panic!("{config}: {d}"));
    let journeys: Vec<_> = loaded.journeys.into_iter().filter(|j| j.name == JOURNEY).collect();
    generate::render(&generate::generate(&loaded.config.rules, &journeys), Format::Rules)
}

/// 90 one-minute runs per region: `failing` regions fail every run, the others
/// succeed; `extra` labels on every series.
fn runs(failing: &[&str], extra: &str) -> Vec<Value> {
    REGIONS
        .iter()
        .flat_map(|region| {
            let labels = format!("journey=\"{JOURNEY}\",instance=\"main\",region=\"{region}\",account=\"fediprobe\"{extra}");
            let success = if failing.contains(region) { "0x90" } else { "1x90" };
            [
                json!({ "series": format!("fediprobe_journey_success{{{labels}}}"), "values": success }),
                json!({ "series": format!("fediprobe_journey_outcome{{{labels},outcome=\"success\"}}"), "values": "1x90" }),
            ]
        })
        .collect()
}

fn promtool_test(name: &str, rules: &str, test: Value) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.yaml"), rules).unwrap();
    let file = json!({ "rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [test] });
    std::fs::write(dir.join("tests.yaml"), to_yaml(&file)).unwrap();
    let output = tools::run(&tools::promtool(), &["test", "rules", "tests.yaml"], &dir);
    tools::assert_success(&format!("promtool test rules (files in {})", dir.display()), &output);
}

#[test]
fn the_burn_rate_is_the_pooled_error_ratio_over_the_budget() {
    // One region of three fails every run: the pooled error ratio is 1/3, and
    // over a 0.5% budget that is a burn rate of 66.7 (×3 = 200).
    let expr_tests: Vec<Value> = ["5m", "30m", "1h"]
        .iter()
        .map(|w| {
            json!({
                "expr": format!("round(3 * journey:fediprobe_slo_burn_rate:ratio_{w})"),
                "eval_time": "80m",
                "exp_samples": [{
                    "labels": format!("{{instance=\"main\",journey=\"{JOURNEY}\",sli=\"availability\"}}"),
                    "value": 200,
                }],
            })
        })
        .collect();
    let test = json!({ "interval": "1m", "input_series": runs(&["eu-west"], ""), "promql_expr_test": expr_tests });
    promtool_test("rules_naming_burn_rate", &rules_of("deploy/fediprobe.yaml"), test);
}

#[test]
fn with_the_mastodon_knobs_a_failure_pages_under_the_stacks_names_and_labels() {
    let selected = ",cluster=\"eu\",job=\"fediprobe\"";
    // Another deployment's series, all good, that the selector must leave out:
    // read with them, the ratio would be 1/2 and the burn rate 100, not 200.
    let mut input = runs(&REGIONS, selected);
    input.extend(runs(&[], ",cluster=\"us\",job=\"fediprobe\""));
    let labels = |window: &str| {
        json!({
            "journey": JOURNEY, "namespace": "main", "sli": "availability", "window": window,
            "severity": "critical", "service": "mastodon-probe", "team": "sre",
        })
    };
    let annotations = |window: &str| {
        let (factor, share, short) = if window == "1h" { ("14.4", 2, "5m") } else { ("6", 5, "30m") };
        json!({
            "summary": format!("{JOURNEY}: 100% of runs failed over the last {window} (objective: 99.5% of runs succeed over 30d)"),
            "description": format!(
                "Seen from at least 2 regions; the value is the worst of them. At {factor}× the rate the objective \
                 allows (an error ratio above {factor} × (1 − objective)), {share}% of the 30d error budget goes in \
                 {window}; the ratio is still that high over the last {short}."
            ),
            "runbook": "https://git.example/ops/fediprobe/-/blob/main/runbooks/availability-fast-burn.md",
        })
    };
    let pages: Vec<Value> =
        ["1h", "6h"].iter().map(|w| json!({ "exp_labels": labels(w), "exp_annotations": annotations(w) })).collect();
    let test = json!({
        "interval": "1m",
        "input_series": input,
        "alert_rule_test": [{
            "eval_time": "80m",
            "alertname": "MastodonJourneyAvailabilityCritical",
            "exp_alerts": pages,
        }, {
            "eval_time": "80m",
            "alertname": "FediprobeAvailabilityFastBurn",
            "exp_alerts": [],
        }],
        "promql_expr_test": [{
            "expr": "round(mastodon:journey_availability:burn_rate_1h)",
            "eval_time": "80m",
            "exp_samples": [{
                "labels": format!("{{journey=\"{JOURNEY}\",namespace=\"main\",service=\"mastodon-probe\",sli=\"availability\",team=\"sre\"}}"),
                "value": 200,
            }],
        }],
    });
    promtool_test("rules_naming_mastodon", &rules_of("tests/mixin/mastodon.yaml"), test);
}
