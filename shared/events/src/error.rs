//! [`DecodeError`] and [`Limits`].

/// Bounds on the work [`crate::decode_with`] does for one body.
///
/// Every limit is checked while scanning the body, before anything proportional to the
/// (hostile) input is built.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest body accepted, in bytes (default [`Limits::DEFAULT_MAX_BODY_BYTES`], 1 MiB).
    /// Larger bodies fail with [`DecodeError::TooLarge`] (HTTP 413) before any parsing.
    pub max_body_bytes: usize,
    /// Deepest nesting accepted (default 32): the number of key segments of a form key
    /// (`data[MESSAGES][0][im][chat_id]` is 5), or the container nesting of a JSON body
    /// (the top-level object is 1). Capped at 100 whatever is asked.
    pub max_depth: usize,
    /// Most keys accepted (default 10 000): form pairs, or JSON object entries plus array
    /// elements.
    pub max_keys: usize,
    /// Most items (`MESSAGES` / `DATA` elements) one event may carry (default
    /// [`Limits::DEFAULT_MAX_ITEMS`], 50). Real events carry one to a few; beyond the limit the
    /// event is [`DecodeError::TooManyItems`] (HTTP 413), so one event's work is bounded (and
    /// fits one DynamoDB transaction).
    pub max_items: usize,
}

impl Limits {
    /// The default body limit: 1 MiB (real events are a few KB).
    pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
    /// The default item limit per event.
    pub const DEFAULT_MAX_ITEMS: usize = 50;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: Limits::DEFAULT_MAX_BODY_BYTES,
            max_depth: 32,
            max_keys: 10_000,
            max_items: Limits::DEFAULT_MAX_ITEMS,
        }
    }
}

/// Why a body could not be decoded.
///
/// `Display` gives a one-line reason naming the field at fault (wire path, e.g.
/// `data[MESSAGES][0][im][chat_id]`). No error ever contains a value from the body, so
/// no token can leak through an error message or a log line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is larger than [`Limits::max_body_bytes`]. HTTP 413.
    #[error("body too large: {size} bytes (limit {limit})")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
        /// The body's size in bytes.
        size: usize,
    },
    /// The event carries more items than [`Limits::max_items`]. HTTP 413.
    #[error("too many items in {field}: {count} (limit {limit})")]
    TooManyItems {
        /// Wire path of the list, e.g. `data[MESSAGES]`.
        field: String,
        /// How many items it has.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The content type is neither form-urlencoded nor JSON. HTTP 415.
    #[error("unsupported content type {media_type}")]
    UnsupportedContentType {
        /// The media type (sanitized and truncated).
        media_type: String,
    },
    /// The event code is not one of the ten supported ones. HTTP 422.
    #[error("unsupported event {code}")]
    UnsupportedEvent {
        /// The code as received, upper-cased, sanitized and truncated.
        code: String,
    },
    /// The body nests deeper than [`Limits::max_depth`]. HTTP 400.
    #[error("body nested too deep (limit {limit})")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The body has more keys than [`Limits::max_keys`]. HTTP 400.
    #[error("too many keys (limit {limit})")]
    TooManyKeys {
        /// The limit.
        limit: usize,
    },
    /// The body is not well-formed JSON. HTTP 400.
    #[error("invalid JSON body at line {line} column {column}")]
    Json {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The JSON body is not an object. HTTP 400.
    #[error("JSON body is not an object")]
    NotAnObject,
    /// A required field is absent or empty. HTTP 400.
    #[error("missing {field}")]
    Missing {
        /// Wire path of the field, e.g. `auth[member_id]`.
        field: String,
    },
    /// A field is present but does not convert or is not allowed. HTTP 400.
    #[error("{}", invalid_text(field, expected))]
    Invalid {
        /// Wire path of the field, e.g. `data[MESSAGES][0][im][chat_id]`.
        field: String,
        /// What was expected: `integer`, `boolean`, `map`, `single value`, `member_id of ...`.
        expected: &'static str,
    },
}

fn invalid_text(field: &str, expected: &str) -> String {
    match expected {
        "integer" | "boolean" => format!("invalid {expected} in {field}"),
        _ => {
            let article = if expected.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            format!("invalid {field}: expected {article} {expected}")
        }
    }
}

impl DecodeError {
    /// The HTTP status a receiver should answer with: 413 too large (body or items), 415
    /// unsupported content type, 422 unsupported event, 400 everything else.
    pub fn status(&self) -> u16 {
        match self {
            DecodeError::TooLarge { .. } | DecodeError::TooManyItems { .. } => 413,
            DecodeError::UnsupportedContentType { .. } => 415,
            DecodeError::UnsupportedEvent { .. } => 422,
            DecodeError::TooDeep { .. }
            | DecodeError::TooManyKeys { .. }
            | DecodeError::Json { .. }
            | DecodeError::NotAnObject
            | DecodeError::Missing { .. }
            | DecodeError::Invalid { .. } => 400,
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
