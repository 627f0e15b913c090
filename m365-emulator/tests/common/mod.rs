//! Helpers shared by the integration tests: start an emulator, fetch tokens, sign assertions.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod graph;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use m365_emulator::{Emulator, EmulatorConfig};
use rsa::pkcs8::DecodePrivateKey as _;
use serde_json::{Value, json};
use sha1::Digest as _;

/// A small tenant (special users included).
pub async fn start(seed: u64) -> Emulator {
    start_with(EmulatorConfig {
        users: 3,
        messages_per_user: 8,
        seed,
        ..Default::default()
    })
    .await
}

pub async fn start_with(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.expect("emulator starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

pub fn token_url(emu: &Emulator, tenant: &str) -> String {
    format!("{}{}/oauth2/v2.0/token", emu.login_url(), tenant)
}

pub fn graph_scope(emu: &Emulator) -> String {
    format!("{}.default", emu.graph_url())
}

/// POSTs a form to the token endpoint of the tenant id; answers (status, JSON body).
pub async fn post_token(emu: &Emulator, form: &[(&str, &str)]) -> (u16, Value) {
    post_token_to(emu, &emu.tenant_id(), form).await
}

pub async fn post_token_to(emu: &Emulator, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let response = client()
        .post(token_url(emu, tenant))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A token through the client secret.
pub async fn token(emu: &Emulator) -> String {
    let (secret, id, scope) = (emu.client_secret(), emu.client_id(), graph_scope(emu));
    let (status, body) = post_token(
        emu,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// DER of the first certificate in a PEM.
pub fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

/// How to sign an assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Ps256,
}

/// Claims of an assertion, with every knob a test turns.
pub struct Assertion {
    pub alg: Alg,
    pub aud: String,
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub nbf: i64,
    pub exp: i64,
    /// PEM of the key that signs (the registered one unless a test wants a bad signature).
    pub key_pem: String,
}

impl Assertion {
    pub fn for_emulator(emu: &Emulator, alg: Alg) -> Self {
        let now = chrono::Utc::now().timestamp();
        Assertion {
            alg,
            aud: token_url(emu, &emu.tenant_id()),
            iss: emu.client_id(),
            sub: emu.client_id(),
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: now,
            exp: now + 600,
            key_pem: emu.private_key_pem(),
        }
    }

    /// The signed JWT; the header names the registered certificate's thumbprint.
    pub fn sign(&self, certificate_pem: &str) -> String {
        let der = pem_der(certificate_pem);
        let header = match self.alg {
            Alg::Rs256 => {
                json!({"alg": "RS256", "typ": "JWT", "x5t": URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der))})
            }
            Alg::Ps256 => {
                json!({"alg": "PS256", "typ": "JWT", "x5t#S256": URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der))})
            }
        };
        let claims = json!({
            "aud": self.aud, "iss": self.iss, "sub": self.sub, "jti": self.jti,
            "nbf": self.nbf, "exp": self.exp, "iat": self.nbf,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&self.key_pem).unwrap();
        let signature: Vec<u8> = match self.alg {
            Alg::Rs256 => {
                use rsa::signature::{SignatureEncoding as _, Signer as _};
                rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key)
                    .sign(input.as_bytes())
                    .to_vec()
            }
            Alg::Ps256 => {
                use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
                rsa::pss::BlindedSigningKey::<sha2::Sha256>::new(key)
                    .sign_with_rng(&mut rand::thread_rng(), input.as_bytes())
                    .to_vec()
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// The form of a certificate token request.
pub fn assertion_form<'a>(
    emu_client_id: &'a str,
    scope: &'a str,
    assertion: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", emu_client_id),
        ("scope", scope),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ]
}

/// Asserts the shape of an AADSTS error and its code; answers the description.
pub fn assert_aadsts(
    status: u16,
    body: &Value,
    want_status: u16,
    want_error: &str,
    code: u32,
) -> String {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], want_error, "{body}");
    let description = body["error_description"].as_str().unwrap().to_owned();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert!(
        description.contains("Trace ID: ") && description.contains("Correlation ID: "),
        "{description}"
    );
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    for field in ["timestamp", "trace_id", "correlation_id"] {
        assert!(
            body[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field} missing: {body}"
        );
    }
    description
}

/// GET on Graph with a bearer token.
pub async fn graph_get(emu: &Emulator, token: &str, path: &str) -> reqwest::Response {
    client()
        .get(format!(
            "{}{}",
            emu.graph_url(),
            path.trim_start_matches('/')
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// The first regular user (has a mailbox, not excluded).
pub fn first_mailbox(emu: &Emulator) -> String {
    emu.users()
        .into_iter()
        .find(|u| u.has_mailbox && u.enabled && !u.access_denied && !u.guest)
        .unwrap()
        .upn
}
