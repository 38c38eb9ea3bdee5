//! The runner against the sandbox over real loopback HTTP: every bundled journey
//! succeeds, and each injected fault ends in the outcome and reason it should.

mod support;

use std::time::Duration;

use fediprobe::runner::target::{SecretError, TokenError};
use fediprobe::runner::{Outcome, Reason, RunResult, Runner, StepStatus, Target};
use fediprobe::sandbox::{Fault, Sandbox, SandboxConfig};
use fediprobe::secret::Secret;
use fediprobe::spec::bundled;
use http::Method;

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default()).await.expect("sandbox starts")
}

fn targets(sandbox: &Sandbox) -> Vec<Target> {
    fediprobe::sandbox::probe_targets(sandbox)
}

async fn run_with_fault(name: &str, method: Option<Method>, path: &str, fault: Fault) -> RunResult {
    let sandbox = sandbox().await;
    sandbox.instance("alpha").unwrap().faults().inject(method, path, fault);
    Runner::new(targets(&sandbox)).run(&support::journeys::bundled(name)).await
}

fn assert_outcome(result: &RunResult, outcome: Outcome, reason: Option<Reason>, step: &str) {
    assert_eq!(
        (result.outcome, result.reason, result.failed_step.as_deref()),
        (outcome, reason, Some(step)),
        "{}",
        serde_json::to_string_pretty(result).unwrap()
    );
}

#[tokio::test]
async fn every_bundled_journey_succeeds_against_the_sandbox() {
    let sandbox = sandbox().await;
    let runner = Runner::new(targets(&sandbox));
    for journey in bundled::journeys().unwrap() {
        let result = runner.run(&journey).await;
        assert_eq!(result.outcome, Outcome::Success, "{}", serde_json::to_string_pretty(&result).unwrap());
        assert!(result.steps.iter().all(|s| s.status == StepStatus::Passed && s.attempts >= 1));
        assert!(result.cleanup.iter().all(|s| s.status == StepStatus::Passed), "{:?}", result.cleanup);
        assert!(result.duration > Duration::ZERO);
        assert_eq!(result.account, "probe");
    }
}

#[tokio::test]
async fn a_503_is_a_failure_with_reason_http_status() {
    let result = run_with_fault("home-timeline", None, "/api/v1/timelines/home", Fault::Status(503)).await;
    assert_outcome(&result, Outcome::Failure, Some(Reason::HttpStatus), "home");
    let error = result.error().unwrap();
    assert!(error.message.contains("503"), "{}", error.message);
    assert_eq!(error.assertion.as_ref().unwrap().actual, "503");
    assert_eq!(result.steps[0].http_status, Some(503));
}

#[tokio::test]
async fn malformed_json_is_a_failure_with_reason_invalid_json() {
    let result =
        run_with_fault("verify-credentials", None, "/api/v1/accounts/verify_credentials", Fault::MalformedJson).await;
    assert_outcome(&result, Outcome::Failure, Some(Reason::InvalidJson), "verify");
}

#[tokio::test]
async fn a_dropped_connection_is_a_failure_with_reason_connection_closed() {
    let result = run_with_fault("notifications", None, "/api/v1/notifications", Fault::DropConnection).await;
    assert_outcome(&result, Outcome::Failure, Some(Reason::ConnectionClosed), "notifications");
}

#[tokio::test]
async fn a_reset_mid_body_is_a_failure_with_reason_connection_closed() {
    let result = run_with_fault("notifications", None, "/api/v1/notifications", Fault::ResetMidBody).await;
    assert_outcome(&result, Outcome::Failure, Some(Reason::ConnectionClosed), "notifications");
}

#[tokio::test]
async fn added_latency_is_measured_and_breaks_only_the_latency_objective() {
    let result =
        run_with_fault("home-timeline", None, "/api/v1/timelines/home", Fault::Latency(Duration::from_millis(600)))
            .await;
    assert_eq!(result.outcome, Outcome::Success);
    assert!(result.duration >= Duration::from_millis(600), "{:?}", result.duration);
    assert!(!result.latency_ok, "600 ms is over the 500 ms threshold");
}

#[tokio::test]
async fn a_429_is_the_probes_own_fault() {
    let result = run_with_fault("search", None, "/api/v2/search", Fault::Status(429)).await;
    assert_outcome(&result, Outcome::ProbeError, Some(Reason::RateLimited), "search");
}

