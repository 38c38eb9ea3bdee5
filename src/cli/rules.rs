//! `fediprobe rules`: the SLO recording and alerting rules for the config's journeys.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::generate::{self, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file: its journeys' SLO blocks and its `rules:` section.
    #[arg(short, long, default_value = "fediprobe.yaml")]
    config: PathBuf,
    /// A plain rule file (Prometheus `rule_files`, vmalert `-rule`), or a Kubernetes resource for an operator.
    #[arg(long, value_enum, default_value_t = Format::Rules)]
    format: Format,
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let Some(loaded) = super::load_or_report(&args.config) else {
        return ExitCode::from(super::EXIT_INVALID_INPUT);
    };
    let file = generate::generate(&loaded.config.rules, &loaded.journeys);
    let text = generate::render(&file, args.format);
    match &args.out {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
    }
}
