//! The group commit (one leader fsyncs the pack, appends the waiting records to
//! the log, fsyncs it and hands them with the staged lookup rows and the new
//! entries' documents to the deferred `index.db` commit) and the search index's
//! catch-up from the record log.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;

use crate::crypto::to_hex;
use crate::index::pack_position;
use crate::log::{LogRecord, encode_record, log_path};
use crate::pack::kind;
use crate::{ArchiveError, ArchiveOutcome, IoFailure, MessageId};

use super::deferred::Handover;
use super::indexer::{Doc, add_logged};
use super::{DiskArchiveStore, Pending, Stage, lock};

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

    /// Runs `f` as the only writer of the record log in this process: group
    /// commits wait until it returns (it takes the leader's place).
    pub(super) fn as_only_log_writer<T>(
        &self,
        f: impl FnOnce() -> Result<T, ArchiveError>,
    ) -> Result<T, ArchiveError> {
        /// Gives the leader's place back, also on a panic.
        struct Leader<'a>(&'a DiskArchiveStore);
        impl Drop for Leader<'_> {
            fn drop(&mut self) {
                lock(&self.0.commit).leader = false;
                self.0.committed.notify_all();
            }
        }
        let mut state = lock(&self.commit);
        while state.leader {
            state = self
                .committed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.leader = true;
        drop(state);
        let _leader = Leader(self);
        f()
    }

    fn commit_batch(
        &self,
        batch: Vec<Pending>,
    ) -> Result<Vec<(u64, ArchiveOutcome)>, ArchiveError> {
        // 1. Everything the batch refers to is in the pack already: make it durable.
        // The staged rows are taken with the position under the pack writer's lock:
        // they describe exactly the frames before it.
        let (file, path, pack_pos, staged) = {
            let writer = lock(&self.pack_writer);
            let (file, path) = writer.handle()?;
            let staged = lock(&self.staged).clone();
            (
                file,
                path,
                pack_position(writer.number(), writer.len()),
                staged,
            )
        };
        self.timings
            .time(Stage::PackSync, || self.io.sync(&file, &path))
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
                || self.deferred.has_entry(&ekey)
                || self
                    .caches()
                    .index
                    .has_entry(&p.address, &r.user, &r.folder)?;
            let source_known = match &r.source {
                None => true,
                Some(s) => {
                    let skey = crate::index::source_key(&r.user, s);
                    seen_sources.contains(&skey)
                        || match self.deferred.source(&skey) {
                            Some(address) => address == p.address,
                            None => self.caches().index.source(&r.user, s)? == Some(p.address),
                        }
                }
            };
            let new_entry = !entry_exists;
            if new_entry || !source_known {
                let record = LogRecord {
                    kind: crate::log::RecordKind::Entry,
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
                    forgotten: false,
                },
            ));
        }
        if frames.is_empty() && staged.is_empty() {
            return Ok(outcomes);
        }

        // 3. Append and fsync the record log.
        let (log_start, log_end, locs) = if frames.is_empty() {
            let len = lock(&self.log_writer).len();
            (len, len, Vec::new())
        } else {
            self.timings.time(Stage::LogSync, || {
                let mut log = lock(&self.log_writer);
                let start = log.len();
                let locs = log.append_many(&frames)?;
                log.sync()?;
                Ok::<_, ArchiveError>((start, log.len(), locs))
            })?
        };

        // 4. The staged rows, the records and the positions they reach wait for the
        // deferred index.db transaction (which then hands the new entries'
        // documents to the indexer); lookups find them there meanwhile.
        let docs: Vec<Doc> = records
            .iter()
            .zip(&locs)
            .filter(|((_, record), _)| record.new_entry)
            .map(|((p, record), loc)| Doc {
                user: record.user.clone(),
                folder: record.folder.clone(),
                address: p.address,
                received: record.received,
                meta: staged.metadata.get(&p.address).cloned(),
                end: loc.end(),
            })
            .collect();
        let records = records
            .into_iter()
            .map(|(p, record)| (p.address, record))
            .collect();
        let mut waiting = lock(&self.staged);
        waiting.remove(&staged);
        self.deferred.absorb(Handover {
            staged,
            records,
            docs,
            log: (log_start, log_end),
            pack: pack_pos,
        });
        drop(waiting);
        Ok(outcomes)
    }

    /// Brings the search index up to the record-log offset `index.db` reflects:
    /// indexes the records past its committed offset in one pass. When another
    /// process is indexing, waits up to `wait` for it, then searches what is committed.
    pub(crate) fn sync_search(&self, wait: Duration) -> Result<(), ArchiveError> {
        self.timings
            .time(Stage::Search, || self.sync_search_now(wait))
    }

    fn sync_search_now(&self, wait: Duration) -> Result<(), ArchiveError> {
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
        let log_file = log_path(&self.dir, 1);
        add_logged(
            &self.codec,
            &log_file,
            from,
            target,
            &caches.index,
            &mut writer,
            &mut |address| self.metadata_of(address).map(Some),
        )?;
        writer.commit(target)
    }

    pub(super) fn sync_search_logged(&self, wait: Duration) {
        if let Err(e) = self.sync_search(wait) {
            tracing::error!(error = %e, "search index update failed; the next search or write retries it");
        }
    }

    /// After a write: the store's own catch-up when the indexer could not finish a
    /// pass (never waiting for another process).
    pub(super) fn maybe_sync_search(&self) {
        if self.indexer.take_behind() {
            self.sync_search_logged(Duration::ZERO);
        }
    }

    /// Waits for the indexer, then brings the search index up to date with what is
    /// left (other processes' records, documents the indexer could not add).
    pub(crate) fn flush_search(&self, wait: Duration) -> Result<(), ArchiveError> {
        self.deferred.settle()?;
        self.indexer.flush();
        self.sync_search(wait)
    }
}
