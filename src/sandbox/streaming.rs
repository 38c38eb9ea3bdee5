//! The streaming API of one instance, on the instance's own port, as Mastodon's
//! streaming server behaves: `GET /api/v1/streaming/health` and the websocket at
//! `GET /api/v1/streaming`.
//!
//! It owns the [`Hub`], which turns the changes recorded in the instance's outbox
//! (`state::Outgoing`) into events, and the websocket connections that pick the
//! events of their subscriptions off it. Events are rendered for their recipient
//! (a home feed's `update` as that account sees the status), while the records'
//! lock is still held, so an event leaves at the moment of the change.
//!
//! The handshake is done here (rather than with axum's `ws` feature) so that the
//! same tungstenite serves the sandbox and the probe; the server keeps hyper's
//! connections upgradable for it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::entities::{self, InstanceInfo};
use super::faults::status_body;
use super::routes::{ApiError, Params, Shared, bearer_token};
use super::state::{Db, Outgoing, Visibility};

/// The websocket endpoint.
pub(crate) const PATH: &str = "/api/v1/streaming";
/// Everything under it (the health check; Mastodon's server-sent events, which
/// the sandbox does not offer).
pub(crate) const SUBPATHS: &str = "/api/v1/streaming/";
pub(crate) const HEALTH_PATH: &str = "/api/v1/streaming/health";

/// How many events a slow socket may fall behind before it misses some.
const EVENT_BACKLOG: usize = 1024;
/// The shortest ping interval, so a zero in the config cannot spin.
const MIN_PING_INTERVAL: Duration = Duration::from_millis(1);

/// Who an event is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Audience {
    /// The user stream of one local account.
    User(u64),
    /// The public streams; `local` when the author is a local account.
    Public { local: bool },
}

/// One event, rendered.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub audience: Audience,
    /// `update`, `delete` or `notification`.
    pub name: &'static str,
    /// A JSON document as a string (`update`, `notification`) or a bare id
    /// (`delete`), as Mastodon sends them.
    pub payload: String,
}

/// The streams a socket can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    User,
    UserNotification,
    Public,
    PublicLocal,
    PublicRemote,
}

impl Stream {
    fn parse(name: &str) -> Option<Stream> {
        match name {
            "user" => Some(Stream::User),
            "user:notification" => Some(Stream::UserNotification),
            "public" => Some(Stream::Public),
            "public:local" => Some(Stream::PublicLocal),
            "public:remote" => Some(Stream::PublicRemote),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stream::User => "user",
            Stream::UserNotification => "user:notification",
            Stream::Public => "public",
            Stream::PublicLocal => "public:local",
            Stream::PublicRemote => "public:remote",
        }
    }

    fn needs_account(self) -> bool {
        matches!(self, Stream::User | Stream::UserNotification)
    }

    fn wants(self, account: Option<u64>, event: &Event) -> bool {
        match (self, event.audience) {
            (Stream::User, Audience::User(id)) => account == Some(id),
            (Stream::UserNotification, Audience::User(id)) => account == Some(id) && event.name == "notification",
            (Stream::Public, Audience::Public { .. }) => true,
            (Stream::PublicLocal, Audience::Public { local }) => local,
            (Stream::PublicRemote, Audience::Public { local }) => !local,
            _ => false,
        }
    }
}

/// The streaming side of one instance: where events are published and where
/// sockets pick them up.
#[derive(Debug)]
pub(crate) struct Hub {
    events: broadcast::Sender<Arc<Event>>,
    ping_interval: Duration,
    down: watch::Receiver<bool>,
    /// The instance's knobs: a failing token lookup, silent sockets.
    knobs: super::federation::Federation,
    stop: watch::Receiver<bool>,
}

impl Hub {
    pub(crate) fn new(
        ping_interval: Duration,
        knobs: super::federation::Federation,
        stop: watch::Receiver<bool>,
    ) -> Hub {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let down = knobs.streaming_down_watch();
        Hub { events, ping_interval: ping_interval.max(MIN_PING_INTERVAL), down, knobs, stop }
    }

    fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    /// The streaming base URL the instance advertises instead of its own, if any.
    pub(crate) fn advertised_url(&self) -> Option<String> {
        self.knobs.streaming_url()
    }

