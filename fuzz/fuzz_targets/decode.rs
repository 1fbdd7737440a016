//! Fuzz target: any bytes, under any of the content types a receiver may see, must decode to
//! an event or an error — never a panic, a hang or unbounded memory. A decoded event must
//! serialize, and its PHP form must decode back to the same event.
#![no_main]

use b24_events::{decode, decode_with, encode, EventKind, Limits};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some("application/x-www-form-urlencoded"),
    Some("application/x-www-form-urlencoded; charset=UTF-8"),
    Some("application/json"),
    Some("APPLICATION/JSON; charset=utf-8"),
    Some("text/plain"),
];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[selector as usize % CONTENT_TYPES.len()];
    let result = if selector & 0x80 != 0 {
        // Tight limits exercise the limit paths.
        let limits = Limits {
            max_body_bytes: 4096,
            max_depth: 6,
            max_keys: 64,
            max_items: 3,
        };
        decode_with(body, content_type, &limits)
    } else {
        decode(body, content_type)
    };
    match result {
        Ok(event) => {
            // The kind is the data's variant; its code and family are consistent.
            let kind = event.kind();
            assert_eq!(kind, event.data.kind());
            assert_eq!(kind.family(), event.family());
            assert_eq!(EventKind::from_code(kind.code()), Some(kind));
            let json = event.to_json();
            assert_eq!(json["event"], kind.code());
            let form = encode::php_form(&encode::wire_json(&event));
            // Re-encoding may grow a body (raw UTF-8 becomes %XX): no body limit for the
            // round trip, every other limit as by default.
            let unbounded = Limits {
                max_body_bytes: usize::MAX,
                ..Limits::default()
            };
            let back =
                decode_with(form.as_bytes(), None, &unbounded).expect("our own encoding decodes");
            assert_eq!(back, event);
        }
        Err(e) => {
            let _ = (e.to_string(), e.status());
        }
    }
});
