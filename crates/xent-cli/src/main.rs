//! The `xent` command-line tool.
fn main() {}
