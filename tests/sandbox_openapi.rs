//! Holds the sandbox to the real Mastodon API: every JSON answer of every endpoint
//! the sandbox serves, fetched over real loopback HTTP, must validate against the
//! schema the vendored Mastodon OpenAPI document (`tests/vendor/mastodon-openapi/`) gives for that path, method and
//! status.

mod support;

use fediprobe::sandbox::{InstanceConfig, Limit, RateLimits, SandboxConfig};
use serde_json::Value;
use support::openapi::{assert_valid, validator};
use support::sandbox::{As, Bodies, json, start, start_with};

/// Sends the request, checks the expected status, validates the body.
async fn check(request: reqwest::RequestBuilder, path: &str, method: &str, expected: u16) -> Value {
    let response = request.send().await.unwrap();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    let (status, body) = json(response).await;
    assert_eq!(status, expected, "{method} {path}: {body}");
    assert_eq!(content_type, "application/json; charset=utf-8");
    assert_valid(path, method, status, &body);
    body
}

#[tokio::test]
async fn the_validator_rejects_a_broken_status() {
    let sandbox = start().await;
    let probe = As::user(&sandbox.instances()[0], "probe");
    let status = probe.post_status("valid", "public").await;
    assert_valid("/api/v1/statuses/{id}", "get", 200, &status);

    let schema = validator("/api/v1/statuses/{id}", "get", 200);
    let mut wrong_visibility = status.clone();
    wrong_visibility["visibility"] = "secret".into();
    assert!(!schema.is_valid(&wrong_visibility));
    let mut no_id = status.clone();
    no_id.as_object_mut().unwrap().remove("id");
    assert!(!schema.is_valid(&no_id));
    let mut numeric_count = status.clone();
    numeric_count["favourites_count"] = "3".into();
    assert!(!schema.is_valid(&numeric_count));
    let mut bad_account = status.clone();
    bad_account["account"].as_object_mut().unwrap().remove("acct");
    assert!(!schema.is_valid(&bad_account), "nested $refs are checked too");
    let mut bad_date = status.clone();
    bad_date["created_at"] = "yesterday".into();
    assert!(!schema.is_valid(&bad_date), "formats are checked too");
    assert!(!validator("/api/v2/instance", "get", 200).is_valid(&status));
}

#[tokio::test]
async fn instance_answers_match_the_schema() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let anonymous = As::anonymous(instance);
    let v2 = check(anonymous.get("/api/v2/instance"), "/api/v2/instance", "get", 200).await;
    assert_eq!(v2["domain"], "alpha.sandbox.test");
    assert_eq!(v2["configuration"]["statuses"]["max_characters"], 500);
    let streaming = instance.base_url.replace("http://", "ws://");
    assert_eq!(v2["configuration"]["urls"]["streaming"], streaming.as_str());
    let v1 = check(anonymous.get("/api/v1/instance"), "/api/v1/instance", "get", 200).await;
    assert_eq!(v1["urls"]["streaming_api"], streaming.as_str());
}

#[tokio::test]
async fn account_answers_match_the_schema() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let probe = As::user(instance, "probe");
    let bob_id = instance.account("bob").unwrap().id.clone();
    let alice_id = instance.account("alice").unwrap().id.clone();

    let me = check(probe.get("/api/v1/accounts/verify_credentials"), "/api/v1/accounts/verify_credentials", "get", 200)
        .await;
    assert_eq!(me["username"], "probe");
    assert_eq!(me["uri"], format!("{}/users/probe", instance.base_url).as_str());

    let bob = check(probe.get(&format!("/api/v1/accounts/{bob_id}")), "/api/v1/accounts/{id}", "get", 200).await;
    assert_eq!(bob["acct"], "bob");
    for acct in ["alice", "@alice", "alice@alpha.sandbox.test"] {
        let found =
            check(probe.get(&format!("/api/v1/accounts/lookup?acct={acct}")), "/api/v1/accounts/lookup", "get", 200)
                .await;
        assert_eq!(found["id"], alice_id.as_str());
    }
    let relationships = check(
        probe.get(&format!("/api/v1/accounts/relationships?id[]={alice_id}&id[]={bob_id}")),
        "/api/v1/accounts/relationships",
        "get",
        200,
    )
    .await;
    assert_eq!(relationships[0]["following"], true);
    assert_eq!(relationships[1]["following"], false);
    assert_eq!(relationships[1]["followed_by"], true);

    let followed =
        check(probe.post(&format!("/api/v1/accounts/{bob_id}/follow")), "/api/v1/accounts/{id}/follow", "post", 200)
            .await;
    assert_eq!(followed["following"], true);
    let unfollowed = check(
        probe.post(&format!("/api/v1/accounts/{bob_id}/unfollow")),
        "/api/v1/accounts/{id}/unfollow",
        "post",
        200,
    )
    .await;
    assert_eq!(unfollowed["following"], false);
}

