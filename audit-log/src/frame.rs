//! The record format: one line per event,
//!
//! ```text
//! LLLLLLLL CCCCCCCC HHHH…(64)…HHHH {"seq":1,"time":…,"prev":"…"}\n
//! ```
//!
//! `L` is the length of the JSON in bytes and `C` the CRC-32 of the hash and the
//! JSON (both 8 lowercase hex digits), `H` the BLAKE3 of the JSON (64 lowercase hex
//! digits): the hash the next event's `prev` holds. JSON never holds a raw newline,
//! so a record ends at the first `\n`; bytes after the last `\n` are a write that
//! never finished. Only lowercase hex is accepted, so no byte of a record can change
//! without the decoder noticing.

use crate::event::AuditEvent;

/// Bytes before the JSON: length, checksum, hash and three spaces.
const PREFIX: usize = 8 + 1 + 8 + 1 + 64 + 1;

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The header (length, checksum, hash) is malformed.
    Header(&'static str),
    /// The length field disagrees with the record.
    Length {
        /// What the header says.
        recorded: usize,
        /// What the record holds.
        actual: usize,
    },
    /// The checksum does not match: the record was damaged.
    Checksum,
    /// The JSON does not hash to the recorded hash: the event was altered.
    Hash,
    /// The JSON is not an event.
    Json(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Header(what) => write!(f, "malformed record header ({what})"),
            FrameError::Length { recorded, actual } => write!(
                f,
                "record length {actual} differs from its recorded length {recorded}"
            ),
            FrameError::Checksum => write!(f, "bad checksum: the record was damaged"),
            FrameError::Hash => write!(
                f,
                "the event does not match its recorded hash: it was altered"
            ),
            FrameError::Json(why) => write!(f, "the record is not an event: {why}"),
        }
    }
}

/// A decoded record: the event, its hash and the JSON it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The event.
    pub event: AuditEvent,
    /// BLAKE3 (hex) of `json`.
    pub hash: String,
}

/// The hash of an event's JSON (BLAKE3, lowercase hex).
pub(crate) fn hash_json(json: &[u8]) -> String {
    blake3::hash(json).to_hex().to_string()
}

fn checksum(hash: &[u8], json: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(hash);
    crc.update(json);
    crc.finalize()
}

/// The record line of `event` (with its trailing newline) and its hash.
pub(crate) fn encode(event: &AuditEvent) -> Result<(Vec<u8>, String), serde_json::Error> {
    let json = serde_json::to_vec(event)?;
    let hash = hash_json(&json);
    let crc = checksum(hash.as_bytes(), &json);
    let mut line = Vec::with_capacity(PREFIX + json.len() + 1);
    line.extend_from_slice(format!("{:08x} {crc:08x} {hash} ", json.len()).as_bytes());
    line.extend_from_slice(&json);
    line.push(b'\n');
    Ok((line, hash))
}

fn lower_hex(field: &[u8]) -> bool {
    field
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn hex_u32(field: &[u8]) -> Option<u32> {
    if field.len() != 8 || !lower_hex(field) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(field).ok()?, 16).ok()
}

/// Decodes one record line (without its newline). Never panics, whatever the bytes.
pub(crate) fn decode(line: &[u8]) -> Result<Record, FrameError> {
    if line.len() < PREFIX {
        return Err(FrameError::Header("too short"));
    }
    let (header, json) = line.split_at(PREFIX);
    if header[8] != b' ' || header[17] != b' ' || header[82] != b' ' {
        return Err(FrameError::Header("separators"));
    }
    let recorded = hex_u32(&header[0..8]).ok_or(FrameError::Header("length"))? as usize;
    let crc = hex_u32(&header[9..17]).ok_or(FrameError::Header("checksum"))?;
    let hash = &header[18..82];
    if !lower_hex(hash) {
        return Err(FrameError::Header("hash"));
    }
    if recorded != json.len() {
        return Err(FrameError::Length {
            recorded,
            actual: json.len(),
        });
    }
    if checksum(hash, json) != crc {
        return Err(FrameError::Checksum);
    }
    let actual = hash_json(json);
    if actual.as_bytes() != hash {
        return Err(FrameError::Hash);
    }
    let event: AuditEvent =
        serde_json::from_slice(json).map_err(|e| FrameError::Json(e.to_string()))?;
    Ok(Record {
        event,
        hash: actual,
    })
}

