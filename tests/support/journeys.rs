//! Journeys for tests: parsed from text written in the test, or taken from the
//! bundled ones. A journey that does not parse fails the test with its diagnostics.

#![allow(dead_code)] // Each test binary uses a different part of the helper.

use std::path::Path;

use fediprobe::spec::{Journey, bundled, parse_journey_str};

/// The journey in `text`, read as if from a file named `file`.
pub fn parse_as(file: &str, text: &str) -> Journey {
    let (journey, diagnostics) = parse_journey_str(Path::new(file), text);
    journey.unwrap_or_else(|| panic!("{diagnostics}"))
}

/// The journey in `text`.
pub fn parse(text: &str) -> Journey {
    parse_as("test.yaml", text)
}

/// A journey named `name` against the instance `main`, run every minute with a
/// 99% availability objective, whose steps (and anything else) are `body`.
pub fn with_steps(name: &str, body: &str) -> Journey {
    parse(&format!("name: {name}\ninstance: main\nschedule: '* * * * *'\nslo: {{ availability: 99% }}\n{body}"))
}

/// The bundled journey `name`.
pub fn bundled(name: &str) -> Journey {
    bundled::journeys()
        .unwrap_or_else(|d| panic!("{d}"))
        .into_iter()
        .find(|j| j.name == name)
        .unwrap_or_else(|| panic!("no bundled journey {name}"))
}

/// The bundled journey whose file name contains `file`, with its text edited by
/// `edit` first (e.g. a shorter `within:`).
pub fn bundled_edited(file: &str, edit: impl FnOnce(&str) -> String) -> Journey {
    let (path, text) = bundled::BUNDLED
        .iter()
        .find(|(p, _)| p.contains(file))
        .unwrap_or_else(|| panic!("no bundled journey file {file}"));
    parse_as(path, &edit(text))
}
