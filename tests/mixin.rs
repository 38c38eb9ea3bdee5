//! `fediprobe mixin`, rendered by the real `jsonnet` as a Jsonnet stack would:
//! with its `_config` defaults it gives exactly (as data) the rules of
//! `fediprobe rules` and the dashboards of `fediprobe dashboards` for the same
//! config; with `_config` overrides it gives what `fediprobe rules` gives with the
//! same knobs in the config's `rules:` section; what it renders passes `promtool
//! check rules` and `vmalert -dryRun`; the dashboards follow the same
//! overrides. And with the `mastodon` names and critical/warning severities,
//! the pages reach the pager of an Alertmanager that pages on
//! `severity="critical"` (`amtool config routes test`), and the README's
//! inhibition for those names keeps one page per outage in a real Alertmanager.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::rules::root;
use support::tools;

const BIN: &str = env!("CARGO_BIN_EXE_fediprobe");

/// The config with the `rules:` knobs of a Mastodon stack (names, severities,
/// labels, `namespace`, `runbook`), and otherwise the deploy config.
fn mastodon_config() -> PathBuf {
    root().join("tests/mixin/mastodon.yaml")
}

/// `_config` overrides saying what `tests/mixin/mastodon.yaml`'s `rules:` says.
const MASTODON_OVERRIDES: &str = "{
  nameScheme: 'mastodon',
  severities: { page: 'critical', ticket: 'warning' },
  extraLabels: { service: 'mastodon-probe', team: 'sre' },
  instanceLabel: 'namespace',
  runbookUrl: 'https://git.example/ops/fediprobe/-/blob/main/runbooks/',
  runbookAnnotation: 'runbook',
  selector: 'cluster=\"eu\", job=~\"fediprobe.*\"',
}";

/// `_config` overrides saying what the default `rules:` knobs say.
const BACK_TO_DEFAULTS: &str = "{ nameScheme: 'fediprobe', severities: { page: 'page', ticket: 'ticket' }, \
     extraLabels: {}, instanceLabel: 'instance', runbookUrl: 'runbooks/', runbookAnnotation: 'runbook_url', \
     selector: '' }";

/// Runs `fediprobe args…` and returns its stdout; panics on failure.
fn fediprobe(args: &[&str]) -> String {
    let output = tools::run(Path::new(BIN), args, root());
    tools::assert_success(&format!("fediprobe {}", args.join(" ")), &output);
    String::from_utf8(output.stdout).unwrap()
}

/// `fediprobe mixin -c config` written into `dir`.
fn write_mixin(config: &Path, dir: &Path) {
    fediprobe(&["mixin", "-c", &config.to_string_lossy(), "--out", &dir.to_string_lossy()]);
    assert!(dir.join("mixin.libsonnet").is_file());
}

/// Renders `program` (Jsonnet, importing `mixin.libsonnet`) in `dir` with the real `jsonnet`.
fn render(dir: &Path, program: &str) -> Value {
    std::fs::write(dir.join("render.jsonnet"), program).unwrap();
    let output = tools::run(&tools::jsonnet(), &["render.jsonnet"], dir);
    tools::assert_success("jsonnet render.jsonnet", &output);
    serde_json::from_slice(&output.stdout).expect("jsonnet prints JSON")
}

/// The mixin's rules as one rule file, `_config` overridden by `overrides` (a Jsonnet object).
fn render_rules(dir: &Path, overrides: &str) -> Value {
    render(
        dir,
        &format!(
            "local m = (import 'mixin.libsonnet') + {{ _config+:: {overrides} }};\n\
             {{ groups: m.prometheusRules.groups + m.prometheusAlerts.groups }}\n"
        ),
    )
}

/// The mixin's dashboards (file name → dashboard), `_config` overridden by `overrides`.
fn render_dashboards(dir: &Path, overrides: &str) -> Value {
    render(dir, &format!("((import 'mixin.libsonnet') + {{ _config+:: {overrides} }}).grafanaDashboards\n"))
}

