//! The move from an earlier version's sled user store (a directory, `users/`) to the
//! SQLite store (`users.db`), once, on first open.
//!
//! sled can corrupt its files when a write fails half-way (a full disk), so the old
//! store is read defensively: from a copy (sled's own recovery may rewrite the files
//! it opens), record by record, collecting whatever decodes and counting what does
//! not. The users and the directory token go into a new database under a temporary
//! name in one transaction; only once that is committed and fsynced is it renamed to
//! its real name, and only then is the old directory renamed to `….sled-migrated`
//! (never deleted). A crash at any point leaves either the old store alone in place
//! (the next open migrates again) or the complete new one.
//!
//! Never silently empty: when the old store cannot be opened, or yields no user at all
//! (sled recovers a damaged store into an earlier, possibly empty, state without an
//! error, so an empty result is never trusted), no new store is created and the error names the old
//! directory, what failed and what to do. A partial migration is reported
//! ([`MigrationReport`]) and the report is kept in the new store's `meta` table.

#[cfg(test)]
mod legacy;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sqlite_store::{META_MIGRATION, SqliteUserStore, sync_dir, write_meta, write_token};
use crate::{DirectoryError, DirectoryToken, LocalUser};

/// Newest format of the old sled store (`meta/format`).
const LEGACY_FORMAT: u32 = 1;
/// Suffix of the old store's directory once migrated.
const MIGRATED_SUFFIX: &str = ".sled-migrated";

/// What a migration from the old sled store did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    /// Where the old store is now (renamed, never deleted).
    pub old_path: PathBuf,
    /// The new store's file.
    pub new_path: PathBuf,
    /// Names of the users moved into the new store, sorted.
    pub recovered_users: Vec<String>,
    /// Whether a directory token was moved (without one, the next sync reads the
    /// whole directory, which is harmless).
    pub token_recovered: bool,
    /// Records of the old store that could not be read or were refused.
    pub unreadable_records: u64,
    /// Names the old store's indexes mention whose user record could not be read:
    /// users lost by the migration, to be added again by hand or by a sync.
    pub lost_users: Vec<String>,
    /// What could not be read, one line each (key and reason).
    pub problems: Vec<String>,
}

impl MigrationReport {
    /// Whether every record of the old store was moved.
    pub fn is_complete(&self) -> bool {
        self.unreadable_records == 0 && self.lost_users.is_empty() && self.problems.is_empty()
    }
}

/// What could be read from the old store.
#[derive(Debug, Default)]
struct Recovered {
    users: Vec<LocalUser>,
    token: Option<DirectoryToken>,
    unreadable: u64,
    indexed_names: BTreeSet<String>,
    problems: Vec<String>,
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// `path` with `suffix` appended to its last component.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl SqliteUserStore {
    /// Opens (creating when missing) the store in `path`, first migrating the sled
    /// store of an earlier version in directory `legacy` when `path` does not exist
    /// yet and `legacy` does. Returns the report of a migration done by this call.
    ///
    /// # Errors
    /// As [`open`](Self::open), and [`DirectoryError::StoreMigration`] when the old
    /// store cannot be read at all (nothing is changed then).
    pub fn open_or_migrate(
        path: impl AsRef<Path>,
        legacy: impl AsRef<Path>,
    ) -> Result<(Self, Option<MigrationReport>), DirectoryError> {
        let (path, legacy) = (path.as_ref(), legacy.as_ref());
        if path.exists() {
            let store = Self::open(path)?;
            // A crash between the two renames leaves the old directory in place.
            if legacy.is_dir() && store.meta(META_MIGRATION)?.is_some() {
                retire(legacy, path)?;
            }
            return Ok((store, None));
        }
        if !legacy.is_dir() {
            return Ok((Self::open(path)?, None));
        }
        let report = migrate(legacy, path)?;
        Ok((Self::open(path)?, Some(report)))
    }
}

/// Moves the users of `legacy` into a new store at `path` (which does not exist).
fn migrate(legacy: &Path, path: &Path) -> Result<MigrationReport, DirectoryError> {
    let failed = |reason: String| DirectoryError::StoreMigration {
        old_path: shown(legacy),
        new_path: shown(path),
        reason,
    };
    let recovered = read_copy(legacy, path).map_err(failed)?;
    if recovered.users.is_empty() {
        // sled recovers a damaged store into an earlier state without a word (even an
        // empty one), so an old store that yields nobody is never taken at its word.
        let mut reason = format!(
            "it yields no user ({} unreadable record(s), {} user(s) named by its indexes); \
             either it held none, or sled lost them. If it held none, move it away",
            recovered.unreadable,
            recovered.indexed_names.len()
        );
        if !recovered.problems.is_empty() {
            reason.push_str(". Problems: ");
            reason.push_str(&recovered.problems.join("; "));
        }
        return Err(failed(reason));
    }
    let temporary = with_suffix(path, ".migrating");
    remove_partial(&temporary)?;
    let mut report = MigrationReport {
        old_path: migrated_name(legacy),
        new_path: path.to_path_buf(),
        recovered_users: Vec::new(),
        token_recovered: recovered.token.is_some(),
        unreadable_records: recovered.unreadable,
        lost_users: Vec::new(),
        problems: recovered.problems,
    };
    {
        let store = SqliteUserStore::open(&temporary)?;
        store.write(|tx| {
            for user in &recovered.users {
                match SqliteUserStore::put_in(tx, &temporary, user) {
                    Ok(()) => report.recovered_users.push(user.name.clone()),
                    Err(e) => {
                        report.unreadable_records += 1;
                        report
                            .problems
                            .push(format!("users/{}: refused: {e}", user.name));
                    }
                }
            }
            report.recovered_users.sort();
            report.lost_users = recovered
                .indexed_names
                .iter()
                .filter(|n| report.recovered_users.binary_search(n).is_err())
                .cloned()
                .collect();
            let sql = |e| crate::sqlite_store::sql_error(&temporary, e);
            write_token(tx, recovered.token.as_ref()).map_err(sql)?;
            let json = serde_json::to_string(&report).map_err(|e| DirectoryError::StoreIo {
                path: shown(&temporary),
                reason: format!("encoding the migration report: {e}"),
            })?;
            write_meta(tx, META_MIGRATION, Some(&json)).map_err(sql)?;
            Ok(())
        })?;
    }
    // Committed (SQLite fsynced it); now give it its real name, durably.
    std::fs::rename(&temporary, path).map_err(|e| DirectoryError::StoreIo {
        path: shown(path),
        reason: format!("renaming {} to it: {e}", temporary.display()),
    })?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    retire(legacy, path)?;
    Ok(report)
}

