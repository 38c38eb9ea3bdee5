//! What `fediprobe once` touches besides its journeys, and whose fault its
//! network failures are: the leftover sweep after the runs goes only to the
//! instances the journeys post marked statuses on; without a control target a
//! refused connection is the instance's `failure`, whatever the metrics backend
//! does; and `check` counts every probe sharing an account or a token and warns
//! about a missing control target.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fediprobe::sandbox::Sandbox;
use serde_json::Value;
use support::sandbox::As;

const BIN: &str = env!("CARGO_BIN_EXE_fediprobe");

const POST_ON_MAIN: &str = "name: post\ninstance: main\nschedule: '*/10 * * * *'\ndeadline: 1s\nslo: { availability: 99% }\nsteps:\n  - name: post\n    request: { method: POST, path: /api/v1/statuses, form: { status: 'fediprobe check ${nonce}', visibility: private } }\n    capture: { id: $.id }\ncleanup:\n  - name: delete\n    request: { method: DELETE, path: '/api/v1/statuses/${id}' }\n";
const READ_ON_PEER: &str = "name: read\ninstance: peer\nschedule: '* * * * *'\ndeadline: 1s\nslo: { availability: 99% }\nsteps:\n  - name: home\n    request: { path: /api/v1/timelines/home }\n";

/// A config in `dir` with `instances` (YAML lines under `instances:`), the
/// journeys given, and `extra` top-level YAML.
fn write_config(dir: &Path, probe: &str, instances: &str, journeys: &[&str], extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("journeys")).unwrap();
    for (i, journey) in journeys.iter().enumerate() {
        std::fs::write(dir.join(format!("journeys/{i}.yaml")), journey).unwrap();
    }
    let path = dir.join("fediprobe.yaml");
    std::fs::write(
        &path,
        format!("probe: {{ region: test{probe} }}\ninstances:\n{instances}journeys: [journeys]\n{extra}"),
    )
    .unwrap();
    path
}

fn token_file(dir: &Path, name: &str, sandbox: &Sandbox, instance: &str) -> String {
    let token = sandbox.instance(instance).unwrap().account("probe").unwrap().token.clone();
    std::fs::write(dir.join(name), token.expose()).unwrap();
    name.to_owned()
}

async fn fediprobe(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN).args(args).env_remove("FEDIPROBE_LOG").output().await.unwrap()
}

async fn exists(client: &As, id: &str) -> bool {
    client.get(&format!("/api/v1/statuses/{id}")).send().await.unwrap().status() == 200
}

/// A port on loopback that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn once_sweeps_only_the_instances_its_journeys_post_on() {
    let sandbox = Sandbox::start(Default::default()).await.unwrap();
    let (alpha, beta) = (sandbox.instance("alpha").unwrap(), sandbox.instance("beta").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let instances = format!(
        "  main: {{ url: {}, account: probe, token: {{ file: {} }} }}\n  peer: {{ url: {}, account: probe, token: {{ file: {} }} }}\n",
        alpha.base_url,
        token_file(dir.path(), "main.token", &sandbox, "alpha"),
        beta.base_url,
        token_file(dir.path(), "peer.token", &sandbox, "beta"),
    );
    let config = write_config(dir.path(), "", &instances, &[POST_ON_MAIN, READ_ON_PEER], "");
    let config = config.to_str().unwrap();
    let marker = || fediprobe::runner::new_nonce(chrono::Utc::now());
    let (on_main, on_peer) = (As::user(alpha, "probe"), As::user(beta, "probe"));
    let main_leftover = on_main.post_status(&format!("fediprobe check {}", marker()), "private").await;
    let peer_leftover = on_peer.post_status(&format!("fediprobe check {}", marker()), "private").await;
    let (main_leftover, peer_leftover) =
        (main_leftover["id"].as_str().unwrap().to_owned(), peer_leftover["id"].as_str().unwrap().to_owned());
    // Older than the longest journey deadline (1 s): leftovers the sweep may delete.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let output = fediprobe(&["once", "-c", config, "--journey", "read"]).await;
    support::tools::assert_success("once --journey read", &output);
    assert!(exists(&on_peer, &peer_leftover).await, "a journey that posts nothing on peer does not sweep it");
    assert!(exists(&on_main, &main_leftover).await, "a journey that does not use main does not sweep it");

    let output = fediprobe(&["once", "-c", config, "--journey", "post"]).await;
    support::tools::assert_success("once --journey post", &output);
    assert!(!exists(&on_main, &main_leftover).await, "the instance the journey posts on is swept");
    assert!(exists(&on_peer, &peer_leftover).await, "an instance the journey does not use is not swept");
}

