//! Accounts: `verify_credentials`, show, `lookup`, `relationships`, `follow`,
//! `unfollow`. Follows take effect at once (no locked accounts, no follow
//! requests), and notify the followed account; a follow of a remote account is
//! also recorded on its home instance, which then delivers to this one.

use axum::extract::{Path, State};
use chrono::Utc;
use serde_json::Value;

use super::{ApiError, Authed, Json, Params, Shared, Viewer, parse_id};
use crate::sandbox::state::NotificationKind;
use crate::sandbox::{entities, federation};

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

/// Finds an account by `acct`. Mastodon only finds remote accounts it already
/// knows here; the sandbox also resolves the accounts of its other instances,
/// so `user@domain` works before anyone here has seen that account.
pub(crate) async fn lookup(State(state): State<Shared>, params: Params) -> Result<Json, ApiError> {
    let acct = params.get("acct").ok_or_else(ApiError::not_found)?;
    let id = match acct.trim_start_matches('@').split_once('@') {
        Some((username, domain)) => federation::resolve(&state, username, domain),
        None => state.db().account_by_acct(acct, &state.info.domain).map(|a| a.id),
    };
    let db = state.db();
    let account = id.and_then(|id| db.accounts.get(&id)).ok_or_else(ApiError::not_found)?;
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
    let remote = {
        let mut db = state.db();
        let remote = db.accounts.get(&id).ok_or_else(ApiError::not_found)?.domain.is_some();
        if id == me {
            return Err(ApiError::forbidden());
        }
        if db.follows.insert((me, id)) {
            db.notify(id, NotificationKind::Follow, me, None, Utc::now());
        }
        remote
    };
    // Told after this instance's lock is released: never two instances' locks.
    if remote {
        federation::tell_home_instance(&state, me, id, true, true);
    }
    let db = state.db();
    Ok(Json(entities::relationship(&db, me, id)))
}

pub(crate) async fn unfollow(
    State(state): State<Shared>,
    Authed(me): Authed,
    Path(id): Path<String>,
) -> Result<Json, ApiError> {
    let id = parse_id(&id)?;
    let remote = {
        let mut db = state.db();
        let remote = db.accounts.get(&id).ok_or_else(ApiError::not_found)?.domain.is_some();
        db.follows.remove(&(me, id));
        remote
    };
    if remote {
        federation::tell_home_instance(&state, me, id, false, false);
    }
    let db = state.db();
    Ok(Json(entities::relationship(&db, me, id)))
}
