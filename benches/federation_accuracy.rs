//! Federation-delay accuracy: how far fediprobe's measured delivery delay is from
//! the delay the sandbox injects, by streaming and by the polling fallback.
//!
//!     cargo bench --bench federation_accuracy
//!
//! For each injected delay D (0 ms, 50 ms, 1 s, 10 s) the bundled
//! `federation-main-to-peer` journey runs N times against two sandbox instances
//! on loopback; the figure is measured − D, median and p99, in milliseconds.
//! Then the same with the receiving instance's streaming server down, where the
//! journey falls back to polling every 2 s: its error is bounded by the interval.
//! Loopback only; bounded in count and time (about three minutes).

use std::time::Duration;

use fediprobe::runner::stream::Method;
use fediprobe::runner::{Outcome, Runner, Target};
use fediprobe::sandbox::{InstanceConfig, Sandbox, SandboxConfig};
use fediprobe::spec::bundled;

const MANY: fediprobe::sandbox::Limit = fediprobe::sandbox::Limit::new(1_000_000, Duration::from_secs(60));

async fn sandbox() -> Sandbox {
    let instances = ["alpha", "beta"]
        .iter()
        .map(|name| {
            let mut config = InstanceConfig::new(*name);
            config.limits.api = MANY;
            config.limits.unauthenticated_api = MANY;
            config.limits.statuses = MANY;
            config.limits.deletes = MANY;
            config
        })
        .collect();
    Sandbox::start(SandboxConfig { instances }).await.expect("sandbox starts")
}

fn targets(sandbox: &Sandbox) -> Vec<Target> {
    fediprobe::sandbox::probe_targets(sandbox)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Runs the journey `runs` times, `parallel` at a time; returns measured − injected, in ms.
async fn measure(injected: Duration, runs: usize, parallel: usize, streaming_down: bool, method: Method) -> Vec<f64> {
    let sandbox = sandbox().await;
    sandbox.instance("alpha").expect("alpha").federation().set_delay(injected);
    sandbox.instance("beta").expect("beta").federation().set_streaming_down(streaming_down);
    let runner = std::sync::Arc::new(Runner::new(targets(&sandbox)));
    let journey = std::sync::Arc::new(
        bundled::journeys()
            .expect("bundled journeys")
            .into_iter()
            .find(|j| j.name == "federation-main-to-peer")
            .expect("journey"),
    );
    let mut errors = Vec::new();
    let mut done = 0;
    while done < runs {
        let batch = parallel.min(runs - done);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let (runner, journey) = (runner.clone(), journey.clone());
            set.spawn(async move { runner.run(&journey).await });
        }
        while let Some(result) = set.join_next().await {
            let result = result.expect("run");
            assert_eq!(result.outcome, Outcome::Success, "{}", serde_json::to_string(&result).unwrap_or_default());
            let delivery = result.steps.iter().find_map(|s| s.delivery.as_ref()).expect("a delivery");
            // The fallback polls alongside the stream from one interval after the post,
            // so a slow delivery may be seen by a poll first: only deliveries seen the
            // way this case measures are counted (the `runs` column says how many).
            if delivery.method != method {
                continue;
            }
            let figure = delivery.delay.expect("a delivery seen on schedule has a figure");
            errors.push((figure.as_secs_f64() - injected.as_secs_f64()) * 1000.0);
        }
        done += batch;
    }
    sandbox.shutdown().await;
    errors.sort_by(|a, b| a.total_cmp(b));
    errors
}

#[tokio::main]
async fn main() {
    fediprobe::install_crypto_provider();
    println!("| method | injected delay | runs | measured − injected, median | p99 | min | max |");
    println!("|---|---|---|---|---|---|---|");
    let cases: [(u64, usize, usize, bool, Method); 6] = [
        (0, 200, 4, false, Method::Stream),
        (50, 200, 4, false, Method::Stream),
        (1_000, 40, 8, false, Method::Stream),
        (10_000, 10, 10, false, Method::Stream),
        (50, 30, 10, true, Method::Poll),
        (1_000, 30, 10, true, Method::Poll),
    ];
    for (injected_ms, runs, parallel, down, method) in cases {
        let errors = measure(Duration::from_millis(injected_ms), runs, parallel, down, method).await;
        println!(
            "| {} | {injected_ms} ms | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            method.as_str(),
            errors.len(),
            percentile(&errors, 0.5),
            percentile(&errors, 0.99),
            errors[0],
            errors[errors.len() - 1],
        );
    }
}
