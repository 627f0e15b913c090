//! The audit log: an append-only, hash-chained, fsynced record of every access to
//! mail and every change of settings, users, credentials, holds and roles.
//!
//! Each event ([`AuditEvent`]) carries a sequence number, the time, who ([`actor`]),
//! what ([`Action`]), on what ([`Target`]), the outcome ([`Outcome`]) and the BLAKE3
//! hash of the record before it. [`FileAuditLog`] keeps them in one file of
//! checksummed, length-prefixed JSON lines (`LLLLLLLL CCCCCCCC HASH {json}`: the
//! JSON's length, a CRC-32 and the BLAKE3 of the JSON, in lowercase hex), fsyncs every
//! append before it returns, cuts a torn tail left by a crash when it next appends,
//! and lets any number of processes append at once (an exclusive file lock is held
//! for each append). [`MemoryAuditLog`] is the same chain in memory, for tests.
//!
//! # What the chain proves, and what it cannot
//! [`AuditSink::verify`] walks every record and names the first one that is
//! damaged, altered, missing, duplicated, reordered or dated before its
//! predecessor. That catches accidental damage and any edit made without
//! recomputing the chain. It **cannot** by itself catch someone with write access
//! who rewrites the whole chain from some point on, or cuts events off its end: a
//! chain is only as trustworthy as a copy of its head kept elsewhere. So
//! - `verify` reports the [`Head`] (last sequence number and hash): an auditor notes
//!   it, or a job copies it off the host; a later log that does not contain that
//!   exact event at that position was rewritten or truncated;
//! - the log writes its head to an anchor file beside it every
//!   [`FileOptions::anchor_every`] events (and on [`FileAuditLog::anchor`]); `verify`
//!   checks the chain against it, which catches a truncation of the log alone,
//!   though not of the log and the anchor together.
//!
//! - every [`FileOptions::checkpoint_every`] events (and on
//!   [`FileAuditLog::checkpoint`]) the log signs its head with an Ed25519 key kept
//!   beside it (`checkpoint.key`, `0600`) and appends the [`Checkpoint`] to
//!   `checkpoints`; `verify` checks every signature and that each signed event is
//!   still in the log as signed, and `export` carries the checkpoints. A copy of
//!   the public key kept elsewhere makes a wholesale rewrite detectable even with
//!   the key file at hand, and checkpoints kept elsewhere catch a truncation.
//!
//! An event may be recorded for an action that then failed (the record is written
//! first), never the other way round: a caller hands over mail content only after
//! its event is durable.
//!
//! [`actor`]: AuditEntry::actor
//!
//! ```
//! use audit_log::{Action, AuditEntry, AuditSink, FileAuditLog, FileOptions, Target};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let log = FileAuditLog::open(dir.path(), FileOptions::default())?;
//! let entry = AuditEntry::new("account `bob`", Action::ContentShow, Target::messages(["ab12"]));
//! let event = log.append(entry)?; // durable now
//! assert_eq!(event.seq, 1);
//! let report = log.verify()?;
//! assert!(report.ok);
//! assert_eq!(report.head.seq, 1);
//! # Ok(())
//! # }
//! ```

mod checkpoint;
mod error;
mod event;
mod file;
mod frame;
mod memory;
mod verify;

use std::io::Write;

use chrono::{DateTime, Utc};

pub use checkpoint::{BadCheckpoint, Checkpoint};
pub use error::AuditError;
pub use event::{Action, AuditEntry, AuditEvent, GENESIS, Head, Outcome, Target};
pub use file::{FileAuditLog, FileOptions};
pub use memory::MemoryAuditLog;
pub use verify::{BadEvent, BreakKind, VerifyReport};

/// Which events [`AuditSink::list`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only events recorded at or after this time; the first `limit` of them.
    /// Without it, the last `limit` events of the log.
    pub since: Option<DateTime<Utc>>,
    /// At most this many (`None`: all).
    pub limit: Option<usize>,
}

/// Where audit events go. Implementations are safe to share between threads.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Records `entry` as the next event and returns it; when this returns `Ok` the
    /// event is durable. A failed append records nothing and leaves the log valid.
    fn append(&self, entry: AuditEntry) -> Result<AuditEvent, AuditError>;

    /// Events in the order recorded (see [`ListQuery`]). Records that cannot be read
    /// are left out (`verify` names them).
    fn list(&self, query: &ListQuery) -> Result<Vec<AuditEvent>, AuditError>;

    /// Walks the whole chain and names the first broken event.
    fn verify(&self) -> Result<VerifyReport, AuditError>;

    /// Writes every record's JSON, one per line, exactly as stored (so the BLAKE3
    /// of a line is the `prev` of the next one), then the log's signed checkpoints,
    /// one `{"checkpoint": {…}}` line each (see [`Checkpoint`]), for keeping
    /// elsewhere; returns how many events were written.
    fn export(&self, out: &mut dyn Write) -> Result<u64, AuditError>;
}

/// Events of the log `bytes` that `query` selects.
pub(crate) fn list_bytes(bytes: &[u8], query: &ListQuery) -> Vec<AuditEvent> {
    let (lines, _) = frame::lines(bytes);
    let events = lines
        .into_iter()
        .filter_map(|(_, line)| frame::decode(line).ok().map(|r| r.event));
    match query.since {
        Some(since) => events
            .filter(|e| e.time >= since)
            .take(query.limit.unwrap_or(usize::MAX))
            .collect(),
        None => {
            let all: Vec<AuditEvent> = events.collect();
            let skip = query.limit.map_or(0, |l| all.len().saturating_sub(l));
            all.into_iter().skip(skip).collect()
        }
    }
}

/// Writes the JSON of each record of `bytes` to `out`, one per line.
pub(crate) fn export_bytes(bytes: &[u8], out: &mut dyn Write) -> std::io::Result<u64> {
    let (lines, _) = frame::lines(bytes);
    let mut written = 0;
    for (_, line) in lines {
        if let Some(json) = frame::json_of(line) {
            out.write_all(json)?;
            out.write_all(b"\n")?;
            written += 1;
        }
    }
    out.flush()?;
    Ok(written)
}
