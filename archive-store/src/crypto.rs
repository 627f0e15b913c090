//! Optional encryption at rest and the hashing that names objects.
//!
//! Without a key, chunk keys and message addresses are plain BLAKE3 of the bytes.
//! With a key (32 bytes, raw or 64 hex digits, read from a key file), addresses are
//! keyed BLAKE3 (a MAC), so equal hashes reveal nothing to someone without the key,
//! and every frame body is sealed with XChaCha20-Poly1305 under a random nonce, the
//! frame kind and key bound in as associated data so frames cannot be swapped.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::ArchiveError;

const NONCE_LEN: usize = 24;

/// Hashing and sealing of stored objects.
pub(crate) struct Codec {
    keys: Option<Keys>,
}

struct Keys {
    cipher: XChaCha20Poly1305,
    mac: [u8; 32],
}

impl Codec {
    /// No encryption.
    pub(crate) fn plain() -> Self {
        Codec { keys: None }
    }

    /// Encryption with the key in `path`.
    pub(crate) fn from_key_file(path: &Path) -> Result<Self, ArchiveError> {
        let raw = std::fs::read(path).map_err(|e| ArchiveError::Key {
            detail: format!("cannot read key file {}: {e}", path.display()),
        })?;
        let master = parse_key(&raw).ok_or_else(|| ArchiveError::Key {
            detail: format!(
                "key file {} must hold exactly 32 bytes or 64 hexadecimal digits",
                path.display()
            ),
        })?;
        let enc = blake3::derive_key("m365-archiver archive-store v1 frame encryption", &master);
        let mac = blake3::derive_key("m365-archiver archive-store v1 address mac", &master);
        Ok(Codec {
            keys: Some(Keys {
                cipher: XChaCha20Poly1305::new((&enc).into()),
                mac,
            }),
        })
    }

    /// Whether frames are sealed.
    pub(crate) fn encrypted(&self) -> bool {
        self.keys.is_some()
    }

    /// A hasher for addresses and chunk keys.
    pub(crate) fn hasher(&self) -> blake3::Hasher {
        match &self.keys {
            Some(keys) => blake3::Hasher::new_keyed(&keys.mac),
            None => blake3::Hasher::new(),
        }
    }

    /// Hash of `bytes`.
    pub(crate) fn hash(&self, bytes: &[u8]) -> [u8; 32] {
        let mut hasher = self.hasher();
        hasher.update(bytes);
        *hasher.finalize().as_bytes()
    }

    /// A value proving which key is in use (stored in `store.json`).
    pub(crate) fn key_check(&self) -> Option<String> {
        self.keys.as_ref().map(|k| {
            blake3::keyed_hash(&k.mac, b"key-check")
                .to_hex()
                .to_string()
        })
    }

    /// Seals a frame body (identity without a key).
    pub(crate) fn seal(
        &self,
        kind: u8,
        key: &[u8],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, ArchiveError> {
        let Some(keys) = &self.keys else {
            return Ok(body);
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = associated(kind, key);
        let sealed = keys
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &body,
                    aad: &aad,
                },
            )
            .map_err(|_| ArchiveError::Key {
                detail: "encryption failed".into(),
            })?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a sealed frame body; `Err(detail)` when authentication fails.
    pub(crate) fn open(&self, kind: u8, key: &[u8], body: &[u8]) -> Result<Vec<u8>, String> {
        let Some(keys) = &self.keys else {
            return Ok(body.to_vec());
        };
        if body.len() < NONCE_LEN {
            return Err("sealed body too short".into());
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let aad = associated(kind, key);
        keys.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| "authentication failed (wrong key or damaged data)".to_string())
    }
}

fn associated(kind: u8, key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + key.len());
    aad.push(kind);
    aad.extend_from_slice(key);
    aad
}

fn parse_key(raw: &[u8]) -> Option<[u8; 32]> {
    if raw.len() == 32 {
        return raw.try_into().ok();
    }
    let text = std::str::from_utf8(raw).ok()?.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex of a 32-byte hash.
pub(crate) fn to_hex(hash: &[u8; 32]) -> String {
    let mut out = String::with_capacity(64);
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Parses 64 hex digits.
pub(crate) fn from_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bodies_round_trip_and_resist_swapping() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "11".repeat(32)).unwrap();
        let codec = Codec::from_key_file(&key).unwrap();
        let sealed = codec.seal(1, b"k1", b"hello".to_vec()).unwrap();
        assert_eq!(codec.open(1, b"k1", &sealed).unwrap(), b"hello");
        assert!(codec.open(1, b"k2", &sealed).is_err());
        assert_ne!(codec.hash(b"x"), Codec::plain().hash(b"x"));
    }

    #[test]
    fn bad_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "short").unwrap();
        let err = Codec::from_key_file(&key).err().unwrap().to_string();
        assert!(err.contains("key"), "{err}");
    }
}
