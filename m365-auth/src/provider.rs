//! `ClientCredentialsProvider`: the client-credentials grant, done by hand, with a
//! token cache that refreshes ahead of expiry and one request in flight per credential.
//!
//! Single flight: callers that find the cache stale race for an async mutex; the
//! winner posts to the token endpoint, the others wait and then take the winner's
//! outcome (token *or* error) instead of posting again. A `generation` counter tells
//! a waiter whether a fetch completed while it waited. While a refresh ahead of
//! expiry runs, other callers keep using the still-valid old token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rand::Rng as _;
use secrecy::{ExposeSecret, SecretString};
use tracing::{Instrument as _, debug, info, info_span, warn};
use url::Url;

use crate::assertion::sign_client_assertion;
use crate::wire::{self, Refusal, TokenFailure};
use crate::{AccessToken, AppRegistration, AuthError, ClientCredential, TokenProvider, hint_for};

/// Tuning of a [`ClientCredentialsProvider`]. `Default` suits production.
#[derive(Clone)]
pub struct ProviderOptions {
    /// Refresh a cached token when it has less than this left (capped at half the
    /// token's lifetime, so short-lived tokens are not refreshed on every call).
    pub refresh_margin: Duration,
    /// Timeout of one token request, connection included.
    pub request_timeout: Duration,
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
    /// Requests per acquisition, first one included (at least 1). Only 5xx, 429,
    /// timeouts and network errors are retried; a refused credential never is.
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles each retry, with jitter.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts (also caps `Retry-After`).
    pub max_backoff: Duration,
    /// An HTTP(S) proxy URL for the token endpoint (may carry credentials, hence secret).
    /// Without one, no proxy is used: the crate ignores `HTTPS_PROXY` and friends.
    pub proxy: Option<SecretString>,
    /// Extra trusted CA certificates (PEM bundle), e.g. of a TLS-intercepting proxy.
    pub extra_ca_pem: Option<String>,
    /// Scope to request instead of the cloud's Graph `.default` scope.
    pub scope: Option<String>,
    /// `User-Agent` of token requests.
    pub user_agent: String,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            refresh_margin: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            proxy: None,
            extra_ca_pem: None,
            scope: None,
            user_agent: concat!("m365-archiver/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl std::fmt::Debug for ProviderOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderOptions")
            .field("refresh_margin", &self.refresh_margin)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("proxy", &self.proxy.as_ref().map(|_| "[redacted]"))
            .field("extra_ca_pem", &self.extra_ca_pem.as_ref().map(|_| "[PEM]"))
            .field("scope", &self.scope)
            .finish()
    }
}

/// Builds the reqwest client for token requests: no redirects (a secret must not
/// follow one), no environment proxy, optional explicit proxy and extra CAs.
pub(crate) fn build_http_client(
    options: &ProviderOptions,
    https_only: bool,
) -> Result<reqwest::Client, AuthError> {
    let mut builder = reqwest::Client::builder()
        .timeout(options.request_timeout)
        .connect_timeout(options.connect_timeout)
        .user_agent(options.user_agent.clone())
        .redirect(reqwest::redirect::Policy::none())
        .https_only(https_only);
    builder = match &options.proxy {
        Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy.expose_secret()).map_err(|_| {
            AuthError::InvalidOption {
                option: "proxy",
                reason: "not a valid proxy URL (expected http://host:port or https://host:port)"
                    .into(),
            }
        })?),
        None => builder.no_proxy(),
    };
    if let Some(pem) = &options.extra_ca_pem {
        for cert in parse_ca_bundle(pem)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| AuthError::InvalidOption {
        option: "HTTP client",
        reason: e.to_string(),
    })
}

fn parse_ca_bundle(pem: &str) -> Result<Vec<reqwest::Certificate>, AuthError> {
    let bad = |reason: String| AuthError::InvalidOption {
        option: "CA bundle",
        reason,
    };
    let mut certs = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| bad(format!("malformed PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        x509_parser::parse_x509_certificate(&block.contents)
            .map_err(|e| bad(format!("a certificate is not valid X.509: {e}")))?;
        certs.push(
            reqwest::Certificate::from_der(&block.contents)
                .map_err(|e| bad(format!("a certificate was not accepted: {e}")))?,
        );
    }
    if certs.is_empty() {
        return Err(bad("no `-----BEGIN CERTIFICATE-----` block found".into()));
    }
    Ok(certs)
}

struct CachedToken {
    token: AccessToken,
    refresh_at: SystemTime,
}

#[derive(Default)]
struct CacheState {
    token: Option<CachedToken>,
    /// Bumped by every completed fetch, successful or not.
    generation: u64,
    /// The outcome of the fetch of `generation`, when it failed.
    last_failure: Option<AuthError>,
}

struct Inner {
    registration: AppRegistration,
    endpoint: Url,
    authority: String,
    scope: String,
    http: reqwest::Client,
    options: ProviderOptions,
    state: std::sync::Mutex<CacheState>,
    refresh_lock: tokio::sync::Mutex<()>,
    token_requests: AtomicU64,
}

/// Tokens for one app registration via the client-credentials grant.
///
/// Cheap to clone: clones share the cache and the single flight. Share one provider
/// per credential across all mailboxes.
#[derive(Clone)]
pub struct ClientCredentialsProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ClientCredentialsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentialsProvider")
            .field("tenant", &self.inner.registration.tenant)
            .field("client_id", &self.inner.registration.client_id)
            .field("credential", &self.inner.registration.credential.kind())
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("scope", &self.inner.scope)
            .finish()
    }
}

