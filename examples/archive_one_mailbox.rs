//! Archives one mailbox into a chosen user's archive with the library crates, against
//! an emulated tenant it starts itself: credentials → token provider → Graph mailbox
//! source → profile engine → on-disk archive. Then runs again to show that an
//! incremental run downloads nothing, and verifies every archived message.
//!
//! Run: `cargo run -p m365-archiver-examples --example archive_one_mailbox`

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use archive_store::{ArchiveStore, DiskArchiveStore, StoreOptions};
use directory_sync::{LocalUser, MemoryUserStore, Role, UserOrigin, UserStore};
use m365_auth::{
    AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud, ProviderOptions,
};
use m365_emulator::{Emulator, EmulatorConfig};
use m365_mailbox::{GraphMailboxOptions, GraphMailboxSource};
use profile_engine::{CancellationToken, CheckpointStore, Engine, NoProgress, Profile, Source};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run().await
}

/// The whole example (also run by the examples' test, so CI runs it).
pub async fn run() -> anyhow::Result<()> {
    let emu = Emulator::start(EmulatorConfig {
        users: 2,
        messages_per_user: 40,
        ..Default::default()
    })
    .await?;
    let mailbox = emu
        .users()
        .into_iter()
        .find(|u| u.has_mailbox && !u.access_denied)
        .map(|u| u.upn)
        .ok_or_else(|| anyhow::anyhow!("the tenant has no readable mailbox"))?;

    // Tokens: the app registration (production: Cloud::Global and a certificate).
    let cloud = Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str())?;
    let registration = AppRegistration::new(
        &emu.tenant_id(),
        &emu.client_id(),
        ClientCredential::secret(emu.client_secret()),
        cloud.clone(),
    )?;
    let tokens = Arc::new(ClientCredentialsProvider::new(
        registration,
        ProviderOptions::default(),
    )?);

    // Graph: folders, delta and MIME, throttling handled inside.
    let source = GraphMailboxSource::new(
        tokens.clone(),
        cloud.graph_url(),
        GraphMailboxOptions {
            request_timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )?;

    // Local side: the archive on disk, the archive owner in a user store, checkpoints.
    let work = tempfile::tempdir()?;
    let archive = Arc::new(DiskArchiveStore::open(
        work.path().join("archive"),
        StoreOptions::default(),
    )?);
    let users = Arc::new(MemoryUserStore::new());
    users.put(&LocalUser {
        name: "records".into(),
        display_name: Some("Records management".into()),
        email: Some("records@example.com".into()),
        aliases: Vec::new(),
        origin: UserOrigin::Manual,
        enabled: true,
        role: Role::User,
        has_archive: false,
        kind: None,
    })?;
    let engine = Engine::builder()
        .token_provider(tokens)
        .mailbox_source(Arc::new(source))
        .user_store(users)
        .archive_store(archive.clone())
        .checkpoints(CheckpointStore::new(work.path().join("checkpoints")))
        .build()?;

    // A "single mailbox" profile: this mailbox into the archive of user `records`.
    let profile = Profile::new(
        "one-mailbox",
        "example",
        Source::Single {
            mailbox: mailbox.clone(),
            target_user: "records".into(),
        },
    );
    let first = engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await?;
    println!(
        "first run: {} messages archived from {mailbox} ({} of them in the mailbox), {} requests, {:.2} s",
        first.totals.messages_archived,
        emu.message_count(&mailbox),
        first.requests,
        first.duration_secs
    );
    let second = engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await?;
    println!(
        "second run: {} archived, {} requests (incremental: one delta round per folder)",
        second.totals.messages_archived, second.requests
    );

    let mut intact = 0;
    for entry in archive.list("records", None)? {
        if archive.verify_message(&entry.id)? {
            intact += 1;
        }
    }
    let stats = archive.stats()?;
    println!(
        "archive: {} messages ({} verified intact), {} bytes of mail in {} bytes on disk",
        stats.messages, intact, stats.logical_bytes, stats.stored_bytes
    );
    anyhow::ensure!(first.totals.messages_archived as usize == emu.message_count(&mailbox));
    anyhow::ensure!(second.totals.messages_archived == 0);
    anyhow::ensure!(intact as u64 == stats.messages);
    emu.shutdown().await;
    Ok(())
}
