//! Options of the remote-write sink: where to push, how to authenticate, how much
//! to hold in memory and on disk, and how to retry.
//!
//! Every field has its default in a named function next to it, and its unit in its
//! name or type (`Duration`, `_bytes`, `_samples`).

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::retry::RetryPolicy;
use crate::secret::Secret;

/// How the sink authenticates to the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// HTTP basic authentication (`Authorization: Basic …`).
    Basic {
        /// The user name; not secret, may appear in logs.
        username: String,
        /// The password; never logged (see [`Secret`]).
        password: Secret,
    },
    /// A bearer token (`Authorization: Bearer …`); never logged.
    Bearer(Secret),
}

/// Options of the remote-write sink.
///
/// Example (what `fediprobe once` builds from the config file):
///
/// ```
/// # use fediprobe::sink::remote_write::RemoteWriteOptions;
/// let mut options = RemoteWriteOptions::new("http://127.0.0.1:8428/api/v1/write".parse().unwrap());
/// options.headers.push(("X-Scope-OrgID".into(), "probes".into()));
/// options.spool_dir = Some("/var/lib/fediprobe/spool".into());
/// ```
#[derive(Debug, Clone)]
pub struct RemoteWriteOptions {
    /// The receiver's write endpoint, e.g. `http://victoria:8428/api/v1/write`.
    /// Must be `http` or `https`; credentials belong in [`auth`](Self::auth), never
    /// in the URL (a URL with a password is refused, since URLs end up in logs).
    pub url: Url,
    /// Authentication, if the receiver needs it. Default: none.
    pub auth: Option<Auth>,
    /// Extra headers sent with every push, e.g. `X-Scope-OrgID` for multi-tenant
    /// receivers. They cannot replace the four remote-write headers. Default: none.
    pub headers: Vec<(String, String)>,
    /// Time limit of one push request, from connecting to reading the response.
    /// Default: [`default_timeout`] (10 s).
    pub timeout: Duration,
    /// Most samples in one push request. Default: [`default_max_batch_samples`] (5000).
    pub max_batch_samples: usize,
    /// Most samples waiting in memory. When a push would exceed it, the oldest
    /// samples spill to the spool (or, without a spool, are dropped and counted).
    /// Default: [`default_queue_capacity_samples`] (100 000).
    pub queue_capacity_samples: usize,
    /// Directory where samples wait on disk while the receiver is unreachable, so
    /// that they survive the process (a CronJob run) and are sent by a later one.
    /// Only one process may use a spool directory at a time. Default: none (samples
    /// that cannot be delivered are dropped and counted).
    pub spool_dir: Option<PathBuf>,
    /// Most bytes the spool may hold; past it, the oldest spool files are deleted and
    /// their samples counted as dropped. Default: [`default_spool_max_bytes`] (256 MiB).
    pub spool_max_bytes: u64,
    /// Backoff between attempts of a retryable push; see [`RetryPolicy`] for which
    /// failures are retried.
    pub retry: RetryPolicy,
}

/// Default of [`RemoteWriteOptions::timeout`]: 10 s.
pub fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Default of [`RemoteWriteOptions::max_batch_samples`]: 5000.
pub fn default_max_batch_samples() -> usize {
    5000
}

/// Default of [`RemoteWriteOptions::queue_capacity_samples`]: 100 000.
pub fn default_queue_capacity_samples() -> usize {
    100_000
}

/// Default of [`RemoteWriteOptions::spool_max_bytes`]: 256 MiB.
pub fn default_spool_max_bytes() -> u64 {
    256 * 1024 * 1024
}

impl RemoteWriteOptions {
    /// Options with every default, pushing to `url`.
    pub fn new(url: Url) -> Self {
        RemoteWriteOptions {
            url,
            auth: None,
            headers: Vec::new(),
            timeout: default_timeout(),
            max_batch_samples: default_max_batch_samples(),
            queue_capacity_samples: default_queue_capacity_samples(),
            spool_dir: None,
            spool_max_bytes: default_spool_max_bytes(),
            retry: RetryPolicy::default(),
        }
    }
}
