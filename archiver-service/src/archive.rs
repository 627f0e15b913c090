//! The archive's use cases: search, show, export (mail content, scoped to what the
//! caller may see), import, and the figures and upkeep (stats, verify, reindex).
//!
//! Scoping (see [`crate::principal`]): search runs only over the visible archives;
//! `show` of a message outside them, or of an id that does not exist, is the same
//! `Forbidden` for a caller who cannot see every archive (nothing tells them the id
//! exists), and the places a shown message is archived in are cut to the visible ones.

use std::collections::BTreeSet;
use std::path::PathBuf;

use archive_store::{
    ArchiveError, ArchiveStats, ArchiveStore, ExportFilter, ExportFormat, ExportReport,
    ImportReport, MessageId, MessageInfo, Scope, SearchHit, SearchQuery, VerifyReport, Visibility,
};
use audit_log::{Action, Target};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::datadir::Access;
use crate::error::{ResultExt, ServiceError};
use crate::governance::sees_restricted;
use crate::principal::Visible;
use crate::settings::Settings;
use crate::text::message_text;
use crate::wiring;
use crate::{Principal, Service};

type Result<T> = std::result::Result<T, ServiceError>;

/// Most search hits an export by query takes.
const EXPORT_QUERY_LIMIT: usize = 1_000_000;

/// A full-text search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    /// Words to look for (subject, addresses, body, attachment names).
    pub text: String,
    /// Only this user's archive.
    pub user: Option<String>,
    /// Received on or after.
    pub from_date: Option<DateTime<Utc>>,
    /// Received before.
    pub to_date: Option<DateTime<Utc>>,
    /// At most this many hits (at least 1).
    pub limit: usize,
}

/// A message as `archive show` gives it: metadata, the places it is archived in
/// that the caller may see, and its text.
#[derive(Debug, Clone, Serialize)]
pub struct ShownMessage {
    /// Metadata and (visible) locations.
    #[serde(flatten)]
    pub info: MessageInfo,
    /// The readable text.
    pub text: String,
}

/// What to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    /// Archive owner.
    pub user: String,
    /// Only this folder (and its subfolders).
    pub folder: Option<String>,
    /// Only messages matching this search.
    pub query: Option<String>,
    /// Output format.
    pub format: ExportFormat,
    /// Output directory (eml) or file (mbox).
    pub out: PathBuf,
}

/// What to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    /// Archive owner (an existing local user).
    pub user: String,
    /// Folder to file the messages under.
    pub folder: Option<String>,
    /// A directory of `.eml` files or an mbox file.
    pub path: PathBuf,
}

/// The archive's figures and the free space of its filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveOverview {
    /// Counts and sizes.
    pub stats: ArchiveStats,
    /// Free bytes on the archive's filesystem.
    pub free_bytes: u64,
    /// Size of that filesystem.
    pub filesystem_bytes: u64,
    /// Free bytes a run needs to start (the reserve of `settings.toml`).
    pub reserve_bytes: u64,
}

/// The archive entry of message `id` in `user`'s `folder`, as retention names it.
fn entry_key(user: &str, id: &MessageId, folder: &str) -> retention::EntryKey {
    retention::EntryKey {
        user: user.to_string(),
        id: id.0.clone(),
        folder: folder.to_string(),
    }
}

/// Hits of several archives' searches merged: newest first, at most `limit`.
fn merge_hits(mut hits: Vec<SearchHit>, limit: usize) -> Vec<SearchHit> {
    hits.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| a.id.cmp(&b.id)));
    hits.truncate(limit);
    hits
}

/// What of the archive `principal` reads: restricted entries too for auditors,
/// compliance officers and the local administrator.
fn visibility(principal: &Principal) -> Visibility {
    if sees_restricted(principal) {
        Visibility::Privileged
    } else {
        Visibility::Ordinary
    }
}

impl Service {
    fn read_archive(&self) -> Result<std::sync::Arc<archive_store::DiskArchiveStore>> {
        wiring::open_archive_read_only(&self.open(Access::Read)?)
    }

    /// The archive's figures (`archive stats`): counts and sizes are not mail content,
    /// so admins, auditors and compliance officers may see them.
    pub fn archive_stats(&self, principal: &Principal) -> Result<ArchiveOverview> {
        principal.require_overview(Self::now()).map_err(|e| {
            self.denial(principal, Action::ArchiveMaintenance, Target::default(), e)
        })?;
        let dir = self.open(Access::Read)?;
        let archive = wiring::open_archive_read_only(&dir)?;
        let stats = archive.stats()?;
        let settings = Settings::load(&dir)?;
        let (free_bytes, filesystem_bytes) = wiring::archive_space(&dir)?;
        Ok(ArchiveOverview {
            stats,
            free_bytes,
            filesystem_bytes,
            reserve_bytes: settings.reserve.required(filesystem_bytes),
        })
    }

    /// Re-reads and re-hashes everything (`archive verify`); the report names each
    /// broken object (a damaged archive is a report, not an error).
    pub fn verify_archive(&self, principal: &Principal) -> Result<VerifyReport> {
        self.admin_only(
            principal,
            "verify the archive",
            Action::ArchiveMaintenance,
            Target::default(),
        )?;
        Ok(self.read_archive()?.verify()?)
    }

