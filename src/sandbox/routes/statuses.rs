//! Statuses: post (form or JSON body, `Idempotency-Key`, per-account limit),
//! show (visibility rules), delete (author only, per-account limit, answers with
//! the source `text`), favourite and unfavourite. Posts and deletes stream and
//! federate through the records' guard (`DbGuard`), not here.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::Value;

use super::{ApiError, Authed, Json, LimitOverride, Shared, Viewer, is_truthy, parse_id};
use crate::sandbox::entities::{self, MAX_CHARACTERS};
use crate::sandbox::ratelimit::Bucket;
use crate::sandbox::state::{NotificationKind, Status, Visibility, extract_hashtags, extract_mentions, render_content};

/// The parameters of a post, from a form or a JSON body.
struct PostParams(HashMap<String, Value>);

impl PostParams {
    fn parse(headers: &HeaderMap, body: &[u8]) -> Result<PostParams, ApiError> {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if content_type.starts_with("application/json") {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => Ok(PostParams(map.into_iter().collect())),
                Ok(_) | Err(_) => {
                    Err(ApiError::new(StatusCode::BAD_REQUEST, "Error occurred while parsing request parameters"))
                }
            }
        } else {
            let map = form_urlencoded::parse(body).into_owned().map(|(k, v)| (k, Value::String(v))).collect();
            Ok(PostParams(map))
        }
    }

    fn string(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn flag(&self, key: &str) -> bool {
        match self.0.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => is_truthy(s),
            Some(Value::Number(n)) => n.as_i64() != Some(0),
            _ => false,
        }
    }
}

fn with_limit(json: Json, limit: Option<LimitOverride>) -> Response {
    let mut response = json.into_response();
    if let Some(limit) = limit {
        response.extensions_mut().insert(limit);
    }
    response
}

pub(crate) async fn create(
    State(state): State<Shared>,
    Authed(me): Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = PostParams::parse(&headers, &body)?;
    let idempotency_key =
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()).map(str::to_owned);
    let now = Utc::now();
    let mut db = state.db();

    if let Some(key) = &idempotency_key {
        db.expire_idempotency_keys(Instant::now());
        if let Some((id, _)) = db.idempotency.get(&(me, key.clone()))
            && let Some(existing) = db.statuses.get(id)
        {
            return Ok(Json(entities::status(&db, &state.info, existing, Some(me), false)).into_response());
        }
    }
    if let Some(usage) = state.limiter.would_exceed(&Bucket::Statuses(me), now) {
        return Err(ApiError::too_many_requests(usage));
    }

    let text = params.string("status").unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ApiError::unprocessable("Validation failed: Text can't be blank"));
    }
    if text.chars().count() > MAX_CHARACTERS {
        return Err(ApiError::unprocessable(format!(
            "Validation failed: Text character limit of {MAX_CHARACTERS} exceeded"
        )));
    }
    let visibility = match params.string("visibility") {
        None => Visibility::Public,
        Some(v) if v.is_empty() => Visibility::Public,
        Some(v) => {
            Visibility::parse(&v).ok_or_else(|| ApiError::unprocessable(format!("'{v}' is not a valid visibility")))?
        }
    };
    let (in_reply_to_id, in_reply_to_account_id) = match params.string("in_reply_to_id") {
        None => (None, None),
        Some(raw) if raw.is_empty() => (None, None),
        Some(raw) => {
            let parent = raw
                .parse::<u64>()
                .ok()
                .and_then(|id| db.statuses.get(&id))
                .filter(|parent| db.can_see(Some(me), parent))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        "The post you are trying to reply to does not appear to exist.",
                    )
                })?;
            (Some(parent.id), Some(parent.account_id))
        }
    };
    let mentions: Vec<u64> = extract_mentions(&text)
        .iter()
        .filter_map(|acct| db.account_by_acct(acct, &state.info.domain).map(|a| a.id))
        .collect();
    let author = db.accounts.get(&me).ok_or_else(ApiError::unauthorized)?;
    let author_uri = author.uri.clone();
    let author_url = author.url.clone();

    let id = db.ids.next_at(now);
    let status = Status {
        id,
        account_id: me,
        content: render_content(&text),
        tags: extract_hashtags(&text),
        text,
        visibility,
        spoiler_text: params.string("spoiler_text").unwrap_or_default(),
        sensitive: params.flag("sensitive"),
        language: params.string("language").filter(|l| !l.is_empty()),
        in_reply_to_id,
        in_reply_to_account_id,
        created_at: now,
        uri: format!("{author_uri}/statuses/{id}"),
        url: format!("{author_url}/{id}"),
        mentions: mentions.clone(),
    };
    db.insert_status(status);
    for mentioned in mentions {
        db.notify(mentioned, NotificationKind::Mention, me, Some(id), now);
    }
    if let Some(key) = idempotency_key {
        db.idempotency.insert((me, key), (id, Instant::now()));
    }
    let usage = state.limiter.hit(Bucket::Statuses(me), now);
    tracing::debug!(instance = %state.info.name, status_id = id, "sandbox status posted");
    let status = db.statuses.get(&id).ok_or_else(ApiError::not_found)?;
    let json = Json(entities::status(&db, &state.info, status, Some(me), false));
    Ok(with_limit(json, Some(LimitOverride(usage))))
}

