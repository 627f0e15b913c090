//! [`SqliteUserStore`]: the local users in one SQLite database file.
//!
//! # Crash model
//!
//! SQLite commits a transaction atomically: either every change of a batch is in the
//! file or none is, whatever kills the process and wherever the disk fills up. This
//! store uses SQLite's rollback journal (`journal_mode=DELETE`) with
//! `synchronous=EXTRA` (`FULL`, plus an fsync of the directory once the journal is
//! deleted): before a page of the database is overwritten, its original is written to
//! `users.db-journal` and fsynced; the new pages are then written and fsynced, and
//! deleting the journal (followed by a directory fsync) is the commit point. After a
//! crash the next connection finds the "hot" journal and rolls the half-written
//! transaction back. So a write this store acknowledged survives a process kill and a
//! power cut, and a write it did not acknowledge leaves no trace. SQLite tests exactly
//! this with simulated I/O errors, crashes and power failures at every write; the
//! store's own tests kill a writer at random points and check every acknowledged batch.
//!
//! A rollback journal rather than a write-ahead log, because a reader needs nothing
//! but the database file: `users list` opens read-only ([`SqliteUserStore::open_read_only`])
//! even on a full disk, where a WAL reader would first have to create its `-shm` file.
//! Several processes may open the store at once (SQLite locks the file for each
//! transaction); a writer waits up to a busy timeout for another's transaction and
//! then fails with [`DirectoryError::StoreLocked`].
//!
//! Every [`UserStore`] batch is one transaction, and [`UserStore::apply_sync`] writes a
//! sync's users and its directory token in one transaction, so the token never gets
//! ahead of the users. The database file (and with it its journal, whose permissions
//! SQLite copies from the database) is created mode 0600 whatever the umask.
//!
//! Schema (version 2 in `PRAGMA user_version`): `users` (one row per user, the object
//! id unique, the mailbox kind once classified), `addresses` (every address of every user, primary or alias, unique,
//! deleted with its user) and `meta` (the directory token and, for a store migrated
//! from an earlier version, the migration report). A version 1 database (before mailbox
//! kinds) is upgraded in place when opened for writing (`ALTER TABLE … ADD COLUMN kind`,
//! one transaction: its users are unclassified until the next sync); opened read-only it
//! is read as it is, every user unclassified.

use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, params};

use crate::rules::{check_batch, object_of};
use crate::{DirectoryError, DirectoryToken, LocalUser, MailboxKind, Role, UserOrigin, UserStore};

/// Schema version this version writes (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: u32 = 2;
/// The first version with the `kind` column.
const KIND_VERSION: u32 = 2;
/// The `kind` column, as a version 1 database gains it.
const KIND_COLUMN: &str =
    "kind TEXT CHECK (kind IS NULL OR kind IN ('user', 'shared', 'room', 'equipment'))";
/// How long a writer waits for another process's transaction by default.
const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const META_TOKEN: &str = "directory_token";
pub(crate) const META_MIGRATION: &str = "migration";

const SCHEMA: &str = "
CREATE TABLE users (
    name         TEXT PRIMARY KEY NOT NULL,
    display_name TEXT,
    origin       TEXT NOT NULL CHECK (origin IN ('directory', 'manual')),
    object_id    TEXT UNIQUE,
    enabled      INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    role         TEXT NOT NULL,
    has_archive  INTEGER NOT NULL CHECK (has_archive IN (0, 1)),
    kind         TEXT CHECK (kind IS NULL OR kind IN ('user', 'shared', 'room', 'equipment')),
    CHECK ((origin = 'directory') = (object_id IS NOT NULL))
) STRICT;
CREATE TABLE addresses (
    address    TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    is_primary INTEGER NOT NULL CHECK (is_primary IN (0, 1))
) STRICT;
CREATE INDEX addresses_by_name ON addresses (name);
CREATE UNIQUE INDEX one_primary_address ON addresses (name) WHERE is_primary = 1;
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
";

/// The user store on disk: one SQLite database file.
pub struct SqliteUserStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    writes: AtomicU64,
    /// Whether the database has the `kind` column (a version 1 file opened read-only has not).
    has_kind: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for SqliteUserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteUserStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What a failed SQLite call means for the store at `path`.
