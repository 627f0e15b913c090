//! Microsoft's own client against the emulated identity platform: MSAL for Python, unchanged,
//! runs `tests/msal/acquire.py` once per case against an https emulator and must get tokens with
//! a client secret and with a certificate (SHA-1 `thumbprint` + `private_key`, with and without
//! `public_certificate`, and `public_certificate` alone), tokens Graph then accepts; and must be
//! refused with AADSTS7000215 for a wrong secret and AADSTS700027 for a forged signature or an
//! unregistered certificate. `tests/msal/auth_code.py` signs a user in through the authorization
//! code flow with PKCE (the emulator's sign-in form filled in) and must get an id_token whose
//! nonce, audience and issuer MSAL validated.
//!
//! The Python environment lives at `target/msal-venv` (what `.ci/run` prepares); when it is
//! missing or stale the test builds it with `tests/msal/make-venv.sh`, which needs `python3` and
//! the package index. A machine without them fails the test: it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use m365_emulator::{Emulator, EmulatorConfig};
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
use serde_json::{Value, json};
use sha1::Digest as _;

const SEED: u64 = 33;
/// The web app's redirect URI (never reached: the script reads the code from the redirect).
const REDIRECT_URI: &str = "http://localhost:8765/auth/callback";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's interpreter, the venv made (once per test binary) if needed.
fn venv_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = manifest_dir().join("../target/msal-venv");
        let script = manifest_dir().join("tests/msal/make-venv.sh");
        let status = std::process::Command::new("bash")
            .arg(&script)
            .arg(&venv)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            status.success(),
            "{} {} failed ({status}): MSAL for Python could not be installed",
            script.display(),
            venv.display()
        );
        venv.join("bin/python")
    })
}

/// An https emulator and the CA bundle file MSAL is told to trust.
struct Tenant {
    emu: Emulator,
    ca_bundle: PathBuf,
}

