//! Placeholder while the image loaders land.
fn main() {}
