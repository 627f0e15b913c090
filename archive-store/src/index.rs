//! sled trees: rebuildable lookups only, never the only copy of anything.
//!
//! sled 0.34 acknowledges writes before they reach the disk, so the store keeps a
//! checkpoint file (written only after `flush`) saying up to where the packs and the
//! record log are reflected here; on open everything past it is replayed, and
//! `reindex` rebuilds every tree from the packs and the log.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::metadata::MessageMetadata;
use crate::pack::Location;
use crate::{ArchiveError, SourceRef};

/// The sled trees of one archive.
pub(crate) struct Index {
    db: sled::Db,
    /// chunk key → location + raw length.
    pub(crate) chunks: sled::Tree,
    /// message address → manifest location + size.
    pub(crate) messages: sled::Tree,
    /// user \0 folder \0 address → [`EntryValue`].
    pub(crate) entries: sled::Tree,
    /// user \0 mailbox \0 message id → address.
    pub(crate) sources: sled::Tree,
    /// address → zstd(json [`MessageMetadata`] without body text).
    pub(crate) meta: sled::Tree,
    /// address → zstd(body text), for (re)indexing.
    pub(crate) bodies: sled::Tree,
    /// address → user \0 folder \0 list of entries holding it (for `show` and verify).
    pub(crate) holders: sled::Tree,
}

/// Stored per archive entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EntryValue {
    /// Received time.
    pub(crate) received: Option<DateTime<Utc>>,
    /// When it was archived.
    pub(crate) archived: DateTime<Utc>,
    /// Sources recorded for it.
    #[serde(default)]
    pub(crate) sources: Vec<SourceRef>,
}

/// Key of an entry.
pub(crate) fn entry_key(user: &str, folder: &str, address: &[u8; 32]) -> Vec<u8> {
    let mut key = Vec::with_capacity(user.len() + folder.len() + 34);
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key.extend_from_slice(folder.as_bytes());
    key.push(0);
    key.extend_from_slice(address);
    key
}

/// Splits an entry key into (user, folder, address).
pub(crate) fn split_entry_key(key: &[u8]) -> Option<(String, String, [u8; 32])> {
    if key.len() < 34 {
        return None;
    }
    let (head, address) = key.split_at(key.len() - 32);
    let head = head.strip_suffix(&[0])?;
    let sep = head.iter().position(|&b| b == 0)?;
    let user = String::from_utf8(head[..sep].to_vec()).ok()?;
    let folder = String::from_utf8(head[sep + 1..].to_vec()).ok()?;
    Some((user, folder, address.try_into().ok()?))
}

/// Key of a source mapping.
pub(crate) fn source_key(user: &str, source: &SourceRef) -> Vec<u8> {
    let mut key = Vec::new();
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key.extend_from_slice(source.mailbox.as_bytes());
    key.push(0);
    key.extend_from_slice(source.message_id.as_bytes());
    key
}

/// Location plus a trailing number (raw length or size).
pub(crate) fn encode_located(loc: Location, n: u64) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..16].copy_from_slice(&loc.encode());
    out[16..].copy_from_slice(&n.to_le_bytes());
    out
}

/// Inverse of [`encode_located`].
pub(crate) fn decode_located(raw: &[u8]) -> Option<(Location, u64)> {
    let loc = Location::decode(raw)?;
    let n = u64::from_le_bytes(raw.get(16..24)?.try_into().ok()?);
    Some((loc, n))
}

