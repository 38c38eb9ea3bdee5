//! Bad input never panics: property tests (proptest) over the journey and config
//! parsers and the streaming frame parser, with arbitrary text and with
//! structured mutations of the bundled journeys and the example config. Every
//! diagnostic must name the file it is about, and a position in it unless it is
//! about the file as a whole; rendering diagnostics must not panic either.
//!
//! The budget is bounded for CI: [`CASES`] cases per property (about ten seconds
//! in all on a test machine); `PROPTEST_CASES=100000 cargo test --test fuzz`
//! searches longer. Failures proptest finds are kept in `proptest-regressions/`
//! and replayed first on every run: commit them.

use std::path::Path;

use fediprobe::spec::{Diagnostics, parse_config_str, parse_journey_str};
use proptest::prelude::*;

const CASES: u32 = 1024;

const EXAMPLE_CONFIG: &str = include_str!("../examples/fediprobe.yaml");

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(CASES);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Every diagnostic names `file`; one without a position is about the whole file.
fn check_diagnostics(file: &Path, text: &str, diagnostics: &Diagnostics) {
    let lines = text.split('\n').count();
    for d in diagnostics.iter() {
        assert_eq!(d.file, file, "a diagnostic about another file: {d:?}");
        match d.pos {
            Some(pos) => {
                assert!(pos.line >= 1 && pos.line <= lines + 1, "line {} of {lines}: {d:?}", pos.line);
                assert!(pos.col >= 1, "column 0: {d:?}");
            }
            None => assert!(
                d.title.contains("empty") || d.title.contains("file"),
                "a diagnostic without a position that is not about the file: {d:?}"
            ),
        }
    }
    // Rendering (carets under the source line, multi-byte text) must not panic.
    let _ = diagnostics.to_string();
}

/// One edit of a text: delete a range, insert text, duplicate or drop a line,
/// or replace a character; positions are fractions of the text's length.
#[derive(Debug, Clone)]
enum Edit {
    Delete { at: f64, len: usize },
    Insert { at: f64, text: String },
    DuplicateLine { at: f64 },
    DropLine { at: f64 },
    Replace { at: f64, with: char },
}

fn edit() -> impl Strategy<Value = Edit> {
    let fragment = prop_oneof![
        any::<String>(),
        Just(": ".to_owned()),
        Just("\n  - ".to_owned()),
        Just("{".to_owned()),
        Just("[".to_owned()),
        Just("${".to_owned()),
        Just("&anchor ".to_owned()),
        Just("*anchor".to_owned()),
        Just("!!binary ".to_owned()),
        Just("\t".to_owned()),
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("-1".to_owned()),
        Just("0s".to_owned()),
        Just("é😀".to_owned()),
        "[a-z_]{1,12}: [a-z0-9$.{}]{0,12}",
    ];
    prop_oneof![
        (0.0..1.0f64, 1..40usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        (0.0..1.0f64, fragment).prop_map(|(at, text)| Edit::Insert { at, text }),
        (0.0..1.0f64).prop_map(|at| Edit::DuplicateLine { at }),
        (0.0..1.0f64).prop_map(|at| Edit::DropLine { at }),
        (0.0..1.0f64, any::<char>()).prop_map(|(at, with)| Edit::Replace { at, with }),
    ]
}

/// The char boundary nearest below `at` × the length.
fn boundary(text: &str, at: f64) -> usize {
    let mut i = ((text.len() as f64) * at) as usize;
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i.min(text.len())
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_owned();
    for e in edits {
        match e {
            Edit::Delete { at, len } => {
                let start = boundary(&text, *at);
                let mut end = (start + len).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(start..end, "");
            }
            Edit::Insert { at, text: t } => {
                let i = boundary(&text, *at);
                text.insert_str(i, t);
            }
            Edit::DuplicateLine { at } | Edit::DropLine { at } => {
                let mut lines: Vec<&str> = text.split('\n').collect();
                let i = ((lines.len() as f64) * at) as usize % lines.len();
                let line = lines[i].to_owned();
                if matches!(e, Edit::DropLine { .. }) {
                    lines.remove(i);
                    text = lines.join("\n");
                } else {
                    lines.insert(i, &line);
                    text = lines.join("\n");
                }
            }
            Edit::Replace { at, with } => {
                let i = boundary(&text, *at);
                if let Some(c) = text[i..].chars().next() {
                    text.replace_range(i..i + c.len_utf8(), &with.to_string());
                }
            }
        }
    }
    text
}

fn journey_text() -> impl Strategy<Value = (usize, Vec<Edit>)> {
    (0..fediprobe::spec::bundled::BUNDLED.len(), prop::collection::vec(edit(), 1..6))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_as_a_journey_gives_diagnostics_not_a_panic(text in any::<String>()) {
        let path = Path::new("fuzz/journey.yaml");
        let (_, diagnostics) = parse_journey_str(path, &text);
        check_diagnostics(path, &text, &diagnostics);
    }

    #[test]
    fn mutated_bundled_journeys_give_diagnostics_not_a_panic((index, edits) in journey_text()) {
        let (name, original) = fediprobe::spec::bundled::BUNDLED[index];
        let text = apply(original, &edits);
        let path = Path::new(name);
        let (journey, diagnostics) = parse_journey_str(path, &text);
        check_diagnostics(path, &text, &diagnostics);
        prop_assert!(journey.is_some() || diagnostics.has_errors(), "no journey and no error for:\n{text}");
    }

    #[test]
    fn any_text_as_a_config_gives_diagnostics_not_a_panic(text in any::<String>()) {
        let path = Path::new("fuzz/fediprobe.yaml");
        let (_, diagnostics) = parse_config_str(path, &text);
        check_diagnostics(path, &text, &diagnostics);
    }

    #[test]
    fn a_mutated_example_config_gives_diagnostics_not_a_panic(edits in prop::collection::vec(edit(), 1..6)) {
        let text = apply(EXAMPLE_CONFIG, &edits);
        let path = Path::new("examples/fediprobe.yaml");
        let (config, diagnostics) = parse_config_str(path, &text);
        check_diagnostics(path, &text, &diagnostics);
        prop_assert!(config.is_some() || diagnostics.has_errors(), "no config and no error for:\n{text}");
    }

    #[test]
    fn any_streaming_frame_is_parsed_or_ignored_without_a_panic(text in any::<String>()) {
        if let Some((_, payload)) = fediprobe::runner::stream::parse_frame(&text) {
            let _ = fediprobe::runner::stream::payload_response(&payload);
        }
    }

    #[test]
    fn mutated_streaming_frames_are_parsed_or_ignored_without_a_panic(
        event in prop_oneof![Just("update".to_owned()), any::<String>()],
        payload in prop_oneof![
            Just(serde_json::json!({"id": "1", "uri": "https://x/1", "content": "<p>hi</p>"}).to_string()),
            any::<String>(),
        ],
        edits in prop::collection::vec(edit(), 0..4),
    ) {
        let frame = serde_json::json!({ "stream": ["user"], "event": event, "payload": payload }).to_string();
        let text = apply(&frame, &edits);
        if let Some((_, payload)) = fediprobe::runner::stream::parse_frame(&text) {
            let response = fediprobe::runner::stream::payload_response(&payload);
            let _ = fediprobe::runner::check::Body::new(&response).json();
        }
    }
}
