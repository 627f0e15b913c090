//! App-registration credentials and access tokens for Microsoft Graph.
//!
//! An unattended archiver authenticates as an *application* (client-credentials
//! grant): a tenant, a client id and either a client secret or a certificate.
//! This crate performs that flow itself (graph-oauth cannot target a custom
//! authority), caches tokens, refreshes them ahead of expiry with one request in
//! flight per credential, and hands them to graph-rs-sdk through `ClientApplication`.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

/// A bearer token for Microsoft Graph. Its value never appears in `Debug` or `Display`.
#[derive(Clone)]
pub struct AccessToken {
    value: SecretString,
    expires_at: SystemTime,
}

impl AccessToken {
    /// Wraps a token value that expires at `expires_at`.
    pub fn new(value: impl Into<String>, expires_at: SystemTime) -> Self {
        Self {
            value: SecretString::from(value.into()),
            expires_at,
        }
    }

    /// The raw bearer value, for an `Authorization` header. Never log it.
    pub fn secret(&self) -> &str {
        self.value.expose_secret()
    }

    /// When the token stops being accepted.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// Whether the token expires within `margin` from now.
    pub fn expires_within(&self, margin: Duration) -> bool {
        match self.expires_at.duration_since(SystemTime::now()) {
            Ok(left) => left <= margin,
            Err(_) => true,
        }
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Anything that can hand out Graph access tokens: the seam between credentials
/// and the Graph clients (`m365-mailbox`, `directory-sync`).
#[async_trait]
pub trait TokenProvider: Send + Sync {
    /// A token valid for at least a short while: from the cache, or freshly acquired.
    async fn token(&self) -> Result<AccessToken, AuthError>;

    /// Called after Graph answered 401 to `rejected`: drop it from the cache so the
    /// next [`TokenProvider::token`] call acquires a new one (once, however many callers).
    fn invalidate(&self, rejected: &AccessToken);
}

/// A provider that always returns the same token: for tests and for callers that
/// obtained a token elsewhere.
#[derive(Debug, Clone)]
pub struct StaticTokenProvider {
    token: AccessToken,
}

impl StaticTokenProvider {
    /// A provider handing out `token` forever.
    pub fn new(token: AccessToken) -> Self {
        Self { token }
    }
}

#[async_trait]
impl TokenProvider for StaticTokenProvider {
    async fn token(&self) -> Result<AccessToken, AuthError> {
        Ok(self.token.clone())
    }

    fn invalidate(&self, _rejected: &AccessToken) {}
}

/// Why no token could be obtained.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The authority rejected the request with an AADSTS code.
    #[error("the identity platform refused the token request ({code}): {hint}")]
    Rejected {
        /// The AADSTS code, e.g. `AADSTS7000215`.
        code: String,
        /// Plain-language advice for an administrator.
        hint: String,
    },
}
