//! The `/metrics` sink: the agent's own health and a small per-journey summary
//! of the per-run samples, for scrapers (a PodMonitor or VMPodScrape on the
//! long-running agent).
//!
//! **What it is for, and what it is not.** Every run's samples already go to the
//! backend by remote-write, with every step and phase: that is where SLOs,
//! percentiles and "where did the time go" are computed. `/metrics` is what a
//! scraper needs beside it: is the agent alive, scheduling, delivering, and a
//! count of runs per journey and outcome. So its size grows with the journeys,
//! not with journeys × steps × phases × buckets (it was 19 KB a journey; it is
//! about 1 KB now), and a scrape costs little.
//!
//! Like every sink it knows nothing about journeys: the metric contract
//! (`metrics::EXPOSED`) names the per-run series it keeps, and it turns each of
//! them into a cumulative series by one rule:
//!
//! - a sample whose name ends in `_seconds` is observed into a histogram of the
//!   same name and labels **with no bucket but `+Inf`**: `_count` and `_sum`,
//!   enough for a rate and a mean (percentiles come from the per-run samples);
//! - any other sample is added to a counter named `<name>_total` with the same
//!   labels (so `fediprobe_journey_outcome` becomes runs per outcome and reason,
//!   and `fediprobe_journey_success` the number of successful runs).
//!
//! Any other per-run series is left out. Values known only at scrape time (the
//! sink's queue, the scheduler's slots) are set with [`Exposition::set_gauge`]
//! and [`Exposition::set_counter`] just before encoding. The lock is a plain
//! mutex held only while updating or encoding, never across an await.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::Sample;

type Labels = Vec<(String, String)>;
type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// A histogram with the `+Inf` bucket only: a count and a sum.
fn new_histogram() -> Histogram {
    Histogram::new(std::iter::empty())
}

/// Where one kept per-run series goes.
#[derive(Clone)]
enum Cumulative {
    Counter(Family<Labels, FloatCounter>),
    Histogram(HistogramFamily),
}

#[derive(Default)]
struct Inner {
    registry: Registry,
    counters: HashMap<String, Family<Labels, FloatCounter>>,
    gauges: HashMap<String, Family<Labels, FloatGauge>>,
    /// The per-run series kept, by their per-run name.
    per_run: HashMap<&'static str, Cumulative>,
    /// The length of the last encoding, to size the next one.
    last_size: usize,
}

/// A registry of cumulative metrics, fed with samples and encoded for scrapers.
pub struct Exposition {
    /// The per-run series kept; samples of any other series are ignored.
    keeps: &'static [&'static str],
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exposition")
    }
}

/// The sample's labels without its name.
fn labels_of(sample: &Sample) -> Labels {
    sample.labels.iter().filter(|(k, _)| k != "__name__").cloned().collect()
}

impl Inner {
    fn counter(&mut self, name: &str, help: &str) -> Family<Labels, FloatCounter> {
        if let Some(f) = self.counters.get(name) {
            return f.clone();
        }
        let family = Family::<Labels, FloatCounter>::default();
        // prometheus-client appends `_total` to counters itself, and a full stop to help.
        self.registry.register(name.trim_end_matches("_total"), help.trim_end_matches('.'), family.clone());
        self.counters.insert(name.to_owned(), family.clone());
        family
    }

    fn gauge(&mut self, name: &str, help: &str) -> Family<Labels, FloatGauge> {
        if let Some(f) = self.gauges.get(name) {
            return f.clone();
        }
        let family = Family::<Labels, FloatGauge>::default();
        self.registry.register(name, help.trim_end_matches('.'), family.clone());
        self.gauges.insert(name.to_owned(), family.clone());
        family
    }

    /// Where the per-run series `name` goes, registered on first use.
    fn per_run(&mut self, name: &'static str) -> Cumulative {
        if let Some(c) = self.per_run.get(name) {
            return c.clone();
        }
        let cumulative = if name.ends_with("_seconds") {
            let family = HistogramFamily::new_with_constructor(new_histogram as fn() -> Histogram);
            let help =
                format!("Count and sum of the per-run series {name} since the agent started (see docs/metrics.md)");
            self.registry.register(name, help, family.clone());
            Cumulative::Histogram(family)
        } else {
            let help = format!("Sum of the per-run series {name} since the agent started (see docs/metrics.md)");
            Cumulative::Counter(self.counter(&format!("{name}_total"), &help))
        };
        self.per_run.insert(name, cumulative.clone());
        cumulative
    }
}

