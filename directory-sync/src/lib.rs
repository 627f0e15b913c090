//! Users of a Microsoft 365 tenant into local user management.
//!
//! [`DirectorySource`] reads the tenant's directory (Graph `/users` and
//! `/users/delta`); [`UserStore`] keeps the local users. A sync never deletes a
//! user: a user gone from the directory is deactivated and keeps their archive.
//!
//! [`SqliteUserStore`] keeps the local users in one SQLite database (`users.db`):
//! every batch is one transaction, a sync's users and its delta token commit together,
//! and an acknowledged write survives a crash or a full disk (see its module for the
//! crash model). [`SqliteUserStore::open_or_migrate`] moves the users of an earlier
//! version's sled store into it once, keeping the old directory and reporting what
//! could not be read ([`MigrationReport`]). [`MemoryUserStore`] applies the same rules
//! in memory, for tests.

mod addresses;
mod graph;
mod kinds;
mod memory;
mod migrate;
mod names;
mod rules;
mod sqlite_store;
mod sync;
mod wire;

pub use addresses::{MailAddresses, mail_addresses, normalize_address};
pub use graph::{GraphDirectoryOptions, GraphDirectorySource, GraphDirectoryStats, RetryPolicy};
pub use kinds::{KindLookup, MailboxKind, MailboxKinds};
pub use memory::{MemoryDirectorySource, MemoryUserStore};
pub use migrate::MigrationReport;
pub use names::{NameAllocator, base_name, validate_name};
pub use sqlite_store::SqliteUserStore;
pub use sync::{AddressConflict, SkipReason, SyncOptions, SyncReport, sync};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Member or guest, as Graph's `userType` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserType {
    /// A member of the organisation.
    Member,
    /// A guest (`#EXT#`).
    Guest,
}

/// A user as the directory describes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    /// Directory object id.
    pub id: String,
    /// `userPrincipalName`.
    pub user_principal_name: String,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `mail`.
    pub mail: Option<String>,
    /// `proxyAddresses` as Graph gives them (`SMTP:primary`, `smtp:alias`).
    pub proxy_addresses: Vec<String>,
    /// `accountEnabled`.
    pub account_enabled: bool,
    /// `userType`.
    pub user_type: UserType,
}

/// Opaque token for the next incremental directory read (a `/users/delta` deltaLink).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryToken(pub String);

/// What a directory read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryChanges {
    /// `true` when this is a full listing (every user), `false` for a delta.
    pub full: bool,
    /// Users added or changed (all users when `full`).
    pub users: Vec<DirectoryUser>,
    /// Object ids removed from the directory (delta only).
    pub removed: Vec<String>,
    /// Token for the next incremental read.
    pub next: DirectoryToken,
}

/// The seam between a sync and the tenant's directory.
#[async_trait]
pub trait DirectorySource: Send + Sync {
    /// Users changed since `since` (a full listing when `None` or when the token was rejected).
    async fn changes(
        &self,
        since: Option<&DirectoryToken>,
    ) -> Result<DirectoryChanges, DirectoryError>;

    /// The mailbox kinds of directory objects `ids` (Graph: `mailboxSettings.userPurpose`,
    /// read in `$batch`es). A refusal (the app lacks MailboxSettings.Read) or a
    /// lookup that kept failing is no error: those objects are left out of
    /// [`KindLookup::kinds`] with a warning. The default classifies nothing: a source
    /// that cannot tell kinds apart leaves every mailbox a user's.
    async fn mailbox_kinds(&self, ids: &[String]) -> Result<KindLookup, DirectoryError> {
        let _ = ids;
        Ok(KindLookup::default())
    }
}

/// Where a local user came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UserOrigin {
    /// Synchronised from the directory object with this id.
    Directory {
        /// Directory object id.
        object_id: String,
    },
    /// Created by hand; never touched by a sync.
    Manual,
}

/// Role of a local user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May manage credentials, profiles and every archive.
    Admin,
    /// Sees only their own archive.
    User,
}

