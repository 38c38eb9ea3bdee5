//! The SLO arithmetic behind the rules: which indicators a journey has, the
//! windows they are measured over, the multi-window multi-burn-rate policy, and
//! a journey's period from its cron schedule.
//!
//! An indicator's error ratio over a window `w` is `1 − good / valid`, counted
//! from the per-run samples (never `rate`: a CronJob process does not live long
//! enough to accumulate a counter):
//!
//! | SLI | good runs | valid runs |
//! |---|---|---|
//! | availability | `sum_over_time(fediprobe_journey_success[w])` | `count_over_time(fediprobe_journey_success[w])` |
//! | latency | `sum_over_time(fediprobe_journey_latency_ok[w])` | `sum_over_time(fediprobe_journey_success[w])` |
//! | delay (federation) | `sum_over_time(fediprobe_journey_delay_ok[w])` | `count_over_time(fediprobe_journey_delay_ok[w])` |
//!
//! A federation journey's run that never sees its post arrive counts as a delay
//! miss (`delay_ok` = 0), as does a late arrival. A run that never posted has no
//! `delay_ok` (its failure counts for availability only), nor does a delivery
//! the probe could not time closely enough to judge (see `docs/metrics.md`).
//!
//! `probe_error` runs emit neither series, so they count neither for nor against
//! an objective.

use std::time::Duration;

use crate::spec::Journey;
use crate::spec::values::Objective;

/// An SLI kind; the value of the `sli` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sli {
    /// Share of runs that succeed.
    Availability,
    /// Share of successful runs that finish within the latency threshold.
    Latency,
    /// Share of runs (of a federation journey) whose post arrives within the
    /// delay threshold; a post that never arrives is a miss.
    Delay,
}

impl Sli {
    pub const ALL: [Sli; 3] = [Sli::Availability, Sli::Latency, Sli::Delay];

    pub fn label(self) -> &'static str {
        match self {
            Sli::Availability => "availability",
            Sli::Latency => "latency",
            Sli::Delay => "delay",
        }
    }
}

/// One indicator of one journey with its objective, ready to be turned into rules.
#[derive(Debug, Clone)]
pub struct Indicator {
    pub sli: Sli,
    pub objective: Objective,
    /// The latency or delay threshold, for those SLIs.
    pub threshold: Option<Duration>,
}

impl Indicator {
    /// PromQL for the error ratio over `window`, aggregated `by` the given labels.
    pub fn ratio(&self, journey: &str, by: &str, window: Duration) -> String {
        error_ratio(self.sli, &format!("{{journey=\"{journey}\"}}"), by, window)
    }

    /// The objective in words, e.g. `99.5% of runs succeed over 30d`.
    pub fn objective_words(&self, window: Duration) -> String {
        let w = prom_duration(window);
        let p = self.objective.percent_text();
        match (self.sli, self.threshold) {
            (Sli::Latency, Some(t)) => {
                format!("{p} of successful runs within {} over {w}", humantime::format_duration(t))
            }
            (Sli::Delay, Some(t)) => {
                format!("{p} of posts delivered within {} over {w}", humantime::format_duration(t))
            }
            _ => format!("{p} of runs succeed over {w}"),
        }
    }

    /// What counts against the objective, in words, e.g. `of runs failed`.
    pub fn bad_words(&self) -> String {
        match (self.sli, self.threshold) {
            (Sli::Latency, Some(t)) => {
                format!("of successful runs took longer than {}", humantime::format_duration(t))
            }
            (Sli::Delay, Some(t)) => {
                format!("of posts were not delivered within {}", humantime::format_duration(t))
            }
            _ => "of runs failed".to_owned(),
        }
    }
}

/// PromQL for the error ratio of `sli` over `range` (a window, possibly scaled
/// down for a test), of the series matching `selector` (`{…}` or empty),
/// aggregated `by` the given labels.
pub fn error_ratio(sli: Sli, selector: &str, by: &str, range: Duration) -> String {
    error_ratio_with(sli, selector, by, range, &|expr| expr.to_owned())
}