pub(crate) fn sql_error(path: &Path, e: rusqlite::Error) -> DirectoryError {
    let path = path.display().to_string();
    let code = e.sqlite_error_code();
    let reason = e.to_string();
    match code {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            DirectoryError::StoreLocked { path }
        }
        Some(ErrorCode::DiskFull) => DirectoryError::StoreFull { path, reason },
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            DirectoryError::StoreCorrupt {
                path,
                key: "database file".into(),
                reason,
            }
        }
        _ => DirectoryError::StoreIo { path, reason },
    }
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> DirectoryError {
    if e.raw_os_error() == Some(28) {
        return DirectoryError::StoreFull {
            path: path.display().to_string(),
            reason: format!("{what}: {e}"),
        };
    }
    DirectoryError::StoreIo {
        path: path.display().to_string(),
        reason: format!("{what}: {e}"),
    }
}

/// Makes the database file and whichever of its side files exist private (0600).
fn make_private(path: &Path) -> Result<(), DirectoryError> {
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-journal", "-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        files.push(PathBuf::from(side));
    }
    for file in files {
        match std::fs::set_permissions(&file, Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&file, "setting its permissions to 0600", e)),
        }
    }
    Ok(())
}

/// Rolls back the transaction of a writer that died inside one, if its journal is
/// there (a read-only connection cannot, and refuses to read). Failures are left to
/// the read-only open to report.
fn roll_back_interrupted(path: &Path) {
    let mut journal = path.as_os_str().to_owned();
    journal.push("-journal");
    if !Path::new(&journal).exists() {
        return;
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if let Ok(conn) = Connection::open_with_flags(path, flags) {
        // The first read of a connection rolls a hot journal back.
        let _ = conn.busy_timeout(DEFAULT_BUSY_TIMEOUT);
        let _ = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        });
    }
}

/// Fsyncs directory `dir`, so a file created or renamed in it stays.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), DirectoryError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "fsync of the directory", e))
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::User => "user",
    }
}

/// A `users` row before its addresses are attached.
struct Row {
    name: String,
    display_name: Option<String>,
    object_id: Option<String>,
    enabled: bool,
    role: String,
    has_archive: bool,
    kind: Option<String>,
}

const ROW_COLUMNS: &str = "name, display_name, object_id, enabled, role, has_archive, kind";
/// The same, for a version 1 database (no `kind` column).
const ROW_COLUMNS_V1: &str =
    "name, display_name, object_id, enabled, role, has_archive, NULL AS kind";

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        name: row.get(0)?,
        display_name: row.get(1)?,
        object_id: row.get(2)?,
        enabled: row.get(3)?,
        role: row.get(4)?,
        has_archive: row.get(5)?,
        kind: row.get(6)?,
    })
}

impl Row {
    /// The user, given their addresses as `(address, is_primary)`.
    fn into_user(
        self,
        path: &Path,
        addresses: Vec<(String, bool)>,
    ) -> Result<LocalUser, DirectoryError> {
        let role = match self.role.as_str() {
            "admin" => Role::Admin,
            "user" => Role::User,
            other => {
                return Err(DirectoryError::StoreCorrupt {
                    path: path.display().to_string(),
                    key: format!("users/{}", self.name),
                    reason: format!("unknown role {other:?}"),
                });
            }
        };
        let mut email = None;
        let mut aliases = Vec::new();
        for (address, primary) in addresses {
            if primary {
                email = Some(address);
            } else {
                aliases.push(address);
            }
        }
        aliases.sort();
        let kind =
            match self.kind.as_deref() {
                None => None,
                Some(name) => Some(MailboxKind::from_name(name).ok_or_else(|| {
                    DirectoryError::StoreCorrupt {
                        path: path.display().to_string(),
                        key: format!("users/{}", self.name),
                        reason: format!("unknown mailbox kind {name:?}"),
                    }
                })?),
            };
        Ok(LocalUser {
            name: self.name,
            display_name: self.display_name,
            email,
            aliases,
            origin: match self.object_id {
                Some(object_id) => UserOrigin::Directory { object_id },
                None => UserOrigin::Manual,
            },
            enabled: self.enabled,
            role,
            has_archive: self.has_archive,
            kind,
        })
    }
}

/// The schema version of an open database (0: never initialised).
fn schema_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

