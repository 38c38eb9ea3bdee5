//! APDEX end to end against a hand-computed fixture: the per-run scores the
//! probe pushes, the APDEX the generated rules record in a real
//! VictoriaMetrics (through vmalert's replay), the figure `fediprobe report`
//! writes, and the ticket under promtool.
//!
//! The fixture is a journey with `apdex: { threshold: 100ms, objective: 0.9 }`
//! (so tolerating up to 4 × 100 ms = 400 ms), and runs chosen so that an
//! off-by-one anywhere changes the figures: runs of exactly T and exactly 4T
//! (`≤`, not `<`), a fast failure (frustrated, not satisfied), and probe errors
//! (no score, not a frustrated run).
//!
//! | eu-west run | outcome | duration | score |
//! |---|---|---|---|
//! | 1 | success | 50 ms | 1 |
//! | 2 | success | 100 ms (= T) | 1 |
//! | 3 | success | 100.001 ms | 0.5 |
//! | 4 | success | 400 ms (= 4T) | 0.5 |
//! | 5 | success | 400.001 ms | 0 |
//! | 6 | failure | 20 ms | 0 |
//! | 7 | probe_error | 30 ms | — |
//! | 8 | success | 250 ms | 0.5 |
//!
//! eu-west: 3.5 / 7 = **0.5** (with `<` for T: 3/7; with `<` for 4T: 3/7;
//! the probe error as a frustrated run: 3.5/8; the failure by its duration: 4.5/7).
//!
//! | us-east run | outcome | duration | score |
//! |---|---|---|---|
//! | 1 | success | 80 ms | 1 |
//! | 2 | success | 99 ms | 1 |
//! | 3 | failure | 5 s | 0 |
//! | 4 | probe_error | 1 ms | — |
//! | 5 | success | 399 ms | 0.5 |
//! | 6 | success | 100 ms (= T) | 1 |
//!
//! us-east: 3.5 / 5 = **0.7**. Both regions pooled: 7 / 12. Runs are five
//! minutes apart, the last 4.5 minutes before the end, so over the last 30
//! minutes (`(end − 30m, end]`) eu-west has runs 3 to 8, i.e. 1.5 / 5 = **0.3**,
//! and us-east all six, 3.5 / 5.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fediprobe::generate::{self, Format, Rule, RuleFile, RuleGroup};
use fediprobe::metrics;
use fediprobe::runner::{Outcome, Reason, RunResult, Runner, apdex_zone};
use fediprobe::sandbox::{Fault, Sandbox, SandboxConfig};
use fediprobe::spec::Journey;
use fediprobe::spec::journey::ApdexZone;
use serde_json::{Value, json};
use support::journeys;
use support::tools;
use support::victoria::{VictoriaMetrics, free_port};

const JOURNEY: &str = "timeline";
const MS: Duration = Duration::from_millis(1);
const MICRO: Duration = Duration::from_micros(1);

/// The fixture journey: T = 100 ms, tolerating 400 ms (the default 4T), objective 0.9.
fn journey() -> Journey {
    journeys::parse(&format!(
        "name: {JOURNEY}\ninstance: main\nschedule: '*/5 * * * *'\n\
         slo: {{ availability: 99%, apdex: {{ threshold: 100ms, objective: 0.9 }} }}\n\
         steps:\n  - name: home\n    request: {{ path: /api/v1/timelines/home }}\n"
    ))
}

/// One fixture run: its outcome, its duration, and the score computed by hand.
struct Run {
    outcome: Outcome,
    duration: Duration,
    score: Option<f64>,
}

fn run(outcome: Outcome, duration: Duration, score: Option<f64>) -> Run {
    Run { outcome, duration, score }
}

/// The tables in the module doc, oldest run first.
fn fixture() -> Vec<(&'static str, Vec<Run>)> {
    use Outcome::{Failure, ProbeError, Success};
    vec![
        (
            "eu-west",
            vec![
                run(Success, 50 * MS, Some(1.0)),
                run(Success, 100 * MS, Some(1.0)),
                run(Success, 100 * MS + MICRO, Some(0.5)),
                run(Success, 400 * MS, Some(0.5)),
                run(Success, 400 * MS + MICRO, Some(0.0)),
                run(Failure, 20 * MS, Some(0.0)),
                run(ProbeError, 30 * MS, None),
                run(Success, 250 * MS, Some(0.5)),
            ],
        ),
        (
            "us-east",
            vec![
                run(Success, 80 * MS, Some(1.0)),
                run(Success, 99 * MS, Some(1.0)),
                run(Failure, 5000 * MS, Some(0.0)),
                run(ProbeError, MS, None),
                run(Success, 399 * MS, Some(0.5)),
                run(Success, 100 * MS, Some(1.0)),
            ],
        ),
    ]
}

