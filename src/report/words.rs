//! Numbers, times and text as the pages show them, and HTML escaping.

use chrono::{DateTime, Utc};

pub use crate::html::escape;

/// A fraction as a percentage with up to two decimals, as people write them:
/// `0.995 → 99.5%`, `0.6666… → 66.67%`. A value short of 100% never shows as
/// 100% (`0.99999 → 99.99%`), so a ratio with failures never reads as perfect.
pub fn percent(fraction: f64) -> String {
    let mut hundredths = (fraction * 10_000.0).round();
    if fraction < 1.0 && hundredths >= 10_000.0 {
        hundredths = 9_999.0;
    }
    let text = format!("{:.2}", hundredths / 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// An APDEX score to two decimals, as APDEX is written, never rounded up (a
/// score short of 1 never reads 1.00): `0.5 → 0.50`, `0.8799 → 0.87`.
pub fn apdex(score: Option<f64>) -> String {
    match score {
        // The small nudge keeps 0.29, stored as 0.28999…, at 0.29.
        Some(s) => format!("{:.2}", ((s * 100.0 + 1e-9).floor() / 100.0).clamp(0.0, 1.0)),
        None => "–".to_owned(),
    }
}

/// `Some(x)` as [`percent`], `None` as an en dash.
pub fn percent_or_dash(fraction: Option<f64>) -> String {
    fraction.map(percent).unwrap_or_else(|| "–".to_owned())
}

/// The share of the error budget left, e.g. `41.6% left`, `overspent by 12%`,
/// or, far past it, how many budgets went: `140× the budget spent`.
pub fn budget(remaining: Option<f64>) -> String {
    match remaining {
        None => "–".to_owned(),
        Some(r) if r >= 0.0 => format!("{} left", percent(r)),
        Some(r) if r > -1.0 => format!("overspent by {}", percent(-r)),
        Some(r) => {
            let spent = 1.0 - r;
            let times = if spent < 10.0 { format!("{:.1}", spent) } else { format!("{:.0}", spent) };
            format!("{}× the budget spent", times.trim_end_matches(".0"))
        }
    }
}

/// A whole number with thousands separators: `8,640`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in seconds as people say it: `2 h`, `30 min`, `1 h 5 min`, `1 d 2 h`.
pub fn duration(seconds: i64) -> String {
    let minutes = seconds / 60;
    let (d, h, m) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "min")]
        .into_iter()
        .filter(|(v, _)| *v > 0)
        .map(|(v, unit)| format!("{v} {unit}"))
        .collect();
    if parts.is_empty() { format!("{seconds} s") } else { parts.join(" ") }
}

/// Seconds with a sensible unit: `850 ms`, `4.2 s`, `3 min 5 s`.
pub fn seconds(value: Option<f64>) -> String {
    match value {
        None => "–".to_owned(),
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) if s < 60.0 => format!("{:.1} s", s),
        Some(s) => format!("{} min {:.0} s", (s / 60.0).floor(), s % 60.0),
    }
}

/// A time as `2024-03-03 10:00 UTC`.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// What the report covers: the window asked for, and, when the data covers
/// less of it, the part that has data, e.g. `over 30 days, from … to … (data from
/// 2024-03-03 10:00 UTC to 10:40 UTC only: 40 min)`.
pub fn coverage(window: &super::model::Window) -> String {
    let asked = format!("over {} days, from {} to {}", window.days, time(window.start), time(window.end));
    match &window.coverage {
        Some(c) if c.start > window.start || c.end < window.end => format!(
            "{asked} (the data covers only {} of it, from {} to {})",
            duration((c.end - c.start).num_seconds()),
            time(c.start),
            time(c.end)
        ),
        Some(_) => asked,
        None => format!("{asked} (no data in it)"),
    }
}

/// The instances' addresses, each once: a host, with its port when the URL
/// names one (two sandbox instances on one host are two addresses).
pub fn site(instances: &[super::model::Instance]) -> String {
    let mut hosts: Vec<String> = Vec::new();
    for i in instances {
        let host = if i.host.is_empty() { i.name.clone() } else { i.host.clone() };
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    if hosts.is_empty() { "the instance".to_owned() } else { super::compute::and_list(&hosts) }
}

/// A day's label on a chart: `Mar 3`.
pub fn day(t: DateTime<Utc>) -> String {
    t.format("%b %-d").to_string()
}

/// A date as `3 March 2024`.
pub fn date(t: DateTime<Utc>) -> String {
    t.format("%-d %B %Y").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_people_write_them() {
        assert_eq!(percent(0.995), "99.5%");
        assert_eq!(percent(0.99999), "99.99%");
        assert_eq!(percent(0.9951388), "99.51%");
        assert_eq!(percent(2.0 / 3.0), "66.67%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(apdex(Some(0.5)), "0.50");
        assert_eq!(apdex(Some(0.29)), "0.29");
        assert_eq!(apdex(Some(0.999)), "0.99", "never rounded up to a perfect score");
        assert_eq!(apdex(Some(1.0)), "1.00");
        assert_eq!(apdex(None), "–");
        assert_eq!(count(8640), "8,640");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(duration(7200), "2 h");
        assert_eq!(duration(3900), "1 h 5 min");
        assert_eq!(budget(Some(-0.25)), "overspent by 25%");
        assert_eq!(budget(Some(-140.17647)), "141× the budget spent");
        assert_eq!(budget(Some(-1.5)), "2.5× the budget spent");
        assert_eq!(budget(Some(-1.0)), "2× the budget spent");
        assert_eq!(
            escape("<a href=\"x\">O'Neil & co</a>"),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Neil &amp; co&lt;/a&gt;"
        );
    }
}
