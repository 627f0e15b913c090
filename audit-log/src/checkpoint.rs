//! Signed checkpoints: now and then (every [`FileOptions::checkpoint_every`] events,
//! and on [`FileAuditLog::checkpoint`]) the log signs its head with an Ed25519 key and
//! appends the result to `checkpoints`, one JSON line each:
//!
//! ```text
//! {"seq":120,"hash":"…(64 hex)…","time":"2026-03-01T09:00:00.123Z","public_key":"…(64 hex)…","signature":"…(128 hex)…"}
//! ```
//!
//! The signature covers [`Checkpoint::signed_bytes`]: a fixed title, the sequence
//! number, the head's hash and the time, one per line. The key is generated on first
//! use and kept in `checkpoint.key` (the 32-byte secret seed in hex, mode `0600`); a
//! key file others may read or write is refused, naming the file, since a key others
//! can read proves nothing. `audit export` appends the checkpoints after the events
//! (`{"checkpoint": …}` lines) so they can be kept elsewhere: with the public key
//! noted off the host, a rewritten log and re-signed checkpoints cannot match them.
//!
//! `verify` checks each checkpoint in order: it must decode, carry the log's public
//! key and a valid signature, not go back in sequence, and name an event the log
//! holds with exactly that hash. The first that fails is named.
//!
//! [`FileOptions::checkpoint_every`]: crate::FileOptions::checkpoint_every
//! [`FileAuditLog::checkpoint`]: crate::FileAuditLog::checkpoint

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use archive_store::io::StoreIo;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::event::{GENESIS, Head};
use crate::frame;

/// File name of the signing key.
pub(crate) const KEY_FILE: &str = "checkpoint.key";
/// File name of the checkpoints.
pub(crate) const CHECKPOINTS_FILE: &str = "checkpoints";
/// How much of the end of `checkpoints` is read to find the last one.
const TAIL: u64 = 4096;

/// A signed statement that the log's event `seq` had hash `hash` at `time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Sequence number of the event signed (0: the empty log).
    pub seq: u64,
    /// Hash (BLAKE3, hex) of that event's record.
    pub hash: String,
    /// When the checkpoint was made.
    pub time: DateTime<Utc>,
    /// The Ed25519 public key that signed it (hex).
    pub public_key: String,
    /// The Ed25519 signature of [`Checkpoint::signed_bytes`] (hex).
    pub signature: String,
}

/// The first checkpoint that fails `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadCheckpoint {
    /// Its position in `checkpoints` (1 for the first line).
    pub index: u64,
    /// The event it names, when it can be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// The checkpoint key, kept out of `Debug`.
pub(crate) struct Key(SigningKey);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Key")
            .field(&hex(self.0.verifying_key().as_bytes()))
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Checkpoint {
    /// What the signature covers.
    pub fn signed_bytes(seq: u64, hash: &str, time: DateTime<Utc>) -> Vec<u8> {
        format!(
            "m365-archiver audit checkpoint v1\n{seq}\n{hash}\n{}\n",
            time.to_rfc3339_opts(SecondsFormat::Nanos, true)
        )
        .into_bytes()
    }

    fn sign(key: &Key, head: &Head, time: DateTime<Utc>) -> Self {
        let signature = key.0.sign(&Self::signed_bytes(head.seq, &head.hash, time));
        Checkpoint {
            seq: head.seq,
            hash: head.hash.clone(),
            time,
            public_key: hex(key.0.verifying_key().as_bytes()),
            signature: hex(&signature.to_bytes()),
        }
    }

    /// Whether `public_key` (hex) signed this checkpoint as it reads now; the reason
    /// when not.
    pub fn check_signature(&self, public_key: &str) -> Result<(), String> {
        if self.public_key != public_key {
            return Err(format!(
                "signed with another key ({}) than the log's ({public_key})",
                self.public_key
            ));
        }
        let key = unhex::<32>(public_key)
            .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
            .ok_or_else(|| format!("the public key {public_key} is not an Ed25519 key"))?;
        let signature = unhex::<64>(&self.signature)
            .map(|bytes| Signature::from_bytes(&bytes))
            .ok_or("the signature is not 64 bytes of hex")?;
        key.verify(
            &Self::signed_bytes(self.seq, &self.hash, self.time),
            &signature,
        )
        .map_err(|_| "the signature does not match: the checkpoint was altered".to_string())
    }
}

