//! Behaviour of the sandbox over real loopback HTTP: paging, idempotency, rate
//! limits and their headers, visibility, notifications, and every fault kind as a
//! reqwest client sees it.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use fediprobe::sandbox::{Fault, InstanceConfig, Limit, RateLimits, Sandbox, SandboxConfig};
use http::Method;
use serde_json::Value;
use support::sandbox::{As, Bodies, json, link, next_link, start, start_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ids(page: &Value) -> Vec<u64> {
    page.as_array().unwrap().iter().map(|item| item["id"].as_str().unwrap().parse().unwrap()).collect()
}

fn is_reset_timestamp(value: &str) -> bool {
    // 2026-11-21T21:05:00.000000Z
    value.len() == 27
        && value.ends_with('Z')
        && value.as_bytes()[19] == b'.'
        && chrono::DateTime::parse_from_rfc3339(value).is_ok()
}

#[tokio::test]
async fn starts_two_instances_with_seeded_accounts_by_default() {
    let sandbox = start().await;
    let names: Vec<&str> = sandbox.instances().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    for instance in sandbox.instances() {
        assert!(instance.base_url.starts_with("http://127.0.0.1:"));
        for username in ["probe", "alice", "bob"] {
            let account = instance.account(username).unwrap();
            assert!(!account.token.is_empty());
            assert!(!format!("{account:?}").contains(account.token.expose()));
        }
        let health = support::sandbox::client().get(format!("{}/health", instance.base_url)).send().await.unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(health.text().await.unwrap(), "OK");
    }
    let alpha_probe = sandbox.instance("alpha").unwrap().account("probe").unwrap();
    let beta_probe = sandbox.instance("beta").unwrap().account("probe").unwrap();
    assert_ne!(alpha_probe.token, beta_probe.token);
    assert!(sandbox.instance("gamma").is_none());
}

#[tokio::test]
async fn link_paging_walks_a_timeline_without_duplicates() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let probe = As::user(instance, "probe");
    let everything = json(probe.get("/api/v1/timelines/public?limit=40").send().await.unwrap()).await.1;
    let all_ids = ids(&everything);
    assert!(all_ids.len() > 6, "enough seeded statuses to page through");

    let mut seen = Vec::new();
    let mut url = format!("{}/api/v1/timelines/public?limit=3", instance.base_url);
    let mut pages = 0;
    loop {
        let response = probe.get(&url).send().await.unwrap();
        let next = next_link(&response);
        let prev = link(&response, "prev");
        let (status, page) = json(response).await;
        assert_eq!(status, 200);
        let page_ids = ids(&page);
        if page_ids.is_empty() {
            assert!(next.is_none(), "no Link header on an empty page");
            break;
        }
        assert!(page_ids.windows(2).all(|w| w[0] > w[1]), "newest first");
        let next = next.expect("a non-empty page has a next link");
        assert_eq!(
            next,
            format!("{}/api/v1/timelines/public?limit=3&max_id={}", instance.base_url, page_ids.last().unwrap())
        );
        assert_eq!(
            prev.unwrap(),
            format!("{}/api/v1/timelines/public?limit=3&min_id={}", instance.base_url, page_ids[0])
        );
        seen.extend(page_ids);
        url = next;
        pages += 1;
        assert!(pages < 50, "paging terminates");
    }
    let unique: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    assert_eq!(seen, all_ids, "paging sees every status once, in order");

    // min_id pages upward: the three statuses just above the oldest one.
    let oldest = *all_ids.last().unwrap();
    let above =
        json(probe.get(&format!("/api/v1/timelines/public?limit=3&min_id={oldest}")).send().await.unwrap()).await.1;
    assert_eq!(ids(&above), all_ids[all_ids.len() - 4..all_ids.len() - 1]);
    let since =
        json(probe.get(&format!("/api/v1/timelines/public?limit=3&since_id={oldest}")).send().await.unwrap()).await.1;
    assert_eq!(ids(&since), all_ids[..3]);
}

