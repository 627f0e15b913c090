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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any string is either one of our tokens or refused; never a panic.
        #[test]
        fn arbitrary_tokens_are_refused_not_trusted(token in ".{0,200}", seed in any::<u64>()) {
            let decoded: Option<Vec<u64>> = decode(seed, &token);
            prop_assert!(decoded.is_none() || encode(seed, decoded.as_ref().unwrap()) == token.trim());
        }

        /// A token round-trips under its seed and is refused under another or when altered.
        #[test]
        fn tokens_round_trip_and_resist_tampering(state in proptest::collection::vec(any::<u64>(), 0..8), seed in any::<u64>(), flip in 0usize..64) {
            let token = encode(seed, &state);
            prop_assert_eq!(decode::<Vec<u64>>(seed, &token), Some(state.clone()));
            prop_assert_eq!(decode::<Vec<u64>>(seed ^ 1, &token), None);
            let mut bytes = token.into_bytes();
            let index = flip % bytes.len();
            bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            prop_assert!(decode::<Vec<u64>>(seed, &altered).is_none_or(|d| d == state));
        }
    }
}
