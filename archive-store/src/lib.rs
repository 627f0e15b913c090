//! The archive: single-instance, compressed, crash-safe and verifiable.
//!
//! Append-only, checksummed pack files and the record log are the source of truth;
//! the lookup database (`index.db`, SQLite) and the full-text index are caches
//! rebuilt from them. A message's address
//! is the hash of its raw bytes, and export gives back exactly those bytes.
//!
//! The caches live in an index generation (`index/gen-<N>/`) named by the pointer
//! file `index/CURRENT`. Any error opening or reading them (a damaged `index.db`
//! or tantivy file, positions past the end of the files, a garbage pointer, the
//! files of an older layout) rebuilds a fresh generation from
//! the packs and the log beside the old one, swaps the pointer atomically and
//! retries once, with a warning naming the cause; [`DiskArchiveStore::rebuild_indexes`]
//! (`archive reindex`) does the same without ever opening the old generation.
//! Any number of processes may open one archive at once: readers
//! ([`DiskArchiveStore::open_read_only`]) take no lock, never wait and never write
//! packs, the log or `store.json`; writers ([`DiskArchiveStore::open`]) hold the
//! write lock only for each write and catch up with the others on every acquisition. A failed write or fsync stops the store cleanly: what
//! was acknowledged stays durable, and the error tells a full disk
//! ([`ArchiveError::is_disk_full`]) and names the file. All the store's own writes
//! go through the [`io::StoreIo`] seam ([`io::FaultyIo`] injects failures in tests).
//!
//! [`DiskArchiveStore`] is the real store; [`MemoryArchiveStore`] is an in-memory
//! implementation of the same [`ArchiveStore`] seam for other crates' tests.
//! `ARCHITECTURE` of the crate: `pack` (frames on disk) ← `store` (writes, group
//! commit, recovery) → `caches` (index generations) holding `index` (`index.db`) and
//! `search` (tantivy), both rebuilt from the packs and the record log.
//!
//! ```
//! use archive_store::{ArchiveRequest, ArchiveStore, DiskArchiveStore, RawMessage, Scope, SearchQuery, StoreOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = DiskArchiveStore::open(dir.path(), StoreOptions::default())?;
//! let request = ArchiveRequest {
//!     user: "alice".into(),
//!     folder: "Inbox".into(),
//!     source: None,
//!     received: None,
//! };
//! let raw = b"From: bob@example.com\r\nSubject: Budget 2026\r\n\r\nDraft attached.\r\n";
//! let outcome = store.archive(&request, RawMessage::Bytes(raw))?; // durable now
//! assert_eq!(store.read_message(&outcome.id)?, raw);
//! let query = SearchQuery { text: "budget".into(), user: None, from_date: None, to_date: None, limit: 10 };
//! assert_eq!(store.search(&query, &Scope::User("alice".into()))?.len(), 1);
//! assert!(store.verify()?.is_clean());
//! # Ok(())
//! # }
//! ```

mod caches;
mod chunker;
mod crypto;
mod export;
mod import;
mod index;
pub mod io;
mod log;
mod memory;
mod metadata;
mod pack;
mod search;
mod store;
mod verify;

pub use export::{ExportFilter, ExportFormat, ExportReport, safe_file_name};
pub use import::{ImportFailure, ImportReport, import_path};
pub use io::{FaultyIo, StoreIo};
pub use memory::MemoryArchiveStore;
pub use metadata::MessageMetadata;
pub use store::{
    ArchiveEntry, CompactReport, DiskArchiveStore, EntryRef, ExpungeReport, MessageInfo,
    RestrictReport, StoreOptions, Visibility,
};
pub use verify::{AffectedMessage, VerifyProblem, VerifyReport};

use std::path::{Path, PathBuf};

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
    /// The content was expunged from this user's archive before (by retention or
    /// erasure): nothing was stored or recorded. Expunged mail does not come back
    /// by being archived again, whatever its source.
    pub forgotten: bool,
}

/// What a user's archive knows of a source message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// Never archived from this source (or only under another user).
    Unknown,
    /// Archived: this content holds it.
    Archived(MessageId),
    /// Archived once and expunged since (by retention or erasure): a profile run
    /// must neither archive it again nor treat it as archived (its deletion at
    /// the source is not due on the strength of a copy that is gone).
    Forgotten(MessageId),
}

