//! OpenID Connect on the login listener: discovery, the tenant's signing key (`jwks_uri`), the
//! app's redirect URIs, pending sign-ins, authorization codes (single use, ten minutes divided by
//! `time_scale`, bound to the app and the redirect URI, PKCE) and their redemption for an
//! `id_token` signed with RS256.
//!
//! The signing key and the users' password are derived from the seed, so the same seed signs
//! with the same key; a token of another seed's emulator fails signature checks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use sha2::Digest as _;

use super::credential::{AppCredential, signing_credential};
use super::{AadError, form_field, hmac_sha256, is_multi_tenant_alias, now_secs};
use crate::EmulatorError;
use crate::state::AppState;

/// How long an authorization code may be redeemed (Entra: about ten minutes).
const CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Lifetime of an id_token (Entra: one hour).
const ID_TOKEN_LIFETIME_SECS: i64 = 3600;
/// How long a sign-in page stays usable.
const SIGN_IN_LIFETIME: Duration = Duration::from_secs(3600);
/// Entra refuses redirect URIs longer than this.
const MAX_REDIRECT_URI_LEN: usize = 256;
/// The scopes of OpenID Connect itself (no resource).
pub(super) const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// How the authorization response reaches the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResponseMode {
    /// 302 to the redirect URI with the parameters in its query.
    Query,
    /// 302 with the parameters in the fragment.
    Fragment,
    /// An auto-submitting HTML form POSTed to the redirect URI.
    FormPost,
}

/// A PKCE challenge from the authorize request (RFC 7636).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Challenge {
    /// `code_challenge_method=S256`: base64url(SHA-256(verifier)).
    S256(String),
    /// `code_challenge_method=plain` (or none given): the verifier itself.
    Plain(String),
}

impl Challenge {
    fn accepts(&self, verifier: &str) -> bool {
        match self {
            Challenge::S256(challenge) => {
                URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes())) == *challenge
            }
            Challenge::Plain(challenge) => super::same_secret(challenge, verifier),
        }
    }
}

/// An authorize request waiting for the user to sign in.
#[derive(Debug, Clone)]
pub(super) struct PendingSignIn {
    /// The `{tenant}` of the authorize URL (the sign-in form posts back under it).
    pub(super) tenant_path: String,
    pub(super) client_id: String,
    pub(super) redirect_uri: String,
    pub(super) response_mode: ResponseMode,
    pub(super) scopes: Vec<String>,
    pub(super) state: Option<String>,
    pub(super) nonce: Option<String>,
    pub(super) challenge: Option<Challenge>,
    /// `client_info=1`: the answers carry the user's `client_info`.
    pub(super) client_info: bool,
    pub(super) created: Instant,
}

/// An authorization code handed to the app.
#[derive(Debug, Clone)]
struct IssuedCode {
    client_id: String,
    redirect_uri: String,
    user_id: String,
    scopes: Vec<String>,
    nonce: Option<String>,
    challenge: Option<Challenge>,
    expires_at: Instant,
    /// Set by [`Oidc::expire_codes`].
    expired: bool,
    redeemed: bool,
}

/// A code that passed every check: what the token answer is built from.
#[derive(Debug)]
struct Grant {
    user_id: String,
    scopes: Vec<String>,
    nonce: Option<String>,
}

#[derive(Debug, Default)]
struct Flows {
    /// `ctx` → the request behind a sign-in page.
    pending: HashMap<String, PendingSignIn>,
    /// code → its binding.
    codes: HashMap<String, IssuedCode>,
}

/// The OpenID Connect side of the tenant.
pub(crate) struct Oidc {
    seed: u64,
    user_password: String,
    code_lifetime: Duration,
    redirect_uris: Mutex<Vec<String>>,
    flows: Mutex<Flows>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("redirect_uris", &self.redirect_uris())
            .finish_non_exhaustive()
    }
}

/// Random URL-safe text of `bytes` random bytes (codes, `ctx`, `uti`).
pub(super) fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

