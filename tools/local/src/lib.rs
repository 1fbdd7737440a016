//! `b24-local`: the repository's local AWS stand-ins, for development and tests only.
//!
//! - [`ddb`]: the official DynamoDB Local on 127.0.0.1 ([`DynamoDbLocal`], [`install_ddb`],
//!   [`shared_ddb_endpoint`]);
//! - [`moto`]: moto's server for SQS, EventBridge, KMS, SSM and Secrets Manager ([`Moto`],
//!   [`install_moto`], [`shared_moto_endpoint`]);
//! - [`runner`]: Lambda's SQS and DynamoDB Streams event source mappings, played locally
//!   against `cargo lambda watch`'s invoke API (or an in-process [`runner::Invoker`]);
//! - [`aws`]: SDK clients built from environment variables.
//!
//! Every server listens on 127.0.0.1 only, is started and stopped by this crate and dies with
//! the process that started it, however that process ends (a watchdog, see `process.rs`).
//! The repository root (for `.tools/` and `.venv-moto/`) is `B24_ROOT` or `tools/local/../..`.

pub mod aws;
pub mod ddb;
mod error;
pub mod moto;
mod net;
mod process;
mod root;
pub mod runner;
mod server;
mod stream_repair;
mod util;

pub use ddb::{install_ddb, shared_ddb_endpoint, DdbOptions, DynamoDbLocal};
pub use error::LocalError;
pub use moto::{install_moto, shared_moto_endpoint, Moto};
pub use net::free_port;
pub use root::repo_root;
