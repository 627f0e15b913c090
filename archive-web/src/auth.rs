//! Who is calling, and signing in and out.
//!
//! A request is authenticated by `Authorization: Bearer <api token>` or by the
//! session cookie; the account's roles are read afresh on every request (a revoked
//! grant or a disabled user takes effect at once). Sign-in: local accounts
//! (`POST /auth/local`, rate limited, CSRF protected) and Entra ID (`GET
//! /auth/signin` → the tenant's authorize endpoint → `GET|POST /auth/callback`).
//! Every sign-in issues a new session id; `return_to` only ever leads to a path of
//! this site.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use archiver_service::secrecy::SecretString;
use archiver_service::{ApiScope, Principal};
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::{PageError, WebError};
use crate::pages;
use crate::session::SessionKey;
use crate::state::{MAX_PENDING, PendingEntry, WebState};

/// How a caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The session cookie of a signed-in browser.
    Session {
        /// The session id (the cookie's value).
        id: String,
        /// The session's CSRF token.
        csrf: String,
    },
    /// An API token, with its scopes.
    Token {
        /// What the token may do.
        scopes: Vec<ApiScope>,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account, with its roles as of now.
    pub principal: Principal,
    /// The account's name.
    pub name: String,
    /// How it authenticated.
    pub via: Via,
}

