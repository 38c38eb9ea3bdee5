//! The instances a run talks to, with their tokens read from where the config
//! says (environment or file). Reading happens once per process (and per reload),
//! not per run.

use crate::secret::Secret;
use crate::spec::{Config, TokenSource};

/// One instance, ready to be probed.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub base_url: url::Url,
    /// The probe account's user name.
    pub account: String,
    /// The token, or why it could not be read (a run using it ends in `probe_error`).
    pub token: Result<Secret, String>,
}

impl Target {
    pub fn new(name: impl Into<String>, base_url: url::Url, account: impl Into<String>, token: Secret) -> Self {
        Target { name: name.into(), base_url, account: account.into(), token: Ok(token) }
    }
}

/// Reads a secret from its source. The error says where it looked, never a value.
pub fn read_secret(source: &TokenSource) -> Result<Secret, String> {
    let secret = match source {
        TokenSource::Env(name) => match std::env::var(name) {
            Ok(value) => Secret::new(value),
            Err(_) => return Err(format!("environment variable {name} is not set")),
        },
        TokenSource::File(path) => match std::fs::read_to_string(path) {
            Ok(value) => Secret::new(value),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        },
    };
    if secret.is_empty() {
        return Err(format!("{source} is empty"));
    }
    Ok(secret)
}

/// The config's instances with their tokens.
pub fn targets_from_config(config: &Config) -> Vec<Target> {
    config
        .instances
        .iter()
        .map(|i| Target {
            name: i.name.clone(),
            base_url: i.url.clone(),
            account: i.account.clone(),
            token: read_secret(&i.token).map_err(|e| format!("the token of instance `{}`: {e}", i.name)),
        })
        .collect()
}
