//! The federation journeys against two federating sandbox instances: the post
//! made on one is seen arriving on the other's streaming API, with the delay
//! measured at the probe; and each way it can go wrong ends as it should.

mod support;

use std::time::Duration;

use fediprobe::runner::stream::Method;
use fediprobe::runner::{Outcome, Reason, RunResult, Runner, Target};
use fediprobe::sandbox::{InstanceConfig, Sandbox, SandboxConfig};
use fediprobe::secret::Secret;
use fediprobe::spec::{Journey, parse_journey_str};
use std::path::Path;

use support::journeys::bundled as journey;

fn targets(sandbox: &Sandbox) -> Vec<Target> {
    fediprobe::sandbox::probe_targets(sandbox)
}

/// The bundled journey with a shorter wait, for the cases where nothing arrives.
fn journey_within(name: &str, within: &str) -> Journey {
    support::journeys::bundled_edited(name, |text| text.replace("within: 5m", &format!("within: {within}")))
}

fn json(result: &RunResult) -> String {
    serde_json::to_string_pretty(result).unwrap()
}

fn delivery(result: &RunResult) -> &fediprobe::runner::Delivery {
    result.steps.iter().find_map(|s| s.delivery.as_ref()).unwrap_or_else(|| panic!("no delivery: {}", json(result)))
}

#[tokio::test]
async fn both_directions_arrive_by_stream_with_the_injected_delay() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.instance("alpha").unwrap().federation().set_delay(Duration::from_millis(400));
    sandbox.instance("beta").unwrap().federation().set_delay(Duration::from_millis(250));
    let runner = Runner::new(targets(&sandbox));
    for (name, source, destination, injected) in
        [("federation-main-to-peer", "main", "peer", 400), ("federation-peer-to-main", "peer", "main", 250)]
    {
        let result = runner.run(&journey(name)).await;
        assert_eq!(result.outcome, Outcome::Success, "{}", json(&result));
        let d = delivery(&result);
        assert_eq!((d.source.as_str(), d.destination.as_str(), d.method), (source, destination, Method::Stream));
        // The sandbox starts its delay just before it answers the POST, so the
        // measured delay can fall short of it by the time the response takes to read.
        let figure = d.delay.unwrap_or_else(|| panic!("a stream delivery has a figure: {}", json(&result)));
        assert!(figure >= Duration::from_millis(injected - 50), "{name}: {figure:?} for {injected} ms");
        assert_eq!(result.delay_ok, Some(true));
        assert_eq!(result.cleanup[0].status, fediprobe::runner::StepStatus::Passed);

        let samples = fediprobe::metrics::samples_for_run(&result, "eu-west");
        let delay = samples.iter().find(|s| s.name() == Some("fediprobe_federation_delay_seconds")).unwrap();
        for label in [("source", source), ("destination", destination), ("method", "stream"), ("region", "eu-west")] {
            assert!(delay.labels.contains(&(label.0.to_owned(), label.1.to_owned())), "{:?}", delay.labels);
        }
        assert_eq!(delay.value, figure.as_secs_f64());
        assert!(samples.iter().any(|s| s.name() == Some("fediprobe_journey_delay_ok") && s.value == 1.0));
    }
}

#[tokio::test]
async fn a_dropped_delivery_is_not_delivered() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.instance("alpha").unwrap().federation().set_drop_all(true);
    let result = Runner::new(targets(&sandbox)).run(&journey_within("federation-main-to-peer", "1500ms")).await;
    assert_eq!((result.outcome, result.reason), (Outcome::Failure, Some(Reason::NotDelivered)), "{}", json(&result));
    assert_eq!(result.failed_step.as_deref(), Some("arrive"));
    assert_eq!(result.delay_ok, Some(false));
    let samples = fediprobe::metrics::samples_for_run(&result, "eu-west");
    assert!(samples.iter().all(|s| s.name() != Some("fediprobe_federation_delay_seconds")));
    assert!(samples.iter().any(|s| s.name() == Some("fediprobe_journey_delay_ok") && s.value == 0.0));
}

