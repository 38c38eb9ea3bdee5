//! The sandbox: simulated Mastodon 4.x instances in one process, each a real
//! HTTP/1.1 server on its own loopback port, standing in for real servers in the
//! probe's tests, in `fediprobe demo` and in `fediprobe sandbox`.
//!
//! It owns being *faithful*: the same JSON entities, error bodies, headers, paging
//! and rate limits as Mastodon, held to the Mastodon OpenAPI document vendored in `tests/vendor/mastodon-openapi/` by
//! `tests/sandbox_openapi.rs`; and *breakable* on purpose through [`Faults`].
//!
//! The instances of one sandbox federate with each other (`federation.rs`):
//! accounts follow accounts of other instances, and statuses reach followers
//! there through a delivery queue per instance, with its own delay, backlog and
//! losses. Each instance serves Mastodon's streaming API on its own port
//! (`streaming.rs`), so a probe can see a federated status arrive.
//!
//! The sandbox is a tool for the demo, the tests and journey writers, never part
//! of a probe: it is compiled only with the `sandbox` cargo feature (on by
//! default, off in the production image), and nothing outside it and the `demo`
//! and `sandbox` commands refers to it.
//!
//! Code map: `server.rs` (accept loop, faults on the wire), `routes/` (the REST
//! API), `streaming.rs` (the websocket and its events), `federation.rs` (remote
//! accounts, cross-instance follows, delivery queues), `state.rs` (records and
//! visibility rules), `entities.rs` (JSON shapes), `ratelimit.rs` (limits and
//! headers), `faults.rs` (fault rules), `seed.rs` (starting data), `targets.rs` (the
//! bundled journeys' instances pointed at the sandbox's).
//!
//! Seeded data: on every instance the local accounts `probe`, `alice` and `bob`,
//! and `busy`, a second probe account following hundreds of local accounts
//! (see `seed.rs`), and, unless [`FederationConfig::seed_probe_follows`] is off,
//! a follow from each instance's `probe` to the `probe` of every other instance.

mod entities;
mod faults;
mod federation;
mod ratelimit;
mod routes;
mod seed;
mod server;
mod state;
mod streaming;
mod targets;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::secret::Secret;
pub use faults::{Fault, Faults};
pub use federation::{Delay, Federation, FederationConfig, FederationStats};
pub use ratelimit::{Limit, RateLimits};
pub use seed::BUSY_FOLLOWS;
pub use targets::{EXTRA_PROBE_ACCOUNTS, PROBE_INSTANCES, probe_targets, probe_targets_with_accounts};

/// Mastodon's streaming server pings every socket this often.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Which instances to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxConfig {
    pub instances: Vec<InstanceConfig>,
}

impl Default for SandboxConfig {
    /// Two instances, `alpha` and `beta`.
    fn default() -> Self {
        SandboxConfig { instances: vec![InstanceConfig::new("alpha"), InstanceConfig::new("beta")] }
    }
}

/// One simulated instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceConfig {
    /// Short name; the instance's domain is `NAME.sandbox.test`. Default: `alpha`.
    pub name: String,
    /// Rate limits. Default: Mastodon's (see [`RateLimits`]); tests lower them to
    /// reach them quickly.
    pub limits: RateLimits,
    /// How often the streaming API pings each websocket; a socket that has not
    /// answered the previous ping by the next one is closed. Default: 30 s
    /// ([`DEFAULT_PING_INTERVAL`]); tests shorten it. Example: `Duration::from_millis(200)`.
    pub streaming_ping_interval: Duration,
    /// How this instance's statuses travel to other instances. Default: see
    /// [`FederationConfig`] (50–150 ms, nothing lost, probes follow each other).
    pub federation: FederationConfig,
    /// A split domain, as GoToSocial allows: the accounts are
    /// `user@ACCOUNT_DOMAIN` while the API is served as `NAME.sandbox.test`;
    /// `/api/v2/instance` then says `domain: NAME.sandbox.test` and
    /// `account_domain: ACCOUNT_DOMAIN`. Default none: one domain, as Mastodon.
    /// Example: `Some("people.sandbox.test".into())`.
    pub account_domain: Option<String>,
    /// Secure mode, Mastodon's `AUTHORIZED_FETCH`: an unsigned fetch of an actor
    /// document (`GET /users/NAME` for `application/activity+json`) answers 401.
    /// Default false, as Mastodon's default. Example: `true`.
    pub authorized_fetch: bool,
    /// How long uploaded media take to process. Zero (the default) is Mastodon's
    /// way with images: `POST /api/v2/media` answers 200 with the `url`. Longer is
    /// its way with video and audio: 202 with `url: null`, and `GET
    /// /api/v1/media/:id` answers 206 until the time has passed, then 200.
    /// Example: `Duration::from_millis(300)`.
    pub media_processing: Duration,
    /// How long a new status takes to become findable by full-text search
    /// (`/api/v2/search?type=statuses`): Mastodon indexes statuses in
    /// Elasticsearch or OpenSearch from a Sidekiq job. Default zero.
    /// Example: `Duration::from_millis(800)`.
    pub search_index_delay: Duration,
}

impl InstanceConfig {
    pub fn new(name: impl Into<String>) -> InstanceConfig {
        InstanceConfig {
            name: name.into(),
            limits: RateLimits::default(),
            streaming_ping_interval: DEFAULT_PING_INTERVAL,
            federation: FederationConfig::default(),
            account_domain: None,
            authorized_fetch: false,
            media_processing: Duration::ZERO,
            search_index_delay: Duration::ZERO,
        }
    }
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig::new("alpha")
    }
}

