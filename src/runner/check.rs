//! Checking a response against a step's expectations, and capturing values from it.

use serde_json::Value as Json;

use crate::spec::journey::{Capture, CaptureSource, Expect, JsonAssert, JsonType, Predicate};
use crate::spec::template::Var;

use super::http::Response;
use super::result::{AssertionFailure, Reason, StepError};

/// How many characters of an actual value an error shows.
const SHOWN_CHARS: usize = 200;

/// How many bytes of a body that is not JSON an error shows.
const SHOWN_BODY_BYTES: usize = 80;

/// Why a response's status was not what the step expected, and whose fault that is.
///
/// The probe's own problem only when the server itself says so:
/// - 429 is the probe's schedule (`rate_limited`) only when the server's own limiter
///   sent it: Mastodon's and GoToSocial's carry `X-RateLimit-*` headers, Pleroma's and
///   Akkoma's answer `{"error":"Throttled"}`. A bare 429 comes from a CDN, WAF or proxy
///   in front of the instance, which the instance's users hit too (`proxy_rate_limited`).
/// - 401 on a request that carried the token is the token's (`unauthorized`); so is a
///   403 when it carries the server's JSON error (`{"error":"…"}`: a missing scope).
///   A 403 that is not the server's JSON (an HTML page from a WAF or proxy) is the
///   instance's (`proxy_forbidden`).
pub fn status_error(expect: &Expect, response: &Response, sent_token: bool, what: &str) -> Option<StepError> {
    let status = response.status;
    let accepted =
        if expect.status.is_empty() { (200..300).contains(&status) } else { expect.status.contains(&status) };
    if accepted {
        return None;
    }
    let server_error = server_error_message(response);
    let mastodon_error = server_error.as_deref().map(|e| format!(" ({})", shorten(e))).unwrap_or_default();
    let expected = if expect.status.is_empty() {
        "2xx".to_owned()
    } else {
        expect.status.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ")
    };
    let reason = match status {
        429 if from_servers_own_limiter(response, server_error.as_deref()) => Reason::RateLimited,
        429 => Reason::ProxyRateLimited,
        401 if sent_token => Reason::Unauthorized,
        403 if server_error.is_none() => Reason::ProxyForbidden,
        403 if sent_token => Reason::Unauthorized,
        _ => Reason::HttpStatus,
    };
    let hint = match reason {
        Reason::RateLimited => {
            let reset =
                header(response, "x-ratelimit-reset").map(|r| format!(", limit resets at {r}")).unwrap_or_default();
            format!("; the probe's schedule exceeds the instance's rate limit{reset}")
        }
        Reason::ProxyRateLimited => "; without the server's rate-limit headers or body: a CDN, WAF or proxy in \
             front of the instance refused the request, as it would a user's"
            .to_owned(),
        Reason::ProxyForbidden => "; not the server's JSON error: a CDN, WAF or proxy in front of the instance \
             refused the request, as it would a user's"
            .to_owned(),
        Reason::Unauthorized => "; the probe account's token was refused: check it and its scopes".to_owned(),
        _ => String::new(),
    };
    let mut error =
        StepError::new(reason, format!("{what}: status {status}{mastodon_error}, expected {expected}{hint}"));
    error.assertion = Some(AssertionFailure { assertion: "status".into(), expected, actual: status.to_string() });
    Some(error)
}

/// The `error` of the server's own JSON error body (`{"error":"…"}`: Mastodon,
/// GoToSocial, Pleroma and Akkoma all answer so); `None` for anything else (an
/// HTML page, plain text, an empty body).
pub fn server_error_message(response: &Response) -> Option<String> {
    serde_json::from_slice::<Json>(&response.body).ok()?.get("error")?.as_str().map(str::to_owned)
}

/// Whether a 429 came from the server's own rate limiter: Mastodon's (rack-attack)
/// and GoToSocial's send `X-RateLimit-*` headers with it; Pleroma's and Akkoma's
/// answer `{"error":"Throttled"}`.
fn from_servers_own_limiter(response: &Response, server_error: Option<&str>) -> bool {
    let limiter_header = ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]
        .iter()
        .any(|h| response.headers.contains_key(*h));
    limiter_header || server_error == Some("Throttled")
}

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The body as JSON, parsed once per response and only when something needs it.
pub struct Body<'r> {
    response: &'r Response,
    parsed: Option<Result<Json, String>>,
}

impl<'r> Body<'r> {
    pub fn new(response: &'r Response) -> Self {
        Body { response, parsed: None }
    }

    pub fn json(&mut self) -> Result<&Json, StepError> {
        let response = self.response;
        let parsed = self.parsed.get_or_insert_with(|| {
            serde_json::from_slice(&response.body).map_err(|e| {
                let start = crate::secret::start_of(&response.body, SHOWN_BODY_BYTES);
                format!("the response is not JSON ({e}); it starts with {start:?}")
            })
        });
        parsed.as_ref().map_err(|m| StepError::new(Reason::InvalidJson, m.clone()))
    }
}

