//! The authorize endpoint and the sign-in page. `GET|POST /{tenant}/oauth2/v2.0/authorize`
//! checks the request as Entra does (what cannot be trusted to redirect, an unknown app or an
//! unregistered redirect URI, is shown on an error page; everything else goes back to the
//! redirect URI as `error`/`error_description`/`state`), then serves a sign-in form posting to
//! `/{tenant}/login` with a hidden `ctx`. A good user name and password end in an authorization
//! code delivered as the request asked (`query`, `fragment`, `form_post`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::oidc::{Challenge, PendingSignIn, ResponseMode};
use super::{form_of, is_multi_tenant_alias};
use crate::state::AppState;

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A complete HTML page, never cached, never framed.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n{body}\n</body></html>\n",
        escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store, no-cache"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    response
}

/// The AADSTS text with Entra's trailing ids.
fn aadsts_text(code: u32, description: &str) -> String {
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ");
    format!(
        "AADSTS{code}: {description} Trace ID: {} Correlation ID: {} Timestamp: {now}",
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4()
    )
}

/// The error page shown instead of redirecting. Microsoft's docs do not say which status its
/// page has; 400 lets a client that reads no HTML notice.
fn error_page(code: u32, description: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Sign in to your account",
        &format!(
            "<h1>Sorry, but we're having trouble signing you in.</h1>\n<p id=\"error\">{}</p>",
            escape(&aadsts_text(code, description))
        ),
    )
}

/// An error sent to the (registered) redirect URI.
struct Redirected {
    error: &'static str,
    code: u32,
    description: String,
}

impl Redirected {
    fn new(error: &'static str, code: u32, description: impl Into<String>) -> Self {
        Self {
            error,
            code,
            description: description.into(),
        }
    }
}

