//! Mastodon's JSON entities (Account, CredentialAccount, Relationship, Status,
//! Notification, Tag, Instance), rendered from the records in `state.rs` with the
//! same fields, field order and formats as Mastodon 4.x's serializers.
//!
//! URLs always point at the instance's real loopback base URL, so a client can
//! follow them; `domain` and `acct` use the instance's `NAME.sandbox.test` name.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::state::{Account, Db, Notification, Status};

/// Mastodon version the sandbox claims to be.
pub(crate) const MASTODON_VERSION: &str = "4.3.0";
/// Maximum status length, as `configuration.statuses.max_characters`.
pub(crate) const MAX_CHARACTERS: usize = 500;

/// The identity of one instance, as entities need it.
#[derive(Clone, Debug)]
pub(crate) struct InstanceInfo {
    pub name: String,
    /// The accounts' domain (in `acct`s): `host`, or a split domain's account domain.
    pub domain: String,
    /// `NAME.sandbox.test`: the host that serves the API.
    pub host: String,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// Secure mode (Mastodon's `AUTHORIZED_FETCH`): unsigned actor fetches get 401.
    pub authorized_fetch: bool,
    /// How long uploaded media take to process (zero: at once, as images).
    pub media_processing: std::time::Duration,
    /// How long a new status takes to become findable by full-text search.
    pub search_index_delay: std::time::Duration,
}

/// Timestamps as Mastodon writes them: ISO-8601, milliseconds, `Z`.
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub(crate) fn account(db: &Db, info: &InstanceInfo, account: &Account) -> Value {
    // Mastodon rounds `created_at` down to midnight UTC to avoid leaking when
    // exactly an account was created.
    let created_day = account.created_at.date_naive();
    let created_at = created_day.and_hms_opt(0, 0, 0).map(|midnight| midnight.and_utc()).unwrap_or(account.created_at);
    let avatar = format!("{}/avatars/original/missing.png", info.base_url);
    let header = format!("{}/headers/original/missing.png", info.base_url);
    json!({
        "id": account.id.to_string(),
        "username": account.username,
        "acct": account.acct(),
        "display_name": account.display_name,
        "locked": false,
        "bot": account.bot,
        "discoverable": true,
        "indexable": true,
        "group": false,
        "created_at": timestamp(created_at),
        "note": account.note,
        "url": account.url,
        "uri": account.uri,
        "avatar": avatar,
        "avatar_static": avatar,
        "header": header,
        "header_static": header,
        "followers_count": db.followers_count(account.id),
        "following_count": db.following_count(account.id),
        "statuses_count": db.statuses_count(account.id),
        "last_status_at": db.last_status_at(account.id).map(|at| at.format("%Y-%m-%d").to_string()),
        "hide_collections": false,
        "noindex": false,
        "emojis": [],
        "roles": [],
        "fields": [],
    })
}

/// The account of the token's owner, with `source` and `role`.
pub(crate) fn credential_account(db: &Db, info: &InstanceInfo, account: &Account) -> Value {
    let mut value = self::account(db, info, account);
    if let Value::Object(map) = &mut value {
        map.insert(
            "source".into(),
            json!({
                "privacy": "public",
                "sensitive": false,
                "language": null,
                "note": "",
                "fields": [],
                "follow_requests_count": 0,
                "hide_collections": false,
                "discoverable": true,
                "indexable": true,
                "attribution_domains": [],
            }),
        );
        map.insert(
            "role".into(),
            json!({
                "id": "-99",
                "name": "",
                "permissions": "0",
                "color": "",
                "highlighted": false,
            }),
        );
    }
    value
}

pub(crate) fn relationship(db: &Db, viewer: u64, target: u64) -> Value {
    let following = db.follows(viewer, target);
    json!({
        "id": target.to_string(),
        "following": following,
        "showing_reblogs": following,
        "notifying": false,
        "languages": null,
        "followed_by": db.follows(target, viewer),
        "blocking": false,
        "blocked_by": false,
        "muting": false,
        "muting_notifications": false,
        "requested": false,
        "requested_by": false,
        "domain_blocking": false,
        "endorsed": false,
        "note": "",
    })
}

