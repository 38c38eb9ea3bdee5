//! The opt-in `search-indexing` journey (`examples/search-indexing.yaml`) against a sandbox
//! whose search index lags: the poll finds the post once it is indexed, and a
//! post never indexed fails the run at the `found` step.

mod support;

use std::time::Duration;

use fediprobe::runner::{Outcome, Reason, RunResult, Runner, StepStatus};
use fediprobe::sandbox::{InstanceConfig, SandboxConfig};
use fediprobe::spec::Journey;
use support::sandbox::start_with;

fn journey(edit: impl FnOnce(String) -> String) -> Journey {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/search-indexing.yaml");
    let text = std::fs::read_to_string(path).expect("the opt-in journey is in the repository");
    support::journeys::parse_as("examples/search-indexing.yaml", &edit(text))
}

fn lagging(delay: Duration) -> SandboxConfig {
    SandboxConfig {
        instances: vec![
            InstanceConfig { search_index_delay: delay, ..InstanceConfig::new("alpha") },
            InstanceConfig::new("beta"),
        ],
    }
}

fn pretty(result: &RunResult) -> String {
    serde_json::to_string_pretty(result).unwrap()
}

#[tokio::test]
async fn the_post_is_found_once_indexed_and_deleted_after() {
    let sandbox = start_with(lagging(Duration::from_millis(1200))).await;
    // A shorter interval than the journey's 5 s, so the test sees several looks.
    let journey = journey(|t| t.replace("interval: 5s", "interval: 300ms"));
    let result = Runner::new(fediprobe::sandbox::probe_targets(&sandbox)).run(&journey).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", pretty(&result));
    let found = &result.steps[1];
    assert_eq!(found.name, "found");
    assert!(found.attempts >= 2, "the first look came before the index had it: {}", pretty(&result));
    assert!(found.duration >= Duration::from_millis(1000), "{:?}", found.duration);
    assert_eq!((result.cleanup[0].status, result.cleanup[0].http_status), (StepStatus::Passed, Some(200)));
}

#[tokio::test]
async fn a_post_never_indexed_fails_at_found() {
    let sandbox = start_with(lagging(Duration::from_secs(3600))).await;
    let journey = journey(|t| t.replace("interval: 5s", "interval: 300ms").replace("within: 90s", "within: 1s"));
    let result = Runner::new(fediprobe::sandbox::probe_targets(&sandbox)).run(&journey).await;
    assert_eq!((result.outcome, result.reason), (Outcome::Failure, Some(Reason::Assertion)), "{}", pretty(&result));
    assert_eq!(result.failed_step.as_deref(), Some("found"));
    assert_eq!(result.cleanup[0].status, StepStatus::Passed, "the post is deleted all the same");
}

#[test]
fn a_config_naming_the_journeys_folder_does_not_run_it_but_naming_the_file_does() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (folder, diagnostics) = fediprobe::spec::load_journey_paths(&[root.join("journeys")]);
    assert!(!diagnostics.has_errors(), "{diagnostics}");
    assert!(!folder.is_empty() && folder.iter().all(|j| j.name != "search-indexing"));
    let (named, diagnostics) =
        fediprobe::spec::load_journey_paths(&[root.join("journeys"), root.join("examples/search-indexing.yaml")]);
    assert!(!diagnostics.has_errors(), "{diagnostics}");
    assert_eq!(named.len(), folder.len() + 1);
    assert!(named.iter().any(|j| j.name == "search-indexing"));
}
