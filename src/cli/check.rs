//! `fediprobe check`: validates config and journeys offline, and shows how much
//! of each instance's rate limits the schedules use, every probe sharing the
//! account or the token counted.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::spec::{self, Diagnostics};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file; its journeys are checked too, and their instances must be in it.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Journey files or folders to check (without a config, instance names are not checked).
    paths: Vec<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let config = args.config.or_else(|| {
        let default = super::default_config();
        (args.paths.is_empty() && default.exists()).then_some(default)
    });
    let mut diagnostics = Diagnostics::default();
    let mut journeys = 0;
    let mut budget = Vec::new();
    if let Some(path) = &config {
        if !path.exists() {
            eprintln!("{}", super::missing_config(path));
            return ExitCode::from(super::EXIT_INVALID_INPUT);
        }
        match spec::load_config(path) {
            Ok(loaded) => {
                journeys += loaded.journeys.len();
                diagnostics.extend(loaded.warnings);
                diagnostics.extend(spec::control::warnings(&loaded.config));
                budget = loaded.budget;
            }
            Err(found) => diagnostics.extend(found),
        }
    }
    if !args.paths.is_empty() {
        let (found_journeys, found) = spec::load_journey_paths(&args.paths);
        journeys += found_journeys.len();
        diagnostics.extend(found);
    }
    if config.is_none() && args.paths.is_empty() {
        eprintln!(
            "error: nothing to check: there is no fediprobe.yaml here\n  = help: give a config with `-c PATH`, or journey files or folders (`fediprobe check journeys/`)"
        );
        return ExitCode::from(super::EXIT_INVALID_INPUT);
    }
    if !diagnostics.is_empty() {
        eprint!("{diagnostics}");
    }
    let errors = diagnostics.error_count();
    if errors > 0 {
        eprintln!("error: {} found", super::count(errors, "problem"));
        ExitCode::from(super::EXIT_INVALID_INPUT)
    } else {
        println!("ok: {} checked", super::count(journeys, "journey"));
        if !budget.is_empty() {
            println!("\nrate limits, worst window, every probe sharing the account or the token counted:");
            print!("{}", budget_table(&budget));
        }
        ExitCode::SUCCESS
    }
}

/// The budget as a table: one row per instance and limit the journeys use.
pub fn budget_table(budget: &[spec::limits::Budget]) -> String {
    let rows: Vec<Vec<String>> = budget
        .iter()
        .filter(|b| b.per_probe > 0)
        .map(|b| {
            let sweep: u64 = b.users.iter().filter(|(u, _)| *u == spec::limits::User::Sweep).map(|(_, n)| n).sum();
            vec![
                b.instance.clone(),
                format!(
                    "{} {} per {} per {}",
                    b.limit.max,
                    b.limit.what,
                    humantime::format_duration(b.limit.per),
                    b.limit.scope.as_str()
                ),
                b.per_probe.to_string(),
                sweep.to_string(),
                b.probes.to_string(),
                b.total().to_string(),
                format!("{:.0}%", 100.0 * b.total() as f64 / f64::from(b.limit.max)),
            ]
        })
        .collect();
    super::table::render(&["INSTANCE", "LIMIT", "THIS PROBE", "OF WHICH SWEEP", "PROBES", "ALL PROBES", "USED"], &rows)
}
