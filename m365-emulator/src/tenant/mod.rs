//! The emulated tenant: users, mailboxes, folders and messages, generated deterministically from a seed.
//!
//! Messages are stored as compact recipes (seed, kind, size) and rendered to MIME lazily and
//! deterministically on request, so 100 users × 1,000 messages fit in a few tens of MB. Only
//! messages delivered through the control API or loaded from `.eml` files keep their bytes.
//! Every mutation of a mailbox takes a new sequence number: delta tokens are sequence watermarks.

mod archive;
pub(crate) mod created;
mod generate;
mod hidden;
mod inventory;
pub(crate) mod mime;
mod model;
mod names;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

pub use archive::MailboxId;
pub use created::{AttachmentInfo, MessageState};
pub use inventory::{FolderArea, FolderCount, UnconvertibleItem};
pub(crate) use model::{exchange_id, mix as model_mix};

pub(crate) use model::{Folder, FolderKind, Mailbox, MessageRecord, Summary, UserRecord};

/// What to generate: the knobs of [`TenantStore::generate`].
#[derive(Debug, Clone, Default)]
pub struct TenantSpec {
    /// Regular enabled members with mailboxes.
    pub users: usize,
    /// Messages generated in each regular mailbox.
    pub messages_per_user: usize,
    /// Seed: the same seed gives the same tenant, byte for byte.
    pub seed: u64,
    /// Add the special users (disabled, guest, unlicensed, policy-excluded, no mail).
    pub special_users: bool,
    /// Add one message of this size to the first user's inbox (rendered as a stream).
    pub large_message_bytes: Option<u64>,
    /// Load the `.eml` files under this directory into the first user's mailbox (sub-directory = folder).
    pub eml_dir: Option<PathBuf>,
    /// Add shared (info@, support@, a departed employee's), room and equipment mailboxes.
    pub mailbox_kinds: bool,
    /// Add the Recoverable Items tree with soft-deleted mail, online archives and items whose
    /// MIME cannot be produced.
    pub hidden_mail: bool,
    /// The tenant id (GUID) that `MBX:` mailbox ids end with.
    pub tenant_id: String,
}

/// What a mailbox is for: Graph's `mailboxSettings.userPurpose`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum MailboxPurpose {
    /// A person's mailbox.
    #[default]
    User,
    /// A mailbox linked to an account in another forest.
    Linked,
    /// A mailbox several users share (info@, support@, a departed employee's converted mailbox).
    Shared,
    /// A meeting room.
    Room,
    /// A piece of equipment.
    Equipment,
    /// A mailbox whose purpose is none of the above.
    Others,
    /// Graph's evolvable-enum sentinel (`unknownFutureValue` on the wire; `unknown` is accepted).
    #[serde(rename = "unknownFutureValue", alias = "unknown")]
    Unknown,
}

impl MailboxPurpose {
    /// Parses a purpose as Graph or the control API spells it (case-insensitive).
    pub fn parse(text: &str) -> Option<MailboxPurpose> {
        let all = [
            MailboxPurpose::User,
            MailboxPurpose::Linked,
            MailboxPurpose::Shared,
            MailboxPurpose::Room,
            MailboxPurpose::Equipment,
            MailboxPurpose::Others,
            MailboxPurpose::Unknown,
        ];
        let text = text.trim();
        if text.eq_ignore_ascii_case("unknown") {
            return Some(MailboxPurpose::Unknown);
        }
        all.into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(text))
    }

    /// The `userPurpose` value on Graph's wire.
    pub fn as_str(self) -> &'static str {
        match self {
            MailboxPurpose::User => "user",
            MailboxPurpose::Linked => "linked",
            MailboxPurpose::Shared => "shared",
            MailboxPurpose::Room => "room",
            MailboxPurpose::Equipment => "equipment",
            MailboxPurpose::Others => "others",
            MailboxPurpose::Unknown => "unknownFutureValue",
        }
    }
}

/// A directory user as tests and the control API see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// Object id (GUID).
    pub id: String,
    /// User principal name.
    pub upn: String,
    /// Primary SMTP address, when the user has one.
    pub mail: Option<String>,
    /// Display name.
    pub display_name: String,
    /// `accountEnabled`.
    pub enabled: bool,
    /// `userType` is `Guest`.
    pub guest: bool,
    /// The user has an Exchange Online mailbox.
    pub has_mailbox: bool,
    /// An application access policy excludes the mailbox (403 `ErrorAccessDenied`).
    pub access_denied: bool,
    /// `mailboxSettings.userPurpose` (`user` for users without a mailbox too).
    pub purpose: MailboxPurpose,
}

