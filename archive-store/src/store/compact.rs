//! Compaction: packs holding garbage (chunks and manifests no live entry
//! references, and stale copies the index does not point to) are rewritten into
//! new packs holding only their live frames, each verified as it moves (a chunk
//! re-hashed, a message re-assembled and re-hashed), and then removed.
//!
//! Crash safety. The live frames are appended to fresh packs numbered after every
//! existing one and fsynced; only then is the intent file `COMPACT` (the packs to
//! remove) written atomically, then `index.db` re-pointed in one transaction, then
//! the old packs deleted and the intent removed. Whatever the point of a crash,
//! every live object has an intact copy the index reaches: before the intent the
//! old packs stay and the new frames are duplicates (a catch-up replaying the new
//! packs points the index at them, which is as good; the next compaction drops
//! the other copy); after it, the next writer's catch-up (which replays the new
//! packs first) drops the index rows still pointing into the packs the intent
//! names, deletes those packs and the intent.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::caches::Caches;
use crate::crypto::to_hex;
use crate::index::{Table, encode_located, pack_position};
use crate::pack::{Location, ScanEvent, kind, list_packs, scan_file, sync_dir, write_atomic};
use crate::{ArchiveError, MessageId};

use super::{DiskArchiveStore, Staged, decode_chunk, lock, parse_manifest};

/// File naming the packs an interrupted compaction was removing.
const INTENT: &str = "COMPACT";

/// What [`DiskArchiveStore::compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactReport {
    /// Packs rewritten (their live frames moved, the packs removed).
    pub packs_rewritten: u64,
    /// Bytes of all pack files before.
    pub bytes_before: u64,
    /// Bytes of all pack files after.
    pub bytes_after: u64,
    /// `bytes_before - bytes_after`.
    pub bytes_reclaimed: u64,
    /// Live messages (manifests) moved, each re-assembled and re-hashed first.
    pub messages_moved: u64,
    /// Live chunks moved, each re-hashed first.
    pub chunks_moved: u64,
    /// Messages no live entry referenced, dropped.
    pub messages_dropped: u64,
    /// Chunks no live message referenced, dropped.
    pub chunks_dropped: u64,
    /// Packs holding garbage that were kept because a live object in them is
    /// damaged (`archive verify` names it), with the reason.
    pub kept: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Intent {
    /// Packs to remove.
    retire: Vec<u32>,
}

/// One pack as the live sets see it.
#[derive(Default)]
struct PackPlan {
    /// Live frames in order.
    live: Vec<(Location, u8, [u8; 32])>,
    /// Keys of the frames that are not live, by table.
    garbage: Vec<(Table, [u8; 32])>,
    garbage_bytes: u64,
    /// Live objects the index places in this pack.
    expected: u64,
}

