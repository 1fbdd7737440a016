//! [`DecodeError`] and [`Limits`].

use std::fmt;

/// Bounds on the work [`crate::decode_with`] does for one body.
///
/// Every limit is checked while scanning the body, before anything proportional to the
/// (hostile) input is built.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest body accepted, in bytes (default 1 MiB). Larger bodies fail with
    /// [`DecodeError::TooLarge`] (HTTP 413) before any parsing.
    pub max_body_bytes: usize,
    /// Deepest nesting accepted (default 32): the number of key segments of a form key
    /// (`data[MESSAGES][0][im][chat_id]` is 5), or the container nesting of a JSON body
    /// (the top-level object is 1). Capped at 100 whatever is asked.
    pub max_depth: usize,
    /// Most keys accepted (default 10 000): form pairs, or JSON object entries plus array
    /// elements.
    pub max_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_depth: 32,
            max_keys: 10_000,
        }
    }
}

/// Why a body could not be decoded.
///
/// `Display` gives a one-line reason naming the field at fault (wire path, e.g.
/// `data[MESSAGES][0][im][chat_id]`). No error ever contains a value from the body, so
/// no token can leak through an error message or a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is larger than [`Limits::max_body_bytes`]. HTTP 413.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
        /// The body's size in bytes.
        size: usize,
    },
    /// The content type is neither form-urlencoded nor JSON. HTTP 415.
    UnsupportedContentType {
        /// The media type (sanitized and truncated).
        media_type: String,
    },
    /// The event code is not one of the ten supported ones. HTTP 422.
    UnsupportedEvent {
        /// The code as received, upper-cased, sanitized and truncated.
        code: String,
    },
    /// The body nests deeper than [`Limits::max_depth`]. HTTP 400.
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The body has more keys than [`Limits::max_keys`]. HTTP 400.
    TooManyKeys {
        /// The limit.
        limit: usize,
    },
    /// The body is not well-formed JSON. HTTP 400.
    Json {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The JSON body is not an object. HTTP 400.
    NotAnObject,
    /// A required field is absent or empty. HTTP 400.
    Missing {
        /// Wire path of the field, e.g. `auth[member_id]`.
        field: String,
    },
    /// A field is present but does not convert. HTTP 400.
    Invalid {
        /// Wire path of the field, e.g. `data[MESSAGES][0][im][chat_id]`.
        field: String,
        /// What was expected: `integer`, `boolean`, `list`, `map`, `single value`.
        expected: &'static str,
    },
}

impl DecodeError {
    /// The HTTP status a receiver should answer with: 413 too large, 415 unsupported content
    /// type, 422 unsupported event, 400 everything else.
    pub fn status(&self) -> u16 {
        match self {
            DecodeError::TooLarge { .. } => 413,
            DecodeError::UnsupportedContentType { .. } => 415,
            DecodeError::UnsupportedEvent { .. } => 422,
            _ => 400,
        }
    }

    pub(crate) fn missing(field: &str) -> Self {
        DecodeError::Missing {
            field: field.to_owned(),
        }
    }

    pub(crate) fn invalid(field: &str, expected: &'static str) -> Self {
        DecodeError::Invalid {
            field: field.to_owned(),
            expected,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge { limit, size } => {
                write!(f, "body too large: {size} bytes (limit {limit})")
            }
            DecodeError::UnsupportedContentType { media_type } => {
                write!(f, "unsupported content type {media_type}")
            }
            DecodeError::UnsupportedEvent { code } => write!(f, "unsupported event {code}"),
            DecodeError::TooDeep { limit } => write!(f, "body nested too deep (limit {limit})"),
            DecodeError::TooManyKeys { limit } => write!(f, "too many keys (limit {limit})"),
            DecodeError::Json { line, column } => {
                write!(f, "invalid JSON body at line {line} column {column}")
            }
            DecodeError::NotAnObject => f.write_str("JSON body is not an object"),
            DecodeError::Missing { field } => write!(f, "missing {field}"),
            DecodeError::Invalid { field, expected } => {
                let article = if expected.starts_with(['a', 'e', 'i', 'o', 'u']) {
                    "an"
                } else {
                    "a"
                };
                match *expected {
                    "integer" | "boolean" => write!(f, "invalid {expected} in {field}"),
                    _ => write!(f, "invalid {field}: expected {article} {expected}"),
                }
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Keeps only `[A-Za-z0-9_.+/-]`, upper- or lower-cases nothing, truncates to 64 characters.
pub(crate) fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '/' | '-'))
        .take(64)
        .collect();
    if out.is_empty() {
        out.push_str("(empty)");
    }
    out
}
