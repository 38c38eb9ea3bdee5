//! Media uploads (`POST /api/v2/media`, multipart), their processing
//! (`GET /api/v1/media/:id`) and deleting an unattached upload
//! (`DELETE /api/v1/media/:id`, Mastodon 4.4).
//!
//! As Mastodon's `Api::V2::MediaController`: the upload answers 200 with the
//! `url` when processing is done at once (images), 202 with `url: null` when it
//! goes on in the background (video, audio; here: whenever the instance's
//! `media_processing` is above zero); until it ends, `GET /api/v1/media/:id`
//! answers 206 with the same entity, then 200. Every upload request counts
//! against the per-account media limit (30 per 30 minutes), found valid or not.
//! Only images are accepted: the file's own first bytes must say PNG, JPEG, GIF
//! or WebP, as Paperclip identifies files by content, not by name.

use std::time::Instant;

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

use super::{ApiError, Authed, Json, Shared, parse_id};
use crate::sandbox::ratelimit::Bucket;
use crate::sandbox::state::Media;

/// Mastodon's limit on a media description.
const MAX_DESCRIPTION_CHARS: usize = 1500;

/// The media entity; `url` and `preview_url` stay null until processing ends.
fn entity(state: &Shared, media: &Media) -> Value {
    let ready = Instant::now() >= media.ready_at;
    let file =
        |style: &str| format!("{}/system/media_attachments/files/{}/{style}/upload.png", state.info.base_url, media.id);
    let meta = media.dimensions.map(|(width, height)| {
        let details = json!({
            "width": width,
            "height": height,
            "size": format!("{width}x{height}"),
            "aspect": f64::from(width) / f64::from(height.max(1)),
        });
        json!({ "original": details, "small": details })
    });
    json!({
        "id": media.id.to_string(),
        "type": "image",
        "url": ready.then(|| file("original")),
        "preview_url": ready.then(|| file("small")),
        "remote_url": null,
        "preview_remote_url": null,
        "text_url": null,
        "meta": meta,
        "description": media.description,
        "blurhash": ready.then_some("LEHV6nWB2yk8pyo0adR*.7kCMdnj"),
    })
}

/// Width and height from an image's header, for the formats whose header is simple.
fn image_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() >= 24 {
        let width = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
        let height = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
        return Some((width, height));
    }
    if bytes.starts_with(b"GIF8") && bytes.len() >= 10 {
        return Some((
            u32::from(u16::from_le_bytes([bytes[6], bytes[7]])),
            u32::from(u16::from_le_bytes([bytes[8], bytes[9]])),
        ));
    }
    None
}

fn is_image(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
        || bytes.starts_with(&[0xff, 0xd8, 0xff])
        || bytes.starts_with(b"GIF8")
        || (bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP")
}

/// `POST /api/v2/media`: `file` (required) and `description`.
pub(crate) async fn upload(
    State(state): State<Shared>,
    Authed(me): Authed,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    let usage = state.limiter.hit(Bucket::Media(me), Utc::now());
    if usage.exceeded {
        return Err(ApiError::too_many_requests(usage));
    }
    let (mut file, mut description) = (None, None);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("Invalid multipart body: {e}"))),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("Invalid multipart body: {e}")))?;
        match name.as_str() {
            "file" => file = Some(bytes),
            "description" => description = Some(String::from_utf8_lossy(&bytes).into_owned()),
            _ => {}
        }
    }
    let Some(file) = file.filter(|f| !f.is_empty()) else {
        return Err(ApiError::unprocessable("Validation failed: File can't be blank"));
    };
    if !is_image(&file) {
        return Err(ApiError::unprocessable("File type of uploaded media could not be verified"));
    }
    if description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
        return Err(ApiError::unprocessable("Validation failed: Description is too long (maximum is 1500 characters)"));
    }
    let mut db = state.db();
    let id = db.ids.next_at(Utc::now());
    let media = Media {
        id,
        account_id: me,
        description: description.filter(|d| !d.is_empty()),
        dimensions: image_dimensions(&file),
        ready_at: Instant::now() + state.info.media_processing,
    };
    let status = if state.info.media_processing.is_zero() { StatusCode::OK } else { StatusCode::ACCEPTED };
    let body = entity(&state, &media);
    db.media.insert(id, media);
    Ok((status, Json(body)).into_response())
}

/// `GET /api/v1/media/:id`: the caller's own unattached upload; 206 while processing.
pub(crate) async fn show(
    State(state): State<Shared>,
    Authed(me): Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let db = state.db();
    let media = db.media.get(&id).filter(|m| m.account_id == me).ok_or_else(ApiError::not_found)?;
    let status = if Instant::now() >= media.ready_at { StatusCode::OK } else { StatusCode::PARTIAL_CONTENT };
    Ok((status, Json(entity(&state, media))).into_response())
}

/// `DELETE /api/v1/media/:id`: removes the caller's own unattached upload; `{}`.
pub(crate) async fn destroy(
    State(state): State<Shared>,
    Authed(me): Authed,
    Path(id): Path<String>,
) -> Result<Json, ApiError> {
    let id = parse_id(&id)?;
    let mut db = state.db();
    if db.media.get(&id).is_none_or(|m| m.account_id != me) {
        return Err(ApiError::not_found());
    }
    db.media.remove(&id);
    Ok(Json(json!({})))
}
