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
    /// that they survive the process (a CronJob run, a kill) and are sent by a
    /// later one. Only one process may use a spool directory at a time (enforced by
    /// an advisory lock). Default: none (samples wait in memory only, and what
    /// cannot be delivered at exit is dropped and counted).
    pub spool_dir: Option<PathBuf>,
    /// Most bytes the spool may hold; past it, the oldest spool files are deleted and
    /// their samples counted as dropped. Default: [`default_spool_max_bytes`] (256 MiB).
    pub spool_max_bytes: u64,
    /// Samples older than this are never sent: dropped and counted as expired.
    /// Default: [`default_max_sample_age`] (14 days).
    pub max_sample_age: Duration,
    /// Backoff between attempts of a retryable push; see [`RetryPolicy`] for which
    /// failures are retried.
    pub retry: RetryPolicy,
}

/// Default of [`RemoteWriteOptions::timeout`]: 10 s.
pub fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// How long a final flush (at exit or shutdown) may take by default: 30 s. Not a
/// sink option but the callers' bound on [`super::Sink::flush`]; kept here with
/// the sink's other defaults so that each default lives in one place.
pub fn default_flush_timeout() -> Duration {
    Duration::from_secs(30)
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

/// Default of [`RemoteWriteOptions::max_sample_age`]: 14 days. Below every
/// common receiver's default retention: VictoriaMetrics keeps one month and
/// silently drops (with a 2xx) what is older; Prometheus keeps 15 days. A sample
/// older than that would be "delivered" and stored nowhere, so it is counted as
/// lost instead. Two weeks is also far beyond any outage a spool is sized for
/// (256 MiB holds about a week of a busy probe's samples).
pub fn default_max_sample_age() -> Duration {
    Duration::from_secs(14 * 24 * 3600)
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
            max_sample_age: default_max_sample_age(),
            retry: RetryPolicy::default(),
        }
    }
}
