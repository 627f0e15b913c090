//! The Microsoft identity platform of the emulated tenant: the app registration (two secrets,
//! one expired; one certificate), the client-credentials token endpoint with real verification of
//! certificate assertions, AADSTS errors as Entra ID sends them, and the issued-token registry
//! Graph's gate checks (binding to tenant and app, expiry, revocation). User sign-in (authorize,
//! the sign-in page, `grant_type=authorization_code`, discovery and the signing key) lives in
//! `signin` and `oidc`; both grants share the client authentication here.
//!
//! The app's RSA key and certificate are derived from the seed (ChaCha20 seeded RNG), so the same
//! seed gives the same credentials. Access tokens are JWTs signed with a per-instance random key:
//! a token of another emulator instance is foreign and refused, as a token of another tenant is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore as _;
use rsa::signature::Verifier as _;
use sha1::Digest as _;

use crate::EmulatorError;
use crate::state::AppState;
use crate::wire::{AadErrorBody, AccessTokenClaims, AccessTokenHeader, TokenResponse};

mod assertion;
mod credential;
pub(crate) mod oidc;
mod signin;

use credential::{AppCredential, app_credential};
pub(crate) use oidc::Oidc;

/// The assertion type of certificate credentials.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Graph's well-known application id (a scope may name the resource by it).
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Clock skew tolerated on assertion `nbf`/`exp` (Entra allows a few minutes).
const ASSERTION_SKEW_SECS: i64 = 300;
/// Application permissions granted to the app (reported in the token's `roles`).
const ROLES: [&str; 3] = ["Mail.ReadWrite", "User.Read.All", "MailboxSettings.Read"];

/// A GUID derived from the seed and a label: stable across runs.
fn seeded_guid(seed: u64, label: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{seed}/{label}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// A client secret shaped like Entra's (`xxx8Q~...`, 40 characters), derived from the seed.
fn seeded_secret(seed: u64, label: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    let digest = sha2::Sha256::digest(format!("{seed}/secret/{label}").as_bytes());
    let chars: String = digest
        .iter()
        .chain(digest.iter().rev())
        .map(|b| ALPHABET[usize::from(*b) % 64] as char)
        .collect();
    format!("{}8Q~{}", &chars[..3], &chars[3..37])
}

/// One issued access token.
#[derive(Debug, Clone)]
struct IssuedToken {
    expires_at: i64,
    epoch: u64,
}

#[derive(Debug)]
struct TokenBook {
    lifetime: Duration,
    /// Tokens issued in an older epoch are revoked.
    epoch: u64,
    /// `uti` → token.
    issued: HashMap<String, IssuedToken>,
    /// Assertion `jti` → its `exp`, kept until then to refuse replays.
    used_jtis: HashMap<String, i64>,
}

/// Who called Graph: what the gate puts into the request extensions.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// Client id of the calling app.
    pub(crate) app_id: String,
}

/// Why a bearer token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenRejection {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a JWT of ours, bad signature, wrong audience, tenant or app.
    Invalid,
    /// Past its `exp`.
    Expired,
    /// Revoked through the control API.
    Revoked,
}

impl TokenRejection {
    /// The message Graph sends with 401 `InvalidAuthenticationToken`.
    pub(crate) fn message(self) -> &'static str {
        match self {
            TokenRejection::Missing => "Access token is empty.",
            TokenRejection::Invalid => {
                "Invalid audience, signature or issuer: the token was not issued for this tenant."
            }
            TokenRejection::Expired => "Lifetime validation failed, the token is expired.",
            TokenRejection::Revoked => "Access token has expired or is not yet valid.",
        }
    }
}

/// The tenant's identity and the app registration.
pub(crate) struct IdentityRegistry {
    tenant_id: String,
    tenant_domain: String,
    client_id: String,
    client_secret: String,
    expired_client_secret: String,
    credential: Arc<AppCredential>,
    /// HMAC key of issued tokens, random per instance.
    token_key: [u8; 32],
    /// `kid` put in token headers.
    token_kid: String,
    /// URL of the login listener (for the assertion `aud` and the discovery document).
    login_url: OnceLock<url::Url>,
    /// URL of the Graph listener (accepted as the scope's resource).
    graph_url: OnceLock<url::Url>,
    book: Mutex<TokenBook>,
}

