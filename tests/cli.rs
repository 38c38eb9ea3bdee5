//! The `fediprobe` binary as a user runs it: `check`, `once` against a sandbox,
//! `demo`, and samples arriving in a real VictoriaMetrics.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use fediprobe::sandbox::{Fault, Sandbox, SandboxConfig};
use support::victoria::{VictoriaMetrics, free_port};
use tokio::io::AsyncBufReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_fediprobe");

/// How long a wait may last before the test calls it a hang: generous, so that
/// a loaded machine is never mistaken for a broken product.
const HANG: std::time::Duration = std::time::Duration::from_secs(60);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

async fn fediprobe(args: &[&str]) -> Output {
    tokio::process::Command::new(BIN).args(args).env_remove("FEDIPROBE_LOG").output().await.expect("the binary runs")
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// A config for the bundled journeys against a sandbox, tokens in private files.
struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    spool: PathBuf,
    tokens: Vec<String>,
}

fn write_config(sandbox: &Sandbox, remote_write: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("probe:\n  region: test-region\ninstances:\n");
    let mut tokens = Vec::new();
    for (name, instance) in [("main", "alpha"), ("peer", "beta")] {
        let instance = sandbox.instance(instance).unwrap();
        let account = instance.account("probe").unwrap();
        tokens.push(account.token.expose().to_owned());
        let token_file = dir.path().join(format!("{name}.token"));
        std::fs::write(&token_file, account.token.expose()).unwrap();
        #[cfg(unix)]
        std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        yaml.push_str(&format!(
            "  {name}:\n    url: {}\n    account: probe\n    token: {{ file: {name}.token }}\n",
            instance.base_url
        ));
    }
    yaml.push_str(&format!("journeys: [{}]\n", repo("journeys").display()));
    let spool = dir.path().join("spool");
    if let Some(url) = remote_write {
        yaml.push_str(&format!("remote_write:\n  url: {url}\n  flush_timeout: 3s\n  spool_dir: {}\n", spool.display()));
    }
    let config = dir.path().join("fediprobe.yaml");
    std::fs::write(&config, yaml).unwrap();
    Setup { _dir: dir, config, spool, tokens }
}

#[tokio::test]
async fn check_points_at_file_line_and_column_with_a_hint() {
    let case = repo("tests/cases/journey_error/unknown_step_kind.yaml");
    let output = fediprobe(&["check", case.to_str().unwrap()]).await;
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown_step_kind.yaml:7:5"), "{stderr}");
    assert!(stderr.contains("did you mean `request`?"), "{stderr}");
    assert!(stderr.contains("    reqest:"), "the source line is shown: {stderr}");
}

#[tokio::test]
async fn check_reports_every_broken_file_at_once() {
    let output = fediprobe(&["check", repo("tests/cases/journey_error").to_str().unwrap()]).await;
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2));
    for file in ["unknown_step_kind.yaml", "many_errors.yaml", "bad_yaml.yaml", "over_delete_limit.yaml"] {
        assert!(stderr.contains(file), "{file} missing from:\n{stderr}");
    }
}