#[tokio::test]
async fn a_downed_stream_falls_back_to_polling_and_says_so() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.instance("alpha").unwrap().federation().set_delay(Duration::from_millis(300));
    sandbox.instance("beta").unwrap().federation().set_streaming_down(true);
    let result = Runner::new(targets(&sandbox)).run(&journey("federation-main-to-peer")).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", json(&result));
    let d = delivery(&result);
    assert_eq!(d.method, Method::Poll);
    // The fallback polls on its schedule from one interval after the post: a figure it can bound.
    let figure = d.delay.unwrap_or_else(|| panic!("no figure: {}", json(&result)));
    assert!(figure >= Duration::from_millis(250), "{figure:?}");
}

#[tokio::test]
async fn a_missing_follow_is_the_probes_own_set_up() {
    let mut config = SandboxConfig::default();
    for instance in &mut config.instances {
        instance.federation.seed_probe_follows = false;
    }
    let sandbox = Sandbox::start(config).await.unwrap();
    let result = Runner::new(targets(&sandbox)).run(&journey("federation-main-to-peer")).await;
    assert_eq!((result.outcome, result.reason), (Outcome::ProbeError, Some(Reason::NotFollowing)), "{}", json(&result));
    assert!(result.error().unwrap().message.contains("must follow"));
    assert!(result.steps.iter().all(|s| s.name != "post" || s.status == fediprobe::runner::StepStatus::Skipped));
}

#[tokio::test]
async fn a_refused_token_on_the_stream_is_a_clear_probe_error_not_a_timeout() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let mut targets = targets(&sandbox);
    targets[1].token = Ok(Secret::new("not-the-token"));
    let text = "name: stream-only\ninstance: main\nschedule: '*/5 * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: post\n    request: { method: POST, path: /api/v1/statuses, form: { status: 'x ${nonce}', visibility: private } }\n    capture: { uri: $.uri, id: $.id }\n  - name: arrive\n    instance: peer\n    stream: { open_before: post, within: 30s }\n    expect:\n      json:\n        - { path: $.uri, equals: '${uri}' }\ncleanup:\n  - name: delete\n    request: { method: DELETE, path: '/api/v1/statuses/${id}' }\n";
    let journey = support::journeys::parse_as("stream-only.yaml", text);
    let started = std::time::Instant::now();
    let result = Runner::new(targets).run(&journey).await;
    assert_eq!((result.outcome, result.reason), (Outcome::ProbeError, Some(Reason::Unauthorized)), "{}", json(&result));
    assert!(result.error().unwrap().message.contains("401"), "{}", json(&result));
    assert!(started.elapsed() < Duration::from_secs(30), "it must not wait for `within`");
}

#[tokio::test]
async fn stream_steps_must_refer_to_earlier_steps() {
    let text = "name: bad-stream\ninstance: main\nschedule: '*/5 * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: arrive\n    stream: { open_before: post }\n  - name: post\n    request: { method: POST, path: /api/v1/statuses }\n";
    let (journey, diagnostics) = parse_journey_str(Path::new("bad-stream.yaml"), text);
    assert!(journey.is_none());
    let text = diagnostics.to_string();
    assert!(text.contains("`open_before: post` does not name an earlier step"), "{text}");
    assert!(text.contains("bad-stream.yaml:6:5"), "{text}");
}

#[tokio::test]
async fn sandbox_instances_can_be_named_freely() {
    // The journeys only know `main` and `peer`; any two sandbox instances will do.
    let config = SandboxConfig { instances: vec![InstanceConfig::new("alpha"), InstanceConfig::new("beta")] };
    let sandbox = Sandbox::start(config).await.unwrap();
    let result = Runner::new(targets(&sandbox)).run(&journey("federation-peer-to-main")).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", json(&result));
}
