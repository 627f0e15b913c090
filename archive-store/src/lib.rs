//! The archive: single-instance, compressed, crash-safe and verifiable.
//!
//! Append-only, checksummed pack files are the source of truth; sled and the
//! full-text index are caches rebuilt from the packs by `reindex`. A message's
//! address is the hash of its raw bytes, and export gives back exactly those bytes.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Content address of a message: lower-case hex of the hash of its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub String);

/// Raw RFC 822 bytes handed to the store.
#[derive(Debug, Clone, Copy)]
pub enum RawMessage<'a> {
    /// In memory.
    Bytes(&'a [u8]),
    /// In a file (large messages spooled by the downloader).
    File(&'a Path),
}

/// Where an archived copy came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceRef {
    /// Source mailbox address (or `import:` + path for imports).
    pub mailbox: String,
    /// Immutable message id in that mailbox.
    pub message_id: String,
}

/// One message to archive into one user's archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRequest {
    /// Owner of the archive (local user name).
    pub user: String,
    /// Folder path inside that archive (as `m365_mailbox::Folder::path`).
    pub folder: String,
    /// Origin, so re-runs skip what is already archived.
    pub source: Option<SourceRef>,
    /// When the message was received, if known.
    pub received: Option<DateTime<Utc>>,
}

/// What [`ArchiveStore::archive`] did. Returned only after the bytes are durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveOutcome {
    /// Content address.
    pub id: MessageId,
    /// The content was new to the store (otherwise only a record was added, or nothing).
    pub new_content: bool,
    /// A new archive entry was recorded (false if this user already had this source/content in this folder).
    pub new_entry: bool,
}

/// Who is searching: an admin sees every archive, a user only their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every archive.
    Admin,
    /// Only this user's archive.
    User(String),
}

/// A full-text query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Free text (subject, addresses, body, attachment names).
    pub text: String,
    /// Restrict to this user's archive (admins only; users are always restricted).
    pub user: Option<String>,
    /// Received on or after.
    pub from_date: Option<DateTime<Utc>>,
    /// Received before.
    pub to_date: Option<DateTime<Utc>>,
    /// At most this many hits.
    pub limit: usize,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SearchHit {
    /// Content address.
    pub id: MessageId,
    /// Archive owner.
    pub user: String,
    /// Folder path.
    pub folder: String,
    /// Date header or received time.
    pub date: Option<DateTime<Utc>>,
    /// From.
    pub from: Option<String>,
    /// Subject.
    pub subject: Option<String>,
}

/// Figures of `archive stats` (JSON shape fixed by design.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveStats {
    /// Archive entries (a message in two users' archives counts twice).
    pub messages: u64,
    /// Distinct contents.
    pub unique_messages: u64,
    /// Distinct chunks.
    pub chunks: u64,
    /// Sum of raw sizes of distinct contents.
    pub logical_bytes: u64,
    /// Bytes on disk in packs.
    pub stored_bytes: u64,
    /// Entries per user.
    pub users: std::collections::BTreeMap<String, u64>,
}

/// The seam between the engine (or CLI) and the archive.
pub trait ArchiveStore: Send + Sync {
    /// Stores a message durably (fsynced) and records it in `request.user`'s archive.
    fn archive(&self, request: &ArchiveRequest, raw: RawMessage<'_>) -> Result<ArchiveOutcome, ArchiveError>;
    /// The archived content for a source message in `user`'s archive, if any.
    fn find_source(&self, user: &str, source: &SourceRef) -> Result<Option<MessageId>, ArchiveError>;
    /// Re-reads and re-hashes a stored message: `true` when its bytes are intact.
    fn verify_message(&self, id: &MessageId) -> Result<bool, ArchiveError>;
    /// The exact raw bytes of a stored message.
    fn read_message(&self, id: &MessageId) -> Result<Vec<u8>, ArchiveError>;
    /// Full-text search within `scope`.
    fn search(&self, query: &SearchQuery, scope: &Scope) -> Result<Vec<SearchHit>, ArchiveError>;
    /// Counts and sizes.
    fn stats(&self) -> Result<ArchiveStats, ArchiveError>;
}

/// What went wrong in the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A stored object failed its checksum.
    #[error("corrupt object {object}: {detail}")]
    Corrupt {
        /// The object (pack file and offset, or message id).
        object: String,
        /// What was wrong.
        detail: String,
    },
}
