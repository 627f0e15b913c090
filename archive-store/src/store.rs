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
//! packs. A writing process holds the write lock (`flock` on `LOCK`) only while it
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
//! yet), then join the group commit: one leader fsyncs the pack, appends every
//! waiting record to the log, fsyncs the log, applies the records and the new
//! positions to `index.db` in one transaction and wakes the others. So many
//! concurrent writers share each pair of fsyncs. The search index lags: it is
//! brought up to date in batches after commits, on close, and by every search.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fs2::FileExt;
use serde::{Deserialize, Serialize};

use crate::caches::{Caches, POINTER, catch_panic, is_cache_error, remove_others};
use crate::chunker::{ChunkSummary, chunk_stream};
use crate::crypto::{Codec, from_hex, to_hex};
use crate::index::{EntryValue, Table, pack_position, split_entry_key, split_pack_position};
use crate::io::{RealIo, StoreIo};
use crate::log::{LogRecord, decode_record, encode_record, log_path};
use crate::metadata::{MessageMetadata, extract};
use crate::pack::{
    FrameAppender, FrameFiles, Location, ScanEvent, kind, list_packs, pack_path, scan_file,
    truncate_tail, write_atomic,
};
use crate::search::{SearchDoc, SearchIndex};
use crate::{
    ArchiveError, ArchiveOutcome, ArchiveRequest, ArchiveStats, ArchiveStore, IoFailure, MessageId,
    RawMessage, Scope, SearchHit, SearchQuery, SourceRef, Space, space_at,
};

const FORMAT: u32 = 1;
/// The writer brings the search index up to date once this many documents wait...
const SEARCH_BATCH_DOCS: u64 = 2_000;
/// ...or when the oldest waiting one is this old (checked after each group commit).
const SEARCH_BATCH_AGE: Duration = Duration::from_secs(1);
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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            encryption_key_file: None,
            compression_level: 3,
            pack_size_limit: 1 << 30,
            io: None,
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
    index_dir: PathBuf,
    write_lock: WriteLock,
    read_only: bool,
    pub(crate) codec: Codec,
    compression_level: i32,
    pub(crate) packs: FrameFiles,
    pack_writer: Mutex<FrameAppender>,
    log_writer: Mutex<FrameAppender>,
    caches: RwLock<Arc<Caches>>,
    io: Arc<dyn StoreIo>,
    commit: Mutex<CommitState>,
    committed: Condvar,
    maintenance: RwLock<()>,
    poisoned: Mutex<Option<IoFailure>>,
    /// A chunk or manifest location could not be recorded: the pack position stops
    /// advancing until the next catch-up replays the packs.
    pack_gap: AtomicBool,
    /// Search documents added to the log since the last indexing pass.
    search_pending: AtomicU64,
    /// When the first of them was committed.
    search_pending_since: Mutex<Option<Instant>>,
    pack_limit: u64,
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