/// The password every user of a seed's tenant signs in with.
fn seeded_password(seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let digest = sha2::Sha256::digest(format!("{seed}/user-password").as_bytes());
    let chars: String = digest
        .iter()
        .take(16)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    // Entra's complexity rule: three of upper, lower, digit, symbol.
    format!("Emu-{}-{}9z", &chars[..8], &chars[8..])
}

/// Whether a URL's host is a loopback name Entra treats as `localhost`.
fn loopback_prefix(uri: &str) -> Option<usize> {
    let lower = uri.get(..uri.len().min(20))?.to_ascii_lowercase();
    ["http://localhost", "http://127.0.0.1", "http://[::1]"]
        .iter()
        .find(|prefix| {
            lower.starts_with(**prefix)
                && uri[prefix.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| matches!(c, ':' | '/' | '?' | '#'))
        })
        .map(|prefix| prefix.len())
}

/// The redirect URI as compared: the exact string, but for `http://localhost` (and the loopback
/// addresses) without the port. Entra ignores the port of loopback redirect URIs (RFC 8252
/// §7.3, 8.3; "Redirect URI (reply URL) restrictions"). The docs name `localhost`; that
/// `127.0.0.1` and `[::1]` are treated alike is not stated there, RFC 8252 calls them loopback
/// too. Scheme and host compare case-insensitively, path and query exactly.
fn comparable(uri: &str) -> String {
    let Some(host_end) = loopback_prefix(uri) else {
        let authority_end = uri.find("://").map_or(0, |at| {
            let from = at + 3;
            from + uri[from..]
                .find(['/', '?', '#'])
                .unwrap_or(uri.len() - from)
        });
        let (authority, rest) = uri.split_at(authority_end);
        return format!("{}{rest}", authority.to_ascii_lowercase());
    };
    let (host, rest) = uri.split_at(host_end);
    let rest = rest.strip_prefix(':').map_or(rest, |after| {
        after.trim_start_matches(|c: char| c.is_ascii_digit())
    });
    format!("{}{rest}", host.to_ascii_lowercase())
}

/// Checks a redirect URI as app registration does: absolute, https (http only for loopback),
/// no fragment, no wildcard, at most 256 characters.
fn validate_redirect_uri(uri: &str) -> Result<(), EmulatorError> {
    let refuse = |why: &str| {
        Err(EmulatorError::InvalidConfig(format!(
            "redirect URI '{uri}': {why}"
        )))
    };
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return refuse("longer than 256 characters");
    }
    let Ok(parsed) = url::Url::parse(uri) else {
        return refuse("not an absolute URL");
    };
    if parsed.fragment().is_some() {
        return refuse("a fragment is not allowed");
    }
    if uri.contains('*') {
        return refuse("wildcards are not allowed");
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback_prefix(uri).is_some() => Ok(()),
        "http" => refuse("http is allowed for localhost only"),
        other => refuse(&format!("the scheme '{other}' is not one of a web app")),
    }
}

impl Oidc {
    /// The OpenID Connect state of a seed's tenant with the redirect URIs of the configuration.
    pub(crate) fn new(
        seed: u64,
        redirect_uris: &[String],
        time_scale: f64,
    ) -> Result<Oidc, EmulatorError> {
        for uri in redirect_uris {
            validate_redirect_uri(uri)?;
        }
        let scale = if time_scale.is_finite() && time_scale > 0.0 {
            time_scale
        } else {
            1.0
        };
        Ok(Oidc {
            seed,
            user_password: seeded_password(seed),
            code_lifetime: CODE_LIFETIME.div_f64(scale),
            redirect_uris: Mutex::new(redirect_uris.to_vec()),
            flows: Mutex::new(Flows::default()),
        })
    }

    fn flows(&self) -> std::sync::MutexGuard<'_, Flows> {
        self.flows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The password of every user.
    pub(crate) fn user_password(&self) -> &str {
        &self.user_password
    }

