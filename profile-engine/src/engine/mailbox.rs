//! One mailbox's run: probe, folder tree (with the Recoverable Items folders the profile
//! takes), checkpoint, then the folders' rounds in order (two at a time), the checkpoint
//! saved after each folder; then, with `archive_mailbox`, the same for the user's online
//! archive (its own mailbox id, checkpoint and gate), filed under `Online Archive/`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use futures::stream::StreamExt;
use m365_mailbox::{
    DeltaCursor, Folder, MailboxError, MailboxMetrics, RECOVERABLE_FOLDERS, RECOVERABLE_ITEMS_PATH,
    paths,
};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span};

use super::folder::{FolderRound, UNCONVERTIBLE_ATTEMPTS};
use super::run::RunHalt;
use super::select::{Target, select_folders};
use super::{ARCHIVE_FAILURE_LIMIT, Engine, spawn_blocking};
use crate::checkpoint::{FolderCheckpoint, MailboxCheckpoint};
use crate::error::EngineError;
use crate::profile::{FolderRules, Profile, RecoverableItems, UnreadableItems};
use crate::progress::{ProgressEvent, ProgressSink};
use crate::report::{FailureKind, MailboxReport, MailboxStatus};

/// Folders (with their saved cursors) whose first delta pages are asked together, and
/// whether that was done.
type PrefetchGroup = (
    Vec<(String, Option<DeltaCursor>)>,
    tokio::sync::OnceCell<()>,
);

/// Folders of one mailbox worked on at once.
const FOLDERS_IN_PARALLEL: usize = 2;

/// The archive folder the online archive's folders are filed under.
pub const ONLINE_ARCHIVE: &str = "Online Archive";

/// What a mailbox's parts (its folders, Recoverable Items, online archive) left to
/// say about it.
#[derive(Default)]
struct Progress {
    errors: Vec<String>,
    folders_completed: usize,
}

/// The Recoverable Items folders the profile takes, filed under
/// `Recoverable Items/<name>`: chosen by `recoverable_items`, left out by `exclude`
/// (their archive path or well-known name).
fn plan_recoverable(recoverable: &[Folder], rules: &FolderRules) -> Vec<Folder> {
    let only_exclude = FolderRules {
        include: Vec::new(),
        exclude: rules.exclude.clone(),
        ..FolderRules::default()
    };
    let named: Vec<Folder> = recoverable
        .iter()
        .filter_map(|f| {
            let wk = f.well_known_name.as_deref()?;
            if !rules.recoverable_items.takes(wk) {
                return None;
            }
            let (_, name) = RECOVERABLE_FOLDERS.iter().find(|(w, _)| *w == wk)?;
            Some(Folder {
                path: paths::child_path(RECOVERABLE_ITEMS_PATH, name),
                parent_id: None,
                ..f.clone()
            })
        })
        .collect();
    select_folders(&named, &only_exclude)
        .into_iter()
        .cloned()
        .collect()
}

