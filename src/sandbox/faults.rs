//! Fault injection: the knobs a test (or a user of `fediprobe sandbox`) turns to
//! make an instance slow, failing or broken in the ways real servers and proxies
//! are. [`Faults`] holds the rules; the server (`server.rs`) applies them to each
//! request before the API sees it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::Method;

/// One way to break responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long before the handler answers. Several latencies add up.
    Latency(Duration),
    /// Answer with this status instead of calling the API: Mastodon's JSON error
    /// body for statuses Mastodon itself produces (e.g. 503 `{"error":"Remote data
    /// could not be fetched"}`, 500 `{"error":"We're sorry, but something went
    /// wrong on our end."}`, 429 with its `X-RateLimit-*` headers), and a proxy's
    /// plain HTML page for 502 and 504.
    Status(u16),
    /// Answer with this status from something in front of the instance (nginx, a
    /// CDN, a WAF): an HTML page, no JSON, no `X-RateLimit-*` headers; a 503 also
    /// carries `Retry-After` (a maintenance page).
    Proxy(u16),
    /// The real response, but as Mastodon answers a home timeline while it rebuilds
    /// an inactive user's feed: 206 with `Mastodon-Async-Refresh`.
    AsyncRefresh,
    /// 200 with `application/json` and a truncated, invalid JSON body.
    MalformedJson,
    /// The real response, with its body trickled out over `total`.
    SlowBody { total: Duration },
    /// Close the TCP connection without sending any response.
    DropConnection,
    /// Send the headers and part of the body of the real response, then close.
    ResetMidBody,
}

#[derive(Clone, Debug)]
struct Rule {
    method: Option<Method>,
    path_prefix: String,
    fault: Fault,
}

/// The fault rules of one instance. Cloning is cheap and clones share the rules,
/// so a handle's `Faults` changes what its running server does.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    rules: Arc<Mutex<Vec<Rule>>>,
}

impl Faults {
    /// Applies `fault` to requests whose method matches (`None` = any) and whose
    /// path starts with `path_prefix`.
    pub fn inject(&self, method: Option<Method>, path_prefix: &str, fault: Fault) {
        tracing::debug!(?method, path_prefix, ?fault, "sandbox fault injected");
        self.lock().push(Rule { method, path_prefix: path_prefix.to_owned(), fault });
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The faults that apply to a request, in the order they were injected.
    pub(crate) fn matching(&self, method: &Method, path: &str) -> Vec<Fault> {
        self.lock()
            .iter()
            .filter(|rule| rule.method.as_ref().is_none_or(|m| m == method))
            .filter(|rule| path.starts_with(&rule.path_prefix))
            .map(|rule| rule.fault.clone())
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Rule>> {
        // A panic while holding this lock cannot leave the Vec half-updated, so a
        // poisoned lock is still safe to use.
        self.rules.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What the server does with a request, once the matching faults are combined.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub latency: Duration,
    pub drop_connection: bool,
    pub status: Option<u16>,
    pub proxy_status: Option<u16>,
    pub async_refresh: bool,
    pub malformed_json: bool,
    pub slow_body: Option<Duration>,
    pub reset_mid_body: bool,
}

impl Plan {
    pub(crate) fn from_faults(faults: &[Fault]) -> Plan {
        let mut plan = Plan::default();
        for fault in faults {
            match fault {
                Fault::Latency(d) => plan.latency += *d,
                Fault::Status(code) => plan.status = plan.status.or(Some(*code)),
                Fault::Proxy(code) => plan.proxy_status = plan.proxy_status.or(Some(*code)),
                Fault::AsyncRefresh => plan.async_refresh = true,
                Fault::MalformedJson => plan.malformed_json = true,
                Fault::SlowBody { total } => plan.slow_body = Some(*total),
                Fault::DropConnection => plan.drop_connection = true,
                Fault::ResetMidBody => plan.reset_mid_body = true,
            }
        }
        plan
    }
}

/// The body Mastodon (or the proxy in front of it) sends for an injected status.
/// Returns the content type and the body.
pub(crate) fn status_body(code: u16) -> (&'static str, String) {
    let json = |msg: &str| (super::routes::JSON_CONTENT_TYPE, serde_json::json!({ "error": msg }).to_string());
    match code {
        502 | 504 => {
            let reason = if code == 502 { "Bad Gateway" } else { "Gateway Time-out" };
            (
                "text/html",
                format!(
                    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
                ),
            )
        }
        400 => json("Bad request"),
        401 => json("The access token is invalid"),
        403 => json("This action is outside the authorized scopes"),
        404 => json("Record not found"),
        410 => json("Gone"),
        422 => json("Validation failed: Text can't be blank"),
        429 => json("Too many requests"),
        503 => json("Remote data could not be fetched"),
        _ => json("We're sorry, but something went wrong on our end."),
    }
}

/// The page a proxy, CDN or WAF in front of the instance sends for `code`, as
/// nginx words its own error pages. Returns the content type and the body.
pub(crate) fn proxy_body(code: u16) -> (&'static str, String) {
    let reason = http::StatusCode::from_u16(code).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    (
        "text/html",
        format!(
            "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_on_method_and_path_prefix() {
        let faults = Faults::default();
        faults.inject(Some(Method::POST), "/api/v1/statuses", Fault::Status(503));
        faults.inject(None, "/api/v1/timelines", Fault::Latency(Duration::from_millis(5)));
        faults.inject(None, "/api/v1/timelines", Fault::Latency(Duration::from_millis(7)));
        assert_eq!(faults.matching(&Method::GET, "/api/v1/statuses/1"), vec![]);
        assert_eq!(faults.matching(&Method::POST, "/api/v1/statuses"), vec![Fault::Status(503)]);
        let plan = Plan::from_faults(&faults.matching(&Method::GET, "/api/v1/timelines/home"));
        assert_eq!(plan.latency, Duration::from_millis(12));
        faults.clear();
        assert!(faults.matching(&Method::POST, "/api/v1/statuses").is_empty());
    }
}
