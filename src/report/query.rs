//! The metrics backend's Prometheus HTTP API, as far as the report needs it:
//! instant queries (`/api/v1/query`) and range queries (`/api/v1/query_range`),
//! their answers turned into label sets and numbers.
//!
//! Works with VictoriaMetrics (single node, or vmselect with its
//! `/select/<tenant>/prometheus` prefix) and Prometheus: the base URL may carry a
//! path prefix, and `user:password@` in it becomes basic authentication. The URL
//! shown in messages never includes the credentials or a query string.

use std::collections::BTreeMap;
use std::time::Duration;

use url::Url;

use super::ReportError;

/// A series' labels (without `__name__` when the query aggregated it away).
pub type Labels = BTreeMap<String, String>;

/// One series of an instant query: labels and the value at the query's time.
pub type InstantSeries = (Labels, f64);

/// One series of a range query: labels and `(unix seconds, value)` points.
pub type RangeSeries = (Labels, Vec<(i64, f64)>);

/// The most points per series one range query asks for: Prometheus refuses
/// more than 11,000 and VictoriaMetrics 30,000 by default, so longer ranges are
/// asked in several parts.
pub const MAX_POINTS_PER_QUERY: i64 = 10_000;

/// How long one query may take before the backend counts as unreachable.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A Prometheus-compatible query API.
pub struct Backend {
    client: reqwest::Client,
    /// The base URL without credentials, query or fragment.
    base: Url,
    basic_auth: Option<(String, Option<String>)>,
}

impl Backend {
    /// A client for the API under `url` (e.g. `http://victoria-metrics:8428`).
    pub fn new(url: &Url) -> Result<Backend, ReportError> {
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(ReportError::BadUrl { reason: format!("`{}` is not an http(s) URL", redact(url)) });
        }
        let mut base = url.clone();
        let basic_auth = (!url.username().is_empty()).then(|| {
            let decode = |s: &str| percent_decode(s);
            (decode(url.username()), url.password().map(decode))
        });
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_query(None);
        base.set_fragment(None);
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("fediprobe-report/", env!("CARGO_PKG_VERSION")))
            .timeout(QUERY_TIMEOUT)
            .build()
            .map_err(|e| ReportError::BadUrl {
                reason: format!("cannot set up the HTTP client: {}", e.without_url()),
            })?;
        Ok(Backend { client, base, basic_auth })
    }

    /// The base URL as shown to people: no credentials, no query.
    pub fn display_url(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    /// `query` evaluated at `time` (unix seconds).
    pub async fn instant(&self, query: &str, time: i64) -> Result<Vec<InstantSeries>, ReportError> {
        let data = self.get("/api/v1/query", query, &[("time", time.to_string())]).await?;
        let result = data.get("result").and_then(|r| r.as_array()).ok_or_else(|| self.malformed("no `result`"))?;
        let mut out = Vec::new();
        for item in result {
            let labels = labels(item);
            let value = item.get("value").and_then(point).ok_or_else(|| self.malformed("a sample without `value`"))?;
            if value.1.is_finite() {
                out.push((labels, value.1));
            }
        }
        Ok(out)
    }

    /// `query` evaluated every `step` seconds from `start` to `end` (unix
    /// seconds, both included), asked in parts of at most
    /// [`MAX_POINTS_PER_QUERY`] points and joined per series.
    pub async fn range(&self, query: &str, start: i64, end: i64, step: i64) -> Result<Vec<RangeSeries>, ReportError> {
        let mut series: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        let mut part_start = start;
        while part_start <= end {
            let part_end = end.min(part_start + (MAX_POINTS_PER_QUERY - 1) * step);
            let params = [
                ("start", part_start.to_string()),
                ("end", part_end.to_string()),
                ("step", step.to_string()),
                // VictoriaMetrics otherwise shifts the points of answers with more
                // than 50 of them to align them for its cache.
                ("nocache", "1".to_owned()),
            ];
            let data = self.get("/api/v1/query_range", query, &params).await?;
            let result = data.get("result").and_then(|r| r.as_array()).ok_or_else(|| self.malformed("no `result`"))?;
            for item in result {
                let values =
                    item.get("values").and_then(|v| v.as_array()).ok_or_else(|| self.malformed("no `values`"))?;
                let points = series.entry(labels(item)).or_default();
                for v in values {
                    let p = point(v).ok_or_else(|| self.malformed("a point that is not [time, \"value\"]"))?;
                    if p.1.is_finite() {
                        points.push(p);
                    }
                }
            }
            part_start = part_end + step;
        }
        Ok(series.into_iter().collect())
    }

    /// One GET of an API endpoint; the `data` object of a successful answer.
    async fn get(
        &self,
        endpoint: &str,
        query: &str,
        params: &[(&str, String)],
    ) -> Result<serde_json::Value, ReportError> {
        let mut url = self.base.clone();
        let path = format!("{}{endpoint}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("query", query);
            for (k, v) in params {
                pairs.append_pair(k, v);
            }
        }
        let mut request = self.client.get(url);
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, password.as_ref());
        }
        let response = request
            .send()
            .await
            .map_err(|e| ReportError::Unreachable { url: self.display_url(), reason: describe(&e) })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| ReportError::Unreachable {
            url: self.display_url(),
            reason: format!("the answer broke off: {}", describe(&e)),
        })?;
        let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();
        if !status.is_success() {
            let message = json
                .as_ref()
                .and_then(|j| j.get("error"))
                .and_then(|e| e.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| first_line(&body));
            return Err(ReportError::Rejected {
                url: self.display_url(),
                status: status.as_u16(),
                query: query.to_owned(),
                message,
            });
        }
        let json = json.ok_or_else(|| self.malformed("the answer is not JSON"))?;
        if json.get("status").and_then(|s| s.as_str()) != Some("success") {
            return Err(self.malformed("`status` is not `success`"));
        }
        json.get("data").cloned().ok_or_else(|| self.malformed("no `data`"))
    }

    fn malformed(&self, reason: &str) -> ReportError {
        ReportError::Malformed { url: self.display_url(), reason: reason.to_owned() }
    }
}

