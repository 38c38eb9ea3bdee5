//! The sandbox's discovery documents, as other servers read them: WebFinger
//! (RFC 7033 JRD), NodeInfo 2.0, the ActivityPub actor, secure mode, and that
//! none of them counts against the API rate limits. The vendored OpenAPI
//! document describes the client API only (it has none of these paths, which
//! the first test checks so that a newer document with schemas is noticed), so
//! the shapes are held to the specifications and Mastodon's serializers here.

mod support;

use std::time::Duration;

use fediprobe::runner::{Outcome, Runner};
use fediprobe::sandbox::{InstanceConfig, Limit, RateLimits, SandboxConfig};
use support::sandbox::{As, json, start, start_with};

#[test]
fn the_openapi_document_has_no_schema_for_the_discovery_paths() {
    let document = support::openapi::openapi();
    for discovery in ["/.well-known/webfinger", "/.well-known/nodeinfo", "/nodeinfo/2.0", "/users/{username}"] {
        assert!(
            document["paths"].get(discovery).is_none(),
            "openapi.json now describes {discovery}: validate the sandbox's answer against it in tests/sandbox_openapi.rs"
        );
    }
}

#[tokio::test]
async fn webfinger_finds_a_local_account_and_links_its_actor() {
    let sandbox = start().await;
    let alpha = sandbox.instance("alpha").unwrap();
    let anonymous = As::anonymous(alpha);
    let resource = format!("acct:probe@{}", alpha.domain);
    let response = anonymous.get(&webfinger(&resource)).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/jrd+json; charset=utf-8");
    let (status, jrd) = json(response).await;
    assert_eq!(status, 200);
    assert_eq!(jrd["subject"], resource);
    let links = jrd["links"].as_array().unwrap();
    let actor = links.iter().find(|l| l["rel"] == "self").expect("a self link");
    assert_eq!(actor["type"], "application/activity+json");
    let actor_url = actor["href"].as_str().unwrap();
    assert!(jrd["aliases"].as_array().unwrap().iter().any(|a| a == actor_url));

    // The link leads to the actor document, whose id is that very link.
    let response = anonymous.get(actor_url).header("accept", "application/activity+json").send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/activity+json; charset=utf-8");
    let (status, document) = json(response).await;
    assert_eq!(status, 200);
    assert_eq!(document["id"], actor_url);
    // The probe account is a bot, and Mastodon serves bots as `Service` actors.
    assert_eq!(document["type"], "Service");
    assert_eq!(document["preferredUsername"], "probe");
    assert_eq!(document["publicKey"]["owner"], actor_url);
    for key in ["inbox", "outbox", "followers", "following"] {
        assert!(document[key].as_str().unwrap().starts_with(actor_url), "{key}: {document:#}");
    }
}

#[tokio::test]
async fn webfinger_refuses_what_it_cannot_answer_as_mastodon_does() {
    let sandbox = start().await;
    let alpha = sandbox.instance("alpha").unwrap();
    let anonymous = As::anonymous(alpha);
    let status = |response: reqwest::Response| response.status().as_u16();
    assert_eq!(status(anonymous.get("/.well-known/webfinger").send().await.unwrap()), 400);
    for resource in [
        "acct:nobody@alpha.sandbox.test".to_owned(),
        format!("acct:probe@{}", sandbox.instance("beta").unwrap().domain),
    ] {
        let response = anonymous.get(&webfinger(&resource)).send().await.unwrap();
        assert_eq!(status(response), 404, "{resource}");
    }
    let response = anonymous.get("/users/nobody").header("accept", "application/activity+json").send().await.unwrap();
    assert_eq!(status(response), 404);
}

#[tokio::test]
async fn nodeinfo_points_at_its_2_0_document() {
    let sandbox = start().await;
    let alpha = sandbox.instance("alpha").unwrap();
    let anonymous = As::anonymous(alpha);
    let (status, index) = json(anonymous.get("/.well-known/nodeinfo").send().await.unwrap()).await;
    assert_eq!(status, 200);
    let link = &index["links"][0];
    assert_eq!(link["rel"], "http://nodeinfo.diaspora.software/ns/schema/2.0");
    let response = anonymous.get(link["href"].as_str().unwrap()).send().await.unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().contains("schema/2.0"));
    let (status, document) = json(response).await;
    assert_eq!(status, 200);
    assert_eq!(document["version"], "2.0");
    assert_eq!(document["software"]["name"], "mastodon");
    assert_eq!(document["protocols"], serde_json::json!(["activitypub"]));
    assert!(document["usage"]["users"]["total"].as_u64().unwrap() >= 3, "probe, alice and bob: {document:#}");
    assert!(document["openRegistrations"].is_boolean());
}

/// The WebFinger path asking for `resource`.
fn webfinger(resource: &str) -> String {
    format!(
        "/.well-known/webfinger?{}",
        form_urlencoded::Serializer::new(String::new()).append_pair("resource", resource).finish()
    )
}

fn secure(name: &str) -> InstanceConfig {
    InstanceConfig { authorized_fetch: true, ..InstanceConfig::new(name) }
}

#[tokio::test]
async fn secure_mode_refuses_unsigned_actor_fetches_but_not_the_profile_page() {
    let sandbox = start_with(SandboxConfig { instances: vec![secure("alpha")] }).await;
    let anonymous = As::anonymous(sandbox.instance("alpha").unwrap());
    let response = anonymous.get("/users/probe").header("accept", "application/activity+json").send().await.unwrap();
    let (status, body) = json(response).await;
    assert_eq!((status, body), (401, serde_json::json!({ "error": "Request not signed" })));
    let page = anonymous.get("/users/probe").header("accept", "text/html").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
}

#[tokio::test]
async fn discovery_requests_do_not_count_against_the_api_limits() {
    let mut alpha = InstanceConfig::new("alpha");
    alpha.limits = RateLimits { unauthenticated_api: Limit::new(2, Duration::from_secs(300)), ..RateLimits::default() };
    let sandbox = start_with(SandboxConfig { instances: vec![alpha] }).await;
    let anonymous = As::anonymous(sandbox.instance("alpha").unwrap());
    for _ in 0..5 {
        assert_eq!(anonymous.get("/.well-known/nodeinfo").send().await.unwrap().status(), 200);
    }
    for expected in [200, 200, 429] {
        assert_eq!(anonymous.get("/api/v2/instance").send().await.unwrap().status(), expected);
    }
}

#[tokio::test]
async fn the_discovery_journey_accepts_secure_mode_and_fails_on_a_missing_actor() {
    let sandbox = start_with(SandboxConfig { instances: vec![secure("alpha"), InstanceConfig::new("beta")] }).await;
    let runner = Runner::new(fediprobe::sandbox::probe_targets(&sandbox));
    let journey = support::journeys::bundled("discovery");
    let result = runner.run(&journey).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", serde_json::to_string_pretty(&result).unwrap());
    let actor = result.steps.iter().find(|s| s.name == "actor").unwrap();
    assert_eq!(actor.http_status, Some(401));

    let renamed =
        support::journeys::bundled_edited("discovery", |text| text.replace("/users/${account}", "/users/nobody"));
    let result = runner.run(&renamed).await;
    assert_eq!((result.outcome, result.failed_step.as_deref()), (Outcome::Failure, Some("actor")));
}
