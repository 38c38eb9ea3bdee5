//! `fediprobe demo`: the newcomer's first command. Starts the sandbox, runs every
//! bundled journey against it a few times, and prints a table per journey.

use std::process::ExitCode;
use std::time::Duration;

use crate::runner::{Outcome, RunResult, Runner};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::spec::bundled;

use super::push::Push;
use super::{Output, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many rounds of every journey to run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// How to print the results: a summary table, or every run as JSON.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// Push the demo's samples to this remote-write URL (e.g. a local VictoriaMetrics).
    #[arg(long, value_name = "URL")]
    remote_write_url: Option<url::Url>,
}

/// How long the demo's `alpha` takes to process an upload: as Mastodon with a
/// video, so that the `media` journey shows the 202-then-206 path and a
/// processing delay, not only an instant image.
const DEMO_MEDIA_PROCESSING: Duration = Duration::from_millis(1500);

/// Two instances, `alpha` processing media in the background.
fn demo_sandbox() -> SandboxConfig {
    let mut config = SandboxConfig::default();
    if let Some(alpha) = config.instances.first_mut() {
        alpha.media_processing = DEMO_MEDIA_PROCESSING;
    }
    config
}

/// The region label of the demo's samples.
pub const DEMO_REGION: &str = "local";

pub async fn run(args: Args) -> ExitCode {
    let journeys = match bundled::journeys() {
        Ok(j) => j,
        Err(d) => {
            eprint!("{d}");
            eprintln!("error: the bundled journeys do not parse; this is a bug in fediprobe");
            return ExitCode::FAILURE;
        }
    };
    let sandbox = match Sandbox::start(demo_sandbox()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the sandbox on loopback: {e}");
            return ExitCode::FAILURE;
        }
    };
    let push = match Push::new(None, args.remote_write_url.as_ref(), DEMO_REGION) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(super::EXIT_INVALID_INPUT);
        }
    };
    // `main` is probed as two accounts, `probe` and `busy` (who follows
    // hundreds): the journeys that run as every account show both.
    let runner = Runner::new(crate::sandbox::probe_targets_with_accounts(&sandbox));
    let runs = crate::spec::accounts::runs(&journeys, &|instance| runner.account_names(instance));
    if args.output == Output::Human {
        println!("fediprobe demo: {} journeys × {} rounds against the sandbox", journeys.len(), args.rounds);
        let as_several = journeys.iter().filter(|j| runs.iter().filter(|r| r.name == j.name).count() > 1).count();
        if as_several > 0 {
            println!(
                "  {as_several} of them run as each of main's two probe accounts: probe, and busy, who follows hundreds"
            );
        }
        for instance in sandbox.instances() {
            println!("  sandbox instance {} at {}", instance.name, instance.base_url);
        }
        println!();
    }
    let mut all: Vec<RunResult> = Vec::new();
    for round in 0..args.rounds {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let results = super::once::run_all(&runner, &runs, runs.len()).await;
        if args.output == Output::Json {
            super::once::print_results(&results, Output::Json);
        }
        if let Some(push) = &push {
            push.push(&results).await;
        }
        all.extend(results);
    }
    sandbox.shutdown().await;
    let delivered = match push {
        Some(push) => push.finish().await,
        None => true,
    };
    let failed = all.iter().filter(|r| r.outcome != Outcome::Success).count();
    if args.output == Output::Human {
        let runs: Vec<(String, String)> = runs
            .iter()
            .map(|j| {
                let account = runner.target_as(&j.instance, j.run_as.as_deref()).map(|t| t.account.clone());
                (j.name.clone(), account.unwrap_or_default())
            })
            .collect();
        print!("{}", summary(&runs, &all));
        println!();
        for delays in delay_summaries(&all).into_iter().chain(media_summary(&all)) {
            print!("{delays}");
            println!();
        }
        if failed == 0 {
            println!("all {} runs succeeded.", all.len());
        } else {
            println!("{failed} of {} runs did not succeed.", all.len());
        }
    }
    if !delivered {
        ExitCode::from(super::push::EXIT_SAMPLES_LOST)
    } else if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The delays the journeys measured, one table per kind: `FEDERATION` (a post
/// reaching a home feed, streaming event `update`) and `NOTIFICATION` (a mention
/// notified, event `notification`), one row per direction.
fn delay_summaries(results: &[RunResult]) -> Vec<String> {
    [("update", "FEDERATION"), ("notification", "NOTIFICATION")]
        .into_iter()
        .map(|(event, title)| delay_summary(results, event, title))
        .filter(|table| !table.is_empty())
        .collect()
}

/// One row per direction of the deliveries awaited as `event`: how many were
/// seen, how, and their delays.
fn delay_summary(results: &[RunResult], event: &str, title: &str) -> String {
    let all: Vec<_> = results
        .iter()
        .flat_map(|r| r.steps.iter().filter_map(|s| s.delivery.as_ref()))
        .filter(|d| d.event == event)
        .collect();
    let mut directions: Vec<(String, String)> = Vec::new();
    for d in &all {
        let key = (d.source.clone(), d.destination.clone());
        if !directions.contains(&key) {
            directions.push(key);
        }
    }
    if directions.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = directions
        .iter()
        .map(|(source, destination)| {
            let deliveries: Vec<_> =
                all.iter().filter(|d| d.source == *source && d.destination == *destination).collect();
            // Only deliveries with a figure: one the probe could not bound has none.
            let mut delays: Vec<Duration> = deliveries.iter().filter_map(|d| d.delay).collect();
            delays.sort();
            let methods: Vec<&str> = {
                let mut m: Vec<&str> = deliveries.iter().map(|d| d.method.as_str()).collect();
                m.sort();
                m.dedup();
                m
            };
            vec![
                format!("{source} → {destination}"),
                deliveries.len().to_string(),
                methods.join("+"),
                delays.get(delays.len().saturating_sub(1) / 2).map_or_else(|| "-".to_owned(), |d| table::duration(*d)),
                delays.last().map_or_else(|| "-".to_owned(), |d| table::duration(*d)),
            ]
        })
        .collect();
    table::render(&[title, "DELIVERED", "SEEN BY", "P50 DELAY", "MAX DELAY"], &rows)
}

/// The `media` journey's two figures: the upload's time and the wait until
/// the server had processed it (the `upload` and `processed` steps).
fn media_summary(results: &[RunResult]) -> Option<String> {
    let runs: Vec<&RunResult> = results.iter().filter(|r| r.journey == "media").collect();
    if runs.is_empty() {
        return None;
    }
    let figure = |step: &str| {
        let mut durations: Vec<Duration> = runs
            .iter()
            .filter(|r| r.outcome == Outcome::Success)
            .filter_map(|r| r.steps.iter().find(|s| s.name == step).map(|s| s.duration))
            .collect();
        durations.sort();
        let p50 = durations
            .get(durations.len().saturating_sub(1) / 2)
            .map_or_else(|| "-".to_owned(), |d| table::duration(*d));
        let max = durations.last().map_or_else(|| "-".to_owned(), |d| table::duration(*d));
        (p50, max)
    };
    let rows: Vec<Vec<String>> = [("upload", "upload"), ("processing", "processed")]
        .into_iter()
        .map(|(what, step)| {
            let (p50, max) = figure(step);
            vec![what.to_owned(), p50, max]
        })
        .collect();
    Some(table::render(&["MEDIA", "P50", "MAX"], &rows))
}

/// One row per journey and probe account: runs, successes, p50 and max
/// duration, the APDEX (for journeys with an objective), the last failure.
/// `journeys` are names with the account each copy runs as; the account column
/// is shown when an instance was probed as several.
fn summary(journeys: &[(String, String)], results: &[RunResult]) -> String {
    let by_account = super::once::several_accounts(results);
    let rows: Vec<Vec<String>> = journeys
        .iter()
        .map(|(name, account)| {
            let runs: Vec<&RunResult> =
                results.iter().filter(|r| r.journey == *name && (!by_account || r.account == *account)).collect();
            let ok = runs.iter().filter(|r| r.outcome == Outcome::Success).count();
            let mut durations: Vec<Duration> = runs.iter().map(|r| r.duration).collect();
            durations.sort();
            let p50 = durations.get(durations.len().saturating_sub(1) / 2).copied().unwrap_or_default();
            let max = durations.last().copied().unwrap_or_default();
            // The mean score of the scored runs, for journeys with an APDEX objective.
            let scores: Vec<f64> = runs.iter().filter_map(|r| r.apdex).map(|z| z.score()).collect();
            let apdex = (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64);
            let outcome = if ok == runs.len() { "success".to_owned() } else { format!("{} failed", runs.len() - ok) };
            let failure = runs
                .iter()
                .rev()
                .find(|r| r.outcome != Outcome::Success)
                .map(|r| super::once::detail(r))
                .unwrap_or_default();
            let mut row = vec![name.to_string()];
            if by_account {
                row.push(account.clone());
            }
            row.extend([
                format!("{ok}/{}", runs.len()),
                outcome,
                table::duration(p50),
                table::duration(max),
                crate::report::words::apdex(apdex),
                failure,
            ]);
            row
        })
        .collect();
    let headers: &[&str] = if by_account {
        &["JOURNEY", "ACCOUNT", "OK", "OUTCOME", "P50", "MAX", "APDEX", "FAILING STEP"]
    } else {
        &["JOURNEY", "OK", "OUTCOME", "P50", "MAX", "APDEX", "FAILING STEP"]
    };
    table::render(headers, &rows)
}
