//! The audit log on disk: `audit.log` (the records: checksummed, length-prefixed JSON lines),
//! `audit.head` (the anchor: the head as of some event, replaced atomically), and the
//! signed checkpoints (`checkpoints`, `checkpoint.key`: see the `checkpoint` module).
//!
//! An append takes an exclusive lock on the log file (so the command line and the
//! daemon may append at the same time), finds the head (from memory when the file
//! has not changed since this process's last append, else from its last record),
//! writes the record and fsyncs it. Before the head is read from the file, bytes
//! after the last complete record (a write a crash interrupted) are cut off; a last
//! record that is complete but damaged, or a log shorter than its anchor, stops
//! appends with [`AuditError::Damaged`], since the chain cannot go on from it
//! truthfully. A failed write or fsync cuts the file back to where it was.
//! Readers take the shared lock only to learn the length of the log; they never
//! wait for more than one append and never write.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use archive_store::io::{RealIo, StoreIo};

use crate::checkpoint::{self, Checkpoint};
use crate::event::{AuditEntry, AuditEvent, Head};
use crate::verify::{VerifyReport, verify_bytes};
use crate::{AuditError, AuditSink, ListQuery, export_bytes, frame, list_bytes};

/// File name of the records.
const LOG_FILE: &str = "audit.log";
/// File name of the anchor.
const ANCHOR_FILE: &str = "audit.head";
/// How much of the log's end is read at first to find its last record.
const TAIL_BLOCK: u64 = 64 * 1024;

/// How a [`FileAuditLog`] writes.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// Write the anchor (`audit.head`) every this many events (0: only on
    /// [`FileAuditLog::anchor`]).
    pub anchor_every: u64,
    /// Sign a checkpoint (`checkpoints`) every this many events (0: only on
    /// [`FileAuditLog::checkpoint`]).
    pub checkpoint_every: u64,
    /// The writes and fsyncs of the log, its anchor, checkpoints and key (fault
    /// injection in tests).
    pub io: Arc<dyn StoreIo>,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            anchor_every: 100,
            checkpoint_every: 100,
            io: Arc::new(RealIo),
        }
    }
}

/// The append-only audit log in a directory.
#[derive(Debug)]
pub struct FileAuditLog {
    dir: PathBuf,
    log: PathBuf,
    anchor: PathBuf,
    options: FileOptions,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The log, open for reading and appending.
    file: File,
    /// The log's length and head after this process's last append.
    known: Option<(u64, Head)>,
    /// The anchor's sequence number as last seen.
    anchored: u64,
    /// The last checkpoint's sequence number as last seen (`None`: not read yet).
    checkpointed: Option<u64>,
}