#[tokio::test]
async fn home_timeline_holds_own_and_followed_statuses_newest_first() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let probe = As::user(instance, "probe");
    let posted = probe.post_status("my own post", "private").await;
    let (status, home) = json(probe.get("/api/v1/timelines/home").send().await.unwrap()).await;
    assert_eq!(status, 200);
    let statuses = home.as_array().unwrap();
    assert_eq!(statuses[0]["id"], posted["id"], "newest first");
    let authors: HashSet<&str> = statuses.iter().map(|s| s["account"]["username"].as_str().unwrap()).collect();
    assert!(authors.contains("alice"), "probe follows alice");
    assert!(
        !statuses.iter().any(|s| s["account"]["username"] == "bob" && s["mentions"].as_array().unwrap().is_empty())
    );
}

#[tokio::test]
async fn idempotency_key_returns_the_same_status() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let probe = As::user(instance, "probe");
    let post = |key: &str| {
        probe
            .post("/api/v1/statuses")
            .header("Idempotency-Key", key)
            .form(&[("status", "posted once"), ("visibility", "private")])
            .send()
    };
    let first = json(post("key-1").await.unwrap()).await.1;
    let again = json(post("key-1").await.unwrap()).await.1;
    let other = json(post("key-2").await.unwrap()).await.1;
    assert_eq!(first["id"], again["id"]);
    assert_ne!(first["id"], other["id"]);
    // The key is per account: alice using the same key posts her own status.
    let alice = As::user(instance, "alice");
    let hers = json(
        alice
            .post("/api/v1/statuses")
            .header("Idempotency-Key", "key-1")
            .form(&[("status", "hers")])
            .send()
            .await
            .unwrap(),
    )
    .await
    .1;
    assert_ne!(hers["id"], first["id"]);
    let mine = json(probe.get("/api/v1/timelines/home").send().await.unwrap()).await.1;
    let copies = mine.as_array().unwrap().iter().filter(|s| s["content"] == "<p>posted once</p>").count();
    assert_eq!(copies, 2, "key-1 and key-2, not three");
}

#[tokio::test]
async fn authenticated_answers_carry_rate_limit_headers() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let probe = As::user(instance, "probe");
    let first = probe.get("/api/v1/accounts/verify_credentials").send().await.unwrap();
    let second = probe.get("/api/v1/accounts/verify_credentials").send().await.unwrap();
    for response in [&first, &second] {
        assert_eq!(response.headers()["x-ratelimit-limit"], "300");
        assert!(is_reset_timestamp(response.headers()["x-ratelimit-reset"].to_str().unwrap()));
        assert_eq!(response.headers()["content-type"], "application/json; charset=utf-8");
    }
    let remaining =
        |r: &reqwest::Response| -> u32 { r.headers()["x-ratelimit-remaining"].to_str().unwrap().parse().unwrap() };
    assert_eq!(remaining(&first), 299);
    assert_eq!(remaining(&second), 298);
    let anonymous = As::anonymous(instance).get("/api/v2/instance").send().await.unwrap();
    assert!(anonymous.headers().get("x-ratelimit-limit").is_none(), "Mastodon only reports the per-token limit");
}

#[tokio::test]
async fn the_31st_delete_in_30_minutes_is_refused_with_429() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let probe = As::user(instance, "probe");
    let mut ids = Vec::new();
    for n in 0..31 {
        ids.push(probe.post_status(&format!("to delete {n}"), "private").await["id"].as_str().unwrap().to_owned());
    }
    for id in &ids[..30] {
        let response = probe.delete(&format!("/api/v1/statuses/{id}")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let refused = probe.delete(&format!("/api/v1/statuses/{}", ids[30])).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let headers = refused.headers().clone();
    assert_eq!(headers["x-ratelimit-limit"], "30");
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    assert!(is_reset_timestamp(headers["x-ratelimit-reset"].to_str().unwrap()));
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=1800).contains(&retry_after), "retry after {retry_after}s");
    assert_eq!(json(refused).await.1, serde_json::json!({"error": "Too many requests"}));
    // Still there: the refused delete did nothing.
    let still = probe.get(&format!("/api/v1/statuses/{}", ids[30])).send().await.unwrap();
    assert_eq!(still.status(), 200);
}

