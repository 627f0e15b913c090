//! User sign-in over real HTTP: discovery and JWKS, the authorize endpoint and its sign-in page,
//! authorization codes (query and form_post, single use, expiry, PKCE, binding to the redirect
//! URI), the id_token (RS256 verified against the published key, its claims), the errors Entra
//! shows on its page or sends to the redirect URI, and the redirect URI registry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use m365_emulator::{Emulator, EmulatorConfig};
use rsa::signature::Verifier as _;
use serde_json::{Value, json};
use sha2::Digest as _;

const SEED: u64 = 41;
const REDIRECT: &str = "https://archive.example/auth/callback";
const LOOPBACK_REDIRECT: &str = "http://localhost:8400/auth/callback";

async fn emulator() -> Emulator {
    start_with(EmulatorConfig {
        users: 3,
        messages_per_user: 1,
        seed: SEED,
        redirect_uris: vec![REDIRECT.to_owned(), LOOPBACK_REDIRECT.to_owned()],
        ..Default::default()
    })
    .await
}

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn unescape(html: &str) -> String {
    html.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of the attribute `attr` of the element holding `marker`.
fn attribute(html: &str, marker: &str, attr: &str) -> Option<String> {
    let at = html.find(marker)?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let element = &html[start..end];
    let key = format!("{attr}=\"");
    let from = element.find(&key)? + key.len();
    let len = element[from..].find('"')?;
    Some(unescape(&element[from..from + len]))
}

/// A PKCE pair (verifier, S256 challenge).
fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
        + &URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// What an authorize request asks.
struct Authorize {
    redirect_uri: String,
    response_mode: &'static str,
    scope: &'static str,
    challenge: Option<String>,
    extra: Vec<(&'static str, String)>,
}

impl Authorize {
    fn new(challenge: &str) -> Self {
        Self {
            redirect_uri: REDIRECT.to_owned(),
            response_mode: "query",
            scope: "openid profile offline_access",
            challenge: Some(challenge.to_owned()),
            extra: Vec::new(),
        }
    }

    fn url(&self, emu: &Emulator) -> String {
        let mut url = url::Url::parse(&format!(
            "{}{}/oauth2/v2.0/authorize",
            emu.login_url(),
            emu.tenant_id()
        ))
        .unwrap();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("client_id", &emu.client_id())
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("response_mode", self.response_mode)
                .append_pair("scope", self.scope)
                .append_pair("state", "st-123")
                .append_pair("nonce", "n-456");
            if let Some(challenge) = &self.challenge {
                query
                    .append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
            for (name, value) in &self.extra {
                query.append_pair(name, value);
            }
        }
        url.into()
    }
}

/// The sign-in page of an authorize URL: (form action, ctx).
async fn sign_in_page(url: &str) -> (String, String) {
    let response = browser().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    let action = attribute(&html, "id=\"i0281\"", "action").expect("a form");
    let ctx = attribute(&html, "name=\"ctx\"", "value").expect("a ctx field");
    assert!(html.contains("name=\"username\""), "{html}");
    assert!(html.contains("name=\"password\""), "{html}");
    assert!(html.contains("id=\"idSIButton9\""), "{html}");
    (action, ctx)
}

async fn post_credentials(
    action: &str,
    ctx: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    browser()
        .post(action)
        .form(&[("ctx", ctx), ("username", user), ("password", password)])
        .send()
        .await
        .unwrap()
}

/// The query parameters of a redirect's Location.
fn location_params(response: &reqwest::Response) -> (String, Vec<(String, String)>) {
    assert_eq!(response.status(), 302, "expected a redirect");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let url = url::Url::parse(&location).unwrap();
    let params = url.query_pairs().into_owned().collect();
    let mut base = url.clone();
    base.set_query(None);
    (base.to_string(), params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn first_user(emu: &Emulator) -> m365_emulator::UserInfo {
    emu.users()
        .into_iter()
        .find(|u| u.enabled && u.mail.is_some() && !u.guest)
        .unwrap()
}

/// Signs the first user in (query mode); answers the code.
async fn code_for(emu: &Emulator, request: &Authorize) -> String {
    let (action, ctx) = sign_in_page(&request.url(emu)).await;
    let response =
        post_credentials(&action, &ctx, &first_user(emu).upn, &emu.user_password()).await;
    let (_, params) = location_params(&response);
    assert_eq!(param(&params, "state"), Some("st-123"));
    param(&params, "code").expect("a code").to_owned()
}

async fn redeem(
    emu: &Emulator,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> (u16, Value) {
    let (id, secret) = (emu.client_id(), emu.client_secret());
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("scope", "openid profile offline_access"),
    ];
    if let Some(verifier) = verifier {
        form.push(("code_verifier", verifier));
    }
    post_token(emu, &form).await
}

fn decode_segment(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

/// Verifies a JWT's RS256 signature with the key of `jwks_uri`; answers (header, claims).
async fn verify_with_jwks(emu: &Emulator, jwt: &str) -> (Value, Value) {
    let discovery: Value = client()
        .get(format!(
            "{}{}/v2.0/.well-known/openid-configuration",
            emu.login_url(),
            emu.tenant_id()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks: Value = client()
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = decode_segment(parts[0]);
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's kid is published");
    let number = |name: &str| {
        rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(key[name].as_str().unwrap()).unwrap())
    };
    let public = rsa::RsaPublicKey::new(number("n"), number("e")).unwrap();
    let signature =
        rsa::pkcs1v15::Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().as_slice())
            .unwrap();
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("the id_token verifies with the published key");
    (header, decode_segment(parts[1]))
}

#[tokio::test]
async fn discovery_names_the_tenant_and_its_keys() {
    let emu = emulator().await;
    let base = emu.login_url().as_str().trim_end_matches('/').to_owned();
    let tid = emu.tenant_id();
    for tenant in [tid.clone(), emu.tenant_domain()] {
        let doc: Value = client()
            .get(format!(
                "{base}/{tenant}/v2.0/.well-known/openid-configuration"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["issuer"], format!("{base}/{tid}/v2.0"));
        assert_eq!(doc["issuer"], emu.oidc_issuer());
        assert_eq!(
            doc["authorization_endpoint"],
            format!("{base}/{tid}/oauth2/v2.0/authorize")
        );
        assert_eq!(
            doc["token_endpoint"],
            format!("{base}/{tid}/oauth2/v2.0/token")
        );
        assert_eq!(doc["jwks_uri"], format!("{base}/{tid}/discovery/v2.0/keys"));
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!(["RS256"])
        );
        assert!(
            doc["response_types_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("code"))
        );
        for mode in ["query", "form_post"] {
            assert!(
                doc["response_modes_supported"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(mode))
            );
        }
    }
    for alias in ["organizations", "common"] {
        let doc: Value = client()
            .get(format!(
                "{base}/{alias}/v2.0/.well-known/openid-configuration"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["issuer"], format!("{base}/{{tenantid}}/v2.0"));
        assert_eq!(
            doc["authorization_endpoint"],
            format!("{base}/{alias}/oauth2/v2.0/authorize")
        );
    }
    let unknown = client()
        .get(format!(
            "{base}/fabrikam.example/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    let jwks: Value = client()
        .get(format!("{base}/{tid}/discovery/v2.0/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["e"], "AQAB");
    assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()));
    assert_eq!(key["x5t"], key["kid"]);
    let modulus = URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap();
    assert_eq!(modulus.len(), 256, "a 2048-bit key");
}

#[tokio::test]
async fn query_sign_in_gives_an_id_token_signed_with_the_published_key() {
    let emu = emulator().await;
    let (verifier, challenge) = pkce();
    let code = code_for(&emu, &Authorize::new(&challenge)).await;
    let (status, body) = redeem(&emu, &code, REDIRECT, Some(&verifier)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0));
    assert!(body["ext_expires_in"].as_u64().is_some());
    assert!(body["scope"].as_str().is_some_and(|s| s.contains("openid")));
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    let (header, claims) = verify_with_jwks(&emu, body["id_token"].as_str().unwrap()).await;
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    let user = first_user(&emu);
    // The oid is the id Graph's /users answers.
    let token = token(&emu).await;
    let users: Value = graph_get(&emu, &token, "v1.0/users")
        .await
        .json()
        .await
        .unwrap();
    let graph_id = users["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userPrincipalName"] == user.upn.as_str())
        .map(|u| u["id"].clone())
        .unwrap();
    assert_eq!(claims["oid"], graph_id);
    assert_eq!(claims["oid"], user.id.as_str());
    assert_eq!(claims["aud"], emu.client_id().as_str());
    assert_eq!(claims["iss"], emu.oidc_issuer().as_str());
    assert_eq!(claims["tid"], emu.tenant_id().as_str());
    assert_eq!(claims["nonce"], "n-456");
    assert_eq!(claims["preferred_username"], user.upn.as_str());
    assert_eq!(claims["name"], user.display_name.as_str());
    assert_eq!(claims["ver"], "2.0");
    assert!(claims.get("email").is_none(), "{claims}");
    let (iat, nbf, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["nbf"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    let now = chrono::Utc::now().timestamp();
    assert!((iat - now).abs() < 60 && nbf <= iat + 1 && exp - iat == 3600);
    let sub = claims["sub"].as_str().unwrap().to_owned();
    assert_ne!(sub, user.id);
    // The same user signing in again has the same pairwise subject.
    let (verifier, challenge) = pkce();
    let code = code_for(&emu, &Authorize::new(&challenge)).await;
    let (_, body) = redeem(&emu, &code, REDIRECT, Some(&verifier)).await;
    let (_, again) = verify_with_jwks(&emu, body["id_token"].as_str().unwrap()).await;
    assert_eq!(again["sub"], sub.as_str());
    // The user's delegated token is not an app token: the emulated Graph refuses it.
    let delegated = body["access_token"].as_str().unwrap();
    assert_eq!(graph_get(&emu, delegated, "v1.0/users").await.status(), 401);
}

#[tokio::test]
async fn form_post_delivers_code_and_state_in_an_auto_submitting_form() {
    let emu = emulator().await;
    let (verifier, challenge) = pkce();
    let mut request = Authorize::new(&challenge);
    request.response_mode = "form_post";
    let (action, ctx) = sign_in_page(&request.url(&emu)).await;
    let response =
        post_credentials(&action, &ctx, &first_user(&emu).upn, &emu.user_password()).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("location").is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("method=\"post\""), "{html}");
    assert_eq!(
        attribute(&html, "method=\"post\"", "action").as_deref(),
        Some(REDIRECT)
    );
    assert!(html.contains("submit()"), "{html}");
    assert_eq!(
        attribute(&html, "name=\"state\"", "value").as_deref(),
        Some("st-123")
    );
    let code = attribute(&html, "name=\"code\"", "value").expect("a code field");
    let (status, body) = redeem(&emu, &code, REDIRECT, Some(&verifier)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id_token"].is_string());
}

#[tokio::test]
async fn a_code_is_single_use_and_expires() {
    let emu = emulator().await;
    let (verifier, challenge) = pkce();
    let code = code_for(&emu, &Authorize::new(&challenge)).await;
    let (status, _) = redeem(&emu, &code, REDIRECT, Some(&verifier)).await;
    assert_eq!(status, 200);
    let (status, body) = redeem(&emu, &code, REDIRECT, Some(&verifier)).await;
    assert_aadsts(status, &body, 400, "invalid_grant", 54005);
    let code = code_for(&emu, &Authorize::new(&challenge)).await;
    emu.expire_authorization_codes();
    let (status, body) = redeem(&emu, &code, REDIRECT, Some(&verifier)).await;
    assert_aadsts(status, &body, 400, "invalid_grant", 70008);
    let (status, body) = redeem(&emu, "not-a-code", REDIRECT, Some(&verifier)).await;
    assert_aadsts(status, &body, 400, "invalid_grant", 70000);
}

#[tokio::test]
async fn pkce_needs_the_right_verifier() {
    let emu = emulator().await;
    let (verifier, challenge) = pkce();
    let code = code_for(&emu, &Authorize::new(&challenge)).await;
    let (other, _) = pkce();
    let (status, body) = redeem(&emu, &code, REDIRECT, Some(&other)).await;
    assert_aadsts(status, &body, 400, "invalid_grant", 501481);
    let (status, body) = redeem(&emu, &code, REDIRECT, None).await;
    assert_aadsts(status, &body, 400, "invalid_grant", 501481);
    // A failed attempt does not burn the code.
    let (status, body) = redeem(&emu, &code, REDIRECT, Some(&verifier)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_code_is_bound_to_its_redirect_uri_and_the_app_credential() {
    let emu = emulator().await;
    let (verifier, challenge) = pkce();
    let code = code_for(&emu, &Authorize::new(&challenge)).await;
    let (status, body) = redeem(
        &emu,
        &code,
        "https://archive.example/other",
        Some(&verifier),
    )
    .await;
    assert_aadsts(status, &body, 400, "invalid_grant", 50011);
    let (id, wrong) = (emu.client_id(), format!("{}x", emu.client_secret()));
    let (status, body) = post_token(
        &emu,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", id.as_str()),
            ("client_secret", wrong.as_str()),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
        ],
    )
    .await;
    assert_aadsts(status, &body, 401, "invalid_client", 7000215);
    // Basic authentication works as for client credentials.
    let response = client()
        .post(token_url(&emu, &emu.tenant_id()))
        .basic_auth(emu.client_id(), Some(emu.client_secret()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_unregistered_redirect_uri_is_shown_never_followed() {
    let emu = emulator().await;
    let (_, challenge) = pkce();
    for uri in [
        "https://evil.example/auth/callback",
        "https://archive.example/auth/callback/",
        "https://archive.example/Auth/callback",
    ] {
        let mut request = Authorize::new(&challenge);
        request.redirect_uri = uri.to_owned();
        let response = browser().get(request.url(&emu)).send().await.unwrap();
        assert!(response.headers().get("location").is_none(), "{uri}");
        assert_eq!(response.status(), 400, "{uri}");
        let html = response.text().await.unwrap();
        assert!(html.contains("AADSTS50011"), "{html}");
        assert!(!html.contains("name=\"ctx\""), "{html}");
    }
    // The port of a localhost redirect URI is not compared.
    let mut request = Authorize::new(&challenge);
    request.redirect_uri = "http://localhost:9999/auth/callback".to_owned();
    sign_in_page(&request.url(&emu)).await;
    request.redirect_uri = "http://localhost:9999/auth/other".to_owned();
    let response = browser().get(request.url(&emu)).send().await.unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn an_unknown_client_is_shown_never_redirected() {
    let emu = emulator().await;
    let (_, challenge) = pkce();
    let url = Authorize::new(&challenge)
        .url(&emu)
        .replace(&emu.client_id(), "11111111-2222-3333-4444-555555555555");
    let response = browser().get(url).send().await.unwrap();
    assert!(response.headers().get("location").is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("AADSTS700016"), "{html}");
}

#[tokio::test]
async fn other_request_errors_go_back_to_the_redirect_uri() {
    let emu = emulator().await;
    let (_, challenge) = pkce();
    let url = Authorize::new(&challenge)
        .url(&emu)
        .replace("response_type=code", "response_type=token");
    let response = browser().get(url).send().await.unwrap();
    let (base, params) = location_params(&response);
    assert_eq!(base, REDIRECT);
    assert_eq!(param(&params, "error"), Some("unsupported_response_type"));
    assert!(param(&params, "error_description").is_some_and(|d| d.starts_with("AADSTS700054:")));
    assert_eq!(param(&params, "state"), Some("st-123"));
    assert!(param(&params, "code").is_none());
    let url = Authorize::new(&challenge)
        .url(&emu)
        .replace("code_challenge_method=S256", "code_challenge_method=S512");
    let response = browser().get(url).send().await.unwrap();
    let (_, params) = location_params(&response);
    assert_eq!(param(&params, "error"), Some("invalid_request"));
    let mut request = Authorize::new(&challenge);
    request.scope = "openid https://evil.example/Files.Read";
    let response = browser().get(request.url(&emu)).send().await.unwrap();
    let (_, params) = location_params(&response);
    assert_eq!(param(&params, "error"), Some("invalid_scope"));
}

#[tokio::test]
async fn without_openid_there_is_no_id_token() {
    let emu = emulator().await;
    let (verifier, challenge) = pkce();
    let mut request = Authorize::new(&challenge);
    request.scope = "User.Read offline_access";
    let code = code_for(&emu, &request).await;
    let (status, body) = redeem(&emu, &code, REDIRECT, Some(&verifier)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("id_token").is_none(), "{body}");
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn a_bad_password_or_unknown_user_shows_the_page_again() {
    let emu = emulator().await;
    let (verifier, challenge) = pkce();
    let (action, ctx) = sign_in_page(&Authorize::new(&challenge).url(&emu)).await;
    let user = first_user(&emu);
    let wrong = format!("{}x", emu.user_password());
    for (name, password) in [
        (user.upn.as_str(), wrong.as_str()),
        (
            "nobody@contoso.onmicrosoft.com",
            emu.user_password().as_str(),
        ),
        ("", ""),
    ] {
        let response = post_credentials(&action, &ctx, name, password).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("location").is_none());
        let html = response.text().await.unwrap();
        assert!(html.contains("AADSTS50126"), "{html}");
        assert_eq!(
            attribute(&html, "name=\"ctx\"", "value").as_deref(),
            Some(ctx.as_str())
        );
    }
    // The same page then signs in, by mail address in another case.
    let mail = user.mail.clone().unwrap().to_uppercase();
    let response = post_credentials(&action, &ctx, &mail, &emu.user_password()).await;
    let (_, params) = location_params(&response);
    let code = param(&params, "code").unwrap().to_owned();
    let (_, body) = redeem(&emu, &code, REDIRECT, Some(&verifier)).await;
    let (_, claims) = verify_with_jwks(&emu, body["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["oid"], user.id.as_str());
    // A page that signed in is used up.
    let response = post_credentials(&action, &ctx, &user.upn, &emu.user_password()).await;
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn a_disabled_user_cannot_sign_in() {
    let emu = emulator().await;
    let disabled = emu
        .users()
        .into_iter()
        .find(|u| !u.enabled)
        .expect("the special users include a disabled one");
    let (_, challenge) = pkce();
    let (action, ctx) = sign_in_page(&Authorize::new(&challenge).url(&emu)).await;
    let response = post_credentials(&action, &ctx, &disabled.upn, &emu.user_password()).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("location").is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("AADSTS50057"), "{html}");
}

#[tokio::test]
async fn redirect_uris_are_registered_through_the_api_and_control() {
    let emu = start(SEED).await;
    assert!(emu.redirect_uris().is_empty());
    let (_, challenge) = pkce();
    let request = Authorize::new(&challenge);
    let response = browser().get(request.url(&emu)).send().await.unwrap();
    assert_eq!(response.status(), 400, "nothing registered yet");
    let admin = format!("{}redirect-uris", emu.admin_url());
    let added = client()
        .post(&admin)
        .json(&json!({ "uri": REDIRECT }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let listed: Value = client()
        .get(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([REDIRECT]));
    sign_in_page(&request.url(&emu)).await;
    emu.add_redirect_uri("http://127.0.0.1:7000/cb").unwrap();
    assert_eq!(emu.redirect_uris().len(), 2);
    assert!(emu.add_redirect_uri("http://archive.example/cb").is_err());
    let refused = client()
        .post(&admin)
        .json(&json!({ "uri": "not a url" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn sign_id_token_signs_any_claims_with_the_tenant_key() {
    let emu = emulator().await;
    let claims = json!({ "aud": "someone-else", "nonce": "wrong", "exp": 1 });
    let jwt = emu.sign_id_token(claims.clone()).unwrap();
    let (header, decoded) = verify_with_jwks(&emu, &jwt).await;
    assert_eq!(decoded, claims);
    assert_eq!(header["typ"], "JWT");
    assert!(emu.sign_id_token(json!("not an object")).is_err());
}

#[tokio::test]
async fn a_sign_in_may_start_under_organizations() {
    let emu = emulator().await;
    let (verifier, challenge) = pkce();
    let url = Authorize::new(&challenge)
        .url(&emu)
        .replacen(&emu.tenant_id(), "organizations", 1);
    let (action, ctx) = sign_in_page(&url).await;
    assert!(action.contains("/organizations/"), "{action}");
    let response =
        post_credentials(&action, &ctx, &first_user(&emu).upn, &emu.user_password()).await;
    let (_, params) = location_params(&response);
    let code = param(&params, "code").unwrap().to_owned();
    let (status, body) = redeem(&emu, &code, REDIRECT, Some(&verifier)).await;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = verify_with_jwks(&emu, body["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["iss"], emu.oidc_issuer().as_str());
}

fn authorize_field() -> impl proptest::strategy::Strategy<Value = (String, String)> {
    use proptest::prelude::*;
    let key = prop_oneof![
        Just("client_id".to_owned()),
        Just("response_type".to_owned()),
        Just("redirect_uri".to_owned()),
        Just("response_mode".to_owned()),
        Just("scope".to_owned()),
        Just("code_challenge".to_owned()),
        Just("code_challenge_method".to_owned()),
        Just("prompt".to_owned()),
        "[a-z_]{1,12}",
    ];
    let value = prop_oneof![
        Just(REDIRECT.to_owned()),
        Just("https://evil.example/cb".to_owned()),
        Just("code".to_owned()),
        Just("form_post".to_owned()),
        Just("openid".to_owned()),
        "\\PC{0,50}",
    ];
    (key, value)
}

#[test]
fn arbitrary_authorize_requests_never_redirect_elsewhere() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let emu = runtime.block_on(emulator());
    let id = emu.client_id();
    let base = format!(
        "{}{}/oauth2/v2.0/authorize",
        emu.login_url(),
        emu.tenant_id()
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(
                proptest::collection::vec(authorize_field(), 0..8),
                any::<bool>(),
            ),
            |(fields, with_client)| {
                let mut url = url::Url::parse(&base).unwrap();
                if with_client {
                    url.query_pairs_mut().append_pair("client_id", &id);
                }
                url.query_pairs_mut().extend_pairs(&fields);
                let response = runtime.block_on(browser().get(url).send()).unwrap();
                let status = response.status().as_u16();
                prop_assert!(
                    status == 200 || status == 302 || status == 400,
                    "{}",
                    status
                );
                if let Some(location) = response.headers().get("location") {
                    let location = location.to_str().unwrap();
                    prop_assert!(location.starts_with(REDIRECT), "{}", location);
                    prop_assert!(
                        !location.contains("?code=") && !location.contains("&code="),
                        "{}",
                        location
                    );
                }
                // A page with a sign-in form exists only for a registered redirect URI.
                let html = runtime.block_on(response.text()).unwrap();
                if html.contains("name=\"ctx\"") {
                    prop_assert!(
                        fields
                            .iter()
                            .any(|(k, v)| k == "redirect_uri" && v == REDIRECT)
                    );
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn arbitrary_sign_in_forms_never_give_a_code() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let emu = runtime.block_on(emulator());
    let (_, challenge) = pkce();
    let (action, ctx) = runtime.block_on(sign_in_page(&Authorize::new(&challenge).url(&emu)));
    let password = emu.user_password();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    });
    let text = || prop_oneof![Just(String::new()), "\\PC{0,40}"];
    runner
        .run(
            &(text(), text(), any::<bool>()),
            |(user, guess, real_ctx)| {
                prop_assume!(guess != password);
                let ctx = if real_ctx { ctx.clone() } else { user.clone() };
                let response = runtime.block_on(post_credentials(&action, &ctx, &user, &guess));
                prop_assert!(response.headers().get("location").is_none());
                let status = response.status().as_u16();
                prop_assert!(status == 200 || status == 400, "{}", status);
                Ok(())
            },
        )
        .unwrap();
}
