//! What Bitrix24 answers when something fails: `{"error", "error_description"}`, the
//! per-command [`MethodError`] of a batch, and the cleaning of every server-supplied text
//! before it goes into an error of this crate.

use serde_json::Value;

/// The error code of a rate-limited request (`limits.md`).
pub const QUERY_LIMIT_EXCEEDED: &str = "QUERY_LIMIT_EXCEEDED";

/// Longest server-supplied description kept in an error.
const MAX_DESCRIPTION_CHARS: usize = 300;
/// Longest error code kept.
const MAX_CODE_CHARS: usize = 64;
/// What a secret found in a server text is replaced with.
const REDACTED: &str = "[redacted]";

/// A method's error: one command of a batch, or a single call (then as
/// [`crate::RestError::Method`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodError {
    /// `error`, e.g. `ERROR_CORE`, `ERROR_ARGUMENT`, `ERROR_METHOD_NOT_FOUND`.
    pub code: String,
    /// `error_description` (cleaned: bounded, no secret this client sent).
    pub description: String,
}

impl MethodError {
    /// `event.bind` of an event + handler that is bound already: `ERROR_CORE` "Unable to set
    /// event handler: Handler already binded" (RU `event-bind.md`). Binding is then done.
    pub fn is_already_bound(&self) -> bool {
        let text = self.description.to_ascii_lowercase();
        self.code == "ERROR_CORE"
            && (text.contains("already binded") || text.contains("already bound"))
    }

    /// `QUERY_LIMIT_EXCEEDED` (2 requests/s per portal, burst 50): retry later.
    pub fn is_rate_limit(&self) -> bool {
        self.code == QUERY_LIMIT_EXCEEDED
    }
}

impl std::fmt::Display for MethodError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.description.is_empty() {
            f.write_str(&self.code)
        } else {
            write!(f, "{}: {}", self.code, self.description)
        }
    }
}

/// The `error`/`error_description` of an answer object, cleaned of `secrets`; `None` when
/// the value has no string `error`.
pub(crate) fn error_of(value: &Value, secrets: &[&str]) -> Option<MethodError> {
    let code = value.get("error")?.as_str()?;
    let description = value
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("");
    Some(MethodError {
        code: clean_code(code, secrets),
        description: clean(description, secrets, MAX_DESCRIPTION_CHARS),
    })
}

/// An error code as kept: the server's code when it looks like one (letters, digits, `_`,
/// `.`, `-`, at most 64), else `unrecognised`; never a secret.
pub(crate) fn clean_code(code: &str, secrets: &[&str]) -> String {
    let plausible = !code.is_empty()
        && code.chars().count() <= MAX_CODE_CHARS
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if plausible && !contains_secret(code, secrets) {
        code.to_string()
    } else {
        "unrecognised".to_string()
    }
}

/// A server text as kept in an error: every occurrence of a secret replaced, control
/// characters dropped, at most `max` characters.
pub(crate) fn clean(text: &str, secrets: &[&str], max: usize) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        if text.contains(*secret) {
            text = text.replace(*secret, REDACTED);
        }
    }
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(max).collect();
    if text.chars().filter(|c| !c.is_control()).count() > max {
        out.push('…');
    }
    out
}

fn contains_secret(text: &str, secrets: &[&str]) -> bool {
    secrets.iter().any(|s| s.len() >= 4 && text.contains(*s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn already_bound_and_rate_limit_are_recognised() {
        let bound = error_of(
            &json!({"error":"ERROR_CORE","error_description":"Unable to set event handler: Handler already binded"}),
            &[],
        )
        .unwrap();
        assert!(bound.is_already_bound() && !bound.is_rate_limit());
        let other_core = MethodError {
            code: "ERROR_CORE".into(),
            description: "Unable to set event handler: too many handlers".into(),
        };
        assert!(!other_core.is_already_bound());
        let limited = MethodError {
            code: QUERY_LIMIT_EXCEEDED.into(),
            description: "Too many requests".into(),
        };
        assert!(limited.is_rate_limit() && !limited.is_already_bound());
        assert!(error_of(&json!({"result": true}), &[]).is_none());
    }

    #[test]
    fn server_texts_lose_secrets_control_characters_and_length() {
        let secret = "tok_5ecret_value";
        let e = error_of(
            &json!({"error": "ERROR_X", "error_description": format!("bad {secret}\n{}", "x".repeat(500))}),
            &[secret],
        )
        .unwrap();
        assert!(!e.description.contains(secret) && e.description.starts_with("bad [redacted]x"));
        assert!(e.description.chars().count() <= MAX_DESCRIPTION_CHARS + 1);
        assert_eq!(clean_code(secret, &[secret]), "unrecognised");
        assert_eq!(clean_code("no such code!", &[]), "unrecognised");
        assert_eq!(clean_code("expired_token", &[secret]), "expired_token");
    }
}