/// What `fediprobe dashboards -c config` writes, as file name → dashboard.
fn dashboards_of(config: &Path, scratch: &Path) -> Value {
    let out = scratch.join("from-dashboards");
    let _ = std::fs::remove_dir_all(&out);
    fediprobe(&["dashboards", "-c", &config.to_string_lossy(), "--out", &out.to_string_lossy()]);
    let mut boards = serde_json::Map::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        boards.insert(name, serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap());
    }
    assert!(boards.len() >= 4, "fediprobe dashboards wrote {:?}", boards.keys());
    Value::Object(boards)
}

/// Every query of every panel of `boards` (file name → dashboard).
fn queries(boards: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for board in boards.as_object().unwrap().values() {
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push(target["expr"].as_str().unwrap().to_owned());
            }
        }
    }
    out
}

/// YAML (as `fediprobe rules` writes it) as JSON data.
fn yaml_to_json(text: &str) -> Value {
    use saphyr::{LoadableYamlNode, Yaml};
    fn convert(yaml: &Yaml) -> Value {
        match yaml {
            Yaml::Mapping(map) => Value::Object(
                map.iter().map(|(k, v)| (k.as_str().expect("string keys").to_owned(), convert(v))).collect(),
            ),
            Yaml::Sequence(items) => Value::Array(items.iter().map(convert).collect()),
            other => match (other.as_str(), other.as_integer(), other.as_floating_point(), other.as_bool()) {
                (Some(s), ..) => Value::String(s.to_owned()),
                (_, Some(i), ..) => Value::from(i),
                (_, _, Some(f), _) => Value::from(f),
                (_, _, _, Some(b)) => Value::Bool(b),
                _ => Value::Null,
            },
        }
    }
    let docs = Yaml::load_from_str(text).expect("rules parse as YAML");
    convert(&docs[0])
}

/// Where two JSON values first differ (numbers compared as numbers: `jsonnet`
/// prints `0.0` as `0`), or `None` when they are the same data.
fn difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => difference(p, q, &format!("{at}.{k}")),
                (p, q) => Some(format!("{at}.{k}: {p:?} vs {q:?}")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| difference(p, q, &format!("{at}[{i}]")))
        }
        _ if a == b => None,
        _ => Some(format!("{at}: {a} vs {b}")),
    }
}

fn assert_same(rendered: &Value, expected: &Value, what: &str) {
    if let Some(d) = difference(rendered, expected, "") {
        panic!("{what}: the mixin renders something else than expected, first at {d}");
    }
}

/// Every alert's name.
fn alert_names(file: &Value) -> BTreeSet<String> {
    rules_of(file).filter_map(|r| r["alert"].as_str().map(str::to_owned)).collect()
}

fn rules_of(file: &Value) -> impl Iterator<Item = &Value> {
    file["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap())
}

/// promtool and vmalert both accept the rendered rules.
fn check_with_promtool_and_vmalert(rules: &Value, dir: &Path) {
    // JSON is YAML: the rendered file is a rule file as it is.
    std::fs::write(dir.join("rendered.yaml"), serde_json::to_string_pretty(rules).unwrap()).unwrap();
    let output = tools::run(&tools::promtool(), &["check", "rules", "rendered.yaml"], dir);
    tools::assert_success("promtool check rules (the rendered mixin)", &output);
    let output = tools::run(&tools::vmalert(), &["-dryRun", "-rule=rendered.yaml", "-loggerLevel=ERROR"], dir);
    tools::assert_success("vmalert -dryRun (the rendered mixin)", &output);
}

#[test]
fn rendered_with_its_defaults_the_mixin_is_fediprobe_rules_and_dashboards() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::rules::deploy_config();
    write_mixin(&config, dir.path());
    let rendered = render_rules(dir.path(), "{}");
    let expected = yaml_to_json(&fediprobe(&["rules", "-c", &config.to_string_lossy()]));
    assert!(rules_of(&expected).count() > 100, "the deploy config has rules to compare");
    assert_same(&rendered, &expected, "the rules of `fediprobe rules`");
    check_with_promtool_and_vmalert(&rendered, dir.path());

    // The convention's split: records in prometheusRules, alerts in prometheusAlerts.
    let split = render(
        dir.path(),
        "local m = import 'mixin.libsonnet';\n{ rules: m.prometheusRules, alerts: m.prometheusAlerts }\n",
    );
    assert!(rules_of(&split["rules"]).all(|r| r.get("record").is_some()));
    assert!(rules_of(&split["alerts"]).any(|r| r.get("alert").is_some()));

    let rendered = render_dashboards(dir.path(), "{}");
    assert_same(&rendered, &dashboards_of(&config, dir.path()), "the dashboards of `fediprobe dashboards`");
}

