//! A sign-in between the redirect to the authorize endpoint and the answer at the
//! redirect URI: its `state`, `nonce` and PKCE verifier (RFC 7636, S256), all drawn from
//! the OS random generator. The web layer keeps it server side; the verifier never
//! appears in `Debug`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

/// How long a sign-in may take from `begin` to `finish` (an authorization code itself
/// lives about ten minutes).
pub const SIGN_IN_LIFETIME: Duration = Duration::from_secs(600);

/// Random bytes behind `state` and `nonce` (256 bits).
const STATE_BYTES: usize = 32;
/// Random bytes behind the PKCE verifier: 64 base64url characters (43..=128 allowed).
const VERIFIER_BYTES: usize = 48;

/// A sign-in waiting for its answer. Serialisable so the web layer can keep it in its
/// server-side session store; never hand it to the browser (it holds the PKCE verifier).
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingSignIn {
    state: String,
    nonce: String,
    #[serde(with = "secret_text")]
    code_verifier: SecretString,
    /// Unix seconds.
    created_at: i64,
}

impl PendingSignIn {
    /// A fresh sign-in started at `now`.
    pub(crate) fn generate(now: SystemTime) -> PendingSignIn {
        PendingSignIn {
            state: random_text(STATE_BYTES),
            nonce: random_text(STATE_BYTES),
            code_verifier: SecretString::from(random_text(VERIFIER_BYTES)),
            created_at: unix_seconds(now),
        }
    }

    /// The `state` sent to the authorize endpoint (it comes back with the answer).
    pub fn state(&self) -> &str {
        &self.state
    }

    /// The `nonce` the id_token must carry.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// When the sign-in began.
    pub fn created_at(&self) -> SystemTime {
        match u64::try_from(self.created_at) {
            Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
            Err(_) => UNIX_EPOCH,
        }
    }

    /// The PKCE `code_challenge`: base64url(SHA-256(verifier)).
    pub fn code_challenge(&self) -> String {
        code_challenge(self.code_verifier.expose_secret())
    }

    pub(crate) fn code_verifier(&self) -> &SecretString {
        &self.code_verifier
    }

    /// Whether `returned` is this sign-in's state, compared in constant time.
    pub(crate) fn state_matches(&self, returned: &str) -> bool {
        bool::from(self.state.as_bytes().ct_eq(returned.as_bytes()))
    }

    /// Seconds since the sign-in began at `now`, or `None` when it is dated in the future
    /// beyond `skew`.
    pub(crate) fn age(&self, now: SystemTime, skew: Duration) -> Option<u64> {
        let now = unix_seconds(now);
        let age = now.saturating_sub(self.created_at);
        if age < 0 {
            let ahead = age.unsigned_abs();
            return (ahead <= skew.as_secs()).then_some(0);
        }
        u64::try_from(age).ok()
    }
}

impl std::fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSignIn")
            .field("state", &self.state)
            .field("nonce", &self.nonce)
            .field("code_verifier", &"[redacted]")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// base64url(SHA-256(verifier)), the S256 challenge.
pub(crate) fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// `bytes` random bytes from the OS, base64url without padding.
fn random_text(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

/// Unix seconds of `time` (negative before 1970).
pub(crate) fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

mod secret_text {
    //! Serde for the verifier: stored as plain text inside the server-side session.
    use secrecy::{ExposeSecret, SecretString};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &SecretString,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.expose_secret())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SecretString, D::Error> {
        String::deserialize(deserializer).map(SecretString::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_challenge() {
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn values_are_random_long_and_url_safe() {
        let now = SystemTime::now();
        let a = PendingSignIn::generate(now);
        let b = PendingSignIn::generate(now);
        assert_ne!(a.state(), b.state());
        assert_ne!(a.nonce(), b.nonce());
        assert_ne!(a.state(), a.nonce());
        assert_eq!(a.state().len(), 43);
        let verifier = a.code_verifier().expose_secret();
        assert!((43..=128).contains(&verifier.len()));
        assert!(
            verifier
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(a.code_challenge().len(), 43);
        assert!(a.state_matches(a.state()));
        assert!(!a.state_matches(b.state()));
        assert!(!a.state_matches(""));
        assert!(!a.state_matches(&a.state()[..42]));
    }

    #[test]
    fn survives_serde_and_hides_the_verifier_in_debug() {
        let pending = PendingSignIn::generate(SystemTime::now());
        let verifier = pending.code_verifier().expose_secret().to_owned();
        assert!(!format!("{pending:?}").contains(&verifier));
        let json = serde_json::to_string(&pending).unwrap();
        let back: PendingSignIn = serde_json::from_str(&json).unwrap();
        assert_eq!(back.code_verifier().expose_secret(), verifier);
        assert_eq!(back.state(), pending.state());
        assert_eq!(back.nonce(), pending.nonce());
        assert_eq!(back.created_at(), pending.created_at());
    }

    #[test]
    fn age_counts_seconds_and_refuses_the_future() {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let pending = PendingSignIn::generate(start);
        let skew = Duration::from_secs(300);
        assert_eq!(pending.age(start + Duration::from_secs(61), skew), Some(61));
        assert_eq!(pending.age(start - Duration::from_secs(10), skew), Some(0));
        assert_eq!(pending.age(start - Duration::from_secs(301), skew), None);
    }
}
