//! [`Secret`]: a token that never leaves the process by accident.

use std::fmt;

/// An OAuth or application token from the `auth` block.
///
/// `Debug` and `Display` print `[redacted]`, and the type implements no `Serialize`, so a
/// token cannot end up in a log line, an error message, the normalized JSON or an archive by
/// accident. Code that really needs the value (the authentication step comparing
/// `application_token`, the install verifier calling `app.info`) calls [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The token itself. Every caller is a place where a secret is handled on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the token is the empty string (PHP sends `null` as an empty value).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("831c76b092f9f135d9b6b36c3a720757");
        assert!(!format!("{s:?}").contains("831c76"));
        assert!(!format!("{s}").contains("831c76"));
        assert_eq!(s.expose(), "831c76b092f9f135d9b6b36c3a720757");
    }
}
