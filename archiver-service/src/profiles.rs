//! Archiving profiles (one TOML file each under `profiles/`): create, list, show,
//! remove, test and run them, and which are due on their schedule. Everything here
//! needs the admin role.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use audit_log::{Action, Target};
use chrono::{DateTime, Local, Utc};
use profile_engine::{
    CancellationToken, DeletionMode, HistoryEntry, Profile, ProfileStore, ProgressSink, RunHistory,
    RunReport, Schedule, Select, Source, TestReport,
};

use crate::datadir::{Access, DataDir};
use crate::error::{ResultExt, ServiceError};
use crate::wiring;
use crate::{Principal, Service};

type Result<T> = std::result::Result<T, ServiceError>;

/// At most this many message ids in one source-deletion audit event (a run that
/// deletes more writes several, numbered).
pub const DELETIONS_PER_EVENT: usize = 1000;

/// Which mailboxes a new profile archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxSelection {
    /// One mailbox into one local user's archive.
    Single {
        /// The mailbox address.
        mailbox: String,
        /// The local user whose archive receives it.
        target_user: String,
    },
    /// Every local user with an email address.
    All,
    /// Every local user with an email address except these.
    AllExcept(Vec<String>),
    /// Only these local users.
    Only(Vec<String>),
}

/// A profile to create (`profile create`); validated by [`profile_from_spec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSpec {
    /// Profile name.
    pub name: String,
    /// Credentials it runs with.
    pub credentials: String,
    /// Mailboxes.
    pub selection: MailboxSelection,
    /// Synchronise users from the directory before each run.
    pub sync_directory: bool,
    /// Folders to archive (empty: all).
    pub include_folders: Vec<String>,
    /// Folders to skip.
    pub exclude_folders: Vec<String>,
    /// Archive only mail older than this many days.
    pub older_than_days: Option<u32>,
    /// Deletion mode, as text (see [`parse_deletion_mode`]).
    pub delete_mode: Option<String>,
    /// Delete only archived mail older than this many days.
    pub delete_after_days: Option<u32>,
    /// Per-request timeout in seconds.
    pub timeout_secs: Option<u64>,
    /// Schedule, as text (`manual`, `every 30m`, `daily 02:00`, ...).
    pub schedule: Option<String>,
}

/// One profile of `profile list`: the profile, or why its file cannot be read.
#[derive(Debug)]
pub struct ProfileListing {
    /// The profile's name (its file name).
    pub name: String,
    /// The profile, or the error its file gives.
    pub profile: std::result::Result<Profile, ServiceError>,
    /// Its last run, when it has run (and the history is readable).
    pub last_run: Option<HistoryEntry>,
}

/// What the scheduler should start now.
#[derive(Debug, Default)]
pub struct DueProfiles {
    /// Profiles due now.
    pub due: Vec<Profile>,
    /// The earliest future slot of the others.
    pub next: Option<DateTime<Utc>>,
    /// Profiles skipped because their file is unusable, with the reason.
    pub broken: Vec<(String, ServiceError)>,
    /// Profiles whose run history is unreadable (treated as never run), with the reason.
    pub unreadable_history: Vec<(String, ServiceError)>,
}

/// Parses a deletion mode (`never`, `move_to_deleted_items`, `soft_delete`,
/// `hard_delete`; case and `-` for `_` do not matter).
pub fn parse_deletion_mode(text: &str) -> Result<DeletionMode> {
    // The command line forgives case and dashes; the profile file does not.
    let name = text.trim().to_ascii_lowercase().replace('-', "_");
    DeletionMode::from_name(&name).ok_or_else(|| {
        ServiceError::invalid(format!(
            "--delete `{text}` is not a deletion mode: use never, move_to_deleted_items, soft_delete or hard_delete"
        ))
    })
}

