//! [`DiskArchiveStore`]: the real archive on disk, shared by any number of
//! processes.
//!
//! Layout of an archive directory:
//! `store.json` (format, encryption marker), `LOCK` (the write lock),
//! `packs/pack-NNNNNNNN.pack` (chunks and manifests), `records.log` (the record
//! log), `index/CURRENT` naming the index generation in use and
//! `index/gen-<N>/{index.db,search}` (all rebuildable).
//!
//! Processes: readers take no lock and never wait; they read `index.db` (SQLite
//! in WAL mode: every statement sees the latest commit of any process) and the
//! packs, and first replay what the log and packs hold past `index.db`'s positions
//! (writers commit to `index.db` late; a writable store does this when none of its
//! own writes is in progress). A writing process holds the write lock (`flock` on `LOCK`) only while it
//! has a write in progress, and on every acquisition catches up with what other
//! processes wrote meanwhile: it reopens its appenders at the true end of the
//! newest pack and of the log, cuts a torn tail, and replays frames past the
//! positions `index.db` records into it. Only a lock holder cuts tails or
//! rebuilds; chunk and message lookups (deduplication) happen under the lock.
//!
//! Opening: the generation named by `CURRENT` is opened and brought up to date by
//! replaying packs and log past its positions; if that fails with an index error
//! a fresh generation is built beside it (under the write lock) and swapped in,
//! and other generations are removed. Reads of the caches that fail with an index
//! error switch to a generation another process swapped in, or rebuild once, and
//! retry. A read-only open never cuts a torn tail (reading stops there) and
//! refuses to archive.
//!
//! Writing a message: hash it (address), take the write lock, cut it into chunks,
//! write the chunks that are new and a manifest to the current pack (no fsync
//! yet; their lookup rows and the parsed metadata are staged in memory), then join
//! the group commit: one leader fsyncs the pack, appends every waiting record to
//! the log, fsyncs the log, hands the staged rows, the records and the new
//! positions to the deferred `index.db` commit (`deferred`) and wakes the others.
//! So many concurrent writers share each pair of fsyncs, and a background thread
//! commits many group commits' rows in one transaction (every few hundred
//! milliseconds); the write path's lookups and message reads consult the waiting
//! rows, every other read commits them first. The search index lags further: the
//! deferred commit hands the new entries' documents (with the metadata already
//! parsed) to a background indexer thread (`indexer`) that adds them in batches;
//! every search, flush and close waits for it and then catches the index up from
//! the record log.
//!
//! This file holds the types and the public API; the work is in `open` (opening,
//! `store.json`, the write lock, index generations, healing reads), `catch_up`
//! (replaying packs and log into `index.db`), `write` (a message's chunks and
//! manifest), `commit` (the group commit and the lagging search index),
//! `deferred` (the rows waiting for `index.db` and their thread), `indexer`
//! (the background indexer), `read` (reads, verification, listings, search hits,
//! statistics) and `timing` (where a store's write time went, logged on close).

mod catch_up;
mod commit;
mod compact;
mod deferred;
mod expunge;
mod indexer;
mod open;
mod read;
mod timing;
mod write;

pub use compact::CompactReport;
pub use expunge::{EntryRef, ExpungeReport, RestrictReport, Visibility};
pub(crate) use read::{decode_chunk, parse_manifest};

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fs2::FileExt;
use serde::{Deserialize, Serialize};

use crate::caches::Caches;
use crate::crypto::{Codec, from_hex, to_hex};
use crate::index::Table;
use crate::io::StoreIo;
use crate::metadata::MessageMetadata;
use crate::pack::{FrameAppender, FrameFiles, Location, kind};
use crate::search::SearchIndex;
use crate::{
    ArchiveError, ArchiveOutcome, ArchiveRequest, ArchiveStats, ArchiveStore, IoFailure, MessageId,
    RawMessage, Scope, SearchHit, SearchQuery, SourceRef, SourceState, Space, space_at,
};
use timing::{Stage, Timings};

const FORMAT: u32 = 1;
/// Log records applied to `index.db` per transaction when replaying.
const REPLAY_BATCH: usize = 2_000;
const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;

