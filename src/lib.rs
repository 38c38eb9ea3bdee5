//! fediprobe: synthetic user-journey probes for Mastodon.
//!
//! See `ARCHITECTURE.md` for the map of the modules and the invariants they keep.

pub mod agent;
pub mod cli;
pub mod generate;
pub mod html;
pub mod metrics;
pub mod report;
pub mod runner;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod scheduler;
pub mod secret;
pub mod sink;
pub mod spec;
pub mod wiring;

/// The `User-Agent` of every request fediprobe makes, to instances and to the
/// metrics backend alike, so that operators can find (or exempt) the probe in
/// their logs.
pub const USER_AGENT: &str = concat!("fediprobe/", env!("CARGO_PKG_VERSION"));

/// Installs `ring` as the process-wide TLS crypto provider that reqwest's rustls
/// uses. Idempotent: every HTTP client builder calls it first, and calling it again
/// (or after another provider was installed) does nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
