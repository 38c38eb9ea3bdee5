//! Federation between sandbox instances over real loopback HTTP and websockets:
//! remote accounts with their own ids, cross-instance follows, statuses and
//! deletes travelling through the origin's delivery queue, and the queue's knobs
//! (delay, drops) and the streaming-down knob.

mod support;

use std::time::{Duration, Instant};

use fediprobe::sandbox::{Delay, FederationConfig, InstanceConfig, InstanceHandle, Sandbox, SandboxConfig};
use serde_json::Value;
use support::sandbox::{As, json, start, start_with};
use support::stream::{PATIENCE, TokenIn, next_event, next_frame, open, payload, user_stream};
use tokio_tungstenite::tungstenite::Error;

/// Alpha and beta, with deliveries from alpha taking exactly `delay`.
async fn with_fixed_delay(delay: Duration) -> Sandbox {
    let federation = FederationConfig { delay: Delay::Fixed(delay), ..FederationConfig::default() };
    start_with(SandboxConfig {
        instances: vec![
            InstanceConfig { federation: federation.clone(), ..InstanceConfig::new("alpha") },
            InstanceConfig { federation, ..InstanceConfig::new("beta") },
        ],
    })
    .await
}

fn pair(sandbox: &Sandbox) -> (&InstanceHandle, &InstanceHandle) {
    (sandbox.instance("alpha").unwrap(), sandbox.instance("beta").unwrap())
}

/// The status with `uri` in `username`'s home timeline on `instance`.
async fn in_home(instance: &InstanceHandle, username: &str, uri: &str) -> Option<Value> {
    let home = json(As::user(instance, username).get("/api/v1/timelines/home?limit=40").send().await.unwrap()).await.1;
    home.as_array().unwrap().iter().find(|s| s["uri"] == uri).cloned()
}

async fn absent_from_home(instance: &InstanceHandle, username: &str, posted: &Value) -> bool {
    in_home(instance, username, posted["uri"].as_str().unwrap()).await.is_none()
}

/// Polls until the status with `uri` is in the home timeline (bounded by PATIENCE).
async fn until_in_home(instance: &InstanceHandle, username: &str, uri: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = in_home(instance, username, uri).await {
            return status;
        }
        assert!(Instant::now() < deadline, "{uri} never reached {username}'s home timeline on {}", instance.name);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads `socket` until the update of the status with id `marker` (posted
/// after everything the test cares about), and returns the `uri`s and ids the
/// frames before it were about.
async fn frames_until(socket: &mut support::stream::Socket, marker: &Value) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let frame = next_frame(socket).await.expect("the marker arrives");
        if frame["event"] == "delete" {
            seen.push(frame["payload"].clone());
            continue;
        }
        let body = payload(&frame);
        if frame["event"] == "update" && body["id"] == marker["id"] {
            return seen;
        }
        seen.push(body["uri"].clone());
        seen.push(body["id"].clone());
    }
}

#[tokio::test]
async fn probes_follow_each_other_across_instances_by_default() {
    let sandbox = start().await;
    let (alpha, beta) = pair(&sandbox);
    let probe_on_beta = As::user(beta, "probe");
    let (status, remote) =
        json(probe_on_beta.get(&format!("/api/v1/accounts/lookup?acct=probe@{}", alpha.domain)).send().await.unwrap())
            .await;
    assert_eq!(status, 200);
    assert_eq!(remote["acct"], format!("probe@{}", alpha.domain).as_str());
    assert_eq!(remote["username"], "probe");
    assert_eq!(remote["uri"], format!("{}/users/probe", alpha.base_url).as_str());
    assert_eq!(remote["url"], format!("{}/@probe", alpha.base_url).as_str());
    let remote_id = remote["id"].as_str().unwrap();
    assert_ne!(remote_id, alpha.account("probe").unwrap().id, "beta's own id for alpha's probe");
    assert_ne!(remote_id, beta.account("probe").unwrap().id);

    let relationships =
        json(probe_on_beta.get(&format!("/api/v1/accounts/relationships?id[]={remote_id}")).send().await.unwrap())
            .await
            .1;
    assert_eq!(relationships[0]["id"], remote_id);
    assert_eq!(relationships[0]["following"], true);
    assert_eq!(relationships[0]["followed_by"], true, "alpha's probe follows beta's probe too");

    let query = format!("/api/v2/search?q=probe@{}&resolve=true&type=accounts", alpha.domain);
    let found = json(probe_on_beta.get(&query).send().await.unwrap()).await.1;
    assert_eq!(found["accounts"][0]["id"], remote_id, "search finds the same record");
}

