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
    /// Most journeys running at the same time; the others wait for a place.
    /// Default: the config's `agent.max_concurrent_runs` (32 unless set), the
    /// same cap the agent keeps.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent_runs: Option<u32>,
}

pub async fn run(args: Args) -> ExitCode {
    let Some(loaded) = super::load_or_report(&args.config) else {
        return ExitCode::from(super::EXIT_INVALID_INPUT);
    };
    let sweep_min_age = crate::wiring::sweep_min_age(&loaded.journeys);
    let known: Vec<String> = loaded.journeys.iter().map(|j| j.name.clone()).collect();
    // Each journey once per probe account it runs as.
    let mut journeys = loaded.runs;
    if !args.journeys.is_empty() {
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
    let limit = args.max_concurrent_runs.map_or(loaded.config.agent.max_concurrent_runs, |n| n as usize);
    let results = run_all(&runner, &journeys, limit).await;
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

/// Runs each journey once, at most `max_concurrent_runs` at the same time (the
/// others wait for a place, in the journeys' order), and returns the results in
/// the journeys' order.
pub async fn run_all(runner: &Runner, journeys: &[Journey], max_concurrent_runs: usize) -> Vec<RunResult> {
    let runner = Arc::new(runner.clone());
    run_bounded(journeys, max_concurrent_runs, move |journey| {
        let runner = runner.clone();
        async move { runner.run(&journey).await }
    })
    .await
}

/// Runs `run` for each journey, at most `limit` (at least one) at a time: a
/// run takes its place before its task starts, so a waiting journey holds no
/// connection, buffer or timer. Results come back in the journeys' order.
async fn run_bounded<F, Fut>(journeys: &[Journey], limit: usize, run: F) -> Vec<RunResult>
where
    F: Fn(Journey) -> Fut,
    Fut: std::future::Future<Output = RunResult> + Send + 'static,
{
    let places = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let mut set = tokio::task::JoinSet::new();
    let mut results: Vec<(usize, RunResult)> = Vec::with_capacity(journeys.len());
    let mut take = |joined: Result<(usize, RunResult), tokio::task::JoinError>| match joined {
        Ok(r) => results.push(r),
        Err(e) => tracing::error!(error = %e, "a journey run panicked; this is a bug in fediprobe"),
    };
    for (index, journey) in journeys.iter().cloned().enumerate() {
        let place = loop {
            // Finished runs are collected while waiting, so their results and
            // tasks do not pile up behind the ones still going.
            tokio::select! {
                place = places.clone().acquire_owned() => break place.expect("the semaphore is never closed"),
                Some(joined) = set.join_next() => take(joined),
            }
        };
        let run = run(journey);
        set.spawn(async move {
            let result = run.await;
            drop(place);
            (index, result)
        });
    }
    while let Some(joined) = set.join_next().await {
        take(joined);
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
            // The account column only when an instance was probed as several accounts.
            let by_account = several_accounts(results);
            let rows: Vec<Vec<String>> = results
                .iter()
                .map(|r| {
                    let mut row = vec![r.journey.clone(), r.instance.clone()];
                    if by_account {
                        row.push(r.account.clone());
                    }
                    row.extend([
                        r.outcome.as_str().to_owned(),
                        r.reason.map(|x| x.as_str().to_owned()).unwrap_or_default(),
                        table::duration(r.duration),
                        detail(r),
                    ]);
                    row
                })
                .collect();
            let headers: &[&str] = if by_account {
                &["JOURNEY", "INSTANCE", "ACCOUNT", "OUTCOME", "REASON", "DURATION", "DETAIL"]
            } else {
                &["JOURNEY", "INSTANCE", "OUTCOME", "REASON", "DURATION", "DETAIL"]
            };
            let table = table::render(headers, &rows);
            print!("{}", crate::secret::scrub(&table));
        }
    }
}

/// Whether the results come from more than one probe account of an instance:
/// then tables show the account, otherwise they look as they always did.
pub fn several_accounts(results: &[RunResult]) -> bool {
    results.iter().any(|a| results.iter().any(|b| a.instance == b.instance && a.account != b.account))
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::spec::parse_journey_str;

    fn journey(name: &str) -> Journey {
        let text = format!(
            "name: {name}\ninstance: main\nschedule: '* * * * *'\nslo: {{ availability: 99% }}\nsteps:\n  - name: s\n    request: {{ path: /health }}\n"
        );
        parse_journey_str(std::path::Path::new("t.yaml"), &text).0.unwrap()
    }

    /// A stand-in run that takes a second of tokio's paused time and notes how
    /// many runs are going with it.
    async fn counted_run(journey: Journey, going: Arc<AtomicUsize>, most: Arc<AtomicUsize>) -> RunResult {
        let now = going.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        going.fetch_sub(1, Ordering::SeqCst);
        RunResult::without_steps(
            &journey.name,
            &journey.instance,
            chrono::DateTime::UNIX_EPOCH,
            Duration::from_secs(1),
            Outcome::Success,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn once_runs_at_most_the_cap_at_a_time_and_keeps_the_journeys_order() {
        let journeys: Vec<Journey> = (0..50).map(|i| journey(&format!("j{i:02}"))).collect();
        for (limit, expected_most) in [(4, 4), (1, 1), (0, 1), (500, 50)] {
            let (going, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let results = run_bounded(&journeys, limit, |j| counted_run(j, going.clone(), most.clone())).await;
            assert_eq!(most.load(Ordering::SeqCst), expected_most, "limit {limit}");
            let names: Vec<&str> = results.iter().map(|r| r.journey.as_str()).collect();
            let expected: Vec<&str> = journeys.iter().map(|j| j.name.as_str()).collect();
            assert_eq!(names, expected, "every journey once, in order (limit {limit})");
        }
    }
}
