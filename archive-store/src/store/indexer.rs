//! The background indexer of a writable store: one thread, started by the first
//! group commit, that brings the search index up to date off the write path.
//!
//! Each deferred `index.db` commit (`deferred`) of group commits' records hands
//! over the documents of their new entries with the metadata the writer parsed
//! (no re-reading), the log range it covers and each record's end offset. The thread indexes them in passes
//! of [`BATCH_DOCS`] documents or [`BATCH_AGE`]: a pass takes tantivy's writer lock,
//! adds from the log (metadata from `index.db`) whatever lies between the offset
//! the index covers and the documents in hand (other processes' records, a commit
//! that was not handed over), adds the documents in hand past that offset, and
//! commits with the offset reached as the payload, so a crash at any point leaves
//! a search index that the next catch-up completes from the record log.
//! A pass that cannot finish (tantivy's lock stays busy, metadata missing, an error)
//! leaves the work to the store's own catch-up (`sync_search`), which every search,
//! flush and close runs after waiting for the thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::ArchiveError;
use crate::caches::{Caches, catch_panic};
use crate::crypto::{Codec, to_hex};
use crate::log::decode_record;
use crate::metadata::MessageMetadata;
use crate::pack::{ScanEvent, scan_file};
use crate::search::{SearchDoc, SearchIndex, SearchWriter};

use super::lock;

// Figures (`m365-archiver demo`, 20 users x 200 messages, 239.6 MiB stored): 8.5 s
// wall before the shared archive; 10.6 s with the index.db write path and the
// search-index passes inside writes (one pass of every document at close, metadata
// re-read from index.db). On a shared 2-core machine at load 13-21 the earlier
// version took 157 s wall for 25.3 s of CPU (20.8 user + 4.5 sys): compare CPU
// time there, not wall time. Writes now cost one index.db transaction per group
// commit and no indexing; the passes below run beside them.
/// A pass runs once this many documents wait...
const BATCH_DOCS: usize = 2_000;
/// ...or the oldest waiting one is this old (each pass costs one tantivy commit,
/// and holds tantivy's writer lock for a fraction of a second).
const BATCH_AGE: Duration = Duration::from_secs(2);
/// Body text kept in memory for waiting documents; past it new documents carry no
/// metadata and the pass reads theirs from `index.db`.
const MEMORY_BUDGET: usize = 64 << 20;

/// One new archive entry to index.
pub(super) struct Doc {
    pub(super) user: String,
    pub(super) folder: String,
    pub(super) address: [u8; 32],
    pub(super) received: Option<DateTime<Utc>>,
    /// Its metadata as the writer parsed it (`None`: read it from `index.db`).
    pub(super) meta: Option<Arc<MessageMetadata>>,
    /// End offset of its record in the log.
    pub(super) end: u64,
}

/// The documents of one group commit, which covers the log range `from..to`.
pub(super) struct Job {
    pub(super) caches: Arc<Caches>,
    pub(super) from: u64,
    pub(super) to: u64,
    pub(super) docs: Vec<Doc>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    docs: usize,
    bytes: usize,
    since: Option<Instant>,
    /// Flushes asked for and passes completed (a flush waits for a pass that
    /// started after it asked).
    requested: u64,
    completed: u64,
    closing: bool,
    /// A pass could not finish: the store's catch-up must run.
    behind: bool,
    /// Passes run, documents handed over and time spent in passes (logged on close).
    passes: u64,
    handed: u64,
    busy: Duration,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    done: Condvar,
    codec: Arc<Codec>,
    log_file: PathBuf,
}

/// The indexer thread and its queue.
pub(super) struct Indexer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Indexer {
    pub(super) fn new(codec: Arc<Codec>, log_file: PathBuf) -> Self {
        Indexer {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                wake: Condvar::new(),
                done: Condvar::new(),
                codec,
                log_file,
            }),
            thread: Mutex::new(None),
        }
    }

    /// Hands over a group commit's documents (never waits for a pass).
    pub(super) fn submit(&self, mut job: Job) {
        let mut thread = lock(&self.thread);
        if thread.is_none() {
            let shared = self.shared.clone();
            match std::thread::Builder::new()
                .name("archive-indexer".into())
                .spawn(move || shared.run())
            {
                Ok(handle) => *thread = Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the search indexer; searches catch up themselves");
                    lock(&self.shared.queue).behind = true;
                    return;
                }
            }
        }
        drop(thread);
        let mut queue = lock(&self.shared.queue);
        for doc in &mut job.docs {
            let size = doc.meta.as_ref().map_or(0, |m| m.body_text.len());
            if queue.bytes + size > MEMORY_BUDGET {
                doc.meta = None;
            } else {
                queue.bytes += size;
            }
        }
        queue.docs += job.docs.len();
        queue.handed += job.docs.len() as u64;
        let first = queue.since.is_none();
        queue.since.get_or_insert_with(Instant::now);
        queue.jobs.push(job);
        if first || queue.docs >= BATCH_DOCS {
            self.shared.wake.notify_all();
        }
    }

    /// Waits until everything handed over before this call was indexed (or left
    /// to the store's catch-up); returns whether that catch-up must run.
    pub(super) fn flush(&self) -> bool {
        if lock(&self.thread).is_none() {
            return lock(&self.shared.queue).behind;
        }
        let mut queue = lock(&self.shared.queue);
        queue.requested += 1;
        let ticket = queue.requested;
        self.shared.wake.notify_all();
        while queue.completed < ticket && !queue.closing {
            queue = self
                .shared
                .done
                .wait(queue)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        std::mem::take(&mut queue.behind)
    }

    /// Whether a pass could not finish since last asked (never waits).
    pub(super) fn take_behind(&self) -> bool {
        std::mem::take(&mut lock(&self.shared.queue).behind)
    }

    /// Indexes what waits and stops the thread; returns whether the store's
    /// catch-up must run.
    pub(super) fn close(&self) -> bool {
        let Some(handle) = lock(&self.thread).take() else {
            return lock(&self.shared.queue).behind;
        };
        lock(&self.shared.queue).closing = true;
        self.shared.wake.notify_all();
        if handle.join().is_err() {
            tracing::error!(
                "the search indexer panicked; the search index catches up from the record log"
            );
            return true;
        }
        let queue = lock(&self.shared.queue);
        tracing::debug!(
            passes = queue.passes,
            documents = queue.handed,
            ms = queue.busy.as_millis() as u64,
            "search indexer closed"
        );
        queue.behind
    }
}