#[tokio::test]
async fn the_status_limit_is_configurable_and_reported_in_headers() {
    let config = SandboxConfig {
        instances: vec![InstanceConfig {
            limits: RateLimits { statuses: Limit::new(2, Duration::from_secs(3600)), ..RateLimits::default() },
            ..InstanceConfig::new("small")
        }],
    };
    let sandbox = start_with(config).await;
    let probe = As::user(&sandbox.instances()[0], "probe");
    let post = || probe.post("/api/v1/statuses").form(&[("status", "limited")]).send();
    let first = post().await.unwrap();
    assert_eq!(first.headers()["x-ratelimit-limit"], "2", "the most restrictive limit is shown");
    assert_eq!(first.headers()["x-ratelimit-remaining"], "1");
    assert_eq!(post().await.unwrap().status(), 200);
    let third = post().await.unwrap();
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["x-ratelimit-remaining"], "0");
    assert!(third.headers().contains_key("retry-after"));
    // Over the limit, the limit is checked before the text is validated.
    let blank = probe.post("/api/v1/statuses").form(&[("status", "")]).send().await.unwrap();
    assert_eq!(blank.status(), 429);
}

#[tokio::test]
async fn the_api_limit_applies_per_token() {
    let config = SandboxConfig {
        instances: vec![InstanceConfig {
            limits: RateLimits { api: Limit::new(3, Duration::from_secs(300)), ..RateLimits::default() },
            ..InstanceConfig::new("small")
        }],
    };
    let sandbox = start_with(config).await;
    let instance = &sandbox.instances()[0];
    let probe = As::user(instance, "probe");
    for _ in 0..3 {
        assert_eq!(probe.get("/api/v1/notifications").send().await.unwrap().status(), 200);
    }
    let refused = probe.get("/api/v1/notifications").send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["x-ratelimit-limit"], "3");
    let alice = As::user(instance, "alice");
    assert_eq!(alice.get("/api/v1/notifications").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn private_statuses_are_invisible_to_non_followers() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let alice = As::user(instance, "alice");
    let bob = As::user(instance, "bob");
    let probe = As::user(instance, "probe");
    let secret = alice.post_status("followers only", "private").await;
    let path = format!("/api/v1/statuses/{}", secret["id"].as_str().unwrap());

    assert_eq!(probe.get(&path).send().await.unwrap().status(), 200, "probe follows alice");
    assert_eq!(bob.get(&path).send().await.unwrap().status(), 404, "bob does not");
    assert_eq!(As::anonymous(instance).get(&path).send().await.unwrap().status(), 404);
    assert_eq!(bob.post(&format!("{path}/favourite")).send().await.unwrap().status(), 404);
    let public = json(bob.get("/api/v1/timelines/public?limit=40").send().await.unwrap()).await.1;
    assert!(!public.as_array().unwrap().iter().any(|s| s["id"] == secret["id"]));
    let search = json(bob.get("/api/v2/search?q=followers%20only&type=statuses").send().await.unwrap()).await.1;
    assert!(search["statuses"].as_array().unwrap().is_empty());

    let alice_id = instance.account("alice").unwrap().id.clone();
    let follow = bob.post(&format!("/api/v1/accounts/{alice_id}/follow")).send().await.unwrap();
    assert_eq!(follow.status(), 200);
    assert_eq!(bob.get(&path).send().await.unwrap().status(), 200, "visible once bob follows alice");

    let direct = alice.post_status("@probe just between us", "direct").await;
    let direct_path = format!("/api/v1/statuses/{}", direct["id"].as_str().unwrap());
    assert_eq!(probe.get(&direct_path).send().await.unwrap().status(), 200, "mentioned");
    assert_eq!(bob.get(&direct_path).send().await.unwrap().status(), 404, "a follower, but not mentioned");
}

