//! The instances a run talks to, one [`Target`] per probe account (the primary
//! account's first), with their tokens read from where the config says
//! (environment or file). A variable is read once per process (and per
//! reload); a file is read at start and looked at again every `agent.reload_check`
//! when the token is used (see [`Secret::following`]), so a rotated Kubernetes
//! Secret is used without a restart, like a changed ConfigMap.

use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;
use crate::spec::{Config, TokenSource};

/// One instance and one of its probe accounts, ready to be probed.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub base_url: url::Url,
    /// The probe account's user name.
    pub account: String,
    /// Whether this is the instance's primary account (`account:` in the
    /// config), which journeys run as unless they choose others.
    pub primary: bool,
    /// The token, or why it could not be read (a run using it ends in `probe_error`).
    pub token: Result<Secret, TokenError>,
    /// Hosts besides the instance's own and its parent domain's that the token may
    /// be sent to for streaming (the config's `streaming_hosts`).
    pub streaming_hosts: Vec<String>,
}

impl Target {
    pub fn new(name: impl Into<String>, base_url: url::Url, account: impl Into<String>, token: Secret) -> Self {
        Target {
            name: name.into(),
            base_url,
            account: account.into(),
            primary: true,
            token: Ok(token),
            streaming_hosts: Vec::new(),
        }
    }

    /// The same instance as another of its probe accounts (not the primary).
    pub fn as_account(&self, account: impl Into<String>, token: Secret) -> Self {
        Target { account: account.into(), primary: false, token: Ok(token), ..self.clone() }
    }
}

/// Why a secret could not be read. Says where it looked, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The environment variable the config names is not set.
    #[error("environment variable {0} is not set")]
    EnvNotSet(String),
    /// The file the config names cannot be read.
    #[error("cannot read {}: {message}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        message: String,
    },
    /// The variable or file is there but empty (the source, as the config says it).
    #[error("{0} is empty")]
    Empty(String),
}

/// An instance's token could not be read: a run that needs it is a `probe_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token of {}instance `{instance}`: {cause}", account.as_ref().map(|a| format!("account `{a}` on ")).unwrap_or_default())]
pub struct TokenError {
    /// The instance's name in the config.
    pub instance: String,
    /// The probe account's user name, for an account other than the primary.
    pub account: Option<String>,
    /// What went wrong.
    pub cause: SecretError,
}

/// Reads a secret from its source, once. The error says where it looked, never a value.
pub fn read_secret(source: &TokenSource) -> Result<Secret, SecretError> {
    read_secret_following(source, None)
}

/// Reads a secret from its source; one from a file follows the file, looking at it
/// again every `recheck` when used (`None` or zero: never). The error says where
/// it looked, never a value.
pub fn read_secret_following(source: &TokenSource, recheck: Option<Duration>) -> Result<Secret, SecretError> {
    let secret = match source {
        TokenSource::Env(name) => match std::env::var(name) {
            Ok(value) => Secret::new(value),
            Err(_) => return Err(SecretError::EnvNotSet(name.clone())),
        },
        TokenSource::File(path) => match std::fs::read_to_string(path) {
            Ok(value) => match recheck.filter(|every| !every.is_zero()) {
                Some(every) => Secret::following(value, path, every),
                None => Secret::new(value),
            },
            Err(e) => return Err(SecretError::Unreadable { path: path.clone(), message: e.to_string() }),
        },
    };
    if secret.is_empty() {
        return Err(SecretError::Empty(source.to_string()));
    }
    Ok(secret)
}

/// The config's instances with their tokens, a target per probe account (each
/// instance's primary account first); token files are looked at again every
/// `agent.reload_check`.
pub fn targets_from_config(config: &Config) -> Vec<Target> {
    let recheck = Some(config.agent.reload_check);
    let mut targets = Vec::new();
    for i in &config.instances {
        let primary = std::iter::once((&i.account, &i.token, true));
        let others = i.extra_accounts.iter().map(|a| (&a.name, &a.token, false));
        for (account, source, is_primary) in primary.chain(others) {
            targets.push(Target {
                name: i.name.clone(),
                base_url: i.url.clone(),
                account: account.clone(),
                primary: is_primary,
                token: read_secret_following(source, recheck).map_err(|cause| TokenError {
                    instance: i.name.clone(),
                    account: (!is_primary).then(|| account.clone()),
                    cause,
                }),
                streaming_hosts: i.streaming_hosts.clone(),
            });
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_followed_when_a_recheck_is_given_and_read_once_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.token");
        std::fs::write(&path, "target-old-token-0123456789\n").unwrap();
        let source = TokenSource::File(path.clone());
        let followed = read_secret_following(&source, Some(Duration::from_nanos(1))).unwrap();
        let once = read_secret(&source).unwrap();
        let never = read_secret_following(&source, Some(Duration::ZERO)).unwrap();
        std::fs::write(&path, "target-new-token-9876543210\n").unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(followed.expose(), "target-new-token-9876543210");
        assert_eq!(once.expose(), "target-old-token-0123456789");
        assert_eq!(never.expose(), "target-old-token-0123456789", "`reload_check: 0s` reads once");
    }

    #[test]
    fn an_unreadable_or_empty_source_says_where_it_looked_without_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TokenSource::File(dir.path().join("missing.token"));
        assert!(read_secret(&missing).unwrap_err().to_string().contains("missing.token"));
        let empty = dir.path().join("empty.token");
        std::fs::write(&empty, "\n").unwrap();
        assert!(read_secret(&TokenSource::File(empty)).unwrap_err().to_string().contains("is empty"));
    }
}
