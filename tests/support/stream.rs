//! A small websocket client for the sandbox's streaming API, on tokio-tungstenite.

#![allow(dead_code)] // Each test binary uses a different part of the helper.

use std::time::Duration;

use fediprobe::sandbox::InstanceHandle;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Response};
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// How long a test waits for something that should happen (a bound against
/// hanging, not a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(10);

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How the token travels.
#[derive(Clone, Copy, Debug)]
pub enum TokenIn {
    Header,
    Protocol,
    Query,
}

/// Opens `/api/v1/streaming?QUERY` with `token` sent the given way.
pub async fn open(
    instance: &InstanceHandle,
    query: &str,
    token: Option<(&str, TokenIn)>,
) -> Result<(Socket, Response<Option<Vec<u8>>>), Error> {
    let mut url = format!("{}/api/v1/streaming?{query}", instance.streaming_url());
    if let Some((token, TokenIn::Query)) = token {
        url.push_str(&format!("&access_token={token}"));
    }
    let mut request = url.into_client_request()?;
    match token {
        Some((token, TokenIn::Header)) => {
            request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        }
        Some((token, TokenIn::Protocol)) => {
            request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(token).unwrap());
        }
        _ => {}
    }
    connect_async(request).await
}

/// The `user` stream of a seeded account, token in the Authorization header.
pub async fn user_stream(instance: &InstanceHandle, username: &str) -> Socket {
    let token = instance.account(username).unwrap().token.expose().to_owned();
    open(instance, "stream=user", Some((&token, TokenIn::Header))).await.expect("the user stream opens").0
}

/// The next text frame as JSON, skipping pings; `None` if the socket closes or
/// nothing comes within [`PATIENCE`].
pub async fn next_frame(socket: &mut Socket) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next()).await.ok()??.ok()?;
        match message {
            Message::Text(text) => return Some(serde_json::from_str(text.as_str()).expect("frames are JSON")),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// The next frame of `event`, skipping others.
pub async fn next_event(socket: &mut Socket, event: &str) -> Option<Value> {
    loop {
        let frame = next_frame(socket).await?;
        if frame["event"] == event {
            return Some(frame);
        }
    }
}

/// A frame's payload parsed as JSON (for `update` and `notification`).
pub fn payload(frame: &Value) -> Value {
    serde_json::from_str(frame["payload"].as_str().expect("payload is a string")).expect("payload is JSON")
}

/// Sends a client command (`subscribe`/`unsubscribe`).
pub async fn command(socket: &mut Socket, kind: &str, stream: &str) {
    let text = serde_json::json!({ "type": kind, "stream": stream }).to_string();
    socket.send(Message::text(text)).await.expect("command sent");
}

/// Waits until the socket's server side has handled every command sent before:
/// commands are handled in order, so the error frame of a bogus subscription
/// comes after everything earlier. Returns the frames that came before it.
pub async fn sync(socket: &mut Socket) -> Vec<Value> {
    command(socket, "subscribe", "sync-marker-no-such-stream").await;
    let mut before = Vec::new();
    loop {
        let frame = next_frame(socket).await.expect("the sync marker answers");
        if frame["error"] == "Unknown stream type" {
            return before;
        }
        before.push(frame);
    }
}