    /// The registered redirect URIs, in registration order.
    pub(crate) fn redirect_uris(&self) -> Vec<String> {
        self.redirect_uris
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Registers a redirect URI (again: no change).
    pub(crate) fn add_redirect_uri(&self, uri: &str) -> Result<(), EmulatorError> {
        validate_redirect_uri(uri)?;
        let mut uris = self
            .redirect_uris
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !uris.iter().any(|known| known == uri) {
            uris.push(uri.to_owned());
        }
        Ok(())
    }

    /// Whether `uri` matches a registered redirect URI.
    pub(super) fn is_registered(&self, uri: &str) -> bool {
        let wanted = comparable(uri);
        self.redirect_uris
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|known| comparable(known) == wanted)
    }

    /// Remembers an authorize request; answers the `ctx` its sign-in page carries.
    pub(super) fn begin(&self, pending: PendingSignIn) -> String {
        let ctx = random_token(32);
        let mut flows = self.flows();
        flows
            .pending
            .retain(|_, p| p.created.elapsed() < SIGN_IN_LIFETIME);
        flows.pending.insert(ctx.clone(), pending);
        ctx
    }

    /// The request behind a sign-in page, if it is still pending.
    pub(super) fn pending(&self, ctx: &str) -> Option<PendingSignIn> {
        self.flows()
            .pending
            .get(ctx)
            .filter(|p| p.created.elapsed() < SIGN_IN_LIFETIME)
            .cloned()
    }

    /// Ends a sign-in: the request is forgotten and a code for `user_id` issued.
    pub(super) fn issue_code(&self, ctx: &str, pending: &PendingSignIn, user_id: &str) -> String {
        let code = format!("1.A{}", random_token(48));
        let mut flows = self.flows();
        flows.pending.remove(ctx);
        // Redeemed and expired codes are kept a while so reuse answers AADSTS54005.
        let keep = self.code_lifetime.saturating_mul(6);
        flows
            .codes
            .retain(|_, c| c.expires_at.elapsed() < keep || c.expires_at > Instant::now());
        flows.codes.insert(
            code.clone(),
            IssuedCode {
                client_id: pending.client_id.clone(),
                redirect_uri: pending.redirect_uri.clone(),
                user_id: user_id.to_owned(),
                scopes: pending.scopes.clone(),
                nonce: pending.nonce.clone(),
                challenge: pending.challenge.clone(),
                expires_at: Instant::now() + self.code_lifetime,
                expired: false,
                redeemed: false,
            },
        );
        code
    }

    /// Makes every authorization code issued so far expired.
    pub(crate) fn expire_codes(&self) {
        for code in self.flows().codes.values_mut() {
            code.expired = true;
        }
    }

