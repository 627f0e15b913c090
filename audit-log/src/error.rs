//! The crate's one error type.

use std::path::PathBuf;

/// What went wrong with the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file of the log could not be read, written or synced.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done (`cannot append to`, ...).
        action: String,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The log is damaged where an append needs it intact (its last record, or it is
    /// shorter than its anchor): nothing more is recorded until it is looked at.
    #[error("the audit log {} is damaged: {reason} (run `audit verify`)", path.display())]
    Damaged {
        /// The log file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint key may be read or written by others than its owner: a key
    /// others can read signs nothing trustworthy, so it is not used.
    #[error(
        "the checkpoint key {} may be read or written by others (mode {mode:o}): \
         make it private with `chmod 600 {}`, or replace it if others may have copied it",
        path.display(), path.display()
    )]
    KeyExposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The checkpoint key file does not hold a key.
    #[error("the checkpoint key {} is damaged: {reason}", path.display())]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An event could not be encoded.
    #[error("cannot encode an audit event")]
    Encode(#[source] serde_json::Error),
    /// The sink refuses appends (an in-memory sink told to fail, in tests).
    #[error("the audit log is unavailable: {0}")]
    Unavailable(String),
}

impl AuditError {
    pub(crate) fn io(
        action: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        AuditError::Io {
            action: action.into(),
            path: path.into(),
            source,
        }
    }

    /// Whether the failure is a full disk (`ENOSPC`, quota).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, AuditError::Io { source, .. }
            if matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded))
    }
}
