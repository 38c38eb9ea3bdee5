//! One HTTP exchange as a probe must see it: a fresh client per run (so the first
//! request pays DNS, TCP and TLS like a user's), no redirects unless the step asks,
//! a capped body, and transport errors sorted into bounded reasons.

use std::sync::Mutex;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT as USER_AGENT_HEADER,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::connect::{self, Connection, OriginKey, Sender, Tls};
use super::h1;
use super::phases::{Phases, Recorder};
use super::result::{Reason, StepError};
use crate::secret::Secret;

/// The most of a response body the probe reads; a larger body is a failure
/// (`body_too_large`), so that a hostile or broken server cannot eat the probe's memory.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// How many redirects a step that follows them accepts, like browsers' limits.
pub const MAX_REDIRECTS: usize = 10;

/// A response read to the end.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: http::Method,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    /// Sent as `Authorization: Bearer`, only to the request's own origin.
    pub bearer: Option<crate::secret::Secret>,
    /// The content type and the bytes (shared, so attempts and redirects don't copy them).
    pub body: Option<(&'static str, Bytes)>,
    pub follow_redirects: bool,
}

/// The HTTP client of one run. Its connections are reused by the run's later
/// requests to the same origin (as an app reuses them between its requests) and
/// closed when the client is dropped at the run's end: never shared between runs.
/// It also records the phases of its exchanges ([`Client::take_phases`]).
pub struct Client {
    tls: Tls,
    resolver: connect::Resolver,
    /// Connections not in use, at most one per origin in practice (a run's
    /// requests are sequential). Locked only to take or put one, never across an `.await`.
    idle: Mutex<Vec<Connection>>,
    recorder: Recorder,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("tls", &self.tls).finish_non_exhaustive()
    }
}

impl Client {
    /// A client with no connection yet, resolving names with the system's
    /// resolver. Cheap: the TLS configuration is shared.
    pub fn new(tls: Tls) -> Client {
        Client::with_resolver(tls, connect::Resolver::System)
    }

    /// A client that resolves names with `resolver`.
    pub fn with_resolver(tls: Tls, resolver: connect::Resolver) -> Client {
        Client { tls, resolver, idle: Mutex::new(Vec::new()), recorder: Recorder::default() }
    }

    /// The TLS set-up, for the run's other connections (the streaming API).
    pub fn tls(&self) -> &Tls {
        &self.tls
    }

    /// How names are resolved, for the run's other connections (the streaming API).
    pub fn resolver(&self) -> &connect::Resolver {
        &self.resolver
    }

