//! The lookup cache: one SQLite database (`index.db`) per index generation holding
//! rebuildable lookups only, never the only copy of anything.
//!
//! One key-value table holds every kind of lookup (chunk and manifest locations,
//! entries, sources, metadata, bodies, holders), each row tagged with its kind and
//! carrying a CRC of kind, key and value, so damage to the file shows as an index
//! error (and a rebuild) instead of as a wrong answer. The positions up to which
//! the packs and the record log are reflected here are rows of the same table,
//! written in the same transaction as the rows they cover, so the cache never
//! claims more than it holds. WAL mode: readers in any process never block and
//! never block the writer; `synchronous=NORMAL`, since a lost tail is replayed.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::log::{LogRecord, RecordKind};
use crate::metadata::MessageMetadata;
use crate::pack::Location;
use crate::{ArchiveError, SourceRef};

/// File name of the database inside a generation.
pub(crate) const DB_FILE: &str = "index.db";
/// Version of the table layout.
const LAYOUT: u64 = 2;
/// How long a statement waits for another connection's write transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Kinds of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i64)]
pub(crate) enum Table {
    /// Positions, identity and layout version.
    State = 0,
    /// chunk key → location + raw length.
    Chunks = 1,
    /// message address → manifest location + size.
    Messages = 2,
    /// user \0 folder \0 address → [`EntryValue`].
    Entries = 3,
    /// user \0 mailbox \0 message id → address.
    Sources = 4,
    /// address → zstd(json [`MessageMetadata`] without body text).
    Meta = 5,
    /// address → zstd(body text), for (re)indexing.
    Bodies = 6,
    /// address ‖ user \0 folder \0 → nothing (who holds a message).
    Holders = 7,
    /// user \0 folder \0 address → nothing (a restricted entry).
    Restricted = 8,
    /// user \0 mailbox \0 message id → address: a source whose entry was
    /// expunged, so a later run of a profile does not archive it again.
    ForgottenSources = 9,
    /// user \0 address → nothing: content expunged from the user's archive (no
    /// entry of that user holds it any more); archiving it again is refused.
    ForgottenContents = 10,
}

/// State key: record-log offset reflected here.
const LOG_POS: &[u8] = b"log";
/// State key: pack position reflected here (see [`pack_position`]).
const PACK_POS: &[u8] = b"pack";

/// Pack position as one ordered number: every pack below `n` fully, pack `n` up to `len`.
pub(crate) fn pack_position(n: u32, len: u64) -> u64 {
    (u64::from(n) << 40) | (len & ((1 << 40) - 1))
}

/// Inverse of [`pack_position`].
pub(crate) fn split_pack_position(pos: u64) -> (u32, u64) {
    ((pos >> 40) as u32, pos & ((1 << 40) - 1))
}

/// Stored per archive entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EntryValue {
    /// Received time.
    pub(crate) received: Option<DateTime<Utc>>,
    /// When it was archived.
    pub(crate) archived: DateTime<Utc>,
    /// Sources recorded for it.
    #[serde(default)]
    pub(crate) sources: Vec<SourceRef>,
}

/// Key of an entry.
pub(crate) fn entry_key(user: &str, folder: &str, address: &[u8; 32]) -> Vec<u8> {
    let mut key = Vec::with_capacity(user.len() + folder.len() + 34);
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key.extend_from_slice(folder.as_bytes());
    key.push(0);
    key.extend_from_slice(address);
    key
}

/// Splits an entry key into (user, folder, address).
pub(crate) fn split_entry_key(key: &[u8]) -> Option<(String, String, [u8; 32])> {
    if key.len() < 34 {
        return None;
    }
    let (head, address) = key.split_at(key.len() - 32);
    let head = head.strip_suffix(&[0])?;
    let sep = head.iter().position(|&b| b == 0)?;
    let user = String::from_utf8(head[..sep].to_vec()).ok()?;
    let folder = String::from_utf8(head[sep + 1..].to_vec()).ok()?;
    Some((user, folder, address.try_into().ok()?))
}