    /// Checks a code presented by `client_id` and marks it redeemed when every check passes.
    fn take_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
    ) -> Result<Grant, AadError> {
        let invalid_grant =
            |code: u32, text: &str| AadError::new(400, "invalid_grant", code, text.to_owned());
        let mut flows = self.flows();
        let Some(issued) = flows.codes.get_mut(code) else {
            return Err(invalid_grant(
                70000,
                "The provided value for the 'code' parameter is not valid.",
            ));
        };
        if issued.redeemed {
            return Err(invalid_grant(
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
            ));
        }
        if issued.expired || issued.expires_at <= Instant::now() {
            return Err(invalid_grant(
                70008,
                "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
            ));
        }
        if !issued.client_id.eq_ignore_ascii_case(client_id) {
            // Docs are silent on the code of this case; AADSTS70000 is Entra's generic
            // invalid_grant.
            return Err(invalid_grant(
                70000,
                "The provided authorization code was issued to another client.",
            ));
        }
        if issued.redirect_uri != redirect_uri {
            // As Entra words it in public reports (AADSTS50011 inside invalid_grant).
            return Err(invalid_grant(
                50011,
                &format!(
                    "The reply address '{redirect_uri}' does not match the reply address '{}' provided when requesting Authorization code.",
                    issued.redirect_uri
                ),
            ));
        }
        if let Some(challenge) = &issued.challenge
            && !verifier.is_some_and(|v| challenge.accepts(v))
        {
            // Entra has answered this with AADSTS50148 and AADSTS501481 over time.
            return Err(invalid_grant(
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            ));
        }
        issued.redeemed = true;
        Ok(Grant {
            user_id: issued.user_id.clone(),
            scopes: issued.scopes.clone(),
            nonce: issued.nonce.clone(),
        })
    }

    /// The tenant's signing key.
    fn key(&self) -> Result<Arc<AppCredential>, EmulatorError> {
        signing_credential(self.seed)
    }

    /// Signs `claims` as an RS256 JWT with the signing key's `kid`.
    pub(crate) fn sign(&self, claims: &serde_json::Value) -> Result<String, EmulatorError> {
        if !claims.is_object() {
            return Err(EmulatorError::InvalidConfig(
                "token claims must be a JSON object".to_owned(),
            ));
        }
        let key = self.key()?;
        let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "kid": kid_of(&key) });
        let encode = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let signing_input = format!("{}.{}", encode(&header), encode(claims));
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.private_key.clone());
        let signature = signer
            .try_sign(signing_input.as_bytes())
            .map_err(|e| EmulatorError::Credentials(format!("signing a token: {e}")))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }
}

/// Entra's `kid` is the certificate's base64url SHA-1 thumbprint, the same as `x5t`.
fn kid_of(key: &AppCredential) -> String {
    URL_SAFE_NO_PAD.encode(&key.sha1)
}

/// The login base URL without its trailing slash.
fn login_base(state: &AppState) -> String {
    state
        .identity
        .login_url
        .get()
        .map_or_else(String::new, |u| u.as_str().trim_end_matches('/').to_owned())
}

/// The tenant's v2.0 issuer: `{login}/{tenant id}/v2.0`.
pub(crate) fn issuer(state: &AppState) -> String {
    format!("{}/{}/v2.0", login_base(state), state.identity.tenant_id)
}

/// The pairwise subject of a user for the app: stable, not the object id.
fn pairwise_sub(state: &AppState, user_id: &str, client_id: &str) -> String {
    let digest = sha2::Sha256::digest(
        format!(
            "{}/{}/{}",
            state.identity.tenant_id,
            client_id.to_ascii_lowercase(),
            user_id.to_ascii_lowercase()
        )
        .as_bytes(),
    );
    URL_SAFE_NO_PAD.encode(digest)
}

