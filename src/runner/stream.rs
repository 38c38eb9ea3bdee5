//! The `stream` step: Mastodon's streaming API over a websocket, and the polling
//! fallback when the stream can't be used.
//!
//! The socket is opened just before the step named in `open_before` runs (the
//! post on the other instance), so no event can slip past. A reader task stamps
//! every frame with the monotonic time it was read; the step then takes frames
//! until one of the wanted event passes the step's `expect`. That stamp minus the
//! end of the `delay_from` step is the delivery delay: both on the probe's
//! monotonic clock, so the instances' clocks never enter into it.
//!
//! Failure modes, as the design asks:
//! - The streaming API refusing the token *and saying why* (invalid, missing,
//!   scopes: in the upgrade's `X-Error-Message` header, its JSON body, or a
//!   `{"error":…,"status":401}` frame for a subscription) is the probe's token
//!   (`probe_error`/`unauthorized`, no fallback).
//! - A 401 that does not say why is ambiguous: Mastodon's streaming server answers
//!   401 for *any* trouble while it looks the token up, its database being down
//!   included ("An unexpected error occurred"). When the same token was accepted by
//!   the REST API earlier in the run, that is the streaming service's fault; the
//!   runner decides ([`OpenError::UnexplainedRefusal`]).
//! - Any other trouble with the stream (refused, closed, silent, a 5xx) makes it
//!   unusable: the fallback poll takes over when the journey has one (the delivery
//!   is then marked `poll`), and the stream's failure is recorded with its reason.
//! - Nothing matching before `within` is a failure with reason `not_delivered`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::check;
use super::connect::TimedIo;
use super::http::{self, Response};
use super::phases::IoClock;
use super::result::{Reason, StepError};
use super::target::Target;
use crate::spec::journey::StreamSpec;

/// One frame as read, or the end of the stream.
#[derive(Debug)]
pub enum Frame {
    Event { at: Instant, event: String, payload: String },
    Closed(StepError),
}

/// A stream opened for a later step; the reader task stops when this is dropped.
#[derive(Debug)]
pub struct OpenStream {
    pub frames: mpsc::UnboundedReceiver<Frame>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a delivery was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Stream,
    Poll,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Stream => "stream",
            Method::Poll => "poll",
        }
    }
}

/// The streaming server's base URL: `configuration.urls.streaming` of
/// `/api/v2/instance`, or the instance's own URL (as ws/wss) when that is unknown.
async fn streaming_base(client: &http::Client, target: &Target) -> url::Url {
    let mut fallback = target.base_url.clone();
    let _ = fallback.set_scheme(if target.base_url.scheme() == "https" { "wss" } else { "ws" });
    let Ok(url) = target.base_url.join("/api/v2/instance") else { return fallback };
    let request = http::Request {
        method: ::http::Method::GET,
        url,
        headers: Vec::new(),
        bearer: None,
        body: None,
        follow_redirects: false,
    };
    let Ok(response) = http::send(client, &request).await else { return fallback };
    serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| v.pointer("/configuration/urls/streaming")?.as_str().map(str::to_owned))
        .and_then(|s| url::Url::parse(&s).ok())
        .filter(|u| matches!(u.scheme(), "ws" | "wss"))
        .unwrap_or(fallback)
}

/// Why the probe will not send its token to a streaming URL, and how to allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StreamingUrlRefused(String);

