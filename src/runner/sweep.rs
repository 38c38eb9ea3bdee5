//! The leftover sweep: statuses the probe posted and never deleted (the process
//! was killed between a journey's post and its cleanup, or the cleanup's delete
//! failed) are found and deleted at the next start, so the probe leaves nothing
//! behind on the instances it measures.
//!
//! For each probe account with a token (every account of every instance, or
//! those `once`'s runs posted as), the sweep reads the probe account
//! (`verify_credentials`), lists its [`PAGE_SIZE`] newest statuses
//! (`/api/v1/accounts/:id/statuses`, reblogs excluded), and deletes those that
//! are **leftovers**: the text carries a run's marker (a word shaped like the
//! runs' nonce, see [`nonce_time`](super::nonce_time)), the status is the probe
//! account's own, and it was created (`created_at`, the instance's clock) longer
//! ago than `min_age` — the longest journey deadline, so that a run still in
//! flight (on this probe or another region's sharing the account) keeps its post.
//!
//! It deletes at most [`MAX_DELETES`] statuses per account per sweep, so that it
//! stays inside Mastodon's limit of 30 deletes per 30 minutes per account next to
//! the journeys' own deletes (`fediprobe check` counts every sweep: see
//! `spec::limits::sweeps_in_window`), and stops at the first refusal (a 429
//! included). The standing status `favourite` keeps carries no run marker, so no
//! sweep ever deletes it. Each
//! request has [`REQUEST_TIMEOUT`]. A sweep never fails anything: what it could
//! not do is in its report and logged, and the next sweep tries again.

use std::time::Duration;

use serde_json::Value;

use super::http::{self, Client, Request};
use super::{Runner, Target};

/// The most statuses one sweep deletes on one instance.
pub const MAX_DELETES: usize = crate::spec::limits::SWEEP_MAX_DELETES as usize;

/// How many of the probe account's newest statuses a sweep looks at (Mastodon's maximum page).
pub const PAGE_SIZE: usize = 40;

/// How long each of the sweep's requests may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What a sweep did on one instance, as one of its probe accounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub instance: String,
    /// The probe account's user name.
    pub account: String,
    /// Leftovers found (old enough and marked), deleted or not.
    pub found: usize,
    pub deleted: usize,
    /// Why the sweep stopped early, if it did (never contains a token).
    pub error: Option<String>,
}

impl Runner {
    /// Deletes leftover statuses of the probe accounts (see the module doc):
    /// the accounts named in `only` (instance and account, `None` for the
    /// instance's primary account), or every account of every instance.
    /// Accounts whose token is missing are skipped.
    pub async fn sweep_leftovers(
        &self,
        min_age: Duration,
        only: Option<&[(String, Option<String>)]>,
    ) -> Vec<SweepReport> {
        let mut reports = Vec::new();
        let chosen = |t: &&Target| {
            only.is_none_or(|pairs| {
                pairs.iter().any(|(instance, account)| {
                    *instance == t.name && account.as_ref().map_or(t.primary, |a| *a == t.account)
                })
            })
        };
        for target in self.targets.iter().filter(|t| t.token.is_ok()).filter(chosen) {
            let client = Client::with_resolver(self.tls.clone(), self.resolver.clone());
            let mut report = SweepReport {
                instance: target.name.clone(),
                account: target.account.clone(),
                ..SweepReport::default()
            };
            if let Err(e) = sweep_one(&client, target, min_age, &mut report).await {
                report.error = Some(self.scrub_text(e.to_string()));
            }
            match &report.error {
                Some(e) => {
                    tracing::warn!(instance = %report.instance, account = %report.account, found = report.found, deleted = report.deleted, error = %e, "leftover sweep stopped early")
                }
                None if report.found > 0 => {
                    tracing::info!(instance = %report.instance, account = %report.account, found = report.found, deleted = report.deleted, "leftover statuses deleted")
                }
                None => tracing::debug!(instance = %report.instance, account = %report.account, "no leftover statuses"),
            }
            reports.push(report);
        }
        reports
    }

    /// `text` with every known token replaced (a hostile server may echo one back).
    fn scrub_text(&self, mut text: String) -> String {
        // Every secret the process holds, and every piece of one, not only this runner's.
        crate::secret::scrub_in_place(&mut text);
        text
    }
}