/// Who is searching: an admin sees every archive, a user only their own; neither
/// sees restricted entries (see [`DiskArchiveStore::set_restricted`]), which only
/// privileged readers (auditors, compliance officers) see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every archive, restricted entries left out.
    Admin,
    /// Only this user's archive, restricted entries left out.
    User(String),
    /// Every archive (narrowed by [`SearchQuery::user`]), restricted entries included:
    /// for auditors and compliance officers.
    Privileged,
}

impl Scope {
    /// Whether restricted entries are included.
    pub fn sees_restricted(&self) -> bool {
        matches!(self, Scope::Privileged)
    }
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

/// Figures of `archive stats` (a fixed JSON shape: scripts read these keys).
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
    fn archive(
        &self,
        request: &ArchiveRequest,
        raw: RawMessage<'_>,
    ) -> Result<ArchiveOutcome, ArchiveError>;
    /// What `user`'s archive knows of a source message: archived, expunged since, or
    /// nothing. Forgotten sources survive reopening, `reindex` and compaction (the
    /// record log's tombstones carry them).
    fn source_state(&self, user: &str, source: &SourceRef) -> Result<SourceState, ArchiveError>;
    /// The archived content for a source message in `user`'s archive, if it is
    /// there now (a forgotten source is `None`: see [`ArchiveStore::source_state`]).
    fn find_source(
        &self,
        user: &str,
        source: &SourceRef,
    ) -> Result<Option<MessageId>, ArchiveError> {
        Ok(match self.source_state(user, source)? {
            SourceState::Archived(id) => Some(id),
            SourceState::Unknown | SourceState::Forgotten(_) => None,
        })
    }
    /// Re-reads and re-hashes a stored message: `true` when its bytes are intact.
    fn verify_message(&self, id: &MessageId) -> Result<bool, ArchiveError>;
    /// The exact raw bytes of a stored message.
    fn read_message(&self, id: &MessageId) -> Result<Vec<u8>, ArchiveError>;
    /// Whether the archived copy `id` is intact and holds exactly the bytes `offered`
    /// yields (what a deletion rule checks before a message leaves its mailbox). The
    /// store compares by its own address function (keyed or not) and streams both
    /// sides: neither the copy nor the offered bytes are read into memory whole.
    /// `Ok(false)` for a damaged copy or different bytes; an error reading `offered`
    /// is [`ArchiveError::BadInput`]; an unknown id is [`ArchiveError::NotFound`].
    fn holds_exactly(
        &self,
        id: &MessageId,
        offered: &mut dyn std::io::Read,
    ) -> Result<bool, ArchiveError>;
    /// Full-text search within `scope`.
    fn search(&self, query: &SearchQuery, scope: &Scope) -> Result<Vec<SearchHit>, ArchiveError>;
    /// Counts and sizes.
    fn stats(&self) -> Result<ArchiveStats, ArchiveError>;
}

