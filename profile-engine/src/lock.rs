//! One run per profile at a time, across processes: an exclusive `flock` on
//! `DIR/NAME.lock`, released when the [`RunLock`] is dropped or the process dies.

use std::fs::File;
use std::path::{Path, PathBuf};

use fs2::FileExt;

use crate::error::EngineError;
use crate::fsutil;
use crate::profile::valid_name;

/// Held while a profile runs.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `profile` in `dir`, or fails at once with
    /// [`EngineError::AlreadyRunning`] when another run holds it.
    pub fn acquire(dir: &Path, profile: &str) -> Result<Self, EngineError> {
        if !valid_name(profile) {
            return Err(EngineError::InvalidName {
                name: profile.to_owned(),
            });
        }
        fsutil::ensure_dir(dir)?;
        let path = dir.join(format!("{profile}.lock"));
        let file = fsutil::create_private(&path, true).map_err(|e| EngineError::io(&path, e))?;
        match file.try_lock_exclusive() {
            Ok(()) => Ok(Self { file, path }),
            Err(e) if e.kind() == fs2::lock_contended_error().kind() => {
                Err(EngineError::AlreadyRunning {
                    profile: profile.to_owned(),
                    path,
                })
            }
            Err(e) => Err(EngineError::io(&path, e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}