/// A seeded account and its access token.
#[derive(Clone, Debug)]
pub struct AccountHandle {
    pub username: String,
    pub id: String,
    pub token: Secret,
}

/// A running instance.
#[derive(Clone, Debug)]
pub struct InstanceHandle {
    pub name: String,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// The domain in `acct`s: `NAME.sandbox.test`, as `/api/v2/instance` says
    /// (or, with a split domain, its `account_domain`).
    pub domain: String,
    /// The seeded local accounts with tokens: `probe`, `alice`, `bob` and `busy`.
    pub accounts: Vec<AccountHandle>,
    faults: Faults,
    federation: Federation,
}

impl InstanceHandle {
    pub fn account(&self, username: &str) -> Option<&AccountHandle> {
        self.accounts.iter().find(|a| a.username == username)
    }

    /// The fault rules of this instance, shared with its server.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The federation and streaming knobs of this instance, shared with it.
    pub fn federation(&self) -> &Federation {
        &self.federation
    }

    /// `ws://127.0.0.1:PORT`, as `/api/v2/instance` gives it in
    /// `configuration.urls.streaming`; the websocket is at `/api/v1/streaming`.
    pub fn streaming_url(&self) -> String {
        self.base_url.replacen("http://", "ws://", 1)
    }
}

/// Running simulated instances. Dropping it stops them too; [`Sandbox::shutdown`]
/// also waits until they have stopped.
#[derive(Debug)]
pub struct Sandbox {
    instances: Vec<InstanceHandle>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sandbox {
    /// Binds a loopback port per instance, seeds it, connects the instances to
    /// each other, and starts serving.
    pub async fn start(config: SandboxConfig) -> std::io::Result<Sandbox> {
        let (stop, stop_rx) = watch::channel(false);
        let mut sandbox = Sandbox { instances: Vec::new(), stop, tasks: Vec::new() };
        let network = Arc::new(federation::Network::default());
        let mut started = Vec::new();
        for (index, instance) in config.instances.into_iter().enumerate() {
            if sandbox.instance(&instance.name).is_some() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("two sandbox instances are named {:?}", instance.name),
                ));
            }
            let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
            let base_url = format!("http://{}", listener.local_addr()?);
            let host = format!("{}.sandbox.test", instance.name);
            let info = entities::InstanceInfo {
                name: instance.name.clone(),
                domain: instance.account_domain.clone().unwrap_or_else(|| host.clone()),
                host,
                base_url: base_url.clone(),
                authorized_fetch: instance.authorized_fetch,
                media_processing: instance.media_processing,
                search_index_delay: instance.search_index_delay,
            };
            let db = seed::seed(&info, id_salt(index));
            let accounts = db
                .accounts
                .values()
                .filter_map(|a| {
                    a.token.as_ref().map(|token| AccountHandle {
                        username: a.username.clone(),
                        id: a.id.to_string(),
                        token: Secret::new(token.clone()),
                    })
                })
                .collect();
            let knobs = Federation::new(&instance.federation);
            let (node, queue) = federation::Node::new(Arc::clone(&network), knobs.clone());
            let streams = streaming::Hub::new(instance.streaming_ping_interval, knobs.clone(), stop_rx.clone());
            let state = Arc::new(routes::AppState {
                info: info.clone(),
                db: Mutex::new(db),
                limiter: ratelimit::RateLimiter::new(instance.limits.clone()),
                streams,
                federation: node,
            });
            network.register(&state);
            sandbox.tasks.push(tokio::spawn(federation::run_queue(
                instance.name.clone(),
                queue,
                Arc::clone(&network),
                knobs.clone(),
                stop_rx.clone(),
            )));
            started.push((listener, Arc::clone(&state), instance.federation.seed_probe_follows));
            sandbox.instances.push(InstanceHandle {
                name: instance.name,
                base_url,
                domain: info.domain,
                accounts,
                faults: Faults::default(),
                federation: knobs,
            });
        }
        for (_, state, seed_follows) in &started {
            for (_, other, _) in started.iter().filter(|(_, other, _)| *seed_follows && !Arc::ptr_eq(state, other)) {
                federation::seed_follow(state, "probe", &other.info.domain);
            }
        }
        for ((listener, state, _), handle) in started.into_iter().zip(&sandbox.instances) {
            let task = tokio::spawn(server::serve(
                handle.name.clone(),
                listener,
                routes::router(state),
                handle.faults.clone(),
                stop_rx.clone(),
            ));
            tracing::info!(instance = %handle.name, base_url = %handle.base_url, "sandbox instance listening");
            sandbox.tasks.push(task);
        }
        Ok(sandbox)
    }

    pub fn instances(&self) -> &[InstanceHandle] {
        &self.instances
    }

    pub fn instance(&self, name: &str) -> Option<&InstanceHandle> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// Stops every instance and waits until their connections are closed.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            if let Err(error) = task.await {
                tracing::warn!(%error, "sandbox instance task failed");
            }
        }
    }
}

/// The per-instance start of the sequence part of ids (see `IdGenerator`): 4099
/// is odd, so the first 65,536 instances all get different salts.
fn id_salt(index: usize) -> u16 {
    u16::try_from(index.wrapping_mul(4099) % 65_536).unwrap_or(0)
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