/// How to open an archive.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Key file (32 raw bytes or 64 hex digits) enabling encryption at rest. Only
    /// honoured when the archive is created; an encrypted archive needs it on every open.
    pub encryption_key_file: Option<PathBuf>,
    /// zstd level for chunks (1–19).
    pub compression_level: i32,
    /// A pack file is closed and a new one started past this size.
    pub pack_size_limit: u64,
    /// I/O for the store's own writes and fsyncs (`None`: the operating system's).
    /// Tests pass a [`crate::io::FaultyIo`] here.
    pub io: Option<Arc<dyn StoreIo>>,
    /// How long the `index.db` rows of acknowledged writes may wait to be committed
    /// together (reads of this process see them meanwhile; other processes replay
    /// them from the record log).
    pub index_commit_delay: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            encryption_key_file: None,
            compression_level: 3,
            pack_size_limit: 1 << 30,
            io: None,
            index_commit_delay: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StoreConfig {
    format: u32,
    store_id: String,
    encrypted: bool,
    #[serde(default)]
    key_check: Option<String>,
    created: DateTime<Utc>,
}

/// One message in one user's archive folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveEntry {
    /// Content address.
    pub id: MessageId,
    /// Archive owner.
    pub user: String,
    /// Folder path.
    pub folder: String,
    /// Received time, if known.
    pub received: Option<DateTime<Utc>>,
    /// When it was archived.
    pub archived: DateTime<Utc>,
    /// Where it came from.
    pub sources: Vec<SourceRef>,
    /// Raw size.
    pub size: u64,
    /// Subject.
    pub subject: Option<String>,
    /// From.
    pub from: Option<String>,
    /// Date header.
    pub date: Option<DateTime<Utc>>,
    /// mail-parser could not parse it.
    pub unparseable: bool,
    /// Restricted: hidden from all but privileged readers.
    pub restricted: bool,
}

/// What `archive show ID` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageInfo {
    /// Content address.
    pub id: MessageId,
    /// Raw size.
    pub size: u64,
    /// Metadata (body text omitted).
    pub metadata: MessageMetadata,
    /// (user, folder) pairs holding it.
    pub locations: Vec<(String, String)>,
}

/// A manifest's chunks: (key, raw length) in order.
pub(crate) type ChunkList = Vec<([u8; 32], u32)>;

struct Pending {
    ticket: u64,
    address: [u8; 32],
    request: ArchiveRequest,
    new_content: bool,
}

/// Lookup rows of frames this process appended to the pack that are not yet in
/// `index.db`: the next group commit hands them, with its records, to the deferred
/// `index.db` commit (`deferred`); the write path's lookups consult them
/// meanwhile. Pushed under the pack writer's lock.
#[derive(Default, Clone)]
struct Staged {
    /// (chunks or messages, key) → location and raw length or size.
    located: HashMap<(Table, [u8; 32]), (Location, u64)>,
    /// Metadata of messages new to the store.
    metadata: HashMap<[u8; 32], Arc<MessageMetadata>>,
}

impl Staged {
    fn is_empty(&self) -> bool {
        self.located.is_empty() && self.metadata.is_empty()
    }

    /// Forgets what `written` holds (what a transaction committed).
    fn remove(&mut self, written: &Staged) {
        for (key, value) in &written.located {
            if self.located.get(key) == Some(value) {
                self.located.remove(key);
            }
        }
        for key in written.metadata.keys() {
            self.metadata.remove(key);
        }
    }
}

#[derive(Default)]
struct CommitState {
    queue: Vec<Pending>,
    leader: bool,
    next_ticket: u64,
    done: BTreeMap<u64, Result<ArchiveOutcome, IoFailure>>,
}

/// The archive on disk. Open with [`DiskArchiveStore::open`]; share with `Arc`.
pub struct DiskArchiveStore {
    dir: PathBuf,
    pub(crate) index_dir: PathBuf,
    write_lock: WriteLock,
    read_only: bool,
    pub(crate) codec: Arc<Codec>,
    compression_level: i32,
    pub(crate) packs: FrameFiles,
    pack_writer: Mutex<FrameAppender>,
    log_writer: Mutex<FrameAppender>,
    caches: Arc<RwLock<Arc<Caches>>>,
    io: Arc<dyn StoreIo>,
    commit: Mutex<CommitState>,
    committed: Condvar,
    maintenance: RwLock<()>,
    poisoned: Mutex<Option<IoFailure>>,
    /// Rows of frames waiting for the next group commit.
    staged: Mutex<Staged>,
    /// Rows of durable group commits waiting for their `index.db` transaction.
    deferred: deferred::Deferred,
    /// One catch-up at a time of a read-only store's reads.
    read_catch_up: Mutex<()>,
    /// Brings the search index up to date off the write path.
    indexer: Arc<indexer::Indexer>,
    pack_limit: u64,
    /// Time spent per stage of writing (logged on close).
    timings: Arc<Timings>,
}

