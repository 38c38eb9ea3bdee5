//! `promtool test rules` on the generated rules of the bundled home-timeline
//! journey (every minute, 99.5% availability, 95% within 500 ms), probed from
//! three regions with a page quorum of two, as `deploy/fediprobe.yaml` says.
//!
//! Each scenario builds the per-run samples the probe would push (one sample per
//! run per series) and states which alerts fire when. The unit-test file is
//! generated here, not committed: it is written to `target/tmp/` for reading
//! when a scenario fails.

mod support;

use std::collections::BTreeMap;

use fediprobe::generate::output::to_yaml;
use fediprobe::generate::{self, Format};
use serde_json::{Value, json};
use support::rules::deploy_rules;
use support::tools;

const JOURNEY: &str = "home-timeline";
const INSTANCE: &str = "main";
const REGIONS: [&str; 3] = ["ap-southeast", "eu-west", "us-east"];

const FAST_AVAILABILITY: &str = "FediprobeAvailabilityFastBurn";
const SLOW_AVAILABILITY: &str = "FediprobeAvailabilitySlowBurn";
const FAST_LATENCY: &str = "FediprobeLatencyFastBurn";
const SLOW_LATENCY: &str = "FediprobeLatencySlowBurn";
const REGION_ONLY: &str = "FediprobeRegionOnlyBurn";
const ABSENT: &str = "FediprobeJourneyAbsent";
const PROBE_ERRORS: &str = "FediprobeProbeErrors";
const ALL_ALERTS: [&str; 7] =
    [FAST_AVAILABILITY, SLOW_AVAILABILITY, FAST_LATENCY, SLOW_LATENCY, REGION_ONLY, ABSENT, PROBE_ERRORS];

/// What one run from one region ended in.
#[derive(Clone, Copy, PartialEq)]
enum Run {
    Fast,
    Slow,
    Failure,
    ProbeError,
    /// The region did not report at all.
    Silent,
}

/// A scenario: `minutes` one-minute runs per region, and what to expect.
struct Scenario {
    name: &'static str,
    minutes: usize,
    run: fn(&str, usize) -> Run,
    alert_tests: Vec<Value>,
    expr_tests: Vec<Value>,
}

/// A series' sample for a run, or none.
type SampleOf = fn(Run) -> Option<u8>;

/// The input series the probe would have pushed: one sample per run per series,
/// `_` where a series has no sample for a run.
fn input_series(s: &Scenario) -> Vec<Value> {
    let mut out = Vec::new();
    for region in REGIONS {
        let runs: Vec<Run> = (0..s.minutes).map(|m| (s.run)(region, m)).collect();
        let labels = format!("journey=\"{JOURNEY}\",instance=\"{INSTANCE}\",region=\"{region}\",account=\"fediprobe\"");
        let series: [(String, SampleOf); 5] = [
            (format!("fediprobe_journey_success{{{labels}}}"), |r| match r {
                Run::Fast | Run::Slow => Some(1),
                Run::Failure => Some(0),
                _ => None,
            }),
            (format!("fediprobe_journey_latency_ok{{{labels}}}"), |r| match r {
                Run::Fast => Some(1),
                Run::Slow | Run::Failure => Some(0),
                _ => None,
            }),
            (format!("fediprobe_journey_outcome{{{labels},outcome=\"success\"}}"), |r| {
                matches!(r, Run::Fast | Run::Slow).then_some(1)
            }),
            (format!("fediprobe_journey_outcome{{{labels},outcome=\"failure\",reason=\"http_status\"}}"), |r| {
                (r == Run::Failure).then_some(1)
            }),
            (format!("fediprobe_journey_outcome{{{labels},outcome=\"probe_error\",reason=\"config\"}}"), |r| {
                (r == Run::ProbeError).then_some(1)
            }),
        ];
        for (name, value) in series {
            let values: Vec<String> =
                runs.iter().map(|r| value(*r).map(|v| v.to_string()).unwrap_or_else(|| "_".into())).collect();
            if values.iter().any(|v| v != "_") {
                out.push(json!({ "series": name, "values": values.join(" ") }));
            }
        }
    }
    out
}

