//! The one error type of the engine: each variant names the object that failed
//! and, where there is one, what the administrator can do about it.

use std::path::PathBuf;

use archive_store::ArchiveError;
use directory_sync::DirectoryError;
use m365_auth::AuthError;

/// What went wrong in the engine.
#[derive(Debug, thiserror::Error)]
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
    TaskFailed(String),
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