#[tokio::test]
async fn status_answers_match_the_schema() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let probe = As::user(instance, "probe");
    let alice = As::user(instance, "alice");

    let form = check(
        probe.post("/api/v1/statuses").form(&[
            ("status", "Hello <world> & #fediprobe"),
            ("visibility", "unlisted"),
            ("spoiler_text", "cw"),
            ("sensitive", "true"),
            ("language", "en"),
        ]),
        "/api/v1/statuses",
        "post",
        200,
    )
    .await;
    assert_eq!(form["content"], "<p>Hello &lt;world&gt; &amp; #fediprobe</p>");
    assert_eq!(form["visibility"], "unlisted");
    assert_eq!(form["sensitive"], true);
    assert_eq!(form["tags"][0]["name"], "fediprobe");
    let id = form["id"].as_str().unwrap().to_owned();
    assert_eq!(form["uri"], format!("{}/users/probe/statuses/{id}", instance.base_url).as_str());

    let reply = check(
        alice.post("/api/v1/statuses").json(&serde_json::json!({
            "status": "@probe a JSON reply",
            "in_reply_to_id": id,
            "visibility": "public",
            "sensitive": false,
        })),
        "/api/v1/statuses",
        "post",
        200,
    )
    .await;
    assert_eq!(reply["in_reply_to_id"], id.as_str());
    assert_eq!(reply["mentions"][0]["username"], "probe");

    let path = format!("/api/v1/statuses/{id}");
    let shown = check(alice.get(&path), "/api/v1/statuses/{id}", "get", 200).await;
    assert_eq!(shown["replies_count"], 1);
    let favourited =
        check(alice.post(&format!("{path}/favourite")), "/api/v1/statuses/{id}/favourite", "post", 200).await;
    assert_eq!((favourited["favourited"].clone(), favourited["favourites_count"].clone()), (true.into(), 1.into()));
    let unfavourited =
        check(alice.post(&format!("{path}/unfavourite")), "/api/v1/statuses/{id}/unfavourite", "post", 200).await;
    assert_eq!(unfavourited["favourites_count"], 0);
    let me = check(probe.get("/api/v1/accounts/verify_credentials"), "/api/v1/accounts/verify_credentials", "get", 200)
        .await;
    let own = check(
        probe.get(&format!("/api/v1/accounts/{}/statuses?limit=40&exclude_replies=true", me["id"].as_str().unwrap())),
        "/api/v1/accounts/{id}/statuses",
        "get",
        200,
    )
    .await;
    assert!(!own.as_array().unwrap().is_empty(), "{own}");
    let deleted = check(probe.delete(&path), "/api/v1/statuses/{id}", "delete", 200).await;
    assert_eq!(deleted["text"], "Hello <world> & #fediprobe");
}

#[tokio::test]
async fn timeline_notification_and_search_answers_match_the_schema() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let probe = As::user(instance, "probe");
    let anonymous = As::anonymous(instance);

    let home = check(probe.get("/api/v1/timelines/home"), "/api/v1/timelines/home", "get", 200).await;
    assert!(!home.as_array().unwrap().is_empty());
    let public =
        check(anonymous.get("/api/v1/timelines/public?local=true&limit=40"), "/api/v1/timelines/public", "get", 200)
            .await;
    assert!(public.as_array().unwrap().iter().all(|s| s["visibility"] == "public"));
    let notifications = check(probe.get("/api/v1/notifications"), "/api/v1/notifications", "get", 200).await;
    let kinds: Vec<&str> = notifications.as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
    for kind in ["mention", "favourite", "follow"] {
        assert!(kinds.contains(&kind), "seeded {kind} notification in {kinds:?}");
    }

    let all = check(probe.get("/api/v2/search?q=sre"), "/api/v2/search", "get", 200).await;
    assert!(!all["statuses"].as_array().unwrap().is_empty());
    assert_eq!(all["hashtags"][0]["name"], "sre");
    let accounts =
        check(probe.get("/api/v2/search?q=ali&type=accounts&resolve=true&limit=5"), "/api/v2/search", "get", 200).await;
    assert_eq!(accounts["accounts"][0]["username"], "alice");
    assert!(accounts["statuses"].as_array().unwrap().is_empty());
    let tags = check(probe.get("/api/v2/search?q=%23intro&type=hashtags"), "/api/v2/search", "get", 200).await;
    assert_eq!(tags["hashtags"][0]["name"], "introductions");
}

