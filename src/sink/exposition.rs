//! The `/metrics` sink: a cumulative view of the per-run samples, for scrapers
//! (a PodMonitor or VMPodScrape on the long-running agent).
//!
//! Like every sink it knows nothing about journeys. It turns each per-run sample
//! into cumulative series by one rule, so that adding a series to the metric
//! contract needs no change here:
//!
//! - a sample whose name ends in `_seconds` is observed into a histogram of the
//!   same name and labels (buckets from 5 ms to about 40 s);
//! - any other sample is added to a counter named `<name>_total` with the same
//!   labels (so `fediprobe_journey_outcome` becomes runs per outcome and reason,
//!   and `fediprobe_journey_success` the number of successful runs).
//!
//! Values known only at scrape time (the sink's queue, the scheduler's slots) are
//! set with [`Exposition::set_gauge`] and [`Exposition::set_counter`] just before
//! encoding. The lock is a plain mutex held only while updating or encoding,
//! never across an await.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::Sample;

type Labels = Vec<(String, String)>;
type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn new_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

#[derive(Default)]
struct Inner {
    registry: Registry,
    counters: HashMap<String, Family<Labels, FloatCounter>>,
    gauges: HashMap<String, Family<Labels, FloatGauge>>,
    histograms: HashMap<String, HistogramFamily>,
}

/// A registry of cumulative metrics, fed with samples and encoded for scrapers.
#[derive(Default)]
pub struct Exposition {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exposition")
    }
}

/// Splits a sample's labels into its name and the rest.
fn split(sample: &Sample) -> Option<(&str, Labels)> {
    let name = sample.name()?;
    let labels = sample.labels.iter().filter(|(k, _)| k != "__name__").cloned().collect();
    Some((name, labels))
}

impl Inner {
    fn counter(&mut self, name: &str, help: &str) -> Family<Labels, FloatCounter> {
        if let Some(f) = self.counters.get(name) {
            return f.clone();
        }
        let family = Family::<Labels, FloatCounter>::default();
        // prometheus-client appends `_total` to counters itself.
        self.registry.register(name.trim_end_matches("_total"), help, family.clone());
        self.counters.insert(name.to_owned(), family.clone());
        family
    }

    fn gauge(&mut self, name: &str, help: &str) -> Family<Labels, FloatGauge> {
        if let Some(f) = self.gauges.get(name) {
            return f.clone();
        }
        let family = Family::<Labels, FloatGauge>::default();
        self.registry.register(name, help, family.clone());
        self.gauges.insert(name.to_owned(), family.clone());
        family
    }

    fn histogram(&mut self, name: &str) -> HistogramFamily {
        if let Some(f) = self.histograms.get(name) {
            return f.clone();
        }
        let family =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(new_histogram as fn() -> Histogram);
        let help = format!("Distribution of the per-run series {name} since the agent started (see docs/metrics.md)");
        self.registry.register(name, help, family.clone());
        self.histograms.insert(name.to_owned(), family.clone());
        family
    }
}

impl Exposition {
    pub fn new() -> Self {
        Exposition::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds one batch of per-run samples to the cumulative metrics.
    pub fn observe(&self, samples: &[Sample]) {
        let mut inner = self.lock();
        for sample in samples {
            let Some((name, labels)) = split(sample) else { continue };
            if name.ends_with("_seconds") {
                inner.histogram(name).get_or_create(&labels).observe(sample.value);
            } else {
                let counter_name = format!("{name}_total");
                let help = format!("Sum of the per-run series {name} since the agent started (see docs/metrics.md)");
                inner.counter(&counter_name, &help).get_or_create(&labels).inc_by(sample.value);
            }
        }
    }

    /// Sets a gauge, registering it on first use.
    pub fn set_gauge(&self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.lock().gauge(name, help).get_or_create(&labels).set(value);
    }

    /// Brings a counter up to `total` (a count kept elsewhere, e.g. in an atomic);
    /// counters never go down, so a smaller `total` is ignored. `name` ends in `_total`.
    pub fn set_counter(&self, name: &str, help: &str, labels: &[(&str, &str)], total: f64) {
        let labels: Labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut inner = self.lock();
        let family = inner.counter(name, help);
        let counter = family.get_or_create(&labels);
        let current = counter.get();
        if total > current {
            counter.inc_by(total - current);
        }
    }

    /// The metrics in the Prometheus text format (OpenMetrics flavour).
    pub fn encode(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        if encode(&mut out, &inner.registry).is_err() {
            tracing::error!("cannot encode /metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_run_samples_become_counters_and_histograms() {
        let exposition = Exposition::new();
        let labels = [("journey", "home"), ("region", "eu")];
        for _ in 0..3 {
            exposition.observe(&[
                Sample::new("fediprobe_journey_success", labels, 1.0, 0),
                Sample::new("fediprobe_journey_duration_seconds", labels, 0.02, 0),
            ]);
        }
        exposition.set_counter("fediprobe_x_total", "x", &[("journey", "home")], 5.0);
        exposition.set_counter("fediprobe_x_total", "x", &[("journey", "home")], 4.0);
        exposition.set_gauge("fediprobe_queue_samples", "q", &[], 7.0);
        let text = exposition.encode();
        assert!(text.contains("fediprobe_journey_success_total{journey=\"home\",region=\"eu\"} 3.0"), "{text}");
        assert!(text.contains("fediprobe_journey_duration_seconds_count{journey=\"home\",region=\"eu\"} 3"), "{text}");
        assert!(text.contains("fediprobe_x_total{journey=\"home\"} 5.0"), "{text}");
        assert!(text.contains("fediprobe_queue_samples{} 7.0"), "{text}");
    }
}
