//! Reads: manifests and chunks (decoded and re-hashed), streaming a message,
//! listings, `show`, metadata, verification of one message, search hits checked
//! against the listing index, and statistics.

use std::io::{BufReader, Read};

use crate::chunker::{ChunkSummary, chunk_stream};
use crate::crypto::{Codec, to_hex};
use crate::index::{EntryValue, Table, split_entry_key, split_pack_position};
use crate::metadata::{MessageMetadata, extract};
use crate::pack::{kind, list_packs};
use crate::{ArchiveError, ArchiveStats, MessageId, SearchHit};

use super::{
    ArchiveEntry, CODEC_RAW, CODEC_ZSTD, ChunkList, DiskArchiveStore, MessageInfo, parse_id,
};

impl DiskArchiveStore {
    /// Metadata from the cache, or computed from the stored bytes.
    pub(crate) fn metadata_of(&self, address: &[u8; 32]) -> Result<MessageMetadata, ArchiveError> {
        if let Some(meta) = self.caches().index.metadata(address, true)? {
            return Ok(meta);
        }
        let meta = self.compute_metadata(address)?;
        self.caches().index.put_metadata(address, &meta)?;
        Ok(meta)
    }

    pub(super) fn compute_metadata(
        &self,
        address: &[u8; 32],
    ) -> Result<MessageMetadata, ArchiveError> {
        let reader = match self.open_message(address) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(id = %to_hex(address), error = %e, "cannot read message for metadata");
                return Ok(MessageMetadata {
                    unparseable: true,
                    ..MessageMetadata::default()
                });
            }
        };
        let size = reader.size;
        let summary = chunk_stream(
            BufReader::with_capacity(256 * 1024, reader),
            &mut |_c: &[u8]| Ok(()),
            &|e| ArchiveError::io("stored message", e),
        );
        match summary {
            Ok(ChunkSummary { skeleton, .. }) => Ok(extract(&skeleton, size)),
            Err(e) => {
                tracing::error!(id = %to_hex(address), error = %e, "cannot read message for metadata");
                Ok(MessageMetadata {
                    size,
                    unparseable: true,
                    ..MessageMetadata::default()
                })
            }
        }
    }

    /// Chunk list and size of a stored message.
    pub(crate) fn manifest(&self, address: &[u8; 32]) -> Result<(ChunkList, u64), ArchiveError> {
        let Some((loc, _)) = self.located(Table::Messages, address)? else {
            return Err(ArchiveError::NotFound {
                id: to_hex(address),
            });
        };
        let (frame_kind, payload) = self.packs.read(loc)?;
        let corrupt = |detail: &str| ArchiveError::CorruptObject {
            pack: Some(self.packs.path(loc.file)),
            offset: Some(loc.offset),
            detail: detail.to_string(),
            affected: vec![MessageId(to_hex(address))],
        };
        if frame_kind != kind::MANIFEST || payload.len() < 40 || &payload[..32] != address {
            return Err(corrupt(
                "index points to a frame that is not this message's manifest",
            ));
        }
        let size = u64::from_le_bytes(
            payload[32..40]
                .try_into()
                .map_err(|_| corrupt("short manifest"))?,
        );
        let body = self
            .codec
            .open(kind::MANIFEST, address, &payload[40..])
            .map_err(|d| corrupt(&d))?;
        parse_manifest(&body)
            .map(|list| (list, size))
            .ok_or_else(|| corrupt("undecodable manifest"))
    }

    /// Reads, decompresses and re-hashes one chunk.
    pub(crate) fn read_chunk(
        &self,
        key: &[u8; 32],
        message: &[u8; 32],
    ) -> Result<Vec<u8>, ArchiveError> {
        let Some((loc, _)) = self.located(Table::Chunks, key)? else {
            return Err(ArchiveError::CorruptObject {
                pack: None,
                offset: None,
                detail: format!("chunk {} is missing from the archive", to_hex(key)),
                affected: vec![MessageId(to_hex(message))],
            });
        };
        let (frame_kind, payload) = self.packs.read(loc).map_err(|e| match e {
            ArchiveError::CorruptObject {
                pack,
                offset,
                detail,
                ..
            } => ArchiveError::CorruptObject {
                pack,
                offset,
                detail,
                affected: vec![MessageId(to_hex(message))],
            },
            other => other,
        })?;
        let corrupt = |detail: &str| ArchiveError::CorruptObject {
            pack: Some(self.packs.path(loc.file)),
            offset: Some(loc.offset),
            detail: detail.to_string(),
            affected: vec![MessageId(to_hex(message))],
        };
        if frame_kind != kind::CHUNK || payload.len() < 41 || &payload[..32] != key {
            return Err(corrupt("index points to a frame that is not this chunk"));
        }
        let raw_len = u64::from_le_bytes(
            payload[32..40]
                .try_into()
                .map_err(|_| corrupt("short chunk"))?,
        );
        let chunk =
            decode_chunk(&self.codec, key, &payload[40..], raw_len).map_err(|d| corrupt(&d))?;
        if &self.codec.hash(&chunk) != key {
            return Err(corrupt("chunk content does not match its hash"));
        }
        Ok(chunk)
    }

    /// A streaming reader of a stored message.
    pub(crate) fn open_message(
        &self,
        address: &[u8; 32],
    ) -> Result<MessageReader<'_>, ArchiveError> {
        let (chunks, size) = self.manifest(address)?;
        Ok(MessageReader {
            store: self,
            address: *address,
            chunks,
            next: 0,
            buf: Vec::new(),
            pos: 0,
            size,
        })
    }

    /// Entries of `user`'s archive, in `folder` only when given.
    pub fn list(
        &self,
        user: &str,
        folder: Option<&str>,
    ) -> Result<Vec<ArchiveEntry>, ArchiveError> {
        self.healing(|| self.list_raw(user, folder))
    }

    fn list_raw(
        &self,
        user: &str,
        folder: Option<&str>,
    ) -> Result<Vec<ArchiveEntry>, ArchiveError> {
        let mut prefix = user.as_bytes().to_vec();
        prefix.push(0);
        if let Some(folder) = folder {
            prefix.extend_from_slice(folder.as_bytes());
            prefix.push(0);
        }
        let mut out = Vec::new();
        for (key, value) in self.caches().index.scan_prefix(Table::Entries, &prefix)? {
            let Some((user, folder, address)) = split_entry_key(&key) else {
                continue;
            };
            if folder.as_bytes().contains(&0) {
                continue;
            }
            let value: EntryValue =
                serde_json::from_slice(&value).map_err(ArchiveError::listing)?;
            let meta = self
                .caches()
                .index
                .metadata(&address, false)?
                .unwrap_or_default();
            let size = self
                .caches()
                .index
                .message(&address)?
                .map_or(meta.size, |(_, s)| s);
            out.push(ArchiveEntry {
                id: MessageId(to_hex(&address)),
                user,
                folder,
                received: value.received,
                archived: value.archived,
                sources: value.sources,
                size,
                subject: meta.subject,
                from: meta.from,
                date: meta.date,
                unparseable: meta.unparseable,
            });
        }
        Ok(out)
    }

    /// Users with an archive, sorted.
    pub fn users(&self) -> Result<Vec<String>, ArchiveError> {
        self.healing(|| self.distinct_prefixes(&[]))
    }

    /// Folders of `user`'s archive, sorted.
    pub fn folders(&self, user: &str) -> Result<Vec<String>, ArchiveError> {
        let mut prefix = user.as_bytes().to_vec();
        prefix.push(0);
        self.healing(|| self.distinct_prefixes(&prefix))
    }

    /// Distinct NUL-terminated components following `prefix` in the entries tree.
    fn distinct_prefixes(&self, prefix: &[u8]) -> Result<Vec<String>, ArchiveError> {
        let mut out = Vec::new();
        let mut start = prefix.to_vec();
        loop {
            let Some(key) = self.caches().index.first_key_from(Table::Entries, &start)? else {
                break;
            };
            if !key.starts_with(prefix) {
                break;
            }
            let rest = &key[prefix.len()..];
            let Some(end) = rest.iter().position(|&b| b == 0) else {
                break;
            };
            let name = &rest[..end];
            out.push(String::from_utf8_lossy(name).into_owned());
            start = prefix.to_vec();
            start.extend_from_slice(name);
            start.push(1);
        }
        Ok(out)
    }

    /// Metadata and locations of a stored message (`archive show ID`).
    pub fn show(&self, id: &MessageId) -> Result<MessageInfo, ArchiveError> {
        self.healing(|| self.show_raw(id))
    }

    fn show_raw(&self, id: &MessageId) -> Result<MessageInfo, ArchiveError> {
        let address = parse_id(id)?;
        let Some((_, size)) = self.caches().index.message(&address)? else {
            return Err(ArchiveError::NotFound { id: id.0.clone() });
        };
        let metadata = match self.caches().index.metadata(&address, false)? {
            Some(meta) => meta,
            None => {
                let mut meta = self.metadata_of(&address)?;
                meta.body_text.clear();
                meta
            }
        };
        // Each holder has its entry (the two tables mirror each other): anything else
        // is rows lost to damage (rebuilt), never a wrong answer. A message no entry
        // holds (its pack written, its record not, before a crash) has no locations.
        let locations = self.caches().index.holders_of(&address)?;
        let lost = || ArchiveError::listing(format!("index rows missing for message {}", id.0));
        for (user, folder) in &locations {
            let key = crate::index::entry_key(user, folder, &address);
            if self
                .caches()
                .index
                .with(|db| db.get(Table::Entries, &key))?
                .is_none()
            {
                return Err(lost());
            }
        }
        Ok(MessageInfo {
            id: MessageId(to_hex(&address)),
            size,
            metadata,
            locations,
        })
    }

    /// Lengths of the pack files and of the log that `index.db` reflects (verify
    /// scans up to these: all of it is durable, whatever other processes append).
    pub(crate) fn lengths(&self) -> Result<(Vec<(u32, u64)>, u64), ArchiveError> {
        let (log_pos, pack_pos) = self.caches().index.positions()?;
        let (pack_no, pack_len) = split_pack_position(pack_pos);
        let mut packs = Vec::new();
        for n in list_packs(&self.dir.join("packs"))? {
            let len = if n < pack_no {
                let path = self.packs.path(n);
                std::fs::metadata(&path)
                    .map_err(|e| ArchiveError::io(&path, e))?
                    .len()
            } else if n == pack_no {
                pack_len
            } else {
                0
            };
            packs.push((n, len));
        }
        Ok((packs, log_pos))
    }
}

