//! Pipeline crate.