/// Whether the token may go to the streaming API at `streaming` (from the
/// instance's `/api/v2/instance`); `Err` says why not and how to allow it.
///
/// - For an `https://` instance only `wss://`: the token must not cross the
///   network in clear text.
/// - The host must be the instance's own, a subdomain of it
///   (`streaming.mastodon.social` for `mastodon.social`), a host under the
///   instance host's parent domain when that parent is not a public suffix
///   (`streaming.example.org` for `social.example.org`), or one of the instance's
///   `streaming_hosts`. Without a public suffix list the parent rule is
///   conservative: it needs a parent of two or more labels and refuses the
///   `co.uk`/`com.au` kind of parent; anything else takes `streaming_hosts`.
pub fn streaming_url_allowed(target: &Target, streaming: &url::Url) -> Result<(), StreamingUrlRefused> {
    let instance = &target.base_url;
    let shown = format!("{}://{}", streaming.scheme(), streaming.host_str().unwrap_or(""));
    if instance.scheme() == "https" && streaming.scheme() != "wss" {
        return Err(StreamingUrlRefused(format!(
            "the instance's streaming API is at {shown}, not wss://: the probe sends its token only encrypted; \
             the stream is not used"
        )));
    }
    let (Some(host), Some(own)) = (streaming.host_str(), instance.host_str()) else {
        return Err(StreamingUrlRefused(format!(
            "the instance's streaming URL {shown} has no host; the stream is not used"
        )));
    };
    let (host, own) = (host.to_ascii_lowercase(), own.to_ascii_lowercase());
    let allowed = host == own
        || host.ends_with(&format!(".{own}"))
        || sibling_domain(&own).is_some_and(|parent| host.ends_with(&format!(".{parent}")))
        || target.streaming_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host));
    if allowed {
        return Ok(());
    }
    Err(StreamingUrlRefused(format!(
        "the instance's streaming API is at {shown}, a host the probe does not send its token to; \
         the stream is not used. If that host is the instance's, allow it in the config: \
         `streaming_hosts: [{host}]` under instance `{}`",
        target.name
    )))
}

/// The parent domain whose subdomains count as the instance's own: the host less
/// its first label, when that leaves two or more labels that do not look like a
/// public suffix (`co.uk`, `com.au`, …) and the host is a name, not an address.
fn sibling_domain(host: &str) -> Option<&str> {
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return None;
    }
    let (_, parent) = host.split_once('.')?;
    let labels: Vec<&str> = parent.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        return None;
    }
    // A generic second level under a country code (`co.uk`, `com.au`, `or.jp`) is a
    // public suffix: many unrelated owners live under it.
    const GENERIC_SECOND_LEVEL: &[&str] = &[
        "ac", "co", "com", "edu", "gob", "go", "gov", "ltd", "mil", "ne", "net", "nic", "nom", "or", "org", "plc",
        "sch",
    ];
    if labels.len() == 2 && labels[1].len() == 2 && GENERIC_SECOND_LEVEL.contains(&labels[0]) {
        return None;
    }
    Some(parent)
}

/// Why a stream could not be opened.
#[derive(Debug, Clone)]
pub enum OpenError {
    /// The probe's own problem, final: the token refused with a reason that names
    /// it (invalid, missing, scopes), or the config (no token, a bad URL).
    Fatal(StepError),
    /// 401 without a token or scope message: Mastodon's streaming server answers so
    /// for any trouble while it looks the token up (its database down included), so
    /// only the REST API's answer to the same token tells whose fault it is.
    UnexplainedRefusal(StepError),
    /// The stream can't be used (refused connection, a 5xx, a proxy's page, no
    /// upgrade in time): the instance's; the fallback may take over.
    Unusable(StepError),
}

impl OpenError {
    pub fn error(&self) -> &StepError {
        match self {
            OpenError::Fatal(e) | OpenError::UnexplainedRefusal(e) | OpenError::Unusable(e) => e,
        }
    }
}

