//! The engine: runs a profile over the seams (`TokenProvider`, `MailboxSource`,
//! `DirectorySource`, `UserStore`, `ArchiveStore`) and the checkpoint store.
//!
//! Per mailbox: probe, folder tree, then per folder one delta round through a
//! bounded pipeline (events are pulled only while fewer than
//! `downloads_per_mailbox` messages are in hand; archive writes run on the blocking
//! pool), so memory stays bounded whatever the tenant size. A folder's cursor is
//! saved only after every message of its round is durably archived: a run killed
//! anywhere resumes from the previous cursor, and the archive's `find_source`
//! recognises what was already archived, so nothing is downloaded or recorded twice.
//!
//! Files: `run` (a run and a test of a profile), `select` (mailboxes and folders),
//! `mailbox` (one mailbox's run), `folder` (one folder's delta round and waiting
//! list), `message` (one message's pipeline), `delete` (deletion rules and the
//! check before a deletion).

use std::path::PathBuf;
use std::sync::Arc;

use archive_store::ArchiveStore;
use chrono::{DateTime, Utc};
use directory_sync::{DirectorySource, UserStore};
use m365_auth::TokenProvider;
use m365_mailbox::MailboxSource;
use retention::GovernanceStore;
use tokio::task::JoinError;

use crate::checkpoint::CheckpointStore;
use crate::error::EngineError;
use crate::report::RunHistory;

mod advice;
mod delete;
mod folder;
mod mailbox;
mod message;
mod run;
mod select;

pub use advice::{access_denied_advice, required_permissions};
pub use select::{empty_selection_advice, select_folders, selected_mailboxes};

/// Archive writes failing in a row after which a mailbox stops.
const ARCHIVE_FAILURE_LIMIT: usize = 3;

/// Tunables of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Messages in hand (downloading or being written) per mailbox; at most what the
    /// source serves at once ([`SourceLimits::requests_per_mailbox`](m365_mailbox::SourceLimits::requests_per_mailbox)), which is also
    /// the default (`usize::MAX`).
    pub downloads_per_mailbox: usize,
    /// Largest message fetched, in bytes (Exchange allows 150 MB).
    pub max_message_bytes: u64,
    /// Fixed "now" for age filters and deletion rules (tests); `None` = the clock.
    pub now: Option<DateTime<Utc>>,
    /// Directory of run locks; when set, a run takes its profile's [`RunLock`].
    pub lock_dir: Option<PathBuf>,
    /// Where finished runs are recorded.
    pub history: Option<RunHistory>,
    /// Options of the directory sync done for `sync_directory_first`.
    pub directory_sync: directory_sync::SyncOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            downloads_per_mailbox: usize::MAX,
            max_message_bytes: 150 * 1024 * 1024,
            now: None,
            lock_dir: None,
            history: None,
            directory_sync: directory_sync::SyncOptions::default(),
        }
    }
}

/// Builds an [`Engine`] from the seams.
#[derive(Default)]
pub struct EngineBuilder {
    tokens: Option<Arc<dyn TokenProvider>>,
    mailboxes: Option<Arc<dyn MailboxSource>>,
    directory: Option<Arc<dyn DirectorySource>>,
    users: Option<Arc<dyn UserStore>>,
    archive: Option<Arc<dyn ArchiveStore>>,
    checkpoints: Option<CheckpointStore>,
    governance: Option<Arc<dyn GovernanceStore>>,
    options: EngineOptions,
}

impl EngineBuilder {
    /// Tokens of the profile's credentials: a run first checks a token can be had,
    /// so bad credentials fail once with the AADSTS advice instead of per mailbox.
    pub fn token_provider(mut self, tokens: Arc<dyn TokenProvider>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// The mail service (required).
    pub fn mailbox_source(mut self, source: Arc<dyn MailboxSource>) -> Self {
        self.mailboxes = Some(source);
        self
    }

    /// The directory, for `sync_directory_first`.
    pub fn directory_source(mut self, directory: Arc<dyn DirectorySource>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Local users (required).
    pub fn user_store(mut self, users: Arc<dyn UserStore>) -> Self {
        self.users = Some(users);
        self
    }

    /// The archive (required).
    pub fn archive_store(mut self, archive: Arc<dyn ArchiveStore>) -> Self {
        self.archive = Some(archive);
        self
    }

    /// The checkpoint store (required).
    pub fn checkpoints(mut self, checkpoints: CheckpointStore) -> Self {
        self.checkpoints = Some(checkpoints);
        self
    }

    /// Legal holds: deletion rules do not apply in the mailbox of an archive under an
    /// active hold (unless the profile says `despite_holds`). Without it, no hold is known.
    pub fn governance(mut self, governance: Arc<dyn GovernanceStore>) -> Self {
        self.governance = Some(governance);
        self
    }

    /// Options.
    pub fn options(mut self, options: EngineOptions) -> Self {
        self.options = options;
        self
    }

    /// The engine, or which required part is missing.
    pub fn build(self) -> Result<Engine, EngineError> {
        Ok(Engine {
            tokens: self.tokens,
            mailboxes: self
                .mailboxes
                .ok_or(EngineError::Incomplete("mailbox source"))?,
            directory: self.directory,
            users: self.users.ok_or(EngineError::Incomplete("user store"))?,
            archive: self
                .archive
                .ok_or(EngineError::Incomplete("archive store"))?,
            checkpoints: self
                .checkpoints
                .ok_or(EngineError::Incomplete("checkpoint store"))?,
            governance: self.governance,
            options: self.options,
        })
    }
}

/// Runs and tests profiles.
pub struct Engine {
    tokens: Option<Arc<dyn TokenProvider>>,
    mailboxes: Arc<dyn MailboxSource>,
    directory: Option<Arc<dyn DirectorySource>>,
    users: Arc<dyn UserStore>,
    archive: Arc<dyn ArchiveStore>,
    checkpoints: CheckpointStore,
    governance: Option<Arc<dyn GovernanceStore>>,
    options: EngineOptions,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("checkpoints", &self.checkpoints)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A builder.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    fn now(&self) -> DateTime<Utc> {
        self.options.now.unwrap_or_else(Utc::now)
    }
}

/// Runs blocking work (archive, checkpoint and user-store I/O) off the async workers.
async fn spawn_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JoinError> {
    tokio::task::spawn_blocking(work).await
}
