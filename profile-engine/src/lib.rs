//! Archiving profiles and their runs: mailbox selection, folder filters,
//! incremental resumable runs with checkpoints, deletion rules and schedules.
//!
//! The engine is composed from the seams of the other crates and knows neither
//! Graph nor sled: [`Engine`] takes a `TokenProvider`, a `MailboxSource`, a
//! `DirectorySource`, a `UserStore`, an `ArchiveStore` and a [`CheckpointStore`].
//! A [`Profile`] (TOML, one file per profile in a [`ProfileStore`]) says what to
//! archive; [`Engine::run`] archives it and returns a [`RunReport`] (the
//! `profile run --json` shape); [`Schedule`] says when it runs by itself, and a
//! [`RunLock`] keeps one profile from running twice at once.

mod checkpoint;
mod engine;
mod error;
mod fsutil;
mod lock;
mod profile;
mod progress;
mod report;
mod schedule;

pub use checkpoint::{CheckpointStore, FolderCheckpoint, MailboxCheckpoint, WaitingMessage};
pub use engine::{Engine, EngineBuilder, EngineOptions, select_folders};
pub use error::EngineError;
pub use lock::RunLock;
pub use profile::{
    DeletionMode, DeletionRules, Filter, FolderRules, Profile, ProfileStore, RunSettings, Select,
    Source, valid_name,
};
pub use progress::{NoProgress, ProgressEvent, ProgressSink};
pub use report::{
    HistoryEntry, MailboxProbe, MailboxReport, MailboxStatus, RunHistory, RunReport, RunStatus,
    RunTotals, TestReport,
};
pub use schedule::Schedule;
pub use tokio_util::sync::CancellationToken;