/// The profile `spec` describes, validated exactly as it will be read back
/// (nothing is written).
pub fn profile_from_spec(spec: &ProfileSpec) -> Result<Profile> {
    let clean = |users: &[String]| -> Vec<String> {
        users
            .iter()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect()
    };
    let multiple = |select, users: &[String]| Source::Multiple {
        select,
        users: clean(users),
        sync_directory_first: spec.sync_directory,
        mailbox_kinds: profile_engine::MailboxKinds::default(),
    };
    let source = match &spec.selection {
        MailboxSelection::Single {
            mailbox,
            target_user,
        } => {
            if spec.sync_directory {
                return Err(ServiceError::invalid(
                    "--sync-directory applies to --all, --all-except and --only, not to a single mailbox",
                ));
            }
            Source::Single {
                mailbox: mailbox.clone(),
                target_user: target_user.clone(),
            }
        }
        MailboxSelection::All => multiple(Select::All, &[]),
        MailboxSelection::AllExcept(users) => multiple(Select::AllExcept, users),
        MailboxSelection::Only(users) => multiple(Select::Only, users),
    };
    let mut profile = Profile::new(&spec.name, &spec.credentials, source);
    profile.folders.include.clone_from(&spec.include_folders);
    profile.folders.exclude.clone_from(&spec.exclude_folders);
    if let Some(days) = spec.older_than_days {
        profile.filter.older_than_days = days;
    }
    if let Some(mode) = &spec.delete_mode {
        profile.deletion.mode = parse_deletion_mode(mode)?;
    }
    if let Some(days) = spec.delete_after_days {
        profile.deletion.after_days = days;
    }
    if let Some(secs) = spec.timeout_secs {
        profile.run.timeout_secs = secs;
    }
    if let Some(schedule) = &spec.schedule {
        profile.run.schedule = schedule
            .parse::<Schedule>()
            .context_with(|| "--schedule".into())?;
    }
    profile.validate()?;
    // What is written is exactly what will be read back: the loader's normalisation
    // (trimmed folder paths, ...) applies now, and anything it refuses is refused now.
    let label = format!("profile {}", profile.name);
    Ok(Profile::from_toml(&label, &profile.to_toml())?)
}

impl Service {
    /// Loads profile `name` of an existing data directory; errors name the profile or its file.
    fn load_profile(&self, name: &str) -> Result<(DataDir, Profile)> {
        let dir = self
            .open(Access::Read)
            .context_with(|| format!("no profile named `{name}`"))?;
        let profile = ProfileStore::new(dir.profiles()).load(name)?;
        Ok((dir, profile))
    }

    /// Writes the profile `spec` describes (`profile create`); returns it and its file.
    pub fn create_profile(
        &self,
        principal: &Principal,
        spec: &ProfileSpec,
    ) -> Result<(Profile, PathBuf)> {
        self.admin_only(
            principal,
            "create profiles",
            Action::ProfileCreate,
            Target::object(&spec.name),
        )?;
        let profile = profile_from_spec(spec)?;
        // The credentials must exist, so the data directory does: check before writing.
        let dir = self
            .open(Access::Read)
            .context_with(|| format!("no credential named `{}`", spec.credentials))?;
        dir.check_private()?;
        wiring::load_credential(&dir, &profile.credentials)?;
        if ProfileStore::new(dir.profiles()).exists(&profile.name)? {
            return Err(ServiceError::conflict(format!(
                "a profile named `{}` already exists; remove it first or choose another name",
                profile.name
            )));
        }
        let dir = self.open(Access::Admin)?;
        let path = ProfileStore::new(dir.profiles()).save(&profile)?;
        self.audit(
            principal,
            Action::ProfileCreate,
            Target::object(&profile.name),
            &[("credentials", profile.credentials.clone())],
        )?;
        Ok((profile, path))
    }

    /// What to do when `profile` (a multiple-mailbox profile without
    /// `sync_directory_first`) selects no mailbox from the local users as they are now;
    /// `None` when it selects some, or synchronises the directory before each run.
    /// Read-only (`profile create` warns with it).
    pub fn empty_selection_warning(
        &self,
        principal: &Principal,
        profile: &Profile,
    ) -> Result<Option<String>> {
        self.admin_only(
            principal,
            "read profiles",
            Action::ConfigurationRead,
            Target::default(),
        )?;
        let Source::Multiple {
            sync_directory_first: false,
            ..
        } = &profile.source
        else {
            return Ok(None);
        };
        let selected = if self.data_dir().is_dir() {
            let dir = self.open(Access::Read)?;
            match wiring::open_user_store_read_only(&dir)? {
                Some(store) => profile_engine::selected_mailboxes(profile, store.as_ref())?,
                None => Vec::new(),
            }
        } else {
            Vec::new()
        };
        Ok(if selected.is_empty() {
            profile_engine::empty_selection_advice(profile)
        } else {
            None
        })
    }

