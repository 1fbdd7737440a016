//! Placeholder: the example adapter is being written.
fn main() {}
