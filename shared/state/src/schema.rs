//! The table schema and the key design, defined once.
//!
//! `template.yaml` must agree with [`table_spec`]; a workspace test compares them.

use crate::error::StoreError;
use crate::item::Key;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification,
};
use std::time::Duration;

/// Partition key attribute (S).
pub const PARTITION_KEY: &str = "pk";
/// Sort key attribute (S).
pub const SORT_KEY: &str = "sk";
/// TTL attribute (N, Unix seconds). Only event records carry it.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// The environment variable that names the table.
pub const TABLE_NAME_ENV: &str = "TABLE_NAME";
/// Stream view type of the table.
pub const STREAM_VIEW_TYPE: &str = "NEW_AND_OLD_IMAGES";
/// Billing mode of the table.
pub const BILLING_MODE: &str = "PAY_PER_REQUEST";
/// How many partitions one portal's message records are spread over, by `im.chat_id`: all
/// messages of one Bitrix24 chat share a partition, so the table's stream (and the change feed
/// after it) hands their changes over in commit order.
pub const MESSAGE_SHARDS: u32 = 8;
/// How many partitions one portal's event records are spread over (by idempotency key).
pub const EVENT_SHARDS: u32 = 8;

/// One key attribute: name and DynamoDB scalar type (`S`, `N`, `B`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyAttribute {
    /// Attribute name.
    pub name: &'static str,
    /// Scalar type: `S`, `N` or `B`.
    pub attribute_type: &'static str,
}

/// Everything about the table that `template.yaml` must repeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSpec {
    /// HASH key.
    pub partition_key: KeyAttribute,
    /// RANGE key.
    pub sort_key: KeyAttribute,
    /// Every attribute definition (the key attributes; the table has no indexes).
    pub attribute_definitions: Vec<KeyAttribute>,
    /// The TTL attribute.
    pub ttl_attribute: &'static str,
    /// `NEW_AND_OLD_IMAGES`.
    pub stream_view_type: &'static str,
    /// `PAY_PER_REQUEST`.
    pub billing_mode: &'static str,
    /// Point-in-time recovery must be on (template only; DynamoDB Local ignores it).
    pub point_in_time_recovery: bool,
    /// Server-side encryption must be on (template only).
    pub sse_enabled: bool,
}

/// The table's specification.
pub fn table_spec() -> TableSpec {
    let pk = KeyAttribute {
        name: PARTITION_KEY,
        attribute_type: "S",
    };
    let sk = KeyAttribute {
        name: SORT_KEY,
        attribute_type: "S",
    };
    TableSpec {
        partition_key: pk.clone(),
        sort_key: sk.clone(),
        attribute_definitions: vec![pk, sk],
        ttl_attribute: TTL_ATTRIBUTE,
        stream_view_type: STREAM_VIEW_TYPE,
        billing_mode: BILLING_MODE,
        point_in_time_recovery: true,
        sse_enabled: true,
    }
}

/// The key schema as SDK values.
pub fn key_schema() -> Vec<KeySchemaElement> {
    let spec = table_spec();
    vec![
        KeySchemaElement::builder()
            .attribute_name(spec.partition_key.name)
            .key_type(KeyType::Hash)
            .build()
            .expect("key schema element"),
        KeySchemaElement::builder()
            .attribute_name(spec.sort_key.name)
            .key_type(KeyType::Range)
            .build()
            .expect("key schema element"),
    ]
}

/// The attribute definitions as SDK values.
pub fn attribute_definitions() -> Vec<AttributeDefinition> {
    table_spec()
        .attribute_definitions
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(a.name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type))
                .build()
                .expect("attribute definition")
        })
        .collect()
}

/// The stream specification as an SDK value.
pub fn stream_specification() -> StreamSpecification {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::from(STREAM_VIEW_TYPE))
        .build()
        .expect("stream specification")
}

/// The billing mode as an SDK value.
pub fn billing_mode() -> BillingMode {
    BillingMode::from(BILLING_MODE)
}

// ---------------------------------------------------------------------------------------------
// Keys. Every record of a portal lives in one of the partitions `portal_partitions` lists, so a
// portal's data is reachable by Query only (never Scan). Keys are built only from a validated
// [`MemberId`] and integers (plus validated connector IDs), so no input can contain the `#`
// separator and reach another portal's partitions.

/// A validated portal identifier: 1–64 characters of `[0-9a-z_-]` (real ones are 32 lower-case
/// hex). The only way to build a portal's keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(String);

