//! # b24-state
//!
//! (The full crate documentation — key design, records, transition rules, outcomes,
//! idempotency keys and limits — is in `docs.md`.)
#![doc = include_str!("../docs.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acks;
pub mod changes;
mod client;
mod dynamo;
mod error;
pub mod item;
mod memory;
mod portal;
pub mod purge;
mod registry;
pub mod schema;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transition;
pub mod vault;

pub use client::{aws_http_client, dynamodb_client, AwsEnv, Timeouts};
pub use dynamo::{from_av, item_from_av, to_av, DynamoStore};
pub use error::StoreError;
pub use memory::{MemoryStore, StreamRecord};
pub use portal::{hash_token, Portal, TokenHash};
pub use registry::{AuthCheck, PortalRegistry, DEFAULT_PORTAL_CACHE_ENTRIES};
pub use schema::{create_table, MemberId};
pub use transition::{Applied, Authorization, Context, PortalState};

/// What applying an accepted event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The event changed state.
    Applied,
    /// This very event was applied before; nothing changed.
    Duplicate,
    /// Accepted and recorded, but newer or terminal facts had already won; state unchanged.
    Stale,
}

impl Outcome {
    /// `applied`, `duplicate` or `stale`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state store the pipeline uses.
pub trait Store: Send + Sync + 'static {
    /// The portal record, if any (a consistent read).
    fn get_portal(
        &self,
        member: &MemberId,
    ) -> impl std::future::Future<Output = Result<Option<Portal>, StoreError>> + Send;

    /// Applies one event exactly once, if the portal record still matches `ctx.authorization`
    /// (checked inside the transaction).
    fn apply(
        &self,
        event: &b24_events::Event,
        ctx: &Context,
    ) -> impl std::future::Future<Output = Result<Applied, StoreError>> + Send;
}
