//! One mailbox's run: probe, folder tree, checkpoint, then the folders' rounds in
//! order (two at a time), the checkpoint saved after each folder.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use futures::stream::StreamExt;
use m365_mailbox::{DeltaCursor, Folder, MailboxError};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

use super::folder::FolderRound;
use super::run::RunHalt;
use super::select::{Target, select_folders};
use super::{ARCHIVE_FAILURE_LIMIT, Engine, spawn_blocking};
use crate::checkpoint::{FolderCheckpoint, MailboxCheckpoint};
use crate::error::EngineError;
use crate::profile::Profile;
use crate::progress::{ProgressEvent, ProgressSink};
use crate::report::{MailboxReport, MailboxStatus};

/// Folders (with their saved cursors) whose first delta pages are asked together, and
/// whether that was done.
type PrefetchGroup = (
    Vec<(String, Option<DeltaCursor>)>,
    tokio::sync::OnceCell<()>,
);

/// Folders of one mailbox worked on at once.
const FOLDERS_IN_PARALLEL: usize = 2;

/// Everything one mailbox's run shares with its message jobs (read-only).
pub(super) struct MailboxCtx<'a> {
    pub(super) engine: &'a Engine,
    pub(super) profile: &'a Profile,
    pub(super) target: &'a Target,
    /// The run's halt token: cancelled by the caller or by a storage failure.
    pub(super) cancel: &'a CancellationToken,
    /// Stops the whole run on a storage failure.
    pub(super) halt: &'a RunHalt,
    pub(super) progress: &'a dyn ProgressSink,
    pub(super) now: DateTime<Utc>,
    /// `mark_has_archive` already called for the target user.
    pub(super) marked: AtomicBool,
    /// Archive writes that failed in a row; at [`ARCHIVE_FAILURE_LIMIT`] the
    /// mailbox stops instead of downloading mail the archive cannot take.
    pub(super) archive_failures_in_a_row: AtomicUsize,
}

