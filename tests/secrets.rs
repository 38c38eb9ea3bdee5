//! Secrets never leave the probe. One test runs every command — demo, once, run,
//! check, rules, dashboards, report, sandbox — at trace level, on the good paths
//! and the failure paths (an inline token, a 401, a rejected reload, a hostile
//! instance echoing the token back, an unreachable backend), and scans everything
//! they produce (stdout, stderr, JSON results, logs, spool files, `/metrics`, the
//! report's and the generators' files) for every secret and every 8-character
//! piece of one. The other tests here pin down the single cases.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fediprobe::runner::Target;
use fediprobe::sandbox::{Sandbox, SandboxConfig};
use fediprobe::secret::Secret;
use fediprobe::sink::remote_write::{Auth, RemoteWriteOptions};
use support::victoria::{VictoriaMetrics, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "tok-3f9a1c77e2b04d5e";
const BIN: &str = env!("CARGO_BIN_EXE_fediprobe");
/// The length of the pieces looked for: any 8 characters of a secret is a leak.
const PIECE: usize = 8;

#[test]
fn debug_of_every_type_holding_a_secret_redacts_it() {
    let target = Target::new("main", "https://mastodon.example".parse().unwrap(), "probe", Secret::new(TOKEN));
    let request = fediprobe::runner::http::Request {
        method: http::Method::GET,
        url: "https://mastodon.example/api/v1/timelines/home".parse().unwrap(),
        headers: Vec::new(),
        bearer: Some(Secret::new(TOKEN)),
        body: None,
        follow_redirects: false,
    };
    let mut options = RemoteWriteOptions::new("http://127.0.0.1:8428/api/v1/write".parse().unwrap());
    options.auth = Some(Auth::Bearer(Secret::new(TOKEN)));
    let basic = Auth::Basic { username: "probe".into(), password: Secret::new(TOKEN) };
    let runner = fediprobe::runner::Runner::new(vec![target.clone()]);
    for shown in [
        format!("{target:?}"),
        format!("{target:#?}"),
        format!("{request:?}"),
        format!("{options:?}"),
        format!("{basic:?}"),
        format!("{runner:?}"),
        format!("{}", Secret::new(TOKEN)),
    ] {
        assert!(!shown.contains(TOKEN), "{shown}");
    }
}

/// The secrets a test knows, and the scan for them.
#[derive(Default)]
struct Secrets(Vec<String>);

impl Secrets {
    fn add(&mut self, secret: impl Into<String>) {
        let secret = secret.into();
        assert!(secret.len() >= PIECE, "a test secret must be at least {PIECE} characters");
        self.0.push(secret);
    }

    /// Fails when `text` holds any secret's piece of [`PIECE`] characters. The
    /// failure names the secret by number and shows the line with the piece
    /// masked: the test output is a log too.
    fn assert_absent(&self, what: &str, text: &str) {
        for (n, secret) in self.0.iter().enumerate() {
            for start in 0..=secret.len() - PIECE {
                let piece = &secret[start..start + PIECE];
                if let Some(line) = text.lines().find(|l| l.contains(piece)) {
                    panic!("{what} shows characters {start}.. of secret #{n}: {}", masked(line, secret));
                }
            }
        }
    }

    /// Scans every file under `dir` (recursively), text or not.
    fn assert_absent_in_files(&self, what: &str, dir: &Path) -> usize {
        let mut scanned = 0;
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{what}: {}: {e}", dir.display())).flatten() {
            let path = entry.path();
            if path.is_dir() {
                scanned += self.assert_absent_in_files(what, &path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                self.assert_absent(&format!("{what} {}", path.display()), &String::from_utf8_lossy(&bytes));
                scanned += 1;
            }
        }
        scanned
    }

    fn assert_absent_in_output(&self, what: &str, output: &Output) {
        self.assert_absent(&format!("{what}: stdout"), &String::from_utf8_lossy(&output.stdout));
        self.assert_absent(&format!("{what}: stderr"), &String::from_utf8_lossy(&output.stderr));
    }
}

/// `line` with every character that belongs to a piece of `secret` shown as `*`.
fn masked(line: &str, secret: &str) -> String {
    let mut hidden = vec![false; line.len()];
    for start in 0..=secret.len() - PIECE {
        for (at, _) in line.match_indices(&secret[start..start + PIECE]) {
            hidden[at..at + PIECE].iter_mut().for_each(|h| *h = true);
        }
    }
    line.char_indices().map(|(i, c)| if hidden[i] { '*' } else { c }).collect()
}

/// Runs the binary at trace level (the flag before the subcommand), bounded in time.
/// (The command is built before the future, which so borrows nothing: commands can
/// run side by side.)
fn fediprobe(args: &[&str]) -> impl std::future::Future<Output = Output> + use<> {
    let mut command = tokio::process::Command::new(BIN);
    command.args(["--log-level", "trace"]).args(args).env_remove("FEDIPROBE_LOG").kill_on_drop(true);
    let shown = format!("{args:?}");
    async move {
        tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .unwrap_or_else(|_| panic!("fediprobe {shown} did not finish within 60 s"))
            .expect("the binary runs")
    }
}

/// Starts the binary at trace level for a command that keeps running, its output piped.
fn spawn(args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(BIN)
        .args(["--log-level", "trace"])
        .args(args)
        .env_remove("FEDIPROBE_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A 16-character random suffix, so that no two runs share a secret.
fn random() -> String {
    use rand::Rng;
    rand::rng().sample_iter(rand::distr::Alphanumeric).take(16).map(char::from).collect()
}

fn private(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

/// A hostile (or broken) instance: every answer echoes the request's
/// `Authorization` header back, as a non-JSON body on `/api/v1/timelines/home`
/// (an error shows its first 80 bytes) and as a Mastodon JSON error with a 500
/// elsewhere (an error shows its first 200 characters). The token is preceded by
/// text that puts its start and its end across those cuts.
async fn echo_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65536 {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request).into_owned();
                let auth = request
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: ").or_else(|| l.strip_prefix("Authorization: ")))
                    .unwrap_or("")
                    .to_owned();
                let (status, body) = if request.starts_with("GET /api/v1/timelines/home") {
                    // 60 bytes of padding: the cut at 80 falls inside the token.
                    ("200 OK", format!("{}{auth} was sent", "x".repeat(60 - "Bearer ".len())))
                } else {
                    let error = format!("{}{auth} is not valid here", "y".repeat(180 - "Bearer ".len()));
                    ("500 Internal Server Error", serde_json::json!({ "error": error }).to_string())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, task)
}

/// A journey file running one GET on `instance` at `schedule` that wants a JSON array.
fn one_get(name: &str, instance: &str, path: &str, schedule: &str) -> String {
    format!(
        "name: {name}\ninstance: {instance}\nschedule: '{schedule}'\nslo: {{ availability: 99% }}\nsteps:\n  - name: get\n    request: {{ path: {path} }}\n    expect: {{ json: [{{ path: $, type: array }}] }}\n"
    )
}

/// The sum of the `/metrics` lines that start with `series` and contain every one of `labels`.
fn metric_sum(metrics: &str, series: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(series) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn get(url: &str) -> Option<String> {
    fediprobe::install_crypto_provider();
    let response = reqwest::get(url).await.ok()?;
    response.text().await.ok()
}

/// stderr of a child process, collected while it runs.
fn collect(mut pipe: tokio::process::ChildStderr) -> Arc<Mutex<Vec<u8>>> {
    let collected = Arc::new(Mutex::new(Vec::new()));
    let sink = collected.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    collected
}

fn text_of(collected: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&collected.lock().unwrap()).into_owned()
}

fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap().success());
}

/// Waits up to `seconds` (in 100 ms steps) for `condition`.
async fn eventually<F: std::future::Future<Output = bool>>(seconds: u64, mut condition: impl FnMut() -> F) -> bool {
    for _ in 0..seconds * 10 {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_shows_any_piece_of_a_secret_on_any_path() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let vm = VictoriaMetrics::start();
    let (echo_url, _echo) = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut secrets = Secrets::default();

    // Every secret of the set-up: the sandbox's probe tokens in files, a wrong
    // token (the 401), the backend's bearer token, an inline token and a journey's
    // inline `Authorization`, and a password in the report's URL.
    let main_token = sandbox.instance("alpha").unwrap().account("probe").unwrap().token.expose().to_owned();
    let peer_token = sandbox.instance("beta").unwrap().account("probe").unwrap().token.expose().to_owned();
    for instance in ["alpha", "beta"] {
        for account in &sandbox.instance(instance).unwrap().accounts {
            secrets.add(account.token.expose());
        }
    }
    // A second probe account on main (`accounts:`), with its own token, right and wrong.
    let busy_token = sandbox.instance("alpha").unwrap().account("busy").unwrap().token.expose().to_owned();
    let wrong_busy_token = format!("wrongbusy-{}", random());
    secrets.add(wrong_busy_token.as_str());
    let wrong_token = format!("wrong-{}", random());
    let backend_token = format!("backend-{}", random());
    let inline_token = format!("inline-{}", random());
    let journey_bearer = format!("journeybearer-{}", random());
    let report_password = format!("reportpw-{}", random());
    for s in [&wrong_token, &backend_token, &inline_token, &journey_bearer, &report_password] {
        secrets.add(s.as_str());
    }
    private(&d.join("main.token"), &main_token);
    private(&d.join("peer.token"), &peer_token);
    private(&d.join("wrong.token"), &wrong_token);
    private(&d.join("busy.token"), &busy_token);
    private(&d.join("wrong-busy.token"), &wrong_busy_token);
    private(&d.join("backend.token"), &backend_token);

    let journeys = support_journeys_dir();
    let instances = |main_token_file: &str| {
        let busy_token_file = if main_token_file == "main.token" { "busy.token" } else { "wrong-busy.token" };
        format!(
            "instances:\n  main: {{ url: {}, account: probe, token: {{ file: {main_token_file} }}, accounts: {{ busy: {{ token: {{ file: {busy_token_file} }} }} }}, rate_limits: {{ api_calls: 100000, statuses: 100000, deletes: 100000 }} }}\n  peer: {{ url: {}, account: probe, token: {{ file: peer.token }}, rate_limits: {{ api_calls: 100000, statuses: 100000, deletes: 100000 }} }}\n  echo: {{ url: {echo_url}, account: probe, token: {{ file: main.token }} }}\n",
            sandbox.instance("alpha").unwrap().base_url,
            sandbox.instance("beta").unwrap().base_url,
        )
    };
    // The bundled journeys plus two against the echoing instance.
    let journeys_dir = d.join("journeys");
    std::fs::create_dir(&journeys_dir).unwrap();
    for entry in std::fs::read_dir(&journeys).unwrap().flatten() {
        std::fs::copy(entry.path(), journeys_dir.join(entry.file_name())).unwrap();
    }
    std::fs::write(
        journeys_dir.join("echo-body.yaml"),
        one_get("echo-body", "echo", "/api/v1/timelines/home", "*/5 * * * *"),
    )
    .unwrap();
    std::fs::write(
        journeys_dir.join("echo-error.yaml"),
        one_get("echo-error", "echo", "/api/v1/accounts/verify_credentials", "*/5 * * * *"),
    )
    .unwrap();
    let write_config = |name: &str, token_file: &str, backend: &str| -> PathBuf {
        let path = d.join(name);
        let spool = d.join(format!("spool-{name}"));
        std::fs::write(
            &path,
            format!(
                "probe: {{ region: test }}\n{}journeys: [journeys]\nremote_write: {{ url: '{backend}', bearer_token: {{ file: backend.token }}, spool_dir: '{}', flush_timeout: 2s, timeout: 1s }}\n",
                instances(token_file),
                spool.display()
            ),
        )
        .unwrap();
        path
    };
    let good = write_config("good.yaml", "main.token", vm.write_url().as_str());
    let unreachable = format!("http://127.0.0.1:{}/api/v1/write", free_port());
    let wrong = write_config("wrong.yaml", "wrong.token", &unreachable);
    let good = good.to_str().unwrap();

    // check: a good config; a config with an inline token; a journey with an inline bearer.
    let output = fediprobe(&["check", "-c", good]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    secrets.assert_absent_in_output("check (good)", &output);
    let inline = d.join("inline.yaml");
    std::fs::write(
        &inline,
        format!("probe: {{ region: test }}\ninstances:\n  main:\n    url: https://mastodon.example\n    account: probe\n    token: {inline_token}\njourneys: []\n"),
    )
    .unwrap();
    let output = fediprobe(&["check", "-c", inline.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("inline.yaml:6:12") && stderr(&output).contains("token: ***"),
        "{}",
        stderr(&output)
    );
    secrets.assert_absent_in_output("check (inline token)", &output);
    let leaky = d.join("leaky.yaml");
    std::fs::write(
        &leaky,
        format!("name: leaky\ninstance: main\nschedule: '*/5 * * * *'\nslo: {{ availability: 99% }}\nsteps:\n  - name: get\n    request:\n      path: /api/v1/timelines/home\n      headers: {{ Authorization: 'Bearer {journey_bearer}' }}\n"),
    )
    .unwrap();
    let output = fediprobe(&["check", leaky.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("leaky.yaml:9:"), "{}", stderr(&output));
    secrets.assert_absent_in_output("check (journey bearer)", &output);
    let output = fediprobe(&["once", "-c", inline.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(2));
    secrets.assert_absent_in_output("once (inline token)", &output);

    // rules and dashboards (side by side: neither needs the other), and their files.
    let dashboards = d.join("dashboards");
    let (rules, dashboard) = tokio::join!(
        fediprobe(&["rules", "-c", good]),
        fediprobe(&["dashboards", "-c", good, "--out", dashboards.to_str().unwrap()]),
    );
    for (what, output) in [("rules", &rules), ("dashboards", &dashboard)] {
        assert_eq!(output.status.code(), Some(0), "{what}: {}", stderr(output));
        secrets.assert_absent_in_output(what, output);
    }
    assert!(secrets.assert_absent_in_files("dashboards", &dashboards) > 0);

    // once, good path (pushes to VictoriaMetrics) with the echoing instance in it:
    // JSON results with human logs, then a table with JSON logs (one after the
    // other: they share the config's spool directory, which one process at a
    // time may use).
    let output = fediprobe(&["once", "-c", good, "--output", "json"]).await;
    let table = fediprobe(&["--log-format", "json", "once", "-c", good]).await;
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let runs: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let run = |name: &str| runs.iter().find(|r| r["journey"] == name).unwrap_or_else(|| panic!("{name}: {out}"));
    assert_eq!(run("home-timeline")["outcome"], "success", "{out}");
    // The echoes were seen, and what they said reached the results scrubbed.
    assert_eq!(run("echo-body")["reason"], "invalid_json", "{out}");
    assert!(run("echo-body").to_string().contains("<redacted>"), "{out}");
    assert_eq!(run("echo-error")["steps"][0]["http_status"], 500, "{out}");
    assert!(run("echo-error").to_string().contains("<redacted>"), "{out}");
    secrets.assert_absent_in_output("once (JSON results, human logs)", &output);
    assert!(stdout(&table).contains("echo-body"), "{}", stdout(&table));
    secrets.assert_absent_in_output("once (table, JSON logs)", &table);

    // once, failure path: a token the instance refuses, and a backend nobody
    // listens on, so that the samples are spooled.
    let output = fediprobe(&["once", "-c", wrong.to_str().unwrap(), "--output", "json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("\"unauthorized\""), "{}", stdout(&output));
    secrets.assert_absent_in_output("once (401, unreachable backend)", &output);
    let spool = d.join("spool-wrong.yaml");
    assert!(secrets.assert_absent_in_files("the spool", &spool) > 0, "nothing spooled");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&spool).unwrap().permissions().mode() & 0o777, 0o700);
        for file in std::fs::read_dir(&spool).unwrap().flatten() {
            assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{}", file.path().display());
        }
    }

    // report from VictoriaMetrics, with a password in its URL; and against nothing.
    vm.force_flush();
    let report_dir = d.join("report");
    let from = vm.base_url().replacen("http://", &format!("http://probe:{report_password}@"), 1);
    // The window ends at a five-minute mark: one past now holds the runs just made.
    let end = (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339();
    let report_args = ["report", "-c", good, "--from-url", &from, "--out", report_dir.to_str().unwrap(), "--end", &end];
    let output = fediprobe(&report_args).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    secrets.assert_absent_in_output("report", &output);
    assert!(secrets.assert_absent_in_files("the report", &report_dir) >= 3);
    let nowhere = format!("http://probe:{report_password}@127.0.0.1:{}", free_port());
    let output =
        fediprobe(&["report", "-c", good, "--from-url", &nowhere, "--out", d.join("r2").to_str().unwrap()]).await;
    assert_ne!(output.status.code(), Some(0));
    secrets.assert_absent_in_output("report (unreachable)", &output);

    // run: starts with the refused token, the token file is rotated while it
    // runs, then a reload with an inline token is rejected.
    let port = free_port();
    let run_dir = d.join("run");
    std::fs::create_dir(&run_dir).unwrap();
    std::fs::create_dir(run_dir.join("journeys")).unwrap();
    std::fs::write(
        run_dir.join("journeys/rotating.yaml"),
        one_get("rotating", "main", "/api/v1/timelines/home", "* * * * * *"),
    )
    .unwrap();
    private(&run_dir.join("main.token"), &wrong_token);
    private(&run_dir.join("backend.token"), &backend_token);
    let run_config = run_dir.join("fediprobe.yaml");
    let run_yaml = format!(
        "probe: {{ region: test }}\ninstances:\n  main: {{ url: {}, account: probe, token: {{ file: main.token }}, rate_limits: {{ api_calls: 100000 }} }}\njourneys: [journeys]\nremote_write: {{ url: '{unreachable}', bearer_token: {{ file: backend.token }}, spool_dir: spool, flush_timeout: 1s, timeout: 1s }}\nagent: {{ listen: 127.0.0.1:{port}, spread: 0s, push_interval: 1s, shutdown_grace: 2s, reload_check: 1s }}\n",
        sandbox.instance("alpha").unwrap().base_url
    );
    std::fs::write(&run_config, &run_yaml).unwrap();
    let mut agent = spawn(&["run", "-c", run_config.to_str().unwrap()]);
    let agent_stderr = collect(agent.stderr.take().unwrap());
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let count = |metrics: &str, outcome: &str| {
        metric_sum(
            metrics,
            "fediprobe_journey_outcome_total{",
            &["journey=\"rotating\"", &format!("outcome=\"{outcome}\"")],
        )
    };
    let refused =
        eventually(20, || async { get(&metrics_url).await.is_some_and(|m| count(&m, "probe_error") >= 1.0) }).await;
    assert!(refused, "no refused run within 20 s:\n{}", text_of(&agent_stderr));
    // The Secret is rotated: the file now holds the token the instance accepts.
    private(&run_dir.join("main.token"), &main_token);
    let recovered =
        eventually(20, || async { get(&metrics_url).await.is_some_and(|m| count(&m, "success") >= 2.0) }).await;
    assert!(recovered, "no successful run after the rotation within 20 s:\n{}", text_of(&agent_stderr));
    let metrics = get(&metrics_url).await.unwrap();
    secrets.assert_absent("/metrics", &metrics);
    // A ConfigMap update with an inline token: rejected, logged with the value masked.
    std::fs::write(&run_config, run_yaml.replace("token: { file: main.token }", &format!("token: {inline_token}")))
        .unwrap();
    let rejected = eventually(20, || async { text_of(&agent_stderr).contains("the new config is invalid") }).await;
    assert!(rejected, "the reload was not rejected within 20 s:\n{}", text_of(&agent_stderr));
    signal(&agent, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), agent.wait()).await.expect("the agent stops").unwrap();
    assert_eq!(status.code(), Some(0));
    let mut agent_stdout = String::new();
    agent.stdout.take().unwrap().read_to_string(&mut agent_stdout).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = text_of(&agent_stderr);
    assert!(logs.contains("token: ***"), "the rejected reload shows where the token is:\n{logs}");
    secrets.assert_absent("run: stdout", &agent_stdout);
    secrets.assert_absent("run: stderr", &logs);
    secrets.assert_absent_in_files("run's folder (less its token files)", &run_dir.join("spool"));

    // sandbox --write-config: its own tokens, read from the files it writes.
    let sandbox_dir = d.join("sandbox");
    let mut child = spawn(&["sandbox", "--write-config", sandbox_dir.to_str().unwrap()]);
    let written = eventually(20, || async { sandbox_dir.join("fediprobe.yaml").exists() }).await;
    assert!(written, "sandbox --write-config wrote no config within 20 s");
    let mut token_files = 0;
    for entry in std::fs::read_dir(&sandbox_dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "token") {
            secrets.add(std::fs::read_to_string(entry.path()).unwrap().trim());
            token_files += 1;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(entry.metadata().unwrap().permissions().mode() & 0o777, 0o600);
            }
        }
    }
    assert!(token_files >= 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&sandbox_dir).unwrap().permissions().mode() & 0o777, 0o700);
    }
    // once against the sandbox it started, so that its tokens are used on the wire.
    let sandbox_config = sandbox_dir.join("fediprobe.yaml");
    let output = fediprobe(&["once", "-c", sandbox_config.to_str().unwrap(), "--journey", "home-timeline"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    secrets.assert_absent_in_output("once (against `fediprobe sandbox`)", &output);
    signal(&child, "TERM");
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let _ = child.start_kill();
    let output = child.wait_with_output().await.unwrap();
    secrets.assert_absent_in_output("sandbox", &output);
    secrets.assert_absent_in_files("sandbox's journeys", &sandbox_dir.join("journeys"));
    secrets.assert_absent("sandbox's config", &std::fs::read_to_string(&sandbox_config).unwrap());

    // demo: its sandbox's tokens never leave the process. They are unknown here,
    // so the scan looks for anything shaped like one (43 URL-safe characters).
    let output = fediprobe(&["demo", "--rounds", "1", "--output", "json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    secrets.assert_absent_in_output("demo", &output);
    let token_shaped = regex::Regex::new(r"[A-Za-z0-9_-]{43}").unwrap();
    for text in [stdout(&output), stderr(&output)] {
        assert!(!token_shaped.is_match(&text), "demo shows something shaped like a token");
    }
}

/// The bundled journeys, copied into each config's folder.
fn support_journeys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("journeys")
}

/// Unit cases through the public API: the scrub the runner and the logs use.
#[test]
fn a_result_is_scrubbed_of_pieces_of_every_secret_before_it_is_cut() {
    let token = format!("unit-{}-{}", random(), random());
    let _held = Secret::new(token.clone());
    let mut secrets = Secrets::default();
    secrets.add(token.as_str());
    // A server quoting 30 of the token's 39 characters, cut at 80 bytes: nothing shows.
    let quoted = format!("{}{}", "z".repeat(50), &token[3..33]);
    secrets.assert_absent("shorten", &fediprobe::secret::shorten(&quoted, 60));
    secrets.assert_absent("start_of", &fediprobe::secret::start_of(quoted.as_bytes(), 80));
    secrets.assert_absent("scrub", &fediprobe::secret::scrub(&quoted));
}

#[cfg(unix)]
#[test]
fn the_spool_and_the_sandbox_config_fix_modes_of_what_existed_before() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    std::fs::create_dir(&spool_dir).unwrap();
    std::fs::set_permissions(&spool_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old = spool_dir.join("00000000000000000001.bin");
    std::fs::write(&old, b"left by an older version").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut spool = support::spool::open(&spool_dir, 1 << 20);
    assert_eq!(mode(&spool_dir), 0o700);
    assert_eq!(mode(&old), 0o600);
    let sample = fediprobe::sink::Sample::new("fediprobe_journey_success", [("journey", "x")], 1.0, 0);
    let written = spool.write(&[sample]).unwrap();
    assert!(written.is_empty());
    for file in spool.files() {
        assert_eq!(mode(&file.path), 0o600);
    }
}

/// The sandbox's targets with host names instead of `127.0.0.1` (resolved to it by
/// the runner's fixed resolver), so that the sandbox's streaming URL,
/// `ws://127.0.0.1:PORT`, is on another host than the instance.
fn named_targets(sandbox: &Sandbox, streaming_hosts: &[&str]) -> (Vec<Target>, fediprobe::runner::Resolver) {
    let mut names = Vec::new();
    let mut targets = fediprobe::sandbox::probe_targets(sandbox);
    for target in &mut targets {
        let name = format!("{}.probe.test", target.name);
        target.base_url.set_host(Some(&name)).unwrap();
        target.streaming_hosts = streaming_hosts.iter().map(|h| (*h).to_owned()).collect();
        names.push((name, vec![std::net::IpAddr::from([127, 0, 0, 1])]));
    }
    (targets, fediprobe::runner::Resolver::fixed(names))
}

#[tokio::test]
async fn a_streaming_url_on_another_host_gets_no_token_until_the_config_allows_the_host() {
    use fediprobe::runner::stream::Method;
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let journey = support::journeys::bundled("federation-main-to-peer");
    let arrive = |result: &fediprobe::runner::RunResult| {
        result.steps.iter().find(|s| s.name == "arrive").cloned().expect("an `arrive` step")
    };

    // Not allowed: the stream is not opened, the fallback poll finds the post.
    let (targets, resolver) = named_targets(&sandbox, &[]);
    let result = fediprobe::runner::Runner::new(targets).with_resolver(resolver).run(&journey).await;
    let shown = serde_json::to_string_pretty(&result).unwrap();
    assert_eq!(result.outcome, fediprobe::runner::Outcome::Success, "{shown}");
    assert_eq!(arrive(&result).delivery.expect("delivered").method, Method::Poll, "{shown}");

    // The refusal, as the stream step reports it, says how to allow the host.
    let (targets, _) = named_targets(&sandbox, &[]);
    let peer = targets.iter().find(|t| t.name == "peer").unwrap();
    let refused = fediprobe::runner::stream::streaming_url_allowed(
        peer,
        &sandbox.instance("beta").unwrap().streaming_url().parse().unwrap(),
    )
    .unwrap_err();
    assert!(refused.to_string().contains("`streaming_hosts: [127.0.0.1]` under instance `peer`"), "{refused}");

    // Allowed by `streaming_hosts`: the stream is used.
    let (targets, resolver) = named_targets(&sandbox, &["127.0.0.1"]);
    let result = fediprobe::runner::Runner::new(targets).with_resolver(resolver).run(&journey).await;
    let shown = serde_json::to_string_pretty(&result).unwrap();
    assert_eq!(result.outcome, fediprobe::runner::Outcome::Success, "{shown}");
    assert_eq!(arrive(&result).delivery.expect("delivered").method, Method::Stream, "{shown}");
}

/// The secrets written into the data-driven cases under `tests/cases/` (each must
/// still be in a case's `.yaml`, so that this list cannot go stale unnoticed).
const CASE_SECRETS: &[&str] = &[
    "abcdef123456",
    "Bearer abc",
    "tok-inline-7f3a9c2e5b1d",
    "pw-host-url-48xqZ7",
    "pw-in-url-93kd72",
    "hdr-inline-Kq81mZp0",
    "pw-inline-5hq8ZxY2",
    "tok-in-query-5Gh2Lk9q",
    "cookie-value-8Jk2Mn4p",
];

#[test]
fn no_expected_diagnostic_in_the_cases_shows_a_secret() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let (mut yaml, mut err) = (String::new(), Vec::new());
    for folder in std::fs::read_dir(&cases).unwrap().flatten() {
        for file in std::fs::read_dir(folder.path()).unwrap().flatten() {
            let path = file.path();
            let text = std::fs::read_to_string(&path).unwrap();
            match path.extension().and_then(|e| e.to_str()) {
                Some("yaml") => yaml.push_str(&text),
                Some("err") => err.push((path, text)),
                _ => {}
            }
        }
    }
    assert!(!err.is_empty());
    for secret in CASE_SECRETS {
        assert!(yaml.contains(secret), "no case holds {secret:?} any more: update CASE_SECRETS");
        for (path, text) in &err {
            // The value itself, and (for the longer ones) any piece of it.
            assert!(!text.contains(secret), "{} shows {secret:?}", path.display());
            if secret.len() > PIECE && !secret.contains(' ') {
                let mut secrets = Secrets::default();
                secrets.add(*secret);
                secrets.assert_absent(&path.display().to_string(), text);
            }
        }
    }
}
