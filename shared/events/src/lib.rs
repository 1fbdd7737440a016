//! # b24-events
//!
//! Decodes Bitrix24 Open Lines connector webhooks and app lifecycle webhooks into a typed
//! [`Event`]. Pure Rust: no AWS, no async runtime, no I/O.
//!
//! (Crate docs, the normalized schema v1 and the limits are written in `docs.md`.)
#![doc = include_str!("../docs.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod kind;
mod model;
mod secret;

pub use kind::{EventKind, Family};
pub use model::*;
pub use secret::Secret;
