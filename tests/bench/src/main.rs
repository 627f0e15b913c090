//! Benchmarks of the archiver side by side with peers and Graph limits.
fn main() {}