    /// Rebuilds the indexes from the packs and the record log (`archive reindex`).
    pub fn reindex_archive(&self, principal: &Principal) -> Result<ArchiveStats> {
        self.admin_only(
            principal,
            "rebuild the archive's indexes",
            Action::ArchiveMaintenance,
            Target::default(),
        )?;
        wiring::rebuild_archive_indexes(&self.open(Access::Write)?)
    }

    /// Full-text search over the archives the caller may see (`archive search`).
    /// Asking for an archive outside them is `Forbidden`.
    pub fn search(&self, principal: &Principal, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        if request.limit == 0 {
            return Err(ServiceError::invalid("--limit must be at least 1"));
        }
        let visible = principal.visible(Self::now());
        let target = || Target {
            user: request.user.clone(),
            query: Some(request.text.clone()),
            ..Target::default()
        };
        let refuse = |e| self.denial(principal, Action::ContentSearch, target(), e);
        // The archives to search one by one (`None`: all of them at once).
        let users: Option<Vec<String>> = match (&visible, &request.user) {
            (Visible::All, _) => None,
            (Visible::Only(set), Some(user)) => {
                if !set.contains(user) {
                    return Err(refuse(principal.refused_archive(user)));
                }
                Some(vec![user.clone()])
            }
            (Visible::Only(set), None) => {
                if set.is_empty() {
                    return Err(refuse(ServiceError::forbidden(format!(
                        "{} may not search mail: it sees no archive",
                        principal.label()
                    ))));
                }
                Some(set.iter().cloned().collect())
            }
        };
        let archive = self.read_archive()?;
        let query = |user: Option<String>| SearchQuery {
            text: request.text.clone(),
            user,
            from_date: request.from_date,
            to_date: request.to_date,
            limit: request.limit,
        };
        // Auditors and compliance officers see restricted entries; the store hides
        // them from everyone else.
        let privileged = sees_restricted(principal);
        let hits = match users {
            None if privileged => {
                archive.search(&query(request.user.clone()), &Scope::Privileged)?
            }
            None => archive.search(&query(request.user.clone()), &Scope::Admin)?,
            Some(users) => {
                let mut hits = Vec::new();
                for user in users {
                    let scope = if privileged {
                        Scope::Privileged
                    } else {
                        Scope::User(user.clone())
                    };
                    hits.extend(archive.search(&query(Some(user)), &scope)?);
                }
                merge_hits(hits, request.limit)
            }
        };
        let mut hits = hits;
        let mut kept = Vec::with_capacity(hits.len());
        for hit in hits.drain(..) {
            if self.visible(principal, &entry_key(&hit.user, &hit.id, &hit.folder))? {
                kept.push(hit);
            }
        }
        let hits = kept;
        let target = Target {
            messages: hits.iter().map(|h| h.id.0.clone()).collect(),
            ..target()
        };
        self.audit(
            principal,
            Action::ContentSearch,
            target,
            &[("hits", hits.len().to_string())],
        )?;
        Ok(hits)
    }

    /// Headers, text and places of one message (`archive show`). For a caller who
    /// cannot see every archive, a message of no visible archive and an unknown id
    /// are the same `Forbidden`.
    pub fn show_message(&self, principal: &Principal, id: &str) -> Result<ShownMessage> {
        let (archive, info) = self.visible_message(principal, id, Action::ContentShow)?;
        let text = message_text(&archive.read_message(&info.id)?);
        self.audit_content_read(principal, Action::ContentShow, &info, &[])?;
        Ok(ShownMessage { info, text })
    }

    /// The archive and the metadata of message `id`, its locations cut to those
    /// `principal` may see; refused (and the refusal recorded under `action`) when
    /// none is left. For a caller who cannot see every archive, an unknown id is
    /// refused the same way, so nothing tells them the id exists.
    pub(crate) fn visible_message(
        &self,
        principal: &Principal,
        id: &str,
        action: Action,
    ) -> Result<(std::sync::Arc<archive_store::DiskArchiveStore>, MessageInfo)> {
        let visible = principal.visible(Self::now());
        let id = MessageId(id.trim().to_ascii_lowercase());
        let refused = || {
            self.denial(
                principal,
                action,
                Target::messages([id.0.clone()]),
                ServiceError::forbidden(format!(
                    "{} may not read message {}",
                    principal.label(),
                    id.0
                )),
            )
        };
        if visible == Visible::Only(BTreeSet::new()) {
            return Err(refused());
        }
        let archive = self.read_archive()?;
        let mut info = match archive.show_with(&id, visibility(principal)) {
            Ok(info) => info,
            Err(ArchiveError::NotFound { .. }) if visible != Visible::All => return Err(refused()),
            Err(e) => return Err(e.into()),
        };
        info.locations.retain(|(user, _)| visible.contains(user));
        let mut places = Vec::with_capacity(info.locations.len());
        for (user, folder) in info.locations.drain(..) {
            if self.visible(principal, &entry_key(&user, &id, &folder))? {
                places.push((user, folder));
            }
        }
        info.locations = places;
        if info.locations.is_empty() {
            return Err(refused());
        }
        Ok((archive, info))
    }

