//! Restore (`archive restore`): archived mail written back into a mailbox through the
//! [`archive_restore`] job.
//!
//! Who may restore what (content leaves the archive, so this is stricter than reading):
//! - the local administrator: any archive, into any mailbox;
//! - an `admin` only while an unblock is in force: any archive, into any mailbox;
//! - a `user`: their own archive, into their own mailbox only (its primary address or an
//!   alias);
//! - `auditor` and `compliance` read archives but never restore them.
//!
//! As for `show` and `export`, a caller who cannot see an archive gets `Forbidden` for it,
//! and for ids they name that are not in the archive (nothing tells them an id exists).

use archive_restore::{RestoreError, RestoreEvent, RestoreOptions, RestoreReport, Selection};
use chrono::{DateTime, Utc};
use m365_mailbox::MailboxWriter;

use crate::datadir::Access;
use crate::error::{ResultExt, ServiceError};
use crate::principal::{Grant, Role};
use crate::wiring;
use crate::{Principal, Service};
use audit_log::{Action, Target};

type Result<T> = std::result::Result<T, ServiceError>;

/// What to restore, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    /// The archive owner.
    pub user: String,
    /// Which of their messages: ids, a search or a folder.
    pub selection: Selection,
    /// The mailbox to write into; `None`: the archive owner's own (their address in the
    /// user store).
    pub to_mailbox: Option<String>,
    /// The folder path the original folders are recreated under; `None`:
    /// `Restored/<YYYY-MM-DD>`.
    pub to_folder: Option<String>,
    /// Post the archived MIME itself (the item lands as a draft) instead of a JSON create.
    pub exact_mime: bool,
}

fn in_force(grant: &Grant, now: DateTime<Utc>) -> bool {
    grant.until.is_none_or(|until| now < until)
}

/// Refuses a caller who may not restore `user`'s archive; otherwise whether it may write
/// into any mailbox (`false`: only the archive owner's own).
fn require_restore(principal: &Principal, user: &str, now: DateTime<Utc>) -> Result<bool> {
    let account = match principal {
        Principal::LocalAdministrator => return Ok(true),
        Principal::Account(a) => a,
    };
    let has = |role| {
        account
            .grants
            .iter()
            .any(|g| g.role == role && in_force(g, now))
    };
    if has(Role::Admin) && account.unblock.as_ref().is_some_and(|u| now < u.until) {
        return Ok(true);
    }
    if account.name == user && has(Role::User) {
        return Ok(false);
    }
    if has(Role::Admin) {
        return Err(ServiceError::forbidden(format!(
            "{} may not restore the archive of `{user}`: mail content leaves the archive, \
             which an admin may do only under an unblock",
            principal.label()
        )));
    }
    if principal.visible(now).contains(user) {
        return Err(ServiceError::forbidden(format!(
            "{} may not restore the archive of `{user}`: the auditor and compliance roles \
             read archives, they do not restore them",
            principal.label()
        )));
    }
    Err(principal.refused_archive(user))
}

impl Service {
    /// Restores part of `request.user`'s archive into a mailbox through the Graph writer of
    /// credential `credentials` (`archive restore`). See [`Service::restore_with_writer`].
    pub async fn restore(
        &self,
        principal: &Principal,
        request: &RestoreRequest,
        credentials: &str,
        progress: &(dyn Fn(&RestoreEvent) + Send + Sync),
    ) -> Result<RestoreReport> {
        // Refuse before touching credentials: a refused caller learns nothing more.
        require_restore(principal, &request.user, Self::now())?;
        let dir = self.open(Access::Read)?;
        let credential = wiring::load_credential(&dir, credentials)?;
        let connection = wiring::connect(&credential, self.secrets())?;
        let writer = wiring::restore_writer(&connection)?;
        self.restore_with_writer(principal, request, writer.as_ref(), progress)
            .await
    }

