//! App-registration credentials and access tokens for Microsoft Graph.
//!
//! An unattended archiver authenticates as an *application* (client-credentials
//! grant): a tenant, a client id and either a client secret or a certificate.
//! This crate performs that flow itself (graph-oauth cannot target a custom
//! authority), caches tokens, refreshes them ahead of expiry with one request in
//! flight per credential, and hands them to graph-rs-sdk through `ClientApplication`.
//!
//! Map of the crate:
//! - [`cloud`]: national clouds (login host, Graph root, `.default` scope);
//! - [`credential`]: secrets and certificates, and where they come from;
//! - [`registration`]: tenant + client id + credential + cloud, validated;
//! - [`assertion`]: signed client assertions (PS256 / RS256);
//! - [`wire`]: the token endpoint's request and response format;
//! - [`provider`]: [`ClientCredentialsProvider`] (cache, single flight, retries);
//! - [`mod@graph_client`]: graph-rs-sdk's `ClientApplication` and a ready `GraphClient`;
//! - [`store`]: [`CredentialStore`], named credentials on disk;
//! - [`oidc`]: [`OidcClient`], signing users in (authorization code + PKCE, id_token checks);
//! - [`transport`]: what every Graph client shares: retry loop and policy, `Retry-After`,
//!   per-resource gates, request counts, Graph error bodies.
//!
//! ```no_run
//! # async fn demo() -> Result<(), m365_auth::AuthError> {
//! use m365_auth::{AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud,
//!                 ProviderOptions, TokenProvider};
//! let registration = AppRegistration::new(
//!     "contoso.onmicrosoft.com",
//!     "11111111-2222-3333-4444-555555555555",
//!     ClientCredential::secret("value from a secret manager"),
//!     Cloud::Global,
//! )?;
//! let provider = ClientCredentialsProvider::new(registration, ProviderOptions::default())?;
//! let token = provider.token().await?;
//! assert!(!token.expires_within(std::time::Duration::from_secs(60)));
//! # Ok(()) }
//! ```

pub mod assertion;
pub mod cloud;
pub mod credential;
mod error;
pub mod graph_client;
pub mod oidc;
pub mod provider;
pub mod registration;
pub mod store;
pub mod transport;
pub mod wire;

pub use cloud::Cloud;
pub use credential::{
    AssertionAlgorithm, CertificateSource, ClientCertificate, ClientCredential, CredentialSource,
    SecretSource,
};
pub use error::{AuthError, hint_for};
pub use graph_client::{
    GraphClientOptions, GraphTokenSource, graph_client, graph_client_at, with_request_token,
};
pub use oidc::{IdentityClaims, OidcClient, OidcSettings, PendingSignIn};
pub use provider::{ClientCredentialsProvider, ProviderOptions};
pub use registration::{AppRegistration, ClientId, TenantId};
pub use store::{CredentialStore, CredentialSummary, StoredCredential};
pub use transport::{RetryPolicy, Transport, parse_retry_after};

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

    /// A token that did not come from the cache (graph-rs-sdk's `ForceTokenRefresh`).
    /// Concurrent callers may share one fresh acquisition.
    async fn refreshed_token(&self) -> Result<AccessToken, AuthError> {
        let current = self.token().await?;
        self.invalidate(&current);
        self.token().await
    }
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

#[cfg(test)]
pub(crate) mod test_support {
    //! Test fixtures: a certificate and its key (never registered anywhere).
    #![allow(dead_code)]
    use secrecy::SecretString;

    pub const CERT_PEM: &str = include_str!("../tests/fixtures/cert.pem");
    pub const KEY_PEM: &str = include_str!("../tests/fixtures/key.pem");
    pub const KEY_PKCS1_PEM: &str = include_str!("../tests/fixtures/key-pkcs1.pem");
    pub const OTHER_KEY_PEM: &str = include_str!("../tests/fixtures/other-key.pem");

    pub fn certificate() -> crate::ClientCertificate {
        crate::ClientCertificate::from_pem(CERT_PEM, &SecretString::from(KEY_PEM)).unwrap()
    }
}