impl ClientCredentialsProvider {
    /// A provider for `registration`; fails on an invalid proxy or CA bundle.
    pub fn new(
        registration: AppRegistration,
        options: ProviderOptions,
    ) -> Result<ClientCredentialsProvider, AuthError> {
        let endpoint = registration.token_endpoint();
        let http = build_http_client(&options, registration.cloud.is_microsoft())?;
        let scope = options
            .scope
            .clone()
            .unwrap_or_else(|| registration.cloud.default_scope());
        let authority = endpoint.origin().ascii_serialization();
        Ok(ClientCredentialsProvider {
            inner: Arc::new(Inner {
                registration,
                endpoint,
                authority,
                scope,
                http,
                options,
                state: std::sync::Mutex::new(CacheState::default()),
                refresh_lock: tokio::sync::Mutex::new(()),
                token_requests: AtomicU64::new(0),
            }),
        })
    }

    /// The registration tokens are acquired for.
    pub fn registration(&self) -> &AppRegistration {
        &self.inner.registration
    }

    /// The token endpoint URL.
    pub fn token_endpoint(&self) -> &Url {
        &self.inner.endpoint
    }

    /// The scope requested.
    pub fn scope(&self) -> &str {
        &self.inner.scope
    }

    /// How many HTTP requests this provider (and its clones) sent to the token endpoint.
    pub fn token_requests(&self) -> u64 {
        self.inner.token_requests.load(Ordering::Relaxed)
    }

