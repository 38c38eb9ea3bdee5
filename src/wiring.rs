//! Building the run-time parts from a loaded config: the remote-write sink's
//! options with their secrets read, the control target, the leftover sweep's
//! bounds. Kept apart so that neither the spec nor the sink, nor the runner, has
//! to know the others. (Pointing the bundled journeys at the sandbox is the
//! sandbox's own job: `sandbox::probe_targets`.)

use std::time::Duration;

use crate::runner::ControlTarget;
use crate::runner::target::read_secret;
use crate::sink::remote_write::{Auth, RemoteWriteOptions};
use crate::spec::config::{DEFAULT_FLUSH_TIMEOUT, RemoteWriteAuth, RemoteWriteConfig};

/// The sink options for `config` with `url_override` applied, and how long a
/// final flush may take; `Ok(None)` when there is nowhere to push. Errors are for
/// people (an unreadable password file) and never contain a secret.
pub fn remote_write_options(
    config: Option<&RemoteWriteConfig>,
    url_override: Option<&url::Url>,
) -> Result<Option<(RemoteWriteOptions, Duration)>, String> {
    let url = match (url_override, config) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => c.url.clone(),
        (None, None) => return Ok(None),
    };
    let mut options = RemoteWriteOptions::new(url);
    let Some(c) = config else { return Ok(Some((options, DEFAULT_FLUSH_TIMEOUT))) };
    options.auth = match &c.auth {
        None => None,
        Some(RemoteWriteAuth::Bearer(source)) => {
            Some(Auth::Bearer(read_secret(source).map_err(|e| format!("remote-write bearer token: {e}"))?))
        }
        Some(RemoteWriteAuth::Basic { username, password }) => Some(Auth::Basic {
            username: username.clone(),
            password: read_secret(password).map_err(|e| format!("remote-write password: {e}"))?,
        }),
    };
    options.headers = c.headers.clone();
    options.timeout = c.timeout;
    options.spool_dir = c.spool_dir.clone();
    options.spool_max_bytes = c.spool_max_bytes;
    options.queue_capacity_samples = c.queue_capacity;
    Ok(Some((options, c.flush_timeout)))
}

/// Where the probe checks its own network (see `probe.control_url`): the
/// configured control URL, else the remote-write URL in effect (`url_override`
/// first), else none.
pub fn control_target(config: &crate::spec::Config, url_override: Option<&url::Url>) -> Option<ControlTarget> {
    let url = config.probe.control_url.as_ref().or(url_override).or(config.remote_write.as_ref().map(|r| &r.url))?;
    ControlTarget::of_url(url)
}

/// How old a marked status must be before the leftover sweep deletes it: the
/// longest deadline of the config's journeys (all of them, not only those a
/// command runs), so that no run still in flight loses its post.
pub fn sweep_min_age(journeys: &[crate::spec::Journey]) -> Duration {
    journeys.iter().map(|j| j.deadline).max().unwrap_or(crate::spec::journey::DEFAULT_DEADLINE)
}

/// How long a leftover sweep may take in all, so that a hung instance cannot
/// hold up the runs behind it.
pub const SWEEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the leftover sweep within [`SWEEP_TIMEOUT`].
pub async fn sweep(runner: &crate::runner::Runner, min_age: Duration) {
    if tokio::time::timeout(SWEEP_TIMEOUT, runner.sweep_leftovers(min_age)).await.is_err() {
        tracing::warn!("the leftover sweep did not finish within {SWEEP_TIMEOUT:?}; the next one tries again");
    }
}