/// Opens the stream for `spec` on `target` and starts reading it.
pub async fn open(client: &http::Client, target: &Target, spec: &StreamSpec) -> Result<OpenStream, OpenError> {
    let fatal = |reason, message: String| OpenError::Fatal(StepError::new(reason, message));
    let token = target.token.clone().map_err(|e| fatal(Reason::Config, e.to_string()))?;
    let mut url = streaming_base(client, target).await;
    streaming_url_allowed(target, &url)
        .map_err(|why| OpenError::Unusable(StepError::new(Reason::StreamingUrl, why.to_string())))?;
    url.set_path("/api/v1/streaming");
    url.query_pairs_mut().clear().append_pair("stream", &spec.stream);
    let what = format!("streaming {}", url.path());
    let mut request =
        url.as_str().into_client_request().map_err(|e| fatal(Reason::Protocol, format!("{what}: {e}")))?;
    let bearer = format!("Bearer {}", token.expose());
    let headers = request.headers_mut();
    headers.insert(
        ::http::header::AUTHORIZATION,
        bearer.parse().map_err(|_| fatal(Reason::Config, "the token is not a valid header value".to_owned()))?,
    );
    headers.insert(::http::header::USER_AGENT, ::http::HeaderValue::from_static(crate::USER_AGENT));
    let connector = if url.scheme() == "wss" {
        Some(tokio_tungstenite::Connector::Rustls(client.tls().websocket_config().map_err(OpenError::Fatal)?))
    } else {
        Some(tokio_tungstenite::Connector::Plain)
    };
    // The TCP connection goes through the run's resolver, like the run's HTTP requests.
    let host = url.host().ok_or_else(|| fatal(Reason::Config, format!("{what}: the URL has no host")))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp = super::connect::tcp(client.resolver(), &host.to_owned(), port).await.map_err(OpenError::Unusable)?;
    let _ = tcp.set_nodelay(true);
    // Frames are stamped with the kernel's receive time of their bytes.
    let clock = Arc::new(IoClock::default());
    let io = TimedIo::new(tcp, clock.clone());
    let (socket, _) = tokio_tungstenite::client_async_tls_with_config(request, io, None, connector)
        .await
        .map_err(|e| upgrade_error(&what, e))?;
    let (tx, frames) = mpsc::unbounded_channel();
    let task = tokio::spawn(read_frames(socket, clock, tx, spec.silence));
    Ok(OpenStream { frames, task })
}

/// Whether a refusal's message is about the token or its scopes, as the servers
/// word it: Mastodon's streaming server "Invalid access token", "Missing access
/// token", "Access token does not have the required scopes" (before 4.2: "… does
/// not cover required scopes"); its REST API "The access token is invalid", "This
/// action is outside the authorized scopes"; GoToSocial "token not supplied or invalid".
pub fn names_the_token(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("token") || message.contains("scope")
}

/// What a refused upgrade says about itself: the `X-Error-Message` header
/// (Mastodon's streaming server since 4.2, whose body is empty), else the JSON
/// body's `error`, else a short plain body (e.g. "Unauthorized" before 4.2).
fn refusal_message(response: &::http::Response<Option<Vec<u8>>>) -> Option<String> {
    if let Some(header) = response.headers().get("x-error-message").and_then(|v| v.to_str().ok()) {
        return Some(header.trim().to_owned()).filter(|m| !m.is_empty());
    }
    let body = response.body().as_deref().unwrap_or_default();
    if let Some(error) = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
    {
        return Some(error);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    (!text.is_empty() && text.len() <= 200 && !text.starts_with('<')).then(|| text.to_owned())
}

fn upgrade_error(what: &str, error: tungstenite::Error) -> OpenError {
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let message = refusal_message(&response);
            let said = message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
            match status {
                401 | 403 if message.as_deref().is_some_and(names_the_token) => OpenError::Fatal(StepError::new(
                    Reason::Unauthorized,
                    format!("{what}: status {status}{said}: the streaming API refused the probe's token"),
                )),
                401 => OpenError::UnexplainedRefusal(StepError::new(
                    Reason::HttpStatus,
                    format!(
                        "{what}: status 401{said} without naming the token: Mastodon's streaming server answers so \
                         for any trouble looking the token up"
                    ),
                )),
                _ => OpenError::Unusable(StepError::new(
                    Reason::HttpStatus,
                    format!("{what}: status {status}{said} instead of a websocket"),
                )),
            }
        }
        tungstenite::Error::Tls(e) => OpenError::Unusable(StepError::new(Reason::Tls, format!("{what}: {e}"))),
        tungstenite::Error::Io(e) => OpenError::Unusable(StepError::new(Reason::Connect, format!("{what}: {e}"))),
        other => OpenError::Unusable(StepError::new(Reason::Protocol, format!("{what}: {other}"))),
    }
}

