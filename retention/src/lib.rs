//! Retention policies, legal holds and erasure requests: the one road by which a message
//! leaves the archive.
//!
//! - [`model`]: policies (minimum and optional maximum days, scoped by users, folders
//!   and a query, counted from the received or the archive date), holds (named cases
//!   with a reason, released with a reason), erasure requests.
//! - [`judge`]: the rules as pure functions. Overlapping policies: the longest minimum
//!   and the longest maximum win; nothing is ever shortened automatically.
//! - [`engine`]: [`RetentionEngine`] applies them (`apply`, dry run included), places and
//!   releases holds, erases — every removal re-checked per entry at the archive's choke
//!   point ([`RetentionTarget::expunge`]'s permit).
//! - [`store`]: the durable state ([`FileGovernanceStore`], atomically replaced and
//!   checksummed) and [`target`]: the seam to the archive, with in-memory versions of both;
//!   [`archive`]: the seam over the real archive ([`ArchiveTarget`]).

pub mod archive;
pub mod engine;
pub mod judge;
pub mod model;
pub mod store;
pub mod target;

use std::path::{Path, PathBuf};

pub use archive::ArchiveTarget;
pub use engine::{ApplyItem, ApplyReport, ErasureOutcome, RetentionEngine};
pub use judge::{ErasureVerdict, Judge, Judgement, QueryAnswers};
pub use model::{
    EntryKey, EntryView, ErasureRequest, Hold, Policy, Reference, Release, Selector, folder_within,
};
pub use store::{FileGovernanceStore, GovernanceState, GovernanceStore, MemoryGovernanceStore};
pub use target::{Expunged, MemoryTarget, Permit, RetentionTarget};

/// What went wrong in retention.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    /// A value given by the caller is not acceptable.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field or argument.
        field: String,
        /// Why.
        reason: String,
    },
    /// No such policy, hold or entry.
    #[error("no {what} {name}")]
    NotFound {
        /// What was looked for.
        what: String,
        /// Its name.
        name: String,
    },
    /// The change conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// Reading or writing the governance state failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The governance state on disk is damaged; it is never read as empty.
    #[error("{} is damaged: {detail}; restore it from a backup", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The archive failed.
    #[error("archive: {0}")]
    Target(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl RetentionError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        RetentionError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn not_found(what: &str, name: &str) -> Self {
        RetentionError::NotFound {
            what: what.into(),
            name: name.into(),
        }
    }
}