    /// Sends the events a change calls for. Called with the lock held.
    pub(crate) fn publish(&self, db: &Db, info: &InstanceInfo, change: &Outgoing) {
        if self.events.receiver_count() == 0 {
            return;
        }
        match change {
            Outgoing::Created(id) => {
                let Some(status) = db.statuses.get(id) else { return };
                for recipient in db.home_recipients(status) {
                    let payload = entities::status(db, info, status, Some(recipient), false).to_string();
                    self.send(Audience::User(recipient), "update", payload);
                }
                if status.visibility == Visibility::Public {
                    let payload = entities::status(db, info, status, None, false).to_string();
                    self.send(Audience::Public { local: db.is_local(status.account_id) }, "update", payload);
                }
            }
            Outgoing::Deleted(removed) => {
                for recipient in &removed.home_recipients {
                    self.send(Audience::User(*recipient), "delete", removed.id.to_string());
                }
                if removed.visibility == Visibility::Public {
                    self.send(Audience::Public { local: removed.local }, "delete", removed.id.to_string());
                }
            }
            Outgoing::Notified(id) => {
                let Some(notification) = db.notifications.get(id) else { return };
                let recipient = notification.recipient_id;
                if let Some(value) = entities::notification(db, info, notification, recipient) {
                    self.send(Audience::User(recipient), "notification", value.to_string());
                }
            }
        }
    }

    fn send(&self, audience: Audience, name: &'static str, payload: String) {
        // No socket listening is not an error: the event simply reaches nobody.
        let _ = self.events.send(Arc::new(Event { audience, name, payload }));
    }
}