    /// Drops the cached token whatever it is, so the next call acquires a new one.
    pub fn clear_cache(&self) {
        self.lock_state().token = None;
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // A poisoned cache is still a valid cache (every write is a single assignment).
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A cached token that is not yet due for refresh.
    fn fresh_cached(&self, now: SystemTime) -> Option<AccessToken> {
        let state = self.lock_state();
        state
            .token
            .as_ref()
            .filter(|c| now < c.refresh_at)
            .map(|c| c.token.clone())
    }

    /// A cached token that is due for refresh but still safely usable meanwhile.
    fn usable_cached(&self) -> Option<AccessToken> {
        let state = self.lock_state();
        state
            .token
            .as_ref()
            .filter(|c| !c.token.expires_within(STALE_FLOOR))
            .map(|c| c.token.clone())
    }

    async fn acquire(&self, force: bool) -> Result<AccessToken, AuthError> {
        if !force && let Some(token) = self.fresh_cached(SystemTime::now()) {
            return Ok(token);
        }
        let seen_generation = self.lock_state().generation;
        let _guard = match self.inner.refresh_lock.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                if !force && let Some(token) = self.usable_cached() {
                    return Ok(token);
                }
                self.inner.refresh_lock.lock().await
            }
        };
        {
            let state = self.lock_state();
            if state.generation != seen_generation {
                // A fetch completed while we waited: share its outcome (an authority
                // outage still leaves a valid cached token usable).
                if let Some(failure) = &state.last_failure {
                    if !force
                        && failure.is_transient()
                        && let Some(cached) = state
                            .token
                            .as_ref()
                            .filter(|c| !c.token.expires_within(STALE_FLOOR))
                    {
                        return Ok(cached.token.clone());
                    }
                    return Err(failure.clone());
                }
                if let Some(cached) = &state.token
                    && !cached.token.expires_within(Duration::ZERO)
                {
                    return Ok(cached.token.clone());
                }
            } else if !force
                && let Some(cached) = state
                    .token
                    .as_ref()
                    .filter(|c| SystemTime::now() < c.refresh_at)
            {
                return Ok(cached.token.clone());
            }
        }
        let outcome = self.fetch().await;
        let mut state = self.lock_state();
        state.generation = state.generation.wrapping_add(1);
        match &outcome {
            Ok((token, refresh_at)) => {
                state.token = Some(CachedToken {
                    token: token.clone(),
                    refresh_at: *refresh_at,
                });
                state.last_failure = None;
            }
            Err(err) => {
                state.last_failure = Some(err.clone());
                // A refused credential makes the old token suspect; a transient failure does not.
                if !err.is_transient() {
                    state.token = None;
                }
            }
        }
        drop(state);
        match outcome {
            Ok((token, _)) => Ok(token),
            Err(err) if err.is_transient() => {
                // Keep working on the old token while the authority is down, if it is still valid.
                match self.usable_cached() {
                    Some(token) if !force => {
                        warn!(error = %err, "token refresh failed; using the still-valid cached token");
                        Ok(token)
                    }
                    _ => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// Posts to the token endpoint, retrying transient failures.
    async fn fetch(&self) -> Result<(AccessToken, SystemTime), AuthError> {
        let inner = &self.inner;
        let span = info_span!(
            "acquire_token",
            tenant = %inner.registration.tenant,
            client_id = %inner.registration.client_id,
            credential = inner.registration.credential.kind(),
            authority = %inner.authority,
        );
        async move {
            let attempts = inner.options.max_attempts.max(1);
            let mut last_error: Option<AuthError> = None;
            for attempt in 1..=attempts {
                let started = SystemTime::now();
                debug!(attempt, "requesting a token");
                let delay = match self.attempt().await {
                    Ok(grant) => {
                        let expires_at = started + grant.expires_in;
                        let ahead = inner.options.refresh_margin.min(grant.expires_in / 2);
                        let refresh_at = expires_at.checked_sub(ahead).unwrap_or(started);
                        info!(
                            expires_in_secs = grant.expires_in.as_secs(),
                            attempt, "token acquired"
                        );
                        let token =
                            AccessToken::new(grant.access_token.expose_secret(), expires_at);
                        return Ok((token, refresh_at));
                    }
                    Err(Attempt::Fatal(err)) => {
                        warn!(error = %err, attempt, "token request failed");
                        return Err(err);
                    }
                    Err(Attempt::Retryable { error, retry_after }) => {
                        let delay = self.backoff(attempt, retry_after);
                        if attempt < attempts {
                            warn!(
                                error = %error,
                                attempt,
                                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                                "token request failed; retrying"
                            );
                        } else {
                            warn!(error = %error, attempt, "token request failed; giving up");
                        }
                        last_error = Some(error);
                        delay
                    }
                };
                if attempt < attempts {
                    tokio::time::sleep(delay).await;
                }
            }
            Err(match last_error {
                Some(AuthError::ServiceUnavailable {
                    authority, status, ..
                }) => AuthError::ServiceUnavailable {
                    authority,
                    status,
                    attempts,
                },
                Some(other) => other,
                None => AuthError::Unreachable {
                    authority: inner.authority.clone(),
                    reason: "no attempt was made".into(),
                },
            })
        }
        .instrument(span)
        .await
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let options = &self.inner.options;
        let exponential = options
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(options.max_backoff);
        let half = exponential / 2;
        let jitter = rand::thread_rng().gen_range(0..=u64::try_from(half.as_millis()).unwrap_or(0));
        let delay = half + Duration::from_millis(jitter);
        match retry_after {
            Some(wait) => wait.min(options.max_backoff).max(delay),
            None => delay,
        }
    }

    /// One token request.
    async fn attempt(&self) -> Result<wire::TokenGrant, Attempt> {
        let inner = &self.inner;
        let registration = &inner.registration;
        let client_id = registration.client_id.to_string();
        let mut form: Vec<(&str, String)> = vec![
            ("client_id", client_id.clone()),
            ("scope", inner.scope.clone()),
            ("grant_type", "client_credentials".to_owned()),
        ];
        let secret_for_scrub: Option<SecretString> = match &registration.credential {
            ClientCredential::Secret(secret) => {
                form.push(("client_secret", secret.expose_secret().to_owned()));
                Some(secret.clone())
            }
            ClientCredential::Certificate(cert) => {
                let assertion = sign_client_assertion(
                    cert,
                    &client_id,
                    inner.endpoint.as_str(),
                    SystemTime::now(),
                )
                .map_err(Attempt::Fatal)?;
                form.push((
                    "client_assertion_type",
                    wire::JWT_BEARER_ASSERTION_TYPE.to_owned(),
                ));
                form.push(("client_assertion", assertion.expose_secret().to_owned()));
                None
            }
        };
        inner.token_requests.fetch_add(1, Ordering::Relaxed);
        let response = inner
            .http
            .post(inner.endpoint.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await;
        // The form holds the secret or assertion: wipe our copy now.
        drop(form);
        let response = response.map_err(|e| self.classify_transport(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_limited(response).await.map_err(|e| match e {
            BodyError::TooLarge => Attempt::Fatal(AuthError::MalformedResponse {
                authority: inner.authority.clone(),
                status,
                reason: "the answer is too large".into(),
            }),
            BodyError::Transport(e) => self.classify_transport(&e),
        })?;
        wire::parse_token_response(status, &body).map_err(|failure| match failure {
            TokenFailure::Server { status } => Attempt::Retryable {
                error: AuthError::ServiceUnavailable {
                    authority: inner.authority.clone(),
                    status,
                    attempts: 0,
                },
                retry_after,
            },
            TokenFailure::Malformed { status, reason } => {
                Attempt::Fatal(AuthError::MalformedResponse {
                    authority: inner.authority.clone(),
                    status,
                    reason,
                })
            }
            TokenFailure::Refused(refusal) => {
                Attempt::Fatal(self.refusal_error(refusal, secret_for_scrub.as_ref()))
            }
        })
    }

    fn classify_transport(&self, error: &reqwest::Error) -> Attempt {
        let authority = self.inner.authority.clone();
        if error.is_timeout() {
            return Attempt::Retryable {
                error: AuthError::Timeout {
                    authority,
                    after: self.inner.options.request_timeout,
                },
                retry_after: None,
            };
        }
        let reason = error_chain(error);
        if is_tls_error(error) {
            return Attempt::Fatal(AuthError::Tls { authority, reason });
        }
        Attempt::Retryable {
            error: AuthError::Unreachable { authority, reason },
            retry_after: None,
        }
    }

    fn refusal_error(&self, refusal: Refusal, secret: Option<&SecretString>) -> AuthError {
        let registration = &self.inner.registration;
        let code = refusal.code();
        let mut detail = refusal.detail();
        if let Some(secret) = secret {
            let secret = secret.expose_secret();
            if !secret.is_empty() && detail.contains(secret) {
                detail = detail.replace(secret, "[redacted]");
            }
        }
        match refusal.aadsts {
            Some(7000215) => AuthError::InvalidClientSecret { code, detail },
            Some(7000222) => AuthError::ExpiredClientSecret { code, detail },
            Some(90002 | 900023 | 90072) => AuthError::UnknownTenant {
                tenant: registration.tenant.to_string(),
                code,
                detail,
            },
            Some(700016) => AuthError::UnknownApplication {
                client_id: registration.client_id.to_string(),
                code,
                detail,
            },
            Some(7000112 | 7000113) => AuthError::ApplicationDisabled { code, detail },
            Some(700027 | 700024 | 700021 | 700023 | 7000274 | 5000811 | 50027) => {
                if let ClientCredential::Certificate(cert) = &registration.credential {
                    let now = chrono::Utc::now().timestamp();
                    if cert.not_after() < now {
                        detail.push_str(&format!(
                            " (note: certificate {} expired at Unix time {}: create and upload a new one)",
                            cert.thumbprint_sha1_hex(),
                            cert.not_after()
                        ));
                    } else {
                        detail.push_str(&format!(
                            " (certificate thumbprint sent: {})",
                            cert.thumbprint_sha1_hex()
                        ));
                    }
                }
                AuthError::CertificateRejected { code, detail }
            }
            Some(70011 | 700022 | 500011 | 1002012) => AuthError::InvalidScope {
                scope: self.inner.scope.clone(),
                code,
                detail,
            },
            _ => {
                let mut hint = hint_for(&code).to_owned();
                if !detail.is_empty() {
                    hint.push_str(" [");
                    hint.push_str(&detail);
                    hint.push(']');
                }
                AuthError::Rejected { code, hint }
            }
        }
    }
}

/// Below this much validity a cached token is not handed out while a refresh runs.
const STALE_FLOOR: Duration = Duration::from_secs(30);

enum Attempt {
    Retryable {
        error: AuthError,
        retry_after: Option<Duration>,
    },
    Fatal(AuthError),
}

enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > wire::MAX_RESPONSE_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error and its sources, joined (reqwest's own message is terse).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

fn is_tls_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(inner) = source {
        let text = inner.to_string().to_ascii_lowercase();
        if text.contains("certificate")
            || text.contains("tls handshake")
            || text.contains("invalid peer")
        {
            return true;
        }
        source = inner.source();
    }
    false
}

#[async_trait]
impl TokenProvider for ClientCredentialsProvider {
    async fn token(&self) -> Result<AccessToken, AuthError> {
        self.acquire(false).await
    }

    fn invalidate(&self, rejected: &AccessToken) {
        let mut state = self.lock_state();
        if state
            .token
            .as_ref()
            .is_some_and(|c| c.token.secret() == rejected.secret())
        {
            state.token = None;
            debug!("cached token invalidated after a rejection");
        }
    }

    async fn refreshed_token(&self) -> Result<AccessToken, AuthError> {
        self.acquire(true).await
    }
}