fn key_error(path: &Path, reason: impl Into<String>) -> AuditError {
    AuditError::BadKey {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads the key in `dir` (`None`: there is none yet), refusing a file others may use.
pub(crate) fn read_key(dir: &Path) -> Result<Option<Key>, AuditError> {
    let path = dir.join(KEY_FILE);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::io("cannot open the checkpoint key", &path, e)),
    };
    let mode = file
        .metadata()
        .map_err(|e| AuditError::io("cannot read the mode of", &path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(AuditError::KeyExposed {
            path,
            mode: mode & 0o777,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| AuditError::io("cannot read the checkpoint key", &path, e))?;
    let seed = unhex::<32>(&text)
        .ok_or_else(|| key_error(&path, "it does not hold 32 bytes of hex (an Ed25519 seed)"))?;
    Ok(Some(Key(SigningKey::from_bytes(&seed))))
}

/// The key in `dir`, generated (and written `0600`, atomically) when there is none.
pub(crate) fn key(dir: &Path, io: &dyn StoreIo) -> Result<Key, AuditError> {
    if let Some(key) = read_key(dir)? {
        return Ok(key);
    }
    let path = dir.join(KEY_FILE);
    let failed = |e| AuditError::io("cannot write the checkpoint key", &path, e);
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let tmp = tempfile::Builder::new()
        .prefix(".checkpoint.key")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(failed)?;
    io.write(
        tmp.as_file(),
        tmp.path(),
        format!("{}\n", hex(&seed)).as_bytes(),
    )
    .and_then(|()| io.sync(tmp.as_file(), tmp.path()))
    .map_err(failed)?;
    match tmp.persist_noclobber(&path) {
        Ok(_) => {
            let dir_file = File::open(dir).map_err(failed)?;
            io.sync(&dir_file, dir).map_err(failed)?;
            Ok(Key(SigningKey::from_bytes(&seed)))
        }
        // Another process made one first: use it.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key(dir)?.ok_or_else(|| key_error(&path, "it vanished while it was being created"))
        }
        Err(e) => Err(failed(e.error)),
    }
}

/// The sequence number of the last complete checkpoint in `dir` (0 when none).
pub(crate) fn last_seq(dir: &Path) -> u64 {
    let Ok(mut file) = File::open(dir.join(CHECKPOINTS_FILE)) else {
        return 0;
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return 0;
    };
    let start = len.saturating_sub(TAIL);
    let mut tail = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut tail).is_err() {
        return 0;
    }
    let (lines, _) = frame::lines(&tail);
    lines
        .iter()
        .rev()
        .find_map(|(_, line)| serde_json::from_slice::<Checkpoint>(line).ok())
        .map_or(0, |c| c.seq)
}

/// Signs `head` with `key` and appends the checkpoint to `dir`'s `checkpoints`
/// (fsynced), cutting off an unfinished line a crash left first. Called with the
/// log's exclusive lock held.
pub(crate) fn append(
    dir: &Path,
    key: &Key,
    head: &Head,
    io: &dyn StoreIo,
) -> Result<Checkpoint, AuditError> {
    let path = dir.join(CHECKPOINTS_FILE);
    let failed = |e| AuditError::io("cannot append a checkpoint to", &path, e);
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .map_err(failed)?;
    let len = file.metadata().map_err(failed)?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1)).map_err(failed)?;
        file.read_exact(&mut last).map_err(failed)?;
        if last[0] != b'\n' {
            // An unfinished line (a crash): cut it, keeping every complete one.
            let mut bytes = Vec::new();
            file.seek(SeekFrom::Start(0)).map_err(failed)?;
            file.read_to_end(&mut bytes).map_err(failed)?;
            let keep = bytes
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p as u64 + 1);
            file.set_len(keep)
                .and_then(|()| file.sync_data())
                .map_err(failed)?;
        }
    }
    let checkpoint = Checkpoint::sign(key, head, Utc::now());
    let mut line = serde_json::to_vec(&checkpoint).map_err(AuditError::Encode)?;
    line.push(b'\n');
    io.write(&file, &path, &line)
        .and_then(|()| io.sync(&file, &path))
        .map_err(failed)?;
    Ok(checkpoint)
}

/// Every checkpoint line of `dir` (a line that does not decode is the reason why),
/// and the bytes of an unfinished last line.
pub(crate) fn read_all(dir: &Path) -> Result<(Vec<Result<Checkpoint, String>>, u64), AuditError> {
    let path = dir.join(CHECKPOINTS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(AuditError::io("cannot read the checkpoints", &path, e)),
    };
    let (lines, end) = frame::lines(&bytes);
    let parsed = lines
        .into_iter()
        .map(|(_, line)| {
            serde_json::from_slice::<Checkpoint>(line).map_err(|e| format!("not a checkpoint: {e}"))
        })
        .collect();
    Ok((parsed, (bytes.len() - end) as u64))
}

