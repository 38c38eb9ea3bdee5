//! The HTTP/1.1 server of one instance: a tokio accept loop that serves each
//! connection with hyper, applies the instance's [`Faults`] to every request, and
//! forwards the rest to the axum router.
//!
//! Serving connections by hand (rather than `axum::serve`) is what lets a fault
//! close a connection without any response: the service returns an error and
//! hyper drops the connection. A failed accept or connection never stops the loop.
//! Connections can be upgraded, for the streaming API (`streaming.rs`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Frame;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tower::ServiceExt;

use super::faults::{Faults, Plan, proxy_body, status_body};
use super::routes::{JSON_CONTENT_TYPE, PeerAddr};

/// How long connections get to finish their current request at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// How many pieces a trickled body is cut into (fewer for tiny bodies).
const SLOW_BODY_CHUNKS: usize = 10;
/// Pause before the connection of a `ResetMidBody` is closed, so the first part
/// of the body reaches the client first.
const RESET_PAUSE: Duration = Duration::from_millis(50);

/// The error a fault returns to make hyper close the connection.
#[derive(Debug, thiserror::Error)]
#[error("connection closed by an injected sandbox fault")]
struct InjectedClose;

/// Serves `listener` until `shutdown` turns true (or its sender is dropped).
pub(crate) async fn serve(
    name: String,
    listener: TcpListener,
    router: Router,
    faults: Faults,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let router = router.clone();
                    let faults = faults.clone();
                    let shutdown = shutdown.clone();
                    connections.spawn(serve_connection(stream, peer, router, faults, shutdown));
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather
                    // than spin, and keep serving.
                    tracing::warn!(instance = %name, %error, "sandbox accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drained =
        tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        connections.abort_all();
    }
    tracing::debug!(instance = %name, "sandbox instance stopped");
}

/// Resolves once the sandbox is stopping (or its handle is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    faults: Faults,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = service_fn(move |request: Request<Incoming>| handle(request, router.clone(), faults.clone(), peer));
    // Upgradable, for the streaming API's websockets: the socket then leaves
    // this connection for the streaming task, which watches `shutdown` itself.
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "sandbox connection ended with an error");
    }
}

async fn handle(
    mut request: Request<Incoming>,
    router: Router,
    faults: Faults,
    peer: SocketAddr,
) -> Result<Response<Body>, InjectedClose> {
    let plan = Plan::from_faults(&faults.matching(request.method(), request.uri().path()));
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    if plan.drop_connection {
        return Err(InjectedClose);
    }
    if let Some(code) = plan.proxy_status {
        return Ok(proxy_status(code));
    }
    if let Some(code) = plan.status {
        return Ok(injected_status(code));
    }
    request.extensions_mut().insert(PeerAddr(peer));
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let response = if plan.async_refresh && response.status() == StatusCode::OK {
        let (mut parts, body) = response.into_parts();
        parts.status = StatusCode::PARTIAL_CONTENT;
        // Mastodon's format: the refresh's id, when to ask again, results so far.
        parts.headers.insert(
            "mastodon-async-refresh",
            HeaderValue::from_static("id=\"ImhvbWVfZmVlZDoxIg==\", retry=5, result_count=0"),
        );
        Response::from_parts(parts, body)
    } else {
        response
    };
    if !plan.malformed_json && !plan.reset_mid_body && plan.slow_body.is_none() {
        return Ok(response);
    }

    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.map_err(|_| InjectedClose)?;
    let bytes = if plan.malformed_json {
        parts.status = StatusCode::OK;
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
        malformed(&bytes)
    } else {
        bytes
    };
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let body = if plan.reset_mid_body {
        let half = bytes.slice(..bytes.len() / 2);
        FaultBody::new(vec![half], Duration::ZERO, Some(RESET_PAUSE))
    } else if let Some(total) = plan.slow_body {
        let count = SLOW_BODY_CHUNKS.min(bytes.len()).max(1);
        let size = bytes.len().div_ceil(count).max(1);
        let chunks: Vec<Bytes> =
            (0..bytes.len()).step_by(size).map(|start| bytes.slice(start..(start + size).min(bytes.len()))).collect();
        let delay = total / u32::try_from(chunks.len().max(1)).unwrap_or(1);
        FaultBody::new(chunks, delay, None)
    } else {
        FaultBody::new(vec![bytes], Duration::ZERO, None)
    };
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// The answer to an injected `Fault::Status`.
fn injected_status(code: u16) -> Response<Body> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (content_type, body) = status_body(status.as_u16());
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::TOO_MANY_REQUESTS {
        // Mastodon's own limiter (rack-attack) always says which limit and when it resets.
        let reset = (chrono::Utc::now() + chrono::Duration::minutes(5)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-limit", HeaderValue::from_static("300"));
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        if let Ok(reset) = HeaderValue::from_str(&reset) {
            headers.insert("x-ratelimit-reset", reset);
        }
    }
    response
}

/// The answer to an injected `Fault::Proxy`: the proxy's HTML page, none of
/// Mastodon's headers.
fn proxy_status(code: u16) -> Response<Body> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    let (content_type, body) = proxy_body(status.as_u16());
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(header::SERVER, HeaderValue::from_static("nginx"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("120"));
    }
    response
}

/// A JSON body cut in the middle, so no parser accepts it.
fn malformed(body: &Bytes) -> Bytes {
    if body.len() < 4 {
        return Bytes::from_static(b"{\"error\":");
    }
    body.slice(..body.len() / 2)
}

/// A body sent in pieces with a pause before each, optionally ending in an error
/// (which makes hyper abort the connection mid-body).
struct FaultBody {
    chunks: VecDeque<Bytes>,
    delay: Duration,
    fail_after: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    failing: bool,
}

impl FaultBody {
    fn new(chunks: Vec<Bytes>, delay: Duration, fail_after: Option<Duration>) -> FaultBody {
        FaultBody { chunks: chunks.into(), delay, fail_after, sleep: None, failing: false }
    }
}

impl http_body::Body for FaultBody {
    type Data = Bytes;
    type Error = InjectedClose;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, InjectedClose>>> {
        let this = &mut *self;
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep = None;
                if this.failing {
                    return Poll::Ready(Some(Err(InjectedClose)));
                }
                if let Some(chunk) = this.chunks.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
            }
            if this.chunks.is_empty() {
                let Some(pause) = this.fail_after.take() else {
                    return Poll::Ready(None);
                };
                this.failing = true;
                this.sleep = Some(Box::pin(tokio::time::sleep(pause)));
                continue;
            }
            if this.delay.is_zero() {
                return Poll::Ready(this.chunks.pop_front().map(|chunk| Ok(Frame::data(chunk))));
            }
            this.sleep = Some(Box::pin(tokio::time::sleep(this.delay)));
        }
    }
}