/// [`error_ratio`] with each per-series expression passed through `wrap` before
/// it is aggregated (the rules copy the instance label there, see
/// [`super::naming::Naming::relabel`]).
pub fn error_ratio_with(sli: Sli, selector: &str, by: &str, range: Duration, wrap: &dyn Fn(&str) -> String) -> String {
    let (good, valid) = good_and_valid(sli, selector, range);
    format!("1 - (\n  sum by ({by}) ({})\n  /\n  sum by ({by}) ({})\n)", wrap(&good), wrap(&valid))
}

/// The good and the valid runs of `sli` over `range` (PromQL, per series), as
/// the table in this module's doc says.
pub fn good_and_valid(sli: Sli, selector: &str, range: Duration) -> (String, String) {
    let w = prom_duration(range);
    match sli {
        Sli::Availability => (
            format!("sum_over_time(fediprobe_journey_success{selector}[{w}])"),
            format!("count_over_time(fediprobe_journey_success{selector}[{w}])"),
        ),
        Sli::Latency => (
            format!("sum_over_time(fediprobe_journey_latency_ok{selector}[{w}])"),
            format!("sum_over_time(fediprobe_journey_success{selector}[{w}])"),
        ),
        Sli::Delay => (
            format!("sum_over_time(fediprobe_journey_delay_ok{selector}[{w}])"),
            format!("count_over_time(fediprobe_journey_delay_ok{selector}[{w}])"),
        ),
    }
}

/// The indicators a journey's SLO block defines, availability first.
pub fn indicators(journey: &Journey) -> Vec<Indicator> {
    let mut out = vec![Indicator { sli: Sli::Availability, objective: journey.slo.availability, threshold: None }];
    if let Some(latency) = &journey.slo.latency {
        out.push(Indicator { sli: Sli::Latency, objective: latency.objective, threshold: Some(latency.threshold) });
    }
    if let Some(delay) = &journey.slo.delay {
        out.push(Indicator { sli: Sli::Delay, objective: delay.objective, threshold: Some(delay.threshold) });
    }
    out
}

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

/// Windows recorded every minute: what pages look at.
pub const SHORT_WINDOWS: [Duration; 5] = [
    Duration::from_secs(5 * MINUTE),
    Duration::from_secs(30 * MINUTE),
    Duration::from_secs(HOUR),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(6 * HOUR),
];

/// Windows recorded every two minutes (the slow group), before the SLO window itself.
pub const LONG_WINDOWS: [Duration; 2] = [Duration::from_secs(DAY), Duration::from_secs(3 * DAY)];

/// The window the burn factors of the SRE workbook are stated for.
pub const REFERENCE_WINDOW: Duration = Duration::from_secs(30 * DAY);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Page,
    Ticket,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

/// One window pair of the multi-window multi-burn-rate policy: alert when the
/// error ratio exceeds `factor × budget` over both `long` and `short`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnWindow {
    pub severity: Severity,
    pub long: Duration,
    pub short: Duration,
    /// The burn factor for a 30-day window.
    pub factor_30d: f64,
}

/// The SRE workbook's policy for a 30-day window: 2% of the budget gone in 1h or
/// 5% in 6h pages; 10% in 1d or 10% in 3d opens a ticket.
pub const BURN_WINDOWS: [BurnWindow; 4] = [
    BurnWindow {
        severity: Severity::Page,
        long: Duration::from_secs(HOUR),
        short: Duration::from_secs(5 * MINUTE),
        factor_30d: 14.4,
    },
    BurnWindow {
        severity: Severity::Page,
        long: Duration::from_secs(6 * HOUR),
        short: Duration::from_secs(30 * MINUTE),
        factor_30d: 6.0,
    },
    BurnWindow {
        severity: Severity::Ticket,
        long: Duration::from_secs(DAY),
        short: Duration::from_secs(2 * HOUR),
        factor_30d: 3.0,
    },
    BurnWindow {
        severity: Severity::Ticket,
        long: Duration::from_secs(3 * DAY),
        short: Duration::from_secs(6 * HOUR),
        factor_30d: 1.0,
    },
];

impl BurnWindow {
    /// The burn factor for an SLO window: scaled with the window so that an
    /// alert still means the same share of the budget gone in the same time
    /// (a 90-day window pages at 43.2× over 1h). Never below 1×: a burn below 1×
    /// would not spend the budget within the window at all.
    pub fn factor(&self, slo_window: Duration) -> f64 {
        let scaled = self.factor_30d * slo_window.as_secs_f64() / REFERENCE_WINDOW.as_secs_f64();
        round(scaled.max(1.0))
    }

