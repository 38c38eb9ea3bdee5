//! One HTTP exchange as a probe must see it: a fresh client per run (so the first
//! request pays DNS, TCP and TLS like a user's), no redirects unless the step asks,
//! a capped body, and transport errors sorted into bounded reasons.

use bytes::Bytes;
use http::HeaderMap;

use super::result::{Reason, StepError};

/// The most of a response body the probe reads; a larger body is a failure
/// (`body_too_large`), so that a hostile or broken server cannot eat the probe's memory.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// How many redirects a step that follows them accepts, like browsers' limits.
pub const MAX_REDIRECTS: usize = 10;

pub const USER_AGENT: &str = concat!("fediprobe/", env!("CARGO_PKG_VERSION"));

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
    pub body: Option<(&'static str, Vec<u8>)>,
    pub follow_redirects: bool,
}

/// A client for one run. Connections are reused within the run (as an app does
/// between its requests) and never between runs.
pub fn client_for_run() -> Result<reqwest::Client, StepError> {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .no_proxy()
        .pool_max_idle_per_host(4)
        .build()
        .map_err(|e| StepError::new(Reason::Config, format!("cannot set up the HTTP client: {}", describe(&e))))
}

/// Sends `request`, follows redirects if asked, reads the body up to [`MAX_BODY_BYTES`].
pub async fn send(client: &reqwest::Client, request: &Request) -> Result<Response, StepError> {
    let origin = request.url.origin();
    let mut method = request.method.clone();
    let mut url = request.url.clone();
    let mut body = request.body.clone();
    for _ in 0..=MAX_REDIRECTS {
        let mut builder = client.request(method.clone(), url.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let (Some(token), true) = (&request.bearer, url.origin() == origin) {
            builder = builder.bearer_auth(token.expose());
        }
        if let Some((content_type, bytes)) = &body {
            builder = builder.header(http::header::CONTENT_TYPE, *content_type).body(bytes.clone());
        }
        let response = builder.send().await.map_err(|e| transport_error(&method, &url, &e))?;
        let status = response.status();
        if request.follow_redirects && status.is_redirection() {
            if let Some(next) = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
            {
                // Browsers turn 301/302/303 into a GET without a body; 307/308 keep both.
                if matches!(status.as_u16(), 301..=303) && method != http::Method::HEAD {
                    method = http::Method::GET;
                    body = None;
                }
                url = next;
                continue;
            }
        }
        return read_response(response, &method, &url).await;
    }
    Err(StepError::new(
        Reason::RedirectLoop,
        format!("{} {}: more than {MAX_REDIRECTS} redirects", request.method, request.url.path()),
    ))
}

async fn read_response(
    mut response: reqwest::Response,
    method: &http::Method,
    url: &url::Url,
) -> Result<Response, StepError> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    if let Some(length) = response.content_length() {
        if length > MAX_BODY_BYTES as u64 {
            return Err(too_large(method, url, Some(length)));
        }
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(too_large(method, url, None));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(transport_error(method, url, &e)),
        }
    }
    Ok(Response { status, headers, body: Bytes::from(body) })
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
fn transport_error(method: &http::Method, url: &url::Url, error: &reqwest::Error) -> StepError {
    let reason = classify(error);
    StepError::new(reason, format!("{method} {}: {}", url.path(), describe(error)))
}

fn classify(error: &reqwest::Error) -> Reason {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut text = String::new();
    while let Some(e) = source {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return Reason::Tls;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.get_ref().is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) {
                return Reason::Tls;
            }
        }
        text.push_str(&e.to_string().to_ascii_lowercase());
        text.push('\n');
        source = e.source();
    }
    if error.is_timeout() {
        Reason::Timeout
    } else if text.contains("dns error") || text.contains("failed to lookup address") {
        Reason::Dns
    } else if error.is_connect() {
        if text.contains("certificate") || text.contains("tls") { Reason::Tls } else { Reason::Connect }
    } else if error.is_body()
        || error.is_decode()
        || text.contains("connection closed")
        || text.contains("reset")
        || text.contains("incomplete")
    {
        Reason::ConnectionClosed
    } else if text.contains("parse") || text.contains("invalid") {
        Reason::Protocol
    } else {
        Reason::ConnectionClosed
    }
}

/// The error's causes, without reqwest's outer line (which carries the full URL).
pub fn describe(error: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    if parts.is_empty() {
        if error.is_timeout() { "timed out".to_owned() } else { "request failed".to_owned() }
    } else {
        parts.join(": ")
    }
}
