//! External tools the rule tests run: found on PATH, or the test fails with the
//! Debian package to install (a missing tool never skips a test).

#![allow(dead_code)] // Each test binary uses a different part of the helper.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The path of `tool`, or a panic naming the Debian `package` that provides it.
pub fn require(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{tool}` not found on PATH: install the Debian package `{package}` (apt-get install {package})");
}

pub fn promtool() -> PathBuf {
    require("promtool", "prometheus")
}

pub fn vmalert() -> PathBuf {
    require("vmalert", "victoria-metrics")
}

/// Debian names the Alertmanager binary `prometheus-alertmanager`.
pub fn alertmanager() -> PathBuf {
    require("prometheus-alertmanager", "prometheus-alertmanager")
}

pub fn amtool() -> PathBuf {
    require("amtool", "prometheus-alertmanager")
}

pub fn jsonnet() -> PathBuf {
    require("jsonnet", "jsonnet")
}

pub fn chromium() -> PathBuf {
    require("chromium", "chromium")
}

/// Runs `program args…` in `dir` and returns its output; panics when it cannot start.
pub fn run(program: &Path, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// Panics with the tool's output unless it exited with success.
pub fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