impl std::fmt::Debug for IdentityRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityRegistry")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut inner = sha2::Sha256::new();
    let mut outer = sha2::Sha256::new();
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, byte) in key.iter().enumerate() {
        ipad[i] ^= byte;
        opad[i] ^= byte;
    }
    inner.update(ipad);
    inner.update(message);
    outer.update(opad);
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Constant-time comparison of secrets.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl IdentityRegistry {
    /// The registration of a seed: ids, secrets and the certificate.
    pub(crate) fn generate(
        seed: u64,
        token_lifetime: Duration,
    ) -> Result<IdentityRegistry, EmulatorError> {
        let client_id = seeded_guid(seed, "client");
        let credential = app_credential(seed, &client_id)?;
        let mut token_key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut token_key);
        Ok(IdentityRegistry {
            tenant_id: seeded_guid(seed, "tenant"),
            tenant_domain: "contoso.onmicrosoft.com".to_owned(),
            client_secret: seeded_secret(seed, "current"),
            expired_client_secret: seeded_secret(seed, "expired"),
            client_id,
            credential,
            token_kid: URL_SAFE_NO_PAD.encode(&sha2::Sha256::digest(token_key)[..12]),
            token_key,
            login_url: OnceLock::new(),
            graph_url: OnceLock::new(),
            book: Mutex::new(TokenBook {
                lifetime: token_lifetime,
                epoch: 0,
                issued: HashMap::new(),
                used_jtis: HashMap::new(),
            }),
        })
    }

    fn book(&self) -> std::sync::MutexGuard<'_, TokenBook> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records where the listeners are (once, at start).
    pub(crate) fn set_urls(&self, login_url: url::Url, graph_url: url::Url) {
        let _ = self.login_url.set(login_url);
        let _ = self.graph_url.set(graph_url);
    }

    pub(crate) fn tenant_id(&self) -> &str {
        &self.tenant_id
    }
    pub(crate) fn tenant_domain(&self) -> &str {
        &self.tenant_domain
    }
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }
    pub(crate) fn client_secret(&self) -> &str {
        &self.client_secret
    }
    pub(crate) fn expired_client_secret(&self) -> &str {
        &self.expired_client_secret
    }
    pub(crate) fn certificate_pem(&self) -> &str {
        &self.credential.certificate_pem
    }
    pub(crate) fn private_key_pem(&self) -> &str {
        &self.credential.private_key_pem
    }

    /// Invalidates every token issued so far.
    pub(crate) fn revoke_all(&self) {
        let mut book = self.book();
        book.epoch += 1;
        book.issued.clear();
    }

    /// Lifetime of the tokens issued from now on.
    pub(crate) fn set_token_lifetime(&self, lifetime: Duration) {
        self.book().lifetime = lifetime;
    }

    /// Whether `tenant` (from the URL path) names this tenant: its id or its domain.
    fn is_our_tenant(&self, tenant: &str) -> bool {
        tenant.eq_ignore_ascii_case(&self.tenant_id)
            || tenant.eq_ignore_ascii_case(&self.tenant_domain)
    }

    /// Issues an access token for the app.
    fn issue(&self) -> Result<(String, u64), String> {
        let now = now_secs();
        let uti = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
        let lifetime = {
            let mut book = self.book();
            book.issued.retain(|_, token| token.expires_at > now);
            let lifetime = book.lifetime;
            let expires_at = now + i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2);
            let epoch = book.epoch;
            book.issued
                .insert(uti.clone(), IssuedToken { expires_at, epoch });
            lifetime
        };
        let lifetime_secs = lifetime.as_secs();
        let claims = AccessTokenClaims {
            aud: "https://graph.microsoft.com".to_owned(),
            iss: format!("https://sts.windows.net/{}/", self.tenant_id),
            iat: now,
            nbf: now,
            exp: now + i64::try_from(lifetime_secs).unwrap_or(i64::MAX / 2),
            appid: self.client_id.clone(),
            appidacr: "1".to_owned(),
            idtyp: "app".to_owned(),
            oid: seeded_guid(0, &format!("service-principal/{}", self.client_id)),
            roles: ROLES.iter().map(|r| (*r).to_owned()).collect(),
            sub: seeded_guid(0, &self.client_id),
            tid: self.tenant_id.clone(),
            uti,
            ver: "1.0".to_owned(),
        };
        let header = AccessTokenHeader {
            typ: "JWT".to_owned(),
            alg: "HS256".to_owned(),
            kid: self.token_kid.clone(),
        };
        let encode =
            |value: &dyn erased::Json| value.to_json().map(|json| URL_SAFE_NO_PAD.encode(json));
        let signing_input = format!("{}.{}", encode(&header)?, encode(&claims)?);
        let signature =
            URL_SAFE_NO_PAD.encode(hmac_sha256(&self.token_key, signing_input.as_bytes()));
        Ok((format!("{signing_input}.{signature}"), lifetime_secs))
    }

    /// Checks a bearer token presented to Graph.
    pub(crate) fn validate(&self, token: &str) -> Result<Caller, TokenRejection> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenRejection::Invalid);
        };
        let signing_input_len = header.len() + 1 + payload.len();
        let expected = hmac_sha256(&self.token_key, &token.as_bytes()[..signing_input_len]);
        let given = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenRejection::Invalid)?;
        if given.len() != expected.len()
            || given
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                != 0
        {
            return Err(TokenRejection::Invalid);
        }
        let claims: AccessTokenClaims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(TokenRejection::Invalid)?;
        if claims.tid != self.tenant_id
            || claims.appid != self.client_id
            || claims.aud != "https://graph.microsoft.com"
        {
            return Err(TokenRejection::Invalid);
        }
        if claims.exp <= now_secs() {
            return Err(TokenRejection::Expired);
        }
        let book = self.book();
        match book.issued.get(&claims.uti) {
            Some(issued) if issued.epoch == book.epoch => Ok(Caller {
                app_id: claims.appid,
            }),
            _ => Err(TokenRejection::Revoked),
        }
    }

    /// The scopes' resources this emulator answers to.
    fn scope_is_valid(&self, scope: &str) -> bool {
        let mut resources = Vec::new();
        for item in scope.split(' ').filter(|s| !s.is_empty()) {
            let Some(resource) = item.strip_suffix("/.default") else {
                return false;
            };
            resources.push(resource.trim_end_matches('/').to_ascii_lowercase());
        }
        !resources.is_empty() && resources.iter().all(|r| self.is_graph_resource(r))
    }

    /// Whether a lower-cased resource (no trailing `/`) names Graph: globally, by app id or by
    /// the emulator's own Graph URL.
    fn is_graph_resource(&self, resource: &str) -> bool {
        let graph_local = self
            .graph_url
            .get()
            .map(|u| u.as_str().trim_end_matches('/').to_ascii_lowercase());
        resource == "https://graph.microsoft.com"
            || resource == GRAPH_APP_ID
            || graph_local.as_deref() == Some(resource)
    }

    /// Whether a scope of a user sign-in names something the tenant knows: an OpenID Connect
    /// scope or a delegated Graph permission, bare (`User.Read`) or after a Graph resource.
    fn is_delegated_scope(&self, scope: &str) -> bool {
        if oidc::OIDC_SCOPES.contains(&scope) {
            return true;
        }
        let is_permission = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        };
        match scope.rsplit_once('/') {
            None => is_permission(scope),
            Some((resource, permission)) => {
                self.is_graph_resource(&resource.to_ascii_lowercase())
                    && (is_permission(permission) || permission == ".default")
            }
        }
    }

    /// The token endpoint URLs an assertion's `aud` may name.
    fn assertion_audiences(&self) -> Vec<String> {
        let Some(login) = self.login_url.get() else {
            return Vec::new();
        };
        let base = login.as_str().trim_end_matches('/');
        [&self.tenant_id, &self.tenant_domain]
            .iter()
            .flat_map(|t| {
                [
                    format!("{base}/{t}/oauth2/v2.0/token"),
                    format!("{base}/{t}/v2.0"),
                ]
            })
            .collect()
    }

    /// Verifies a client assertion (header, signature against the registered certificate, claims,
    /// replay). `Err` carries the AADSTS error to answer.
    fn verify_assertion(&self, assertion: &str, client_id: &str) -> Result<(), AadError> {
        let malformed = |why: assertion::Malformed| {
            AadError::new(
                400,
                "invalid_request",
                50027,
                format!("JWT token is invalid or malformed: {}.", why.0),
            )
        };
        let parsed = assertion::parse(assertion).map_err(malformed)?;
        let header = &parsed.header;
        let invalid_signature = |reason: &str| {
            AadError::new(
                401,
                "invalid_client",
                700027,
                format!(
                    "Client assertion failed signature validation. [Reason - {reason}, Thumbprint of key used by client: '{}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]",
                    header.shown_thumbprint()
                ),
            )
        };
        // The key: every identifier the header carries (`x5t#S256`, `x5t`, the `x5c` leaf) must
        // name the registered certificate, and at least one must be there.
        let credential = &self.credential;
        let leaf = header.x5c_leaf().map_err(malformed)?;
        if header.x5t_s256.is_none() && header.x5t.is_none() && leaf.is_none() {
            return Err(invalid_signature(
                "The key was not found: the header names no x5t, x5t#S256 or x5c",
            ));
        }
        let names_ours = |sent: &Option<String>, digest: &[u8]| {
            sent.as_deref()
                .is_none_or(|sent| assertion::thumbprint_matches(sent, digest))
        };
        if !names_ours(&header.x5t_s256, &credential.sha256)
            || !names_ours(&header.x5t, &credential.sha1)
        {
            return Err(invalid_signature("The key was not found."));
        }
        if leaf.is_some_and(|leaf| leaf != credential.der) {
            return Err(invalid_signature(
                "The certificate in the x5c header is not registered for the application.",
            ));
        }
        let signing_input = parsed.signing_input.as_bytes();
        let signature = parsed.signature.as_slice();
        let public_key = credential.public_key.clone();
        let verified = match header.alg.as_str() {
            "RS256" => rsa::pkcs1v15::Signature::try_from(signature).is_ok_and(|signature| {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public_key)
                    .verify(signing_input, &signature)
                    .is_ok()
            }),
            "PS256" => rsa::pss::Signature::try_from(signature).is_ok_and(|signature| {
                rsa::pss::VerifyingKey::<sha2::Sha256>::new(public_key)
                    .verify(signing_input, &signature)
                    .is_ok()
            }),
            other => {
                return Err(invalid_signature(&format!(
                    "The algorithm '{other}' is not supported; use PS256 or RS256"
                )));
            }
        };
        if !verified {
            return Err(invalid_signature(
                "The provided signature value did not match the expected signature value.",
            ));
        }
        let claims = parsed.claims;
        if claims.iss.as_deref() != Some(client_id) || claims.sub.as_deref() != Some(client_id) {
            return Err(AadError::new(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter: 'iss' and 'sub' must both be the client id.".to_owned(),
            ));
        }
        let audiences = self.assertion_audiences();
        if !claims
            .aud
            .as_ref()
            .is_some_and(|aud| audiences.iter().any(|a| aud.contains(a)))
        {
            return Err(AadError::new(
                401,
                "invalid_client",
                700212,
                format!(
                    "Client assertion audience claim does not match the token endpoint. Expected '{}'.",
                    audiences.first().map_or("", String::as_str)
                ),
            ));
        }
        let now = now_secs();
        let Some(exp) = claims.exp else {
            return Err(AadError::new(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range: it carries no 'exp' claim."
                    .to_owned(),
            ));
        };
        let fmt = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .map_or_else(String::new, |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        };
        // Compared in whole seconds: a fraction of a second is well within the tolerated skew.
        let expired = exp.whole_secs().saturating_add(ASSERTION_SKEW_SECS) < now;
        let early = |date: Option<assertion::NumericDate>| {
            date.is_some_and(|d| d.whole_secs().saturating_sub(ASSERTION_SKEW_SECS) > now)
        };
        if expired || early(claims.nbf) || early(claims.iat) {
            return Err(AadError::new(
                401,
                "invalid_client",
                700024,
                format!(
                    "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}.",
                    fmt(now),
                    fmt(claims
                        .nbf
                        .or(claims.iat)
                        .map_or(0, assertion::NumericDate::whole_secs)),
                    fmt(exp.whole_secs())
                ),
            ));
        }
        let Some(jti) = claims.jti.filter(|j| !j.is_empty()) else {
            return Err(AadError::new(
                401,
                "invalid_client",
                50013,
                "Assertion is invalid: it carries no 'jti' claim.".to_owned(),
            ));
        };
        let mut book = self.book();
        book.used_jtis
            .retain(|_, until| *until + ASSERTION_SKEW_SECS >= now);
        if book.used_jtis.contains_key(&jti) {
            return Err(AadError::new(
                401,
                "invalid_client",
                50013,
                format!(
                    "Assertion is invalid: the client assertion with jti '{jti}' was already used (replay)."
                ),
            ));
        }
        book.used_jtis.insert(jti, exp.whole_secs());
        Ok(())
    }
}

