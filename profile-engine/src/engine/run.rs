//! A run of a profile (mailboxes in parallel, totals, history, the run-wide halt on
//! storage failures) and its test (a probe of every selected mailbox).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::Instant;

use chrono::Utc;
use directory_sync::MailboxKinds;
use futures::stream::{FuturesUnordered, StreamExt};
use m365_mailbox::MailboxMetrics;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::mailbox::MailboxCtx;
use super::select::Target;
use super::{Engine, spawn_blocking};
use crate::error::EngineError;
use crate::lock::RunLock;
use crate::profile::{Profile, Source};
use crate::progress::{ProgressEvent, ProgressSink};
use crate::report::{
    HistoryEntry, MailboxProbe, MailboxReport, MailboxStatus, RunReport, RunStatus, TestReport,
};

impl Engine {
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
            mailbox_kinds,
            ..
        } = &profile.source
        {
            self.sync_directory(*mailbox_kinds).await?;
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
        let extra = std::sync::Mutex::new(Vec::new());
        // A hand-rolled bounded set (not `buffer_unordered` over a closure) keeps
        // the run's future `Send`, so callers can spawn it.
        let mut pending = selection.targets.iter();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < parallel {
                match pending.next() {
                    Some(target) => {
                        running.push(self.run_mailbox(profile, target, &halt, &extra, progress))
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
        let extra = extra
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (mailbox, start) in extra {
            let after = self.mailboxes.metrics(&mailbox);
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
        if report.mailboxes.is_empty()
            && let Some(advice) = super::select::empty_selection_advice(profile)
        {
            // Nothing archived because nothing was chosen: a failure to act on, not "ok".
            report.status = RunStatus::Failed;
            report.error = Some(advice);
        }
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

    /// Synchronises the users, also bringing in mailboxes of the profile's `kinds`.
    async fn sync_directory(&self, kinds: MailboxKinds) -> Result<(), EngineError> {
        let directory = self.directory.clone().ok_or(EngineError::Incomplete(
            "directory source (sync_directory_first)",
        ))?;
        let options = directory_sync::SyncOptions {
            mailbox_kinds: self.options.directory_sync.mailbox_kinds.union(kinds),
            ..self.options.directory_sync
        };
        let report =
            directory_sync::sync(directory.as_ref(), self.users.as_ref(), &options).await?;
        for warning in &report.warnings {
            warn!(%warning, "directory sync");
        }
        debug!(
            created = report.created.len(),
            updated = report.updated.len(),
            deactivated = report.deactivated.len(),
            "directory synchronised"
        );
        Ok(())
    }

    async fn run_mailbox(
        &self,
        profile: &Profile,
        target: &Target,
        halt: &RunHalt,
        extra_mailboxes: &std::sync::Mutex<Vec<(String, MailboxMetrics)>>,
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
        let held = if profile.deletion.mode == crate::DeletionMode::Never
            || profile.deletion.despite_holds
        {
            Vec::new()
        } else {
            self.holds_on(&target.user)
        };
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
            unreadable: AtomicU64::new(0),
            deletable: true,
            held: !held.is_empty(),
            extra_mailboxes,
        };
        let mut report = ctx.run().instrument(span).await;
        report.deletion_held = held;
        report
    }

    /// The active legal holds covering `user`'s archive: any hold naming the user, or
    /// naming no user (it may cover messages of every archive). When the holds cannot be
    /// read, deletion is held too (failing safe), under a name that says why.
    fn holds_on(&self, user: &str) -> Vec<String> {
        let Some(governance) = &self.governance else {
            return Vec::new();
        };
        match governance.load() {
            Ok(state) => state
                .holds
                .iter()
                .filter(|h| h.is_active())
                .filter(|h| h.scope.users.is_empty() || h.scope.users.iter().any(|u| u == user))
                .map(|h| h.case.clone())
                .collect(),
            Err(e) => {
                warn!(error = %e, "legal holds unreadable: deletion rules suspended");
                vec![format!("(legal holds unreadable: {e})")]
            }
        }
    }
}

/// A failure that stops the whole run (the archive's disk is full or failing):
/// every mailbox stops at its next step, checkpoints keep what was archived.
pub(super) struct RunHalt {
    /// Cancelled on halt (a child of the caller's token, so cancelling the run stops it too).
    pub(super) token: CancellationToken,
    /// Why the run was halted; `None` while it goes on.
    pub(super) reason: std::sync::Mutex<Option<String>>,
}

impl RunHalt {
    pub(super) fn new(cancel: &CancellationToken) -> Self {
        Self {
            token: cancel.child_token(),
            reason: std::sync::Mutex::new(None),
        }
    }

    /// Stops the run; the first reason given is kept.
    pub(super) fn halt(&self, reason: String) {
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

    pub(super) fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
