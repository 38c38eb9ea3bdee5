//! The committed dashboards under `deploy/dashboards/` are what the generator
//! makes of `deploy/fediprobe.yaml`, and every query in them parses in both
//! `promtool` and `vmalert`, reads only recorded series the rules record, and
//! uses only variables the dashboard defines. The dashboards of a config with
//! every `rules:` naming knob set (`tests/mixin/mastodon.yaml`) are held to the
//! same, against that config's own rules.
//!
//! When the journeys or the generator change, regenerate the committed files
//! with `FEDIPROBE_BLESS=1 cargo test --test dashboards` and review the diff.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use fediprobe::generate::{dashboards, rules};
use fediprobe::spec;
use serde_json::Value;
use support::rules::{deploy_rules, load_deploy, root};
use support::tools;

fn committed_dir() -> PathBuf {
    root().join("deploy/dashboards")
}

/// The committed dashboards as JSON values, by file name.
fn committed() -> Vec<(String, Value)> {
    let loaded = load_deploy();
    dashboards::generate(&loaded.config.rules, &loaded.journeys)
        .into_iter()
        .map(|f| {
            let path = committed_dir().join(&f.file_name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (bless with FEDIPROBE_BLESS=1)", path.display()));
            (f.file_name, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        })
        .collect()
}

/// Every panel's queries (rows hold none of their own when expanded).
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            out.push((title, target["expr"].as_str().expect("every target has an expr").to_owned()));
        }
    }
    out
}

/// The selectors inside the `label_values(selector, label)` variable queries.
fn variable_selectors(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for var in dashboard["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = var["query"].as_str().and_then(|q| q.strip_prefix("label_values(")) {
            let selector = q.rsplit_once(',').expect("label_values(selector, label)").0;
            out.push((format!("variable {}", var["name"]), selector.to_owned()));
        }
    }
    out
}

/// The knobbed config (mastodon names, critical/warning, `namespace`, a selector).
fn knobbed() -> spec::Loaded {
    let path = root().join("tests/mixin/mastodon.yaml");
    spec::load_config(&path).unwrap_or_else(|d| panic!("{} does not load:\n{d}", path.display()))
}

/// The dashboards the knobbed config gives, as JSON values, by file name.
fn knobbed_dashboards() -> Vec<(String, Value)> {
    let loaded = knobbed();
    dashboards::generate(&loaded.config.rules, &loaded.journeys)
        .into_iter()
        .map(|f| (f.file_name, serde_json::to_value(&f.dashboard).unwrap()))
        .collect()
}

