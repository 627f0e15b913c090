//! Assembly of the library crates from a data directory: credentials into token
//! providers, Graph sources, the user store, the archive and the profile engine.
//!
//! Every use case opens what it needs through these functions, so a command-line
//! run, a demo run and a scheduled run go through exactly the same code.

use std::sync::Arc;
use std::time::Duration;

use m365_auth::{
    ClientCredentialsProvider, CredentialStore, ProviderOptions, StoredCredential, TokenProvider,
};
use m365_mailbox::{GraphMailboxOptions, GraphMailboxSource};

use crate::datadir::DataDir;
use crate::error::{ResultExt, ServiceError};
use crate::settings::{Settings, human_bytes};

type Result<T> = std::result::Result<T, ServiceError>;

/// Looks up a secret kept as an environment-variable reference. The binary supplies
/// it (it reads the environment); the service only calls it.
pub type SecretLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The credential store of `dir`, opened only if it exists (reading never creates it).
pub(crate) fn existing_credential_store(dir: &DataDir) -> Result<Option<CredentialStore>> {
    let path = dir.credentials();
    if !path.is_dir() {
        return Ok(None);
    }
    Ok(Some(CredentialStore::open(&path).context_with(|| {
        format!("cannot open the credential store {}", path.display())
    })?))
}

/// Credential `name` of `dir`, with an error naming it when it is not there.
pub(crate) fn load_credential(dir: &DataDir, name: &str) -> Result<StoredCredential> {
    let Some(store) = existing_credential_store(dir)? else {
        return Err(ServiceError::not_found(format!(
            "no credential named `{name}`: {} holds no credentials yet (add them with `credentials add`)",
            dir.root().display()
        )));
    };
    Ok(store.get(name)?)
}

/// What a token provider and the Graph sources need from one credential.
#[derive(Clone)]
pub(crate) struct Connection {
    /// The credential's name.
    pub name: String,
    /// Tokens for Graph.
    pub tokens: Arc<ClientCredentialsProvider>,
    /// The Graph root of the credential's cloud.
    pub graph_url: url::Url,
    /// Extra CA bundle (PEM text) of the credential, for Graph too.
    pub extra_ca_pem: Option<String>,
}

/// A connection for a stored credential (nothing is contacted yet).
pub(crate) fn connect(credential: &StoredCredential, lookup: &SecretLookup) -> Result<Connection> {
    let lookup = |name: &str| lookup(name);
    let tokens = credential
        .provider(&lookup, ProviderOptions::default())
        .context_with(|| format!("credential `{}`", credential.name))?;
    let extra_ca_pem = match &credential.ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| ServiceError::io("cannot read the CA bundle", path, e))?,
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
            .context_with(|| format!("credential `{}` cannot obtain a token", self.name))?;
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
            .context_with(|| format!("credential `{}`: Graph client", self.name))
    }

    /// A Graph mailbox source with the default per-request timeout, for restores.
    pub fn restore_source(&self) -> Result<GraphMailboxSource> {
        self.mailbox_source(GraphMailboxOptions::default().request_timeout)
    }

    /// A directory source for the tenant of this connection.
    pub fn directory_source(&self) -> Result<Arc<dyn directory_sync::DirectorySource>> {
        let options = directory_sync::GraphDirectoryOptions {
            extra_ca_pem: self.extra_ca_pem.clone(),
            ..directory_sync::GraphDirectoryOptions::default()
        };
        let source = directory_sync::GraphDirectorySource::new(
            self.token_provider(),
            self.graph_url.clone(),
            options,
        )
        .context_with(|| format!("credential `{}`: directory client", self.name))?;
        Ok(Arc::new(source))
    }
}

/// The writer a restore goes through for `connection`: the one place where the Graph
/// write side is plugged into the service.
pub(crate) fn restore_writer(
    connection: &Connection,
) -> Result<Arc<dyn m365_mailbox::MailboxWriter>> {
    Ok(Arc::new(connection.restore_source()?))
}