/// The cross-process write lock (`flock` on `LOCK`), held while this process has
/// at least one write in progress.
struct WriteLock {
    path: PathBuf,
    file: Option<File>,
    /// Writes in progress in this process.
    active: Mutex<usize>,
}

/// One write in progress; the last one of the process releases the lock.
pub(crate) struct WriteGuard<'a> {
    store: &'a DiskArchiveStore,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        let lock_state = &self.store.write_lock;
        let mut active = lock(&lock_state.active);
        *active = active.saturating_sub(1);
        if *active == 0
            && let Some(file) = &lock_state.file
            && let Err(e) = FileExt::unlock(file)
        {
            tracing::error!(lock = %lock_state.path.display(), error = %e, "cannot release the write lock");
        }
    }
}

impl std::fmt::Debug for DiskArchiveStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskArchiveStore")
            .field("dir", &self.dir)
            .field("encrypted", &self.codec.encrypted())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Parses a message id given by a user.
pub(crate) fn parse_id(id: &MessageId) -> Result<[u8; 32], ArchiveError> {
    from_hex(&id.0.to_ascii_lowercase()).ok_or_else(|| ArchiveError::NotFound { id: id.0.clone() })
}

/// How [`DiskArchiveStore::open_with`] opens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Writable; the current index generation is used when it is sound.
    Write,
    /// Writable; a fresh index generation is built without opening the current one.
    Rebuild,
    /// Read-only sources of truth.
    Read,
}

impl DiskArchiveStore {
    /// Opens (creating if needed) the archive in `dir` for writing and brings the
    /// indexes up to date with the packs and log (under the write lock, cutting a
    /// torn tail left by a crash). Unusable indexes are rebuilt (with a warning
    /// naming the cause). Any number of processes may hold the archive open for
    /// writing: each write takes the write lock for its duration only.
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self, ArchiveError> {
        Self::open_with(dir.as_ref(), &options, Mode::Write)
    }

