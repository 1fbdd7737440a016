//! Random tokens in the shapes Bitrix24 uses, behind an optional marker prefix.

/// `prefix` + `hex_len` random lower-case hex digits (OAuth tokens: 64; `application_token`
/// and `member_id`: 32, like the real ones).
pub(crate) fn random_token(prefix: &str, hex_len: usize) -> String {
    let mut bytes = vec![0u8; hex_len.div_ceil(2)];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: still unique within the process, which is all a fake needs.
        fallback_fill(&mut bytes);
    }
    let mut out = String::with_capacity(prefix.len() + hex_len);
    out.push_str(prefix);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out.truncate(prefix.len() + hex_len);
    out
}

fn fallback_fill(bytes: &mut [u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let mut x =
        COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ std::process::id() as u64;
    for b in bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_the_prefix_and_differ() {
        let a = random_token("LEAK_", 64);
        let b = random_token("LEAK_", 64);
        assert!(a.starts_with("LEAK_") && a.len() == 69 && a != b);
        assert!(a[5..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(random_token("", 31).len(), 31);
    }
}
