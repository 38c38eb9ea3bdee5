//! A real VictoriaMetrics for integration tests: started on a free loopback port
//! with its own temporary data directory, killed when dropped.

#![allow(dead_code)] // Each test binary uses a different part of the helper.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One series as `/api/v1/export` returns it: labels (with `__name__`) and its
/// `(timestamp_ms, value)` samples.
pub type ExportedSeries = (BTreeMap<String, String>, Vec<(i64, f64)>);

/// A running `victoria-metrics` process.
pub struct VictoriaMetrics {
    child: Child,
    address: SocketAddr,
    _data: tempfile::TempDir,
    /// The flags it was started with beyond the defaults, kept across a restart.
    extra_args: Vec<String>,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

impl VictoriaMetrics {
    /// Starts VictoriaMetrics on a free loopback port.
    pub fn start() -> VictoriaMetrics {
        Self::start_on(free_port())
    }

    /// Starts VictoriaMetrics on `port` (on 127.0.0.1) and waits until `/health`
    /// answers.
    pub fn start_on(port: u16) -> VictoriaMetrics {
        Self::start_with(port, &[])
    }

    /// Starts VictoriaMetrics on a free port deduplicating identical samples, as
    /// operators are told to run it: a push the backend stored but answered
    /// after the agent's timeout is sent again (at-least-once), and is then
    /// stored once. A test that counts runs stored against runs logged under
    /// load needs this; one that shows the double store starts it without.
    pub fn start_deduplicating() -> VictoriaMetrics {
        Self::start_with(free_port(), &["-dedup.minScrapeInterval=1ms"])
    }

    /// Starts VictoriaMetrics on `port` with extra command-line flags.
    pub fn start_with(port: u16, extra_args: &[&str]) -> VictoriaMetrics {
        let data = tempfile::tempdir().expect("temporary data directory");
        Self::start_in(data, port, extra_args)
    }

    /// Stops it (a backend outage) and keeps its data, for [`Stopped::start`]:
    /// what it acknowledged is flushed to disk first (a SIGKILL would lose its
    /// last second of accepted rows, which is not the outage under test), then
    /// it gets SIGTERM.
    pub fn stop(mut self) -> Stopped {
        self.force_flush();
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
        let data = tempfile::tempdir().expect("temporary directory");
        let kept = std::mem::replace(&mut self._data, data);
        Stopped { data: kept, port: self.address.port(), extra_args: std::mem::take(&mut self.extra_args) }
    }

    fn start_in(data: tempfile::TempDir, port: u16, extra_args: &[&str]) -> VictoriaMetrics {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", data.path().display()))
            .arg(format!("-httpListenAddr={address}"))
            .arg("-search.latencyOffset=0s")
            .arg("-loggerLevel=ERROR")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| {
                if error.kind() == std::io::ErrorKind::NotFound {
                    panic!(
                        "victoria-metrics not found on PATH: install the Debian package \
                         victoria-metrics (the test command does this)"
                    );
                }
                panic!("cannot start victoria-metrics: {error}");
            });
        let extra_args = extra_args.iter().map(|a| (*a).to_owned()).collect();
        let mut vm = VictoriaMetrics { child, address, _data: data, extra_args };
        let started = Instant::now();
        loop {
            if let Some(status) = vm.child.try_wait().expect("poll victoria-metrics") {
                panic!("victoria-metrics exited at start with {status} (port {port} taken?)");
            }
            if vm.get("/health").is_some_and(|(status, _)| status == 200) {
                return vm;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "victoria-metrics did not become healthy on {address} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:8428`: the datasource and remote
    /// write/read URL for vmalert.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Imports samples in Prometheus text format with millisecond timestamps
    /// (`name{labels} value timestamp_ms` per line), e.g. to backfill a rule test,
    /// and makes them visible to queries.
    pub fn import_prometheus(&self, text: &str) {
        let (status, body) = self.post("/api/v1/import/prometheus", text).expect("import answers");
        assert!(status == 204 || status == 200, "import: {status} {body}");
        self.force_flush();
    }

    /// The remote-write endpoint.
    pub fn write_url(&self) -> url::Url {
        format!("http://{}/api/v1/write", self.address).parse().expect("valid URL")
    }

    /// Makes freshly written samples visible to queries.
    pub fn force_flush(&self) {
        let (status, body) = self.get("/internal/force_flush").expect("force_flush answers");
        assert_eq!(status, 200, "force_flush: {body}");
    }

    /// Every raw sample of the series whose name matches `name_regex`, sorted by
    /// labels, each series' samples in timestamp order.
    pub fn export(&self, name_regex: &str) -> Vec<ExportedSeries> {
        self.force_flush();
        let selector = format!("{{__name__=~\"{name_regex}\"}}");
        let query: String =
            url::form_urlencoded::Serializer::new(String::new()).append_pair("match[]", &selector).finish();
        let (status, body) = self.get(&format!("/api/v1/export?{query}")).expect("export answers");
        assert_eq!(status, 200, "export: {body}");
        let mut series: Vec<ExportedSeries> = body
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let json: serde_json::Value = serde_json::from_str(line).expect("export line is JSON");
                let labels = json["metric"]
                    .as_object()
                    .expect("metric object")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_owned()))
                    .collect();
                let timestamps = json["timestamps"].as_array().expect("timestamps");
                let values = json["values"].as_array().expect("values");
                let mut samples: Vec<(i64, f64)> = timestamps
                    .iter()
                    .zip(values)
                    .map(|(t, v)| (t.as_i64().expect("ms timestamp"), v.as_f64().expect("value")))
                    .collect();
                samples.sort_by_key(|(t, _)| *t);
                (labels, samples)
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        series
    }

