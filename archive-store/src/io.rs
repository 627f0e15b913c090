//! The I/O seam of the store's own writes: every append to a pack or to the record
//! log, every fsync, and every atomic file replacement (`store.json`, index
//! checkpoints, the index generation pointer) goes through a [`StoreIo`].
//!
//! [`RealIo`] is the default. [`FaultyIo`] is a test tool: it counts write and
//! fsync operations and makes the Nth one fail (disk full, I/O error, or a short
//! write), so tests can check that a failed write at any point stops cleanly.
//! sled and tantivy do their own I/O on the caches; it does not pass through here.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Writes and fsyncs of the store's sources of truth and small state files.
pub trait StoreIo: Send + Sync + std::fmt::Debug {
    /// Writes all of `buf` to `file` (opened for appending, or fresh), named `path`.
    fn write(&self, file: &File, path: &Path, buf: &[u8]) -> io::Result<()>;
    /// Makes what was written to `file` (a file or a directory) durable.
    fn sync(&self, file: &File, path: &Path) -> io::Result<()>;
}

/// The operating system's I/O (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealIo;

impl StoreIo for RealIo {
    fn write(&self, mut file: &File, _path: &Path, buf: &[u8]) -> io::Result<()> {
        file.write_all(buf)
    }

    fn sync(&self, file: &File, _path: &Path) -> io::Result<()> {
        file.sync_data()
    }
}

/// How [`FaultyIo`] fails its chosen operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The disk is full (`ENOSPC`).
    DiskFull,
    /// An I/O error (`EIO`).
    Eio,
    /// A write stores only the first half of its buffer, then fails with `ENOSPC`
    /// (an fsync chosen for this fault fails with `EIO`).
    ShortWrite,
}

/// Test tool: real I/O that counts operations and fails the Nth one.
///
/// Operation numbers start at 1 and count writes and fsyncs alike, in the order
/// they happen. Only the chosen operation fails; later ones succeed again (so a
/// caller must stop by itself after a failure).
#[derive(Debug)]
pub struct FaultyIo {
    fail_at: u64,
    fault: Fault,
    ops: AtomicU64,
    fired: AtomicBool,
}

impl FaultyIo {
    /// Counts operations and never fails.
    pub fn counting() -> Self {
        Self::failing(0, Fault::DiskFull)
    }

    /// Fails operation number `n` (1-based; 0 never fails) with `fault`.
    pub fn failing(n: u64, fault: Fault) -> Self {
        FaultyIo {
            fail_at: n,
            fault,
            ops: AtomicU64::new(0),
            fired: AtomicBool::new(false),
        }
    }

    /// Operations seen so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }

    /// Whether the chosen operation has been failed.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    fn hit(&self) -> bool {
        let n = self.ops.fetch_add(1, Ordering::SeqCst) + 1;
        let hit = n == self.fail_at;
        if hit {
            self.fired.store(true, Ordering::SeqCst);
        }
        hit
    }
}

#[cfg(unix)]
const ENOSPC: i32 = 28;
#[cfg(unix)]
const EIO: i32 = 5;

fn disk_full() -> io::Error {
    #[cfg(unix)]
    {
        io::Error::from_raw_os_error(ENOSPC)
    }
    #[cfg(not(unix))]
    {
        io::Error::new(io::ErrorKind::StorageFull, "no space left on device")
    }
}

fn eio() -> io::Error {
    #[cfg(unix)]
    {
        io::Error::from_raw_os_error(EIO)
    }
    #[cfg(not(unix))]
    {
        io::Error::other("input/output error")
    }
}

impl StoreIo for FaultyIo {
    fn write(&self, file: &File, path: &Path, buf: &[u8]) -> io::Result<()> {
        if !self.hit() {
            return RealIo.write(file, path, buf);
        }
        match self.fault {
            Fault::DiskFull => Err(disk_full()),
            Fault::Eio => Err(eio()),
            Fault::ShortWrite => {
                RealIo.write(file, path, &buf[..buf.len() / 2])?;
                Err(disk_full())
            }
        }
    }

    fn sync(&self, file: &File, path: &Path) -> io::Result<()> {
        if !self.hit() {
            return RealIo.sync(file, path);
        }
        match self.fault {
            Fault::DiskFull => Err(disk_full()),
            Fault::Eio | Fault::ShortWrite => Err(eio()),
        }
    }
}