#[test]
fn config_overrides_give_the_rules_of_the_same_knobs_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    write_mixin(&support::rules::deploy_config(), dir.path());
    let rendered = render_rules(dir.path(), MASTODON_OVERRIDES);
    let expected = yaml_to_json(&fediprobe(&["rules", "-c", &mastodon_config().to_string_lossy()]));
    assert_same(&rendered, &expected, "`fediprobe rules` with the same knobs in the config");
    // The knobs did something: the names, labels and annotation are the stack's.
    let alerts = alert_names(&rendered);
    assert!(alerts.contains("MastodonJourneyAvailabilityCritical"), "{alerts:?}");
    assert!(alerts.iter().all(|a| a.starts_with("MastodonJourney")), "{alerts:?}");
    let text = rendered.to_string();
    assert!(text.contains("mastodon:journey_availability:burn_rate_5m") && !text.contains("fediprobe_slo"));
    assert!(text.contains("sum by (journey, namespace, region)") && !text.contains("by (journey, instance"));
    assert!(text.contains(r#"fediprobe_journey_success{cluster=\"eu\", job=~\"fediprobe.*\"}[5m]"#), "the selector");
    for rule in rules_of(&rendered) {
        assert_eq!(rule["labels"]["service"], "mastodon-probe", "{rule}");
        if rule.get("alert").is_some() {
            assert!(["critical", "warning"].contains(&rule["labels"]["severity"].as_str().unwrap()), "{rule}");
            assert!(rule["annotations"]["runbook"].as_str().unwrap().starts_with("https://git.example/"), "{rule}");
            assert!(rule["annotations"].get("runbook_url").is_none(), "{rule}");
        }
    }
    check_with_promtool_and_vmalert(&rendered, dir.path());

    // And the other way round: a mixin generated from the knobbed config
    // defaults to its knobs, and overriding them back gives the default rules.
    let knobbed = dir.path().join("knobbed");
    write_mixin(&mastodon_config(), &knobbed);
    assert_same(&render_rules(&knobbed, "{}"), &expected, "a mixin of the knobbed config, as it is");
    let back = render_rules(&knobbed, BACK_TO_DEFAULTS);
    let default = yaml_to_json(&fediprobe(&["rules", "-c", &support::rules::deploy_config().to_string_lossy()]));
    assert_same(&back, &default, "a mixin of the knobbed config, overridden back to the defaults");
}

/// The dashboards follow `_config` as the rules do: the same three ways round.
#[test]
fn config_overrides_give_the_dashboards_of_the_same_knobs_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    write_mixin(&support::rules::deploy_config(), dir.path());
    let expected = dashboards_of(&mastodon_config(), dir.path());
    let rendered = render_dashboards(dir.path(), MASTODON_OVERRIDES);
    assert_same(&rendered, &expected, "`fediprobe dashboards` with the same knobs in the config");
    // The knobs did something: the panels read the stack's names, label,
    // severities and alerts, and the probes' raw series under the selector.
    let all = queries(&rendered).join("\n");
    assert!(!all.contains("fediprobe_slo") && !all.contains("Fediprobe"), "{all}");
    assert!(all.contains("mastodon:journey_availability:burn_rate_1h"), "{all}");
    assert!(
        all.contains(r#"{__name__=~"mastodon:journey_availability:objective|mastodon:journey_federation_delay:objective|mastodon:journey_latency:objective","#),
        "one query over the SLIs' objectives: {all}"
    );
    assert!(all.contains(r#"namespace=~"$instance""#) && all.contains(r#"severity="critical""#), "{all}");
    assert!(all.contains("MastodonJourneyAvailabilityCritical"), "{all}");
    assert!(all.contains(r#"instance=~"$instance",region=~"$region",cluster="eu", job=~"fediprobe.*"}"#), "{all}");

    let knobbed = dir.path().join("knobbed");
    write_mixin(&mastodon_config(), &knobbed);
    assert_same(&render_dashboards(&knobbed, "{}"), &expected, "the dashboards of a mixin of the knobbed config");
    let back = render_dashboards(&knobbed, BACK_TO_DEFAULTS);
    let default = dashboards_of(&support::rules::deploy_config(), dir.path());
    assert_same(&back, &default, "the dashboards of a mixin of the knobbed config, overridden back to the defaults");
}

/// The receiver `amtool` routes an alert with `labels` to, under `config`.
fn route(config: &Path, labels: &[String]) -> String {
    let config = format!("--config.file={}", config.display());
    let mut args = vec!["config", "routes", "test", config.as_str()];
    args.extend(labels.iter().map(String::as_str));
    let output = tools::run(&tools::amtool(), &args, root());
    tools::assert_success("amtool config routes test", &output);
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Each distinct alert of a rule file (name and labels as a notification would
/// carry them, with `instance_label` set) and the receiver it reaches.
fn routes(rules: &Value, instance_label: &str, alertmanager: &Path) -> Vec<(String, String, String)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for rule in rules_of(rules).filter(|r| r.get("alert").is_some()) {
        let name = rule["alert"].as_str().unwrap().to_owned();
        let severity = rule["labels"]["severity"].as_str().unwrap().to_owned();
        if !seen.insert((name.clone(), severity.clone())) {
            continue;
        }
        let mut labels = vec![format!("alertname={name}"), format!("{instance_label}=main"), "journey=j".to_owned()];
        labels.extend(rule["labels"].as_object().unwrap().iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap())));
        out.push((name, severity, route(alertmanager, &labels)));
    }
    out
}

#[test]
fn with_the_mastodon_names_and_severities_pages_reach_a_pager_that_routes_on_critical() {
    let alertmanager = root().join("tests/mixin/alertmanager.yaml");
    let output = tools::run(&tools::amtool(), &["check-config", &alertmanager.to_string_lossy()], root());
    tools::assert_success("amtool check-config", &output);

    let rules = yaml_to_json(&fediprobe(&["rules", "-c", &mastodon_config().to_string_lossy()]));
    let routed = routes(&rules, "namespace", &alertmanager);
    let pages: Vec<&(String, String, String)> = routed.iter().filter(|(_, s, _)| s == "critical").collect();
    assert!(pages.iter().any(|(n, ..)| n == "MastodonJourneyAvailabilityCritical"), "{routed:?}");
    assert!(pages.iter().any(|(n, ..)| n == "MastodonJourneyInstanceUnavailable"), "{routed:?}");
    for (name, severity, receiver) in &routed {
        let expected = if severity == "critical" { "pager" } else { "tickets" };
        assert_eq!(receiver, expected, "{name} (severity {severity})");
    }

    // The default severities are what the issue found: such an Alertmanager
    // sends fediprobe's pages to its default receiver, not to the pager.
    let default = yaml_to_json(&fediprobe(&["rules", "-c", &support::rules::deploy_config().to_string_lossy()]));
    let routed = routes(&default, "instance", &alertmanager);
    assert!(routed.iter().any(|(_, s, _)| s == "page"));
    assert!(routed.iter().all(|(_, _, receiver)| receiver == "default"), "{routed:?}");
}

/// The inhibition README.md gives for the `mastodon` scheme (its YAML block).
fn readme_inhibition() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let opening = "```yaml\ninhibit_rules:\n  - source_matchers: ['alertname=\"MastodonJourneyInstanceUnavailable\"']";
    let start = readme.find(opening).expect("README.md gives the mastodon scheme's inhibition") + "```yaml\n".len();
    let block = &readme[start..];
    block[..block.find("```").expect("the YAML block ends")].to_owned()
}

/// A child process killed when the test ends, however it ends.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The alert `name` as the rules of the knobbed config label it, as `key=value`
/// arguments, with `more` labels (what the expression adds: namespace, journey).
fn alert_labels(rules: &Value, name: &str, more: &[&str]) -> Vec<String> {
    let rule = rules_of(rules).find(|r| r["alert"] == name).unwrap_or_else(|| panic!("no alert {name}"));
    let mut labels = vec![format!("alertname={name}")];
    labels.extend(rule["labels"].as_object().unwrap().iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap())));
    labels.extend(more.iter().map(|l| l.to_string()));
    labels
}

/// With the `mastodon` names, the README's inhibition keeps one page per
/// outage in a real Alertmanager: the instance page silences the journeys'
/// alerts of its namespace, and nothing of another namespace nor the stack's own.
#[test]
fn the_readme_inhibition_for_the_mastodon_names_keeps_one_page_per_outage() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yaml");
    let routing = std::fs::read_to_string(root().join("tests/mixin/alertmanager.yaml")).unwrap();
    std::fs::write(&config, format!("{routing}\n{}", readme_inhibition())).unwrap();
    let output = tools::run(&tools::amtool(), &["check-config", &config.to_string_lossy()], dir.path());
    tools::assert_success("amtool check-config (with the README's inhibition)", &output);

    let port = support::victoria::free_port();
    let _alertmanager = KilledOnDrop(
        std::process::Command::new(tools::alertmanager())
            .args([
                format!("--config.file={}", config.display()),
                format!("--storage.path={}", dir.path().join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                // No clustering: it would listen on every interface.
                "--cluster.listen-address=".to_owned(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start prometheus-alertmanager"),
    );
    let url = format!("--alertmanager.url=http://127.0.0.1:{port}");

    let rules = yaml_to_json(&fediprobe(&["rules", "-c", &mastodon_config().to_string_lossy()]));
    let alerts = [
        alert_labels(&rules, "MastodonJourneyInstanceUnavailable", &["namespace=main"]),
        alert_labels(&rules, "MastodonJourneyAvailabilityCritical", &["namespace=main", "journey=home-timeline"]),
        alert_labels(&rules, "MastodonJourneyLatencyWarning", &["namespace=main", "journey=home-timeline"]),
        alert_labels(&rules, "MastodonJourneyAvailabilityCritical", &["namespace=peer", "journey=home-timeline"]),
        // The stack's own page about the same namespace.
        vec![
            "alertname=MastodonWebAvailabilityCritical".to_owned(),
            "severity=critical".to_owned(),
            "namespace=main".to_owned(),
        ],
    ];
    for (i, labels) in alerts.iter().enumerate() {
        let mut args = vec!["alert", "add", url.as_str()];
        args.extend(labels.iter().map(String::as_str));
        // The first one waits (boundedly) for Alertmanager to listen.
        let tries = if i == 0 { 100 } else { 1 };
        let mut output = tools::run(&tools::amtool(), &args, dir.path());
        for _ in 1..tries {
            if output.status.success() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            output = tools::run(&tools::amtool(), &args, dir.path());
        }
        tools::assert_success(&format!("amtool alert add {labels:?}"), &output);
    }

    // (alertname, namespace) → inhibited, as Alertmanager's API reports it.
    let mut state = std::collections::BTreeMap::new();
    for _ in 0..50 {
        let args = ["alert", "query", url.as_str(), "--active", "--inhibited", "-o", "json"];
        let output = tools::run(&tools::amtool(), &args, dir.path());
        tools::assert_success("amtool alert query", &output);
        let listed: Value = serde_json::from_slice(&output.stdout).expect("amtool prints JSON");
        state = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let key = (
                    a["labels"]["alertname"].as_str().unwrap().to_owned(),
                    a["labels"]["namespace"].as_str().unwrap().to_owned(),
                );
                (key, a["status"]["inhibitedBy"].as_array().is_some_and(|by| !by.is_empty()))
            })
            .collect();
        if state.len() == alerts.len() && state.values().any(|inhibited| *inhibited) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let inhibited = |name: &str, namespace: &str| {
        *state.get(&(name.to_owned(), namespace.to_owned())).unwrap_or_else(|| panic!("{name} {namespace}: {state:?}"))
    };
    assert!(!inhibited("MastodonJourneyInstanceUnavailable", "main"), "the instance page itself: {state:?}");
    assert!(inhibited("MastodonJourneyAvailabilityCritical", "main"), "the journey's page: {state:?}");
    assert!(inhibited("MastodonJourneyLatencyWarning", "main"), "the journey's ticket: {state:?}");
    assert!(!inhibited("MastodonJourneyAvailabilityCritical", "peer"), "another namespace: {state:?}");
    assert!(!inhibited("MastodonWebAvailabilityCritical", "main"), "the stack's own page: {state:?}");
}