/// Whether a folder is one of Recoverable Items (never touched by deletion rules).
pub(super) fn is_recoverable(folder: &Folder) -> bool {
    folder
        .well_known_name
        .as_deref()
        .is_some_and(|wk| wk.starts_with("recoverableitems"))
}

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
    /// Items the service could not render, tried this run.
    pub(super) unreadable: AtomicU64,
    /// Deletion rules may apply (not in an online archive).
    pub(super) deletable: bool,
    /// A legal hold covers this mailbox's archive: deletions that are due wait (they are
    /// remembered, and happen in the first run after the hold is released).
    pub(super) held: bool,
    /// Mailboxes read besides the selected ones (online archives), with their
    /// counters when first asked, for the run's request totals.
    pub(super) extra_mailboxes: &'a std::sync::Mutex<Vec<(String, MailboxMetrics)>>,
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
        let mut folders = match source.folders(&mailbox).await {
            Ok(f) => f,
            Err(e) => return fail_mailbox(report, &e, self.profile),
        };
        let rules = &self.profile.folders;
        let mut planned: Vec<Folder> = select_folders(&folders, rules)
            .into_iter()
            .cloned()
            .collect();
        let mut progress = Progress::default();
        if rules.recoverable_items != RecoverableItems::None {
            match source.recoverable_folders(&mailbox).await {
                Ok(recoverable) => {
                    planned.extend(plan_recoverable(&recoverable, rules));
                    folders.extend(recoverable);
                }
                Err(e) if e.is_mailbox_wide() => return fail_mailbox(report, &e, self.profile),
                Err(e) => progress.errors.push(format!("Recoverable Items: {e}")),
            }
        }
        let checkpoint = match self.load_checkpoint().await {
            Ok(c) => c,
            Err(e) => {
                report.status = MailboxStatus::Failed;
                report.error = Some(e.to_string());
                return report;
            }
        };
        let go_on = self
            .archive_folders(checkpoint, &folders, &planned, &mut report, &mut progress)
            .await;
        if go_on && rules.archive_mailbox && !self.cancel.is_cancelled() {
            self.run_online_archive(&mut report, &mut progress).await;
        }
        self.conclude(report, progress)
    }

    /// The user's online archive, as a mailbox of its own (its own requests, gate and
    /// checkpoint) filed under [`ONLINE_ARCHIVE`] in the same user's archive; deletion
    /// rules never apply there.
    async fn run_online_archive(&self, report: &mut MailboxReport, progress: &mut Progress) {
        let source = &self.engine.mailboxes;
        let id = match source.archive_mailbox(self.mailbox()).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                debug!("no online archive");
                return;
            }
            Err(e) => {
                progress.errors.push(format!("online archive: {e}"));
                return;
            }
        };
        self.extra_mailboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((id.clone(), source.metrics(&id)));
        let folders = match source.folders(&id).await {
            Ok(f) => f,
            Err(e) => {
                progress.errors.push(format!("online archive {id}: {e}"));
                return;
            }
        };
        let planned: Vec<Folder> = select_folders(&folders, &self.profile.folders)
            .into_iter()
            .map(|f| Folder {
                path: format!("{ONLINE_ARCHIVE}/{}", f.path),
                ..f.clone()
            })
            .collect();
        let target = Target {
            mailbox: id,
            user: self.target.user.clone(),
        };
        let part = MailboxCtx {
            engine: self.engine,
            profile: self.profile,
            target: &target,
            cancel: self.cancel,
            halt: self.halt,
            progress: self.progress,
            now: self.now,
            marked: AtomicBool::new(self.marked.load(Ordering::SeqCst)),
            archive_failures_in_a_row: AtomicUsize::new(0),
            unreadable: AtomicU64::new(0),
            deletable: false,
            held: self.held,
            extra_mailboxes: self.extra_mailboxes,
        };
        let span = info_span!("online_archive", archive = %target.mailbox);
        let checkpoint = match part.load_checkpoint().instrument(span.clone()).await {
            Ok(c) => c,
            Err(e) => {
                progress.errors.push(format!("online archive: {e}"));
                return;
            }
        };
        part.archive_folders(checkpoint, &folders, &planned, report, progress)
            .instrument(span)
            .await;
        self.unreadable
            .fetch_add(part.unreadable.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The rounds of the planned folders (two at a time) from the checkpoint, saved after
    /// each; `false` when the mailbox must stop (a mailbox-wide error, a broken archive,
    /// a checkpoint that cannot be saved).
    async fn archive_folders(
        &self,
        mut checkpoint: MailboxCheckpoint,
        listed: &[Folder],
        planned: &[Folder],
        report: &mut MailboxReport,
        progress: &mut Progress,
    ) -> bool {
        let mailbox = self.mailbox().to_owned();
        let fingerprint = self.settings_fingerprint();
        if checkpoint.settings != fingerprint {
            if !checkpoint.folders.is_empty() {
                info!("profile settings changed since the last run: folders are enumerated again");
            }
            checkpoint.folders.clear();
            checkpoint.settings = fingerprint;
        }
        let known: HashSet<&str> = listed.iter().map(|f| f.id.as_str()).collect();
        checkpoint
            .folders
            .retain(|id, _| known.contains(id.as_str()));

        // Each folder starts from its saved state; the first delta request of every 20
        // folders is asked together (one `$batch` on Graph: a no-change rerun costs a
        // request per 20 folders).
        let prefetch_folders = self.engine.mailboxes.limits().prefetch_folders.max(1);
        let groups: Vec<PrefetchGroup> = planned
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
        let mut jobs = Vec::with_capacity(planned.len());
        for (index, folder) in planned.iter().enumerate() {
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
            report.absorb(counts);
            report.folders += 1;
            progress.folders_completed += usize::from(round.completed);
            if let Err(e) = self.save_checkpoint(&checkpoint).await {
                progress.errors.push(e.to_string());
                return false;
            }
            if let Some(error) = &round.error {
                progress
                    .errors
                    .push(format!("folder {}: {error}", folder.path));
            }
            self.progress.event(ProgressEvent::FolderFinished {
                mailbox: mailbox.clone(),
                folder: folder.path.clone(),
                completed: round.completed,
            });
            if round.mailbox_wide() {
                return false;
            }
            if self.archive_broken() {
                progress.errors.push(format!(
                    "the archive refused {ARCHIVE_FAILURE_LIMIT} writes in a row: this mailbox stopped; \
                     fix the archive (disk space, permissions) and run again"
                ));
                return false;
            }
        }
        true
    }

    /// The mailbox's status and error from what its parts did.
    fn conclude(&self, mut report: MailboxReport, mut progress: Progress) -> MailboxReport {
        let errors = &mut progress.errors;
        let unreadable_now = self.unreadable.load(Ordering::SeqCst);
        let unreadable_listed = report
            .failures
            .iter()
            .filter(|f| f.kind == FailureKind::Unconvertible)
            .count() as u64;
        let others = report.messages_failed.saturating_sub(unreadable_now);
        if others > 0 {
            errors.push(format!(
                "{others} message(s) could not be archived (each is named in the log); the next run retries them"
            ));
        }
        if unreadable_listed > 0 && self.profile.run.unreadable_items == UnreadableItems::Partial {
            errors.push(format!(
                "{unreadable_listed} item(s) cannot be converted to MIME by the mail service (listed in \
                 failures); the next runs try each again up to {UNCONVERTIBLE_ATTEMPTS} attempts in all"
            ));
        }
        if self.halt.reason().is_some() {
            errors.push("stopped with the run (see the run's error)".to_owned());
        }
        if self.cancel.is_cancelled() && self.halt.reason().is_none() {
            report.status = MailboxStatus::Cancelled;
        } else if !errors.is_empty() {
            let archived_any = report.messages_archived + report.messages_duplicate > 0;
            report.status = if archived_any || progress.folders_completed > 0 {
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