async fn sweep_one(
    client: &Client,
    target: &Target,
    min_age: Duration,
    report: &mut SweepReport,
) -> Result<(), SweepError> {
    let me = get_json(client, target, "/api/v1/accounts/verify_credentials", &[]).await?;
    let id = me
        .get("id")
        .and_then(Value::as_str)
        .ok_or(SweepError::Unexpected("verify_credentials has no `id`"))?
        .to_owned();
    let limit = PAGE_SIZE.to_string();
    let path = format!("/api/v1/accounts/{id}/statuses");
    let statuses = get_json(client, target, &path, &[("limit", &limit), ("exclude_reblogs", "true")]).await?;
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::MAX);
    let leftovers: Vec<String> = statuses
        .as_array()
        .ok_or(SweepError::Unexpected("the account's statuses are not a list"))?
        .iter()
        .filter(|s| s.pointer("/account/id").and_then(Value::as_str) == Some(id.as_str()))
        .filter(|s| {
            s.get("created_at")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t <= cutoff)
        })
        .filter(|s| s.get("content").and_then(Value::as_str).is_some_and(is_marked))
        .filter_map(|s| s.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    report.found = leftovers.len();
    for status in leftovers.iter().take(MAX_DELETES) {
        let request = request(target, ::http::Method::DELETE, &format!("/api/v1/statuses/{status}"), &[])?;
        let response = send(client, &request).await?;
        match response.status {
            200 | 404 => report.deleted += usize::from(response.status == 200),
            status => return Err(SweepError::Status { method: "DELETE", path: request.url.path().to_owned(), status }),
        }
    }
    Ok(())
}

/// Whether a status's text (HTML content) carries a run's marker.
pub fn is_marked(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric()).any(|word| super::nonce_time(word).is_some())
}

fn request(target: &Target, method: ::http::Method, path: &str, query: &[(&str, &str)]) -> Result<Request, SweepError> {
    let mut url = target
        .base_url
        .join(path)
        .map_err(|e| SweepError::BadPath { path: path.to_owned(), message: e.to_string() })?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(Request {
        method,
        url,
        headers: Vec::new(),
        bearer: target.token.clone().ok(),
        body: None,
        follow_redirects: false,
    })
}

async fn send(client: &Client, request: &Request) -> Result<http::Response, SweepError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, http::send(client, request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(SweepError::Transport(e.message)),
        Err(_) => Err(SweepError::Timeout { method: request.method.to_string(), path: request.url.path().to_owned() }),
    }
}

async fn get_json(client: &Client, target: &Target, path: &str, query: &[(&str, &str)]) -> Result<Value, SweepError> {
    let request = request(target, ::http::Method::GET, path, query)?;
    let response = send(client, &request).await?;
    if response.status != 200 {
        return Err(SweepError::Status { method: "GET", path: path.to_owned(), status: response.status });
    }
    serde_json::from_slice(&response.body)
        .map_err(|e| SweepError::NotJson { path: path.to_owned(), message: e.to_string() })
}

/// Why a sweep of one instance stopped early (logged, and tried again next time).
#[derive(Debug, thiserror::Error)]
enum SweepError {
    /// The request could not be made or answered (the runner's message).
    #[error("{0}")]
    Transport(String),
    #[error("{method} {path}: no response within {REQUEST_TIMEOUT:?}")]
    Timeout { method: String, path: String },
    #[error("{method} {path}: status {status}")]
    Status { method: &'static str, path: String, status: u16 },
    #[error("GET {path}: not JSON ({message})")]
    NotJson { path: String, message: String },
    #[error("{path}: {message}")]
    BadPath { path: String, message: String },
    /// An answer of an unexpected shape.
    #[error("{0}")]
    Unexpected(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_marked_by_a_nonce_shaped_word() {
        let nonce = super::super::new_nonce(chrono::Utc::now());
        assert!(is_marked(&format!("<p>fediprobe check {nonce}</p>")));
        assert!(!is_marked("<p>fediprobe check, by hand</p>"));
        assert!(!is_marked(&format!("<p>{nonce}x</p>")));
    }
}
