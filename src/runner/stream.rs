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
//! Failure modes, as the design asks: a 401 on the upgrade is the probe's token
//! (`probe_error`/`unauthorized`, no fallback); any other trouble with the stream
//! (refused, closed, silent server down) switches to the fallback poll when the
//! journey has one, which marks the delivery `poll`; nothing matching before
//! `within` is a failure with reason `not_delivered`.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::check;
use super::http::{self, Response};
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
pub fn streaming_url_allowed(target: &Target, streaming: &url::Url) -> Result<(), String> {
    let instance = &target.base_url;
    let shown = format!("{}://{}", streaming.scheme(), streaming.host_str().unwrap_or(""));
    if instance.scheme() == "https" && streaming.scheme() != "wss" {
        return Err(format!(
            "the instance's streaming API is at {shown}, not wss://: the probe sends its token only encrypted; \
             the stream is not used"
        ));
    }
    let (Some(host), Some(own)) = (streaming.host_str(), instance.host_str()) else {
        return Err(format!("the instance's streaming URL {shown} has no host; the stream is not used"));
    };
    let (host, own) = (host.to_ascii_lowercase(), own.to_ascii_lowercase());
    let allowed = host == own
        || host.ends_with(&format!(".{own}"))
        || sibling_domain(&own).is_some_and(|parent| host.ends_with(&format!(".{parent}")))
        || target.streaming_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host));
    if allowed {
        return Ok(());
    }
    Err(format!(
        "the instance's streaming API is at {shown}, a host the probe does not send its token to; \
         the stream is not used. If that host is the instance's, allow it in the config: \
         `streaming_hosts: [{host}]` under instance `{}`",
        target.name
    ))
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

/// Opens the stream for `spec` on `target` and starts reading it.
pub async fn open(client: &http::Client, target: &Target, spec: &StreamSpec) -> Result<OpenStream, StepError> {
    let token = target.token.clone().map_err(|e| StepError::new(Reason::Config, e))?;
    let mut url = streaming_base(client, target).await;
    streaming_url_allowed(target, &url).map_err(|why| StepError::new(Reason::StreamingUrl, why))?;
    url.set_path("/api/v1/streaming");
    url.query_pairs_mut().clear().append_pair("stream", &spec.stream);
    let what = format!("streaming {}", url.path());
    let mut request =
        url.as_str().into_client_request().map_err(|e| StepError::new(Reason::Protocol, format!("{what}: {e}")))?;
    let bearer = format!("Bearer {}", token.expose());
    let headers = request.headers_mut();
    headers.insert(
        ::http::header::AUTHORIZATION,
        bearer.parse().map_err(|_| StepError::new(Reason::Config, "the token is not a valid header value"))?,
    );
    headers.insert(::http::header::USER_AGENT, ::http::HeaderValue::from_static(crate::USER_AGENT));
    let connector = if url.scheme() == "wss" {
        Some(tokio_tungstenite::Connector::Rustls(client.tls().websocket_config()?))
    } else {
        Some(tokio_tungstenite::Connector::Plain)
    };
    // The TCP connection goes through the run's resolver, like the run's HTTP requests.
    let host = url.host().ok_or_else(|| StepError::new(Reason::Config, format!("{what}: the URL has no host")))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp = super::connect::tcp(client.resolver(), &host.to_owned(), port).await?;
    let _ = tcp.set_nodelay(true);
    let (socket, _) = tokio_tungstenite::client_async_tls_with_config(request, tcp, None, connector)
        .await
        .map_err(|e| upgrade_error(&what, e))?;
    let (tx, frames) = mpsc::unbounded_channel();
    let task = tokio::spawn(read_frames(socket, tx, spec.silence));
    Ok(OpenStream { frames, task })
}