/// A status as seen by `viewer`. With `with_source`, adds `text` (the source),
/// as Mastodon does in the answer to a delete so clients can redraft.
pub(crate) fn status(db: &Db, info: &InstanceInfo, status: &Status, viewer: Option<u64>, with_source: bool) -> Value {
    let author = db.accounts.get(&status.account_id);
    let author_json = author.map_or(Value::Null, |a| account(db, info, a));
    let mentions: Vec<Value> = status
        .mentions
        .iter()
        .filter_map(|id| db.accounts.get(id))
        .map(|a| {
            json!({
                "id": a.id.to_string(),
                "username": a.username,
                "url": a.url,
                "acct": a.acct(),
            })
        })
        .collect();
    let tags: Vec<Value> =
        status.tags.iter().map(|t| json!({ "name": t, "url": format!("{}/tags/{}", info.base_url, t) })).collect();
    let mut value = json!({
        "id": status.id.to_string(),
        "created_at": timestamp(status.created_at),
        "in_reply_to_id": status.in_reply_to_id.map(|id| id.to_string()),
        "in_reply_to_account_id": status.in_reply_to_account_id.map(|id| id.to_string()),
        "sensitive": status.sensitive,
        "spoiler_text": status.spoiler_text,
        "visibility": status.visibility.as_str(),
        "language": status.language,
        "uri": status.uri,
        "url": status.url,
        "replies_count": db.replies_count(status.id),
        "reblogs_count": 0,
        "favourites_count": db.favourites_count(status.id),
        "quotes_count": 0,
        "edited_at": null,
        "content": status.content,
        "reblog": null,
        "application": { "name": "Web", "website": null },
        "account": author_json,
        "media_attachments": [],
        "mentions": mentions,
        "tags": tags,
        "emojis": [],
        "card": null,
        "poll": null,
    });
    // Mastodon shows the posting application only for its own users' statuses.
    if let (Value::Object(map), true) = (&mut value, author.is_some_and(|a| a.domain.is_some())) {
        map.shift_remove("application");
    }
    if let (Value::Object(map), Some(viewer)) = (&mut value, viewer) {
        map.insert("favourited".into(), db.favourites.contains(&(viewer, status.id)).into());
        map.insert("reblogged".into(), false.into());
        map.insert("muted".into(), false.into());
        map.insert("bookmarked".into(), false.into());
        if viewer == status.account_id {
            map.insert("pinned".into(), false.into());
        }
        map.insert("filtered".into(), json!([]));
    }
    if let (Value::Object(map), true) = (&mut value, with_source) {
        map.insert("text".into(), status.text.clone().into());
    }
    value
}

pub(crate) fn notification(db: &Db, info: &InstanceInfo, notification: &Notification, viewer: u64) -> Option<Value> {
    let from = db.accounts.get(&notification.from_account_id)?;
    let mut value = json!({
        "id": notification.id.to_string(),
        "type": notification.kind.as_str(),
        "created_at": timestamp(notification.created_at),
        "group_key": format!("ungrouped-{}", notification.id),
        "account": account(db, info, from),
    });
    if let Some(status_id) = notification.status_id {
        // A notification whose status is gone is not shown, as in Mastodon.
        let status = db.statuses.get(&status_id)?;
        if let Value::Object(map) = &mut value {
            map.insert("status".into(), self::status(db, info, status, Some(viewer), false));
        }
    }
    Some(value)
}

/// A hashtag with a week of (sandbox-computed) usage history.
pub(crate) fn tag(db: &Db, info: &InstanceInfo, name: &str, tag_id: u64, now: DateTime<Utc>) -> Value {
    let history: Vec<Value> = (0..7)
        .map(|days_ago| {
            let day = (now - Duration::days(days_ago)).date_naive();
            let using: Vec<&Status> = db
                .statuses
                .values()
                .filter(|s| s.created_at.date_naive() == day && s.tags.iter().any(|t| t == name))
                .collect();
            let mut accounts: Vec<u64> = using.iter().map(|s| s.account_id).collect();
            accounts.sort_unstable();
            accounts.dedup();
            let midnight = day.and_hms_opt(0, 0, 0).map_or(0, |m| m.and_utc().timestamp());
            json!({
                "day": midnight.to_string(),
                "accounts": accounts.len().to_string(),
                "uses": using.len().to_string(),
            })
        })
        .collect();
    json!({
        "id": tag_id.to_string(),
        "name": name,
        "url": format!("{}/tags/{}", info.base_url, name),
        "history": history,
        "following": false,
    })
}