    /// The phases of the exchanges since the last call, summed. An exchange still
    /// running (or dropped by a timeout) has its current phase closed now.
    pub fn take_phases(&self) -> Phases {
        self.recorder.take()
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A Vec of connections cannot be left half-updated by a panic.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take_idle(&self, origin: &OriginKey) -> Option<Connection> {
        let mut idle = self.idle();
        idle.retain_mut(Connection::is_open);
        let index = idle.iter().position(|c| c.origin == *origin)?;
        Some(idle.swap_remove(index))
    }

    /// Keeps a connection its last response left reusable; whether the server
    /// has closed it since is looked at when it is taken again.
    fn put_idle(&self, connection: Connection) {
        if connection.reusable() {
            self.idle().push(connection);
        }
    }
}

/// Sends `request`, follows redirects if asked, reads the body up to [`MAX_BODY_BYTES`].
pub async fn send(client: &Client, request: &Request) -> Result<Response, StepError> {
    let mut method = request.method.clone();
    let mut url = request.url.clone();
    let mut body = request.body.clone();
    let origin = OriginKey::of(&request.url)?;
    for _ in 0..=MAX_REDIRECTS {
        let bearer = request.bearer.as_ref().filter(|_| origin.matches(&url));
        let response = exchange(client, &method, &url, &request.headers, bearer, body.as_ref()).await?;
        // Each exchange at trace level, for whoever debugs a journey: what was asked
        // and what came back. Never headers or query (a token may travel there).
        tracing::trace!(
            %method,
            host = url.host_str().unwrap_or_default(),
            path = url.path(),
            status = response.status,
            body_bytes = response.body.len(),
            "HTTP exchange"
        );
        if request.follow_redirects
            && (300..400).contains(&response.status)
            && let Some(next) = response
                .headers
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
        {
            // Browsers turn 301/302/303 into a GET without a body; 307/308 keep both.
            if matches!(response.status, 301..=303) && method != http::Method::HEAD {
                method = http::Method::GET;
                body = None;
            }
            url = next;
            continue;
        }
        return Ok(response);
    }
    Err(StepError::new(
        Reason::RedirectLoop,
        format!("{} {}: more than {MAX_REDIRECTS} redirects", request.method, request.url.path()),
    ))
}

/// One request and its response, on a connection of the run's (reused when one
/// to the same origin is open, else new), recording the phases as it goes.
async fn exchange(
    client: &Client,
    method: &http::Method,
    url: &url::Url,
    headers: &[(String, String)],
    bearer: Option<&Secret>,
    body: Option<&(&'static str, Bytes)>,
) -> Result<Response, StepError> {
    let origin = OriginKey::of(url)?;
    let (mut connection, reused) = match client.take_idle(&origin) {
        Some(c) => (c, true),
        // Boxed: the TLS handshake's state is large, and a future is as large as its
        // largest state, so unboxed it would be carried by every run in flight.
        None => (Box::pin(connect::open(&origin, &client.tls, &client.resolver, &client.recorder)).await?, false),
    };
    let message = build(method, url, headers, bearer, body, &connection)?;
    client.recorder.enter_send(connection.clock.clone());
    let response = match send_on(&mut connection, &message, method, url, &client.recorder).await {
        // The server closed an idle connection as the request went out: nothing of
        // it was answered. Sent again on a new connection when that cannot do
        // anything twice (RFC 9110 §9.2.2: idempotent methods), as browsers do.
        Err(e) if reused && e.may_resend(method) => {
            tracing::debug!(error = ?e, "a reused connection closed under the request; sending it on a new one");
            connection = Box::pin(connect::open(&origin, &client.tls, &client.resolver, &client.recorder)).await?;
            let message = build(method, url, headers, bearer, body, &connection)?;
            client.recorder.enter_send(connection.clock.clone());
            send_on(&mut connection, &message, method, url, &client.recorder).await
        }
        other => other,
    };
    client.recorder.finish();
    let response = response.map_err(|e| e.into_step_error(method, url))?;
    client.put_idle(connection);
    Ok(response)
}

/// How an exchange on one connection failed.
#[derive(Debug)]
enum Sent {
    /// Nothing of a response came (the request may not have reached the server).
    NoResponse(String),
    /// The connection refused the request before any of it went out.
    Unsent(String),
    Failed(StepError),
}

impl Sent {
    /// Whether the request may go again on a new connection: never sent, or
    /// unanswered and harmless to repeat.
    fn may_resend(&self, method: &http::Method) -> bool {
        match self {
            Sent::Unsent(_) => true,
            Sent::NoResponse(_) => method.is_idempotent(),
            Sent::Failed(_) => false,
        }
    }

    fn into_step_error(self, method: &http::Method, url: &url::Url) -> StepError {
        match self {
            Sent::NoResponse(text) | Sent::Unsent(text) => {
                StepError::new(Reason::ConnectionClosed, format!("{method} {}: {text}", url.path()))
            }
            Sent::Failed(error) => error,
        }
    }
}

/// The request as built for its connection's protocol.
enum Message {
    Http1 {
        head: Vec<u8>,
        body: Option<Bytes>,
    },
    /// Boxed: an HTTP/2 request is 256 bytes, and every HTTP/1.1 exchange in
    /// flight would carry the room for it.
    Http2(Box<http::Request<Full<Bytes>>>),
}

async fn send_on(
    connection: &mut Connection,
    message: &Message,
    method: &http::Method,
    url: &url::Url,
    recorder: &super::phases::Recorder,
) -> Result<Response, Sent> {
    match (&mut connection.sender, message) {
        (Sender::Http1(h1), Message::Http1 { head, body }) => {
            let head_request = *method == http::Method::HEAD;
            match h1.exchange(head, body.as_ref(), head_request, MAX_BODY_BYTES, recorder).await {
                Ok(answer) => Ok(Response { status: answer.status, headers: answer.headers, body: answer.body }),
                Err(h1::Error::NoResponse(text)) => Err(Sent::NoResponse(text)),
                Err(h1::Error::TooLarge(announced)) => Err(Sent::Failed(too_large(method, url, announced))),
                Err(h1::Error::Failed(reason, text)) => {
                    Err(Sent::Failed(StepError::new(reason, format!("{method} {}: {text}", url.path()))))
                }
            }
        }
        // Boxed: hyper's futures are large, and unboxed every HTTP/1.1 exchange in
        // flight would carry their room.
        (Sender::Http2(sender, _), Message::Http2(request)) => {
            Box::pin(send_http2(sender, request, method, url, recorder)).await
        }
        _ => unreachable!("a message is built for its connection's protocol"),
    }
}

async fn send_http2(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    request: &http::Request<Full<Bytes>>,
    method: &http::Method,
    url: &url::Url,
    recorder: &super::phases::Recorder,
) -> Result<Response, Sent> {
    let failed = |e: hyper::Error| Sent::Failed(transport_error(method, url, &e));
    // A connection that closed meanwhile refuses below, handing the message back.
    let _ = sender.ready().await;
    let head = match sender.try_send_request(request.clone()).await {
        Ok(head) => head,
        Err(mut e) => {
            let unsent = e.take_message().is_some();
            let error = e.into_error();
            return Err(if unsent { Sent::Unsent(describe(&error)) } else { failed(error) });
        }
    };
    recorder.head_received();
    let (parts, incoming) = head.into_parts();
    let body = read_body(incoming, &parts.headers, method, url).await.map_err(Sent::Failed)?;
    Ok(Response { status: parts.status.as_u16(), headers: parts.headers, body })
}

/// The request as it goes on the wire: origin-form with a `Host` header over
/// HTTP/1.1, absolute (`:authority`) over HTTP/2.
fn build(
    method: &http::Method,
    url: &url::Url,
    headers: &[(String, String)],
    bearer: Option<&Secret>,
    body: Option<&(&'static str, Bytes)>,
    connection: &Connection,
) -> Result<Message, StepError> {
    let invalid = |what: &str| StepError::new(Reason::Config, format!("{method} {}: invalid {what}", url.path()));
    let http2 = matches!(connection.sender, Sender::Http2(..));
    let target = if http2 {
        url.as_str()
    } else {
        let start = url[..url::Position::BeforePath].len();
        &url.as_str()[start..url[..url::Position::AfterQuery].len()]
    };
    let mut map = HeaderMap::with_capacity(4 + headers.len());
    if !http2 {
        let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
        map.insert(HOST, HeaderValue::from_str(host).map_err(|_| invalid("host"))?);
    }
    map.insert(USER_AGENT_HEADER, HeaderValue::from_static(crate::USER_AGENT));
    map.insert(ACCEPT, HeaderValue::from_static("*/*"));
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("header name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| invalid(&format!("value of header {name}")))?;
        map.insert(name, value);
    }
    if let Some(token) = bearer {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| invalid("token"))?;
        value.set_sensitive(true);
        map.insert(AUTHORIZATION, value);
    }
    if let Some((content_type, _)) = body {
        map.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if !http2 {
        // `Content-Length` is the head's to write, from the body it sends.
        map.remove(CONTENT_LENGTH);
        let head = h1::request_head(method, target, &map, body.map(|(_, b)| b.len()));
        return Ok(Message::Http1 { head, body: body.map(|(_, b)| b.clone()) });
    }
    let mut message = http::Request::builder()
        .method(method.clone())
        .uri(target)
        .body(Full::new(body.map(|(_, b)| b.clone()).unwrap_or_default()))
        .map_err(|_| invalid("URL"))?;
    *message.headers_mut() = map;
    Ok(Message::Http2(Box::new(message)))
}

async fn read_body(
    mut incoming: Incoming,
    headers: &HeaderMap,
    method: &http::Method,
    url: &url::Url,
) -> Result<Bytes, StepError> {
    let announced = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = announced
        && length > MAX_BODY_BYTES as u64
    {
        return Err(too_large(method, url, Some(length)));
    }
    let mut body = Vec::with_capacity(announced.unwrap_or(0) as usize);
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| transport_error(method, url, &e))?;
        if let Ok(chunk) = frame.into_data() {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large(method, url, None));
            }
            body.extend_from_slice(&chunk);
        }
    }
    Ok(Bytes::from(body))
}