/// A user of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalUser {
    /// Unique login name (archive owner name).
    pub name: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Primary email address, lower-cased.
    pub email: Option<String>,
    /// Further addresses, lower-cased, without the primary.
    pub aliases: Vec<String>,
    /// Directory or manual.
    pub origin: UserOrigin,
    /// Active; deactivated users keep their archive but are not archived any more.
    pub enabled: bool,
    /// Admin or user.
    pub role: Role,
    /// An archive exists for this user: they can never be deleted by a sync.
    pub has_archive: bool,
    /// What the mailbox is for, once the directory sync classified it; `None` for
    /// manual users and users not classified yet (both count as `user`, see
    /// [`LocalUser::mailbox_kind`]).
    #[serde(default)]
    pub kind: Option<MailboxKind>,
}

impl LocalUser {
    /// The user's mailbox kind: as classified, else `user`.
    pub fn mailbox_kind(&self) -> MailboxKind {
        self.kind.unwrap_or(MailboxKind::User)
    }
}

/// The seam to local user management.
pub trait UserStore: Send + Sync {
    /// One user by name.
    fn get(&self, name: &str) -> Result<Option<LocalUser>, DirectoryError>;
    /// Every user, by name.
    fn list(&self) -> Result<Vec<LocalUser>, DirectoryError>;
    /// The user whose primary address or alias is `address` (case-insensitive).
    fn find_by_address(&self, address: &str) -> Result<Option<LocalUser>, DirectoryError>;
    /// Creates or replaces a user.
    fn put(&self, user: &LocalUser) -> Result<(), DirectoryError>;
    /// Deletes a user; refused when the user has an archive.
    fn remove(&self, name: &str) -> Result<(), DirectoryError>;
    /// Records that `name` now has an archive.
    fn mark_has_archive(&self, name: &str) -> Result<(), DirectoryError>;
    /// The saved directory delta token.
    fn directory_token(&self) -> Result<Option<DirectoryToken>, DirectoryError>;
    /// Saves the directory delta token.
    fn set_directory_token(&self, token: Option<&DirectoryToken>) -> Result<(), DirectoryError>;

    /// Creates or replaces several users at once. Address and object-id uniqueness is
    /// checked against the state after the whole batch, so users may trade addresses.
    /// Implementations should apply the batch atomically; the default writes one by one.
    fn put_many(&self, users: &[LocalUser]) -> Result<(), DirectoryError> {
        users.iter().try_for_each(|u| self.put(u))
    }

    /// Writes a sync's users and its new directory token. Implementations should
    /// commit both in one transaction, so the token never gets ahead of the users; the
    /// default writes the users, then the token.
    fn apply_sync(
        &self,
        users: &[LocalUser],
        token: Option<&DirectoryToken>,
    ) -> Result<(), DirectoryError> {
        self.put_many(users)?;
        self.set_directory_token(token)
    }

    /// The user synchronised from directory object `object_id`.
    fn find_by_object_id(&self, object_id: &str) -> Result<Option<LocalUser>, DirectoryError> {
        Ok(self.list()?.into_iter().find(
            |u| matches!(&u.origin, UserOrigin::Directory { object_id: id } if id == object_id),
        ))
    }
}