impl MailboxCtx<'_> {
    pub(super) fn mailbox(&self) -> &str {
        &self.target.mailbox
    }

    pub(super) fn archive_broken(&self) -> bool {
        self.archive_failures_in_a_row.load(Ordering::SeqCst) >= ARCHIVE_FAILURE_LIMIT
    }

    fn settings_fingerprint(&self) -> String {
        let f = &self.profile.filter;
        let d = &self.profile.deletion;
        format!(
            "user={};older_than_days={};received_after={};deletion={:?}/{}/{}",
            self.target.user,
            f.older_than_days,
            f.received_after.map(|d| d.to_rfc3339()).unwrap_or_default(),
            d.mode,
            d.after_days,
            d.keep_unread
        )
    }

    pub(super) async fn run(&self) -> MailboxReport {
        let mailbox = self.mailbox().to_owned();
        let source = &self.engine.mailboxes;
        let mut report = MailboxReport::new(&mailbox, MailboxStatus::Ok);
        self.progress.event(ProgressEvent::MailboxStarted {
            mailbox: mailbox.clone(),
            user: self.target.user.clone(),
        });
        if let Err(e) = source.probe(&mailbox).await {
            return fail_mailbox(report, &e, self.profile);
        }
        let folders = match source.folders(&mailbox).await {
            Ok(f) => f,
            Err(e) => return fail_mailbox(report, &e, self.profile),
        };
        let selected = select_folders(&folders, &self.profile.folders);
        let mut checkpoint = match self.load_checkpoint().await {
            Ok(c) => c,
            Err(e) => {
                report.status = MailboxStatus::Failed;
                report.error = Some(e.to_string());
                return report;
            }
        };
        let fingerprint = self.settings_fingerprint();
        if checkpoint.settings != fingerprint {
            if !checkpoint.folders.is_empty() {
                info!("profile settings changed since the last run: folders are enumerated again");
            }
            checkpoint.folders.clear();
            checkpoint.settings = fingerprint;
        }
        let known: HashSet<&str> = folders.iter().map(|f| f.id.as_str()).collect();
        checkpoint
            .folders
            .retain(|id, _| known.contains(id.as_str()));

        let mut errors = Vec::new();
        let mut folders_completed = 0usize;
        // Each folder starts from its saved state; the first delta request of every 20
        // folders is asked together (one `$batch` on Graph: a no-change rerun costs a
        // request per 20 folders).
        let prefetch_folders = self.engine.mailboxes.limits().prefetch_folders.max(1);
        let groups: Vec<PrefetchGroup> = selected
            .chunks(prefetch_folders)
            .map(|chunk| {
                let ahead = chunk
                    .iter()
                    .map(|f| {
                        let cursor = checkpoint.folders.get(&f.id).and_then(|s| s.cursor.clone());
                        (f.id.clone(), cursor)
                    })
                    .collect();
                (ahead, tokio::sync::OnceCell::new())
            })
            .collect();
        // Two folders at a time, so the next folder's listing and downloads fill the
        // mailbox's slots while the previous one finishes (the mailbox gate still keeps
        // four requests in flight at most). Results are taken in folder order, and each
        // folder's cursor is saved only after its own downloads are archived.
        let mut jobs = Vec::with_capacity(selected.len());
        for (index, folder) in selected.iter().copied().enumerate() {
            let mut state = checkpoint
                .folders
                .get(&folder.id)
                .cloned()
                .unwrap_or_default();
            state.path = folder.path.clone();
            let group = groups.get(index / prefetch_folders);
            jobs.push(self.folder_job(&mailbox, folder, state, group));
        }
        let rounds = futures::stream::iter(jobs).buffered(FOLDERS_IN_PARALLEL);
        futures::pin_mut!(rounds);
        while let Some(done) = rounds.next().await {
            let Some((folder, mut state, counts, round)) = done else {
                break;
            };
            state.updated = Some(Utc::now());
            if round.gone {
                checkpoint.folders.remove(&folder.id);
            } else {
                checkpoint.folders.insert(folder.id.clone(), state);
            }
            report.messages_archived += counts.messages_archived;
            report.messages_duplicate += counts.messages_duplicate;
            report.messages_failed += counts.messages_failed;
            report.bytes += counts.bytes;
            report.deleted += counts.deleted;
            report.folders += 1;
            folders_completed += usize::from(round.completed);
            if let Err(e) = self.save_checkpoint(&checkpoint).await {
                errors.push(e.to_string());
                break;
            }
            if let Some(error) = &round.error {
                errors.push(format!("folder {}: {error}", folder.path));
            }
            self.progress.event(ProgressEvent::FolderFinished {
                mailbox: mailbox.clone(),
                folder: folder.path.clone(),
                completed: round.completed,
            });
            if round.mailbox_wide() {
                break;
            }
            if self.archive_broken() {
                errors.push(format!(
                    "the archive refused {ARCHIVE_FAILURE_LIMIT} writes in a row: this mailbox stopped; \
                     fix the archive (disk space, permissions) and run again"
                ));
                break;
            }
        }
        if report.messages_failed > 0 {
            errors.push(format!(
                "{} message(s) could not be archived (each is named in the log); the next run retries them",
                report.messages_failed
            ));
        }
        if self.halt.reason().is_some() {
            errors.push("stopped with the run (see the run's error)".to_owned());
        }
        if self.cancel.is_cancelled() && self.halt.reason().is_none() {
            report.status = MailboxStatus::Cancelled;
        } else if !errors.is_empty() {
            let archived_any = report.messages_archived + report.messages_duplicate > 0;
            report.status = if archived_any || folders_completed > 0 {
                MailboxStatus::Partial
            } else {
                MailboxStatus::Failed
            };
        }
        if !errors.is_empty() {
            report.error = Some(errors.join("; "));
        }
        report
    }

    /// One folder's round with its own counters (merged by the caller, in folder order);
    /// `None` when the run was cancelled before it started.
    async fn folder_job<'f>(
        &self,
        mailbox: &str,
        folder: &'f Folder,
        mut state: FolderCheckpoint,
        group: Option<&PrefetchGroup>,
    ) -> Option<(&'f Folder, FolderCheckpoint, MailboxReport, FolderRound)> {
        // The group's first pages are asked once, before any of its folders starts.
        if let Some((ahead, asked)) = group {
            asked
                .get_or_init(|| self.engine.mailboxes.prefetch_changes(mailbox, ahead))
                .await;
        }
        if self.cancel.is_cancelled() {
            return None;
        }
        let span = info_span!("folder", folder = %folder.path);
        let mut counts = MailboxReport::new(mailbox, MailboxStatus::Ok);
        let round = self
            .run_folder(folder, &mut state, &mut counts)
            .instrument(span)
            .await;
        Some((folder, state, counts, round))
    }

    async fn load_checkpoint(&self) -> Result<MailboxCheckpoint, EngineError> {
        let store = self.engine.checkpoints.clone();
        let profile = self.profile.name.clone();
        let mailbox = self.mailbox().to_owned();
        spawn_blocking(move || store.load(&profile, &mailbox)).await?
    }

    async fn save_checkpoint(&self, checkpoint: &MailboxCheckpoint) -> Result<(), EngineError> {
        let store = self.engine.checkpoints.clone();
        let profile = self.profile.name.clone();
        let checkpoint = checkpoint.clone();
        spawn_blocking(move || store.save(&profile, &checkpoint)).await?
    }

    pub(super) fn limit(&self) -> usize {
        self.engine.options.downloads_per_mailbox.clamp(
            1,
            self.engine.mailboxes.limits().requests_per_mailbox.max(1),
        )
    }
}

fn fail_mailbox(
    mut report: MailboxReport,
    error: &MailboxError,
    profile: &Profile,
) -> MailboxReport {
    report.status = match error {
        MailboxError::NoMailbox { .. } => MailboxStatus::Skipped,
        _ => MailboxStatus::Failed,
    };
    report.error = Some(match error {
        MailboxError::AccessDenied { .. } => {
            format!("{error}: {}", super::advice::access_denied_advice(profile))
        }
        _ => error.to_string(),
    });
    report
}
