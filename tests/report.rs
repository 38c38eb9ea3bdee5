//! `fediprobe report` against a real VictoriaMetrics backfilled with a known
//! history: ten days of three journeys probed from three regions every five
//! minutes, with outages of known length. The JSON's numbers must match the
//! history exactly, and the HTML page must render in a real headless Chromium
//! (the page and its screenshot are kept in `target/test-artifacts/`).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::tools;
use support::victoria::{VictoriaMetrics, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_fediprobe");
const REGIONS: [&str; 3] = ["ap-southeast", "eu-west", "us-east"];
const DAY: i64 = 86_400;
const DAYS: i64 = 10;
/// Runs every five minutes, 30 s past the slot.
const PERIOD: i64 = 300;
const RUNS_PER_DAY: i64 = DAY / PERIOD;
const OFFSET: i64 = 30;

/// The run at `minute` past midnight of day `day` (0-based from the window's start).
fn run_index(day: i64, hour: i64, minute: i64) -> i64 {
    day * RUNS_PER_DAY + (hour * 60 + minute) / 5
}

/// How one run of a journey from a region went.
#[derive(Clone, Copy, PartialEq)]
enum Run {
    Fast,
    Slow,
    Failed,
    /// No sample at all (the region does not probe the journey).
    Absent,
}

/// The history: what happened to run `k` of `journey` from `region`.
fn history(journey: &str, region: &str, k: i64) -> Run {
    let within = |from: (i64, i64, i64), to: (i64, i64, i64)| {
        k >= run_index(from.0, from.1, from.2) && k < run_index(to.0, to.1, to.2)
    };
    match journey {
        // us-east alone fails for 2 h on day 3 (index 2); every region fails for 30 min on day 6 (index 5).
        "home-timeline" if region == "us-east" && within((2, 10, 0), (2, 12, 0)) => Run::Failed,
        "home-timeline" if within((5, 14, 0), (5, 14, 30)) => Run::Failed,
        // One stray failure on day 2 from eu-west; every region slow for 1 h on day 8.
        "post-status" if region == "eu-west" && k == run_index(1, 5, 0) => Run::Failed,
        "post-status" if within((7, 8, 0), (7, 9, 0)) => Run::Slow,
        // ap-southeast does not probe notifications at all.
        "notifications" if region == "ap-southeast" => Run::Absent,
        _ => Run::Fast,
    }
}

const JOURNEYS: [(&str, &str); 3] = [
    ("home-timeline", "slo:\n  availability: 99.5%\n  latency: { threshold: 500ms, objective: 95% }\n"),
    ("notifications", "slo:\n  availability: 99.5%\n"),
    ("post-status", "slo:\n  availability: 99%\n  latency: { threshold: 1s, objective: 95% }\n"),
];

/// The samples of the history, in Prometheus text format, from `start`.
fn backfill(start: i64) -> String {
    let mut text = String::new();
    for (journey, _) in JOURNEYS {
        for region in REGIONS {
            let labels = format!("journey=\"{journey}\",instance=\"main\",region=\"{region}\",account=\"fediprobe\"");
            for k in 0..DAYS * RUNS_PER_DAY {
                let (success, fast) = match history(journey, region, k) {
                    Run::Absent => continue,
                    Run::Fast => (1, 1),
                    Run::Slow => (1, 0),
                    Run::Failed => (0, 0),
                };
                let t = (start + k * PERIOD + OFFSET) * 1000;
                text.push_str(&format!("fediprobe_journey_success{{{labels}}} {success} {t}\n"));
                text.push_str(&format!("fediprobe_journey_latency_ok{{{labels}}} {fast} {t}\n"));
            }
        }
    }
    // Ten federated posts from main to peer seen from eu-west, 1 s to 10 s late.
    for i in 1..=10 {
        let labels = "journey=\"federation\",instance=\"main\",region=\"eu-west\",account=\"fediprobe\",\
                      source=\"main\",destination=\"peer\"";
        let t = (start + i * 3600) * 1000;
        text.push_str(&format!("fediprobe_federation_delay_seconds{{{labels}}} {i} {t}\n"));
    }
    text
}

/// A config with the three journeys, probed from three regions with a page quorum of two.
fn write_config(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("journeys")).unwrap();
    for (name, slo) in JOURNEYS {
        let description = format!("The {name} journey, <as> a user & \"friends\" see it.");
        std::fs::write(
            dir.join("journeys").join(format!("{name}.yaml")),
            format!(
                "name: {name}\ndescription: '{description}'\ninstance: main\nschedule: \"*/5 * * * *\"\n{slo}steps:\n  \
                 - name: one\n    request: {{ path: /api/v1/timelines/home }}\n"
            ),
        )
        .unwrap();
    }
    let config = dir.join("fediprobe.yaml");
    std::fs::write(
        &config,
        "probe:\n  region: eu-west\ninstances:\n  main:\n    url: https://mastodon.example\n    account: fediprobe\n    \
         token: { env: FEDIPROBE_MAIN_TOKEN }\njourneys: [journeys/]\nrules:\n  regions: [eu-west, us-east, ap-southeast]\n  \
         page_quorum: 2\n",
    )
    .unwrap();
    config
}

