//! Acquires Microsoft Graph tokens the way the archiver does, against an emulator it
//! starts itself: once with the client secret, once with the certificate (PS256 and
//! RS256). Prints only each token's expiry, never the token.
//!
//! Run: `cargo run -p m365-archiver-examples --example acquire_token`

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use m365_auth::{
    AppRegistration, AssertionAlgorithm, ClientCertificate, ClientCredential,
    ClientCredentialsProvider, Cloud, GraphClientOptions, ProviderOptions, TokenProvider,
    graph_client,
};
use m365_emulator::{Emulator, EmulatorConfig};
use secrecy::SecretString;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let emu = Emulator::start(EmulatorConfig {
        users: 2,
        messages_per_user: 1,
        ..Default::default()
    })
    .await?;
    // A custom cloud: the emulator's authority and Graph root. Production uses Cloud::Global etc.
    let cloud = Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str())?;
    println!("authority: {}", emu.login_url());

    let certificate = ClientCertificate::from_pem(
        &emu.certificate_pem(),
        &SecretString::from(emu.private_key_pem()),
    )?;
    println!(
        "certificate: {} (thumbprint {})",
        certificate.subject(),
        certificate.thumbprint_sha1_hex()
    );
    let credentials = [
        (
            "client secret",
            ClientCredential::secret(emu.client_secret()),
        ),
        (
            "certificate, PS256",
            ClientCredential::certificate(certificate.clone()),
        ),
        (
            "certificate, RS256",
            ClientCredential::certificate(certificate.with_algorithm(AssertionAlgorithm::Rs256)),
        ),
    ];
    for (label, credential) in credentials {
        let registration = AppRegistration::new(
            &emu.tenant_id(),
            &emu.client_id(),
            credential,
            cloud.clone(),
        )?;
        let provider = Arc::new(ClientCredentialsProvider::new(
            registration,
            ProviderOptions::default(),
        )?);
        let started = std::time::Instant::now();
        let token = provider.token().await?;
        let acquisition = started.elapsed();
        let expires_at: chrono::DateTime<chrono::Utc> = token.expires_at().into();
        let left = token
            .expires_at()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        println!(
            "{label}: token expires at {} (in {} s), acquired in {:.1} ms",
            expires_at.to_rfc3339(),
            left.as_secs(),
            acquisition.as_secs_f64() * 1000.0
        );
        // What every Graph request pays afterwards: a cache hit.
        let hits = 100_000;
        let started = std::time::Instant::now();
        for _ in 0..hits {
            provider.token().await?;
        }
        println!(
            "{label}: {hits} cached token() calls in {:.1} ms ({:.0} ns each)",
            started.elapsed().as_secs_f64() * 1000.0,
            started.elapsed().as_nanos() as f64 / f64::from(hits)
        );

        // The same provider feeds graph-rs-sdk.
        let graph = graph_client(provider, &cloud, &GraphClientOptions::default());
        let status = graph.users().list_user().send().await?.status();
        println!("{label}: GET /v1.0/users -> {status}");
    }
    println!(
        "token requests seen by the emulator: {}",
        emu.stats().await.token_requests
    );
    emu.shutdown().await;
    Ok(())
}