/// Delivers response parameters to the redirect URI as `mode` says.
fn deliver(redirect_uri: &str, mode: ResponseMode, params: &[(&str, &str)]) -> Response {
    match mode {
        ResponseMode::FormPost => {
            let fields: String = params
                .iter()
                .map(|(name, value)| {
                    format!(
                        "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                        escape(name),
                        escape(value)
                    )
                })
                .collect();
            page(
                StatusCode::OK,
                "Working...",
                &format!(
                    "<form method=\"post\" name=\"hiddenform\" action=\"{}\">\n{fields}<noscript><p>Script is disabled. Click Submit to continue.</p><input type=\"submit\" value=\"Submit\"></noscript>\n</form>\n<script>document.forms[0].submit();</script>",
                    escape(redirect_uri)
                ),
            )
        }
        ResponseMode::Query | ResponseMode::Fragment => {
            let Ok(mut target) = url::Url::parse(redirect_uri) else {
                return error_page(50011, "The redirect URI is not a valid URL.");
            };
            if mode == ResponseMode::Query {
                target.query_pairs_mut().extend_pairs(params);
            } else {
                let fragment: String = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(params)
                    .finish();
                target.set_fragment(Some(&fragment));
            }
            let mut response = StatusCode::FOUND.into_response();
            if let Ok(location) = header::HeaderValue::from_str(target.as_str()) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
    }
}

fn deliver_error(
    redirect_uri: &str,
    mode: ResponseMode,
    state: Option<&str>,
    error: &Redirected,
) -> Response {
    let description = aadsts_text(error.code, &error.description);
    let mut params = vec![
        ("error", error.error),
        ("error_description", description.as_str()),
    ];
    if let Some(state) = state {
        params.push(("state", state));
    }
    deliver(redirect_uri, mode, &params)
}

/// `GET /{tenant}/oauth2/v2.0/authorize?...`
pub(super) async fn authorize_by_get(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    authorize(&state, &tenant, &params)
}

/// `POST /{tenant}/oauth2/v2.0/authorize` with the parameters as a form.
pub(super) async fn authorize_by_post(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    authorize(&state, &tenant, &form_of(&headers, &body))
}

fn authorize(state: &AppState, tenant: &str, params: &HashMap<String, String>) -> Response {
    let identity = &state.identity;
    let field = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    if !identity.is_our_tenant(tenant) && !is_multi_tenant_alias(tenant) {
        return error_page(
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    let Some(client_id) = field("client_id") else {
        return error_page(
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    if !client_id.eq_ignore_ascii_case(&identity.client_id) {
        let error = super::unknown_client(identity, client_id);
        return error_page(error.code, &error.description);
    }
    // Docs: redirect_uri is optional when the app has one; the emulator asks for it (every
    // library sends it) rather than guess which registered URI Entra would pick.
    let Some(redirect_uri) = field("redirect_uri") else {
        return error_page(
            900144,
            "The request body must contain the following parameter: 'redirect_uri'.",
        );
    };
    if !state.oidc.is_registered(redirect_uri) {
        return error_page(
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this.",
                identity.client_id
            ),
        );
    }
    let request_state = field("state");
    let (mode, mode_error) = match field("response_mode") {
        None | Some("query") => (ResponseMode::Query, None),
        Some("fragment") => (ResponseMode::Fragment, None),
        Some("form_post") => (ResponseMode::FormPost, None),
        Some(other) => (
            ResponseMode::Query,
            Some(Redirected::new(
                "invalid_request",
                900144,
                format!(
                    "The response_mode '{other}' is not supported; use query, fragment or form_post."
                ),
            )),
        ),
    };
    let fail = |error: Redirected| deliver_error(redirect_uri, mode, request_state, &error);
    if let Some(error) = mode_error {
        return fail(error);
    }
    match field("response_type") {
        Some("code") => {}
        None => {
            return fail(Redirected::new(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'response_type'.",
            ));
        }
        Some(other) => {
            return fail(Redirected::new(
                "unsupported_response_type",
                700054,
                format!(
                    "response_type '{other}' is not enabled for the application. The application registration allows the authorization code flow only."
                ),
            ));
        }
    }
    let scopes: Vec<String> = field("scope")
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return fail(Redirected::new(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        ));
    }
    if let Some(bad) = scopes.iter().find(|s| !identity.is_delegated_scope(s)) {
        return fail(Redirected::new(
            "invalid_scope",
            70011,
            format!(
                "The provided value for the input parameter 'scope' is not valid. The scope '{bad}' does not exist."
            ),
        ));
    }
    let challenge = match (field("code_challenge"), field("code_challenge_method")) {
        (None, None) => None,
        (None, Some(_)) => {
            return fail(Redirected::new(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'code_challenge'.",
            ));
        }
        (Some(challenge), Some("S256")) => {
            if challenge.len() != 43 {
                return fail(Redirected::new(
                    "invalid_request",
                    501491,
                    "Invalid size of Code_Challenge parameter.",
                ));
            }
            Some(Challenge::S256(challenge.to_owned()))
        }
        (Some(challenge), None | Some("plain")) => {
            if !(43..=128).contains(&challenge.len()) {
                return fail(Redirected::new(
                    "invalid_request",
                    501491,
                    "Invalid size of Code_Challenge parameter.",
                ));
            }
            Some(Challenge::Plain(challenge.to_owned()))
        }
        (Some(_), Some(other)) => {
            // Docs are silent on the code of this case: AADSTS9002313 is Entra's malformed request.
            return fail(Redirected::new(
                "invalid_request",
                9002313,
                format!(
                    "Invalid request. The code_challenge_method '{other}' is not supported; use S256 or plain."
                ),
            ));
        }
    };
    if field("prompt") == Some("none") {
        return fail(Redirected::new(
            "login_required",
            50058,
            "A silent sign-in request was sent but no user is signed in.",
        ));
    }
    let pending = PendingSignIn {
        tenant_path: tenant.to_owned(),
        client_id: identity.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        response_mode: mode,
        scopes,
        state: request_state.map(str::to_owned),
        nonce: field("nonce").map(str::to_owned),
        challenge,
        client_info: field("client_info") == Some("1"),
        created: Instant::now(),
    };
    let login_hint = field("login_hint").unwrap_or_default().to_owned();
    let tenant_path = pending.tenant_path.clone();
    let ctx = state.oidc.begin(pending);
    sign_in_page(state, &tenant_path, &ctx, &login_hint, None)
}

/// The sign-in form, with an error line after a failed attempt.
fn sign_in_page(
    state: &AppState,
    tenant_path: &str,
    ctx: &str,
    username: &str,
    error: Option<(u32, &str, &str)>,
) -> Response {
    let base = state
        .identity
        .login_url
        .get()
        .map_or_else(String::new, |u| u.as_str().trim_end_matches('/').to_owned());
    let action = format!("{base}/{tenant_path}/login");
    let error_html = error.map_or_else(String::new, |(code, friendly, description)| {
        format!(
            "<div id=\"usernameError\" role=\"alert\">{}</div>\n<p id=\"error\">{}</p>\n",
            escape(friendly),
            escape(&aadsts_text(code, description))
        )
    });
    page(
        StatusCode::OK,
        "Sign in to your account",
        &format!(
            "<h1>Sign in</h1>\n{error_html}<form method=\"post\" name=\"f1\" id=\"i0281\" action=\"{}\">\n<input type=\"hidden\" name=\"ctx\" value=\"{}\">\n<label for=\"i0116\">Email, phone, or Skype</label>\n<input type=\"email\" name=\"username\" id=\"i0116\" autocomplete=\"username\" value=\"{}\">\n<label for=\"i0118\">Password</label>\n<input type=\"password\" name=\"password\" id=\"i0118\" autocomplete=\"current-password\">\n<input type=\"submit\" id=\"idSIButton9\" value=\"Sign in\">\n</form>",
            escape(&action),
            escape(ctx),
            escape(username)
        ),
    )
}

/// `POST /{tenant}/login`: `ctx`, `username`, `password`.
pub(super) async fn sign_in(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_of(&headers, &body);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let ctx = field("ctx");
    let Some(pending) = state.oidc.pending(ctx) else {
        return error_page(
            9002313,
            "Invalid request. The sign-in session is unknown or has expired; start the sign-in again.",
        );
    };
    if !pending.tenant_path.eq_ignore_ascii_case(&tenant) {
        return error_page(
            9002313,
            "Invalid request. The sign-in was started for another tenant.",
        );
    }
    let username = field("username").trim();
    let password = field("password");
    let user = state.tenant.users().into_iter().find(|user| {
        user.upn.eq_ignore_ascii_case(username)
            || user
                .mail
                .as_deref()
                .is_some_and(|mail| mail.eq_ignore_ascii_case(username))
    });
    let password_ok = super::same_secret(password, state.oidc.user_password());
    let Some(user) = user.filter(|_| password_ok) else {
        // Unknown user and wrong password answer alike, as Entra's AADSTS50126 does.
        return sign_in_page(
            &state,
            &pending.tenant_path,
            ctx,
            username,
            Some((
                50126,
                "Your account or password is incorrect.",
                "Error validating credentials due to invalid username or password.",
            )),
        );
    };
    if !user.enabled {
        return sign_in_page(
            &state,
            &pending.tenant_path,
            ctx,
            username,
            Some((
                50057,
                "Your account has been locked. Contact your support person to unlock it, then try again.",
                "The user account is disabled. The user object in Active Directory backing this account has been disabled.",
            )),
        );
    }
    let code = state.oidc.issue_code(ctx, &pending, &user.id);
    let client_info = super::oidc::client_info(&state, &user.id);
    let mut params = vec![("code", code.as_str())];
    if pending.client_info {
        params.push(("client_info", client_info.as_str()));
    }
    if let Some(request_state) = &pending.state {
        params.push(("state", request_state.as_str()));
    }
    deliver(&pending.redirect_uri, pending.response_mode, &params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }
}
