//! User sign-in against a scripted authority on 127.0.0.1 over real HTTP: the authorize
//! URL, the code redemption's form and its refusals (AADSTS codes kept), the state and
//! age checks, and the metadata caches (one discovery, key-set refetch on an unknown
//! `kid` at most once per interval, garbage refused before any request).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::extract::{Form, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use m365_auth::oidc::{OidcClient, OidcSettings, Prompt, ResponseMode};
use m365_auth::{AuthError, ClientCredential, Cloud};
use rsa::RsaPrivateKey;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha2::Digest as _;

/// A predicate on the error a case must produce.
type Check = fn(&AuthError) -> bool;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "22222222-3333-4444-5555-666666666666";
const OID: &str = "33333333-4444-4555-8666-777777777777";
const SECRET: &str = "web-app-secret-value";
const REDIRECT: &str = "https://archive.example/auth/callback";

fn keys() -> &'static [RsaPrivateKey; 2] {
    static KEYS: OnceLock<[RsaPrivateKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand::rngs::OsRng;
        [
            RsaPrivateKey::new(&mut rng, 2048).unwrap(),
            RsaPrivateKey::new(&mut rng, 2048).unwrap(),
        ]
    })
}

fn jwk(kid: &str, key: &RsaPrivateKey) -> Value {
    let public = key.to_public_key();
    json!({
        "kty": "RSA", "use": "sig", "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    })
}

#[derive(Default)]
struct Script {
    base: String,
    jwks: Value,
    /// Replaces the token endpoint in discovery.
    token_endpoint: Option<String>,
    /// The answer of the token endpoint.
    token_answer: Option<(u16, Value)>,
    forms: Vec<HashMap<String, String>>,
    discovery_requests: u32,
    key_requests: u32,
}

type Shared = Arc<Mutex<Script>>;

async fn discovery(State(script): State<Shared>) -> Response {
    let mut s = script.lock().unwrap();
    s.discovery_requests += 1;
    let base = s.base.clone();
    axum::Json(json!({
        "issuer": format!("{base}/{TENANT}/v2.0"),
        "authorization_endpoint": format!("{base}/{TENANT}/oauth2/v2.0/authorize?x-client=1"),
        "token_endpoint": s.token_endpoint.clone().unwrap_or(format!("{base}/{TENANT}/oauth2/v2.0/token")),
        "jwks_uri": format!("{base}/{TENANT}/discovery/v2.0/keys"),
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
    .into_response()
}

async fn jwks(State(script): State<Shared>) -> Response {
    let mut s = script.lock().unwrap();
    s.key_requests += 1;
    axum::Json(s.jwks.clone()).into_response()
}

async fn token(
    State(script): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut s = script.lock().unwrap();
    s.forms.push(form);
    let (status, body) = s.token_answer.clone().unwrap_or((500, json!({})));
    (
        axum::http::StatusCode::from_u16(status).unwrap(),
        axum::Json(body),
    )
        .into_response()
}

struct Authority {
    script: Shared,
    base: String,
}

async fn authority() -> Authority {
    let script: Shared = Arc::new(Mutex::new(Script {
        jwks: json!({"keys": [jwk("k1", &keys()[0])]}),
        ..Default::default()
    }));
    let app = axum::Router::new()
        .route(
            &format!("/{TENANT}/v2.0/.well-known/openid-configuration"),
            get(discovery),
        )
        .route(&format!("/{TENANT}/discovery/v2.0/keys"), get(jwks))
        .route(&format!("/{TENANT}/oauth2/v2.0/token"), post(token))
        .with_state(Arc::clone(&script));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    script.lock().unwrap().base = base.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Authority { script, base }
}

impl Authority {
    fn settings(&self) -> OidcSettings {
        OidcSettings::new(
            Cloud::custom(&self.base, "http://127.0.0.1:1/").unwrap(),
            TENANT.parse().unwrap(),
            CLIENT.parse().unwrap(),
            ClientCredential::secret(SECRET),
            url::Url::parse(REDIRECT).unwrap(),
        )
    }

    fn client(&self) -> OidcClient {
        self.client_with(self.settings())
    }

    fn client_with(&self, settings: OidcSettings) -> OidcClient {
        let http = m365_auth::oidc::http_client(&Default::default()).unwrap();
        OidcClient::new(settings, http).unwrap()
    }

    fn claims(&self, nonce: &str) -> Value {
        let now = unix(SystemTime::now());
        json!({
            "aud": CLIENT, "iss": format!("{}/{TENANT}/v2.0", self.base),
            "iat": now, "nbf": now, "exp": now + 3600,
            "oid": OID, "tid": TENANT, "sub": "pairwise", "nonce": nonce,
            "name": "Adele Vance", "preferred_username": "adele@contoso.example",
        })
    }

    fn answer(&self, status: u16, body: Value) {
        self.script.lock().unwrap().token_answer = Some((status, body));
    }

    fn counts(&self) -> (u32, u32, usize) {
        let s = self.script.lock().unwrap();
        (s.discovery_requests, s.key_requests, s.forms.len())
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn sign(kid: &str, key: &RsaPrivateKey, claims: &Value) -> String {
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!(
        "{}.{}",
        encode(&json!({"typ": "JWT", "alg": "RS256", "kid": kid})),
        encode(claims)
    );
    let signature = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone())
        .sign(input.as_bytes())
        .to_bytes();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

#[tokio::test]
async fn the_authorize_url_carries_pkce_state_and_nonce() {
    let auth = authority().await;
    let mut settings = auth.settings();
    settings.prompt = Some(Prompt::SelectAccount);
    let client = auth.client_with(settings);
    let (url, pending) = client.begin(SystemTime::now()).await.unwrap();
    assert_eq!(
        url.path(),
        format!("/{TENANT}/oauth2/v2.0/authorize"),
        "{url}"
    );
    let q = query(&url);
    assert_eq!(q["x-client"], "1", "the endpoint's own query is kept");
    assert_eq!(q["client_id"], CLIENT);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["redirect_uri"], REDIRECT);
    assert_eq!(q["response_mode"], "form_post");
    assert_eq!(q["scope"], "openid profile");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"], pending.code_challenge());
    assert_eq!(q["prompt"], "select_account");
    assert_eq!(q["state"], pending.state());
    assert_eq!(q["nonce"], pending.nonce());
    assert!(pending.state().len() >= 22 && pending.nonce().len() >= 22);
    assert!(!q.contains_key("code_verifier"));

    let mut settings = auth.settings();
    settings.response_mode = ResponseMode::Query;
    let (url, other) = auth
        .client_with(settings)
        .begin(SystemTime::now())
        .await
        .unwrap();
    assert_eq!(query(&url)["response_mode"], "query");
    assert!(!query(&url).contains_key("prompt"));
    assert_ne!(other.state(), pending.state());
    // Discovery was read once per client.
    assert_eq!(auth.counts().0, 2);
}

#[tokio::test]
async fn finish_redeems_the_code_with_the_verifier_and_secret() {
    let auth = authority().await;
    let client = auth.client();
    let (url, pending) = client.begin(SystemTime::now()).await.unwrap();
    let id_token = sign("k1", &keys()[0], &auth.claims(pending.nonce()));
    auth.answer(200, json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "at", "id_token": id_token}));
    let identity = client
        .finish(&pending, pending.state(), "1.AXYZ-code", SystemTime::now())
        .await
        .unwrap();
    assert_eq!(identity.object_id.to_string(), OID);
    assert_eq!(identity.tenant_id.to_string(), TENANT);
    assert_eq!(identity.name.as_deref(), Some("Adele Vance"));

    let form = auth.script.lock().unwrap().forms[0].clone();
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], "1.AXYZ-code");
    assert_eq!(form["client_id"], CLIENT);
    assert_eq!(form["client_secret"], SECRET);
    assert_eq!(form["redirect_uri"], REDIRECT);
    assert_eq!(form["scope"], "openid profile");
    let verifier = &form["code_verifier"];
    assert!((43..=128).contains(&verifier.len()));
    assert_eq!(
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes())),
        query(&url)["code_challenge"]
    );
    // The verifier never shows in Debug.
    assert!(!format!("{pending:?}").contains(verifier.as_str()));
    // One discovery, one key set for the whole sign-in.
    assert_eq!(auth.counts(), (1, 1, 1));

    // The same token with another sign-in's nonce is refused.
    let (_, second) = client.begin(SystemTime::now()).await.unwrap();
    assert!(matches!(
        client
            .finish(&second, second.state(), "1.AXYZ-code", SystemTime::now())
            .await,
        Err(AuthError::IdTokenNonce)
    ));
}

