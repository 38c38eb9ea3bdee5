//! The report as Markdown, for a wiki, a status repository or a chat message:
//! the same numbers as the HTML page, in tables, without charts.

use std::fmt::Write;

use super::compute::and_list;
use super::html::from_where;
use super::model::{ApdexReport, Count, IncidentKind, IndicatorReport, Report};
use super::words::{self, percent, percent_or_dash};

/// The whole document.
pub fn render(report: &Report) -> String {
    let site = words::site(&report.instances);
    let mut md = String::new();
    let _ = writeln!(md, "# Service levels of {}\n", cell(&site));
    let _ = writeln!(
        md,
        "How well the things people do on {} worked {}, measured by probes {}.\n",
        cell(&site),
        words::coverage(&report.window),
        cell(&from_where(&report.regions)),
    );
    md.push_str(
        "| Journey | Indicator | Objective | Measured | Error budget | Incidents |\n|---|---|---|---:|---:|---:|\n",
    );
    for j in &report.journeys {
        for ind in &j.indicators {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&j.name),
                ind.sli,
                cell(&ind.objective_text),
                status(ind),
                words::budget(ind.budget_remaining),
                ind.incidents.len()
            );
        }
        if let Some(apdex) = &j.apdex {
            let _ = writeln!(
                md,
                "| {} | apdex | {} | {} | – | – |",
                cell(&j.name),
                cell(&apdex.objective_text),
                apdex_status(apdex)
            );
        }
    }
    for j in &report.journeys {
        let _ = writeln!(md, "\n## {}\n", cell(&j.name));
        if let Some(d) = &j.description {
            let _ = writeln!(md, "{}\n", cell(d));
        }
        let _ = writeln!(md, "**Objective:** {} (over {} days).\n", cell(&j.objective), j.slo_window_days);
        let _ = writeln!(
            md,
            "Measured from probes {}. What the timing covers: {}.\n",
            cell(&from_where(&j.measured_from)),
            cell(j.measures.trim().trim_end_matches('.'))
        );
        for ind in &j.indicators {
            let _ = writeln!(
                md,
                "### {}: {}\n\nMeasured {} ({} of {} runs good); error budget: {}.\n",
                ind.sli,
                cell(&ind.objective_text),
                status(ind),
                words::count(ind.total.good_runs),
                words::count(ind.total.valid_runs),
                words::budget(ind.budget_remaining)
            );
            let regions: Vec<(&str, Count)> = ind.regions.iter().map(|r| (r.region.as_str(), r.count)).collect();
            counts_table(&mut md, "Region", &regions);
            // Per probe account, when the journey ran as several.
            if !ind.accounts.is_empty() {
                let accounts: Vec<(&str, Count)> = ind.accounts.iter().map(|a| (a.account.as_str(), a.count)).collect();
                md.push_str("\nAll regions, per probe account:\n\n");
                counts_table(&mut md, "Account", &accounts);
            }
            md.push_str("\n| Day (UTC) | All regions |");
            for r in &ind.regions {
                let _ = write!(md, " {} |", cell(&r.region));
            }
            md.push_str(" Runs |\n|---|---:|");
            md.push_str(&"---:|".repeat(ind.regions.len()));
            md.push_str("---:|\n");
            for d in &ind.daily {
                let _ = write!(md, "| {} | {} |", words::time(d.start), percent_or_dash(d.count.ratio));
                for r in &d.regions {
                    let _ = write!(md, " {} |", percent_or_dash(r.count.ratio));
                }
                let _ = writeln!(md, " {} |", words::count(d.count.valid_runs));
            }
            if ind.incidents.is_empty() {
                md.push_str("\nNo incidents.\n\n");
            } else {
                md.push_str(
                    "\n| Seen from | Start | End | Duration | Bad runs | Budget spent |\n\
                     |---|---|---|---:|---:|---:|\n",
                );
                for i in &ind.incidents {
                    let seen = match i.kind {
                        IncidentKind::Page => format!("{} (paged)", and_list(&i.regions)),
                        IncidentKind::RegionOnly => format!("{} only", and_list(&i.regions)),
                    };
                    let _ = writeln!(
                        md,
                        "| {} | {} | {}{} | {} | {} | {} |",
                        cell(&seen),
                        words::time(i.start),
                        words::time(i.end),
                        if i.ongoing { " (ongoing)" } else { "" },
                        words::duration(i.duration_seconds),
                        words::count(i.bad_runs),
                        percent(i.budget_spent)
                    );
                }
                md.push('\n');
            }
        }
        if let Some(apdex) = &j.apdex {
            let _ = writeln!(
                md,
                "### APDEX: {}\n\nMeasured {} over {} scored runs. {}\n",
                cell(&apdex.objective_text),
                apdex_status(apdex),
                words::count(apdex.total.runs),
                cell(super::html::APDEX_EXPLAINED)
            );
            md.push_str("| Region | APDEX | Runs scored |\n|---|---:|---:|\n");
            for r in &apdex.regions {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} |",
                    cell(&r.region),
                    words::apdex(r.count.score),
                    words::count(r.count.runs)
                );
            }
        }
    }
    md.push_str("\n## Federation delay\n\n");
    if report.federation.is_empty() {
        md.push_str("No federation journeys: no federation delay was measured in the window.\n");
    } else {
        md.push_str(
            "| From → to | Region | Posts | Median | 95th percentile | 99th percentile |\n\
             |---|---|---:|---:|---:|---:|\n",
        );
        for f in &report.federation {
            let _ = writeln!(
                md,
                "| {} → {} | {} | {} | {} | {} | {} |",
                cell(&f.source),
                cell(&f.destination),
                cell(&f.region),
                words::count(f.samples),
                words::seconds(f.p50_seconds),
                words::seconds(f.p95_seconds),
                words::seconds(f.p99_seconds)
            );
        }
    }
    if !report.problems.is_empty() {
        md.push_str("\n## Missing data\n\n");
        for p in &report.problems {
            let _ = writeln!(md, "- {}", cell(p));
        }
    }
    let _ = writeln!(md, "\n_Made by fediprobe on {}._", words::time(report.generated_at));
    md
}

/// A table of runs counted per region or per account.
fn counts_table(md: &mut String, what: &str, rows: &[(&str, Count)]) {
    let _ = writeln!(md, "| {what} | Measured | Good runs | Runs |\n|---|---:|---:|---:|");
    for (name, count) in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            cell(name),
            percent_or_dash(count.ratio),
            words::count(count.good_runs),
            words::count(count.valid_runs)
        );
    }
}

fn apdex_status(apdex: &ApdexReport) -> String {
    match (apdex.total.score, apdex.met) {
        (Some(_), Some(true)) => format!("{} ✓ met", words::apdex(apdex.total.score)),
        (Some(_), _) => format!("{} ✗ missed", words::apdex(apdex.total.score)),
        _ => "no runs".to_owned(),
    }
}

fn status(ind: &IndicatorReport) -> String {
    match (ind.total.ratio, ind.met) {
        (Some(r), Some(true)) => format!("{} ✓ met", percent(r)),
        (Some(r), _) => format!("{} ✗ missed", percent(r)),
        _ => "no runs".to_owned(),
    }
}

/// Text safe inside a table cell and free of Markdown and HTML markup.
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' | '\\' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
