//! `fediprobe dashboards`: the Grafana dashboards for the config's journeys.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::generate::dashboards;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file: its journeys and its `rules:` section (the regions expected to report).
    #[arg(short, long, default_value = "fediprobe.yaml")]
    config: PathBuf,
    /// The folder the dashboards are written to, one JSON file each (created when missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
}

pub fn run(args: Args) -> ExitCode {
    let Some(loaded) = super::load_or_report(&args.config) else {
        return ExitCode::from(super::EXIT_INVALID_INPUT);
    };
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("error: cannot create {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    for file in dashboards::generate(&loaded.config.rules, &loaded.journeys) {
        let path = args.out.join(&file.file_name);
        if let Err(e) = std::fs::write(&path, dashboards::render(&file.dashboard)) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
