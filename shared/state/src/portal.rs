//! The portal record and token hashing.

use crate::item::Item;
use b24_events::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A portal (one Bitrix24 installation of the app), keyed by `member_id`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Portal {
    /// The portal's stable identifier.
    pub member_id: String,
    /// Portal address from the winning install/update event.
    pub domain: Option<String>,
    /// REST endpoint from the winning install/update event (used by the install verifier).
    pub client_endpoint: Option<String>,
    /// OAuth server endpoint.
    pub server_endpoint: Option<String>,
    /// App status (`F`, `L`, `S`, ...).
    pub app_status: Option<String>,
    /// App version.
    pub version: Option<String>,
    /// Installed (the latest app event is an install/update, not an uninstall).
    pub installed: bool,
    /// SHA-256 hex of `application_token`; empty when no token was ever stored.
    pub token_hash: String,
    /// `ts` of the winning ONAPPINSTALL/ONAPPUPDATE.
    pub installed_at: Option<i64>,
    /// `ts` of the winning ONAPPUNINSTALL.
    pub uninstalled_at: Option<i64>,
    /// Receive time (Unix seconds) of the last change.
    pub updated_at: Option<i64>,
}

impl Portal {
    /// Whether `token` is this portal's application token. Compares the hashes in constant time.
    pub fn token_matches(&self, token: &Secret) -> bool {
        if self.token_hash.is_empty() || token.is_empty() {
            return false;
        }
        let given = hash_token(token);
        given.as_bytes().ct_eq(self.token_hash.as_bytes()).into()
    }

    /// Reads a portal record (see the crate docs for its attributes).
    pub(crate) fn from_item(item: &Item) -> Option<Portal> {
        let s = |k: &str| item.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let n = |k: &str| item.get(k).and_then(|v| v.as_i64());
        Some(Portal {
            member_id: s("member_id")?,
            domain: s("domain"),
            client_endpoint: s("client_endpoint"),
            server_endpoint: s("server_endpoint"),
            app_status: s("app_status"),
            version: s("version"),
            installed: item
                .get("installed")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            token_hash: s("token_hash").unwrap_or_default(),
            installed_at: n("installed_at"),
            uninstalled_at: n("uninstalled_at"),
            updated_at: n("updated_at"),
        })
    }
}

/// SHA-256 of the token, lower-case hex. The only form in which a token is stored.
pub fn hash_token(token: &Secret) -> String {
    hex::encode(Sha256::digest(token.expose().as_bytes()))
}

/// SHA-256 hex of arbitrary bytes (idempotency keys, ranks).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn portal(hash: &str) -> Portal {
        Portal {
            member_id: "m".into(),
            domain: None,
            client_endpoint: None,
            server_endpoint: None,
            app_status: None,
            version: None,
            installed: true,
            token_hash: hash.into(),
            installed_at: None,
            uninstalled_at: None,
            updated_at: None,
        }
    }

    #[test]
    fn tokens_match_by_hash_only() {
        let t = Secret::new("831c76b092f9f135d9b6b36c3a720757");
        let h = hash_token(&t);
        assert_eq!(h.len(), 64);
        assert!(!h.contains("831c76"));
        assert!(portal(&h).token_matches(&t));
        assert!(!portal(&h).token_matches(&Secret::new("other")));
        assert!(!portal(&h).token_matches(&Secret::new("")));
        assert!(!portal("").token_matches(&Secret::new("")));
    }
}
