//! `fediprobe mixin`: the rules and dashboards as a Jsonnet monitoring mixin.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::generate::mixin;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file: its journeys, and its `rules:` section (the mixin's `_config` defaults).
    #[arg(short, long, default_value = "fediprobe.yaml")]
    config: PathBuf,
    /// The folder the mixin is written to (created when missing): mixin.libsonnet and the files it imports.
    #[arg(long, value_name = "DIR", default_value = "fediprobe-mixin")]
    out: PathBuf,
}

pub fn run(args: Args) -> ExitCode {
    let Some(loaded) = super::load_or_report(&args.config) else {
        return ExitCode::from(super::EXIT_INVALID_INPUT);
    };
    for file in mixin::generate(&loaded.config.rules, &loaded.journeys) {
        let path = args.out.join(&file.path);
        let written =
            path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&path, file.text));
        if let Err(e) = written {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
