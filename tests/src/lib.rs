//! End-to-end and reliability tests across the archiver crates (see `tests/`).
//!
//! The reliability suite is the `reliability` binary of this package:
//! `cargo run --release -p archiver-tests --bin reliability -- [--quick] [--json] [--seed S]`.
//! It runs SIGKILL loops over archive writes and profile runs, a fault storm against
//! the Graph emulator, malformed-MIME corpora, fuzzed profile TOML and fuzzed command
//! lines (against `m365-archiver` built next to it: `cargo build --release -p m365-archiver`),
//! prints a table (and one JSON document with `--json`) and exits 1 on any loss.
