//! The engine: runs a profile over the seams (`TokenProvider`, `MailboxSource`,
//! `DirectorySource`, `UserStore`, `ArchiveStore`) and the checkpoint store.
//!
//! Per mailbox: probe, folder tree, then per folder one delta round through a
//! bounded pipeline (events are pulled only while fewer than
//! `downloads_per_mailbox` messages are in hand; archive writes run on the blocking
//! pool), so memory stays bounded whatever the tenant size. A folder's cursor is
//! saved only after every message of its round is durably archived: a run killed
//! anywhere resumes from the previous cursor, and the archive's `find_source`
//! recognises what was already archived, so nothing is downloaded or recorded twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use archive_store::{ArchiveError, ArchiveRequest, ArchiveStore, MessageId, RawMessage, SourceRef};
use chrono::{DateTime, Duration, Utc};
use directory_sync::{DirectorySource, LocalUser, UserStore};
use futures::stream::{FuturesUnordered, StreamExt};
use m365_auth::TokenProvider;
use m365_mailbox::{
    DeleteMode, DeltaCursor, DeltaEvent, Folder, MailboxError, MailboxMetrics, MailboxSource,
    MessageSummary, MimeContent, SourceLimits,
};
use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::checkpoint::{CheckpointStore, FolderCheckpoint, MailboxCheckpoint, WaitingMessage};
use crate::error::{EngineError, FolderFailure, MessageFailure, NotDeleted};
use crate::lock::RunLock;
use crate::profile::{Profile, Select, Source};
use crate::progress::{ProgressEvent, ProgressSink};
use crate::report::{
    HistoryEntry, MailboxProbe, MailboxReport, MailboxStatus, RunHistory, RunReport, RunStatus,
    TestReport,
};

/// Folders (with their saved cursors) whose first delta pages are asked together, and
/// whether that was done.
type PrefetchGroup = (
    Vec<(String, Option<DeltaCursor>)>,
    tokio::sync::OnceCell<()>,
);

/// Folders of one mailbox worked on at once.
const FOLDERS_IN_PARALLEL: usize = 2;

/// Archive writes failing in a row after which a mailbox stops.
const ARCHIVE_FAILURE_LIMIT: usize = 3;

/// Tunables of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Messages in hand (downloading or being written) per mailbox; at most what the
    /// source serves at once ([`SourceLimits::requests_per_mailbox`]).
    pub downloads_per_mailbox: usize,
    /// Largest message fetched, in bytes (Exchange allows 150 MB).
    pub max_message_bytes: u64,
    /// Fixed "now" for age filters and deletion rules (tests); `None` = the clock.
    pub now: Option<DateTime<Utc>>,
    /// Directory of run locks; when set, a run takes its profile's [`RunLock`].
    pub lock_dir: Option<PathBuf>,
    /// Where finished runs are recorded.
    pub history: Option<RunHistory>,
    /// Options of the directory sync done for `sync_directory_first`.
    pub directory_sync: directory_sync::SyncOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            downloads_per_mailbox: SourceLimits::GRAPH.requests_per_mailbox,
            max_message_bytes: 150 * 1024 * 1024,
            now: None,
            lock_dir: None,
            history: None,
            directory_sync: directory_sync::SyncOptions::default(),
        }
    }
}

/// Builds an [`Engine`] from the seams.
#[derive(Default)]
pub struct EngineBuilder {
    tokens: Option<Arc<dyn TokenProvider>>,
    mailboxes: Option<Arc<dyn MailboxSource>>,
    directory: Option<Arc<dyn DirectorySource>>,
    users: Option<Arc<dyn UserStore>>,
    archive: Option<Arc<dyn ArchiveStore>>,
    checkpoints: Option<CheckpointStore>,
    options: EngineOptions,
}

