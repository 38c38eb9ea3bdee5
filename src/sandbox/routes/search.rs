//! `GET /api/v2/search`: accounts by username or display name (and by exact
//! `user@domain`, resolved on the other instances with `resolve=true`),
//! statuses by text (only those the viewer may see; needs a token; once the
//! instance's `search_index_delay` has passed, as Elasticsearch's indexing job
//! takes its time), hashtags used in statuses.

use axum::extract::State;
use chrono::Utc;
use serde_json::{Value, json};

use super::{ApiError, Json, Params, Shared, Viewer};
use crate::sandbox::{entities, federation};

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 40;

pub(crate) async fn search(
    State(state): State<Shared>,
    Viewer(viewer): Viewer,
    params: Params,
) -> Result<Json, ApiError> {
    if viewer.is_none() && params.flag("resolve") {
        return Err(ApiError::unauthorized_with(
            "Search queries that resolve remote resources are not supported without authentication",
        ));
    }
    let query = params.get("q").unwrap_or("").trim().to_lowercase();
    let kind = params.get("type");
    let wants = |k: &str| kind.is_none_or(|t| t == k);
    let limit = params.limit(DEFAULT_LIMIT, MAX_LIMIT);
    // `user@domain` names one account; with `resolve`, one of another instance
    // is looked up there (Mastodon uses WebFinger) and recorded here.
    let exact = match query.trim_start_matches('@').split_once('@') {
        Some((username, domain)) if wants("accounts") && params.flag("resolve") => {
            federation::resolve(&state, username, domain)
        }
        Some(_) => state.db().account_by_acct(&query, &state.info.domain).map(|a| a.id),
        None => None,
    };
    let db = state.db();
    let info = &state.info;

    let mut accounts = Vec::new();
    let mut statuses = Vec::new();
    let mut hashtags = Vec::new();
    if query.is_empty() {
        return Ok(Json(json!({ "accounts": [], "statuses": [], "hashtags": [] })));
    }
    if wants("accounts") {
        let needle = query.trim_start_matches('@');
        let exact_match = exact.and_then(|id| db.accounts.get(&id));
        let others = db.accounts.values().filter(|a| {
            Some(a.id) != exact
                && (a.acct().to_lowercase().starts_with(needle)
                    || a.username.to_lowercase().contains(needle)
                    || a.display_name.to_lowercase().contains(needle))
        });
        accounts = exact_match
            .into_iter()
            .chain(others)
            .take(limit)
            .map(|a| entities::account(&db, info, a))
            .collect::<Vec<Value>>();
    }
    // Mastodon only searches statuses for a signed-in user.
    if wants("statuses") && viewer.is_some() {
        // A status is found only once the search index has it.
        let indexed_before = chrono::TimeDelta::from_std(info.search_index_delay)
            .ok()
            .and_then(|delay| Utc::now().checked_sub_signed(delay))
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        statuses = db
            .statuses
            .values()
            .rev()
            .filter(|s| s.created_at <= indexed_before)
            .filter(|s| db.can_see(viewer, s) && s.text.to_lowercase().contains(&query))
            .take(limit)
            .map(|s| entities::status(&db, info, s, viewer, false))
            .collect();
    }
    if wants("hashtags") {
        let needle = query.trim_start_matches('#');
        let mut names: Vec<&String> =
            db.statuses.values().flat_map(|s| s.tags.iter()).filter(|t| t.starts_with(needle)).collect();
        names.sort();
        names.dedup();
        let now = Utc::now();
        hashtags =
            names.into_iter().take(limit).map(|name| entities::tag(&db, info, name, tag_id(name), now)).collect();
    }
    Ok(Json(json!({ "accounts": accounts, "statuses": statuses, "hashtags": hashtags })))
}

/// A stable id for a hashtag (the sandbox keeps no tag table).
fn tag_id(name: &str) -> u64 {
    name.bytes().fold(1_469_598_103_934_665_603_u64, |hash, b| (hash ^ u64::from(b)).wrapping_mul(1_099_511_628_211))
        >> 12
}