#[tokio::test]
async fn a_certificate_credential_sends_an_assertion() {
    let auth = authority().await;
    let cert = m365_auth::ClientCertificate::from_pem(
        include_str!("fixtures/cert.pem"),
        &secrecy::SecretString::from(include_str!("fixtures/key.pem")),
    )
    .unwrap();
    let mut settings = auth.settings();
    settings.credential = ClientCredential::certificate(cert);
    let client = auth.client_with(settings);
    let (_, pending) = client.begin(SystemTime::now()).await.unwrap();
    auth.answer(
        200,
        json!({"id_token": sign("k1", &keys()[0], &auth.claims(pending.nonce()))}),
    );
    client
        .finish(&pending, pending.state(), "code", SystemTime::now())
        .await
        .unwrap();
    let form = auth.script.lock().unwrap().forms[0].clone();
    assert!(!form.contains_key("client_secret"));
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(form["client_assertion"].split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["aud"],
        format!("{}/{TENANT}/oauth2/v2.0/token", auth.base)
    );
    assert_eq!(claims["iss"], CLIENT);
}

#[tokio::test]
async fn state_and_age_are_checked_before_any_request() {
    let auth = authority().await;
    let client = auth.client();
    let start = SystemTime::now();
    let (_, pending) = client.begin(start).await.unwrap();
    let before = auth.counts();
    let mut wrong = pending.state().to_owned();
    wrong.pop();
    for returned in [wrong.as_str(), "", "x"] {
        assert!(matches!(
            client.finish(&pending, returned, "code", start).await,
            Err(AuthError::SignInStateMismatch)
        ));
    }
    let late = start + Duration::from_secs(601);
    assert!(matches!(
        client.finish(&pending, pending.state(), "code", late).await,
        Err(AuthError::SignInExpired {
            age_secs: 601,
            limit_secs: 600
        })
    ));
    let early = start - Duration::from_secs(400);
    assert!(matches!(
        client
            .finish(&pending, pending.state(), "code", early)
            .await,
        Err(AuthError::SignInExpired { .. })
    ));
    let long = "c".repeat(9000);
    for code in ["", "a b", long.as_str()] {
        assert!(matches!(
            client.finish(&pending, pending.state(), code, start).await,
            Err(AuthError::SignInResponseInvalid { .. })
        ));
    }
    assert_eq!(auth.counts(), before, "no request was made");
}