impl EngineBuilder {
    /// Tokens of the profile's credentials: a run first checks a token can be had,
    /// so bad credentials fail once with the AADSTS advice instead of per mailbox.
    pub fn token_provider(mut self, tokens: Arc<dyn TokenProvider>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// The mail service (required).
    pub fn mailbox_source(mut self, source: Arc<dyn MailboxSource>) -> Self {
        self.mailboxes = Some(source);
        self
    }

    /// The directory, for `sync_directory_first`.
    pub fn directory_source(mut self, directory: Arc<dyn DirectorySource>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Local users (required).
    pub fn user_store(mut self, users: Arc<dyn UserStore>) -> Self {
        self.users = Some(users);
        self
    }

    /// The archive (required).
    pub fn archive_store(mut self, archive: Arc<dyn ArchiveStore>) -> Self {
        self.archive = Some(archive);
        self
    }

    /// The checkpoint store (required).
    pub fn checkpoints(mut self, checkpoints: CheckpointStore) -> Self {
        self.checkpoints = Some(checkpoints);
        self
    }

    /// Options.
    pub fn options(mut self, options: EngineOptions) -> Self {
        self.options = options;
        self
    }

    /// The engine, or which required part is missing.
    pub fn build(self) -> Result<Engine, EngineError> {
        Ok(Engine {
            tokens: self.tokens,
            mailboxes: self
                .mailboxes
                .ok_or(EngineError::Incomplete("mailbox source"))?,
            directory: self.directory,
            users: self.users.ok_or(EngineError::Incomplete("user store"))?,
            archive: self
                .archive
                .ok_or(EngineError::Incomplete("archive store"))?,
            checkpoints: self
                .checkpoints
                .ok_or(EngineError::Incomplete("checkpoint store"))?,
            options: self.options,
        })
    }
}

/// Runs and tests profiles.
pub struct Engine {
    tokens: Option<Arc<dyn TokenProvider>>,
    mailboxes: Arc<dyn MailboxSource>,
    directory: Option<Arc<dyn DirectorySource>>,
    users: Arc<dyn UserStore>,
    archive: Arc<dyn ArchiveStore>,
    checkpoints: CheckpointStore,
    options: EngineOptions,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("checkpoints", &self.checkpoints)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// One mailbox to archive and whose archive receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    mailbox: String,
    user: String,
}

/// The mailboxes of a profile, and the names that could not be resolved.
#[derive(Debug, Default)]
struct Selection {
    targets: Vec<Target>,
    unresolved: Vec<(String, String)>,
}

impl Engine {
    /// A builder.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    fn now(&self) -> DateTime<Utc> {
        self.options.now.unwrap_or_else(Utc::now)
    }

    /// Runs a profile to the end, until cancelled, or until a failure that stops
    /// everything (bad profile, credentials, user store, missing target user).
    /// Failures of single mailboxes are in the report, never an `Err`.
    pub async fn run(
        &self,
        profile: &Profile,
        cancel: &CancellationToken,
        progress: &dyn ProgressSink,
    ) -> Result<RunReport, EngineError> {
        profile.validate()?;
        let _lock = match &self.options.lock_dir {
            Some(dir) => Some(RunLock::acquire(dir, &profile.name)?),
            None => None,
        };
        let span = info_span!("run", profile = %profile.name);
        let started_at = Utc::now();
        let clock = Instant::now();
        let report = self
            .run_inner(profile, cancel, progress)
            .instrument(span)
            .await?;
        let mut report = report;
        report.duration_secs = clock.elapsed().as_secs_f64();
        if let Some(history) = &self.options.history {
            let entry = HistoryEntry {
                started_at,
                finished_at: Utc::now(),
                report: report.clone(),
            };
            let history = history.clone();
            // The run is done and its messages are durable: a history that cannot be
            // written (disk full) is a warning in the report, never a lost report.
            let written = spawn_blocking(move || history.append(&entry)).await?;
            if let Err(e) = written {
                warn!(error = %e, "the run history could not be written");
                report
                    .warnings
                    .push(format!("the run history could not be written: {e}"));
            }
        }
        progress.event(ProgressEvent::RunFinished {
            status: report.status,
        });
        info!(profile = %profile.name, status = ?report.status, archived = report.totals.messages_archived,
            failed = report.totals.messages_failed, "run finished");
        Ok(report)
    }

    async fn run_inner(
        &self,
        profile: &Profile,
        cancel: &CancellationToken,
        progress: &dyn ProgressSink,
    ) -> Result<RunReport, EngineError> {
        if let Some(tokens) = &self.tokens {
            tokens.token().await?;
        }
        if let Source::Multiple {
            sync_directory_first: true,
            ..
        } = &profile.source
        {
            self.sync_directory().await?;
        }
        let selection = self.select(profile).await?;
        progress.event(ProgressEvent::RunStarted {
            profile: profile.name.clone(),
            mailboxes: selection.targets.len(),
        });
        let mut mailboxes: Vec<MailboxReport> = selection
            .unresolved
            .iter()
            .map(|(name, why)| {
                let mut r = MailboxReport::new(name, MailboxStatus::Failed);
                r.error = Some(why.clone());
                r
            })
            .collect();
        let before: HashMap<String, MailboxMetrics> = selection
            .targets
            .iter()
            .map(|t| (t.mailbox.clone(), self.mailboxes.metrics(&t.mailbox)))
            .collect();
        let parallel = profile.run.parallel_mailboxes.max(1);
        let halt = RunHalt::new(cancel);
        // A hand-rolled bounded set (not `buffer_unordered` over a closure) keeps
        // the run's future `Send`, so callers can spawn it.
        let mut pending = selection.targets.iter();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < parallel {
                match pending.next() {
                    Some(target) => {
                        running.push(self.run_mailbox(profile, target, &halt, progress))
                    }
                    None => break,
                }
            }
            let Some(report) = running.next().await else {
                break;
            };
            progress.event(ProgressEvent::MailboxFinished {
                report: report.clone(),
            });
            mailboxes.push(report);
        }
        drop(running);
        mailboxes.sort_by(|a, b| a.mailbox.cmp(&b.mailbox));
        let (mut requests, mut throttled, mut retries) = (0, 0, 0);
        for target in &selection.targets {
            let after = self.mailboxes.metrics(&target.mailbox);
            let start = before.get(&target.mailbox).cloned().unwrap_or_default();
            requests += after.requests.saturating_sub(start.requests);
            throttled += after.throttled.saturating_sub(start.throttled);
            retries += after.retries.saturating_sub(start.retries);
        }
        let mut report = RunReport {
            profile: profile.name.clone(),
            status: RunStatus::Ok,
            mailboxes,
            totals: Default::default(),
            requests,
            throttled,
            retries,
            duration_secs: 0.0,
            error: None,
            warnings: Vec::new(),
        };
        report.finish(cancel.is_cancelled());
        if let Some(reason) = halt.reason() {
            report.error = Some(reason);
            if report.status == RunStatus::Ok {
                report.status = RunStatus::Partial;
            }
        }
        Ok(report)
    }