#[tokio::test]
async fn only_the_author_can_delete_and_gets_the_source_back() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let probe = As::user(instance, "probe");
    let bob = As::user(instance, "bob");
    let status = probe.post_status("to be deleted & redrafted", "public").await;
    let path = format!("/api/v1/statuses/{}", status["id"].as_str().unwrap());
    assert_eq!(bob.delete(&path).send().await.unwrap().status(), 404);
    let (code, deleted) = json(probe.delete(&path).send().await.unwrap()).await;
    assert_eq!(code, 200);
    assert_eq!(deleted["text"], "to be deleted & redrafted");
    assert_eq!(probe.get(&path).send().await.unwrap().status(), 404);
    assert_eq!(probe.delete(&path).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn favouriting_notifies_the_author() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let probe = As::user(instance, "probe");
    let alice = As::user(instance, "alice");
    let status = probe.post_status("favourite me", "public").await;
    let id = status["id"].as_str().unwrap();
    let favourited = json(alice.post(&format!("/api/v1/statuses/{id}/favourite")).send().await.unwrap()).await.1;
    assert_eq!(favourited["favourited"], true);
    assert_eq!(favourited["favourites_count"], 1);
    let seen_by_probe = json(probe.get(&format!("/api/v1/statuses/{id}")).send().await.unwrap()).await.1;
    assert_eq!(seen_by_probe["favourited"], false);
    assert_eq!(seen_by_probe["favourites_count"], 1);

    let response = probe.get("/api/v1/notifications?limit=1").send().await.unwrap();
    assert!(next_link(&response).unwrap().contains("limit=1&max_id="));
    let newest = json(response).await.1;
    assert_eq!(newest[0]["type"], "favourite");
    assert_eq!(newest[0]["account"]["username"], "alice");
    assert_eq!(newest[0]["status"]["id"], id);
    let mentions = json(probe.get("/api/v1/notifications?types[]=mention").send().await.unwrap()).await.1;
    assert!(mentions.as_array().unwrap().iter().all(|n| n["type"] == "mention"));
}

#[tokio::test]
async fn unknown_routes_and_missing_tokens_answer_like_mastodon() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let anonymous = As::anonymous(instance);
    let (status, body) = json(anonymous.get("/api/v1/nope").send().await.unwrap()).await;
    assert_eq!((status, body), (404, serde_json::json!({"error": "Record not found"})));
    let (status, body) = json(anonymous.post("/api/v1/statuses").form(&[("status", "hi")]).send().await.unwrap()).await;
    assert_eq!((status, body), (401, serde_json::json!({"error": "The access token is invalid"})));
    let (status, _) = json(anonymous.get("/api/v1/timelines/public").send().await.unwrap()).await;
    assert_eq!(status, 200, "the public timeline needs no token");
}

async fn faulty() -> (Sandbox, As) {
    let sandbox = start().await;
    let probe = As::user(&sandbox.instances()[0], "probe");
    (sandbox, probe)
}