/// Decodes a manifest body into (chunk key, raw length) pairs.
pub(crate) fn parse_manifest(body: &[u8]) -> Option<Vec<([u8; 32], u32)>> {
    let n = u64::from_le_bytes(body.get(..8)?.try_into().ok()?) as usize;
    let rest = &body[8..];
    if rest.len() != n.checked_mul(36)? {
        return None;
    }
    Some(
        rest.chunks_exact(36)
            .filter_map(|c| {
                Some((
                    c[..32].try_into().ok()?,
                    u32::from_le_bytes(c[32..].try_into().ok()?),
                ))
            })
            .collect(),
    )
}

/// Decodes a chunk body (after the key and length): unseal, decompress.
pub(crate) fn decode_chunk(
    codec: &Codec,
    key: &[u8; 32],
    sealed: &[u8],
    raw_len: u64,
) -> Result<Vec<u8>, String> {
    let body = codec.open(kind::CHUNK, key, sealed)?;
    let (&codec_byte, data) = body.split_first().ok_or("empty chunk body")?;
    let chunk = match codec_byte {
        CODEC_RAW => data.to_vec(),
        CODEC_ZSTD => {
            zstd::bulk::decompress(data, raw_len as usize).map_err(|e| format!("zstd: {e}"))?
        }
        other => return Err(format!("unknown chunk codec {other}")),
    };
    if chunk.len() as u64 != raw_len {
        return Err(format!(
            "chunk is {} bytes, expected {raw_len}",
            chunk.len()
        ));
    }
    Ok(chunk)
}