/// What went wrong in a directory read or the user store.
///
/// Each variant names the culprit (request, user, address, file) and, where an
/// administrator can do something about it, says what.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// A user with an archive cannot be deleted.
    #[error("user {name} has an archive and cannot be deleted")]
    HasArchive {
        /// The user's name.
        name: String,
    },

    /// No token could be obtained for Graph.
    #[error("no access token for Microsoft Graph: {0}")]
    Auth(#[from] m365_auth::AuthError),

    /// Graph answered with an error status (after retries where retrying made sense).
    #[error("Graph answered {status} {code} to {request}: {message}{}", graph_hint(*status, code))]
    Graph {
        /// The request, e.g. `GET /v1.0/users/delta` (never its query: links carry tokens).
        request: String,
        /// HTTP status.
        status: u16,
        /// Graph's error code, e.g. `Authorization_RequestDenied` (empty when the body had none).
        code: String,
        /// Graph's error message.
        message: String,
        /// Graph's `request-id`, for Microsoft support.
        request_id: Option<String>,
    },

    /// Graph could not be reached or the connection failed, after retries.
    #[error("Graph request {request} failed after {attempts} attempt(s): {reason}")]
    Network {
        /// The request.
        request: String,
        /// Attempts made.
        attempts: u32,
        /// What the network stack reported last.
        reason: String,
    },

    /// Graph answered something this client cannot understand.
    #[error("unexpected answer from Graph to {request}: {reason}")]
    InvalidResponse {
        /// The request.
        request: String,
        /// What was wrong with it.
        reason: String,
    },

    /// The restricting group does not exist.
    #[error(
        "group {group} was not found in the directory: check the group id (an object id, not a name)"
    )]
    GroupNotFound {
        /// The configured group id.
        group: String,
    },

    /// A setting of the directory source is unusable.
    #[error("invalid directory option {option}: {reason}")]
    Config {
        /// The option.
        option: &'static str,
        /// Why.
        reason: String,
    },

    /// The user store could not be opened, read or written.
    #[error("user store at {path}: {reason}")]
    StoreIo {
        /// The store's file.
        path: String,
        /// What the storage layer reported.
        reason: String,
    },

    /// Another process kept the user store locked for longer than the busy timeout.
    #[error(
        "user store at {path} is locked by another process (it kept its transaction open \
         longer than this process waits): try again"
    )]
    StoreLocked {
        /// The store's file.
        path: String,
    },

    /// The disk holding the user store is full; the write was rolled back.
    #[error(
        "user store at {path}: the disk is full, nothing was written ({reason}): free space \
         on that filesystem and try again"
    )]
    StoreFull {
        /// The store's file.
        path: String,
        /// What the storage layer reported.
        reason: String,
    },

    /// The user store of an earlier version could not be migrated; nothing was changed.
    #[error(
        "the user store of an earlier version at {old_path} cannot be migrated to {new_path}: \
         {reason}. Nothing was changed and no new store was created: restore {old_path} from a \
         backup, or move it away to start with an empty user store (then synchronise the users \
         again and add the manual ones by hand)"
    )]
    StoreMigration {
        /// The old store's directory.
        old_path: String,
        /// The new store's file.
        new_path: String,
        /// What failed.
        reason: String,
    },

    /// A record of the user store cannot be decoded.
    #[error("user store at {path} holds a corrupt record {key}: {reason}")]
    StoreCorrupt {
        /// The store's directory.
        path: String,
        /// The record's key.
        key: String,
        /// Why it cannot be decoded.
        reason: String,
    },

    /// The store was written by a newer version of this software.
    #[error(
        "user store at {path} has format version {found}; this version reads up to {supported}: \
         upgrade the archiver"
    )]
    StoreVersion {
        /// The store's directory.
        path: String,
        /// Format version found.
        found: u32,
        /// Newest format this version reads.
        supported: u32,
    },

    /// No local user has this name.
    #[error("no local user named {name}")]
    NotFound {
        /// The name asked for.
        name: String,
    },

    /// A local user is not acceptable as given.
    #[error("user {name}: {reason}")]
    InvalidUser {
        /// The user's name as given.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// An address already belongs to another local user.
    #[error("address {address} of user {name} already belongs to user {owner}")]
    AddressTaken {
        /// The user being written.
        name: String,
        /// The contested address.
        address: String,
        /// The user who holds it.
        owner: String,
    },

    /// A directory object is already linked to another local user.
    #[error("directory object {object_id} of user {name} is already linked to user {owner}")]
    ObjectTaken {
        /// The user being written.
        name: String,
        /// The directory object id.
        object_id: String,
        /// The user it is linked to.
        owner: String,
    },
}

impl DirectoryError {
    /// Whether trying again later may succeed without changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            DirectoryError::Network { .. } => true,
            DirectoryError::Graph { status, .. } => *status == 429 || *status >= 500,
            DirectoryError::Auth(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Advice for Graph errors an administrator can fix.
fn graph_hint(status: u16, code: &str) -> &'static str {
    match (status, code) {
        (401, _) => {
            ". The token was refused twice: check that the credential belongs to this tenant \
             and cloud"
        }
        (403, _) => {
            ". The application lacks a directory permission: grant it the User.Read.All \
             application permission (GroupMember.Read.All too when restricted to a group) \
             and an administrator's consent"
        }
        (429, _) => ". Graph kept throttling the directory reads: try again later",
        (500..=599, _) => ". Graph is having trouble: try again later",
        _ => "",
    }
}
