//! The sandbox's streaming API over real loopback websockets: the handshake and
//! its token forms, frames for updates, deletes and notifications, client
//! commands, pings, and the streaming-down knob.

mod support;

use std::time::{Duration, Instant};

use fediprobe::sandbox::{InstanceConfig, InstanceHandle, SandboxConfig};
use futures_util::StreamExt;
use serde_json::json;
use support::sandbox::{As, client, json, start, start_with};
use support::stream::{PATIENCE, TokenIn, command, next_event, next_frame, open, payload, sync, user_stream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error, Message};

fn token(instance: &InstanceHandle, username: &str) -> String {
    instance.account(username).unwrap().token.expose().to_owned()
}

/// A websocket handshake sent with reqwest, to read the HTTP answer's body.
fn handshake(instance: &InstanceHandle, query: &str) -> reqwest::RequestBuilder {
    client()
        .get(format!("{}/api/v1/streaming?{query}", instance.base_url))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
}

fn refused_with(result: Result<impl Sized, Error>) -> u16 {
    match result {
        Err(Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
        Ok(_) => panic!("expected an HTTP refusal, the upgrade succeeded"),
    }
}

#[tokio::test]
async fn streaming_health_answers_ok_without_rate_limit_headers() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let response = As::user(instance, "probe").get("/api/v1/streaming/health").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-ratelimit-limit").is_none(), "the streaming server is not Rails");
    assert_eq!(response.text().await.unwrap(), "OK");
}

#[tokio::test]
async fn a_bad_or_missing_token_gets_401_before_the_upgrade() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let invalid = json!({"error": "The access token is invalid"});

    let cases = [
        handshake(instance, "stream=user"),
        handshake(instance, "stream=user").bearer_auth("not-a-token"),
        handshake(instance, "stream=user&access_token=not-a-token"),
        handshake(instance, "stream=user").header("sec-websocket-protocol", "not-a-token"),
        handshake(instance, "stream=public").bearer_auth("not-a-token"),
    ];
    for request in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["content-type"], "application/json; charset=utf-8");
        assert_eq!(json(response).await, (401, invalid.clone()));
    }
    for form in [TokenIn::Header, TokenIn::Protocol, TokenIn::Query] {
        assert_eq!(refused_with(open(instance, "stream=user", Some(("not-a-token", form))).await), 401, "{form:?}");
    }
    assert_eq!(refused_with(open(instance, "stream=user", None).await), 401);
}

#[tokio::test]
async fn each_token_form_opens_the_user_stream_of_its_account() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let probe = As::user(instance, "probe");
    let token = token(instance, "probe");
    for form in [TokenIn::Header, TokenIn::Protocol, TokenIn::Query] {
        let (mut socket, response) = open(instance, "stream=user", Some((&token, form))).await.unwrap();
        assert_eq!(response.status(), 101);
        let echoed = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_owned());
        match form {
            TokenIn::Protocol => assert_eq!(echoed.as_deref(), Some(token.as_str()), "echoed like Mastodon"),
            _ => assert_eq!(echoed, None),
        }
        let posted = probe.post_status(&format!("streamed with the token in {form:?}"), "private").await;
        let frame = next_event(&mut socket, "update").await.expect("an update frame");
        assert_eq!(frame["stream"], json!(["user"]));
        let status = payload(&frame);
        assert_eq!(status["id"], posted["id"]);
        assert_eq!(status["account"]["acct"], "probe");
        assert_eq!(status["visibility"], "private");
    }
}

#[tokio::test]
async fn followers_get_updates_and_deletes_and_others_do_not() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let mut bobs = user_stream(instance, "bob").await;
    let mut probes = user_stream(instance, "probe").await;
    let mut alices = user_stream(instance, "alice").await;
    let alice = As::user(instance, "alice");

    // The probe follows alice; bob does not.
    let posted = alice.post_status("for my followers", "private").await;
    let id = posted["id"].as_str().unwrap();
    for socket in [&mut probes, &mut alices] {
        let frame = next_event(socket, "update").await.expect("author and follower get the update");
        assert_eq!(payload(&frame)["id"], id);
    }
    let deleted = alice.delete(&format!("/api/v1/statuses/{id}")).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    for socket in [&mut probes, &mut alices] {
        let frame = next_event(socket, "delete").await.expect("a delete frame");
        assert_eq!(frame, json!({"stream": ["user"], "event": "delete", "payload": id}));
    }
    // Bob's own post marks the end: anything about alice's status would have
    // come first, since a socket gets events in the order they happen.
    let marker = As::user(instance, "bob").post_status("marker", "private").await;
    loop {
        let frame = next_frame(&mut bobs).await.expect("bob's own update arrives");
        let about = if frame["event"] == "delete" { frame["payload"].clone() } else { payload(&frame)["id"].clone() };
        assert_ne!(about, id, "bob does not follow alice: {frame}");
        if about == marker["id"] {
            break;
        }
    }
}

#[tokio::test]
async fn notifications_are_streamed_to_their_recipient() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let mut probes = user_stream(instance, "probe").await;
    let status = As::user(instance, "probe").post_status("favourite this", "public").await;
    let id = status["id"].as_str().unwrap();
    As::user(instance, "alice").post(&format!("/api/v1/statuses/{id}/favourite")).send().await.unwrap();
    let frame = next_event(&mut probes, "notification").await.expect("a notification frame");
    assert_eq!(frame["stream"], json!(["user"]));
    let notification = payload(&frame);
    assert_eq!(notification["type"], "favourite");
    assert_eq!(notification["account"]["username"], "alice");
    assert_eq!(notification["status"]["id"], id);
}

