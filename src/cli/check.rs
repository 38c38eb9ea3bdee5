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
    let mut loaded_config = None;
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
                loaded_config = Some(loaded.config);
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
            print!("{}", budget_table(&budget, loaded_config.as_ref()));
        }
        ExitCode::SUCCESS
    }
}

/// The budget as a table: one row per instance and limit the journeys use, and
/// per probe account for the limits per token and per account when an instance
/// of `config` has several accounts (then with an ACCOUNT column).
pub fn budget_table(budget: &[spec::limits::Budget], config: Option<&spec::Config>) -> String {
    let by_account = config.is_some_and(|c| c.instances.iter().any(|i| !i.extra_accounts.is_empty()));
    let account_of = |b: &spec::limits::Budget| match (&b.account, b.limit.scope) {
        (_, spec::limits::Scope::Address) => "(every account)".to_owned(),
        (Some(account), _) => account.clone(),
        (None, _) => config.and_then(|c| c.instance(&b.instance)).map(|i| i.account.clone()).unwrap_or_default(),
    };
    let rows: Vec<Vec<String>> = budget
        .iter()
        .filter(|b| b.per_probe > 0)
        .map(|b| {
            let sweep: u64 = b.users.iter().filter(|(u, _)| *u == spec::limits::User::Sweep).map(|(_, n)| n).sum();
            let mut row = vec![b.instance.clone()];
            if by_account {
                row.push(account_of(b));
            }
            row.extend([
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
            ]);
            row
        })
        .collect();
    let headers: &[&str] = if by_account {
        &["INSTANCE", "ACCOUNT", "LIMIT", "THIS PROBE", "OF WHICH SWEEP", "PROBES", "ALL PROBES", "USED"]
    } else {
        &["INSTANCE", "LIMIT", "THIS PROBE", "OF WHICH SWEEP", "PROBES", "ALL PROBES", "USED"]
    };
    super::table::render(headers, &rows)
}