fn streaming_url(info: &InstanceInfo) -> String {
    info.base_url.replacen("http://", "ws://", 1)
}

fn media_configuration() -> Value {
    json!({
        "supported_mime_types": ["image/jpeg", "image/png", "image/gif", "image/webp", "video/mp4", "audio/mpeg"],
        "description_limit": 1500,
        "image_size_limit": 16_777_216,
        "image_matrix_limit": 33_177_600,
        "video_size_limit": 103_809_024,
        "video_frame_rate_limit": 120,
        "video_matrix_limit": 8_294_400,
    })
}

fn polls_configuration() -> Value {
    json!({
        "max_options": 4,
        "max_characters_per_option": 50,
        "min_expiration": 300,
        "max_expiration": 2_629_746,
    })
}

fn statuses_configuration() -> Value {
    json!({
        "max_characters": MAX_CHARACTERS,
        "max_media_attachments": 4,
        "characters_reserved_per_url": 23,
    })
}

/// `GET /api/v2/instance`
pub(crate) fn instance_v2(db: &Db, info: &InstanceInfo) -> Value {
    let local_users = db.accounts.values().filter(|a| a.domain.is_none()).count();
    let mut instance = json!({
        "domain": info.host,
        "title": format!("Sandbox {}", info.name),
        "version": MASTODON_VERSION,
        "source_url": "https://github.com/mastodon/mastodon",
        "description": format!("A simulated Mastodon instance ({}) run by fediprobe's sandbox.", info.name),
        "usage": { "users": { "active_month": local_users } },
        "thumbnail": {
            "url": format!("{}/packs/media/images/preview.png", info.base_url),
            "blurhash": null,
            "versions": {},
        },
        "icon": [],
        "languages": ["en"],
        "configuration": {
            "urls": {
                "streaming": streaming_url(info),
                "status": null,
                "about": format!("{}/about", info.base_url),
                "privacy_policy": format!("{}/privacy-policy", info.base_url),
                "terms_of_service": null,
            },
            "vapid": { "public_key": "" },
            "accounts": { "max_featured_tags": 10, "max_pinned_statuses": 5 },
            "statuses": statuses_configuration(),
            "media_attachments": media_configuration(),
            "polls": polls_configuration(),
            "translation": { "enabled": false },
        },
        "registrations": {
            "enabled": false,
            "approval_required": false,
            "message": null,
            "url": null,
        },
        "api_versions": { "mastodon": 2 },
        "contact": { "email": format!("admin@{}", info.domain), "account": null },
        "rules": [],
    });
    // GoToSocial's field for a split domain; Mastodon has none.
    if info.domain != info.host {
        instance["account_domain"] = json!(info.domain);
    }
    instance
}

/// `GET /api/v1/instance`
pub(crate) fn instance_v1(db: &Db, info: &InstanceInfo) -> Value {
    let local_users = db.accounts.values().filter(|a| a.domain.is_none()).count();
    let local_statuses =
        db.statuses.values().filter(|s| db.accounts.get(&s.account_id).is_some_and(|a| a.domain.is_none())).count();
    let domains: std::collections::BTreeSet<&str> = db.accounts.values().filter_map(|a| a.domain.as_deref()).collect();
    json!({
        "uri": info.host,
        "title": format!("Sandbox {}", info.name),
        "short_description": format!("A simulated Mastodon instance ({}).", info.name),
        "description": format!("A simulated Mastodon instance ({}) run by fediprobe's sandbox.", info.name),
        "email": format!("admin@{}", info.domain),
        "version": MASTODON_VERSION,
        "urls": { "streaming_api": streaming_url(info) },
        "stats": {
            "user_count": local_users,
            "status_count": local_statuses,
            "domain_count": domains.len(),
        },
        "thumbnail": format!("{}/packs/media/images/preview.png", info.base_url),
        "languages": ["en"],
        "registrations": false,
        "approval_required": false,
        "invites_enabled": false,
        "configuration": {
            "accounts": { "max_featured_tags": 10 },
            "statuses": statuses_configuration(),
            "media_attachments": media_configuration(),
            "polls": polls_configuration(),
        },
        "contact_account": null,
        "rules": [],
    })
}