impl Index {
    /// Opens (creating) the sled database in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, ArchiveError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 << 20)
            .flush_every_ms(Some(1000))
            .open()
            .map_err(ArchiveError::sled)?;
        let tree = |name: &str| db.open_tree(name).map_err(ArchiveError::sled);
        Ok(Index {
            chunks: tree("chunks")?,
            messages: tree("messages")?,
            entries: tree("entries")?,
            sources: tree("sources")?,
            meta: tree("meta")?,
            bodies: tree("bodies")?,
            holders: tree("holders")?,
            db,
        })
    }

    /// Identity of this sled database (random, created once).
    pub(crate) fn id(&self) -> Result<String, ArchiveError> {
        if let Some(v) = self.db.get("index_id").map_err(ArchiveError::sled)? {
            return Ok(String::from_utf8_lossy(&v).into_owned());
        }
        let id = format!("{:032x}", rand::random::<u128>());
        self.db
            .insert("index_id", id.as_bytes())
            .map_err(ArchiveError::sled)?;
        Ok(id)
    }

    /// Writes everything to disk.
    pub(crate) fn flush(&self) -> Result<(), ArchiveError> {
        self.db.flush().map(|_| ()).map_err(ArchiveError::sled)
    }

    /// Location and raw length of a chunk.
    pub(crate) fn chunk(&self, key: &[u8; 32]) -> Result<Option<(Location, u64)>, ArchiveError> {
        Ok(self
            .chunks
            .get(key)
            .map_err(ArchiveError::sled)?
            .and_then(|v| decode_located(&v)))
    }

    /// Manifest location and size of a message.
    pub(crate) fn message(
        &self,
        address: &[u8; 32],
    ) -> Result<Option<(Location, u64)>, ArchiveError> {
        Ok(self
            .messages
            .get(address)
            .map_err(ArchiveError::sled)?
            .and_then(|v| decode_located(&v)))
    }

    /// Cached metadata of a message; the body text only `with_body`.
    pub(crate) fn metadata(
        &self,
        address: &[u8; 32],
        with_body: bool,
    ) -> Result<Option<MessageMetadata>, ArchiveError> {
        let Some(raw) = self.meta.get(address).map_err(ArchiveError::sled)? else {
            return Ok(None);
        };
        let json = zstd::bulk::decompress(&raw, 16 << 20).map_err(ArchiveError::sled)?;
        let Ok(mut meta) = serde_json::from_slice::<MessageMetadata>(&json) else {
            return Ok(None);
        };
        if with_body && let Some(body) = self.bodies.get(address).map_err(ArchiveError::sled)? {
            let text = zstd::bulk::decompress(&body, 4 << 20).map_err(ArchiveError::sled)?;
            meta.body_text = String::from_utf8_lossy(&text).into_owned();
        }
        Ok(Some(meta))
    }

    /// Caches metadata of a message (body text apart, so listings stay cheap).
    pub(crate) fn put_metadata(
        &self,
        address: &[u8; 32],
        meta: &MessageMetadata,
    ) -> Result<(), ArchiveError> {
        let mut head = meta.clone();
        let body = std::mem::take(&mut head.body_text);
        let json = serde_json::to_vec(&head).map_err(ArchiveError::sled)?;
        let packed = zstd::bulk::compress(&json, 1).map_err(ArchiveError::sled)?;
        if !body.is_empty() {
            let packed_body =
                zstd::bulk::compress(body.as_bytes(), 1).map_err(ArchiveError::sled)?;
            self.bodies
                .insert(address, packed_body)
                .map_err(ArchiveError::sled)?;
        }
        self.meta
            .insert(address, packed)
            .map_err(ArchiveError::sled)?;
        Ok(())
    }

    /// Records an entry (idempotent); returns true when it was new.
    pub(crate) fn put_entry(
        &self,
        address: &[u8; 32],
        user: &str,
        folder: &str,
        received: Option<DateTime<Utc>>,
        archived: DateTime<Utc>,
        source: Option<&SourceRef>,
    ) -> Result<bool, ArchiveError> {
        let key = entry_key(user, folder, address);
        let existing = self.entries.get(&key).map_err(ArchiveError::sled)?;
        let mut value = match &existing {
            Some(raw) => serde_json::from_slice::<EntryValue>(raw).map_err(ArchiveError::sled)?,
            None => EntryValue {
                received,
                archived,
                sources: Vec::new(),
            },
        };
        let mut changed = existing.is_none();
        if let Some(source) = source {
            if !value.sources.contains(source) {
                value.sources.push(source.clone());
                changed = true;
            }
            self.sources
                .insert(source_key(user, source), address.as_slice())
                .map_err(ArchiveError::sled)?;
        }
        if changed {
            let raw = serde_json::to_vec(&value).map_err(ArchiveError::sled)?;
            self.entries.insert(&key, raw).map_err(ArchiveError::sled)?;
        }
        if existing.is_none() {
            let mut holder = key[..key.len() - 32].to_vec();
            let mut hkey = address.to_vec();
            hkey.append(&mut holder);
            self.holders.insert(hkey, &[]).map_err(ArchiveError::sled)?;
        }
        Ok(existing.is_none())
    }

    /// Whether the entry exists.
    pub(crate) fn has_entry(
        &self,
        address: &[u8; 32],
        user: &str,
        folder: &str,
    ) -> Result<bool, ArchiveError> {
        self.entries
            .contains_key(entry_key(user, folder, address))
            .map_err(ArchiveError::sled)
    }

    /// Address archived for a source in a user's archive.
    pub(crate) fn source(
        &self,
        user: &str,
        source: &SourceRef,
    ) -> Result<Option<[u8; 32]>, ArchiveError> {
        Ok(self
            .sources
            .get(source_key(user, source))
            .map_err(ArchiveError::sled)?
            .and_then(|v| v.as_ref().try_into().ok()))
    }

    /// (user, folder) pairs holding `address`.
    pub(crate) fn holders_of(
        &self,
        address: &[u8; 32],
    ) -> Result<Vec<(String, String)>, ArchiveError> {
        let mut out = Vec::new();
        for item in self.holders.scan_prefix(address) {
            let (key, _) = item.map_err(ArchiveError::sled)?;
            let rest = &key[32..];
            let rest = rest.strip_suffix(&[0]).unwrap_or(rest);
            if let Some(sep) = rest.iter().position(|&b| b == 0) {
                out.push((
                    String::from_utf8_lossy(&rest[..sep]).into_owned(),
                    String::from_utf8_lossy(&rest[sep + 1..]).into_owned(),
                ));
            }
        }
        Ok(out)
    }
}
