//! Redeeming an authorization code at the token endpoint (`grant_type=authorization_code`
//! with the PKCE verifier and the app's secret or signed assertion), and the mapping of
//! the authority's answers to [`AuthError`]: refusals keep their AADSTS code, as on the
//! client-credentials path. No retry: a code is single use, the user signs in again.

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::jwt::MAX_ID_TOKEN_BYTES;
use crate::assertion::sign_client_assertion;
use crate::wire::{self, Refusal, TokenFailure};
use crate::{AuthError, ClientCredential, hint_for};

/// What the redemption needs to know.
pub(crate) struct Redemption<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) token_endpoint: &'a Url,
    pub(crate) client_id: &'a str,
    pub(crate) tenant: &'a str,
    pub(crate) credential: &'a ClientCredential,
    pub(crate) redirect_uri: &'a Url,
    pub(crate) scope: &'a str,
    pub(crate) timeout: Duration,
}

/// Posts the code and answers the `id_token` (a secret: whoever holds it is the user, for a while).
pub(crate) async fn redeem(
    request: &Redemption<'_>,
    code: &str,
    code_verifier: &SecretString,
    now: SystemTime,
) -> Result<SecretString, AuthError> {
    let authority = request.token_endpoint.origin().ascii_serialization();
    let mut form: Vec<(&str, String)> = vec![
        ("client_id", request.client_id.to_owned()),
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.to_owned()),
        ("redirect_uri", request.redirect_uri.as_str().to_owned()),
        ("code_verifier", code_verifier.expose_secret().to_owned()),
        ("scope", request.scope.to_owned()),
    ];
    let secret = match request.credential {
        ClientCredential::Secret(secret) => {
            form.push(("client_secret", secret.expose_secret().to_owned()));
            Some(secret)
        }
        ClientCredential::Certificate(cert) => {
            let assertion = sign_client_assertion(
                cert,
                request.client_id,
                request.token_endpoint.as_str(),
                now,
            )?;
            form.push((
                "client_assertion_type",
                wire::JWT_BEARER_ASSERTION_TYPE.to_owned(),
            ));
            form.push(("client_assertion", assertion.expose_secret().to_owned()));
            None
        }
    };
    let response = request
        .http
        .post(request.token_endpoint.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(request.timeout)
        .form(&form)
        .send()
        .await;
    drop(form);
    let response = response.map_err(|e| transport_error(&authority, &e, request.timeout))?;
    let status = response.status().as_u16();
    let body = super::read_limited(response, &authority, request.timeout).await?;
    if status != 200 {
        return Err(match wire::parse_token_response(status, &body) {
            Err(TokenFailure::Refused(refusal)) => {
                refusal_error(refusal, request, secret.map(|s| s.expose_secret()))
            }
            Err(TokenFailure::Server { status }) => AuthError::ServiceUnavailable {
                authority,
                status,
                attempts: 1,
            },
            Err(TokenFailure::Malformed { status, reason }) => AuthError::MalformedResponse {
                authority,
                status,
                reason,
            },
            Ok(_) => AuthError::MalformedResponse {
                authority,
                status,
                reason: "a token answer with a status other than 200".into(),
            },
        });
    }
    id_token_of(&body).map_err(|reason| AuthError::MalformedResponse {
        authority,
        status,
        reason: reason.to_owned(),
    })
}

/// The `id_token` of a successful answer.
fn id_token_of(body: &[u8]) -> Result<SecretString, &'static str> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err("the answer to the code redemption is not a JSON object");
    };
    match map.get("id_token") {
        Some(Value::String(token)) if token.len() <= MAX_ID_TOKEN_BYTES && !token.is_empty() => {
            Ok(SecretString::from(token.clone()))
        }
        Some(Value::String(_)) => Err("the `id_token` is empty or longer than 16 KiB"),
        Some(_) => Err("the `id_token` is not a string"),
        None => Err("the answer has no `id_token` (was the `openid` scope granted?)"),
    }
}

