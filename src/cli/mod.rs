//! The command line: argument parsing, logging set-up, and the subcommands'
//! human-facing output. The only place that prints to stdout.

mod check;
mod dashboards;
#[cfg(feature = "sandbox")]
mod demo;
mod mixin;
mod once;
mod push;
mod report;
mod rules;
mod run;
#[cfg(feature = "sandbox")]
mod sandbox;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit status of a command whose input (config, journeys) is invalid.
pub const EXIT_INVALID_INPUT: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "fediprobe",
    version,
    about = "Synthetic user-journey probes for Mastodon, with SLOs generated from the same files"
)]
pub struct Cli {
    /// Log level: error, warn, info, debug or trace, or a tracing filter such as
    /// `fediprobe=debug`. Default: info for `run` and `sandbox`, warn otherwise.
    #[arg(long, global = true, env = "FEDIPROBE_LOG")]
    log_level: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table for people.
    Human,
    /// One JSON object per run, one per line, for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start two simulated Mastodon instances on loopback and run every bundled journey against them.
    #[cfg(feature = "sandbox")]
    Demo(demo::Args),
    /// Run every journey (or those named) once, print the results and exit (for Kubernetes CronJobs).
    Once(once::Args),
    /// Run every journey on its schedule until stopped, serving /healthz, /readyz and /metrics (for Deployments).
    Run(run::Args),
    /// Validate the config and journeys without touching the network.
    Check(check::Args),
    /// Start simulated Mastodon instances on loopback and keep them up, for writing journeys.
    #[cfg(feature = "sandbox")]
    Sandbox(sandbox::Args),
    /// Write the SLO recording and alerting rules (rule file, PrometheusRule or VMRule).
    Rules(rules::Args),
    /// Write an SLO report (HTML, Markdown, JSON) from the samples in VictoriaMetrics or Prometheus.
    Report(report::Args),
    /// Write the Grafana dashboards (JSON) for the config's journeys.
    Dashboards(dashboards::Args),
    /// Write the rules and dashboards as a Jsonnet monitoring mixin (mixin.libsonnet, `_config+::`).
    Mixin(mixin::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Run(_) => "info",
        #[cfg(feature = "sandbox")]
        Command::Sandbox(_) => "info",
        _ => "warn",
    };
    init_logging(cli.log_level.as_deref().unwrap_or(default_level), cli.log_format);
    crate::install_crypto_provider();
    // `once` measures on one thread, as curl does: the response wakes the thread
    // that timestamps it, with no hand-over between parked workers inside a
    // run's clock (its runs are I/O-bound and capped by `max_concurrent_runs`).
    // `run` keeps its runs on a thread of their own (`agent::RunsThread`); the
    // rest of the agent (the scrapes, the log lines, the pushes, the reload
    // check) is light and also takes one thread: a pool of workers woke each
    // other for every result handed over, a context switch each on a small VM.
    let mut builder = match cli.command {
        Command::Once(_) | Command::Run(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            #[cfg(feature = "sandbox")]
            Command::Demo(args) => demo::run(args).await,
            Command::Once(args) => once::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Check(args) => check::run(args),
            #[cfg(feature = "sandbox")]
            Command::Sandbox(args) => sandbox::run(args).await,
            Command::Rules(args) => rules::run(args),
            Command::Report(args) => report::run(args).await,
            Command::Dashboards(args) => dashboards::run(args),
            Command::Mixin(args) => mixin::run(args),
        }
    })
}

/// Libraries that write request headers (and so the `Authorization` header) into
/// their debug or trace output. They are held at `info` whatever the log level asked
/// for: a token must not reach the logs at any level.
const HEADER_LOGGING_LIBRARIES: &[&str] = &["tungstenite", "tokio_tungstenite", "h2", "hyper", "hyper_util", "reqwest"];

/// The tracing filter for `--log-level`: a bare level applies to fediprobe itself
/// (other libraries stay at `info` at most); a filter expression is taken as it is.
/// Either way, [`HEADER_LOGGING_LIBRARIES`] never go below `info`.
pub fn log_filter(level: &str) -> String {
    let base = match level.trim().parse::<tracing::level_filters::LevelFilter>() {
        Ok(l) => {
            let others = l.min(tracing::level_filters::LevelFilter::INFO);
            format!("{others},fediprobe={l}")
        }
        Err(_) => level.trim().to_owned(),
    };
    let mut filter = base;
    for library in HEADER_LOGGING_LIBRARIES {
        filter.push_str(&format!(",{library}=info"));
    }
    filter
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(log_filter(level)).unwrap_or_else(|e| {
        eprintln!("warning: `--log-level {level}` is not a log level or filter ({e}); using `warn`");
        tracing_subscriber::EnvFilter::new(log_filter("warn"))
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::secret::ScrubbedStderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Loads a config with its journeys, printing every diagnostic; `None` after errors.
fn load_or_report(path: &std::path::Path) -> Option<crate::spec::Loaded> {
    if !path.exists() {
        eprintln!("{}", missing_config(path));
        return None;
    }
    match crate::spec::load_config(path) {
        Ok(loaded) => {
            if !loaded.warnings.is_empty() {
                eprint!("{}", loaded.warnings);
            }
            Some(loaded)
        }
        Err(diagnostics) => {
            eprint!("{diagnostics}");
            eprintln!("error: {} could not be loaded ({})", path.display(), count(diagnostics.error_count(), "error"));
            None
        }
    }
}

/// What to say when there is no config at `path`: where it looked and how to
/// point at one.
fn missing_config(path: &std::path::Path) -> String {
    format!(
        "error: no config file at {}\n  = help: point at yours with `-c PATH` (e.g. `-c /etc/fediprobe/fediprobe.yaml`), \
         or write one for the sandbox with `fediprobe sandbox --write-config DIR`; README's \"Point it at your instance\" shows one",
        path.display()
    )
}

pub use crate::spec::diag::count;

/// The default config path, `fediprobe.yaml` in the working folder.
fn default_config() -> PathBuf {
    PathBuf::from("fediprobe.yaml")
}
