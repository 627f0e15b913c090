//! Deferred `index.db` commits. A group commit makes its records durable in the
//! record log and hands the rows they imply (lookup rows of its frames, metadata,
//! entries and sources) to this module instead of writing `index.db` itself; a
//! background thread commits what waits in one transaction once the oldest part is
//! `StoreOptions::index_commit_delay` old or [`DEFER_RECORDS`] records wait. The transaction leaves the
//! group commit's serial path and is paid once per many group commits.
//!
//! Nothing acknowledged is invisible: the write path's lookups (chunks, manifests,
//! entries, sources), message reads and `find_source` consult the waiting rows
//! before `index.db`; every other read of this process, a search, a flush and
//! close commit them first ([`Deferred::settle`]); any other store (another
//! process, or another instance in this one) replays the record log past what
//! `index.db` holds before each read and when it takes the write lock. `index.db` stays a rebuildable
//! cache: a crash loses only waiting rows, which the next catch-up restores from
//! the packs and the record log. Rows leave the waiting set only after their
//! transaction committed, so a lookup that misses them finds them in `index.db`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ArchiveError;
use crate::caches::Caches;
use crate::index::{Table, encode_located, entry_key, source_key};
use crate::log::LogRecord;
use crate::pack::Location;

use super::indexer::{Doc, Indexer, Job};
use super::timing::{Stage, Timings};
use super::{Staged, lock};

/// Rows are committed once this many records wait (or the oldest waited the delay).
const DEFER_RECORDS: usize = 1_000;

/// The rows of consecutive group commits, not yet in `index.db`.
#[derive(Default)]
struct Rows {
    /// Lookup rows and metadata of their frames.
    staged: Staged,
    /// Their records, in log order.
    records: Vec<([u8; 32], LogRecord)>,
    /// Entry keys the records hold.
    entries: HashSet<Vec<u8>>,
    /// Source key → address, as the records map them.
    sources: HashMap<Vec<u8>, [u8; 32]>,
    /// Documents of the new entries, indexed once the rows are committed.
    docs: Vec<Doc>,
    /// Record-log range covered: the first commit's start, the last one's end.
    log: Option<(u64, u64)>,
    /// Pack position before which every frame is covered.
    pack: u64,
    /// When the first of them arrived.
    since: Option<Instant>,
}

impl Rows {
    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.staged.is_empty() && self.log.is_none()
    }

    fn located(&self, table: Table, key: &[u8; 32]) -> Option<(Location, u64)> {
        self.staged.located.get(&(table, *key)).copied()
    }
}

#[derive(Default)]
struct State {
    /// Rows arriving.
    open: Rows,
    /// Rows of the transaction in progress (or of a failed one, retried first).
    flushing: Option<Arc<Rows>>,
    closing: bool,
    /// The thread could not start: commits happen on the write path.
    inline: bool,
}

impl State {
    /// The waiting rows, newest first.
    fn layers(&self) -> impl Iterator<Item = &Rows> {
        std::iter::once(&self.open).chain(self.flushing.as_deref())
    }
}

struct Shared {
    /// How long rows may wait.
    delay: Duration,
    state: Mutex<State>,
    wake: Condvar,
    /// Held for the whole of one commit of waiting rows (one at a time, in order).
    one: Mutex<()>,
    caches: Arc<RwLock<Arc<Caches>>>,
    indexer: Arc<Indexer>,
    timings: Arc<Timings>,
}

/// What one group commit hands over.
pub(super) struct Handover {
    /// Lookup rows and metadata of the frames before `pack`.
    pub(super) staged: Staged,
    /// The records appended, in log order.
    pub(super) records: Vec<([u8; 32], LogRecord)>,
    /// Documents of the new entries.
    pub(super) docs: Vec<Doc>,
    /// Record-log range appended.
    pub(super) log: (u64, u64),
    /// Pack position the frames reach.
    pub(super) pack: u64,
}