/// What went wrong in the archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Something stored is damaged: a frame of a pack (or the record log) failed its
    /// checksum or could not be decoded, a chunk is missing, or reassembled bytes do not
    /// hash to their message's address. The one corruption error of the archive.
    #[error(
        "corrupt object{}: {detail}{}; run `archive verify` for the full list of damaged messages",
        place(pack.as_deref(), *offset),
        affected_list(affected)
    )]
    CorruptObject {
        /// The pack (or record log) file, when the damage is in one.
        pack: Option<PathBuf>,
        /// Byte offset of the frame in that file, when known.
        offset: Option<u64>,
        /// What was wrong.
        detail: String,
        /// Messages whose bytes depend on the object, when known.
        affected: Vec<MessageId>,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No message with that address is stored.
    #[error("message {id} is not in the archive")]
    NotFound {
        /// The address asked for.
        id: String,
    },
    /// Another process holds the archive's lock file. Not returned by this version:
    /// any number of processes open one archive, and a write waits for the write lock.
    #[error(
        "the archive at {} is in use by another process (lock file {}); wait for it to finish",
        dir.display(),
        lock.display()
    )]
    Locked {
        /// The archive directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// An input file for import (or export target) is unusable.
    #[error("bad import input {}: {detail}", path.display())]
    BadInput {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A request field is invalid (empty user name, control characters, ...).
    #[error("invalid {field}: {detail}")]
    InvalidRequest {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The listing (lookup) or search index failed; `archive reindex` rebuilds both from the packs.
    #[error("{index} index error: {detail}; `archive reindex` rebuilds the indexes from the packs")]
    Index {
        /// Which index (`listing` or `search`).
        index: &'static str,
        /// What failed.
        detail: String,
    },
    /// The caller may not see the archive it asked for.
    #[error("access denied: {caller} may not search the archive of {requested}")]
    AccessDenied {
        /// Who asked.
        caller: String,
        /// Whose archive.
        requested: String,
    },
    /// The encryption key is missing, unreadable or does not match the archive.
    #[error("encryption key problem: {detail}")]
    Key {
        /// What is wrong.
        detail: String,
    },
    /// The archive directory holds something this version cannot use.
    #[error("unusable archive at {}: {detail}", dir.display())]
    Format {
        /// The archive directory.
        dir: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Writing the batch this call belonged to failed; nothing of it is promised durable.
    #[error("the message could not be made durable: {}", failure.detail)]
    NotDurable {
        /// The failure.
        failure: IoFailure,
    },
    /// An earlier write or fsync failed: durability of later writes cannot be promised.
    #[error("the archive stopped accepting writes after an earlier failure ({}); reopen it", failure.detail)]
    Poisoned {
        /// The earlier failure.
        failure: IoFailure,
    },
    /// The store was opened read-only and cannot archive.
    #[error("the archive at {} is open read-only", dir.display())]
    ReadOnly {
        /// The archive directory.
        dir: PathBuf,
    },
    /// The indexes (caches) were unusable or behind, and rebuilding them failed.
    #[error("the archive index could not be rebuilt because of: {source}")]
    Rebuild {
        /// Why the rebuild failed.
        #[source]
        source: Box<ArchiveError>,
    },
}

/// An I/O failure kept in a form several callers can share (a batch's waiters, or
/// every later write of a poisoned store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoFailure {
    /// What failed, for people.
    pub detail: String,
    /// The file or directory whose write or fsync failed, when known.
    pub path: Option<PathBuf>,
    /// The kind of the underlying I/O error, when it was one.
    pub kind: Option<std::io::ErrorKind>,
    /// The operating system's error code, when there was one.
    pub os_error: Option<i32>,
}

/// The request rules every store applies before archiving, so all refuse the same
/// requests naming the same field.
pub(crate) fn validate(request: &ArchiveRequest) -> Result<(), ArchiveError> {
    let bad = |field, detail: &str| {
        Err(ArchiveError::InvalidRequest {
            field,
            detail: detail.to_string(),
        })
    };
    if request.user.trim().is_empty() {
        return bad("user", "the archive owner must not be empty");
    }
    if request.user.len() > 512 || request.user.chars().any(char::is_control) {
        return bad("user", "at most 512 characters, no control characters");
    }
    if request.folder.len() > 4096 || request.folder.contains('\0') {
        return bad("folder", "at most 4096 characters, no NUL");
    }
    if let Some(source) = &request.source
        && (source.mailbox.contains('\0') || source.message_id.contains('\0'))
    {
        return bad("source", "no NUL in mailbox or message id");
    }
    Ok(())
}

/// Hashes everything `reader` yields with `hasher`; a read failure is
/// [`ArchiveError::BadInput`] naming `what`.
pub(crate) fn hash_reader(
    mut hasher: blake3::Hasher,
    reader: &mut dyn std::io::Read,
    what: &str,
) -> Result<[u8; 32], ArchiveError> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(*hasher.finalize().as_bytes()),
            Ok(n) => {
                hasher.update(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(ArchiveError::BadInput {
                    path: PathBuf::from(what),
                    detail: format!("cannot read the bytes to compare: {e}"),
                });
            }
        }
    }
}

impl IoFailure {
    /// A failure that carries no I/O error (only a description).
    pub fn other(detail: impl Into<String>) -> Self {
        IoFailure {
            detail: detail.into(),
            path: None,
            kind: None,
            os_error: None,
        }
    }