/// Key of a source mapping.
pub(crate) fn source_key(user: &str, source: &SourceRef) -> Vec<u8> {
    let mut key = Vec::new();
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key.extend_from_slice(source.mailbox.as_bytes());
    key.push(0);
    key.extend_from_slice(source.message_id.as_bytes());
    key
}

/// Key of a forgotten content of a user's archive.
pub(crate) fn forgotten_content_key(user: &str, address: &[u8; 32]) -> Vec<u8> {
    let mut key = Vec::with_capacity(user.len() + 33);
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key.extend_from_slice(address);
    key
}

/// Location plus a trailing number (raw length or size).
pub(crate) fn encode_located(loc: Location, n: u64) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..16].copy_from_slice(&loc.encode());
    out[16..].copy_from_slice(&n.to_le_bytes());
    out
}

/// Inverse of [`encode_located`].
pub(crate) fn decode_located(raw: &[u8]) -> Option<(Location, u64)> {
    let loc = Location::decode(raw)?;
    let n = u64::from_le_bytes(raw.get(16..24)?.try_into().ok()?);
    Some((loc, n))
}

fn row_crc(table: Table, key: &[u8], value: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[table as u8]);
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(value);
    h.finalize()
}

fn seal_row(table: Table, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 4);
    out.extend_from_slice(value);
    out.extend_from_slice(&row_crc(table, key, value).to_le_bytes());
    out
}

fn open_row(table: Table, key: &[u8], mut raw: Vec<u8>) -> Result<Vec<u8>, ArchiveError> {
    let damaged = || ArchiveError::listing(format!("damaged row of kind {}", table as u8));
    if raw.len() < 4 {
        return Err(damaged());
    }
    let crc = raw.split_off(raw.len() - 4);
    if crc != row_crc(table, key, &raw).to_le_bytes() {
        return Err(damaged());
    }
    Ok(raw)
}

/// Smallest key greater than every key starting with `prefix` (`None`: unbounded).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Maps a SQLite failure: a busy database is an I/O timeout and a full disk is the
/// I/O error `ENOSPC` (neither is damage, so neither starts a rebuild); anything
/// else an index error.
fn db_error(path: &Path) -> impl Fn(rusqlite::Error) -> ArchiveError + '_ {
    move |e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => ArchiveError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("No space left on device ({e})"),
            ),
        ),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            ArchiveError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::TimedOut, e.to_string()),
            )
        }
        _ => ArchiveError::listing(e),
    }
}

/// A key and its value.
pub(crate) type Row = (Vec<u8>, Vec<u8>);

/// The lookup database of one generation: one connection for reads and one for
/// write transactions, so lookups never wait behind a long transaction (WAL mode:
/// a read sees the last commit).
pub(crate) struct Index {
    conn: Mutex<Connection>,
    writer: Mutex<Connection>,
    path: PathBuf,
}

/// Opens one connection to `path` with the settings every connection uses.
fn connect(path: &Path) -> Result<Connection, ArchiveError> {
    let conn = Connection::open(path).map_err(db_error(path))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db_error(path))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_error(path))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db_error(path))?;
    conn.pragma_update(None, "cell_size_check", "ON")
        .map_err(db_error(path))?;
    Ok(conn)
}

/// Operations on an open connection (inside or outside a transaction).
pub(crate) struct Db<'a> {
    conn: &'a Connection,
    path: &'a Path,
}

