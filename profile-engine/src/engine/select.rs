//! Which mailboxes a profile archives (from the local users) and which of a
//! mailbox's folders.
//!
//! A multiple-mailbox profile chooses active local users with an address whose
//! mailbox kind is in its `mailbox_kinds`. A shared mailbox is an active local user
//! though its directory account is disabled (the sync keeps it active), so it is
//! chosen like anyone's; a user named in `only` whose kind is not listed is reported
//! with the reason rather than silently left out.

use std::collections::{BTreeMap, HashSet};

use directory_sync::{LocalUser, UserStore};
use m365_mailbox::Folder;

use super::{Engine, spawn_blocking};
use crate::error::EngineError;
use crate::profile::{Profile, Select, Source};

/// One mailbox to archive and whose archive receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) mailbox: String,
    pub(super) user: String,
}

/// The mailboxes of a profile, and the names that could not be resolved.
#[derive(Debug, Default)]
pub(super) struct Selection {
    pub(super) targets: Vec<Target>,
    pub(super) unresolved: Vec<(String, String)>,
}

impl Engine {
    /// Resolves the profile's mailboxes from the local users.
    pub(super) async fn select(&self, profile: &Profile) -> Result<Selection, EngineError> {
        let users = self.users.clone();
        let source = profile.source.clone();
        let name = profile.name.clone();
        spawn_blocking(move || select_targets(&name, &source, users.as_ref())).await?
    }
}

/// The mailboxes `profile` selects from `users` today (what a run would archive if
/// it started now, before any directory sync), sorted.
///
/// # Errors
/// The user store cannot be read, or a single profile's target user does not exist.
pub fn selected_mailboxes(
    profile: &Profile,
    users: &dyn UserStore,
) -> Result<Vec<String>, EngineError> {
    Ok(select_targets(&profile.name, &profile.source, users)?
        .targets
        .into_iter()
        .map(|t| t.mailbox)
        .collect())
}

/// What to do about a multiple-mailbox profile that selects no mailbox, naming its
/// credentials; `None` for a single-mailbox profile.
pub fn empty_selection_advice(profile: &Profile) -> Option<String> {
    let Source::Multiple {
        sync_directory_first,
        mailbox_kinds,
        ..
    } = &profile.source
    else {
        return None;
    };
    let credentials = &profile.credentials;
    Some(if *sync_directory_first {
        format!(
            "profile {} selects no mailbox: the directory sync found no active local user              with a mailbox of the kinds it archives ({mailbox_kinds}); check the users              with `users list`, and that credential `{credentials}` may read the directory              (User.Read.All)",
            profile.name
        )
    } else {
        format!(
            "profile {} selects no mailbox: no active local user has a mailbox of the kinds              it archives ({mailbox_kinds}); fill the user list from the directory with              `users sync --credentials {credentials}`, or let every run do it              (`profile create … --sync-directory`, i.e. [source] sync_directory_first = true)",
            profile.name
        )
    })
}

