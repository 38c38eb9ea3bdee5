//! `fediprobe run`: the long-running agent (see `crate::agent`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::agent::{self, StartError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file. SIGHUP reloads it (and its journeys).
    #[arg(short, long, default_value = "fediprobe.yaml")]
    config: PathBuf,
    /// Push samples to this remote-write URL instead of the config's.
    #[arg(long, value_name = "URL")]
    remote_write_url: Option<url::Url>,
    /// Serve /healthz, /readyz and /metrics here instead of the config's `agent.listen`.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
}

pub async fn run(args: Args) -> ExitCode {
    let mut options = agent::Options::new(args.config);
    options.remote_write_url = args.remote_write_url;
    options.listen = args.listen;
    match agent::run(options).await {
        Ok(report) if report.dropped + report.rejected > 0 => {
            eprintln!("error: {} samples were lost at shutdown", report.dropped + report.rejected);
            ExitCode::from(super::push::EXIT_SAMPLES_LOST)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(StartError::InvalidConfig(diagnostics)) => {
            eprint!("{diagnostics}");
            eprintln!();
            ExitCode::from(super::EXIT_INVALID_INPUT)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(super::EXIT_INVALID_INPUT)
        }
    }
}
