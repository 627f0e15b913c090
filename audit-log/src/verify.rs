//! Walking the chain: each record must decode (length, checksum, hash), carry the
//! next sequence number, link to the hash of the record before it and not go back
//! in time; the head must match the anchor, if one was written. The first record
//! that breaks a rule is named with the reason.

use serde::Serialize;

use crate::checkpoint::BadCheckpoint;
use crate::event::{AuditEvent, Head};
use crate::frame::{self, FrameError};

/// Why the chain breaks at an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakKind {
    /// The record's framing or checksum is damaged.
    Damaged,
    /// The record's content does not match its hash: altered.
    Altered,
    /// The record is not a valid event.
    Undecodable,
    /// An event is missing (the sequence skips).
    Missing,
    /// An event appears again, or out of order.
    Reordered,
    /// The record does not link to the hash of the one before: it or its predecessor
    /// was altered, or an event was removed or inserted.
    BrokenLink,
    /// The event is dated before the one preceding it.
    TimeReversed,
    /// The log ends before (or differs at) the event its anchor names.
    Truncated,
}

/// The first event at which the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadEvent {
    /// The sequence number the event has (or should have had, for a record that
    /// cannot be read or is missing).
    pub seq: u64,
    /// What is wrong, for people.
    pub reason: String,
    /// What is wrong, for programs.
    pub kind: BreakKind,
    /// Byte offset of the record in the log (`None`: past its end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records in the log.
    pub events: u64,
    /// Whether the whole chain holds.
    pub ok: bool,
    /// The first broken event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad: Option<BadEvent>,
    /// The last event of the chain as read (note it down or anchor it elsewhere:
    /// a later rewrite of the log cannot reproduce it).
    pub head: Head,
    /// The anchor the log's head was checked against, if there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Head>,
    /// Bytes after the last complete record: a write that never finished (not an
    /// event; the next append cuts them).
    #[serde(skip_serializing_if = "is_zero")]
    pub unfinished_bytes: u64,
    /// Signed checkpoints checked (see [`Checkpoint`](crate::Checkpoint)).
    pub checkpoints: u64,
    /// The first checkpoint that fails (its signature, or the event it names); the
    /// chain is then not `ok` either.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_checkpoint: Option<BadCheckpoint>,
    /// The public key (Ed25519, hex) the checkpoints are checked with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Walks records one at a time, remembering the first break.
#[derive(Debug)]
pub(crate) struct Walker {
    head: Head,
    records: u64,
    first_bad: Option<BadEvent>,
}

impl Walker {
    pub(crate) fn new() -> Self {
        Walker {
            head: Head::genesis(),
            records: 0,
            first_bad: None,
        }
    }

    fn bad(&mut self, seq: u64, kind: BreakKind, reason: String, offset: Option<u64>) {
        if self.first_bad.is_none() {
            self.first_bad = Some(BadEvent {
                seq,
                reason,
                kind,
                offset,
            });
        }
    }

    /// Checks the record `line` found at `offset`; returns its event when it decodes.
    pub(crate) fn step(&mut self, offset: u64, line: &[u8]) -> Option<AuditEvent> {
        self.records += 1;
        let expected = self.head.seq + 1;
        let record = match frame::decode(line) {
            Ok(record) => record,
            Err(e) => {
                let kind = match e {
                    FrameError::Hash => BreakKind::Altered,
                    FrameError::Json(_) => BreakKind::Undecodable,
                    _ => BreakKind::Damaged,
                };
                self.bad(
                    expected,
                    kind,
                    format!("event {expected}: {e}"),
                    Some(offset),
                );
                // Keep counting from here: the next record is compared with the one
                // this should have been.
                self.head = Head {
                    seq: expected,
                    hash: String::new(),
                    time: self.head.time,
                };
                return None;
            }
        };
        let event = &record.event;
        if event.seq != expected {
            let (kind, reason) = if event.seq > expected {
                let missing = if event.seq == expected + 1 {
                    format!("event {expected} is missing")
                } else {
                    format!("events {expected} to {} are missing", event.seq - 1)
                };
                (
                    BreakKind::Missing,
                    format!("{missing} (the next record is event {})", event.seq),
                )
            } else {
                (
                    BreakKind::Reordered,
                    format!(
                        "event {expected} expected, found event {} again (duplicated or reordered)",
                        event.seq
                    ),
                )
            };
            self.bad(expected, kind, reason, Some(offset));
        } else if !self.head.hash.is_empty() && event.prev != self.head.hash {
            let reason = if expected == 1 {
                "event 1 does not start the chain (events before it were removed)".to_string()
            } else {
                format!(
                    "event {expected} does not link to event {}: one of them was altered, or \
                     events were removed or inserted between them",
                    self.head.seq
                )
            };
            self.bad(expected, BreakKind::BrokenLink, reason, Some(offset));
        } else if self.head.time.is_some_and(|t| event.time < t) {
            self.bad(
                expected,
                BreakKind::TimeReversed,
                format!(
                    "event {expected} is dated {} before event {} ({})",
                    event.time.to_rfc3339(),
                    self.head.seq,
                    self.head.time.map(|t| t.to_rfc3339()).unwrap_or_default()
                ),
                Some(offset),
            );
        }
        self.head = Head {
            seq: event.seq.max(expected),
            hash: record.hash.clone(),
            time: Some(event.time),
        };
        Some(record.event)
    }

    /// The report, checking the chain against `anchor`; `unfinished` bytes followed the
    /// last record.
    pub(crate) fn finish(mut self, anchor: Option<Head>, unfinished: u64) -> VerifyReport {
        if let Some(anchor) = &anchor
            && self.head.seq < anchor.seq
        {
            self.bad(
                self.head.seq + 1,
                BreakKind::Truncated,
                format!(
                    "the log ends at event {} but its anchor names event {}: events were cut off",
                    self.head.seq, anchor.seq
                ),
                None,
            );
        }
        VerifyReport {
            events: self.records,
            ok: self.first_bad.is_none(),
            first_bad: self.first_bad,
            head: self.head,
            anchor,
            unfinished_bytes: unfinished,
            checkpoints: 0,
            first_bad_checkpoint: None,
            public_key: None,
        }
    }

    /// Also compares the event at the anchor's position with the anchor (called by
    /// the caller for the record whose seq the anchor names).
    pub(crate) fn check_anchor(&mut self, anchor: &Head, offset: u64) {
        if self.head.seq == anchor.seq && self.head.hash != anchor.hash {
            self.bad(
                anchor.seq,
                BreakKind::Truncated,
                format!(
                    "event {} differs from the anchored one (hash {} expected): the log was rewritten",
                    anchor.seq, anchor.hash
                ),
                Some(offset),
            );
        }
    }
}

/// Walks all of `bytes` (a whole log) against `anchor`.
pub(crate) fn verify_bytes(bytes: &[u8], anchor: Option<Head>) -> VerifyReport {
    let (lines, end) = frame::lines(bytes);
    let mut walker = Walker::new();
    for (offset, line) in lines {
        walker.step(offset, line);
        if let Some(anchor) = &anchor {
            walker.check_anchor(anchor, offset);
        }
    }
    walker.finish(anchor, (bytes.len() - end) as u64)
}