    /// Like [`export`](Self::export), once at least `min_samples` samples are
    /// visible (waiting up to 15 s) and two exports a second apart agree, so
    /// that a test counting what was stored sees all of it.
    pub fn export_settled(&self, name_regex: &str, min_samples: usize) -> Vec<ExportedSeries> {
        let mut last = self.export_at_least(name_regex, min_samples);
        for _ in 0..20 {
            std::thread::sleep(Duration::from_secs(1));
            let now = self.export(name_regex);
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }

    /// Like [`export`](Self::export), but waits (up to 15 s) until at least
    /// `min_samples` samples are visible. VictoriaMetrics buffers fresh rows for up
    /// to a second or two, and `/internal/force_flush` does not always make them
    /// searchable at once; a test that knows how many samples it sent waits for
    /// them instead of sleeping a fixed time.
    pub fn export_at_least(&self, name_regex: &str, min_samples: usize) -> Vec<ExportedSeries> {
        let started = Instant::now();
        loop {
            let series = self.export(name_regex);
            let count: usize = series.iter().map(|(_, samples)| samples.len()).sum();
            if count >= min_samples || started.elapsed() > Duration::from_secs(15) {
                return series;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of an instant query that returns at most one series, at `time`
    /// (unix seconds); `None` when it returns none.
    pub fn query_value(&self, query: &str, time: i64) -> Option<f64> {
        let params: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("query", query)
            .append_pair("time", &time.to_string())
            .finish();
        let (status, body) = self.get(&format!("/api/v1/query?{params}")).expect("query answers");
        assert_eq!(status, 200, "query {query}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("query answer is JSON");
        json["data"]["result"][0]["value"][1].as_str().map(|v| v.parse().expect("a number"))
    }

    /// Waits (up to 15 s) until `query` at `time` has the value `expected`, so
    /// that a backfill is fully searchable before a test reads it.
    pub fn wait_for_value(&self, query: &str, time: i64, expected: f64) {
        let started = Instant::now();
        loop {
            let value = self.query_value(query, time);
            if value == Some(expected) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "`{query}` is {value:?}, not {expected}, after 15 s");
            self.force_flush();
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A plain HTTP/1.0 POST of a text body.
    fn post(&self, path: &str, body: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.address, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            stream,
            "POST {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            self.address,
            body.len()
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    }

    /// A plain HTTP/1.0 GET, so that the helper needs no async runtime.
    pub fn get(&self, path_and_query: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.address, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(stream, "GET {path_and_query} HTTP/1.0\r\nHost: {}\r\n\r\n", self.address).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    }
}

/// A VictoriaMetrics that was stopped, its data and flags kept.
pub struct Stopped {
    data: tempfile::TempDir,
    port: u16,
    extra_args: Vec<String>,
}

impl Stopped {
    /// Starts it again on the same port, data and flags (the outage is over).
    pub fn start(self) -> VictoriaMetrics {
        let args: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        VictoriaMetrics::start_in(self.data, self.port, &args)
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
