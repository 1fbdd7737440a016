//! [`PortalRegistry`]: authenticates events against the stored portal, with a short cache.

use crate::error::StoreError;
use crate::portal::Portal;
use crate::Store;
use b24_events::Secret;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The answer of [`PortalRegistry::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthCheck {
    /// Known, installed, and the token matches.
    Verified(Portal),
    /// No portal record for this `member_id`.
    UnknownPortal,
    /// The portal is known but uninstalled (the token is not checked).
    Uninstalled(Portal),
    /// The portal is installed but the token is missing or different.
    TokenMismatch(Portal),
}

/// Cached portal lookups for authentication. A cached record only ever short-cuts a
/// `Verified` answer: any other answer is given after re-reading the store, so a rotated
/// token or a fresh install is never refused because of a stale cache.
pub struct PortalRegistry<S: Store> {
    store: Arc<S>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Option<Portal>)>>,
}

impl<S: Store> PortalRegistry<S> {
    /// A registry over `store` whose cache entries live for `cache_ttl`.
    pub fn new(store: Arc<S>, cache_ttl: Duration) -> Self {
        PortalRegistry {
            store,
            ttl: cache_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Checks `token` for `member_id`. `None` is never `Verified`.
    pub async fn check(
        &self,
        member_id: &str,
        token: Option<&Secret>,
    ) -> Result<AuthCheck, StoreError> {
        let cached = {
            let cache = self.cache.lock().expect("portal cache lock");
            cache
                .get(member_id)
                .filter(|(at, _)| at.elapsed() < self.ttl)
                .map(|(_, p)| p.clone())
        };
        if let Some(Some(portal)) = cached {
            let verdict = judge(portal, token);
            if matches!(verdict, AuthCheck::Verified(_)) {
                return Ok(verdict);
            }
        }
        let fresh = self.store.get_portal(member_id).await?;
        self.cache
            .lock()
            .expect("portal cache lock")
            .insert(member_id.to_string(), (Instant::now(), fresh.clone()));
        Ok(match fresh {
            None => AuthCheck::UnknownPortal,
            Some(p) => judge(p, token),
        })
    }

    /// Forgets the cached record (after an install, update or uninstall was applied).
    pub fn invalidate(&self, member_id: &str) {
        self.cache
            .lock()
            .expect("portal cache lock")
            .remove(member_id);
    }
}

fn judge(portal: Portal, token: Option<&Secret>) -> AuthCheck {
    if !portal.installed {
        return AuthCheck::Uninstalled(portal);
    }
    match token {
        Some(t) if portal.token_matches(t) => AuthCheck::Verified(portal),
        _ => AuthCheck::TokenMismatch(portal),
    }
}
