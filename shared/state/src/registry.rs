//! [`PortalRegistry`]: reads portal records for authentication, with a small bounded cache.
//!
//! The cache is only a fast path: every event is applied with a check of the portal record
//! inside its own transaction, so a cached record can never make a revoked token, an
//! uninstalled or a purged portal's event land. It holds installed portals only (an unknown or
//! uninstalled `member_id` is never cached, so a flood of them costs no memory), at most
//! [`DEFAULT_PORTAL_CACHE_ENTRIES`] of them (least recently used evicted first), each for at
//! most the configured age.

use crate::error::StoreError;
use crate::portal::{Portal, TokenHash};
use crate::schema::MemberId;
use crate::Store;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Default number of portals kept in memory per function instance.
pub const DEFAULT_PORTAL_CACHE_ENTRIES: usize = 4096;

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

/// Portal lookups for authentication.
pub struct PortalRegistry<S: Store> {
    store: Arc<S>,
    ttl: Duration,
    cache: Mutex<LruCache<MemberId, (Instant, Portal)>>,
}

impl<S: Store> PortalRegistry<S> {
    /// A registry over `store` whose cache keeps at most `capacity` installed portals, each
    /// for at most `cache_ttl` (0 disables the cache).
    pub fn new(store: Arc<S>, cache_ttl: Duration, capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        PortalRegistry {
            store,
            ttl: cache_ttl,
            cache: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn cache(&self) -> MutexGuard<'_, LruCache<MemberId, (Instant, Portal)>> {
        // A poisoned lock only means another request panicked while holding it; the map
        // itself is still consistent.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks `token` for `member`: a cached installed portal whose token matches answers at
    /// once; any other answer is given after a consistent read, so a rotated token or a fresh
    /// install is never refused because of a stale cache.
    pub async fn check(
        &self,
        member: &MemberId,
        token: Option<&TokenHash>,
    ) -> Result<AuthCheck, StoreError> {
        if let Some(t) = token {
            let cached = {
                let mut cache = self.cache();
                match cache.get(member) {
                    Some((at, p)) if at.elapsed() < self.ttl => Some(p.clone()),
                    Some(_) => {
                        cache.pop(member);
                        None
                    }
                    None => None,
                }
            };
            if let Some(portal) = cached {
                if portal.hash_matches(t) {
                    return Ok(AuthCheck::Verified(portal));
                }
            }
        }
        Ok(match self.read(member).await? {
            None => AuthCheck::UnknownPortal,
            Some(p) => judge(p, token),
        })
    }

    /// Reads the portal record (consistent read) and refreshes the cache with it.
    pub async fn read(&self, member: &MemberId) -> Result<Option<Portal>, StoreError> {
        let fresh = self.store.get_portal(member).await?;
        let mut cache = self.cache();
        match &fresh {
            Some(p) if p.installed && !self.ttl.is_zero() => {
                cache.put(member.clone(), (Instant::now(), p.clone()));
            }
            _ => {
                cache.pop(member);
            }
        }
        Ok(fresh)
    }

    /// Forgets the cached record (after the portal was written, or a check failed in a
    /// transaction).
    pub fn invalidate(&self, member: &MemberId) {
        self.cache().pop(member);
    }

    /// How many portals are cached (for tests and metrics).
    pub fn cached_len(&self) -> usize {
        self.cache().len()
    }
}

fn judge(portal: Portal, token: Option<&TokenHash>) -> AuthCheck {
    if !portal.installed {
        return AuthCheck::Uninstalled(portal);
    }
    match token {
        Some(t) if portal.hash_matches(t) => AuthCheck::Verified(portal),
        _ => AuthCheck::TokenMismatch(portal),
    }
}