/// Answers `grant_type=authorization_code` for an authenticated app.
pub(super) fn redeem(
    state: &AppState,
    form: &HashMap<String, String>,
    client_id: &str,
) -> Result<Response, AadError> {
    let code = form_field(form, "code").ok_or_else(|| AadError::missing("code"))?;
    let redirect_uri =
        form_field(form, "redirect_uri").ok_or_else(|| AadError::missing("redirect_uri"))?;
    let grant = state.oidc.take_code(
        code,
        client_id,
        redirect_uri,
        form_field(form, "code_verifier"),
    )?;
    let Some(user) = state
        .tenant
        .users()
        .into_iter()
        .find(|u| u.id.eq_ignore_ascii_case(&grant.user_id))
    else {
        return Err(AadError::new(
            400,
            "invalid_grant",
            50034,
            "The user account does not exist in the directory.".to_owned(),
        ));
    };
    if !user.enabled {
        return Err(AadError::new(
            400,
            "invalid_grant",
            50057,
            "The user account is disabled.".to_owned(),
        ));
    }
    let server_error = |e: EmulatorError| {
        AadError::new(
            500,
            "server_error",
            90033,
            format!("Token could not be issued: {e}"),
        )
    };
    let identity = &state.identity;
    let now = now_secs();
    let lifetime = i64::try_from(identity.book().lifetime.as_secs()).unwrap_or(3599);
    let scope = granted_scope(&grant.scopes);
    let mut answer = serde_json::json!({
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": delegated_access_token(state, &user, client_id, &scope, now, lifetime),
    });
    if grant.scopes.iter().any(|s| s == "openid") {
        let mut claims = serde_json::json!({
            "aud": client_id,
            "iss": issuer(state),
            "iat": now,
            "nbf": now,
            "exp": now + ID_TOKEN_LIFETIME_SECS,
            "name": user.display_name,
            "oid": user.id,
            "preferred_username": user.upn,
            "sub": pairwise_sub(state, &user.id, client_id),
            "tid": identity.tenant_id,
            "uti": random_token(16),
            "ver": "2.0",
        });
        // No `email`: Entra sends it only as a configured optional claim, and unverified; the
        // archive matches users on `oid`.
        if let Some(nonce) = &grant.nonce {
            claims["nonce"] = serde_json::Value::String(nonce.clone());
        }
        answer["id_token"] =
            serde_json::Value::String(state.oidc.sign(&claims).map_err(server_error)?);
    }
    if form_field(form, "client_info") == Some("1") {
        answer["client_info"] = serde_json::Value::String(client_info(state, &user.id));
    }
    Ok(axum::Json(answer).into_response())
}

/// MSAL's `client_info`: base64url JSON of the user's object id and tenant id.
pub(super) fn client_info(state: &AppState, user_id: &str) -> String {
    let info = serde_json::json!({ "uid": user_id, "utid": state.identity.tenant_id });
    URL_SAFE_NO_PAD.encode(info.to_string())
}

/// The `scope` of the token answer: the resource scopes granted (Graph's `User.Read` when the
/// request named none, as Entra grants for a bare sign-in) and the OpenID scopes but
/// `offline_access`. Entra's exact ordering is undocumented.
fn granted_scope(requested: &[String]) -> String {
    let mut resource: Vec<String> = requested
        .iter()
        .filter(|s| !OIDC_SCOPES.contains(&s.as_str()))
        .map(|s| s.rsplit('/').next().unwrap_or(s).to_owned())
        .collect();
    if resource.is_empty() {
        resource.push("User.Read".to_owned());
    }
    resource.extend(
        requested
            .iter()
            .filter(|s| OIDC_SCOPES.contains(&s.as_str()) && *s != "offline_access")
            .cloned(),
    );
    resource.join(" ")
}

