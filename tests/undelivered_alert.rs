//! `promtool test rules` on the generated `FediprobeSamplesUndelivered` ticket:
//! it fires for a region whose agent has held a sample undelivered for more than
//! ten minutes, or lost samples within the hour, and not for a healthy one.

mod support;

use fediprobe::generate::{self, Format};
use support::rules::deploy_rules;
use support::tools;

/// The annotations the ticket carries for `region`, written out as an operator
/// reads them.
fn annotations(region: &str) -> serde_json::Value {
    serde_json::json!({
        "summary": format!("fediprobe in {region}: samples not delivered to the metrics backend"),
        "description": format!(
            "The agent in {region} has held a sample it could not push for more than 10m, or lost samples in the \
             last hour. Until they arrive, every SLO of that region is measured on fewer runs than it had: the burn \
             alerts see less than users do."
        ),
        // deploy/fediprobe.yaml links runbooks relative to the repository.
        "runbook_url": "runbooks/samples-undelivered.md",
    })
}

#[test]
fn fires_for_a_backlog_older_than_ten_minutes_or_any_recent_drop_and_not_otherwise() {
    let promtool = tools::promtool();
    let rules = deploy_rules(&[]);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("undelivered_alert");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.yaml"), generate::render(&rules, Format::Rules)).unwrap();
    let alert = |region: &str| {
        serde_json::json!({
            "exp_labels": { "severity": "ticket", "region": region },
            "exp_annotations": annotations(region),
        })
    };
    let tests = serde_json::json!({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                // eu-west: the backend went away at 0m; the backlog ages a minute a minute.
                { "series": "fediprobe_remote_write_oldest_undelivered_age_seconds{region=\"eu-west\"}", "values": "0+60x20" },
                { "series": "fediprobe_remote_write_dropped_samples_total{region=\"eu-west\"}", "values": "0x20" },
                // us-east: delivering (a few seconds of backlog), but 7 samples dropped at 6m.
                { "series": "fediprobe_remote_write_oldest_undelivered_age_seconds{region=\"us-east\"}", "values": "3x20" },
                { "series": "fediprobe_remote_write_dropped_samples_total{region=\"us-east\"}", "values": "0x5 7x15" },
                // ap-southeast: healthy throughout.
                { "series": "fediprobe_remote_write_oldest_undelivered_age_seconds{region=\"ap-southeast\"}", "values": "2x20" },
                { "series": "fediprobe_remote_write_dropped_samples_total{region=\"ap-southeast\"}", "values": "0x20" },
            ],
            "alert_rule_test": [
                { "eval_time": "5m", "alertname": "FediprobeSamplesUndelivered", "exp_alerts": [] },
                // 9m: eu-west's backlog is 9 minutes old (not yet); us-east lost samples.
                { "eval_time": "9m", "alertname": "FediprobeSamplesUndelivered", "exp_alerts": [alert("us-east")] },
                // 11m: eu-west's backlog is 11 minutes old.
                { "eval_time": "11m", "alertname": "FediprobeSamplesUndelivered", "exp_alerts": [alert("eu-west"), alert("us-east")] },
            ],
        }],
    });
    std::fs::write(dir.join("tests.yaml"), serde_json::to_string_pretty(&tests).unwrap()).unwrap();
    let output = tools::run(&promtool, &["test", "rules", "tests.yaml"], &dir);
    tools::assert_success(&format!("promtool test rules (files in {})", dir.display()), &output);
}