#[tokio::test]
async fn seeded_cross_follows_can_be_turned_off() {
    let federation = FederationConfig { seed_probe_follows: false, ..FederationConfig::default() };
    let sandbox = start_with(SandboxConfig {
        instances: vec![
            InstanceConfig { federation: federation.clone(), ..InstanceConfig::new("alpha") },
            InstanceConfig { federation, ..InstanceConfig::new("beta") },
        ],
    })
    .await;
    let (alpha, beta) = pair(&sandbox);
    let probe_on_beta = As::user(beta, "probe");
    let remote =
        json(probe_on_beta.get(&format!("/api/v1/accounts/lookup?acct=probe@{}", alpha.domain)).send().await.unwrap())
            .await
            .1;
    let id = remote["id"].as_str().unwrap();
    let relationships =
        json(probe_on_beta.get(&format!("/api/v1/accounts/relationships?id[]={id}")).send().await.unwrap()).await.1;
    assert_eq!(
        (relationships[0]["following"].clone(), relationships[0]["followed_by"].clone()),
        (false.into(), false.into())
    );
}

#[tokio::test]
async fn a_private_status_reaches_a_follower_on_another_instance_after_the_delay() {
    let delay = Duration::from_millis(300);
    let sandbox = with_fixed_delay(delay).await;
    let (alpha, beta) = pair(&sandbox);
    let mut follower = user_stream(beta, "probe").await;
    let mut stranger = user_stream(beta, "bob").await;

    let before_post = Instant::now();
    let posted = As::user(alpha, "probe").post_status("followers only, across instances", "private").await;
    let responded = before_post.elapsed();
    let frame = next_event(&mut follower, "update").await.expect("the federated update arrives");
    let arrived = before_post.elapsed();
    assert_eq!(frame["stream"], serde_json::json!(["user"]));
    let copy = payload(&frame);
    assert_eq!(copy["uri"], posted["uri"], "the origin's uri");
    assert_eq!(copy["url"], posted["url"], "the origin's url");
    assert_ne!(copy["id"], posted["id"], "beta's own id");
    assert_eq!(copy["account"]["acct"], format!("probe@{}", alpha.domain).as_str());
    assert_eq!(copy["account"]["uri"], format!("{}/users/probe", alpha.base_url).as_str());
    assert_eq!(copy["visibility"], "private");
    assert_eq!(copy["content"], "<p>followers only, across instances</p>");
    // The queue's clock starts when alpha stores the status, before it answers
    // the POST, and never runs early. (Arrival minus the response is not
    // bounded below by the delay on the probe's side: the response itself
    // takes time to arrive, so that difference can fall short of it by as much.)
    assert!(arrived >= delay, "arrived {arrived:?} after posting; delay {delay:?}");
    assert!(arrived > responded, "arrived after the POST's answer");

    let in_home = in_home(beta, "probe", posted["uri"].as_str().unwrap()).await.expect("in beta's home timeline");
    assert_eq!(in_home["id"], copy["id"]);
    let shown = As::user(beta, "probe").get(&format!("/api/v1/statuses/{}", copy["id"].as_str().unwrap()));
    assert_eq!(shown.send().await.unwrap().status(), 200);

    // Bob on beta does not follow alpha's probe: nothing on his stream before his
    // own later post, nothing in his home timeline, and the status is hidden.
    let marker = As::user(beta, "bob").post_status("marker", "private").await;
    let seen = frames_until(&mut stranger, &marker).await;
    assert!(!seen.contains(&posted["uri"]) && !seen.contains(&copy["id"]), "bob saw it: {seen:?}");
    assert!(absent_from_home(beta, "bob", &posted).await);
    let hidden = As::user(beta, "bob").get(&format!("/api/v1/statuses/{}", copy["id"].as_str().unwrap()));
    assert_eq!(hidden.send().await.unwrap().status(), 404);
    assert_eq!(alpha.federation().stats().delivered, 1);
}

