//! The bundled journeys pointed at the sandbox: which sandbox instance stands for
//! each instance name the journeys use, and the runner's targets for them with the
//! instances' `probe` accounts. Used by `fediprobe demo`, `fediprobe sandbox
//! --write-config`, the tests and the benchmarks.

use crate::runner::Target;

use super::Sandbox;

/// The bundled journeys' instance names, and the sandbox instance each stands for.
pub const PROBE_INSTANCES: &[(&str, &str)] = &[("main", "alpha"), ("peer", "beta")];

/// Targets for the bundled journeys' instance names, pointing at the sandbox's
/// instances and their `probe` accounts.
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