#[tokio::test]
async fn error_answers_match_the_error_schema() {
    let config = SandboxConfig {
        instances: vec![InstanceConfig {
            limits: RateLimits { statuses: Limit::new(1, std::time::Duration::from_secs(60)), ..RateLimits::default() },
            ..InstanceConfig::new("alpha")
        }],
    };
    let sandbox = start_with(config).await;
    let instance = &sandbox.instances()[0];
    let probe = As::user(instance, "probe");
    let anonymous = As::anonymous(instance);

    let unauthorized =
        check(anonymous.get("/api/v1/accounts/verify_credentials"), "/api/v1/accounts/verify_credentials", "get", 401)
            .await;
    assert_eq!(unauthorized, serde_json::json!({"error": "The access token is invalid"}));
    let mut wrong_token = As::anonymous(instance);
    wrong_token.token = Some("not-a-token".into());
    check(wrong_token.get("/api/v1/timelines/home"), "/api/v1/timelines/home", "get", 401).await;

    let missing = check(probe.get("/api/v1/statuses/12345"), "/api/v1/statuses/{id}", "get", 404).await;
    assert_eq!(missing, serde_json::json!({"error": "Record not found"}));
    check(probe.get("/api/v1/accounts/999"), "/api/v1/accounts/{id}", "get", 404).await;

    let blank = check(probe.post("/api/v1/statuses").form(&[("status", "  ")]), "/api/v1/statuses", "post", 422).await;
    assert_eq!(blank, serde_json::json!({"error": "Validation failed: Text can't be blank"}));

    probe.post_status("the only one allowed", "public").await;
    let limited =
        check(probe.post("/api/v1/statuses").form(&[("status", "one too many")]), "/api/v1/statuses", "post", 429)
            .await;
    assert_eq!(limited, serde_json::json!({"error": "Too many requests"}));
}

#[tokio::test]
async fn federation_answers_match_the_schema() {
    let sandbox = start().await;
    let alpha = sandbox.instance("alpha").unwrap();
    let beta = sandbox.instance("beta").unwrap();
    let probe = As::user(beta, "probe");
    let acct = format!("probe@{}", alpha.domain);

    let remote =
        check(probe.get(&format!("/api/v1/accounts/lookup?acct={acct}")), "/api/v1/accounts/lookup", "get", 200).await;
    assert_eq!(remote["acct"], acct.as_str());
    let remote_id = remote["id"].as_str().unwrap().to_owned();
    check(probe.get(&format!("/api/v1/accounts/{remote_id}")), "/api/v1/accounts/{id}", "get", 200).await;
    let relationships = check(
        probe.get(&format!("/api/v1/accounts/relationships?id[]={remote_id}")),
        "/api/v1/accounts/relationships",
        "get",
        200,
    )
    .await;
    assert_eq!(relationships[0]["following"], true);
    let resolved =
        check(probe.get(&format!("/api/v2/search?q={acct}&resolve=true")), "/api/v2/search", "get", 200).await;
    assert_eq!(resolved["accounts"][0]["id"], remote_id.as_str());

    // A federated status, as beta shows it once it has arrived.
    let posted = As::user(alpha, "probe").post_status("federated, public #fediprobe", "public").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let home = loop {
        let home = check(probe.get("/api/v1/timelines/home"), "/api/v1/timelines/home", "get", 200).await;
        if home.as_array().unwrap().iter().any(|s| s["uri"] == posted["uri"]) {
            break home;
        }
        assert!(std::time::Instant::now() < deadline, "the status reached beta in time");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let copy = home.as_array().unwrap().iter().find(|s| s["uri"] == posted["uri"]).unwrap();
    assert_eq!(copy["account"]["id"], remote_id.as_str());
    assert!(copy.get("application").is_none(), "Mastodon shows no application on remote statuses");
    let id = copy["id"].as_str().unwrap();
    check(probe.get(&format!("/api/v1/statuses/{id}")), "/api/v1/statuses/{id}", "get", 200).await;
    let remote_only =
        check(As::anonymous(beta).get("/api/v1/timelines/public?remote=true"), "/api/v1/timelines/public", "get", 200)
            .await;
    assert_eq!(remote_only[0]["uri"], posted["uri"]);
    let favourited =
        check(probe.post(&format!("/api/v1/statuses/{id}/favourite")), "/api/v1/statuses/{id}/favourite", "post", 200)
            .await;
    assert_eq!(favourited["favourited"], true);
}

/// The streaming API is not in the OpenAPI document, but its payloads are the
/// same entities as the REST answers, and must match them.
#[tokio::test]
async fn streamed_payloads_match_the_schema() {
    use support::stream::{next_event, payload, user_stream};

    let sandbox = start().await;
    let alpha = sandbox.instance("alpha").unwrap();
    let beta = sandbox.instance("beta").unwrap();
    let mut socket = user_stream(beta, "probe").await;

    let posted = As::user(alpha, "probe").post_status("federated, streamed", "private").await;
    let update = payload(&next_event(&mut socket, "update").await.expect("the federated update"));
    assert_eq!(update["uri"], posted["uri"]);
    assert_valid("/api/v1/statuses/{id}", "get", 200, &update);

    let own = As::user(beta, "probe").post_status("local, streamed", "public").await;
    let update = payload(&next_event(&mut socket, "update").await.expect("the local update"));
    assert_eq!(update["id"], own["id"]);
    assert_valid("/api/v1/statuses/{id}", "get", 200, &update);

    let id = own["id"].as_str().unwrap();
    As::user(beta, "alice").post(&format!("/api/v1/statuses/{id}/favourite")).send().await.unwrap();
    let notification = payload(&next_event(&mut socket, "notification").await.expect("the notification"));
    assert_valid("/api/v1/notifications/{id}", "get", 200, &notification);
}