/// Serialisation helper so `issue` can encode header and claims through one closure.
mod erased {
    pub(super) trait Json {
        fn to_json(&self) -> Result<Vec<u8>, String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>, String> {
            serde_json::to_vec(self).map_err(|e| e.to_string())
        }
    }
}

/// An AADSTS error about to be sent.
#[derive(Debug)]
pub(crate) struct AadError {
    status: u16,
    error: &'static str,
    code: u32,
    description: String,
}

impl AadError {
    fn new(status: u16, error: &'static str, code: u32, description: String) -> Self {
        Self {
            status,
            error,
            code,
            description,
        }
    }

    fn missing(parameter: &str) -> Self {
        AadError::new(
            400,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{parameter}'."),
        )
    }

    fn into_response(self) -> Response {
        let now = chrono::Utc::now();
        let trace_id = uuid::Uuid::new_v4().to_string();
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let timestamp = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
        let body = AadErrorBody {
            error: self.error,
            error_description: format!(
                "AADSTS{}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
                self.code, self.description
            ),
            error_codes: vec![self.code],
            timestamp,
            trace_id,
            correlation_id,
            error_uri: format!("https://login.microsoftonline.com/error?code={}", self.code),
        };
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store, no-cache"),
        );
        response
    }
}

/// The login listener's routes.
pub(crate) fn router() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token).get(token_by_get))
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(signin::authorize_by_get).post(signin::authorize_by_post),
        )
        .route("/{tenant}/login", post(signin::sign_in))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(oidc::openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(oidc::keys))
}