/// Hand-computed APDEX figures: per region over the whole history and over the
/// last 30 minutes, and pooled.
const EU_WEST: f64 = 3.5 / 7.0;
const US_EAST: f64 = 3.5 / 5.0;
const POOLED: f64 = 7.0 / 12.0;
const EU_WEST_30M: f64 = 1.5 / 5.0;
const POOLED_30M: f64 = 5.0 / 10.0;

/// Runs are five minutes apart, the last one this long before the end.
const PERIOD_S: i64 = 300;
const LAST_BEFORE_END_S: i64 = 270;

/// The run as the runner would report it, started at `started_s`.
fn result(journey: &Journey, run: &Run, region_index: usize, started_s: i64) -> RunResult {
    let started_at = chrono::DateTime::from_timestamp(started_s, 0).unwrap();
    RunResult {
        account: format!("probe{region_index}"),
        reason: match run.outcome {
            Outcome::Success => None,
            Outcome::Failure => Some(Reason::HttpStatus),
            Outcome::ProbeError => Some(Reason::RateLimited),
        },
        apdex: apdex_zone(&journey.slo, run.outcome, run.duration),
        failed_step: (run.outcome != Outcome::Success).then(|| "home".to_owned()),
        ..RunResult::without_steps(&journey.name, &journey.instance, started_at, run.duration, run.outcome)
    }
}

/// Every fixture run's samples, as `fediprobe::metrics` makes them, with the
/// history ending at `end_s`.
fn samples(end_s: i64) -> Vec<fediprobe::sink::Sample> {
    let journey = journey();
    let mut out = Vec::new();
    for (i, (region, runs)) in fixture().iter().enumerate() {
        for (k, run) in runs.iter().enumerate() {
            let started = end_s - LAST_BEFORE_END_S - (runs.len() - 1 - k) as i64 * PERIOD_S;
            out.extend(metrics::samples_for_run(&result(&journey, run, i, started), region));
        }
    }
    out
}

fn score_of(samples: &[fediprobe::sink::Sample]) -> Option<f64> {
    let name =
        |s: &&fediprobe::sink::Sample| s.labels.iter().any(|(k, v)| k == "__name__" && v == metrics::JOURNEY_APDEX);
    let scores: Vec<f64> = samples.iter().filter(name).map(|s| s.value).collect();
    assert!(scores.len() <= 1, "one score sample per run at most: {scores:?}");
    scores.first().copied()
}

#[test]
fn each_run_scores_as_computed_by_hand() {
    let journey = journey();
    for (i, (region, runs)) in fixture().iter().enumerate() {
        for (k, run) in runs.iter().enumerate() {
            let samples = metrics::samples_for_run(&result(&journey, run, i, 0), region);
            assert_eq!(score_of(&samples), run.score, "{region} run {} ({:?})", k + 1, run.duration);
        }
    }
    // Without an APDEX objective, no run has a score.
    let plain = journeys::with_steps("plain", "steps:\n  - name: s\n    request: { path: / }\n");
    let samples = metrics::samples_for_run(&result(&plain, &run(Outcome::Success, MS, None), 0, 0), "eu-west");
    assert_eq!(score_of(&samples), None);
}

/// Lines of Prometheus text format (what VictoriaMetrics imports) for `samples`.
fn as_text(samples: &[fediprobe::sink::Sample]) -> String {
    let mut text = String::new();
    for s in samples {
        let name = &s.labels.iter().find(|(k, _)| k == "__name__").unwrap().1;
        let labels: Vec<String> =
            s.labels.iter().filter(|(k, _)| k != "__name__").map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        text.push_str(&format!("{name}{{{}}} {} {}\n", labels.join(","), s.value, s.timestamp_ms));
    }
    text
}

/// The generated APDEX records of the fixture journey over 30m and 1h, in one
/// group: what vmalert's replay evaluates.
fn apdex_records(config: &fediprobe::spec::config::RulesConfig) -> RuleFile {
    let file = generate::generate(config, &[journey()]);
    let rules: Vec<Rule> = file
        .records()
        .filter(|r| r.record.contains("fediprobe_apdex:ratio_30m") || r.record.contains("fediprobe_apdex:ratio_1h"))
        .cloned()
        .map(Rule::Record)
        .collect();
    assert_eq!(rules.len(), 4, "per region and pooled, over 30m and 1h");
    RuleFile { groups: vec![RuleGroup { name: "apdex".to_owned(), interval: "1m".to_owned(), rules }] }
}