#[tokio::test]
async fn drop_connection_fault_is_a_request_error() {
    let (sandbox, probe) = faulty().await;
    let faults = sandbox.instances()[0].faults();
    faults.inject(Some(Method::GET), "/api/v1/timelines", Fault::DropConnection);
    let error = probe.get("/api/v1/timelines/home").send().await.unwrap_err();
    assert!(error.is_request() || error.is_connect(), "{error:?}");
    // On the wire: not a single byte of response before the close.
    let address = sandbox.instances()[0].base_url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET /api/v1/timelines/public HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut received = Vec::new();
    stream.read_to_end(&mut received).await.unwrap();
    assert!(received.is_empty(), "{}", String::from_utf8_lossy(&received));
    // Other methods and paths are untouched, and the server keeps serving.
    assert_eq!(probe.get("/api/v1/notifications").send().await.unwrap().status(), 200);
    faults.clear();
    assert_eq!(probe.get("/api/v1/timelines/home").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn reset_mid_body_fault_is_a_body_error() {
    let (sandbox, probe) = faulty().await;
    sandbox.instances()[0].faults().inject(None, "/api/v1/timelines/home", Fault::ResetMidBody);
    let response = probe.get("/api/v1/timelines/home").send().await.unwrap();
    assert_eq!(response.status(), 200, "headers arrive");
    let error = response.bytes().await.unwrap_err();
    assert!(error.is_body() || error.is_decode(), "{error:?}");
}

#[tokio::test]
async fn malformed_json_fault_is_invalid_json() {
    let (sandbox, probe) = faulty().await;
    sandbox.instances()[0].faults().inject(None, "/api/v1/accounts", Fault::MalformedJson);
    let response = probe.get("/api/v1/accounts/verify_credentials").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json; charset=utf-8");
    let text = response.text().await.unwrap();
    assert!(!text.is_empty());
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
}

#[tokio::test]
async fn latency_faults_add_up_to_a_measurable_delay() {
    let (sandbox, probe) = faulty().await;
    let faults = sandbox.instances()[0].faults();
    faults.inject(None, "/api/v2/instance", Fault::Latency(Duration::from_millis(150)));
    faults.inject(Some(Method::GET), "/api/v2", Fault::Latency(Duration::from_millis(100)));
    let started = Instant::now();
    let response = probe.get("/api/v2/instance").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
}

#[tokio::test]
async fn slow_body_fault_trickles_the_real_body() {
    let (sandbox, probe) = faulty().await;
    sandbox.instances()[0].faults().inject(
        None,
        "/api/v2/instance",
        Fault::SlowBody { total: Duration::from_millis(400) },
    );
    let started = Instant::now();
    let mut response = probe.get("/api/v2/instance").send().await.unwrap();
    // The head comes first, then the body in pieces: told by what arrives in
    // which order, not by how fast (only a client stalled for the whole 400 ms
    // could see the body in one piece).
    let length: usize = response.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        chunks.push(chunk);
    }
    let first = chunks.first().map_or(0, |c| c.len());
    assert!(first < length, "the head came before the whole body: first piece {first} of {length} bytes");
    assert!(chunks.len() > 1, "the body came in pieces: {} piece(s)", chunks.len());
    let body: Value = serde_json::from_slice(&chunks.concat()).unwrap();
    assert_eq!(body["domain"], "alpha.sandbox.test");
    // A lower bound: the trickle cannot end sooner, however fast the machine.
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
}

#[tokio::test]
async fn status_faults_answer_like_mastodon_and_its_proxy() {
    let (sandbox, probe) = faulty().await;
    let faults = sandbox.instances()[0].faults();
    faults.inject(Some(Method::POST), "/api/v1/statuses", Fault::Status(503));
    let (status, body) = json(probe.post("/api/v1/statuses").form(&[("status", "x")]).send().await.unwrap()).await;
    assert_eq!((status, body), (503, serde_json::json!({"error": "Remote data could not be fetched"})));
    faults.clear();
    faults.inject(None, "/api/v1/timelines", Fault::Status(502));
    let response = probe.get("/api/v1/timelines/home").send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(response.text().await.unwrap().contains("502 Bad Gateway"));
}

#[tokio::test]
async fn shutdown_closes_the_ports() {
    let sandbox = start().await;
    let base = sandbox.instances()[0].base_url.clone();
    assert_eq!(support::sandbox::client().get(format!("{base}/health")).send().await.unwrap().status(), 200);
    sandbox.shutdown().await;
    let error = support::sandbox::client().get(format!("{base}/health")).send().await.unwrap_err();
    assert!(error.is_connect(), "{error:?}");
}
