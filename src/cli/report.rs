//! `fediprobe report`: the SLO report of the config's journeys, from the
//! samples in a metrics backend, written as `report.html`, `report.md` and
//! `report.json` into a folder.
//!
//! Exit status: 0 when the report was written (missing data is listed in it and
//! on stderr), 2 when the config or the arguments are invalid, 4 when the
//! backend cannot be reached, 1 for any other failure (the backend refused the
//! queries or has no samples for any journey, a file could not be written).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};

use crate::report::{self, Backend, Options, ReportError};

/// Exit status when the metrics backend cannot be reached.
pub const EXIT_BACKEND_UNREACHABLE: u8 = 4;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file: its journeys' SLO blocks and its `rules:` section (regions, page quorum).
    #[arg(short, long, default_value = "fediprobe.yaml")]
    config: PathBuf,
    /// The base URL of the Prometheus query API the probes' samples are in, e.g.
    /// http://victoria-metrics:8428 (`user:password@` in it becomes basic auth).
    #[arg(long, value_name = "URL")]
    from_url: String,
    /// How many days to report on, e.g. `30d` or `90d`. Default: the longest SLO window of the journeys.
    #[arg(long, value_name = "DAYS", value_parser = parse_days)]
    window: Option<u32>,
    /// The end of the window: an RFC 3339 time or a date (midnight UTC), rounded down to five minutes. Default: now.
    #[arg(long, value_name = "TIME", value_parser = parse_end)]
    end: Option<DateTime<Utc>>,
    /// The folder to write report.html, report.md and report.json into (created if missing).
    #[arg(long, value_name = "DIR", default_value = "fediprobe-report")]
    out: PathBuf,
}

fn parse_days(text: &str) -> Result<u32, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration such as `90d`: {e}"))?;
    let secs = d.as_secs();
    if secs == 0 || secs % 86_400 != 0 || d.subsec_nanos() != 0 {
        return Err(format!("the window is whole days, e.g. `30d` or `90d`, not `{text}`"));
    }
    u32::try_from(secs / 86_400).map_err(|_| format!("`{text}` is too long"))
}

fn parse_end(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("`{text}` is neither an RFC 3339 time (2024-03-10T00:00:00Z) nor a date (2024-03-10)"))
}

pub async fn run(args: Args) -> ExitCode {
    let Some(loaded) = super::load_or_report(&args.config) else {
        return ExitCode::from(super::EXIT_INVALID_INPUT);
    };
    // The URL is never echoed back whole: it may carry credentials.
    let url = match url::Url::parse(&args.from_url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: --from-url is not a URL ({e}); give e.g. http://victoria-metrics:8428");
            return ExitCode::from(super::EXIT_INVALID_INPUT);
        }
    };
    let backend = match Backend::new(&url) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: --from-url: {e}");
            return ExitCode::from(super::EXIT_INVALID_INPUT);
        }
    };
    let options = Options { days: args.window, end: args.end, now: Utc::now().trunc_subsecs(0) };
    let report = match report::build(&backend, &loaded.config, &loaded.journeys, &options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return match e {
                ReportError::Unreachable { .. } => ExitCode::from(EXIT_BACKEND_UNREACHABLE),
                _ => ExitCode::FAILURE,
            };
        }
    };
    for problem in &report.problems {
        eprintln!("warning: {problem}");
    }
    match write_files(&args.out, &report) {
        Ok(paths) => {
            println!(
                "SLO report of {} journeys over {} days, from {}:",
                report.journeys.len(),
                report.window.days,
                backend.display_url()
            );
            for journey in &report.journeys {
                for ind in &journey.indicators {
                    println!(
                        "  {:<24} {:<12} {:>9}  objective {:>7}  budget {}  incidents {}",
                        journey.name,
                        ind.sli,
                        report::words::percent_or_dash(ind.total.ratio),
                        report::words::percent(ind.objective),
                        report::words::budget(ind.budget_remaining),
                        ind.incidents.len()
                    );
                }
            }
            for path in paths {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_files(dir: &Path, report: &report::Report) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| format!("cannot encode the report: {e}"))? + "\n";
    let files = [
        ("report.html", report::html::render(report)),
        ("report.md", report::markdown::render(report)),
        ("report.json", json),
    ];
    let mut written = Vec::new();
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