pub(crate) async fn show(
    State(state): State<Shared>,
    Viewer(viewer): Viewer,
    Path(id): Path<String>,
) -> Result<Json, ApiError> {
    let id = parse_id(&id)?;
    let db = state.db();
    let status = db.statuses.get(&id).filter(|s| db.can_see(viewer, s)).ok_or_else(ApiError::not_found)?;
    Ok(Json(entities::status(&db, &state.info, status, viewer, false)))
}

pub(crate) async fn destroy(
    State(state): State<Shared>,
    Authed(me): Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // Mastodon's rack-attack throttle counts every delete request, found or not.
    let usage = state.limiter.hit(Bucket::Deletes(me), Utc::now());
    if usage.exceeded {
        return Err(ApiError::too_many_requests(usage));
    }
    let id = parse_id(&id)?;
    let mut db = state.db();
    let status = db.statuses.get(&id).filter(|s| s.account_id == me).ok_or_else(ApiError::not_found)?;
    let json = entities::status(&db, &state.info, status, Some(me), true);
    db.remove_status(id);
    Ok(Json(json).into_response())
}

pub(crate) async fn favourite(
    State(state): State<Shared>,
    Authed(me): Authed,
    Path(id): Path<String>,
) -> Result<Json, ApiError> {
    let id = parse_id(&id)?;
    let mut db = state.db();
    let author = db
        .statuses
        .get(&id)
        .filter(|s| db.can_see(Some(me), s))
        .map(|s| s.account_id)
        .ok_or_else(ApiError::not_found)?;
    if db.favourites.insert((me, id)) {
        db.notify(author, NotificationKind::Favourite, me, Some(id), Utc::now());
    }
    let status = db.statuses.get(&id).ok_or_else(ApiError::not_found)?;
    Ok(Json(entities::status(&db, &state.info, status, Some(me), false)))
}

pub(crate) async fn unfavourite(
    State(state): State<Shared>,
    Authed(me): Authed,
    Path(id): Path<String>,
) -> Result<Json, ApiError> {
    let id = parse_id(&id)?;
    let mut db = state.db();
    if !db.statuses.get(&id).is_some_and(|s| db.can_see(Some(me), s)) {
        return Err(ApiError::not_found());
    }
    db.favourites.remove(&(me, id));
    let status = db.statuses.get(&id).ok_or_else(ApiError::not_found)?;
    Ok(Json(entities::status(&db, &state.info, status, Some(me), false)))
}
