//! The `notification-delay` journey against two federating sandbox instances:
//! peer's probe mentions main's, and the `notification` event on main's user
//! stream ends the wait. The sandbox's side is held to Mastodon's entities; the
//! delay is recorded in its own series, apart from the federation delay.

mod support;

use std::time::Duration;

use fediprobe::runner::stream::Method;
use fediprobe::runner::{Delivery, Outcome, Reason, RunResult, Runner, StepStatus};
use fediprobe::sandbox::{Sandbox, SandboxConfig};
use support::journeys::bundled;
use support::openapi::assert_valid;
use support::sandbox::{As, json};

const JOURNEY: &str = "notification-delay";

fn pretty(result: &RunResult) -> String {
    serde_json::to_string_pretty(result).unwrap()
}

fn delivery(result: &RunResult) -> &Delivery {
    result.steps.iter().find_map(|s| s.delivery.as_ref()).unwrap_or_else(|| panic!("no delivery: {}", pretty(result)))
}

async fn run(sandbox: &Sandbox) -> RunResult {
    Runner::new(fediprobe::sandbox::probe_targets(sandbox)).run(&bundled(JOURNEY)).await
}

#[tokio::test]
async fn a_mention_from_peer_is_notified_on_mains_stream_and_recorded_as_notification_delay() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.instance("beta").unwrap().federation().set_delay(Duration::from_millis(300));
    let result = run(&sandbox).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", pretty(&result));
    let d = delivery(&result);
    assert_eq!(
        (d.source.as_str(), d.destination.as_str(), d.event.as_str(), d.method),
        ("peer", "main", "notification", Method::Stream)
    );
    // The sandbox starts its delay just before it answers the POST.
    let figure = d.delay.unwrap_or_else(|| panic!("a stream delivery has a figure: {}", pretty(&result)));
    assert!(figure >= Duration::from_millis(250), "{figure:?}");
    assert_eq!(result.delay_ok, Some(true));

    let samples = fediprobe::metrics::samples_for_run(&result, "eu-west");
    let names: Vec<_> = samples.iter().filter_map(|s| s.name()).collect();
    assert!(!names.contains(&"fediprobe_federation_delay_seconds"), "{names:?}");
    assert!(!names.contains(&"fediprobe_federation_delay_unbounded"), "{names:?}");
    let delay = samples.iter().find(|s| s.name() == Some("fediprobe_notification_delay_seconds")).unwrap();
    for (key, value) in [("source", "peer"), ("destination", "main"), ("method", "stream"), ("journey", JOURNEY)] {
        assert!(delay.labels.contains(&(key.to_owned(), value.to_owned())), "{:?}", delay.labels);
    }
    assert_eq!(delay.value, figure.as_secs_f64());
    assert!(samples.iter().any(|s| s.name() == Some("fediprobe_notification_delay_unbounded") && s.value == 0.0));
    assert!(samples.iter().any(|s| s.name() == Some("fediprobe_journey_delay_ok") && s.value == 1.0));
}

#[tokio::test]
async fn cleanup_deletes_the_mention_on_peer_and_its_notification_goes_with_it() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let result = run(&sandbox).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", pretty(&result));
    let delete = &result.cleanup[0];
    assert_eq!((delete.name.as_str(), delete.status), ("delete", StepStatus::Passed));
    assert_eq!(delete.instance, "peer", "the delete is peer's, on peer's budget");

    let mention_step = result.steps.iter().find(|s| s.name == "mention").unwrap();
    assert_eq!(mention_step.instance, "peer");
    let beta = As::user(sandbox.instance("beta").unwrap(), "probe");
    let alpha = As::user(sandbox.instance("alpha").unwrap(), "probe");
    let (_, own) = json(beta.get("/api/v1/accounts/verify_credentials").send().await.unwrap()).await;
    let (_, statuses) =
        json(beta.get(&format!("/api/v1/accounts/{}/statuses", own["id"].as_str().unwrap())).send().await.unwrap())
            .await;
    assert!(
        statuses.as_array().unwrap().iter().all(|s| !s["content"].as_str().unwrap().contains("fediprobe notification")),
        "the mention is deleted on peer: {statuses:#}"
    );
    // Federation of the delete is asynchronous: wait (bounded) until main drops the notification.
    let mut gone = false;
    for _ in 0..100 {
        let (_, notifications) = json(alpha.get("/api/v1/notifications?types[]=mention").send().await.unwrap()).await;
        if notifications
            .as_array()
            .unwrap()
            .iter()
            .all(|n| !n["status"]["content"].as_str().unwrap_or_default().contains("fediprobe notification"))
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "main's notification of the deleted mention is gone");
}

