//! `fediprobe once`: every journey (or the ones named) once, then exit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::runner::{Outcome, RunResult, Runner, targets_from_config};
use crate::spec::Journey;

use super::push::{EXIT_SAMPLES_LOST, Push};
use super::{Output, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(short, long, default_value = "fediprobe.yaml")]
    config: PathBuf,
    /// Run only this journey (repeatable).
    #[arg(long = "journey", value_name = "NAME")]
    journeys: Vec<String>,
    /// How to print the results.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// Push samples to this remote-write URL instead of the config's.
    #[arg(long, value_name = "URL")]
    remote_write_url: Option<url::Url>,
}

pub async fn run(args: Args) -> ExitCode {
    let Some(loaded) = super::load_or_report(&args.config) else {
        return ExitCode::from(super::EXIT_INVALID_INPUT);
    };
    let sweep_min_age = crate::wiring::sweep_min_age(&loaded.journeys);
    let mut journeys = loaded.journeys;
    if !args.journeys.is_empty() {
        let known: Vec<String> = journeys.iter().map(|j| j.name.clone()).collect();
        for name in &args.journeys {
            if !known.contains(name) {
                eprintln!("error: no journey is named `{name}`; the config's journeys are: {}", known.join(", "));
                return ExitCode::from(super::EXIT_INVALID_INPUT);
            }
        }
        journeys.retain(|j| args.journeys.contains(&j.name));
    }
    let push = match Push::new(
        loaded.config.remote_write.as_ref(),
        args.remote_write_url.as_ref(),
        &loaded.config.probe.region,
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(super::EXIT_INVALID_INPUT);
        }
    };
    let control = crate::wiring::control_target(&loaded.config);
    let runner = Runner::new(targets_from_config(&loaded.config)).with_control_target(control);
    let results = run_all(&runner, &journeys).await;
    print_results(&results, args.output);
    // Leftovers of earlier runs (a crash between post and delete) are deleted
    // after the measurement, not before: the sweep's requests must not delay the
    // runs or load the instance just before them. It overlaps with the push, and
    // goes only to the instances these journeys post on (the only ones they can
    // leave a leftover on), which is what `check` counts against the rate limits.
    let sweep = crate::wiring::sweep_after(&runner, sweep_min_age, &journeys);
    let delivered = async {
        match push {
            Some(push) => {
                push.push(&results).await;
                push.finish().await
            }
            None => true,
        }
    };
    let ((), delivered) = tokio::join!(sweep, delivered);
    if !delivered {
        return ExitCode::from(EXIT_SAMPLES_LOST);
    }
    ExitCode::SUCCESS
}

/// Runs each journey once, all at the same time, and returns the results in the
/// journeys' order.
pub async fn run_all(runner: &Runner, journeys: &[Journey]) -> Vec<RunResult> {
    let runner = Arc::new(runner.clone());
    let mut set = tokio::task::JoinSet::new();
    for (index, journey) in journeys.iter().cloned().enumerate() {
        let runner = runner.clone();
        set.spawn(async move { (index, runner.run(&journey).await) });
    }
    let mut results: Vec<(usize, RunResult)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => results.push(r),
            Err(e) => tracing::error!(error = %e, "a journey run panicked; this is a bug in fediprobe"),
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Prints results; what is printed is scrubbed once more as a whole (see
/// `secret::scrub`), so a field added to results later cannot carry a secret out
/// even before `RunResult::scrub` learns of it.
pub fn print_results(results: &[RunResult], output: Output) {
    match output {
        Output::Json => {
            for r in results {
                match serde_json::to_string(r) {
                    Ok(line) => println!("{}", crate::secret::scrub(&line)),
                    Err(e) => tracing::error!(error = %e, "cannot write a result as JSON"),
                }
            }
        }
        Output::Human => {
            let rows: Vec<Vec<String>> = results
                .iter()
                .map(|r| {
                    vec![
                        r.journey.clone(),
                        r.instance.clone(),
                        r.outcome.as_str().to_owned(),
                        r.reason.map(|x| x.as_str().to_owned()).unwrap_or_default(),
                        table::duration(r.duration),
                        detail(r),
                    ]
                })
                .collect();
            let table = table::render(&["JOURNEY", "INSTANCE", "OUTCOME", "REASON", "DURATION", "DETAIL"], &rows);
            print!("{}", crate::secret::scrub(&table));
        }
    }
}

/// The failing step and what went wrong, for a table cell.
pub fn detail(r: &RunResult) -> String {
    match (r.outcome, &r.failed_step, r.error()) {
        (Outcome::Success, _, _) => {
            if r.latency_ok {
                String::new()
            } else {
                "slower than the SLO's threshold".to_owned()
            }
        }
        (_, Some(step), Some(e)) => format!("step `{step}`: {}", e.message),
        (_, Some(step), None) => format!("step `{step}`"),
        _ => String::new(),
    }
}
