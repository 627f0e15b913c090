//! The identity platform over real HTTP: secrets (form and Basic), certificate assertions (RS256
//! with `x5t`, PS256 with `x5t#S256`), every AADSTS error with its documented shape, replayed
//! `jti`, discovery, and Graph's refusal of missing, expired, revoked and foreign tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const SEED: u64 = 21;

fn secret_form<'a>(id: &'a str, secret: &'a str, scope: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
        ("scope", scope),
    ]
}

#[tokio::test]
async fn secret_in_form_gives_a_bearer_token_graph_accepts() {
    let emu = start(SEED).await;
    let (id, secret, scope) = (emu.client_id(), emu.client_secret(), graph_scope(&emu));
    let (status, body) = post_token(&emu, &secret_form(&id, &secret, &scope)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert!(body.get("refresh_token").is_none());
    let token = body["access_token"].as_str().unwrap();
    let users = graph_get(&emu, token, "v1.0/users").await;
    assert_eq!(users.status(), 200);
    // The tenant's domain works in place of its id, and the Graph resource may be named globally.
    let (status, body) = post_token_to(
        &emu,
        &emu.tenant_domain().to_uppercase(),
        &secret_form(&id, &secret, "https://graph.microsoft.com/.default"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(emu.stats().await.token_requests, 2);
}

#[tokio::test]
async fn secret_as_http_basic_is_accepted_and_checked() {
    let emu = start(SEED).await;
    let scope = graph_scope(&emu);
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", scope.as_str()),
    ];
    let send = |secret: String| {
        let url = token_url(&emu, &emu.tenant_id());
        let id = emu.client_id();
        async move {
            client()
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    let ok = send(emu.client_secret()).await;
    assert_eq!(ok.status(), 200);
    let bad = send(format!("{}x", emu.client_secret())).await;
    let status = bad.status().as_u16();
    let body: Value = bad.json().await.unwrap();
    assert_aadsts(status, &body, 401, "invalid_client", 7000215);
}

async fn certificate_token(alg: Alg) {
    let emu = start(SEED).await;
    let (id, scope, cert) = (emu.client_id(), graph_scope(&emu), emu.certificate_pem());
    let jwt = Assertion::for_emulator(&emu, alg).sign(&cert);
    let (status, body) = post_token(&emu, &assertion_form(&id, &scope, &jwt)).await;
    assert_eq!(status, 200, "{alg:?}: {body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(graph_get(&emu, token, "v1.0/users").await.status(), 200);
    // The same assertion again: its jti was used.
    let (status, body) = post_token(&emu, &assertion_form(&id, &scope, &jwt)).await;
    let description = assert_aadsts(status, &body, 401, "invalid_client", 50013);
    assert!(description.contains("already used"), "{description}");
}

#[tokio::test]
async fn certificate_assertion_rs256_with_x5t_then_replay_is_refused() {
    certificate_token(Alg::Rs256).await;
}

#[tokio::test]
async fn certificate_assertion_ps256_with_x5t_s256_then_replay_is_refused() {
    certificate_token(Alg::Ps256).await;
}

#[tokio::test]
async fn assertion_checks_signature_audience_issuer_and_time() {
    let emu = start(SEED).await;
    let (id, scope, cert) = (emu.client_id(), graph_scope(&emu), emu.certificate_pem());
    let other = start(SEED + 1).await; // another app: another key

    // Signed by another key while naming the registered certificate: 700027.
    for alg in [Alg::Rs256, Alg::Ps256] {
        let mut assertion = Assertion::for_emulator(&emu, alg);
        assertion.key_pem = other.private_key_pem();
        let (status, body) =
            post_token(&emu, &assertion_form(&id, &scope, &assertion.sign(&cert))).await;
        assert_aadsts(status, &body, 401, "invalid_client", 700027);
    }
    // Naming a certificate that is not registered: 700027 as well.
    let foreign = Assertion::for_emulator(&emu, Alg::Ps256).sign(&other.certificate_pem());
    let (status, body) = post_token(&emu, &assertion_form(&id, &scope, &foreign)).await;
    let description = assert_aadsts(status, &body, 401, "invalid_client", 700027);
    assert!(description.contains("key was not found"), "{description}");
    // A tampered payload breaks the signature.
    let jwt = Assertion::for_emulator(&emu, Alg::Rs256).sign(&cert);
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    parts[1].insert(0, 'e');
    parts[1].pop();
    let (status, body) = post_token(&emu, &assertion_form(&id, &scope, &parts.join("."))).await;
    assert!(status == 401 || status == 400, "{body}");

    // Wrong audience.
    let mut assertion = Assertion::for_emulator(&emu, Alg::Ps256);
    assertion.aud = "https://login.microsoftonline.com/other/oauth2/v2.0/token".into();
    let (status, body) =
        post_token(&emu, &assertion_form(&id, &scope, &assertion.sign(&cert))).await;
    assert_aadsts(status, &body, 401, "invalid_client", 700212);
    // iss/sub not the client id.
    let mut assertion = Assertion::for_emulator(&emu, Alg::Ps256);
    assertion.sub = "someone-else".into();
    let (status, body) =
        post_token(&emu, &assertion_form(&id, &scope, &assertion.sign(&cert))).await;
    assert_aadsts(status, &body, 401, "invalid_client", 700021);
    // Expired long ago, and not valid before an hour from now.
    let now = chrono::Utc::now().timestamp();
    let mut assertion = Assertion::for_emulator(&emu, Alg::Rs256);
    (assertion.nbf, assertion.exp) = (now - 3600, now - 1800);
    let (status, body) =
        post_token(&emu, &assertion_form(&id, &scope, &assertion.sign(&cert))).await;
    assert_aadsts(status, &body, 401, "invalid_client", 700024);
    let mut assertion = Assertion::for_emulator(&emu, Alg::Rs256);
    (assertion.nbf, assertion.exp) = (now + 3600, now + 4000);
    let (status, body) =
        post_token(&emu, &assertion_form(&id, &scope, &assertion.sign(&cert))).await;
    assert_aadsts(status, &body, 401, "invalid_client", 700024);
    // A small clock skew is tolerated.
    let mut assertion = Assertion::for_emulator(&emu, Alg::Rs256);
    (assertion.nbf, assertion.exp) = (now + 60, now + 600);
    let (status, body) =
        post_token(&emu, &assertion_form(&id, &scope, &assertion.sign(&cert))).await;
    assert_eq!(status, 200, "{body}");
    // Not a JWT at all.
    let (status, body) = post_token(&emu, &assertion_form(&id, &scope, "not-a-jwt")).await;
    assert_aadsts(status, &body, 400, "invalid_request", 50027);
    other.shutdown().await;
}

#[tokio::test]
async fn each_documented_aadsts_error() {
    let emu = start(SEED).await;
    let (id, secret, scope) = (emu.client_id(), emu.client_secret(), graph_scope(&emu));
    let unknown_app = uuid::Uuid::new_v4().to_string();
    let expired = emu.expired_client_secret();
    let wrong = format!("{secret}x");

    let (s, b) = post_token(&emu, &secret_form(&id, &wrong, &scope)).await;
    assert_aadsts(s, &b, 401, "invalid_client", 7000215);
    let (s, b) = post_token(&emu, &secret_form(&id, &expired, &scope)).await;
    assert_aadsts(s, &b, 401, "invalid_client", 7000222);
    let (s, b) = post_token(&emu, &secret_form(&unknown_app, &secret, &scope)).await;
    let description = assert_aadsts(s, &b, 400, "unauthorized_client", 700016);
    assert!(description.contains(&unknown_app), "{description}");
    let (s, b) = post_token_to(
        &emu,
        "fabrikam.onmicrosoft.com",
        &secret_form(&id, &secret, &scope),
    )
    .await;
    assert_aadsts(s, &b, 400, "invalid_request", 90002);
    let (s, b) = post_token_to(
        &emu,
        &uuid::Uuid::new_v4().to_string(),
        &secret_form(&id, &secret, &scope),
    )
    .await;
    assert_aadsts(s, &b, 400, "invalid_request", 90002);
    for bad_scope in [
        "https://graph.microsoft.com/Mail.Read",
        "https://outlook.office.com/.default",
        "openid",
    ] {
        let (s, b) = post_token(&emu, &secret_form(&id, &secret, bad_scope)).await;
        assert_aadsts(s, &b, 400, "invalid_scope", 70011);
    }
    let (s, b) = post_token(
        &emu,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("scope", &scope),
        ],
    )
    .await;
    assert_aadsts(s, &b, 400, "invalid_client", 7000218);
    let (s, b) = post_token(
        &emu,
        &[
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", &scope),
        ],
    )
    .await;
    let description = assert_aadsts(s, &b, 400, "invalid_request", 900144);
    assert!(description.contains("'grant_type'"), "{description}");
    let (s, b) = post_token(
        &emu,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await;
    let description = assert_aadsts(s, &b, 400, "invalid_request", 900144);
    assert!(description.contains("'scope'"), "{description}");
    let (s, b) = post_token(
        &emu,
        &[("grant_type", "client_credentials"), ("scope", &scope)],
    )
    .await;
    assert_aadsts(s, &b, 400, "invalid_request", 900144);
    // The token endpoint only takes POST.
    let response = client()
        .get(token_url(&emu, &emu.tenant_id()))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_aadsts(
        status,
        &response.json().await.unwrap(),
        400,
        "invalid_request",
        900561,
    );
    // A JSON body is not a form: the parameters are missing.
    let response = client()
        .post(token_url(&emu, &emu.tenant_id()))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_aadsts(
        status,
        &response.json().await.unwrap(),
        400,
        "invalid_request",
        900144,
    );
    // Secrets never come back in errors.
    let (_, b) = post_token(&emu, &secret_form(&id, &wrong, &scope)).await;
    assert!(!b.to_string().contains(&wrong));
}

#[tokio::test]
async fn discovery_document_names_the_token_endpoint() {
    let emu = start(SEED).await;
    let url = format!(
        "{}{}/v2.0/.well-known/openid-configuration",
        emu.login_url(),
        emu.tenant_domain()
    );
    let body: Value = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["token_endpoint"], token_url(&emu, &emu.tenant_id()));
    assert!(body["issuer"].as_str().unwrap().contains(&emu.tenant_id()));
    let unknown = format!(
        "{}contoso.invalid/v2.0/.well-known/openid-configuration",
        emu.login_url()
    );
    assert_eq!(client().get(unknown).send().await.unwrap().status(), 400);
}

async fn assert_invalid_token(response: reqwest::Response) {
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let request_id = response.headers()["request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["code"], "InvalidAuthenticationToken",
        "{body}"
    );
    assert_eq!(
        body["error"]["innerError"]["request-id"],
        request_id.as_str()
    );
    assert!(
        body["error"]["innerError"]["date"]
            .as_str()
            .is_some_and(|d| d.len() >= 19)
    );
}

#[tokio::test]
async fn graph_refuses_missing_expired_revoked_and_foreign_tokens() {
    let emu = start(SEED).await;
    // Missing and garbage.
    let url = format!("{}v1.0/users", emu.graph_url());
    assert_invalid_token(client().get(&url).send().await.unwrap()).await;
    assert_invalid_token(graph_get(&emu, "not.a.token", "v1.0/users").await).await;
    // Foreign: a token of another emulator of the same seed (same tenant id and app id).
    let twin = start(SEED).await;
    assert_eq!(twin.tenant_id(), emu.tenant_id());
    let foreign = token(&twin).await;
    assert_invalid_token(graph_get(&emu, &foreign, "v1.0/users").await).await;
    twin.shutdown().await;
    // Revoked.
    let first = token(&emu).await;
    assert_eq!(graph_get(&emu, &first, "v1.0/users").await.status(), 200);
    emu.revoke_tokens();
    assert_invalid_token(graph_get(&emu, &first, "v1.0/users").await).await;
    let second = token(&emu).await;
    assert_eq!(graph_get(&emu, &second, "v1.0/users").await.status(), 200);
    // Revocation through the control API.
    let revoke = client()
        .post(format!("{}tokens/revoke", emu.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    assert_invalid_token(graph_get(&emu, &second, "v1.0/users").await).await;
    // Expired: a zero lifetime gives tokens that are expired as soon as issued.
    emu.set_token_lifetime(Duration::ZERO);
    let (id, secret, scope) = (emu.client_id(), emu.client_secret(), graph_scope(&emu));
    let (status, body) = post_token(&emu, &secret_form(&id, &secret, &scope)).await;
    assert_eq!(status, 200);
    assert_eq!(body["expires_in"], 0);
    let expired = body["access_token"].as_str().unwrap();
    assert_invalid_token(graph_get(&emu, expired, "v1.0/users").await).await;
    emu.set_token_lifetime(Duration::from_secs(120));
    let (_, body) = post_token(&emu, &secret_form(&id, &secret, &scope)).await;
    assert_eq!(body["expires_in"], 120);
    assert_eq!(
        graph_get(&emu, body["access_token"].as_str().unwrap(), "v1.0/users")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn login_and_graph_are_separate_hosts() {
    let emu = start(SEED).await;
    assert_ne!(emu.login_url(), emu.graph_url());
    // The token endpoint is not on the Graph host, Graph is not on the login host.
    let wrong = format!("{}{}/oauth2/v2.0/token", emu.graph_url(), emu.tenant_id());
    let response = client()
        .post(wrong)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_ne!(response.status(), 200);
    let token = token(&emu).await;
    let wrong = format!("{}v1.0/users", emu.login_url());
    assert_eq!(
        client()
            .get(wrong)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}
