//! User sign-in against the emulator over real HTTP: begin → the authorize endpoint's
//! sign-in page → its form → the answer (form_post or query) → finish, and the claims
//! name the emulator's user by object id. Validly signed tokens with a wrong audience,
//! nonce, expiry or tenant are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use m365_auth::oidc::{OidcClient, OidcSettings, ResponseMode};
use m365_auth::{AuthError, ClientCredential, Cloud};
use m365_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

/// A predicate on the error a case must produce.
type Check = fn(&AuthError) -> bool;

const REDIRECT: &str = "https://archive.example/auth/callback";

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig {
        users: 2,
        messages_per_user: 1,
        special_users: false,
        redirect_uris: vec![REDIRECT.to_owned()],
        ..Default::default()
    })
    .await
    .unwrap()
}

fn settings(emu: &Emulator) -> OidcSettings {
    OidcSettings::new(
        Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str()).unwrap(),
        emu.tenant_id().parse().unwrap(),
        emu.client_id().parse().unwrap(),
        ClientCredential::secret(emu.client_secret()),
        url::Url::parse(REDIRECT).unwrap(),
    )
}

fn client(settings: OidcSettings) -> OidcClient {
    let http = m365_auth::oidc::http_client(&Default::default()).unwrap();
    OidcClient::new(settings, http).unwrap()
}

/// A browser that shows redirects instead of following them.
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

/// The value of `attr` in the HTML element containing `marker`.
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

