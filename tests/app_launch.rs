//! The `app-launch` journey and `parallel` groups: the members are sent at
//! once, each on its own connection with its own phases; the group lasts until
//! the last answer and fails with its first failing member; `check` counts every
//! member against the rate limits. The sandbox's client endpoints are held to
//! the OpenAPI schemas.

mod support;

use std::path::Path;
use std::time::Duration;

use fediprobe::runner::{Outcome, Reason, RunResult, Runner, StepStatus};
use fediprobe::sandbox::Fault;
use fediprobe::spec::limits::{Counted, usage};
use support::journeys::bundled;
use support::openapi::assert_valid;
use support::sandbox::{As, json, start};

const MEMBERS: [&str; 8] =
    ["verify-credentials", "instance", "custom-emojis", "filters", "lists", "markers", "home", "notifications"];

fn pretty(result: &RunResult) -> String {
    serde_json::to_string_pretty(result).unwrap()
}

#[tokio::test]
async fn the_members_overlap_each_on_its_own_connection_and_the_group_waits_for_the_last() {
    let sandbox = start().await;
    let alpha = sandbox.instance("alpha").unwrap();
    // Every member takes at least 200 ms at the server: run one after another they
    // would take at least the sum; overlapping, the group takes less than the sum.
    for path in [
        "/api/v1/accounts/verify_credentials",
        "/api/v2/instance",
        "/api/v1/custom_emojis",
        "/api/v2/filters",
        "/api/v1/lists",
        "/api/v1/markers",
        "/api/v1/timelines/home",
        "/api/v1/notifications",
    ] {
        alpha.faults().inject(None, path, Fault::Latency(Duration::from_millis(200)));
    }
    let result = Runner::new(fediprobe::sandbox::probe_targets(&sandbox)).run(&bundled("app-launch")).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", pretty(&result));
    let group = &result.steps[0];
    assert_eq!(group.name, "launch");
    assert!(group.phases.is_none(), "a group's members overlap: it has no phases of its own");
    let names: Vec<&str> = group.parallel.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, MEMBERS);
    let mut sum = Duration::ZERO;
    for member in &group.parallel {
        assert_eq!(member.status, StepStatus::Passed, "{}", pretty(&result));
        let phases = member.phases.as_ref().unwrap_or_else(|| panic!("{} has phases", member.name));
        assert!(phases.connect > Duration::ZERO, "{} opened its own connection: {phases:?}", member.name);
        assert!(phases.total() <= member.duration, "{}: phases within the request", member.name);
        assert!(member.duration >= Duration::from_millis(200));
        assert!(group.duration >= member.duration, "the group waits for its last member");
        sum += member.duration;
    }
    assert!(group.duration < sum, "the members ran at once: group {:?}, members' sum {sum:?}", group.duration);
    assert!(result.duration >= group.duration, "the journey includes its one group");

    let samples = fediprobe::metrics::samples_for_run(&result, "eu-west");
    let steps_of = |series: &str| -> Vec<String> {
        let mut steps: Vec<String> = samples
            .iter()
            .filter(|s| s.name() == Some(series))
            .filter_map(|s| s.labels.iter().find(|(k, _)| k == "step").map(|(_, v)| v.clone()))
            .collect();
        steps.dedup();
        steps
    };
    let mut expected: Vec<String> = std::iter::once("launch").chain(MEMBERS).map(str::to_owned).collect();
    assert_eq!(steps_of("fediprobe_step_duration_seconds"), expected);
    expected.remove(0);
    assert_eq!(steps_of("fediprobe_http_phase_seconds"), expected, "phases per request, none for the group");
}

#[tokio::test]
async fn a_failing_member_fails_the_group_and_names_itself_while_the_others_finish() {
    let sandbox = start().await;
    sandbox.instance("alpha").unwrap().faults().inject(None, "/api/v1/lists", Fault::Status(503));
    let result = Runner::new(fediprobe::sandbox::probe_targets(&sandbox)).run(&bundled("app-launch")).await;
    assert_eq!((result.outcome, result.reason), (Outcome::Failure, Some(Reason::HttpStatus)), "{}", pretty(&result));
    assert_eq!(result.failed_step.as_deref(), Some("launch"));
    let error = result.error().unwrap();
    assert!(error.message.starts_with("step `lists`:"), "{}", error.message);
    let group = &result.steps[0];
    let statuses: Vec<(&str, StepStatus)> = group.parallel.iter().map(|m| (m.name.as_str(), m.status)).collect();
    for (name, status) in statuses {
        let expected = if name == "lists" { StepStatus::Failed } else { StepStatus::Passed };
        assert_eq!(status, expected, "{name}");
    }
}

#[test]
fn check_counts_every_member_against_the_api_limits() {
    let journey = bundled("app-launch");
    let calls: u32 = usage(&journey).iter().filter(|u| u.counted == Counted::ApiCalls).map(|u| u.per_run).sum();
    assert_eq!(calls, MEMBERS.len() as u32);
}

#[test]
fn captures_of_a_member_are_for_the_steps_after_the_group_not_its_siblings() {
    let text = "name: p\ninstance: main\nschedule: '* * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: group\n    parallel:\n      - name: a\n        request: { path: /api/v1/accounts/verify_credentials }\n        capture: { me: $.id }\n      - name: b\n        request: { path: '/api/v1/accounts/${me}' }\n";
    let (journey, diagnostics) = fediprobe::spec::parse_journey_str(Path::new("p.yaml"), text);
    assert!(journey.is_none());
    assert!(diagnostics.to_string().contains("`${me}` is not captured by any earlier step"), "{diagnostics}");
    let after = text.replace(
        "      - name: b\n        request: { path: '/api/v1/accounts/${me}' }\n",
        "      - name: b\n        request: { path: /api/v2/instance }\n  - name: c\n    request: { path: '/api/v1/accounts/${me}' }\n",
    );
    let (journey, diagnostics) = fediprobe::spec::parse_journey_str(Path::new("p.yaml"), &after);
    assert!(journey.is_some(), "{diagnostics}");
}

#[tokio::test]
async fn the_client_endpoints_match_the_openapi_schemas() {
    let sandbox = start().await;
    let probe = As::user(sandbox.instance("alpha").unwrap(), "probe");
    for (path, schema_path) in [
        ("/api/v1/custom_emojis", "/api/v1/custom_emojis"),
        ("/api/v2/filters", "/api/v2/filters"),
        ("/api/v1/lists", "/api/v1/lists"),
        ("/api/v1/markers?timeline[]=home", "/api/v1/markers"),
    ] {
        let (status, body) = json(probe.get(path).send().await.unwrap()).await;
        assert_eq!(status, 200, "{path}");
        assert_valid(schema_path, "get", 200, &body);
    }
    let anonymous = As::anonymous(sandbox.instance("alpha").unwrap());
    assert_eq!(anonymous.get("/api/v1/custom_emojis").send().await.unwrap().status(), 200, "custom emojis are public");
    for path in ["/api/v2/filters", "/api/v1/lists", "/api/v1/markers"] {
        assert_eq!(anonymous.get(path).send().await.unwrap().status(), 401, "{path}");
    }
}