impl Caller {
    /// Refuses an API token without `scope` (sessions hold every scope their roles allow).
    pub fn require_scope(&self, scope: ApiScope) -> Result<(), WebError> {
        match &self.via {
            Via::Token { scopes } if !scopes.contains(&scope) => Err(WebError::Forbidden(format!(
                "this API token lacks the `{}` scope",
                scope_name(scope)
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses a cookie-authenticated write whose CSRF token (`presented`: the form
    /// field or the `X-CSRF-Token` header) is not the session's. API tokens need none.
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<(), WebError> {
        match &self.via {
            Via::Token { .. } => Ok(()),
            Via::Session { csrf, .. } => csrf_matches(csrf, presented),
        }
    }

    /// The CSRF token of the caller's session (empty for API tokens).
    pub fn csrf(&self) -> &str {
        match &self.via {
            Via::Session { csrf, .. } => csrf,
            Via::Token { .. } => "",
        }
    }
}

fn csrf_matches(expected: &str, presented: Option<&str>) -> Result<(), WebError> {
    match presented {
        Some(p) if !expected.is_empty() && bool::from(p.as_bytes().ct_eq(expected.as_bytes())) => {
            Ok(())
        }
        _ => Err(WebError::Csrf),
    }
}

fn scope_name(scope: ApiScope) -> String {
    serde_json::to_value(scope)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{scope:?}").to_lowercase())
}

/// The session id a request carries, if any.
pub(crate) fn session_id(state: &WebState, headers: &HeaderMap) -> Option<String> {
    state.sessions().id_from_cookies(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

impl FromRequestParts<WebState> for Caller {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, WebError> {
        let now = state.now();
        let service = state.service();
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let value = value.to_str().map_err(|_| WebError::Unauthenticated)?;
            let Some(token) = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
            else {
                return Err(WebError::Unauthenticated);
            };
            let secret = SecretString::from(token.trim().to_string());
            let (principal, scopes) = service
                .principal_for_api_token(&secret, now)
                .map_err(|_| WebError::Unauthenticated)?;
            let name = account_name(&principal);
            return Ok(Caller {
                principal,
                name,
                via: Via::Token { scopes },
            });
        }
        let id = session_id(state, &parts.headers).ok_or(WebError::Unauthenticated)?;
        let session = state
            .sessions()
            .get(&id, now)
            .ok_or(WebError::Unauthenticated)?;
        let user = session.user.ok_or(WebError::Unauthenticated)?;
        let principal = match service.principal_for(&user, now) {
            Ok(p) => p,
            Err(_) => {
                state.sessions().remove_user(&user);
                return Err(WebError::Unauthenticated);
            }
        };
        Ok(Caller {
            principal,
            name: user,
            via: Via::Session {
                id,
                csrf: session.csrf,
            },
        })
    }
}

/// A caller for pages: signed in, or not.
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<WebState> for MaybeCaller {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, WebError> {
        match Caller::from_request_parts(parts, state).await {
            Ok(caller) => Ok(MaybeCaller(Some(caller))),
            Err(WebError::Unauthenticated) => Ok(MaybeCaller(None)),
            Err(e) => Err(e),
        }
    }
}

fn account_name(principal: &Principal) -> String {
    match principal {
        Principal::Account(a) => a.name.clone(),
        Principal::LocalAdministrator => "local administrator".to_string(),
    }
}

/// `return_to` if it is a path of this site, else `/` (the renderer's rule, which
/// the sign-in form applies too: no scheme, no host, no `//` or backslash, no
/// control characters).
pub fn safe_return_to(candidate: &str) -> String {
    crate::render::safe_return_to(candidate).to_string()
}

/// The query of `GET /signin` and `GET /auth/signin`.
#[derive(Debug, Deserialize)]
pub struct ReturnTo {
    /// Where to go once signed in.
    #[serde(default)]
    pub return_to: Option<String>,
    /// An error to show (set by the callback).
    #[serde(default)]
    pub error: Option<String>,
}

/// The live session of the request, or a new anonymous one (and its cookie).
fn ensure_session(state: &WebState, headers: &HeaderMap) -> (String, String, Option<HeaderValue>) {
    let now = state.now();
    if let Some(id) = session_id(state, headers)
        && let Some(session) = state.sessions().get(&id, now)
    {
        return (id, session.csrf, None);
    }
    let (id, session) = state.sessions().create_anonymous(now);
    let cookie = HeaderValue::from_str(&state.sessions().set_cookie(&id)).ok();
    (id, session.csrf, cookie)
}

fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn signin_response(
    state: &WebState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
    return_to: &str,
) -> Response {
    let (_, csrf, cookie) = ensure_session(state, headers);
    let html = pages::signin_document(&csrf, error, state.inner.entra.is_some(), return_to);
    with_cookie(
        (status, pages::html_headers(), html).into_response(),
        cookie,
    )
}

/// `GET /signin`: the sign-in page.
pub async fn signin_page(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(query): Query<ReturnTo>,
) -> Response {
    let return_to = safe_return_to(query.return_to.as_deref().unwrap_or("/"));
    signin_response(
        &state,
        &headers,
        StatusCode::OK,
        query.error.as_deref(),
        &return_to,
    )
}

/// The form of `POST /auth/local`.
#[derive(Deserialize)]
pub struct LocalSignIn {
    /// The local user name.
    pub username: String,
    /// The password.
    pub password: String,
    /// The sign-in form's CSRF token.
    #[serde(default)]
    pub csrf: Option<String>,
    /// Where to go once signed in.
    #[serde(default)]
    pub return_to: Option<String>,
}

/// The client's address, when the server recorded it (`ConnectInfo`).
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// `POST /auth/local`: signs a local account in.
pub async fn local_sign_in(
    State(state): State<WebState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    Form(form): Form<LocalSignIn>,
) -> Result<Response, PageError> {
    let now = state.now();
    let return_to = safe_return_to(form.return_to.as_deref().unwrap_or("/"));
    let old = session_id(&state, &headers);
    let session = old.as_deref().and_then(|id| state.sessions().get(id, now));
    let Some(session) = session else {
        return Err(WebError::Csrf.into());
    };
    csrf_matches(&session.csrf, form.csrf.as_deref())?;
    if let Err(retry_after_secs) = state.inner.limiter.check(&form.username, address, now) {
        return Err(WebError::RateLimited { retry_after_secs }.into());
    }
    let service = state.service().clone();
    let (username, password) = (form.username.clone(), form.password);
    let outcome =
        tokio::task::spawn_blocking(move || service.sign_in_local(&username, &password, now))
            .await
            .map_err(|e| WebError::Internal(format!("the sign-in task failed: {e}")))?;
    match outcome {
        Ok(_) => {
            state.inner.limiter.succeeded(&form.username);
            Ok(signed_in(
                &state,
                old.as_deref(),
                &form.username,
                "local",
                &return_to,
            ))
        }
        Err(_) => {
            state.inner.limiter.failed(&form.username, address, now);
            Ok(signin_response(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                Some("The user name or the password is wrong, or the account is disabled."),
                &return_to,
            ))
        }
    }
}

fn signed_in(
    state: &WebState,
    old: Option<&str>,
    user: &str,
    method: &'static str,
    return_to: &str,
) -> Response {
    let (id, _) = state.sessions().sign_in(old, user, method, state.now());
    let mut response = Redirect::to(return_to).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&state.sessions().set_cookie(&id)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /auth/signin`: sends the browser to the tenant's authorize endpoint.
pub async fn entra_begin(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(query): Query<ReturnTo>,
) -> Result<Response, PageError> {
    let Some(entra) = state.inner.entra.clone() else {
        return Err(WebError::NotFound("sign-in with Microsoft is not set up here".into()).into());
    };
    let return_to = safe_return_to(query.return_to.as_deref().unwrap_or("/"));
    let (id, _, cookie) = ensure_session(&state, &headers);
    let (url, pending) = entra
        .begin(SystemTime::now())
        .await
        .map_err(WebError::SignIn)?;
    let now = state.now();
    {
        let mut table = state
            .inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        table.retain(|_, p| now - p.created < chrono::Duration::minutes(10));
        if table.len() >= MAX_PENDING {
            return Err(WebError::Internal(
                "too many sign-ins are under way; try again shortly".into(),
            )
            .into());
        }
        table.insert(
            pending.state.clone(),
            PendingEntry {
                pending,
                session: Some(SessionKey::of(&id)),
                return_to,
                created: now,
            },
        );
    }
    Ok(with_cookie(
        Redirect::to(url.as_str()).into_response(),
        cookie,
    ))
}

/// The parameters of `/auth/callback` (query or form).
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    /// The authorization code.
    #[serde(default)]
    pub code: Option<String>,
    /// The state sent with the request.
    #[serde(default)]
    pub state: Option<String>,
    /// An error code (`access_denied`, ...).
    #[serde(default)]
    pub error: Option<String>,
    /// The error's description (its AADSTS code first).
    #[serde(default)]
    pub error_description: Option<String>,
}

/// `GET /auth/callback` (response_mode=query): bound to the browser session that began it.
pub async fn entra_callback_get(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Result<Response, PageError> {
    finish_entra(state, headers, callback, true).await
}

/// `POST /auth/callback` (response_mode=form_post). A cross-site POST carries no
/// `SameSite=Lax` cookie, so this one is bound by its single-use state only.
pub async fn entra_callback_post(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(callback): Form<Callback>,
) -> Result<Response, PageError> {
    finish_entra(state, headers, callback, false).await
}

async fn finish_entra(
    state: WebState,
    headers: HeaderMap,
    callback: Callback,
    bound: bool,
) -> Result<Response, PageError> {
    let Some(entra) = state.inner.entra.clone() else {
        return Err(WebError::NotFound("sign-in with Microsoft is not set up here".into()).into());
    };
    let now = state.now();
    let key = callback.state.clone().unwrap_or_default();
    let entry = state
        .inner
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key);
    let Some(entry) = entry else {
        return Err(WebError::SignIn(
            "this sign-in is unknown or was already used; start again".into(),
        )
        .into());
    };
    if now - entry.created >= chrono::Duration::minutes(10) {
        return Err(WebError::SignIn("this sign-in took too long; start again".into()).into());
    }
    let old = session_id(&state, &headers);
    if bound && old.as_deref().map(SessionKey::of) != entry.session {
        return Err(WebError::SignIn(
            "this sign-in was begun in another browser; start again".into(),
        )
        .into());
    }
    if let Some(error) = callback.error {
        let description = callback.error_description.unwrap_or_default();
        let first_line = description
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect::<String>();
        return Ok(signin_response(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            Some(&format!(
                "Microsoft refused the sign-in ({error}): {first_line}"
            )),
            &entry.return_to,
        ));
    }
    let code = callback
        .code
        .ok_or_else(|| WebError::SignIn("the answer carried no authorization code".into()))?;
    let identity = entra
        .finish(&entry.pending, &key, &code, SystemTime::now())
        .await
        .map_err(WebError::SignIn)?;
    let service = state.service().clone();
    // A tenant configured by domain name: the sign-in already checked the token's
    // `tid` against the tenant that domain resolves to (its discovery issuer).
    let configured = entra.tenant_id();
    let is_guid = configured.len() == 36 && configured.chars().filter(|c| *c == '-').count() == 4;
    let tenant = if is_guid {
        configured
    } else {
        identity.tenant_id.clone()
    };
    let principal = tokio::task::spawn_blocking(move || {
        service.sign_in_entra(&tenant, &identity.tenant_id, &identity.object_id, now)
    })
    .await
    .map_err(|e| WebError::Internal(format!("the sign-in task failed: {e}")))?
    .map_err(|e| WebError::SignIn(archiver_service::chain(&e)))?;
    let name = account_name(&principal);
    let old = if bound { old } else { None };
    Ok(signed_in(
        &state,
        old.as_deref(),
        &name,
        "entra",
        &entry.return_to,
    ))
}

/// The form of `POST /auth/signout`.
#[derive(Deserialize)]
pub struct SignOut {
    /// The session's CSRF token.
    #[serde(default)]
    pub csrf: Option<String>,
}

/// `POST /auth/signout`: ends the session.
pub async fn sign_out(
    State(state): State<WebState>,
    caller: Caller,
    Form(form): Form<SignOut>,
) -> Result<Response, PageError> {
    caller.check_csrf(form.csrf.as_deref())?;
    if let Via::Session { id, .. } = &caller.via {
        state.sessions().remove(id);
    }
    let mut response = Redirect::to("/signin").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&state.sessions().clear_cookie()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_only_leads_to_paths_of_this_site() {
        for (input, expected) in [
            ("/", "/"),
            ("/messages/ab?x=1", "/messages/ab?x=1"),
            ("//evil.example/x", "/"),
            ("/\\evil.example", "/"),
            ("https://evil.example/", "/"),
            ("javascript:alert(1)", "/"),
            ("/a\r\nSet-Cookie: x", "/"),
            ("", "/"),
            ("evil.example", "/"),
        ] {
            assert_eq!(safe_return_to(input), expected, "{input:?}");
        }
    }
}