impl Shared {
    fn run(&self) {
        loop {
            let (jobs, ticket) = {
                let mut queue = lock(&self.queue);
                loop {
                    let flush = queue.requested > queue.completed;
                    let due = queue.docs >= BATCH_DOCS
                        || queue.since.is_some_and(|t| t.elapsed() >= BATCH_AGE);
                    if flush || due || queue.closing {
                        break;
                    }
                    queue = match queue.since {
                        Some(t) => {
                            let left = BATCH_AGE.saturating_sub(t.elapsed());
                            self.wake
                                .wait_timeout(queue, left)
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .0
                        }
                        None => self
                            .wake
                            .wait(queue)
                            .unwrap_or_else(std::sync::PoisonError::into_inner),
                    };
                }
                if queue.jobs.is_empty() && queue.closing {
                    queue.completed = queue.requested;
                    self.done.notify_all();
                    return;
                }
                queue.docs = 0;
                queue.bytes = 0;
                queue.since = None;
                (std::mem::take(&mut queue.jobs), queue.requested)
            };
            let started = Instant::now();
            let finished = self.index(jobs);
            let mut queue = lock(&self.queue);
            queue.passes += 1;
            queue.busy += started.elapsed();
            queue.completed = ticket;
            if !finished {
                queue.behind = true;
            }
            self.done.notify_all();
        }
    }

    /// Indexes `jobs` (in log order), one pass per index generation; false when a
    /// pass could not finish.
    fn index(&self, jobs: Vec<Job>) -> bool {
        let mut finished = true;
        let mut jobs = jobs.into_iter().peekable();
        while let Some(first) = jobs.next() {
            let mut run = vec![first];
            while let Some(next) = jobs.next_if(|j| Arc::ptr_eq(&j.caches, &run[0].caches)) {
                run.push(next);
            }
            // A panic inside tantivy (seen on damaged files) is an error here, so
            // the thread lives on and every flush is answered.
            match catch_panic(|| self.pass(&run)) {
                Ok(true) => {}
                Ok(false) => finished = false,
                Err(e) => {
                    tracing::warn!(error = %e, "search indexing pass failed; the next search or write catches up");
                    finished = false;
                }
            }
        }
        finished
    }

    fn pass(&self, jobs: &[Job]) -> Result<bool, ArchiveError> {
        let Some(caches) = jobs.first().map(|j| j.caches.clone()) else {
            return Ok(true);
        };
        let search = &caches.search;
        let Some(mut writer) = search.writer(SearchIndex::default_wait())? else {
            return Ok(false);
        };
        let mut reached = search.committed_offset()?;
        let mut from_index = |address: &[u8; 32]| caches.index.metadata(address, true);
        for job in jobs {
            if job.to <= reached {
                continue;
            }
            if job.from > reached {
                if !add_logged(
                    &self.codec,
                    &self.log_file,
                    reached,
                    job.from,
                    &mut writer,
                    &mut from_index,
                )? {
                    return Ok(false);
                }
                reached = job.from;
            }
            for doc in job.docs.iter().filter(|d| d.end > reached) {
                let stored;
                let meta = match &doc.meta {
                    Some(meta) => meta.as_ref(),
                    None => match from_index(&doc.address)? {
                        Some(meta) => {
                            stored = meta;
                            &stored
                        }
                        None => return Ok(false),
                    },
                };
                writer.add(&SearchDoc {
                    user: &doc.user,
                    folder: &doc.folder,
                    id: &to_hex(&doc.address),
                    meta,
                    received: doc.received,
                })?;
            }
            reached = job.to;
        }
        writer.commit(reached)?;
        Ok(true)
    }
}

/// Metadata of a message, `None` when unknown.
pub(super) type MetaOf<'a> =
    dyn FnMut(&[u8; 32]) -> Result<Option<MessageMetadata>, ArchiveError> + 'a;

/// Adds the documents of the new entries the record log holds in `from..to`, with
/// the metadata `meta_of` gives; false (nothing more added) when it gives none.
pub(super) fn add_logged(
    codec: &Codec,
    log_file: &Path,
    from: u64,
    to: u64,
    writer: &mut SearchWriter<'_>,
    meta_of: &mut MetaOf<'_>,
) -> Result<bool, ArchiveError> {
    let mut complete = true;
    scan_file(log_file, 1, from, Some(to), |event| {
        if complete
            && let ScanEvent::Frame { payload, .. } = event
            && let Ok((address, record)) = decode_record(codec, payload)
            && record.new_entry
        {
            match meta_of(&address)? {
                Some(meta) => writer.add(&SearchDoc {
                    user: &record.user,
                    folder: &record.folder,
                    id: &to_hex(&address),
                    meta: &meta,
                    received: record.received,
                })?,
                None => complete = false,
            }
        }
        Ok(())
    })?;
    Ok(complete)
}
