//! End-to-end and reliability tests across the archiver crates (see `tests/`).
