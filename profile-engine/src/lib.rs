//! Archiving profiles and their runs: mailbox selection, folder filters,
//! incremental resumable runs with checkpoints, deletion rules and schedules.
//!
//! The engine is composed from the seams of the other crates and knows neither
//! Graph nor sled.