/// Signs `upn` in through the sign-in page; answers what reached the redirect URI.
async fn sign_in(authorize: &url::Url, upn: &str, password: &str) -> HashMap<String, String> {
    let page = browser().get(authorize.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let action = attribute(&html, "name=\"f1\"", "action").expect("a sign-in form");
    let ctx = attribute(&html, "name=\"ctx\"", "value").expect("a ctx field");
    let answer = browser()
        .post(action)
        .form(&[
            ("ctx", ctx.as_str()),
            ("username", upn),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    if answer.status() == 302 {
        let location = answer.headers()["location"].to_str().unwrap().to_owned();
        let target = url::Url::parse(&location).unwrap();
        assert!(location.starts_with(REDIRECT), "{location}");
        return target.query_pairs().into_owned().collect();
    }
    assert_eq!(answer.status(), 200);
    let html = answer.text().await.unwrap();
    assert_eq!(
        attribute(&html, "name=\"hiddenform\"", "action").as_deref(),
        Some(REDIRECT)
    );
    let mut fields = HashMap::new();
    for name in ["code", "state", "error", "error_description"] {
        if let Some(value) = attribute(&html, &format!("name=\"{name}\""), "value") {
            fields.insert(name.to_owned(), value);
        }
    }
    fields
}

#[tokio::test]
async fn a_user_signs_in_by_form_post_and_is_known_by_object_id() {
    let emu = emulator().await;
    let user = emu.users().into_iter().find(|u| u.enabled).unwrap();
    let client = client(settings(&emu));
    let (url, pending) = client.begin(SystemTime::now()).await.unwrap();
    let answer = sign_in(&url, &user.upn, &emu.user_password()).await;
    let claims = client
        .finish(
            &pending,
            &answer["state"],
            &answer["code"],
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert_eq!(claims.object_id.to_string(), user.id.to_ascii_lowercase());
    assert_eq!(claims.tenant_id.to_string(), emu.tenant_id());
    assert_eq!(
        claims
            .preferred_username
            .as_deref()
            .map(str::to_ascii_lowercase),
        Some(user.upn.to_ascii_lowercase())
    );

    // The code is single use: the emulator refuses it again, with its AADSTS code.
    let err = client
        .finish(
            &pending,
            &answer["state"],
            &answer["code"],
            SystemTime::now(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::SignInCodeRejected { .. }),
        "{err:?}"
    );
    assert_eq!(err.aadsts_code(), Some("AADSTS54005"));
}

#[tokio::test]
async fn query_mode_and_a_wrong_verifier() {
    let emu = emulator().await;
    let user = emu.users().into_iter().find(|u| u.enabled).unwrap();
    let mut s = settings(&emu);
    s.response_mode = ResponseMode::Query;
    let client = client(s);
    let (url, pending) = client.begin(SystemTime::now()).await.unwrap();
    let answer = sign_in(&url, &user.upn, &emu.user_password()).await;
    assert_eq!(answer["state"], pending.state());

    // Another sign-in's pending state carries another verifier: the state check refuses it
    // first; with its own state forged in, the emulator refuses the PKCE verifier.
    let (_, other) = client.begin(SystemTime::now()).await.unwrap();
    assert!(matches!(
        client
            .finish(&other, &answer["state"], &answer["code"], SystemTime::now())
            .await,
        Err(AuthError::SignInStateMismatch)
    ));
    let err = client
        .finish(&other, other.state(), &answer["code"], SystemTime::now())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::SignInCodeRejected { .. }),
        "{err:?}"
    );
    assert_eq!(err.aadsts_code(), Some("AADSTS501481"));
}

#[tokio::test]
async fn a_wrong_client_secret_is_named() {
    let emu = emulator().await;
    let user = emu.users().into_iter().find(|u| u.enabled).unwrap();
    let mut s = settings(&emu);
    s.credential = ClientCredential::secret("not-the-secret");
    let client = client(s);
    let (url, pending) = client.begin(SystemTime::now()).await.unwrap();
    let answer = sign_in(&url, &user.upn, &emu.user_password()).await;
    let err = client
        .finish(
            &pending,
            &answer["state"],
            &answer["code"],
            SystemTime::now(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::InvalidClientSecret { .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("not-the-secret"));
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn signed_tokens_with_wrong_claims_are_refused() {
    let emu = emulator().await;
    let user = emu.users().into_iter().find(|u| u.enabled).unwrap();
    let client = client(settings(&emu));
    let now = SystemTime::now();
    let good = json!({
        "aud": emu.client_id(), "iss": emu.oidc_issuer(), "tid": emu.tenant_id(),
        "oid": user.id, "sub": "pairwise", "nonce": "the-nonce",
        "iat": unix(now), "nbf": unix(now), "exp": unix(now) + 3600,
    });
    let token = emu.sign_id_token(good.clone()).unwrap();
    let claims = client
        .verify_id_token(&token, "the-nonce", now)
        .await
        .unwrap();
    assert_eq!(claims.object_id.to_string(), user.id.to_ascii_lowercase());

    let changed = |name: &str, value: Value| {
        let mut c = good.clone();
        c[name] = value;
        emu.sign_id_token(c).unwrap()
    };
    let cases: Vec<(String, Check)> = vec![
        (
            changed("aud", json!("44444444-3333-4444-5555-666666666666")),
            |e| matches!(e, AuthError::IdTokenAudience { .. }),
        ),
        (changed("nonce", json!("another")), |e| {
            matches!(e, AuthError::IdTokenNonce)
        }),
        (changed("exp", json!(unix(now) - 600)), |e| {
            matches!(e, AuthError::IdTokenExpired { .. })
        }),
        (
            changed("tid", json!("11111111-1111-4111-8111-111111111111")),
            |e| matches!(e, AuthError::IdTokenTenant { .. }),
        ),
        (changed("iss", json!("https://sts.windows.net/x/")), |e| {
            matches!(e, AuthError::IdTokenIssuer { .. })
        }),
    ];
    for (token, expected) in cases {
        let err = client
            .verify_id_token(&token, "the-nonce", now)
            .await
            .unwrap_err();
        assert!(expected(&err), "{err:?}");
    }
    // A token checked an hour later has expired.
    assert!(matches!(
        client
            .verify_id_token(&token, "the-nonce", now + Duration::from_secs(3600 + 301))
            .await,
        Err(AuthError::IdTokenExpired { .. })
    ));
    // Discovery and keys were fetched once for all of this.
    assert_eq!(client.metadata_fetches(), (1, 1));
}
