//! The committed rules and the config they come from, for the rule tests.

#![allow(dead_code)] // Each test binary uses a different part of the helper.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fediprobe::generate::{self, Format, RuleFile};
use fediprobe::spec::{self, Loaded};

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The config the committed rules are generated from.
pub fn deploy_config() -> PathBuf {
    root().join("deploy/fediprobe.yaml")
}

/// The deploy config with its journeys, loaded once per test binary.
pub fn load_deploy() -> Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            spec::load_config(&deploy_config()).unwrap_or_else(|d| panic!("deploy/fediprobe.yaml does not load:\n{d}"))
        })
        .clone()
}

/// The rules of the deploy config, for all journeys or only those named.
pub fn deploy_rules(only: &[&str]) -> RuleFile {
    let loaded = load_deploy();
    let journeys: Vec<_> =
        loaded.journeys.into_iter().filter(|j| only.is_empty() || only.contains(&j.name.as_str())).collect();
    assert!(!journeys.is_empty(), "no journey named {only:?} in deploy/fediprobe.yaml");
    generate::generate(&loaded.config.rules, &journeys)
}

pub const FORMATS: [Format; 3] = [Format::Rules, Format::Prometheusrule, Format::Vmrule];

/// Where each format is committed: the plain file under `deploy/rules/`, the
/// operator resources in the kustomizations under `deploy/monitoring/`.
pub fn committed(format: Format) -> PathBuf {
    root().join(match format {
        Format::Rules => "deploy/rules/fediprobe-rules.yaml",
        Format::Prometheusrule => "deploy/monitoring/prometheus-operator/prometheusrule.yaml",
        Format::Vmrule => "deploy/monitoring/victoria-metrics/vmrule.yaml",
    })
}

/// The plain rule file inside a rendered output: the whole file, or a
/// resource's `spec` (which is exactly a rule file's `groups:`).
pub fn plain_groups(text: &str) -> String {
    use saphyr::{LoadableYamlNode, Yaml, YamlEmitter};
    let docs = Yaml::load_from_str(text).expect("generated YAML parses");
    let doc = &docs[0];
    let groups = if doc.contains_mapping_key("spec") { &doc["spec"] } else { doc };
    assert!(groups.contains_mapping_key("groups"), "no groups in:\n{text}");
    let mut out = String::new();
    let mut emitter = YamlEmitter::new(&mut out);
    emitter.multiline(true);
    emitter.dump(groups).expect("emit");
    out.push('\n');
    out
}