/// Reads the stream's frames into `tx`, each event stamped with when its bytes
/// arrived (`clock` is the connection's: the latest read's receive time, which
/// is no earlier than the frame's) rather than when this task read it.
async fn read_frames<S>(
    mut socket: tokio_tungstenite::WebSocketStream<S>,
    clock: Arc<IoClock>,
    tx: mpsc::UnboundedSender<Frame>,
    silence: std::time::Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // Reading also answers the server's pings: tungstenite queues the pong and
    // flushes it on the next read. Any frame, a ping included, shows the stream
    // is alive; nothing for `silence` means it is not.
    loop {
        let message = match tokio::time::timeout(silence, socket.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(_) => {
                let _ = tx.send(Frame::Closed(StepError::new(
                    Reason::ConnectionClosed,
                    format!("the stream sent nothing, not even a ping, for {}", humantime::format_duration(silence)),
                )));
                return;
            }
        };
        let now = Instant::now();
        let at = now.checked_sub(clock.received_ago()).unwrap_or(now);
        let frame = match message {
            Ok(Message::Text(text)) => match parse_frame(&text) {
                Some((event, payload)) => Frame::Event { at, event, payload },
                // Mastodon refuses a subscription the token's scopes don't cover with
                // an error frame and keeps the socket open: no event would ever come.
                None => match refused_subscription(&text) {
                    Some(message) => Frame::Closed(StepError::new(
                        Reason::Unauthorized,
                        format!("the streaming API refused the subscription ({message}): check the token's scopes"),
                    )),
                    None => continue,
                },
            },
            Ok(Message::Close(close)) => {
                let why = close.map(|c| format!(" ({} {})", u16::from(c.code), c.reason)).unwrap_or_default();
                Frame::Closed(StepError::new(
                    Reason::ConnectionClosed,
                    format!("the streaming server closed the stream{why}"),
                ))
            }
            Ok(_) => continue,
            Err(e) => Frame::Closed(StepError::new(Reason::ConnectionClosed, format!("the stream broke: {e}"))),
        };
        let closed = matches!(frame, Frame::Closed(_));
        if tx.send(frame).is_err() || closed {
            return;
        }
    }
    let _ = tx.send(Frame::Closed(StepError::new(Reason::ConnectionClosed, "the stream ended")));
}

/// `{"stream":[…],"event":"update","payload":"…"}` → (event, payload). Error
/// frames (`{"error":…}`) and anything else are not events.
pub fn parse_frame(text: &str) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let event = value.get("event")?.as_str()?.to_owned();
    let payload = match value.get("payload") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    Some((event, payload))
}

/// The message of an error frame that refuses the token or its scopes
/// (`{"error":"Access token does not have the required scopes","status":401}`);
/// other error frames (an unknown stream, 400) are not about the probe's token.
fn refused_subscription(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let message = value.get("error")?.as_str()?;
    let status = value.get("status").and_then(serde_json::Value::as_u64);
    (matches!(status, Some(401 | 403)) && names_the_token(message)).then(|| message.to_owned())
}

/// A payload as a response body for the step's `expect`: JSON payloads as they
/// are, a bare id (a `delete`) as a JSON string.
pub fn payload_response(payload: &str) -> Response {
    let body = if serde_json::from_str::<serde_json::Value>(payload).is_ok() {
        payload.as_bytes().to_vec()
    } else {
        serde_json::to_vec(&serde_json::Value::String(payload.to_owned())).unwrap_or_default()
    };
    Response { status: 200, headers: ::http::HeaderMap::new(), body: body.into() }
}

