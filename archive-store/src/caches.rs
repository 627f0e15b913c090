//! Index generations: the caches (`index.db`, tantivy) of one archive
//! live in `index/gen-<N>/`, and the small pointer file `index/CURRENT` names the
//! generation in use. A rebuild fills a fresh generation beside the current one
//! and swaps the pointer atomically, so a damaged generation is never opened to
//! build its replacement. Everything here is rebuildable from the packs and the
//! record log.

use std::path::{Path, PathBuf};

use crate::ArchiveError;
use crate::index::Index;
use crate::io::StoreIo;
use crate::pack::write_atomic;
use crate::search::SearchIndex;

/// File naming the current generation.
pub(crate) const POINTER: &str = "CURRENT";
/// Directories of the layout before generations (migrated on open).
const LEGACY: [&str; 3] = ["sled", "search", "checkpoint.json"];
const PREFIX: &str = "gen-";

/// The caches of one generation.
pub(crate) struct Caches {
    /// The lookup database.
    pub(crate) index: Index,
    /// The full-text index.
    pub(crate) search: SearchIndex,
    /// `index/gen-<N>`.
    pub(crate) dir: PathBuf,
    /// `gen-<N>`.
    pub(crate) name: String,
}

impl Caches {
    /// Opens generation `name` under `index_dir`; with `create` makes it when missing.
    pub(crate) fn open(index_dir: &Path, name: &str, create: bool) -> Result<Self, ArchiveError> {
        let dir = index_dir.join(name);
        if create {
            std::fs::create_dir_all(&dir).map_err(|e| ArchiveError::io(&dir, e))?;
        }
        let (index, search) = catch_panic(|| {
            Ok((
                Index::open(&dir, create)?,
                SearchIndex::open(&dir.join("search"))?,
            ))
        })?;
        Ok(Caches {
            index,
            search,
            dir,
            name: name.to_string(),
        })
    }

    /// Opens the generation named by the pointer (migrating the layout without
    /// generations first). An error means the caches must be rebuilt.
    pub(crate) fn open_current(io: &dyn StoreIo, index_dir: &Path) -> Result<Self, ArchiveError> {
        let name = match read_pointer(index_dir)? {
            Some(name) => name,
            None => migrate_legacy(io, index_dir)?,
        };
        if !index_dir.join(&name).is_dir() {
            return Err(pointer_error(format!("generation {name} is missing")));
        }
        Caches::open(index_dir, &name, false)
    }

    /// The generation the pointer names now (another process may have swapped it).
    pub(crate) fn current_name(index_dir: &Path) -> Result<Option<String>, ArchiveError> {
        read_pointer(index_dir)
    }

    /// A new, empty generation beside the existing ones (not yet current).
    pub(crate) fn create_next(index_dir: &Path) -> Result<Self, ArchiveError> {
        std::fs::create_dir_all(index_dir).map_err(|e| ArchiveError::io(index_dir, e))?;
        let mut next = 1;
        for name in names(index_dir)? {
            if let Some(n) = number(&name) {
                next = next.max(n + 1);
            }
        }
        let name = format!("{PREFIX}{next}");
        let dir = index_dir.join(&name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| ArchiveError::io(&dir, e))?;
        }
        Caches::open(index_dir, &name, true)
    }

    /// Makes this generation the current one.
    pub(crate) fn make_current(&self, io: &dyn StoreIo) -> Result<(), ArchiveError> {
        let Some(index_dir) = self.dir.parent() else {
            return Err(pointer_error(
                "generation without a parent directory".into(),
            ));
        };
        write_atomic(
            io,
            &index_dir.join(POINTER),
            format!("{}\n", self.name).as_bytes(),
        )
    }
}

fn pointer_error(detail: String) -> ArchiveError {
    ArchiveError::Index {
        index: "generation pointer",
        detail,
    }
}

fn number(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.parse().ok()
}

fn names(index_dir: &Path) -> Result<Vec<String>, ArchiveError> {
    let entries = std::fs::read_dir(index_dir).map_err(|e| ArchiveError::io(index_dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ArchiveError::io(index_dir, e))?;
        out.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

/// The generation the pointer names; `None` when there is no pointer.
fn read_pointer(index_dir: &Path) -> Result<Option<String>, ArchiveError> {
    let path = index_dir.join(POINTER);
    let raw = match std::fs::read(&path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ArchiveError::io(&path, e)),
    };
    let name = String::from_utf8_lossy(&raw).trim().to_string();
    if number(&name).is_none() {
        return Err(pointer_error(format!(
            "{} does not name a generation",
            path.display()
        )));
    }
    Ok(Some(name))
}

/// Moves the caches of the layout without generations into `gen-1` and points at it.
fn migrate_legacy(io: &dyn StoreIo, index_dir: &Path) -> Result<String, ArchiveError> {
    if !index_dir.join("sled").is_dir() {
        return Err(pointer_error(format!(
            "{} is missing",
            index_dir.join(POINTER).display()
        )));
    }
    let name = format!("{PREFIX}1");
    let target = index_dir.join(&name);
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|e| ArchiveError::io(&target, e))?;
    }
    std::fs::create_dir_all(&target).map_err(|e| ArchiveError::io(&target, e))?;
    for item in LEGACY {
        let from = index_dir.join(item);
        if from.exists() {
            std::fs::rename(&from, target.join(item)).map_err(|e| ArchiveError::io(&from, e))?;
        }
    }
    crate::pack::sync_dir(io, index_dir)?;
    write_atomic(io, &index_dir.join(POINTER), format!("{name}\n").as_bytes())?;
    tracing::info!(dir = %index_dir.display(), "moved the indexes into generation {name}");
    Ok(name)
}

/// Removes every generation but `keep`, the layout without generations and
/// temporary files (best effort: what cannot be removed now is removed later).
pub(crate) fn remove_others(index_dir: &Path, keep: &str) {
    let Ok(all) = names(index_dir) else {
        return;
    };
    for name in all {
        let path = index_dir.join(&name);
        let stray = (number(&name).is_some() && name != keep)
            || LEGACY.contains(&name.as_str())
            || name.ends_with(".tmp");
        if !stray {
            continue;
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove an old index generation");
        }
    }
}

/// Whether `err` came from the caches under `index_dir` (so rebuilding them fixes it).
pub(crate) fn is_cache_error(err: &ArchiveError, index_dir: &Path) -> bool {
    match err {
        ArchiveError::Index { .. } => true,
        // A busy database is another process's long write and a full disk is a full
        // disk: neither is damage, and a rebuild would not help.
        ArchiveError::Io { path, source } => {
            path.starts_with(index_dir)
                && !matches!(
                    source.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::StorageFull
                )
        }
        _ => false,
    }
}

/// Runs `f`, turning a panic inside SQLite's wrapper or tantivy (seen on some damaged files)
/// into an index error.
pub(crate) fn catch_panic<T>(
    f: impl FnOnce() -> Result<T, ArchiveError>,
) -> Result<T, ArchiveError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let detail = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panicked".into());
        Err(ArchiveError::Index {
            index: "listing",
            detail: format!("the index library panicked: {detail}"),
        })
    })
}
