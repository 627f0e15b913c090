//! Service that runs scheduled archiving profiles.
fn main() {}