fn at(minute: usize) -> String {
    format!("{minute}m")
}

/// `ALERTS` of `alertname` that are firing at `minute`, each given by its
/// labels beyond `alertname`, `journey` and `instance`.
fn firing(alertname: &str, minute: usize, expected: &[&[(&str, &str)]]) -> Value {
    let samples: Vec<Value> = expected
        .iter()
        .map(|labels| {
            let mut all: BTreeMap<&str, &str> = BTreeMap::from([
                ("alertname", alertname),
                ("alertstate", "firing"),
                ("journey", JOURNEY),
                ("instance", INSTANCE),
            ]);
            all.extend(labels.iter().copied());
            let text: Vec<String> = all.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            json!({ "labels": format!("ALERTS{{{}}}", text.join(",")), "value": 1 })
        })
        .collect();
    json!({
        "expr": format!("ALERTS{{alertname=\"{alertname}\",alertstate=\"firing\"}}"),
        "eval_time": at(minute),
        "exp_samples": samples,
    })
}

fn none_firing(alertname: &str, minute: usize) -> Value {
    firing(alertname, minute, &[])
}

/// Annotations as promtool must see them, the values filled in.
fn annotations(summary: &str, description: &str, runbook: &str) -> Value {
    json!({ "summary": summary, "description": description, "runbook_url": format!("runbooks/{runbook}") })
}

// What each alert must say, written out by hand from what it is meant to tell
// whoever is paged (the objective, the windows, the budget share: 14.4× over
// 1h burns 2% of 30 days' budget, 6× over 6h burns 5%), not derived from the
// rule's own template, which would agree with whatever the generator wrote.

/// What a fast-burn page says after its summary: the quorum, the burn rate
/// (14.4× over 1h and 5m, or 6× over 6h and 30m) and the error ratio that is.
/// The summary states the journey's own objective and threshold (looked up from
/// the recorded objective series when the alert fires: the rules are generic).
fn page_description(window: &str) -> String {
    let (factor, share, short) = if window == "1h" { ("14.4", 2, "5m") } else { ("6", 5, "30m") };
    format!(
        "Seen from at least 2 regions; the value is the worst of them. At {factor}× the rate the objective allows \
         (an error ratio above {factor} × (1 − objective)), {share}% of the 30d error budget goes in {window}; the \
         ratio is still that high over the last {short}."
    )
}

fn home_page(window: &str) -> Value {
    annotations(
        &format!(
            "home-timeline: 100% of runs failed over the last {window} (objective: 99.5% of runs succeed over 30d)"
        ),
        &page_description(window),
        "availability-fast-burn.md",
    )
}

fn home_latency_page(window: &str) -> Value {
    annotations(
        &format!(
            "home-timeline: 100% of successful runs took longer than 500ms over the last {window} (objective: 95% \
             of successful runs within 500ms over 30d)"
        ),
        &page_description(window),
        "latency-fast-burn.md",
    )
}

fn eu_west_alone(window: &str) -> Value {
    let (factor, short) = if window == "1h" { ("14.4", "5m") } else { ("6", "30m") };
    annotations(
        &format!(
            "home-timeline: 100% of runs failed over the last {window} from eu-west only (objective: 99.5% of runs \
             succeed over 30d)"
        ),
        &format!(
            "Region eu-west sees the availability of home-timeline burn fast enough to page (error ratio above \
             {factor} × (1 − objective) over {window} and {short}), but fewer than 2 regions see it, so nobody was \
             paged. Either this vantage point has trouble of its own (its network, DNS, the probe), or users near \
             it do."
        ),
        "region-only-burn.md",
    )
}

fn us_east_absent() -> Value {
    annotations(
        "home-timeline: no run reported from us-east for 5m",
        "Region us-east reported runs of home-timeline on main within the last 1d, and has reported no outcome of \
         it, not even a probe error, for 5m (three periods of its schedule, at least 5m). Its SLIs from that region \
         are blind, and the region no longer counts towards the page quorum.",
        "journey-absent.md",
    )
}