    /// Probes every selected mailbox of a profile: which can be read and why not.
    /// Reads the local users as they are (no directory sync).
    pub async fn test(&self, profile: &Profile) -> Result<TestReport, EngineError> {
        profile.validate()?;
        if let Some(tokens) = &self.tokens {
            tokens.token().await?;
        }
        let selection = self.select(profile).await?;
        let mut mailboxes: Vec<MailboxProbe> = selection
            .unresolved
            .iter()
            .map(|(name, why)| MailboxProbe {
                mailbox: name.clone(),
                user: None,
                readable: false,
                error: Some(why.clone()),
            })
            .collect();
        let parallel = profile.run.parallel_mailboxes.max(1);
        let mut pending = selection.targets.iter();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < parallel {
                match pending.next() {
                    Some(target) => running.push(self.probe_target(target)),
                    None => break,
                }
            }
            let Some(probe) = running.next().await else {
                break;
            };
            mailboxes.push(probe);
        }
        mailboxes.sort_by(|a, b| a.mailbox.cmp(&b.mailbox));
        Ok(TestReport {
            profile: profile.name.clone(),
            ok: mailboxes.iter().all(|m| m.readable),
            mailboxes,
        })
    }

    async fn probe_target(&self, target: &Target) -> MailboxProbe {
        let result = self.mailboxes.probe(&target.mailbox).await;
        MailboxProbe {
            mailbox: target.mailbox.clone(),
            user: Some(target.user.clone()),
            readable: result.is_ok(),
            error: result.err().map(|e| e.to_string()),
        }
    }

    async fn sync_directory(&self) -> Result<(), EngineError> {
        let directory = self.directory.clone().ok_or(EngineError::Incomplete(
            "directory source (sync_directory_first)",
        ))?;
        let report = directory_sync::sync(
            directory.as_ref(),
            self.users.as_ref(),
            &self.options.directory_sync,
        )
        .await?;
        debug!(
            created = report.created.len(),
            updated = report.updated.len(),
            deactivated = report.deactivated.len(),
            "directory synchronised"
        );
        Ok(())
    }

    /// Resolves the profile's mailboxes from the local users.
    async fn select(&self, profile: &Profile) -> Result<Selection, EngineError> {
        let users = self.users.clone();
        let source = profile.source.clone();
        let name = profile.name.clone();
        spawn_blocking(move || select_targets(&name, &source, users.as_ref())).await?
    }

    async fn run_mailbox(
        &self,
        profile: &Profile,
        target: &Target,
        halt: &RunHalt,
        progress: &dyn ProgressSink,
    ) -> MailboxReport {
        let cancel = &halt.token;
        if cancel.is_cancelled() {
            if let Some(reason) = halt.reason() {
                let mut report = MailboxReport::new(&target.mailbox, MailboxStatus::Failed);
                report.error = Some(format!("not started: {reason}"));
                return report;
            }
            let mut report = MailboxReport::new(&target.mailbox, MailboxStatus::Cancelled);
            report.error = Some("run cancelled before this mailbox started".to_owned());
            return report;
        }
        let span = info_span!("mailbox", mailbox = %target.mailbox, user = %target.user);
        let ctx = MailboxCtx {
            engine: self,
            profile,
            target,
            cancel,
            halt,
            progress,
            now: self.now(),
            marked: AtomicBool::new(false),
            archive_failures_in_a_row: AtomicUsize::new(0),
        };
        ctx.run().instrument(span).await
    }
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
            ..
        } => {
            let all = users.list()?;
            let eligible = |u: &LocalUser| u.enabled && u.email.is_some();
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

/// A message the pipeline is to handle.
#[derive(Debug, Clone)]
struct Candidate {
    id: String,
    received: Option<DateTime<Utc>>,
    is_read: bool,
    /// Came from the waiting list (re-insert on failure).
    from_waiting: bool,
}

impl Candidate {
    fn from_summary(s: &MessageSummary) -> Self {
        Self {
            id: s.id.clone(),
            received: s.received,
            is_read: s.is_read,
            from_waiting: false,
        }
    }
}

/// What happened to one message.
#[derive(Debug)]
struct MessageOutcome {
    candidate: Candidate,
    result: Result<Handled, MessageFailure>,
}

/// A failure that stops the whole run (the archive's disk is full or failing):
/// every mailbox stops at its next step, checkpoints keep what was archived.
struct RunHalt {
    /// Cancelled on halt (a child of the caller's token, so cancelling the run stops it too).
    token: CancellationToken,
    /// Why the run was halted; `None` while it goes on.
    reason: std::sync::Mutex<Option<String>>,
}

impl RunHalt {
    fn new(cancel: &CancellationToken) -> Self {
        Self {
            token: cancel.child_token(),
            reason: std::sync::Mutex::new(None),
        }
    }

    /// Stops the run; the first reason given is kept.
    fn halt(&self, reason: String) {
        let mut slot = self
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            warn!(%reason, "run stopped");
            *slot = Some(reason);
        }
        drop(slot);
        self.token.cancel();
    }

    fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Whether an archive error means its storage failed (so every further write fails too).
fn storage_failed(error: &ArchiveError) -> bool {
    error.io_kind().is_some()
        || matches!(
            error,
            ArchiveError::NotDurable { .. } | ArchiveError::Poisoned { .. }
        )
}

/// The advice of a run stopped by a storage failure: what failed, at which path (in
/// the error), how much the message needed, and what to do.
fn storage_halt_reason(error: &ArchiveError, message_bytes: u64) -> String {
    let what = if error.is_disk_full() {
        "the archive's disk is full"
    } else {
        "the archive's storage failed"
    };
    format!(
        "{what}: {error}; the message being written needed {message_bytes} bytes. \
         The run stopped: every message archived before this is kept. Free space on the \
         archive's filesystem (or move the data directory to a larger disk), then run the \
         profile again: it resumes where it stopped"
    )
}

#[derive(Debug, Default)]
struct Handled {
    /// Newly recorded in the archive.
    new_entry: bool,
    /// Bytes downloaded and archived.
    bytes: u64,
    /// Deleted from the mailbox.
    deleted: bool,
    /// Why a due deletion did not happen.
    delete_error: Option<NotDeleted>,
    /// Archived, deletion not due yet: remember it.
    wait_for_deletion: bool,
    /// The message left the mailbox before it could be fetched: nothing to do.
    gone: bool,
}

/// Everything one mailbox's run shares with its message jobs (read-only).
struct MailboxCtx<'a> {
    engine: &'a Engine,
    profile: &'a Profile,
    target: &'a Target,
    /// The run's halt token: cancelled by the caller or by a storage failure.
    cancel: &'a CancellationToken,
    /// Stops the whole run on a storage failure.
    halt: &'a RunHalt,
    progress: &'a dyn ProgressSink,
    now: DateTime<Utc>,
    /// `mark_has_archive` already called for the target user.
    marked: AtomicBool,
    /// Archive writes that failed in a row; at [`ARCHIVE_FAILURE_LIMIT`] the
    /// mailbox stops instead of downloading mail the archive cannot take.
    archive_failures_in_a_row: AtomicUsize,
}

