//! Removing and restricting entries: the archive's only deletion primitive.
//!
//! An expunge writes a tombstone record per entry to the record log, under the
//! write lock and as the only writer of the log in this process (group commits
//! wait), after re-reading the entry's current state and asking the caller's
//! permit right before each tombstone; the log is fsynced before it returns and
//! `index.db` updated in the same way a replay applies the records, so a reopen,
//! a catch-up of another process or a rebuild reach the same state. The search
//! index deletes the entries' documents on its next pass (every search runs one
//! first). The message's bytes stay in the packs until `compact` drops what no
//! live entry references. Restriction marks travel the same road (`restrict` and
//! `unrestrict` records).

use std::collections::{BTreeSet, HashSet};

use chrono::Utc;
use serde::Serialize;

use crate::log::{LogRecord, RecordKind, encode_record};
use crate::pack::kind;
use crate::{ArchiveError, MessageId};

use super::{ArchiveEntry, DiskArchiveStore, REPLAY_BATCH, lock, parse_id};

/// One entry: a message in one folder of one user's archive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EntryRef {
    /// Archive owner.
    pub user: String,
    /// Folder path.
    pub folder: String,
    /// Content address of the message.
    pub id: MessageId,
}

impl EntryRef {
    /// The entry of `id` in `user`'s `folder`.
    pub fn new(user: impl Into<String>, folder: impl Into<String>, id: MessageId) -> Self {
        EntryRef {
            user: user.into(),
            folder: folder.into(),
            id,
        }
    }
}

/// What [`DiskArchiveStore::expunge`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExpungeReport {
    /// Entries removed (their tombstones are durable).
    pub expunged: Vec<EntryRef>,
    /// Entries the permit refused (kept).
    pub refused: Vec<EntryRef>,
    /// Entries that were not in the archive (or named twice).
    pub missing: Vec<EntryRef>,
    /// Messages that no live entry references any more.
    pub unreferenced_messages: u64,
    /// Their raw sizes: the bytes `compact` can reclaim for them (chunks shared
    /// with live messages stay).
    pub unreferenced_bytes: u64,
}

/// What [`DiskArchiveStore::set_restricted`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestrictReport {
    /// Entries whose mark changed.
    pub changed: Vec<EntryRef>,
    /// Entries already in the state asked for.
    pub unchanged: Vec<EntryRef>,
    /// Entries that are not in the archive.
    pub missing: Vec<EntryRef>,
}

/// Whether reads include restricted entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Visibility {
    /// Restricted entries are left out (users, administrators).
    #[default]
    Ordinary,
    /// Restricted entries are included (auditors, compliance officers).
    Privileged,
}

impl Visibility {
    /// Whether restricted entries are included.
    pub fn sees_restricted(self) -> bool {
        self == Visibility::Privileged
    }
}

/// One entry's record to write, decided under the log.
struct Planned {
    entry: EntryRef,
    address: [u8; 32],
    size: u64,
}

impl DiskArchiveStore {
    /// Expunges entries: for each one, re-reads it as it is now and asks `permit`
    /// (with that view, restricted or not) right before writing its tombstone; a
    /// refused, absent or repeated entry is kept and reported. Returns once every
    /// tombstone is fsynced in the record log and the listing index holds the
    /// removals: the entries are gone from listings, `show`, export, stats, search
    /// and `verify`'s live set, in this process and, on their next read, in every
    /// other. An entry archived again later is a new, live entry.
    pub fn expunge(
        &self,
        entries: &[EntryRef],
        permit: &dyn Fn(&ArchiveEntry) -> bool,
    ) -> Result<ExpungeReport, ArchiveError> {
        self.check_poisoned()?;
        let _write = self.write_guard()?;
        let _shared = self.maintenance_read();
        self.as_only_log_writer(|| {
            // This process's acknowledged rows first: index.db must hold every
            // record before the tombstones.
            self.deferred.settle()?;
            let mut report = ExpungeReport::default();
            let mut seen: HashSet<&EntryRef> = HashSet::new();
            let mut touched: BTreeSet<([u8; 32], u64)> = BTreeSet::new();
            for batch in entries.chunks(REPLAY_BATCH) {
                let mut planned = Vec::new();
                for entry in batch {
                    let current = match parse_id(&entry.id) {
                        Ok(address) if seen.insert(entry) => self
                            .entry_raw(&entry.user, &entry.folder, &address)?
                            .map(|view| (address, view)),
                        _ => None,
                    };
                    let Some((address, view)) = current else {
                        report.missing.push(entry.clone());
                        continue;
                    };
                    if !permit(&view) {
                        report.refused.push(entry.clone());
                        continue;
                    }
                    planned.push(Planned {
                        entry: entry.clone(),
                        address,
                        size: view.size,
                    });
                }
                self.write_marks(RecordKind::Tombstone, &planned)?;
                for p in planned {
                    touched.insert((p.address, p.size));
                    report.expunged.push(p.entry);
                }
            }
            for (address, size) in touched {
                if self.caches().index.holders_of(&address)?.is_empty() {
                    report.unreferenced_messages += 1;
                    report.unreferenced_bytes += size;
                }
            }
            Ok(report)
        })
    }

