//! The production stack (client-credentials tokens, Graph mailbox and directory
//! sources, SQLite user store, disk archive, profile engine) over one data directory,
//! pointed at an emulated tenant: the same code paths as a real tenant.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use archive_store::{DiskArchiveStore, StoreOptions};
use directory_sync::{GraphDirectoryOptions, GraphDirectorySource, SqliteUserStore};
use m365_auth::{
    AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud, ProviderOptions,
    TokenProvider,
};
use m365_mailbox::{GraphMailboxOptions, GraphMailboxSource};
use profile_engine::{
    CancellationToken, CheckpointStore, Engine, EngineOptions, NoProgress, Profile, RunReport,
    Select, Source,
};
use serde::{Deserialize, Serialize};

/// How to reach an emulated tenant (passed to the child process as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantAccess {
    /// Authority root.
    pub login_url: String,
    /// Graph root.
    pub graph_url: String,
    /// Tenant id.
    pub tenant_id: String,
    /// App (client) id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
}

impl TenantAccess {
    /// The access of an in-process emulator.
    pub fn of(emulator: &m365_emulator::Emulator) -> Self {
        Self {
            login_url: emulator.login_url().to_string(),
            graph_url: emulator.graph_url().to_string(),
            tenant_id: emulator.tenant_id(),
            client_id: emulator.client_id(),
            client_secret: emulator.client_secret(),
        }
    }
}

/// An engine and its archive over `data`.
pub struct Stack {
    /// The profile engine.
    pub engine: Engine,
    /// The archive it writes.
    pub archive: Arc<DiskArchiveStore>,
}

/// Builds the production stack for `tenant` over the data directory `data`.
pub fn build(tenant: &TenantAccess, data: &Path) -> anyhow::Result<Stack> {
    let cloud = Cloud::custom(&tenant.login_url, &tenant.graph_url)?;
    let registration = AppRegistration::new(
        &tenant.tenant_id,
        &tenant.client_id,
        ClientCredential::secret(tenant.client_secret.clone()),
        cloud,
    )?;
    let tokens: Arc<dyn TokenProvider> = Arc::new(ClientCredentialsProvider::new(
        registration,
        ProviderOptions::default(),
    )?);
    let graph_root = url::Url::parse(&tenant.graph_url)?;
    let mail = GraphMailboxSource::new(
        tokens.clone(),
        graph_root.clone(),
        GraphMailboxOptions::default(),
    )?;
    let directory =
        GraphDirectorySource::new(tokens.clone(), graph_root, GraphDirectoryOptions::default())?;
    let users =
        Arc::new(SqliteUserStore::open(data.join("users.db")).context("opening the user store")?);
    let archive = Arc::new(
        DiskArchiveStore::open(data.join("archive"), StoreOptions::default())
            .context("opening the archive")?,
    );
    let engine = Engine::builder()
        .token_provider(tokens)
        .mailbox_source(Arc::new(mail))
        .directory_source(Arc::new(directory))
        .user_store(users)
        .archive_store(archive.clone())
        .checkpoints(CheckpointStore::new(data.join("checkpoints")))
        .options(EngineOptions {
            lock_dir: Some(data.join("locks")),
            ..EngineOptions::default()
        })
        .build()?;
    Ok(Stack { engine, archive })
}

/// The benchmark's profile: every mailbox, directory synced first, `parallel` mailboxes at once.
pub fn everyone(parallel: usize) -> Profile {
    let mut profile = Profile::new(
        "bench-everyone",
        "bench",
        Source::Multiple {
            select: Select::All,
            users: vec![],
            sync_directory_first: true,
            mailbox_kinds: profile_engine::MailboxKinds::default(),
        },
    );
    profile.run.parallel_mailboxes = parallel.max(1);
    profile
}

/// Runs the all-mailboxes profile once, `parallel` mailboxes at once.
pub async fn run_everyone(stack: &Stack, parallel: usize) -> anyhow::Result<RunReport> {
    let report = stack
        .engine
        .run(&everyone(parallel), &CancellationToken::new(), &NoProgress)
        .await?;
    Ok(report)
}