/// A user to add through the control API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewUser {
    /// User principal name (required, unique).
    pub upn: String,
    /// Display name (defaults to the UPN's local part).
    pub display_name: String,
    /// Primary SMTP address; `None` gives a user without `mail`.
    pub mail: Option<String>,
    /// Further SMTP aliases (go into `proxyAddresses` as `smtp:`).
    pub aliases: Vec<String>,
    /// `accountEnabled`.
    pub enabled: bool,
    /// A guest (`userType` Guest).
    pub guest: bool,
    /// Give the user an (empty) mailbox with the well-known folders.
    pub has_mailbox: bool,
    /// Exclude the mailbox through an application access policy.
    pub access_denied: bool,
    /// What the mailbox is for (`userPurpose`: `user`, `shared`, `room`, `equipment`, ...);
    /// `user` when left out.
    #[serde(deserialize_with = "purpose_field")]
    pub purpose: MailboxPurpose,
}

/// Reads `purpose`, naming the field and the accepted values when the value is unknown.
fn purpose_field<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<MailboxPurpose, D::Error> {
    let text = String::deserialize(deserializer)?;
    MailboxPurpose::parse(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "field 'purpose': '{text}' is not one of user, linked, shared, room, equipment, others, unknown"
        ))
    })
}

impl Default for NewUser {
    fn default() -> Self {
        Self {
            upn: String::new(),
            display_name: String::new(),
            mail: None,
            aliases: Vec::new(),
            enabled: true,
            guest: false,
            has_mailbox: true,
            access_denied: false,
            purpose: MailboxPurpose::User,
        }
    }
}

/// Changes to an existing user (control API `PATCH /users/{id}`); `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserPatch {
    /// New display name.
    pub display_name: Option<String>,
    /// Enable or disable the account.
    pub enabled: Option<bool>,
    /// Add an SMTP alias to `proxyAddresses`.
    pub add_alias: Option<String>,
}

/// What can go wrong when building or changing the tenant.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// No user has this id or UPN.
    #[error("unknown user '{0}'")]
    UnknownUser(String),
    /// The user exists but has no Exchange Online mailbox.
    #[error("user '{0}' has no mailbox")]
    NoMailbox(String),
    /// The mailbox has no folder with this id or well-known name.
    #[error("mailbox '{mailbox}' has no folder '{folder}'")]
    FolderNotFound {
        /// Mailbox UPN.
        mailbox: String,
        /// Folder id or well-known name asked for.
        folder: String,
    },
    /// The mailbox has no message with this id.
    #[error("mailbox '{mailbox}' has no message '{id}'")]
    MessageNotFound {
        /// Mailbox UPN.
        mailbox: String,
        /// Message id asked for.
        id: String,
    },
    /// The user has no online archive.
    #[error("user '{0}' has no online archive")]
    NoArchive(String),
    /// A user with this UPN already exists.
    #[error("a user with UPN '{0}' already exists")]
    DuplicateUser(String),
    /// A field of a new user or patch is unusable.
    #[error("invalid user field '{field}': {reason}")]
    InvalidUser {
        /// The field.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The `.eml` directory could not be read.
    #[error("cannot read eml file or directory '{path}': {source}")]
    EmlDir {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Something else about the spec is unusable (e.g. no user to receive the large message).
    #[error("invalid tenant spec: {0}")]
    InvalidSpec(String),
}

/// Why a mail route cannot reach a mailbox (maps onto Graph error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MailboxAccess {
    /// No such user: 404 `ErrorInvalidUser`.
    UnknownUser,
    /// No Exchange mailbox: 404 `MailboxNotEnabledForRESTAPI`.
    NoMailbox,
    /// Excluded by an application access policy: 403 `ErrorAccessDenied`.
    Denied,
}