/// The waiting rows and the thread committing them.
pub(super) struct Deferred {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Deferred {
    pub(super) fn new(
        delay: Duration,
        caches: Arc<RwLock<Arc<Caches>>>,
        indexer: Arc<Indexer>,
        timings: Arc<Timings>,
    ) -> Self {
        Deferred {
            shared: Arc::new(Shared {
                delay,
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                one: Mutex::new(()),
                caches,
                indexer,
                timings,
            }),
            thread: Mutex::new(None),
        }
    }

    /// Takes a group commit's rows (called with the write path's staged rows
    /// locked, so a lookup finds them in one place or the other).
    pub(super) fn absorb(&self, handover: Handover) {
        self.start();
        let inline = {
            let mut state = lock(&self.shared.state);
            let open = &mut state.open;
            let first = open.since.is_none();
            open.since.get_or_insert_with(Instant::now);
            open.staged.located.extend(handover.staged.located);
            open.staged.metadata.extend(handover.staged.metadata);
            for (address, record) in &handover.records {
                open.entries
                    .insert(entry_key(&record.user, &record.folder, address));
                if let Some(source) = &record.source {
                    open.sources
                        .insert(source_key(&record.user, source), *address);
                }
            }
            open.records.extend(handover.records);
            open.docs.extend(handover.docs);
            let (from, to) = handover.log;
            open.log = Some(match open.log {
                Some((start, _)) => (start, to),
                None => (from, to),
            });
            open.pack = open.pack.max(handover.pack);
            if first || open.records.len() >= DEFER_RECORDS {
                self.shared.wake.notify_all();
            }
            state.inline
        };
        if inline && let Err(e) = self.shared.flush() {
            tracing::error!(error = %e, "listing index update failed; the next catch-up replays it");
        }
    }

    /// Starts the thread on the first handover.
    fn start(&self) {
        let mut thread = lock(&self.thread);
        if thread.is_some() || lock(&self.shared.state).inline {
            return;
        }
        let shared = self.shared.clone();
        match std::thread::Builder::new()
            .name("archive-listing".into())
            .spawn(move || shared.run())
        {
            Ok(handle) => *thread = Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the listing index thread; group commits write it themselves");
                lock(&self.shared.state).inline = true;
            }
        }
    }

    /// Commits every row waiting now to `index.db` (waiting for a commit in progress).
    pub(super) fn settle(&self) -> Result<(), ArchiveError> {
        self.shared.flush()
    }

    /// Forgets the waiting rows (a rebuild replays the packs and the log they came
    /// from), after one last attempt to commit them.
    pub(super) fn discard(&self) {
        if let Err(e) = self.settle() {
            tracing::warn!(error = %e, "waiting listing rows left to the rebuild");
        }
        let _one = lock(&self.shared.one);
        let mut state = lock(&self.shared.state);
        state.open = Rows::default();
        state.flushing = None;
    }

    /// Stops the thread (the caller settles what is left).
    pub(super) fn close(&self) {
        let Some(handle) = lock(&self.thread).take() else {
            return;
        };
        lock(&self.shared.state).closing = true;
        self.shared.wake.notify_all();
        if handle.join().is_err() {
            tracing::error!("the listing index thread panicked; the next catch-up replays the log");
        }
    }

    /// (record-log offset, pack position) `index.db` reaches once the waiting rows
    /// are committed; `None` when none wait.
    pub(super) fn reach(&self) -> Option<(u64, u64)> {
        let state = lock(&self.shared.state);
        let rows = state.layers().find(|rows| !rows.is_empty())?;
        Some((rows.log.map_or(0, |(_, to)| to), rows.pack))
    }

    /// A waiting chunk or manifest location.
    pub(super) fn located(&self, table: Table, key: &[u8; 32]) -> Option<(Location, u64)> {
        lock(&self.shared.state)
            .layers()
            .find_map(|rows| rows.located(table, key))
    }

