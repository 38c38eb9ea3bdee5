//! Diagnostics in the style of rustc and Hurl: a title, `--> file:line:col`, the
//! source line with carets under the problem, and a hint.

use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a problem is. Errors make `check` (and loading) fail; warnings don't.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One problem in one file, with everything needed to show it to a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub title: String,
    pub file: PathBuf,
    /// Where the problem is; `None` for problems with a whole file (unreadable).
    pub pos: Option<Pos>,
    /// How many characters the carets cover (at least one).
    pub width: usize,
    /// The source line at `pos`, captured when the diagnostic was made.
    pub source_line: Option<String>,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error about a whole file, with no position inside it.
    pub fn file_error(file: &Path, title: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            title: title.into(),
            file: file.to_path_buf(),
            pos: None,
            width: 1,
            source_line: None,
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{label}: {}", self.title)?;
        let Some(pos) = self.pos else {
            write!(f, "  --> {}", self.file.display())?;
            if let Some(hint) = &self.hint {
                write!(f, "\n   = hint: {hint}")?;
            }
            return Ok(());
        };
        let gutter = pos.line.to_string().len();
        let pad = " ".repeat(gutter);
        write!(f, "{pad}--> {}:{}:{}", self.file.display(), pos.line, pos.col)?;
        if let Some(line) = &self.source_line {
            let caret_pad: String =
                line.chars().take(pos.col.saturating_sub(1)).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            write!(f, "\n{pad} |\n{} | {line}\n{pad} | {caret_pad}{}", pos.line, "^".repeat(self.width.max(1)))?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n{pad} = hint: {hint}")?;
        }
        Ok(())
    }
}

/// The diagnostics of one load, in the order found.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest of `candidates` to `word`, if one is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(distance, c)| *distance <= 2.max(c.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_close_words() {
        assert_eq!(did_you_mean("reqest", &["request", "poll"]), Some("request"));
        assert_eq!(did_you_mean("zzzzzz", &["request", "poll"]), None);
    }

    #[test]
    fn renders_like_rustc() {
        let d = Diagnostic {
            severity: Severity::Error,
            title: "unknown step kind `reqest`".into(),
            file: "journeys/x.yaml".into(),
            pos: Some(Pos { line: 7, col: 5 }),
            width: 6,
            source_line: Some("  - reqest:".into()),
            hint: Some("did you mean `request`?".into()),
        };
        let text = d.to_string();
        assert_eq!(
            text,
            "error: unknown step kind `reqest`\n --> journeys/x.yaml:7:5\n  |\n7 |   - reqest:\n  |     ^^^^^^\n  = hint: did you mean `request`?"
        );
    }
}