    /// Restores part of `request.user`'s archive through `writer` (any mail service behind
    /// the seam). Reports per message; a mailbox-wide refusal (403, no mailbox) is an error.
    pub async fn restore_with_writer(
        &self,
        principal: &Principal,
        request: &RestoreRequest,
        writer: &dyn MailboxWriter,
        progress: &(dyn Fn(&RestoreEvent) + Send + Sync),
    ) -> Result<RestoreReport> {
        let attempted = Target {
            user: Some(request.user.clone()),
            ..Target::default()
        };
        match self
            .restore_recorded(principal, request, writer, progress)
            .await
        {
            Ok(report) => Ok(report),
            Err(e) => Err(self.denial(principal, Action::ContentRestore, attempted, e)),
        }
    }

    /// The restore itself: recorded in the audit log before any mail leaves the archive
    /// (no record, no restore), and its outcome after.
    async fn restore_recorded(
        &self,
        principal: &Principal,
        request: &RestoreRequest,
        writer: &dyn MailboxWriter,
        progress: &(dyn Fn(&RestoreEvent) + Send + Sync),
    ) -> Result<RestoreReport> {
        let now = Self::now();
        let user = request.user.as_str();
        let any_mailbox = require_restore(principal, user, now)?;
        let dir = self.open(Access::Read)?;
        let archive = wiring::open_archive_read_only(&dir)?;
        if !archive.users()?.iter().any(|u| u == user) {
            return Err(ServiceError::not_found(format!(
                "user `{user}` has no archive (see `archive stats` for the archives there are)"
            )));
        }
        let owner = match wiring::open_user_store_read_only(&dir)? {
            Some(users) => users.get(user)?,
            None => None,
        };
        let own: Vec<String> = owner
            .iter()
            .flat_map(|u| u.email.iter().chain(u.aliases.iter()))
            .map(|a| a.to_lowercase())
            .collect();
        let to_mailbox = match &request.to_mailbox {
            Some(address) => address.trim().to_string(),
            None => own.first().cloned().ok_or_else(|| {
                ServiceError::invalid(format!(
                    "user `{user}` has no mailbox address in the user store; give the target \
                     mailbox with --to-mailbox"
                ))
            })?,
        };
        if !any_mailbox && !own.contains(&to_mailbox.to_lowercase()) {
            return Err(ServiceError::forbidden(format!(
                "{} may restore its archive only into its own mailbox, not `{to_mailbox}`",
                principal.label()
            )));
        }
        let job = archive_restore::RestoreRequest {
            user: user.to_string(),
            selection: request.selection.clone(),
            to_mailbox: to_mailbox.clone(),
            to_folder: request.to_folder.clone(),
            exact_mime: request.exact_mime,
            date: now.date_naive(),
        };
        let sees_all = principal.visible(now) == crate::Visible::All;
        let target = || Target {
            user: Some(user.to_string()),
            messages: match &request.selection {
                Selection::Ids(ids) => ids.iter().map(|id| id.0.clone()).collect(),
                _ => Vec::new(),
            },
            object: Some(format!("mailbox {to_mailbox}")),
            query: match &request.selection {
                Selection::Query(q) => Some(q.clone()),
                Selection::Folder(f) => Some(format!("folder:{f}")),
                Selection::Ids(_) => None,
            },
        };
        self.audit(
            principal,
            Action::ContentRestore,
            target(),
            &[
                ("phase", "start".to_string()),
                ("exact_mime", request.exact_mime.to_string()),
            ],
        )?;
        match archive_restore::restore(archive, writer, &job, RestoreOptions::default(), progress)
            .await
        {
            Ok(report) => {
                self.audit_or_warn(
                    principal,
                    Action::ContentRestore,
                    target(),
                    &[
                        ("phase", "done".to_string()),
                        ("restored", report.restored.to_string()),
                        ("skipped_existing", report.skipped_existing.to_string()),
                        ("failed", report.failed.to_string()),
                        ("to_folder", report.to_folder.clone()),
                    ],
                );
                Ok(report)
            }
            Err(RestoreError::UnknownIds { ids, .. }) if !sees_all => {
                Err(ServiceError::forbidden(format!(
                    "{} may not read message {}",
                    principal.label(),
                    ids.join(", ")
                )))
            }
            Err(e) => Err(e).context_with(|| format!("restore of `{user}` into {to_mailbox}")),
        }
    }
}
