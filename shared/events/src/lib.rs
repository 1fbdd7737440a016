#![doc = include_str!("../docs.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod decode;
pub mod encode;
mod error;
mod kind;
mod model;
mod secret;
mod tree;

pub use decode::{
    decode, decode_with, is_valid_connector_id, is_valid_member_id, WireFormat,
    MAX_CONNECTOR_BYTES, MAX_FIELD_BYTES, MAX_MEMBER_ID_BYTES, MAX_SCOPE_BYTES,
};
pub use error::{DecodeError, Limits};
pub use kind::{EventKind, Family};
pub use model::*;
pub use secret::Secret;
