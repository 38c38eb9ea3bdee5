//! Instance metadata (`/api/v2/instance`, `/api/v1/instance`) and `/health`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::{Json, Shared};
use crate::sandbox::entities;

/// `GET /health`: Mastodon answers a plain `OK`.
pub(crate) async fn health() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK")
}

pub(crate) async fn instance_v2(State(state): State<Shared>) -> Json {
    let db = state.db();
    let mut value = entities::instance_v2(&db, &state.info);
    if let Some(url) = state.streams.advertised_url() {
        value["configuration"]["urls"]["streaming"] = url.into();
    }
    Json(value)
}

pub(crate) async fn instance_v1(State(state): State<Shared>) -> Json {
    let db = state.db();
    let mut value = entities::instance_v1(&db, &state.info);
    if let Some(url) = state.streams.advertised_url() {
        value["urls"]["streaming_api"] = url.into();
    }
    Json(value)
}
