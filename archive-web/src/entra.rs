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

/// [`EntraSignIn`] through [`m365_auth::oidc::OidcClient`]: the archive's own app
/// registration, authorization code with PKCE, the ID token verified against the
/// tenant's keys.
pub struct OidcSignIn {
    client: m365_auth::oidc::OidcClient,
    tenant: String,
}

impl OidcSignIn {
    /// Sign-in with `registration` (the archive's credential), answering to
    /// `redirect_uri` (`<public url>auth/callback`, registered in Entra).
    /// `options` carries the credential's CA bundle.
    pub fn new(
        registration: m365_auth::AppRegistration,
        options: &m365_auth::ProviderOptions,
        redirect_uri: Url,
    ) -> Result<Self, m365_auth::AuthError> {
        let tenant = registration.tenant.as_str().to_string();
        let mut settings = m365_auth::oidc::OidcSettings::new(
            registration.cloud,
            registration.tenant,
            registration.client_id,
            registration.credential,
            redirect_uri,
        );
        // The answer comes back by a top-level GET, which carries the browser's
        // `SameSite=Lax` session cookie: the callback is bound to the browser that
        // began the sign-in (a cross-site form POST would carry no cookie).
        settings.response_mode = m365_auth::oidc::ResponseMode::Query;
        let http = m365_auth::oidc::http_client(options)?;
        Ok(Self {
            client: m365_auth::oidc::OidcClient::new(settings, http)?,
            tenant,
        })
    }
}

#[async_trait::async_trait]
impl EntraSignIn for OidcSignIn {
    fn tenant_id(&self) -> String {
        self.tenant.clone()
    }

    async fn begin(&self, now: SystemTime) -> Result<(Url, PendingEntra), String> {
        let (url, pending) = self.client.begin(now).await.map_err(|e| e.to_string())?;
        Ok((
            url,
            PendingEntra {
                state: pending.state().to_string(),
                data: Box::new(pending),
            },
        ))
    }

    async fn finish(
        &self,
        pending: &PendingEntra,
        state: &str,
        code: &str,
        now: SystemTime,
    ) -> Result<EntraIdentity, String> {
        let Some(inner) = pending
            .data
            .downcast_ref::<m365_auth::oidc::PendingSignIn>()
        else {
            return Err("this sign-in was begun by another sign-in method".to_string());
        };
        let claims = self
            .client
            .finish(inner, state, code, now)
            .await
            .map_err(|e| e.to_string())?;
        Ok(EntraIdentity {
            tenant_id: claims.tenant_id.to_string(),
            object_id: claims.object_id.to_string(),
        })
    }
}