impl Index {
    /// Opens `dir/index.db`; with `create` makes it (and its tables) when missing,
    /// otherwise a missing or foreign file is an index error.
    pub(crate) fn open(dir: &Path, create: bool) -> Result<Self, ArchiveError> {
        let path = dir.join(DB_FILE);
        if !create && !path.is_file() {
            return Err(ArchiveError::listing(format!(
                "{} is missing (an index of an older layout is rebuilt)",
                path.display()
            )));
        }
        let writer = connect(&path)?;
        let index = Index {
            conn: Mutex::new(connect(&path)?),
            writer: Mutex::new(writer),
            path,
        };
        if create {
            index.transaction(|db| {
                db.conn
                    .execute_batch(
                        "CREATE TABLE IF NOT EXISTS kv (
                           t INTEGER NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL,
                           PRIMARY KEY (t, k)) STRICT, WITHOUT ROWID;",
                    )
                    .map_err(db_error(db.path))?;
                if db.state(b"layout")?.is_none() {
                    db.set_state(b"layout", LAYOUT)?;
                    db.set_state(b"id", rand::random::<u64>() >> 1)?;
                }
                Ok(())
            })?;
        }
        match index.with(|db| db.state(b"layout"))? {
            Some(LAYOUT) => Ok(index),
            other => Err(ArchiveError::listing(format!(
                "{} has layout {other:?}, expected {LAYOUT}",
                index.path.display()
            ))),
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the connection (each statement commits on its own).
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Db<'_>) -> Result<T, ArchiveError>,
    ) -> Result<T, ArchiveError> {
        let conn = self.conn();
        f(&Db {
            conn: &conn,
            path: &self.path,
        })
    }

    /// Runs `f` in one write transaction: all of it is committed or none.
    pub(crate) fn transaction<T>(
        &self,
        f: impl FnOnce(&Db<'_>) -> Result<T, ArchiveError>,
    ) -> Result<T, ArchiveError> {
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error(&self.path))?;
        let out = f(&Db {
            conn: &tx,
            path: &self.path,
        })?;
        tx.commit().map_err(db_error(&self.path))?;
        Ok(out)
    }

    /// Location and raw length of a chunk.
    pub(crate) fn chunk(&self, key: &[u8; 32]) -> Result<Option<(Location, u64)>, ArchiveError> {
        self.with(|db| db.located(Table::Chunks, key))
    }

    /// Manifest location and size of a message.
    pub(crate) fn message(
        &self,
        address: &[u8; 32],
    ) -> Result<Option<(Location, u64)>, ArchiveError> {
        self.with(|db| db.located(Table::Messages, address))
    }

    /// Cached metadata of a message; the body text only `with_body`.
    pub(crate) fn metadata(
        &self,
        address: &[u8; 32],
        with_body: bool,
    ) -> Result<Option<MessageMetadata>, ArchiveError> {
        self.with(|db| db.metadata(address, with_body))
    }

    /// Caches metadata of a message.
    pub(crate) fn put_metadata(
        &self,
        address: &[u8; 32],
        meta: &MessageMetadata,
    ) -> Result<(), ArchiveError> {
        self.with(|db| db.put_metadata(address, meta))
    }

    /// Whether the entry exists.
    pub(crate) fn has_entry(
        &self,
        address: &[u8; 32],
        user: &str,
        folder: &str,
    ) -> Result<bool, ArchiveError> {
        self.with(|db| {
            Ok(db
                .get(Table::Entries, &entry_key(user, folder, address))?
                .is_some())
        })
    }

    /// Whether the entry is restricted.
    pub(crate) fn is_restricted(
        &self,
        address: &[u8; 32],
        user: &str,
        folder: &str,
    ) -> Result<bool, ArchiveError> {
        self.with(|db| {
            Ok(db
                .get(Table::Restricted, &entry_key(user, folder, address))?
                .is_some())
        })
    }

    /// Address archived for a source in a user's archive.
    pub(crate) fn source(
        &self,
        user: &str,
        source: &SourceRef,
    ) -> Result<Option<[u8; 32]>, ArchiveError> {
        self.address_at(Table::Sources, &source_key(user, source))
    }

    /// The address a row of `table` holds.
    fn address_at(&self, table: Table, key: &[u8]) -> Result<Option<[u8; 32]>, ArchiveError> {
        self.with(|db| {
            Ok(db
                .get(table, key)?
                .and_then(|v| v.as_slice().try_into().ok()))
        })
    }

