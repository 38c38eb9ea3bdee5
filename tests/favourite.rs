//! The `favourite` journey acts only on what the probe created: it favourites a
//! standing status of the probe account, created once (found by its marker
//! afterwards) and never deleted, so it costs no deletes; other users' public
//! posts, the newest on the local timeline included, are never touched, and the
//! leftover sweep leaves the standing status alone.

mod support;

use std::time::Duration;

use fediprobe::runner::{Outcome, Runner};
use fediprobe::sandbox::Sandbox;
use serde_json::Value;
use support::journeys::bundled as journey;
use support::sandbox::{As, json, start};

/// The probe account's statuses, newest first.
async fn probe_statuses(probe: &As) -> Vec<Value> {
    let (_, me) = json(probe.get("/api/v1/accounts/verify_credentials").send().await.unwrap()).await;
    let id = me["id"].as_str().unwrap();
    let (status, list) =
        json(probe.get(&format!("/api/v1/accounts/{id}/statuses?limit=40")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    list.as_array().unwrap().clone()
}

/// Every status on the local public timeline written by someone other than the
/// probe, with its favourite count, as `alice` sees it.
async fn others_public_posts(sandbox: &Sandbox) -> Vec<(String, u64)> {
    let alpha = sandbox.instance("alpha").unwrap();
    let alice = As::user(alpha, "alice");
    let (_, list) = json(alice.get("/api/v1/timelines/public?local=true&limit=40").send().await.unwrap()).await;
    list.as_array()
        .unwrap()
        .iter()
        .filter(|s| s["account"]["username"] != "probe")
        .map(|s| (s["id"].as_str().unwrap().to_owned(), s["favourites_count"].as_u64().unwrap()))
        .collect()
}

#[tokio::test]
async fn favourite_creates_its_standing_status_once_and_never_touches_other_peoples_posts() {
    let sandbox = start().await;
    let alpha = sandbox.instance("alpha").unwrap();
    let probe = As::user(alpha, "probe");
    let alice = As::user(alpha, "alice");
    let bob = As::user(alpha, "bob");
    // Another local user's public post, the newest one on the local timeline:
    // the post the old journey would have favourited.
    let newest = alice.post_status("The newest public post on this server. #sandbox", "public").await;
    let newest_id = newest["id"].as_str().unwrap().to_owned();
    let before = others_public_posts(&sandbox).await;
    assert!(before.iter().any(|(id, _)| *id == newest_id), "the seeded timeline has other people's posts");
    let (_, alice_notifications_before) = json(alice.get("/api/v1/notifications?limit=40").send().await.unwrap()).await;
    let (_, bob_notifications_before) = json(bob.get("/api/v1/notifications?limit=40").send().await.unwrap()).await;
    let statuses_before = probe_statuses(&probe).await.len();

    let runner = Runner::new(fediprobe::sandbox::probe_targets(&sandbox));
    let favourite = journey("favourite");
    let first = runner.run(&favourite).await;
    assert_eq!(first.outcome, Outcome::Success, "{}", serde_json::to_string_pretty(&first).unwrap());
    let create = first.steps.iter().find(|s| s.name == "create").unwrap();
    assert_eq!(create.attempts, 1, "the first run creates the standing status");
    let statuses = probe_statuses(&probe).await;
    assert_eq!(statuses.len(), statuses_before + 1);
    let standing = statuses[0].clone();
    assert!(standing["content"].as_str().unwrap().contains("fediprobe-standing-status"), "{standing}");

    for _ in 0..3 {
        let again = runner.run(&favourite).await;
        assert_eq!(again.outcome, Outcome::Success, "{}", serde_json::to_string_pretty(&again).unwrap());
        let create = again.steps.iter().find(|s| s.name == "create").unwrap();
        assert_eq!(create.attempts, 0, "a later run finds the standing status: {create:?}");
        let favourite_step = again.steps.iter().find(|s| s.name == "favourite").unwrap();
        assert_eq!(favourite_step.attempts, 1);
    }
    let statuses = probe_statuses(&probe).await;
    assert_eq!(statuses.len(), statuses_before + 1, "no run posted a second status and none deleted one");
    assert_eq!(statuses[0]["id"], standing["id"]);
    assert_eq!(statuses[0]["favourited"], false, "every favourite was taken back");

    // Nobody else's post was favourited, and nobody was notified.
    assert_eq!(others_public_posts(&sandbox).await, before);
    let (_, alice_notifications) = json(alice.get("/api/v1/notifications?limit=40").send().await.unwrap()).await;
    let (_, bob_notifications) = json(bob.get("/api/v1/notifications?limit=40").send().await.unwrap()).await;
    assert_eq!(alice_notifications, alice_notifications_before);
    assert_eq!(bob_notifications, bob_notifications_before);

    // The leftover sweep, with every status old enough, leaves the standing status alone.
    let reports = runner.sweep_leftovers(Duration::ZERO, None).await;
    assert!(reports.iter().all(|r| r.error.is_none()), "{reports:?}");
    let after_sweep = probe_statuses(&probe).await;
    assert!(after_sweep.iter().any(|s| s["id"] == standing["id"]), "the sweep deleted the standing status");
}

#[tokio::test]
async fn favourite_recreates_its_standing_status_when_someone_deleted_it() {
    let sandbox = start().await;
    let alpha = sandbox.instance("alpha").unwrap();
    let probe = As::user(alpha, "probe");
    let runner = Runner::new(fediprobe::sandbox::probe_targets(&sandbox));
    let favourite = journey("favourite");
    assert_eq!(runner.run(&favourite).await.outcome, Outcome::Success);
    let standing = probe_statuses(&probe).await[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(probe.delete(&format!("/api/v1/statuses/{standing}")).send().await.unwrap().status(), 200);

    let next = runner.run(&favourite).await;
    assert_eq!(next.outcome, Outcome::Success, "{}", serde_json::to_string_pretty(&next).unwrap());
    assert_eq!(next.steps.iter().find(|s| s.name == "create").unwrap().attempts, 1);
    let replacement = probe_statuses(&probe).await[0].clone();
    assert_ne!(replacement["id"].as_str().unwrap(), standing);
    assert!(replacement["content"].as_str().unwrap().contains("fediprobe-standing-status"));
}