fn federation_delay_page(window: &str) -> Value {
    annotations(
        &format!(
            "federation-main-to-peer: 100% of posts were not delivered within 30s over the last {window} \
             (objective: 99% of posts delivered within 30s over 30d)"
        ),
        &page_description(window),
        "federation-delay-fast-burn.md",
    )
}

/// A full `alert_rule_test`: exactly these alerts (labels beyond `alertname`,
/// journey and instance; their annotations) at `minute`.
fn alerts(alertname: &str, minute: usize, expected: &[(&[(&str, &str)], Value)]) -> Value {
    let exp: Vec<Value> = expected
        .iter()
        .map(|(labels, annotations)| {
            let mut all: BTreeMap<String, String> =
                BTreeMap::from([("journey".into(), JOURNEY.into()), ("instance".into(), INSTANCE.into())]);
            all.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            json!({ "exp_labels": all, "exp_annotations": annotations })
        })
        .collect();
    json!({ "eval_time": at(minute), "alertname": alertname, "exp_alerts": exp })
}

fn budget_left_whole(sli: &str) -> Value {
    let labels = format!("instance=\"{INSTANCE}\",journey=\"{JOURNEY}\",sli=\"{sli}\"");
    json!({ "labels": format!("journey:fediprobe_slo_error_budget_remaining:ratio{{{labels}}}"), "value": 1 })
}

fn no_alerts(alertname: &str, minute: usize) -> Value {
    json!({ "eval_time": at(minute), "alertname": alertname, "exp_alerts": [] })
}

const PAGE_1H: &[(&str, &str)] = &[("severity", "page"), ("sli", "availability"), ("window", "1h")];
const PAGE_6H: &[(&str, &str)] = &[("severity", "page"), ("sli", "availability"), ("window", "6h")];
const TICKET_1D: &[(&str, &str)] = &[("severity", "ticket"), ("sli", "availability"), ("window", "1d")];
const TICKET_3D: &[(&str, &str)] = &[("severity", "ticket"), ("sli", "availability"), ("window", "3d")];

/// Minutes of good runs before the trouble in the timing scenarios.
const HISTORY: usize = 60;

/// The two region-only tickets of eu-west.
const EU_WEST_ALONE: [&[(&str, &str)]; 2] = [
    &[("region", "eu-west"), ("severity", "ticket"), ("sli", "availability"), ("window", "1h")],
    &[("region", "eu-west"), ("severity", "ticket"), ("sli", "availability"), ("window", "6h")],
];