#[tokio::test]
async fn refusals_keep_their_aadsts_codes() {
    let auth = authority().await;
    let client = auth.client();
    let refusal = |error: &str, code: u32, text: &str| {
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: t\r\nCorrelation ID: c"),
            "error_codes": [code], "trace_id": "t", "correlation_id": "c",
        })
    };
    let cases: Vec<(u16, Value, Check, Option<&str>)> = vec![
        (
            400,
            refusal(
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed.",
            ),
            |e| matches!(e, AuthError::SignInCodeRejected { .. }),
            Some("AADSTS54005"),
        ),
        (
            400,
            refusal("invalid_grant", 501481, "The Code_Verifier does not match."),
            |e| matches!(e, AuthError::SignInCodeRejected { .. }),
            Some("AADSTS501481"),
        ),
        (
            401,
            refusal(
                "invalid_client",
                7000215,
                &format!("Invalid client secret provided: {SECRET}"),
            ),
            |e| matches!(e, AuthError::InvalidClientSecret { .. }),
            Some("AADSTS7000215"),
        ),
        (
            400,
            refusal("invalid_request", 65001, "consent"),
            |e| matches!(e, AuthError::Rejected { .. }),
            Some("AADSTS65001"),
        ),
        (
            503,
            json!({}),
            |e| matches!(e, AuthError::ServiceUnavailable { status: 503, .. }),
            None,
        ),
        (
            200,
            json!({"access_token": "at", "expires_in": 5}),
            |e| matches!(e, AuthError::MalformedResponse { .. }),
            None,
        ),
        (
            404,
            json!("not here"),
            |e| matches!(e, AuthError::MalformedResponse { status: 404, .. }),
            None,
        ),
    ];
    for (status, body, expected, code) in cases {
        let (_, pending) = client.begin(SystemTime::now()).await.unwrap();
        auth.answer(status, body.clone());
        let err = client
            .finish(&pending, pending.state(), "code", SystemTime::now())
            .await
            .unwrap_err();
        assert!(expected(&err), "{body}: {err:?}");
        assert_eq!(err.aadsts_code(), code, "{err:?}");
        assert!(!err.to_string().contains(SECRET), "{err}");
        assert!(!err.is_transient() || status == 503);
    }
    // Sign-in refusals are not credential refusals; a bad secret is.
    let (_, pending) = client.begin(SystemTime::now()).await.unwrap();
    auth.answer(400, refusal("invalid_grant", 70008, "expired"));
    let err = client
        .finish(&pending, pending.state(), "code", SystemTime::now())
        .await
        .unwrap_err();
    assert!(!err.is_credential_refused());
}

