//! Metric sinks: where samples go once a run has produced them.
//!
//! This module owns the [`Sample`] type and the sinks that deliver samples to a
//! backend. **A sink knows nothing about journeys**: its input is plain samples
//! (a label set, a value, a millisecond timestamp), so adding a sink never touches
//! the runner and changing a journey never touches a sink.
//!
//! - [`remote_write`]: Prometheus remote-write 1.0 to VictoriaMetrics or any other
//!   receiver, with a bounded queue, retries and an on-disk spool so that an outage
//!   of the backend loses nothing that fits the spool.

pub mod exposition;
pub mod remote_write;

/// One sample of one series, as a run produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels, including `("__name__", metric_name)`. Order does not
    /// matter: the encoder sorts them by name as remote-write requires.
    pub labels: Vec<(String, String)>,
    /// The sample's value.
    pub value: f64,
    /// When the sample was taken, in milliseconds since the Unix epoch. Samples keep
    /// this timestamp through the queue and the spool, so a late delivery still lands
    /// at the time the run happened.
    pub timestamp_ms: i64,
}

impl Sample {
    /// A sample of metric `name` with the given extra labels.
    pub fn new<N, K, V>(name: N, labels: impl IntoIterator<Item = (K, V)>, value: f64, timestamp_ms: i64) -> Self
    where
        N: Into<String>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut all = vec![("__name__".to_owned(), name.into())];
        all.extend(labels.into_iter().map(|(k, v)| (k.into(), v.into())));
        Sample { labels: all, value, timestamp_ms }
    }

    /// The value of the `__name__` label, if there is one.
    pub fn name(&self) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == "__name__").map(|(_, v)| v.as_str())
    }
}