/// Checks headers and JSON assertions, in the order written; the first that fails is the error.
pub fn check_expect(
    expect: &Expect,
    response: &Response,
    body: &mut Body<'_>,
    lookup: &mut impl FnMut(&Var) -> Result<String, StepError>,
) -> Result<(), StepError> {
    for h in &expect.headers {
        let values: Vec<Json> = response
            .headers
            .get_all(h.name.as_str())
            .iter()
            .map(|v| Json::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let label = format!("header {}", h.name);
        evaluate(&label, false, &h.predicate, &values, lookup)?;
    }
    for a in &expect.json {
        check_json(a, body, lookup)?;
    }
    Ok(())
}

fn check_json(
    a: &JsonAssert,
    body: &mut Body<'_>,
    lookup: &mut impl FnMut(&Var) -> Result<String, StepError>,
) -> Result<(), StepError> {
    let json = body.json()?;
    let values: Vec<Json> = a.path.query(json).all().into_iter().cloned().collect();
    evaluate(&a.path_text, a.every, &a.predicate, &values, lookup)
}

fn evaluate(
    label: &str,
    every: bool,
    predicate: &Predicate,
    values: &[Json],
    lookup: &mut impl FnMut(&Var) -> Result<String, StepError>,
) -> Result<(), StepError> {
    let (name, expected): (&str, Json) = match predicate {
        Predicate::Equals(t) => ("equals", t.render(lookup)?),
        Predicate::NotEquals(t) => ("not_equals", t.render(lookup)?),
        Predicate::Contains(t) => ("contains", Json::String(t.render(&mut *lookup)?)),
        Predicate::Matches(r) => ("matches", Json::String(r.as_str().to_owned())),
        Predicate::Exists(b) => ("exists", Json::Bool(*b)),
        Predicate::Type(t) => ("type", Json::String(t.name().to_owned())),
        Predicate::MinLength(n) => ("min_length", Json::from(*n)),
        Predicate::Count(n) => ("count", Json::from(*n)),
    };
    let passed = match predicate {
        Predicate::Exists(b) => values.is_empty() != *b,
        Predicate::Count(n) => values.len() == *n,
        Predicate::NotEquals(_) => !values.iter().any(|v| same(v, &expected)),
        _ => {
            let test = |v: &Json| test_value(predicate, &expected, v);
            if every { values.iter().all(test) } else { !values.is_empty() && values.iter().any(test) }
        }
    };
    if passed {
        return Ok(());
    }
    let actual = match values {
        [] => "nothing".to_owned(),
        [one] => shorten(&one.to_string()),
        many => match predicate {
            Predicate::Count(_) => format!("{} values", many.len()),
            _ => shorten(&Json::Array(many.to_vec()).to_string()),
        },
    };
    let expected_text = match &expected {
        Json::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    let assertion = format!("{label} {}{name} {expected_text}", if every { "every " } else { "" });
    Err(StepError {
        reason: Reason::Assertion,
        message: format!("{assertion}: found {actual}"),
        assertion: Some(AssertionFailure { assertion, expected: expected_text, actual }),
    })
}

fn test_value(predicate: &Predicate, expected: &Json, actual: &Json) -> bool {
    match predicate {
        Predicate::Equals(_) => same(actual, expected),
        Predicate::Contains(_) => {
            let needle = expected.as_str().unwrap_or_default();
            match actual {
                Json::String(s) => s.contains(needle),
                Json::Array(items) => items.iter().any(|i| same(i, expected)),
                _ => false,
            }
        }
        Predicate::Matches(r) => actual.as_str().is_some_and(|s| r.is_match(s)),
        Predicate::Type(t) => JsonType::of(actual) == *t,
        Predicate::MinLength(n) => match actual {
            Json::String(s) => s.chars().count() >= *n,
            Json::Array(a) => a.len() >= *n,
            Json::Object(o) => o.len() >= *n,
            _ => false,
        },
        Predicate::Exists(_) | Predicate::Count(_) | Predicate::NotEquals(_) => {
            unreachable!("decided on the whole match")
        }
    }
}

/// JSON equality, except that a string expectation matches a number or boolean
/// written the same way (YAML `equals: "5"` against a JSON `5`).
fn same(actual: &Json, expected: &Json) -> bool {
    match (actual, expected) {
        (Json::Number(a), Json::String(e)) => a.to_string() == *e,
        (Json::Bool(a), Json::String(e)) => a.to_string() == *e,
        (Json::Number(a), Json::Number(e)) => a.as_f64() == e.as_f64(),
        _ => actual == expected,
    }
}

/// Runs a step's captures; a capture that finds nothing fails the step, unless
/// it is `optional` (then it is left out). A JSONPath capture takes the first
/// matched value that is not null, so a union such as
/// `$['account_domain','domain']` reads the first field the server sends.
pub fn capture(
    captures: &[Capture],
    response: &Response,
    body: &mut Body<'_>,
) -> Result<Vec<(String, String)>, StepError> {
    let mut out = Vec::new();
    for c in captures {
        let value = match &c.source {
            CaptureSource::Json { text, path } => {
                let json = body.json()?;
                match path.query(json).all().into_iter().find(|v| !v.is_null()) {
                    Some(Json::String(s)) => s.clone(),
                    None if c.optional => continue,
                    None => {
                        return Err(StepError::new(
                            Reason::Assertion,
                            format!("capture `{}`: `{text}` matched nothing", c.name),
                        ));
                    }
                    Some(other) => other.to_string(),
                }
            }
            CaptureSource::Header(name) => match header(response, name) {
                Some(v) => v.to_owned(),
                None if c.optional => continue,
                None => {
                    return Err(StepError::new(Reason::Assertion, format!("capture `{}`: no `{name}` header", c.name)));
                }
            },
        };
        out.push((c.name.clone(), value));
    }
    Ok(out)
}

/// A value as an error shows it: scrubbed of secrets, then cut (in that order,
/// see [`crate::secret::shorten`]).
fn shorten(text: &str) -> String {
    crate::secret::shorten(text, SHOWN_CHARS)
}