impl DiskArchiveStore {
    /// Rewrites every pack holding garbage into new packs holding only its live
    /// frames, verifying each moved object, then removes the old packs (see the
    /// module's crash model). Holds the write lock throughout; other processes'
    /// writes wait, their reads go on (a read racing the removal of a pack looks
    /// its object up again). A failed write stops the store like any other.
    pub fn compact(&self) -> Result<CompactReport, ArchiveError> {
        self.check_poisoned()?;
        let _write = self.write_guard()?;
        let _exclusive = self
            .maintenance
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Everything written so far is in index.db (no write of this process is in
        // progress), so no staged row may point into a pack about to go.
        self.deferred.settle()?;
        self.catch_up(true)?;
        *lock(&self.staged) = Staged::default();
        let result = self.compact_locked();
        if let Err(e) = &result
            && e.io_kind().is_some()
        {
            self.poison(e);
        }
        result
    }

    fn compact_locked(&self) -> Result<CompactReport, ArchiveError> {
        let caches = self.caches();
        let packs_dir = self.dir.join("packs");
        let mut report = CompactReport {
            bytes_before: self.pack_bytes()?,
            ..CompactReport::default()
        };
        // 1. The live sets: every held message and every chunk of its manifest.
        let mut live_messages: HashSet<[u8; 32]> = HashSet::new();
        for (key, _) in caches.index.scan_prefix(Table::Holders, &[])? {
            if let Some(address) = key.get(..32).and_then(|a| <[u8; 32]>::try_from(a).ok()) {
                live_messages.insert(address);
            }
        }
        let mut live_chunks: HashSet<[u8; 32]> = HashSet::new();
        let mut expected: HashMap<u32, u64> = HashMap::new();
        for address in &live_messages {
            // A live message whose manifest cannot be read makes its chunks unknown:
            // nothing is removed then.
            let (chunks, _) = self.manifest(address)?;
            if let Some((loc, _)) = caches.index.message(address)? {
                *expected.entry(loc.file).or_default() += 1;
            }
            for (key, _) in chunks {
                if live_chunks.insert(key)
                    && let Some((loc, _)) = caches.index.chunk(&key)?
                {
                    *expected.entry(loc.file).or_default() += 1;
                }
            }
        }
        // 2. Each pack's live frames and garbage.
        let numbers = list_packs(&packs_dir)?;
        let mut plans: Vec<(u32, PackPlan)> = Vec::new();
        for &n in &numbers {
            let mut plan = PackPlan {
                expected: expected.get(&n).copied().unwrap_or(0),
                ..PackPlan::default()
            };
            let path = self.packs.path(n);
            let summary = scan_file(&path, n, 0, None, |event| {
                match event {
                    ScanEvent::Frame { loc, kind, payload } => {
                        let Some(key) =
                            payload.get(..32).and_then(|k| <[u8; 32]>::try_from(k).ok())
                        else {
                            plan.garbage_bytes += loc.end() - loc.offset;
                            return Ok(());
                        };
                        let (table, live_set) = match kind {
                            kind::CHUNK => (Table::Chunks, &live_chunks),
                            kind::MANIFEST => (Table::Messages, &live_messages),
                            _ => {
                                plan.garbage_bytes += loc.end() - loc.offset;
                                return Ok(());
                            }
                        };
                        let indexed = match table {
                            Table::Chunks => caches.index.chunk(&key)?,
                            _ => caches.index.message(&key)?,
                        };
                        if live_set.contains(&key) && indexed.map(|(l, _)| l) == Some(loc) {
                            plan.live.push((loc, kind, key));
                        } else {
                            plan.garbage.push((table, key));
                            plan.garbage_bytes += loc.end() - loc.offset;
                        }
                    }
                    ScanEvent::Damaged { offset, resume, .. } => {
                        let end = resume.unwrap_or(offset);
                        plan.garbage_bytes += end.saturating_sub(offset).max(1);
                    }
                }
                Ok(())
            })?;
            plan.garbage_bytes += summary.file_len.saturating_sub(summary.valid_end);
            if plan.garbage_bytes == 0 {
                continue;
            }
            if plan.live.len() as u64 != plan.expected {
                report.kept.push(format!(
                    "packs/pack-{n:08}.pack: {} live objects are not intact frames there",
                    plan.expected.saturating_sub(plan.live.len() as u64)
                ));
                continue;
            }
            plans.push((n, plan));
        }
        if plans.is_empty() {
            report.bytes_after = report.bytes_before;
            return Ok(report);
        }

        // 3. The live frames, verified, into fresh packs; fsynced and read back.
        let mut moved: Vec<(Table, [u8; 32], Location, u64)> = Vec::new();
        let mut retire: Vec<u32> = Vec::new();
        {
            let mut writer = lock(&self.pack_writer);
            writer.start_next()?;
            for (n, plan) in &plans {
                let mut intact = true;
                for &(loc, frame_kind, key) in &plan.live {
                    let (read_kind, payload) = self.packs.read(loc)?;
                    let n_field = payload
                        .get(32..40)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_le_bytes);
                    let ok = read_kind == frame_kind
                        && match frame_kind {
                            kind::CHUNK => decode_chunk(&self.codec, &key, &payload[40..], n_field)
                                .is_ok_and(|chunk| self.codec.hash(&chunk) == key),
                            _ => {
                                self.codec
                                    .open(kind::MANIFEST, &key, &payload[40..])
                                    .ok()
                                    .and_then(|body| parse_manifest(&body))
                                    .is_some()
                                    && self.verify_message_raw(&MessageId(to_hex(&key)))?
                            }
                        };
                    if !ok {
                        intact = false;
                        continue;
                    }
                    let at = writer.append(frame_kind, &payload)?;
                    let table = if frame_kind == kind::CHUNK {
                        report.chunks_moved += 1;
                        Table::Chunks
                    } else {
                        report.messages_moved += 1;
                        Table::Messages
                    };
                    moved.push((table, key, at, n_field));
                }
                if intact {
                    retire.push(*n);
                } else {
                    report.kept.push(format!(
                        "packs/pack-{n:08}.pack: a live object in it failed verification"
                    ));
                }
            }
            writer.sync()?;
        }
        sync_dir(&*self.io, &packs_dir)?;
        for (table, key, loc, _) in &moved {
            let (read_kind, payload) = self.packs.read(*loc)?;
            let expected_kind = if *table == Table::Chunks {
                kind::CHUNK
            } else {
                kind::MANIFEST
            };
            if read_kind != expected_kind || payload.get(..32) != Some(key.as_slice()) {
                return Err(ArchiveError::CorruptObject {
                    pack: Some(self.packs.path(loc.file)),
                    offset: Some(loc.offset),
                    detail: "a frame written by compaction reads back differently".into(),
                    affected: Vec::new(),
                });
            }
        }
        if retire.is_empty() {
            report.bytes_after = self.pack_bytes()?;
            report.bytes_reclaimed = report.bytes_before.saturating_sub(report.bytes_after);
            return Ok(report);
        }

        // 4. The intent, then index.db, then the old packs go.
        let intent = serde_json::to_vec(&Intent {
            retire: retire.clone(),
        })
        .map_err(ArchiveError::listing)?;
        write_atomic(&*self.io, &self.dir.join(INTENT), &intent)?;
        let retired: BTreeSet<u32> = retire.iter().copied().collect();
        let garbage: Vec<(Table, [u8; 32])> = plans
            .iter()
            .filter(|(n, _)| retired.contains(n))
            .flat_map(|(_, plan)| plan.garbage.iter().copied())
            .collect();
        let end = {
            let writer = lock(&self.pack_writer);
            pack_position(writer.number(), writer.len())
        };
        let (chunks_dropped, messages_dropped) = caches.index.transaction(|db| {
            for (table, key, loc, n) in &moved {
                db.insert(*table, key, &encode_located(*loc, *n))?;
            }
            let mut dropped = (0u64, 0u64);
            for (table, key) in &garbage {
                if drop_row_into(db, *table, key, &retired)? {
                    if *table == Table::Chunks {
                        dropped.0 += 1;
                    } else {
                        dropped.1 += 1;
                    }
                }
            }
            db.advance_packs(0, end)?;
            Ok(dropped)
        })?;
        report.chunks_dropped = chunks_dropped;
        report.messages_dropped = messages_dropped;
        self.remove_retired(&retired)?;
        report.packs_rewritten = retired.len() as u64;
        report.bytes_after = self.pack_bytes()?;
        report.bytes_reclaimed = report.bytes_before.saturating_sub(report.bytes_after);
        tracing::info!(
            packs = report.packs_rewritten,
            reclaimed = report.bytes_reclaimed,
            moved = report.messages_moved,
            "compaction finished"
        );
        Ok(report)
    }

