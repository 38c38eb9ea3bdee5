//! The production build carries no simulator: built without the default
//! `sandbox` feature (as the Dockerfile builds the image), the binary has no
//! `demo` or `sandbox` command and no code from `src/sandbox/` at all, while the
//! default build (the one the other tests use) has both, so the check can fail.
//!
//! The lean binary is built here, into its own target folder (`target/lean`), so
//! that it never replaces the default one the other tests run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the binary without default features and returns its path.
fn lean_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target/lean");
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["build", "--quiet", "--locked", "--no-default-features", "--bin", "fediprobe", "--target-dir"])
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "`cargo build --no-default-features` failed: the product must build without the sandbox");
    target.join("debug/fediprobe")
}

/// Whether `haystack` contains `needle`.
fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// What shows that code from `src/sandbox/` is in a binary: its symbols (legacy
/// mangling spells the path `9fediprobe7sandbox`) or its source paths (panic
/// locations).
fn has_sandbox_code(binary: &Path) -> bool {
    let bytes = std::fs::read(binary).unwrap_or_else(|e| panic!("cannot read {}: {e}", binary.display()));
    contains(&bytes, "9fediprobe7sandbox") || contains(&bytes, "src/sandbox/")
}

#[test]
fn the_build_without_default_features_has_no_simulator_and_the_default_build_has_one() {
    let lean = lean_binary();
    let full = Path::new(env!("CARGO_BIN_EXE_fediprobe"));
    assert!(has_sandbox_code(full), "the default build must contain the sandbox, or this check proves nothing");
    assert!(!has_sandbox_code(&lean), "the build without default features contains sandbox code: {}", lean.display());

    let help = Command::new(&lean).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for present in ["once", "run", "check", "rules", "dashboards", "report"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(present)), "`{present}` missing from:\n{help}");
    }
    for absent in ["demo", "sandbox"] {
        assert!(!help.lines().any(|l| l.trim_start().starts_with(absent)), "`{absent}` in the lean build:\n{help}");
    }
    let demo = Command::new(&lean).arg("demo").output().unwrap();
    assert_eq!(demo.status.code(), Some(2), "an unknown command is a usage error");
}

#[test]
fn the_image_is_built_without_the_simulator() {
    let dockerfile = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let build = dockerfile.lines().find(|l| l.contains("cargo build")).expect("the Dockerfile runs cargo build");
    assert!(build.contains("--no-default-features"), "the image must be built without the sandbox: {build}");
}

#[test]
fn the_base_images_are_pinned_by_digest() {
    let dockerfile = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let images: Vec<&str> = dockerfile.lines().filter(|l| l.starts_with("ARG ") && l.contains("_IMAGE=")).collect();
    assert_eq!(images.len(), 2, "a build image and a runtime image: {images:?}");
    for line in images {
        let digest = line.split_once("@sha256:").map(|(_, d)| d).unwrap_or("");
        assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()), "not pinned by digest: {line}");
    }
    for from in dockerfile.lines().filter(|l| l.starts_with("FROM ")) {
        assert!(from.contains("${"), "every FROM takes its pinned image from an ARG: {from}");
    }
}