impl FileAuditLog {
    /// Opens (creating `dir`, `0700`, and the log, `0600`, when missing) the log in
    /// `dir`. Damage is not an error here: `verify` reports it, `append` refuses it.
    pub fn open(dir: &Path, options: FileOptions) -> Result<Self, AuditError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| AuditError::io("cannot create the audit directory", dir, e))?;
        let log = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&log)
            .map_err(|e| AuditError::io("cannot open the audit log", &log, e))?;
        let this = FileAuditLog {
            dir: dir.to_path_buf(),
            anchor: dir.join(ANCHOR_FILE),
            log,
            options,
            state: Mutex::new(State {
                file,
                known: None,
                anchored: 0,
                checkpointed: None,
            }),
        };
        Ok(this)
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.log
    }

    /// The anchor file.
    pub fn anchor_path(&self) -> &Path {
        &self.anchor
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` holding the exclusive lock on the log.
    fn exclusive<T>(
        &self,
        f: impl FnOnce(&Self, &mut State) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        let mut state = self.lock();
        state
            .file
            .lock()
            .map_err(|e| AuditError::io("cannot lock the audit log", &self.log, e))?;
        let result = f(self, &mut state);
        // Closing the file would release the lock too; an unlock error changes nothing.
        let _ = state.file.unlock();
        result
    }

    /// Writes the current head to the anchor file now and returns it.
    pub fn anchor(&self) -> Result<Head, AuditError> {
        self.exclusive(|this, state| {
            let (_, head) = this.current_head(state)?;
            this.write_anchor(&head)?;
            state.anchored = head.seq;
            Ok(head)
        })
    }

    /// Signs the current head now and appends the checkpoint to `checkpoints`
    /// (generating the key on first use); returns it.
    pub fn checkpoint(&self) -> Result<Checkpoint, AuditError> {
        self.exclusive(|this, state| {
            let (_, head) = this.current_head(state)?;
            this.write_checkpoint(state, &head)
        })
    }

    /// The checkpoints written so far (lines that cannot be read are left out:
    /// `verify` names them).
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>, AuditError> {
        Ok(checkpoint::read_all(&self.dir)?
            .0
            .into_iter()
            .filter_map(Result::ok)
            .collect())
    }

    /// The public key (Ed25519, hex) checkpoints are signed with (`None`: no key yet).
    pub fn public_key(&self) -> Result<Option<String>, AuditError> {
        Ok(checkpoint::read_key(&self.dir)?.map(|k| checkpoint::public_hex(&k)))
    }

    /// The checkpoint key file.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(checkpoint::KEY_FILE)
    }

    /// The checkpoints file.
    pub fn checkpoints_path(&self) -> PathBuf {
        self.dir.join(checkpoint::CHECKPOINTS_FILE)
    }

    fn write_checkpoint(&self, state: &mut State, head: &Head) -> Result<Checkpoint, AuditError> {
        let io = self.options.io.as_ref();
        // Read each time, so a key file whose mode changed is refused at once.
        let key = checkpoint::key(&self.dir, io)?;
        let checkpoint = checkpoint::append(&self.dir, &key, head, io)?;
        state.checkpointed = Some(checkpoint.seq);
        Ok(checkpoint)
    }

    /// Signs a checkpoint when `head` is [`FileOptions::checkpoint_every`] events past
    /// the last one (looking again at the file first: another process may have).
    fn checkpoint_if_due(&self, state: &mut State, head: &Head) {
        let every = self.options.checkpoint_every;
        if every == 0 {
            return;
        }
        let last = *state
            .checkpointed
            .get_or_insert_with(|| checkpoint::last_seq(&self.dir));
        if head.seq < last + every {
            return;
        }
        let last = checkpoint::last_seq(&self.dir);
        state.checkpointed = Some(last);
        if head.seq >= last + every {
            // The event is durable whatever happens here; a checkpoint that cannot be
            // written is tried again at the next append (and `checkpoint` reports why).
            let _ = self.write_checkpoint(state, head);
        }
    }

    /// The anchor, if one was written.
    pub fn read_anchor(&self) -> Result<Option<Head>, AuditError> {
        let text = match std::fs::read(&self.anchor) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AuditError::io("cannot read the anchor", &self.anchor, e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| AuditError::Damaged {
                path: self.anchor.clone(),
                reason: format!("the anchor is not a head: {e}"),
            })
    }

    fn write_anchor(&self, head: &Head) -> Result<(), AuditError> {
        let io = self.options.io.as_ref();
        let failed = |e| AuditError::io("cannot write the anchor", &self.anchor, e);
        let mut text = serde_json::to_vec(head).map_err(AuditError::Encode)?;
        text.push(b'\n');
        let tmp = tempfile::Builder::new()
            .prefix(".audit.head")
            .tempfile_in(&self.dir)
            .map_err(failed)?;
        io.write(tmp.as_file(), tmp.path(), &text).map_err(failed)?;
        io.sync(tmp.as_file(), tmp.path()).map_err(failed)?;
        tmp.persist(&self.anchor).map_err(|e| failed(e.error))?;
        let dir = File::open(&self.dir).map_err(failed)?;
        io.sync(&dir, &self.dir).map_err(failed)
    }

    /// The log's length and head, from memory when nothing changed since this
    /// process's last append, else from the file (cutting an unfinished write off
    /// and checking the anchor). Called with the exclusive lock held.
    fn current_head(&self, state: &mut State) -> Result<(u64, Head), AuditError> {
        let len = state
            .file
            .metadata()
            .map_err(|e| AuditError::io("cannot read the length of", &self.log, e))?
            .len();
        if let Some((known, head)) = &state.known
            && *known == len
        {
            return Ok((len, head.clone()));
        }
        let (len, head) = self.read_head(&mut state.file, len)?;
        if let Some(anchor) = self.read_anchor()? {
            state.anchored = anchor.seq;
            let rewritten = head.seq == anchor.seq && head.hash != anchor.hash;
            if head.seq < anchor.seq || rewritten {
                return Err(AuditError::Damaged {
                    path: self.log.clone(),
                    reason: format!(
                        "it ends at event {} but its anchor names event {} with hash {}",
                        head.seq, anchor.seq, anchor.hash
                    ),
                });
            }
        }
        state.known = Some((len, head.clone()));
        Ok((len, head))
    }

    /// Reads the last record of the log (`len` bytes long), cutting off any bytes
    /// after it. Returns the new length and the head.
    fn read_head(&self, file: &mut File, len: u64) -> Result<(u64, Head), AuditError> {
        let read_failed = |e| AuditError::io("cannot read the audit log", &self.log, e);
        let mut block = TAIL_BLOCK.min(len);
        loop {
            let start = len - block;
            let mut buf = vec![0; block as usize];
            file.seek(SeekFrom::Start(start)).map_err(read_failed)?;
            file.read_exact(&mut buf).map_err(read_failed)?;
            let Some(last_nl) = buf.iter().rposition(|b| *b == b'\n') else {
                if start == 0 {
                    // Not one complete record: all of it is an unfinished write.
                    self.cut(file, len, 0)?;
                    return Ok((0, Head::genesis()));
                }
                block = (block * 2).min(len);
                continue;
            };
            let line_start = match buf[..last_nl].iter().rposition(|b| *b == b'\n') {
                Some(p) => p + 1,
                None if start == 0 => 0,
                None => {
                    block = (block * 2).min(len);
                    continue;
                }
            };
            let end = start + last_nl as u64 + 1;
            if end < len {
                self.cut(file, len, end)?;
            }
            let record =
                frame::decode(&buf[line_start..last_nl]).map_err(|e| AuditError::Damaged {
                    path: self.log.clone(),
                    reason: format!(
                        "its last record (at byte {}) cannot be read: {e}",
                        start + line_start as u64
                    ),
                })?;
            let head = Head {
                seq: record.event.seq,
                hash: record.hash,
                time: Some(record.event.time),
            };
            return Ok((end, head));
        }
    }

    /// Cuts the log (now `len` bytes) back to `to` bytes, durably.
    fn cut(&self, file: &File, len: u64, to: u64) -> Result<(), AuditError> {
        debug_assert!(to <= len);
        file.set_len(to)
            .and_then(|()| file.sync_data())
            .map_err(|e| AuditError::io("cannot cut an unfinished write off", &self.log, e))
    }

    fn append_locked(
        &self,
        state: &mut State,
        entry: AuditEntry,
    ) -> Result<AuditEvent, AuditError> {
        let (len, head) = self.current_head(state)?;
        let event = head.next(entry, chrono::Utc::now());
        let (line, hash) = frame::encode(&event).map_err(AuditError::Encode)?;
        let io = self.options.io.as_ref();
        let written = io
            .write(&state.file, &self.log, &line)
            .map_err(|e| AuditError::io("cannot append to", &self.log, e))
            .and_then(|()| {
                io.sync(&state.file, &self.log)
                    .map_err(|e| AuditError::io("cannot sync", &self.log, e))
            });
        if let Err(e) = written {
            // Whatever reached the file is not acknowledged: take it back. If even
            // that fails, the next append reads the file again (and cuts a partial
            // record, or continues from a complete one).
            state.known = None;
            let _ = state
                .file
                .set_len(len)
                .and_then(|()| state.file.sync_data());
            return Err(e);
        }
        let new_head = Head {
            seq: event.seq,
            hash,
            time: Some(event.time),
        };
        state.known = Some((len + line.len() as u64, new_head.clone()));
        let every = self.options.anchor_every;
        if every > 0 && new_head.seq >= state.anchored + every {
            // The event is durable whatever happens to the anchor; a failed anchor
            // write is retried at the next append.
            if let Ok(anchor) = self.read_anchor() {
                state.anchored = anchor.map_or(0, |a| a.seq);
            }
            if new_head.seq >= state.anchored + every && self.write_anchor(&new_head).is_ok() {
                state.anchored = new_head.seq;
            }
        }
        self.checkpoint_if_due(state, &new_head);
        Ok(event)
    }

    /// The bytes of the log as of now (complete appends only, plus any unfinished
    /// write a crash left).
    fn snapshot(&self) -> Result<Vec<u8>, AuditError> {
        let failed = |e| AuditError::io("cannot read the audit log", &self.log, e);
        let file = File::open(&self.log).map_err(failed)?;
        file.lock_shared().map_err(failed)?;
        let len = file.metadata().map_err(failed);
        let _ = file.unlock();
        let mut bytes = Vec::new();
        (&file)
            .take(len?.len())
            .read_to_end(&mut bytes)
            .map_err(failed)?;
        Ok(bytes)
    }
}

impl AuditSink for FileAuditLog {
    fn append(&self, entry: AuditEntry) -> Result<AuditEvent, AuditError> {
        self.exclusive(|this, state| this.append_locked(state, entry))
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<AuditEvent>, AuditError> {
        Ok(list_bytes(&self.snapshot()?, query))
    }

    fn verify(&self) -> Result<VerifyReport, AuditError> {
        let bytes = self.snapshot()?;
        let anchor = self.read_anchor()?;
        let public_key = self.public_key()?;
        let (checkpoints, _) = checkpoint::read_all(&self.dir)?;
        let mut report = verify_bytes(&bytes, anchor);
        let findings = checkpoint::check(
            &checkpoints,
            &bytes,
            public_key.as_deref(),
            &self.key_path(),
        );
        report.checkpoints = findings.count;
        report.ok = report.ok && findings.first_bad.is_none();
        report.first_bad_checkpoint = findings.first_bad;
        report.public_key = public_key;
        Ok(report)
    }

    fn export(&self, out: &mut dyn Write) -> Result<u64, AuditError> {
        let bytes = self.snapshot()?;
        let failed = |e| AuditError::io("cannot write the export of", &self.log, e);
        let events = export_bytes(&bytes, out).map_err(failed)?;
        for checkpoint in self.checkpoints()? {
            let line = serde_json::to_vec(&serde_json::json!({ "checkpoint": checkpoint }))
                .map_err(AuditError::Encode)?;
            out.write_all(&line)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(failed)?;
        }
        out.flush().map_err(failed)?;
        Ok(events)
    }
}
