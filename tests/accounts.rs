//! Several probe accounts on one instance (`accounts:` in the config and in a
//! journey), end to end: the sandbox's `busy` account has a long home timeline
//! held to the Mastodon OpenAPI document; `fediprobe once` on the config that
//! `fediprobe sandbox --write-config` writes runs the journeys as each account
//! they choose, and every sample stored in VictoriaMetrics says which; `check`
//! budgets each account on its own and points at a journey naming an account
//! the instance does not have; the report slices by account; the leftover sweep,
//! the schedule offsets and the agent's schedules are per account.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use fediprobe::runner::Runner;
use fediprobe::sandbox::{BUSY_FOLLOWS, Sandbox};
use serde_json::Value;
use support::openapi::assert_valid;
use support::sandbox::{As, json, next_link};
use support::victoria::VictoriaMetrics;

const BIN: &str = env!("CARGO_BIN_EXE_fediprobe");

async fn fediprobe(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN).args(args).env_remove("FEDIPROBE_LOG").output().await.unwrap()
}

#[tokio::test]
async fn the_busy_account_follows_hundreds_and_every_page_of_its_home_timeline_is_full() {
    let sandbox = support::sandbox::start().await;
    let alpha = sandbox.instance("alpha").unwrap();
    let (busy, probe) = (As::user(alpha, "busy"), As::user(alpha, "probe"));

    let (status, me) = json(busy.get("/api/v1/accounts/verify_credentials").send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_valid("/api/v1/accounts/verify_credentials", "get", 200, &me);
    assert_eq!(me["following_count"], BUSY_FOLLOWS as u64 + 2, "the readers, alice and bob");
    assert_eq!(me["bot"], true, "a probe account says it is one");

    // Ten pages of 40, each full, each a valid page of statuses, newest first, no repeats.
    let mut url = "/api/v1/timelines/home?limit=40".to_owned();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for page in 0..10 {
        let response = busy.get(&url).send().await.unwrap();
        let next = next_link(&response).unwrap_or_else(|| panic!("page {page} has a next link"));
        let (status, statuses) = json(response).await;
        assert_eq!(status, 200);
        assert_valid("/api/v1/timelines/home", "get", 200, &statuses);
        let ids: Vec<u64> =
            statuses.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().parse().unwrap()).collect();
        assert_eq!(ids.len(), 40, "page {page} is full");
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "page {page} is newest first");
        assert!(ids.iter().all(|id| seen.insert(id.to_string())), "page {page} repeats none of the earlier ones");
        url = next;
    }

    // The primary probe account's first page holds a handful.
    let (_, mine) = json(probe.get("/api/v1/timelines/home?limit=40").send().await.unwrap()).await;
    let mine = mine.as_array().unwrap().len();
    assert!((1..40).contains(&mine), "the probe's home timeline is short: {mine}");
    // The readers' statuses are unlisted: the public timeline has none of them.
    let (_, public) = json(probe.get("/api/v1/timelines/public?limit=40").send().await.unwrap()).await;
    assert!(
        public.as_array().unwrap().iter().all(|s| !s["account"]["username"].as_str().unwrap().starts_with("reader"))
    );
}