    /// Whether a waiting record holds the entry `entry_key`.
    pub(super) fn has_entry(&self, entry_key: &[u8]) -> bool {
        lock(&self.shared.state)
            .layers()
            .any(|rows| rows.entries.contains(entry_key))
    }

    /// The address a waiting record maps `source_key` to (the newest).
    pub(super) fn source(&self, source_key: &[u8]) -> Option<[u8; 32]> {
        lock(&self.shared.state)
            .layers()
            .find_map(|rows| rows.sources.get(source_key).copied())
    }
}

impl Shared {
    fn run(&self) {
        loop {
            {
                let mut state = lock(&self.state);
                loop {
                    if state.closing {
                        return;
                    }
                    let since = state.open.since;
                    if state.open.records.len() >= DEFER_RECORDS
                        || since.is_some_and(|t| t.elapsed() >= self.delay)
                    {
                        break;
                    }
                    state = match since {
                        Some(t) => {
                            let left = self.delay.saturating_sub(t.elapsed());
                            self.wake
                                .wait_timeout(state, left)
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .0
                        }
                        None => self
                            .wake
                            .wait(state)
                            .unwrap_or_else(std::sync::PoisonError::into_inner),
                    };
                }
            }
            if let Err(e) = self.flush() {
                tracing::error!(error = %e, "listing index update failed; it is retried, and the next catch-up replays the record log");
                // Retried after another wait.
                lock(&self.state)
                    .open
                    .since
                    .get_or_insert_with(Instant::now);
            }
        }
    }

    fn caches(&self) -> Arc<Caches> {
        self.caches
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Commits a failed transaction's rows, then the rows waiting now, each in one
    /// transaction; the rows stay visible until their transaction committed.
    fn flush(&self) -> Result<(), ArchiveError> {
        let _one = lock(&self.one);
        // At most the retried rows and then the open ones.
        for _ in 0..2 {
            let (rows, docs) = {
                let mut state = lock(&self.state);
                match &state.flushing {
                    Some(rows) => (rows.clone(), Vec::new()),
                    None if state.open.is_empty() => return Ok(()),
                    None => {
                        let docs = std::mem::take(&mut state.open.docs);
                        let rows = Arc::new(std::mem::take(&mut state.open));
                        state.flushing = Some(rows.clone());
                        (rows, docs)
                    }
                }
            };
            let caches = self.caches();
            let contiguous = self
                .timings
                .time(Stage::IndexCommit, || commit_rows(&caches, &rows))?;
            lock(&self.state).flushing = None;
            if let (true, Some((from, to))) = (contiguous, rows.log)
                && !docs.is_empty()
            {
                self.indexer.submit(Job {
                    caches,
                    from,
                    to,
                    docs,
                });
            }
        }
        Ok(())
    }
}

/// One transaction: the lookup rows, metadata and records, and the positions they
/// reach; returns whether `index.db` now holds everything before them.
fn commit_rows(caches: &Caches, rows: &Rows) -> Result<bool, ArchiveError> {
    caches.index.transaction(|db| {
        for ((table, key), (loc, n)) in &rows.staged.located {
            db.insert(*table, key, &encode_located(*loc, *n))?;
        }
        for (address, meta) in &rows.staged.metadata {
            db.put_metadata(address, meta)?;
        }
        for (address, record) in &rows.records {
            db.put_entry(
                address,
                &record.user,
                &record.folder,
                record.received,
                record.archived,
                record.source.as_ref(),
            )?;
        }
        let contiguous = match rows.log {
            Some((from, to)) if to > from => db.advance_log(from, to)?,
            _ => true,
        };
        if !contiguous {
            tracing::warn!(
                "the listing index has a gap before these records; the next catch-up replays it"
            );
        }
        db.advance_packs(0, rows.pack)?;
        Ok(contiguous)
    })
}
