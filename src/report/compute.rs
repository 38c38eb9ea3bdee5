//! The report's arithmetic, free of I/O: budgets, the objective in words, and
//! incidents found in five-minute buckets of runs (the definition is in the
//! [module docs](super)).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::model::{Count, Incident, IncidentKind};
use crate::generate::slo::{Indicator, Sli, Threshold};

/// `1 − (bad / valid) / budget`: the share of the error budget left; below zero
/// when overspent. `None` without valid runs.
pub fn budget_remaining(count: Count, budget: f64) -> Option<f64> {
    (count.valid_runs > 0).then(|| 1.0 - (count.bad_runs as f64 / count.valid_runs as f64) / budget)
}

/// One indicator's objective in words, e.g. `99.5% of runs succeed` or
/// `95% of successful runs finish within 500ms`.
pub fn objective_text(indicator: &Indicator) -> String {
    let p = indicator.objective.percent_text();
    match (indicator.sli, indicator.threshold) {
        (Sli::Latency, Some(t)) => format!("{p} of successful runs finish within {}", humantime::format_duration(t)),
        (Sli::Delay, Some(t)) => format!("{p} of posts arrive within {}", humantime::format_duration(t)),
        _ => format!("{p} of runs succeed"),
    }
}

/// `a`, `a and b`, `a, b and c`.
pub fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Runs of one indicator in consecutive buckets per region: bucket `i` holds the
/// runs in `(end_of(i) − step, end_of(i)]`; every region has the same number of buckets.
#[derive(Debug, Clone)]
pub struct Buckets {
    /// The end of bucket 0, unix seconds.
    pub first_end: i64,
    /// The bucket length, seconds.
    pub step: i64,
    pub regions: BTreeMap<String, Vec<Count>>,
}

impl Buckets {
    pub fn end_of(&self, i: usize) -> i64 {
        self.first_end + i as i64 * self.step
    }

    fn len(&self) -> usize {
        self.regions.values().map(Vec::len).max().unwrap_or(0)
    }
}

/// The fast-burn page condition of the generated rules, in buckets.
#[derive(Debug, Clone, Copy)]
pub struct BurnPolicy {
    pub threshold: Threshold,
    /// The long and short windows, as whole buckets.
    pub long_buckets: usize,
    pub short_buckets: usize,
    /// Regions that must burn together for a page.
    pub quorum: usize,
}

impl BurnPolicy {
    pub fn new(threshold: Threshold, long: Duration, short: Duration, step: i64, quorum: usize) -> BurnPolicy {
        let buckets = |d: Duration| ((d.as_secs() as i64 / step).max(1)) as usize;
        BurnPolicy { threshold, long_buckets: buckets(long), short_buckets: buckets(short), quorum: quorum.max(1) }
    }

    fn exceeds(&self, bad: u64, valid: u64) -> bool {
        if valid == 0 {
            return false;
        }
        let ratio = bad as f64 / valid as f64;
        if self.threshold.inclusive { ratio >= self.threshold.ratio } else { ratio > self.threshold.ratio }
    }
}

/// Sums of bad and valid runs over the `n` buckets ending at `i`.
struct Prefix {
    valid: Vec<u64>,
    bad: Vec<u64>,
}

impl Prefix {
    fn new(counts: &[Count]) -> Prefix {
        let mut valid = vec![0];
        let mut bad = vec![0];
        for c in counts {
            valid.push(valid.last().unwrap() + c.valid_runs);
            bad.push(bad.last().unwrap() + c.bad_runs);
        }
        Prefix { valid, bad }
    }

    fn window(&self, i: usize, n: usize) -> (u64, u64) {
        let from = (i + 1).saturating_sub(n);
        (self.bad[i + 1] - self.bad[from], self.valid[i + 1] - self.valid[from])
    }
}

/// The incidents in `(window_start, window_end]`: page periods (the quorum of
/// regions burned) and region-only periods (a region burned, the quorum did not),
/// oldest first. `budget_runs` is the budget in runs: budget × valid runs in the window.
pub fn incidents(
    buckets: &Buckets,
    policy: &BurnPolicy,
    window_start: i64,
    window_end: i64,
    budget_runs: f64,
) -> Vec<Incident> {
    let n = buckets.len();
    let prefixes: BTreeMap<&str, Prefix> = buckets.regions.iter().map(|(r, c)| (r.as_str(), Prefix::new(c))).collect();
    let burning: BTreeMap<&str, Vec<bool>> = prefixes
        .iter()
        .map(|(region, p)| {
            let flags = (0..n)
                .map(|i| {
                    let (long_bad, long_valid) = p.window(i, policy.long_buckets);
                    let (short_bad, short_valid) = p.window(i, policy.short_buckets);
                    policy.exceeds(long_bad, long_valid) && policy.exceeds(short_bad, short_valid)
                })
                .collect();
            (*region, flags)
        })
        .collect();
    let in_window: Vec<bool> =
        (0..n).map(|i| buckets.end_of(i) > window_start && buckets.end_of(i) <= window_end).collect();
    let pages: Vec<bool> =
        (0..n).map(|i| in_window[i] && burning.values().filter(|f| f[i]).count() >= policy.quorum).collect();

    let mut out = Vec::new();
    for (from, to) in stretches(&pages) {
        let regions: BTreeSet<&str> =
            burning.iter().filter(|(_, f)| f[from..=to].iter().any(|b| *b)).map(|(r, _)| *r).collect();
        let bad: u64 = prefixes.values().map(|p| p.bad[to + 1] - p.bad[from]).sum();
        out.push(incident(IncidentKind::Page, buckets, policy, (from, to), regions, bad, window_end, budget_runs));
    }
    if policy.quorum > 1 {
        for (region, flags) in &burning {
            let alone: Vec<bool> = (0..n).map(|i| in_window[i] && flags[i] && !pages[i]).collect();
            for (from, to) in stretches(&alone) {
                let p = &prefixes[region];
                let bad = p.bad[to + 1] - p.bad[from];
                let regions = BTreeSet::from([*region]);
                out.push(incident(
                    IncidentKind::RegionOnly,
                    buckets,
                    policy,
                    (from, to),
                    regions,
                    bad,
                    window_end,
                    budget_runs,
                ));
            }
        }
    }
    out.sort_by(|a, b| a.start.cmp(&b.start).then(a.regions.cmp(&b.regions)));
    out
}

