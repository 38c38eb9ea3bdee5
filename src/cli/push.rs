//! Delivering a command's samples: builds the remote-write sink from the config
//! (or `--remote-write-url`), pushes, and flushes before the command exits.

use std::time::Duration;

use crate::runner::RunResult;
use crate::sink::remote_write::Sink;
use crate::spec::config::RemoteWriteConfig;

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
        let Some((options, flush_timeout)) =
            crate::wiring::remote_write_options(config, url_override).map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
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
