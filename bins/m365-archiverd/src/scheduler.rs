//! The service loop: which profiles are due (the service decides), one run per
//! profile at a time, clean stop.
//!
//! Each run is one call of [`Service::run_profile`], started by [`launch`]. Runs of
//! one service share its user store and archive, opened while any run is active and
//! closed when the service is idle, so the command line can use the archive between
//! runs.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Result;
use archiver_service::{Service, ServiceError};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use profile_engine::{
    CancellationToken, EngineError, ProgressEvent, ProgressSink, RunReport, RunStatus,
};
use tracing::{error, info, warn};

use crate::CALLER;

/// How often the profiles are re-read when nothing is due sooner.
const IDLE_POLL: Duration = Duration::from_secs(60);

/// What the service did, for its exit code.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Runs that ended with status `ok`.
    pub succeeded: u64,
    /// Runs that failed, partly failed, or could not start.
    pub failed: u64,
    /// Runs stopped by a signal (checkpoints saved).
    pub cancelled: u64,
}

/// Logs a run's progress: mailboxes as they start and finish, failed messages.
struct LogProgress {
    profile: String,
}

impl ProgressSink for LogProgress {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::RunStarted { mailboxes, .. } => {
                info!(profile = %self.profile, mailboxes, "mailboxes selected");
            }
            ProgressEvent::MailboxStarted { mailbox, user } => {
                info!(profile = %self.profile, %mailbox, %user, "mailbox started");
            }
            ProgressEvent::MessageFailed {
                mailbox,
                folder,
                message_id,
                error,
            } => {
                warn!(profile = %self.profile, %mailbox, %folder, %message_id, %error, "message failed; the next run retries it");
            }
            ProgressEvent::MailboxFinished { report } => {
                info!(
                    profile = %self.profile,
                    mailbox = %report.mailbox,
                    status = ?report.status,
                    archived = report.messages_archived,
                    duplicate = report.messages_duplicate,
                    failed = report.messages_failed,
                    deleted = report.deleted,
                    error = report.error.as_deref().unwrap_or(""),
                    "mailbox finished"
                );
            }
            _ => {}
        }
    }
}

/// What a finished run hands back: the profile's name and its report or error.
type Finished = (String, Result<RunReport, ServiceError>);

/// A run in flight: its task's outcome.
type Run = BoxFuture<'static, Finished>;

/// Starts profile `name` through the service on its own task (logging its progress)
/// and returns what its end yields; a task that panicked is a failed run.
fn launch(service: &Service, name: String, cancel: CancellationToken) -> Run {
    let service = service.clone();
    let task_name = name.clone();
    let task = tokio::spawn(async move {
        let progress = LogProgress {
            profile: task_name.clone(),
        };
        service
            .run_profile(CALLER, &task_name, &cancel, &progress)
            .await
    });
    Box::pin(async move {
        let result = task
            .await
            .unwrap_or_else(|e| Err(ServiceError::from(EngineError::TaskFailed(e))));
        (name, result)
    })
}

/// Runs due profiles until `stop` is cancelled (or, with `once`, until the due ones finished).
pub async fn serve(service: Service, once: bool, stop: CancellationToken) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut attempts: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut running: HashSet<String> = HashSet::new();
    let mut broken_seen: HashMap<String, String> = HashMap::new();
    let mut tasks: FuturesUnordered<Run> = FuturesUnordered::new();
    info!(data_dir = %service.data_dir().display(), once, "m365-archiverd started");
    loop {
        let now = Utc::now();
        let mut next_wake = now + chrono::Duration::from_std(IDLE_POLL).unwrap_or_default();
        if !stop.is_cancelled() {
            let due = service.due_profiles(CALLER, now, &attempts, &running)?;
            let broken: HashSet<&String> = due.broken.iter().map(|(name, _)| name).collect();
            broken_seen.retain(|name, _| broken.contains(name));
            for (name, e) in &due.broken {
                let text = e.to_string();
                if broken_seen.get(name) != Some(&text) {
                    error!(profile = %name, "profile skipped: {text}");
                    broken_seen.insert(name.clone(), text);
                }
            }
            for (name, e) in &due.unreadable_history {
                warn!(profile = %name, "run history unreadable ({e}); treating the profile as never run");
            }
            if let Some(next) = due.next {
                next_wake = next_wake.min(next);
            }
            for profile in due.due {
                info!(profile = %profile.name, schedule = %profile.run.schedule, "run started");
                attempts.insert(profile.name.clone(), now);
                running.insert(profile.name.clone());
                tasks.push(launch(&service, profile.name, stop.child_token()));
            }
        }
        if tasks.is_empty() && (once || stop.is_cancelled()) {
            break;
        }
        let sleep = (next_wake - Utc::now())
            .to_std()
            .unwrap_or(Duration::from_millis(100));
        tokio::select! {
            _ = stop.cancelled(), if !stop.is_cancelled() => {
                info!(running = tasks.len(), "stopping: running profiles finish the message in hand and save their checkpoints");
            }
            _ = tokio::time::sleep(sleep), if !once && !stop.is_cancelled() => {}
            Some((name, result)) = tasks.next(), if !tasks.is_empty() => {
                running.remove(&name);
                match result {
                    Ok(report) => {
                        info!(
                            profile = %name,
                            status = ?report.status,
                            mailboxes = report.totals.mailboxes,
                            mailboxes_failed = report.totals.mailboxes_failed,
                            archived = report.totals.messages_archived,
                            duplicate = report.totals.messages_duplicate,
                            failed = report.totals.messages_failed,
                            deleted = report.totals.deleted,
                            bytes = report.totals.bytes,
                            requests = report.requests,
                            throttled = report.throttled,
                            duration_secs = report.duration_secs,
                            "run finished"
                        );
                        match report.status {
                            RunStatus::Ok => outcome.succeeded += 1,
                            RunStatus::Cancelled => outcome.cancelled += 1,
                            RunStatus::Partial | RunStatus::Failed => outcome.failed += 1,
                        }
                    }
                    Err(e) => {
                        error!(profile = %name, "run failed: {}", archiver_service::chain(&e));
                        outcome.failed += 1;
                    }
                }
            }
            else => {}
        }
    }
    info!(
        succeeded = outcome.succeeded,
        failed = outcome.failed,
        cancelled = outcome.cancelled,
        "m365-archiverd stopped"
    );
    Ok(outcome)
}