/// Default interval a fallback polls at.
pub const FALLBACK_INTERVAL: Duration = Duration::from_secs(2);

/// The fallback: a request repeated every `interval`, each attempt within `timeout`.
pub struct Poller<'a> {
    pub client: &'a http::Client,
    pub request: &'a http::Request,
    pub interval: Duration,
    pub timeout: Duration,
}

/// A post seen arriving.
#[derive(Debug)]
pub struct Arrival {
    /// When it was seen: the frame read, or the poll's response read.
    pub at: Instant,
    pub method: Method,
    pub captured: Vec<(String, String)>,
    /// The latest moment the post was known not to have arrived yet: the post's
    /// end, or the sending of the last poll that did not see it. The arrival lies
    /// between this and `at` (for a stream frame, `at` itself).
    pub absent_until: Instant,
    /// Whether `at` is within one fallback interval (plus the finding poll's own
    /// response time) of the true arrival: always for a frame; for a poll, when it
    /// was sent on its schedule, one interval after `absent_until`.
    pub bounded: bool,
}

/// Waits for the post to arrive: on the stream (when there is one) and, when the
/// journey has a fallback, by polling in parallel from one interval after the
/// post (`posted`) on, so that a stream that goes silent cannot push the figure
/// further than one interval from the truth. The first to see it wins. A broken
/// stream is left for the poll and reported in `stream_failed`; a failed poll
/// leaves the stream to see the post, and decides only if it does not; a refusal
/// of the token (an error frame) ends the wait at once. `Ok(None)`: not seen by
/// `until`.
#[allow(clippy::too_many_arguments)]
pub async fn wait_for_arrival(
    mut stream: Option<&mut OpenStream>,
    event: &str,
    posted: Instant,
    until: Instant,
    poller: Option<Poller<'_>>,
    mut check_event: impl FnMut(&Response) -> Result<Vec<(String, String)>, StepError>,
    mut check_poll: impl FnMut(&Response) -> Result<Vec<(String, String)>, StepError>,
    stream_failed: &mut Option<StepError>,
) -> Result<Option<Arrival>, StepError> {
    let interval = poller.as_ref().map_or(Duration::ZERO, |p| p.interval);
    let mut absent_until = posted;
    let mut due = posted + interval;
    // Late: the poll cannot be sent one interval after the post was last known
    // absent (the step began after that, or the previous response came after it).
    let mut late = Instant::now() > due;
    // A poll that failed (a 5xx, a timeout) while the stream still worked: the
    // stream may yet see the post; the failure decides only if it does not.
    let mut poll_failed: Option<StepError> = None;
    loop {
        let Some(poller) = poller.as_ref().filter(|_| poll_failed.is_none()) else {
            // Only the stream can see the post: no fallback, or its poll failed.
            let Some(open) = stream.as_deref_mut() else {
                let ended = || StepError::new(Reason::ConnectionClosed, "the stream ended");
                return Err(poll_failed.or_else(|| stream_failed.clone()).unwrap_or_else(ended));
            };
            let frame = tokio::select! {
                frame = open.frames.recv() => frame,
                () = tokio::time::sleep_until(until) => return poll_failed.map_or(Ok(None), Err),
            };
            match seen_on_stream(frame, event, &mut check_event) {
                Seen::Arrived(arrival) => return Ok(Some(arrival)),
                Seen::Nothing => {}
                Seen::Refused(error) => return Err(error),
                Seen::Broken(error) => {
                    *stream_failed = Some(error.clone());
                    return Err(poll_failed.unwrap_or(error));
                }
            }
            continue;
        };
        let frame = tokio::select! {
            biased;
            frame = async { stream.as_deref_mut()?.frames.recv().await }, if stream.is_some() => Some(frame),
            () = tokio::time::sleep_until(due.min(until)) => None,
        };
        if let Some(frame) = frame {
            match seen_on_stream(frame, event, &mut check_event) {
                Seen::Arrived(arrival) => return Ok(Some(arrival)),
                Seen::Nothing => {}
                Seen::Refused(error) => return Err(error),
                Seen::Broken(error) => {
                    tracing::info!(error = %error.message, "stream unusable; the fallback poll carries on");
                    *stream_failed = Some(error);
                    stream = None;
                }
            }
            continue;
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        let sent = Instant::now();
        let attempt_end = until.min(sent + poller.timeout);
        let checked = match tokio::time::timeout_at(attempt_end, http::send(poller.client, poller.request)).await {
            Ok(Ok(response)) => check_poll(&response),
            Ok(Err(e)) => Err(e),
            Err(_) if attempt_end >= until => return Ok(None),
            Err(_) => Err(StepError::new(
                Reason::Timeout,
                format!(
                    "{} {}: no complete response within {}",
                    poller.request.method,
                    poller.request.url.path(),
                    humantime::format_duration(poller.timeout)
                ),
            )),
        };
        let read = Instant::now();
        match checked {
            Ok(captured) => {
                // The stream may have seen it first while the poll was out: its frames
                // wait in the channel, stamped with the moment they were read.
                if let Some(open) = stream.as_deref_mut() {
                    while let Ok(frame) = open.frames.try_recv() {
                        if let Seen::Arrived(arrival) = seen_on_stream(Some(frame), event, &mut check_event)
                            && arrival.at < read
                        {
                            return Ok(Some(arrival));
                        }
                    }
                }
                return Ok(Some(Arrival { at: read, method: Method::Poll, captured, absent_until, bounded: !late }));
            }
            Err(e) if e.reason == Reason::Assertion => {}
            Err(e) if stream.is_none() => return Err(e),
            Err(e) => {
                tracing::info!(error = %e.message, "fallback poll failed; waiting on the stream alone");
                poll_failed = Some(e);
                continue;
            }
        }
        absent_until = sent;
        due = sent + poller.interval;
        late = Instant::now() > due;
    }
}

/// What one frame (or the end of the stream) means for the wait.
enum Seen {
    Arrived(Arrival),
    Nothing,
    /// The streaming API refused the token or its scopes: the probe's, final.
    Refused(StepError),
    Broken(StepError),
}

fn seen_on_stream(
    frame: Option<Frame>,
    event: &str,
    check: &mut impl FnMut(&Response) -> Result<Vec<(String, String)>, StepError>,
) -> Seen {
    match frame {
        Some(Frame::Event { at, event: e, payload }) if e == event => match check(&payload_response(&payload)) {
            Ok(captured) => {
                Seen::Arrived(Arrival { at, method: Method::Stream, captured, absent_until: at, bounded: true })
            }
            Err(_) => Seen::Nothing,
        },
        Some(Frame::Event { .. }) => Seen::Nothing,
        Some(Frame::Closed(error)) if error.reason == Reason::Unauthorized => Seen::Refused(error),
        Some(Frame::Closed(error)) => Seen::Broken(error),
        None => Seen::Broken(StepError::new(Reason::ConnectionClosed, "the stream ended")),
    }
}

/// Checks a fallback poll's response: its status, then its own `expect`.
pub fn check_response(
    expect: &crate::spec::journey::Expect,
    response: &Response,
    what: &str,
    sent_token: bool,
    lookup: &mut impl FnMut(&crate::spec::template::Var) -> Result<String, StepError>,
) -> Result<(), StepError> {
    if let Some(e) = check::status_error(expect, response, sent_token, what) {
        return Err(e);
    }
    let mut body = check::Body::new(response);
    check::check_expect(expect, response, &mut body, lookup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    /// An event frame is stamped with when it arrived, not when the reading task
    /// (held up here by a thread kept busy from just before the frame is sent)
    /// got round to it: a delivery delay must not include the probe's own wait.
    #[test]
    fn a_frame_is_stamped_when_it_arrived_not_when_a_busy_thread_read_it() {
        const BUSY: Duration = Duration::from_millis(400);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let about_to_send = Arc::new(tokio::sync::Notify::new());
        let sent_at = Arc::new(std::sync::Mutex::new(None));
        let (told, stamp) = (about_to_send.clone(), sent_at.clone());
        // The server on a thread of its own: the busy probe thread must not hold it up.
        std::thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            let mut socket = tungstenite::accept(socket).unwrap();
            told.notify_one();
            std::thread::sleep(Duration::from_millis(50));
            *stamp.lock().unwrap() = Some(std::time::Instant::now());
            socket.send(Message::text(r#"{"stream":["user"],"event":"update","payload":"{}"}"#)).unwrap();
            socket.flush().unwrap();
            std::thread::sleep(BUSY * 2);
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let at = runtime.block_on(async {
            let clock = Arc::new(IoClock::default());
            let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
            let io = TimedIo::new(tcp, clock.clone());
            let (socket, _) = tokio_tungstenite::client_async(format!("ws://{address}/"), io).await.unwrap();
            let (tx, mut frames) = mpsc::unbounded_channel();
            let reader = tokio::spawn(read_frames(socket, clock, tx, Duration::from_secs(10)));
            about_to_send.notified().await;
            std::thread::sleep(BUSY);
            let frame = frames.recv().await;
            reader.abort();
            match frame {
                Some(Frame::Event { at, .. }) => at.into_std(),
                _ => panic!("no event frame"),
            }
        });
        let sent = sent_at.lock().unwrap().expect("the server sent the frame");
        assert!(at >= sent, "stamped before it was sent");
        assert!(at - sent < BUSY / 2, "stamped {:?} after it was sent: the busy thread's wait was counted", at - sent);
    }

    fn target(url: &str, allowed: &[&str]) -> Target {
        let mut t = Target::new("main", url.parse().unwrap(), "probe", Secret::new("unused-stream-host-token"));
        t.streaming_hosts = allowed.iter().map(|h| (*h).to_owned()).collect();
        t
    }

    fn allowed(instance: &str, streaming: &str, hosts: &[&str]) -> Result<(), String> {
        streaming_url_allowed(&target(instance, hosts), &streaming.parse().unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn an_https_instance_streams_over_wss_only() {
        assert!(allowed("https://mastodon.social", "wss://mastodon.social", &[]).is_ok());
        let refused = allowed("https://mastodon.social", "ws://mastodon.social", &[]).unwrap_err();
        assert!(refused.contains("not wss://"), "{refused}");
        // Allowing the host does not allow clear text.
        assert!(allowed("https://mastodon.social", "ws://mastodon.social", &["mastodon.social"]).is_err());
        // A plain-http instance (a test instance on loopback) already sends its token in clear.
        assert!(allowed("http://127.0.0.1:3000", "ws://127.0.0.1:4000", &[]).is_ok());
    }

    #[test]
    fn the_token_goes_to_the_instance_its_subdomains_and_its_parent_domain_only() {
        for (instance, streaming) in [
            ("https://mastodon.social", "wss://streaming.mastodon.social"),
            ("https://social.example.org", "wss://streaming.example.org"),
            ("https://social.example.org", "wss://SOCIAL.example.org"),
            ("https://m.social.example.co.uk", "wss://stream.social.example.co.uk"),
        ] {
            assert_eq!(allowed(instance, streaming, &[]), Ok(()), "{instance} -> {streaming}");
        }
        for (instance, streaming) in [
            ("https://mastodon.social", "wss://evil.social"),
            ("https://mastodon.social", "wss://mastodon.social.evil.example"),
            ("https://mastodon.social", "wss://notmastodon.social"),
            ("https://mastodon.example.co.uk", "wss://evil.co.uk"),
            ("https://mastodon.example.com.au", "wss://evil.com.au"),
            ("https://social.example.org", "wss://example.org.evil.net"),
            ("https://127.0.0.1", "wss://127.0.0.2"),
        ] {
            let refused = allowed(instance, streaming, &[]).unwrap_err();
            assert!(refused.contains("streaming_hosts: ["), "{instance} -> {streaming}: {refused}");
        }
    }

    fn refusal(status: u16, headers: &[(&str, &str)], body: &str) -> ::http::Response<Option<Vec<u8>>> {
        let mut builder = ::http::Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Some(body.as_bytes().to_vec()).filter(|b| !b.is_empty())).unwrap()
    }

    /// Each shape Mastodon's streaming server (and what stands in front of it) has
    /// used: the message is read, and only a token or scope message names the token.
    #[test]
    fn a_refusal_says_what_it_says_and_only_token_messages_blame_the_token() {
        let cases = [
            // 4.3 and later: empty body, the message in a header.
            (refusal(401, &[("x-error-message", "Invalid access token")], ""), Some("Invalid access token"), true),
            (refusal(401, &[("x-error-message", "Missing access token")], ""), Some("Missing access token"), true),
            // 4.2: Error#toString() in the header; its database down is a 401 too.
            (
                refusal(401, &[("x-error-message", "Error: Invalid access token")], ""),
                Some("Error: Invalid access token"),
                true,
            ),
            (
                refusal(401, &[("x-error-message", "An unexpected error occurred")], ""),
                Some("An unexpected error occurred"),
                false,
            ),
            // Before 4.2: the `ws` library's refusal, whatever went wrong.
            (refusal(401, &[("content-type", "text/html")], "Unauthorized"), Some("Unauthorized"), false),
            // A JSON body (the REST API's words, GoToSocial's).
            (
                refusal(401, &[], r#"{"error":"The access token is invalid"}"#),
                Some("The access token is invalid"),
                true,
            ),
            (
                refusal(401, &[], r#"{"error":"Unauthorized: token not supplied or invalid"}"#),
                Some("Unauthorized: token not supplied or invalid"),
                true,
            ),
            // A proxy's HTML page says nothing the probe can use.
            (refusal(401, &[("content-type", "text/html")], "<html><body>401</body></html>"), None, false),
            (refusal(401, &[], ""), None, false),
        ];
        for (response, message, names_token) in cases {
            let read = refusal_message(&response);
            assert_eq!(read.as_deref(), message, "{response:?}");
            assert_eq!(read.as_deref().is_some_and(names_the_token), names_token, "{response:?}");
        }
    }

    #[test]
    fn streaming_hosts_allow_a_host_and_the_refusal_says_how() {
        let refused = allowed("https://mastodon.example", "wss://stream.cdn.example.net/x", &[]).unwrap_err();
        assert!(refused.contains("`streaming_hosts: [stream.cdn.example.net]` under instance `main`"), "{refused}");
        assert!(
            allowed("https://mastodon.example", "wss://stream.cdn.example.net", &["stream.cdn.example.net"]).is_ok()
        );
    }

    #[test]
    fn only_a_scope_or_token_error_frame_refuses_the_subscription() {
        let scopes = r#"{"error":"Access token does not have the required scopes","status":401}"#;
        assert_eq!(refused_subscription(scopes).as_deref(), Some("Access token does not have the required scopes"));
        assert_eq!(refused_subscription(r#"{"error":"Unknown stream type","status":400}"#), None);
        assert_eq!(
            refused_subscription(r#"{"error":"Missing access token","status":401}"#).as_deref(),
            Some("Missing access token")
        );
        assert_eq!(refused_subscription(r#"{"stream":["user"],"event":"update","payload":"{}"}"#), None);
        assert_eq!(refused_subscription("not json"), None);
    }
}
