//! Command line of the Microsoft 365 mail archiver.
fn main() {}
