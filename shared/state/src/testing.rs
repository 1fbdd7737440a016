//! Test support (cargo feature `testing`): a DynamoDB endpoint and a fresh table per test, and
//! ways to apply events without the pipeline.
//!
//! The endpoint is `DDB_ENDPOINT` / `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL` when set;
//! otherwise one DynamoDB Local per test process is started on 127.0.0.1 by the workspace's one
//! launcher, `b24_local` (the same one `make dev` and the scripts use), and stopped when the
//! test process ends however it ends. When DynamoDB Local is not installed it panics with the
//! fix ("run `b24-local install ddb`"): tests never skip silently.

use crate::DynamoStore;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::Client;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Region the helper configures.
pub const REGION: &str = "us-east-1";

static TABLES: AtomicU64 = AtomicU64::new(0);

/// The DynamoDB endpoint for tests, starting DynamoDB Local on demand.
pub fn endpoint() -> String {
    b24_local::shared_ddb_endpoint()
}

/// Environment for a child process (a function binary, the CLI) that must use the same
/// DynamoDB: endpoint, dummy credentials and region.
pub fn env_vars() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_ACCESS_KEY_ID", "dummy".into()),
        ("AWS_SECRET_ACCESS_KEY", "dummy".into()),
        ("AWS_REGION", REGION.into()),
    ]
}

/// An SDK client for the test endpoint with dummy credentials (no environment needed).
pub fn client() -> Client {
    client_at(&endpoint())
}

/// An SDK client for `endpoint` with the test credentials.
pub fn client_at(endpoint: &str) -> Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            "dummy",
            "dummy",
            None,
            None,
            "b24-state-testing",
        ))
        .endpoint_url(endpoint)
        .timeout_config(crate::Timeouts::WEBHOOK.config())
        .build();
    Client::from_conf(conf)
}

/// A new, empty table with the production schema; its name is unique to this call.
pub async fn fresh_table(client: &Client) -> String {
    let name = format!(
        "t-{}-{}-{:08x}",
        std::process::id(),
        TABLES.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    );
    crate::create_table(client, &name)
        .await
        .unwrap_or_else(|e| panic!("creating test table {name}: {e}"));
    name
}

/// A [`DynamoStore`] on a fresh table.
pub async fn fresh_store() -> DynamoStore {
    let client = client();
    let table = fresh_table(&client).await;
    DynamoStore::new(client, table)
}

// ---------------------------------------------------------------------------------------------
// Applying events in tests without the pipeline's authentication.

/// Stores whose records tests can write directly.
pub trait RawStore: crate::Store {
    /// Puts `item` as is (it must carry `pk` and `sk`).
    fn put_raw(
        &self,
        item: crate::item::Item,
    ) -> impl std::future::Future<Output = Result<(), crate::StoreError>> + Send;
}

impl RawStore for crate::MemoryStore {
    async fn put_raw(&self, item: crate::item::Item) -> Result<(), crate::StoreError> {
        self.insert(item);
        Ok(())
    }
}

impl RawStore for DynamoStore {
    async fn put_raw(&self, item: crate::item::Item) -> Result<(), crate::StoreError> {
        self.client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(
                item.iter()
                    .map(|(k, v)| (k.clone(), crate::to_av(v)))
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| crate::StoreError::from_sdk("PutItem", e))?;
        Ok(())
    }
}

/// Applies `event` received at `now` the way an accepting pipeline would, trusting every
/// install (as if it had been verified): installs register or replace the portal; any other
/// event of an unknown portal first gets a portal record installed with its token, written
/// directly (no event record), so transition tests need no install events. An event of a
/// portal that is not installed with its token is tried as a stale cache would (and refused by
/// the portal check, [`crate::Applied::Unauthorized`], unless it is a duplicate).
pub async fn apply_trusted<S: RawStore>(
    store: &S,
    event: &b24_events::Event,
    now: i64,
    ttl_days: i64,
) -> Result<crate::Applied, crate::StoreError> {
    use crate::{Authorization, MemberId, PortalState, TokenHash};
    use b24_events::EventKind;
    let member = MemberId::new(&event.auth.member_id)?;
    let token_hash = TokenHash::of(event.auth.application_token.as_ref()).ok_or_else(|| {
        crate::StoreError::Invalid {
            operation: "test",
            cause: "event without application_token".into(),
        }
    })?;
    let portal = store.get_portal(&member).await?;
    let installs = matches!(event.kind(), EventKind::AppInstall | EventKind::AppUpdate);
    let matches = portal
        .as_ref()
        .is_some_and(|p| p.installed && p.hash_matches(&token_hash));
    let authorization = match (&portal, installs, matches) {
        (_, _, true) => Authorization::Installed {
            token_hash,
            epoch: portal.as_ref().map_or(0, |p| p.epoch),
        },
        (None, true, _) => Authorization::Register { token_hash },
        (Some(p), true, false) => Authorization::Replace {
            token_hash,
            from: PortalState {
                token_hash: p.token_hash.clone(),
                installed: p.installed,
                epoch: p.epoch,
            },
        },
        (Some(p), false, false) => Authorization::Installed {
            // As the pipeline would try it from a stale cache: refused by the portal check
            // unless the event is a duplicate.
            token_hash,
            epoch: p.epoch,
        },
        (None, false, false) => {
            let epoch = 1;
            let mut item = crate::item::Item::new();
            let key = crate::schema::portal_key(&member);
            item.insert("pk".into(), key.pk.into());
            item.insert("sk".into(), key.sk.into());
            item.insert("record_type".into(), "portal".into());
            item.insert("member_id".into(), member.as_str().into());
            item.insert("installed".into(), true.into());
            item.insert("token_hash".into(), token_hash.as_str().into());
            item.insert("epoch".into(), epoch.into());
            store.put_raw(item).await?;
            Authorization::Installed { token_hash, epoch }
        }
    };
    let ctx = crate::Context {
        member,
        authorization,
        received_at: now,
        event_ttl_days: ttl_days,
        verified_client_endpoint: None,
    };
    store.apply(event, &ctx).await
}

/// Runs the pending purges of `member` to completion in steps of at most `per_step` deletes;
/// returns the number of steps.
pub async fn run_purges<S>(
    store: &S,
    member: &str,
    per_step: usize,
) -> Result<usize, crate::StoreError>
where
    S: crate::transition::Backend + crate::purge::PagedQuery,
{
    let member = crate::MemberId::new(member)?;
    crate::purge::run_pending(store, &member, per_step, Duration::from_secs(60)).await
}

/// A second [`DynamoStore`] handle on an existing test table (same endpoint).
pub fn fresh_store_on(table: &str) -> DynamoStore {
    DynamoStore::new(client(), table)
}