/// What verify found about the checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Findings {
    pub count: u64,
    pub first_bad: Option<BadCheckpoint>,
}

/// Checks `checkpoints` against the log `log` (its bytes) and the log's public key
/// (`None`: no key file).
pub(crate) fn check(
    checkpoints: &[Result<Checkpoint, String>],
    log: &[u8],
    public_key: Option<&str>,
    key_path: &Path,
) -> Findings {
    let wanted: BTreeSet<u64> = checkpoints
        .iter()
        .filter_map(|c| c.as_ref().ok().map(|c| c.seq))
        .collect();
    let mut hashes: HashMap<u64, String> = HashMap::new();
    let mut last_seq = 0;
    let (lines, _) = frame::lines(log);
    for (_, line) in lines {
        if let Ok(record) = frame::decode(line) {
            last_seq = last_seq.max(record.event.seq);
            if wanted.contains(&record.event.seq) {
                hashes.entry(record.event.seq).or_insert(record.hash);
            }
        }
    }
    let mut findings = Findings {
        count: checkpoints.len() as u64,
        first_bad: None,
    };
    let mut previous = 0;
    for (i, checkpoint) in checkpoints.iter().enumerate() {
        let index = i as u64 + 1;
        let bad = |seq, reason: String| {
            Some(BadCheckpoint {
                index,
                seq,
                reason: format!("checkpoint {index}: {reason}"),
            })
        };
        let problem = match (checkpoint, public_key) {
            (Err(why), _) => bad(None, why.clone()),
            (Ok(c), None) => bad(
                Some(c.seq),
                format!(
                    "the checkpoint key {} is missing, so no signature can be checked",
                    key_path.display()
                ),
            ),
            (Ok(c), Some(key)) => {
                let expected = if c.seq == 0 {
                    Some(GENESIS.to_string())
                } else {
                    hashes.get(&c.seq).cloned()
                };
                if let Err(why) = c.check_signature(key) {
                    bad(Some(c.seq), why)
                } else if c.seq < previous {
                    bad(
                        Some(c.seq),
                        format!(
                            "it names event {} after a checkpoint of event {previous}: out of order",
                            c.seq
                        ),
                    )
                } else if c.seq > last_seq {
                    bad(
                        Some(c.seq),
                        format!(
                            "it names event {} but the log ends at event {last_seq}: events were cut off",
                            c.seq
                        ),
                    )
                } else if expected.as_deref() != Some(c.hash.as_str()) {
                    bad(
                        Some(c.seq),
                        format!(
                            "event {} of the log differs from the one it signed (hash {}): the log was rewritten",
                            c.seq, c.hash
                        ),
                    )
                } else {
                    previous = c.seq;
                    None
                }
            }
        };
        if problem.is_some() {
            findings.first_bad = problem;
            break;
        }
    }
    findings
}

/// The public key (hex) of a key.
pub(crate) fn public_hex(key: &Key) -> String {
    hex(key.0.verifying_key().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_every_field() {
        let key = Key(SigningKey::from_bytes(&[7u8; 32]));
        let head = Head {
            seq: 5,
            hash: "ab".repeat(32),
            time: None,
        };
        let checkpoint = Checkpoint::sign(&key, &head, Utc::now());
        let public = public_hex(&key);
        assert_eq!(checkpoint.check_signature(&public), Ok(()));
        let mut changed = checkpoint.clone();
        changed.seq = 6;
        assert!(changed.check_signature(&public).is_err());
        let mut changed = checkpoint.clone();
        changed.hash = "cd".repeat(32);
        assert!(changed.check_signature(&public).is_err());
        let mut changed = checkpoint.clone();
        changed.time += chrono::Duration::nanoseconds(1);
        assert!(changed.check_signature(&public).is_err());
        let other = public_hex(&Key(SigningKey::from_bytes(&[8u8; 32])));
        let error = checkpoint.check_signature(&other).unwrap_err();
        assert!(error.contains("another key"), "{error}");
    }

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        assert_eq!(unhex::<2>("0aff"), Some([0x0a, 0xff]));
        assert_eq!(unhex::<2>("0af"), None);
        assert_eq!(unhex::<2>("0afg"), None);
        assert_eq!(unhex::<2>("+1ff"), None);
    }
}
