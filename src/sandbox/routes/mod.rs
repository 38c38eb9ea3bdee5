//! The Mastodon REST API of one simulated instance: the axum router, the gate
//! every API request passes (token lookup, rate limits, `X-RateLimit-*` headers),
//! Mastodon's error bodies, query parsing and `Link` paging. Endpoints live in the
//! sibling files, one file per area of the API.

mod accounts;
mod client;
mod discovery;
mod instance;
mod media;
mod search;
mod statuses;
mod timelines;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::Value;

use super::entities::InstanceInfo;
use super::federation::Node;
use super::ratelimit::{Bucket, RateLimiter, Usage};
use super::state::Db;
use super::streaming::{self, Hub};

/// The content type of every JSON answer, as Rails sends it.
pub(crate) const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Everything the handlers of one instance share.
#[derive(Debug)]
pub(crate) struct AppState {
    pub info: InstanceInfo,
    pub db: Mutex<Db>,
    pub limiter: RateLimiter,
    pub streams: Hub,
    pub federation: Node,
}

impl AppState {
    /// Locks the records. Whatever the holder changes is reported when the
    /// guard is dropped (see [`DbGuard`]).
    pub(crate) fn db(&self) -> DbGuard<'_> {
        // Handlers never leave the records half-updated across a panic point that
        // matters to a test double, so a poisoned lock is still usable.
        let db = self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        DbGuard { state: self, db }
    }
}

/// The locked records of an instance. On drop, before the lock is released, it
/// sends what the changes made under it call for (`state::Outgoing`): streaming
/// events, and deliveries to other instances. Because every change goes through
/// this guard, no handler can forget to stream or federate, and an event leaves
/// at the moment of its change, in the order of the changes.
pub(crate) struct DbGuard<'a> {
    state: &'a AppState,
    db: MutexGuard<'a, Db>,
}

impl Deref for DbGuard<'_> {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}

impl DerefMut for DbGuard<'_> {
    fn deref_mut(&mut self) -> &mut Db {
        &mut self.db
    }
}

impl Drop for DbGuard<'_> {
    fn drop(&mut self) {
        if self.db.outbox.is_empty() {
            return;
        }
        let changes = std::mem::take(&mut self.db.outbox);
        for change in &changes {
            self.state.streams.publish(&self.db, &self.state.info, change);
            self.state.federation.federate(&self.db, &self.state.info, change);
        }
    }
}

pub(crate) type Shared = Arc<AppState>;

/// The peer address of the connection, put in the request's extensions by the
/// server so the unauthenticated limit can count per IP.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAddr(pub SocketAddr);

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(instance::health))
        .route("/api/v2/instance", get(instance::instance_v2))
        .route("/api/v1/instance", get(instance::instance_v1))
        .route("/api/v1/accounts/verify_credentials", get(accounts::verify_credentials))
        .route("/api/v1/accounts/lookup", get(accounts::lookup))
        .route("/api/v1/accounts/relationships", get(accounts::relationships))
        .route("/api/v1/accounts/{id}", get(accounts::show))
        .route("/api/v1/accounts/{id}/statuses", get(accounts::statuses))
        .route("/api/v1/accounts/{id}/follow", post(accounts::follow))
        .route("/api/v1/accounts/{id}/unfollow", post(accounts::unfollow))
        .route("/api/v1/statuses", post(statuses::create))
        .route("/api/v1/statuses/{id}", get(statuses::show).delete(statuses::destroy))
        .route("/api/v1/statuses/{id}/favourite", post(statuses::favourite))
        .route("/api/v1/statuses/{id}/unfavourite", post(statuses::unfavourite))
        .route("/api/v1/timelines/home", get(timelines::home))
        .route("/api/v1/timelines/public", get(timelines::public))
        .route("/api/v1/notifications", get(timelines::notifications))
        .route("/api/v2/search", get(search::search))
        .route("/api/v2/media", post(media::upload))
        .route("/api/v1/custom_emojis", get(client::custom_emojis))
        .route("/api/v2/filters", get(client::filters))
        .route("/api/v1/lists", get(client::lists))
        .route("/api/v1/markers", get(client::markers))
        .route("/api/v1/media/{id}", get(media::show).delete(media::destroy))
        .route(streaming::HEALTH_PATH, get(streaming::health))
        .route(streaming::PATH, get(streaming::connect))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        // Outside the gate: Mastodon's rate limits count only `/api/` requests.
        .route("/.well-known/webfinger", get(discovery::webfinger))
        .route("/.well-known/nodeinfo", get(discovery::nodeinfo_index))
        .route("/nodeinfo/2.0", get(discovery::nodeinfo))
        .route("/users/{username}", get(discovery::actor))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// Who is asking: the account of a valid bearer token, if any. Put in the