#[tokio::test]
async fn a_slow_body_runs_into_the_step_timeout() {
    let sandbox = sandbox().await;
    let alpha = sandbox.instance("alpha").unwrap();
    alpha.faults().inject(None, "/api/v1/timelines/public", Fault::SlowBody { total: Duration::from_secs(5) });
    let journey = support::journeys::parse(
        "name: slow\ninstance: main\nschedule: '* * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: local\n    timeout: 500ms\n    request: { path: /api/v1/timelines/public }\n",
    );
    let result = Runner::new(targets(&sandbox)).run(&journey).await;
    assert_outcome(&result, Outcome::Failure, Some(Reason::Timeout), "local");
    assert!(result.duration < Duration::from_secs(5), "the timeout must cut the body short: {:?}", result.duration);
}

#[tokio::test]
async fn the_journey_deadline_bounds_the_whole_run() {
    let sandbox = sandbox().await;
    sandbox.instance("alpha").unwrap().faults().inject(
        None,
        "/api/v1/notifications",
        Fault::Latency(Duration::from_secs(5)),
    );
    let journey = support::journeys::parse(
        "name: deadline\ninstance: main\nschedule: '* * * * *'\ndeadline: 700ms\nslo: { availability: 99% }\nsteps:\n  - name: home\n    request: { path: /api/v1/timelines/home }\n  - name: notifications\n    request: { path: /api/v1/notifications }\n  - name: never\n    request: { path: /api/v1/timelines/home }\n",
    );
    let result = Runner::new(targets(&sandbox)).run(&journey).await;
    assert_outcome(&result, Outcome::Failure, Some(Reason::Timeout), "notifications");
    assert!(result.error().unwrap().message.contains("deadline"), "{}", result.error().unwrap().message);
    assert_eq!(result.steps[2].status, StepStatus::Skipped);
}

#[tokio::test]
async fn cleanup_runs_after_a_failed_step_and_deletes_the_post() {
    let sandbox = sandbox().await;
    let alpha = sandbox.instance("alpha").unwrap();
    // The post works, reading it back fails: the delete must still run.
    alpha.faults().inject(Some(Method::GET), "/api/v1/statuses/", Fault::Status(500));
    let result = Runner::new(targets(&sandbox)).run(&support::journeys::bundled("post-status")).await;
    assert_outcome(&result, Outcome::Failure, Some(Reason::HttpStatus), "read-back");
    assert_eq!(result.cleanup.len(), 1);
    assert_eq!(result.cleanup[0].status, StepStatus::Passed, "{:?}", result.cleanup[0]);
    // The status is gone: once the fault is lifted, reading it gives 404.
    alpha.faults().clear();
    let id = &result.captures.iter().find(|(n, _)| n == "id").unwrap().1;
    let token = alpha.account("probe").unwrap().token.expose().to_owned();
    fediprobe::install_crypto_provider();
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/statuses/{id}", alpha.base_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn cleanup_is_skipped_when_what_it_needs_was_never_captured() {
    let result = run_with_fault("post-status", Some(Method::POST), "/api/v1/statuses", Fault::Status(500)).await;
    assert_outcome(&result, Outcome::Failure, Some(Reason::HttpStatus), "post");
    assert_eq!(result.cleanup[0].status, StepStatus::Skipped);
    assert!(result.cleanup[0].skipped_because.as_deref().unwrap().contains("${id}"));
}

#[tokio::test]
async fn a_wrong_token_is_a_probe_error_and_a_missing_one_too() {
    let sandbox = sandbox().await;
    let mut wrong = targets(&sandbox);
    wrong[0].token = Ok(Secret::new("not-the-token"));
    let result = Runner::new(wrong).run(&support::journeys::bundled("home-timeline")).await;
    assert_outcome(&result, Outcome::ProbeError, Some(Reason::Unauthorized), "home");

    let mut missing = targets(&sandbox);
    missing[0].token = Err(TokenError {
        instance: "main".into(),
        account: None,
        cause: SecretError::EnvNotSet("FEDIPROBE_MAIN_TOKEN".into()),
    });
    let result = Runner::new(missing).run(&support::journeys::bundled("home-timeline")).await;
    assert_outcome(&result, Outcome::ProbeError, Some(Reason::Config), "home");
    assert!(result.error().unwrap().message.contains("FEDIPROBE_MAIN_TOKEN"));
}

