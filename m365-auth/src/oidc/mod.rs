//! Signing employees in with Entra ID: the relying-party side of OpenID Connect
//! (authorization code + PKCE, confidential web app), for the archive's web pages.
//!
//! [`OidcClient::begin`] builds the authorize URL and a [`PendingSignIn`] the web layer
//! keeps server side; [`OidcClient::finish`] checks the returned `state`, redeems the
//! code and verifies the id_token ([`OidcClient::verify_id_token`]) into
//! [`IdentityClaims`]. Users are matched on `oid` + `tid`, never on an email address.
//!
//! Discovery and the key set are cached; an unknown `kid` refetches the key set at most
//! once per [`OidcSettings::key_refresh_interval`], so a stream of forged tokens cannot
//! make the archive hammer the authority.

mod jwt;
mod metadata;
mod pending;
mod redeem;

pub use jwt::{CLOCK_SKEW, IdentityClaims, MAX_ID_TOKEN_BYTES};
pub use metadata::KeySet;
pub use pending::{PendingSignIn, SIGN_IN_LIFETIME};

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use secrecy::ExposeSecret as _;
use tracing::{debug, info, warn};
use url::Url;

use crate::{AuthError, ClientCredential, ClientId, Cloud, ProviderOptions, TenantId, wire};
use metadata::{Discovery, EndpointPolicy};

/// The scopes of a sign-in (no resource: the archive calls Graph as the application).
pub const SIGN_IN_SCOPE: &str = "openid profile";
/// How long discovery and the key set are used before being fetched again.
const METADATA_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// After a failed metadata fetch, the error is answered for this long before trying again.
const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(10);
/// Longest code accepted from the redirect. Microsoft's docs give no maximum length for
/// authorization codes (observed ones are about 1–2 KiB); 8 KiB leaves room.
const MAX_CODE_BYTES: usize = 8 * 1024;

/// How the authorize endpoint hands the answer to the redirect URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseMode {
    /// An auto-submitting form POSTed to the redirect URI (keeps the code out of
    /// URLs, logs and `Referer`); what Microsoft recommends for web apps.
    #[default]
    FormPost,
    /// The parameters in the redirect URI's query (a GET).
    Query,
}

impl ResponseMode {
    fn as_str(self) -> &'static str {
        match self {
            ResponseMode::FormPost => "form_post",
            ResponseMode::Query => "query",
        }
    }
}

/// The `prompt` of the authorize request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// `select_account`: let the user pick among signed-in accounts.
    SelectAccount,
    /// `login`: ask for credentials even with a session.
    Login,
}

impl Prompt {
    fn as_str(self) -> &'static str {
        match self {
            Prompt::SelectAccount => "select_account",
            Prompt::Login => "login",
        }
    }
}

/// The web app's registration for user sign-in.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The cloud (or custom authority) the tenant signs in at.
    pub cloud: Cloud,
    /// The tenant: only its users may sign in.
    pub tenant_id: TenantId,
    /// The web app's client id.
    pub client_id: ClientId,
    /// The web app's secret or certificate (the code redemption authenticates with it).
    pub credential: ClientCredential,
    /// The redirect URI registered for the app (Authentication > Web).
    pub redirect_uri: Url,
    /// How the answer reaches the redirect URI (default `form_post`).
    pub response_mode: ResponseMode,
    /// An optional `prompt`.
    pub prompt: Option<Prompt>,
    /// Least time between two key-set fetches caused by an unknown `kid` (default 5 min).
    pub key_refresh_interval: Duration,
    /// Timeout of each request to the authority (default 30 s).
    pub request_timeout: Duration,
}

impl OidcSettings {
    /// Settings with the defaults: `form_post`, no prompt, 5 min key refresh, 30 s timeout.
    pub fn new(
        cloud: Cloud,
        tenant_id: TenantId,
        client_id: ClientId,
        credential: ClientCredential,
        redirect_uri: Url,
    ) -> OidcSettings {
        OidcSettings {
            cloud,
            tenant_id,
            client_id,
            credential,
            redirect_uri,
            response_mode: ResponseMode::default(),
            prompt: None,
            key_refresh_interval: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A cached piece of metadata and when it was fetched.
struct Cached<T> {
    value: Option<(T, Instant)>,
    last_attempt: Option<Instant>,
    last_error: Option<AuthError>,
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Cached {
            value: None,
            last_attempt: None,
            last_error: None,
        }
    }
}

#[derive(Default)]
struct Caches {
    discovery: Cached<Arc<Discovery>>,
    keys: Cached<Arc<KeySet>>,
    discovery_fetches: u64,
    key_fetches: u64,
}

struct Inner {
    settings: OidcSettings,
    discovery_url: Url,
    authority: String,
    policy: EndpointPolicy,
    http: reqwest::Client,
    caches: Mutex<Caches>,
    fetch_lock: tokio::sync::Mutex<()>,
}

/// Signs users in against one tenant. Cheap to clone; clones share the caches.
#[derive(Clone)]
pub struct OidcClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let settings = &self.inner.settings;
        f.debug_struct("OidcClient")
            .field("tenant", &settings.tenant_id)
            .field("client_id", &settings.client_id)
            .field("credential", &settings.credential.kind())
            .field("redirect_uri", &settings.redirect_uri.as_str())
            .field("discovery", &self.inner.discovery_url.as_str())
            .finish()
    }
}

