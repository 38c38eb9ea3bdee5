//! The committed rules (`deploy/rules/`, and the VMRule and PrometheusRule under
//! `deploy/monitoring/`) are what the generator makes of
//! `deploy/fediprobe.yaml`, every alert links to a runbook that exists, and both
//! `promtool` and `vmalert` accept every output format.
//!
//! When the journeys or the generator change, regenerate the committed files
//! with `FEDIPROBE_BLESS=1 cargo test --test rules_files` and review the diff.

mod support;

use std::collections::BTreeSet;

use fediprobe::generate;
use fediprobe::generate::runbooks::AlertKind;
use support::rules::{FORMATS, committed, deploy_rules, load_deploy, plain_groups, root};
use support::tools;

#[test]
fn committed_rules_are_up_to_date() {
    let file = deploy_rules(&[]);
    let bless = std::env::var_os("FEDIPROBE_BLESS").is_some();
    let mut stale = Vec::new();
    for format in FORMATS {
        let path = committed(format);
        let fresh = generate::render(&file, format);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &fresh).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(fresh.as_str()) {
            stale.push(path.strip_prefix(root()).unwrap().display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated rules: {}\nregenerate them with `FEDIPROBE_BLESS=1 cargo test --test rules_files` \
         and commit the result",
        stale.join(", ")
    );
}

/// `fediprobe rules --format FORMAT` on the deploy config, in its own process,
/// from `dir`, with `env` set: its stdout.
fn rules_in_a_process(format: &str, dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fediprobe"))
        .args(["rules", "-c", support::rules::deploy_config().to_str().unwrap(), "--format", format])
        .current_dir(dir)
        .env_remove("FEDIPROBE_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    tools::assert_success(&format!("fediprobe rules --format {format}"), &output);
    String::from_utf8(output.stdout).expect("rules are UTF-8")
}

/// Two processes (each with its own randomly seeded hash maps, a different
/// working folder, time zone and locale) write the same bytes, and those are
/// what the committed files hold: nothing in the output depends on iteration
/// order, the clock or the environment.
#[test]
fn generation_is_deterministic_across_processes() {
    let elsewhere = tempfile::tempdir().unwrap();
    for format in FORMATS {
        let name = format!("{format:?}").to_lowercase();
        let first = rules_in_a_process(&name, root(), &[("TZ", "UTC"), ("LANG", "C")]);
        let second = rules_in_a_process(
            &name,
            elsewhere.path(),
            &[("TZ", "Pacific/Chatham"), ("LANG", "de_DE.UTF-8"), ("LC_ALL", "tr_TR.UTF-8")],
        );
        assert!(first == second, "two runs of `fediprobe rules --format {name}` differ");
        assert_eq!(first, generate::render(&deploy_rules(&[]), format), "the binary and the library disagree");
    }
}

#[test]
fn every_alert_links_to_a_runbook_that_exists() {
    let loaded = load_deploy();
    let base = &loaded.config.rules.runbook_url;
    let file = deploy_rules(&[]);
    let mut linked = BTreeSet::new();
    for alert in file.alerts() {
        let url = alert.annotations.get("runbook_url").unwrap_or_else(|| panic!("{} has no runbook_url", alert.alert));
        let relative = url.strip_prefix(base.as_str()).unwrap_or_else(|| panic!("{url} is not under {base}"));
        linked.insert(relative.to_owned());
    }
    for kind in AlertKind::ALL {
        linked.insert(kind.runbook().to_owned());
    }
    let missing: Vec<&String> = linked.iter().filter(|f| !root().join("runbooks").join(f).is_file()).collect();
    assert!(missing.is_empty(), "runbooks linked from alerts but missing in runbooks/: {missing:?}");
}

#[test]
fn every_alert_kind_is_generated_and_labelled() {
    let file = deploy_rules(&[]);
    for kind in AlertKind::ALL {
        assert!(file.alerts().any(|a| a.alert == kind.name()), "no {} in the deploy rules", kind.name());
    }
    for alert in file.alerts() {
        assert!(alert.labels.contains_key("severity"), "{} lacks the `severity` label", alert.alert);
        // The rules are generic over journeys: `journey` and `instance` come from
        // the series, so the expression must keep them (the instance page keeps
        // only `instance`: one alert per instance).
        // The agent's own alert is about a region's probe, not a journey.
        let kept = match alert.alert.as_str() {
            a if a == AlertKind::InstanceUnavailable.name() => "by (instance)",
            a if a == AlertKind::SamplesUndelivered.name() => "by (region)",
            _ => "journey",
        };
        assert!(alert.expr.contains(kept), "{} does not keep `{kept}`:\n{}", alert.alert, alert.expr);
        assert!(["page", "ticket"].contains(&alert.labels["severity"].as_str()));
        if alert.alert.contains("Burn") {
            assert!(alert.labels.contains_key("sli"), "{} lacks the `sli` label", alert.alert);
        }
        for annotation in ["summary", "description", "runbook_url"] {
            assert!(alert.annotations.contains_key(annotation), "{} lacks `{annotation}`", alert.alert);
        }
    }
}

#[test]
fn promtool_accepts_every_format() {
    let promtool = tools::promtool();
    let dir = tempfile::tempdir().unwrap();
    let file = deploy_rules(&[]);
    for format in FORMATS {
        let name = format!("{format:?}.yaml").to_lowercase();
        std::fs::write(dir.path().join(&name), plain_groups(&generate::render(&file, format))).unwrap();
        let output = tools::run(&promtool, &["check", "rules", "--lint=all", "--lint-fatal", &name], dir.path());
        tools::assert_success(&format!("promtool check rules ({format:?})"), &output);
    }
}

#[test]
fn vmalert_accepts_every_format() {
    let vmalert = tools::vmalert();
    let dir = tempfile::tempdir().unwrap();
    let file = deploy_rules(&[]);
    for format in FORMATS {
        let name = format!("{format:?}.yaml").to_lowercase();
        std::fs::write(dir.path().join(&name), plain_groups(&generate::render(&file, format))).unwrap();
        let output = tools::run(&vmalert, &["-dryRun", &format!("-rule={name}"), "-loggerLevel=ERROR"], dir.path());
        tools::assert_success(&format!("vmalert -dryRun ({format:?})"), &output);
    }
}
