//! State crate.