/// An HTTP client fit for [`OidcClient::new`]: no redirects followed (a secret must not
/// follow one), no proxy from the environment, the options' proxy, CA bundle and timeouts.
pub fn http_client(options: &ProviderOptions) -> Result<reqwest::Client, AuthError> {
    crate::provider::build_http_client(options, false)
}

impl OidcClient {
    /// A client for `settings`. `http` should not follow redirects ([`http_client`] builds
    /// one that does not). Fails when the authority is plain http other than loopback or
    /// the redirect URI is not absolute http(s).
    pub fn new(settings: OidcSettings, http: reqwest::Client) -> Result<OidcClient, AuthError> {
        let login = settings.cloud.login_url();
        let Some(policy) = EndpointPolicy::for_authority(&login) else {
            return Err(AuthError::InvalidRegistration {
                field: "login_url",
                value: login.to_string(),
                reason: "user sign-in needs an https authority (plain http only on a loopback \
                         address, for tests)"
                    .into(),
            });
        };
        let redirect = &settings.redirect_uri;
        if !matches!(redirect.scheme(), "https" | "http")
            || redirect.fragment().is_some()
            || redirect.host_str().is_none()
        {
            return Err(AuthError::InvalidRegistration {
                field: "redirect_uri",
                value: redirect.to_string(),
                reason: "the redirect URI must be an absolute http(s) URL without a fragment"
                    .into(),
            });
        }
        let mut discovery_url = login.clone();
        let path = format!(
            "{}{}/v2.0/.well-known/openid-configuration",
            login.path(),
            settings.tenant_id.as_str()
        );
        discovery_url.set_path(&path);
        let authority = login.origin().ascii_serialization();
        Ok(OidcClient {
            inner: Arc::new(Inner {
                settings,
                discovery_url,
                authority,
                policy,
                http,
                caches: Mutex::new(Caches::default()),
                fetch_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The settings the client was built with.
    pub fn settings(&self) -> &OidcSettings {
        &self.inner.settings
    }

    /// How many times discovery and the key set were fetched (for tests and metrics).
    pub fn metadata_fetches(&self) -> (u64, u64) {
        let caches = self.caches();
        (caches.discovery_fetches, caches.key_fetches)
    }

    fn caches(&self) -> std::sync::MutexGuard<'_, Caches> {
        self.inner
            .caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a sign-in at `now`: the authorize URL to redirect the browser to, and the
    /// pending sign-in to keep server side until the answer arrives.
    pub async fn begin(&self, now: SystemTime) -> Result<(Url, PendingSignIn), AuthError> {
        let discovery = self.discovery().await?;
        let settings = &self.inner.settings;
        let pending = PendingSignIn::generate(now);
        let mut url = discovery.authorization_endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("client_id", &settings.client_id.to_string())
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", settings.redirect_uri.as_str())
                .append_pair("response_mode", settings.response_mode.as_str())
                .append_pair("scope", SIGN_IN_SCOPE)
                .append_pair("state", pending.state())
                .append_pair("nonce", pending.nonce())
                .append_pair("code_challenge", &pending.code_challenge())
                .append_pair("code_challenge_method", "S256");
            if let Some(prompt) = settings.prompt {
                query.append_pair("prompt", prompt.as_str());
            }
        }
        Ok((url, pending))
    }

    /// Finishes a sign-in with what arrived at the redirect URI: checks `returned_state`
    /// (constant time) and the sign-in's age, redeems `code`, verifies the id_token.
    pub async fn finish(
        &self,
        pending: &PendingSignIn,
        returned_state: &str,
        code: &str,
        now: SystemTime,
    ) -> Result<IdentityClaims, AuthError> {
        if !pending.state_matches(returned_state) {
            return Err(AuthError::SignInStateMismatch);
        }
        let limit = SIGN_IN_LIFETIME.as_secs();
        match pending.age(now, CLOCK_SKEW) {
            Some(age) if age <= limit => {}
            age => {
                return Err(AuthError::SignInExpired {
                    age_secs: age.unwrap_or(0),
                    limit_secs: limit,
                });
            }
        }
        if code.is_empty() || code.len() > MAX_CODE_BYTES {
            return Err(AuthError::SignInResponseInvalid {
                reason: "the authorization code is empty or implausibly long".into(),
            });
        }
        if !code.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::SignInResponseInvalid {
                reason: "the authorization code holds characters a code never has".into(),
            });
        }
        let discovery = self.discovery().await?;
        let settings = &self.inner.settings;
        let client_id = settings.client_id.to_string();
        let request = redeem::Redemption {
            http: &self.inner.http,
            token_endpoint: &discovery.token_endpoint,
            client_id: &client_id,
            tenant: settings.tenant_id.as_str(),
            credential: &settings.credential,
            redirect_uri: &settings.redirect_uri,
            scope: SIGN_IN_SCOPE,
            timeout: settings.request_timeout,
        };
        let id_token = redeem::redeem(&request, code, pending.code_verifier(), now).await?;
        let claims = self
            .verify_id_token(id_token.expose_secret(), pending.nonce(), now)
            .await?;
        info!(tenant = %claims.tenant_id, object_id = %claims.object_id, "user signed in");
        Ok(claims)
    }

    /// The error to show when the redirect URI received `error` / `error_description`
    /// instead of a code (the AADSTS code kept).
    pub fn callback_error(error: &str, error_description: Option<&str>) -> AuthError {
        redeem::authorize_error(error, error_description)
    }

    /// Verifies an id_token of this tenant for this application, issued with
    /// `expected_nonce`, at `now`.
    pub async fn verify_id_token(
        &self,
        token: &str,
        expected_nonce: &str,
        now: SystemTime,
    ) -> Result<IdentityClaims, AuthError> {
        // Size, shape and header first: garbage costs no request and no RSA operation.
        let parsed = jwt::parse(token)?;
        let discovery = self.discovery().await?;
        let mut keys = self.keys(&discovery, None).await?;
        if keys.get(&parsed.kid).is_none() {
            keys = self.keys(&discovery, Some(&parsed.kid)).await?;
        }
        jwt::check_signature(&parsed, &keys)?;
        let tenant = self.expected_tenant(&discovery)?;
        let client_id = self.inner.settings.client_id.to_string();
        jwt::check_claims(
            &parsed,
            &jwt::Expected {
                discovery: &discovery,
                client_id: &client_id,
                tenant,
                nonce: expected_nonce,
                now,
            },
        )
    }

    /// The tenant's directory id: as configured, or (for a domain) as the issuer names it.
    fn expected_tenant(&self, discovery: &Discovery) -> Result<uuid::Uuid, AuthError> {
        let configured = &self.inner.settings.tenant_id;
        if let Ok(id) = uuid::Uuid::try_parse(configured.as_str()) {
            return Ok(id);
        }
        discovery
            .issuer_tenant()
            .ok_or_else(|| AuthError::MalformedResponse {
                authority: self.inner.authority.clone(),
                status: 200,
                reason: format!(
                    "the discovery document of `{configured}` names no tenant id in its issuer; \
                     configure the tenant by its directory id"
                ),
            })
    }

    /// The discovery document, from the cache or fetched.
    async fn discovery(&self) -> Result<Arc<Discovery>, AuthError> {
        if let Some(hit) = self.cached_discovery()? {
            return Ok(hit);
        }
        let _guard = self.inner.fetch_lock.lock().await;
        if let Some(hit) = self.cached_discovery()? {
            return Ok(hit);
        }
        self.caches().discovery_fetches += 1;
        let url = self.inner.discovery_url.clone();
        let policy = self.inner.policy;
        let outcome = self
            .fetch(&url)
            .await
            .and_then(|(status, body)| {
                metadata::parse_discovery(&body, policy).map_err(|reason| {
                    AuthError::MalformedResponse {
                        authority: self.inner.authority.clone(),
                        status,
                        reason,
                    }
                })
            })
            .map(Arc::new);
        let mut caches = self.caches();
        caches.discovery.last_attempt = Some(Instant::now());
        match outcome {
            Ok(discovery) => {
                debug!(issuer = %discovery.issuer, "OpenID Connect discovery read");
                caches.discovery.value = Some((Arc::clone(&discovery), Instant::now()));
                caches.discovery.last_error = None;
                Ok(discovery)
            }
            Err(err) => {
                warn!(error = %err, "OpenID Connect discovery failed");
                caches.discovery.last_error = Some(err.clone());
                Err(err)
            }
        }
    }

    /// A fresh cached discovery, the recent failure, or `None` (fetch it).
    fn cached_discovery(&self) -> Result<Option<Arc<Discovery>>, AuthError> {
        let caches = self.caches();
        let entry = &caches.discovery;
        if let Some((value, at)) = &entry.value
            && at.elapsed() < METADATA_LIFETIME
        {
            return Ok(Some(Arc::clone(value)));
        }
        if let (Some(err), Some(at)) = (&entry.last_error, entry.last_attempt)
            && at.elapsed() < FAILED_FETCH_BACKOFF
        {
            return Err(err.clone());
        }
        Ok(None)
    }

    /// The key set. With `missing`, a key of that `kid` was not in the cached set: fetch
    /// again unless the last fetch is more recent than the refresh interval.
    async fn keys(
        &self,
        discovery: &Discovery,
        missing: Option<&str>,
    ) -> Result<Arc<KeySet>, AuthError> {
        if let Some(hit) = self.cached_keys(missing)? {
            return Ok(hit);
        }
        let _guard = self.inner.fetch_lock.lock().await;
        // Another task may have fetched while this one waited.
        if let Some(hit) = self.cached_keys(missing)? {
            return Ok(hit);
        }
        self.caches().key_fetches += 1;
        let outcome = self
            .fetch(&discovery.jwks_uri)
            .await
            .and_then(|(status, body)| {
                metadata::parse_jwks(&body).map_err(|reason| AuthError::MalformedResponse {
                    authority: discovery.jwks_uri.origin().ascii_serialization(),
                    status,
                    reason,
                })
            })
            .map(Arc::new);
        let mut caches = self.caches();
        caches.keys.last_attempt = Some(Instant::now());
        match outcome {
            Ok(keys) => {
                debug!(keys = keys.len(), "signing keys read");
                caches.keys.value = Some((Arc::clone(&keys), Instant::now()));
                caches.keys.last_error = None;
                Ok(keys)
            }
            Err(err) => {
                warn!(error = %err, "fetching the signing keys failed");
                caches.keys.last_error = Some(err.clone());
                // A stale set is better than none while the authority is unreachable.
                match &caches.keys.value {
                    Some((keys, _)) if err.is_transient() => Ok(Arc::clone(keys)),
                    _ => Err(err),
                }
            }
        }
    }

    fn cached_keys(&self, missing: Option<&str>) -> Result<Option<Arc<KeySet>>, AuthError> {
        let caches = self.caches();
        let entry = &caches.keys;
        let interval = self.inner.settings.key_refresh_interval;
        let recently_tried = entry.last_attempt.is_some_and(|at| at.elapsed() < interval);
        if let Some((keys, at)) = &entry.value {
            let fresh = at.elapsed() < METADATA_LIFETIME;
            let has_kid = missing.is_none_or(|kid| keys.get(kid).is_some());
            if fresh && (has_kid || recently_tried) {
                return Ok(Some(Arc::clone(keys)));
            }
            if !fresh && recently_tried {
                return Ok(Some(Arc::clone(keys)));
            }
            return Ok(None);
        }
        if let (Some(err), Some(at)) = (&entry.last_error, entry.last_attempt)
            && at.elapsed() < FAILED_FETCH_BACKOFF.min(interval.max(Duration::from_millis(1)))
        {
            return Err(err.clone());
        }
        Ok(None)
    }

    /// GETs a metadata document: 200 and a body of bounded size, or an error.
    async fn fetch(&self, url: &Url) -> Result<(u16, Vec<u8>), AuthError> {
        let authority = url.origin().ascii_serialization();
        let timeout = self.inner.settings.request_timeout;
        let response = self
            .inner
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| redeem::transport_error(&authority, &e, timeout))?;
        let status = response.status().as_u16();
        let body = read_limited(response, &authority, timeout).await?;
        match status {
            200 => Ok((status, body)),
            429 | 500..=599 => Err(AuthError::ServiceUnavailable {
                authority,
                status,
                attempts: 1,
            }),
            _ => Err(match wire::parse_token_response(status, &body) {
                Err(wire::TokenFailure::Refused(refusal)) if refusal.aadsts.is_some() => {
                    let code = refusal.code();
                    match refusal.aadsts {
                        Some(90002 | 900023 | 90072) => AuthError::UnknownTenant {
                            tenant: self.inner.settings.tenant_id.to_string(),
                            code,
                            detail: refusal.detail(),
                        },
                        _ => AuthError::Rejected {
                            hint: crate::hint_for(&code).to_owned(),
                            code,
                        },
                    }
                }
                _ => AuthError::MalformedResponse {
                    authority,
                    status,
                    reason: format!("{url} did not answer with the document"),
                },
            }),
        }
    }
}

/// Reads a body of at most [`wire::MAX_RESPONSE_BYTES`].
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    authority: &str,
    timeout: Duration,
) -> Result<Vec<u8>, AuthError> {
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| redeem::transport_error(authority, &e, timeout))?
    {
        if body.len() + chunk.len() > wire::MAX_RESPONSE_BYTES {
            return Err(AuthError::MalformedResponse {
                authority: authority.to_owned(),
                status,
                reason: "the answer is too large".into(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