fn select_targets(
    profile: &str,
    source: &Source,
    users: &dyn UserStore,
) -> Result<Selection, EngineError> {
    let mut selection = Selection::default();
    match source {
        Source::Single {
            mailbox,
            target_user,
        } => {
            let user = users
                .get(target_user)?
                .ok_or_else(|| EngineError::TargetUserMissing {
                    profile: profile.to_owned(),
                    user: target_user.clone(),
                })?;
            selection.targets.push(Target {
                mailbox: mailbox.to_ascii_lowercase(),
                user: user.name,
            });
        }
        Source::Multiple {
            select,
            users: names,
            mailbox_kinds,
            ..
        } => {
            let all = users.list()?;
            let eligible = |u: &LocalUser| {
                u.enabled && u.email.is_some() && mailbox_kinds.contains(u.mailbox_kind())
            };
            let matches = |u: &LocalUser, wanted: &str| {
                u.name.eq_ignore_ascii_case(wanted)
                    || u.email
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(wanted))
                    || u.aliases.iter().any(|a| a.eq_ignore_ascii_case(wanted))
            };
            let chosen: Vec<&LocalUser> = match select {
                Select::All => all.iter().filter(|u| eligible(u)).collect(),
                Select::AllExcept => all
                    .iter()
                    .filter(|u| eligible(u) && !names.iter().any(|n| matches(u, n)))
                    .collect(),
                Select::Only => {
                    let mut chosen = Vec::new();
                    for wanted in names {
                        match all.iter().find(|u| matches(u, wanted)) {
                            None => selection.unresolved.push((
                                wanted.clone(),
                                format!("no local user is named or addressed {wanted:?}; run `users sync` or fix [source] users"),
                            )),
                            Some(u) if !u.enabled => selection.unresolved.push((
                                u.email.clone().unwrap_or_else(|| u.name.clone()),
                                format!("user {} is disabled", u.name),
                            )),
                            Some(u) if u.email.is_none() => selection.unresolved.push((
                                u.name.clone(),
                                format!("user {} has no email address", u.name),
                            )),
                            Some(u) if !mailbox_kinds.contains(u.mailbox_kind()) => selection.unresolved.push((
                                u.email.clone().unwrap_or_else(|| u.name.clone()),
                                format!(
                                    "user {} is a {} mailbox, not among [source] mailbox_kinds ({mailbox_kinds}); add \"{}\" to archive it",
                                    u.name,
                                    u.mailbox_kind(),
                                    u.mailbox_kind()
                                ),
                            )),
                            Some(u) => chosen.push(u),
                        }
                    }
                    chosen
                }
            };
            let mut seen = HashSet::new();
            for user in chosen {
                if let Some(email) = &user.email {
                    let mailbox = email.to_ascii_lowercase();
                    if seen.insert(mailbox.clone()) {
                        selection.targets.push(Target {
                            mailbox,
                            user: user.name.clone(),
                        });
                    }
                }
            }
        }
    }
    selection.targets.sort_by(|a, b| a.mailbox.cmp(&b.mailbox));
    Ok(selection)
}

/// The folders a profile archives, parents before children: search folders never;
/// a folder is taken when `include` is empty or it (or, with
/// `include_subfolders`, an ancestor) matches `include`, and neither it nor an
/// ancestor matches `exclude`. Patterns match a folder's path or well-known
/// name, case-insensitively.
pub fn select_folders<'f>(
    folders: &'f [Folder],
    rules: &crate::profile::FolderRules,
) -> Vec<&'f Folder> {
    let by_id: BTreeMap<&str, &Folder> = folders.iter().map(|f| (f.id.as_str(), f)).collect();
    let norm = |p: &str| p.trim().trim_matches('/').to_lowercase();
    let include: Vec<String> = rules.include.iter().map(|p| norm(p)).collect();
    let exclude: Vec<String> = rules.exclude.iter().map(|p| norm(p)).collect();
    let matches = |f: &Folder, patterns: &[String]| {
        let path = norm(&f.path);
        patterns.iter().any(|p| {
            *p == path
                || f.well_known_name
                    .as_deref()
                    .is_some_and(|w| w.eq_ignore_ascii_case(p))
        })
    };
    let ancestors = |f: &'f Folder| {
        let mut chain = Vec::new();
        let mut current = f.parent_id.as_deref();
        while let Some(id) = current {
            match by_id.get(id) {
                Some(parent) if chain.len() < 64 => {
                    chain.push(*parent);
                    current = parent.parent_id.as_deref();
                }
                _ => break,
            }
        }
        chain
    };
    folders
        .iter()
        .filter(|f| !f.search_folder)
        .filter(|f| {
            let up = ancestors(f);
            if up.iter().any(|a| a.search_folder) {
                return false;
            }
            let included = include.is_empty()
                || matches(f, &include)
                || (rules.include_subfolders && up.iter().any(|a| matches(a, &include)));
            let excluded = matches(f, &exclude) || up.iter().any(|a| matches(a, &exclude));
            included && !excluded
        })
        .collect()
}
