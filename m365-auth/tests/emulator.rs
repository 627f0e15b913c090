//! Acceptance tests against the in-process emulator over real HTTP on 127.0.0.1:
//! every credential kind obtains a token, every misconfiguration gets its own error
//! with its AADSTS code, and the cache/single-flight counts are exact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use m365_auth::{
    AppRegistration, AssertionAlgorithm, AuthError, ClientCertificate, ClientCredential,
    ClientCredentialsProvider, Cloud, GraphClientOptions, ProviderOptions, TokenProvider,
    graph_client,
};
use m365_emulator::{Emulator, EmulatorConfig};
use secrecy::SecretString;

const UNREGISTERED_CERT: &str = include_str!("fixtures/cert.pem");
const UNREGISTERED_KEY: &str = include_str!("fixtures/key.pem");
const OTHER_KEY: &str = include_str!("fixtures/other-key.pem");

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig {
        users: 1,
        messages_per_user: 1,
        special_users: false,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn cloud(emu: &Emulator) -> Cloud {
    Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str()).unwrap()
}

fn options() -> ProviderOptions {
    ProviderOptions {
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..Default::default()
    }
}

fn provider(emu: &Emulator, credential: ClientCredential) -> ClientCredentialsProvider {
    let registration =
        AppRegistration::new(&emu.tenant_id(), &emu.client_id(), credential, cloud(emu)).unwrap();
    ClientCredentialsProvider::new(registration, options()).unwrap()
}

fn emulator_certificate(emu: &Emulator, algorithm: AssertionAlgorithm) -> ClientCredential {
    let cert = ClientCertificate::from_pem(
        &emu.certificate_pem(),
        &SecretString::from(emu.private_key_pem()),
    )
    .unwrap()
    .with_algorithm(algorithm);
    ClientCredential::certificate(cert)
}

async fn token_requests(emu: &Emulator) -> u64 {
    emu.stats().await.token_requests
}