#[tokio::test]
async fn check_accepts_the_bundled_journeys_and_the_example_config() {
    let output = fediprobe(&["check", repo("journeys").to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    let expected = format!("{} journeys checked", fediprobe::spec::bundled::BUNDLED.len());
    assert!(text(&output).0.contains(&expected), "{:?}", text(&output));
    let output = fediprobe(&["check", "-c", repo("examples/fediprobe.yaml").to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
}

#[tokio::test]
async fn once_runs_every_journey_and_a_failure_is_still_a_measurement() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let setup = write_config(&sandbox, None);
    let config = setup.config.to_str().unwrap();
    let output = fediprobe(&["once", "-c", config]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    for journey in ["verify-credentials", "home-timeline", "post-status", "favourite", "search", "instance-health"] {
        let line = stdout.lines().find(|l| l.starts_with(journey)).unwrap_or_else(|| panic!("{journey}: {stdout}"));
        assert!(line.contains("success"), "{line}");
    }

    sandbox.instance("alpha").unwrap().faults().inject(None, "/api/v1/timelines/home", Fault::Status(502));
    let output = fediprobe(&["once", "-c", config, "--journey", "home-timeline", "--output", "json"]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "a failure is a measurement, not a crash: {stderr}");
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["journey"], "home-timeline");
    assert_eq!(lines[0]["outcome"], "failure");
    assert_eq!(lines[0]["reason"], "http_status");
    assert_eq!(lines[0]["steps"][0]["http_status"], 502);
}

#[tokio::test]
async fn once_refuses_unknown_journeys_and_broken_configs() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let setup = write_config(&sandbox, None);
    let output = fediprobe(&["once", "-c", setup.config.to_str().unwrap(), "--journey", "no-such"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).1.contains("no journey is named `no-such`"));
    let output = fediprobe(&["once", "-c", repo("tests/cases/config_error/inline_token.yaml").to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).1.contains("inline_token.yaml:7:12"), "{:?}", text(&output));
}

/// Whether a command's stderr holds trace-level log lines, in either log format.
fn has_trace_lines(stderr: &str) -> bool {
    stderr.lines().any(|l| l.contains(" TRACE ") || l.contains("\"level\":\"TRACE\""))
}

#[tokio::test]
async fn no_command_prints_a_token_even_at_trace_level() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.instance("alpha").unwrap().faults().inject(None, "/api/v1/notifications", Fault::MalformedJson);
    let vm_port = free_port();
    let setup = write_config(&sandbox, Some(&format!("http://127.0.0.1:{vm_port}/api/v1/write")));
    let config = setup.config.to_str().unwrap();
    let assert_no_token = |args: &[&str], stdout: &str, stderr: &str| {
        for token in &setup.tokens {
            assert!(!stdout.contains(token.as_str()) && !stderr.contains(token.as_str()), "{args:?} leaked a token");
        }
    };
    // Commands that talk to the instances log every exchange at trace level: the
    // level is really on, and what it prints holds no token.
    for args in [
        vec!["--log-level", "trace", "once", "-c", config],
        vec!["--log-level", "trace", "--log-format", "json", "once", "-c", config, "--output", "json"],
    ] {
        let output = fediprobe(&args).await;
        let (stdout, stderr) = text(&output);
        assert!(has_trace_lines(&stderr), "{args:?} printed no trace lines:\n{stderr}");
        assert!(stderr.contains("HTTP exchange"), "{args:?} traced no HTTP exchange:\n{stderr}");
        assert_no_token(&args, &stdout, &stderr);
    }
    // The same level from the environment, as a Deployment sets it.
    let output = tokio::process::Command::new(BIN)
        .args(["once", "-c", config, "--journey", "home-timeline"])
        .env("FEDIPROBE_LOG", "trace")
        .output()
        .await
        .expect("the binary runs");
    let (stdout, stderr) = text(&output);
    assert!(has_trace_lines(&stderr), "FEDIPROBE_LOG=trace printed no trace lines:\n{stderr}");
    assert_no_token(&["FEDIPROBE_LOG=trace", "once"], &stdout, &stderr);
    // `check` looks at the token files (are they there, are they private) and
    // talks to nobody, so it has nothing to trace; it must not print a token either.
    let args = ["--log-level", "trace", "check", "-c", config];
    let output = fediprobe(&args).await;
    let (stdout, stderr) = text(&output);
    assert!(stdout.contains("journeys checked"), "{stdout}\n{stderr}");
    assert_no_token(&args, &stdout, &stderr);
}

#[tokio::test]
async fn once_pushes_samples_that_victoria_metrics_can_query() {
    let vm = VictoriaMetrics::start();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let setup = write_config(&sandbox, Some(vm.write_url().as_str()));
    let before = chrono::Utc::now().timestamp_millis();
    let output = fediprobe(&["once", "-c", setup.config.to_str().unwrap(), "--output", "json"]).await;
    let after = chrono::Utc::now().timestamp_millis();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let runs: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();

    let success = vm.export_at_least("fediprobe_journey_success", runs.len());
    assert_eq!(success.len(), runs.len(), "one series per journey: {success:?}");
    for (labels, samples) in &success {
        let run = runs.iter().find(|r| r["journey"] == labels["journey"].as_str()).unwrap();
        assert_eq!(labels["instance"], run["instance"].as_str().unwrap());
        assert_eq!(labels["region"], "test-region");
        assert_eq!(labels["account"], "probe");
        assert_eq!(samples.len(), 1, "one sample per run");
        let started = chrono::DateTime::parse_from_rfc3339(run["started_at"].as_str().unwrap()).unwrap();
        assert_eq!(samples[0].0, started.timestamp_millis(), "the sample carries the run's start");
        assert!(samples[0].0 >= before && samples[0].0 <= after);
        assert_eq!(samples[0].1, 1.0);
    }
    let durations = vm.export_at_least("fediprobe_journey_duration_seconds", runs.len());
    for (labels, samples) in &durations {
        let run = runs.iter().find(|r| r["journey"] == labels["journey"].as_str()).unwrap();
        assert!((samples[0].1 - run["duration"].as_f64().unwrap()).abs() < 1e-9);
    }
    let steps = vm.export("fediprobe_step_duration_seconds");
    assert!(steps.iter().any(|(l, _)| l["journey"] == "post-status" && l["step"] == "delete"), "{steps:?}");
    let outcomes = vm.export("fediprobe_journey_outcome");
    assert!(outcomes.iter().all(|(l, s)| l["outcome"] == "success" && !l.contains_key("reason") && s[0].1 == 1.0));
}

#[tokio::test]
async fn a_backend_outage_across_runs_loses_no_sample() {
    let port = free_port();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let setup = write_config(&sandbox, Some(&format!("http://127.0.0.1:{port}/api/v1/write")));
    let config = setup.config.to_str().unwrap();
    // Two CronJob-style runs while nothing listens: samples go to the spool, exit 0.
    for _ in 0..2 {
        let output = fediprobe(&["once", "-c", config, "--journey", "home-timeline"]).await;
        assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
        assert!(text(&output).1.contains("waiting in the spool"), "{:?}", text(&output));
    }
    assert!(std::fs::read_dir(&setup.spool).unwrap().count() > 1, "spool files beside the lock file");
    // The backend comes back; the next run sends the spool first, then its own.
    let vm = VictoriaMetrics::start_on(port);
    let output = fediprobe(&["once", "-c", config, "--journey", "home-timeline"]).await;
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    let success = vm.export_at_least("fediprobe_journey_success", 3);
    assert_eq!(success.len(), 1);
    let timestamps: Vec<i64> = success[0].1.iter().map(|(t, _)| *t).collect();
    assert_eq!(timestamps.len(), 3, "three runs, each exactly once: {timestamps:?}");
    assert!(timestamps.windows(2).all(|w| w[0] < w[1]));
    // Only the lock file stays (see `spool::LOCK_FILE`).
    let left: Vec<_> = std::fs::read_dir(&setup.spool)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name != fediprobe::sink::remote_write::spool::LOCK_FILE)
        .collect();
    assert!(left.is_empty(), "the spool is empty once delivered: {left:?}");
}

