//! An in-memory [`AuditSink`] for tests: the same records and chain as the file log,
//! kept in a byte buffer, and a switch that makes appends fail.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::event::{AuditEntry, AuditEvent, Head};
use crate::verify::{VerifyReport, verify_bytes};
use crate::{AuditError, AuditSink, ListQuery, export_bytes, frame, list_bytes};

/// The audit chain in memory.
#[derive(Debug)]
pub struct MemoryAuditLog {
    state: Mutex<(Vec<u8>, Head)>,
    failing: AtomicBool,
}

impl Default for MemoryAuditLog {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryAuditLog {
    /// An empty log.
    pub fn new() -> Self {
        MemoryAuditLog {
            state: Mutex::new((Vec::new(), Head::genesis())),
            failing: AtomicBool::new(false),
        }
    }

    /// Makes every later append fail (`true`) or succeed again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Every event recorded, in order.
    pub fn events(&self) -> Vec<AuditEvent> {
        list_bytes(&self.lock().0, &ListQuery::default())
    }

    /// The records as they would be on disk.
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().0.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<u8>, Head)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl AuditSink for MemoryAuditLog {
    fn append(&self, entry: AuditEntry) -> Result<AuditEvent, AuditError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(AuditError::Unavailable(
                "the in-memory audit log was told to fail".into(),
            ));
        }
        let mut state = self.lock();
        let event = state.1.next(entry, chrono::Utc::now());
        let (line, hash) = frame::encode(&event).map_err(AuditError::Encode)?;
        state.0.extend_from_slice(&line);
        state.1 = Head {
            seq: event.seq,
            hash,
            time: Some(event.time),
        };
        Ok(event)
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<AuditEvent>, AuditError> {
        Ok(list_bytes(&self.lock().0, query))
    }

    fn verify(&self) -> Result<VerifyReport, AuditError> {
        Ok(verify_bytes(&self.lock().0, None))
    }

    fn export(&self, out: &mut dyn Write) -> Result<u64, AuditError> {
        let bytes = self.bytes();
        export_bytes(&bytes, out).map_err(|e| AuditError::io("cannot write the export", "-", e))
    }
}
