//! Data-driven tests of the journey and config formats, in the style of Hurl's
//! test suites: every `tests/cases/journey_error/*.yaml` (and `config_error/`)
//! must produce exactly the diagnostics in the `.err` file beside it, and every
//! `journey_ok/*.yaml` must load without a diagnostic.
//!
//! When a change to the messages is intended, re-bless the expected files with
//! `FEDIPROBE_BLESS=1 cargo test --test spec_cases` and review the diff.

use std::path::{Path, PathBuf};

use fediprobe::spec::{self, Diagnostics};

fn cases(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases").join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no cases in {}", dir.display());
    files
}

/// Diagnostics print paths relative to the repository, so the expected files
/// don't depend on where the checkout is.
fn relative(diagnostics: &Diagnostics) -> String {
    let root = format!("{}/", env!("CARGO_MANIFEST_DIR"));
    diagnostics.to_string().replace(&root, "")
}

fn compare(case: &Path, actual: &str) -> Option<String> {
    let expected_file = case.with_extension("err");
    if std::env::var_os("FEDIPROBE_BLESS").is_some() {
        std::fs::write(&expected_file, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(&expected_file).unwrap_or_default();
    (expected != actual).then(|| {
        format!(
            "{}: diagnostics differ\n--- expected ({})\n{expected}\n--- actual\n{actual}",
            case.display(),
            expected_file.display()
        )
    })
}

#[test]
fn broken_journeys_give_exactly_the_expected_diagnostics() {
    let mut mismatches = Vec::new();
    for case in cases("journey_error") {
        let (journeys, diagnostics) = spec::load_journey_paths(std::slice::from_ref(&case));
        assert!(diagnostics.has_errors(), "{} should not load", case.display());
        assert!(journeys.is_empty() || diagnostics.iter().any(|d| d.title.contains("limit")), "{}", case.display());
        mismatches.extend(compare(&case, &relative(&diagnostics)));
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[test]
fn broken_configs_give_exactly_the_expected_diagnostics() {
    let mut mismatches = Vec::new();
    for case in cases("config_error") {
        let diagnostics = spec::load_config(&case).expect_err("should not load");
        mismatches.extend(compare(&case, &relative(&diagnostics)));
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[test]
fn valid_journeys_load_without_a_diagnostic() {
    for case in cases("journey_ok") {
        let (journeys, diagnostics) = spec::load_journey_paths(std::slice::from_ref(&case));
        assert!(diagnostics.is_empty(), "{}:\n{diagnostics}", case.display());
        assert_eq!(journeys.len(), 1);
    }
}

#[test]
fn every_check_error_in_a_file_is_reported_not_just_the_first() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/journey_error/many_errors.yaml");
    let (_, diagnostics) = spec::load_journey_paths(&[case]);
    assert!(diagnostics.error_count() >= 6, "{diagnostics}");
}

#[test]
fn bundled_journeys_parse_and_match_the_journeys_folder() {
    let journeys = spec::bundled::journeys().unwrap_or_else(|d| panic!("{d}"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("journeys");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| format!("journeys/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let mut bundled: Vec<String> = spec::bundled::BUNDLED.iter().map(|(p, _)| p.to_string()).collect();
    bundled.sort();
    assert_eq!(bundled, on_disk, "src/spec/bundled.rs must list every file in journeys/");
    for (path, text) in spec::bundled::BUNDLED {
        assert_eq!(*text, std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap());
    }
    // Together, at their schedules, they stay inside Mastodon's limits for one account.
    let (_, diagnostics) = spec::load_journey_paths(&[dir]);
    assert!(diagnostics.is_empty(), "{diagnostics}");
    assert_eq!(journeys.len(), spec::bundled::BUNDLED.len());
}
