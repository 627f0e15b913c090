//! Where each folder's enumeration stopped: per profile, mailbox and folder, the
//! delta cursor of the last completed round and the messages waiting for their
//! time (too young to archive under `older_than_days`, or archived and waiting for
//! the deletion age), and the items the service could not render, with their attempts.
//! The archive mailbox of a mailbox has a file of its own (keyed by its `MBX:` id). One small JSON file per profile and mailbox, replaced
//! atomically (temporary file, fsync, rename, directory fsync): a source of
//! truth, never a cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use m365_mailbox::DeltaCursor;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::fsutil;
use crate::profile::valid_name;

/// A message remembered between runs because its time has not come yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingMessage {
    /// When it was received.
    pub received: Option<DateTime<Utc>>,
    /// Whether it was read when last seen.
    pub is_read: bool,
    /// Already archived (waiting for deletion) rather than waiting to be archived.
    pub archived: bool,
}

/// An item the mail service could not render as MIME, remembered so the next runs
/// try it again (the folder's cursor has moved past it), a bounded number of times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedItem {
    /// Its subject, when known.
    #[serde(default)]
    pub subject: Option<String>,
    /// When it was received.
    #[serde(default)]
    pub received: Option<DateTime<Utc>>,
    /// Whether it was read when last seen.
    #[serde(default)]
    pub is_read: bool,
    /// Runs that tried it.
    pub attempts: u32,
    /// The attempts ran out: listed in reports, not tried again.
    #[serde(default)]
    pub given_up: bool,
    /// The last failure.
    #[serde(default)]
    pub reason: String,
}

/// The state of one folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderCheckpoint {
    /// Folder path when last seen (for people reading the file).
    #[serde(default)]
    pub path: String,
    /// Cursor after the last round whose messages were all durably archived.
    #[serde(default)]
    pub cursor: Option<DeltaCursor>,
    /// Messages waiting for their time, by message id.
    #[serde(default)]
    pub waiting: BTreeMap<String, WaitingMessage>,
    /// Items the service could not render, by message id (absent in checkpoints of
    /// earlier versions: read as none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<String, FailedItem>,
    /// When this entry was last saved.
    #[serde(default)]
    pub updated: Option<DateTime<Utc>>,
}

/// The state of one mailbox within one profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxCheckpoint {
    /// The mailbox address.
    pub mailbox: String,
    /// Fingerprint of the settings the cursors were made under (archive owner,
    /// filter, deletion rules); when it changes the folders are enumerated again.
    #[serde(default)]
    pub settings: String,
    /// Per folder id.
    #[serde(default)]
    pub folders: BTreeMap<String, FolderCheckpoint>,
}

/// Durable checkpoints under one directory: `DIR/PROFILE/HASH.json` per mailbox.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    /// A store over `dir` (created on first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, profile: &str, mailbox: &str) -> Result<PathBuf, EngineError> {
        if !valid_name(profile) {
            return Err(EngineError::InvalidName {
                name: profile.to_owned(),
            });
        }
        let digest = blake3::hash(mailbox.to_ascii_lowercase().as_bytes()).to_hex();
        let stem: String = digest.as_str().chars().take(24).collect();
        Ok(self.dir.join(profile).join(format!("{stem}.json")))
    }

    /// The checkpoint of a mailbox (empty when none was saved).
    pub fn load(&self, profile: &str, mailbox: &str) -> Result<MailboxCheckpoint, EngineError> {
        let path = self.path_of(profile, mailbox)?;
        match std::fs::read(&path) {
            Ok(bytes) => {
                let checkpoint: MailboxCheckpoint =
                    serde_json::from_slice(&bytes).map_err(|e| EngineError::Checkpoint {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                if !checkpoint.mailbox.eq_ignore_ascii_case(mailbox) {
                    return Err(EngineError::Checkpoint {
                        path,
                        detail: format!(
                            "holds mailbox {} instead of {mailbox}",
                            checkpoint.mailbox
                        ),
                    });
                }
                Ok(checkpoint)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MailboxCheckpoint {
                mailbox: mailbox.to_owned(),
                ..MailboxCheckpoint::default()
            }),
            Err(e) => Err(EngineError::io(path, e)),
        }
    }

    /// Saves a mailbox's checkpoint durably (returns once fsynced).
    pub fn save(&self, profile: &str, checkpoint: &MailboxCheckpoint) -> Result<(), EngineError> {
        let path = self.path_of(profile, &checkpoint.mailbox)?;
        let bytes = serde_json::to_vec_pretty(checkpoint).map_err(|e| EngineError::Checkpoint {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        fsutil::write_atomic(&path, &bytes)
    }

    /// The saved cursor of one folder.
    pub fn cursor(
        &self,
        profile: &str,
        mailbox: &str,
        folder_id: &str,
    ) -> Result<Option<DeltaCursor>, EngineError> {
        Ok(self
            .load(profile, mailbox)?
            .folders
            .get(folder_id)
            .and_then(|f| f.cursor.clone()))
    }

    /// Forgets every checkpoint of a profile: the next run enumerates everything
    /// again (already archived messages are recognised and not downloaded).
    pub fn reset(&self, profile: &str) -> Result<(), EngineError> {
        if !valid_name(profile) {
            return Err(EngineError::InvalidName {
                name: profile.to_owned(),
            });
        }
        let dir = self.dir.join(profile);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io(dir, e)),
        }
    }
}
