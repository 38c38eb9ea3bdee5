//! Federation between the instances of one sandbox: remote accounts, follows
//! across instances, and the delivery queue that carries statuses and deletes
//! from an origin to the instances of its followers.
//!
//! The instances share a [`Network`] (domain → instance). Calls between them are
//! direct in-process calls rather than ActivityPub over HTTP, but they keep what
//! matters to a probe: every instance has its own record (and id) for a remote
//! account and for a remote status, while `uri` and `url` stay the origin's; and
//! statuses travel through a real queue per origin (a tokio task), in order, after
//! a configurable delay, possibly dropped — never blocking the poster's answer.
//!
//! Follows take effect at once on both sides (Mastodon would show `requested`
//! until the remote `Accept` arrives), so a test can follow and post right away.
//!
//! Locking rule: code here never holds two instances' locks at once; it copies
//! what it needs out of one instance ([`RemoteAccount`], [`Activity`]) before it
//! locks the other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::entities::InstanceInfo;
use super::routes::AppState;
use super::state::{Account, Db, NotificationKind, Outgoing, Status, Visibility};

/// How long a delivery waits in its origin's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delay {
    /// Always this long.
    Fixed(Duration),
    /// Uniformly distributed between `min` and `max` (inclusive; swapped if
    /// given the wrong way round).
    Uniform { min: Duration, max: Duration },
}

impl Delay {
    fn sample(self) -> Duration {
        match self {
            Delay::Fixed(delay) => delay,
            Delay::Uniform { min, max } => {
                let (low, high) = if min <= max { (min, max) } else { (max, min) };
                if low == high {
                    return low;
                }
                rand::rng().random_range(low..=high)
            }
        }
    }
}

/// How an instance federates, as configured at start. Every field can be
/// changed while the sandbox runs through [`Federation`].
#[derive(Clone, Debug)]
pub struct FederationConfig {
    /// How long each delivery from this instance waits in its queue before the
    /// receiving instance gets it. Default: uniform between 50 ms and 150 ms.
    pub delay: Delay,
    /// Extra time every delivery waits, as in a backlogged queue. Default: zero.
    pub backlog: Duration,
    /// The chance (0.0 to 1.0) that a delivery is lost. Default: 0.0.
    pub drop_probability: f64,
    /// Seed a follow from this instance's `probe` account to the `probe` account
    /// of every other instance of the sandbox, so that a federation journey works
    /// out of the box. Default: true.
    pub seed_probe_follows: bool,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            delay: Delay::Uniform { min: Duration::from_millis(50), max: Duration::from_millis(150) },
            backlog: Duration::ZERO,
            drop_probability: 0.0,
            seed_probe_follows: true,
        }
    }
}

// `InstanceConfig` is `Eq`; the probability compares by its bits, which is an
// equivalence (unlike `f64`'s own `==`, which says NaN != NaN).
impl PartialEq for FederationConfig {
    fn eq(&self, other: &Self) -> bool {
        self.delay == other.delay
            && self.backlog == other.backlog
            && self.drop_probability.to_bits() == other.drop_probability.to_bits()
            && self.seed_probe_follows == other.seed_probe_follows
    }
}

impl Eq for FederationConfig {}

/// Counts of one origin's delivery queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FederationStats {
    /// Deliveries waiting in the queue now.
    pub queued: u64,
    /// Deliveries handed to their receiving instance so far.
    pub delivered: u64,
    /// Deliveries lost so far (dropped on purpose, or to an instance that is gone).
    pub dropped: u64,
}

/// The federation and streaming knobs of one running instance. Clones share the
/// knobs, so a test can change a running sandbox through its handle.
///
/// Delay, backlog and drop knobs apply to deliveries *from* this instance: the
/// delay and backlog to deliveries queued after the change, the drop knobs when
/// a delivery leaves the queue. The streaming knob applies to this instance's
/// own streaming API.
#[derive(Clone, Debug)]
pub struct Federation {
    inner: Arc<Knobs>,
}

