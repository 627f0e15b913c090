//! Opaque paging and delta tokens: the state a link needs (cursor, watermark, the first call's
//! query options), serialised, checksummed with the tenant seed and base64url-encoded. A token
//! that does not decode, does not match its checksum or names another mailbox or folder is
//! treated as unknown (Graph answers 410 Gone / `syncStateNotFound` for delta).

use base64::Engine as _;
use serde::{Serialize, de::DeserializeOwned};

use crate::tenant::model_mix;

/// Encodes a token.
pub(crate) fn encode<T: Serialize>(seed: u64, state: &T) -> String {
    let json = serde_json::to_vec(state).unwrap_or_default();
    let sum = checksum(seed, &json);
    let mut bytes = json;
    bytes.extend_from_slice(&sum.to_le_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a token; `None` when it is not one of ours.
pub(crate) fn decode<T: DeserializeOwned>(seed: u64, token: &str) -> Option<T> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim().trim_end_matches('='))
        .ok()?;
    if bytes.len() < 8 {
        return None;
    }
    let (json, sum) = bytes.split_at(bytes.len() - 8);
    let sum = u64::from_le_bytes(sum.try_into().ok()?);
    if sum != checksum(seed, json) {
        return None;
    }
    serde_json::from_slice(json).ok()
}

fn checksum(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = model_mix(seed ^ 0x70C3_E000);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = model_mix(h ^ u64::from_le_bytes(word));
    }
    h
}
