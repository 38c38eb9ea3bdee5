//! Delivering a command's samples: builds the remote-write sink from the config
//! (or `--remote-write-url`), pushes, and flushes before the command exits.

use std::time::Duration;

use crate::runner::RunResult;
use crate::runner::target::read_secret;
use crate::sink::remote_write::{Auth, RemoteWriteOptions, Sink};
use crate::spec::config::{DEFAULT_FLUSH_TIMEOUT, RemoteWriteAuth, RemoteWriteConfig};

/// Exit status when samples were lost (neither delivered nor spooled).
pub const EXIT_SAMPLES_LOST: u8 = 3;

/// A sink ready for one command, and how long its final flush may take.
pub struct Push {
    sink: Sink,
    flush_timeout: Duration,
    region: String,
}

impl Push {
    /// The sink for `config` with `url_override` applied; `Ok(None)` when there is
    /// nowhere to push. Errors are for people (unreadable password, bad header).
    pub fn new(
        config: Option<&RemoteWriteConfig>,
        url_override: Option<&url::Url>,
        region: &str,
    ) -> Result<Option<Push>, String> {
        let url = match (url_override, config) {
            (Some(u), _) => u.clone(),
            (None, Some(c)) => c.url.clone(),
            (None, None) => return Ok(None),
        };
        let mut options = RemoteWriteOptions::new(url);
        let mut flush_timeout = DEFAULT_FLUSH_TIMEOUT;
        if let Some(c) = config {
            options.auth = match &c.auth {
                None => None,
                Some(RemoteWriteAuth::Bearer(source)) => {
                    Some(Auth::Bearer(read_secret(source).map_err(|e| format!("remote-write bearer token: {e}"))?))
                }
                Some(RemoteWriteAuth::Basic { username, password }) => Some(Auth::Basic {
                    username: username.clone(),
                    password: read_secret(password).map_err(|e| format!("remote-write password: {e}"))?,
                }),
            };
            options.headers = c.headers.clone();
            options.timeout = c.timeout;
            options.spool_dir = c.spool_dir.clone();
            options.spool_max_bytes = c.spool_max_bytes;
            options.queue_capacity_samples = c.queue_capacity;
            flush_timeout = c.flush_timeout;
        }
        let sink = Sink::new(options).map_err(|e| format!("remote write: {e}"))?;
        Ok(Some(Push { sink, flush_timeout, region: region.to_owned() }))
    }

    pub async fn push(&self, results: &[RunResult]) {
        let samples = results.iter().flat_map(|r| crate::metrics::samples_for_run(r, &self.region)).collect();
        self.sink.push(samples).await;
    }

    /// Flushes, reports on stderr, and says whether anything was lost.
    pub async fn finish(self) -> bool {
        let report = self.sink.flush(self.flush_timeout).await;
        let lost = report.dropped + report.rejected;
        if report.spooled > 0 {
            eprintln!(
                "remote write: {} samples delivered, {} waiting in the spool for the next run",
                report.delivered, report.spooled
            );
        } else {
            tracing::info!(delivered = report.delivered, "remote write: samples delivered");
        }
        if lost > 0 {
            eprintln!(
                "error: remote write: {lost} samples lost ({} dropped, {} refused by the receiver)",
                report.dropped, report.rejected
            );
        }
        lost == 0
    }
}