fn no_archive(dir: &DataDir) -> ServiceError {
    ServiceError::not_found(format!(
        "there is no archive in {} yet: run a profile (`profile run`) or import mail first",
        dir.root().display()
    ))
}

/// Opens (creating if needed) the archive of `dir` for writing.
pub(crate) fn open_archive(dir: &DataDir) -> Result<Arc<archive_store::DiskArchiveStore>> {
    let path = dir.archive();
    let store =
        archive_store::DiskArchiveStore::open(&path, archive_store::StoreOptions::default())
            .context_with(|| format!("cannot open the archive {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Opens the archive of `dir` for reading only: nothing of its packs, log or
/// configuration is written (read commands, also on a full disk).
pub(crate) fn open_archive_read_only(
    dir: &DataDir,
) -> Result<Arc<archive_store::DiskArchiveStore>> {
    let path = dir.archive();
    if !path.is_dir() {
        return Err(no_archive(dir));
    }
    let store = archive_store::DiskArchiveStore::open_read_only(
        &path,
        archive_store::StoreOptions::default(),
    )
    .context_with(|| format!("cannot open the archive {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Builds fresh indexes of the archive of `dir` from its packs and record log, beside
/// the current ones (never opened), and swaps them in.
pub(crate) fn rebuild_archive_indexes(dir: &DataDir) -> Result<archive_store::ArchiveStats> {
    let path = dir.archive();
    if !path.is_dir() {
        return Err(no_archive(dir));
    }
    archive_store::DiskArchiveStore::rebuild_indexes(&path, archive_store::StoreOptions::default())
        .context_with(|| format!("cannot rebuild the indexes of {}", path.display()))
}

/// Free space of the filesystem holding the archive of `dir` (the data directory's
/// filesystem while no archive exists yet): `(available, total)` bytes.
pub(crate) fn archive_space(dir: &DataDir) -> Result<(u64, u64)> {
    let archive = dir.archive();
    let path = if archive.is_dir() {
        archive
    } else {
        dir.root().to_path_buf()
    };
    let space = archive_store::space_at(&path)
        .context_with(|| format!("cannot read the free space of {}", path.display()))?;
    Ok((space.available_bytes, space.total_bytes))
}

/// Refuses to start a run when the archive's filesystem has less free space than the
/// reserve of `settings.toml`: the error names the path, the free space and the fix.
pub(crate) fn check_reserve(dir: &DataDir) -> Result<()> {
    let settings = Settings::load(dir)?;
    let (available, total) = archive_space(dir)?;
    let required = settings.reserve.required(total);
    if available < required {
        return Err(ServiceError::unavailable(format!(
            "not enough free space to start a run: {} has {} free, below the reserve of {} \
             (the smaller of {} and {}% of the filesystem, set in {}); free space or move the \
             data directory to a larger disk",
            dir.archive().display(),
            human_bytes(available),
            human_bytes(required),
            human_bytes(settings.reserve.bytes),
            settings.reserve.percent,
            Settings::path(dir).display()
        )));
    }
    Ok(())
}

/// The archive of `dir` as retention sees it (entries, queries, expunge, restriction
/// marks): the one place where retention is plugged into the disk archive, opened
/// for writing only when `writable` (an apply or an erasure). A data directory with
/// no archive yet is an empty one.
pub(crate) fn retention_target(
    dir: &DataDir,
    writable: bool,
) -> Result<Arc<dyn retention::RetentionTarget>> {
    if !dir.archive().is_dir() {
        return Ok(Arc::new(retention::MemoryTarget::new()));
    }
    let store = if writable {
        open_archive(dir)?
    } else {
        open_archive_read_only(dir)?
    };
    Ok(Arc::new(DiskTarget(store)))
}

/// The disk archive, owned, as a [`retention::RetentionTarget`] (each call goes
/// through [`retention::ArchiveTarget`]).
struct DiskTarget(Arc<archive_store::DiskArchiveStore>);

impl retention::RetentionTarget for DiskTarget {
    fn entries(&self) -> std::result::Result<Vec<retention::EntryView>, retention::RetentionError> {
        retention::ArchiveTarget::new(&self.0).entries()
    }

    fn query(
        &self,
        query: &str,
    ) -> std::result::Result<
        std::collections::HashSet<retention::EntryKey>,
        retention::RetentionError,
    > {
        retention::ArchiveTarget::new(&self.0).query(query)
    }

    fn expunge(
        &self,
        entries: &[retention::EntryKey],
        permit: retention::Permit<'_>,
    ) -> std::result::Result<retention::Expunged, retention::RetentionError> {
        retention::ArchiveTarget::new(&self.0).expunge(entries, permit)
    }

    fn set_restricted(
        &self,
        entry: &retention::EntryKey,
        restricted: bool,
    ) -> std::result::Result<(), retention::RetentionError> {
        retention::ArchiveTarget::new(&self.0).set_restricted(entry, restricted)
    }

    fn is_restricted(
        &self,
        entry: &retention::EntryKey,
    ) -> std::result::Result<bool, retention::RetentionError> {
        retention::ArchiveTarget::new(&self.0).is_restricted(entry)
    }
}

/// Whether `dir` has a user store (the SQLite one, or an earlier version's still to
/// migrate).
pub(crate) fn has_user_store(dir: &DataDir) -> bool {
    dir.users_db().is_file() || dir.users().is_dir()
}

/// Opens (creating if needed) the local user store of `dir`, migrating an earlier
/// version's store on first open: logged (a WARN naming what could not be recovered
/// when the migration was partial).
pub(crate) fn open_user_store(dir: &DataDir) -> Result<Arc<dyn directory_sync::UserStore>> {
    let path = dir.users_db();
    let (store, migration) =
        directory_sync::SqliteUserStore::open_or_migrate(&path, dir.users())
            .context_with(|| format!("cannot open the user store {}", path.display()))?;
    if let Some(report) = migration {
        log_migration(&report);
    }
    Ok(Arc::new(store))
}

/// Opens the local user store of `dir` for reading only (works on a full disk);
/// `None` when there is none. An earlier version's store is migrated first (which
/// writes).
pub(crate) fn open_user_store_read_only(
    dir: &DataDir,
) -> Result<Option<Arc<dyn directory_sync::UserStore>>> {
    let path = dir.users_db();
    if !path.exists() {
        if !dir.users().is_dir() {
            return Ok(None);
        }
        return open_user_store(dir).map(Some);
    }
    let store = directory_sync::SqliteUserStore::open_read_only(&path)
        .context_with(|| format!("cannot open the user store {}", path.display()))?;
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

/// The stores the runs of a process share, open for writing.
pub(crate) struct Stores {
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
            archive: open_archive(dir)?,
        })
    }
}

/// Builds the engine that runs `profile` against `stores`. Errors name the
/// profile's credentials when they are missing or unusable.
pub(crate) fn engine_for(
    dir: &DataDir,
    profile: &profile_engine::Profile,
    stores: &Stores,
    lookup: &SecretLookup,
) -> Result<profile_engine::Engine> {
    let in_profile = || format!("profile `{}`", profile.name);
    let credential = load_credential(dir, &profile.credentials).context_with(in_profile)?;
    let connection = connect(&credential, lookup).context_with(in_profile)?;
    let timeout = Duration::from_secs(profile.run.timeout_secs.max(1));
    let mailboxes = Arc::new(connection.mailbox_source(timeout)?);
    let options = profile_engine::EngineOptions {
        lock_dir: Some(dir.locks()),
        history: Some(profile_engine::RunHistory::new(dir.history())),
        ..profile_engine::EngineOptions::default()
    };
    let builder = profile_engine::Engine::builder()
        .token_provider(connection.token_provider())
        .mailbox_source(mailboxes)
        .user_store(stores.users.clone())
        .archive_store(stores.archive.clone())
        .checkpoints(profile_engine::CheckpointStore::new(dir.checkpoints()))
        .directory_source(connection.directory_source()?)
        .governance(Arc::new(retention::FileGovernanceStore::open(
            dir.governance(),
        )?))
        .options(options);
    Ok(builder.build()?)
}