/// `GET /api/v1/streaming/health`: a plain `OK`, or 503 while streaming is down.
pub(crate) async fn health(State(state): State<Shared>) -> Response {
    if state.streams.is_down() {
        return unavailable();
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK").into_response()
}

fn unavailable() -> Response {
    let (content_type, body) = status_body(503);
    (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET /api/v1/streaming`: checks the token, then upgrades to a websocket.
pub(crate) async fn connect(State(state): State<Shared>, params: Params, mut request: Request) -> Response {
    if state.streams.is_down() {
        return unavailable();
    }
    let headers = request.headers();
    let Some(key) = websocket_key(headers) else {
        return ApiError::new(StatusCode::BAD_REQUEST, "Expected a WebSocket upgrade").into_response();
    };
    // The token, in Mastodon's order: the Authorization header, then the legacy
    // query parameter, then the subprotocol browsers use to carry it.
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let token = bearer_token(headers).map(str::to_owned).or_else(|| params.get("access_token").map(str::to_owned));
    let token = token.or_else(|| protocol.clone());
    let initial = params.get("stream").map(str::to_owned);
    if token.is_some() && state.streams.knobs.streaming_token_lookup_failing() {
        return refused(StatusCode::UNAUTHORIZED, "An unexpected error occurred");
    }
    let account = match &token {
        Some(token) => match state.db().account_by_token(token).map(|a| a.id) {
            Some(id) => Some(id),
            None => return with_error_message(ApiError::unauthorized().into_response(), "Invalid access token"),
        },
        // Without a token, only the public streams.
        None if initial.as_deref().and_then(Stream::parse).is_some_and(|s| !s.needs_account()) => None,
        None => return with_error_message(ApiError::unauthorized().into_response(), "Missing access token"),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "This connection cannot be upgraded").into_response();
    };

    // Subscribe before answering, so no event after the handshake is missed.
    let connection = Connection {
        account,
        knobs: state.streams.knobs.clone(),
        events: state.streams.events.subscribe(),
        ping_interval: state.streams.ping_interval,
        down: state.streams.down.clone(),
        stop: state.streams.stop.clone(),
        instance: state.info.name.clone(),
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
                connection.run(socket, initial).await;
            }
            Err(error) => tracing::debug!(%error, "sandbox websocket upgrade failed"),
        }
    });

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        response_headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    // Echoed as Mastodon's `ws` server does, or clients that offered the token as
    // a subprotocol would fail the handshake.
    if let Some(protocol) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        response_headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
}

/// A refused upgrade as Mastodon's streaming server writes it by hand (since
/// 4.2): `Connection: close`, an empty `text/plain` body, and what went wrong in
/// `X-Error-Message`.
fn refused(status: StatusCode, message: &'static str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert("x-error-message", HeaderValue::from_static(message));
    response
}

/// Adds Mastodon's `X-Error-Message` to a refusal that keeps the REST API's JSON
/// body (which tests of the sandbox read).
fn with_error_message(mut response: Response, message: &'static str) -> Response {
    response.headers_mut().insert("x-error-message", HeaderValue::from_static(message));
    response
}

/// The `Sec-WebSocket-Key` of a valid version-13 upgrade request.
fn websocket_key(headers: &HeaderMap) -> Option<String> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return None;
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
        return None;
    }
    headers.get(header::SEC_WEBSOCKET_KEY).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// One open socket.
struct Connection {
    account: Option<u64>,
    /// While `streaming_silent` is on, nothing is sent: no event, no ping.
    knobs: super::federation::Federation,
    events: broadcast::Receiver<Arc<Event>>,
    ping_interval: Duration,
    down: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
    instance: String,
}

type Socket = WebSocketStream<TokioIo<Upgraded>>;

impl Connection {
    async fn run(mut self, mut socket: Socket, initial: Option<String>) {
        let mut subscriptions = Vec::new();
        if let Some(stream) = initial
            && let Err(error) = self.subscribe(&stream, &mut subscriptions)
            && socket.send(Message::text(error.to_string())).await.is_err()
        {
            return;
        }
        // Like Mastodon's `ws` server: a ping every interval, and a socket that
        // did not answer the previous ping is terminated.
        let start = tokio::time::Instant::now() + self.ping_interval;
        let mut pings = tokio::time::interval_at(start, self.ping_interval);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut answered = true;
        let close = loop {
            // Biased, in this order: an event published before a client's
            // command is sent before that command is handled, and a pong that
            // has arrived counts before the next ping's check.
            tokio::select! {
                biased;
                _ = super::server::stopped(&mut self.stop) => break Some("the server is shutting down"),
                _ = super::server::stopped(&mut self.down) => break Some("the streaming API is down"),
                event = self.events.recv() => match event {
                    Ok(event) => {
                        if self.knobs.streaming_silent() {
                            continue;
                        }
                        if self.forward(&mut socket, &subscriptions, &event).await.is_err() {
                            break None;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(instance = %self.instance, missed, "sandbox websocket fell behind; events lost");
                    }
                    Err(broadcast::error::RecvError::Closed) => break Some("the server is shutting down"),
                },
                message = socket.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(reply) = self.command(text.as_str(), &mut subscriptions)
                            && socket.send(Message::text(reply.to_string())).await.is_err()
                        {
                            break None;
                        }
                    }
                    Some(Ok(Message::Pong(_))) => answered = true,
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        tracing::debug!(instance = %self.instance, %error, "sandbox websocket failed");
                        break None;
                    }
                },
                _ = pings.tick() => {
                    if self.knobs.streaming_silent() {
                        continue;
                    }
                    if !answered {
                        tracing::debug!(instance = %self.instance, "sandbox websocket missed a pong; terminated");
                        return;
                    }
                    answered = false;
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        break None;
                    }
                }
            }
        };
        let frame = close.map(|reason| CloseFrame { code: CloseCode::Away, reason: reason.into() });
        // Also sends the answer to a client's close; errors mean it is gone already.
        let _ = socket.close(frame).await;
    }

    /// Handles a client message; returns the error frame to send, if any.
    /// Messages that are not commands are ignored, as Mastodon does.
    fn command(&self, text: &str, subscriptions: &mut Vec<Stream>) -> Option<Value> {
        let message: Value = serde_json::from_str(text).ok()?;
        let stream = message.get("stream")?.as_str()?;
        match message.get("type")?.as_str()? {
            "subscribe" => self.subscribe(stream, subscriptions).err().map(StreamError::frame),
            "unsubscribe" => match Stream::parse(stream) {
                Some(stream) => {
                    subscriptions.retain(|s| *s != stream);
                    None
                }
                None => Some(StreamError::Unknown.frame()),
            },
            _ => None,
        }
    }

    fn subscribe(&self, name: &str, subscriptions: &mut Vec<Stream>) -> Result<(), StreamError> {
        let stream = Stream::parse(name).ok_or(StreamError::Unknown)?;
        if stream.needs_account() && self.account.is_none() {
            return Err(StreamError::NeedsToken);
        }
        if !subscriptions.contains(&stream) {
            subscriptions.push(stream);
        }
        Ok(())
    }

    /// Sends `event` once per subscription that wants it, as Mastodon does.
    async fn forward(
        &self,
        socket: &mut Socket,
        subscriptions: &[Stream],
        event: &Event,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        for stream in subscriptions.iter().filter(|s| s.wants(self.account, event)) {
            let frame = json!({ "stream": [stream.name()], "event": event.name, "payload": event.payload });
            socket.send(Message::text(frame.to_string())).await?;
        }
        Ok(())
    }
}

/// Errors the streaming API reports as a frame on the socket.
#[derive(Clone, Copy, Debug)]
enum StreamError {
    Unknown,
    NeedsToken,
}

impl StreamError {
    fn frame(self) -> Value {
        match self {
            StreamError::Unknown => json!({ "error": "Unknown stream type", "status": 400 }),
            StreamError::NeedsToken => json!({ "error": "Missing access token", "status": 401 }),
        }
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.frame())
    }
}