    /// Opens an existing archive for reading only: takes no lock and never waits
    /// for writers (unless the indexes are unusable: a rebuild takes the write lock),
    /// never creates the archive or `store.json`, never writes packs or the record
    /// log (a torn tail is where reading stops). Every read sees what writers in
    /// other processes committed before it. Indexes that are behind are brought up
    /// to date; when a needed rebuild fails the error is [`ArchiveError::Rebuild`]
    /// naming the cause.
    pub fn open_read_only(
        dir: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<Self, ArchiveError> {
        Self::open_with(dir.as_ref(), &options, Mode::Read)
    }

    /// `archive reindex`: under the write lock, builds a fresh index generation from
    /// the packs and the record log beside the current one, without opening it,
    /// then swaps it in atomically and removes the old one.
    pub fn rebuild_indexes(
        dir: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<ArchiveStats, ArchiveError> {
        let store = Self::open_with(dir.as_ref(), &options, Mode::Rebuild)?;
        store.stats()
    }

    /// Free and total space of the filesystem holding the archive.
    pub fn space(&self) -> Result<Space, ArchiveError> {
        space_at(&self.dir)
    }

    /// Whether the store was opened with [`DiskArchiveStore::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The archive directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rebuilds `index.db` and the search index from the packs and the record log alone,
    /// in a fresh generation swapped in when complete (the current one is not read).
    pub fn reindex(&self) -> Result<ArchiveStats, ArchiveError> {
        {
            let _write = self.lock_for_maintenance()?;
            let _exclusive = self
                .maintenance
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.rebuild_caches(
                &ArchiveError::Index {
                    index: "listing",
                    detail: "a rebuild was requested".into(),
                },
                true,
            )?;
        }
        self.stats()
    }

    /// Commits the rows waiting for `index.db` and brings the search index up to
    /// date (also done on drop of a writable store).
    pub fn flush(&self) -> Result<(), ArchiveError> {
        self.flush_search(SearchIndex::default_wait())
    }

    /// Number of committed search documents (for drift checks).
    pub(crate) fn search_docs(&self) -> Result<u64, ArchiveError> {
        self.flush_search(SearchIndex::default_wait())?;
        self.caches().search.num_docs()
    }

    pub(crate) fn maintenance_read(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.maintenance
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ArchiveStore for DiskArchiveStore {
    fn archive(
        &self,
        request: &ArchiveRequest,
        raw: RawMessage<'_>,
    ) -> Result<ArchiveOutcome, ArchiveError> {
        crate::validate(request)?;
        self.check_poisoned()?;
        let span = tracing::debug_span!("archive", user = %request.user, folder = %request.folder);
        let _enter = span.enter();
        let address = self.timings.time(Stage::Hash, || self.address_of(raw))?;
        let outcome = {
            // Lock order: the write lock, then the maintenance lock. Lookups happen
            // under the write lock, after catching up with other processes.
            let _write = self.timings.time(Stage::Lock, || self.write_guard())?;
            let _shared = self.maintenance_read();
            // Tombstones are written under the write lock and applied to index.db
            // before it is released, so this sees every expunge before now.
            if self
                .caches()
                .index
                .forgotten_content(&request.user, &address)?
            {
                return Ok(ArchiveOutcome {
                    id: MessageId(to_hex(&address)),
                    new_content: false,
                    new_entry: false,
                    forgotten: true,
                });
            }
            let known = match self.located(Table::Messages, &address)? {
                Some((loc, _)) => self.live(loc, kind::MANIFEST, &address),
                None => false,
            };
            let new_content = !known
                && self
                    .timings
                    .time(Stage::Content, || self.store_content(&address, raw))?;
            self.timings.time(Stage::Commit, || {
                self.commit(Pending {
                    ticket: 0,
                    address,
                    request: request.clone(),
                    new_content,
                })
            })
        };
        self.maybe_sync_search();
        outcome
    }

    fn source_state(&self, user: &str, source: &SourceRef) -> Result<SourceState, ArchiveError> {
        // A record waiting for index.db is newer than index.db's row.
        let key = crate::index::source_key(user, source);
        if let Some(address) = self.deferred.source(&key) {
            return Ok(SourceState::Archived(MessageId(to_hex(&address))));
        }
        self.healing_with(false, || {
            let index = &self.caches().index;
            if let Some(address) = index.source(user, source)? {
                return Ok(SourceState::Archived(MessageId(to_hex(&address))));
            }
            Ok(match index.forgotten_source(user, source)? {
                Some(address) => SourceState::Forgotten(MessageId(to_hex(&address))),
                None => SourceState::Unknown,
            })
        })
    }

    // Message reads find manifests and chunks among the waiting rows too.
    fn verify_message(&self, id: &MessageId) -> Result<bool, ArchiveError> {
        self.healing_with(false, || self.verify_message_raw(id))
    }

    fn read_message(&self, id: &MessageId) -> Result<Vec<u8>, ArchiveError> {
        self.healing_with(false, || self.read_message_raw(id))
    }

    fn holds_exactly(
        &self,
        id: &MessageId,
        offered: &mut dyn std::io::Read,
    ) -> Result<bool, ArchiveError> {
        let address = parse_id(id)?;
        if !self.verify_message(id)? {
            return Ok(false);
        }
        Ok(crate::hash_reader(self.codec.hasher(), offered, "offered message")? == address)
    }

    fn search(&self, query: &SearchQuery, scope: &Scope) -> Result<Vec<SearchHit>, ArchiveError> {
        self.healing(|| {
            // Read-your-writes: everything committed to index.db before now is indexed first.
            self.flush_search(SearchIndex::default_wait())?;
            let visibility = if scope.sees_restricted() {
                Visibility::Privileged
            } else {
                Visibility::Ordinary
            };
            // Restricted entries are filtered out after the search: ask for as many
            // more hits as there are restricted entries in scope.
            let mut wide = query.clone();
            if !visibility.sees_restricted() {
                let user = match scope {
                    Scope::User(me) => Some(me.as_str()),
                    _ => query.user.as_deref(),
                };
                wide.limit = query.limit.saturating_add(self.restricted_count(user)?);
            }
            let hits = self.caches().search.search(&wide, scope)?;
            let mut hits = self.checked_hits(hits, visibility)?;
            hits.truncate(query.limit);
            Ok(hits)
        })
    }

    fn stats(&self) -> Result<ArchiveStats, ArchiveError> {
        self.healing(|| self.stats_raw())
    }
}

impl Drop for DiskArchiveStore {
    fn drop(&mut self) {
        if !self.read_only {
            self.deferred.close();
            if let Err(e) = self.deferred.settle() {
                tracing::error!(error = %e, "listing index update failed; the next catch-up replays it");
            }
            self.indexer.close();
            self.sync_search_logged(SearchIndex::default_wait());
        }
        self.timings.log();
    }
}