/// The one run's result of `once --output json`.
async fn once_result(config: &Path) -> Value {
    let output = fediprobe(&["once", "-c", config.to_str().unwrap(), "--output", "json"]).await;
    support::tools::assert_success("once", &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().next().expect("one result line")).unwrap()
}

#[tokio::test]
async fn without_a_control_target_a_refused_connection_is_the_instances_failure_while_the_backend_is_down() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.token"), "a-token-nobody-reads").unwrap();
    let instances = format!(
        "  main: {{ url: 'http://127.0.0.1:{}', account: probe, token: {{ file: main.token }} }}\n",
        closed_port()
    );
    let health = "name: health\ninstance: main\nschedule: '* * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: get\n    timeout: 2s\n    request: { path: /health, auth: false }\n";
    // The metrics backend is down too; its samples go to the spool.
    let backend = format!(
        "remote_write: {{ url: 'http://127.0.0.1:{}/api/v1/write', spool_dir: spool, flush_timeout: 1s, timeout: 1s }}\n",
        closed_port()
    );
    let config = write_config(dir.path(), "", &instances, &[health], &backend);
    let result = once_result(&config).await;
    assert_eq!(result["outcome"], "failure", "{result:#}");
    assert_eq!(result["reason"], "connect", "{result:#}");

    // With a control target that is unreachable too, it is the probe's own network.
    let control = format!(", control_url: 'http://127.0.0.1:{}'", closed_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.token"), "a-token-nobody-reads").unwrap();
    let config = write_config(dir.path(), &control, &instances, &[health], &backend);
    let result = once_result(&config).await;
    assert_eq!(result["outcome"], "probe_error", "{result:#}");
    assert_eq!(result["reason"], "probe_network", "{result:#}");
}

#[tokio::test]
async fn check_counts_every_probe_sharing_the_token_and_warns_without_a_control_target() {
    let dir = tempfile::tempdir().unwrap();
    let instances = "  main: { url: https://mastodon.example, account: probe, token: { env: T }, shared_by: { account: 3, token: 1 } }\n";
    let every_minute = (0..40)
        .map(|i| format!("  - name: home{i}\n    request: {{ path: /api/v1/timelines/home }}\n"))
        .collect::<String>();
    let busy = format!(
        "name: busy\ninstance: main\nschedule: '* * * * *'\nslo: {{ availability: 99% }}\nsteps:\n{every_minute}"
    );
    let config = write_config(dir.path(), "", instances, &[&busy], "");
    let output = fediprobe(&["check", "-c", config.to_str().unwrap()]).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("no control target"), "{stderr}");
    // 40 calls a run, 5 runs in 5 minutes, and the agent's sweep (2 reads, 1 delete).
    let row = stdout.lines().find(|l| l.contains("per account") && l.contains("API calls")).expect("an account row");
    assert_eq!(
        row.split_whitespace().filter(|w| w.chars().all(|c| c.is_ascii_digit())).collect::<Vec<_>>(),
        ["1500", "203", "3", "3", "609"]
    );

    // The same three probes on one token: 609 calls per 5 minutes on it, over 300.
    let shared = std::fs::read_to_string(&config).unwrap().replace("token: 1 }", "token: 3 }");
    std::fs::write(&config, shared).unwrap();
    let output = fediprobe(&["check", "-c", config.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("limit of 300 API calls per 5m per token on instance `main`: up to 609 in one window (203 from this probe, 3 probes sharing the token)"),
        "{stderr}"
    );
}
