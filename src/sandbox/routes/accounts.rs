//! Accounts: `verify_credentials`, show, an account's statuses, `lookup`,
//! `relationships`, `follow`, `unfollow`. Follows take effect at once (no locked accounts, no follow
//! requests), and notify the followed account; a follow of a remote account is
//! also recorded on its home instance, which then delivers to this one.

use axum::extract::{Path, State};
use chrono::Utc;
use serde_json::Value;

use axum::response::Response;

use super::{ApiError, Authed, Json, Params, Shared, Viewer, link_header, paged, paginate, parse_id};
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

/// An account's statuses, newest first, as the viewer may see them, paged by id
/// with Mastodon's `Link` header: `limit` (default 20, at most 40), `max_id`,
/// `since_id`, `min_id`, `exclude_replies`, `only_media` (the sandbox has no
/// media: always empty), `pinned` (none are: always empty), `tagged`.
/// `exclude_reblogs` is accepted; the sandbox has no reblogs.
pub(crate) async fn statuses(
    State(state): State<Shared>,
    Viewer(viewer): Viewer,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let limit = params.limit(20, 40);
    let db = state.db();
    if !db.accounts.contains_key(&id) {
        return Err(ApiError::not_found());
    }
    let exclude_replies = params.flag("exclude_replies");
    let nothing = params.flag("only_media") || params.flag("pinned");
    let tagged = params.get("tagged").map(|t| t.trim_start_matches('#').to_lowercase());
    let all: Vec<_> = db
        .statuses
        .values()
        .rev()
        .filter(|s| s.account_id == id && !nothing)
        .filter(|s| db.can_see(viewer, s))
        .filter(|s| !exclude_replies || s.in_reply_to_id.is_none())
        .filter(|s| tagged.as_ref().is_none_or(|t| s.tags.iter().any(|tag| tag.to_lowercase() == *t)))
        .collect();
    let page = paginate(all, |s| s.id, &params, limit);
    let ids: Vec<u64> = page.iter().map(|s| s.id).collect();
    let items = page.into_iter().map(|s| entities::status(&db, &state.info, s, viewer, false)).collect();
    let keep = ["exclude_reblogs", "exclude_replies", "limit", "only_media", "pinned", "tagged"];
    let link = link_header(&state, &format!("/api/v1/accounts/{id}/statuses"), &params, &keep, &ids);
    Ok(paged(items, link))
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
