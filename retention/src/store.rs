//! Where policies, holds and pending erasures live: [`GovernanceStore`].
//!
//! [`FileGovernanceStore`] keeps them in one JSON document (`governance.json`) carrying
//! the SHA-256 of its state, replaced atomically: written to a temporary file in the
//! same directory, fsynced, renamed over the old one, and the directory fsynced. A crash
//! leaves either the old document or the new one; a damaged document is refused with
//! its path, never read as empty (an empty read would release every hold).
//! [`MemoryGovernanceStore`] is for tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::RetentionError;
use crate::model::{ErasureRequest, Hold, Policy};

/// Everything governance keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovernanceState {
    /// Retention policies.
    #[serde(default)]
    pub policies: Vec<Policy>,
    /// Legal holds, released ones included (their history is kept).
    #[serde(default)]
    pub holds: Vec<Hold>,
    /// Erasure requests waiting for minimum retention to pass or holds to be released.
    #[serde(default)]
    pub erasures: Vec<ErasureRequest>,
}

/// Durable storage of the [`GovernanceState`].
pub trait GovernanceStore: Send + Sync {
    /// The current state.
    fn load(&self) -> Result<GovernanceState, RetentionError>;
    /// Replaces the state durably.
    fn save(&self, state: &GovernanceState) -> Result<(), RetentionError>;
}

/// In-memory governance state, for tests.
#[derive(Debug, Default)]
pub struct MemoryGovernanceStore {
    state: Mutex<GovernanceState>,
}

impl MemoryGovernanceStore {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, GovernanceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl GovernanceStore for MemoryGovernanceStore {
    fn load(&self) -> Result<GovernanceState, RetentionError> {
        Ok(self.lock().clone())
    }

    fn save(&self, state: &GovernanceState) -> Result<(), RetentionError> {
        *self.lock() = state.clone();
        Ok(())
    }
}

const FILE_NAME: &str = "governance.json";
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Document {
    format: u32,
    sha256: String,
    state: serde_json::Value,
}

/// Governance state in `<dir>/governance.json`, atomically replaced.
#[derive(Debug)]
pub struct FileGovernanceStore {
    dir: PathBuf,
}

impl FileGovernanceStore {
    /// The store in `dir` (created, private to the owner, when missing).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, RetentionError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| RetentionError::io(&dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| RetentionError::io(&dir, e))?;
        }
        Ok(Self { dir })
    }

    /// The document's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }
}

fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl GovernanceStore for FileGovernanceStore {
    fn load(&self) -> Result<GovernanceState, RetentionError> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(GovernanceState::default());
            }
            Err(e) => return Err(RetentionError::io(&path, e)),
        };
        let corrupt = |detail: String| RetentionError::Corrupt {
            path: path.clone(),
            detail,
        };
        let doc: Document = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if doc.format != FORMAT {
            return Err(corrupt(format!(
                "format {} is not {FORMAT} (written by another version?)",
                doc.format
            )));
        }
        let canonical = serde_json::to_vec(&doc.state).map_err(|e| corrupt(e.to_string()))?;
        if digest(&canonical) != doc.sha256 {
            return Err(corrupt("the state does not match its SHA-256".into()));
        }
        serde_json::from_value(doc.state).map_err(|e| corrupt(e.to_string()))
    }

    fn save(&self, state: &GovernanceState) -> Result<(), RetentionError> {
        let path = self.path();
        let value = serde_json::to_value(state).map_err(|e| RetentionError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let canonical = serde_json::to_vec(&value).map_err(|e| RetentionError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let doc = Document {
            format: FORMAT,
            sha256: digest(&canonical),
            state: value,
        };
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| RetentionError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(|e| RetentionError::io(&self.dir, e))?;
        tmp.write_all(&bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| RetentionError::io(tmp.path(), e))?;
        tmp.persist(&path)
            .map_err(|e| RetentionError::io(&path, e.error))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| RetentionError::io(&self.dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_document_is_refused_never_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileGovernanceStore::open(dir.path()).unwrap();
        let mut state = GovernanceState::default();
        state.erasures.push(ErasureRequest {
            key: crate::EntryKey {
                user: "adele".into(),
                id: "ab".into(),
                folder: "Inbox".into(),
            },
            reason: "GDPR art. 17".into(),
            requested_by: "dpo".into(),
            requested: chrono::Utc::now(),
        });
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);
        let text = std::fs::read_to_string(store.path()).unwrap();
        std::fs::write(store.path(), text.replace("adele", "alice")).unwrap();
        let err = store.load().unwrap_err();
        assert!(matches!(err, RetentionError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("governance.json"), "{err}");
    }
}