/// The runs of `journeys` against the sandbox's probe accounts as `demo` and
/// `sandbox --write-config` give them: `probe` and `busy` on main, `probe` on peer.
fn sandbox_runs(journeys: &[fediprobe::spec::Journey]) -> Vec<fediprobe::spec::Journey> {
    let accounts = |instance: &str| match instance {
        "main" => vec!["probe".to_owned(), "busy".to_owned()],
        _ => vec!["probe".to_owned()],
    };
    fediprobe::spec::accounts::runs(journeys, &accounts)
}

#[tokio::test]
async fn demo_runs_every_bundled_journey_and_pushes_when_asked() {
    let vm = VictoriaMetrics::start();
    let url = vm.write_url();
    let output = fediprobe(&["demo", "--rounds", "2", "--remote-write-url", url.as_str()]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let journeys = fediprobe::spec::bundled::journeys().unwrap();
    for journey in &journeys {
        let line = stdout.lines().find(|l| l.starts_with(&journey.name)).unwrap_or_else(|| panic!("{stdout}"));
        assert!(line.contains("2/2") && line.contains("success"), "{line}");
    }
    // main is probed as `probe` and `busy`: the journeys with `accounts: all` run as both.
    let runs = sandbox_runs(&journeys);
    let as_busy = runs.iter().filter(|r| r.run_as.as_deref() == Some("busy")).count();
    assert!(as_busy > 0 && runs.len() == journeys.len() + as_busy);
    assert!(stdout.contains(&format!("all {} runs succeeded", runs.len() * 2)), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("home-timeline") && l.contains(" busy ")), "{stdout}");
    let success = vm.export_at_least("fediprobe_journey_success", runs.len() * 2);
    assert_eq!(success.len(), runs.len());
    assert!(success.iter().all(|(l, s)| s.len() == 2 && l["region"] == "local"));
    assert_eq!(success.iter().filter(|(l, _)| l["account"] == "busy").count(), as_busy);
}

#[tokio::test]
async fn the_sandbox_command_writes_a_config_that_once_can_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = tokio::process::Command::new(BIN)
        .args(["sandbox", "--write-config", dir.path().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The sandbox says where it wrote the config once the file is complete (it
    // is renamed into place): wait for that line, not for the file to appear.
    let config = dir.path().join("fediprobe.yaml");
    let mut stdout = tokio::io::BufReader::new(sandbox.stdout.take().unwrap()).lines();
    let announced = format!("wrote {}", config.display());
    let wrote = async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if line.contains(&announced) {
                return true;
            }
        }
        false
    };
    let wrote = tokio::time::timeout(HANG, wrote).await.expect("the sandbox started within the hang limit");
    assert!(wrote, "the sandbox exited without announcing {}", config.display());
    let output = fediprobe(&["once", "-c", config.to_str().unwrap(), "--output", "json"]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let runs: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let expected = sandbox_runs(&fediprobe::spec::bundled::journeys().unwrap());
    assert_eq!(runs.len(), expected.len(), "the bundled journeys, as each account they choose");
    assert!(runs.iter().all(|r| r["outcome"] == "success"), "{stdout}");
    let as_busy = runs.iter().filter(|r| r["account"] == "busy").count();
    assert_eq!(as_busy, expected.iter().filter(|r| r.run_as.is_some()).count(), "{stdout}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("main.token")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "token files are private");
    }
    let pid = sandbox.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let status = tokio::time::timeout(HANG, sandbox.wait()).await.unwrap().unwrap();
    assert!(status.success(), "Ctrl-C stops the sandbox cleanly");
}

/// Everything a command printed and every file it wrote under `dir`.
fn everything(output: &Output, dir: &Path) -> String {
    let (stdout, stderr) = text(output);
    let mut all = format!("{stdout}\n{stderr}");
    for entry in walk(dir) {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(&entry).unwrap_or_default()));
    }
    all
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

