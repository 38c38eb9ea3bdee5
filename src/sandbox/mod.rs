//! The sandbox: simulated Mastodon 4.x instances in one process, each a real
//! HTTP/1.1 server on its own loopback port, standing in for real servers in the
//! probe's tests, in `fediprobe demo` and in `fediprobe sandbox`.
//!
//! It owns being *faithful*: the same JSON entities, error bodies, headers, paging
//! and rate limits as Mastodon, held to `shared/mastodon-api/openapi.json` by
//! `tests/sandbox_openapi.rs`; and *breakable* on purpose through [`Faults`].
//!
//! Code map: `server.rs` (accept loop, faults on the wire), `routes/` (the REST
//! API), `state.rs` (records and visibility rules), `entities.rs` (JSON shapes),
//! `ratelimit.rs` (limits and headers), `faults.rs` (fault rules), `seed.rs`
//! (starting data).

mod entities;
mod faults;
mod ratelimit;
mod routes;
mod seed;
mod server;
mod state;

use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::secret::Secret;
pub use faults::{Fault, Faults};
pub use ratelimit::{Limit, RateLimits};

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
}

impl InstanceConfig {
    pub fn new(name: impl Into<String>) -> InstanceConfig {
        InstanceConfig { name: name.into(), limits: RateLimits::default() }
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
    /// `NAME.sandbox.test`, the domain in `acct`s and in `/api/v2/instance`.
    pub domain: String,
    /// The seeded local accounts: `probe`, `alice` and `bob`.
    pub accounts: Vec<AccountHandle>,
    faults: Faults,
}

impl InstanceHandle {
    pub fn account(&self, username: &str) -> Option<&AccountHandle> {
        self.accounts.iter().find(|a| a.username == username)
    }

    /// The fault rules of this instance, shared with its server.
    pub fn faults(&self) -> &Faults {
        &self.faults
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
    /// Binds a loopback port per instance, seeds it, and starts serving.
    pub async fn start(config: SandboxConfig) -> std::io::Result<Sandbox> {
        let (stop, stop_rx) = watch::channel(false);
        let mut sandbox = Sandbox { instances: Vec::new(), stop, tasks: Vec::new() };
        for instance in config.instances {
            if sandbox.instance(&instance.name).is_some() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("two sandbox instances are named {:?}", instance.name),
                ));
            }
            let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
            let base_url = format!("http://{}", listener.local_addr()?);
            let info = entities::InstanceInfo {
                name: instance.name.clone(),
                domain: format!("{}.sandbox.test", instance.name),
                base_url: base_url.clone(),
            };
            let db = seed::seed(&info);
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
            let state = Arc::new(routes::AppState {
                info: info.clone(),
                db: Mutex::new(db),
                limiter: ratelimit::RateLimiter::new(instance.limits.clone()),
            });
            let faults = Faults::default();
            let task = tokio::spawn(server::serve(
                instance.name.clone(),
                listener,
                routes::router(state),
                faults.clone(),
                stop_rx.clone(),
            ));
            tracing::info!(instance = %instance.name, %base_url, "sandbox instance listening");
            sandbox.tasks.push(task);
            sandbox.instances.push(InstanceHandle {
                name: instance.name,
                base_url,
                domain: info.domain,
                accounts,
                faults,
            });
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

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
