//! Writing a message's content: its address, the poisoned-store check, and its
//! new chunks and manifest appended to the current pack.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use crate::chunker::chunk_stream;
use crate::index::Table;
use crate::metadata::extract;
use crate::pack::{Location, kind};
use crate::{ArchiveError, IoFailure, RawMessage};

use super::{CODEC_RAW, CODEC_ZSTD, DiskArchiveStore, Stage, lock};

impl DiskArchiveStore {
    pub(super) fn check_poisoned(&self) -> Result<(), ArchiveError> {
        if self.read_only {
            return Err(ArchiveError::ReadOnly {
                dir: self.dir.clone(),
            });
        }
        if let Some(failure) = lock(&self.poisoned).clone() {
            return Err(ArchiveError::Poisoned { failure });
        }
        Ok(())
    }

    pub(super) fn poison(&self, err: &ArchiveError) {
        let mut p = lock(&self.poisoned);
        if p.is_none() {
            *p = Some(IoFailure::of(err));
        }
    }

    /// Hashes the whole message (the address).
    pub(super) fn address_of(&self, raw: RawMessage<'_>) -> Result<[u8; 32], ArchiveError> {
        match raw {
            RawMessage::Bytes(bytes) => Ok(self.codec.hash(bytes)),
            RawMessage::File(path) => {
                let mut file = File::open(path).map_err(|e| ArchiveError::io(path, e))?;
                let mut hasher = self.codec.hasher();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = match file.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(ArchiveError::io(path, e)),
                    };
                    hasher.update(&buf[..n]);
                }
                Ok(*hasher.finalize().as_bytes())
            }
        }
    }

    fn chunk_body(&self, chunk: &[u8]) -> Result<Vec<u8>, ArchiveError> {
        let compressed = zstd::bulk::compress(chunk, self.compression_level)
            .map_err(|e| ArchiveError::io("zstd", e))?;
        let mut body = Vec::with_capacity(compressed.len().min(chunk.len()) + 1);
        if compressed.len() < chunk.len() {
            body.push(CODEC_ZSTD);
            body.extend_from_slice(&compressed);
        } else {
            body.push(CODEC_RAW);
            body.extend_from_slice(chunk);
        }
        Ok(body)
    }

    /// Whether an index location still holds the object (guards against stale index rows).
    pub(super) fn live(&self, loc: Location, frame_kind: u8, key: &[u8; 32]) -> bool {
        self.packs.probe(loc, frame_kind, key)
    }

    /// Stores chunks and manifest of a message new to the store; returns false when
    /// another writer stored it first.
    pub(super) fn store_content(
        &self,
        address: &[u8; 32],
        raw: RawMessage<'_>,
    ) -> Result<bool, ArchiveError> {
        let mut manifest: Vec<([u8; 32], u32)> = Vec::new();
        let mut hasher = self.codec.hasher();
        let mut emit = |chunk: &[u8]| -> Result<(), ArchiveError> {
            hasher.update(chunk);
            let key = self.codec.hash(chunk);
            let len = u32::try_from(chunk.len()).map_err(ArchiveError::listing)?;
            if let Some((loc, _)) = self.located(Table::Chunks, &key)?
                && self.live(loc, kind::CHUNK, &key)
            {
                manifest.push((key, len));
                return Ok(());
            }
            let body = self.chunk_body(chunk)?;
            let sealed = self.codec.seal(kind::CHUNK, &key, body)?;
            let mut payload = Vec::with_capacity(40 + sealed.len());
            payload.extend_from_slice(&key);
            payload.extend_from_slice(&u64::from(len).to_le_bytes());
            payload.extend_from_slice(&sealed);
            let mut writer = lock(&self.pack_writer);
            let fresh = match self.located(Table::Chunks, &key)? {
                Some((loc, _)) => !self.live(loc, kind::CHUNK, &key),
                None => true,
            };
            if fresh {
                let loc = writer
                    .append(kind::CHUNK, &payload)
                    .inspect_err(|e| self.poison(e))?;
                lock(&self.staged)
                    .located
                    .insert((Table::Chunks, key), (loc, u64::from(len)));
            }
            manifest.push((key, len));
            Ok(())
        };
        let summary = match raw {
            RawMessage::Bytes(bytes) => {
                chunk_stream(bytes, &mut emit, &|e| ArchiveError::io("message", e))?
            }
            RawMessage::File(path) => {
                let file = File::open(path).map_err(|e| ArchiveError::io(path, e))?;
                chunk_stream(BufReader::with_capacity(1 << 20, file), &mut emit, &|e| {
                    ArchiveError::io(path, e)
                })?
            }
        };
        if hasher.finalize().as_bytes() != address {
            let path = match raw {
                RawMessage::File(p) => p.to_path_buf(),
                RawMessage::Bytes(_) => PathBuf::from("message"),
            };
            return Err(ArchiveError::BadInput {
                path,
                detail: "the file changed while it was being archived".into(),
            });
        }
        let mut body = Vec::with_capacity(8 + manifest.len() * 36);
        body.extend_from_slice(&(manifest.len() as u64).to_le_bytes());
        for (key, len) in &manifest {
            body.extend_from_slice(key);
            body.extend_from_slice(&len.to_le_bytes());
        }
        let sealed = self.codec.seal(kind::MANIFEST, address, body)?;
        let mut payload = Vec::with_capacity(40 + sealed.len());
        payload.extend_from_slice(address);
        payload.extend_from_slice(&summary.size.to_le_bytes());
        payload.extend_from_slice(&sealed);
        let meta = self
            .timings
            .time(Stage::Metadata, || extract(&summary.skeleton, summary.size));
        drop(summary);
        {
            let mut writer = lock(&self.pack_writer);
            if let Some((loc, _)) = self.located(Table::Messages, address)?
                && self.live(loc, kind::MANIFEST, address)
            {
                return Ok(false);
            }
            let loc = writer
                .append(kind::MANIFEST, &payload)
                .inspect_err(|e| self.poison(e))?;
            let mut staged = lock(&self.staged);
            staged
                .located
                .insert((Table::Messages, *address), (loc, summary_size(&payload)));
            staged.metadata.insert(*address, Arc::new(meta));
        }
        Ok(true)
    }

    /// Where a chunk or manifest is: staged for the next group commit, waiting for
    /// the deferred `index.db` commit, or in `index.db` (looked up in that order:
    /// rows move along it and leave a place only once they are in the next).
    pub(super) fn located(
        &self,
        table: Table,
        key: &[u8; 32],
    ) -> Result<Option<(Location, u64)>, ArchiveError> {
        if let Some(&hit) = lock(&self.staged).located.get(&(table, *key)) {
            return Ok(Some(hit));
        }
        if let Some(hit) = self.deferred.located(table, key) {
            return Ok(Some(hit));
        }
        let index = &self.caches().index;
        match table {
            Table::Messages => index.message(key),
            _ => index.chunk(key),
        }
    }
}

/// The size a chunk or manifest summary payload records (0 when it is short).
fn summary_size(payload: &[u8]) -> u64 {
    payload
        .get(32..40)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}