impl Tenant {
    async fn start() -> Tenant {
        let emu = Emulator::start(EmulatorConfig {
            users: 2,
            messages_per_user: 2,
            seed: SEED,
            tls: true,
            redirect_uris: vec![REDIRECT_URI.to_owned()],
            ..Default::default()
        })
        .await
        .expect("emulator starts");
        let ca_bundle = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("msal-ca-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&ca_bundle, emu.ca_pem().expect("a TLS emulator has a CA")).unwrap();
        Tenant { emu, ca_bundle }
    }

    /// Runs `acquire.py` with this client credential; answers its JSON result.
    async fn acquire(&self, client_credential: Value) -> Value {
        let emu = &self.emu;
        let request = json!({
            "client_id": emu.client_id(),
            "authority": format!("{}{}", emu.login_url(), emu.tenant_id()),
            "scopes": [format!("{}.default", emu.graph_url())],
            "client_credential": client_credential,
            "ca_bundle": self.ca_bundle,
        });
        self.run_script("acquire.py", &request).await
    }

    /// Runs `auth_code.py` signing `username` in with `password`; answers its JSON result.
    async fn sign_in(&self, username: &str, password: &str) -> Value {
        let emu = &self.emu;
        let request = json!({
            "client_id": emu.client_id(),
            "client_secret": emu.client_secret(),
            "authority": format!("{}{}", emu.login_url(), emu.tenant_id()),
            "scopes": ["User.Read"],
            "redirect_uri": REDIRECT_URI,
            "ca_bundle": self.ca_bundle,
            "username": username,
            "password": password,
        });
        self.run_script("auth_code.py", &request).await
    }

    /// Runs a script of `tests/msal` with `request` on its standard input; answers its JSON.
    async fn run_script(&self, script: &str, request: &Value) -> Value {
        let python = venv_python();
        let mut child = tokio::process::Command::new(python)
            .arg(manifest_dir().join("tests/msal").join(script))
            .env("REQUESTS_CA_BUNDLE", &self.ca_bundle)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let mut stdin = child.stdin.take().unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stdin, request.to_string().as_bytes())
            .await
            .unwrap();
        drop(stdin);
        let output = child.wait_with_output().await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{script} failed ({}): {stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
    }

    /// The registered certificate's hex SHA-1 thumbprint, as the portal shows it.
    fn thumbprint(&self) -> String {
        sha1_hex(&self.emu.certificate_pem())
    }

    /// Asserts MSAL got a bearer token and that Graph accepts it.
    async fn assert_token_works(&self, result: &Value) {
        assert_eq!(result["token_type"], "Bearer", "{result}");
        let token = result["access_token"].as_str().expect("an access token");
        let ca = reqwest::Certificate::from_pem(self.emu.ca_pem().unwrap().as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let response = client
            .get(format!("{}v1.0/users", self.emu.graph_url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "Graph refused MSAL's token");
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_bundle);
    }
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn sha1_hex(certificate_pem: &str) -> String {
    sha1::Sha1::digest(pem_der(certificate_pem))
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// A key and self-signed certificate the app registration does not know: (key PEM, cert PEM).
fn foreign_credential() -> (String, String) {
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let pkcs8 = key.to_pkcs8_der().unwrap();
    let key_pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["forger.example".to_owned()])
        .unwrap()
        .self_signed(&key_pair)
        .unwrap();
    (key_pem, certificate.pem())
}

/// Asserts MSAL reports the AADSTS error `code`.
fn assert_refused(result: &Value, error: &str, code: u64) {
    assert_eq!(result["error"], error, "{result}");
    assert_eq!(result["error_codes"], json!([code]), "{result}");
    assert!(result.get("access_token").is_none(), "{result}");
    let description = result["error_description"].as_str().unwrap_or_default();
    assert!(
        description.starts_with(&format!("AADSTS{code}:")),
        "{result}"
    );
}

/// Asserts MSAL gets a working token with the credential `credential` makes.
async fn check_token(credential: fn(&Tenant) -> Value) {
    let tenant = Tenant::start().await;
    let result = tenant.acquire(credential(&tenant)).await;
    tenant.assert_token_works(&result).await;
}

/// The registered certificate's key, with its SHA-1 thumbprint and its PEM as asked.
fn registered_certificate(tenant: &Tenant, thumbprint: bool, public_certificate: bool) -> Value {
    let mut credential = json!({ "private_key": tenant.emu.private_key_pem() });
    if thumbprint {
        credential["thumbprint"] = json!(tenant.thumbprint());
    }
    if public_certificate {
        credential["public_certificate"] = json!(tenant.emu.certificate_pem());
    }
    credential
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_secret_gets_a_token() {
    check_token(|tenant| json!(tenant.emu.client_secret())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_client_secret_is_refused_with_aadsts7000215() {
    let tenant = Tenant::start().await;
    let wrong = format!("{}x", tenant.emu.client_secret());
    let result = tenant.acquire(json!(wrong)).await;
    assert_refused(&result, "invalid_client", 7_000_215);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_thumbprint_and_key_get_a_token() {
    // RS256 with a padded `x5t` and fractional `exp`, `iat`.
    check_token(|tenant| registered_certificate(tenant, true, false)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_with_its_public_certificate_gets_a_token() {
    // The same plus `x5c`.
    check_token(|tenant| registered_certificate(tenant, true, true)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_certificate_without_thumbprint_gets_a_token() {
    // MSAL computes the SHA-256 thumbprint itself: PS256 with `x5t#S256` and `x5c`.
    check_token(|tenant| registered_certificate(tenant, false, true)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_signature_is_refused() {
    // The registered certificate's thumbprint, signed with a key that is not its own.
    let tenant = Tenant::start().await;
    let (forged_key, _) = foreign_credential();
    let result = tenant
        .acquire(json!({
            "thumbprint": tenant.thumbprint(),
            "private_key": forged_key,
        }))
        .await;
    assert_refused(&result, "invalid_client", 700_027);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unregistered_certificate_is_refused() {
    // A self-consistent key and certificate the app registration does not hold, sent as `x5c`;
    // and the registered thumbprint with that foreign `x5c`.
    let tenant = Tenant::start().await;
    let (key, certificate) = foreign_credential();
    let result = tenant
        .acquire(json!({ "private_key": key, "public_certificate": certificate }))
        .await;
    assert_refused(&result, "invalid_client", 700_027);
    let mut credential = registered_certificate(&tenant, true, false);
    credential["public_certificate"] = json!(certificate);
    let result = tenant.acquire(credential).await;
    assert_refused(&result, "invalid_client", 700_027);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_auth_code_flow_signs_a_user_in_with_an_id_token_msal_validated() {
    let tenant = Tenant::start().await;
    let user = tenant
        .emu
        .users()
        .into_iter()
        .find(|u| u.enabled && u.mail.is_some() && !u.guest)
        .unwrap();
    let result = tenant.sign_in(&user.upn, &tenant.emu.user_password()).await;
    assert_eq!(result["token_type"], "Bearer", "{result}");
    // MSAL checked nonce, audience and issuer before handing the claims over.
    let claims = &result["id_token_claims"];
    assert_eq!(claims["oid"], user.id.as_str(), "{result}");
    assert_eq!(claims["aud"], tenant.emu.client_id().as_str(), "{result}");
    assert_eq!(claims["iss"], tenant.emu.oidc_issuer().as_str(), "{result}");
    assert_eq!(claims["preferred_username"], user.upn.as_str(), "{result}");
    // MSAL sends the SHA-256 (hex) of the flow's nonce; the id_token carries it back.
    let flow_nonce = result["flow_nonce"].as_str().expect("the flow's nonce");
    let hashed: String = sha2::Sha256::digest(flow_nonce.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(claims["nonce"], hashed.as_str(), "{result}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_auth_code_flow_with_a_wrong_password_never_reaches_the_app() {
    let tenant = Tenant::start().await;
    let user = tenant.emu.users().into_iter().find(|u| u.enabled).unwrap();
    let result = tenant.sign_in(&user.upn, "not the password").await;
    let exception = result["exception"].as_str().unwrap_or_default();
    assert!(
        exception.contains("did not redirect") && exception.contains("AADSTS50126"),
        "{result}"
    );
}