    /// The failure behind `err`, keeping its path and I/O error kind.
    pub(crate) fn of(err: &ArchiveError) -> Self {
        match err {
            ArchiveError::Io { path, source } => IoFailure {
                detail: err.to_string(),
                path: Some(path.clone()),
                kind: Some(source.kind()),
                os_error: source.raw_os_error(),
            },
            ArchiveError::NotDurable { failure } | ArchiveError::Poisoned { failure } => {
                failure.clone()
            }
            ArchiveError::Rebuild { source } => IoFailure {
                detail: err.to_string(),
                ..IoFailure::of(source)
            },
            other => IoFailure::other(other.to_string()),
        }
    }
}

/// Free and total space of a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Space {
    /// Bytes available to this (unprivileged) process.
    pub available_bytes: u64,
    /// Size of the filesystem.
    pub total_bytes: u64,
}

/// Free and total space of the filesystem holding `path` (which must exist).
pub fn space_at(path: impl AsRef<Path>) -> Result<Space, ArchiveError> {
    let path = path.as_ref();
    Ok(Space {
        available_bytes: fs2::available_space(path).map_err(|e| ArchiveError::io(path, e))?,
        total_bytes: fs2::total_space(path).map_err(|e| ArchiveError::io(path, e))?,
    })
}

#[cfg(target_os = "linux")]
const DISK_FULL_CODES: [i32; 2] = [28, 122];
#[cfg(all(unix, not(target_os = "linux")))]
const DISK_FULL_CODES: [i32; 2] = [28, 69];
#[cfg(not(unix))]
const DISK_FULL_CODES: [i32; 2] = [112, 39];

fn place(pack: Option<&Path>, offset: Option<u64>) -> String {
    match (pack, offset) {
        (Some(pack), Some(offset)) => format!(" in {} at offset {offset}", pack.display()),
        (Some(pack), None) => format!(" in {}", pack.display()),
        (None, _) => String::new(),
    }
}

fn affected_list(affected: &[MessageId]) -> String {
    if affected.is_empty() {
        return String::new();
    }
    let ids: Vec<&str> = affected.iter().take(5).map(|id| id.0.as_str()).collect();
    let more = affected.len().saturating_sub(5);
    if more > 0 {
        format!(" (affects messages {} and {more} more)", ids.join(", "))
    } else {
        format!(" (affects messages {})", ids.join(", "))
    }
}

impl ArchiveError {
    /// The kind of the I/O error behind this error, if any (through failed batches,
    /// poisoned stores and failed index rebuilds).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            ArchiveError::Io { source, .. } => Some(source.kind()),
            ArchiveError::NotDurable { failure } | ArchiveError::Poisoned { failure } => {
                failure.kind
            }
            ArchiveError::Rebuild { source } => source.io_kind(),
            _ => None,
        }
    }

    /// The file whose I/O failed, if known.
    pub fn io_path(&self) -> Option<&Path> {
        match self {
            ArchiveError::Io { path, .. } => Some(path),
            ArchiveError::NotDurable { failure } | ArchiveError::Poisoned { failure } => {
                failure.path.as_deref()
            }
            ArchiveError::Rebuild { source } => source.io_path(),
            _ => None,
        }
    }

    /// The failure is a full disk or an exhausted quota (`ENOSPC`, `EDQUOT`).
    pub fn is_disk_full(&self) -> bool {
        let os = match self {
            ArchiveError::Io { source, .. } => source.raw_os_error(),
            ArchiveError::NotDurable { failure } | ArchiveError::Poisoned { failure } => {
                failure.os_error
            }
            ArchiveError::Rebuild { source } => return source.is_disk_full(),
            _ => None,
        };
        self.io_kind() == Some(std::io::ErrorKind::StorageFull)
            || self.io_kind() == Some(std::io::ErrorKind::QuotaExceeded)
            || os.is_some_and(|c| DISK_FULL_CODES.contains(&c))
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ArchiveError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn listing(err: impl std::fmt::Display) -> Self {
        ArchiveError::Index {
            index: "listing",
            detail: err.to_string(),
        }
    }

    pub(crate) fn search(err: impl std::fmt::Display) -> Self {
        ArchiveError::Index {
            index: "search",
            detail: err.to_string(),
        }
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