fn fediprobe(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("FEDIPROBE_LOG").output().expect("the binary runs")
}

/// `fediprobe report` over `window` ending at `end`, written to `out`, with the
/// test config written into `dir`.
fn report_over(vm: &VictoriaMetrics, dir: &Path, window: &str, end: i64, out: &Path) -> Output {
    let config = write_config(dir);
    fediprobe(&[
        "report",
        "-c",
        config.to_str().unwrap(),
        "--from-url",
        &vm.base_url(),
        "--window",
        window,
        "--end",
        &rfc3339(end),
        "--out",
        out.to_str().unwrap(),
    ])
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The last UTC midnight: the window's end.
fn last_midnight() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    now / DAY * DAY
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `{valid, good, bad, ratio}` as the report writes a count.
fn assert_count(value: &Value, valid: u64, good: u64, what: &str) {
    assert_eq!(value["valid_runs"], valid, "{what}: valid runs in {value}");
    assert_eq!(value["good_runs"], good, "{what}: good runs in {value}");
    assert_eq!(value["bad_runs"], valid - good, "{what}: bad runs in {value}");
    if valid == 0 {
        assert!(value["ratio"].is_null(), "{what}: no ratio without runs in {value}");
    } else {
        assert_eq!(value["ratio"].as_f64(), Some(good as f64 / valid as f64), "{what}: ratio in {value}");
    }
}

fn indicator<'a>(report: &'a Value, journey: &str, sli: &str) -> &'a Value {
    let j = report["journeys"].as_array().unwrap().iter().find(|j| j["name"] == journey).unwrap();
    j["indicators"].as_array().unwrap().iter().find(|i| i["sli"] == sli).unwrap()
}

fn region<'a>(value: &'a Value, name: &str) -> &'a Value {
    value["regions"].as_array().unwrap().iter().find(|r| r["region"] == name).unwrap()
}

fn budget(objective: f64) -> f64 {
    1.0 - objective
}

fn assert_incident(
    incident: &Value,
    kind: &str,
    start: i64,
    minutes: i64,
    regions: &[&str],
    bad: u64,
    budget_runs: f64,
) {
    assert_eq!(incident["kind"], kind, "{incident}");
    assert_eq!(incident["start"], rfc3339(start), "{incident}");
    assert_eq!(incident["end"], rfc3339(start + minutes * 60), "{incident}");
    assert_eq!(incident["duration_seconds"], minutes * 60, "{incident}");
    assert_eq!(incident["ongoing"], false, "{incident}");
    assert_eq!(incident["regions"], serde_json::json!(regions), "{incident}");
    assert_eq!(incident["bad_runs"], bad, "{incident}");
    assert_eq!(incident["budget_spent"].as_f64(), Some(bad as f64 / budget_runs), "{incident}");
}

