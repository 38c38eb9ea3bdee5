//! Timelines (`home`, `public`) and notifications, paged by id with Mastodon's
//! `Link` header.

use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use super::{Authed, Params, Shared, Viewer, link_header, paged, paginate};
use crate::sandbox::entities;
use crate::sandbox::state::Visibility;

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 40;
const NOTIFICATIONS_DEFAULT_LIMIT: usize = 40;
const NOTIFICATIONS_MAX_LIMIT: usize = 80;

pub(crate) async fn home(State(state): State<Shared>, Authed(me): Authed, params: Params) -> Response {
    let limit = params.limit(DEFAULT_LIMIT, MAX_LIMIT);
    let db = state.db();
    let page = paginate(db.home_feed(me), |s| s.id, &params, limit);
    let ids: Vec<u64> = page.iter().map(|s| s.id).collect();
    let items: Vec<Value> = page.into_iter().map(|s| entities::status(&db, &state.info, s, Some(me), false)).collect();
    let link = link_header(&state, "/api/v1/timelines/home", &params, &["limit", "local"], &ids);
    paged(items, link)
}

pub(crate) async fn public(State(state): State<Shared>, Viewer(viewer): Viewer, params: Params) -> Response {
    let limit = params.limit(DEFAULT_LIMIT, MAX_LIMIT);
    let local_only = params.flag("local");
    let remote_only = params.flag("remote");
    let db = state.db();
    let all: Vec<_> = db
        .statuses
        .values()
        .rev()
        .filter(|s| s.visibility == Visibility::Public)
        .filter(|s| {
            let is_local = db.accounts.get(&s.account_id).is_some_and(|a| a.domain.is_none());
            (!local_only || is_local) && (!remote_only || !is_local)
        })
        .collect();
    let page = paginate(all, |s| s.id, &params, limit);
    let ids: Vec<u64> = page.iter().map(|s| s.id).collect();
    let items: Vec<Value> = page.into_iter().map(|s| entities::status(&db, &state.info, s, viewer, false)).collect();
    let link =
        link_header(&state, "/api/v1/timelines/public", &params, &["limit", "local", "only_media", "remote"], &ids);
    paged(items, link)
}

pub(crate) async fn notifications(State(state): State<Shared>, Authed(me): Authed, params: Params) -> Response {
    let limit = params.limit(NOTIFICATIONS_DEFAULT_LIMIT, NOTIFICATIONS_MAX_LIMIT);
    let types = params.all("types");
    let exclude_types = params.all("exclude_types");
    let db = state.db();
    let all: Vec<_> = db
        .notifications
        .values()
        .rev()
        .filter(|n| n.recipient_id == me)
        .filter(|n| types.is_empty() || types.contains(&n.kind.as_str()))
        .filter(|n| !exclude_types.contains(&n.kind.as_str()))
        .collect();
    let page = paginate(all, |n| n.id, &params, limit);
    let rendered: Vec<(u64, Value)> =
        page.into_iter().filter_map(|n| entities::notification(&db, &state.info, n, me).map(|v| (n.id, v))).collect();
    let ids: Vec<u64> = rendered.iter().map(|(id, _)| *id).collect();
    let link = link_header(&state, "/api/v1/notifications", &params, &["limit"], &ids);
    paged(rendered.into_iter().map(|(_, v)| v).collect(), link)
}
