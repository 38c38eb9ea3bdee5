//! The bundled journeys pointed at the sandbox: which sandbox instance stands for
//! each instance name the journeys use, and the runner's targets for them with the
//! instances' `probe` accounts (and, on `main`, the `busy` account too: a user
//! with a long home timeline). Used by `fediprobe demo`, `fediprobe sandbox
//! --write-config`, the tests and the benchmarks.

use crate::runner::Target;

use super::Sandbox;

/// The bundled journeys' instance names, and the sandbox instance each stands for.
pub const PROBE_INSTANCES: &[(&str, &str)] = &[("main", "alpha"), ("peer", "beta")];

/// The probe accounts besides `probe` that the demo and `sandbox
/// --write-config` use, per instance name: `main` is also probed as `busy`,
/// which follows hundreds (see `seed.rs`), so that the journeys run as every
/// account (`accounts: all`) show how the two users' service differs.
pub const EXTRA_PROBE_ACCOUNTS: &[(&str, &str)] = &[("main", "busy")];

/// Targets for the bundled journeys' instance names, pointing at the sandbox's
/// instances and their `probe` accounts (the primary ones).
pub fn probe_targets(sandbox: &Sandbox) -> Vec<Target> {
    PROBE_INSTANCES
        .iter()
        .filter_map(|(name, sandbox_name)| {
            let instance = sandbox.instance(sandbox_name)?;
            let account = instance.account("probe")?;
            let url = url::Url::parse(&instance.base_url).ok()?;
            Some(Target::new(*name, url, account.username.clone(), account.token.clone()))
        })
        .collect()
}

/// [`probe_targets`] and, after each instance's primary account, its
/// [`EXTRA_PROBE_ACCOUNTS`]: what the demo probes.
pub fn probe_targets_with_accounts(sandbox: &Sandbox) -> Vec<Target> {
    let mut out = Vec::new();
    for primary in probe_targets(sandbox) {
        let sandbox_name = PROBE_INSTANCES.iter().find(|(name, _)| *name == primary.name).map(|(_, s)| *s);
        let others: Vec<Target> = EXTRA_PROBE_ACCOUNTS
            .iter()
            .filter(|(name, _)| *name == primary.name)
            .filter_map(|(_, username)| {
                let account = sandbox.instance(sandbox_name?)?.account(username)?;
                Some(primary.as_account(account.username.clone(), account.token.clone()))
            })
            .collect();
        out.push(primary);
        out.extend(others);
    }
    out
}