#[test]
fn the_report_of_a_known_history_has_its_exact_numbers_and_renders_in_chromium() {
    let chromium = tools::chromium();
    let vm = VictoriaMetrics::start();
    let end = last_midnight();
    let start = end - DAYS * DAY;
    vm.import_prometheus(&backfill(start));
    let all_runs = (3 * 3 - 1) * DAYS * RUNS_PER_DAY;
    vm.wait_for_value("sum(count_over_time(fediprobe_journey_success[10d]))", end, all_runs as f64);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("site");
    let output = report_over(&vm, dir.path(), "10d", end, &out);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "report failed:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("warning: no samples for journey notifications from region ap-southeast in the window"),
        "{stderr}"
    );
    assert!(stdout.contains("wrote") && stdout.contains("report.html"), "{stdout}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["window"]["start"], rfc3339(start));
    assert_eq!(report["window"]["end"], rfc3339(end));
    assert_eq!(report["window"]["days"], DAYS);
    assert_eq!(report["regions"], serde_json::json!(REGIONS));
    assert_eq!(
        report["problems"],
        serde_json::json!(["no samples for journey notifications from region ap-southeast in the window"])
    );
    let names: Vec<&str> = report["journeys"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["home-timeline", "notifications", "post-status"]);

    // home-timeline availability: 2 h of us-east (24 runs) and 30 min of all three (6 runs each) failed.
    let runs = (DAYS * RUNS_PER_DAY) as u64;
    let home = indicator(&report, "home-timeline", "availability");
    assert_count(home, 3 * runs, 3 * runs - 24 - 18, "home-timeline");
    assert_count(region(home, "us-east"), runs, runs - 30, "home-timeline us-east");
    assert_count(region(home, "eu-west"), runs, runs - 6, "home-timeline eu-west");
    let b = budget(0.995);
    assert_eq!(home["budget_remaining"].as_f64(), Some(1.0 - (42.0 / (3 * runs) as f64) / b));
    assert_eq!(home["met"], true, "42 bad runs of 8,640 is 0.49%, within the 0.5% budget: {home}");
    let daily = home["daily"].as_array().unwrap();
    assert_eq!(daily.len(), DAYS as usize);
    assert_eq!(daily[0]["start"], rfc3339(start));
    let per_day = RUNS_PER_DAY as u64;
    assert_count(&daily[2], 3 * per_day, 3 * per_day - 24, "day 3");
    assert_count(region(&daily[2], "us-east"), per_day, per_day - 24, "day 3 us-east");
    assert_count(region(&daily[2], "eu-west"), per_day, per_day, "day 3 eu-west");
    assert_count(&daily[5], 3 * per_day, 3 * per_day - 18, "day 6");
    assert_count(&daily[9], 3 * per_day, 3 * per_day, "day 10");
    let incidents = home["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 2, "{incidents:?}");
    let budget_runs = b * (3 * runs) as f64;
    // Incidents are where the rules' own conditions held, evaluated every minute
    // as vmalert does: from the first minute after the first failed run (its
    // run at :30 makes the 1h and 5m ratios burn at the next minute) until the
    // 6h/30m pair lets go, 30 minutes after the last failed run (at :25:30).
    // us-east alone, 10:00-12:00: region-only from 10:01 to 12:26.
    assert_incident(&incidents[0], "region_only", start + 2 * DAY + 10 * 3600 + 60, 145, &["us-east"], 24, budget_runs);
    // Everywhere, 14:00-14:30: a page from 14:01 to 14:56.
    assert_incident(&incidents[1], "page", start + 5 * DAY + 14 * 3600 + 60, 55, &REGIONS, 18, budget_runs);
    // Failed runs are not slow runs: home-timeline's latency is untouched.
    let home_latency = indicator(&report, "home-timeline", "latency");
    assert_count(home_latency, 3 * runs - 42, 3 * runs - 42, "home-timeline latency");
    assert_eq!(home_latency["budget_remaining"].as_f64(), Some(1.0));
    assert_eq!(home_latency["incidents"], serde_json::json!([]));

    // post-status: one stray failure (no incident at 99%), and 1 h slow in every region:
    // the latency page holds once the hour's ratio passes 14.4 × 5% (the ninth
    // slow run, at 08:40:30), from 08:41 until the 5m window empties at 09:01
    // (the 6h/30m pair never reaches 6 × 5%: 12 of 72).
    let post = indicator(&report, "post-status", "availability");
    assert_count(post, 3 * runs, 3 * runs - 1, "post-status");
    assert_eq!(post["met"], true);
    assert_eq!(post["incidents"], serde_json::json!([]));
    let post_latency = indicator(&report, "post-status", "latency");
    assert_count(post_latency, 3 * runs - 1, 3 * runs - 1 - 36, "post-status latency");
    let latency_incidents = post_latency["incidents"].as_array().unwrap();
    assert_eq!(latency_incidents.len(), 1, "{latency_incidents:?}");
    let latency_budget_runs = budget(0.95) * (3 * runs - 1) as f64;
    let from = start + 7 * DAY + 8 * 3600 + 41 * 60;
    assert_incident(&latency_incidents[0], "page", from, 20, &REGIONS, 12, latency_budget_runs);

    // notifications: two regions, all good; ap-southeast shown without a ratio.
    let notifications = indicator(&report, "notifications", "availability");
    assert_count(notifications, 2 * runs, 2 * runs, "notifications");
    assert_count(region(notifications, "ap-southeast"), 0, 0, "notifications ap-southeast");
    assert_eq!(notifications["budget_remaining"].as_f64(), Some(1.0));
    let journey = report["journeys"].as_array().unwrap().iter().find(|j| j["name"] == "notifications").unwrap();
    assert_eq!(journey["measured_from"], serde_json::json!(["eu-west", "us-east"]));

    // Federation: ten delays of 1 s to 10 s, percentiles interpolated between samples.
    let federation = report["federation"].as_array().unwrap();
    assert_eq!(federation.len(), 1, "{federation:?}");
    assert_eq!(federation[0]["source"], "main");
    assert_eq!(federation[0]["destination"], "peer");
    assert_eq!(federation[0]["samples"], 10);
    for (key, expected) in [("p50_seconds", 5.5), ("p95_seconds", 9.55), ("p99_seconds", 9.91)] {
        let got = federation[0][key].as_f64().unwrap();
        assert!((got - expected).abs() < 1e-9, "{key}: {got}");
    }

    check_html(&out.join("report.html"));
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    for name in names {
        assert!(markdown.contains(&format!("## {name}")), "{name} in the Markdown");
    }
    assert!(markdown.contains("| home-timeline | availability | 99.5% of runs succeed | 99.51% ✓ met |"), "{markdown}");
    render_in_chromium(&chromium, &out.join("report.html"), &["home-timeline", "notifications", "post-status"]);
}

/// A 3-day report ending at noon over 40 minutes of data says how little it
/// covers, and its days are UTC calendar days labelled with their own date: the
/// runs of the last morning fall on that morning's date, not the day before.
#[test]
fn a_report_on_forty_minutes_states_its_coverage_and_labels_days_by_their_utc_date() {
    let vm = VictoriaMetrics::start();
    let midnight = last_midnight() - DAY;
    let end = midnight + 12 * 3600;
    let labels = "journey=\"home-timeline\",instance=\"main\",region=\"eu-west\",account=\"fediprobe\"";
    let mut samples = String::new();
    for k in 0..40 {
        let t = (end - 50 * 60 + 30 + k * 60) * 1000;
        samples.push_str(&format!(
            "fediprobe_journey_success{{{labels}}} 1 {t}\nfediprobe_journey_latency_ok{{{labels}}} 1 {t}\n"
        ));
    }
    vm.import_prometheus(&samples);
    vm.wait_for_value("sum(count_over_time(fediprobe_journey_success[1d]))", end, 40.0);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("site");
    let output = report_over(&vm, dir.path(), "3d", end, &out);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "report failed:\n{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["window"]["coverage"]["start"], rfc3339(end - 50 * 60));
    assert_eq!(report["window"]["coverage"]["end"], rfc3339(end - 10 * 60));
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        markdown.contains(&format!(
            "over 3 days, from {} to {} (the data covers only 40 min of it, from {} to {})",
            words_time(end - 3 * DAY),
            words_time(end),
            words_time(end - 50 * 60),
            words_time(end - 10 * 60)
        )),
        "{markdown}"
    );
    let daily = indicator(&report, "home-timeline", "availability")["daily"].as_array().unwrap().clone();
    let starts: Vec<&str> = daily.iter().map(|d| d["start"].as_str().unwrap()).collect();
    let expected: Vec<String> =
        [end - 3 * DAY, midnight - 2 * DAY, midnight - DAY, midnight].into_iter().map(rfc3339).collect();
    assert_eq!(starts, expected, "a partial first day, two whole ones, and the last morning");
    assert_count(&daily[3], 40, 40, "the last morning has the runs");
    assert_count(&daily[2], 0, 0, "the day before has none");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let label = chrono::DateTime::from_timestamp(midnight, 0).unwrap().format("%b %-d").to_string();
    assert!(html.contains(&format!(">{label}</text>")), "the chart labels the last morning {label}");
}

