//! The one error type of the engine: each variant names the object that failed
//! and, where there is one, what the administrator can do about it.

use std::path::PathBuf;

use archive_store::{ArchiveError, MessageId};
use directory_sync::DirectoryError;
use m365_auth::AuthError;
use m365_mailbox::MailboxError;
use tokio::task::JoinError;

/// What went wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A profile file is malformed or fails validation. The message names the
    /// file, the field and the fix.
    #[error("{0}")]
    InvalidProfile(String),
    /// A profile name is not usable as a file name.
    #[error(
        "invalid profile name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    )]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// No profile of that name exists.
    #[error("no profile named {name:?} (see `profile list`)")]
    ProfileNotFound {
        /// The name asked for.
        name: String,
    },
    /// A schedule string could not be parsed.
    #[error(
        "invalid schedule {input:?}: {reason}; expected \"manual\", \"every 30m\", \"every 2h\", \"daily 02:00\" or \"weekly mon 03:00\""
    )]
    InvalidSchedule {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The target user of a single-mailbox profile is not a local user.
    #[error(
        "profile {profile}: target user {user:?} does not exist; create it with `users add` or run `users sync` first"
    )]
    TargetUserMissing {
        /// The profile.
        profile: String,
        /// The missing user.
        user: String,
    },
    /// Another process (or task) is running this profile.
    #[error("profile {profile} is already running (lock file {path} is held)")]
    AlreadyRunning {
        /// The profile.
        profile: String,
        /// The lock file.
        path: PathBuf,
    },
    /// No access token could be obtained for the profile's credentials.
    #[error("cannot authenticate: {0}")]
    Auth(#[from] AuthError),
    /// The directory or the local user store failed.
    #[error("user directory: {0}")]
    Directory(#[from] DirectoryError),
    /// The archive failed outside a single message.
    #[error("archive: {0}")]
    Archive(#[from] ArchiveError),
    /// A checkpoint file is unreadable or corrupt.
    #[error(
        "checkpoint {path}: {detail}; delete the file to re-enumerate the folders (nothing is archived twice)"
    )]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// A file of the engine's state (profiles, history, lock) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A background task of the run panicked or was aborted (a bug; the run's
    /// checkpoints are intact, run it again).
    #[error("internal task failed: {0}")]
    TaskFailed(#[from] JoinError),
    /// The engine was built without a required component.
    #[error("engine is missing its {0}; pass it to the builder")]
    Incomplete(&'static str),
}

impl EngineError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Why one message was not archived. Its `Display` is the text of the message's
/// failure in the log and in [`ProgressEvent::MessageFailed`](crate::ProgressEvent);
/// the engine decides on the variant only.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MessageFailure {
    /// The archive could not say whether the message is already archived.
    #[error("archive lookup failed: {0}")]
    Lookup(#[source] ArchiveError),
    /// The message could not be downloaded.
    #[error("download failed: {0}")]
    Fetch(#[source] MailboxError),
    /// The user store did not record that the target user owns an archive.
    #[error("cannot record that {user} has an archive: {source}")]
    OwnerNotRecorded {
        /// The target user.
        user: String,
        /// The user store's error.
        #[source]
        source: DirectoryError,
    },
    /// The archive refused the write (disk full, permissions, ...).
    #[error("archive write failed: {0}")]
    Archive(#[source] ArchiveError),
    /// A blocking task of the message panicked or was aborted.
    #[error("internal task failed: {0}")]
    TaskFailed(#[from] JoinError),
}

impl MessageFailure {
    /// Retrying within the run cannot help (the message is above the size cap, or the
    /// service cannot render it): reported, but it does not hold the folder's cursor back
    /// nor wait in the waiting list.
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(
            self,
            MessageFailure::Fetch(
                MailboxError::TooLarge { .. } | MailboxError::Unconvertible { .. }
            )
        )
    }

    /// The service cannot render the item as MIME: the next runs try it again a
    /// bounded number of times.
    pub(crate) fn is_unconvertible(&self) -> bool {
        matches!(
            self,
            MessageFailure::Fetch(MailboxError::Unconvertible { .. })
        )
    }

    /// The kind the run report gives it.
    pub(crate) fn kind(&self) -> crate::report::FailureKind {
        use crate::report::FailureKind;
        match self {
            MessageFailure::Fetch(MailboxError::Unconvertible { .. }) => FailureKind::Unconvertible,
            MessageFailure::Fetch(MailboxError::TooLarge { .. }) => FailureKind::TooLarge,
            MessageFailure::Fetch(_) => FailureKind::Download,
            MessageFailure::Archive(_) => FailureKind::Archive,
            _ => FailureKind::Other,
        }
    }

    /// The archive refused the write: counts towards the mailbox's limit of
    /// archive failures in a row.
    pub(crate) fn is_archive_side(&self) -> bool {
        matches!(self, MessageFailure::Archive(_))
    }
}

/// Why an archived message whose deletion was due stays in the mailbox (it waits
/// for the next run). Its `Display` goes to the log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotDeleted {
    /// Already archived, but the download for the deletion check failed.
    #[error("download for the deletion check failed: {0}")]
    CheckDownload(#[source] MailboxError),
    /// The spooled download could not be read back for the check.
    #[error("cannot read the fetched message: {0}; not deleted")]
    ReadFetched(#[source] std::io::Error),
    /// The archived copy is damaged or differs from the mailbox's message.
    #[error(
        "the archived copy {} failed verification or differs from the message in the mailbox; not deleted",
        id.0
    )]
    Differs {
        /// The archived copy.
        id: MessageId,
    },
    /// The archive could not check its copy.
    #[error("archived copy {} could not be verified ({source}); not deleted", id.0)]
    Unverifiable {
        /// The archived copy.
        id: MessageId,
        /// The archive's error.
        #[source]
        source: ArchiveError,
    },
    /// The mail service refused the deletion.
    #[error("delete failed: {0}")]
    Delete(#[source] MailboxError),
    /// The profile's deletion mode deletes nothing in this folder (moving to Deleted
    /// Items from Deleted Items).
    #[error("deletion disabled")]
    Disabled,
    /// The blocking check panicked or was aborted.
    #[error("internal task failed: {0}")]
    TaskFailed(#[from] JoinError),
}

/// Why a folder's round ended without its new cursor.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FolderFailure {
    /// The change stream ended without handing out a cursor.
    #[error("the change stream ended without a cursor")]
    NoCursor,
    /// Listing the folder's changes failed.
    #[error(transparent)]
    Listing(MailboxError),
}

impl FolderFailure {
    /// The failure concerns the whole mailbox: its other folders are not tried.
    pub(crate) fn is_mailbox_wide(&self) -> bool {
        matches!(self, FolderFailure::Listing(e) if e.is_mailbox_wide())
    }
}