#[tokio::test]
async fn run_rules_dashboards_and_report_never_print_a_token_even_at_trace_level() {
    let vm = VictoriaMetrics::start();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let alpha = sandbox.instance("alpha").unwrap();
    let token = alpha.account("probe").unwrap().token.expose().to_owned();
    let backend_token = "backend-secret-0123456789";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.token"), &token).unwrap();
    std::fs::write(dir.path().join("vm.token"), backend_token).unwrap();
    std::fs::create_dir(dir.path().join("journeys")).unwrap();
    std::fs::write(
        dir.path().join("journeys/home.yaml"),
        "name: home\ninstance: main\nschedule: '* * * * * *'\nslo: { availability: 99%, latency: { threshold: 1s, objective: 95% } }\nsteps:\n  - name: get\n    request: { path: /api/v1/timelines/home }\n",
    )
    .unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("fediprobe.yaml"),
        format!(
            "probe: {{ region: test }}\ninstances:\n  main: {{ url: {}, account: probe, token: {{ file: main.token }}, rate_limits: {{ api_calls: 100000 }} }}\njourneys: [journeys]\nremote_write: {{ url: {}, bearer_token: {{ file: vm.token }}, flush_timeout: 5s }}\nagent: {{ listen: 127.0.0.1:{port}, spread: 0s, push_interval: 1s, shutdown_grace: 5s }}\n",
            alpha.base_url,
            vm.write_url()
        ),
    )
    .unwrap();
    let config = dir.path().join("fediprobe.yaml");
    let config = config.to_str().unwrap();
    let secrets = [token.as_str(), backend_token];
    let assert_clean = |what: &str, all: &str| {
        assert!(!all.trim().is_empty(), "{what} printed nothing");
        for secret in secrets {
            assert!(!all.contains(secret), "{what} leaked a secret:\n{all}");
        }
    };

    // The agent: start, wait for its first finished run (a bounded wait that
    // only catches a hang), SIGTERM.
    let mut agent = tokio::process::Command::new(BIN)
        .args(["--log-level", "trace", "run", "-c", config])
        .env_remove("FEDIPROBE_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr_lines = tokio::io::BufReader::new(agent.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    let first_run = async {
        while let Some(line) = stderr_lines.next_line().await.unwrap() {
            stderr.push_str(&line);
            stderr.push('\n');
            if line.contains("run finished") {
                return;
            }
        }
    };
    if tokio::time::timeout(HANG, first_run).await.is_err() {
        panic!("the agent finished no run within {HANG:?}:\n{stderr}");
    }
    let pid = agent.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let rest = async {
        while let Some(line) = stderr_lines.next_line().await.unwrap() {
            stderr.push_str(&line);
            stderr.push('\n');
        }
        agent.wait_with_output().await.unwrap()
    };
    let output = tokio::time::timeout(HANG, rest).await.expect("the agent stops after SIGTERM");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(has_trace_lines(&stderr), "the agent printed no trace lines:\n{stderr}");
    assert_clean("run", &format!("{}\n{stderr}", String::from_utf8_lossy(&output.stdout)));

    // The generators and the report (against the samples the agent pushed).
    vm.force_flush();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let rules = out.join("rules.yaml");
    // The report's window ends at a whole minute: end it after the samples.
    let (backend, end) = (vm.base_url(), (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339());
    for args in [
        vec!["--log-level", "trace", "rules", "-c", config, "--out", rules.to_str().unwrap()],
        vec!["--log-level", "trace", "dashboards", "-c", config, "--out", out.to_str().unwrap()],
        vec![
            "--log-level",
            "trace",
            "report",
            "-c",
            config,
            "--from-url",
            &backend,
            "--end",
            &end,
            "--out",
            out.join("report").to_str().unwrap(),
        ],
    ] {
        let output = fediprobe(&args).await;
        assert_eq!(output.status.code(), Some(0), "{args:?}: {:?}", text(&output));
        assert_clean(args[2], &everything(&output, &out));
    }
}
