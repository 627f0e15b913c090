//! The archiver's use cases: one function per thing a person can do, given the
//! caller ([`Principal`]), returning typed results or a [`ServiceError`].
//!
//! The command line, the daemon and the web pages call [`Service`] and nothing
//! below it. The service owns the rules (who may do what, the free-space reserve of
//! a run, a user with an archive is never deleted, ...) and scopes every read to
//! what the caller may see (see [`principal`]). It opens the stores itself from the
//! data directory it is given; it never prints, exits or reads the environment
//! (secrets kept as environment references are looked up through
//! [`ServiceOptions::secret_lookup`], which the binary supplies).
//!
//! ```
//! use archiver_service::{Principal, Service, ServiceOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let service = Service::new(dir.path().join("data"), ServiceOptions::default());
//! // Nothing is set up yet: no users, and a `user` account may not list them.
//! assert!(service.list_users(&Principal::LocalAdministrator).unwrap().is_empty());
//! assert!(service.list_users(&Principal::user("alice")).is_err());
//! ```

mod access;
mod access_store;
mod archive;
mod audit;
mod content;
mod credentials;
pub mod datadir;
mod error;
mod governance;
pub mod principal;
mod profiles;
mod restore;
pub mod settings;
mod signin;
mod text;
mod tokens;
mod users;
mod wiring;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

pub use access::{AccessEntry, MAX_UNBLOCK_DAYS};
pub use access_store::ApiScope;
pub use archive::{ArchiveOverview, ExportRequest, ImportRequest, SearchRequest, ShownMessage};
pub use archive_restore::{RestoreEvent, RestoreFailure, RestoreReport, Selection};
pub use audit_log;
pub use content::{
    AttachmentContent, AttachmentInfo, FolderCount, MessageView, ZIP_MANIFEST, ZipExport,
};
pub use credentials::{AddedCredential, CredentialTest, MailboxProbe, NewCredential, SecretInput};
pub use datadir::{DATA_DIR_ENV, resolve_data_dir};
pub use error::{ErrorCategory, ResultExt, ServiceError, chain};
pub use governance::{HoldDetails, HoldSpec, PolicySpec, restriction_text};
pub use principal::{Account, Grant, Principal, Reach, Role, Unblock, Visible};
pub use profiles::{
    DueProfiles, MailboxSelection, ProfileListing, ProfileSpec, parse_deletion_mode,
    profile_from_spec,
};
pub use restore::RestoreRequest;
pub use retention;
pub use secrecy;
pub use settings::human_bytes;
pub use signin::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, check_password};
pub use text::message_text;
pub use tokens::{TOKEN_PREFIX, TokenInfo};
pub use wiring::SecretLookup;

use datadir::{Access, DataDir};
use wiring::Stores;

/// How the service reaches what lies outside it.
#[derive(Clone)]
pub struct ServiceOptions {
    /// Resolves a secret kept as an environment-variable reference (`--secret-env`).
    /// The default finds nothing; binaries pass a lookup of their environment.
    pub secret_lookup: SecretLookup,
    /// Where audit events go (`None`: the file log in `<data dir>/audit/`).
    pub audit: Option<Arc<dyn audit_log::AuditSink>>,
    /// The OS user running the process, named with the local administrator in
    /// audit events (the binary reads it; `None`: only the uid is named).
    pub os_user: Option<String>,
    /// The archive as retention sees it (`None`: the data directory's disk archive,
    /// which also hides restricted entries from ordinary reads itself); tests supply
    /// an in-memory one, whose restriction marks the service then checks per entry.
    pub retention_target: Option<Arc<dyn retention::RetentionTarget>>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            secret_lookup: Arc::new(|_: &str| None),
            audit: None,
            os_user: None,
            retention_target: None,
        }
    }
}

impl std::fmt::Debug for ServiceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceOptions").finish_non_exhaustive()
    }
}

/// The use cases over one data directory. Cheap to clone (clones share the stores
/// that runs have open), `Send` and `Sync`.
#[derive(Clone, Debug)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    options: ServiceOptions,
    /// The writable stores while any run uses them; released when the last run ends.
    stores: Mutex<Weak<Stores>>,
    /// The audit sink, once opened (or as the options supplied it).
    audit: Mutex<Option<Arc<dyn audit_log::AuditSink>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// The service over the data directory `root` (nothing is opened or created yet).
    pub fn new(root: impl Into<PathBuf>, options: ServiceOptions) -> Self {
        let audit = Mutex::new(options.audit.clone());
        Self {
            inner: Arc::new(Inner {
                root: root.into(),
                options,
                stores: Mutex::new(Weak::new()),
                audit,
            }),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.root
    }

    fn open(&self, access: Access) -> Result<DataDir, ServiceError> {
        DataDir::open(&self.inner.root, access)
    }

    fn secrets(&self) -> &SecretLookup {
        &self.inner.options.secret_lookup
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }

    /// The writable stores every concurrent run of this service shares: opened by
    /// the first, closed when the last one drops them.
    fn shared_stores(&self, dir: &DataDir) -> Result<Arc<Stores>, ServiceError> {
        let mut slot = self
            .inner
            .stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(stores) = slot.upgrade() {
            return Ok(stores);
        }
        let stores = Arc::new(Stores::open(dir)?);
        *slot = Arc::downgrade(&stores);
        Ok(stores)
    }

    /// Refuses a data directory someone else owns or may write to (the check
    /// credentials and profiles need), creating it (`0700`) when missing.
    pub fn prepare_private(&self, principal: &Principal) -> Result<(), ServiceError> {
        self.admin_only(
            principal,
            "set up the data directory",
            audit_log::Action::SettingsChange,
            audit_log::Target::default(),
        )?;
        self.open(Access::Admin).map(drop)
    }

    /// Creates `sub` (`0700`) inside the data directory, returning its path.
    pub fn ensure_dir(&self, principal: &Principal, sub: &Path) -> Result<PathBuf, ServiceError> {
        self.admin_only(
            principal,
            "create directories",
            audit_log::Action::SettingsChange,
            audit_log::Target::object(sub.display().to_string()),
        )?;
        self.open(Access::Admin)?.ensure(sub)
    }
}