#[tokio::test]
async fn secret_obtains_a_token_that_graph_accepts() {
    let emu = emulator().await;
    let provider = provider(&emu, ClientCredential::secret(emu.client_secret()));
    let token = provider.token().await.unwrap();
    assert!(!token.expires_within(Duration::from_secs(3000)));
    assert!(token.expires_within(Duration::from_secs(3700)));
    assert_eq!(token_requests(&emu).await, 1);

    // The GraphClient built by the helper takes its token from the provider.
    let client = graph_client(
        Arc::new(provider.clone()),
        &cloud(&emu),
        &GraphClientOptions::default(),
    );
    assert_eq!(
        client.url().as_str(),
        format!("{}v1.0", emu.graph_url()).as_str()
    );
    let response = client.users().list_user().send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["value"].as_array().is_some_and(|v| !v.is_empty()));
    // Served from the cache: still one token request.
    assert_eq!(token_requests(&emu).await, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn tenant_domain_works_as_tenant() {
    let emu = emulator().await;
    let registration = AppRegistration::new(
        &emu.tenant_domain(),
        &emu.client_id(),
        ClientCredential::secret(emu.client_secret()),
        cloud(&emu),
    )
    .unwrap();
    let provider = ClientCredentialsProvider::new(registration, options()).unwrap();
    provider.token().await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn certificate_ps256_and_rs256_obtain_tokens() {
    let emu = emulator().await;
    for algorithm in [AssertionAlgorithm::Ps256, AssertionAlgorithm::Rs256] {
        let provider = provider(&emu, emulator_certificate(&emu, algorithm));
        let token = provider.token().await.unwrap();
        assert!(
            !token.expires_within(Duration::from_secs(3000)),
            "{algorithm:?}"
        );
    }
    assert_eq!(token_requests(&emu).await, 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn pkcs12_certificate_obtains_a_token() {
    let emu = emulator().await;
    // Package the emulator's certificate and key as a .pfx, as an admin would export it.
    let cert_der = {
        let pem = emu.certificate_pem();
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        base64_decode(&body)
    };
    let key_der = {
        let pem = emu.private_key_pem();
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        base64_decode(&body)
    };
    let certificate = p12_keystore::Certificate::from_der(&cert_der).unwrap();
    let chain = p12_keystore::PrivateKeyChain::new(key_der, [1u8; 20], vec![certificate]);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        "archiver",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(chain),
    );
    let pfx = store.writer("pfx-password").write().unwrap();

    let cert = ClientCertificate::from_pkcs12(&pfx, &SecretString::from("pfx-password".to_owned()))
        .unwrap();
    let provider = provider(&emu, ClientCredential::certificate(cert));
    provider.token().await.unwrap();

    let wrong = ClientCertificate::from_pkcs12(&pfx, &SecretString::from("nope".to_owned()));
    assert!(matches!(wrong, Err(AuthError::InvalidCertificate { .. })));
    emu.shutdown().await;
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn code_of(err: &AuthError) -> &str {
    err.aadsts_code()
        .unwrap_or_else(|| panic!("no AADSTS code in {err:?}"))
}

#[tokio::test]
async fn wrong_secret_is_invalid_client_secret() {
    let emu = emulator().await;
    let provider = provider(&emu, ClientCredential::secret("not-the-secret"));
    let err = provider.token().await.unwrap_err();
    assert!(
        matches!(err, AuthError::InvalidClientSecret { .. }),
        "{err:?}"
    );
    assert_eq!(code_of(&err), "AADSTS7000215");
    assert!(err.to_string().contains("create a new secret"), "{err}");
    assert!(!err.to_string().contains("not-the-secret"));
    // A refused credential is never retried.
    assert_eq!(token_requests(&emu).await, 1);
    assert_eq!(provider.token_requests(), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn expired_secret_is_expired_client_secret() {
    let emu = emulator().await;
    let provider = provider(&emu, ClientCredential::secret(emu.expired_client_secret()));
    let err = provider.token().await.unwrap_err();
    assert!(
        matches!(err, AuthError::ExpiredClientSecret { .. }),
        "{err:?}"
    );
    assert_eq!(code_of(&err), "AADSTS7000222");
    assert!(!err.is_transient());
    emu.shutdown().await;
}

#[tokio::test]
async fn unknown_tenant_is_unknown_tenant() {
    let emu = emulator().await;
    let tenant = "9b0c3f5e-1111-4222-8333-444455556666";
    let registration = AppRegistration::new(
        tenant,
        &emu.client_id(),
        ClientCredential::secret(emu.client_secret()),
        cloud(&emu),
    )
    .unwrap();
    let provider = ClientCredentialsProvider::new(registration, options()).unwrap();
    let err = provider.token().await.unwrap_err();
    match &err {
        AuthError::UnknownTenant { tenant: t, .. } => assert_eq!(t, tenant),
        other => panic!("{other:?}"),
    }
    assert_eq!(code_of(&err), "AADSTS90002");
    emu.shutdown().await;
}

#[tokio::test]
async fn unknown_app_is_unknown_application() {
    let emu = emulator().await;
    let client_id = "0f1e2d3c-4b5a-4968-8776-655443322110";
    let registration = AppRegistration::new(
        &emu.tenant_id(),
        client_id,
        ClientCredential::secret(emu.client_secret()),
        cloud(&emu),
    )
    .unwrap();
    let provider = ClientCredentialsProvider::new(registration, options()).unwrap();
    let err = provider.token().await.unwrap_err();
    match &err {
        AuthError::UnknownApplication { client_id: c, .. } => assert_eq!(c, client_id),
        other => panic!("{other:?}"),
    }
    assert_eq!(code_of(&err), "AADSTS700016");
    emu.shutdown().await;
}

#[tokio::test]
async fn unregistered_certificate_is_certificate_rejected() {
    let emu = emulator().await;
    for algorithm in [AssertionAlgorithm::Ps256, AssertionAlgorithm::Rs256] {
        let cert =
            ClientCertificate::from_pem(UNREGISTERED_CERT, &SecretString::from(UNREGISTERED_KEY))
                .unwrap()
                .with_algorithm(algorithm);
        let provider = provider(&emu, ClientCredential::certificate(cert));
        let err = provider.token().await.unwrap_err();
        assert!(
            matches!(err, AuthError::CertificateRejected { .. }),
            "{err:?}"
        );
        assert_eq!(code_of(&err), "AADSTS700027");
        assert!(err.hint().unwrap().contains("upload the certificate"));
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn registered_certificate_with_another_key_is_refused_before_any_request() {
    let emu = emulator().await;
    let err = ClientCertificate::from_pem(&emu.certificate_pem(), &SecretString::from(OTHER_KEY))
        .unwrap_err();
    assert!(
        matches!(err, AuthError::InvalidCertificate { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not belong"), "{err}");
    assert_eq!(token_requests(&emu).await, 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn hundred_concurrent_callers_cause_one_token_request() {
    let emu = emulator().await;
    let provider = provider(&emu, ClientCredential::secret(emu.client_secret()));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.token().await })
        })
        .collect();
    let mut values = std::collections::HashSet::new();
    for task in tasks {
        values.insert(task.await.unwrap().unwrap().secret().to_owned());
    }
    assert_eq!(values.len(), 1, "every caller got the same token");
    assert_eq!(token_requests(&emu).await, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn hundred_concurrent_callers_with_a_wrong_secret_cause_one_request() {
    let emu = emulator().await;
    let provider = provider(&emu, ClientCredential::secret("wrong"));
    // The refresh lock is taken before any caller runs, so all of them queue behind one flight.
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.token().await })
        })
        .collect();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.aadsts_code(), Some("AADSTS7000215"));
    }
    // The callers that waited behind the failed flight share its outcome.
    assert_eq!(token_requests(&emu).await, 1);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_close_to_expiry_is_refreshed_exactly_once() {
    let emu = emulator().await;
    emu.set_token_lifetime(Duration::from_secs(4));
    let provider = provider(&emu, ClientCredential::secret(emu.client_secret()));
    let first = provider.token().await.unwrap();
    // Not yet due: served from the cache.
    assert_eq!(provider.token().await.unwrap().secret(), first.secret());
    assert_eq!(token_requests(&emu).await, 1);

    // The next token lives long; wait (by the clock, not for another task) until the
    // first is within its refresh window (half its lifetime, capped by the margin).
    emu.set_token_lifetime(Duration::from_secs(3599));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !first.expires_within(Duration::from_secs(2)) {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.token().await.unwrap() })
        })
        .collect();
    for task in tasks {
        let token = task.await.unwrap();
        assert_ne!(token.secret(), first.secret());
    }
    assert_eq!(token_requests(&emu).await, 2);
    provider.token().await.unwrap();
    assert_eq!(token_requests(&emu).await, 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn invalidate_fetches_exactly_one_new_token() {
    let emu = emulator().await;
    let provider = provider(&emu, ClientCredential::secret(emu.client_secret()));
    let first = provider.token().await.unwrap();
    provider.invalidate(&first);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.token().await.unwrap() })
        })
        .collect();
    let mut second = None;
    for task in tasks {
        let token = task.await.unwrap();
        assert_ne!(token.secret(), first.secret());
        second.get_or_insert(token);
    }
    assert_eq!(token_requests(&emu).await, 2);
    // Invalidating the stale token again does not drop the new one.
    provider.invalidate(&first);
    let again = provider.token().await.unwrap();
    assert_eq!(again.secret(), second.unwrap().secret());
    assert_eq!(token_requests(&emu).await, 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn revoked_token_recovers_after_invalidate() {
    let emu = emulator().await;
    let provider = provider(&emu, ClientCredential::secret(emu.client_secret()));
    let client = graph_client(
        Arc::new(provider.clone()),
        &cloud(&emu),
        &GraphClientOptions::default(),
    );
    let token = provider.token().await.unwrap();
    emu.revoke_tokens();
    let response = client.users().list_user().send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    provider.invalidate(&token);
    let response = client.users().list_user().send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(token_requests(&emu).await, 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn force_token_refresh_once_fetches_one_new_token() {
    let emu = emulator().await;
    let provider = provider(&emu, ClientCredential::secret(emu.client_secret()));
    let mut client = graph_client(
        Arc::new(provider.clone()),
        &cloud(&emu),
        &GraphClientOptions::default(),
    );
    client.users().list_user().send().await.unwrap();
    assert_eq!(token_requests(&emu).await, 1);
    client.use_force_token_refresh(graph_core::identity::ForceTokenRefresh::Once);
    client.users().list_user().send().await.unwrap();
    client.users().list_user().send().await.unwrap();
    assert_eq!(token_requests(&emu).await, 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn tls_authority_needs_the_extra_ca() {
    let emu = Emulator::start(EmulatorConfig {
        users: 1,
        messages_per_user: 0,
        special_users: false,
        tls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(emu.login_url().scheme(), "https");
    let registration = || {
        AppRegistration::new(
            &emu.tenant_id(),
            &emu.client_id(),
            ClientCredential::secret(emu.client_secret()),
            cloud(&emu),
        )
        .unwrap()
    };
    let without_ca = ClientCredentialsProvider::new(registration(), options()).unwrap();
    let err = without_ca.token().await.unwrap_err();
    assert!(matches!(err, AuthError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("CA bundle"), "{err}");

    let with_ca = ClientCredentialsProvider::new(
        registration(),
        ProviderOptions {
            extra_ca_pem: emu.ca_pem(),
            ..options()
        },
    )
    .unwrap();
    with_ca.token().await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn stored_credentials_obtain_tokens_end_to_end() {
    use m365_auth::{
        CertificateSource, CredentialSource, CredentialStore, SecretSource, StoredCredential,
    };
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("app.pem");
    let key = dir.path().join("app.key");
    std::fs::write(&cert, emu.certificate_pem()).unwrap();
    std::fs::write(&key, emu.private_key_pem()).unwrap();
    let store = CredentialStore::open(dir.path().join("credentials")).unwrap();
    let base = StoredCredential {
        name: "by-env".into(),
        tenant: emu.tenant_domain().parse().unwrap(),
        client_id: emu.client_id().parse().unwrap(),
        cloud: cloud(&emu),
        credential: CredentialSource::Secret(SecretSource::EnvVar("ARCHIVER_SECRET".into())),
        ca_file: None,
        scope: None,
    };
    store.add(&base).unwrap();
    store
        .add(&StoredCredential {
            name: "by-cert".into(),
            credential: CredentialSource::Certificate {
                source: CertificateSource::Pem {
                    certificate: cert,
                    private_key: SecretSource::File(key),
                },
                algorithm: AssertionAlgorithm::Rs256,
            },
            ..base.clone()
        })
        .unwrap();
    let secret = emu.client_secret();
    let lookup = move |name: &str| (name == "ARCHIVER_SECRET").then(|| secret.clone());
    for name in ["by-env", "by-cert"] {
        let provider = store
            .get(name)
            .unwrap()
            .provider(&lookup, options())
            .unwrap();
        provider.token().await.unwrap();
    }
    // Without the variable, the error names it.
    let err = store
        .get("by-env")
        .unwrap()
        .provider(&|_| None, options())
        .unwrap_err();
    assert!(err.to_string().contains("ARCHIVER_SECRET"), "{err}");
    assert_eq!(token_requests(&emu).await, 2);
    emu.shutdown().await;
}