    /// Address of the entry that held a source of a user's archive before it was
    /// expunged (`None`: the source was never expunged, or archived again since).
    pub(crate) fn forgotten_source(
        &self,
        user: &str,
        source: &SourceRef,
    ) -> Result<Option<[u8; 32]>, ArchiveError> {
        self.address_at(Table::ForgottenSources, &source_key(user, source))
    }

    /// Whether `address` was expunged from `user`'s archive (and not archived
    /// there again since).
    pub(crate) fn forgotten_content(
        &self,
        user: &str,
        address: &[u8; 32],
    ) -> Result<bool, ArchiveError> {
        self.with(|db| {
            Ok(db
                .get(
                    Table::ForgottenContents,
                    &forgotten_content_key(user, address),
                )?
                .is_some())
        })
    }

    /// (user, folder) pairs holding `address`.
    pub(crate) fn holders_of(
        &self,
        address: &[u8; 32],
    ) -> Result<Vec<(String, String)>, ArchiveError> {
        let rows = self.with(|db| db.scan_prefix(Table::Holders, address))?;
        let mut out = Vec::new();
        for (key, _) in rows {
            let rest = &key[32..];
            let rest = rest.strip_suffix(&[0]).unwrap_or(rest);
            if let Some(sep) = rest.iter().position(|&b| b == 0) {
                out.push((
                    String::from_utf8_lossy(&rest[..sep]).into_owned(),
                    String::from_utf8_lossy(&rest[sep + 1..]).into_owned(),
                ));
            }
        }
        Ok(out)
    }

    /// Rows of `table` whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<Row>, ArchiveError> {
        self.with(|db| db.scan_prefix(table, prefix))
    }

    /// The first key of `table` at or after `start`.
    pub(crate) fn first_key_from(
        &self,
        table: Table,
        start: &[u8],
    ) -> Result<Option<Vec<u8>>, ArchiveError> {
        self.with(|db| {
            db.conn
                .query_row(
                    "SELECT k FROM kv WHERE t = ?1 AND k >= ?2 ORDER BY k LIMIT 1",
                    params![table as i64, start],
                    |row| row.get::<_, Vec<u8>>(0),
                )
                .optional()
                .map_err(db_error(db.path))
        })
    }

    /// SQLite's own check of every page of the file (`PRAGMA quick_check`): damage
    /// that loses rows without failing a read (a mangled key, a cut page) shows here
    /// as an index error, so the caller rebuilds. Reads the whole file.
    pub(crate) fn check_pages(&self) -> Result<(), ArchiveError> {
        let findings: Vec<String> = self.with(|db| {
            db.conn
                .prepare("PRAGMA quick_check(5)")
                .and_then(|mut s| {
                    s.query_map([], |row| row.get::<_, String>(0))?
                        .collect::<Result<_, _>>()
                })
                .map_err(db_error(db.path))
        })?;
        if findings.len() == 1 && findings[0] == "ok" {
            return Ok(());
        }
        Err(ArchiveError::listing(format!(
            "{} is damaged: {}",
            self.path.display(),
            findings.join("; ")
        )))
    }

    /// Number of rows of `table`.
    pub(crate) fn count(&self, table: Table) -> Result<u64, ArchiveError> {
        self.with(|db| {
            db.conn
                .query_row(
                    "SELECT count(*) FROM kv WHERE t = ?1",
                    params![table as i64],
                    |row| row.get::<_, i64>(0),
                )
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(db_error(db.path))
        })
    }

    /// (record-log offset, pack position) reflected here.
    pub(crate) fn positions(&self) -> Result<(u64, u64), ArchiveError> {
        self.with(|db| db.positions())
    }
}