#[allow(clippy::too_many_arguments)]
fn incident(
    kind: IncidentKind,
    buckets: &Buckets,
    policy: &BurnPolicy,
    (from, to): (usize, usize),
    regions: BTreeSet<&str>,
    bad_runs: u64,
    window_end: i64,
    budget_runs: f64,
) -> Incident {
    // The period is the stretch of runs the holding steps' short windows judged:
    // from the start of the first step's short window to the last step.
    let start = buckets.end_of(from) - policy.short_buckets as i64 * buckets.step;
    let end = buckets.end_of(to);
    Incident {
        kind,
        start: time(start),
        end: time(end),
        duration_seconds: end - start,
        ongoing: end >= window_end,
        regions: regions.into_iter().map(str::to_owned).collect(),
        bad_runs,
        budget_spent: if budget_runs > 0.0 { bad_runs as f64 / budget_runs } else { 0.0 },
    }
}

/// The maximal stretches `(first, last)` of consecutive `true`.
fn stretches(flags: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut open: Option<usize> = None;
    for (i, &f) in flags.iter().enumerate() {
        match (f, open) {
            (true, None) => open = Some(i),
            (false, Some(s)) => {
                out.push((s, i - 1));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(s) = open {
        out.push((s, flags.len() - 1));
    }
    out
}

/// Unix seconds as a UTC time.
pub fn time(unix: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix, 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::values::Objective;

    const STEP: i64 = 300;

    /// A fast-burn policy for 99.5%: 14.4× over 1h (12 buckets) and 5m (1 bucket).
    fn policy(quorum: usize) -> BurnPolicy {
        let threshold = Threshold::new(14.4, Objective::new(0.995).unwrap());
        BurnPolicy::new(threshold, Duration::from_secs(3600), Duration::from_secs(300), STEP, quorum)
    }

    /// `n` buckets of one run each, failing in `bad`.
    fn region(n: usize, bad: std::ops::Range<usize>) -> Vec<Count> {
        (0..n).map(|i| Count::new(1, u64::from(!bad.contains(&i)))).collect()
    }

    fn buckets(regions: &[(&str, Vec<Count>)]) -> Buckets {
        Buckets {
            first_end: STEP,
            step: STEP,
            regions: regions.iter().map(|(r, c)| (r.to_string(), c.clone())).collect(),
        }
    }

    #[test]
    fn an_outage_in_every_region_pages_for_exactly_its_length() {
        let b = buckets(&[("a", region(100, 40..46)), ("b", region(100, 40..46))]);
        let found = incidents(&b, &policy(2), 0, 100 * STEP, 200.0 * 0.005);
        assert_eq!(found.len(), 1);
        let i = &found[0];
        assert_eq!(i.kind, IncidentKind::Page);
        assert_eq!((i.start.timestamp(), i.end.timestamp()), (40 * STEP, 46 * STEP));
        assert_eq!(i.duration_seconds, 30 * 60);
        assert_eq!(i.bad_runs, 12);
        assert_eq!(i.regions, ["a", "b"]);
        assert!(!i.ongoing);
    }

    #[test]
    fn one_region_alone_is_region_only_under_a_quorum_of_two_and_a_page_under_one() {
        let b = buckets(&[("a", region(100, 10..34)), ("b", region(100, 0..0))]);
        let two = incidents(&b, &policy(2), 0, 100 * STEP, 1.0);
        assert_eq!(two.len(), 1);
        assert_eq!(two[0].kind, IncidentKind::RegionOnly);
        assert_eq!(two[0].duration_seconds, 2 * 3600);
        assert_eq!(two[0].regions, ["a"]);
        let one = incidents(&b, &policy(1), 0, 100 * STEP, 1.0);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].kind, IncidentKind::Page);
    }

    #[test]
    fn a_burn_still_holding_at_the_end_is_ongoing_and_clipped_to_the_window() {
        let b = buckets(&[("a", region(20, 15..20))]);
        let found = incidents(&b, &policy(1), 5 * STEP, 20 * STEP, 1.0);
        assert_eq!(found.len(), 1);
        assert!(found[0].ongoing);
        assert_eq!(found[0].end.timestamp(), 20 * STEP);
    }

    #[test]
    fn budget_and_words() {
        assert_eq!(budget_remaining(Count::new(1000, 995), 0.005).map(|b| (b * 1e9).round()), Some(0.0));
        assert_eq!(budget_remaining(Count::new(0, 0), 0.005), None);
        assert_eq!(and_list(&["a".into(), "b".into(), "c".into()]), "a, b and c");
    }
}