#[tokio::test]
async fn an_unknown_kid_refetches_keys_at_most_once_per_interval() {
    let auth = authority().await;
    let client = auth.client();
    let now = SystemTime::now();
    let good = sign("k1", &keys()[0], &auth.claims("n"));
    client.verify_id_token(&good, "n", now).await.unwrap();
    assert_eq!(auth.counts().1, 1);
    // The authority rotates to k2; a token of k2 arrives right after the first fetch.
    auth.script.lock().unwrap().jwks =
        json!({"keys": [jwk("k1", &keys()[0]), jwk("k2", &keys()[1])]});
    let rotated = sign("k2", &keys()[1], &auth.claims("n"));
    for _ in 0..5 {
        assert!(matches!(
            client.verify_id_token(&rotated, "n", now).await,
            Err(AuthError::IdTokenUnknownKey { kid: Some(ref k) }) if k == "k2"
        ));
    }
    assert_eq!(auth.counts().1, 1, "no fetch inside the interval");
    assert_eq!(client.metadata_fetches(), (1, 1));

    // With no interval, the unknown kid triggers one refetch and the rotated key is used.
    let mut settings = auth.settings();
    settings.key_refresh_interval = Duration::ZERO;
    let eager = auth.client_with(settings);
    auth.script.lock().unwrap().jwks = json!({"keys": [jwk("k1", &keys()[0])]});
    eager.verify_id_token(&good, "n", now).await.unwrap();
    let keys_before = auth.counts().1;
    assert!(eager.verify_id_token(&rotated, "n", now).await.is_err());
    auth.script.lock().unwrap().jwks = json!({"keys": [jwk("k2", &keys()[1])]});
    eager.verify_id_token(&rotated, "n", now).await.unwrap();
    assert_eq!(auth.counts().1, keys_before + 2);
    // A known kid costs no fetch.
    eager.verify_id_token(&rotated, "n", now).await.unwrap();
    assert_eq!(auth.counts().1, keys_before + 2);
}

#[tokio::test]
async fn garbage_is_refused_before_any_request() {
    let auth = authority().await;
    let client = auth.client();
    let huge = "A".repeat(16 * 1024 + 1);
    for token in ["", "a.b", "a.b.c.d", "not a token", huge.as_str()] {
        assert!(matches!(
            client.verify_id_token(token, "n", SystemTime::now()).await,
            Err(AuthError::IdTokenMalformed { .. })
        ));
    }
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(auth.claims("n").to_string())
    );
    assert!(
        client
            .verify_id_token(&none, "n", SystemTime::now())
            .await
            .is_err()
    );
    assert_eq!(auth.counts(), (0, 0, 0));
}

#[tokio::test]
async fn endpoints_must_be_https_or_loopback() {
    let auth = authority().await;
    auth.script.lock().unwrap().token_endpoint =
        Some(format!("http://login.example/{TENANT}/oauth2/v2.0/token"));
    let err = auth.client().begin(SystemTime::now()).await.unwrap_err();
    assert!(
        matches!(err, AuthError::MalformedResponse { ref reason, .. } if reason.contains("token_endpoint")),
        "{err:?}"
    );
    // A plain-http authority elsewhere than loopback is refused at construction.
    let mut settings = auth.settings();
    settings.cloud = Cloud::custom("http://login.example/", "https://graph.example/").unwrap();
    let http = m365_auth::oidc::http_client(&Default::default()).unwrap();
    assert!(matches!(
        OidcClient::new(settings, http),
        Err(AuthError::InvalidRegistration {
            field: "login_url",
            ..
        })
    ));
}

#[tokio::test]
async fn callback_errors_keep_their_codes() {
    let err = OidcClient::callback_error(
        "invalid_request",
        Some("AADSTS50011: The redirect URI 'x' does not match.\r\nTrace ID: t"),
    );
    assert!(matches!(err, AuthError::SignInRefused { .. }));
    assert_eq!(err.aadsts_code(), Some("AADSTS50011"));
    assert!(err.to_string().contains("redirect URI"), "{err}");
}