    /// Marks entries restricted (`true`: hidden from every read but privileged
    /// ones, see [`Visibility`] and [`crate::Scope::Privileged`]) or lifts the mark,
    /// durably (a record per changed entry, fsynced). An expunge removes the mark
    /// with the entry; an entry archived again after an expunge is not restricted.
    pub fn set_restricted(
        &self,
        entries: &[EntryRef],
        restricted: bool,
    ) -> Result<RestrictReport, ArchiveError> {
        self.check_poisoned()?;
        let _write = self.write_guard()?;
        let _shared = self.maintenance_read();
        self.as_only_log_writer(|| {
            self.deferred.settle()?;
            let mut report = RestrictReport::default();
            let mut seen: HashSet<&EntryRef> = HashSet::new();
            for batch in entries.chunks(REPLAY_BATCH) {
                let mut planned = Vec::new();
                for entry in batch {
                    let current = match parse_id(&entry.id) {
                        Ok(address) => self
                            .entry_raw(&entry.user, &entry.folder, &address)?
                            .map(|view| (address, view)),
                        Err(_) => None,
                    };
                    let Some((address, view)) = current else {
                        report.missing.push(entry.clone());
                        continue;
                    };
                    if view.restricted == restricted || !seen.insert(entry) {
                        report.unchanged.push(entry.clone());
                        continue;
                    }
                    planned.push(Planned {
                        entry: entry.clone(),
                        address,
                        size: view.size,
                    });
                }
                let kind = if restricted {
                    RecordKind::Restrict
                } else {
                    RecordKind::Unrestrict
                };
                self.write_marks(kind, &planned)?;
                report.changed.extend(planned.into_iter().map(|p| p.entry));
            }
            Ok(report)
        })
    }

    /// Whether the entry is restricted (`false` for an entry that is not there).
    pub fn is_restricted(&self, entry: &EntryRef) -> Result<bool, ArchiveError> {
        let Ok(address) = parse_id(&entry.id) else {
            return Ok(false);
        };
        self.healing(|| {
            self.caches()
                .index
                .is_restricted(&address, &entry.user, &entry.folder)
        })
    }

    /// Appends one record of `kind` per planned entry, fsyncs the log and applies
    /// the records to `index.db` (as a replay would). The caller is the only
    /// writer of the log and holds the write lock.
    fn write_marks(&self, kind: RecordKind, planned: &[Planned]) -> Result<(), ArchiveError> {
        if planned.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let mut frames = Vec::with_capacity(planned.len());
        let mut records = Vec::with_capacity(planned.len());
        for p in planned {
            let record = LogRecord::mark(kind, &p.entry.user, &p.entry.folder, now);
            frames.push((
                kind::RECORD,
                encode_record(&self.codec, &p.address, &record)?,
            ));
            records.push((p.address, record));
        }
        let (start, end) = {
            let mut log = lock(&self.log_writer);
            let start = log.len();
            log.append_many(&frames)
                .and_then(|_| log.sync())
                .inspect_err(|e| self.poison(e))?;
            (start, log.len())
        };
        let caches = self.caches();
        let applied = caches.index.transaction(|db| {
            for (address, record) in &records {
                db.apply_record(address, record)?;
            }
            if !db.advance_log(start, end)? {
                return Err(ArchiveError::listing(
                    "the listing index has a gap before these records",
                ));
            }
            Ok(())
        });
        if let Err(e) = applied {
            // The records are durable: a replay applies them.
            tracing::warn!(error = %e, "listing index update failed; replaying the record log");
            self.catch_up(true)?;
        }
        Ok(())
    }

    /// One entry as it is now (restricted or not), from the listing index.
    pub(super) fn entry_raw(
        &self,
        user: &str,
        folder: &str,
        address: &[u8; 32],
    ) -> Result<Option<ArchiveEntry>, ArchiveError> {
        let key = crate::index::entry_key(user, folder, address);
        let caches = self.caches();
        let Some(value) = caches
            .index
            .with(|db| db.get(crate::index::Table::Entries, &key))?
        else {
            return Ok(None);
        };
        let restricted = caches.index.is_restricted(address, user, folder)?;
        self.entry_view(&key, &value, restricted)
    }

    /// Every entry of every archive, restricted ones included (what retention judges).
    pub fn entries(&self) -> Result<Vec<ArchiveEntry>, ArchiveError> {
        self.healing(|| {
            let mut out = Vec::new();
            for user in self.distinct_users()? {
                out.extend(self.list_raw(&user, None, Visibility::Privileged)?);
            }
            Ok(out)
        })
    }
}
