//! The metric contract: which series a run becomes, with which labels.
//!
//! This is the one place that knows both a [`RunResult`] and a [`Sample`]: the
//! runner produces plain results, the sinks deliver plain samples, and this module
//! turns one into the other. `docs/metrics.md` documents every series; the rules
//! generator and the dashboards query exactly these names.
//!
//! **One sample per run per series**, timestamped with the run's start, so that
//! rules count runs with `count_over_time` and good runs with `sum_over_time`, the
//! same for a CronJob that lives for one run and for the long-running agent.

use crate::runner::{Outcome, Phase, RunResult, StepStatus};
use crate::sink::Sample;

pub const JOURNEY_SUCCESS: &str = "fediprobe_journey_success";
pub const JOURNEY_DURATION: &str = "fediprobe_journey_duration_seconds";
pub const JOURNEY_LATENCY: &str = "fediprobe_journey_latency_seconds";
pub const JOURNEY_LATENCY_OK: &str = "fediprobe_journey_latency_ok";
pub const JOURNEY_OUTCOME: &str = "fediprobe_journey_outcome";
pub const STEP_DURATION: &str = "fediprobe_step_duration_seconds";
pub const FEDERATION_DELAY: &str = "fediprobe_federation_delay_seconds";
pub const FEDERATION_DELAY_UNBOUNDED: &str = "fediprobe_federation_delay_unbounded";
pub const NOTIFICATION_DELAY: &str = "fediprobe_notification_delay_seconds";
pub const NOTIFICATION_DELAY_UNBOUNDED: &str = "fediprobe_notification_delay_unbounded";
pub const STREAM_FAILED: &str = "fediprobe_stream_failed";
pub const JOURNEY_DELAY_OK: &str = "fediprobe_journey_delay_ok";
pub const HTTP_PHASE: &str = "fediprobe_http_phase_seconds";
/// The run's APDEX score (1 satisfied, 0.5 tolerating, 0 frustrated), for
/// journeys with an APDEX objective: averaged over runs it is the APDEX.
pub const JOURNEY_APDEX: &str = "fediprobe_journey_apdex_score";

/// The per-run series the agent's `/metrics` keeps (as `<name>_total` counters,
/// and `_seconds` ones as bucketless histograms: a count and a sum): one small
/// summary per journey and outcome. Steps, phases and durations are left to
/// remote-write, where the per-run samples are; `/metrics` would otherwise grow
/// with journeys × steps × phases × buckets. `docs/metrics.md` lists them.
pub const EXPOSED: &[&str] = &[
    JOURNEY_OUTCOME,
    JOURNEY_SUCCESS,
    JOURNEY_LATENCY_OK,
    JOURNEY_LATENCY,
    JOURNEY_DELAY_OK,
    FEDERATION_DELAY,
    FEDERATION_DELAY_UNBOUNDED,
    STREAM_FAILED,
];

/// The samples of one run, as seen from `region`.
///
/// A `probe_error` run emits only its outcome: it must count neither for nor
/// against the instance, so it has no `_success`, `_latency_ok` or durations. A
/// failed run keeps its duration but has no `_latency_seconds`: latency figures
/// are over successful runs only.
pub fn samples_for_run(result: &RunResult, region: &str) -> Vec<Sample> {
    let at = result.started_at.timestamp_millis();
    let base = [
        ("journey", result.journey.as_str()),
        ("instance", result.instance.as_str()),
        ("region", region),
        ("account", result.account.as_str()),
    ];
    let with = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        base.iter().chain(extra).map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    let mut out = Vec::new();
    let mut outcome_labels = vec![("outcome", result.outcome.as_str())];
    if let Some(reason) = result.reason {
        outcome_labels.push(("reason", reason.as_str()));
    }
    out.push(Sample::new(JOURNEY_OUTCOME, with(&outcome_labels), 1.0, at));
    if result.outcome == Outcome::ProbeError {
        return out;
    }
    let success = result.outcome == Outcome::Success;
    out.push(Sample::new(JOURNEY_SUCCESS, with(&[]), if success { 1.0 } else { 0.0 }, at));
    out.push(Sample::new(JOURNEY_LATENCY_OK, with(&[]), if result.latency_ok { 1.0 } else { 0.0 }, at));
    out.push(Sample::new(JOURNEY_DURATION, with(&[]), result.duration.as_secs_f64(), at));
    // Latency figures are over successful runs only: a refused connection fails in
    // a millisecond, and would make an outage look fast.
    if success {
        out.push(Sample::new(JOURNEY_LATENCY, with(&[]), result.duration.as_secs_f64(), at));
    }
    // A parallel group's members are steps of their own here: each has its
    // duration and phases; the group's duration is until the last answer.
    for step in result.steps.iter().chain(&result.cleanup).flat_map(|s| s.with_members()) {
        if step.status != StepStatus::Skipped {
            out.push(Sample::new(
                STEP_DURATION,
                with(&[("step", step.name.as_str())]),
                step.duration.as_secs_f64(),
                at,
            ));
        }
        // Every phase, zeros included: a zero `connect` says the connection was reused.
        if let Some(phases) = &step.phases {
            for phase in Phase::ALL {
                out.push(Sample::new(
                    HTTP_PHASE,
                    with(&[("step", step.name.as_str()), ("phase", phase.as_str())]),
                    phases.get(phase).as_secs_f64(),
                    at,
                ));
            }
        }
        if let Some(d) = &step.delivery {
            let labels =
                [("source", d.source.as_str()), ("destination", d.destination.as_str()), ("method", d.method.as_str())];
            // A notification's delay includes the federation of its status and
            // the notification fan-out after it: its own series, so federation
            // figures stay about posts reaching home feeds.
            let (delay_series, unbounded_series) = if d.event == "notification" {
                (NOTIFICATION_DELAY, NOTIFICATION_DELAY_UNBOUNDED)
            } else {
                (FEDERATION_DELAY, FEDERATION_DELAY_UNBOUNDED)
            };
            // A figure only when the probe could bound the arrival within one
            // fallback interval; every delivery says whether it could.
            if let Some(delay) = d.delay {
                out.push(Sample::new(delay_series, with(&labels), delay.as_secs_f64(), at));
            }
            let unbounded = if d.delay.is_none() { 1.0 } else { 0.0 };
            out.push(Sample::new(unbounded_series, with(&labels), unbounded, at));
        }
        if let Some(e) = &step.stream_error {
            let labels = [("step", step.name.as_str()), ("reason", e.reason.as_str())];
            out.push(Sample::new(STREAM_FAILED, with(&labels), 1.0, at));
        }
    }
    // Delivered within the delay objective's threshold, for journeys that have one
    // and runs that posted; a failed run after the post (a post never delivered
    // included) is a miss.
    if let Some(delay_ok) = result.delay_ok {
        out.push(Sample::new(JOURNEY_DELAY_OK, with(&[]), if delay_ok { 1.0 } else { 0.0 }, at));
    }
    // Only journeys with an APDEX objective have a zone; a failed run's is
    // frustrated, whatever its duration.
    if let Some(zone) = result.apdex {
        out.push(Sample::new(JOURNEY_APDEX, with(&[]), zone.score(), at));
    }
    out
}