fn variables(dashboard: &Value) -> BTreeSet<String> {
    dashboard["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_owned()).collect()
}

/// Grafana's variables replaced by values a query may take, so that the
/// query can be checked as plain PromQL.
fn substitute(expr: &str) -> String {
    let mut out = expr.to_owned();
    for (var, value) in [
        ("$__rate_interval", "5m"),
        ("$__interval", "1m"),
        ("$__range", "6h"),
        ("$span", "15m"),
        ("$region", ".*"),
        ("$journey", ".*"),
        ("$instance", ".*"),
    ] {
        out = out.replace(var, value);
    }
    out
}

#[test]
fn committed_dashboards_are_up_to_date() {
    let loaded = load_deploy();
    let bless = std::env::var_os("FEDIPROBE_BLESS").is_some();
    let mut stale = Vec::new();
    for file in dashboards::generate(&loaded.config.rules, &loaded.journeys) {
        let path = committed_dir().join(&file.file_name);
        let fresh = dashboards::render(&file.dashboard);
        if bless {
            std::fs::create_dir_all(committed_dir()).unwrap();
            std::fs::write(&path, &fresh).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(fresh.as_str()) {
            stale.push(path.strip_prefix(root()).unwrap().display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated dashboards: {}\nregenerate them with `FEDIPROBE_BLESS=1 cargo test --test dashboards` and \
         commit the result",
        stale.join(", ")
    );
}

#[test]
fn the_kustomization_ships_every_dashboard() {
    let kustomization = std::fs::read_to_string(committed_dir().join("kustomization.yaml")).unwrap();
    for (name, _) in committed() {
        assert!(kustomization.contains(&name), "deploy/dashboards/kustomization.yaml does not ship {name}");
    }
}

#[test]
fn every_dashboard_has_the_datasource_and_filter_variables() {
    for (name, dashboard) in committed() {
        let vars = variables(&dashboard);
        for v in ["datasource", "region", "journey", "instance"] {
            assert!(vars.contains(v), "{name} lacks the `{v}` variable");
        }
        assert_eq!(dashboard["schemaVersion"], 39, "{name}");
        for panel in dashboard["panels"].as_array().unwrap() {
            if panel["type"] != "row" {
                assert_eq!(panel["datasource"]["uid"], "${datasource}", "{name}: {}", panel["title"]);
            }
        }
    }
}

#[test]
fn queries_use_only_defined_variables() {
    let builtins = ["__rate_interval", "__interval", "__range"];
    let re = regex::Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)").unwrap();
    for (name, dashboard) in committed().into_iter().chain(knobbed_dashboards()) {
        let vars = variables(&dashboard);
        for (title, expr) in queries(&dashboard).into_iter().chain(variable_selectors(&dashboard)) {
            for cap in re.captures_iter(&expr) {
                let v = &cap[1];
                assert!(vars.contains(v) || builtins.contains(&v), "{name}: `{title}` uses undefined ${v}: {expr}");
            }
            assert!(!substitute(&expr).contains('$'), "{name}: `{title}` has a variable the test cannot fill: {expr}");
        }
    }
}

/// Every recorded series `boards` read is one `records` has (a Mastodon stack's
/// own server-side series aside); how many reads were checked.
fn assert_recorded(boards: &[(String, Value)], records: &BTreeSet<String>) -> usize {
    // A recorded name: `level:metric:operations`, not a subquery's `[1h:1m]` nor `$__range:1m`.
    let re = regex::Regex::new(r"(?:^|[^$a-z_0-9])([a-z][a-z_]*:[a-z_:0-9]+)").unwrap();
    let server_side = [dashboards::apdex::SERVER_AVAILABILITY, dashboards::apdex::SERVER_APDEX];
    let mut used = 0;
    for (name, dashboard) in boards {
        for (title, expr) in queries(dashboard) {
            for cap in re.captures_iter(&expr) {
                used += 1;
                let series = &cap[1];
                // A Mastodon observability stack's own records, shown beside
                // the probes' when it has them (and simply absent otherwise).
                if server_side.contains(&series) {
                    continue;
                }
                assert!(records.contains(series), "{name}: `{title}` reads {series}, which no rule records");
            }
        }
    }
    used
}

#[test]
fn recorded_series_the_dashboards_read_are_recorded_by_the_rules() {
    let records: BTreeSet<String> = deploy_rules(&[]).records().map(|r| r.record.clone()).collect();
    assert!(assert_recorded(&committed(), &records) > 0, "the dashboards read no recorded series at all");
}

/// Under every naming knob, the dashboards read the names, label and alerts
/// the rules of the same config write: no panel is left reading the defaults.
#[test]
fn with_the_naming_knobs_the_dashboards_read_what_the_rules_record() {
    let loaded = knobbed();
    let file = rules::generate(&loaded.config.rules, &loaded.journeys);
    let records: BTreeSet<String> = file.records().map(|r| r.record.clone()).collect();
    let boards = knobbed_dashboards();
    assert!(assert_recorded(&boards, &records) > 20, "the knobbed dashboards read recorded series");
    let alerts: BTreeSet<String> = file.alerts().map(|a| a.alert.clone()).collect();
    let all: Vec<String> = boards.iter().flat_map(|(_, d)| queries(d)).map(|(_, e)| e).collect();
    let all = all.join("\n");
    assert!(!all.contains("fediprobe_slo") && !all.contains("Fediprobe"), "default names left: {all}");
    let status = boards
        .iter()
        .flat_map(|(_, d)| queries(d))
        .find(|(t, _)| t == "Status per journey")
        .map(|(_, e)| e)
        .expect("status panel");
    let named = regex::Regex::new(r#"alertname=~"([A-Za-z|]+)""#).unwrap();
    let names = &named.captures(&status).expect("the status reads alerts by name")[1];
    assert!(names.split('|').all(|n| alerts.contains(n)), "{names} vs the rules' {alerts:?}");
    assert!(status.contains(r#"severity="critical""#) && status.contains(r#"namespace=~"$instance""#), "{status}");
}
/// Every query (and every variable's selector) as a recording rule of one file.
fn queries_as_rule_file() -> String {
    let mut rules = Vec::new();
    for (name, dashboard) in committed().into_iter().chain(knobbed_dashboards()) {
        for (title, expr) in queries(&dashboard).into_iter().chain(variable_selectors(&dashboard)) {
            rules.push(serde_json::json!({
                "record": format!("dashboard:query_{}:check", rules.len()),
                "expr": substitute(&expr),
                "labels": { "dashboard": name, "panel": title },
            }));
        }
    }
    assert!(rules.len() > 30, "only {} queries found", rules.len());
    // JSON is YAML: both tools read it as a rule file.
    serde_json::to_string_pretty(&serde_json::json!({ "groups": [{ "name": "dashboards", "rules": rules }] })).unwrap()
}

#[test]
fn every_query_parses_in_promtool() {
    let promtool = tools::promtool();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("queries.yaml"), queries_as_rule_file()).unwrap();
    let output = tools::run(&promtool, &["check", "rules", "queries.yaml"], dir.path());
    tools::assert_success("promtool check rules (the dashboards' queries)", &output);
}

#[test]
fn every_query_parses_in_vmalert() {
    let vmalert = tools::vmalert();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("queries.yaml"), queries_as_rule_file()).unwrap();
    let output = tools::run(&vmalert, &["-dryRun", "-rule=queries.yaml", "-loggerLevel=ERROR"], dir.path());
    tools::assert_success("vmalert -dryRun (the dashboards' queries)", &output);
}

/// The one query of the panel titled `title` in dashboard file `file`, variables filled in.
fn panel_query(file: &str, title: &str) -> String {
    panel_queries_in(&committed(), file, title).remove(0)
}

/// The queries of the panel titled `title` in dashboard file `file` of `boards`, variables filled in.
fn panel_queries_in(boards: &[(String, Value)], file: &str, title: &str) -> Vec<String> {
    let (_, dashboard) = boards.iter().find(|(name, _)| name == file).expect("dashboard file");
    let found: Vec<String> =
        queries(dashboard).into_iter().filter(|(t, _)| t == title).map(|(_, e)| substitute(&e)).collect();
    assert!(!found.is_empty(), "{file}: no panel `{title}`");
    found
}

/// What the status query gives with the tests' alerts: `home` pages, `post`
/// has a ticket, `search` neither.
fn status_expected(status: &str) -> Value {
    serde_json::json!({
        "expr": status,
        "eval_time": "5m",
        "exp_samples": [
            { "labels": "{journey=\"home\"}", "value": 2 },
            { "labels": "{journey=\"post\"}", "value": 1 },
            { "labels": "{journey=\"search\"}", "value": 0 },
        ],
    })
}

/// Runs `promtool test rules` on one test case (no rule files of its own).
fn promtool_test(what: &str, case: Value) {
    let test = serde_json::json!({ "rule_files": ["empty.yaml"], "evaluation_interval": "1m", "tests": [case] });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.yaml"), "groups: []\n").unwrap();
    std::fs::write(dir.path().join("test.yaml"), serde_json::to_string_pretty(&test).unwrap()).unwrap();
    let output = tools::run(&tools::promtool(), &["test", "rules", "test.yaml"], dir.path());
    tools::assert_success(what, &output);
}

/// Under the knobs (mastodon names, critical/warning, `namespace`, static
/// labels), the Overview's status and its table read the series and alerts as
/// the rules of that config label them, one row per journey and SLI.
#[test]
fn with_the_naming_knobs_the_overview_status_and_table_have_data() {
    let boards = knobbed_dashboards();
    let overview = "fediprobe-overview.json";
    let status = panel_queries_in(&boards, overview, "Status per journey").remove(0);
    let table = panel_queries_in(&boards, overview, "Service level objectives");
    let (objective, burn_1h) = (&table[0], &table[3]);
    assert!(burn_1h.contains("burn_rate_1h"), "{burn_1h}");
    let extra = r#"service="mastodon-probe",team="sre""#;
    let objective_series = |sli: &str, journey: &str, value: &str| {
        serde_json::json!({
            "series": format!("mastodon:journey_{sli}:objective{{journey=\"{journey}\",namespace=\"main\",sli=\"{sli}\",window=\"30d\",{extra}}}"),
            "values": format!("{value}x10"),
        })
    };
    promtool_test(
        "promtool test rules (the knobbed Overview's status and table)",
        serde_json::json!({
            "interval": "1m",
            "input_series": [
                { "series": format!("ALERTS{{alertname=\"MastodonJourneyAvailabilityCritical\",alertstate=\"firing\",severity=\"critical\",journey=\"home\",namespace=\"main\",{extra}}}"), "values": "1x10" },
                { "series": format!("ALERTS{{alertname=\"MastodonJourneyAbsent\",alertstate=\"firing\",severity=\"warning\",journey=\"post\",namespace=\"main\",region=\"us-east\",{extra}}}"), "values": "1x10" },
                // Not fediprobe's: the stack's own page does not colour a journey.
                { "series": "ALERTS{alertname=\"MastodonWebAvailabilityCritical\",alertstate=\"firing\",severity=\"critical\",journey=\"search\",namespace=\"main\"}", "values": "1x10" },
                objective_series("availability", "home", "0.995"),
                objective_series("availability", "post", "0.995"),
                objective_series("latency", "search", "0.99"),
                { "series": format!("mastodon:journey_latency:burn_rate_1h{{journey=\"search\",namespace=\"main\",sli=\"latency\",{extra}}}"), "values": "3x10" },
            ],
            "promql_expr_test": [
                status_expected(&status),
                {
                    // Both SLIs' objectives, one row each, keyed as the burn column is.
                    "expr": objective,
                    "eval_time": "5m",
                    "exp_samples": [
                        { "labels": "{journey=\"home\",namespace=\"main\",sli=\"availability\"}", "value": 0.995 },
                        { "labels": "{journey=\"post\",namespace=\"main\",sli=\"availability\"}", "value": 0.995 },
                        { "labels": "{journey=\"search\",namespace=\"main\",sli=\"latency\"}", "value": 0.99 },
                    ],
                },
                {
                    "expr": burn_1h,
                    "eval_time": "5m",
                    "exp_samples": [{ "labels": "{journey=\"search\",namespace=\"main\",sli=\"latency\"}", "value": 3 }],
                },
            ],
        }),
    );
}

#[test]
fn status_and_last_run_queries_mean_what_the_panels_say() {
    let status = panel_query("fediprobe-overview.json", "Status per journey");
    let last_run = panel_query("fediprobe-probes.json", "Since each journey's last run");
    let case = serde_json::json!({
        "interval": "1m",
        "input_series": [
            { "series": "fediprobe_journey_outcome{journey=\"home\",instance=\"main\",region=\"eu-west\",outcome=\"failure\",reason=\"timeout\"}", "values": "1 1 1 _ _ _ _ _ _ _" },
            { "series": "ALERTS{alertname=\"FediprobeAvailabilityFastBurn\",alertstate=\"firing\",severity=\"page\",journey=\"home\",instance=\"main\"}", "values": "1x10" },
            { "series": "ALERTS{alertname=\"FediprobeJourneyAbsent\",alertstate=\"firing\",severity=\"ticket\",journey=\"home\",instance=\"main\",region=\"us-east\"}", "values": "1x10" },
            { "series": "ALERTS{alertname=\"FediprobeProbeErrors\",alertstate=\"firing\",severity=\"ticket\",journey=\"post\",instance=\"main\",region=\"us-east\"}", "values": "1x10" },
            { "series": "journey:fediprobe_slo_objective:ratio{journey=\"home\",instance=\"main\",sli=\"availability\",window=\"30d\"}", "values": "0.995x10" },
            { "series": "journey:fediprobe_slo_objective:ratio{journey=\"post\",instance=\"main\",sli=\"availability\",window=\"30d\"}", "values": "0.995x10" },
            { "series": "journey:fediprobe_slo_objective:ratio{journey=\"search\",instance=\"main\",sli=\"availability\",window=\"30d\"}", "values": "0.99x10" },
        ],
        "promql_expr_test": [
            // A page wins over a ticket; a journey with neither is OK, not missing.
            status_expected(&status),
            {
                // The last sample was at 2m: at 9m, 7 minutes ago.
                "expr": last_run,
                "eval_time": "9m",
                "exp_samples": [{ "labels": "{journey=\"home\",region=\"eu-west\"}", "value": 420 }],
            },
        ],
    });
    promtool_test("promtool test rules (status and last-run queries)", case);
}
