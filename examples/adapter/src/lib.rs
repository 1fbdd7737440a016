//! An example adapter for the change feed: reads `b24.change.v1` events from the SQS FIFO
//! queue `changes.fifo`, delivers operator messages (`message.created/edited/deleted`) to a
//! stand-in customer channel, sends a `b24.ack.v1` delivery ack per delivered new or edited
//! message to the stack's acks queue, handles the other changes, deduplicates by change id and keeps per-chat
//! order. Copy it and replace [`channel::JsonlChannel`] with your messenger (README).

pub mod ack;
pub mod adapter;
pub mod channel;
pub mod config;
pub mod dedup;

pub use ack::{delivery_ack, is_acked, Ack, AckSink, NoAck};
pub use adapter::{Adapter, Batch};
pub use channel::{Channel, DeliveryError, JsonlChannel};
