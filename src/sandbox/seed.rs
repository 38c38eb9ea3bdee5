//! The starting data of every instance: the `probe` account and two other local
//! users, `alice` and `bob`, who post public statuses (some with hashtags),
//! mention and favourite the probe, and follow it; the probe follows alice.
//!
//! A second probe account, `busy`, is a user unlike the probe: it follows
//! [`BUSY_FOLLOWS`] local accounts (`reader001`, …, without tokens, each with
//! one unlisted status, so public timelines and tag pages stay as they were)
//! and alice and bob, so its home timeline is long and every page of it is
//! full (40 statuses at `limit=40`, more than ten pages), where the probe's
//! holds a handful. Its follows were made before its statuses were posted, so
//! they are all in its feed, as Mastodon merges a followed account's statuses
//! into the follower's home feed.
//!
//! Timestamps lie in the recent past, so statuses posted by a test are always
//! newer than the seeded ones.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;

use super::entities::InstanceInfo;
use super::state::{
    Account, Db, IdGenerator, NotificationKind, Status, Visibility, extract_hashtags, extract_mentions, render_content,
};

/// The seeded local accounts with tokens: username, display name, bio.
const ACCOUNTS: [(&str, &str, &str); 4] = [
    ("probe", "fediprobe", "Synthetic probe account."),
    ("alice", "Alice", "Posts about SRE and coffee."),
    ("bob", "Bob", "Tries things out."),
    ("busy", "fediprobe (busy)", "Synthetic probe account that follows hundreds: a long home timeline."),
];

/// The probe accounts: marked as bots, as a probe account should be.
const PROBE_ACCOUNTS: [&str; 2] = ["probe", "busy"];

/// How many local accounts `busy` follows besides alice and bob.
pub const BUSY_FOLLOWS: usize = 400;

/// Seeded statuses, oldest first: author, minutes ago, visibility, text.
const STATUSES: [(&str, i64, Visibility, &str); 14] = [
    ("alice", 240, Visibility::Public, "Good morning, fediverse! #introductions"),
    ("bob", 230, Visibility::Public, "Hello from bob. #introductions"),
    ("alice", 200, Visibility::Public, "Reading about SLOs and error budgets today. #sre"),
    ("probe", 190, Visibility::Public, "fediprobe checking in."),
    ("bob", 180, Visibility::Public, "Trying out the sandbox #fediprobe #testing"),
    ("alice", 170, Visibility::Private, "Only my followers can see this. #private"),
    ("bob", 160, Visibility::Unlisted, "Coffee time."),
    ("alice", 150, Visibility::Public, "Multi-window multi-burn-rate alerts are neat. #sre #alerting"),
    ("bob", 140, Visibility::Public, "Latency is a feature. #performance"),
    ("alice", 120, Visibility::Public, "@probe welcome to the sandbox!"),
    ("bob", 100, Visibility::Public, "Lunch break. #food"),
    ("alice", 80, Visibility::Public, "Federation delay is a user journey too. #fediverse #sre"),
    ("bob", 60, Visibility::Public, "Testing, testing, one two three. #testing"),
    ("alice", 30, Visibility::Public, "Afternoon tea and dashboards. #grafana"),
];

/// A random access token, shaped like Doorkeeper's (43 URL-safe characters).
fn new_token() -> String {
    rand::rng().sample_iter(Alphanumeric).take(43).map(char::from).collect()
}

fn add_account(db: &mut Db, info: &InstanceInfo, username: &str, name: &str, bio: &str, at: DateTime<Utc>) -> u64 {
    let id = add_account_without_token(db, info, username, name, bio, at);
    if let Some(account) = db.accounts.get_mut(&id) {
        account.token = Some(new_token());
    }
    id
}

/// A local account nobody signs in as (the accounts `busy` follows).
fn add_account_without_token(
    db: &mut Db,
    info: &InstanceInfo,
    username: &str,
    name: &str,
    bio: &str,
    at: DateTime<Utc>,
) -> u64 {
    let id = db.ids.next_at(at);
    db.accounts.insert(
        id,
        Account {
            id,
            username: username.to_owned(),
            domain: None,
            display_name: name.to_owned(),
            note: format!("<p>{}</p>", super::state::escape_html(bio)),
            token: None,
            created_at: at,
            uri: format!("{}/users/{}", info.base_url, username),
            url: format!("{}/@{}", info.base_url, username),
            bot: PROBE_ACCOUNTS.contains(&username),
        },
    );
    id
}

