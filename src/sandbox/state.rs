//! The data of one simulated instance: accounts, statuses, follows, favourites,
//! notifications and idempotency keys, plus the rules that read them (who may see
//! which status, what a timeline holds).
//!
//! Everything lives behind one `Mutex` per instance. Handlers lock it, do their
//! work without awaiting, and unlock, so the lock is never held across an `.await`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// How long an `Idempotency-Key` is remembered, as in Mastodon (one hour).
pub(crate) const IDEMPOTENCY_TTL: Duration = Duration::from_secs(3600);

/// Who can see a status, as Mastodon's `visibility` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Visibility {
    Public,
    Unlisted,
    Private,
    Direct,
}

impl Visibility {
    pub(crate) fn parse(value: &str) -> Option<Visibility> {
        match value {
            "public" => Some(Visibility::Public),
            "unlisted" => Some(Visibility::Unlisted),
            "private" => Some(Visibility::Private),
            "direct" => Some(Visibility::Direct),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Unlisted => "unlisted",
            Visibility::Private => "private",
            Visibility::Direct => "direct",
        }
    }
}

/// An account known to the instance. `domain` is `None` for local accounts; remote
/// accounts (for federation later) carry their home domain and their home URIs.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    pub id: u64,
    pub username: String,
    pub domain: Option<String>,
    pub display_name: String,
    pub note: String,
    pub token: Option<String>,
    pub created_at: DateTime<Utc>,
    /// ActivityPub id: `{base_url}/users/{username}` for local accounts.
    pub uri: String,
    /// Profile page: `{base_url}/@{username}` for local accounts.
    pub url: String,
    pub bot: bool,
}

