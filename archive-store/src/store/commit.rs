//! The group commit (one leader fsyncs the pack, appends the waiting records to
//! the log, fsyncs it and applies them to `index.db` in one transaction) and the
//! lagging search index, brought up to date in batches after commits.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::crypto::to_hex;
use crate::index::pack_position;
use crate::log::{LogRecord, decode_record, encode_record, log_path};
use crate::pack::{ScanEvent, kind, scan_file};
use crate::search::SearchDoc;
use crate::{ArchiveError, ArchiveOutcome, IoFailure, MessageId};

use super::{DiskArchiveStore, Pending, SEARCH_BATCH_AGE, SEARCH_BATCH_DOCS, lock};

impl DiskArchiveStore {
    /// The group commit: waits until a leader (maybe this caller) made the record durable.
    pub(super) fn commit(&self, pending: Pending) -> Result<ArchiveOutcome, ArchiveError> {
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

    pub(super) fn sync_search_logged(&self, wait: Duration) {
        if let Err(e) = self.sync_search(wait) {
            tracing::error!(error = %e, "search index update failed; the next search or write retries it");
        }
    }

    /// After a group commit: an indexing pass when enough documents wait or the
    /// oldest has waited long enough (never waiting for another process).
    pub(super) fn maybe_sync_search(&self) {
        let due = self.search_pending.load(Ordering::SeqCst) >= SEARCH_BATCH_DOCS
            || lock(&self.search_pending_since).is_some_and(|t| t.elapsed() >= SEARCH_BATCH_AGE);
        if due {
            self.sync_search_logged(Duration::ZERO);
        }
    }
}
