//! Assembly of the library crates from a data directory: credentials into token
//! providers, Graph sources, the user store, the archive and the profile engine.
//!
//! The same functions serve the command line, the demo and the service, so a demo
//! run and a scheduled run go through exactly the code of `profile run`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use m365_auth::{
    ClientCredentialsProvider, CredentialStore, ProviderOptions, StoredCredential, TokenProvider,
};
use m365_mailbox::{GraphMailboxOptions, GraphMailboxSource};

use crate::datadir::DataDir;

/// Resolves a secret kept as an environment-variable reference. Binaries read the
/// environment; library crates only receive this lookup.
pub fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The credential store of `dir`, opened only if it exists (reading never creates it).
pub fn existing_credential_store(dir: &DataDir) -> Result<Option<CredentialStore>> {
    let path = dir.credentials();
    if !path.is_dir() {
        return Ok(None);
    }
    Ok(Some(CredentialStore::open(&path).with_context(|| {
        format!("cannot open the credential store {}", path.display())
    })?))
}

/// Credential `name` of `dir`, with an error naming it when it is not there.
pub fn load_credential(dir: &DataDir, name: &str) -> Result<StoredCredential> {
    let Some(store) = existing_credential_store(dir)? else {
        bail!(
            "no credential named `{name}`: {} holds no credentials yet (add them with `credentials add`)",
            dir.root().display()
        );
    };
    Ok(store.get(name)?)
}

/// What a token provider and the Graph sources need from one credential.
#[derive(Clone)]
pub struct Connection {
    /// The credential's name.
    pub name: String,
    /// Tokens for Graph.
    pub tokens: Arc<ClientCredentialsProvider>,
    /// The Graph root of the credential's cloud.
    pub graph_url: url::Url,
    /// Extra CA bundle (PEM text) of the credential, for Graph too.
    pub extra_ca_pem: Option<String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("name", &self.name)
            .field("graph_url", &self.graph_url.as_str())
            .finish_non_exhaustive()
    }
}

/// A connection for a stored credential (nothing is contacted yet).
pub fn connect(credential: &StoredCredential) -> Result<Connection> {
    let tokens = credential
        .provider(&env_lookup, ProviderOptions::default())
        .with_context(|| format!("credential `{}`", credential.name))?;
    let extra_ca_pem = match &credential.ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the CA bundle {}", path.display()))?,
        ),
        None => None,
    };
    Ok(Connection {
        name: credential.name.clone(),
        tokens: Arc::new(tokens),
        graph_url: credential.cloud.graph_url(),
        extra_ca_pem,
    })
}

impl Connection {
    /// The token provider as the seam type.
    pub fn token_provider(&self) -> Arc<dyn TokenProvider> {
        self.tokens.clone()
    }

    /// Acquires a token now: proves the credential works. Returns its remaining lifetime.
    pub async fn check_token(&self) -> Result<Duration> {
        let token = self
            .tokens
            .token()
            .await
            .with_context(|| format!("credential `{}` cannot obtain a token", self.name))?;
        Ok(token
            .expires_at()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default())
    }

    /// A Graph mailbox source with a per-request timeout of `timeout`.
    pub fn mailbox_source(&self, timeout: Duration) -> Result<GraphMailboxSource> {
        let options = GraphMailboxOptions {
            request_timeout: timeout,
            extra_ca_pem: self.extra_ca_pem.clone(),
            ..GraphMailboxOptions::default()
        };
        GraphMailboxSource::new(self.token_provider(), self.graph_url.clone(), options)
            .with_context(|| format!("credential `{}`: Graph client", self.name))
    }
}

/// `state/checkpoints`: per profile and mailbox, the folders' delta cursors.
pub fn checkpoints_dir(dir: &DataDir) -> std::path::PathBuf {
    dir.state().join("checkpoints")
}

/// `state/history`: one JSON line per finished run.
pub fn history_dir(dir: &DataDir) -> std::path::PathBuf {
    dir.state().join("history")
}

/// `state/locks`: one lock file per profile, held while it runs.
pub fn locks_dir(dir: &DataDir) -> std::path::PathBuf {
    dir.state().join("locks")
}