// Scenarios that check an alert's full text start failing at minute 0, so that
// every window holds only failing runs and the value is exactly 100% whichever
// end of a range Prometheus includes; the timing scenarios start from good runs.
fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "healthy: every run succeeds fast, no alert, the whole budget left",
            minutes: 121,
            run: |_, _| Run::Fast,
            alert_tests: ALL_ALERTS.iter().map(|a| no_alerts(a, 120)).collect(),
            expr_tests: vec![json!({
                "expr": "journey:fediprobe_slo_error_budget_remaining:ratio",
                "eval_time": "120m",
                "exp_samples": (["availability", "latency"].map(budget_left_whole)),
            })],
        },
        Scenario {
            name: "fast burn: every run fails everywhere; both pages, with the objective and the value, and \
                   never the region-only ticket, even once its 15 minutes have passed",
            minutes: 41,
            run: |_, _| Run::Failure,
            alert_tests: vec![
                alerts(FAST_AVAILABILITY, 15, &[(PAGE_1H, home_page("1h")), (PAGE_6H, home_page("6h"))]),
                no_alerts(REGION_ONLY, 40),
                no_alerts(FAST_LATENCY, 15),
            ],
            // Every region burns at page level at minute 40: only the quorum keeps
            // the region-only ticket away. The instance page fires too: its only
            // journey here burns, so all of its journeys do.
            expr_tests: vec![
                json!({
                    "expr": "ALERTS{alertname=\"FediprobeInstanceUnavailable\",alertstate=\"firing\"}",
                    "eval_time": at(15),
                    "exp_samples": [{
                        "labels": format!("ALERTS{{alertname=\"FediprobeInstanceUnavailable\",alertstate=\"firing\",instance=\"{INSTANCE}\",severity=\"page\"}}"),
                        "value": 1,
                    }],
                }),
                json!({
                    "expr": "count(journey_region:fediprobe_slo_errors:ratio_1h{sli=\"availability\"} > 0.072 \
                             and journey_region:fediprobe_slo_errors:ratio_5m{sli=\"availability\"} > 0.072)",
                    "eval_time": at(40),
                    "exp_samples": [{ "labels": "{}", "value": REGIONS.len() }],
                }),
            ],
        },
        Scenario {
            name: "fast burn after an hour of good runs: no page after one failure, a page within ten minutes",
            minutes: HISTORY + 11,
            run: |_, m| if m < HISTORY { Run::Fast } else { Run::Failure },
            alert_tests: vec![],
            expr_tests: vec![
                none_firing(FAST_AVAILABILITY, HISTORY),
                firing(FAST_AVAILABILITY, HISTORY + 10, &[PAGE_1H, PAGE_6H]),
            ],
        },
        Scenario {
            name: "slow burn: one run in forty fails everywhere; tickets, never a page",
            minutes: 241,
            run: |_, m| if m % 40 == 39 { Run::Failure } else { Run::Fast },
            alert_tests: vec![no_alerts(REGION_ONLY, 240)],
            expr_tests: [60, 120, 180, 240]
                .map(|m| none_firing(FAST_AVAILABILITY, m))
                .into_iter()
                .chain([firing(SLOW_AVAILABILITY, 240, &[TICKET_1D, TICKET_3D])])
                .collect(),
        },
        Scenario {
            name: "one region fails alone: no page, no SLO ticket, the region-only ticket after 15 minutes",
            minutes: 31,
            run: |r, _| if r == "eu-west" { Run::Failure } else { Run::Fast },
            alert_tests: vec![
                alerts(
                    REGION_ONLY,
                    30,
                    &[(EU_WEST_ALONE[0], eu_west_alone("1h")), (EU_WEST_ALONE[1], eu_west_alone("6h"))],
                ),
                no_alerts(FAST_AVAILABILITY, 30),
                no_alerts(SLOW_AVAILABILITY, 30),
            ],
            expr_tests: vec![none_firing(REGION_ONLY, 10), none_firing(FAST_AVAILABILITY, 10)],
        },
        Scenario {
            name: "a region goes silent: the absent-data ticket after three periods, nothing else",
            minutes: 91,
            run: |r, m| if r == "us-east" && m >= 60 { Run::Silent } else { Run::Fast },
            alert_tests: vec![
                no_alerts(ABSENT, 61),
                alerts(
                    ABSENT,
                    70,
                    &[(&[("region", "us-east"), ("severity", "ticket"), ("silence", "5m")], us_east_absent())],
                ),
                no_alerts(FAST_AVAILABILITY, 90),
                no_alerts(REGION_ONLY, 90),
            ],
            expr_tests: vec![],
        },
        Scenario {
            name: "a fresh deploy where one region never reports: no absent-data ticket",
            minutes: 31,
            run: |r, _| if r == "us-east" { Run::Silent } else { Run::Fast },
            alert_tests: vec![no_alerts(ABSENT, 1), no_alerts(ABSENT, 30)],
            expr_tests: vec![],
        },
        Scenario {
            name: "slow responses everywhere: the latency pages, not the availability ones",
            minutes: 11,
            run: |_, _| Run::Slow,
            alert_tests: vec![
                alerts(
                    FAST_LATENCY,
                    10,
                    &[
                        (&[("severity", "page"), ("sli", "latency"), ("window", "1h")], home_latency_page("1h")),
                        (&[("severity", "page"), ("sli", "latency"), ("window", "6h")], home_latency_page("6h")),
                    ],
                ),
                no_alerts(FAST_AVAILABILITY, 10),
            ],
            expr_tests: vec![],
        },
        Scenario {
            name: "probe errors in one region: the probe-error ticket, and they count against no SLO",
            minutes: 121,
            run: |r, m| if r == "eu-west" && m % 5 == 0 { Run::ProbeError } else { Run::Fast },
            alert_tests: vec![no_alerts(FAST_AVAILABILITY, 120), no_alerts(REGION_ONLY, 120)],
            expr_tests: vec![firing(
                PROBE_ERRORS,
                120,
                &[&[("region", "eu-west"), ("severity", "ticket"), ("window", "1h")]],
            )],
        },
    ]
}

