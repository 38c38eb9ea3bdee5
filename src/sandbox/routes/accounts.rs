//! Accounts: `verify_credentials`, show, `lookup`, `relationships`, `follow`,
//! `unfollow`. Follows between local accounts take effect at once (no locked
//! accounts, no follow requests), and notify the followed account.

use axum::extract::{Path, State};
use chrono::Utc;
use serde_json::Value;

use super::{ApiError, Authed, Json, Params, Shared, Viewer, parse_id};
use crate::sandbox::entities;
use crate::sandbox::state::NotificationKind;

pub(crate) async fn verify_credentials(State(state): State<Shared>, Authed(me): Authed) -> Result<Json, ApiError> {
    let db = state.db();
    let account = db.accounts.get(&me).ok_or_else(ApiError::unauthorized)?;
    Ok(Json(entities::credential_account(&db, &state.info, account)))
}

pub(crate) async fn show(
    State(state): State<Shared>,
    Viewer(_): Viewer,
    Path(id): Path<String>,
) -> Result<Json, ApiError> {
    let id = parse_id(&id)?;
    let db = state.db();
    let account = db.accounts.get(&id).ok_or_else(ApiError::not_found)?;
    Ok(Json(entities::account(&db, &state.info, account)))
}

pub(crate) async fn lookup(State(state): State<Shared>, params: Params) -> Result<Json, ApiError> {
    let acct = params.get("acct").ok_or_else(ApiError::not_found)?;
    let db = state.db();
    let account = db.account_by_acct(acct, &state.info.domain).ok_or_else(ApiError::not_found)?;
    Ok(Json(entities::account(&db, &state.info, account)))
}

pub(crate) async fn relationships(State(state): State<Shared>, Authed(me): Authed, params: Params) -> Json {
    let db = state.db();
    // Unknown ids are skipped, as Mastodon does.
    let items: Vec<Value> = params
        .all("id")
        .into_iter()
        .filter_map(|raw| raw.parse::<u64>().ok())
        .filter(|id| db.accounts.contains_key(id))
        .map(|id| entities::relationship(&db, me, id))
        .collect();
    Json(Value::Array(items))
}

pub(crate) async fn follow(
    State(state): State<Shared>,
    Authed(me): Authed,
    Path(id): Path<String>,
) -> Result<Json, ApiError> {
    let id = parse_id(&id)?;
    let mut db = state.db();
    if !db.accounts.contains_key(&id) {
        return Err(ApiError::not_found());
    }
    if id == me {
        return Err(ApiError::forbidden());
    }
    if db.follows.insert((me, id)) {
        db.notify(id, NotificationKind::Follow, me, None, Utc::now());
    }
    Ok(Json(entities::relationship(&db, me, id)))
}

pub(crate) async fn unfollow(
    State(state): State<Shared>,
    Authed(me): Authed,
    Path(id): Path<String>,
) -> Result<Json, ApiError> {
    let id = parse_id(&id)?;
    let mut db = state.db();
    if !db.accounts.contains_key(&id) {
        return Err(ApiError::not_found());
    }
    db.follows.remove(&(me, id));
    Ok(Json(entities::relationship(&db, me, id)))
}
