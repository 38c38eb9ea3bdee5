//! The HTTP side of remote-write: one POST of one encoded batch, with the four
//! headers remote-write 1.0 requires, and the classification of what came back.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::SinkError;
use super::config::{Auth, RemoteWriteOptions};
use super::retry::{Disposition, RetryPolicy};

/// Longest piece of a rejecting response's body that is logged.
const MAX_LOGGED_BODY_CHARS: usize = 200;

/// The headers every push carries (remote-write 1.0), apart from `User-Agent`.
const PROTOCOL_HEADERS: [(&str, &str); 3] = [
    ("content-encoding", "snappy"),
    ("content-type", "application/x-protobuf"),
    ("x-prometheus-remote-write-version", "0.1.0"),
];

/// What one attempt gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx.
    Accepted,
    /// Worth retrying; `reason` is for the log (never holds a secret).
    Retry {
        /// The receiver's `Retry-After`, if given and honoured.
        retry_after: Option<Duration>,
        /// What went wrong, e.g. `status 503` or `connection error`.
        reason: String,
    },
    /// Never retry this batch.
    Rejected {
        /// The status.
        status: u16,
        /// The first line of the body, at most 200 characters.
        body_line: String,
    },
}

/// Sends encoded batches to one receiver.
#[derive(Debug)]
pub struct Service {
    client: reqwest::Client,
    url: url::Url,
    auth: Option<Auth>,
    headers: HeaderMap,
    policy: RetryPolicy,
}

impl Service {
    /// Checks the options and builds the HTTP client.
    pub fn new(options: &RemoteWriteOptions) -> Result<Service, SinkError> {
        let url = &options.url;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SinkError::InvalidUrl(format!("scheme `{}` is not http or https", url.scheme())));
        }
        if url.password().is_some() || !url.username().is_empty() {
            return Err(SinkError::InvalidUrl(
                "the URL carries credentials; put them in the auth options instead".to_owned(),
            ));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &options.headers {
            let header_name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| SinkError::InvalidHeader { name: name.clone() })?;
            let reserved = PROTOCOL_HEADERS.iter().any(|(fixed, _)| *fixed == header_name.as_str())
                || header_name == header::USER_AGENT
                || header_name == header::AUTHORIZATION
                || header_name == header::CONTENT_LENGTH;
            if reserved {
                return Err(SinkError::InvalidHeader { name: name.clone() });
            }
            let mut header_value =
                HeaderValue::from_str(value).map_err(|_| SinkError::InvalidHeader { name: name.clone() })?;
            header_value.set_sensitive(true);
            headers.append(header_name, header_value);
        }
        for (name, value) in PROTOCOL_HEADERS {
            headers.insert(name, HeaderValue::from_static(value));
        }
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(crate::USER_AGENT)
            .build()
            .map_err(|error| SinkError::Client(error.without_url().to_string()))?;
        Ok(Service { client, url: url.clone(), auth: options.auth.clone(), headers, policy: options.retry.clone() })
    }

    /// POSTs one encoded batch, giving up on this attempt after `timeout`.
    pub async fn send(&self, body: Bytes, timeout: Duration) -> Attempt {
        let mut request = self.client.post(self.url.clone()).headers(self.headers.clone()).timeout(timeout).body(body);
        request = match &self.auth {
            None => request,
            Some(Auth::Basic { username, password }) => request.basic_auth(username, Some(password.expose())),
            Some(Auth::Bearer(token)) => request.bearer_auth(token.expose()),
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let reason = describe_transport_error(&error);
                return match self.policy.classify_transport_error() {
                    Disposition::Retry { retry_after } => Attempt::Retry { retry_after, reason },
                    Disposition::Accepted | Disposition::Reject => Attempt::Rejected { status: 0, body_line: reason },
                };
            }
        };
        let status = response.status();
        let retry_after =
            response.headers().get(header::RETRY_AFTER).and_then(|value| value.to_str().ok()).map(str::to_owned);
        match self.policy.classify_status(status, retry_after.as_deref(), SystemTime::now()) {
            Disposition::Accepted => Attempt::Accepted,
            Disposition::Retry { retry_after } => {
                Attempt::Retry { retry_after, reason: format!("status {}", status.as_u16()) }
            }
            Disposition::Reject => {
                let body = response.text().await.unwrap_or_default();
                Attempt::Rejected { status: status.as_u16(), body_line: first_line(&body) }
            }
        }
    }
}

/// A transport error described without its URL (which is logged once, elsewhere).
fn describe_transport_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection error"
    } else {
        "transport error"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() { kind.to_owned() } else { format!("{kind}: {detail}") }
}

/// The first line of `body`, at most [`MAX_LOGGED_BODY_CHARS`] characters.
pub fn first_line(body: &str) -> String {
    body.lines().next().unwrap_or_default().chars().take(MAX_LOGGED_BODY_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_is_cut_at_the_newline_and_at_200_chars() {
        assert_eq!(first_line("bad label\nmore"), "bad label");
        assert_eq!(first_line(&"é".repeat(500)).chars().count(), 200);
        assert_eq!(first_line(""), "");
    }

    #[test]
    fn refuses_credentials_in_the_url_and_protocol_headers_as_extras() {
        let with_password = RemoteWriteOptions::new("http://u:hunter2@127.0.0.1:1/w".parse().unwrap());
        let error = Service::new(&with_password).unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");

        let mut options = RemoteWriteOptions::new("http://127.0.0.1:1/w".parse().unwrap());
        options.headers.push(("Content-Encoding".into(), "zstd".into()));
        assert!(matches!(Service::new(&options), Err(SinkError::InvalidHeader { .. })));
    }
}
