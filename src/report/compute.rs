//! The report's arithmetic, free of I/O: budgets and the objective in words.
//! Incidents are not computed here but asked of the backend ([`super::incidents`]).

use chrono::{DateTime, Utc};

use super::model::Count;
use crate::generate::slo::{Indicator, Sli};

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

/// An APDEX objective in words, e.g. `an APDEX of at least 0.85 (satisfied
/// within 500ms, tolerated within 2s)`.
pub fn apdex_text(apdex: &crate::spec::journey::ApdexObjective) -> String {
    format!(
        "an APDEX of at least {} (satisfied within {}, tolerated within {})",
        apdex.objective.fraction(),
        humantime::format_duration(apdex.threshold),
        humantime::format_duration(apdex.tolerating)
    )
}

/// `a`, `a and b`, `a, b and c`.
pub fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Unix seconds as a UTC time.
pub fn time(unix: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix, 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_and_words() {
        assert_eq!(budget_remaining(Count::new(1000, 995), 0.005).map(|b| (b * 1e9).round()), Some(0.0));
        assert_eq!(budget_remaining(Count::new(0, 0), 0.005), None);
        assert_eq!(and_list(&["a".into(), "b".into(), "c".into()]), "a, b and c");
    }
}
