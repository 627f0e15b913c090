//! Archiving profiles: the fixed TOML format, validated into typed values
//! whose errors name the file, the field and the fix, and a [`ProfileStore`] of one
//! `NAME.toml` per profile, written atomically with owner-only permissions.

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use directory_sync::MailboxKinds;
use m365_mailbox::DeleteMode;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::fsutil;
use crate::schedule::Schedule;

mod raw;
pub use raw::valid_name;
use raw::{RawProfile, field_error, quoted};

/// An archiving profile: what to archive, from where, into whose archive, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawProfile", into = "RawProfile")]
pub struct Profile {
    /// Unique name (also the file name, `NAME.toml`).
    pub name: String,
    /// Name of the stored app credentials used to reach the tenant.
    pub credentials: String,
    /// Which mailboxes.
    pub source: Source,
    /// Which folders of each mailbox.
    pub folders: FolderRules,
    /// Which messages.
    pub filter: Filter,
    /// What to delete from the mailbox after archiving (default: nothing).
    pub deletion: DeletionRules,
    /// Run settings.
    pub run: RunSettings,
}

/// Which mailboxes a profile archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// One mailbox into a chosen user's archive.
    Single {
        /// Mailbox address.
        mailbox: String,
        /// Local user whose archive receives the mail.
        target_user: String,
    },
    /// Several mailboxes, each into its owner's archive, chosen from the local users.
    Multiple {
        /// How users are chosen.
        select: Select,
        /// Users (names or addresses) for `all_except` / `only`.
        users: Vec<String>,
        /// Synchronise users from the directory before choosing.
        sync_directory_first: bool,
        /// Which kinds of mailbox are chosen (`[source] mailbox_kinds`; default `user`
        /// and `shared`). With `sync_directory_first`, the sync also brings in
        /// mailboxes of these kinds (rooms, equipment) it would skip otherwise.
        mailbox_kinds: MailboxKinds,
    },
}

/// How a multi-mailbox profile chooses its users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// Every enabled user with an email address.
    All,
    /// Every enabled user with an email address except the listed ones.
    AllExcept,
    /// Only the listed users.
    Only,
}

impl Select {
    fn as_str(self) -> &'static str {
        match self {
            Select::All => "all",
            Select::AllExcept => "all_except",
            Select::Only => "only",
        }
    }
}

/// Which folders to archive.
///
/// `include` chooses among the mailbox's folders (and, with `archive_mailbox`, the online
/// archive's, by their paths inside the archive); the Recoverable Items folders are
/// chosen by `recoverable_items` alone. `exclude` applies everywhere: a Recoverable Items
/// folder is excluded by its archive path (`Recoverable Items/Purges`) or well-known name
/// (`recoverableitemspurges`), so excluding `deleteditems` leaves Recoverable Items alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderRules {
    /// Folder paths (`Inbox/Projects`) or well-known names (`sentitems`); empty = all.
    pub include: Vec<String>,
    /// Folders never archived (with everything below them).
    pub exclude: Vec<String>,
    /// Whether an included folder brings its subfolders.
    pub include_subfolders: bool,
    /// Which Recoverable Items folders are archived (soft-deleted mail by default).
    pub recoverable_items: RecoverableItems,
    /// Also archive the user's In-Place (online) Archive (Graph beta), under
    /// `Online Archive/`.
    pub archive_mailbox: bool,
}

impl Default for FolderRules {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: Vec::new(),
            include_subfolders: true,
            recoverable_items: RecoverableItems::default(),
            archive_mailbox: false,
        }
    }
}

/// Which folders of Recoverable Items a profile archives (`[folders] recoverable_items`).
/// They are archived under `Recoverable Items/<name>`; deletion rules never touch them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoverableItems {
    /// None.
    None,
    /// Deletions: the soft-deleted mail (the default).
    #[default]
    Deletions,
    /// Deletions, Purges, Versions and DiscoveryHolds.
    All,
}

impl RecoverableItems {
    /// Every setting, in the order they are listed to people.
    pub const ALL: [RecoverableItems; 3] = [
        RecoverableItems::None,
        RecoverableItems::Deletions,
        RecoverableItems::All,
    ];