impl Db<'_> {
    fn state(&self, key: &[u8]) -> Result<Option<u64>, ArchiveError> {
        Ok(match self.get(Table::State, key)? {
            Some(v) => {
                Some(u64::from_le_bytes(v.as_slice().try_into().map_err(
                    |_| ArchiveError::listing("state row of the wrong length"),
                )?))
            }
            None => None,
        })
    }

    fn set_state(&self, key: &[u8], value: u64) -> Result<(), ArchiveError> {
        self.insert(Table::State, key, &value.to_le_bytes())
    }

    /// (record-log offset, pack position) reflected here.
    pub(crate) fn positions(&self) -> Result<(u64, u64), ArchiveError> {
        Ok((
            self.state(LOG_POS)?.unwrap_or(0),
            self.state(PACK_POS)?.unwrap_or(0),
        ))
    }

    /// Moves the record-log offset to `to` for rows covering `from..to`, only when
    /// what is reflected now reaches `from` (so a gap before `from` is never
    /// claimed); returns whether everything before `to` is now reflected.
    pub(crate) fn advance_log(&self, from: u64, to: u64) -> Result<bool, ArchiveError> {
        self.advance(LOG_POS, from, to)
    }

    /// Like [`Db::advance_log`] for the pack position.
    pub(crate) fn advance_packs(&self, from: u64, to: u64) -> Result<bool, ArchiveError> {
        self.advance(PACK_POS, from, to)
    }

    fn advance(&self, key: &[u8], from: u64, to: u64) -> Result<bool, ArchiveError> {
        let now = self.state(key)?.unwrap_or(0);
        if now >= to {
            return Ok(true);
        }
        if now < from {
            return Ok(false);
        }
        self.set_state(key, to)?;
        Ok(true)
    }

    /// The value stored under `key`.
    pub(crate) fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, ArchiveError> {
        let raw = self
            .conn
            .prepare_cached("SELECT v FROM kv WHERE t = ?1 AND k = ?2")
            .and_then(|mut s| {
                s.query_row(params![table as i64, key], |row| row.get::<_, Vec<u8>>(0))
                    .optional()
            })
            .map_err(db_error(self.path))?;
        raw.map(|raw| open_row(table, key, raw)).transpose()
    }

    /// Removes the row under `key` (nothing when absent).
    pub(crate) fn delete(&self, table: Table, key: &[u8]) -> Result<(), ArchiveError> {
        self.conn
            .prepare_cached("DELETE FROM kv WHERE t = ?1 AND k = ?2")
            .and_then(|mut s| s.execute(params![table as i64, key]))
            .map_err(db_error(self.path))?;
        Ok(())
    }

    /// Stores `value` under `key` (replacing).
    pub(crate) fn insert(
        &self,
        table: Table,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), ArchiveError> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO kv (t, k, v) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![table as i64, key, seal_row(table, key, value)]))
            .map_err(db_error(self.path))?;
        Ok(())
    }

    /// Rows of `table` whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<Row>, ArchiveError> {
        let map = |row: &rusqlite::Row<'_>| Ok((row.get::<_, Vec<u8>>(0)?, row.get(1)?));
        let rows: Vec<(Vec<u8>, Vec<u8>)> = match prefix_end(prefix) {
            Some(end) => self
                .conn
                .prepare_cached(
                    "SELECT k, v FROM kv WHERE t = ?1 AND k >= ?2 AND k < ?3 ORDER BY k",
                )
                .and_then(|mut s| {
                    s.query_map(params![table as i64, prefix, end], map)?
                        .collect::<Result<_, _>>()
                }),
            None => self
                .conn
                .prepare_cached("SELECT k, v FROM kv WHERE t = ?1 AND k >= ?2 ORDER BY k")
                .and_then(|mut s| {
                    s.query_map(params![table as i64, prefix], map)?
                        .collect::<Result<_, _>>()
                }),
        }
        .map_err(db_error(self.path))?;
        rows.into_iter()
            .map(|(k, v)| {
                let v = open_row(table, &k, v)?;
                Ok((k, v))
            })
            .collect()
    }

    fn located(
        &self,
        table: Table,
        key: &[u8; 32],
    ) -> Result<Option<(Location, u64)>, ArchiveError> {
        Ok(self.get(table, key)?.and_then(|v| decode_located(&v)))
    }

    /// Whether metadata of `address` is cached.
    pub(crate) fn has_metadata(&self, address: &[u8; 32]) -> Result<bool, ArchiveError> {
        Ok(self.get(Table::Meta, address)?.is_some())
    }

    fn metadata(
        &self,
        address: &[u8; 32],
        with_body: bool,
    ) -> Result<Option<MessageMetadata>, ArchiveError> {
        let Some(raw) = self.get(Table::Meta, address)? else {
            return Ok(None);
        };
        let json = zstd::bulk::decompress(&raw, 16 << 20).map_err(ArchiveError::listing)?;
        let Ok(mut meta) = serde_json::from_slice::<MessageMetadata>(&json) else {
            return Ok(None);
        };
        if with_body && let Some(body) = self.get(Table::Bodies, address)? {
            let text = zstd::bulk::decompress(&body, 4 << 20).map_err(ArchiveError::listing)?;
            meta.body_text = String::from_utf8_lossy(&text).into_owned();
        }
        Ok(Some(meta))
    }

    /// Caches metadata of a message (body text apart, so listings stay cheap).
    pub(crate) fn put_metadata(
        &self,
        address: &[u8; 32],
        meta: &MessageMetadata,
    ) -> Result<(), ArchiveError> {
        let mut head = meta.clone();
        let body = std::mem::take(&mut head.body_text);
        let json = serde_json::to_vec(&head).map_err(ArchiveError::listing)?;
        let packed = zstd::bulk::compress(&json, 1).map_err(ArchiveError::listing)?;
        if !body.is_empty() {
            let packed_body =
                zstd::bulk::compress(body.as_bytes(), 1).map_err(ArchiveError::listing)?;
            self.insert(Table::Bodies, address, &packed_body)?;
        }
        self.insert(Table::Meta, address, &packed)
    }

    /// Applies one record of the log (see the order semantics in `log`); returns
    /// whether it changed an entry's existence or mark.
    pub(crate) fn apply_record(
        &self,
        address: &[u8; 32],
        record: &LogRecord,
    ) -> Result<bool, ArchiveError> {
        let (user, folder) = (record.user.as_str(), record.folder.as_str());
        match record.kind {
            RecordKind::Entry => self.put_entry(
                address,
                user,
                folder,
                record.received,
                record.archived,
                record.source.as_ref(),
            ),
            RecordKind::Tombstone => Ok(self.remove_entry(address, user, folder)?.is_some()),
            RecordKind::Restrict | RecordKind::Unrestrict => {
                let key = entry_key(user, folder, address);
                let marked = self.get(Table::Restricted, &key)?.is_some();
                if record.kind == RecordKind::Unrestrict {
                    self.delete(Table::Restricted, &key)?;
                    return Ok(marked);
                }
                if marked || self.get(Table::Entries, &key)?.is_none() {
                    return Ok(false);
                }
                self.insert(Table::Restricted, &key, &[])?;
                Ok(true)
            }
        }
    }

    /// Removes an entry with its holder row and restriction mark, and the source
    /// mappings to its message that no other entry of the same user and message
    /// lists; returns what it held (`None`: there was no such entry).
    pub(crate) fn remove_entry(
        &self,
        address: &[u8; 32],
        user: &str,
        folder: &str,
    ) -> Result<Option<EntryValue>, ArchiveError> {
        let key = entry_key(user, folder, address);
        let Some(raw) = self.get(Table::Entries, &key)? else {
            return Ok(None);
        };
        let value: EntryValue = serde_json::from_slice(&raw).map_err(ArchiveError::listing)?;
        self.delete(Table::Entries, &key)?;
        self.delete(Table::Restricted, &key)?;
        let mut hkey = address.to_vec();
        hkey.extend_from_slice(&key[..key.len() - 32]);
        self.delete(Table::Holders, &hkey)?;
        // Sources other entries of this user and message still list.
        let mut kept = Vec::new();
        let mut prefix = address.to_vec();
        prefix.extend_from_slice(user.as_bytes());
        prefix.push(0);
        let others = self.scan_prefix(Table::Holders, &prefix)?;
        if others.is_empty() {
            self.insert(
                Table::ForgottenContents,
                &forgotten_content_key(user, address),
                &[],
            )?;
        }
        for (holder, _) in others {
            let other_folder = holder
                .get(prefix.len()..holder.len().saturating_sub(1))
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .unwrap_or_default();
            if let Some(raw) = self.get(Table::Entries, &entry_key(user, &other_folder, address))? {
                let other: EntryValue =
                    serde_json::from_slice(&raw).map_err(ArchiveError::listing)?;
                kept.extend(other.sources);
            }
        }
        for source in &value.sources {
            let skey = source_key(user, source);
            if !kept.contains(source)
                && self.get(Table::Sources, &skey)?.as_deref() == Some(address.as_slice())
            {
                self.delete(Table::Sources, &skey)?;
                self.insert(Table::ForgottenSources, &skey, address)?;
            }
        }
        Ok(Some(value))
    }

    /// Records an entry (idempotent); returns true when it was new.
    pub(crate) fn put_entry(
        &self,
        address: &[u8; 32],
        user: &str,
        folder: &str,
        received: Option<DateTime<Utc>>,
        archived: DateTime<Utc>,
        source: Option<&SourceRef>,
    ) -> Result<bool, ArchiveError> {
        let key = entry_key(user, folder, address);
        let existing = self.get(Table::Entries, &key)?;
        let mut value = match &existing {
            Some(raw) => {
                serde_json::from_slice::<EntryValue>(raw).map_err(ArchiveError::listing)?
            }
            None => EntryValue {
                received,
                archived,
                sources: Vec::new(),
            },
        };
        let mut changed = existing.is_none();
        // Archived again (a log written before archiving refused forgotten
        // content can hold this): live again, so no longer forgotten.
        if existing.is_none() {
            self.delete(
                Table::ForgottenContents,
                &forgotten_content_key(user, address),
            )?;
        }
        if let Some(source) = source {
            if !value.sources.contains(source) {
                self.delete(Table::ForgottenSources, &source_key(user, source))?;
                value.sources.push(source.clone());
                changed = true;
            }
            self.insert(Table::Sources, &source_key(user, source), address)?;
        }
        if changed {
            let raw = serde_json::to_vec(&value).map_err(ArchiveError::listing)?;
            self.insert(Table::Entries, &key, &raw)?;
        }
        if existing.is_none() {
            let mut hkey = address.to_vec();
            hkey.extend_from_slice(&key[..key.len() - 32]);
            self.insert(Table::Holders, &hkey, &[])?;
        }
        Ok(existing.is_none())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_past_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }

    #[test]
    fn rows_are_checked_and_positions_never_skip_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), true).unwrap();
        index
            .transaction(|db| db.insert(Table::Entries, b"k", b"value"))
            .unwrap();
        assert_eq!(
            index.scan_prefix(Table::Entries, b"").unwrap(),
            vec![(b"k".to_vec(), b"value".to_vec())]
        );
        assert!(index.with(|db| db.advance_log(0, 10)).unwrap());
        assert!(!index.with(|db| db.advance_log(20, 30)).unwrap());
        assert!(
            index.with(|db| db.advance_log(0, 5)).unwrap(),
            "already covered"
        );
        assert_eq!(index.positions().unwrap().0, 10);
        let pos = pack_position(3, 77);
        assert_eq!(split_pack_position(pos), (3, 77));
        assert!(pack_position(2, 1 << 30) < pack_position(3, 0));
        drop(index);
        assert!(Index::open(&dir.path().join("nothing"), false).is_err());
    }
}