/// The tenant's mutable state behind one lock.
#[derive(Debug, Default)]
pub(crate) struct Tenant {
    /// Tenant seed (ids, tokens).
    pub(crate) seed: u64,
    /// Live users in creation order.
    pub(crate) users: Vec<UserRecord>,
    /// Deleted users: (object id, directory sequence of the deletion).
    pub(crate) removed_users: Vec<(String, u64)>,
    /// Directory change counter (users delta).
    pub(crate) directory_seq: u64,
    /// Mailboxes by user object id.
    pub(crate) mailboxes: HashMap<String, Mailbox>,
    /// Counter for users added at run time (deterministic ids).
    pub(crate) added_users: u64,
    /// The tenant id (GUID), for `MBX:` ids.
    pub(crate) tenant_id: String,
    /// Mailboxes get the hidden mail (Recoverable Items tree, unconvertible items).
    pub(crate) hidden_mail: bool,
    /// Online archive mailboxes (main and auxiliary) by mailbox GUID.
    pub(crate) archives: HashMap<String, Mailbox>,
    /// User object id → GUID of the user's main archive.
    pub(crate) archive_of: HashMap<String, String>,
}

/// The tenant: thread-safe, cheap to read concurrently.
#[derive(Debug, Clone)]
pub struct TenantStore {
    inner: Arc<RwLock<Tenant>>,
}