    /// Deletes the retired packs and then the intent.
    fn remove_retired(&self, retired: &BTreeSet<u32>) -> Result<(), ArchiveError> {
        let packs_dir = self.dir.join("packs");
        for &n in retired {
            let path = self.packs.path(n);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ArchiveError::io(&path, e)),
            }
            self.packs.forget(n);
        }
        sync_dir(&*self.io, &packs_dir)?;
        let intent = self.dir.join(INTENT);
        match std::fs::remove_file(&intent) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArchiveError::io(&intent, e)),
        }
        sync_dir(&*self.io, &self.dir)
    }

    /// After a crash: finishes a compaction whose intent was written (drops the
    /// index rows still pointing into the packs it names, deletes them) and removes
    /// a half-written intent. Lock holders only, after the packs were replayed.
    pub(super) fn finish_compaction(&self, caches: &Caches) -> Result<(), ArchiveError> {
        let path = self.dir.join(INTENT);
        let tmp = path.with_extension("tmp");
        if tmp.exists() {
            std::fs::remove_file(&tmp).map_err(|e| ArchiveError::io(&tmp, e))?;
        }
        let raw = match std::fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ArchiveError::io(&path, e)),
        };
        let intent: Intent = serde_json::from_slice(&raw).map_err(|e| ArchiveError::Format {
            dir: self.dir.clone(),
            detail: format!("{} is unreadable: {e}", path.display()),
        })?;
        tracing::warn!(packs = ?intent.retire, "finishing a compaction interrupted by a crash");
        let retired: BTreeSet<u32> = intent.retire.into_iter().collect();
        caches.index.transaction(|db| {
            for table in [Table::Chunks, Table::Messages] {
                for (key, _) in db.scan_prefix(table, &[])? {
                    if let Ok(key) = <[u8; 32]>::try_from(key.as_slice()) {
                        drop_row_into(db, table, &key, &retired)?;
                    }
                }
            }
            Ok(())
        })?;
        self.remove_retired(&retired)
    }

    /// Bytes of all pack files.
    fn pack_bytes(&self) -> Result<u64, ArchiveError> {
        let mut total = 0;
        for n in list_packs(&self.dir.join("packs"))? {
            total += file_len(&self.packs.path(n))?;
        }
        Ok(total)
    }
}

/// Drops the row of `key` when it points into one of `retired` (with the cached
/// metadata of a message); returns whether it did.
fn drop_row_into(
    db: &crate::index::Db<'_>,
    table: Table,
    key: &[u8; 32],
    retired: &BTreeSet<u32>,
) -> Result<bool, ArchiveError> {
    let Some(raw) = db.get(table, key)? else {
        return Ok(false);
    };
    match crate::index::decode_located(&raw) {
        Some((loc, _)) if retired.contains(&loc.file) => {
            db.delete(table, key)?;
            if table == Table::Messages {
                db.delete(Table::Meta, key)?;
                db.delete(Table::Bodies, key)?;
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn file_len(path: &Path) -> Result<u64, ArchiveError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(ArchiveError::io(path, e)),
    }
}
