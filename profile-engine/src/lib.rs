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
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use archive_store::MemoryArchiveStore;
//! use directory_sync::{LocalUser, MemoryUserStore, Role, UserOrigin, UserStore};
//! use m365_mailbox::MemoryMailboxSource;
//! use profile_engine::{
//!     CancellationToken, CheckpointStore, Engine, NoProgress, Profile, RunStatus, Source,
//! };
//!
//! let mail = Arc::new(MemoryMailboxSource::new());
//! mail.add_mailbox("shared@contoso.com");
//! mail.deliver("shared@contoso.com", "inbox", &b"Subject: hi\r\n\r\nhello\r\n"[..])?;
//! let users = Arc::new(MemoryUserStore::new());
//! users.put(&LocalUser {
//!     name: "alice".into(),
//!     display_name: None,
//!     email: Some("alice@contoso.com".into()),
//!     aliases: vec![],
//!     origin: UserOrigin::Manual,
//!     enabled: true,
//!     role: Role::User,
//!     has_archive: false,
//!     kind: None,
//! })?;
//! let data = tempfile::tempdir()?;
//! let engine = Engine::builder()
//!     .mailbox_source(mail)
//!     .user_store(users)
//!     .archive_store(Arc::new(MemoryArchiveStore::new()))
//!     .checkpoints(CheckpointStore::new(data.path().join("checkpoints")))
//!     .build()?;
//! let profile = Profile::new(
//!     "shared",
//!     "contoso",
//!     Source::Single { mailbox: "shared@contoso.com".into(), target_user: "alice".into() },
//! );
//! let report = engine.run(&profile, &CancellationToken::new(), &NoProgress).await?;
//! assert_eq!(report.status, RunStatus::Ok);
//! assert_eq!(report.totals.messages_archived, 1);
//! println!("{}", serde_json::to_string_pretty(&report)?);
//! # Ok(())
//! # }
//! ```

mod checkpoint;
mod engine;
mod error;
mod fsutil;
mod lock;
mod profile;
mod progress;
mod report;
mod schedule;

pub use checkpoint::{
    CheckpointStore, FailedItem, FolderCheckpoint, MailboxCheckpoint, WaitingMessage,
};
pub use directory_sync::{MailboxKind, MailboxKinds};
pub use engine::{
    Engine, EngineBuilder, EngineOptions, access_denied_advice, empty_selection_advice,
    required_permissions, select_folders, selected_mailboxes,
};
pub use error::EngineError;
pub use lock::RunLock;
pub use profile::{
    DeletionMode, DeletionRules, Filter, FolderRules, Profile, ProfileStore, RecoverableItems,
    RunSettings, Select, Source, UnreadableItems, valid_name,
};
pub use progress::{NoProgress, ProgressEvent, ProgressSink};
pub use report::{
    FailureKind, HistoryEntry, ItemFailure, MAX_LISTED_FAILURES, MailboxProbe, MailboxReport,
    MailboxStatus, RunHistory, RunReport, RunStatus, RunTotals, TestReport,
};
pub use schedule::Schedule;
pub use tokio_util::sync::CancellationToken;
