//! What apps fetch when they are opened, besides the timelines: the instance's
//! custom emojis (`/api/v1/custom_emojis`, public), the user's filters
//! (`/api/v2/filters`), lists (`/api/v1/lists`) and read markers
//! (`/api/v1/markers`). The sandbox's accounts have no filters, lists or markers,
//! so those answer as Mastodon does for a fresh account: `[]`, `[]` and `{}`
//! (a marker exists only once a client has saved one).

use axum::extract::State;
use serde_json::json;

use super::{Authed, Json, Shared};

/// `GET /api/v1/custom_emojis`: one emoji, as an instance with custom emojis lists it.
pub(crate) async fn custom_emojis(State(state): State<Shared>) -> Json {
    let url = format!("{}/system/custom_emojis/images/000/000/001/original/fediprobe.png", state.info.base_url);
    Json(json!([{
        "shortcode": "fediprobe",
        "url": url,
        "static_url": url.replace("/original/", "/static/"),
        "visible_in_picker": true,
        "category": null,
    }]))
}

/// `GET /api/v2/filters`: the user's filters (none).
pub(crate) async fn filters(Authed(_): Authed) -> Json {
    Json(json!([]))
}

/// `GET /api/v1/lists`: the user's lists (none).
pub(crate) async fn lists(Authed(_): Authed) -> Json {
    Json(json!([]))
}

/// `GET /api/v1/markers?timeline[]=home&timeline[]=notifications`: the read
/// positions saved (none yet).
pub(crate) async fn markers(Authed(_): Authed) -> Json {
    Json(json!({}))
}