impl SqliteUserStore {
    /// Opens (creating when missing) the store in database file `path`.
    ///
    /// # Errors
    /// [`DirectoryError::StoreLocked`] when another process keeps it locked past the
    /// busy timeout, [`DirectoryError::StoreVersion`] when a newer version wrote it,
    /// [`DirectoryError::StoreFull`] when the disk is full,
    /// [`DirectoryError::StoreCorrupt`] when the file is not a database,
    /// [`DirectoryError::StoreIo`] otherwise.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DirectoryError> {
        let path = path.as_ref().to_path_buf();
        let created = !path.exists();
        if created {
            // Created here, private from the start: SQLite would apply the umask to 0644.
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| io_error(&path, "creating the database file", e))?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        make_private(&path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| sql_error(&path, e))?;
        let store = Self::configure(path, conn, DEFAULT_BUSY_TIMEOUT)?;
        store.initialise()?;
        Ok(store)
    }

    /// Opens an existing store for reading only (`SQLITE_OPEN_READ_ONLY`). Nothing is
    /// written, so this works on a full disk or a read-only mount; every write through
    /// it fails with [`DirectoryError::StoreIo`]. The one exception: when a writer died
    /// inside a transaction, its journal is rolled back first (by a short read-write
    /// connection, as SQLite requires before anyone may read; this rewrites pages the
    /// file already has and deletes the journal, so it needs no free space either).
    ///
    /// # Errors
    /// As [`open`](Self::open); [`DirectoryError::StoreIo`] when the file does not exist.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, DirectoryError> {
        let path = path.as_ref().to_path_buf();
        roll_back_interrupted(&path);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| sql_error(&path, e))?;
        let store = Self::configure(path, conn, DEFAULT_BUSY_TIMEOUT)?;
        let version = store.with_conn(schema_version)?;
        if version == 0 {
            // Created but never initialised (the creating process died at once): no
            // users. An empty in-memory schema answers every read.
            let empty = Connection::open_in_memory().map_err(|e| store.sql(e))?;
            empty.execute_batch(SCHEMA).map_err(|e| store.sql(e))?;
            *lock(&store.conn) = empty;
        } else {
            store.check_version(version)?;
            store
                .has_kind
                .store(version >= KIND_VERSION, Ordering::Relaxed);
        }
        Ok(store)
    }

    fn configure(
        path: PathBuf,
        conn: Connection,
        busy_timeout: Duration,
    ) -> Result<Self, DirectoryError> {
        let store = Self {
            path,
            conn: Mutex::new(conn),
            writes: AtomicU64::new(0),
            has_kind: std::sync::atomic::AtomicBool::new(true),
        };
        let mode = store.with_conn(|c| {
            c.busy_timeout(busy_timeout)?;
            c.pragma_update(None, "foreign_keys", true)?;
            c.pragma_update(None, "synchronous", "EXTRA")?;
            // A read-only connection cannot change the journal mode, and needs not:
            // the rollback journal is the default and the mode is not kept in the file.
            if c.is_readonly(rusqlite::MAIN_DB)? {
                return Ok("delete".to_owned());
            }
            c.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get::<_, String>(0))
        })?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(DirectoryError::StoreIo {
                path: store.shown(),
                reason: format!("SQLite keeps journal mode {mode} instead of delete"),
            });
        }
        Ok(store)
    }

    /// Creates the schema of a new database, or checks the version of an existing one.
    fn initialise(&self) -> Result<(), DirectoryError> {
        let version = self.with_conn(schema_version)?;
        if version != 0 {
            self.check_version(version)?;
            return self.upgrade(version);
        }
        let initialised = self.write(|tx| {
            // Another process may have initialised it meanwhile.
            if schema_version(tx).map_err(|e| self.sql(e))? != 0 {
                return Ok(false);
            }
            tx.execute_batch(SCHEMA)
                .and_then(|()| tx.pragma_update(None, "user_version", SCHEMA_VERSION))
                .map_err(|e| self.sql(e))?;
            Ok(true)
        })?;
        if !initialised {
            return self.check_version(self.with_conn(schema_version)?);
        }
        // Creating the schema is no write of users.
        self.writes.store(0, Ordering::Relaxed);
        make_private(&self.path)
    }

    /// Brings a database of an earlier schema version to this one, in one transaction.
    fn upgrade(&self, found: u32) -> Result<(), DirectoryError> {
        if found >= SCHEMA_VERSION {
            return Ok(());
        }
        self.write(|tx| {
            // Another process may have upgraded it meanwhile.
            let version = schema_version(tx).map_err(|e| self.sql(e))?;
            if version < KIND_VERSION {
                tx.execute_batch(&format!("ALTER TABLE users ADD COLUMN {KIND_COLUMN};"))
                    .and_then(|()| tx.pragma_update(None, "user_version", SCHEMA_VERSION))
                    .map_err(|e| self.sql(e))?;
            }
            Ok(())
        })?;
        // Upgrading the schema is no write of users.
        self.writes.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// The columns of a user row this database has.
    fn row_columns(&self) -> &'static str {
        if self.has_kind.load(Ordering::Relaxed) {
            ROW_COLUMNS
        } else {
            ROW_COLUMNS_V1
        }
    }

    fn check_version(&self, found: u32) -> Result<(), DirectoryError> {
        if found > SCHEMA_VERSION {
            return Err(DirectoryError::StoreVersion {
                path: self.shown(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(())
    }

    /// Sets how long a write waits for another process's transaction before failing
    /// with [`DirectoryError::StoreLocked`] (10 seconds unless changed).
    ///
    /// # Errors
    /// [`DirectoryError::StoreIo`] when SQLite refuses the setting.
    pub fn set_busy_timeout(&self, timeout: Duration) -> Result<(), DirectoryError> {
        self.with_conn(|c| c.busy_timeout(timeout))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of write transactions committed since the store was opened (a sync that
    /// finds nothing to change performs none).
    pub fn write_count(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Checks the whole database (`PRAGMA integrity_check` and `foreign_key_check`).
    ///
    /// # Errors
    /// [`DirectoryError::StoreCorrupt`] naming the first problems SQLite found.
    pub fn integrity_check(&self) -> Result<(), DirectoryError> {
        let problems = self.with_conn(|c| {
            let mut problems: Vec<String> = c
                .prepare("PRAGMA integrity_check(20)")?
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()?;
            problems.retain(|p| p != "ok");
            let mut stmt = c.prepare("PRAGMA foreign_key_check")?;
            let dangling = stmt.query_map([], |r| {
                Ok(format!(
                    "row {} of {} points at a missing {}",
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(2)?
                ))
            })?;
            for d in dangling {
                problems.push(d?);
            }
            Ok(problems)
        })?;
        if problems.is_empty() {
            return Ok(());
        }
        Err(DirectoryError::StoreCorrupt {
            path: self.shown(),
            key: "database file".into(),
            reason: problems.join("; "),
        })
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    fn sql(&self, e: rusqlite::Error) -> DirectoryError {
        sql_error(&self.path, e)
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DirectoryError> {
        f(&lock(&self.conn)).map_err(|e| self.sql(e))
    }

    /// Runs `f` in one immediate (write-locking) transaction and commits it. An error
    /// of `f` rolls everything back.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, DirectoryError>,
    ) -> Result<T, DirectoryError> {
        let mut conn = lock(&self.conn);
        let mut tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        let value = f(&mut tx)?;
        tx.commit().map_err(|e| self.sql(e))?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(value)
    }

    /// Writes `users` (and the token when given and different) in one transaction;
    /// nothing when there is nothing to change.
    fn commit(
        &self,
        users: &[LocalUser],
        token: Option<Option<&DirectoryToken>>,
    ) -> Result<(), DirectoryError> {
        let batch = check_batch(users)?;
        let token = match token {
            Some(t) if self.directory_token()?.as_ref() != t => Some(t),
            _ => None,
        };
        if batch.is_empty() && token.is_none() {
            return Ok(());
        }
        self.write(|tx| {
            apply_batch(tx, &self.path, &batch)?;
            if let Some(token) = token {
                write_token(tx, token).map_err(|e| self.sql(e))?;
            }
            Ok(())
        })
    }

    fn user(&self, conn: &Connection, name: &str) -> Result<Option<LocalUser>, DirectoryError> {
        let row = conn
            .query_row(
                &format!("SELECT {} FROM users WHERE name = ?1", self.row_columns()),
                [name],
                read_row,
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let addresses = conn
            .prepare_cached("SELECT address, is_primary FROM addresses WHERE name = ?1")
            .and_then(|mut s| {
                s.query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.sql(e))?;
        row.into_user(&self.path, addresses).map(Some)
    }

    fn user_by(&self, sql: &str, key: &str) -> Result<Option<LocalUser>, DirectoryError> {
        let conn = lock(&self.conn);
        let name: Option<String> = conn
            .query_row(sql, [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))?;
        match name {
            Some(name) => self.user(&conn, &name),
            None => Ok(None),
        }
    }

    /// Writes one user checked on their own, inside the caller's transaction, rolled
    /// back alone when refused (used by the migration, which keeps whom it can).
    pub(crate) fn put_in(
        tx: &mut Transaction<'_>,
        path: &Path,
        user: &LocalUser,
    ) -> Result<(), DirectoryError> {
        let batch = check_batch(std::slice::from_ref(user))?;
        let sp = tx.savepoint().map_err(|e| sql_error(path, e))?;
        apply_batch(&sp, path, &batch)?;
        sp.commit().map_err(|e| sql_error(path, e))
    }

    /// A `meta` value.
    pub(crate) fn meta(&self, key: &str) -> Result<Option<String>, DirectoryError> {
        self.with_conn(|c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        })
    }
}

/// Sets or clears `meta` entry `key`.
pub(crate) fn write_meta(
    conn: &Connection,
    key: &str,
    value: Option<&str>,
) -> rusqlite::Result<()> {
    match value {
        Some(v) => conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, v],
        )?,
        None => conn.execute("DELETE FROM meta WHERE key = ?1", [key])?,
    };
    Ok(())
}

pub(crate) fn write_token(
    conn: &Connection,
    token: Option<&DirectoryToken>,
) -> rusqlite::Result<()> {
    write_meta(conn, META_TOKEN, token.map(|t| t.0.as_str()))
}

/// Applies a checked batch inside a transaction: the same rules as
/// [`MemoryUserStore`](crate::MemoryUserStore) (addresses and object ids unique
/// after the whole batch, `has_archive` never cleared).
fn apply_batch(conn: &Connection, path: &Path, batch: &[LocalUser]) -> Result<(), DirectoryError> {
    let sql = |e| sql_error(path, e);
    // First release what every user's previous version held, so users of one batch
    // may trade addresses and object ids.
    let mut previous = Vec::with_capacity(batch.len());
    for user in batch {
        let archive: Option<bool> = conn
            .query_row(
                "SELECT has_archive FROM users WHERE name = ?1",
                [&user.name],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        if archive.is_some() {
            conn.execute("DELETE FROM addresses WHERE name = ?1", [&user.name])
                .map_err(sql)?;
            conn.execute(
                "UPDATE users SET object_id = NULL, origin = 'manual' WHERE name = ?1",
                [&user.name],
            )
            .map_err(sql)?;
        }
        previous.push(archive.unwrap_or(false));
    }
    for (user, had_archive) in batch.iter().zip(previous) {
        let mut owner_of_address = conn
            .prepare_cached("SELECT name FROM addresses WHERE address = ?1")
            .map_err(sql)?;
        let addresses: Vec<(&str, bool)> = user
            .email
            .as_deref()
            .map(|e| (e, true))
            .into_iter()
            .chain(user.aliases.iter().map(|a| (a.as_str(), false)))
            .collect();
        for (address, _) in &addresses {
            let owner: Option<String> = owner_of_address
                .query_row([address], |r| r.get(0))
                .optional()
                .map_err(sql)?;
            if let Some(owner) = owner.filter(|o| *o != user.name) {
                return Err(DirectoryError::AddressTaken {
                    name: user.name.clone(),
                    address: (*address).to_owned(),
                    owner,
                });
            }
        }
        let object = object_of(user);
        if let Some(object) = object {
            let owner: Option<String> = conn
                .query_row(
                    "SELECT name FROM users WHERE object_id = ?1 AND name <> ?2",
                    params![object, user.name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            if let Some(owner) = owner {
                return Err(DirectoryError::ObjectTaken {
                    name: user.name.clone(),
                    object_id: object.to_owned(),
                    owner,
                });
            }
        }
        conn.execute(
            "INSERT INTO users (name, display_name, origin, object_id, enabled, role, has_archive, kind)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (name) DO UPDATE SET
                 display_name = excluded.display_name, origin = excluded.origin,
                 object_id = excluded.object_id, enabled = excluded.enabled,
                 role = excluded.role, has_archive = excluded.has_archive,
                 kind = excluded.kind",
            params![
                user.name,
                user.display_name,
                if object.is_some() {
                    "directory"
                } else {
                    "manual"
                },
                object,
                user.enabled,
                role_name(user.role),
                // An archive, once recorded, is never forgotten.
                user.has_archive || had_archive,
                user.kind.map(MailboxKind::as_str),
            ],
        )
        .map_err(sql)?;
        let mut insert = conn
            .prepare_cached("INSERT INTO addresses (address, name, is_primary) VALUES (?1, ?2, ?3)")
            .map_err(sql)?;
        for (address, primary) in addresses {
            insert
                .execute(params![address, user.name, primary])
                .map_err(sql)?;
        }
    }
    Ok(())
}

impl UserStore for SqliteUserStore {
    fn get(&self, name: &str) -> Result<Option<LocalUser>, DirectoryError> {
        self.user(&lock(&self.conn), name)
    }

    fn list(&self) -> Result<Vec<LocalUser>, DirectoryError> {
        let conn = lock(&self.conn);
        // One read transaction, so users and addresses agree.
        let tx = conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        let rows = tx
            .prepare(&format!(
                "SELECT {} FROM users ORDER BY name",
                self.row_columns()
            ))
            .and_then(|mut s| {
                s.query_map([], read_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.sql(e))?;
        let mut addresses: std::collections::HashMap<String, Vec<(String, bool)>> =
            std::collections::HashMap::new();
        tx.prepare("SELECT name, address, is_primary FROM addresses")
            .and_then(|mut s| {
                let all = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                for item in all {
                    let (name, address, primary): (String, String, bool) = item?;
                    addresses.entry(name).or_default().push((address, primary));
                }
                Ok(())
            })
            .map_err(|e| self.sql(e))?;
        drop(tx);
        rows.into_iter()
            .map(|row| {
                let own = addresses.remove(&row.name).unwrap_or_default();
                row.into_user(&self.path, own)
            })
            .collect()
    }

    fn find_by_address(&self, address: &str) -> Result<Option<LocalUser>, DirectoryError> {
        self.user_by(
            "SELECT name FROM addresses WHERE address = ?1",
            &address.trim().to_lowercase(),
        )
    }

    fn find_by_object_id(&self, object_id: &str) -> Result<Option<LocalUser>, DirectoryError> {
        self.user_by("SELECT name FROM users WHERE object_id = ?1", object_id)
    }

    fn put(&self, user: &LocalUser) -> Result<(), DirectoryError> {
        self.put_many(std::slice::from_ref(user))
    }

    fn put_many(&self, users: &[LocalUser]) -> Result<(), DirectoryError> {
        self.commit(users, None)
    }

    fn apply_sync(
        &self,
        users: &[LocalUser],
        token: Option<&DirectoryToken>,
    ) -> Result<(), DirectoryError> {
        self.commit(users, Some(token))
    }

    fn remove(&self, name: &str) -> Result<(), DirectoryError> {
        self.write(|tx| {
            let archive: Option<bool> = tx
                .query_row(
                    "SELECT has_archive FROM users WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.sql(e))?;
            match archive {
                None => Err(DirectoryError::NotFound {
                    name: name.to_owned(),
                }),
                Some(true) => Err(DirectoryError::HasArchive {
                    name: name.to_owned(),
                }),
                Some(false) => {
                    // The addresses go with the user (ON DELETE CASCADE).
                    tx.execute("DELETE FROM users WHERE name = ?1", [name])
                        .map_err(|e| self.sql(e))?;
                    Ok(())
                }
            }
        })
    }

    fn mark_has_archive(&self, name: &str) -> Result<(), DirectoryError> {
        match self.get(name)? {
            None => Err(DirectoryError::NotFound {
                name: name.to_owned(),
            }),
            Some(user) if user.has_archive => Ok(()),
            Some(_) => self.write(|tx| {
                let changed = tx
                    .execute("UPDATE users SET has_archive = 1 WHERE name = ?1", [name])
                    .map_err(|e| self.sql(e))?;
                if changed == 0 {
                    return Err(DirectoryError::NotFound {
                        name: name.to_owned(),
                    });
                }
                Ok(())
            }),
        }
    }

    fn directory_token(&self) -> Result<Option<DirectoryToken>, DirectoryError> {
        Ok(self.meta(META_TOKEN)?.map(DirectoryToken))
    }

    fn set_directory_token(&self, token: Option<&DirectoryToken>) -> Result<(), DirectoryError> {
        self.commit(&[], Some(token))
    }
}