impl Exposition {
    /// An exposition that keeps the per-run series named in `keeps` (the
    /// contract's `metrics::EXPOSED`) and ignores the others.
    pub fn keeping(keeps: &'static [&'static str]) -> Self {
        Exposition { keeps, inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds one batch of per-run samples to the cumulative metrics.
    pub fn observe(&self, samples: &[Sample]) {
        let mut inner = self.lock();
        for sample in samples {
            let Some(name) = sample.name() else { continue };
            let Some(kept) = self.keeps.iter().find(|k| **k == name) else { continue };
            match inner.per_run(kept) {
                Cumulative::Histogram(family) => family.get_or_create(&labels_of(sample)).observe(sample.value),
                Cumulative::Counter(family) => {
                    family.get_or_create(&labels_of(sample)).inc_by(sample.value);
                }
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

    /// Adds series read at each encoding (see `prometheus_client::collector`).
    /// The collector runs with the exposition locked.
    pub fn register_collector(&self, collector: Box<dyn prometheus_client::collector::Collector>) {
        self.lock().registry.register_collector(collector);
    }

    /// The metrics in the Prometheus text format (OpenMetrics flavour).
    pub fn encode(&self) -> String {
        let mut inner = self.lock();
        // Sized from the last one: grown by doubling, a megabyte's text was copied
        // about twenty times over, each time on fresh pages.
        let mut out = String::with_capacity(inner.last_size + inner.last_size / 8);
        if encode(&mut out, &inner.registry).is_err() {
            tracing::error!("cannot encode /metrics");
        }
        inner.last_size = out.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEPS: &[&str] = &["fediprobe_journey_success", "fediprobe_journey_latency_seconds"];

    #[test]
    fn kept_samples_become_counters_and_bucketless_histograms_and_the_rest_is_left_out() {
        let exposition = Exposition::keeping(KEEPS);
        let labels = [("journey", "home"), ("region", "eu")];
        for _ in 0..3 {
            exposition.observe(&[
                Sample::new("fediprobe_journey_success", labels, 1.0, 0),
                Sample::new("fediprobe_journey_latency_seconds", labels, 0.02, 0),
                Sample::new("fediprobe_http_phase_seconds", [("journey", "home"), ("phase", "dns")], 0.01, 0),
            ]);
        }
        exposition.set_counter("fediprobe_x_total", "x", &[("journey", "home")], 5.0);
        exposition.set_counter("fediprobe_x_total", "x", &[("journey", "home")], 4.0);
        exposition.set_gauge("fediprobe_queue_samples", "q", &[], 7.0);
        let text = exposition.encode();
        assert!(text.contains("fediprobe_journey_success_total{journey=\"home\",region=\"eu\"} 3.0"), "{text}");
        assert!(text.contains("fediprobe_journey_latency_seconds_count{journey=\"home\",region=\"eu\"} 3"), "{text}");
        assert!(text.contains("fediprobe_journey_latency_seconds_sum{journey=\"home\",region=\"eu\"} 0.06"), "{text}");
        let buckets: Vec<&str> = text.lines().filter(|l| l.contains("_bucket{")).collect();
        assert_eq!(buckets.len(), 1, "only the +Inf bucket: {text}");
        assert!(buckets[0].contains("le=\"+Inf\""), "{text}");
        assert!(!text.contains("fediprobe_http_phase_seconds"), "series not kept are left out: {text}");
        assert!(text.contains("fediprobe_x_total{journey=\"home\"} 5.0"), "{text}");
        assert!(text.contains("fediprobe_queue_samples{} 7.0"), "{text}");
    }

    /// A run of a six-step journey, as the runner reports it: every step timed
    /// in six phases, which remote-write carries and `/metrics` must not.
    fn six_step_run(journey: &str, outcome: crate::runner::Outcome) -> crate::runner::RunResult {
        use crate::runner::{Phases, RunResult, StepResult, StepStatus};
        let step = |i: usize| StepResult {
            name: format!("step-{i}"),
            instance: "main".to_owned(),
            status: StepStatus::Passed,
            duration: std::time::Duration::from_millis(40),
            attempts: 1,
            http_status: Some(200),
            phases: Some(Phases::default()),
            error: None,
            skipped_because: None,
            delivery: None,
            stream_error: None,
            parallel: Vec::new(),
        };
        RunResult {
            account: "fediprobe-probe".to_owned(),
            reason: (outcome != crate::runner::Outcome::Success).then_some(crate::runner::Reason::HttpStatus),
            latency_ok: true,
            steps: (0..6).map(step).collect(),
            ..RunResult::without_steps(
                journey,
                "main",
                chrono::DateTime::UNIX_EPOCH,
                std::time::Duration::from_millis(240),
                outcome,
            )
        }
    }

    #[test]
    fn metrics_grow_with_journeys_and_outcomes_not_with_steps_and_phases() {
        use crate::runner::Outcome;
        let exposition = Exposition::keeping(crate::metrics::EXPOSED);
        let journeys = 50;
        for j in 0..journeys {
            let name = format!("journey-number-{j:04}");
            for outcome in [Outcome::Success, Outcome::Failure, Outcome::Success] {
                let samples = crate::metrics::samples_for_run(&six_step_run(&name, outcome), "eu-west-1");
                assert!(samples.len() > 40, "the per-run samples carry every step and phase");
                exposition.observe(&samples);
            }
        }
        let text = exposition.encode();
        assert!(!text.contains("step-"), "no step on /metrics");
        let per_journey = text.len() / journeys;
        // The agent adds four schedule lines per journey (about 400 bytes) to
        // this; the goal for the whole is 2 KB a journey.
        assert!(per_journey <= 1_500, "{per_journey} bytes per journey:\n{text}");
    }
}