/// `url` without credentials or query, for messages.
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.as_str().trim_end_matches('/').to_owned()
}

fn labels(item: &serde_json::Value) -> Labels {
    item.get("metric")
        .and_then(|m| m.as_object())
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

/// `[1700000000, "0.5"]` (the time may carry a fraction; the value is a string).
fn point(value: &serde_json::Value) -> Option<(i64, f64)> {
    let pair = value.as_array()?;
    let time = pair.first()?.as_f64()?;
    let number = pair.get(1)?.as_str()?.parse::<f64>().ok()?;
    Some((time.round() as i64, number))
}

/// The error and its causes in one line, without the URL (reqwest's message
/// would repeat it, credentials included).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        format!("no answer within {}", humantime::format_duration(QUERY_TIMEOUT))
    } else {
        String::new()
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        source = cause.source();
    }
    if text.is_empty() { "the request failed".to_owned() } else { text }
}

fn first_line(body: &str) -> String {
    let line = body.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    line.chars().take(200).collect()
}

fn percent_decode(text: &str) -> String {
    // `+` is a literal plus in a URL's user info, not a space as in a form.
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_in_the_displayed_url() {
        let url: Url = "https://reader:s3cret@vm.example:8428/select/0/prometheus/?x=1".parse().unwrap();
        assert_eq!(redact(&url), "https://vm.example:8428/select/0/prometheus");
        let backend = Backend::new(&url).unwrap();
        assert_eq!(backend.display_url(), "https://vm.example:8428/select/0/prometheus");
        assert_eq!(backend.basic_auth, Some(("reader".to_owned(), Some("s3cret".to_owned()))));
    }

    #[test]
    fn points_parse_from_the_api_shape() {
        assert_eq!(point(&serde_json::json!([1700000000.5, "0.25"])), Some((1700000001, 0.25)));
        assert_eq!(point(&serde_json::json!([1700000000, 3])), None);
    }
}