fn upgrade_error(what: &str, error: tungstenite::Error) -> StepError {
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let mastodon = response
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(|e| format!(" ({e})")))
                .unwrap_or_default();
            if status == 401 {
                StepError::new(
                    Reason::Unauthorized,
                    format!("{what}: status 401{mastodon}: the streaming API refused the probe's token"),
                )
            } else {
                StepError::new(Reason::HttpStatus, format!("{what}: status {status}{mastodon} instead of a websocket"))
            }
        }
        tungstenite::Error::Tls(e) => StepError::new(Reason::Tls, format!("{what}: {e}")),
        tungstenite::Error::Io(e) => StepError::new(Reason::Connect, format!("{what}: {e}")),
        other => StepError::new(Reason::Protocol, format!("{what}: {other}")),
    }
}

async fn read_frames<S>(
    mut socket: tokio_tungstenite::WebSocketStream<S>,
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
        let at = Instant::now();
        let frame = match message {
            Ok(Message::Text(text)) => match parse_frame(&text) {
                Some((event, payload)) => Frame::Event { at, event, payload },
                None => continue,
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

/// Waits for a wanted frame whose payload passes `check`; `Ok(None)` when the
/// stream failed first (the error is returned alongside for the message).
pub async fn wait_for_event(
    open: &mut OpenStream,
    event: &str,
    until: Instant,
    mut check: impl FnMut(&Response) -> Result<Vec<(String, String)>, StepError>,
) -> Result<Result<(Instant, Vec<(String, String)>), StepError>, ()> {
    loop {
        let frame = tokio::select! {
            frame = open.frames.recv() => frame,
            () = tokio::time::sleep_until(until) => return Err(()),
        };
        match frame {
            Some(Frame::Event { at, event: e, payload }) if e == event => {
                if let Ok(captured) = check(&payload_response(&payload)) {
                    return Ok(Ok((at, captured)));
                }
            }
            Some(Frame::Event { .. }) => {}
            Some(Frame::Closed(error)) => return Ok(Err(error)),
            None => return Ok(Err(StepError::new(Reason::ConnectionClosed, "the stream ended"))),
        }
    }
}

/// Default interval a fallback polls at.
pub const FALLBACK_INTERVAL: Duration = Duration::from_secs(2);

/// Polls `request` until `check` passes; returns when the passing response was read.
pub async fn poll_until(
    client: &http::Client,
    request: &http::Request,
    interval: Duration,
    timeout: Duration,
    until: Instant,
    mut check: impl FnMut(&Response) -> Result<Vec<(String, String)>, StepError>,
) -> Result<Option<(Instant, Vec<(String, String)>)>, StepError> {
    loop {
        let attempt_end = until.min(Instant::now() + timeout);
        let response = match tokio::time::timeout_at(attempt_end, http::send(client, request)).await {
            Ok(r) => r?,
            Err(_) if attempt_end >= until => return Ok(None),
            Err(_) => {
                return Err(StepError::new(
                    Reason::Timeout,
                    format!(
                        "{} {}: no complete response within {}",
                        request.method,
                        request.url.path(),
                        humantime::format_duration(timeout)
                    ),
                ));
            }
        };
        let at = Instant::now();
        match check(&response) {
            Ok(captured) => return Ok(Some((at, captured))),
            Err(e) if e.reason == Reason::Assertion => {}
            Err(e) => return Err(e),
        }
        let next = Instant::now() + interval;
        if next >= until {
            return Ok(None);
        }
        tokio::time::sleep_until(next).await;
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

    fn target(url: &str, allowed: &[&str]) -> Target {
        let mut t = Target::new("main", url.parse().unwrap(), "probe", Secret::new("unused-stream-host-token"));
        t.streaming_hosts = allowed.iter().map(|h| (*h).to_owned()).collect();
        t
    }

    fn allowed(instance: &str, streaming: &str, hosts: &[&str]) -> Result<(), String> {
        streaming_url_allowed(&target(instance, hosts), &streaming.parse().unwrap())
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

    #[test]
    fn streaming_hosts_allow_a_host_and_the_refusal_says_how() {
        let refused = allowed("https://mastodon.example", "wss://stream.cdn.example.net/x", &[]).unwrap_err();
        assert!(refused.contains("`streaming_hosts: [stream.cdn.example.net]` under instance `main`"), "{refused}");
        assert!(
            allowed("https://mastodon.example", "wss://stream.cdn.example.net", &["stream.cdn.example.net"]).is_ok()
        );
    }
}