    /// The share of the budget spent over `long` at exactly this burn factor.
    pub fn budget_share(&self, slo_window: Duration) -> f64 {
        round(self.factor(slo_window) * self.long.as_secs_f64() / slo_window.as_secs_f64())
    }
}

/// An error-ratio threshold and its comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub ratio: f64,
    /// `>=` instead of `>`: when `factor × budget` reaches 100%, the alert means
    /// "every run failed" (a loose objective over a long window), and `> 1`
    /// could never hold.
    pub inclusive: bool,
}

impl Threshold {
    pub fn new(factor: f64, objective: Objective) -> Threshold {
        let ratio = round(factor * objective.budget());
        if ratio >= 1.0 { Threshold { ratio: 1.0, inclusive: true } } else { Threshold { ratio, inclusive: false } }
    }

    /// The PromQL comparison, e.g. `> 0.072`.
    pub fn promql(&self) -> String {
        format!("{} {}", if self.inclusive { ">=" } else { ">" }, self.ratio)
    }
}

/// Rounds away float noise (`14.4 × 0.005 = 0.07200000000000001`) so that
/// thresholds print as people write them.
pub fn round(x: f64) -> f64 {
    (x * 1e12).round() / 1e12
}

/// A duration as Prometheus writes it, in the largest unit that divides it:
/// `5m`, `1h`, `30d`, `90s`.
pub fn prom_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || s == 0 {
        return format!("{}ms", d.as_millis());
    }
    for (unit, size) in [("d", DAY), ("h", HOUR), ("m", MINUTE)] {
        if s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

/// A journey's period: the longest gap between two runs of its schedule over a
/// fixed reference week (the generator never reads the clock).
pub fn period(cron: &croner::Cron) -> Duration {
    // A schedule firing less than twice in eight days ("once a year") is not a
    // probe; treat its period as the reference window so silence alerts stay quiet.
    crate::spec::limits::gaps(cron, usize::MAX).map_or(Duration::from_secs(8 * DAY), |(_, longest)| longest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::journey::Schedule;

    #[test]
    fn factors_scale_with_the_window_and_never_drop_below_one() {
        let days = |d: u64| Duration::from_secs(d * DAY);
        assert_eq!(BURN_WINDOWS.map(|b| b.factor(days(30))), [14.4, 6.0, 3.0, 1.0]);
        assert_eq!(BURN_WINDOWS.map(|b| b.factor(days(90))), [43.2, 18.0, 9.0, 3.0]);
        assert_eq!(BURN_WINDOWS[3].factor(days(7)), 1.0);
        assert_eq!(BURN_WINDOWS.map(|b| b.budget_share(days(30))), [0.02, 0.05, 0.1, 0.1]);
        assert_eq!(BURN_WINDOWS.map(|b| b.budget_share(days(90))), [0.02, 0.05, 0.1, 0.1]);
    }

    #[test]
    fn thresholds_print_cleanly_and_saturate_at_every_run_failing() {
        let o = |f| Objective::new(f).unwrap();
        assert_eq!(Threshold::new(14.4, o(0.995)).promql(), "> 0.072");
        assert_eq!(Threshold::new(43.2, o(0.95)).promql(), ">= 1");
    }

    #[test]
    fn periods_come_from_the_schedule() {
        let p = |s: &str| period(&Schedule::parse(s).unwrap());
        assert_eq!(p("* * * * *"), Duration::from_secs(60));
        assert_eq!(p("*/5 * * * *"), Duration::from_secs(300));
        assert_eq!(p("0,10 * * * *"), Duration::from_secs(50 * 60));
        assert_eq!(p("0 9 * * 1-5"), Duration::from_secs(3 * DAY));
    }

    #[test]
    fn durations_print_like_prometheus() {
        assert_eq!(prom_duration(Duration::from_secs(300)), "5m");
        assert_eq!(prom_duration(Duration::from_secs(90 * DAY)), "90d");
        assert_eq!(prom_duration(Duration::from_secs(90)), "90s");
        assert_eq!(prom_duration(Duration::from_secs(3 * HOUR)), "3h");
    }
}
