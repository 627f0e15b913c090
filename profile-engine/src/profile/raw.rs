//! The hand-written TOML shape of a profile and its validation into the typed
//! [`Profile`](super::Profile): strings where the typed profile has enums, so each
//! error names the file, the field and the fix.

use chrono::DateTime;
use directory_sync::{MailboxKind, MailboxKinds};
use serde::{Deserialize, Serialize};

use super::*;
use crate::error::EngineError;
use crate::schedule::Schedule;

/// The TOML shape, as written by hand: strings where the typed profile has enums,
/// so validation can name the field and the fix.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    name: String,
    credentials: String,
    source: RawSource,
    #[serde(default)]
    folders: RawFolders,
    #[serde(default)]
    filter: RawFilter,
    #[serde(default)]
    deletion: RawDeletion,
    #[serde(default)]
    run: RawRun,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mailbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    select: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    users: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sync_directory_first: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mailbox_kinds: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFolders {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default = "yes")]
    include_subfolders: bool,
    #[serde(default = "deletions")]
    recoverable_items: String,
    #[serde(default)]
    archive_mailbox: bool,
}

impl Default for RawFolders {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: Vec::new(),
            include_subfolders: true,
            recoverable_items: deletions(),
            archive_mailbox: false,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    #[serde(default)]
    older_than_days: i64,
    #[serde(default)]
    received_after: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeletion {
    #[serde(default = "never")]
    mode: String,
    #[serde(default = "ninety")]
    after_days: i64,
    #[serde(default = "yes")]
    keep_unread: bool,
    #[serde(default)]
    despite_holds: bool,
}

impl Default for RawDeletion {
    fn default() -> Self {
        Self {
            mode: never(),
            after_days: ninety(),
            keep_unread: true,
            despite_holds: false,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    #[serde(default = "three_hundred")]
    timeout_secs: i64,
    #[serde(default = "eight")]
    parallel_mailboxes: i64,
    #[serde(default = "manual")]
    schedule: String,
    #[serde(default = "partial")]
    unreadable_items: String,
}

impl Default for RawRun {
    fn default() -> Self {
        Self {
            timeout_secs: three_hundred(),
            parallel_mailboxes: eight(),
            schedule: manual(),
            unreadable_items: partial(),
        }
    }
}

fn yes() -> bool {
    true
}
fn never() -> String {
    "never".to_owned()
}
fn manual() -> String {
    "manual".to_owned()
}
fn deletions() -> String {
    RecoverableItems::Deletions.as_str().to_owned()
}
fn partial() -> String {
    UnreadableItems::Partial.as_str().to_owned()
}
fn ninety() -> i64 {
    90
}
fn three_hundred() -> i64 {
    300
}
fn eight() -> i64 {
    8
}

/// Longest accepted per-request timeout.
const MAX_TIMEOUT_SECS: i64 = 3600;
/// Most mailboxes at once.
const MAX_PARALLEL_MAILBOXES: i64 = 64;

/// Whether `name` is usable as a profile (or credentials) name and file stem.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn looks_like_address(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !text.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// Builds a field error: `FILE: [SECTION] KEY = VALUE: FIX`.
pub(super) fn field_error(
    file: &str,
    section: Option<&str>,
    key: &str,
    value: &str,
    fix: &str,
) -> EngineError {
    let section = section.map(|s| format!("[{s}] ")).unwrap_or_default();
    EngineError::InvalidProfile(format!("{file}: {section}{key} = {value}: {fix}"))
}

pub(super) fn quoted(text: &str) -> String {
    format!("{text:?}")
}

impl RawProfile {
    pub(super) fn validate(self, file: &str) -> Result<Profile, EngineError> {
        if !valid_name(&self.name) {
            return Err(field_error(
                file,
                None,
                "name",
                &quoted(&self.name),
                "use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            ));
        }
        if !valid_name(&self.credentials) {
            return Err(field_error(
                file,
                None,
                "credentials",
                &quoted(&self.credentials),
                "name stored credentials (see `credentials list`)",
            ));
        }
        let source = self.source.validate(file)?;
        let folders = self.folders.validate(file)?;
        let filter = self.filter.validate(file)?;
        let deletion = self.deletion.validate(file)?;
        let run = self.run.validate(file)?;
        Ok(Profile {
            name: self.name,
            credentials: self.credentials,
            source,
            folders,
            filter,
            deletion,
            run,
        })
    }
}

impl RawSource {
    fn validate(self, file: &str) -> Result<Source, EngineError> {
        let section = Some("source");
        match self.kind.as_str() {
            "single" => {
                if let Some(select) = &self.select {
                    return Err(field_error(
                        file,
                        section,
                        "select",
                        &quoted(select),
                        "only for kind = \"multiple\"; remove it or change kind",
                    ));
                }
                if self.users.as_ref().is_some_and(|u| !u.is_empty()) {
                    return Err(field_error(
                        file,
                        section,
                        "users",
                        "[...]",
                        "only for kind = \"multiple\"; remove it or change kind",
                    ));
                }
                if self.sync_directory_first == Some(true) {
                    return Err(field_error(
                        file,
                        section,
                        "sync_directory_first",
                        "true",
                        "only for kind = \"multiple\"; remove it or change kind",
                    ));
                }
                if let Some(kinds) = &self.mailbox_kinds {
                    return Err(field_error(
                        file,
                        section,
                        "mailbox_kinds",
                        &format!("{kinds:?}"),
                        "only for kind = \"multiple\"; a single profile names its mailbox",
                    ));
                }
                let mailbox = self.mailbox.unwrap_or_default();
                if !looks_like_address(mailbox.trim()) {
                    return Err(field_error(
                        file,
                        section,
                        "mailbox",
                        &quoted(&mailbox),
                        "kind = \"single\" needs the mailbox's email address, e.g. mailbox = \"a@contoso.com\"",
                    ));
                }
                let target_user = self.target_user.unwrap_or_default();
                if target_user.trim().is_empty() {
                    return Err(field_error(
                        file,
                        section,
                        "target_user",
                        "\"\"",
                        "kind = \"single\" needs the local user whose archive receives the mail, e.g. target_user = \"alice\"",
                    ));
                }
                Ok(Source::Single {
                    mailbox: mailbox.trim().to_ascii_lowercase(),
                    target_user: target_user.trim().to_owned(),
                })
            }
            "multiple" => {
                if let Some(mailbox) = &self.mailbox {
                    return Err(field_error(
                        file,
                        section,
                        "mailbox",
                        &quoted(mailbox),
                        "only for kind = \"single\"; use select and users to choose mailboxes",
                    ));
                }
                if let Some(target) = &self.target_user {
                    return Err(field_error(
                        file,
                        section,
                        "target_user",
                        &quoted(target),
                        "only for kind = \"single\"; each mailbox goes to its owner's archive",
                    ));
                }
                let select_text = self.select.unwrap_or_else(|| "all".to_owned());
                let select = match select_text.as_str() {
                    "all" => Select::All,
                    "all_except" => Select::AllExcept,
                    "only" => Select::Only,
                    other => {
                        return Err(field_error(
                            file,
                            section,
                            "select",
                            &quoted(other),
                            "expected one of \"all\", \"all_except\", \"only\"",
                        ));
                    }
                };
                let users: Vec<String> = self.users.unwrap_or_default();
                if let Some(blank) = users.iter().find(|u| u.trim().is_empty()) {
                    return Err(field_error(
                        file,
                        section,
                        "users",
                        &format!("[{blank:?}]"),
                        "list user names or email addresses, none empty",
                    ));
                }
                let users: Vec<String> = users.iter().map(|u| u.trim().to_owned()).collect();
                match select {
                    Select::All if !users.is_empty() => {
                        return Err(field_error(
                            file,
                            section,
                            "users",
                            &format!("{users:?}"),
                            "select = \"all\" takes no users; use select = \"all_except\" or \"only\"",
                        ));
                    }
                    Select::Only if users.is_empty() => {
                        return Err(field_error(
                            file,
                            section,
                            "users",
                            "[]",
                            "select = \"only\" needs at least one user name or address",
                        ));
                    }
                    _ => {}
                }
                let mailbox_kinds = match &self.mailbox_kinds {
                    None => MailboxKinds::default(),
                    Some(names) => parse_mailbox_kinds(file, names)?,
                };
                Ok(Source::Multiple {
                    select,
                    users,
                    sync_directory_first: self.sync_directory_first.unwrap_or(false),
                    mailbox_kinds,
                })
            }
            other => Err(field_error(
                file,
                section,
                "kind",
                &quoted(other),
                "expected one of \"single\", \"multiple\"",
            )),
        }
    }
}

/// `[source] mailbox_kinds`: a non-empty list of kind names, each at most once.
fn parse_mailbox_kinds(file: &str, names: &[String]) -> Result<MailboxKinds, EngineError> {
    let bad =
        |value: &str, fix: &str| field_error(file, Some("source"), "mailbox_kinds", value, fix);
    if names.is_empty() {
        return Err(bad(
            "[]",
            "list at least one of \"user\", \"shared\", \"room\", \"equipment\" (default [\"user\", \"shared\"])",
        ));
    }
    let mut kinds = MailboxKinds::empty();
    for name in names {
        let Some(kind) = MailboxKind::from_name(name.trim()) else {
            return Err(bad(
                &format!("{names:?}"),
                &format!(
                    "{name:?} is not a mailbox kind: expected \"user\", \"shared\", \"room\" or \"equipment\""
                ),
            ));
        };
        if kinds.contains(kind) {
            return Err(bad(
                &format!("{names:?}"),
                &format!("{name:?} is listed twice"),
            ));
        }
        kinds = kinds.with(kind);
    }
    Ok(kinds)
}

impl RawFolders {
    fn validate(self, file: &str) -> Result<FolderRules, EngineError> {
        for (key, list) in [("include", &self.include), ("exclude", &self.exclude)] {
            if let Some(bad) = list.iter().find(|p| p.trim().trim_matches('/').is_empty()) {
                return Err(field_error(
                    file,
                    Some("folders"),
                    key,
                    &format!("[{bad:?}]"),
                    "give folder paths like \"Inbox/Projects\" or well-known names like \"sentitems\"",
                ));
            }
        }
        let Some(recoverable_items) = RecoverableItems::from_name(&self.recoverable_items) else {
            return Err(field_error(
                file,
                Some("folders"),
                "recoverable_items",
                &quoted(&self.recoverable_items),
                "expected one of \"none\", \"deletions\" (soft-deleted mail), \"all\" (Deletions, Purges, Versions, DiscoveryHolds)",
            ));
        };
        Ok(FolderRules {
            include: self.include.iter().map(|p| p.trim().to_owned()).collect(),
            exclude: self.exclude.iter().map(|p| p.trim().to_owned()).collect(),
            include_subfolders: self.include_subfolders,
            recoverable_items,
            archive_mailbox: self.archive_mailbox,
        })
    }
}

impl RawFilter {
    fn validate(self, file: &str) -> Result<Filter, EngineError> {
        let older_than_days = u32::try_from(self.older_than_days)
            .ok()
            .filter(|d| *d <= 36_500)
            .ok_or_else(|| {
                field_error(
                    file,
                    Some("filter"),
                    "older_than_days",
                    &self.older_than_days.to_string(),
                    "expected 0 (all mail) up to 36500 days",
                )
            })?;
        let text = self.received_after.trim();
        let received_after = if text.is_empty() {
            None
        } else {
            Some(DateTime::parse_from_rfc3339(text).map_err(|e| {
                field_error(
                    file,
                    Some("filter"),
                    "received_after",
                    &quoted(text),
                    &format!(
                        "expected an RFC 3339 date like \"2024-01-31T00:00:00Z\" or \"\" ({e})"
                    ),
                )
            })?)
        };
        Ok(Filter {
            older_than_days,
            received_after,
        })
    }
}

impl RawDeletion {
    fn validate(self, file: &str) -> Result<DeletionRules, EngineError> {
        let Some(mode) = DeletionMode::from_name(&self.mode) else {
            return Err(field_error(
                file,
                Some("deletion"),
                "mode",
                &quoted(&self.mode),
                "expected one of \"never\", \"move_to_deleted_items\", \"soft_delete\", \"hard_delete\"",
            ));
        };
        let after_days = u32::try_from(self.after_days)
            .ok()
            .filter(|d| (1..=36_500).contains(d))
            .ok_or_else(|| field_error(file, Some("deletion"), "after_days",
                &self.after_days.to_string(),
                "expected 1 to 36500 days (mail is deleted only once archived and older than this)"))?;
        Ok(DeletionRules {
            mode,
            after_days,
            keep_unread: self.keep_unread,
            despite_holds: self.despite_holds,
        })
    }
}

impl RawRun {
    fn validate(self, file: &str) -> Result<RunSettings, EngineError> {
        let timeout_secs = u64::try_from(self.timeout_secs)
            .ok()
            .filter(|t| (1..=MAX_TIMEOUT_SECS as u64).contains(t))
            .ok_or_else(|| {
                field_error(
                    file,
                    Some("run"),
                    "timeout_secs",
                    &self.timeout_secs.to_string(),
                    "expected 1 to 3600 seconds per request",
                )
            })?;
        let parallel_mailboxes = usize::try_from(self.parallel_mailboxes)
            .ok()
            .filter(|p| (1..=MAX_PARALLEL_MAILBOXES as usize).contains(p))
            .ok_or_else(|| {
                field_error(
                    file,
                    Some("run"),
                    "parallel_mailboxes",
                    &self.parallel_mailboxes.to_string(),
                    "expected 1 to 64 mailboxes at once",
                )
            })?;
        let schedule: Schedule = self.schedule.parse().map_err(|e: EngineError| {
            field_error(file, Some("run"), "schedule", &quoted(&self.schedule), &match e {
                EngineError::InvalidSchedule { reason, .. } => format!(
                    "{reason}; expected \"manual\", \"every 30m\", \"every 2h\", \"daily 02:00\" or \"weekly mon 03:00\""),
                other => other.to_string(),
            })
        })?;
        let Some(unreadable_items) = UnreadableItems::from_name(&self.unreadable_items) else {
            return Err(field_error(
                file,
                Some("run"),
                "unreadable_items",
                &quoted(&self.unreadable_items),
                "expected \"partial\" (items the service cannot render make the run partial) or \"ok\"",
            ));
        };
        Ok(RunSettings {
            timeout_secs,
            parallel_mailboxes,
            schedule,
            unreadable_items,
        })
    }
}

impl From<Profile> for RawProfile {
    fn from(p: Profile) -> Self {
        let source = match p.source {
            Source::Single {
                mailbox,
                target_user,
            } => RawSource {
                kind: "single".to_owned(),
                mailbox: Some(mailbox),
                target_user: Some(target_user),
                select: None,
                users: None,
                sync_directory_first: None,
                mailbox_kinds: None,
            },
            Source::Multiple {
                select,
                users,
                sync_directory_first,
                mailbox_kinds,
            } => RawSource {
                kind: "multiple".to_owned(),
                mailbox: None,
                target_user: None,
                select: Some(select.as_str().to_owned()),
                users: Some(users),
                sync_directory_first: Some(sync_directory_first),
                mailbox_kinds: Some(
                    mailbox_kinds
                        .names()
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                ),
            },
        };
        RawProfile {
            name: p.name,
            credentials: p.credentials,
            source,
            folders: RawFolders {
                include: p.folders.include,
                exclude: p.folders.exclude,
                include_subfolders: p.folders.include_subfolders,
                recoverable_items: p.folders.recoverable_items.as_str().to_owned(),
                archive_mailbox: p.folders.archive_mailbox,
            },
            filter: RawFilter {
                older_than_days: i64::from(p.filter.older_than_days),
                received_after: p
                    .filter
                    .received_after
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_default(),
            },
            deletion: RawDeletion {
                mode: p.deletion.mode.as_str().to_owned(),
                after_days: i64::from(p.deletion.after_days),
                keep_unread: p.deletion.keep_unread,
                despite_holds: p.deletion.despite_holds,
            },
            run: RawRun {
                timeout_secs: i64::try_from(p.run.timeout_secs).unwrap_or(MAX_TIMEOUT_SECS),
                parallel_mailboxes: i64::try_from(p.run.parallel_mailboxes)
                    .unwrap_or(MAX_PARALLEL_MAILBOXES),
                schedule: p.run.schedule.to_string(),
                unreadable_items: p.run.unreadable_items.as_str().to_owned(),
            },
        }
    }
}

impl TryFrom<RawProfile> for Profile {
    type Error = EngineError;

    fn try_from(raw: RawProfile) -> Result<Self, Self::Error> {
        raw.validate("profile")
    }
}
