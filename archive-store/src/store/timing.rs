//! Wall-clock time spent in each stage of writing, summed over the life of a
//! store and logged at debug level when it closes (`archive_store=debug`): where
//! an ingest's seconds go, without a profiler.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A stage of writing.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stage {
    /// Hashing the whole message (its address).
    Hash,
    /// Taking the write lock and catching up with other processes.
    Lock,
    /// Chunking, compressing and appending new chunks and the manifest.
    Content,
    /// Parsing the message's metadata and text.
    Metadata,
    /// Waiting in the group commit (for a leader, or leading one).
    Commit,
    /// The leader's fsync of the pack.
    PackSync,
    /// The leader's append and fsync of the record log.
    LogSync,
    /// The leader's `index.db` transaction.
    IndexCommit,
    /// Bringing the search index up to date (documents added and committed).
    Search,
}

const STAGES: [Stage; 9] = [
    Stage::Hash,
    Stage::Lock,
    Stage::Content,
    Stage::Metadata,
    Stage::Commit,
    Stage::PackSync,
    Stage::LogSync,
    Stage::IndexCommit,
    Stage::Search,
];

/// Summed nanoseconds and counts per stage.
#[derive(Default)]
pub(super) struct Timings {
    nanos: [AtomicU64; STAGES.len()],
    counts: [AtomicU64; STAGES.len()],
}

impl Timings {
    /// Runs `f`, adding its wall-clock time to `stage`.
    pub(super) fn time<T>(&self, stage: Stage, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos[stage as usize].fetch_add(nanos, Ordering::Relaxed);
        self.counts[stage as usize].fetch_add(1, Ordering::Relaxed);
        out
    }

    /// Logs the totals (debug level), when anything was timed.
    pub(super) fn log(&self) {
        if self.counts.iter().all(|c| c.load(Ordering::Relaxed) == 0) {
            return;
        }
        let summary: Vec<String> = STAGES
            .iter()
            .map(|&stage| {
                let ms = self.nanos[stage as usize].load(Ordering::Relaxed) as f64 / 1e6;
                let n = self.counts[stage as usize].load(Ordering::Relaxed);
                format!("{stage:?} {ms:.0} ms/{n}")
            })
            .collect();
        tracing::debug!(stages = %summary.join(", "), "archive write timings");
    }
}
