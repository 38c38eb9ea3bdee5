//! Reading the small value types of journey files: durations (`500ms`, `5m`,
//! `30d`), objectives (`99.5%`), HTTP methods, names.

use std::time::Duration;

use super::yaml::{Node, Reader, Value};

/// An objective as a fraction in (0, 1), read from `99.5%` (or `99.5`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective(f64);

impl Objective {
    pub fn new(fraction: f64) -> Option<Self> {
        (fraction > 0.0 && fraction < 1.0).then_some(Objective(fraction))
    }

    /// As a fraction, e.g. 0.995.
    pub fn fraction(self) -> f64 {
        self.0
    }

    /// The error budget, e.g. 0.005 for 99.5%.
    pub fn budget(self) -> f64 {
        1.0 - self.0
    }

    /// As written for people, e.g. `99.5%`.
    pub fn percent_text(self) -> String {
        let p = (self.0 * 100.0 * 1e6).round() / 1e6;
        format!("{p}%")
    }
}

pub fn duration(reader: &mut Reader<'_>, node: &Node, what: &str) -> Option<Duration> {
    let text = match &node.value {
        Value::Str(s) => s.trim().to_owned(),
        Value::Int(_) | Value::Float(_) => {
            reader.error_hint(node, format!("{what} needs a unit"), "write e.g. `500ms`, `10s`, `5m` or `30d`");
            return None;
        }
        other => {
            reader.error(node, format!("{what} must be a duration such as `10s`, found {}", other.kind()));
            return None;
        }
    };
    match humantime::parse_duration(&text) {
        Ok(d) if d.is_zero() => {
            reader.error(node, format!("{what} must be longer than zero"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            reader.error_hint(
                node,
                format!("`{text}` is not a duration: {e}"),
                "write e.g. `500ms`, `10s`, `5m`, `1h` or `30d`",
            );
            None
        }
    }
}

pub fn objective(reader: &mut Reader<'_>, node: &Node, what: &str) -> Option<Objective> {
    let percent = match &node.value {
        Value::Str(s) => {
            let trimmed = s.trim();
            let number = trimmed.strip_suffix('%').unwrap_or(trimmed).trim();
            match number.parse::<f64>() {
                Ok(p) => p,
                Err(_) => {
                    reader.error_hint(node, format!("`{s}` is not a percentage"), "write e.g. `99.5%`");
                    return None;
                }
            }
        }
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        other => {
            reader.error(node, format!("{what} must be a percentage such as `99.5%`, found {}", other.kind()));
            return None;
        }
    };
    if percent >= 100.0 {
        reader.error_hint(
            node,
            format!("{what} of {percent}% leaves no error budget"),
            "an SLO needs room for failure: use e.g. `99.9%`",
        );
        return None;
    }
    match Objective::new(percent / 100.0) {
        Some(o) => Some(o),
        None => {
            reader.error(node, format!("{what} must be between 0% and 100%"));
            None
        }
    }
}

/// A score objective such as APDEX's, read as a fraction (`0.90`) or a
/// percentage (`90%`), strictly between 0 and 1.
pub fn score(reader: &mut Reader<'_>, node: &Node, what: &str) -> Option<Objective> {
    let fraction = match &node.value {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        Value::Str(s) => {
            let trimmed = s.trim();
            match trimmed.strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().ok().map(|p| p / 100.0),
                None => trimmed.parse::<f64>().ok(),
            }
        }
        _ => None,
    };
    match fraction.and_then(Objective::new) {
        Some(o) => Some(o),
        None => {
            reader.error_hint(
                node,
                format!("the {what} objective must be a score between 0 and 1"),
                "write e.g. `objective: 0.90` (or `90%`); 1 would leave no room for a single slow run",
            );
            None
        }
    }
}

/// Names used as metric label values and file names: lower-case letters, digits,
/// `-` and `_`, starting with a letter.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 63
}

pub fn name(reader: &mut Reader<'_>, node: &Node, what: &str) -> Option<String> {
    let text = reader.string(node, what)?;
    if is_valid_name(&text) {
        Some(text)
    } else {
        reader.error_hint(
            node,
            format!("{what} `{text}` is not a valid name"),
            "use lower-case letters, digits, `-` and `_`, starting with a letter (at most 63 characters)",
        );
        None
    }
}

pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

pub fn method(reader: &mut Reader<'_>, node: &Node) -> Option<http::Method> {
    let text = reader.string(node, "`method`")?;
    let upper = text.to_ascii_uppercase();
    if METHODS.contains(&upper.as_str()) {
        http::Method::from_bytes(upper.as_bytes()).ok()
    } else {
        reader.error_hint(node, format!("unknown HTTP method `{text}`"), format!("use one of {}", METHODS.join(", ")));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objective_text_round_trips() {
        assert_eq!(Objective::new(0.995).unwrap().percent_text(), "99.5%");
        assert_eq!(Objective::new(0.999).unwrap().percent_text(), "99.9%");
        assert!((Objective::new(0.995).unwrap().budget() - 0.005).abs() < 1e-12);
    }

    #[test]
    fn names_are_label_safe() {
        assert!(is_valid_name("home-timeline"));
        assert!(!is_valid_name("Home"));
        assert!(!is_valid_name("1x"));
        assert!(!is_valid_name("a b"));
    }
}
