//! The portal record and token hashing.

use crate::item::Item;
use b24_events::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of an `application_token`, lower-case hex: the only form in which a token is stored
/// or handed between functions (parked events carry it, the redrive compares it).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    /// Hashes a presented token; `None` for a missing or empty token (never authenticates).
    pub fn of(token: Option<&Secret>) -> Option<TokenHash> {
        token
            .filter(|t| !t.is_empty())
            .map(|t| TokenHash(hash_token(t)))
    }

    /// A hash as stored or carried (64 lower-case hex characters); `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<TokenHash> {
        (hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| TokenHash(hex.to_string()))
    }

    /// The hex form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a stored hash (an empty stored hash never matches).
    pub fn matches(&self, stored: &str) -> bool {
        !stored.is_empty() && bool::from(self.0.as_bytes().ct_eq(stored.as_bytes()))
    }
}

impl serde::Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(d)?;
        TokenHash::from_hex(&hex)
            .ok_or_else(|| serde::de::Error::custom("not a SHA-256 hex token hash"))
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A hash is not the token, but it is kept out of logs anyway.
        write!(f, "TokenHash({}…)", &self.0[..8.min(self.0.len())])
    }
}

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
    /// The installation generation: 1 at the first install, +1 at every accepted token change
    /// or reinstall. Every record written for the portal carries the epoch it was written
    /// under, so a purge removes exactly the records of the uninstalled generation.
    pub epoch: i64,
    /// `ts` of the winning ONAPPINSTALL/ONAPPUPDATE.
    pub installed_at: Option<i64>,
    /// `ts` of the winning ONAPPUNINSTALL.
    pub uninstalled_at: Option<i64>,
    /// The epoch whose records a `CLEAN=1` uninstall asked to purge.
    pub purge_epoch: Option<i64>,
    /// Receive time (Unix seconds) of the last change.
    pub updated_at: Option<i64>,
}

impl Portal {
    /// Whether `token` is this portal's application token. Compares the hashes in constant time.
    pub fn token_matches(&self, token: &Secret) -> bool {
        TokenHash::of(Some(token)).is_some_and(|h| h.matches(&self.token_hash))
    }

    /// Whether the presented hash is this portal's token hash (constant time).
    pub fn hash_matches(&self, hash: &TokenHash) -> bool {
        hash.matches(&self.token_hash)
    }

    /// Reads a portal record (see the crate docs for its attributes).
    pub fn from_item(item: &Item) -> Option<Portal> {
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
            epoch: n("epoch").unwrap_or(0),
            installed_at: n("installed_at"),
            uninstalled_at: n("uninstalled_at"),
            purge_epoch: n("purge_epoch"),
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
            installed: true,
            token_hash: hash.into(),
            ..Portal::default()
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
        assert!(TokenHash::of(Some(&Secret::new(""))).is_none());
        assert_eq!(TokenHash::from_hex(&h).unwrap().as_str(), h);
        assert!(TokenHash::from_hex("ABC").is_none());
        assert!(!format!("{:?}", TokenHash::from_hex(&h).unwrap()).contains(&h));
    }
}
