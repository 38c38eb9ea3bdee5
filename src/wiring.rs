//! Building the run-time parts from a loaded config: the remote-write sink's
//! options with their secrets read, the control target, the leftover sweep's
//! bounds. Kept apart so that neither the spec nor the sink, nor the runner, has
//! to know the others. (Pointing the bundled journeys at the sandbox is the
//! sandbox's own job: `sandbox::probe_targets`.)

use std::time::Duration;

use crate::runner::ControlTarget;
use crate::runner::target::{SecretError, read_secret_following};
use crate::sink::remote_write::{Auth, RemoteWriteOptions};
use crate::spec::config::{RemoteWriteAuth, RemoteWriteConfig};

/// The remote-write credentials could not be read. Says where it looked, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("remote-write {what}: {cause}")]
pub struct RemoteWriteSecretError {
    /// Which credential: "bearer token" or "password".
    pub what: &'static str,
    /// Why it could not be read.
    pub cause: SecretError,
}

/// The sink options for `config` with `url_override` applied, and how long a
/// final flush may take; `Ok(None)` when there is nowhere to push. Errors are for
/// people (an unreadable password file) and never contain a secret.
pub fn remote_write_options(
    config: Option<&RemoteWriteConfig>,
    url_override: Option<&url::Url>,
) -> Result<Option<(RemoteWriteOptions, Duration)>, RemoteWriteSecretError> {
    let url = match (url_override, config) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => c.url.clone(),
        (None, None) => return Ok(None),
    };
    let mut options = RemoteWriteOptions::new(url);
    let Some(c) = config else { return Ok(Some((options, crate::sink::remote_write::default_flush_timeout()))) };
    // The sink lives as long as the process: its secret files are looked at again
    // as often as the agent looks at its config by default, so a rotated
    // password or token is used without a restart.
    let recheck = Some(crate::spec::config::AgentConfig::default().reload_check);
    let read_secret = |source| read_secret_following(source, recheck);
    options.auth = match &c.auth {
        None => None,
        Some(RemoteWriteAuth::Bearer(source)) => Some(Auth::Bearer(
            read_secret(source).map_err(|cause| RemoteWriteSecretError { what: "bearer token", cause })?,
        )),
        Some(RemoteWriteAuth::Basic { username, password }) => Some(Auth::Basic {
            username: username.clone(),
            password: read_secret(password).map_err(|cause| RemoteWriteSecretError { what: "password", cause })?,
        }),
    };
    options.headers = c.headers.clone();
    options.timeout = c.timeout;
    options.spool_dir = c.spool_dir.clone();
    options.spool_max_bytes = c.spool_max_bytes;
    options.queue_capacity_samples = c.queue_capacity;
    options.max_sample_age = c.max_sample_age;
    Ok(Some((options, c.flush_timeout)))
}

/// Where the probe checks its own network: `probe.control_url`, or none. Never
/// the metrics backend: its outage must not change whose fault an instance's
/// network failure is (without a control target, it is the instance's).
pub fn control_target(config: &crate::spec::Config) -> Option<ControlTarget> {
    ControlTarget::of_url(config.probe.control_url.as_ref()?)
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

/// Runs the leftover sweep on every instance within [`SWEEP_TIMEOUT`].
pub async fn sweep(runner: &crate::runner::Runner, min_age: Duration) {
    sweep_within_timeout(runner.sweep_leftovers(min_age, None)).await;
}

/// Runs the leftover sweep within [`SWEEP_TIMEOUT`] as the probe accounts the
/// `runs` (one copy of a journey per account) post marked statuses as, on the
/// instances they post them on, the only ones they can leave a leftover on: what
/// `fediprobe once` does after its runs (and what `check` counts).
pub async fn sweep_after(runner: &crate::runner::Runner, min_age: Duration, runs: &[crate::spec::Journey]) {
    let mut accounts: Vec<(String, Option<String>)> =
        runs.iter().flat_map(crate::spec::limits::leaves_statuses_as).collect();
    accounts.sort();
    accounts.dedup();
    if accounts.is_empty() {
        return;
    }
    sweep_within_timeout(runner.sweep_leftovers(min_age, Some(&accounts))).await;
}

async fn sweep_within_timeout(sweep: impl std::future::Future<Output = Vec<crate::runner::sweep::SweepReport>>) {
    if tokio::time::timeout(SWEEP_TIMEOUT, sweep).await.is_err() {
        tracing::warn!("the leftover sweep did not finish within {SWEEP_TIMEOUT:?}; the next one tries again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(probe: &str) -> crate::spec::Config {
        let text = format!(
            "probe: {{ region: eu-west{probe} }}\ninstances:\n  main: {{ url: https://mastodon.example, account: probe, token: {{ env: T }} }}\nremote_write: {{ url: 'http://victoria-metrics:8428/api/v1/write' }}\n"
        );
        let (config, diagnostics) = crate::spec::parse_config_str(std::path::Path::new("f.yaml"), &text);
        config.unwrap_or_else(|| panic!("{diagnostics}"))
    }

    #[test]
    fn the_metrics_backend_is_never_the_control_target() {
        assert_eq!(control_target(&config("")), None);
        let chosen = control_target(&config(", control_url: 'https://connectivitycheck.gstatic.com'")).unwrap();
        assert_eq!(chosen.to_string(), "connectivitycheck.gstatic.com:443");
    }
}