/// A delegated Graph access token for the user. The emulated Graph implements application
/// permissions only, so its gate refuses these tokens (401); they exist so the answer has the
/// shape Entra gives and MSAL expects.
fn delegated_access_token(
    state: &AppState,
    user: &crate::UserInfo,
    client_id: &str,
    scope: &str,
    now: i64,
    lifetime: i64,
) -> String {
    let identity = &state.identity;
    let header = serde_json::json!({ "typ": "JWT", "alg": "HS256", "kid": identity.token_kid });
    let claims = serde_json::json!({
        "aud": "https://graph.microsoft.com",
        "iss": format!("https://sts.windows.net/{}/", identity.tenant_id),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "appid": client_id,
        "idtyp": "user",
        "name": user.display_name,
        "oid": user.id,
        "scp": scope,
        "sub": pairwise_sub(state, &user.id, "00000003-0000-0000-c000-000000000000"),
        "tid": identity.tenant_id,
        "upn": user.upn,
        "uti": random_token(16),
        "ver": "1.0",
    });
    let encode = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let signing_input = format!("{}.{}", encode(&header), encode(&claims));
    let signature =
        URL_SAFE_NO_PAD.encode(hmac_sha256(&identity.token_key, signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`: for the tenant (id or domain), and
/// for `organizations` and `common` with the issuer templated `{tenantid}` as Entra serves it.
pub(super) async fn openid_configuration(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> Response {
    let identity = &state.identity;
    let multi = is_multi_tenant_alias(&tenant);
    if !identity.is_our_tenant(&tenant) && !multi {
        return AadError::new(
            400,
            "invalid_tenant",
            90002,
            format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        )
        .into_response();
    }
    let base = login_base(&state);
    let (path, issuer) = if multi {
        let path = tenant.to_ascii_lowercase();
        (path, format!("{base}/{{tenantid}}/v2.0"))
    } else {
        (identity.tenant_id.clone(), issuer(&state))
    };
    axum::Json(serde_json::json!({
        "token_endpoint": format!("{base}/{path}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{path}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{base}/{path}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{path}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{path}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{base}/{path}/kerberos"),
        "tenant_region_scope": if multi { serde_json::Value::Null } else { "EU".into() },
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": identity.graph_url.get().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default(),
        "rbac_url": "https://pas.windows.net",
    }))
    .into_response()
}

/// `GET /{tenant}/discovery/v2.0/keys`: the signing key as a JWK with its certificate.
pub(super) async fn keys(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> Response {
    let multi = is_multi_tenant_alias(&tenant);
    if !state.identity.is_our_tenant(&tenant) && !multi {
        return super::tenant_not_found(&tenant).into_response();
    }
    let key = match state.oidc.key() {
        Ok(key) => key,
        Err(error) => {
            return AadError::new(500, "server_error", 90033, error.to_string()).into_response();
        }
    };
    let issuer = if multi {
        format!("{}/{{tenantid}}/v2.0", login_base(&state))
    } else {
        issuer(&state)
    };
    let kid = kid_of(&key);
    axum::Json(serde_json::json!({ "keys": [{
        "kty": "RSA",
        "use": "sig",
        "kid": kid,
        "x5t": kid,
        "n": URL_SAFE_NO_PAD.encode(key.public_key.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(key.public_key.e().to_bytes_be()),
        "x5c": [STANDARD.encode(&key.der)],
        "cloud_instance_name": "microsoftonline.com",
        "issuer": issuer,
    }]}))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirect_uris_match_whatever_the_port() {
        assert_eq!(
            comparable("http://localhost:8400/cb"),
            "http://localhost/cb"
        );
        assert_eq!(comparable("HTTP://LOCALHOST/cb"), "http://localhost/cb");
        assert_eq!(comparable("http://127.0.0.1:1/a?b"), "http://127.0.0.1/a?b");
        assert_eq!(
            comparable("https://localhost:8400/cb"),
            "https://localhost:8400/cb"
        );
        assert_ne!(
            comparable("http://localhost:1/cb"),
            comparable("http://localhost:1/cb/")
        );
        assert_ne!(
            comparable("http://localhostile.example/cb"),
            "http://localhost/cb"
        );
        assert_eq!(
            comparable("HTTPS://App.Example/Cb"),
            "https://app.example/Cb"
        );
        assert_ne!(
            comparable("https://app.example/cb"),
            comparable("https://app.example/Cb")
        );
    }

    #[test]
    fn registration_refuses_what_entra_refuses() {
        assert!(validate_redirect_uri("https://app.example/auth/callback").is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:9000/auth/callback").is_ok());
        assert!(validate_redirect_uri("http://localhost.evil.example/cb").is_err());
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#x",
            "https://*.example/cb",
            "/auth/callback",
            "ftp://app.example/cb",
        ] {
            assert!(validate_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pkce_s256_and_plain() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let s256 = Challenge::S256("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned());
        assert!(s256.accepts(verifier));
        assert!(!s256.accepts("x"));
        assert!(Challenge::Plain("abc".to_owned()).accepts("abc"));
        assert!(!Challenge::Plain("abc".to_owned()).accepts("abd"));
    }

    #[test]
    fn the_password_is_stable_per_seed() {
        assert_eq!(seeded_password(3), seeded_password(3));
        assert_ne!(seeded_password(3), seeded_password(4));
    }
}
