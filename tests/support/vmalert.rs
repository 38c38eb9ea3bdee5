//! `vmalert` in replay mode: the generated rules evaluated over backfilled
//! history, minute by minute, writing what they record (and the `ALERTS`
//! series) back to the VictoriaMetrics they read.

#![allow(dead_code)] // Each test binary uses a different part of the helper.

use std::process::{Command, Stdio};
use std::time::Duration;

use fediprobe::generate::{self, Format, RuleFile};

use super::tools;
use super::victoria::{VictoriaMetrics, free_port};

/// Runs `vmalert` in replay mode over `[from_s, to_s]` on `rules`, reading and
/// writing `vm`; returns once vmalert has finished (bounded: it is killed after
/// two minutes).
pub fn replay(vm: &VictoriaMetrics, rules: &RuleFile, dir: &std::path::Path, from_s: i64, to_s: i64) {
    let rule_file = dir.join(format!("{}.yaml", rules.groups[0].name));
    std::fs::write(&rule_file, generate::render(rules, Format::Rules)).unwrap();
    let rfc3339 =
        |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut child = Command::new(tools::vmalert())
        .arg(format!("-rule={}", rule_file.display()))
        .arg(format!("-datasource.url={}", vm.base_url()))
        .arg(format!("-remoteWrite.url={}", vm.base_url()))
        // Evaluate at every minute of the range, as the 1m group would live
        // (the default step is 5m).
        .arg("-datasource.queryStep=1m")
        .arg(format!("-replay.timeFrom={}", rfc3339(from_s)))
        .arg(format!("-replay.timeTo={}", rfc3339(to_s)))
        .arg("-replay.disableProgressBar")
        .arg(format!("-httpListenAddr=127.0.0.1:{}", free_port()))
        .arg("-loggerLevel=ERROR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start vmalert: {e}"));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("vmalert's replay did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    tools::assert_success(&format!("vmalert replay of {}", rule_file.display()), &output);
    assert!(status.success());
}
