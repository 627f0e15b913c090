//! Users of a Microsoft 365 tenant into local user management.
//!
//! [`DirectorySource`] reads the tenant's directory (Graph `/users` and
//! `/users/delta`); [`UserStore`] keeps the local users. A sync never deletes a
//! user: a user gone from the directory is deactivated and keeps their archive.

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
    async fn changes(&self, since: Option<&DirectoryToken>) -> Result<DirectoryChanges, DirectoryError>;
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
}

/// What went wrong in a directory read or the user store.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A user with an archive cannot be deleted.
    #[error("user {name} has an archive and cannot be deleted")]
    HasArchive {
        /// The user's name.
        name: String,
    },
}