impl Account {
    /// `username` for local accounts, `username@domain` for remote ones.
    pub(crate) fn acct(&self) -> String {
        match &self.domain {
            None => self.username.clone(),
            Some(domain) => format!("{}@{}", self.username, domain),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Status {
    pub id: u64,
    pub account_id: u64,
    /// The source text as typed.
    pub text: String,
    /// The rendered HTML.
    pub content: String,
    pub visibility: Visibility,
    pub spoiler_text: String,
    pub sensitive: bool,
    pub language: Option<String>,
    pub in_reply_to_id: Option<u64>,
    pub in_reply_to_account_id: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub uri: String,
    pub url: String,
    /// Ids of the mentioned accounts.
    pub mentions: Vec<u64>,
    /// Lower-cased hashtag names, without `#`.
    pub tags: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotificationKind {
    Mention,
    Favourite,
    Follow,
}

impl NotificationKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Mention => "mention",
            NotificationKind::Favourite => "favourite",
            NotificationKind::Follow => "follow",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Notification {
    pub id: u64,
    pub recipient_id: u64,
    pub kind: NotificationKind,
    pub from_account_id: u64,
    pub status_id: Option<u64>,
    pub created_at: DateTime<Utc>,
}

/// Mastodon-style ids: milliseconds since the epoch shifted left by 16 bits, plus
/// a sequence, so ids sort by creation time and never repeat.
///
/// Like Mastodon's, the sequence part does not start at zero but at a per-instance
/// `salt`, so two instances creating records in the same millisecond still give
/// them different ids, as real instances do (clients must match on `uri`).
#[derive(Debug, Default)]
pub(crate) struct IdGenerator {
    last: u64,
    salt: u16,
}

impl IdGenerator {
    pub(crate) fn salted(salt: u16) -> IdGenerator {
        IdGenerator { last: 0, salt }
    }

    pub(crate) fn next_at(&mut self, at: DateTime<Utc>) -> u64 {
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        let id = ((millis << 16) + u64::from(self.salt)).max(self.last + 1);
        self.last = id;
        id
    }
}

/// What the streaming API and the federation queue must hear about a change,
/// recorded while the records change and sent when the lock is released (see
/// `routes::DbGuard`), so an event leaves in the same critical section as the
/// change it reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// A status was inserted: it enters home feeds and public timelines now.
    Created(u64),
    /// A status was removed. Everything the removal must tell is captured
    /// before the record goes.
    Deleted(Removed),
    /// A notification was created.
    Notified(u64),
}

/// A removed status, as the streaming API and federation need to report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Removed {
    pub id: u64,
    pub uri: String,
    pub author_id: u64,
    pub visibility: Visibility,
    /// Local accounts whose home feed held the status.
    pub home_recipients: Vec<u64>,
    /// Whether the author is a local account.
    pub local: bool,
    /// Domains of other instances that received the status (followers of the
    /// author there, or mentioned accounts); empty for remote statuses.
    pub remote_domains: Vec<String>,
}

/// An uploaded media file.
#[derive(Clone, Debug)]
pub(crate) struct Media {
    pub id: u64,
    pub account_id: u64,
    pub description: Option<String>,
    /// The image's width and height, when its header says.
    pub dimensions: Option<(u32, u32)>,
    /// When processing ends: the `url` is known from then on.
    pub ready_at: Instant,
}

/// All the records of one instance.
#[derive(Debug, Default)]
pub(crate) struct Db {
    pub ids: IdGenerator,
    pub accounts: BTreeMap<u64, Account>,
    pub statuses: BTreeMap<u64, Status>,
    /// (follower id, followed id)
    pub follows: HashSet<(u64, u64)>,
    /// (account id, status id)
    pub favourites: HashSet<(u64, u64)>,
    pub notifications: BTreeMap<u64, Notification>,
    /// Uploaded media not (yet) attached to a status.
    pub media: BTreeMap<u64, Media>,
    /// (account id, key) -> (status id, when the key was first used)
    pub idempotency: HashMap<(u64, String), (u64, Instant)>,
    /// Events not sent yet; drained whenever the lock is released.
    pub outbox: Vec<Outgoing>,
}

impl Db {
    pub(crate) fn account_by_token(&self, token: &str) -> Option<&Account> {
        self.accounts.values().find(|a| a.token.as_deref() == Some(token))
    }

    pub(crate) fn account_by_acct(&self, acct: &str, local_domain: &str) -> Option<&Account> {
        let acct = acct.trim_start_matches('@');
        let (username, domain) = match acct.split_once('@') {
            Some((user, domain)) if domain.eq_ignore_ascii_case(local_domain) => (user, None),
            Some((user, domain)) => (user, Some(domain)),
            None => (acct, None),
        };
        self.accounts.values().find(|a| {
            a.username.eq_ignore_ascii_case(username)
                && match (domain, &a.domain) {
                    (None, None) => true,
                    (Some(d), Some(ad)) => d.eq_ignore_ascii_case(ad),
                    _ => false,
                }
        })
    }

    pub(crate) fn follows(&self, follower: u64, followed: u64) -> bool {
        self.follows.contains(&(follower, followed))
    }

    /// Mastodon's visibility rule: public and unlisted statuses are visible to
    /// anyone; private ones to the author, followers and mentioned accounts; direct
    /// ones to the author and mentioned accounts.
    pub(crate) fn can_see(&self, viewer: Option<u64>, status: &Status) -> bool {
        match status.visibility {
            Visibility::Public | Visibility::Unlisted => true,
            Visibility::Private => viewer.is_some_and(|v| {
                v == status.account_id || self.follows(v, status.account_id) || status.mentions.contains(&v)
            }),
            Visibility::Direct => viewer.is_some_and(|v| v == status.account_id || status.mentions.contains(&v)),
        }
    }

    /// Whether `status` belongs in the home feed of `account`: its own, those of
    /// accounts it follows (that it may see), and those mentioning it.
    pub(crate) fn in_home_feed(&self, account: u64, status: &Status) -> bool {
        status.account_id == account
            || ((self.follows(account, status.account_id) || status.mentions.contains(&account))
                && self.can_see(Some(account), status))
    }

    /// Statuses of the home feed of `account`, newest first.
    pub(crate) fn home_feed(&self, account: u64) -> Vec<&Status> {
        self.statuses.values().rev().filter(|s| self.in_home_feed(account, s)).collect()
    }

    /// The local accounts whose home feed holds `status`, in id order.
    pub(crate) fn home_recipients(&self, status: &Status) -> Vec<u64> {
        self.accounts.values().filter(|a| a.domain.is_none() && self.in_home_feed(a.id, status)).map(|a| a.id).collect()
    }

    pub(crate) fn is_local(&self, account: u64) -> bool {
        self.accounts.get(&account).is_some_and(|a| a.domain.is_none())
    }

    /// The other instances a status of a local author goes to, as Mastodon's
    /// push: those of the author's followers (unless it is direct) and those of
    /// the accounts it mentions. Sorted, without duplicates.
    pub(crate) fn delivery_domains(&self, status: &Status) -> Vec<String> {
        if !self.is_local(status.account_id) {
            return Vec::new();
        }
        let followers = self
            .follows
            .iter()
            .filter(|(_, followed)| *followed == status.account_id && status.visibility != Visibility::Direct)
            .map(|(follower, _)| *follower);
        let mut domains: Vec<String> = followers
            .chain(status.mentions.iter().copied())
            .filter_map(|id| self.accounts.get(&id)?.domain.clone())
            .collect();
        domains.sort();
        domains.dedup();
        domains
    }

    /// Inserts a status and records that it was created.
    pub(crate) fn insert_status(&mut self, status: Status) {
        let id = status.id;
        self.statuses.insert(id, status);
        self.outbox.push(Outgoing::Created(id));
    }

    /// Removes a status with its favourites and notifications, and records who
    /// must hear about it.
    pub(crate) fn remove_status(&mut self, id: u64) -> Option<Status> {
        let status = self.statuses.get(&id)?;
        let removed = Removed {
            id,
            uri: status.uri.clone(),
            author_id: status.account_id,
            visibility: status.visibility,
            home_recipients: self.home_recipients(status),
            local: self.is_local(status.account_id),
            remote_domains: self.delivery_domains(status),
        };
        let status = self.statuses.remove(&id)?;
        self.favourites.retain(|(_, status_id)| *status_id != id);
        self.notifications.retain(|_, n| n.status_id != Some(id));
        self.outbox.push(Outgoing::Deleted(removed));
        Some(status)
    }

    pub(crate) fn status_by_uri(&self, uri: &str) -> Option<&Status> {
        self.statuses.values().find(|s| s.uri == uri)
    }

    pub(crate) fn account_by_uri(&self, uri: &str) -> Option<&Account> {
        self.accounts.values().find(|a| a.uri == uri)
    }

    /// The local account named `username` (not a remote one).
    pub(crate) fn local_account(&self, username: &str) -> Option<&Account> {
        self.accounts.values().find(|a| a.domain.is_none() && a.username.eq_ignore_ascii_case(username))
    }

    pub(crate) fn statuses_count(&self, account: u64) -> usize {
        self.statuses.values().filter(|s| s.account_id == account).count()
    }

    pub(crate) fn last_status_at(&self, account: u64) -> Option<DateTime<Utc>> {
        self.statuses.values().rev().find(|s| s.account_id == account).map(|s| s.created_at)
    }

    pub(crate) fn followers_count(&self, account: u64) -> usize {
        self.follows.iter().filter(|(_, followed)| *followed == account).count()
    }

    pub(crate) fn following_count(&self, account: u64) -> usize {
        self.follows.iter().filter(|(follower, _)| *follower == account).count()
    }

    pub(crate) fn favourites_count(&self, status: u64) -> usize {
        self.favourites.iter().filter(|(_, s)| *s == status).count()
    }

    pub(crate) fn replies_count(&self, status: u64) -> usize {
        self.statuses.values().filter(|s| s.in_reply_to_id == Some(status)).count()
    }

    pub(crate) fn notify(
        &mut self,
        recipient_id: u64,
        kind: NotificationKind,
        from_account_id: u64,
        status_id: Option<u64>,
        at: DateTime<Utc>,
    ) {
        if recipient_id == from_account_id {
            return;
        }
        let Some(recipient) = self.accounts.get(&recipient_id) else {
            return;
        };
        // Remote accounts are notified on their own instance, not here.
        if recipient.domain.is_some() {
            return;
        }
        let id = self.ids.next_at(at);
        self.notifications
            .insert(id, Notification { id, recipient_id, kind, from_account_id, status_id, created_at: at });
        self.outbox.push(Outgoing::Notified(id));
    }

    /// Forgets idempotency keys older than [`IDEMPOTENCY_TTL`].
    pub(crate) fn expire_idempotency_keys(&mut self, now: Instant) {
        self.idempotency.retain(|_, (_, first_used)| now.duration_since(*first_used) < IDEMPOTENCY_TTL);
    }
}

/// HTML-escapes text the way Mastodon's plain-text formatter does.
pub(crate) use crate::html::escape as escape_html;

/// Renders status text as Mastodon does for plain text: escaped, paragraphs on
/// blank lines, `<br />` on single line breaks.
pub(crate) fn render_content(text: &str) -> String {
    let normalized = text.replace("\r\n", "\n");
    normalized
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| format!("<p>{}</p>", escape_html(p.trim_matches('\n')).replace('\n', "<br />")))
        .collect()
}

/// Hashtags in `text`: `#` followed by letters, digits or `_`, lower-cased,
/// without duplicates, in order of appearance.
pub(crate) fn extract_hashtags(text: &str) -> Vec<String> {
    extract_prefixed(text, '#')
        .into_iter()
        .filter(|t| t.chars().any(|c| !c.is_ascii_digit()))
        .map(|t| t.to_lowercase())
        .fold(Vec::new(), |mut acc, t| {
            if !acc.contains(&t) {
                acc.push(t);
            }
            acc
        })
}

/// `@username` and `@username@domain` mentions in `text`.
pub(crate) fn extract_mentions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if chars[i] == '@' && starts_word {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_alphanumeric() || matches!(chars[j], '_' | '@' | '.' | '-')) {
                j += 1;
            }
            let mention: String = chars[i + 1..j].iter().collect();
            let mention = mention.trim_end_matches(['.', '-', '@']).to_owned();
            if !mention.is_empty() && !out.contains(&mention) {
                out.push(mention);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

fn extract_prefixed(text: &str, prefix: char) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if chars[i] == prefix && starts_word {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            if j > i + 1 {
                out.push(chars[i + 1..j].iter().collect());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_escaped_and_wrapped_in_paragraphs() {
        assert_eq!(render_content("a <b> & c"), "<p>a &lt;b&gt; &amp; c</p>");
        assert_eq!(render_content("one\ntwo\n\nthree"), "<p>one<br />two</p><p>three</p>");
    }

    #[test]
    fn hashtags_and_mentions_are_found_at_word_starts() {
        assert_eq!(extract_hashtags("#Rust and #rust, a#b #1 #sre_ops"), ["rust", "sre_ops"]);
        assert_eq!(extract_mentions("hi @probe and @bob@beta.sandbox.test."), ["probe", "bob@beta.sandbox.test"]);
        assert!(extract_mentions("mail me at x@y.z").is_empty());
    }

    #[test]
    fn instances_give_different_ids_in_the_same_millisecond() {
        let now = Utc::now();
        let (mut alpha, mut beta) = (IdGenerator::salted(0), IdGenerator::salted(4099));
        assert_ne!(alpha.next_at(now), beta.next_at(now));
        assert_eq!(beta.next_at(now) >> 16, u64::try_from(now.timestamp_millis()).unwrap());
    }

    #[test]
    fn ids_increase_even_within_one_millisecond() {
        let mut ids = IdGenerator::default();
        let now = Utc::now();
        let a = ids.next_at(now);
        let b = ids.next_at(now);
        assert!(b > a);
        assert_eq!(a >> 16, u64::try_from(now.timestamp_millis()).unwrap());
    }
}