/// `fediprobe sandbox --write-config DIR`, as a user starts it; killed when dropped.
struct SandboxProcess {
    _child: tokio::process::Child,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

async fn sandbox_process() -> SandboxProcess {
    let dir = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(BIN)
        .args(["sandbox", "--write-config"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let config = dir.path().join("fediprobe.yaml");
    for _ in 0..300 {
        if config.exists() {
            return SandboxProcess { _child: child, config, _dir: dir };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`fediprobe sandbox --write-config` wrote no config within 30 s");
}

#[tokio::test]
async fn once_runs_each_journey_as_the_accounts_it_chooses_and_every_sample_says_which() {
    let sandbox = sandbox_process().await;
    let config = std::fs::read_to_string(&sandbox.config).unwrap();
    assert!(config.contains("    accounts:\n      busy:\n        token: { file: main-busy.token }"), "{config}");
    // A journey for one named account: verify-credentials as busy (its assertion
    // that the username is `${account}` shows which token went out).
    let journeys = sandbox.config.parent().unwrap().join("journeys");
    let verify = std::fs::read_to_string(journeys.join("verify-credentials.yaml")).unwrap();
    let as_busy = verify
        .replace("name: verify-credentials", "name: busy-credentials")
        .replace("instance: main\n", "instance: main\naccounts: [busy]\n");
    std::fs::write(journeys.join("busy-credentials.yaml"), as_busy).unwrap();

    let vm = VictoriaMetrics::start();
    let output = fediprobe(&[
        "once",
        "-c",
        sandbox.config.to_str().unwrap(),
        "--journey",
        "home-timeline",
        "--journey",
        "busy-credentials",
        "--journey",
        "verify-credentials",
        "--remote-write-url",
        vm.write_url().as_str(),
    ])
    .await;
    support::tools::assert_success("once", &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows: BTreeSet<(String, String, String)> = stdout
        .lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            (cells[0].to_owned(), cells[2].to_owned(), cells[3].to_owned())
        })
        .collect();
    assert!(stdout.starts_with("JOURNEY") && stdout.lines().next().unwrap().contains("ACCOUNT"), "{stdout}");
    let expected: BTreeSet<(String, String, String)> = [
        ("busy-credentials", "busy"),
        ("home-timeline", "busy"),
        ("home-timeline", "probe"),
        ("verify-credentials", "probe"),
    ]
    .into_iter()
    .map(|(j, a)| (j.to_owned(), a.to_owned(), "success".to_owned()))
    .collect();
    assert_eq!(rows, expected, "{stdout}");

    // Every per-run series of every run carries its account.
    let stored = vm.export_at_least("fediprobe_journey_(success|outcome|latency_seconds)", 12);
    let labelled: BTreeSet<(String, String, String)> = stored
        .iter()
        .map(|(labels, _)| (labels["__name__"].clone(), labels["journey"].clone(), labels["account"].clone()))
        .collect();
    for series in ["fediprobe_journey_success", "fediprobe_journey_outcome", "fediprobe_journey_latency_seconds"] {
        let accounts: BTreeSet<(String, String)> = labelled
            .iter()
            .filter(|(name, _, _)| name == series)
            .map(|(_, journey, account)| (journey.clone(), account.clone()))
            .collect();
        let expected: BTreeSet<(String, String)> = expected.iter().map(|(j, a, _)| (j.clone(), a.clone())).collect();
        assert_eq!(accounts, expected, "{series}");
    }
    assert!(stored.iter().all(|(labels, samples)| labels["instance"] == "main" && samples.len() == 1), "{stored:?}");

    // The report slices a journey run as several accounts by account, and only such a journey.
    let out = tempfile::tempdir().unwrap();
    let end = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let output = fediprobe(&[
        "report",
        "-c",
        sandbox.config.to_str().unwrap(),
        "--from-url",
        &vm.base_url(),
        "--window",
        "1d",
        "--end",
        &end,
        "--out",
        out.path().to_str().unwrap(),
    ])
    .await;
    support::tools::assert_success("report", &output);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    let availability = |journey: &str| -> Value {
        let journey = report["journeys"].as_array().unwrap().iter().find(|j| j["name"] == journey).unwrap();
        journey["indicators"].as_array().unwrap().iter().find(|i| i["sli"] == "availability").unwrap().clone()
    };
    let home = availability("home-timeline");
    let accounts: Vec<(&str, u64)> = home["accounts"]
        .as_array()
        .unwrap_or_else(|| panic!("{home:#}"))
        .iter()
        .map(|a| (a["account"].as_str().unwrap(), a["valid_runs"].as_u64().unwrap()))
        .collect();
    assert_eq!(accounts, [("busy", 1), ("probe", 1)]);
    assert_eq!(home["valid_runs"], 2, "the SLO pools the accounts");
    assert!(availability("busy-credentials").get("accounts").is_none(), "one account: no slice");
    let markdown = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(
        markdown.contains("| Account | Measured | Good runs | Runs |\n|---|---:|---:|---:|\n| busy | 100%"),
        "{markdown}"
    );
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(html.contains("By probe account, all regions, over the whole window"));
}

/// A config in a new folder with the instance lines given and the journeys as `journeys/N.yaml`.
fn config_with(instances: &str, journeys: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("journeys")).unwrap();
    for (i, journey) in journeys.iter().enumerate() {
        std::fs::write(dir.path().join(format!("journeys/{i}.yaml")), journey).unwrap();
    }
    let path = dir.path().join("fediprobe.yaml");
    std::fs::write(&path, format!("probe: {{ region: test }}\ninstances:\n{instances}journeys: [journeys]\n")).unwrap();
    (dir, path)
}

const TWO_ACCOUNTS: &str = "  main:\n    url: https://mastodon.example\n    account: fediprobe\n    token: { env: FEDIPROBE_MAIN_TOKEN }\n    accounts:\n      busy:\n        token: { env: FEDIPROBE_BUSY_TOKEN }\n        shared_by: { account: SHARED, token: 1 }\n";

/// Ten reads every minute as `accounts`: 50 calls in 5 minutes, plus the sweep's 3.
fn ten_reads_as(accounts: &str) -> String {
    let steps: String =
        (0..10).map(|i| format!("  - name: home{i}\n    request: {{ path: /api/v1/timelines/home }}\n")).collect();
    format!(
        "name: reads\ninstance: main\naccounts: {accounts}\nschedule: '* * * * *'\nslo: {{ availability: 99% }}\nsteps:\n{steps}"
    )
}

#[tokio::test]
async fn check_budgets_each_account_against_the_probes_that_share_it() {
    // busy is shared by 40 probes: 40 × 53 calls per 5 minutes is more than its 1,500.
    let (_dir, config) = config_with(&TWO_ACCOUNTS.replace("SHARED", "40"), &[&ten_reads_as("all")]);
    let output = fediprobe(&["check", "-c", config.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("exceed the limit of 1500 API calls per 5m per account on account `busy` on instance `main`: up to 2120 in one window (53 from this probe, 40 probes sharing the account)"),
        "{stderr}"
    );
    assert!(stderr.contains("journeys/0.yaml:4:"), "at the journey's schedule: {stderr}");
    // Also the sweep's delete, once an hour from each of the 40 (the agent sweeps every account).
    assert!(stderr.contains("30 statuses deleted per 30m per account on account `busy`"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("exceed the limit")).collect();
    assert!(errors.iter().all(|l| l.contains("on account `busy`")), "the primary account is fine: {stderr}");

    // Shared by 20, it fits; the table shows each account's row.
    let (_dir, config) = config_with(&TWO_ACCOUNTS.replace("SHARED", "20"), &[&ten_reads_as("all")]);
    let output = fediprobe(&["check", "-c", config.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let row = |account: &str, limit: &str| -> Vec<String> {
        let line = stdout
            .lines()
            .find(|l| l.starts_with("main") && l.split_whitespace().nth(1) == Some(account) && l.contains(limit))
            .unwrap_or_else(|| panic!("a row for {account} {limit}:\n{stdout}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    let tail = |cells: Vec<String>| cells[cells.len() - 5..].to_vec();
    assert_eq!(tail(row("busy", "per account")), ["53", "3", "20", "1060", "71%"]);
    assert_eq!(tail(row("fediprobe", "per account")), ["53", "3", "1", "53", "4%"]);

    // Run as busy only, the primary account has nothing of it.
    let (_dir, config) = config_with(&TWO_ACCOUNTS.replace("SHARED", "20"), &[&ten_reads_as("[busy]")]);
    let output = fediprobe(&["check", "-c", config.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("main") && l.contains(" busy ")), "{stdout}");
    assert!(!stdout.lines().any(|l| l.contains(" fediprobe ") && l.contains("API calls")), "{stdout}");
}

#[tokio::test]
async fn a_journey_naming_an_account_the_instance_does_not_have_is_an_error_at_the_name() {
    let (_dir, config) = config_with(&TWO_ACCOUNTS.replace("SHARED", "1"), &[&ten_reads_as("[fediprobe, bussy]")]);
    let output = fediprobe(&["check", "-c", config.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error: account `bussy` is not a probe account of instance `main`"), "{stderr}");
    // Line 3, column 23: `accounts: [fediprobe, bussy]`, carets under the name.
    assert!(stderr.contains("journeys/0.yaml:3:23"), "{stderr}");
    assert!(stderr.contains("3 | accounts: [fediprobe, bussy]") && stderr.contains("^^^^^"), "{stderr}");
    assert!(stderr.contains("did you mean `busy`?"), "{stderr}");
    assert!(stderr.contains("fediprobe, busy"), "the instance's accounts are listed: {stderr}");

    // In the config: an extra account that is the primary one, and one without a token.
    let twice = "  main:\n    url: https://mastodon.example\n    account: fediprobe\n    token: { env: T }\n    accounts:\n      fediprobe: { token: { env: U } }\n      busy: { note: no token }\n";
    let (_dir, config) = config_with(twice, &[]);
    let output = fediprobe(&["check", "-c", config.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`fediprobe` is the instance's primary account already"), "{stderr}");
    assert!(stderr.contains("fediprobe.yaml:8:7"), "{stderr}");
    assert!(stderr.contains("the account is missing `token`") && stderr.contains("fediprobe.yaml:9:13"), "{stderr}");
}

#[tokio::test]
async fn the_leftover_sweep_deletes_an_accounts_leftovers_as_that_account() {
    let sandbox = Sandbox::start(Default::default()).await.unwrap();
    let alpha = sandbox.instance("alpha").unwrap();
    let targets = fediprobe::sandbox::probe_targets_with_accounts(&sandbox);
    let runner = Runner::new(targets);
    assert_eq!(runner.account_names("main"), ["probe", "busy"]);
    let marker = || fediprobe::runner::new_nonce(chrono::Utc::now());
    let (busy, probe) = (As::user(alpha, "busy"), As::user(alpha, "probe"));
    let busy_leftover = busy.post_status(&format!("left {}", marker()), "private").await;
    let probe_leftover = probe.post_status(&format!("left {}", marker()), "private").await;
    let exists = |client: &As, status: &Value| {
        let url = format!("/api/v1/statuses/{}", status["id"].as_str().unwrap());
        let request = client.get(&url);
        async move { request.send().await.unwrap().status() == 200 }
    };

    let only_busy = [("main".to_owned(), Some("busy".to_owned()))];
    let reports = runner.sweep_leftovers(Duration::ZERO, Some(&only_busy)).await;
    assert_eq!(reports.len(), 1);
    assert_eq!((reports[0].account.as_str(), reports[0].deleted), ("busy", 1));
    assert!(!exists(&busy, &busy_leftover).await, "busy's leftover is deleted");
    assert!(exists(&probe, &probe_leftover).await, "the primary account's is not: it was not asked for");

    let reports = runner.sweep_leftovers(Duration::ZERO, Some(&[("main".to_owned(), None)])).await;
    assert_eq!((reports.len(), reports[0].account.as_str(), reports[0].deleted), (1, "probe", 1));
}

#[test]
fn each_accounts_copy_of_a_journey_gets_its_own_schedule_offset() {
    let journey = support::journeys::bundled("home-timeline");
    let copies =
        fediprobe::spec::accounts::runs(std::slice::from_ref(&journey), &|_| vec!["fediprobe".into(), "busy".into()]);
    assert_eq!(copies.len(), 2);
    let spread = Duration::from_secs(30);
    let offsets: Vec<Duration> =
        copies.iter().map(|c| fediprobe::scheduler::offset_for("eu-west", c, spread)).collect();
    // The primary account's copy keeps the offset the journey always had.
    assert_eq!(offsets[0], fediprobe::scheduler::offset_for("eu-west", &journey, spread));
    assert_ne!(offsets[0], offsets[1], "the accounts' runs do not fire in the same second");
    assert_eq!(
        (copies[0].run_key(), copies[1].run_key()),
        ("home-timeline".to_owned(), "home-timeline@busy".to_owned())
    );
}

#[tokio::test]
async fn the_agent_schedules_each_accounts_runs_on_their_own_and_says_so_on_metrics() {
    let sandbox = Sandbox::start(Default::default()).await.unwrap();
    let alpha = sandbox.instance("alpha").unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (file, username) in [("main.token", "probe"), ("busy.token", "busy")] {
        std::fs::write(dir.path().join(file), alpha.account(username).unwrap().token.expose()).unwrap();
    }
    std::fs::create_dir(dir.path().join("journeys")).unwrap();
    let every_second = "name: home\ninstance: main\naccounts: all\nschedule: '* * * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: home\n    request: { path: /api/v1/timelines/home }\n    expect: { json: [{ path: '$[0].id', exists: true }] }\n";
    std::fs::write(dir.path().join("journeys/home.yaml"), every_second).unwrap();
    let port = support::victoria::free_port();
    let config = dir.path().join("fediprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "probe: {{ region: test }}\ninstances:\n  main:\n    url: {}\n    account: probe\n    token: {{ file: main.token }}\n    accounts: {{ busy: {{ token: {{ file: busy.token }} }} }}\n    rate_limits: {{ api_calls: 100000 }}\njourneys: [journeys]\nagent: {{ listen: 127.0.0.1:{port}, spread: 30s, push_interval: 1s }}\n",
            alpha.base_url
        ),
    )
    .unwrap();
    let agent = support::agent::AgentProcess::start(&config, port, "info").await;
    let runs = |account: &str| {
        format!(
            "fediprobe_journey_success_total{{journey=\"home\",instance=\"main\",region=\"test\",account=\"{account}\"}}"
        )
    };
    for account in ["probe", "busy"] {
        agent.wait_for_metric(&runs(account), Duration::from_secs(30), |n| n >= 2.0).await;
    }
    // One schedule per account's copy: the primary's keeps the journey's own
    // series, busy's is told apart by `account`, each with its own offset.
    let primary = agent.metric("fediprobe_schedule_offset_seconds{journey=\"home\"}").await;
    let busy = agent.metric("fediprobe_schedule_offset_seconds{journey=\"home\",account=\"busy\"}").await;
    let (primary, busy) = (primary.expect("the primary's offset"), busy.expect("busy's offset"));
    assert_ne!(primary, busy, "the two accounts' runs do not fire in the same second");
    assert_eq!(agent.metric("fediprobe_journeys{}").await, Some(1.0), "one journey, run as two accounts");
    let ended = agent.stop().await;
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
}