#[tokio::test]
async fn a_remote_mention_streams_a_mastodon_notification_entity() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let alpha = sandbox.instance("alpha").unwrap();
    let mut socket = support::stream::user_stream(alpha, "probe").await;
    let beta = As::user(sandbox.instance("beta").unwrap(), "probe");
    let mention = beta.post_status(&format!("@probe@{} hello from peer", alpha.domain), "direct").await;
    let frame = support::stream::next_event(&mut socket, "notification").await.expect("a notification frame");
    let notification = support::stream::payload(&frame);
    assert_eq!(notification["type"], "mention");
    assert_eq!(notification["status"]["uri"], mention["uri"]);
    assert_eq!(notification["status"]["visibility"], "direct");
    assert_eq!(notification["account"]["acct"], format!("probe@{}", sandbox.instance("beta").unwrap().domain));
    assert_valid("/api/v1/notifications/{id}", "get", 200, &notification);

    // The same notification is listed by the REST API, as the fallback polls it.
    let (status, listed) =
        json(As::user(alpha, "probe").get("/api/v1/notifications?types[]=mention&limit=30").send().await.unwrap())
            .await;
    assert_eq!(status, 200);
    assert_valid("/api/v1/notifications", "get", 200, &listed);
    assert!(listed.as_array().unwrap().iter().any(|n| n["id"] == notification["id"]), "{listed:#}");
}

#[tokio::test]
async fn a_downed_stream_on_main_falls_back_to_polling_notifications() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.instance("alpha").unwrap().federation().set_streaming_down(true);
    let result = run(&sandbox).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", pretty(&result));
    let d = delivery(&result);
    assert_eq!((d.event.as_str(), d.method), ("notification", Method::Poll));
    let samples = fediprobe::metrics::samples_for_run(&result, "eu-west");
    let delay = samples.iter().find(|s| s.name() == Some("fediprobe_notification_delay_unbounded")).unwrap();
    assert!(delay.labels.contains(&("method".to_owned(), "poll".to_owned())), "{:?}", delay.labels);
}

#[tokio::test]
async fn main_not_following_peer_is_the_probes_own_set_up() {
    let mut config = SandboxConfig::default();
    for instance in &mut config.instances {
        instance.federation.seed_probe_follows = false;
    }
    let sandbox = Sandbox::start(config).await.unwrap();
    let result = run(&sandbox).await;
    assert_eq!(
        (result.outcome, result.reason),
        (Outcome::ProbeError, Some(Reason::NotFollowing)),
        "{}",
        pretty(&result)
    );
    assert!(result.steps.iter().all(|s| s.name != "mention" || s.status == StepStatus::Skipped), "{}", pretty(&result));
}

#[tokio::test]
async fn a_mention_that_never_arrives_is_not_delivered_and_a_delay_miss() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.instance("beta").unwrap().federation().set_drop_all(true);
    let journey = support::journeys::bundled_edited(JOURNEY, |text| {
        text.replace("within: 3m", "within: 1500ms").replace("interval: 5s", "interval: 500ms")
    });
    let result = Runner::new(fediprobe::sandbox::probe_targets(&sandbox)).run(&journey).await;
    assert_eq!((result.outcome, result.reason), (Outcome::Failure, Some(Reason::NotDelivered)), "{}", pretty(&result));
    assert_eq!(result.failed_step.as_deref(), Some("notified"));
    assert_eq!(result.delay_ok, Some(false));
}
