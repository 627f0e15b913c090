//! The record log: which user's archive holds which message, in which folder,
//! from which source, received when. Append-only frames in `records.log`, written
//! only after the pack data they refer to is fsynced, and fsynced before
//! `archive` returns. Listings and the search index are rebuilt from it.

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

/// One archive entry (or a new source for an existing entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogRecord {
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
    /// When it was archived.
    #[serde(rename = "t")]
    pub(crate) archived: DateTime<Utc>,
    /// The record created a new (user, folder, message) entry.
    #[serde(rename = "n")]
    pub(crate) new_entry: bool,
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
