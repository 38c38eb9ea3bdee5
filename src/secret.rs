//! Secrets (access tokens, remote-write passwords) and the one rule about them:
//! they never reach a log line, an error message, a metric label or `--output json`.
//!
//! A [`Secret`] only hands out its value through [`Secret::expose`], which callers
//! use at the single point where the value goes on the wire (an `Authorization`
//! header). `Debug` and `Display` print a fixed placeholder, so a secret that ends up
//! inside a logged struct or an error by accident still shows nothing.

use std::fmt;

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value. Surrounding whitespace (a trailing newline in a token file)
    /// is removed, since no real token contains it.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        Secret(value.trim().to_owned())
    }

    /// The value itself, for the one place it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (an empty token file, an empty variable).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new("tok-123456\n");
        assert_eq!(secret.expose(), "tok-123456");
        assert!(!format!("{secret:?}").contains("tok-123456"));
        assert!(!format!("{secret}").contains("tok-123456"));
        assert!(!format!("{:?}", Some(&secret)).contains("tok-123456"));
    }
}
