//! No garbage left behind: a status the probe posted and never deleted (the
//! process died between a journey's post and its cleanup) is deleted by the next
//! `fediprobe once`, within the sweep's per-run delete budget; statuses without
//! the marker, statuses too young, and other accounts' statuses are untouched.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use fediprobe::sandbox::{Sandbox, SandboxConfig};
use support::sandbox::As;

const BIN: &str = env!("CARGO_BIN_EXE_fediprobe");

/// A config with one journey whose deadline is `deadline` (the sweep's minimum age).
fn config(sandbox: &Sandbox, dir: &std::path::Path, deadline: &str) -> PathBuf {
    let alpha = sandbox.instance("alpha").unwrap();
    std::fs::write(dir.join("main.token"), alpha.account("probe").unwrap().token.expose()).unwrap();
    std::fs::create_dir_all(dir.join("journeys")).unwrap();
    std::fs::write(
        dir.join("journeys/post.yaml"),
        format!(
            // A journey that posts a marked status: `once` sweeps the instances its journeys can leave one on.
            "name: post\ninstance: main\nschedule: '*/5 * * * *'\ndeadline: {deadline}\nslo: {{ availability: 99% }}\nsteps:\n  - name: post\n    timeout: 1s\n    request: {{ method: POST, path: /api/v1/statuses, form: {{ status: 'fediprobe check ${{nonce}}', visibility: private }} }}\n    capture: {{ id: $.id }}\ncleanup:\n  - name: delete\n    request: {{ method: DELETE, path: '/api/v1/statuses/${{id}}' }}\n"
        ),
    )
    .unwrap();
    let yaml = format!(
        "probe: {{ region: test }}\ninstances:\n  main: {{ url: {}, account: probe, token: {{ file: main.token }} }}\njourneys: [journeys]\n",
        alpha.base_url
    );
    let path = dir.join("fediprobe.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A marker as a run makes it, for a run started now.
fn marker() -> String {
    fediprobe::runner::new_nonce(chrono::Utc::now())
}

async fn exists(client: &As, id: &str) -> bool {
    client.get(&format!("/api/v1/statuses/{id}")).send().await.unwrap().status() == 200
}

#[tokio::test]
async fn once_deletes_leftover_marked_statuses_and_nothing_else() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let alpha = sandbox.instance("alpha").unwrap();
    let probe = As::user(alpha, "probe");
    let alice = As::user(alpha, "alice");
    let dir = tempfile::tempdir().unwrap();
    let run = |deadline: &'static str| {
        let config = config(&sandbox, dir.path(), deadline);
        async move {
            let output = tokio::process::Command::new(BIN)
                .args(["once", "-c", config.to_str().unwrap()])
                .env_remove("FEDIPROBE_LOG")
                .output()
                .await
                .unwrap();
            assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        }
    };

    // Three leftovers: more than one sweep deletes.
    let mut leftovers = Vec::new();
    for _ in 0..3 {
        let status = probe.post_status(&format!("fediprobe check {}", marker()), "private").await;
        leftovers.push(status["id"].as_str().unwrap().to_owned());
    }
    let unmarked = probe.post_status("a post by the account's human, fp for short", "private").await;
    let someone_elses = alice.post_status(&format!("quoting fediprobe {}", marker()), "public").await;
    let left = async || {
        let mut left = Vec::new();
        for id in &leftovers {
            if exists(&probe, id).await {
                left.push(id.clone());
            }
        }
        left
    };

    // With a 30-minute deadline every one of them may be a run still in flight:
    // the sweep keeps them all (however slow this machine, they are younger).
    run("30m").await;
    assert_eq!(left().await, leftovers, "a status younger than the longest deadline is kept");

    // With a 1 s deadline, once they are older than that (a wait can only
    // make them older), they are leftovers.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    run("1s").await;
    let left_after_one = left().await;
    assert_eq!(
        left_after_one.len(),
        leftovers.len() - fediprobe::runner::sweep::MAX_DELETES,
        "one sweep deletes at most {} statuses",
        fediprobe::runner::sweep::MAX_DELETES
    );
    // The oldest are the ones left for the next sweep: the newest page comes first.
    assert_eq!(left_after_one, leftovers[..leftovers.len() - fediprobe::runner::sweep::MAX_DELETES].to_vec());
    assert!(exists(&probe, unmarked["id"].as_str().unwrap()).await, "an unmarked status is not the probe's");
    assert!(exists(&alice, someone_elses["id"].as_str().unwrap()).await, "another account's status is kept");

    // The next runs delete the rest, a sweep's share each.
    for _ in 0..left_after_one.len().div_ceil(fediprobe::runner::sweep::MAX_DELETES) {
        run("1s").await;
    }
    assert_eq!(left().await, Vec::<String>::new(), "the next runs delete the rest");
    assert!(exists(&probe, unmarked["id"].as_str().unwrap()).await);
}
