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

pub use decode::{decode, decode_with, WireFormat, MAX_FIELD_BYTES};
pub use error::{DecodeError, Limits};
pub use kind::{EventKind, Family};
pub use model::*;
pub use secret::Secret;
