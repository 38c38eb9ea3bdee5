//! Numbers, times and text as the pages show them, and HTML escaping.

use chrono::{DateTime, Utc};

pub use crate::html::escape;

/// A fraction as a percentage with up to three decimals, rounded down so that a
/// measured ratio is never shown better than it is: `0.99514 → 99.514%`,
/// `0.995 → 99.5%`, `0.99999 → 99.999%`.
pub fn percent(fraction: f64) -> String {
    let thousandths = (fraction * 100_000.0 + 1e-6).floor();
    let text = format!("{:.3}", thousandths / 1000.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// `Some(x)` as [`percent`], `None` as an en dash.
pub fn percent_or_dash(fraction: Option<f64>) -> String {
    fraction.map(percent).unwrap_or_else(|| "–".to_owned())
}

/// The share of the error budget left, e.g. `41.6% left` or `overspent by 12%`.
pub fn budget(remaining: Option<f64>) -> String {
    match remaining {
        None => "–".to_owned(),
        Some(r) if r >= 0.0 => format!("{} left", percent(r)),
        Some(r) => format!("overspent by {}", percent(-r)),
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
        assert_eq!(percent(0.99999), "99.999%");
        assert_eq!(percent(0.9951388), "99.513%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(count(8640), "8,640");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(duration(7200), "2 h");
        assert_eq!(duration(3900), "1 h 5 min");
        assert_eq!(budget(Some(-0.25)), "overspent by 25%");
        assert_eq!(
            escape("<a href=\"x\">O'Neil & co</a>"),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Neil &amp; co&lt;/a&gt;"
        );
    }
}