/// Streams a stored message chunk by chunk (each chunk re-hashed as it is read).
pub(crate) struct MessageReader<'a> {
    store: &'a DiskArchiveStore,
    address: [u8; 32],
    chunks: Vec<([u8; 32], u32)>,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
    /// Raw size.
    pub(crate) size: u64,
}

impl Read for MessageReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            let Some((key, _)) = self.chunks.get(self.next) else {
                return Ok(0);
            };
            self.buf = self
                .store
                .read_chunk(key, &self.address)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl DiskArchiveStore {
    pub(super) fn verify_message_raw(&self, id: &MessageId) -> Result<bool, ArchiveError> {
        let address = parse_id(id)?;
        let mut reader = match self.open_message(&address) {
            Ok(r) => r,
            Err(ArchiveError::NotFound { .. }) => {
                return Err(ArchiveError::NotFound { id: id.0.clone() });
            }
            Err(_) => return Ok(false),
        };
        let mut hasher = self.codec.hasher();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                }
                Err(_) => return Ok(false),
            }
        }
        Ok(hasher.finalize().as_bytes() == &address)
    }

    pub(super) fn read_message_raw(&self, id: &MessageId) -> Result<Vec<u8>, ArchiveError> {
        let address = parse_id(id)?;
        let (chunks, size) = self.manifest(&address)?;
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for (key, _) in &chunks {
            out.extend_from_slice(&self.read_chunk(key, &address)?);
        }
        if self.codec.hash(&out) != address {
            return Err(ArchiveError::CorruptObject {
                pack: None,
                offset: None,
                detail: format!(
                    "the reassembled bytes of message {} do not match its address",
                    id.0
                ),
                affected: vec![id.clone()],
            });
        }
        Ok(out)
    }

    /// Checks search hits against the listing index and takes their fields from it,
    /// so damage to the search index's stored fields shows as an index error (and
    /// heals) instead of as wrong answers.
    pub(super) fn checked_hits(
        &self,
        hits: Vec<SearchHit>,
    ) -> Result<Vec<SearchHit>, ArchiveError> {
        let caches = self.caches();
        let mut out = Vec::with_capacity(hits.len());
        for hit in hits {
            let stale = || ArchiveError::Index {
                index: "search",
                detail: format!(
                    "hit {}/{}/{} is not in the listing index",
                    hit.user, hit.folder, hit.id
                ),
            };
            let address = parse_id(&hit.id).map_err(|_| stale())?;
            let key = crate::index::entry_key(&hit.user, &hit.folder, &address);
            let Some(raw) = caches.index.with(|db| db.get(Table::Entries, &key))? else {
                return Err(stale());
            };
            let entry: EntryValue = serde_json::from_slice(&raw).map_err(ArchiveError::listing)?;
            let meta = caches.index.metadata(&address, false)?.unwrap_or_default();
            out.push(SearchHit {
                id: MessageId(to_hex(&address)),
                date: entry.received.or(meta.date),
                from: meta.from,
                subject: meta.subject,
                ..hit
            });
        }
        Ok(out)
    }

    pub(super) fn stats_raw(&self) -> Result<ArchiveStats, ArchiveError> {
        let caches = self.caches();
        let mut stats = ArchiveStats::default();
        for (key, _) in caches.index.scan_prefix(Table::Entries, &[])? {
            if let Some((user, _, _)) = split_entry_key(&key) {
                stats.messages += 1;
                *stats.users.entry(user).or_insert(0) += 1;
            }
        }
        // Entries and holders mirror each other, and every holder's message is indexed:
        // a page of the database that lost rows without an error shows as a mismatch,
        // which is index damage (rebuilt), never a smaller answer.
        let damaged = |what: &str| ArchiveError::listing(format!("index rows missing: {what}"));
        let mut last: Option<Vec<u8>> = None;
        let mut holders = 0u64;
        for (key, _) in caches.index.scan_prefix(Table::Holders, &[])? {
            holders += 1;
            let address = &key[..32.min(key.len())];
            if last.as_deref() != Some(address) {
                stats.unique_messages += 1;
                let a = <[u8; 32]>::try_from(address).map_err(|_| damaged("holder key"))?;
                let (_, size) = caches
                    .index
                    .message(&a)?
                    .ok_or_else(|| damaged("a held message"))?;
                stats.logical_bytes += size;
                last = Some(address.to_vec());
            }
        }
        if holders != stats.messages {
            return Err(damaged(&format!(
                "{} entries but {holders} holders",
                stats.messages
            )));
        }
        stats.chunks = caches.index.count(Table::Chunks)?;
        for n in list_packs(&self.dir.join("packs"))? {
            let path = self.packs.path(n);
            stats.stored_bytes += std::fs::metadata(&path)
                .map_err(|e| ArchiveError::io(&path, e))?
                .len();
        }
        Ok(stats)
    }
}