/// Opens the archive of `dir`. With `create` false an archive that does not exist
/// yet is an error (read-only commands never create one).
pub fn open_archive(dir: &DataDir, create: bool) -> Result<Arc<archive_store::DiskArchiveStore>> {
    let path = dir.archive();
    if !create && !path.is_dir() {
        bail!(
            "there is no archive in {} yet: run a profile (`profile run`) or import mail first",
            dir.root().display()
        );
    }
    let store =
        archive_store::DiskArchiveStore::open(&path, archive_store::StoreOptions::default())
            .with_context(|| format!("cannot open the archive {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Opens the archive of `dir` for reading only: nothing of its packs, log or
/// configuration is written (read commands, also on a full disk).
pub fn open_archive_read_only(dir: &DataDir) -> Result<Arc<archive_store::DiskArchiveStore>> {
    let path = dir.archive();
    if !path.is_dir() {
        bail!(
            "there is no archive in {} yet: run a profile (`profile run`) or import mail first",
            dir.root().display()
        );
    }
    let store = archive_store::DiskArchiveStore::open_read_only(
        &path,
        archive_store::StoreOptions::default(),
    )
    .with_context(|| format!("cannot open the archive {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Builds fresh indexes of the archive of `dir` from its packs and record log, beside
/// the current ones (never opened), and swaps them in.
pub fn rebuild_archive_indexes(dir: &DataDir) -> Result<archive_store::ArchiveStats> {
    let path = dir.archive();
    if !path.is_dir() {
        bail!(
            "there is no archive in {} yet: run a profile (`profile run`) or import mail first",
            dir.root().display()
        );
    }
    archive_store::DiskArchiveStore::rebuild_indexes(&path, archive_store::StoreOptions::default())
        .with_context(|| format!("cannot rebuild the indexes of {}", path.display()))
}

/// Free space of the filesystem holding the archive of `dir` (the data directory's
/// filesystem while no archive exists yet): `(available, total)` bytes.
pub fn archive_space(dir: &DataDir) -> Result<(u64, u64)> {
    let archive = dir.archive();
    let path = if archive.is_dir() {
        archive
    } else {
        dir.root().to_path_buf()
    };
    let space = archive_store::space_at(&path)
        .with_context(|| format!("cannot read the free space of {}", path.display()))?;
    Ok((space.available_bytes, space.total_bytes))
}

/// Refuses to start a run when the archive's filesystem has less free space than the
/// reserve of `settings.toml`: the error names the path, the free space and the fix.
pub fn check_reserve(dir: &DataDir) -> Result<()> {
    let settings = crate::settings::Settings::load(dir)?;
    let (available, total) = archive_space(dir)?;
    let required = settings.reserve.required(total);
    if available < required {
        bail!(
            "not enough free space to start a run: {} has {} free, below the reserve of {} \
             (the smaller of {} and {}% of the filesystem, set in {}); free space or move the \
             data directory to a larger disk",
            dir.archive().display(),
            human_bytes(available),
            human_bytes(required),
            human_bytes(settings.reserve.bytes),
            settings.reserve.percent,
            crate::settings::Settings::path(dir).display()
        );
    }
    Ok(())
}

/// Bytes for people (`1.5 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `users.db`: the local user store (SQLite). Earlier versions kept the users in a
/// sled database in `users/` ([`DataDir::users`]), migrated on first open.
pub fn users_db(dir: &DataDir) -> std::path::PathBuf {
    dir.root().join("users.db")
}

/// Whether `dir` has a user store (the SQLite one, or an earlier version's still to
/// migrate).
pub fn has_user_store(dir: &DataDir) -> bool {
    users_db(dir).is_file() || dir.users().is_dir()
}

/// Opens (creating if needed) the local user store of `dir`, migrating an earlier
/// version's store on first open: logged (a WARN naming what could not be recovered
/// when the migration was partial).
pub fn open_user_store(dir: &DataDir) -> Result<Arc<dyn directory_sync::UserStore>> {
    let path = users_db(dir);
    let (store, migration) =
        directory_sync::SqliteUserStore::open_or_migrate(&path, dir.users())
            .with_context(|| format!("cannot open the user store {}", path.display()))?;
    if let Some(report) = migration {
        log_migration(&report);
    }
    Ok(Arc::new(store))
}

/// Opens the local user store of `dir` for reading only (works on a full disk);
/// `None` when there is none. An earlier version's store is migrated first (which
/// writes).
pub fn open_user_store_read_only(
    dir: &DataDir,
) -> Result<Option<Arc<dyn directory_sync::UserStore>>> {
    let path = users_db(dir);
    if !path.exists() {
        if !dir.users().is_dir() {
            return Ok(None);
        }
        return open_user_store(dir).map(Some);
    }
    let store = directory_sync::SqliteUserStore::open_read_only(&path)
        .with_context(|| format!("cannot open the user store {}", path.display()))?;
    Ok(Some(Arc::new(store)))
}

fn log_migration(report: &directory_sync::MigrationReport) {
    if report.is_complete() {
        tracing::info!(
            users = report.recovered_users.len(),
            old = %report.old_path.display(),
            new = %report.new_path.display(),
            "user store migrated from the earlier sled format; the old store is kept"
        );
    } else {
        tracing::warn!(
            recovered = report.recovered_users.len(),
            recovered_users = %report.recovered_users.join(","),
            unreadable_records = report.unreadable_records,
            lost_users = %report.lost_users.join(","),
            problems = %report.problems.join("; "),
            token_recovered = report.token_recovered,
            old = %report.old_path.display(),
            "user store migrated from the earlier sled format with losses: add the lost users \
             again (`users add`, `users sync`); the old store is kept for inspection"
        );
    }
}

/// A directory source for the tenant of `connection`.
pub fn directory_source(
    connection: &Connection,
) -> Result<Option<Arc<dyn directory_sync::DirectorySource>>> {
    let options = directory_sync::GraphDirectoryOptions {
        extra_ca_pem: connection.extra_ca_pem.clone(),
        ..directory_sync::GraphDirectoryOptions::default()
    };
    let source = directory_sync::GraphDirectorySource::new(
        connection.token_provider(),
        connection.graph_url.clone(),
        options,
    )
    .with_context(|| format!("credential `{}`: directory client", connection.name))?;
    Ok(Some(Arc::new(source)))
}

/// The stores every run of a process shares (each takes a lock on its files, so a
/// process opens them once).
#[derive(Clone)]
pub struct Stores {
    /// Local users.
    pub users: Arc<dyn directory_sync::UserStore>,
    /// The archive.
    pub archive: Arc<archive_store::DiskArchiveStore>,
}

impl Stores {
    /// Opens (creating if needed) the user store and the archive of `dir`.
    pub fn open(dir: &DataDir) -> Result<Self> {
        Ok(Self {
            users: open_user_store(dir)?,
            archive: open_archive(dir, true)?,
        })
    }
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("archive", &self.archive.dir())
            .finish_non_exhaustive()
    }
}

/// An engine wired for one profile, with what it was built from.
pub struct ProfileEngine {
    /// The engine.
    pub engine: profile_engine::Engine,
    /// The profile's credentials.
    pub connection: Connection,
}

/// Builds the engine that runs `profile` against the stores of `dir`. Errors name the
/// profile's credentials when they are missing or unusable.
pub fn engine_for(
    dir: &DataDir,
    profile: &profile_engine::Profile,
    stores: &Stores,
) -> Result<ProfileEngine> {
    let credential = load_credential(dir, &profile.credentials)
        .with_context(|| format!("profile `{}`", profile.name))?;
    let connection = connect(&credential).with_context(|| format!("profile `{}`", profile.name))?;
    let timeout = Duration::from_secs(profile.run.timeout_secs.max(1));
    let mailboxes = Arc::new(connection.mailbox_source(timeout)?);
    let options = profile_engine::EngineOptions {
        lock_dir: Some(locks_dir(dir)),
        history: Some(profile_engine::RunHistory::new(history_dir(dir))),
        ..profile_engine::EngineOptions::default()
    };
    let mut builder = profile_engine::Engine::builder()
        .token_provider(connection.token_provider())
        .mailbox_source(mailboxes)
        .user_store(stores.users.clone())
        .archive_store(stores.archive.clone())
        .checkpoints(profile_engine::CheckpointStore::new(checkpoints_dir(dir)))
        .options(options);
    if let Some(directory) = directory_source(&connection)? {
        builder = builder.directory_source(directory);
    }
    Ok(ProfileEngine {
        engine: builder.build()?,
        connection,
    })
}
