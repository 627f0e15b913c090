//! The seam to Microsoft Entra ID sign-in (OpenID Connect, authorization code with
//! PKCE): the web layer begins a sign-in, keeps what it returns server side, and
//! hands the callback's `state` and `code` back. [`m365_auth::oidc::OidcClient`]
//! implements it; tests may supply their own.

use std::any::Any;
use std::time::SystemTime;

use url::Url;

/// A sign-in begun: its `state` (the key the callback is matched on) and whatever
/// the implementation needs to finish it (verifier, nonce), never sent to the browser.
pub struct PendingEntra {
    /// The `state` sent to the authorize endpoint.
    pub state: String,
    /// The implementation's own data.
    pub data: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for PendingEntra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingEntra").finish_non_exhaustive()
    }
}

/// Who signed in, from a verified ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraIdentity {
    /// `tid`: the tenant.
    pub tenant_id: String,
    /// `oid`: the user's directory object id (users are matched on this only).
    pub object_id: String,
}

/// Entra ID sign-in.
#[async_trait::async_trait]
pub trait EntraSignIn: Send + Sync {
    /// The tenant whose users may sign in (the tenant of the archive's credential).
    fn tenant_id(&self) -> String;
    /// Begins a sign-in: the authorize URL to send the browser to, and what to keep.
    async fn begin(&self, now: SystemTime) -> Result<(Url, PendingEntra), String>;
    /// Finishes it: redeems `code` and verifies the ID token against `pending`.
    async fn finish(
        &self,
        pending: &PendingEntra,
        state: &str,
        code: &str,
        now: SystemTime,
    ) -> Result<EntraIdentity, String>;
}
