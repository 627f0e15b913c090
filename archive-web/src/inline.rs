//! Signed links for the inline (`cid:`) images of a message body.
//!
//! The body is shown in a sandboxed frame without `allow-same-origin`: its
//! requests come from an opaque origin and carry no `SameSite=Lax` session cookie.
//! Its image links therefore carry their own proof instead: an HMAC-SHA256, under a
//! key drawn when the server starts, of the account, the message, the part and an
//! expiry ten minutes on. The route still asks the service as that account, so a
//! link never reaches more than its account may see, and every read is recorded.

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How long a signed image link works.
pub const LINK_LIFETIME: Duration = Duration::minutes(10);

/// A fresh random key.
pub fn new_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

fn mac(key: &[u8; 32], user: &str, id: &str, part: usize, expires: i64) -> String {
    // A key of any length is accepted by HMAC; this never fails for 32 bytes.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    for field in [user, id, &part.to_string(), &expires.to_string()] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The signed link to part `part` of message `id` for account `user`, valid from `now`.
pub fn link(key: &[u8; 32], user: &str, id: &str, part: usize, now: DateTime<Utc>) -> String {
    let expires = (now + LINK_LIFETIME).timestamp();
    format!(
        "/messages/{id}/inline/{part}?u={}&e={expires}&t={}",
        crate::render::models::encode_component(user),
        mac(key, user, id, part, expires)
    )
}

/// Whether `token` signs (`user`, `id`, `part`, `expires`) and has not expired at `now`.
pub fn verify(
    key: &[u8; 32],
    user: &str,
    id: &str,
    part: usize,
    expires: i64,
    token: &str,
    now: DateTime<Utc>,
) -> bool {
    if expires <= now.timestamp() || expires > (now + LINK_LIFETIME).timestamp() + 60 {
        return false;
    }
    let expected = mac(key, user, id, part, expires);
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(link: &str) -> (String, i64, String) {
        let query = link.split_once('?').map(|(_, q)| q).unwrap_or("");
        let get = |k: &str| {
            query
                .split('&')
                .find_map(|p| p.strip_prefix(&format!("{k}=")))
                .unwrap_or("")
                .to_string()
        };
        (get("u"), get("e").parse().unwrap_or(0), get("t"))
    }

    #[test]
    fn a_link_works_for_its_account_message_and_part_until_it_expires() {
        let key = new_key();
        let now = Utc::now();
        let l = link(&key, "alice", "ab12", 3, now);
        let (user, expires, token) = parts(&l);
        assert_eq!(user, "alice");
        assert!(verify(&key, "alice", "ab12", 3, expires, &token, now));
        assert!(!verify(&key, "bob", "ab12", 3, expires, &token, now));
        assert!(!verify(&key, "alice", "ab13", 3, expires, &token, now));
        assert!(!verify(&key, "alice", "ab12", 4, expires, &token, now));
        assert!(!verify(&key, "alice", "ab12", 3, expires + 1, &token, now));
        assert!(!verify(
            &new_key(),
            "alice",
            "ab12",
            3,
            expires,
            &token,
            now
        ));
        assert!(!verify(
            &key,
            "alice",
            "ab12",
            3,
            expires,
            &token,
            now + LINK_LIFETIME
        ));
        assert!(!verify(&key, "alice", "ab12", 3, expires, "", now));
    }
}