impl TenantStore {
    /// Builds the tenant described by `spec`, deterministically from its seed.
    ///
    /// # Errors
    /// [`TenantError::EmlDir`] when `eml_dir` cannot be read; [`TenantError::InvalidSpec`] when a
    /// large message or `.eml` directory is asked for without any user to receive it.
    pub fn generate(spec: &TenantSpec) -> Result<TenantStore, TenantError> {
        let tenant = generate::generate(spec)?;
        Ok(TenantStore {
            inner: Arc::new(RwLock::new(tenant)),
        })
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Tenant> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Tenant> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// All live users, in directory order.
    pub fn users(&self) -> Vec<UserInfo> {
        self.read().users.iter().map(UserRecord::info).collect()
    }

    /// Messages in the mailbox (all folders under the root, search folders and recoverable items
    /// excluded); 0 for an unknown user or a user without a mailbox.
    pub fn message_count(&self, upn: &str) -> usize {
        let tenant = self.read();
        tenant
            .mailbox(upn)
            .map_or(0, Mailbox::visible_message_count)
    }

    /// Immutable ids of the messages [`TenantStore::message_count`] counts.
    pub fn message_ids(&self, upn: &str) -> Vec<String> {
        let tenant = self.read();
        tenant
            .mailbox(upn)
            .map_or_else(Vec::new, Mailbox::visible_message_ids)
    }

    /// The exact bytes `$value` serves for a message (by immutable or regular id); `None` for an
    /// unknown message or one whose `$value` fails (unconvertible).
    pub fn message_mime(&self, upn: &str, id: &str) -> Option<Vec<u8>> {
        let tenant = self.read();
        let mailbox = tenant.mailbox(upn)?;
        let record = mailbox.message(id).filter(|r| !r.unconvertible)?;
        Some(mailbox.mime_source(record).render())
    }

    /// Delivers raw MIME into a folder (well-known name or folder id); answers the new immutable id.
    ///
    /// # Errors
    /// Unknown user, user without mailbox, unknown folder.
    pub fn deliver(&self, upn: &str, folder: &str, mime: Vec<u8>) -> Result<String, TenantError> {
        let mut tenant = self.write();
        let mailbox = tenant.mailbox_mut_checked(upn)?;
        // Only mail folders hold items: roots and search folders are refused like unknown ones.
        let folder_index = mailbox
            .folder_index(folder)
            .filter(|&index| mailbox.folders[index].kind == FolderKind::Mail)
            .ok_or_else(|| TenantError::FolderNotFound {
                mailbox: mailbox.upn.clone(),
                folder: folder.to_owned(),
            })?;
        Ok(mailbox.deliver(folder_index, mime))
    }

    /// The state of a message beside its MIME; `None` for an unknown user or message.
    pub fn message_state(&self, upn: &str, id: &str) -> Option<MessageState> {
        self.read().mailbox(upn)?.message_state(id)
    }

    /// The id of the folder at a path of display names below msgfolderroot.
    pub fn folder_by_path(&self, upn: &str, path: &[&str]) -> Option<String> {
        self.read().mailbox(upn)?.folder_by_path(path)
    }

    /// Deletes a message for good (as `permanentDelete`).
    ///
    /// # Errors
    /// Unknown user, user without mailbox, unknown message.
    pub fn delete_message(&self, upn: &str, id: &str) -> Result<(), TenantError> {
        let mut tenant = self.write();
        let mailbox = tenant.mailbox_mut_checked(upn)?;
        if mailbox.remove_message(id).is_none() {
            return Err(TenantError::MessageNotFound {
                mailbox: mailbox.upn.clone(),
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    /// Moves a message to Recoverable Items/Deletions, as Graph's `DELETE` does (one already in
    /// Deletions goes on to Purges). Answers the message's new (non-immutable) id, `None` when it
    /// is gone for good.
    ///
    /// # Errors
    /// Unknown user, user without mailbox, unknown message.
    pub fn soft_delete_message(&self, upn: &str, id: &str) -> Result<Option<String>, TenantError> {
        self.change_message(upn, id, Mailbox::soft_delete)
    }

    /// Moves a message to Recoverable Items/Purges, as Graph's `permanentDelete` does (gone for
    /// good without the Recoverable Items tree). Answers the new id, `None` when it is gone.
    ///
    /// # Errors
    /// Unknown user, user without mailbox, unknown message.
    pub fn hard_delete_message(&self, upn: &str, id: &str) -> Result<Option<String>, TenantError> {
        self.change_message(upn, id, Mailbox::hard_delete)
    }

    fn change_message(
        &self,
        upn: &str,
        id: &str,
        change: fn(&mut Mailbox, &str) -> Option<()>,
    ) -> Result<Option<String>, TenantError> {
        let mut tenant = self.write();
        let mailbox = tenant.mailbox_mut_checked(upn)?;
        let immutable = mailbox
            .message(id)
            .map(|m| m.immutable_id.clone())
            .ok_or_else(|| TenantError::MessageNotFound {
                mailbox: mailbox.upn.clone(),
                id: id.to_owned(),
            })?;
        change(mailbox, id);
        Ok(mailbox.message(&immutable).map(|m| m.id.clone()))
    }

    /// Adds a user (with an empty mailbox holding the well-known folders when `has_mailbox`).
    ///
    /// # Errors
    /// [`TenantError::DuplicateUser`], [`TenantError::InvalidUser`].
    pub fn add_user(&self, user: NewUser) -> Result<UserInfo, TenantError> {
        self.write().add_user(user)
    }

    /// Renames, enables/disables or adds an alias to a user (by object id or UPN).
    ///
    /// # Errors
    /// [`TenantError::UnknownUser`], [`TenantError::InvalidUser`].
    pub fn update_user(&self, id: &str, patch: UserPatch) -> Result<UserInfo, TenantError> {
        self.write().update_user(id, patch)
    }

    /// Deletes a user (by object id or UPN) and its mailbox; `/users/delta` reports it as removed.
    ///
    /// # Errors
    /// [`TenantError::UnknownUser`].
    pub fn delete_user(&self, id: &str) -> Result<(), TenantError> {
        self.write().delete_user(id)
    }

    /// Makes every message delta token of the mailbox stale: the next use answers 410 Gone
    /// (`syncStateNotFound`), as Graph does when a sync state expires.
    ///
    /// # Errors
    /// Unknown user, user without mailbox.
    pub fn expire_delta_tokens(&self, upn: &str) -> Result<(), TenantError> {
        let mut tenant = self.write();
        let mailbox = tenant.mailbox_mut_checked(upn)?;
        mailbox.sync_epoch += 1;
        Ok(())
    }

    /// The throttling bucket of a mail route's user segment: the UPN of the user named by object
    /// id or UPN (case-insensitive, percent-decoded) or by primary `MBX:` id; an archive's own
    /// canonical `MBX:` id (archives are throttled as mailboxes of their own).
    pub fn resolve_mailbox(&self, id_or_upn: &str) -> Option<String> {
        let tenant = self.read();
        match tenant.mbx_target(id_or_upn) {
            Some(archive::MbxTarget::Archive(guid)) => Some(tenant.mbx(guid)),
            Some(archive::MbxTarget::Primary(id)) => tenant.user(id).map(|u| u.upn.clone()),
            None => tenant.user(id_or_upn).map(|user| user.upn.clone()),
        }
    }
}

/// Percent-decodes and lower-cases a user key.
pub(crate) fn normalise_user_key(id_or_upn: &str) -> String {
    percent_encoding::percent_decode_str(id_or_upn)
        .decode_utf8_lossy()
        .trim()
        .to_lowercase()
}