    /// Every profile with its last run (`profile list`); a broken file is listed with its error.
    pub fn list_profiles(&self, principal: &Principal) -> Result<Vec<ProfileListing>> {
        self.admin_only(
            principal,
            "list profiles",
            Action::ConfigurationRead,
            Target::default(),
        )?;
        if !self.data_dir().exists() {
            return Ok(Vec::new());
        }
        let dir = self.open(Access::Read)?;
        let store = ProfileStore::new(dir.profiles());
        let history = RunHistory::new(dir.history());
        let mut listed = Vec::new();
        for name in store.names()? {
            let profile = store.load(&name).map_err(ServiceError::from);
            let last_run = history.last(&name).ok().flatten();
            listed.push(ProfileListing {
                name,
                profile,
                last_run,
            });
        }
        Ok(listed)
    }

    /// Profile `name` (`profile show`).
    pub fn show_profile(&self, principal: &Principal, name: &str) -> Result<Profile> {
        self.admin_only(
            principal,
            "read profiles",
            Action::ConfigurationRead,
            Target::default(),
        )?;
        Ok(self.load_profile(name)?.1)
    }

    /// Deletes profile `name`; its archived mail stays (`profile remove`).
    pub fn remove_profile(&self, principal: &Principal, name: &str) -> Result<()> {
        self.admin_only(
            principal,
            "remove profiles",
            Action::ProfileRemove,
            Target::object(name),
        )?;
        let dir = self
            .open(Access::Read)
            .context_with(|| format!("no profile named `{name}`"))?;
        dir.check_private()?;
        ProfileStore::new(dir.profiles()).remove(name)?;
        self.audit(principal, Action::ProfileRemove, Target::object(name), &[])
    }

    /// Checks that every mailbox profile `name` selects can be read (`profile test`).
    pub async fn test_profile(&self, principal: &Principal, name: &str) -> Result<TestReport> {
        self.admin_only(
            principal,
            "test profiles",
            Action::ProfileTest,
            Target::object(name),
        )?;
        let (dir, profile) = self.load_profile(name)?;
        // Bad credentials are reported before anything is created.
        wiring::load_credential(&dir, &profile.credentials)
            .context_with(|| format!("profile `{}`", profile.name))?;
        let dir = self.open(Access::Write)?;
        let stores = self.shared_stores(&dir)?;
        let engine = wiring::engine_for(&dir, &profile, &stores, self.secrets())?;
        Ok(engine.test(&profile).await?)
    }

    /// Runs profile `name` to its end or until `cancel` (`profile run`, and every
    /// scheduled run). Refused when the archive's filesystem is below the reserve of
    /// `settings.toml`. Concurrent runs of one service share its stores.
    pub async fn run_profile(
        &self,
        principal: &Principal,
        name: &str,
        cancel: &CancellationToken,
        progress: &dyn ProgressSink,
    ) -> Result<RunReport> {
        self.admin_only(
            principal,
            "run profiles",
            Action::ProfileRun,
            Target::object(name),
        )?;
        let (dir, profile) = self.load_profile(name)?;
        let in_profile = || format!("profile `{}`", profile.name);
        // Bad credentials are reported before anything is created.
        wiring::load_credential(&dir, &profile.credentials).context_with(in_profile)?;
        let dir = self.open(Access::Write)?;
        wiring::check_reserve(&dir).context_with(in_profile)?;
        let stores = self.shared_stores(&dir)?;
        let engine = wiring::engine_for(&dir, &profile, &stores, self.secrets())?;
        let report = engine.run(&profile, cancel, progress).await?;
        // The report stands (and reaches its caller) even if its summary cannot be
        // recorded, e.g. on the full disk that stopped the run.
        let totals = &report.totals;
        self.audit_or_warn(
            principal,
            Action::ProfileRun,
            Target::object(name),
            &[
                ("status", format!("{:?}", report.status).to_lowercase()),
                ("mailboxes", totals.mailboxes.to_string()),
                ("messages_archived", totals.messages_archived.to_string()),
                ("messages_failed", totals.messages_failed.to_string()),
                ("messages_forgotten", totals.messages_forgotten.to_string()),
                ("deleted", totals.deleted.to_string()),
            ],
        );
        self.audit_source_deletions(principal, &profile, &report);
        Ok(report)
    }