/// `busy`'s follows of [`BUSY_FOLLOWS`] readers, alice and bob, and one
/// unlisted status of each reader, older than the other seeded statuses.
fn seed_busy(db: &mut Db, info: &InstanceInfo, now: DateTime<Utc>) {
    let id_of = |db: &Db, username: &str| db.accounts.values().find(|a| a.username == username).map(|a| a.id);
    let Some(busy) = id_of(db, "busy") else { return };
    let followed: Vec<u64> = ["alice", "bob"].iter().filter_map(|u| id_of(db, u)).collect();
    for followed in followed {
        db.follows.insert((busy, followed));
    }
    let created = now - Duration::days(60);
    for n in 1..=BUSY_FOLLOWS {
        let username = format!("reader{n:03}");
        let bio = "Reads and posts now and then.";
        let reader = add_account_without_token(db, info, &username, &format!("Reader {n}"), bio, created);
        db.follows.insert((busy, reader));
    }
    // Oldest first: ids follow the order of insertion as well as time.
    for n in (1..=BUSY_FOLLOWS).rev() {
        let at = now - Duration::minutes(300 + n as i64);
        add_status(db, info, &format!("reader{n:03}"), Visibility::Unlisted, &format!("Notes from reader {n}."), at);
    }
}

/// Adds a seeded status by `username` (with its mentions' notifications).
fn add_status(
    db: &mut Db,
    info: &InstanceInfo,
    username: &str,
    visibility: Visibility,
    text: &str,
    at: DateTime<Utc>,
) -> u64 {
    let account_id = db.accounts.values().find(|a| a.username == username).map_or(0, |a| a.id);
    let id = db.ids.next_at(at);
    let mentions: Vec<u64> =
        extract_mentions(text).iter().filter_map(|acct| db.account_by_acct(acct, &info.domain).map(|a| a.id)).collect();
    db.statuses.insert(
        id,
        Status {
            id,
            account_id,
            text: text.to_owned(),
            content: render_content(text),
            visibility,
            spoiler_text: String::new(),
            sensitive: false,
            language: Some("en".to_owned()),
            in_reply_to_id: None,
            in_reply_to_account_id: None,
            created_at: at,
            uri: format!("{}/users/{}/statuses/{}", info.base_url, username, id),
            url: format!("{}/@{}/{}", info.base_url, username, id),
            mentions: mentions.clone(),
            tags: extract_hashtags(text),
        },
    );
    for mentioned in mentions {
        db.notify(mentioned, NotificationKind::Mention, account_id, Some(id), at);
    }
    id
}

/// Builds the seeded records of one instance.
pub(crate) fn seed(info: &InstanceInfo, id_salt: u16) -> Db {
    let now = Utc::now();
    let mut db = Db { ids: IdGenerator::salted(id_salt), ..Db::default() };
    let created = now - Duration::days(30);
    for (username, name, bio) in ACCOUNTS {
        add_account(&mut db, info, username, name, bio, created);
    }
    // Before anything newer gets an id: ids follow time.
    seed_busy(&mut db, info, now);
    let id_of = |db: &Db, username: &str| db.accounts.values().find(|a| a.username == username).map_or(0, |a| a.id);
    let (probe, alice, bob) = (id_of(&db, "probe"), id_of(&db, "alice"), id_of(&db, "bob"));

    db.follows.insert((probe, alice));
    db.follows.insert((bob, probe));
    db.notify(probe, NotificationKind::Follow, bob, None, now - Duration::minutes(250));

    let mut probe_status = None;
    for (username, minutes_ago, visibility, text) in STATUSES {
        let at = now - Duration::minutes(minutes_ago);
        let id = add_status(&mut db, info, username, visibility, text, at);
        if username == "probe" {
            probe_status = Some((id, at));
        }
    }
    if let Some((id, at)) = probe_status {
        db.favourites.insert((bob, id));
        db.notify(probe, NotificationKind::Favourite, bob, Some(id), at + Duration::minutes(5));
    }
    // The seed is the instance's past: nobody was connected to hear about it.
    db.outbox.clear();
    db
}
