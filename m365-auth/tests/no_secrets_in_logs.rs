//! Captures every `tracing` event and span at TRACE (ours, reqwest's, hyper's) while
//! tokens are acquired, refreshed and refused, and checks that no secret, private key,
//! assertion or token appears in it, nor in any `Debug` or `Display` output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use m365_auth::{
    AppRegistration, AssertionAlgorithm, ClientCertificate, ClientCredential,
    ClientCredentialsProvider, Cloud, ProviderOptions, TokenProvider,
};
use m365_emulator::{Emulator, EmulatorConfig};
use secrecy::SecretString;
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn nothing_secret_reaches_logs_debug_or_errors() {
    // The emulator plays the remote authority: it runs on its own runtime and threads,
    // so the capture below sees only the client side.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let emu = server
        .block_on(Emulator::start(EmulatorConfig {
            users: 1,
            messages_per_user: 0,
            special_users: false,
            ..Default::default()
        }))
        .unwrap();

    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(buffer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let cloud = Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str()).unwrap();
    let options = ProviderOptions {
        refresh_margin: Duration::from_secs(60),
        ..Default::default()
    };
    let make = |credential: ClientCredential| {
        ClientCredentialsProvider::new(
            AppRegistration::new(
                &emu.tenant_id(),
                &emu.client_id(),
                credential,
                cloud.clone(),
            )
            .unwrap(),
            options.clone(),
        )
        .unwrap()
    };
    let mut tokens = Vec::new();
    let mut rendered = Vec::new();
    client.block_on(async {
        // Acquisition with a secret, a forced refresh, an invalidation and a re-acquisition.
        let secret_provider = make(ClientCredential::secret(emu.client_secret()));
        rendered.push(format!("{secret_provider:?}"));
        let token = secret_provider.token().await.unwrap();
        rendered.push(format!("{token:?}"));
        tokens.push(token.secret().to_owned());
        let refreshed = secret_provider.refreshed_token().await.unwrap();
        tokens.push(refreshed.secret().to_owned());
        secret_provider.invalidate(&refreshed);
        tokens.push(secret_provider.token().await.unwrap().secret().to_owned());

        // Certificates, both algorithms.
        for algorithm in [AssertionAlgorithm::Ps256, AssertionAlgorithm::Rs256] {
            let cert = ClientCertificate::from_pem(
                &emu.certificate_pem(),
                &SecretString::from(emu.private_key_pem()),
            )
            .unwrap()
            .with_algorithm(algorithm);
            let credential = ClientCredential::certificate(cert);
            rendered.push(format!("{credential:?}"));
            let provider = make(credential);
            tokens.push(provider.token().await.unwrap().secret().to_owned());
        }

        // Failures: wrong secret, expired secret.
        for secret in [
            "wrong-secret-value-0123456789".to_owned(),
            emu.expired_client_secret(),
        ] {
            let credential = ClientCredential::secret(secret);
            rendered.push(format!("{credential:?}"));
            let err = make(credential).token().await.unwrap_err();
            rendered.push(format!("{err:?}"));
            rendered.push(err.to_string());
        }
    });
    drop(_guard);

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    // The capture worked: it holds our span and events, and reqwest/hyper's traces.
    assert!(logs.contains("acquire_token"), "{logs}");
    assert!(logs.contains("token acquired"), "{logs}");
    assert!(logs.contains("token request failed"), "{logs}");
    assert!(logs.contains("TRACE"), "no TRACE-level output captured");

    let key_body: String = emu
        .private_key_pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .take(3)
        .collect();
    let mut secrets = vec![
        emu.client_secret(),
        emu.expired_client_secret(),
        "wrong-secret-value-0123456789".to_owned(),
        key_body,
    ];
    secrets.extend(tokens.iter().cloned());
    let everything = format!("{logs}\n{}", rendered.join("\n"));
    for secret in &secrets {
        assert!(!secret.is_empty());
        assert!(
            !everything.contains(secret.as_str()),
            "a secret or token leaked into logs/Debug/errors"
        );
    }
    // No JWT at all (tokens and client assertions are JWTs: base64url of `{"`).
    assert!(
        !everything.contains("eyJ"),
        "a JWT leaked into logs/Debug/errors"
    );

    server.block_on(emu.shutdown());
}