    /// One [`Action::SourceDeletion`] event per mailbox where the deletion rules
    /// deleted mail (naming every deleted message, [`DELETIONS_PER_EVENT`] ids per
    /// event) or where a legal hold kept them from applying.
    fn audit_source_deletions(&self, principal: &Principal, profile: &Profile, report: &RunReport) {
        let rules = &profile.deletion;
        for mailbox in &report.mailboxes {
            if mailbox.deleted_ids.is_empty() && mailbox.deletion_held.is_empty() {
                continue;
            }
            let mut details = vec![
                ("profile", profile.name.clone()),
                ("mailbox", mailbox.mailbox.clone()),
                ("mode", rules.mode.as_str().to_owned()),
                ("after_days", rules.after_days.to_string()),
                ("deleted", mailbox.deleted.to_string()),
            ];
            if !mailbox.deletion_held.is_empty() {
                details.push(("held_by", mailbox.deletion_held.join(", ")));
            }
            let mut parts: Vec<&[String]> =
                mailbox.deleted_ids.chunks(DELETIONS_PER_EVENT).collect();
            if parts.is_empty() {
                parts.push(&[]);
            }
            let count = parts.len();
            for (n, ids) in parts.into_iter().enumerate() {
                let mut details = details.clone();
                if count > 1 {
                    details.push(("part", format!("{} of {count}", n + 1)));
                }
                let target = Target {
                    object: Some(mailbox.mailbox.clone()),
                    messages: ids.to_vec(),
                    ..Target::default()
                };
                self.audit_or_warn(principal, Action::SourceDeletion, target, &details);
            }
        }
    }

    /// The scheduled profiles due at `now` (`running` ones excepted) and the earliest
    /// future slot of the others. A profile that never ran is due at once; afterwards
    /// its schedule's next slot after the later of its last recorded start and
    /// `attempts` (starts this process made, also those that could not run): a slot
    /// missed while nothing ran gives one catch-up run, not a burst.
    pub fn due_profiles(
        &self,
        principal: &Principal,
        now: DateTime<Utc>,
        attempts: &HashMap<String, DateTime<Utc>>,
        running: &HashSet<String>,
    ) -> Result<DueProfiles> {
        self.admin_only(
            principal,
            "schedule profiles",
            Action::ConfigurationRead,
            Target::default(),
        )?;
        let dir = self.open(Access::Read)?;
        let store = ProfileStore::new(dir.profiles());
        let history = RunHistory::new(dir.history());
        let mut out = DueProfiles::default();
        for name in store.names()? {
            let profile = match store.load(&name) {
                Ok(p) => p,
                Err(e) => {
                    out.broken.push((name, e.into()));
                    continue;
                }
            };
            if profile.run.schedule.is_manual() || running.contains(&name) {
                continue;
            }
            let from_history = match history.last(&name) {
                Ok(last) => last.map(|entry| entry.started_at),
                Err(e) => {
                    out.unreadable_history.push((name.clone(), e.into()));
                    None
                }
            };
            let last = match (from_history, attempts.get(&name).copied()) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let when = match last {
                None => Some(now),
                Some(_) => profile.run.schedule.next_due(last, now, &Local),
            };
            match when {
                Some(when) if when <= now => out.due.push(profile),
                Some(when) => out.next = Some(out.next.map_or(when, |n| n.min(when))),
                None => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<DeletionMode>) {
        match (parse_deletion_mode(text), expected) {
            (Ok(mode), Some(want)) => assert_eq!(mode, want, "{text}"),
            (Err(e), None) => {
                assert!(e.to_string().contains(text.trim()), "{text}: {e}");
                assert_eq!(e.category(), crate::ErrorCategory::Invalid);
            }
            (got, want) => panic!("{text}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn deletion_modes_parse_or_are_named() {
        check("never", Some(DeletionMode::Never));
        check(" Hard-Delete ", Some(DeletionMode::HardDelete));
        check("soft_delete", Some(DeletionMode::SoftDelete));
        check(
            "move-to-deleted-items",
            Some(DeletionMode::MoveToDeletedItems),
        );
        check("shred", None);
        check("", None);
    }
}
