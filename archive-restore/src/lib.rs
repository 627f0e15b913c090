//! Restore of archived mail into a mailbox: faithful, throttled, exactly once.
//!
//! A restore takes a selection of one user's archive (ids, a search, or a folder), reads
//! each message from the [`archive_store::DiskArchiveStore`] and writes it through the
//! [`m365_mailbox::MailboxWriter`] seam (Graph, or the in-memory service in tests):
//!
//! - **Faithful**: by default each message is a JSON create built from its MIME
//!   ([`convert::to_new_message`]): received, not draft, with its dates, addresses,
//!   headers and attachments. `exact_mime` posts the archived MIME itself instead (it
//!   lands as a draft; messages over [`m365_mailbox::WriteLimits::max_mime_bytes`] are
//!   refused, naming the limit and the default mode).
//! - **Where**: into `to_folder` (default `Restored/<YYYY-MM-DD>`) of `to_mailbox`, each
//!   message below it in its original folder path (`Restored/2026-12-01/Inbox/Projects`).
//! - **Exactly once**: every restored item carries the archive id (its
//!   [`m365_mailbox::RestoreKey`]); before writing a folder the job asks what it holds
//!   ([`m365_mailbox::MailboxWriter::restored_in`]): complete items are skipped, items a
//!   stopped run left incomplete are removed and restored again, an exact-MIME item whose
//!   key was never set is adopted by its `internetMessageId`.
//! - **Throttled**: at most [`RestoreOptions::concurrency`] messages in flight (the
//!   writer's own per-mailbox gate and upload budget apply beneath).
//! - A failure of one message is listed in the [`RestoreReport`] and the others go on; an
//!   error of the whole mailbox (403, no such mailbox, credentials) stops the job.
//!
//! The crate stands between the archive and the mailbox: neither of those crates knows
//! the other, and the service adds who may restore what.

pub mod convert;
mod job;

pub use convert::to_new_message;
pub use job::{
    RestoreEvent, RestoreFailure, RestoreOptions, RestoreReport, RestoreRequest, Selection,
    restore, select, target_root,
};

use archive_store::ArchiveError;
use m365_mailbox::MailboxError;

/// What went wrong in a restore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// Ids asked for are not in the user's archive.
    #[error("the archive of `{user}` holds no message {}", ids.join(", "))]
    UnknownIds {
        /// The archive owner.
        user: String,
        /// The ids not found.
        ids: Vec<String>,
    },
    /// The folder asked for is not in the user's archive.
    #[error(
        "the archive of `{user}` has no folder `{folder}` (its folders: {})",
        known_list(known)
    )]
    UnknownFolder {
        /// The archive owner.
        user: String,
        /// The folder asked for.
        folder: String,
        /// The folders there are (the first few).
        known: Vec<String>,
    },
    /// A request field is unusable.
    #[error("invalid {field}: {detail}")]
    InvalidRequest {
        /// The field (`to_folder`, `to_mailbox`, `ids`, ...).
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// mail-parser cannot read the archived message.
    #[error("message {id} cannot be read as mail ({detail}); restore it with --exact-mime")]
    Unparseable {
        /// The archive id.
        id: String,
        /// What failed.
        detail: String,
    },
    /// An exact-MIME restore of a message too large for one request.
    #[error(
        "message {id} is {size} bytes, over the {limit}-byte limit of an exact-MIME create \
         (one request of at most {request_limit} bytes); restore it without --exact-mime: the \
         default mode creates it as received mail and uploads its attachments apart"
    )]
    ExactMimeTooLarge {
        /// The archive id.
        id: String,
        /// Its size.
        size: u64,
        /// [`m365_mailbox::WriteLimits::max_mime_bytes`].
        limit: u64,
        /// [`m365_mailbox::WriteLimits::max_request_bytes`].
        request_limit: u64,
    },
    /// The archive failed (reading the selection or a message). The display leaves the
    /// cause to the source chain (printed after it), so it is not said twice.
    #[error("the archive failed")]
    Archive {
        /// The archive's error.
        #[from]
        source: ArchiveError,
    },
    /// The target mailbox refused the restore as a whole (access denied, no such mailbox,
    /// credentials): nothing more can be written there now. The display leaves the cause
    /// to the source chain (printed after it), so it is not said twice.
    #[error("restore into {mailbox} stopped")]
    Mailbox {
        /// The target mailbox.
        mailbox: String,
        /// The mailbox's error.
        #[source]
        source: Box<MailboxError>,
    },
    /// A background task of the job failed.
    #[error("restore task failed: {detail}")]
    Task {
        /// What failed.
        detail: String,
    },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    }
}