fn validate(request: &ArchiveRequest) -> Result<(), ArchiveError> {
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

fn read_config(
    dir: &Path,
    config_path: &Path,
    options: &StoreOptions,
) -> Result<Codec, ArchiveError> {
    let raw = std::fs::read(config_path).map_err(|e| ArchiveError::io(config_path, e))?;
    let config: StoreConfig = serde_json::from_slice(&raw).map_err(|e| ArchiveError::Format {
        dir: dir.to_path_buf(),
        detail: format!("store.json unreadable: {e}"),
    })?;
    if config.format != FORMAT {
        return Err(ArchiveError::Format {
            dir: dir.to_path_buf(),
            detail: format!(
                "format {} is not supported (expected {FORMAT})",
                config.format
            ),
        });
    }
    match (config.encrypted, &options.encryption_key_file) {
        (false, _) => Ok(Codec::plain()),
        (true, None) => Err(ArchiveError::Key {
            detail: format!(
                "the archive at {} is encrypted: give its key file",
                dir.display()
            ),
        }),
        (true, Some(key)) => {
            let codec = Codec::from_key_file(key)?;
            if codec.key_check() != config.key_check {
                return Err(ArchiveError::Key {
                    detail: format!("key file {} is not the key of this archive", key.display()),
                });
            }
            Ok(codec)
        }
    }
}

fn create_config(
    dir: &Path,
    config_path: &Path,
    options: &StoreOptions,
    io: &dyn StoreIo,
) -> Result<Codec, ArchiveError> {
    let codec = match &options.encryption_key_file {
        Some(key) => Codec::from_key_file(key)?,
        None => Codec::plain(),
    };
    let config = StoreConfig {
        format: FORMAT,
        store_id: format!("{:032x}", rand::random::<u128>()),
        encrypted: codec.encrypted(),
        key_check: codec.key_check(),
        created: Utc::now(),
    };
    let json = serde_json::to_vec_pretty(&config).map_err(|e| ArchiveError::Format {
        dir: dir.to_path_buf(),
        detail: e.to_string(),
    })?;
    write_atomic(io, config_path, &json)?;
    Ok(codec)
}

/// Opens the lock file (a reader that cannot create it only misses rebuilds).
fn open_lock(dir: &Path, read_only: bool) -> Result<WriteLock, ArchiveError> {
    let path = dir.join("LOCK");
    let opened = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .or_else(|e| if read_only { File::open(&path) } else { Err(e) });
    let file = match opened {
        Ok(file) => Some(file),
        Err(_) if read_only => None,
        Err(e) => return Err(ArchiveError::io(&path, e)),
    };
    Ok(WriteLock {
        path,
        file,
        active: Mutex::new(0),
    })
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

    fn open_with(dir: &Path, options: &StoreOptions, mode: Mode) -> Result<Self, ArchiveError> {
        let dir = dir.to_path_buf();
        let read_only = mode == Mode::Read;
        let io: Arc<dyn StoreIo> = options.io.clone().unwrap_or_else(|| Arc::new(RealIo));
        let packs_dir = dir.join("packs");
        let index_dir = dir.join("index");
        let config_path = dir.join("store.json");
        if read_only {
            if !config_path.is_file() {
                return Err(ArchiveError::Format {
                    dir,
                    detail: "no archive here (store.json is missing)".into(),
                });
            }
        } else {
            for d in [&dir, &packs_dir, &index_dir] {
                std::fs::create_dir_all(d).map_err(|e| ArchiveError::io(d, e))?;
            }
        }
        let write_lock = open_lock(&dir, read_only)?;
        let codec = if config_path.exists() {
            read_config(&dir, &config_path, options)?
        } else {
            // Created under the write lock, so two processes agree on one archive.
            let file = write_lock
                .file
                .as_ref()
                .ok_or_else(|| ArchiveError::Format {
                    dir: dir.clone(),
                    detail: "no archive here (store.json is missing)".into(),
                })?;
            FileExt::lock_exclusive(file).map_err(|e| ArchiveError::io(&write_lock.path, e))?;
            let created = if config_path.exists() {
                read_config(&dir, &config_path, options)
            } else if !list_packs(&packs_dir)?.is_empty() {
                Err(ArchiveError::Format {
                    dir: dir.clone(),
                    detail: "pack files exist but store.json is missing; restore it from a backup"
                        .into(),
                })
            } else {
                create_config(&dir, &config_path, options, &*io)
            };
            FileExt::unlock(file).map_err(|e| ArchiveError::io(&write_lock.path, e))?;
            created?
        };

        let pack_limit = options.pack_size_limit.max(1 << 20);
        let existing_packs = if packs_dir.exists() {
            list_packs(&packs_dir)?
        } else {
            Vec::new()
        };
        let last_pack = existing_packs.last().copied().unwrap_or(1);
        let (pack_writer, log_writer) = if read_only {
            (
                FrameAppender::read_only(&packs_dir, pack_path, last_pack)?,
                FrameAppender::read_only(&dir, log_path, 1)?,
            )
        } else {
            (
                FrameAppender::open(&packs_dir, pack_path, last_pack, pack_limit, io.clone())?,
                FrameAppender::open(&dir, log_path, 1, u64::MAX, io.clone())?,
            )
        };

        // The caches: the current generation, or none yet (a rebuild makes one).
        let seen = Caches::current_name(&index_dir).ok().flatten();
        let (caches, rebuild_cause) = if mode == Mode::Rebuild {
            (None, None)
        } else {
            match Caches::open_current(&*io, &index_dir) {
                Ok(caches) => (Some(caches), None),
                Err(e) if is_cache_error(&e, &index_dir) => (None, Some(e)),
                Err(e) => return Err(e),
            }
        };
        // Without usable caches: a fresh generation, made and built under the write lock.
        let (caches, fresh) = match caches {
            Some(c) => (c, false),
            None => {
                let file = write_lock
                    .file
                    .as_ref()
                    .ok_or_else(|| ArchiveError::Rebuild {
                        source: Box::new(ArchiveError::io(
                            &write_lock.path,
                            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
                        )),
                    })?;
                FileExt::lock_exclusive(file).map_err(|e| ArchiveError::io(&write_lock.path, e))?;
                *lock(&write_lock.active) = 1;
                let created = Caches::create_next(&index_dir).map_err(|e| ArchiveError::Rebuild {
                    source: Box::new(e),
                });
                match created {
                    Ok(c) => (c, true),
                    Err(e) => {
                        // Unlocked when the lock file closes.
                        return Err(e);
                    }
                }
            }
        };
        let store = DiskArchiveStore {
            packs: FrameFiles::new(packs_dir, pack_path),
            pack_writer: Mutex::new(pack_writer),
            log_writer: Mutex::new(log_writer),
            caches: RwLock::new(Arc::new(caches)),
            io,
            codec,
            compression_level: options.compression_level.clamp(1, 19),
            write_lock,
            read_only,
            commit: Mutex::new(CommitState::default()),
            committed: Condvar::new(),
            maintenance: RwLock::new(()),
            poisoned: Mutex::new(None),
            pack_gap: AtomicBool::new(false),
            search_pending: AtomicU64::new(0),
            search_pending_since: Mutex::new(None),
            pack_limit,
            dir,
            index_dir,
        };
        store.start(mode, fresh, seen, rebuild_cause)?;
        Ok(store)
    }

    /// Brings the caches up to date. With `fresh` the caches are a new generation
    /// (the write lock is held): they are built from the packs and the log and made
    /// current, unless another process did so while this one waited for the lock.
    fn start(
        &self,
        mode: Mode,
        fresh: bool,
        seen: Option<String>,
        cause: Option<ArchiveError>,
    ) -> Result<(), ArchiveError> {
        if fresh {
            // Adopts the lock taken when the fresh generation was made.
            let _write = WriteGuard { store: self };
            if mode != Mode::Rebuild && self.refresh_generation(seen.as_deref()) {
                remove_others(&self.index_dir, &self.caches().name);
                self.catch_up(!self.read_only)?;
            } else {
                let new_archive = list_packs(&self.dir.join("packs"))
                    .map_or(true, |p| p.is_empty())
                    && !self.index_dir.join(POINTER).exists();
                match &cause {
                    Some(cause) if new_archive => {
                        tracing::debug!(cause = %cause, "creating the archive indexes");
                    }
                    Some(cause) => {
                        tracing::warn!(cause = %cause, dir = %self.index_dir.display(), "the archive indexes are unusable; rebuilding them from the packs and the record log");
                    }
                    None => {}
                }
                let caches = self.caches();
                catch_panic(|| self.catch_up(!self.read_only))
                    .and_then(|()| self.sync_search(SearchIndex::default_wait()))
                    .and_then(|()| caches.make_current(&*self.io))
                    .map_err(|e| ArchiveError::Rebuild {
                        source: Box::new(e),
                    })?;
                remove_others(&self.index_dir, &caches.name);
            }
        } else if self.read_only {
            // No lock: apply what is past the positions, cut nothing.
            match catch_panic(|| self.catch_up(false)) {
                Ok(()) => {}
                Err(e) if is_cache_error(&e, &self.index_dir) => {
                    let _write = self.lock_for_maintenance()?;
                    if self.refresh_generation(None) {
                        self.catch_up(false)?;
                    } else {
                        self.rebuild_caches(&e, true)?;
                    }
                }
                Err(e) => return Err(e),
            }
        } else {
            drop(self.write_guard()?);
        }
        if !self.read_only {
            self.sync_search_logged(SearchIndex::default_wait());
        }
        Ok(())
    }

    /// Takes the write lock for maintenance (a rebuild, or opening): the caller runs
    /// with no other write of any process in progress.
    fn lock_for_maintenance(&self) -> Result<WriteGuard<'_>, ArchiveError> {
        let mut active = lock(&self.write_lock.active);
        if *active == 0
            && let Some(file) = &self.write_lock.file
        {
            FileExt::lock_exclusive(file)
                .map_err(|e| ArchiveError::io(&self.write_lock.path, e))?;
        }
        *active += 1;
        Ok(WriteGuard { store: self })
    }

    /// Takes the write lock for one write (blocking while another process writes)
    /// and, when this process did not hold it, catches up with what others wrote.
    pub(crate) fn write_guard(&self) -> Result<WriteGuard<'_>, ArchiveError> {
        let mut active = lock(&self.write_lock.active);
        if *active > 0 {
            *active += 1;
            return Ok(WriteGuard { store: self });
        }
        let Some(file) = &self.write_lock.file else {
            return Err(ArchiveError::ReadOnly {
                dir: self.dir.clone(),
            });
        };
        FileExt::lock_exclusive(file).map_err(|e| ArchiveError::io(&self.write_lock.path, e))?;
        // Other writes of this process wait (on `active`) until the catch-up is done.
        self.refresh_generation(None);
        let caught_up = match catch_panic(|| self.catch_up(true)) {
            Err(e) if is_cache_error(&e, &self.index_dir) => {
                let _exclusive = self
                    .maintenance
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                self.rebuild_caches(&e, true)
            }
            other => other,
        };
        if let Err(e) = caught_up {
            if let Err(unlock) = FileExt::unlock(file) {
                tracing::error!(lock = %self.write_lock.path.display(), error = %unlock, "cannot release the write lock");
            }
            return Err(e);
        }
        *active = 1;
        Ok(WriteGuard { store: self })
    }

    /// Switches to the generation `CURRENT` names when another process swapped it
    /// (it differs from the one in use and from `unless`); returns whether it switched.
    fn refresh_generation(&self, unless: Option<&str>) -> bool {
        let name = match Caches::current_name(&self.index_dir) {
            Ok(Some(name)) => name,
            Ok(None) => return false,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the index generation pointer");
                return false;
            }
        };
        if name == self.caches().name || Some(name.as_str()) == unless {
            return false;
        }
        match catch_panic(|| Caches::open(&self.index_dir, &name, false)) {
            Ok(fresh) => {
                *self.caches_mut() = Arc::new(fresh);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, generation = %name, "cannot open the current index generation");
                false
            }
        }
    }

    /// Builds a fresh generation from the packs and the record log and swaps it in;
    /// on failure the current one stays. The caller holds the write lock and the
    /// maintenance lock (or is still opening the store).
    fn rebuild_caches(&self, cause: &ArchiveError, warn: bool) -> Result<(), ArchiveError> {
        if warn {
            tracing::warn!(cause = %cause, dir = %self.index_dir.display(), "rebuilding the archive indexes from the packs and the record log");
        }
        let fresh = Caches::create_next(&self.index_dir).map_err(|e| ArchiveError::Rebuild {
            source: Box::new(e),
        })?;
        let fresh = Arc::new(fresh);
        let old = std::mem::replace(&mut *self.caches_mut(), fresh.clone());
        let built = catch_panic(|| self.catch_up(!self.read_only))
            .and_then(|()| self.sync_search(SearchIndex::default_wait()))
            .and_then(|()| fresh.make_current(&*self.io));
        if let Err(e) = built {
            *self.caches_mut() = old;
            drop(fresh);
            remove_others(&self.index_dir, &self.caches().name);
            return Err(ArchiveError::Rebuild {
                source: Box::new(e),
            });
        }
        drop(old);
        remove_others(&self.index_dir, &fresh.name);
        Ok(())
    }

    /// The caches in use.
    pub(crate) fn caches(&self) -> Arc<Caches> {
        self.caches
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn caches_mut(&self) -> std::sync::RwLockWriteGuard<'_, Arc<Caches>> {
        self.caches
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a read of the caches; when it fails with an index error, switches to a
    /// generation another process swapped in or rebuilds the caches once, and retries.
    pub(crate) fn healing<T>(
        &self,
        op: impl Fn() -> Result<T, ArchiveError>,
    ) -> Result<T, ArchiveError> {
        let (first, used) = {
            let _shared = self.maintenance_read();
            // A generation another process swapped in (cheap: reads a small file).
            self.refresh_generation(None);
            let used = self.caches();
            (catch_panic(&op), used)
        };
        match first {
            Err(e) if is_cache_error(&e, &self.index_dir) => {
                {
                    // Lock order: the write lock before the maintenance lock.
                    let _write = self.lock_for_maintenance()?;
                    let _exclusive = self
                        .maintenance
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    // Another caller or process may have rebuilt them meanwhile.
                    let switched = self.refresh_generation(None);
                    if !switched && Arc::ptr_eq(&used, &self.caches()) {
                        drop(used);
                        self.rebuild_caches(&e, true)?;
                    }
                }
                let _shared = self.maintenance_read();
                catch_panic(&op)
            }
            other => other,
        }
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

    /// Reopens the appenders at the true end of the newest pack and of the log
    /// (another process may have appended or started a new pack). Lock holders only.
    fn reopen_appenders(&self) -> Result<(), ArchiveError> {
        let packs_dir = self.dir.join("packs");
        let last = list_packs(&packs_dir)?.last().copied().unwrap_or(1);
        let file_len = |path: &Path| match std::fs::metadata(path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(ArchiveError::io(path, e)),
        };
        {
            let mut writer = lock(&self.pack_writer);
            let len = file_len(&pack_path(&packs_dir, last))?;
            if writer.number() != last || writer.len() != len {
                *writer = FrameAppender::open(
                    &packs_dir,
                    pack_path,
                    last,
                    self.pack_limit,
                    self.io.clone(),
                )?;
            }
        }
        let mut writer = lock(&self.log_writer);
        if writer.len() != file_len(&log_path(&self.dir, 1))? {
            *writer = FrameAppender::open(&self.dir, log_path, 1, u64::MAX, self.io.clone())?;
        }
        Ok(())
    }

    /// Replays packs and log past the positions `index.db` records into it; with
    /// `writable` (the caller holds the write lock) first reopens the appenders at
    /// the true ends and cuts torn tails.
    fn catch_up(&self, writable: bool) -> Result<(), ArchiveError> {
        let writable = writable && !self.read_only;
        if writable {
            self.reopen_appenders()?;
            self.pack_gap.store(false, Ordering::SeqCst);
        }
        let caches = self.caches();
        let (log_pos, pack_pos) = caches.index.positions()?;
        let packs_dir = self.dir.join("packs");
        let numbers = list_packs(&packs_dir)?;
        let (from_pack, from_len) = split_pack_position(pack_pos);
        let last = numbers.last().copied().unwrap_or(1);
        let last_len = std::fs::metadata(pack_path(&packs_dir, last)).map_or(0, |m| m.len());
        let log_file = log_path(&self.dir, 1);
        let log_len = std::fs::metadata(&log_file).map_or(0, |m| m.len());
        if from_pack > last || (from_pack == last && from_len > last_len) || log_pos > log_len {
            return Err(ArchiveError::Index {
                index: "listing",
                detail: "the index claims more than the packs and the record log hold".into(),
            });
        }
        // Packs: chunk and manifest locations.
        for (i, &n) in numbers.iter().enumerate() {
            if n < from_pack {
                continue;
            }
            let path = pack_path(&packs_dir, n);
            let start = if n == from_pack { from_len } else { 0 };
            let mut rows: Vec<(Table, [u8; 32], Location, u64)> = Vec::new();
            let summary = scan_file(&path, n, start, None, |event| {
                match event {
                    ScanEvent::Frame { loc, kind, payload } => {
                        if let Some(row) = frame_row(loc, kind, payload) {
                            rows.push(row);
                        }
                    }
                    ScanEvent::Damaged {
                        offset,
                        resume,
                        detail,
                        ..
                    } => {
                        if resume.is_some() {
                            tracing::error!(pack = %path.display(), offset, %detail, "damaged frame in pack; run `archive verify`");
                        }
                    }
                }
                Ok(())
            })?;
            let is_last = i + 1 == numbers.len();
            if summary.torn_tail() {
                if is_last && !writable {
                    tracing::warn!(pack = %path.display(), at = summary.valid_end, "torn tail (a crash, or a write in progress); reading stops there");
                    lock(&self.pack_writer).stop_at(summary.valid_end);
                } else if is_last {
                    tracing::warn!(pack = %path.display(), at = summary.valid_end, "cutting torn tail left by a crash");
                    let mut writer = lock(&self.pack_writer);
                    truncate_tail(&*self.io, &path, summary.valid_end)?;
                    *writer = FrameAppender::open(
                        &packs_dir,
                        pack_path,
                        n,
                        self.pack_limit,
                        self.io.clone(),
                    )?;
                } else {
                    tracing::error!(pack = %path.display(), at = summary.valid_end, "damaged end of a closed pack; run `archive verify`");
                }
            }
            let before = pack_position(from_pack, from_len).max(pack_position(n, start));
            let reached = pack_position(n, summary.valid_end.max(start));
            caches.index.transaction(|db| {
                for (table, key, loc, len) in &rows {
                    db.insert(*table, key, &crate::index::encode_located(*loc, *len))?;
                }
                db.advance_packs(pack_pos.min(before), reached)?;
                Ok(())
            })?;
        }
        // Record log: entries and sources, in batches (positions with their rows).
        let mut batch: Vec<([u8; 32], LogRecord)> = Vec::new();
        let mut batch_start = log_pos;
        let mut batch_end = log_pos;
        let summary = scan_file(&log_file, 1, log_pos, None, |event| {
            match event {
                ScanEvent::Frame { loc, payload, .. } => {
                    match decode_record(&self.codec, payload) {
                        Ok((address, record)) => batch.push((address, record)),
                        Err(detail) => {
                            tracing::error!(%detail, "undecodable record in the record log");
                        }
                    }
                    batch_end = loc.end();
                    if batch.len() >= REPLAY_BATCH {
                        self.apply_records(
                            &caches,
                            &std::mem::take(&mut batch),
                            batch_start,
                            batch_end,
                        )?;
                        batch_start = batch_end;
                    }
                }
                ScanEvent::Damaged {
                    offset,
                    resume,
                    detail,
                    ..
                } => {
                    if resume.is_some() {
                        tracing::error!(offset, %detail, "damaged record in the record log; run `archive verify`");
                    }
                }
            }
            Ok(())
        })?;
        let end = summary.valid_end.max(batch_end);
        self.apply_records(&caches, &batch, batch_start, end)?;
        if summary.torn_tail() && !writable {
            tracing::warn!(log = %log_file.display(), at = summary.valid_end, "torn tail of the record log (a crash, or a write in progress); reading stops there");
            lock(&self.log_writer).stop_at(summary.valid_end);
        } else if summary.torn_tail() {
            tracing::warn!(log = %log_file.display(), at = summary.valid_end, "cutting torn tail of the record log");
            let mut writer = lock(&self.log_writer);
            truncate_tail(&*self.io, &log_file, summary.valid_end)?;
            *writer = FrameAppender::open(&self.dir, log_path, 1, u64::MAX, self.io.clone())?;
        }
        if writable {
            // A search index ahead of the log (its tail was lost) starts again.
            let search_at = caches.search.committed_offset()?;
            if search_at > lock(&self.log_writer).len() {
                tracing::warn!("search index is ahead of the record log; rebuilding it");
                if let Some(mut writer) = caches.search.writer(SearchIndex::default_wait())? {
                    writer.clear()?;
                    writer.commit(0)?;
                }
            }
        }
        Ok(())
    }

    /// Applies replayed log records (log offsets `from..to`) in one transaction,
    /// with the metadata of their messages computed beforehand.
    fn apply_records(
        &self,
        caches: &Caches,
        records: &[([u8; 32], LogRecord)],
        from: u64,
        to: u64,
    ) -> Result<(), ArchiveError> {
        let mut metas = Vec::new();
        for (address, _) in records {
            if !caches.index.with(|db| db.has_metadata(address))?
                && !metas.iter().any(|(a, _)| a == address)
            {
                metas.push((*address, self.compute_metadata(address)?));
            }
        }
        caches.index.transaction(|db| {
            for (address, record) in records {
                db.put_entry(
                    address,
                    &record.user,
                    &record.folder,
                    record.received,
                    record.archived,
                    record.source.as_ref(),
                )?;
            }
            for (address, meta) in &metas {
                db.put_metadata(address, meta)?;
            }
            db.advance_log(from, to)?;
            Ok(())
        })
    }

    /// Brings the search index up to the record-log offset `index.db` reflects:
    /// indexes the records past its committed offset in one pass. When another
    /// process is indexing, waits up to `wait` for it, then searches what is committed.
    pub(crate) fn sync_search(&self, wait: Duration) -> Result<(), ArchiveError> {
        let caches = self.caches();
        let search = &caches.search;
        if search.committed_offset()? >= caches.index.positions()?.0 {
            return search.reload();
        }
        let Some(mut writer) = search.writer(wait)? else {
            tracing::debug!("another process is indexing; searching what is committed");
            return search.reload();
        };
        // Fresh figures under tantivy's writer lock: another process may have indexed.
        let from = search.committed_offset()?;
        let target = caches.index.positions()?.0;
        if from >= target {
            drop(writer);
            return search.reload();
        }
        self.search_pending.store(0, Ordering::SeqCst);
        *lock(&self.search_pending_since) = None;
        let log_file = log_path(&self.dir, 1);
        scan_file(&log_file, 1, from, Some(target), |event| {
            if let ScanEvent::Frame { payload, .. } = event
                && let Ok((address, record)) = decode_record(&self.codec, payload)
                && record.new_entry
            {
                let meta = self.metadata_of(&address)?;
                writer.add(&SearchDoc {
                    user: &record.user,
                    folder: &record.folder,
                    id: &to_hex(&address),
                    meta: &meta,
                    received: record.received,
                })?;
            }
            Ok(())
        })?;
        writer.commit(target)
    }

    fn sync_search_logged(&self, wait: Duration) {
        if let Err(e) = self.sync_search(wait) {
            tracing::error!(error = %e, "search index update failed; the next search or write retries it");
        }
    }

    /// After a group commit: an indexing pass when enough documents wait or the
    /// oldest has waited long enough (never waiting for another process).
    fn maybe_sync_search(&self) {
        let due = self.search_pending.load(Ordering::SeqCst) >= SEARCH_BATCH_DOCS
            || lock(&self.search_pending_since).is_some_and(|t| t.elapsed() >= SEARCH_BATCH_AGE);
        if due {
            self.sync_search_logged(Duration::ZERO);
        }
    }

    /// Metadata from the cache, or computed from the stored bytes.
    pub(crate) fn metadata_of(&self, address: &[u8; 32]) -> Result<MessageMetadata, ArchiveError> {
        if let Some(meta) = self.caches().index.metadata(address, true)? {
            return Ok(meta);
        }
        let meta = self.compute_metadata(address)?;
        self.caches().index.put_metadata(address, &meta)?;
        Ok(meta)
    }

    fn compute_metadata(&self, address: &[u8; 32]) -> Result<MessageMetadata, ArchiveError> {
        let reader = match self.open_message(address) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(id = %to_hex(address), error = %e, "cannot read message for metadata");
                return Ok(MessageMetadata {
                    unparseable: true,
                    ..MessageMetadata::default()
                });
            }
        };
        let size = reader.size;
        let summary = chunk_stream(
            BufReader::with_capacity(256 * 1024, reader),
            &mut |_c: &[u8]| Ok(()),
            &|e| ArchiveError::io("stored message", e),
        );
        match summary {
            Ok(ChunkSummary { skeleton, .. }) => Ok(extract(&skeleton, size)),
            Err(e) => {
                tracing::error!(id = %to_hex(address), error = %e, "cannot read message for metadata");
                Ok(MessageMetadata {
                    size,
                    unparseable: true,
                    ..MessageMetadata::default()
                })
            }
        }
    }

    fn check_poisoned(&self) -> Result<(), ArchiveError> {
        if self.read_only {
            return Err(ArchiveError::ReadOnly {
                dir: self.dir.clone(),
            });
        }
        if let Some(failure) = lock(&self.poisoned).clone() {
            return Err(ArchiveError::Poisoned { failure });
        }
        Ok(())
    }

    fn poison(&self, err: &ArchiveError) {
        let mut p = lock(&self.poisoned);
        if p.is_none() {
            *p = Some(IoFailure::of(err));
        }
    }

    /// Hashes the whole message (the address).
    fn address_of(&self, raw: RawMessage<'_>) -> Result<[u8; 32], ArchiveError> {
        match raw {
            RawMessage::Bytes(bytes) => Ok(self.codec.hash(bytes)),
            RawMessage::File(path) => {
                let mut file = File::open(path).map_err(|e| ArchiveError::io(path, e))?;
                let mut hasher = self.codec.hasher();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = match file.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(ArchiveError::io(path, e)),
                    };
                    hasher.update(&buf[..n]);
                }
                Ok(*hasher.finalize().as_bytes())
            }
        }
    }

    fn chunk_body(&self, chunk: &[u8]) -> Result<Vec<u8>, ArchiveError> {
        let compressed = zstd::bulk::compress(chunk, self.compression_level)
            .map_err(|e| ArchiveError::io("zstd", e))?;
        let mut body = Vec::with_capacity(compressed.len().min(chunk.len()) + 1);
        if compressed.len() < chunk.len() {
            body.push(CODEC_ZSTD);
            body.extend_from_slice(&compressed);
        } else {
            body.push(CODEC_RAW);
            body.extend_from_slice(chunk);
        }
        Ok(body)
    }

    /// Whether an index location still holds the object (guards against stale index rows).
    fn live(&self, loc: Location, frame_kind: u8, key: &[u8; 32]) -> bool {
        self.packs.probe(loc, frame_kind, key)
    }

    /// Stores chunks and manifest of a message new to the store; returns false when
    /// another writer stored it first.
    fn store_content(&self, address: &[u8; 32], raw: RawMessage<'_>) -> Result<bool, ArchiveError> {
        let mut manifest: Vec<([u8; 32], u32)> = Vec::new();
        let mut hasher = self.codec.hasher();
        let mut emit = |chunk: &[u8]| -> Result<(), ArchiveError> {
            hasher.update(chunk);
            let key = self.codec.hash(chunk);
            let len = u32::try_from(chunk.len()).map_err(ArchiveError::listing)?;
            if let Some((loc, _)) = self.caches().index.chunk(&key)?
                && self.live(loc, kind::CHUNK, &key)
            {
                manifest.push((key, len));
                return Ok(());
            }
            let body = self.chunk_body(chunk)?;
            let sealed = self.codec.seal(kind::CHUNK, &key, body)?;
            let mut payload = Vec::with_capacity(40 + sealed.len());
            payload.extend_from_slice(&key);
            payload.extend_from_slice(&u64::from(len).to_le_bytes());
            payload.extend_from_slice(&sealed);
            let mut writer = lock(&self.pack_writer);
            let fresh = match self.caches().index.chunk(&key)? {
                Some((loc, _)) => !self.live(loc, kind::CHUNK, &key),
                None => true,
            };
            if fresh {
                let loc = writer
                    .append(kind::CHUNK, &payload)
                    .inspect_err(|e| self.poison(e))?;
                self.caches()
                    .index
                    .put_located(Table::Chunks, &key, loc, u64::from(len))
                    .inspect_err(|_| self.pack_gap.store(true, Ordering::SeqCst))?;
            }
            manifest.push((key, len));
            Ok(())
        };
        let summary = match raw {
            RawMessage::Bytes(bytes) => {
                chunk_stream(bytes, &mut emit, &|e| ArchiveError::io("message", e))?
            }
            RawMessage::File(path) => {
                let file = File::open(path).map_err(|e| ArchiveError::io(path, e))?;
                chunk_stream(BufReader::with_capacity(1 << 20, file), &mut emit, &|e| {
                    ArchiveError::io(path, e)
                })?
            }
        };
        if hasher.finalize().as_bytes() != address {
            let path = match raw {
                RawMessage::File(p) => p.to_path_buf(),
                RawMessage::Bytes(_) => PathBuf::from("message"),
            };
            return Err(ArchiveError::BadInput {
                path,
                detail: "the file changed while it was being archived".into(),
            });
        }
        let mut body = Vec::with_capacity(8 + manifest.len() * 36);
        body.extend_from_slice(&(manifest.len() as u64).to_le_bytes());
        for (key, len) in &manifest {
            body.extend_from_slice(key);
            body.extend_from_slice(&len.to_le_bytes());
        }
        let sealed = self.codec.seal(kind::MANIFEST, address, body)?;
        let mut payload = Vec::with_capacity(40 + sealed.len());
        payload.extend_from_slice(address);
        payload.extend_from_slice(&summary.size.to_le_bytes());
        payload.extend_from_slice(&sealed);
        let meta = extract(&summary.skeleton, summary.size);
        drop(summary);
        {
            let mut writer = lock(&self.pack_writer);
            if let Some((loc, _)) = self.caches().index.message(address)?
                && self.live(loc, kind::MANIFEST, address)
            {
                return Ok(false);
            }
            let loc = writer
                .append(kind::MANIFEST, &payload)
                .inspect_err(|e| self.poison(e))?;
            self.caches()
                .index
                .put_located(Table::Messages, address, loc, summary_size(&payload))
                .inspect_err(|_| self.pack_gap.store(true, Ordering::SeqCst))?;
        }
        self.caches().index.put_metadata(address, &meta)?;
        Ok(true)
    }

    /// The group commit: waits until a leader (maybe this caller) made the record durable.
    fn commit(&self, pending: Pending) -> Result<ArchiveOutcome, ArchiveError> {
        let mut state = lock(&self.commit);
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push(Pending { ticket, ..pending });
        loop {
            if let Some(result) = state.done.remove(&ticket) {
                return result.map_err(|failure| ArchiveError::NotDurable { failure });
            }
            if !state.leader {
                state.leader = true;
                let batch = std::mem::take(&mut state.queue);
                drop(state);
                let tickets: Vec<u64> = batch.iter().map(|p| p.ticket).collect();
                // After a failed write or fsync nothing more is promised durable.
                let results = self
                    .check_poisoned()
                    .and_then(|()| self.commit_batch(batch));
                state = lock(&self.commit);
                match results {
                    Ok(outcomes) => {
                        for (t, o) in outcomes {
                            state.done.insert(t, Ok(o));
                        }
                    }
                    Err(e) => {
                        self.poison(&e);
                        for t in tickets {
                            state.done.insert(t, Err(IoFailure::of(&e)));
                        }
                    }
                }
                state.leader = false;
                self.committed.notify_all();
                continue;
            }
            state = self
                .committed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn commit_batch(
        &self,
        batch: Vec<Pending>,
    ) -> Result<Vec<(u64, ArchiveOutcome)>, ArchiveError> {
        // 1. Everything the batch refers to is in the pack already: make it durable.
        let (file, path, pack_pos) = {
            let writer = lock(&self.pack_writer);
            let (file, path) = writer.handle()?;
            (file, path, pack_position(writer.number(), writer.len()))
        };
        self.io
            .sync(&file, &path)
            .map_err(|e| ArchiveError::io(&path, e))?;

        // 2. Decide which records to write.
        let now = Utc::now();
        let mut seen_entries: HashSet<Vec<u8>> = HashSet::new();
        let mut seen_sources: HashSet<Vec<u8>> = HashSet::new();
        let mut frames = Vec::new();
        let mut records = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        for p in &batch {
            let r = &p.request;
            let ekey = crate::index::entry_key(&r.user, &r.folder, &p.address);
            let entry_exists = seen_entries.contains(&ekey)
                || self
                    .caches()
                    .index
                    .has_entry(&p.address, &r.user, &r.folder)?;
            let source_known = match &r.source {
                None => true,
                Some(s) => {
                    let skey = crate::index::source_key(&r.user, s);
                    seen_sources.contains(&skey)
                        || self.caches().index.source(&r.user, s)? == Some(p.address)
                }
            };
            let new_entry = !entry_exists;
            if new_entry || !source_known {
                let record = LogRecord {
                    user: r.user.clone(),
                    folder: r.folder.clone(),
                    source: r.source.clone(),
                    received: r.received,
                    archived: now,
                    new_entry,
                };
                frames.push((
                    kind::RECORD,
                    encode_record(&self.codec, &p.address, &record)?,
                ));
                records.push((p, record));
                seen_entries.insert(ekey);
                if let Some(s) = &r.source {
                    seen_sources.insert(crate::index::source_key(&r.user, s));
                }
            }
            outcomes.push((
                p.ticket,
                ArchiveOutcome {
                    id: MessageId(to_hex(&p.address)),
                    new_content: p.new_content,
                    new_entry,
                },
            ));
        }
        if frames.is_empty() {
            return Ok(outcomes);
        }

        // 3. Append and fsync the record log.
        let (log_start, log_end) = {
            let mut log = lock(&self.log_writer);
            let start = log.len();
            log.append_many(&frames)?;
            log.sync()?;
            (start, log.len())
        };

        // 4. index.db: the records and the positions they reach, in one transaction
        // (a failure is logged: the next catch-up replays the log).
        let caches = self.caches();
        let pack_gap = self.pack_gap.load(Ordering::SeqCst);
        let applied = caches.index.transaction(|db| {
            for (p, record) in &records {
                db.put_entry(
                    &p.address,
                    &record.user,
                    &record.folder,
                    record.received,
                    record.archived,
                    record.source.as_ref(),
                )?;
            }
            if !db.advance_log(log_start, log_end)? {
                tracing::warn!(
                    "the listing index has a gap before this batch; the next catch-up replays it"
                );
            }
            if !pack_gap {
                db.advance_packs(0, pack_pos)?;
            }
            Ok(())
        });
        if let Err(e) = applied {
            tracing::error!(error = %e, "listing index update failed; the next catch-up replays it");
        }
        let docs = records.iter().filter(|(_, r)| r.new_entry).count() as u64;
        if docs > 0 {
            self.search_pending.fetch_add(docs, Ordering::SeqCst);
            lock(&self.search_pending_since).get_or_insert_with(Instant::now);
        }
        Ok(outcomes)
    }

    /// Chunk list and size of a stored message.
    pub(crate) fn manifest(&self, address: &[u8; 32]) -> Result<(ChunkList, u64), ArchiveError> {
        let Some((loc, _)) = self.caches().index.message(address)? else {
            return Err(ArchiveError::NotFound {
                id: to_hex(address),
            });
        };
        let (frame_kind, payload) = self.packs.read(loc)?;
        let corrupt = |detail: &str| ArchiveError::CorruptObject {
            pack: self.packs.path(loc.file),
            offset: loc.offset,
            detail: detail.to_string(),
            affected: vec![MessageId(to_hex(address))],
        };
        if frame_kind != kind::MANIFEST || payload.len() < 40 || &payload[..32] != address {
            return Err(corrupt(
                "index points to a frame that is not this message's manifest",
            ));
        }
        let size = u64::from_le_bytes(
            payload[32..40]
                .try_into()
                .map_err(|_| corrupt("short manifest"))?,
        );
        let body = self
            .codec
            .open(kind::MANIFEST, address, &payload[40..])
            .map_err(|d| corrupt(&d))?;
        parse_manifest(&body)
            .map(|list| (list, size))
            .ok_or_else(|| corrupt("undecodable manifest"))
    }

    /// Reads, decompresses and re-hashes one chunk.
    pub(crate) fn read_chunk(
        &self,
        key: &[u8; 32],
        message: &[u8; 32],
    ) -> Result<Vec<u8>, ArchiveError> {
        let Some((loc, _)) = self.caches().index.chunk(key)? else {
            return Err(ArchiveError::Corrupt {
                object: format!("chunk {}", to_hex(key)),
                detail: format!("missing from the archive (message {})", to_hex(message)),
            });
        };
        let (frame_kind, payload) = self.packs.read(loc).map_err(|e| match e {
            ArchiveError::CorruptObject {
                pack,
                offset,
                detail,
                ..
            } => ArchiveError::CorruptObject {
                pack,
                offset,
                detail,
                affected: vec![MessageId(to_hex(message))],
            },
            other => other,
        })?;
        let corrupt = |detail: &str| ArchiveError::CorruptObject {
            pack: self.packs.path(loc.file),
            offset: loc.offset,
            detail: detail.to_string(),
            affected: vec![MessageId(to_hex(message))],
        };
        if frame_kind != kind::CHUNK || payload.len() < 41 || &payload[..32] != key {
            return Err(corrupt("index points to a frame that is not this chunk"));
        }
        let raw_len = u64::from_le_bytes(
            payload[32..40]
                .try_into()
                .map_err(|_| corrupt("short chunk"))?,
        );
        let chunk =
            decode_chunk(&self.codec, key, &payload[40..], raw_len).map_err(|d| corrupt(&d))?;
        if &self.codec.hash(&chunk) != key {
            return Err(corrupt("chunk content does not match its hash"));
        }
        Ok(chunk)
    }

    /// A streaming reader of a stored message.
    pub(crate) fn open_message(
        &self,
        address: &[u8; 32],
    ) -> Result<MessageReader<'_>, ArchiveError> {
        let (chunks, size) = self.manifest(address)?;
        Ok(MessageReader {
            store: self,
            address: *address,
            chunks,
            next: 0,
            buf: Vec::new(),
            pos: 0,
            size,
        })
    }

    /// Entries of `user`'s archive, in `folder` only when given.
    pub fn list(
        &self,
        user: &str,
        folder: Option<&str>,
    ) -> Result<Vec<ArchiveEntry>, ArchiveError> {
        self.healing(|| self.list_raw(user, folder))
    }

    fn list_raw(
        &self,
        user: &str,
        folder: Option<&str>,
    ) -> Result<Vec<ArchiveEntry>, ArchiveError> {
        let mut prefix = user.as_bytes().to_vec();
        prefix.push(0);
        if let Some(folder) = folder {
            prefix.extend_from_slice(folder.as_bytes());
            prefix.push(0);
        }
        let mut out = Vec::new();
        for (key, value) in self.caches().index.scan_prefix(Table::Entries, &prefix)? {
            let Some((user, folder, address)) = split_entry_key(&key) else {
                continue;
            };
            if folder.as_bytes().contains(&0) {
                continue;
            }
            let value: EntryValue =
                serde_json::from_slice(&value).map_err(ArchiveError::listing)?;
            let meta = self
                .caches()
                .index
                .metadata(&address, false)?
                .unwrap_or_default();
            let size = self
                .caches()
                .index
                .message(&address)?
                .map_or(meta.size, |(_, s)| s);
            out.push(ArchiveEntry {
                id: MessageId(to_hex(&address)),
                user,
                folder,
                received: value.received,
                archived: value.archived,
                sources: value.sources,
                size,
                subject: meta.subject,
                from: meta.from,
                date: meta.date,
                unparseable: meta.unparseable,
            });
        }
        Ok(out)
    }

    /// Users with an archive, sorted.
    pub fn users(&self) -> Result<Vec<String>, ArchiveError> {
        self.healing(|| self.distinct_prefixes(&[]))
    }

    /// Folders of `user`'s archive, sorted.
    pub fn folders(&self, user: &str) -> Result<Vec<String>, ArchiveError> {
        let mut prefix = user.as_bytes().to_vec();
        prefix.push(0);
        self.healing(|| self.distinct_prefixes(&prefix))
    }

    /// Distinct NUL-terminated components following `prefix` in the entries tree.
    fn distinct_prefixes(&self, prefix: &[u8]) -> Result<Vec<String>, ArchiveError> {
        let mut out = Vec::new();
        let mut start = prefix.to_vec();
        loop {
            let Some(key) = self.caches().index.first_key_from(Table::Entries, &start)? else {
                break;
            };
            if !key.starts_with(prefix) {
                break;
            }
            let rest = &key[prefix.len()..];
            let Some(end) = rest.iter().position(|&b| b == 0) else {
                break;
            };
            let name = &rest[..end];
            out.push(String::from_utf8_lossy(name).into_owned());
            start = prefix.to_vec();
            start.extend_from_slice(name);
            start.push(1);
        }
        Ok(out)
    }

    /// Metadata and locations of a stored message (`archive show ID`).
    pub fn show(&self, id: &MessageId) -> Result<MessageInfo, ArchiveError> {
        self.healing(|| self.show_raw(id))
    }

    fn show_raw(&self, id: &MessageId) -> Result<MessageInfo, ArchiveError> {
        let address = parse_id(id)?;
        let Some((_, size)) = self.caches().index.message(&address)? else {
            return Err(ArchiveError::NotFound { id: id.0.clone() });
        };
        let metadata = match self.caches().index.metadata(&address, false)? {
            Some(meta) => meta,
            None => {
                let mut meta = self.metadata_of(&address)?;
                meta.body_text.clear();
                meta
            }
        };
        Ok(MessageInfo {
            id: MessageId(to_hex(&address)),
            size,
            metadata,
            locations: self.caches().index.holders_of(&address)?,
        })
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

    /// Brings the search index up to date (also done on drop of a writable store;
    /// `index.db` is committed with every group commit).
    pub fn flush(&self) -> Result<(), ArchiveError> {
        self.sync_search(SearchIndex::default_wait())
    }

    /// Number of committed search documents (for drift checks).
    pub(crate) fn search_docs(&self) -> Result<u64, ArchiveError> {
        self.sync_search(SearchIndex::default_wait())?;
        self.caches().search.num_docs()
    }

    pub(crate) fn maintenance_read(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.maintenance
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lengths of the pack files and of the log that `index.db` reflects (verify
    /// scans up to these: all of it is durable, whatever other processes append).
    pub(crate) fn lengths(&self) -> Result<(Vec<(u32, u64)>, u64), ArchiveError> {
        let (log_pos, pack_pos) = self.caches().index.positions()?;
        let (pack_no, pack_len) = split_pack_position(pack_pos);
        let mut packs = Vec::new();
        for n in list_packs(&self.dir.join("packs"))? {
            let len = if n < pack_no {
                let path = self.packs.path(n);
                std::fs::metadata(&path)
                    .map_err(|e| ArchiveError::io(&path, e))?
                    .len()
            } else if n == pack_no {
                pack_len
            } else {
                0
            };
            packs.push((n, len));
        }
        Ok((packs, log_pos))
    }
}

/// The lookup row a pack frame gives (chunk or manifest location).
fn frame_row(
    loc: Location,
    frame_kind: u8,
    payload: &[u8],
) -> Option<(Table, [u8; 32], Location, u64)> {
    let table = match frame_kind {
        kind::CHUNK => Table::Chunks,
        kind::MANIFEST => Table::Messages,
        _ => return None,
    };
    let key: [u8; 32] = payload.get(..32)?.try_into().ok()?;
    let n = u64::from_le_bytes(payload.get(32..40)?.try_into().ok()?);
    Some((table, key, loc, n))
}

fn summary_size(payload: &[u8]) -> u64 {
    payload
        .get(32..40)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Decodes a manifest body into (chunk key, raw length) pairs.
pub(crate) fn parse_manifest(body: &[u8]) -> Option<Vec<([u8; 32], u32)>> {
    let n = u64::from_le_bytes(body.get(..8)?.try_into().ok()?) as usize;
    let rest = &body[8..];
    if rest.len() != n.checked_mul(36)? {
        return None;
    }
    Some(
        rest.chunks_exact(36)
            .filter_map(|c| {
                Some((
                    c[..32].try_into().ok()?,
                    u32::from_le_bytes(c[32..].try_into().ok()?),
                ))
            })
            .collect(),
    )
}

/// Decodes a chunk body (after the key and length): unseal, decompress.
pub(crate) fn decode_chunk(
    codec: &Codec,
    key: &[u8; 32],
    sealed: &[u8],
    raw_len: u64,
) -> Result<Vec<u8>, String> {
    let body = codec.open(kind::CHUNK, key, sealed)?;
    let (&codec_byte, data) = body.split_first().ok_or("empty chunk body")?;
    let chunk = match codec_byte {
        CODEC_RAW => data.to_vec(),
        CODEC_ZSTD => {
            zstd::bulk::decompress(data, raw_len as usize).map_err(|e| format!("zstd: {e}"))?
        }
        other => return Err(format!("unknown chunk codec {other}")),
    };
    if chunk.len() as u64 != raw_len {
        return Err(format!(
            "chunk is {} bytes, expected {raw_len}",
            chunk.len()
        ));
    }
    Ok(chunk)
}

/// Streams a stored message chunk by chunk (each chunk re-hashed as it is read).
pub(crate) struct MessageReader<'a> {
    store: &'a DiskArchiveStore,
    address: [u8; 32],
    chunks: Vec<([u8; 32], u32)>,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
    /// Raw size.
    pub(crate) size: u64,
}

impl Read for MessageReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            let Some((key, _)) = self.chunks.get(self.next) else {
                return Ok(0);
            };
            self.buf = self
                .store
                .read_chunk(key, &self.address)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl ArchiveStore for DiskArchiveStore {
    fn archive(
        &self,
        request: &ArchiveRequest,
        raw: RawMessage<'_>,
    ) -> Result<ArchiveOutcome, ArchiveError> {
        validate(request)?;
        self.check_poisoned()?;
        let span = tracing::debug_span!("archive", user = %request.user, folder = %request.folder);
        let _enter = span.enter();
        let address = self.address_of(raw)?;
        let outcome = {
            // Lock order: the write lock, then the maintenance lock. Lookups happen
            // under the write lock, after catching up with other processes.
            let _write = self.write_guard()?;
            let _shared = self.maintenance_read();
            let known = match self.caches().index.message(&address)? {
                Some((loc, _)) => self.live(loc, kind::MANIFEST, &address),
                None => false,
            };
            let new_content = !known && self.store_content(&address, raw)?;
            self.commit(Pending {
                ticket: 0,
                address,
                request: request.clone(),
                new_content,
            })
        };
        self.maybe_sync_search();
        outcome
    }

    fn find_source(
        &self,
        user: &str,
        source: &SourceRef,
    ) -> Result<Option<MessageId>, ArchiveError> {
        self.healing(|| {
            Ok(self
                .caches()
                .index
                .source(user, source)?
                .map(|a| MessageId(to_hex(&a))))
        })
    }

    fn verify_message(&self, id: &MessageId) -> Result<bool, ArchiveError> {
        self.healing(|| self.verify_message_raw(id))
    }

    fn read_message(&self, id: &MessageId) -> Result<Vec<u8>, ArchiveError> {
        self.healing(|| self.read_message_raw(id))
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
            self.sync_search(SearchIndex::default_wait())?;
            let hits = self.caches().search.search(query, scope)?;
            self.checked_hits(hits)
        })
    }

    fn stats(&self) -> Result<ArchiveStats, ArchiveError> {
        self.healing(|| self.stats_raw())
    }
}

impl DiskArchiveStore {
    fn verify_message_raw(&self, id: &MessageId) -> Result<bool, ArchiveError> {
        let address = parse_id(id)?;
        let mut reader = match self.open_message(&address) {
            Ok(r) => r,
            Err(ArchiveError::NotFound { .. }) => {
                return Err(ArchiveError::NotFound { id: id.0.clone() });
            }
            Err(_) => return Ok(false),
        };
        let mut hasher = self.codec.hasher();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                }
                Err(_) => return Ok(false),
            }
        }
        Ok(hasher.finalize().as_bytes() == &address)
    }

    fn read_message_raw(&self, id: &MessageId) -> Result<Vec<u8>, ArchiveError> {
        let address = parse_id(id)?;
        let (chunks, size) = self.manifest(&address)?;
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for (key, _) in &chunks {
            out.extend_from_slice(&self.read_chunk(key, &address)?);
        }
        if self.codec.hash(&out) != address {
            return Err(ArchiveError::Corrupt {
                object: format!("message {}", id.0),
                detail: "reassembled bytes do not match the message hash".into(),
            });
        }
        Ok(out)
    }

    /// Checks search hits against the listing index and takes their fields from it,
    /// so damage to the search index's stored fields shows as an index error (and
    /// heals) instead of as wrong answers.
    fn checked_hits(&self, hits: Vec<SearchHit>) -> Result<Vec<SearchHit>, ArchiveError> {
        let caches = self.caches();
        let mut out = Vec::with_capacity(hits.len());
        for hit in hits {
            let stale = || ArchiveError::Index {
                index: "search",
                detail: format!(
                    "hit {}/{}/{} is not in the listing index",
                    hit.user, hit.folder, hit.id
                ),
            };
            let address = parse_id(&hit.id).map_err(|_| stale())?;
            let key = crate::index::entry_key(&hit.user, &hit.folder, &address);
            let Some(raw) = caches.index.with(|db| db.get(Table::Entries, &key))? else {
                return Err(stale());
            };
            let entry: EntryValue = serde_json::from_slice(&raw).map_err(ArchiveError::listing)?;
            let meta = caches.index.metadata(&address, false)?.unwrap_or_default();
            out.push(SearchHit {
                id: MessageId(to_hex(&address)),
                date: entry.received.or(meta.date),
                from: meta.from,
                subject: meta.subject,
                ..hit
            });
        }
        Ok(out)
    }

    fn stats_raw(&self) -> Result<ArchiveStats, ArchiveError> {
        let caches = self.caches();
        let mut stats = ArchiveStats::default();
        for (key, _) in caches.index.scan_prefix(Table::Entries, &[])? {
            if let Some((user, _, _)) = split_entry_key(&key) {
                stats.messages += 1;
                *stats.users.entry(user).or_insert(0) += 1;
            }
        }
        let mut last: Option<Vec<u8>> = None;
        for (key, _) in caches.index.scan_prefix(Table::Holders, &[])? {
            let address = &key[..32.min(key.len())];
            if last.as_deref() != Some(address) {
                stats.unique_messages += 1;
                if let Ok(a) = <[u8; 32]>::try_from(address)
                    && let Some((_, size)) = caches.index.message(&a)?
                {
                    stats.logical_bytes += size;
                }
                last = Some(address.to_vec());
            }
        }
        stats.chunks = caches.index.count(Table::Chunks)?;
        for n in list_packs(&self.dir.join("packs"))? {
            let path = self.packs.path(n);
            stats.stored_bytes += std::fs::metadata(&path)
                .map_err(|e| ArchiveError::io(&path, e))?
                .len();
        }
        Ok(stats)
    }
}

impl Drop for DiskArchiveStore {
    fn drop(&mut self) {
        if !self.read_only && self.search_pending.load(Ordering::SeqCst) > 0 {
            self.sync_search_logged(SearchIndex::default_wait());
        }
    }
}