    /// The setting a profile names exactly (`none`, `deletions`, `all`).
    pub fn from_name(name: &str) -> Option<RecoverableItems> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The name a profile uses for this setting.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoverableItems::None => "none",
            RecoverableItems::Deletions => "deletions",
            RecoverableItems::All => "all",
        }
    }

    /// Whether the Recoverable Items folder of this well-known name is archived.
    pub fn takes(self, well_known_name: &str) -> bool {
        match self {
            RecoverableItems::None => false,
            RecoverableItems::Deletions => well_known_name == "recoverableitemsdeletions",
            RecoverableItems::All => m365_mailbox::RECOVERABLE_FOLDERS
                .iter()
                .any(|(wk, _)| *wk == well_known_name),
        }
    }
}

/// How items the mail service cannot render as MIME count (`[run] unreadable_items`).
/// Either way each is listed in the run report and retried by the next runs a bounded
/// number of times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnreadableItems {
    /// They make their mailbox and the run `partial` (the default).
    #[default]
    Partial,
    /// They are listed, but the mailbox and the run may still be `ok`.
    Ok,
}

impl UnreadableItems {
    /// Every setting, in the order they are listed to people.
    pub const ALL: [UnreadableItems; 2] = [UnreadableItems::Partial, UnreadableItems::Ok];

    /// The setting a profile names exactly (`partial`, `ok`).
    pub fn from_name(name: &str) -> Option<UnreadableItems> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The name a profile uses for this setting.
    pub fn as_str(self) -> &'static str {
        match self {
            UnreadableItems::Partial => "partial",
            UnreadableItems::Ok => "ok",
        }
    }
}

/// Which messages to archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Archive only mail older than this many days (0 = all). Younger mail is
    /// remembered and archived by a later run once old enough.
    pub older_than_days: u32,
    /// Archive only mail received at or after this instant.
    pub received_after: Option<DateTime<FixedOffset>>,
}

/// When archived mail leaves the mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeletionMode {
    /// Never delete (the default).
    #[default]
    Never,
    /// Move to Deleted Items.
    MoveToDeletedItems,
    /// Delete to Recoverable Items.
    SoftDelete,
    /// Purge.
    HardDelete,
}

impl DeletionMode {
    /// Every mode, in the order they are listed to people.
    pub const ALL: [DeletionMode; 4] = [
        DeletionMode::Never,
        DeletionMode::MoveToDeletedItems,
        DeletionMode::SoftDelete,
        DeletionMode::HardDelete,
    ];

    /// The mode a profile names exactly (`never`, `move_to_deleted_items`,
    /// `soft_delete`, `hard_delete`).
    pub fn from_name(name: &str) -> Option<DeletionMode> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The name a profile uses for this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionMode::Never => "never",
            DeletionMode::MoveToDeletedItems => "move_to_deleted_items",
            DeletionMode::SoftDelete => "soft_delete",
            DeletionMode::HardDelete => "hard_delete",
        }
    }

    /// The mailbox operation, or `None` for [`DeletionMode::Never`].
    pub fn delete_mode(self) -> Option<DeleteMode> {
        match self {
            DeletionMode::Never => None,
            DeletionMode::MoveToDeletedItems => Some(DeleteMode::MoveToDeletedItems),
            DeletionMode::SoftDelete => Some(DeleteMode::SoftDelete),
            DeletionMode::HardDelete => Some(DeleteMode::HardDelete),
        }
    }
}

/// Deletion rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionRules {
    /// How to delete.
    pub mode: DeletionMode,
    /// Delete only archived mail received more than this many days ago.
    pub after_days: u32,
    /// Leave unread mail in the mailbox.
    pub keep_unread: bool,
    /// Delete even from a mailbox whose archive is under a legal hold. Off by default:
    /// a mailbox under hold keeps its mail in Exchange as well.
    pub despite_holds: bool,
}

impl Default for DeletionRules {
    fn default() -> Self {
        Self {
            mode: DeletionMode::Never,
            after_days: 90,
            keep_unread: true,
            despite_holds: false,
        }
    }
}

/// How a run proceeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSettings {
    /// Per-request timeout, in seconds.
    pub timeout_secs: u64,
    /// Mailboxes archived at once.
    pub parallel_mailboxes: usize,
    /// When the profile runs by itself.
    pub schedule: Schedule,
    /// Whether items the service cannot render as MIME make a run `partial`.
    pub unreadable_items: UnreadableItems,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            timeout_secs: 300,
            parallel_mailboxes: 8,
            schedule: Schedule::Manual,
            unreadable_items: UnreadableItems::default(),
        }
    }
}