/// request's extensions by [`gate`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Viewer(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Viewer>().copied().unwrap_or(Viewer(None)))
    }
}

/// The account of a valid bearer token; rejects with Mastodon's 401 otherwise.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Authed(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Viewer::from_request_parts(parts, state).await? {
            Viewer(Some(id)) => Ok(Authed(id)),
            Viewer(None) => Err(ApiError::unauthorized()),
        }
    }
}

/// A per-account limit's state that a handler reports, so the gate can show the
/// most restrictive limit in the headers, as Mastodon's `RateLimitHeaders` does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LimitOverride(pub Usage);

pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Resolves the token, counts the request against the API limits, rejects it
/// with 429 when over, and adds the `X-RateLimit-*` headers to authenticated
/// answers.
async fn gate(State(state): State<Shared>, mut request: Request, next: Next) -> Response {
    // The streaming API is a separate server in Mastodon: Rails' rate limits and
    // their headers do not apply to it.
    let path = request.uri().path();
    if path == "/health" || path == streaming::PATH || path.starts_with(streaming::SUBPATHS) {
        return next.run(request).await;
    }
    let viewer = bearer_token(request.headers()).and_then(|token| {
        let db = state.db();
        db.account_by_token(token).map(|account| account.id)
    });
    let now = Utc::now();
    let bucket = match viewer {
        Some(id) => Bucket::Token(id),
        None => {
            let ip = request.extensions().get::<PeerAddr>().map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |peer| peer.0.ip());
            Bucket::Ip(ip)
        }
    };
    let usage = state.limiter.hit(bucket, now);
    if usage.exceeded {
        return ApiError::too_many_requests(usage).into_response();
    }
    request.extensions_mut().insert(Viewer(viewer));
    let mut response = next.run(request).await;
    if viewer.is_some() {
        let shown = match response.extensions().get::<LimitOverride>() {
            Some(LimitOverride(own)) if own.remaining < usage.remaining => *own,
            _ => usage,
        };
        if !response.headers().contains_key("x-ratelimit-remaining") {
            set_rate_limit_headers(response.headers_mut(), &shown);
        }
    }
    response
}

fn set_rate_limit_headers(headers: &mut HeaderMap, usage: &Usage) {
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("x-ratelimit-limit", usage.limit.to_string());
    set("x-ratelimit-remaining", usage.remaining.to_string());
    set("x-ratelimit-reset", usage.reset_header());
}

/// An error answer with Mastodon's body, `{"error":"..."}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    rate_limit: Option<Usage>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), rate_limit: None }
    }

    pub(crate) fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "The access token is invalid")
    }

    pub(crate) fn unauthorized_with(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub(crate) fn forbidden() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "This action is not allowed")
    }

    pub(crate) fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Record not found")
    }

    pub(crate) fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub(crate) fn too_many_requests(usage: Usage) -> ApiError {
        ApiError { status: StatusCode::TOO_MANY_REQUESTS, message: "Too many requests".into(), rate_limit: Some(usage) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(usage) = self.rate_limit {
            let headers = response.headers_mut();
            set_rate_limit_headers(headers, &Usage { remaining: 0, ..usage });
            if let Ok(value) = HeaderValue::from_str(&usage.retry_after_secs(Utc::now()).to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// A JSON answer with Rails' content type.
pub(crate) struct Json(pub Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE))], self.0.to_string()).into_response()
    }
}