/// How one folder round ended.
struct FolderRound {
    completed: bool,
    error: Option<FolderFailure>,
    /// The folder was deleted while the run enumerated it.
    gone: bool,
}

impl FolderRound {
    /// The error concerns the whole mailbox: its other folders are not tried.
    fn mailbox_wide(&self) -> bool {
        self.error
            .as_ref()
            .is_some_and(FolderFailure::is_mailbox_wide)
    }
}

impl MailboxCtx<'_> {
    fn mailbox(&self) -> &str {
        &self.target.mailbox
    }

    fn archive_broken(&self) -> bool {
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

    async fn run(&self) -> MailboxReport {
        let mailbox = self.mailbox().to_owned();
        let source = &self.engine.mailboxes;
        let mut report = MailboxReport::new(&mailbox, MailboxStatus::Ok);
        self.progress.event(ProgressEvent::MailboxStarted {
            mailbox: mailbox.clone(),
            user: self.target.user.clone(),
        });
        if let Err(e) = source.probe(&mailbox).await {
            return fail_mailbox(report, &e);
        }
        let folders = match source.folders(&mailbox).await {
            Ok(f) => f,
            Err(e) => return fail_mailbox(report, &e),
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

    fn limit(&self) -> usize {
        self.engine.options.downloads_per_mailbox.clamp(
            1,
            self.engine.mailboxes.limits().requests_per_mailbox.max(1),
        )
    }

    /// Whether a message received at `received` is old enough to archive.
    fn old_enough_to_archive(&self, received: Option<DateTime<Utc>>) -> bool {
        let days = self.profile.filter.older_than_days;
        days == 0 || received.is_none_or(|r| r <= self.now - Duration::days(i64::from(days)))
    }

    fn excluded_by_date(&self, received: Option<DateTime<Utc>>) -> bool {
        match (self.profile.filter.received_after, received) {
            (Some(after), Some(r)) => r < after.with_timezone(&Utc),
            _ => false,
        }
    }

    fn delete_mode(&self, folder: &Folder) -> Option<DeleteMode> {
        let mode = self.profile.deletion.mode.delete_mode()?;
        let in_deleted_items = folder.well_known_name.as_deref() == Some("deleteditems");
        if mode == DeleteMode::MoveToDeletedItems && in_deleted_items {
            return None;
        }
        Some(mode)
    }

    /// Deletion is due now (age and read state); `None` = deletion never applies.
    fn deletion_due(&self, folder: &Folder, c: &Candidate) -> Option<bool> {
        self.delete_mode(folder)?;
        let received = c.received?;
        let rules = &self.profile.deletion;
        let old = received <= self.now - Duration::days(i64::from(rules.after_days));
        let read_ok = c.is_read || !rules.keep_unread;
        Some(old && read_ok)
    }

    async fn run_folder(
        &self,
        folder: &Folder,
        state: &mut FolderCheckpoint,
        report: &mut MailboxReport,
    ) -> FolderRound {
        let mailbox = self.mailbox();
        self.progress.event(ProgressEvent::FolderStarted {
            mailbox: mailbox.to_owned(),
            folder: folder.path.clone(),
        });
        let limit = self.limit();
        let mut stream = self
            .engine
            .mailboxes
            .changes(mailbox, &folder.id, state.cursor.clone());
        let mut in_hand: FuturesUnordered<_> = FuturesUnordered::new();
        let mut in_hand_ids: HashSet<String> = HashSet::new();
        let mut stream_open = true;
        let mut stopping = false;
        let mut round_failed = false;
        let mut new_cursor = None;
        let mut error = None;
        let mut gone = false;
        loop {
            if self.archive_broken() {
                stopping = true;
            }
            if !stream_open || stopping {
                match in_hand.next().await {
                    Some(outcome) => {
                        round_failed |=
                            self.absorb(folder, state, report, &mut in_hand_ids, outcome);
                        continue;
                    }
                    None => break,
                }
            }
            tokio::select! {
                biased;
                Some(outcome) = in_hand.next(), if !in_hand.is_empty() => {
                    round_failed |= self.absorb(folder, state, report, &mut in_hand_ids, outcome);
                }
                _ = self.cancel.cancelled() => {
                    stopping = true;
                }
                event = stream.next(), if in_hand.len() < limit => match event {
                    None => {
                        stream_open = false;
                        error.get_or_insert(FolderFailure::NoCursor);
                    }
                    Some(Err(MailboxError::FolderGone { .. })) => {
                        stream_open = false;
                        gone = true;
                    }
                    Some(Err(e)) => {
                        stream_open = false;
                        error = Some(FolderFailure::Listing(e));
                    }
                    Some(Ok(DeltaEvent::Done(cursor))) => {
                        stream_open = false;
                        new_cursor = Some(cursor);
                    }
                    Some(Ok(DeltaEvent::Restarted)) => {
                        info!("saved cursor rejected: enumerating the folder again");
                    }
                    Some(Ok(DeltaEvent::Removed { id })) => {
                        state.waiting.remove(&id);
                    }
                    Some(Ok(DeltaEvent::Upsert(summary))) => {
                        if let Some(candidate) = self.consider(&summary, state)
                            && in_hand_ids.insert(candidate.id.clone())
                        {
                            in_hand.push(self.handle(folder, candidate));
                        }
                    }
                }
            }
        }
        drop(stream);
        let completed = new_cursor.is_some() && !round_failed && error.is_none();
        if completed {
            state.cursor = new_cursor;
        }
        let mailbox_wide = error.as_ref().is_some_and(FolderFailure::is_mailbox_wide);
        if !self.cancel.is_cancelled() && !gone && !mailbox_wide && !self.archive_broken() {
            round_failed |= self.process_waiting(folder, state, report).await;
        }
        if round_failed && error.is_none() && !completed {
            debug!("round incomplete: cursor kept for the next run");
        }
        FolderRound {
            completed,
            error,
            gone,
        }
    }

    /// Decides what to do with a listed message: `Some` = hand it to the pipeline.
    fn consider(
        &self,
        summary: &MessageSummary,
        state: &mut FolderCheckpoint,
    ) -> Option<Candidate> {
        if self.excluded_by_date(summary.received) {
            state.waiting.remove(&summary.id);
            return None;
        }
        if !self.old_enough_to_archive(summary.received) {
            state.waiting.insert(
                summary.id.clone(),
                WaitingMessage {
                    received: summary.received,
                    is_read: summary.is_read,
                    archived: false,
                },
            );
            return None;
        }
        state.waiting.remove(&summary.id);
        Some(Candidate::from_summary(summary))
    }

    /// After the round: archive messages that have come of age, delete archived
    /// ones whose deletion is now due.
    async fn process_waiting(
        &self,
        folder: &Folder,
        state: &mut FolderCheckpoint,
        report: &mut MailboxReport,
    ) -> bool {
        let due: Vec<Candidate> = state
            .waiting
            .iter()
            .filter_map(|(id, w)| {
                let candidate = Candidate {
                    id: id.clone(),
                    received: w.received,
                    is_read: w.is_read,
                    from_waiting: true,
                };
                let is_due = if w.archived {
                    self.deletion_due(folder, &candidate) == Some(true)
                } else {
                    self.old_enough_to_archive(w.received)
                };
                is_due.then_some(candidate)
            })
            .collect();
        if due.is_empty() {
            return false;
        }
        let limit = self.limit();
        let mut pending = due.into_iter();
        let mut running = FuturesUnordered::new();
        let mut failed = false;
        let mut ids = HashSet::new();
        loop {
            while running.len() < limit && !self.cancel.is_cancelled() && !self.archive_broken() {
                match pending.next() {
                    Some(candidate) => running.push(self.handle(folder, candidate)),
                    None => break,
                }
            }
            let Some(outcome) = running.next().await else {
                break;
            };
            failed |= self.absorb(folder, state, report, &mut ids, outcome);
        }
        // Messages not started (cancelled) are still in the waiting list.
        failed
    }

    /// Books one outcome; `true` when the message failed.
    fn absorb(
        &self,
        folder: &Folder,
        state: &mut FolderCheckpoint,
        report: &mut MailboxReport,
        in_hand_ids: &mut HashSet<String>,
        outcome: MessageOutcome,
    ) -> bool {
        let MessageOutcome { candidate, result } = outcome;
        in_hand_ids.remove(&candidate.id);
        if candidate.from_waiting {
            // Settled now; put back below if it must wait again.
            state.waiting.remove(&candidate.id);
        }
        let mailbox = self.mailbox().to_owned();
        match result {
            Err(failure) => {
                report.messages_failed += 1;
                if failure.is_archive_side() {
                    self.archive_failures_in_a_row
                        .fetch_add(1, Ordering::SeqCst);
                }
                let permanent = failure.is_permanent();
                warn!(message = %candidate.id, error = %failure, "message not archived");
                self.progress.event(ProgressEvent::MessageFailed {
                    mailbox,
                    folder: folder.path.clone(),
                    message_id: candidate.id.clone(),
                    error: failure.to_string(),
                });
                if candidate.from_waiting && !permanent {
                    state.waiting.insert(
                        candidate.id,
                        WaitingMessage {
                            received: candidate.received,
                            is_read: candidate.is_read,
                            archived: false,
                        },
                    );
                }
                !permanent
            }
            Ok(handled) if handled.gone => {
                debug!(message = %candidate.id, "message left the mailbox before it was fetched");
                false
            }
            Ok(handled) => {
                self.archive_failures_in_a_row.store(0, Ordering::SeqCst);
                if handled.new_entry {
                    report.messages_archived += 1;
                } else {
                    report.messages_duplicate += 1;
                }
                report.bytes += handled.bytes;
                self.progress.event(ProgressEvent::MessageArchived {
                    mailbox: mailbox.clone(),
                    folder: folder.path.clone(),
                    bytes: handled.bytes,
                    duplicate: !handled.new_entry,
                });
                if handled.deleted {
                    report.deleted += 1;
                    self.progress.event(ProgressEvent::MessageDeleted {
                        mailbox,
                        message_id: candidate.id.clone(),
                    });
                } else {
                    if let Some(why) = &handled.delete_error {
                        warn!(message = %candidate.id, reason = %why, "message kept in the mailbox");
                    }
                    if handled.wait_for_deletion || handled.delete_error.is_some() {
                        state.waiting.insert(
                            candidate.id,
                            WaitingMessage {
                                received: candidate.received,
                                is_read: candidate.is_read,
                                archived: true,
                            },
                        );
                    }
                }
                false
            }
        }
    }

    /// One message through the pipeline: recognise, fetch, archive, maybe delete.
    async fn handle(&self, folder: &Folder, candidate: Candidate) -> MessageOutcome {
        let result = self.handle_inner(folder, &candidate).await;
        MessageOutcome { candidate, result }
    }

    async fn handle_inner(
        &self,
        folder: &Folder,
        c: &Candidate,
    ) -> Result<Handled, MessageFailure> {
        let engine = self.engine;
        let mailbox = self.mailbox();
        let user = self.target.user.clone();
        let source_ref = SourceRef {
            mailbox: mailbox.to_owned(),
            message_id: c.id.clone(),
        };
        let archive = engine.archive.clone();
        let lookup = source_ref.clone();
        let lookup_user = user.clone();
        let existing = spawn_blocking(move || archive.find_source(&lookup_user, &lookup))
            .await?
            .map_err(MessageFailure::Lookup)?;
        let deletion = self.deletion_due(folder, c);
        let delete_now = deletion == Some(true);
        if let Some(_known) = &existing
            && !delete_now
        {
            return Ok(Handled {
                wait_for_deletion: deletion == Some(false),
                ..Handled::default()
            });
        }
        let fetched = engine
            .mailboxes
            .fetch_mime(mailbox, &c.id, engine.options.max_message_bytes)
            .await;
        let content = match fetched {
            Ok(content) => content,
            Err(MailboxError::MessageGone { .. }) => {
                return Ok(Handled {
                    gone: true,
                    ..Handled::default()
                });
            }
            // Already archived: only the deletion check needed the bytes.
            Err(e) if existing.is_some() => {
                return Ok(Handled {
                    delete_error: Some(NotDeleted::CheckDownload(e)),
                    ..Handled::default()
                });
            }
            Err(e) => return Err(MessageFailure::Fetch(e)),
        };
        let request = ArchiveRequest {
            user: user.clone(),
            folder: folder.path.clone(),
            source: Some(source_ref),
            received: c.received,
        };
        if existing.is_none() && !self.marked.swap(true, Ordering::SeqCst) {
            let users = engine.users.clone();
            let owner = user.clone();
            let marked = spawn_blocking(move || users.mark_has_archive(&owner)).await?;
            if let Err(source) = marked {
                self.marked.store(false, Ordering::SeqCst);
                let halts = matches!(source, directory_sync::DirectoryError::StoreIo { .. });
                let failure = MessageFailure::OwnerNotRecorded { user, source };
                if halts {
                    // The user store cannot be written (disk full, I/O error): archiving
                    // on would leave archives whose owner is not protected from removal.
                    self.halt.halt(format!(
                        "{failure}. The run stopped: every message archived before this is kept; \
                         fix the data directory's disk, then run the profile again"
                    ));
                }
                return Err(failure);
            }
        }
        let archive = engine.archive.clone();
        let (stored, content, size) = spawn_blocking(move || {
            let size = content_size(&content);
            let result = match existing {
                Some(id) => Ok((id, false)),
                None => {
                    let raw = match &content {
                        MimeContent::Memory(bytes) => RawMessage::Bytes(bytes),
                        MimeContent::Spooled(path) => RawMessage::File(path),
                    };
                    archive.archive(&request, raw).map(|o| (o.id, o.new_entry))
                }
            };
            (result, content, size)
        })
        .await?;
        let bytes = size;
        let (id, new_entry) = stored.map_err(|error| {
            if storage_failed(&error) {
                self.halt.halt(storage_halt_reason(&error, size));
            }
            MessageFailure::Archive(error)
        })?;
        let mut handled = Handled {
            new_entry,
            bytes: if new_entry { bytes } else { 0 },
            ..Handled::default()
        };
        match deletion {
            Some(true) => match self.verified(&id, content).await {
                Ok(()) => {
                    let mode = self.delete_mode(folder);
                    match mode {
                        Some(mode) => match engine.mailboxes.delete(mailbox, &c.id, mode).await {
                            Ok(()) => handled.deleted = true,
                            Err(e) => handled.delete_error = Some(NotDeleted::Delete(e)),
                        },
                        None => handled.delete_error = Some(NotDeleted::Disabled),
                    }
                }
                Err(why) => handled.delete_error = Some(why),
            },
            Some(false) => handled.wait_for_deletion = true,
            None => {}
        }
        Ok(handled)
    }

    /// The archived copy is intact and its address is the hash of the bytes
    /// fetched from the mailbox.
    async fn verified(&self, id: &MessageId, content: MimeContent) -> Result<(), NotDeleted> {
        let archive = self.engine.archive.clone();
        let id = id.clone();
        spawn_blocking(move || {
            let mut offered: Box<dyn Read> = match &content {
                MimeContent::Memory(bytes) => Box::new(std::io::Cursor::new(bytes.clone())),
                MimeContent::Spooled(path) => match std::fs::File::open(path) {
                    Ok(file) => Box::new(std::io::BufReader::new(file)),
                    Err(e) => return Err(NotDeleted::ReadFetched(e)),
                },
            };
            match archive.holds_exactly(&id, &mut offered) {
                Ok(true) => Ok(()),
                Ok(false) => Err(NotDeleted::Differs { id }),
                Err(source) => Err(NotDeleted::Unverifiable { id, source }),
            }
        })
        .await?
    }
}

fn fail_mailbox(mut report: MailboxReport, error: &MailboxError) -> MailboxReport {
    report.status = match error {
        MailboxError::NoMailbox { .. } => MailboxStatus::Skipped,
        _ => MailboxStatus::Failed,
    };
    report.error = Some(error.to_string());
    report
}

fn content_size(content: &MimeContent) -> u64 {
    match content {
        MimeContent::Memory(bytes) => bytes.len() as u64,
        MimeContent::Spooled(path) => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
    }
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

/// Runs blocking work (archive, checkpoint and user-store I/O) off the async workers.
async fn spawn_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JoinError> {
    tokio::task::spawn_blocking(work).await
}