impl MemberId {
    /// Validates `id` (see [`b24_events::is_valid_member_id`]).
    pub fn new(id: &str) -> Result<MemberId, StoreError> {
        if b24_events::is_valid_member_id(id) {
            Ok(MemberId(id.to_string()))
        } else {
            Err(StoreError::Invalid {
                operation: "keys",
                cause: "member_id must be 1 to 64 characters from [0-9a-z_-]".into(),
            })
        }
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Sort key of the record of what binding the stack's events on the portal did.
pub const BINDINGS_SK: &str = "BINDINGS";

/// Partition of the portal record, its lines/connectors, its dialog sessions and purge markers.
pub fn portal_pk(member_id: &MemberId) -> String {
    format!("PORTAL#{member_id}")
}

/// Partition of a message record: by its Bitrix24 chat (`im.chat_id`), see [`MESSAGE_SHARDS`].
pub fn message_pk(member_id: &MemberId, chat_id: i64) -> String {
    format!(
        "PORTAL#{member_id}#MSG#{}",
        chat_id.rem_euclid(MESSAGE_SHARDS as i64)
    )
}

/// Partition of an event record (shard = first byte of the key hash).
pub fn event_pk(member_id: &MemberId, key_hash: &str) -> String {
    let shard = u32::from_str_radix(key_hash.get(..2).unwrap_or("00"), 16).unwrap_or(0);
    format!("PORTAL#{member_id}#EVENT#{}", shard % EVENT_SHARDS)
}

/// Every partition that can hold records of `member_id`.
pub fn portal_partitions(member_id: &MemberId) -> Vec<String> {
    let mut v = vec![portal_pk(member_id)];
    v.extend((0..MESSAGE_SHARDS).map(|s| format!("PORTAL#{member_id}#MSG#{s}")));
    v.extend((0..EVENT_SHARDS).map(|s| format!("PORTAL#{member_id}#EVENT#{s}")));
    v
}

/// Sort key of the portal record.
pub const PORTAL_SK: &str = "PORTAL";

/// The portal record's key.
pub fn portal_key(member_id: &MemberId) -> Key {
    Key {
        pk: portal_pk(member_id),
        sk: PORTAL_SK.to_string(),
    }
}

/// Sort key of a line record (zero-padded so lines sort numerically).
pub fn line_sk(line: i64) -> String {
    format!("LINE#{line:012}")
}

/// Sort key of a connector-on-a-line record. `connector` is a validated, lower-cased connector
/// ID (no `#`).
pub fn connector_sk(line: i64, connector: &str) -> String {
    format!("LINE#{line:012}#CONNECTOR#{connector}")
}

/// Sort key of a dialog session record.
pub fn session_sk(session_id: i64) -> String {
    format!("SESSION#{session_id:012}")
}

/// Sort key of a message record.
pub fn message_sk(message_id: i64) -> String {
    format!("MSG#{message_id:012}")
}

/// Sort key of an event record.
pub fn event_sk(key_hash: &str) -> String {
    format!("EVENT#{key_hash}")
}

/// Sort key of the purge marker of one portal epoch (ONAPPUNINSTALL with `CLEAN=1`).
pub fn purge_sk(epoch: i64) -> String {
    format!("PURGE#{epoch:012}")
}

/// The record types a portal's partitions hold (`record_type` attribute).
pub mod record_type {
    /// The portal record.
    pub const PORTAL: &str = "portal";
    /// A connector on a line.
    pub const CONNECTOR: &str = "connector";
    /// A deleted line.
    pub const LINE: &str = "line";
    /// A dialog session.
    pub const SESSION: &str = "session";
    /// A message.
    pub const MESSAGE: &str = "message";
    /// An event (idempotency) record.
    pub const EVENT: &str = "event";
    /// A purge marker.
    pub const PURGE: &str = "purge";
    /// The portal's sealed OAuth tokens (`vault`).
    pub const TOKENS: &str = "tokens";
    /// The result of binding the stack's events on the portal.
    pub const BINDINGS: &str = "bindings";
}

// ---------------------------------------------------------------------------------------------

/// Creates the table if it does not exist, waits until it is ACTIVE (polling `DescribeTable`
/// itself: the SDK waiter's first poll comes after 20 s), and enables TTL. Idempotent.
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), StoreError> {
    let created = client
        .create_table()
        .table_name(table)
        .set_key_schema(Some(key_schema()))
        .set_attribute_definitions(Some(attribute_definitions()))
        .billing_mode(billing_mode())
        .stream_specification(stream_specification())
        .send()
        .await;
    if let Err(e) = created {
        let exists = e
            .as_service_error()
            .is_some_and(|s| s.is_resource_in_use_exception());
        if !exists {
            return Err(StoreError::from_sdk("CreateTable", e));
        }
    }
    let mut delay = Duration::from_millis(50);
    for _ in 0..200 {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("DescribeTable", e))?;
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            break;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| StoreError::from_sdk("DescribeTimeToLive", e))?;
    let enabled = ttl.time_to_live_description().is_some_and(|d| {
        d.attribute_name() == Some(TTL_ATTRIBUTE)
            && matches!(
                d.time_to_live_status(),
                Some(aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled)
                    | Some(aws_sdk_dynamodb::types::TimeToLiveStatus::Enabling)
            )
    });
    if !enabled {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .expect("ttl specification"),
            )
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("UpdateTimeToLive", e))?;
    }
    Ok(())
}