impl Profile {
    /// A profile with defaults for everything but its name, credentials and source.
    pub fn new(name: impl Into<String>, credentials: impl Into<String>, source: Source) -> Self {
        Self {
            name: name.into(),
            credentials: credentials.into(),
            source,
            folders: FolderRules::default(),
            filter: Filter::default(),
            deletion: DeletionRules::default(),
            run: RunSettings::default(),
        }
    }

    /// The per-request timeout the mail and directory sources should be built with.
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.run.timeout_secs)
    }

    /// Parses and validates a profile; `file` names it in errors (e.g. `profiles/all-staff.toml`).
    pub fn from_toml(file: &str, text: &str) -> Result<Self, EngineError> {
        let raw: RawProfile = toml::from_str(text).map_err(|e| {
            EngineError::InvalidProfile(format!("{file}: {}", e.to_string().trim_end()))
        })?;
        raw.validate(file)
    }

    /// The profile as TOML (the fixed profile format), every field written out.
    pub fn to_toml(&self) -> String {
        let raw = RawProfile::from(self.clone());
        // Serialising plain strings, integers and booleans cannot fail.
        toml::to_string_pretty(&raw).unwrap_or_default()
    }

    /// Checks the invariants of a profile built in code (the same checks as parsing).
    pub fn validate(&self) -> Result<(), EngineError> {
        RawProfile::from(self.clone())
            .validate(&format!("profile {}", self.name))
            .map(|_| ())
    }
}

/// One `NAME.toml` per profile in a directory.
#[derive(Debug, Clone)]
pub struct ProfileStore {
    dir: PathBuf,
}

impl ProfileStore {
    /// A store over `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory holding the profiles.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, name: &str) -> Result<PathBuf, EngineError> {
        if !valid_name(name) {
            return Err(EngineError::InvalidName {
                name: name.to_owned(),
            });
        }
        Ok(self.dir.join(format!("{name}.toml")))
    }

    /// Reads and validates one profile.
    pub fn load(&self, name: &str) -> Result<Profile, EngineError> {
        let path = self.path_of(name)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EngineError::ProfileNotFound {
                    name: name.to_owned(),
                });
            }
            Err(e) => return Err(EngineError::io(&path, e)),
        };
        let label = path.display().to_string();
        let profile = Profile::from_toml(&label, &text)?;
        if profile.name != name {
            return Err(field_error(
                &label,
                None,
                "name",
                &quoted(&profile.name),
                &format!("must equal the file name; set name = {name:?} or rename the file"),
            ));
        }
        Ok(profile)
    }

    /// Writes a profile (validated first), replacing any previous version atomically.
    pub fn save(&self, profile: &Profile) -> Result<PathBuf, EngineError> {
        profile.validate()?;
        let path = self.path_of(&profile.name)?;
        fsutil::write_atomic(&path, profile.to_toml().as_bytes())?;
        Ok(path)
    }

    /// Whether a profile exists.
    pub fn exists(&self, name: &str) -> Result<bool, EngineError> {
        Ok(self.path_of(name)?.is_file())
    }

    /// Removes a profile file.
    pub fn remove(&self, name: &str) -> Result<(), EngineError> {
        let path = self.path_of(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => fsutil::sync_dir(&self.dir).map_err(|e| EngineError::io(&self.dir, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(EngineError::ProfileNotFound {
                    name: name.to_owned(),
                })
            }
            Err(e) => Err(EngineError::io(&path, e)),
        }
    }

    /// Names of all profiles, sorted.
    pub fn names(&self) -> Result<Vec<String>, EngineError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(EngineError::io(&self.dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| EngineError::io(&self.dir, e))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = file_name.strip_suffix(".toml")
                && valid_name(stem)
            {
                names.push(stem.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Every profile, sorted by name; a broken file is returned as its error.
    pub fn list(&self) -> Result<Vec<Result<Profile, EngineError>>, EngineError> {
        Ok(self.names()?.iter().map(|n| self.load(n)).collect())
    }
}