/// An OAuth refusal of the code redemption as an [`AuthError`] keeping its AADSTS code.
fn refusal_error(refusal: Refusal, request: &Redemption<'_>, secret: Option<&str>) -> AuthError {
    let code = refusal.code();
    let mut detail = refusal.detail();
    if let Some(secret) = secret.filter(|s| !s.is_empty())
        && detail.contains(secret)
    {
        detail = detail.replace(secret, "[redacted]");
    }
    // The credential and registration codes are those of the client-credentials path;
    // the rest are the authorization-code grant's own.
    match refusal.aadsts {
        Some(7000215) => AuthError::InvalidClientSecret { code, detail },
        Some(7000222) => AuthError::ExpiredClientSecret { code, detail },
        Some(90002 | 900023 | 90072) => AuthError::UnknownTenant {
            tenant: request.tenant.to_owned(),
            code,
            detail,
        },
        Some(700016) => AuthError::UnknownApplication {
            client_id: request.client_id.to_owned(),
            code,
            detail,
        },
        Some(7000112 | 7000113) => AuthError::ApplicationDisabled { code, detail },
        Some(700027 | 700024 | 700021 | 700023 | 7000274 | 5000811 | 50027) => {
            AuthError::CertificateRejected { code, detail }
        }
        Some(70011 | 700022 | 500011 | 1002012) => AuthError::InvalidScope {
            scope: request.scope.to_owned(),
            code,
            detail,
        },
        // The docs do not say which code a PKCE mismatch gets: both 50148 and 501481 are
        // seen in public reports.
        Some(70000 | 70008 | 54005 | 50148 | 501481 | 50011 | 9002313) => {
            AuthError::SignInCodeRejected { code, detail }
        }
        None if refusal.error == "invalid_grant" => AuthError::SignInCodeRejected { code, detail },
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

/// A failed request as an [`AuthError`] (timeouts, TLS, the rest as unreachable).
pub(crate) fn transport_error(
    authority: &str,
    error: &reqwest::Error,
    timeout: Duration,
) -> AuthError {
    let authority = authority.to_owned();
    if error.is_timeout() {
        return AuthError::Timeout {
            authority,
            after: timeout,
        };
    }
    let mut reason = error.to_string();
    let mut tls = false;
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        let part = inner.to_string();
        let lower = part.to_ascii_lowercase();
        tls |= lower.contains("certificate") || lower.contains("tls handshake");
        if !reason.contains(&part) {
            reason.push_str(": ");
            reason.push_str(&part);
        }
        source = inner.source();
    }
    if tls {
        AuthError::Tls { authority, reason }
    } else {
        AuthError::Unreachable { authority, reason }
    }
}

/// Maps an `error` / `error_description` pair delivered to the redirect URI.
pub(crate) fn authorize_error(error: &str, description: Option<&str>) -> AuthError {
    let body = serde_json::json!({
        "error": error,
        "error_description": description.unwrap_or_default(),
    });
    let refusal = match wire::parse_token_response(400, body.to_string().as_bytes()) {
        Err(TokenFailure::Refused(refusal)) => refusal,
        _ => Refusal {
            status: 400,
            error: error
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect(),
            ..Refusal::default()
        },
    };
    AuthError::SignInRefused {
        code: refusal.code(),
        detail: refusal.detail(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_token_must_be_present_and_bounded() {
        assert!(id_token_of(br#"{"id_token":"a.b.c","access_token":"x"}"#).is_ok());
        for bad in [
            &br#"{"access_token":"x"}"#[..],
            br#"{"id_token":5}"#,
            br#"{"id_token":""}"#,
            b"[]",
            b"",
        ] {
            assert!(id_token_of(bad).is_err());
        }
        let long = format!(r#"{{"id_token":"{}"}}"#, "a".repeat(MAX_ID_TOKEN_BYTES + 1));
        assert!(id_token_of(long.as_bytes()).is_err());
    }

    #[test]
    fn authorize_errors_keep_their_code() {
        let err = authorize_error(
            "invalid_client",
            Some("AADSTS650052: The app needs access to a service.\r\nTrace ID: x"),
        );
        assert_eq!(err.aadsts_code(), Some("AADSTS650052"));
        assert!(!err.is_credential_refused());
        let err = authorize_error("access_denied", None);
        assert_eq!(err.aadsts_code(), Some("access_denied"));
        let err = authorize_error("consent_required", Some("AADSTS65001: consent"));
        assert!(err.to_string().contains("consent"), "{err}");
    }
}
