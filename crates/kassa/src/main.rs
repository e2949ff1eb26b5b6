//! The kassa binary (being written).
fn main() {}
