//! Opening an archive: `store.json`, the write lock, the index generation
//! (opened, or rebuilt and swapped in), and the healing of reads that hit an
//! index error.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, RwLock};

use chrono::Utc;
use fs2::FileExt;

use crate::ArchiveError;
use crate::caches::{Caches, POINTER, catch_panic, is_cache_error, remove_others};
use crate::crypto::Codec;
use crate::io::{RealIo, StoreIo};
use crate::log::log_path;
use crate::pack::{FrameAppender, FrameFiles, list_packs, pack_path, write_atomic};
use crate::search::SearchIndex;

use super::{
    CommitState, DiskArchiveStore, FORMAT, Mode, StoreConfig, StoreOptions, WriteGuard, WriteLock,
    lock,
};

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
    pub(super) fn open_with(
        dir: &Path,
        options: &StoreOptions,
        mode: Mode,
    ) -> Result<Self, ArchiveError> {
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
        let codec = Arc::new(if config_path.exists() {
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
        });

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
        let indexer = Arc::new(super::indexer::Indexer::new(
            codec.clone(),
            log_path(&dir, 1),
        ));
        let caches = Arc::new(RwLock::new(Arc::new(caches)));
        let timings = Arc::new(super::Timings::default());
        let deferred = super::deferred::Deferred::new(
            options.index_commit_delay,
            caches.clone(),
            indexer.clone(),
            timings.clone(),
        );
        let store = DiskArchiveStore {
            packs: FrameFiles::new(packs_dir, pack_path),
            pack_writer: Mutex::new(pack_writer),
            log_writer: Mutex::new(log_writer),
            caches,
            io,
            codec,
            compression_level: options.compression_level.clamp(1, 19),
            write_lock,
            read_only,
            commit: Mutex::new(CommitState::default()),
            committed: Condvar::new(),
            maintenance: RwLock::new(()),
            poisoned: Mutex::new(None),
            staged: Mutex::new(super::Staged::default()),
            deferred,
            read_catch_up: Mutex::new(()),
            indexer,
            pack_limit,
            timings,
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
            let _write = self.write_guard()?;
            self.check_search_ahead()?;
        }
        if !self.read_only {
            self.sync_search_logged(SearchIndex::default_wait());
        }
        Ok(())
    }

    /// Takes the write lock for maintenance (a rebuild, or opening): the caller runs
    /// with no other write of any process in progress.
    pub(super) fn lock_for_maintenance(&self) -> Result<WriteGuard<'_>, ArchiveError> {
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
    pub(super) fn rebuild_caches(
        &self,
        cause: &ArchiveError,
        warn: bool,
    ) -> Result<(), ArchiveError> {
        if warn {
            tracing::warn!(cause = %cause, dir = %self.index_dir.display(), "rebuilding the archive indexes from the packs and the record log");
        }
        // The rows waiting for index.db and the indexer's waiting documents belong
        // to the generation being replaced (the rebuild replays their sources).
        self.deferred.discard();
        self.indexer.flush();
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

    /// Runs a read of the caches after replaying what other processes wrote since
    /// `index.db` was last brought up to date and committing this process's waiting
    /// `index.db` rows; when it fails with an index error, switches to a generation
    /// another process swapped in or rebuilds the caches once, and retries.
    pub(crate) fn healing<T>(
        &self,
        op: impl Fn() -> Result<T, ArchiveError>,
    ) -> Result<T, ArchiveError> {
        self.healing_with(true, op)
    }

    /// [`DiskArchiveStore::healing`]; without `settle` this process's waiting rows
    /// stay waiting (for reads that consult them).
    pub(crate) fn healing_with<T>(
        &self,
        settle: bool,
        op: impl Fn() -> Result<T, ArchiveError>,
    ) -> Result<T, ArchiveError> {
        let op = || {
            if self.read_only {
                let _one = lock(&self.read_catch_up);
                self.catch_up(false)?;
            } else {
                // With no write of this process in progress, what the files hold past
                // index.db is this process's waiting rows and what other processes
                // wrote (their rows wait in their own process): replay those. Holding
                // `active` keeps this process's writes from starting meanwhile. With a
                // write in progress this process holds the write lock, so nobody
                // else wrote since it caught up on taking it.
                let active = lock(&self.write_lock.active);
                if *active == 0 {
                    self.catch_up(false)?;
                }
                drop(active);
                if settle {
                    self.deferred.settle()?;
                }
            }
            op()
        };
        let (first, used) = {
            let _shared = self.maintenance_read();
            // A generation another process swapped in (cheap: reads a small file).
            self.refresh_generation(None);
            let used = self.caches();
            (catch_panic(op), used)
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
                catch_panic(op)
            }
            other => other,
        }
    }
}