/// The name the old store's directory gets once migrated.
fn migrated_name(legacy: &Path) -> PathBuf {
    let first = with_suffix(legacy, MIGRATED_SUFFIX);
    if !first.exists() {
        return first;
    }
    (2u32..)
        .map(|n| with_suffix(legacy, &format!("{MIGRATED_SUFFIX}-{n}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// Renames the migrated old store out of the way (never deletes it).
fn retire(legacy: &Path, new: &Path) -> Result<(), DirectoryError> {
    let target = migrated_name(legacy);
    std::fs::rename(legacy, &target).map_err(|e| DirectoryError::StoreIo {
        path: shown(new),
        reason: format!(
            "the users were migrated, but the old store {} cannot be renamed to {}: {e}",
            legacy.display(),
            target.display()
        ),
    })?;
    if let Some(parent) = legacy.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Removes what an interrupted migration left under `temporary`.
fn remove_partial(temporary: &Path) -> Result<(), DirectoryError> {
    for file in [temporary.to_path_buf(), with_suffix(temporary, "-journal")] {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(DirectoryError::StoreIo {
                    path: shown(&file),
                    reason: format!("removing an interrupted migration: {e}"),
                });
            }
        }
    }
    Ok(())
}

/// Reads the old store from a copy next to `new` (sled may rewrite what it opens; the
/// original stays untouched), then removes the copy.
fn read_copy(legacy: &Path, new: &Path) -> Result<Recovered, String> {
    let copy = with_suffix(new, ".sled-copy");
    let _ = std::fs::remove_dir_all(&copy);
    copy_dir(legacy, &copy).map_err(|e| format!("copying it to {}: {e}", copy.display()))?;
    let result = std::panic::catch_unwind(|| read_legacy(&copy))
        .unwrap_or_else(|_| Err("sled panicked while reading it".to_owned()));
    let _ = std::fs::remove_dir_all(&copy);
    result
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Everything readable in the sled store at `dir`.
fn read_legacy(dir: &Path) -> Result<Recovered, String> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(16 * 1024 * 1024)
        .open()
        .map_err(|e| format!("sled cannot open it: {e}"))?;
    let tree = |name: &str| {
        db.open_tree(name)
            .map_err(|e| format!("sled cannot open its tree {name}: {e}"))
    };
    let (users, meta) = (tree("users")?, tree("meta")?);
    if let Some(raw) = meta
        .get("format")
        .map_err(|e| format!("meta/format: {e}"))?
    {
        let found = <[u8; 4]>::try_from(raw.as_ref()).map(u32::from_be_bytes);
        match found {
            Ok(v) if v <= LEGACY_FORMAT => {}
            Ok(v) => return Err(format!("it has format {v}, newer than this version reads")),
            Err(_) => return Err(format!("meta/format is {} bytes instead of 4", raw.len())),
        }
    }
    let mut out = Recovered::default();
    for item in users.iter() {
        match item {
            Ok((key, raw)) => match serde_json::from_slice::<LocalUser>(&raw) {
                Ok(user) => out.users.push(user),
                Err(e) => {
                    out.unreadable += 1;
                    out.problems
                        .push(format!("users/{}: {e}", String::from_utf8_lossy(&key)));
                }
            },
            Err(e) => {
                // sled cannot go past a broken page: what follows is unreachable.
                out.unreadable += 1;
                out.problems.push(format!("users: listing stopped: {e}"));
                break;
            }
        }
    }
    // The indexes name users whose records may be lost.
    for name in ["by_address", "by_object"] {
        let Ok(index) = tree(name) else {
            out.problems.push(format!("{name}: cannot be opened"));
            continue;
        };
        for item in index.iter() {
            match item {
                Ok((_, owner)) => {
                    out.indexed_names
                        .insert(String::from_utf8_lossy(&owner).into_owned());
                }
                Err(e) => {
                    out.problems.push(format!("{name}: listing stopped: {e}"));
                    break;
                }
            }
        }
    }
    match meta.get("directory_token") {
        Ok(Some(raw)) => match String::from_utf8(raw.to_vec()) {
            Ok(t) => out.token = Some(DirectoryToken(t)),
            Err(e) => out.problems.push(format!("meta/directory_token: {e}")),
        },
        Ok(None) => {}
        Err(e) => out.problems.push(format!("meta/directory_token: {e}")),
    }
    Ok(out)
}
