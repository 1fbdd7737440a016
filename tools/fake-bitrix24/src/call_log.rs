//! The call log's redaction: no token or secret is ever stored in a record.

use serde_json::Value;

/// What a redacted secret reads as.
pub const REDACTED: &str = "[token]";

/// Parameter names whose values are always secrets.
const SECRET_KEYS: &[&str] = &[
    "auth",
    "access_token",
    "refresh_token",
    "client_secret",
    "application_token",
    "code",
];

/// Shortest secret replaced wherever it occurs in a string (shorter ones only by key name,
/// lest a one-letter secret garble every text).
const MIN_SCANNED_SECRET: usize = 8;

/// Replaces secrets in `value`: values of [`SECRET_KEYS`] entirely, and every occurrence of
/// any of `secrets` inside any string (e.g. a token inside a `batch` command).
pub(crate) fn redact(value: &mut Value, secrets: &[&str]) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let secret_key = SECRET_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k));
                if secret_key && !matches!(item, Value::Object(_) | Value::Array(_)) {
                    *item = Value::String(REDACTED.into());
                } else {
                    redact(item, secrets);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| redact(item, secrets)),
        Value::String(s) => {
            for secret in secrets {
                if secret.len() >= MIN_SCANNED_SECRET && s.contains(secret) {
                    *s = s.replace(secret, REDACTED);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_by_key_and_by_value() {
        let mut v = json!({"auth":"tok_1234567890","cmd":{"a":"app.info?auth=tok_1234567890"},
            "AUTH":{"access_token":"x"},"LINE":"107","client_secret":"s"});
        redact(&mut v, &["tok_1234567890"]);
        assert_eq!(
            v,
            json!({"auth":"[token]","cmd":{"a":"app.info?auth=[token]"},
                "AUTH":{"access_token":"[token]"},"LINE":"107","client_secret":"[token]"})
        );
    }
}
