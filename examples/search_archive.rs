//! Builds a searchable archive of a few mailboxes and searches it the way the
//! archiver's users do: users synchronised from the tenant's directory, a
//! multi-mailbox profile, then full-text search as an administrator (every archive)
//! and as one user (only their own), a message's details, and an export whose bytes
//! equal what Microsoft Graph served.
//!
//! Run: `cargo run -p m365-archiver-examples --example search_archive`

#![allow(clippy::print_stdout)]

use std::sync::Arc;

use archive_store::{
    ArchiveStore, DiskArchiveStore, ExportFilter, ExportFormat, Scope, SearchQuery, StoreOptions,
};
use directory_sync::{
    GraphDirectoryOptions, GraphDirectorySource, SqliteUserStore, SyncOptions, UserStore,
};
use m365_auth::{
    AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud, ProviderOptions,
};
use m365_emulator::{Emulator, EmulatorConfig};
use m365_mailbox::{GraphMailboxOptions, GraphMailboxSource};
use profile_engine::{
    CancellationToken, CheckpointStore, Engine, NoProgress, Profile, Select, Source,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run().await
}

/// The whole example (also run by the examples' test, so CI runs it).
pub async fn run() -> anyhow::Result<()> {
    let emu = Emulator::start(EmulatorConfig {
        users: 3,
        messages_per_user: 30,
        ..Default::default()
    })
    .await?;
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
    let work = tempfile::tempdir()?;

    // Users from the directory (guests, disabled and mailbox-less users are skipped).
    let directory = GraphDirectorySource::new(
        tokens.clone(),
        cloud.graph_url(),
        GraphDirectoryOptions::default(),
    )?;
    let users = Arc::new(SqliteUserStore::open(work.path().join("users.db"))?);
    let synced = directory_sync::sync(&directory, users.as_ref(), &SyncOptions::default()).await?;
    println!(
        "directory sync: {} users created, {} skipped",
        synced.created.len(),
        synced.skipped.len()
    );

    // Archive the first two of them.
    let chosen: Vec<String> = users.list()?.into_iter().take(2).map(|u| u.name).collect();
    let archive = Arc::new(DiskArchiveStore::open(
        work.path().join("archive"),
        StoreOptions::default(),
    )?);
    let engine = Engine::builder()
        .token_provider(tokens.clone())
        .mailbox_source(Arc::new(GraphMailboxSource::new(
            tokens,
            cloud.graph_url(),
            GraphMailboxOptions::default(),
        )?))
        .user_store(users.clone())
        .archive_store(archive.clone())
        .checkpoints(CheckpointStore::new(work.path().join("checkpoints")))
        .build()?;
    let profile = Profile::new(
        "two-mailboxes",
        "example",
        Source::Multiple {
            select: Select::Only,
            users: chosen.clone(),
            sync_directory_first: false,
            mailbox_kinds: profile_engine::MailboxKinds::default(),
        },
    );
    let report = engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await?;
    println!(
        "archived {} messages of {}",
        report.totals.messages_archived,
        chosen.join(" and ")
    );

    // Search as an administrator: every archive.
    let word = "meeting";
    let query = |user: Option<String>| SearchQuery {
        text: word.into(),
        user,
        from_date: None,
        to_date: None,
        limit: 10,
    };
    let all = archive.search(&query(None), &Scope::Admin)?;
    println!("\nadmin search {word:?}: {} hits", all.len());
    for hit in &all {
        println!(
            "  {}  {:<12} {:<24} {}",
            hit.date
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            hit.user,
            hit.folder,
            hit.subject.as_deref().unwrap_or("")
        );
    }

    // Search as one user: only their archive, whatever they ask for.
    let me = chosen[0].clone();
    let mine = archive.search(&query(None), &Scope::User(me.clone()))?;
    println!("\n{me}'s own search {word:?}: {} hits", mine.len());
    anyhow::ensure!(
        mine.iter().all(|h| h.user == me),
        "a user saw another archive"
    );

    // One message in detail, and exported byte for byte.
    if let Some(hit) = all.first() {
        let info = archive.show(&hit.id)?;
        println!(
            "\nmessage {}\n  from {}\n  subject {}\n  {} bytes, attachments {:?}, archived in {:?}",
            info.id.0,
            info.metadata.from.as_deref().unwrap_or("?"),
            info.metadata.subject.as_deref().unwrap_or(""),
            info.size,
            info.metadata.attachments,
            info.locations
        );
        let out = work.path().join("export.mbox");
        let exported = archive.export(
            &ExportFilter {
                user: hit.user.clone(),
                folder: None,
                ids: Some([hit.id.clone()].into_iter().collect()),
            },
            ExportFormat::Mbox,
            &out,
        )?;
        println!(
            "exported {} message(s), {} bytes, to {}",
            exported.messages,
            exported.bytes,
            out.display()
        );
        let raw = archive.read_message(&hit.id)?;
        let served = archive_store_matches_graph(&emu, &raw);
        println!("the archived bytes equal what Graph served: {served}");
        anyhow::ensure!(served);
    }
    emu.shutdown().await;
    Ok(())
}

/// Whether `raw` is exactly the `$value` of some message in the tenant.
fn archive_store_matches_graph(emu: &Emulator, raw: &[u8]) -> bool {
    emu.users().iter().any(|u| {
        emu.message_ids(&u.upn)
            .iter()
            .any(|id| emu.message_mime(&u.upn, id).as_deref() == Some(raw))
    })
}