/// `2024-03-03 10:00 UTC`, as the report writes times.
fn words_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).unwrap().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The page is self-contained, escaped and names every journey.
fn check_html(path: &Path) {
    let html = std::fs::read_to_string(path).unwrap();
    assert!(html.contains("<meta name=\"viewport\""), "viewport");
    assert!(!html.contains("<script"), "no script");
    for attribute in ["src=", "href=\"http", "url(", "@import"] {
        assert!(!html.contains(attribute), "no external asset: found {attribute}");
    }
    assert!(html.contains("role=\"img\""), "charts are labelled images");
    assert!(html.contains("The home-timeline journey, &lt;as&gt; a user &amp; &quot;friends&quot; see it."));
    assert!(!html.contains("<as>"), "the description is escaped");
    assert!(html.contains("in ap-southeast, eu-west and us-east, outside the instance&#39;s network"));
    assert!(html.contains("99.5% of runs succeed; 95% of successful runs finish within 500ms"));
    // The history holds ten federated posts from main to peer, seen from eu-west.
    assert!(
        html.contains("<tr><td>main → peer</td><td>eu-west</td><td class=\"n\">10</td>"),
        "the federation table has the row of main → peer"
    );
    assert!(!html.contains("No federation journeys"), "federation delay was measured");
}

