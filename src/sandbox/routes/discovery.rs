//! What other servers ask before they federate with an instance: WebFinger
//! (`/.well-known/webfinger`), NodeInfo (`/.well-known/nodeinfo` and the 2.0
//! document) and an account's ActivityPub actor (`/users/:username` asked for
//! `application/activity+json`).
//!
//! As Mastodon: these are not under `/api/`, so Rails' API rate limits do not
//! count them (the router serves them outside the gate); WebFinger answers 400
//! without a `resource` and 404 for an account or domain it does not have, with
//! an empty body; an instance in secure mode (`AUTHORIZED_FETCH`) answers an
//! unsigned actor fetch with 401 and `{"error":"Request not signed"}`. The
//! vendored OpenAPI document describes none of these paths, so their shapes
//! follow RFC 7033 (JRD), the NodeInfo 2.0 schema and Mastodon's serializers
//! (`WebfingerSerializer`, `NodeInfo::Serializer`, `ActivityPub::ActorSerializer`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, Params, Shared};
use crate::sandbox::entities::MASTODON_VERSION;

/// The JRD content type Mastodon gives WebFinger answers.
pub(crate) const JRD_CONTENT_TYPE: &str = "application/jrd+json; charset=utf-8";
/// The content type of an ActivityPub document.
pub(crate) const ACTIVITY_JSON: &str = "application/activity+json; charset=utf-8";
/// NodeInfo's 2.0 schema, the `rel` of its link and the profile of its document.
pub(crate) const NODEINFO_2_0: &str = "http://nodeinfo.diaspora.software/ns/schema/2.0";

/// Mastodon caches these answers publicly for three days (3 minutes for errors).
const CACHE_LONG: &str = "max-age=259200, public";
const CACHE_SHORT: &str = "max-age=180, public";

fn with_type(content_type: &'static str, cache: &'static str, body: Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body.to_string(),
    )
        .into_response()
}

fn empty(status: StatusCode) -> Response {
    (status, [(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_SHORT))]).into_response()
}

/// `GET /.well-known/webfinger?resource=acct:USER@DOMAIN` (or the actor's URL).
pub(crate) async fn webfinger(State(state): State<Shared>, params: Params) -> Response {
    let Some(resource) = params.get("resource") else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let username = if let Some(acct) = resource.strip_prefix("acct:") {
        match acct.trim_start_matches('@').rsplit_once('@') {
            Some((user, domain)) if domain.eq_ignore_ascii_case(&state.info.domain) => user.to_owned(),
            Some(_) => return empty(StatusCode::NOT_FOUND),
            None => acct.to_owned(),
        }
    } else if let Some(user) = resource.strip_prefix(&format!("{}/users/", state.info.base_url)) {
        user.to_owned()
    } else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let db = state.db();
    let Some(account) = db.local_account(&username) else {
        return empty(StatusCode::NOT_FOUND);
    };
    let body = json!({
        "subject": format!("acct:{}@{}", account.username, state.info.domain),
        "aliases": [account.url, account.uri],
        "links": [
            { "rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": account.url },
            { "rel": "self", "type": "application/activity+json", "href": account.uri },
            {
                "rel": "http://ostatus.org/schema/1.0/subscribe",
                "template": format!("{}/authorize_interaction?uri={{uri}}", state.info.base_url),
            },
        ],
    });
    with_type(JRD_CONTENT_TYPE, CACHE_LONG, body)
}

/// `GET /.well-known/nodeinfo`: where the NodeInfo document is (Mastodon offers 2.0).
pub(crate) async fn nodeinfo_index(State(state): State<Shared>) -> Response {
    let body = json!({ "links": [{ "rel": NODEINFO_2_0, "href": format!("{}/nodeinfo/2.0", state.info.base_url) }] });
    with_type(super::JSON_CONTENT_TYPE, CACHE_LONG, body)
}

/// `GET /nodeinfo/2.0`: the server's software, protocols and usage.
pub(crate) async fn nodeinfo(State(state): State<Shared>) -> Response {
    let db = state.db();
    let users = db.accounts.values().filter(|a| a.domain.is_none()).count();
    let local_posts =
        db.statuses.values().filter(|s| db.accounts.get(&s.account_id).is_some_and(|a| a.domain.is_none())).count();
    let body = json!({
        "version": "2.0",
        "software": { "name": "mastodon", "version": MASTODON_VERSION },
        "protocols": ["activitypub"],
        "services": { "outbound": [], "inbound": [] },
        "usage": {
            "users": { "total": users, "activeMonth": users, "activeHalfyear": users },
            "localPosts": local_posts,
        },
        "openRegistrations": false,
        "metadata": {
            "nodeName": format!("Sandbox {}", state.info.name),
            "nodeDescription": format!("A simulated Mastodon instance ({}) run by fediprobe's sandbox.", state.info.name),
        },
    });
    with_type("application/json; profile=\"http://nodeinfo.diaspora.software/ns/schema/2.0#\"", CACHE_SHORT, body)
}

/// Whether the request asks for ActivityPub JSON rather than the profile page.
fn wants_activity_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/activity+json") || v.contains("application/ld+json"))
}

/// `GET /users/:username`: the actor document for ActivityPub clients, the
/// profile page (HTML) for everyone else. In secure mode an unsigned fetch gets 401.
pub(crate) async fn actor(State(state): State<Shared>, Path(username): Path<String>, headers: HeaderMap) -> Response {
    let db = state.db();
    let Some(account) = db.local_account(&username) else {
        return ApiError::not_found().into_response();
    };
    if !wants_activity_json(&headers) {
        let page =
            format!("<!DOCTYPE html><html><body><h1>{}</h1></body></html>", crate::html::escape(&account.display_name));
        return ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::VARY, "Accept")], page).into_response();
    }
    if state.info.authorized_fetch && !headers.contains_key("signature") {
        return ApiError::unauthorized_with("Request not signed").into_response();
    }
    let uri = &account.uri;
    let body = json!({
        "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
        "id": uri,
        "type": if account.bot { "Service" } else { "Person" },
        "following": format!("{uri}/following"),
        "followers": format!("{uri}/followers"),
        "inbox": format!("{uri}/inbox"),
        "outbox": format!("{uri}/outbox"),
        "preferredUsername": account.username,
        "name": account.display_name,
        "summary": account.note,
        "url": account.url,
        "manuallyApprovesFollowers": false,
        "discoverable": true,
        // The sandbox signs no deliveries, so its key is empty; the shape is Mastodon's.
        "publicKey": { "id": format!("{uri}#main-key"), "owner": uri, "publicKeyPem": "" },
        "endpoints": { "sharedInbox": format!("{}/inbox", state.info.base_url) },
    });
    let mut response = with_type(ACTIVITY_JSON, CACHE_SHORT, body);
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}