/// Decoded `Authorization: Basic` credentials (RFC 6749 §2.3.1: form-encoded id and secret).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map_or_else(String::new, |(_, v)| v.into_owned())
    };
    Some((unescape(id), unescape(secret)))
}

async fn token(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.stats.token_request();
    match issue_token(&state, &tenant, &headers, &body) {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(code = error.code, tenant = %tenant, "token request refused");
            error.into_response()
        }
    }
}

async fn token_by_get(State(state): State<Arc<AppState>>) -> Response {
    state.stats.token_request();
    AadError::new(
        400,
        "invalid_request",
        900561,
        "The endpoint only accepts POST requests. Received a GET request.".to_owned(),
    )
    .into_response()
}

/// Whether `tenant` is one of the multi-tenant aliases a sign-in may start under.
fn is_multi_tenant_alias(tenant: &str) -> bool {
    tenant.eq_ignore_ascii_case("organizations") || tenant.eq_ignore_ascii_case("common")
}

fn tenant_not_found(tenant: &str) -> AadError {
    AadError::new(
        400,
        "invalid_request",
        90002,
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

/// A non-empty form field.
fn form_field<'a>(form: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    form.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// The body's fields when it is form-urlencoded (anything else counts as no fields).
fn form_of(headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if is_form {
        url::form_urlencoded::parse(body).into_owned().collect()
    } else {
        HashMap::new()
    }
}

/// The AADSTS700016 error for a client id that names no app of the tenant.
fn unknown_client(identity: &IdentityRegistry, client_id: &str) -> AadError {
    let shown = if uuid::Uuid::parse_str(client_id).is_ok() {
        client_id
    } else {
        "(not a GUID)"
    };
    AadError::new(
        400,
        "unauthorized_client",
        700016,
        format!(
            "Application with identifier '{shown}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
            identity.tenant_domain
        ),
    )
}

/// The client id of a token request (body or Basic header, which must agree), checked to name
/// the registered app.
fn requesting_client(
    identity: &IdentityRegistry,
    form: &HashMap<String, String>,
    basic: Option<&(String, String)>,
) -> Result<String, AadError> {
    let client_id = form_field(form, "client_id")
        .map(str::to_owned)
        .or_else(|| basic.map(|(id, _)| id.clone()))
        .ok_or_else(|| AadError::missing("client_id"))?;
    if let Some((basic_id, _)) = basic
        && form_field(form, "client_id").is_some_and(|id| id != basic_id)
    {
        return Err(AadError::new(
            401,
            "invalid_client",
            50144,
            "The client_id in the body and in the Authorization header differ.".to_owned(),
        ));
    }
    if !client_id.eq_ignore_ascii_case(&identity.client_id) {
        return Err(unknown_client(identity, &client_id));
    }
    Ok(identity.client_id.clone())
}

/// Checks the app's credential: a client secret (body or Basic) or a certificate assertion.
fn authenticate_client(
    identity: &IdentityRegistry,
    form: &HashMap<String, String>,
    basic: Option<(String, String)>,
    client_id: &str,
) -> Result<(), AadError> {
    let secret = form_field(form, "client_secret")
        .map(str::to_owned)
        .or_else(|| basic.map(|(_, secret)| secret));
    let assertion = form_field(form, "client_assertion");
    match (secret, assertion) {
        (Some(_), Some(_)) => Err(AadError::new(
            400,
            "invalid_request",
            7000219,
            "Send either 'client_assertion' or 'client_secret', not both.".to_owned(),
        )),
        (Some(secret), None) => {
            if same_secret(&secret, &identity.expired_client_secret) {
                return Err(AadError::new(
                    401,
                    "invalid_client",
                    7000222,
                    format!(
                        "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
                    ),
                ));
            }
            if !same_secret(&secret, &identity.client_secret) {
                return Err(AadError::new(
                    401,
                    "invalid_client",
                    7000215,
                    format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                    ),
                ));
            }
            Ok(())
        }
        (None, Some(assertion)) => {
            match form_field(form, "client_assertion_type") {
                Some(JWT_BEARER) => {}
                Some(other) => {
                    return Err(AadError::new(
                        400,
                        "invalid_request",
                        50027,
                        format!(
                            "The client_assertion_type '{other}' is not supported; use '{JWT_BEARER}'."
                        ),
                    ));
                }
                None => return Err(AadError::missing("client_assertion_type")),
            }
            identity.verify_assertion(assertion, client_id)
        }
        (None, None) => Err(AadError::new(
            400,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".to_owned(),
        )),
    }
}

fn issue_token(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, AadError> {
    let identity = &state.identity;
    let form = form_of(headers, body);
    let grant_type = form_field(&form, "grant_type");
    let our_tenant = identity.is_our_tenant(tenant);
    // A sign-in may start under `organizations` or `common` (the code then belongs to this
    // tenant); the app-only grant needs the tenant itself.
    let code_grant = grant_type == Some("authorization_code");
    let alias_allowed = code_grant && is_multi_tenant_alias(tenant);
    if !(our_tenant || alias_allowed) {
        return Err(tenant_not_found(tenant));
    }
    let grant_type = grant_type.ok_or_else(|| AadError::missing("grant_type"))?;
    if grant_type != "client_credentials" && !code_grant {
        return Err(AadError::new(
            400,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        ));
    }
    let basic = basic_credentials(headers);
    let client_id = requesting_client(identity, &form, basic.as_ref())?;
    if code_grant {
        authenticate_client(identity, &form, basic, &client_id)?;
        return oidc::redeem(state, &form, &client_id).map(no_store);
    }
    let scope = form_field(&form, "scope").ok_or_else(|| AadError::missing("scope"))?;
    if !identity.scope_is_valid(scope) {
        return Err(AadError::new(
            400,
            "invalid_scope",
            70011,
            format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    }
    authenticate_client(identity, &form, basic, &client_id)?;
    let (access_token, expires_in) = identity.issue().map_err(|e| {
        AadError::new(
            500,
            "server_error",
            90033,
            format!("Token could not be issued: {e}"),
        )
    })?;
    Ok(no_store(
        axum::Json(TokenResponse {
            token_type: "Bearer",
            expires_in,
            ext_expires_in: expires_in,
            access_token,
        })
        .into_response(),
    ))
}

/// Marks a token answer as not cacheable, as Entra does.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store, no-cache"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_secrets_are_stable_per_seed() {
        assert_eq!(seeded_guid(7, "tenant"), seeded_guid(7, "tenant"));
        assert_ne!(seeded_guid(7, "tenant"), seeded_guid(8, "tenant"));
        let secret = seeded_secret(7, "current");
        assert_eq!(secret.len(), 40);
        assert_eq!(&secret[3..6], "8Q~");
        assert_ne!(secret, seeded_secret(7, "expired"));
    }

    #[test]
    fn hmac_matches_rfc4231_case_2_shape() {
        // Our key is always 32 bytes; check against a known HMAC-SHA256 computed with a padded key.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, b"what do ya want for nothing?");
        // RFC 4231 test case 2 (the key "Jefe" zero-padded to the block size gives the same MAC).
        assert_eq!(
            mac.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
