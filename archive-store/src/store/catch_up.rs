//! Catching up with the sources of truth: reopening the appenders at the true
//! end of the packs and log, cutting a torn tail, and replaying pack frames and
//! log records past the positions `index.db` records into it (on every lock
//! acquisition, on open, before each read of a read-only store and when
//! rebuilding a generation).

use std::path::Path;

use crate::ArchiveError;
use crate::caches::Caches;
use crate::index::{Table, pack_position, split_pack_position};
use crate::log::{LogRecord, decode_record, log_path};
use crate::pack::{
    FrameAppender, Location, ScanEvent, kind, list_packs, pack_path, scan_file, truncate_tail,
};
use crate::search::SearchIndex;

use super::{DiskArchiveStore, REPLAY_BATCH, lock};

impl DiskArchiveStore {
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
    pub(super) fn catch_up(&self, writable: bool) -> Result<(), ArchiveError> {
        let writable = writable && !self.read_only;
        if writable {
            self.reopen_appenders()?;
        }
        let caches = self.caches();
        let packs_dir = self.dir.join("packs");
        let numbers = list_packs(&packs_dir)?;
        let last = numbers.last().copied().unwrap_or(1);
        let last_len = std::fs::metadata(pack_path(&packs_dir, last)).map_or(0, |m| m.len());
        let log_file = log_path(&self.dir, 1);
        let log_len = std::fs::metadata(&log_file).map_or(0, |m| m.len());
        if let Some(reach) = self.deferred.reach() {
            if reach == (log_len, pack_position(last, last_len)) {
                // Nothing was written since but this process's rows waiting for
                // index.db: they stay waiting.
                return Ok(());
            }
            // Others wrote since: this process's rows go first, so that index.db
            // grows without a gap.
            self.deferred.settle()?;
        }
        let (log_pos, pack_pos) = caches.index.positions()?;
        let (from_pack, from_len) = split_pack_position(pack_pos);
        if from_pack > last || (from_pack == last && from_len > last_len) || log_pos > log_len {
            return Err(ArchiveError::Index {
                index: "listing",
                detail: "the index claims more than the packs and the record log hold".into(),
            });
        }
        if pack_pos == pack_position(last, last_len) && log_pos == log_len {
            // Nothing was written since index.db was last brought up to date (the
            // common case of a lock taken again by the process that released it).
            return Ok(());
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
            self.check_search_ahead()?;
        }
        Ok(())
    }

    /// A search index ahead of the log (its tail was lost) starts again. Lock holders only.
    pub(super) fn check_search_ahead(&self) -> Result<(), ArchiveError> {
        let search = &self.caches().search;
        if search.committed_offset()? > lock(&self.log_writer).len() {
            tracing::warn!("search index is ahead of the record log; rebuilding it");
            if let Some(mut writer) = search.writer(SearchIndex::default_wait())? {
                writer.clear()?;
                writer.commit(0)?;
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
