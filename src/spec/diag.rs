//! Diagnostics in the style of rustc and Hurl: a title, `--> file:line:col`, the
//! source line with carets under the problem, and a hint.
//!
//! A diagnostic shows where, never a secret's value: the source line it shows has
//! the value of every secret-bearing key (`token:`, `password:`, `Authorization:`,
//! `Cookie:`, `X-Api-Key:` …), any `Bearer …` credential, a URL's password and an
//! `access_token=` query value replaced by `***`, with the carets moved to match.
//! That is done when a diagnostic is shown (`Display` and `Debug` alike), so no
//! path that prints one — `check`, a failed load, the agent's log of a rejected
//! reload — can skip it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

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
#[derive(Clone, PartialEq)]
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
        writeln!(f, "{label}: {}", mask_text(&self.title))?;
        let Some(pos) = self.pos else {
            write!(f, "  --> {}", self.file.display())?;
            if let Some(hint) = &self.hint {
                write!(f, "\n   = hint: {}", mask_text(hint))?;
            }
            return Ok(());
        };
        let gutter = pos.line.to_string().len();
        let pad = " ".repeat(gutter);
        write!(f, "{pad}--> {}:{}:{}", self.file.display(), pos.line, pos.col)?;
        if let Some(line) = &self.source_line {
            let start = pos.col.saturating_sub(1);
            let (line, start, width) = mask_line(line, start, self.width.max(1));
            let caret_pad: String = line.chars().take(start).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            write!(f, "\n{pad} |\n{} | {line}\n{pad} | {caret_pad}{}", pos.line, "^".repeat(width.max(1)))?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n{pad} = hint: {}", mask_text(hint))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let start = self.pos.map_or(0, |p| p.col.saturating_sub(1));
        f.debug_struct("Diagnostic")
            .field("severity", &self.severity)
            .field("title", &mask_text(&self.title))
            .field("file", &self.file)
            .field("pos", &self.pos)
            .field("width", &self.width)
            .field("source_line", &self.source_line.as_ref().map(|l| mask_line(l, start, self.width).0))
            .field("hint", &self.hint.as_ref().map(|h| mask_text(h)))
            .finish()
    }
}

/// What a masked value is shown as.
const MASK: &str = "***";

/// A key whose value is a secret: the key as written (quotes allowed), its colon
/// and the space after it. Words rather than exact names, so that `bearer_token`,
/// `X-Api-Key` or `client_secret` count as well as `token`.
static SECRET_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(?:^|[\s{,\[-])["']?[a-z0-9_.-]*(?:token|password|passwd|secret|authorization|cookie|api[_-]?key|credential)[a-z0-9_.-]*["']?[ \t]*:(?:[ \t]+|$)"#,
    )
    .expect("the secret-key pattern is valid")
});

/// Credentials that are secrets wherever they appear: the value after `Bearer` or
/// `Basic`, a URL's password (`https://user:PASSWORD@host`), an `access_token=`
/// query value (Mastodon accepts the token there).
static SECRET_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(?:\b(?:bearer|basic)[ \t]+([^\s"',}\]]+)|://[^/@\s:]*:([^/@\s]+)@|\b(?:access_token|token|password)=([^&\s"',}\]]+))"#,
    )
    .expect("the secret-value pattern is valid")
});