#[tokio::test]
async fn deletes_federate_with_the_receivers_own_id() {
    let sandbox = with_fixed_delay(Duration::from_millis(20)).await;
    let (alpha, beta) = pair(&sandbox);
    let mut follower = user_stream(beta, "probe").await;
    let probe_on_alpha = As::user(alpha, "probe");
    let posted = probe_on_alpha.post_status("soon gone", "public").await;
    let copy = payload(&next_event(&mut follower, "update").await.expect("the update arrives"));
    let deleted = probe_on_alpha.delete(&format!("/api/v1/statuses/{}", posted["id"].as_str().unwrap()));
    assert_eq!(deleted.send().await.unwrap().status(), 200);
    let frame = next_event(&mut follower, "delete").await.expect("the delete arrives");
    assert_eq!(frame["payload"], copy["id"], "beta's id, not alpha's");
    assert!(absent_from_home(beta, "probe", &posted).await);
    let gone = As::user(beta, "probe").get(&format!("/api/v1/statuses/{}", copy["id"].as_str().unwrap()));
    assert_eq!(gone.send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_dropped_delivery_never_arrives() {
    let sandbox = with_fixed_delay(Duration::from_millis(20)).await;
    let (alpha, beta) = pair(&sandbox);
    let mut follower = user_stream(beta, "probe").await;
    alpha.federation().set_drop_all(true);
    let lost = As::user(alpha, "probe").post_status("lost in transit", "private").await;

    // Bounded wait: until alpha's queue has dropped it.
    let deadline = Instant::now() + PATIENCE;
    while alpha.federation().stats().dropped < 1 {
        assert!(Instant::now() < deadline, "the delivery left the queue in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = alpha.federation().stats();
    assert_eq!((stats.queued, stats.delivered, stats.dropped), (0, 0, 1));
    let marker = As::user(beta, "probe").post_status("marker", "private").await;
    let seen = frames_until(&mut follower, &marker).await;
    assert!(!seen.contains(&lost["uri"]), "{seen:?}");
    assert!(absent_from_home(beta, "probe", &lost).await);

    // Deliveries flow again once the knob is turned back.
    alpha.federation().set_drop_all(false);
    let found = As::user(alpha, "probe").post_status("delivered again", "private").await;
    let copy = payload(&next_event(&mut follower, "update").await.unwrap());
    assert_eq!(copy["uri"], found["uri"]);
}

#[tokio::test]
async fn with_streaming_down_statuses_still_reach_the_home_timeline() {
    let sandbox = with_fixed_delay(Duration::from_millis(20)).await;
    let (alpha, beta) = pair(&sandbox);
    beta.federation().set_streaming_down(true);
    let token = beta.account("probe").unwrap().token.expose().to_owned();
    match open(beta, "stream=user", Some((&token, TokenIn::Header))).await {
        Err(Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|(_, response)| response.status())),
    }
    let posted = As::user(alpha, "probe").post_status("poll for me", "private").await;
    let copy = until_in_home(beta, "probe", posted["uri"].as_str().unwrap()).await;
    assert_ne!(copy["id"], posted["id"]);
}

#[tokio::test]
async fn deliveries_from_one_origin_arrive_in_order() {
    let federation = FederationConfig {
        delay: Delay::Uniform { min: Duration::ZERO, max: Duration::from_millis(60) },
        ..FederationConfig::default()
    };
    let sandbox = start_with(SandboxConfig {
        instances: vec![InstanceConfig { federation, ..InstanceConfig::new("alpha") }, InstanceConfig::new("beta")],
    })
    .await;
    let (alpha, beta) = pair(&sandbox);
    let mut follower = user_stream(beta, "probe").await;
    let probe = As::user(alpha, "probe");
    let mut posted = Vec::new();
    for n in 0..6 {
        posted.push(probe.post_status(&format!("number {n}"), "unlisted").await["uri"].clone());
    }
    let mut arrived = Vec::new();
    while arrived.len() < posted.len() {
        arrived.push(payload(&next_event(&mut follower, "update").await.expect("every update arrives"))["uri"].clone());
    }
    assert_eq!(arrived, posted);
}

#[tokio::test]
async fn a_new_remote_follow_starts_deliveries_and_notifies() {
    let sandbox = with_fixed_delay(Duration::from_millis(20)).await;
    let (alpha, beta) = pair(&sandbox);
    let alice_on_beta = As::user(beta, "alice");
    let query = format!("/api/v2/search?q=@alice@{}&resolve=true", alpha.domain);
    let found = json(alice_on_beta.get(&query).send().await.unwrap()).await.1;
    let remote = &found["accounts"][0];
    assert_eq!(remote["acct"], format!("alice@{}", alpha.domain).as_str());
    let followed = json(
        alice_on_beta
            .post(&format!("/api/v1/accounts/{}/follow", remote["id"].as_str().unwrap()))
            .send()
            .await
            .unwrap(),
    )
    .await
    .1;
    assert_eq!(followed["following"], true);

    let mut alice_on_alpha_stream = user_stream(alpha, "alice").await;
    let mut follower = user_stream(beta, "alice").await;
    let posted = As::user(alpha, "alice").post_status("hello, beta", "public").await;
    let copy = payload(&next_event(&mut follower, "update").await.expect("delivered to the new follower"));
    assert_eq!(copy["uri"], posted["uri"]);

    let notifications =
        json(As::user(alpha, "alice").get("/api/v1/notifications?types[]=follow").send().await.unwrap()).await.1;
    assert_eq!(notifications[0]["account"]["acct"], format!("alice@{}", beta.domain).as_str());
    // The author's own update is on her own stream at once (no queue at home).
    assert_eq!(payload(&next_event(&mut alice_on_alpha_stream, "update").await.unwrap())["id"], posted["id"]);

    let unfollowed = alice_on_beta.post(&format!("/api/v1/accounts/{}/unfollow", remote["id"].as_str().unwrap()));
    assert_eq!(json(unfollowed.send().await.unwrap()).await.1["following"], false);
    let unheard = As::user(alpha, "alice").post_status("beta no longer listens", "public").await;
    // Deliveries are queued before the POST is answered: none was.
    let stats = alpha.federation().stats();
    assert_eq!((stats.queued, stats.delivered, stats.dropped), (0, 1, 0));
    let marker = As::user(beta, "alice").post_status("marker", "private").await;
    let seen = frames_until(&mut follower, &marker).await;
    assert!(!seen.contains(&unheard["uri"]), "{seen:?}");
}

#[tokio::test]
async fn delay_and_backlog_knobs_apply_to_later_deliveries() {
    let sandbox = start().await;
    let (alpha, beta) = pair(&sandbox);
    let mut follower = user_stream(beta, "probe").await;
    alpha.federation().set_delay(Duration::from_millis(100));
    alpha.federation().set_backlog(Duration::from_millis(150));
    let before_post = Instant::now();
    let posted = As::user(alpha, "probe").post_status("stuck in a backlog", "unlisted").await;
    let copy = payload(&next_event(&mut follower, "update").await.expect("the update arrives"));
    assert_eq!(copy["uri"], posted["uri"]);
    let arrived = before_post.elapsed();
    assert!(arrived >= Duration::from_millis(250), "delay and backlog add up: {arrived:?}");
}
