//! `fediprobe sandbox`: simulated Mastodon instances on loopback, kept up until
//! Ctrl-C, for writing and trying journeys. With `--write-config DIR` it also
//! writes a config and token files there, so that `fediprobe once -c DIR/fediprobe.yaml`
//! runs the bundled journeys against it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::sandbox::{InstanceConfig, Sandbox, SandboxConfig};

use crate::sandbox::{EXTRA_PROBE_ACCOUNTS, PROBE_INSTANCES};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many instances to start (named alpha, beta, gamma, …).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=6))]
    instances: u8,
    /// Write `fediprobe.yaml` and the probe accounts' token files into this folder.
    #[arg(long, value_name = "DIR")]
    write_config: Option<PathBuf>,
}

const NAMES: &[&str] = &["alpha", "beta", "gamma", "delta", "epsilon", "zeta"];

pub async fn run(args: Args) -> ExitCode {
    let config = SandboxConfig {
        instances: NAMES[..args.instances as usize]
            .iter()
            .map(|n| InstanceConfig { name: (*n).to_owned(), ..Default::default() })
            .collect(),
    };
    let sandbox = match Sandbox::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the sandbox on loopback: {e}");
            return ExitCode::FAILURE;
        }
    };
    for instance in sandbox.instances() {
        println!("{} at {} (streaming {})", instance.name, instance.base_url, instance.streaming_url());
        for account in &instance.accounts {
            println!("  @{} (id {})", account.username, account.id);
        }
    }
    if let Some(dir) = &args.write_config {
        match write_config(&sandbox, dir) {
            Ok(path) => println!(
                "\nwrote {} (tokens and the bundled journeys beside it); try: fediprobe once -c {}",
                path.display(),
                path.display()
            ),
            Err(e) => {
                eprintln!("error: cannot write the config into {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        }
    }
    println!("\nsandbox running; Ctrl-C stops it");
    let _ = tokio::signal::ctrl_c().await;
    sandbox.shutdown().await;
    ExitCode::SUCCESS
}

/// Writes a config for the bundled journeys' instance names, with each probe
/// account's token in a file readable by the owner only, and the bundled
/// journeys in `DIR/journeys/` to edit (files already there are kept: they may
/// be journeys being written).
pub fn write_config(sandbox: &Sandbox, dir: &Path) -> std::io::Result<PathBuf> {
    // The folder holds the token files: private to the user (0700), fixed when it
    // was there with a looser mode; the token files themselves are written 0600.
    crate::secret::private_dir(dir)?;
    let journeys = dir.join("journeys");
    std::fs::create_dir_all(&journeys)?;
    for (path, text) in crate::spec::bundled::BUNDLED {
        let file = journeys.join(Path::new(path).file_name().unwrap_or_default());
        if !file.exists() {
            std::fs::write(file, text)?;
        }
    }
    let mut yaml =
        String::from("# Written by `fediprobe sandbox --write-config`: points the bundled journeys at the sandbox.\n");
    yaml.push_str("probe:\n  region: local\ninstances:\n");
    for (name, sandbox_name) in PROBE_INSTANCES {
        let Some(instance) = sandbox.instance(sandbox_name) else { continue };
        let Some(account) = instance.account("probe") else { continue };
        let token_file = dir.join(format!("{name}.token"));
        crate::secret::private_file(&token_file, account.token.expose().as_bytes())?;
        yaml.push_str(&format!(
            "  {name}:\n    url: {}\n    account: {}\n    token: {{ file: {name}.token }}\n",
            instance.base_url, account.username
        ));
        // More probe accounts: the journeys with `accounts: all` run as each.
        let others: Vec<_> = EXTRA_PROBE_ACCOUNTS
            .iter()
            .filter(|(instance_name, _)| instance_name == name)
            .filter_map(|(_, username)| instance.account(username))
            .collect();
        if !others.is_empty() {
            yaml.push_str("    accounts:\n");
        }
        for other in others {
            let token_file = format!("{name}-{}.token", other.username);
            crate::secret::private_file(&dir.join(&token_file), other.token.expose().as_bytes())?;
            yaml.push_str(&format!(
                "      {}:\n        token: {{ file: {token_file} }}\n        note: follows hundreds of accounts, a long home timeline\n",
                other.username
            ));
        }
    }
    yaml.push_str("journeys: [journeys]\n");
    // Written aside and renamed into place, so that whoever waits for the file
    // never reads half of it.
    let path = dir.join("fediprobe.yaml");
    let partial = dir.join(".fediprobe.yaml.partial");
    std::fs::write(&partial, yaml)?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}