#[tokio::test]
async fn unknown_streams_answer_an_error_frame() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let token = token(instance, "probe");
    let unknown = json!({"error": "Unknown stream type", "status": 400});

    let (mut socket, _) = open(instance, "stream=nonsense", Some((&token, TokenIn::Header))).await.unwrap();
    assert_eq!(next_frame(&mut socket).await, Some(unknown.clone()));

    let mut socket = user_stream(instance, "probe").await;
    command(&mut socket, "subscribe", "hashtag:everything").await;
    assert_eq!(next_frame(&mut socket).await, Some(unknown.clone()));
    command(&mut socket, "unsubscribe", "nonsense").await;
    assert_eq!(next_frame(&mut socket).await, Some(unknown));
}

#[tokio::test]
async fn subscribe_and_unsubscribe_change_what_a_socket_receives() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let alice = As::user(instance, "alice");
    let bob = As::user(instance, "bob");
    let mut socket = user_stream(instance, "probe").await;
    command(&mut socket, "subscribe", "public:local").await;
    assert!(sync(&mut socket).await.is_empty());

    // Bob is not followed by the probe: his public status comes on public:local only.
    let first = bob.post_status("public, from bob", "public").await;
    let frame = next_event(&mut socket, "update").await.unwrap();
    assert_eq!(frame["stream"], json!(["public:local"]));
    assert_eq!(payload(&frame)["id"], first["id"]);
    assert!(payload(&frame).get("favourited").is_none(), "public payloads are rendered for nobody");
    // Alice is followed: her public status comes once per stream.
    let second = alice.post_status("public, from alice", "public").await;
    let mut streams = Vec::new();
    for _ in 0..2 {
        let frame = next_event(&mut socket, "update").await.unwrap();
        assert_eq!(payload(&frame)["id"], second["id"]);
        streams.push(frame["stream"][0].as_str().unwrap().to_owned());
    }
    streams.sort();
    assert_eq!(streams, ["public:local", "user"]);

    command(&mut socket, "unsubscribe", "public:local").await;
    assert!(sync(&mut socket).await.is_empty());
    bob.post_status("public, from bob, unheard", "public").await;
    let third = alice.post_status("public, from alice, once", "public").await;
    let frame = next_event(&mut socket, "update").await.unwrap();
    assert_eq!(frame["stream"], json!(["user"]));
    assert_eq!(payload(&frame)["id"], third["id"], "bob's status did not come");
}

#[tokio::test]
async fn public_streams_need_no_token_but_the_user_stream_does() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let (mut socket, _) = open(instance, "stream=public", None).await.unwrap();
    command(&mut socket, "subscribe", "user").await;
    assert_eq!(next_frame(&mut socket).await, Some(json!({"error": "Missing access token", "status": 401})));
    let posted = As::user(instance, "bob").post_status("hello, anyone", "public").await;
    As::user(instance, "bob").post_status("hello, followers", "private").await;
    let frame = next_event(&mut socket, "update").await.unwrap();
    assert_eq!(frame["stream"], json!(["public"]));
    assert_eq!(payload(&frame)["id"], posted["id"]);
}

#[tokio::test]
async fn pings_come_at_the_configured_interval() {
    let interval = Duration::from_millis(150);
    let config = SandboxConfig {
        instances: vec![InstanceConfig { streaming_ping_interval: interval, ..InstanceConfig::new("alpha") }],
    };
    let sandbox = start_with(config).await;
    let instance = &sandbox.instances()[0];
    let opened = Instant::now();
    let mut socket = user_stream(instance, "probe").await;
    let mut pings = 0;
    while pings < 4 {
        // tungstenite answers each ping with a pong when it reads it, which keeps
        // the socket open: a socket that misses a pong is closed at the next ping.
        let message = tokio::time::timeout(PATIENCE, socket.next()).await.expect("a ping in time").unwrap().unwrap();
        match message {
            Message::Ping(data) => {
                assert!(data.is_empty());
                pings += 1;
                assert!(opened.elapsed() >= interval * pings, "ping {pings} after {:?}", opened.elapsed());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn streaming_down_refuses_upgrades_and_closes_open_sockets() {
    let sandbox = start().await;
    let instance = &sandbox.instances()[0];
    let mut socket = user_stream(instance, "probe").await;
    instance.federation().set_streaming_down(true);
    assert!(instance.federation().streaming_down());
    let closed = loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await.expect("closed in time") {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(closed.map(|f| f.code), Some(CloseCode::Away));

    let token = token(instance, "probe");
    assert_eq!(refused_with(open(instance, "stream=user", Some((&token, TokenIn::Header))).await), 503);
    let health = client().get(format!("{}/api/v1/streaming/health", instance.base_url)).send().await.unwrap();
    assert_eq!(health.status(), 503);
    // The REST API is unaffected.
    assert_eq!(As::user(instance, "probe").get("/api/v1/timelines/home").send().await.unwrap().status(), 200);

    instance.federation().set_streaming_down(false);
    let mut socket = user_stream(instance, "probe").await;
    let posted = As::user(instance, "probe").post_status("back up", "private").await;
    assert_eq!(payload(&next_event(&mut socket, "update").await.unwrap())["id"], posted["id"]);
}

#[tokio::test]
async fn shutdown_closes_open_sockets() {
    let sandbox = start().await;
    let mut socket = user_stream(&sandbox.instances()[0], "probe").await;
    sandbox.shutdown().await;
    let end = tokio::time::timeout(PATIENCE, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the socket ends with the sandbox");
}