fn too_large(method: &http::Method, url: &url::Url, announced: Option<u64>) -> StepError {
    let size = announced.map(|n| format!(" ({n} bytes announced)")).unwrap_or_default();
    StepError::new(
        Reason::BodyTooLarge,
        format!(
            "{method} {}: the response body is larger than {} MiB{size}",
            url.path(),
            MAX_BODY_BYTES / (1024 * 1024)
        ),
    )
}

/// Sorts a transport error into a reason, with a message that names the request
/// by method and path (never the query, which may hold values from the environment).
fn transport_error(method: &http::Method, url: &url::Url, error: &hyper::Error) -> StepError {
    StepError::new(classify(error), format!("{method} {}: {}", url.path(), describe(error)))
}

/// The reason for an error of an established connection.
pub(crate) fn classify(error: &hyper::Error) -> Reason {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return Reason::Tls;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && connect::classify_io(io) == Reason::Tls
        {
            return Reason::Tls;
        }
        source = e.source();
    }
    if error.is_parse() || error.is_parse_status() || error.is_parse_too_large() {
        Reason::Protocol
    } else if error.is_timeout() {
        Reason::Timeout
    } else {
        // Closed, reset, incomplete, canceled, an HTTP/2 stream error.
        Reason::ConnectionClosed
    }
}

/// The error and its causes, each once.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(error);
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}