/// `line` with its secret values replaced by [`MASK`], and the caret span
/// (`start`, `width`, in characters) moved to where the same text now is. A caret
/// span inside a masked value covers the mask.
fn mask_line(line: &str, start: usize, width: usize) -> (String, usize, usize) {
    let mut spans = secret_key_values(line);
    spans.extend(secret_values(line));
    if spans.is_empty() {
        return (line.to_owned(), start, width);
    }
    spans.sort_unstable();
    // Carets that run on over blanks after a value (a quoted scalar's span can)
    // would hang past the shorter mask.
    let chars: Vec<char> = line.chars().collect();
    let mut width = width;
    while width > 1 && chars.get(start + width - 1).is_some_and(|c| c.is_whitespace()) {
        width -= 1;
    }
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (s, e) in spans {
        match merged.last_mut() {
            Some((_, end)) if s <= *end => *end = (*end).max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut masked = String::with_capacity(line.len());
    let mut at = 0;
    // Character offsets of the masked spans, for moving the carets.
    let mut char_spans = Vec::new();
    for &(s, e) in &merged {
        masked.push_str(&line[at..s]);
        let char_start = masked.chars().count();
        masked.push_str(MASK);
        char_spans.push((char_start, line[s..e].chars().count()));
        at = e;
    }
    masked.push_str(&line[at..]);
    let moved = |index: usize, is_end: bool| {
        // `index` is a character index into the original line.
        let mut shift: isize = 0;
        for &(masked_start, original_len) in &char_spans {
            let original_start = (masked_start as isize - shift) as usize;
            let original_end = original_start + original_len;
            if index <= original_start {
                break;
            }
            if index < original_end {
                return if is_end { masked_start + MASK.len() } else { masked_start };
            }
            shift += MASK.len() as isize - original_len as isize;
        }
        (index as isize + shift).max(0) as usize
    };
    let new_start = moved(start, false);
    let new_end = moved(start + width, true);
    (masked, new_start, new_end.saturating_sub(new_start).max(1))
}

/// Byte spans of the values of secret-bearing keys on `line`: a quoted value to
/// its closing quote, a plain one to the end of the line (or, inside a flow
/// collection, to the next `,`, `}` or `]`) less a trailing comment. A value that
/// opens a collection is not masked (the keys inside it are looked at in turn),
/// nor is a number of fewer than 8 digits.
fn secret_key_values(line: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    for m in SECRET_KEY.find_iter(line) {
        let start = m.end();
        let rest = &line[start..];
        let in_flow = line[..m.start() + 1].chars().filter(|c| matches!(c, '{' | '[')).count()
            > line[..m.start() + 1].chars().filter(|c| matches!(c, '}' | ']')).count();
        let len = match rest.chars().next() {
            None | Some('{' | '[' | '|' | '>' | '#') => continue,
            Some(quote @ ('"' | '\'')) => {
                let mut escaped = false;
                let close = rest.char_indices().skip(1).find(|&(_, c)| {
                    let found = c == quote && !escaped;
                    escaped = quote == '"' && c == '\\' && !escaped;
                    found
                });
                close.map_or(rest.len(), |(i, _)| i + 1)
            }
            Some(_) => {
                let comment = rest.find(" #").unwrap_or(rest.len());
                let end = if in_flow { rest[..comment].find([',', '}', ']']).unwrap_or(comment) } else { comment };
                rest[..end].trim_end().len()
            }
        };
        // A small count (`shared_by: { token: 3 }`) is no secret: hiding it would
        // only hide what the diagnostic is about. Real tokens are far longer.
        let value = &rest[..len];
        if len > 0 && !(value.len() < 8 && value.bytes().all(|b| b.is_ascii_digit())) {
            spans.push((start, start + len));
        }
    }
    spans
}

/// Byte spans of credentials that are secrets wherever they appear (see [`SECRET_VALUE`]).
fn secret_values(text: &str) -> Vec<(usize, usize)> {
    SECRET_VALUE
        .captures_iter(text)
        .filter_map(|c| c.get(1).or_else(|| c.get(2)).or_else(|| c.get(3)))
        .map(|m| (m.start(), m.end()))
        .collect()
}

/// A title or hint with its credentials masked (see [`SECRET_VALUE`]).
fn mask_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e) in secret_values(text) {
        out.push_str(&text[at..s]);
        out.push_str(MASK);
        at = e;
    }
    out.push_str(&text[at..]);
    out
}

/// The diagnostics of one load, in the order found.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

/// `n` and `noun`, plural unless `n` is 1: "1 error", "3 errors".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

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

    fn at(line: &str, col: usize, width: usize) -> String {
        Diagnostic {
            severity: Severity::Error,
            title: "t".into(),
            file: "f.yaml".into(),
            pos: Some(Pos { line: 3, col }),
            width,
            source_line: Some(line.into()),
            hint: None,
        }
        .to_string()
    }

    #[test]
    fn an_inline_token_is_masked_with_the_carets_under_the_mask() {
        let text = at("    token: abcdef123456", 12, 12);
        assert!(!text.contains("abcdef"), "{text}");
        assert!(
            text.contains("3 |     token: ***\n  |            ^^^\n") || text.ends_with("  |            ^^^"),
            "{text}"
        );
        // The position itself stays where the value is in the file.
        assert!(text.contains("f.yaml:3:12"), "{text}");
    }

    #[test]
    fn secret_bearing_keys_are_masked_in_block_and_flow_style_quoted_or_not() {
        for (line, secret) in [
            ("        Authorization: \"Bearer abc\"", "abc"),
            ("    headers: { Authorization: 'Bearer s3cr3t', Accept: text/html }", "s3cr3t"),
            ("    password: hunter2hunter2 # the old one", "hunter2"),
            ("  bearer_token: \"abc\\\"def\"", "def"),
            ("  - X-Api-Key: k-123456789", "k-123456789"),
            ("      Cookie: session=zz9plural", "zz9plural"),
            ("  url: https://probe:pa55word@vm.example/api/v1/write", "pa55word"),
            ("      path: /api/v1/timelines/home?access_token=tok999", "tok999"),
            ("  note: sent as Bearer tok-abcdefgh", "tok-abcdefgh"),
        ] {
            let text = at(line, 3, 1);
            assert!(!text.contains(secret), "{line} -> {text}");
            assert!(text.contains("***"), "{line} -> {text}");
        }
        // What shows where a secret is read from is not a secret.
        for line in ["    token: { env: FEDIPROBE_MAIN_TOKEN }", "    token: { file: /var/run/secrets/fediprobe/main }"]
        {
            assert!(at(line, 5, 5).contains(line), "{line}");
        }
        // Text after a masked flow value keeps its place and its carets.
        let text = at("{ token: abcdefgh, bad: x }", 20, 3);
        assert!(text.contains("{ token: ***, bad: x }\n  |               ^^^"), "{text}");
    }

    #[test]
    fn debug_and_titles_do_not_show_a_secret_either() {
        let d = Diagnostic {
            severity: Severity::Error,
            title: "`https://u:pa55word@vm` is not right".into(),
            file: "f.yaml".into(),
            pos: Some(Pos { line: 1, col: 8 }),
            width: 6,
            source_line: Some("token: abcdef".into()),
            hint: Some("not `Bearer abcdef`".into()),
        };
        for text in [format!("{d:?}"), d.to_string()] {
            assert!(!text.contains("abcdef") && !text.contains("pa55word"), "{text}");
        }
    }
}
