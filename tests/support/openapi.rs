//! The vendored Mastodon OpenAPI document (`tests/vendor/mastodon-openapi/`) and
//! validators for the JSON answer schemas it gives per path, method and status.
#![allow(dead_code)] // Each test binary uses a different part of the helper.

use std::path::PathBuf;
use std::sync::OnceLock;

use jsonschema::{Draft, Validator};
use serde_json::Value;

pub fn openapi_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vendor/mastodon-openapi/openapi.json")
}

pub fn openapi() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = openapi_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the Mastodon OpenAPI document is needed for these tests; looked for it at {} ({e}). \
                 It is vendored in the repository; restore it with `git checkout tests/vendor`.",
                path.display()
            )
        });
        serde_json::from_str(&text).expect("openapi.json is JSON")
    })
}

/// A validator for the JSON response schema of `path`/`method`/`status`: the whole
/// document with its root `$ref` pointing at that schema, so `$ref`s into
/// `#/components/schemas` resolve.
pub fn validator(path: &str, method: &str, status: u16) -> Validator {
    let escaped = path.replace('~', "~0").replace('/', "~1");
    let pointer = format!("/paths/{escaped}/{method}/responses/{status}/content/application~1json/schema");
    let mut document = openapi().clone();
    assert!(document.pointer(&pointer).is_some(), "openapi.json has no JSON schema for {method} {path} {status}");
    // In a URI fragment, `{` and `}` must be percent-encoded.
    let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
    document["$ref"] = Value::String(format!("#{fragment}"));
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(&document)
        .unwrap_or_else(|e| panic!("schema for {method} {path} {status} compiles: {e}"))
}

pub fn assert_valid(path: &str, method: &str, status: u16, body: &Value) {
    let validator = validator(path, method, status);
    let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match openapi.json:\n{}\nbody: {body:#}",
        errors.join("\n")
    );
}