#[test]
fn generated_rules_pass_promtool_unit_tests_for_every_scenario() {
    let promtool = tools::promtool();
    let rules = deploy_rules(&[JOURNEY]);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("rules_promtool");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.yaml"), generate::render(&rules, Format::Rules)).unwrap();
    let tests: Vec<Value> = scenarios()
        .into_iter()
        .map(|s| {
            json!({
                "name": s.name,
                "interval": "1m",
                "input_series": input_series(&s),
                "alert_rule_test": s.alert_tests,
                "promql_expr_test": s.expr_tests,
            })
        })
        .collect();
    let file = json!({ "rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests });
    std::fs::write(dir.join("tests.yaml"), to_yaml(&file)).unwrap();
    let output = tools::run(&promtool, &["test", "rules", "tests.yaml"], &dir);
    tools::assert_success(&format!("promtool test rules (files in {})", dir.display()), &output);
}

/// The federation-delay SLI of `federation-main-to-peer` (every 5 minutes, 99% of
/// posts within 30 s): posts that arrive, but late, page on delay and not on
/// availability; posts that arrive in time raise nothing.
#[test]
fn late_federation_pages_on_the_delay_sli_only() {
    const FEDERATION: &str = "federation-main-to-peer";
    let promtool = tools::promtool();
    let rules = deploy_rules(&[FEDERATION]);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("rules_promtool_delay");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.yaml"), generate::render(&rules, Format::Rules)).unwrap();
    // 13 runs, one every 5 minutes, from every region; `late` says whether each
    // arrived after the 30 s threshold.
    let series = |late: bool| -> Vec<Value> {
        REGIONS
            .iter()
            .flat_map(|region| {
                let labels = format!(
                    "journey=\"{FEDERATION}\",instance=\"{INSTANCE}\",region=\"{region}\",account=\"fediprobe\""
                );
                let delay_ok = if late { "0x12" } else { "1x12" };
                [
                    json!({ "series": format!("fediprobe_journey_success{{{labels}}}"), "values": "1x12" }),
                    json!({ "series": format!("fediprobe_journey_latency_ok{{{labels}}}"), "values": "1x12" }),
                    json!({ "series": format!("fediprobe_journey_delay_ok{{{labels}}}"), "values": delay_ok }),
                    json!({
                        "series": format!("fediprobe_journey_outcome{{{labels},outcome=\"success\"}}"),
                        "values": "1x12"
                    }),
                ]
            })
            .collect()
    };
    let alerts_at = |alertname: &str, windows: &[&str]| -> Value {
        let exp: Vec<Value> = windows
            .iter()
            .map(|w| {
                let labels: BTreeMap<String, String> = [
                    ("journey", FEDERATION),
                    ("instance", INSTANCE),
                    ("severity", "page"),
                    ("sli", "delay"),
                    ("window", w),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                let annotations = federation_delay_page(w);
                json!({ "exp_labels": labels, "exp_annotations": annotations })
            })
            .collect();
        json!({ "eval_time": "60m", "alertname": alertname, "exp_alerts": exp })
    };
    let tests = json!([
        {
            "name": "every post arrives, but after the threshold: the delay pages, availability does not",
            "interval": "5m",
            "input_series": series(true),
            "alert_rule_test": [
                alerts_at("FediprobeFederationDelayFastBurn", &["1h", "6h"]),
                alerts_at(FAST_AVAILABILITY, &[]),
            ],
        },
        {
            "name": "every post arrives in time: no delay alert",
            "interval": "5m",
            "input_series": series(false),
            "alert_rule_test": [alerts_at("FediprobeFederationDelayFastBurn", &[])],
        },
    ]);
    let file = json!({ "rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests });
    std::fs::write(dir.join("tests.yaml"), to_yaml(&file)).unwrap();
    let output = tools::run(&promtool, &["test", "rules", "tests.yaml"], &dir);
    tools::assert_success(&format!("promtool test rules (files in {})", dir.display()), &output);
}