#[tokio::test]
async fn a_closed_port_is_a_failure_with_reason_connect() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let target = Target::new("main", format!("http://127.0.0.1:{port}").parse().unwrap(), "probe", Secret::new("x"));
    let result = Runner::new(vec![target]).run(&support::journeys::bundled("instance-health")).await;
    assert_outcome(&result, Outcome::Failure, Some(Reason::Connect), "health");
}

#[tokio::test]
async fn a_poll_repeats_until_its_assertion_holds_or_its_time_runs_out() {
    let sandbox = sandbox().await;
    let waits = support::journeys::parse(
        "name: wait\ninstance: main\nschedule: '* * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: post\n    request: { method: POST, path: /api/v1/statuses, form: { status: 'poll ${nonce}', visibility: public } }\n    capture: { id: $.id }\n  - name: appears\n    poll:\n      request: { path: /api/v1/timelines/public, query: { local: 'true' } }\n      interval: 100ms\n      within: 5s\n    expect:\n      json:\n        - { path: '$[*].id', equals: '${id}' }\n  - name: never\n    poll:\n      request: { path: /api/v1/timelines/public, query: { local: 'true' } }\n      interval: 100ms\n      within: 1s\n    expect:\n      json:\n        - { path: '$[*].content', contains: 'no such text ${nonce}' }\ncleanup:\n  - name: delete\n    request: { method: DELETE, path: '/api/v1/statuses/${id}' }\n",
    );
    let result = Runner::new(targets(&sandbox)).run(&waits).await;
    assert_outcome(&result, Outcome::Failure, Some(Reason::Assertion), "never");
    assert_eq!(result.steps[1].status, StepStatus::Passed);
    assert_eq!(result.steps[1].attempts, 1, "the post is there at once");
    // It asked again until its second ran out (how often depends on how fast this
    // machine answers, so only "more than once" is a claim).
    assert!(result.steps[2].attempts >= 2, "{} attempts", result.steps[2].attempts);
    let failure = result.error().unwrap().assertion.as_ref().unwrap();
    assert!(failure.expected.contains("no such text"), "{failure:?}");
    assert_eq!(result.cleanup[0].status, StepStatus::Passed);
}

#[tokio::test]
async fn a_poll_whose_window_ends_during_an_attempt_reports_the_assertion_it_kept_failing() {
    // Each answer takes 350 ms: answers at 0.35 s and 0.8 s do not hold, the third
    // attempt goes out at 0.9 s and is cut by the 1 s window. What the user saw is
    // that the text never appeared, not a server that failed to answer.
    let sandbox = sandbox().await;
    let alpha = sandbox.instance("alpha").unwrap();
    alpha.faults().inject(None, "/api/v1/timelines/public", Fault::Latency(Duration::from_millis(350)));
    let journey = support::journeys::parse(
        "name: wait\ninstance: main\nschedule: '* * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: never\n    poll:\n      request: { path: /api/v1/timelines/public }\n      interval: 100ms\n      within: 1s\n    expect:\n      json:\n        - { path: '$[*].content', contains: 'no such text' }\n",
    );
    let result = Runner::new(targets(&sandbox)).run(&journey).await;
    assert_outcome(&result, Outcome::Failure, Some(Reason::Assertion), "never");
    assert!(result.steps[0].attempts >= 2, "{} attempts", result.steps[0].attempts);
    let error = result.error().unwrap();
    assert!(error.message.contains("still not true"), "{}", error.message);
    assert!(error.assertion.as_ref().unwrap().expected.contains("no such text"), "{error:?}");
}

#[tokio::test]
async fn no_token_appears_in_any_result_even_when_things_fail() {
    let sandbox = sandbox().await;
    let alpha = sandbox.instance("alpha").unwrap();
    let token = alpha.account("probe").unwrap().token.expose().to_owned();
    alpha.faults().inject(None, "/api/v1/timelines", Fault::Status(503));
    alpha.faults().inject(None, "/api/v1/notifications", Fault::MalformedJson);
    let runner = Runner::new(targets(&sandbox));
    for journey in bundled::journeys().unwrap() {
        let result = runner.run(&journey).await;
        let text = format!("{} {:?}", serde_json::to_string(&result).unwrap(), result);
        assert!(!text.contains(&token), "token leaked in {}", journey.name);
    }
    assert!(!format!("{:?}", runner).contains(&token));
}
