//! The record log: which user's archive holds which message, in which folder,
//! from which source, received when; and the removals and restriction marks of
//! entries. Append-only frames in `records.log`, written only after the pack data
//! they refer to is fsynced, and fsynced before `archive` (or `expunge`, or a
//! restriction change) returns. Listings and the search index are rebuilt from it.
//!
//! Order semantics, applied the same way live and on every replay: records are
//! applied in log order; a tombstone removes the entry it names (with its
//! restriction mark and the source mappings no other live entry of that user and
//! message lists), a tombstone of an absent entry does nothing, and an entry
//! record after a tombstone makes the entry live again (new archive time, no
//! restriction). `restrict` marks a live entry (nothing when absent), `unrestrict`
//! lifts the mark.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::Codec;
use crate::pack::kind;
use crate::{ArchiveError, SourceRef};

/// File name of the record log.
pub(crate) const LOG_FILE: &str = "records.log";

/// Path of the record log (the number is ignored: there is one log).
pub(crate) fn log_path(dir: &Path, _n: u32) -> PathBuf {
    dir.join(LOG_FILE)
}

/// What a record does. Records written before removals existed carry no kind
/// and are entry records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RecordKind {
    /// An archive entry (or a new source for an existing entry).
    #[default]
    Entry,
    /// The entry is expunged.
    Tombstone,
    /// The entry is restricted (hidden from all but privileged readers).
    Restrict,
    /// The restriction mark is lifted.
    Unrestrict,
}

impl RecordKind {
    fn is_entry(&self) -> bool {
        *self == RecordKind::Entry
    }
}

/// One record: an archive entry (or a new source for an existing entry), or a
/// removal or restriction change of one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogRecord {
    /// What the record does (absent: an entry record).
    #[serde(rename = "x", default, skip_serializing_if = "RecordKind::is_entry")]
    pub(crate) kind: RecordKind,
    /// Archive owner.
    #[serde(rename = "u")]
    pub(crate) user: String,
    /// Folder path.
    #[serde(rename = "f")]
    pub(crate) folder: String,
    /// Origin.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<SourceRef>,
    /// Received time.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub(crate) received: Option<DateTime<Utc>>,
    /// When it was archived (for other kinds: when the record was written).
    #[serde(rename = "t")]
    pub(crate) archived: DateTime<Utc>,
    /// The record created a new (user, folder, message) entry (false for other kinds).
    #[serde(rename = "n")]
    pub(crate) new_entry: bool,
}

impl LogRecord {
    /// A tombstone or restriction record for the entry (`user`, `folder`).
    pub(crate) fn mark(kind: RecordKind, user: &str, folder: &str, at: DateTime<Utc>) -> Self {
        LogRecord {
            kind,
            user: user.to_string(),
            folder: folder.to_string(),
            source: None,
            received: None,
            archived: at,
            new_entry: false,
        }
    }
}

/// Payload of a record frame: `address(32) sealed(json)`.
pub(crate) fn encode_record(
    codec: &Codec,
    address: &[u8; 32],
    record: &LogRecord,
) -> Result<Vec<u8>, ArchiveError> {
    let json = serde_json::to_vec(record).map_err(|e| ArchiveError::Index {
        index: "record log",
        detail: e.to_string(),
    })?;
    let body = codec.seal(kind::RECORD, address, json)?;
    let mut out = Vec::with_capacity(32 + body.len());
    out.extend_from_slice(address);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Inverse of [`encode_record`]; `Err(detail)` when undecodable.
pub(crate) fn decode_record(
    codec: &Codec,
    payload: &[u8],
) -> Result<([u8; 32], LogRecord), String> {
    if payload.len() < 32 {
        return Err("record too short".into());
    }
    let mut address = [0u8; 32];
    address.copy_from_slice(&payload[..32]);
    let json = codec.open(kind::RECORD, &address, &payload[32..])?;
    let record = serde_json::from_slice(&json).map_err(|e| format!("undecodable record: {e}"))?;
    Ok((address, record))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_without_a_kind_are_entries_and_entries_are_written_without_one() {
        let old = br#"{"u":"alice","f":"Inbox","t":"2025-07-01T09:30:00Z","n":true}"#;
        let record: LogRecord = serde_json::from_slice(old).unwrap();
        assert_eq!(record.kind, RecordKind::Entry);
        let json = serde_json::to_string(&record).unwrap();
        assert!(!json.contains("\"x\""), "{json}");
        let tomb = LogRecord::mark(RecordKind::Tombstone, "alice", "Inbox", record.archived);
        let json = serde_json::to_string(&tomb).unwrap();
        assert!(json.contains(r#""x":"tombstone""#), "{json}");
        assert_eq!(serde_json::from_str::<LogRecord>(&json).unwrap(), tomb);
    }
}