/// The query string as key/value pairs, keeping repeated keys (`id[]=1&id[]=2`),
/// which serde-based extractors cannot.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        Ok(Params(form_urlencoded::parse(query.as_bytes()).into_owned().collect()))
    }
}

impl Params {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// Every value of `key` or `key[]`.
    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        let array_key = format!("{key}[]");
        self.0.iter().filter(|(k, _)| k == key || *k == array_key).map(|(_, v)| v.as_str()).collect()
    }

    /// Rails' boolean casting: anything but false-ish values is true.
    pub(crate) fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(is_truthy)
    }

    pub(crate) fn id(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.parse().ok())
    }

    /// `limit`, with Mastodon's default and maximum.
    pub(crate) fn limit(&self, default: usize, max: usize) -> usize {
        self.get("limit").and_then(|v| v.parse::<usize>().ok()).map_or(default, |l| l.clamp(1, max))
    }
}

pub(crate) fn is_truthy(value: &str) -> bool {
    !matches!(value, "0" | "f" | "F" | "false" | "FALSE" | "off" | "OFF" | "")
}

/// Selects one page of `items` (sorted newest first) by `max_id`, `since_id`
/// and `min_id`, as Mastodon's `paginate_by_id`: with `min_id`, the page is the
/// `limit` items just above it; otherwise the newest `limit` items below `max_id`.
pub(crate) fn paginate<T>(items: Vec<T>, id: impl Fn(&T) -> u64, params: &Params, limit: usize) -> Vec<T> {
    let max_id = params.id("max_id");
    let since_id = params.id("since_id");
    let min_id = params.id("min_id");
    let mut selected: Vec<T> = items
        .into_iter()
        .filter(|item| max_id.is_none_or(|max| id(item) < max))
        .filter(|item| since_id.is_none_or(|since| id(item) > since))
        .filter(|item| min_id.is_none_or(|min| id(item) > min))
        .collect();
    if min_id.is_some() {
        let skip = selected.len().saturating_sub(limit);
        selected.drain(..skip);
    } else {
        selected.truncate(limit);
    }
    selected
}

/// Mastodon's `Link` header: `<URL?max_id=LAST>; rel="next", <URL?min_id=FIRST>;
/// rel="prev"`, keeping the request's `keep` parameters, keys sorted as Rails'
/// `to_query` does. `None` for an empty page (Mastodon sends no header then).
pub(crate) fn link_header(
    state: &AppState,
    path: &str,
    params: &Params,
    keep: &[&str],
    ids: &[u64],
) -> Option<HeaderValue> {
    let (first, last) = (ids.first()?, ids.last()?);
    let url = |extra_key: &str, extra_value: u64| {
        let mut pairs: Vec<(String, String)> =
            keep.iter().filter_map(|key| params.get(key).map(|v| ((*key).to_owned(), v.to_owned()))).collect();
        pairs.push((extra_key.to_owned(), extra_value.to_string()));
        pairs.sort();
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        format!("{}{}?{}", state.info.base_url, path, query)
    };
    let value = format!("<{}>; rel=\"next\", <{}>; rel=\"prev\"", url("max_id", *last), url("min_id", *first));
    HeaderValue::from_str(&value).ok()
}

/// A JSON array answer with its `Link` header when the page is not empty.
pub(crate) fn paged(items: Vec<Value>, link: Option<HeaderValue>) -> Response {
    let mut response = Json(Value::Array(items)).into_response();
    if let Some(link) = link {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

/// Parses a path id; ids that are not numbers cannot exist, so they are 404s.
pub(crate) fn parse_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}