    /// Records that `principal` read (part of) message `info` under `action`,
    /// naming the visible places it is archived in and `details`.
    pub(crate) fn audit_content_read(
        &self,
        principal: &Principal,
        action: Action,
        info: &MessageInfo,
        details: &[(&str, String)],
    ) -> Result<()> {
        let places: Vec<String> = info
            .locations
            .iter()
            .map(|(user, folder)| format!("{user}: {folder}"))
            .collect();
        let target = Target {
            user: info.locations.first().map(|(user, _)| user.clone()),
            ..Target::messages([info.id.0.clone()])
        };
        let mut all = vec![("archived_in", places.join("; "))];
        all.extend(details.iter().cloned());
        self.audit(principal, action, target, &all)
    }

    /// Writes `request.user`'s archive (or part of it) as `.eml` files or mbox
    /// (`archive export`); byte-exact. Damaged messages are listed in the report.
    pub fn export(&self, principal: &Principal, request: &ExportRequest) -> Result<ExportReport> {
        let user = request.user.as_str();
        let target = Target {
            user: Some(user.to_string()),
            query: request.query.clone(),
            ..Target::default()
        };
        principal
            .require_archive(user, Self::now())
            .map_err(|e| self.denial(principal, Action::ContentExport, target.clone(), e))?;
        let archive = self.read_archive()?;
        if !archive.users()?.iter().any(|u| u == user) {
            return Err(ServiceError::not_found(format!(
                "user `{user}` has no archive (see `archive stats` for the archives there are)"
            )));
        }
        let ids = match &request.query {
            Some(text) => {
                let hits = archive.search(
                    &SearchQuery {
                        text: text.clone(),
                        user: Some(user.to_string()),
                        from_date: None,
                        to_date: None,
                        limit: EXPORT_QUERY_LIMIT,
                    },
                    &if sees_restricted(principal) {
                        Scope::Privileged
                    } else {
                        Scope::User(user.to_string())
                    },
                )?;
                Some(hits.into_iter().map(|h| h.id).collect::<BTreeSet<_>>())
            }
            None => None,
        };
        let filter = ExportFilter {
            user: user.to_string(),
            folder: request.folder.clone(),
            ids: self.without_restricted(principal, user, ids)?,
        };
        // Recorded before any message leaves the archive.
        let format = match request.format {
            ExportFormat::Eml => "eml",
            ExportFormat::Mbox => "mbox",
        };
        let mut details = vec![
            ("format", format.to_string()),
            ("out", request.out.display().to_string()),
        ];
        if let Some(folder) = &request.folder {
            details.push(("folder", folder.clone()));
        }
        self.audit(principal, Action::ContentExport, target, &details)?;
        archive
            .export_with(&filter, request.format, &request.out, visibility(principal))
            .context_with(|| format!("export of `{user}` to {}", request.out.display()))
    }

    /// Imports `.eml` files or an mbox into an existing user's archive (`archive
    /// import`); re-importing the same mail adds nothing. A user who then holds
    /// mail is marked as having an archive (so no sync or removal deletes them).
    pub fn import(&self, principal: &Principal, request: &ImportRequest) -> Result<ImportReport> {
        let (user, path) = (request.user.as_str(), &request.path);
        self.admin_only(
            principal,
            "import mail",
            Action::ContentImport,
            Target::user(user),
        )?;
        if !path.exists() {
            return Err(ServiceError::not_found(format!(
                "nothing to import: {} does not exist",
                path.display()
            )));
        }
        let no_user = || {
            ServiceError::not_found(format!(
                "no user named `{user}`: add it with `users add` (or `users sync`) first"
            ))
        };
        let existing = self
            .open(Access::Read)
            .context_with(|| format!("no user named `{user}`"))?;
        if !wiring::has_user_store(&existing) {
            return Err(no_user());
        }
        let dir = self.open(Access::Write)?;
        let users = wiring::open_user_store(&dir)?;
        if users.get(user)?.is_none() {
            return Err(no_user());
        }
        let archive = wiring::open_archive(&dir)?;
        let report = archive
            .import(user, request.folder.as_deref(), path)
            .context_with(|| format!("import of {} into `{user}`", path.display()))?;
        if report.imported > 0 || report.duplicates > 0 {
            users.mark_has_archive(user)?;
        }
        self.audit(
            principal,
            Action::ContentImport,
            Target::user(user),
            &[
                ("path", path.display().to_string()),
                ("imported", report.imported.to_string()),
            ],
        )?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: &str, day: u32) -> SearchHit {
        use chrono::TimeZone;
        SearchHit {
            id: MessageId(id.into()),
            user: "u".into(),
            folder: "Inbox".into(),
            date: Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0).single(),
            from: None,
            subject: None,
        }
    }

    #[test]
    fn merged_hits_are_newest_first_and_limited() {
        let merged = merge_hits(vec![hit("a", 1), hit("b", 3), hit("c", 2)], 2);
        let ids: Vec<&str> = merged.iter().map(|h| h.id.0.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
    }
}