/// The value of `query` at `at_s` for each series, keyed by its `region` (empty when pooled).
fn values_by_region(vm: &VictoriaMetrics, query: &str, at_s: i64) -> Vec<(String, f64)> {
    let path = format!("/api/v1/query?query={}&time={at_s}", urlencode(query));
    let (status, body) = vm.get(&path).expect("the query answers");
    assert_eq!(status, 200, "{query}: {body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let mut out: Vec<(String, f64)> = body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let region = r["metric"]["region"].as_str().unwrap_or_default().to_owned();
            (region, r["value"][1].as_str().unwrap().parse::<f64>().unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `actual` has exactly the regions of `expected`, each with its figure to the
/// twelve significant digits VictoriaMetrics stores (7/12 comes back as
/// 0.583333333333); the wrong figures the fixture guards against differ by far more.
fn assert_figures(actual: &[(String, f64)], expected: &[(&str, f64)], what: &str) {
    let same = actual.len() == expected.len()
        && actual.iter().zip(expected).all(|((r, v), (er, ev))| r == er && (v - ev).abs() < 1e-9);
    assert!(same, "{what}: got {actual:?}, computed by hand {expected:?}");
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The fixture pushed into a real VictoriaMetrics; the generated rules replayed
/// by vmalert over it; the recorded APDEX read back at the end; then
/// `fediprobe report` over the same history.
#[test]
fn recorded_apdex_and_the_report_match_the_hand_computation() {
    let vm = VictoriaMetrics::start_with(free_port(), &["-search.disableCache"]);
    let end_s = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 / 60 * 60;
    let samples = samples(end_s);
    vm.import_prometheus(&as_text(&samples));
    let scored = samples.iter().filter(|s| score_of(std::slice::from_ref(s)).is_some()).count();
    assert_eq!(scored, 12, "7 scored runs from eu-west and 5 from us-east");
    vm.wait_for_value(&format!("sum(count_over_time({}[2h]))", metrics::JOURNEY_APDEX), end_s, 12.0);

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let loaded = fediprobe::spec::load_config(&config).unwrap_or_else(|d| panic!("{d}"));
    let records = apdex_records(&loaded.config.rules);
    support::vmalert::replay(&vm, &records, dir.path(), end_s - 120, end_s);
    vm.wait_for_value("count(count_over_time(journey:fediprobe_apdex:ratio_1h[5m]))", end_s, 1.0);
    vm.force_flush();

    let at = |query: &str| values_by_region(&vm, query, end_s);
    assert_figures(
        &at("journey_region:fediprobe_apdex:ratio_1h"),
        &[("eu-west", EU_WEST), ("us-east", US_EAST)],
        "per region over the last hour: every run",
    );
    assert_figures(&at("journey:fediprobe_apdex:ratio_1h"), &[("", POOLED)], "pooled: 7 / 12");
    assert_figures(
        &at("journey_region:fediprobe_apdex:ratio_30m"),
        &[("eu-west", EU_WEST_30M), ("us-east", US_EAST)],
        "over the last 30 minutes eu-west's first two runs are out",
    );
    assert_figures(&at("journey:fediprobe_apdex:ratio_30m"), &[("", POOLED_30M)], "pooled over 30 minutes");

    // The report over the day ending at `end` (rounded down to 5 minutes, which
    // `end` already is) says the same.
    let out = dir.path().join("report");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fediprobe"))
        .args(["report", "-c", config.to_str().unwrap(), "--from-url", &vm.base_url(), "--window", "1d"])
        .args(["--end", &rfc3339(end_s / 300 * 300), "--out", out.to_str().unwrap()])
        .env_remove("FEDIPROBE_LOG")
        .output()
        .unwrap();
    tools::assert_success("fediprobe report", &output);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let apdex = &report["journeys"][0]["apdex"];
    assert_eq!(apdex["runs"], 12, "{apdex}");
    assert_eq!(apdex["score_sum"].as_f64(), Some(7.0), "{apdex}");
    assert_eq!(apdex["score"].as_f64(), Some(POOLED), "{apdex}");
    assert_eq!(apdex["met"], false, "7/12 is under 0.9");
    assert_eq!((apdex["threshold_seconds"].as_f64(), apdex["tolerating_seconds"].as_f64()), (Some(0.1), Some(0.4)));
    let regions: Vec<(String, f64, u64)> = apdex["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["region"].as_str().unwrap().to_owned(), r["score"].as_f64().unwrap(), r["runs"].as_u64().unwrap()))
        .collect();
    assert_eq!(regions, vec![("eu-west".to_owned(), EU_WEST, 7), ("us-east".to_owned(), US_EAST, 5)]);
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(markdown.contains("| timeline | apdex | an APDEX of at least 0.9"), "{markdown}");
    assert!(markdown.contains("0.58 ✗ missed over 12 scored runs"), "7/12 = 0.583…, shown as 0.58: {markdown}");
    assert!(markdown.contains("| eu-west | 0.50 | 7 |") && markdown.contains("| us-east | 0.70 | 5 |"), "{markdown}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<h3>APDEX: an APDEX of at least 0.9"), "{html}");

    // The Overview's row beside the server-side view: without the stack's
    // series its server queries find nothing (no error) and the probes' lines
    // are there; once the stack records them, they appear beside.
    let overview = generate::dashboards::generate(&loaded.config.rules, &[journey()])
        .into_iter()
        .find(|f| f.dashboard.uid == "fediprobe-overview")
        .unwrap();
    let panel = overview.dashboard.panels.iter().find(|p| p.title == "APDEX: probes and the edge").unwrap();
    let exprs: Vec<String> =
        panel.targets.iter().map(|t| t.expr.replace("$journey", ".*").replace("$instance", ".*")).collect();
    assert_figures(&at(&exprs[0]), &[("", POOLED)], "the probes' APDEX is drawn");
    assert_figures(&at(&exprs[1]), &[], "no server-side series: nothing drawn, and no error");
    vm.import_prometheus(&format!("mastodon:edge_apdex:overall{{namespace=\"mastodon\"}} 0.93 {}\n", end_s * 1000));
    assert_figures(&at(&exprs[1]), &[("", 0.93)], "the edge's APDEX beside the probes'");
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A config probing the fixture journey from eu-west and us-east.
fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("journeys")).unwrap();
    let text = format!(
        "name: {JOURNEY}\ninstance: main\nschedule: '*/5 * * * *'\n\
         slo: {{ availability: 99%, apdex: {{ threshold: 100ms, objective: 0.9 }} }}\n\
         steps:\n  - name: home\n    request: {{ path: /api/v1/timelines/home }}\n"
    );
    std::fs::write(dir.join("journeys").join(format!("{JOURNEY}.yaml")), text).unwrap();
    let config = dir.join("fediprobe.yaml");
    std::fs::write(
        &config,
        "probe:\n  region: eu-west\ninstances:\n  main:\n    url: https://mastodon.example\n    account: fediprobe\n    \
         token: { env: FEDIPROBE_MAIN_TOKEN }\njourneys: [journeys/]\nrules:\n  regions: [eu-west, us-east]\n",
    )
    .unwrap();
    config
}

/// The runner files real runs against the sandbox: durations are only ever
/// bounded from below (a fault's added latency), never timed.
#[tokio::test]
async fn the_runner_scores_real_runs_and_leaves_probe_errors_unscored() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.expect("sandbox starts");
    let runner = Runner::new(fediprobe::sandbox::probe_targets(&sandbox));
    let home = |apdex: &str| {
        journeys::bundled_edited("home-timeline", |text| {
            let start = text.find("  apdex:").expect("home-timeline states an APDEX objective");
            let end = start + text[start..].find('\n').unwrap();
            format!("{}  apdex: {apdex}{}", &text[..start], &text[end..])
        })
    };
    let alpha = sandbox.instance("alpha").unwrap();
    let path = "/api/v1/timelines/home";

    // Any real run is within an hour, and longer than a nanosecond.
    let satisfied = runner.run(&home("{ threshold: 1h, objective: 0.9 }")).await;
    assert_eq!((satisfied.outcome, satisfied.apdex), (Outcome::Success, Some(ApdexZone::Satisfied)));
    let tolerated = runner.run(&home("{ threshold: 1ns, tolerating: 1h, objective: 0.9 }")).await;
    assert_eq!((tolerated.outcome, tolerated.apdex), (Outcome::Success, Some(ApdexZone::Tolerating)));

    // 600 ms of added latency: a success slower than its 500 ms tolerating bound.
    alpha.faults().inject(None, path, Fault::Latency(Duration::from_millis(600)));
    let slow = runner.run(&home("{ threshold: 100ms, tolerating: 500ms, objective: 0.9 }")).await;
    assert_eq!((slow.outcome, slow.apdex), (Outcome::Success, Some(ApdexZone::Frustrated)));
    alpha.faults().clear();

    // A failure is frustrated however generous the threshold; a probe error has no score.
    alpha.faults().inject(None, path, Fault::Status(503));
    let failed = runner.run(&home("{ threshold: 1h, objective: 0.9 }")).await;
    assert_eq!((failed.outcome, failed.apdex), (Outcome::Failure, Some(ApdexZone::Frustrated)));
    alpha.faults().clear();
    alpha.faults().inject(None, path, Fault::Status(429));
    let own = runner.run(&home("{ threshold: 1h, objective: 0.9 }")).await;
    assert_eq!((own.outcome, own.apdex), (Outcome::ProbeError, None), "{}", serde_json::to_string(&own).unwrap());
    assert_eq!(score_of(&metrics::samples_for_run(&own, "eu-west")), None);
    assert_eq!(score_of(&metrics::samples_for_run(&failed, "eu-west")), Some(0.0));
}

/// The ticket under promtool, on one-minute runs from two regions: it fires
/// while the APDEX is under the objective over both 6h and 30m, not while it is
/// exactly the objective, and it resolves within half an hour of the recovery
/// although the 6h APDEX is still low.
#[test]
fn the_ticket_fires_under_the_objective_and_resolves_with_the_short_window() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("apdex_promtool");
    std::fs::create_dir_all(&dir).unwrap();
    let loaded = fediprobe::spec::load_config(&write_config(&dir)).unwrap_or_else(|d| panic!("{d}"));
    // A second journey whose objective, 0.5, every run meets exactly (each is tolerated).
    let steady = journeys::parse(
        "name: steady\ninstance: main\nschedule: '* * * * *'\n\
         slo: { availability: 99%, apdex: { threshold: 100ms, objective: 0.5 } }\n\
         steps:\n  - name: home\n    request: { path: /api/v1/timelines/home }\n",
    );
    let rules = generate::generate(&loaded.config.rules, &[journey(), steady]);
    std::fs::write(dir.join("rules.yaml"), generate::render(&rules, Format::Rules)).unwrap();

    // Scores per minute of `journey`, from both regions alike.
    let series = |journey: &str, score: &dyn Fn(usize) -> &'static str| -> Vec<Value> {
        let values: Vec<&str> = (0..480).map(score).collect();
        ["eu-west", "us-east"]
            .iter()
            .map(|region| {
                json!({
                    "series": format!(
                        "{}{{journey=\"{journey}\",instance=\"main\",region=\"{region}\",account=\"probe\"}}",
                        metrics::JOURNEY_APDEX
                    ),
                    "values": values.join(" "),
                })
            })
            .collect()
    };
    let labels = json!({ "journey": JOURNEY, "instance": "main", "severity": "ticket", "window": "6h" });
    let alert = |minute: usize, expected: Value| json!({ "eval_time": format!("{minute}m"), "alertname": "FediprobeApdexLow", "exp_alerts": expected });
    let annotations = json!({
        "summary": format!("{JOURNEY}: APDEX 0.50 over the last 6h, under its objective of 0.90"),
        "description": format!(
            "Pooled over every region, the runs of {JOURNEY} on main scored an APDEX under 0.90 over the last 6h \
             and still over the last 30m: too few runs succeeded within 100ms (satisfied), and too many took \
             longer than 400ms or failed (frustrated). Runs between the two count half."
        ),
        "runbook_url": format!("{}apdex-low.md", loaded.config.rules.runbook_url),
    });
    // `timeline` (objective 0.9): every run tolerated for 7 hours, then every
    // run satisfied. `steady` (objective 0.5): every run tolerated throughout.
    let mut input = series(JOURNEY, &|m| if m < 420 { "0.5" } else { "1" });
    input.extend(series("steady", &|_| "0.5"));
    let tests = vec![json!({
        "name": "tolerated for hours, then fast again; and exactly at the objective",
        "interval": "1m",
        "input_series": input,
        "alert_rule_test": [
            // Only `timeline` is under its objective; `steady` is exactly at its own.
            alert(400, json!([{ "exp_labels": labels, "exp_annotations": annotations }])),
            // 31 minutes after the recovery the 30m APDEX is 1 while the 6h one is still under 0.9.
            alert(451, json!([])),
        ],
        "promql_expr_test": [{
            "expr": format!("count(journey:fediprobe_apdex:ratio_6h{{journey=\"{JOURNEY}\"}} < 0.9)"),
            "eval_time": "451m",
            "exp_samples": [{ "labels": "{}", "value": 1 }],
        }],
    })];
    let file = json!({ "rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests });
    std::fs::write(dir.join("tests.yaml"), fediprobe::generate::output::to_yaml(&file)).unwrap();
    let output = tools::run(&tools::promtool(), &["test", "rules", "tests.yaml"], &dir);
    tools::assert_success(&format!("promtool test rules (files in {})", dir.display()), &output);
}