/// The JSON part of a record line (for export), if the line is long enough to have one.
pub(crate) fn json_of(line: &[u8]) -> Option<&[u8]> {
    line.get(PREFIX..)
}

/// Splits `bytes` into complete record lines (without their newlines), with the
/// offset of each; returns also where the complete lines end (bytes after it are
/// an unfinished write).
pub(crate) fn lines(bytes: &[u8]) -> (Vec<(u64, &[u8])>, usize) {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(pos) = bytes[start..].iter().position(|b| *b == b'\n') {
        out.push((start as u64, &bytes[start..start + pos]));
        start += pos + 1;
    }
    (out, start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuditEntry;
    use crate::event::{Action, Head, Outcome, Target};
    use proptest::prelude::*;

    fn sample() -> AuditEvent {
        let entry = AuditEntry::new(
            "account `bob`",
            Action::ContentShow,
            Target::messages(["ab12"]),
        )
        .with_outcome(Outcome::denied("not his"))
        .detail("why", "line\nbreak \"quoted\"");
        Head::genesis().next(entry, chrono::Utc::now())
    }

    #[test]
    fn a_record_round_trips_and_is_one_line() {
        let event = sample();
        let (line, hash) = encode(&event).unwrap();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let record = decode(&line[..line.len() - 1]).unwrap();
        assert_eq!(record.event, event);
        assert_eq!(record.hash, hash);
    }

    #[test]
    fn uppercase_hex_is_refused() {
        let (mut line, _) = encode(&sample()).unwrap();
        line.pop();
        let pos = line[..PREFIX]
            .iter()
            .position(|b| (b'a'..=b'f').contains(b))
            .unwrap();
        line[pos] = line[pos].to_ascii_uppercase();
        assert!(decode(&line).is_err());
    }

    #[test]
    fn lines_stop_at_an_unfinished_write() {
        let (ls, end) = lines(b"a\nbc\nde");
        assert_eq!(ls, vec![(0, &b"a"[..]), (2, &b"bc"[..])]);
        assert_eq!(end, 5);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes);
            let _ = lines(&bytes);
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_header_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..200),
            cut in 0usize..200,
        ) {
            let (line, _) = encode(&sample()).unwrap();
            let mut bytes = line[..PREFIX.min(line.len())].to_vec();
            bytes.extend_from_slice(&tail[..cut.min(tail.len())]);
            prop_assert!(decode(&bytes).is_err());
        }

        #[test]
        fn any_changed_byte_is_detected(pos in 0usize..10_000, xor in 1u8..=255) {
            let (line, _) = encode(&sample()).unwrap();
            let mut bytes = line[..line.len() - 1].to_vec();
            let pos = pos % bytes.len();
            bytes[pos] ^= xor;
            prop_assert!(decode(&bytes).is_err(), "byte {} changed undetected", pos);
        }

        #[test]
        fn any_entry_round_trips(
            actor in ".{0,40}",
            user in proptest::option::of("[a-z]{1,10}"),
            ids in proptest::collection::vec("[0-9a-f]{8}", 0..4),
            detail in ".{0,40}",
        ) {
            let entry = AuditEntry::new(actor, Action::ContentExport, Target {
                user,
                messages: ids,
                object: None,
                query: None,
            })
            .detail("d", detail);
            let event = Head::genesis().next(entry, chrono::Utc::now());
            let (line, hash) = encode(&event).unwrap();
            let record = decode(&line[..line.len() - 1]).unwrap();
            prop_assert_eq!(record.event, event);
            prop_assert_eq!(record.hash, hash);
        }
    }
}
