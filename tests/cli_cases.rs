//! The commands' human output, case by case, in the style of Hurl's
//! `tests_ok/` and `tests_failed/`: every folder under `tests/cli_cases/` is one
//! run of the `fediprobe` binary, and what it printed must be exactly what the
//! folder holds.
//!
//! A case folder holds:
//! - `cmd`: the arguments, on one line, separated by spaces (no quoting; a case
//!   needing an argument with a space does not fit here);
//! - `stdout`, `stderr`: what the command must print;
//! - `exit`: its exit code;
//! - optionally `env`: `NAME=value` lines set for the run;
//! - any input the command reads (configs, journeys), by paths relative to the
//!   folder, where the command runs; inputs several cases share are in
//!   `tests/cli_cases/_inputs/` (folders starting with `_` are not cases).
//!
//! What varies from run to run is normalised before comparing, both ways: a
//! fresh temporary folder for the command to write into is `$TMP` in `cmd` and
//! in the output, the case folder's absolute path is `$CASE`, the repository's
//! is `$ROOT`, and the crate's version is `$VERSION`. Every `FEDIPROBE_*`
//! variable is removed from the environment (no token, the default log level),
//! and so is `CLICOLOR_FORCE`.
//!
//! To add a case, create its folder with `cmd` (and its inputs), run
//! `FEDIPROBE_BLESS=1 cargo test --test cli_cases` to write the expected files,
//! and read them: they are the claim. Re-bless the same way when a change to the
//! output is intended, and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fediprobe");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every case folder, sorted by name.
fn cases() -> Vec<PathBuf> {
    let dir = root().join("tests/cli_cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir() && !path.file_name().unwrap().to_string_lossy().starts_with('_'))
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    cases
}

fn read(case: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(case.join(file)).ok()
}

/// What a run printed and how it ended, normalised: the three expected files' contents.
struct Outcome {
    stdout: String,
    stderr: String,
    exit: String,
}

/// Runs the case's command in its folder.
fn run(case: &Path) -> Outcome {
    let cmd = read(case, "cmd").unwrap_or_else(|| panic!("{}: no `cmd` file", case.display()));
    let tmp = tempfile::tempdir().unwrap();
    let tmp_path = tmp.path().to_str().unwrap().to_owned();
    let args: Vec<String> = cmd.split_whitespace().map(|arg| arg.replace("$TMP", &tmp_path)).collect();
    let mut command = Command::new(BIN);
    command.args(&args).current_dir(case).env_remove("CLICOLOR_FORCE");
    // The developer's own settings (a token, a log level) must not change a case.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FEDIPROBE_") {
            command.env_remove(name);
        }
    }
    for line in read(case, "env").unwrap_or_default().lines().filter(|l| !l.trim().is_empty()) {
        let (name, value) =
            line.split_once('=').unwrap_or_else(|| panic!("{}: `env` line {line:?} is not NAME=value", case.display()));
        command.env(name, value);
    }
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    let normalise = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .replace(&tmp_path, "$TMP")
            .replace(case.to_str().unwrap(), "$CASE")
            .replace(root().to_str().unwrap(), "$ROOT")
            .replace(env!("CARGO_PKG_VERSION"), "$VERSION")
    };
    let exit = match output.status.code() {
        Some(code) => format!("{code}\n"),
        None => format!("killed: {}\n", output.status),
    };
    Outcome { stdout: normalise(&output.stdout), stderr: normalise(&output.stderr), exit }
}

/// The first line where `expected` and `actual` differ, for the failure message.
fn first_difference(expected: &str, actual: &str) -> String {
    let (mut expected_lines, mut actual_lines) = (expected.lines(), actual.lines());
    for number in 1.. {
        match (expected_lines.next(), actual_lines.next()) {
            (Some(e), Some(a)) if e == a => continue,
            (None, None) => return "(they differ in line endings only)".into(),
            (e, a) => {
                return format!(
                    "first difference at line {number}:\n  expected: {}\n  actual:   {}",
                    e.unwrap_or("(end of output)"),
                    a.unwrap_or("(end of output)")
                );
            }
        }
    }
    unreachable!()
}

#[test]
fn every_command_prints_exactly_what_its_case_expects() {
    let bless = std::env::var_os("FEDIPROBE_BLESS").is_some();
    let mut mismatches = Vec::new();
    for case in cases() {
        let outcome = run(&case);
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        for (file, actual) in [("stdout", &outcome.stdout), ("stderr", &outcome.stderr), ("exit", &outcome.exit)] {
            if bless {
                std::fs::write(case.join(file), actual).unwrap();
                continue;
            }
            match read(&case, file) {
                None => mismatches.push(format!(
                    "{name}: no `{file}` file; write the expected files with \
                     `FEDIPROBE_BLESS=1 cargo test --test cli_cases` and review them"
                )),
                Some(expected) if &expected != actual => {
                    let difference = first_difference(&expected, actual);
                    // Whole outputs only when they are short enough to read.
                    mismatches.push(if expected.lines().count().max(actual.lines().count()) <= 40 {
                        format!("{name}: {file} differs; {difference}\n--- expected\n{expected}\n--- actual\n{actual}")
                    } else {
                        format!("{name}: {file} differs; {difference}")
                    });
                }
                Some(_) => {}
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{}\n\nIf the change is intended, re-bless with `FEDIPROBE_BLESS=1 cargo test --test cli_cases` and review \
         the diff.",
        mismatches.join("\n\n")
    );
}
