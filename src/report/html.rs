//! The report as one self-contained HTML page: inline CSS and SVG, no script,
//! no external asset, so it reads the same offline, in any browser and on a
//! phone, and an admin can publish the file as it is. Every chart's numbers are
//! also in a table, and every value that came from a label or a journey file is
//! escaped.

use std::fmt::Write;

use super::chart::{self, Chart, Line};
use super::compute::and_list;
use super::model::{ApdexReport, Count, IncidentKind, IndicatorReport, JourneyReport, Report};
use super::words::{self, escape, percent, percent_or_dash};

const STYLE: &str = "
:root { color-scheme: light; --ink: #111827; --muted: #4b5563; --line: #d1d5db; --bad: #b91c1c; --good: #047857; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: var(--ink); background: #fff; }
main { max-width: 54rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.6rem; line-height: 1.2; margin: 0.5rem 0; }
h2 { font-size: 1.3rem; margin: 2.5rem 0 0.5rem; border-top: 1px solid var(--line); padding-top: 1.5rem; }
h3 { font-size: 1.05rem; margin: 1.5rem 0 0.5rem; }
p { margin: 0.5rem 0; }
.muted, figcaption, .tick { color: var(--muted); }
.lede { font-size: 1.05rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: 0.5rem 0; font-size: 0.92rem; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.n, th.n { text-align: right; white-space: nowrap; }
.met { color: var(--good); font-weight: 600; }
.missed { color: var(--bad); font-weight: 600; }
.numbers { display: flex; flex-wrap: wrap; gap: 0.5rem 2rem; margin: 0.5rem 0; }
.numbers div { min-width: 9rem; }
.numbers dt { font-size: 0.85rem; color: var(--muted); }
.numbers dd { margin: 0; font-size: 1.3rem; font-weight: 600; font-variant-numeric: tabular-nums; }
figure { margin: 0.75rem 0; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart .grid { stroke: #e5e7eb; stroke-width: 1; }
svg.chart text { font: 13px system-ui, sans-serif; fill: var(--muted); }
svg.chart text.objective { fill: var(--bad); }
.legend { list-style: none; padding: 0; margin: 0.25rem 0; display: flex; flex-wrap: wrap; gap: 0.25rem 1.25rem; font-size: 0.9rem; }
.legend svg { vertical-align: middle; margin-right: 0.3rem; }
details { margin: 0.5rem 0; }
summary { cursor: pointer; color: var(--muted); }
.problems li { color: var(--bad); }
@media (max-width: 40rem) {
  main { padding: 0.75rem; }
  table { font-size: 0.82rem; }
  th, td { padding: 0.25rem 0.3rem; }
  .numbers dd { font-size: 1.15rem; }
}
footer { margin-top: 3rem; border-top: 1px solid var(--line); padding-top: 1rem; font-size: 0.9rem; color: var(--muted); }
";

/// The whole page.
pub fn render(report: &Report) -> String {
    let site = words::site(&report.instances);
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Service levels of {site}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n<header>\n\
         <h1>Service levels of {site}</h1>\n<p class=\"lede\">How well the things people do on {site} worked \
         {coverage}, measured by probes {from_where}.</p>\n</header>\n",
        site = escape(&site),
        coverage = escape(&words::coverage(&report.window)),
        from_where = escape(&from_where(&report.regions)),
    );
    summary(&mut page, report);
    for (i, journey) in report.journeys.iter().enumerate() {
        journey_section(&mut page, report, i, journey);
    }
    federation(&mut page, report);
    if !report.problems.is_empty() {
        page.push_str(
            "<section aria-labelledby=\"problems\">\n<h2 id=\"problems\">Missing data</h2>\n<ul class=\"problems\">\n",
        );
        for p in &report.problems {
            let _ = writeln!(page, "<li>{}</li>", escape(p));
        }
        page.push_str("</ul>\n</section>\n");
    }
    let _ = write!(
        page,
        "<footer>\n<p>Each journey is a scripted user action, run every few minutes from each region. A run that \
         fails because of the probe itself (its token, its own network, its own rate limit) counts neither for nor \
         against an objective. Percentages are exact ratios of runs, to two decimals (never rounded up to 100%). The error budget is the share of \
         runs the objective allows to fail; incidents are the periods in which the alerting rules' own page \
         condition held, evaluated every minute over these runs: the budget burning fast enough to spend {share}% \
         of an objective window's budget in an hour (over the last hour and five minutes) or 5% in six hours (over \
         the last six hours and 30 minutes), seen from at least {quorum} regions (paged) or from fewer (region \
         only).</p>\n\
         <p>Made by fediprobe on {generated}.</p>\n</footer>\n</main>\n</body>\n</html>\n",
        share = crate::generate::slo::round(
            crate::generate::slo::BURN_WINDOWS[0].budget_share(crate::generate::slo::REFERENCE_WINDOW) * 100.0
        ),
        quorum = report.page_quorum,
        generated = escape(&words::time(report.generated_at)),
    );
    page
}

/// "from probes in a, b and c, outside the instance's network"
pub fn from_where(regions: &[String]) -> String {
    if regions.is_empty() {
        "outside the instance's network".to_owned()
    } else {
        format!("in {}, outside the instance's network", and_list(regions))
    }
}

fn summary(page: &mut String, report: &Report) {
    page.push_str(
        "<section aria-labelledby=\"summary\">\n<h2 id=\"summary\">Summary</h2>\n<div class=\"scroll\"><table>\n\
         <thead><tr><th scope=\"col\">Journey</th><th scope=\"col\">Indicator</th><th scope=\"col\">Objective</th>\
         <th scope=\"col\" class=\"n\">Measured</th><th scope=\"col\" class=\"n\">Error budget</th>\
         <th scope=\"col\" class=\"n\">Incidents</th></tr></thead>\n<tbody>\n",
    );
    for journey in &report.journeys {
        for (k, ind) in journey.indicators.iter().enumerate() {
            let name = if k == 0 {
                format!("<a href=\"#{}\">{}</a>", anchor(&journey.name), escape(&journey.name))
            } else {
                String::new()
            };
            let _ = writeln!(
                page,
                "<tr><td>{name}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td></tr>",
                escape(ind.sli),
                escape(&ind.objective_text),
                status(ind),
                escape(&words::budget(ind.budget_remaining)),
                ind.incidents.len(),
            );
        }
        if let Some(apdex) = &journey.apdex {
            let _ = writeln!(
                page,
                "<tr><td></td><td>apdex</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">–</td>\
                 <td class=\"n\">–</td></tr>",
                escape(&apdex.objective_text),
                apdex_status(apdex),
            );
        }
    }
    page.push_str("</tbody>\n</table></div>\n</section>\n");
}

/// The measured ratio, marked met or missed.
fn status(ind: &IndicatorReport) -> String {
    match (ind.total.ratio, ind.met) {
        (Some(r), Some(true)) => format!("<span class=\"met\">{} ✓ met</span>", percent(r)),
        (Some(r), _) => format!("<span class=\"missed\">{} ✗ missed</span>", percent(r)),
        _ => "<span class=\"missed\">no runs</span>".to_owned(),
    }
}

/// The measured APDEX, marked met or missed.
fn apdex_status(apdex: &ApdexReport) -> String {
    match (apdex.total.score, apdex.met) {
        (Some(_), Some(true)) => format!("<span class=\"met\">{} ✓ met</span>", words::apdex(apdex.total.score)),
        (Some(_), _) => format!("<span class=\"missed\">{} ✗ missed</span>", words::apdex(apdex.total.score)),
        _ => "<span class=\"missed\">no runs</span>".to_owned(),
    }
}

/// What a run's APDEX score is, in a sentence under the figures.
pub const APDEX_EXPLAINED: &str = "Each run scores 1 when it succeeded within the threshold (satisfied), 0.5 when it \
succeeded within the tolerating bound, and 0 when it was slower or failed, however fast (frustrated); runs that \
failed because of the probe itself are not scored. The APDEX is the mean score: (satisfied + tolerating ÷ 2) ÷ runs.";

fn apdex_section(page: &mut String, apdex: &ApdexReport) {
    let _ = write!(
        page,
        "<h3>APDEX: {}</h3>\n<dl class=\"numbers\">\n<div><dt>Measured</dt><dd>{}</dd></div>\n\
         <div><dt>Objective</dt><dd>{}</dd></div>\n<div><dt>Runs scored</dt><dd>{}</dd></div>\n</dl>\n\
         <p class=\"muted\">{}</p>\n",
        escape(&apdex.objective_text),
        apdex_status(apdex),
        escape(&words::apdex(Some(apdex.objective))),
        words::count(apdex.total.runs),
        escape(APDEX_EXPLAINED),
    );
    page.push_str(
        "<div class=\"scroll\"><table>\n<caption class=\"muted\">By region, over the whole window</caption>\n\
         <thead><tr><th scope=\"col\">Region</th><th scope=\"col\" class=\"n\">APDEX</th>\
         <th scope=\"col\" class=\"n\">Runs scored</th></tr></thead>\n<tbody>\n",
    );
    for r in &apdex.regions {
        let class = match r.count.score {
            Some(v) if v < apdex.objective => " class=\"missed\"",
            _ => "",
        };
        let _ = writeln!(
            page,
            "<tr><th scope=\"row\">{}</th><td class=\"n\"><span{class}>{}</span></td><td class=\"n\">{}</td></tr>",
            escape(&r.region),
            escape(&words::apdex(r.count.score)),
            words::count(r.count.runs),
        );
    }
    page.push_str("</tbody>\n</table></div>\n");
}

fn anchor(name: &str) -> String {
    let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("journey-{safe}")
}

fn journey_section(page: &mut String, report: &Report, index: usize, journey: &JourneyReport) {
    let id = anchor(&journey.name);
    let _ = writeln!(
        page,
        "<section class=\"journey\" aria-labelledby=\"{id}\">\n<h2 id=\"{id}\">{}</h2>",
        escape(&journey.name)
    );
    if let Some(d) = &journey.description {
        let _ = writeln!(page, "<p class=\"lede\">{}</p>", escape(d));
    }
    let _ = writeln!(
        page,
        "<p><strong>Objective:</strong> {} (over {} days).</p>\n<p>Measured from probes {}. {}</p>",
        escape(&journey.objective),
        journey.slo_window_days,
        escape(&from_where(&journey.measured_from)),
        escape(&timing_sentence(&journey.measures)),
    );
    for (k, ind) in journey.indicators.iter().enumerate() {
        indicator_section(page, report, &format!("c{index}-{k}"), journey, ind);
    }
    if let Some(apdex) = &journey.apdex {
        apdex_section(page, apdex);
    }
    page.push_str("</section>\n");
}

fn timing_sentence(measures: &str) -> String {
    let m = measures.trim().trim_end_matches('.');
    if m.is_empty() { String::new() } else { format!("What the timing covers: {m}.") }
}

fn indicator_section(page: &mut String, report: &Report, id: &str, journey: &JourneyReport, ind: &IndicatorReport) {
    let title = match ind.sli {
        "latency" => "Latency",
        "delay" => "Federation delay",
        _ => "Availability",
    };
    let _ = write!(
        page,
        "<h3>{title}: {}</h3>\n<dl class=\"numbers\">\n<div><dt>Measured</dt><dd>{}</dd></div>\n\
         <div><dt>Objective</dt><dd>{}</dd></div>\n<div><dt>Error budget</dt><dd>{}</dd></div>\n\
         <div><dt>Runs counted</dt><dd>{}</dd></div>\n</dl>\n",
        escape(&ind.objective_text),
        status(ind),
        escape(&percent(ind.objective)),
        escape(&words::budget(ind.budget_remaining)),
        escape(&format!("{} of {} good", words::count(ind.total.good_runs), words::count(ind.total.valid_runs))),
    );
    chart_figure(page, report, id, journey, ind);
    let regions: Vec<(&str, Count)> = ind.regions.iter().map(|r| (r.region.as_str(), r.count)).collect();
    counts_table(page, "By region, over the whole window", "Region", &regions, ind.objective);
    // Per probe account, when the journey ran as several.
    if !ind.accounts.is_empty() {
        let accounts: Vec<(&str, Count)> = ind.accounts.iter().map(|a| (a.account.as_str(), a.count)).collect();
        let caption = "By probe account, all regions, over the whole window";
        counts_table(page, caption, "Account", &accounts, ind.objective);
    }
    daily_table(page, ind);
    incidents(page, ind);
}

/// A table of runs counted per region or per account, a ratio below `objective` marked.
fn counts_table(page: &mut String, caption: &str, what: &str, rows: &[(&str, Count)], objective: f64) {
    let _ = write!(
        page,
        "<div class=\"scroll\"><table>\n<caption class=\"muted\">{caption}</caption>\n\
         <thead><tr><th scope=\"col\">{what}</th><th scope=\"col\" class=\"n\">Measured</th>\
         <th scope=\"col\" class=\"n\">Good runs</th><th scope=\"col\" class=\"n\">Runs</th></tr></thead>\n<tbody>\n",
    );
    for (name, count) in rows {
        let class = match count.ratio {
            Some(v) if v < objective => " class=\"missed\"",
            _ => "",
        };
        let _ = writeln!(
            page,
            "<tr><th scope=\"row\">{}</th><td class=\"n\"><span{class}>{}</span></td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            escape(name),
            escape(&percent_or_dash(count.ratio)),
            words::count(count.good_runs),
            words::count(count.valid_runs),
        );
    }
    page.push_str("</tbody>\n</table></div>\n");
}

fn chart_figure(page: &mut String, report: &Report, id: &str, journey: &JourneyReport, ind: &IndicatorReport) {
    let mut lines: Vec<Line<'_>> = Vec::new();
    let mut legend = Vec::new();
    for (k, region) in ind.regions.iter().enumerate() {
        let style = chart::region_style(report.regions.iter().position(|r| *r == region.region).unwrap_or(k));
        let values = ind
            .daily
            .iter()
            .map(|d| d.regions.iter().find(|r| r.region == region.region).and_then(|r| r.count.ratio))
            .collect();
        lines.push(Line { label: &region.region, values, style });
        legend.push((region.region.as_str(), style));
    }
    lines.push(Line {
        label: "all regions",
        values: ind.daily.iter().map(|d| d.count.ratio).collect(),
        style: chart::POOLED,
    });
    legend.push(("all regions", chart::POOLED));
    legend.push(("objective", chart::OBJECTIVE));
    let worst = ind.daily.iter().filter_map(|d| d.count.ratio.map(|r| (r, d.start))).min_by(|a, b| a.0.total_cmp(&b.0));
    let description = match worst {
        Some((r, day)) => format!(
            "Daily {} of {} per region and for all regions, against the objective of {}. The lowest day for all \
             regions was {} at {}. The numbers are in the tables below.",
            ind.sli,
            journey.name,
            percent(ind.objective),
            words::day(day),
            percent(r)
        ),
        None => format!("No runs of {} in the window.", journey.name),
    };
    let chart = Chart {
        id,
        title: format!("Daily {} of {}", ind.sli, journey.name),
        description,
        days: ind.daily.iter().map(|d| words::day(d.start)).collect(),
        lines,
        objective: ind.objective,
    };
    let _ = write!(page, "<figure>\n{}\n<figcaption><ul class=\"legend\">", chart::render(&chart));
    for (label, style) in legend {
        let _ = write!(
            page,
            "<li><svg width=\"28\" height=\"10\" aria-hidden=\"true\"><line x1=\"1\" y1=\"5\" x2=\"27\" y2=\"5\" \
             stroke=\"{}\" stroke-width=\"{}\" stroke-dasharray=\"{}\"/></svg>{}</li>",
            style.color,
            style.width,
            style.dash,
            escape(label)
        );
    }
    page.push_str("</ul>Days below the objective are marked with a red dot.</figcaption>\n</figure>\n");
}

fn daily_table(page: &mut String, ind: &IndicatorReport) {
    page.push_str(
        "<details>\n<summary>Day by day</summary>\n<div class=\"scroll\"><table>\n<thead><tr>\
         <th scope=\"col\">Day (UTC)</th><th scope=\"col\" class=\"n\">All regions</th>",
    );
    for r in &ind.regions {
        let _ = write!(page, "<th scope=\"col\" class=\"n\">{}</th>", escape(&r.region));
    }
    page.push_str("<th scope=\"col\" class=\"n\">Runs</th></tr></thead>\n<tbody>\n");
    for day in &ind.daily {
        let _ = write!(
            page,
            "<tr><th scope=\"row\">{}</th><td class=\"n\">{}</td>",
            escape(&words::time(day.start)),
            escape(&percent_or_dash(day.count.ratio))
        );
        for r in &day.regions {
            let _ = write!(page, "<td class=\"n\">{}</td>", escape(&percent_or_dash(r.count.ratio)));
        }
        let _ = writeln!(page, "<td class=\"n\">{}</td></tr>", words::count(day.count.valid_runs));
    }
    page.push_str("</tbody>\n</table></div>\n</details>\n");
}

fn incidents(page: &mut String, ind: &IndicatorReport) {
    if ind.incidents.is_empty() {
        page.push_str("<p>No incidents: the error budget never burned fast enough to page.</p>\n");
        return;
    }
    page.push_str(
        "<div class=\"scroll\"><table>\n<caption class=\"muted\">Incidents: periods of fast burn</caption>\n\
         <thead><tr><th scope=\"col\">Seen from</th><th scope=\"col\">Start</th><th scope=\"col\">End</th>\
         <th scope=\"col\" class=\"n\">Duration</th><th scope=\"col\" class=\"n\">Bad runs</th>\
         <th scope=\"col\" class=\"n\">Budget spent</th></tr></thead>\n<tbody>\n",
    );
    for i in &ind.incidents {
        let seen = match i.kind {
            IncidentKind::Page => format!("{} (paged)", and_list(&i.regions)),
            IncidentKind::RegionOnly => format!("{} only", and_list(&i.regions)),
        };
        let end = if i.ongoing { format!("{} (ongoing)", words::time(i.end)) } else { words::time(i.end) };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            escape(&seen),
            escape(&words::time(i.start)),
            escape(&end),
            escape(&words::duration(i.duration_seconds)),
            words::count(i.bad_runs),
            escape(&percent(i.budget_spent)),
        );
    }
    page.push_str("</tbody>\n</table></div>\n");
}

fn federation(page: &mut String, report: &Report) {
    page.push_str("<section aria-labelledby=\"federation\">\n<h2 id=\"federation\">Federation delay</h2>\n");
    if report.federation.is_empty() {
        page.push_str("<p>No federation journeys: no federation delay was measured in the window.</p>\n</section>\n");
        return;
    }
    page.push_str(
        "<p>How long a post took to arrive on the other instance, from the moment it was posted.</p>\n\
         <div class=\"scroll\"><table>\n<thead><tr><th scope=\"col\">From → to</th><th scope=\"col\">Region</th>\
         <th scope=\"col\" class=\"n\">Posts</th><th scope=\"col\" class=\"n\">Median</th>\
         <th scope=\"col\" class=\"n\">95th percentile</th><th scope=\"col\" class=\"n\">99th percentile</th></tr>\
         </thead>\n<tbody>\n",
    );
    for f in &report.federation {
        let _ = writeln!(
            page,
            "<tr><td>{} → {}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            escape(&f.source),
            escape(&f.destination),
            escape(&f.region),
            words::count(f.samples),
            escape(&words::seconds(f.p50_seconds)),
            escape(&words::seconds(f.p95_seconds)),
            escape(&words::seconds(f.p99_seconds)),
        );
    }
    page.push_str("</tbody>\n</table></div>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::compute::time;
    use crate::report::model::{AccountCount, Day, FederationDelay, Incident, Instance, RegionCount, Window};

    /// A report whose every label value is hostile markup.
    fn hostile() -> Report {
        let evil = "<script>alert(1)</script>";
        let count = |region: &str| RegionCount { region: region.to_owned(), count: Count::new(10, 9) };
        let indicator = IndicatorReport {
            sli: "availability",
            objective: 0.995,
            threshold_seconds: None,
            objective_text: "99.5% of runs succeed".into(),
            total: Count::new(10, 9),
            budget_remaining: Some(-19.0),
            met: Some(false),
            regions: vec![count(evil)],
            accounts: vec![
                AccountCount { account: evil.to_owned(), count: Count::new(10, 9) },
                AccountCount { account: "busy".to_owned(), count: Count::new(10, 10) },
            ],
            daily: vec![Day { start: time(0), count: Count::new(10, 9), regions: vec![count(evil)] }],
            incidents: vec![Incident {
                kind: IncidentKind::RegionOnly,
                start: time(0),
                end: time(3600),
                duration_seconds: 3600,
                ongoing: true,
                regions: vec![evil.into()],
                bad_runs: 1,
                budget_spent: 20.0,
            }],
        };
        Report {
            generated_at: time(0),
            window: Window {
                start: time(0),
                end: time(86_400),
                days: 1,
                coverage: Some(super::super::model::Coverage { start: time(0), end: time(86_400) }),
            },
            instances: vec![Instance { name: "main".into(), host: evil.into() }],
            regions: vec![evil.into()],
            page_quorum: 2,
            journeys: vec![JourneyReport {
                name: evil.into(),
                description: Some(evil.into()),
                instance: "main".into(),
                measures: evil.into(),
                slo_window_days: 30,
                objective: evil.into(),
                measured_from: vec![evil.into()],
                indicators: vec![indicator],
                apdex: Some(super::super::model::ApdexReport {
                    threshold_seconds: 0.1,
                    tolerating_seconds: 0.4,
                    objective: 0.85,
                    objective_text: evil.into(),
                    total: super::super::model::ApdexCount::new(7, 3.5),
                    met: Some(false),
                    regions: vec![super::super::model::RegionApdex {
                        region: evil.into(),
                        count: super::super::model::ApdexCount::new(7, 3.5),
                    }],
                }),
            }],
            federation: vec![FederationDelay {
                source: evil.into(),
                destination: evil.into(),
                region: evil.into(),
                samples: 1,
                p50_seconds: Some(0.5),
                p95_seconds: None,
                p99_seconds: None,
            }],
            problems: vec![evil.into()],
        }
    }

    #[test]
    fn every_label_value_is_escaped_and_the_page_has_no_script() {
        let page = render(&hostile());
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("20× the budget spent"), "budget -19 is twenty budgets spent");
        assert!(page.contains("(ongoing)"));
        assert!(page.contains("0.50 ✗ missed"), "the APDEX, to two decimals");
        let markdown = crate::report::markdown::render(&hostile());
        // Markdown escapes markup with a backslash: every `<` is `\<`.
        assert_eq!(markdown.matches('<').count(), markdown.matches("\\<").count(), "{markdown}");
    }
}