/// Runs headless Chromium on `page`: its DOM must hold every journey's name,
/// and the page and its screenshot go to `target/test-artifacts/`.
fn render_in_chromium(chromium: &Path, page: &Path, journeys: &[&str]) {
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    // The page itself next to its screenshot, for whoever reviews a test run.
    for name in ["report.html", "report.md", "report.json"] {
        std::fs::copy(page.with_file_name(name), artifacts.join(name)).unwrap();
    }
    let screenshot = artifacts.join("report.png");
    let _ = std::fs::remove_file(&screenshot);
    let url = format!("file://{}", page.display());
    let dom = run_chromium(chromium, &["--dump-dom", &url]);
    for name in journeys {
        assert!(dom.contains(&format!(">{name}</h2>")), "the rendered DOM shows journey {name}");
    }
    assert!(dom.contains("<svg class=\"chart\""), "the rendered DOM has the charts");
    run_chromium(chromium, &[&format!("--screenshot={}", screenshot.display()), "--window-size=1280,2000", &url]);
    let png = std::fs::read(&screenshot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", screenshot.display()));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot ({} bytes)", png.len());
}

/// One headless Chromium run with a fresh profile, killed after 60 s; its stdout.
fn run_chromium(chromium: &Path, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} (install the Debian package `chromium`)", chromium.display()));
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!("chromium did not finish within 60 s:\n{}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "chromium {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn an_unreachable_backend_is_named_without_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let port = free_port();
    let output = fediprobe(&[
        "report",
        "-c",
        config.to_str().unwrap(),
        "--from-url",
        &format!("http://reader:hunter2@127.0.0.1:{port}"),
        "--out",
        dir.path().join("site").to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("cannot reach the metrics backend at http://127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("hunter2") && !stdout.contains("hunter2"), "{stderr}");
    assert!(!dir.path().join("site").exists(), "no report is written");
}

#[test]
fn a_backend_without_samples_and_a_bad_config_are_clear_errors() {
    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let site = dir.path().join("site");
    let output = fediprobe(&[
        "report",
        "-c",
        config.to_str().unwrap(),
        "--from-url",
        &vm.base_url(),
        "--out",
        site.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no samples for any journey in the window"), "{stderr}");
    assert!(stderr.contains(&vm.base_url()), "{stderr}");

    std::fs::write(&config, "probe: {}\n").unwrap();
    let output = fediprobe(&["report", "-c", config.to_str().unwrap(), "--from-url", &vm.base_url()]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output).1);

    let output =
        fediprobe(&["report", "-c", config.to_str().unwrap(), "--from-url", &vm.base_url(), "--window", "36h"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output).1);
    assert!(text(&output).1.contains("whole days"), "{}", text(&output).1);
}