#[derive(Debug)]
struct Knobs {
    settings: Mutex<Settings>,
    streaming_down: watch::Sender<bool>,
    streaming_token_lookup_failing: std::sync::atomic::AtomicBool,
    streaming_silent: std::sync::atomic::AtomicBool,
    streaming_url: Mutex<Option<String>>,
    queued: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    delay: Delay,
    backlog: Duration,
    drop_probability: f64,
    drop_all: bool,
}

impl Federation {
    pub(crate) fn new(config: &FederationConfig) -> Federation {
        let settings = Settings {
            delay: config.delay,
            backlog: config.backlog,
            drop_probability: config.drop_probability,
            drop_all: false,
        };
        Federation {
            inner: Arc::new(Knobs {
                settings: Mutex::new(settings),
                streaming_down: watch::Sender::new(false),
                streaming_token_lookup_failing: std::sync::atomic::AtomicBool::new(false),
                streaming_silent: std::sync::atomic::AtomicBool::new(false),
                streaming_url: Mutex::new(None),
                queued: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Every later delivery waits exactly `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.settings().delay = Delay::Fixed(delay);
    }

    /// Every later delivery waits a delay drawn from `delay`.
    pub fn set_delay_distribution(&self, delay: Delay) {
        self.settings().delay = delay;
    }

    /// Every later delivery waits `backlog` on top of its delay.
    pub fn set_backlog(&self, backlog: Duration) {
        self.settings().backlog = backlog;
    }

    /// Each delivery leaving the queue from now on is lost with this chance
    /// (clamped to 0.0..=1.0).
    pub fn set_drop_probability(&self, probability: f64) {
        self.settings().drop_probability = if probability.is_nan() { 0.0 } else { probability.clamp(0.0, 1.0) };
    }

    /// While true, every delivery leaving the queue is lost.
    pub fn set_drop_all(&self, drop_all: bool) {
        self.settings().drop_all = drop_all;
    }

    /// While true, this instance's streaming API is down: websocket upgrades
    /// and `/api/v1/streaming/health` answer 503, and open sockets are closed
    /// (code 1001). Statuses still reach home timelines, so polling still works.
    pub fn set_streaming_down(&self, down: bool) {
        self.inner.streaming_down.send_replace(down);
    }

    pub fn streaming_down(&self) -> bool {
        *self.inner.streaming_down.borrow()
    }

    /// While true, this instance's streaming server cannot look tokens up (its
    /// database is unreachable, say) and refuses every websocket upgrade as
    /// Mastodon 4.2's does then: 401, an empty body, and `X-Error-Message: An
    /// unexpected error occurred`, even for a token the REST API accepts.
    pub fn set_streaming_token_lookup_failing(&self, failing: bool) {
        self.inner.streaming_token_lookup_failing.store(failing, Ordering::SeqCst);
    }

    pub(crate) fn streaming_token_lookup_failing(&self) -> bool {
        self.inner.streaming_token_lookup_failing.load(Ordering::SeqCst)
    }

    /// While true, this instance's open websockets go silent: they stay open but
    /// carry no event and no ping (a streaming server whose Redis subscription and
    /// event loop are stuck). Statuses still reach home timelines.
    pub fn set_streaming_silent(&self, silent: bool) {
        self.inner.streaming_silent.store(silent, Ordering::SeqCst);
    }

    pub(crate) fn streaming_silent(&self) -> bool {
        self.inner.streaming_silent.load(Ordering::SeqCst)
    }

    /// Advertise `url` (e.g. `ws://127.0.0.1:PORT`) as the streaming API's base URL
    /// in `/api/v2/instance` and `/api/v1/instance`, as Mastodon does with
    /// `STREAMING_API_BASE_URL` when streaming runs on its own host; `None`: the
    /// instance's own URL.
    pub fn set_streaming_url(&self, url: Option<String>) {
        *self.inner.streaming_url.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = url;
    }

    pub(crate) fn streaming_url(&self) -> Option<String> {
        self.inner.streaming_url.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn stats(&self) -> FederationStats {
        FederationStats {
            queued: self.inner.queued.load(Ordering::SeqCst),
            delivered: self.inner.delivered.load(Ordering::SeqCst),
            dropped: self.inner.dropped.load(Ordering::SeqCst),
        }
    }

    pub(crate) fn streaming_down_watch(&self) -> watch::Receiver<bool> {
        self.inner.streaming_down.subscribe()
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        // Settings are plain values, never half-written: a poisoned lock is fine.
        self.inner.settings.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// When a delivery queued now is due.
    fn due_from_now(&self) -> Instant {
        let settings = *self.settings();
        Instant::now() + settings.backlog + settings.delay.sample()
    }

    fn should_drop(&self) -> bool {
        let settings = *self.settings();
        settings.drop_all || (settings.drop_probability > 0.0 && rand::rng().random_bool(settings.drop_probability))
    }
}

/// The instances of one sandbox, by domain. Holds them weakly: an instance
/// belongs to its server, and a stopped sandbox frees its instances.
#[derive(Debug, Default)]
pub(crate) struct Network {
    instances: RwLock<HashMap<String, Weak<AppState>>>,
}

impl Network {
    pub(crate) fn register(&self, state: &Arc<AppState>) {
        let mut instances = self.instances.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        instances.insert(state.info.domain.to_ascii_lowercase(), Arc::downgrade(state));
    }

    pub(crate) fn instance(&self, domain: &str) -> Option<Arc<AppState>> {
        let instances = self.instances.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        instances.get(&domain.to_ascii_lowercase())?.upgrade()
    }
}

/// What one instance needs to federate: the network, its queue, its knobs.
#[derive(Debug)]
pub(crate) struct Node {
    pub network: Arc<Network>,
    pub knobs: Federation,
    queue: mpsc::UnboundedSender<Delivery>,
}

impl Node {
    /// A node and the receiving end of its queue, for [`run_queue`].
    pub(crate) fn new(network: Arc<Network>, knobs: Federation) -> (Node, mpsc::UnboundedReceiver<Delivery>) {
        let (queue, receiver) = mpsc::unbounded_channel();
        (Node { network, knobs, queue }, receiver)
    }

    /// Queues the deliveries a change calls for: a status of a local author to
    /// the instances of its followers and mentioned accounts, and its deletion
    /// to the same instances. Called with the origin's lock held.
    pub(crate) fn federate(&self, db: &Db, info: &InstanceInfo, change: &Outgoing) {
        let (activity, domains) = match change {
            Outgoing::Created(id) => {
                let Some(status) = db.statuses.get(id) else { return };
                let domains = db.delivery_domains(status);
                if domains.is_empty() {
                    return;
                }
                let Some(activity) = create_activity(db, info, status) else { return };
                (activity, domains)
            }
            Outgoing::Deleted(removed) if removed.local && !removed.remote_domains.is_empty() => {
                let Some(author) = db.accounts.get(&removed.author_id) else { return };
                let activity = Activity::Delete { author_uri: author.uri.clone(), status_uri: removed.uri.clone() };
                (activity, removed.remote_domains.clone())
            }
            Outgoing::Deleted(_) | Outgoing::Notified(_) => return,
        };
        let activity = Arc::new(activity);
        for target in domains {
            let delivery = Delivery { target, activity: Arc::clone(&activity), due: self.knobs.due_from_now() };
            self.knobs.inner.queued.fetch_add(1, Ordering::SeqCst);
            if self.queue.send(delivery).is_err() {
                // The queue's task is gone: the sandbox is stopping.
                self.knobs.inner.queued.fetch_sub(1, Ordering::SeqCst);
                self.knobs.inner.dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// An account as another instance learns about it (a snapshot of the actor).
#[derive(Clone, Debug)]
pub(crate) struct RemoteAccount {
    pub username: String,
    /// The account's home domain.
    pub domain: String,
    pub display_name: String,
    pub note: String,
    pub uri: String,
    pub url: String,
    pub bot: bool,
    pub created_at: DateTime<Utc>,
}

impl RemoteAccount {
    /// `account` as known to the instance `local_domain`.
    fn of(account: &Account, local_domain: &str) -> RemoteAccount {
        RemoteAccount {
            username: account.username.clone(),
            domain: account.domain.clone().unwrap_or_else(|| local_domain.to_owned()),
            display_name: account.display_name.clone(),
            note: account.note.clone(),
            uri: account.uri.clone(),
            url: account.url.clone(),
            bot: account.bot,
            created_at: account.created_at,
        }
    }
}

/// A status as it travels to another instance.
#[derive(Clone, Debug)]
pub(crate) struct RemoteStatus {
    pub uri: String,
    pub url: String,
    pub text: String,
    pub content: String,
    pub visibility: Visibility,
    pub spoiler_text: String,
    pub sensitive: bool,
    pub language: Option<String>,
    pub created_at: DateTime<Utc>,
    pub in_reply_to_uri: Option<String>,
    pub mentions: Vec<RemoteAccount>,
    pub tags: Vec<String>,
}

/// What a delivery carries, like ActivityPub's `Create` and `Delete`.
#[derive(Clone, Debug)]
pub(crate) enum Activity {
    Create { author: RemoteAccount, status: Box<RemoteStatus> },
    Delete { author_uri: String, status_uri: String },
}

fn create_activity(db: &Db, info: &InstanceInfo, status: &Status) -> Option<Activity> {
    let author = RemoteAccount::of(db.accounts.get(&status.account_id)?, &info.domain);
    let mentions = status
        .mentions
        .iter()
        .filter_map(|id| db.accounts.get(id))
        .map(|a| RemoteAccount::of(a, &info.domain))
        .collect();
    let in_reply_to_uri = status.in_reply_to_id.and_then(|id| db.statuses.get(&id)).map(|parent| parent.uri.clone());
    Some(Activity::Create {
        author,
        status: Box::new(RemoteStatus {
            uri: status.uri.clone(),
            url: status.url.clone(),
            text: status.text.clone(),
            content: status.content.clone(),
            visibility: status.visibility,
            spoiler_text: status.spoiler_text.clone(),
            sensitive: status.sensitive,
            language: status.language.clone(),
            created_at: status.created_at,
            in_reply_to_uri,
            mentions,
            tags: status.tags.clone(),
        }),
    })
}

/// One activity on its way to one instance.
#[derive(Debug)]
pub(crate) struct Delivery {
    target: String,
    activity: Arc<Activity>,
    due: Instant,
}

/// The delivery queue of one origin: hands each delivery to its receiving
/// instance when it is due, strictly in the order they were queued (a delivery
/// never overtakes an earlier one, as a `Delete` must not overtake its `Create`).
/// Runs until the sandbox stops.
pub(crate) async fn run_queue(
    origin: String,
    mut queue: mpsc::UnboundedReceiver<Delivery>,
    network: Arc<Network>,
    knobs: Federation,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let delivery = tokio::select! {
            _ = super::server::stopped(&mut stop) => break,
            next = queue.recv() => match next {
                Some(delivery) => delivery,
                None => break,
            },
        };
        tokio::select! {
            _ = super::server::stopped(&mut stop) => break,
            () = tokio::time::sleep_until(delivery.due) => {}
        }
        knobs.inner.queued.fetch_sub(1, Ordering::SeqCst);
        let target = network.instance(&delivery.target);
        match target {
            Some(target) if !knobs.should_drop() => {
                receive(&target, &delivery.activity);
                knobs.inner.delivered.fetch_add(1, Ordering::SeqCst);
                tracing::debug!(instance = %origin, target = %delivery.target, "sandbox delivery handed over");
            }
            _ => {
                knobs.inner.dropped.fetch_add(1, Ordering::SeqCst);
                tracing::debug!(instance = %origin, target = %delivery.target, "sandbox delivery dropped");
            }
        }
    }
    tracing::debug!(instance = %origin, "sandbox delivery queue stopped");
}

/// The receiving instance's side of a delivery: its own copy of a status (its
/// own id, the origin's `uri` and `url`) into its followers' home feeds, or the
/// removal of that copy. Streaming events follow when the lock is released.
fn receive(target: &AppState, activity: &Activity) {
    let mut db = target.db();
    match activity {
        Activity::Create { author, status } => {
            if db.status_by_uri(&status.uri).is_some() {
                return;
            }
            let Some(author_id) = local_id(&mut db, &target.info, author) else { return };
            let mentions: Vec<u64> =
                status.mentions.iter().filter_map(|m| local_id(&mut db, &target.info, m)).collect();
            let parent = status
                .in_reply_to_uri
                .as_deref()
                .and_then(|uri| db.status_by_uri(uri))
                .map(|parent| (parent.id, parent.account_id));
            // The copy's id is taken when it arrives, so the home feed (sorted by
            // id) shows federated statuses in the order they came in.
            let now = Utc::now();
            let id = db.ids.next_at(now);
            db.insert_status(Status {
                id,
                account_id: author_id,
                text: status.text.clone(),
                content: status.content.clone(),
                visibility: status.visibility,
                spoiler_text: status.spoiler_text.clone(),
                sensitive: status.sensitive,
                language: status.language.clone(),
                in_reply_to_id: parent.map(|(id, _)| id),
                in_reply_to_account_id: parent.map(|(_, account)| account),
                created_at: status.created_at,
                uri: status.uri.clone(),
                url: status.url.clone(),
                mentions: mentions.clone(),
                tags: status.tags.clone(),
            });
            for mentioned in mentions {
                db.notify(mentioned, NotificationKind::Mention, author_id, Some(id), now);
            }
        }
        Activity::Delete { author_uri, status_uri } => {
            let Some(status) = db.status_by_uri(status_uri) else { return };
            let by_author = db.accounts.get(&status.account_id).is_some_and(|a| &a.uri == author_uri);
            if by_author {
                let id = status.id;
                db.remove_status(id);
            }
        }
    }
}

/// The local id of `account` on the instance `info`: its own account if it lives
/// there, otherwise the (created or refreshed) record of the remote account.
fn local_id(db: &mut Db, info: &InstanceInfo, account: &RemoteAccount) -> Option<u64> {
    if account.domain.eq_ignore_ascii_case(&info.domain) {
        return db.local_account(&account.username).map(|a| a.id);
    }
    Some(upsert_remote_account(db, account))
}

/// Creates or refreshes the local record of a remote account, keyed by its
/// `uri`, and returns its local id.
fn upsert_remote_account(db: &mut Db, remote: &RemoteAccount) -> u64 {
    let known = db.account_by_uri(&remote.uri).map(|a| a.id);
    if let Some(id) = known
        && let Some(account) = db.accounts.get_mut(&id)
    {
        account.display_name.clone_from(&remote.display_name);
        account.note.clone_from(&remote.note);
        account.url.clone_from(&remote.url);
        account.bot = remote.bot;
        return id;
    }
    let id = db.ids.next_at(Utc::now());
    db.accounts.insert(
        id,
        Account {
            id,
            username: remote.username.clone(),
            domain: Some(remote.domain.to_ascii_lowercase()),
            display_name: remote.display_name.clone(),
            note: remote.note.clone(),
            token: None,
            created_at: remote.created_at,
            uri: remote.uri.clone(),
            url: remote.url.clone(),
            bot: remote.bot,
        },
    );
    id
}

/// Finds `username@domain` for `state`: a local account, a remote one already
/// known, or one of another sandbox instance, which it then records (as
/// Mastodon's `ResolveAccountService` does through WebFinger). `None` when no
/// instance of the sandbox has such an account.
pub(crate) fn resolve(state: &AppState, username: &str, domain: &str) -> Option<u64> {
    if domain.eq_ignore_ascii_case(&state.info.domain) {
        return state.db().local_account(username).map(|a| a.id);
    }
    let acct = format!("{username}@{domain}");
    if let Some(id) = state.db().account_by_acct(&acct, &state.info.domain).map(|a| a.id) {
        return Some(id);
    }
    let origin = state.federation.network.instance(domain)?;
    let snapshot = {
        let db = origin.db();
        RemoteAccount::of(db.local_account(username)?, &origin.info.domain)
    };
    let mut db = state.db();
    Some(upsert_remote_account(&mut db, &snapshot))
}

/// Tells the home instance of the remote account `followed` (a local record of
/// `state`) that the local account `follower` now follows it (or no longer
/// does), so that it delivers to `state` from now on. With `notify`, the
/// followed account gets a `follow` notification, as Mastodon sends.
///
/// The caller records the follow on its own side; this is the other side.
pub(crate) fn tell_home_instance(state: &AppState, follower: u64, followed: u64, follows: bool, notify: bool) {
    let known = {
        let db = state.db();
        match (db.accounts.get(&follower), db.accounts.get(&followed)) {
            (Some(follower), Some(followed)) => followed
                .domain
                .clone()
                .map(|domain| (RemoteAccount::of(follower, &state.info.domain), followed.username.clone(), domain)),
            _ => None,
        }
    };
    let Some((follower, username, domain)) = known else { return };
    let Some(home) = state.federation.network.instance(&domain) else {
        tracing::debug!(instance = %state.info.name, %domain, "sandbox follow of an unknown instance stays local");
        return;
    };
    let mut db = home.db();
    let Some(target) = db.local_account(&username).map(|a| a.id) else { return };
    let follower_id = upsert_remote_account(&mut db, &follower);
    if follows {
        if db.follows.insert((follower_id, target)) && notify {
            db.notify(target, NotificationKind::Follow, follower_id, None, Utc::now());
        }
    } else {
        db.follows.remove(&(follower_id, target));
    }
}

/// The seeded cross-instance follow: `username` of `state` follows `username`
/// of the instance `domain`, on both sides, without notifications (the seed is
/// the past). Does nothing when either account is missing.
pub(crate) fn seed_follow(state: &AppState, username: &str, domain: &str) {
    let Some(follower) = state.db().local_account(username).map(|a| a.id) else { return };
    let Some(followed) = resolve(state, username, domain) else { return };
    state.db().follows.insert((follower, followed));
    tell_home_instance(state, follower, followed, true, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_delays_stay_within_their_bounds_either_way_round() {
        let (low, high) = (Duration::from_millis(5), Duration::from_millis(9));
        for delay in [Delay::Uniform { min: low, max: high }, Delay::Uniform { min: high, max: low }] {
            for _ in 0..100 {
                let sampled = delay.sample();
                assert!((low..=high).contains(&sampled), "{sampled:?}");
            }
        }
        assert_eq!(Delay::Uniform { min: low, max: low }.sample(), low);
        assert_eq!(Delay::Fixed(high).sample(), high);
    }

    #[test]
    fn drop_knobs_decide_when_a_delivery_is_lost() {
        let knobs = Federation::new(&FederationConfig::default());
        assert!(!knobs.should_drop());
        knobs.set_drop_probability(1.0);
        assert!(knobs.should_drop());
        knobs.set_drop_probability(f64::NAN);
        assert!(!knobs.should_drop(), "NaN means never");
        knobs.set_drop_all(true);
        assert!(knobs.should_drop());
    }
}
