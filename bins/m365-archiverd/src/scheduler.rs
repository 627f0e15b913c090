//! The service loop: which profiles are due, one run per profile at a time, clean stop.
//!
//! A scheduled profile that never ran is due at once; afterwards its schedule's next
//! slot after the last start is (a slot missed while the service was down gives one
//! catch-up run, not a burst). Runs share one user store and one archive, opened while
//! any run is active and closed when the service is idle, so the command line can use
//! the archive between runs.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Local, Utc};
use futures::StreamExt;
use futures::future::LocalBoxFuture;
use futures::stream::FuturesUnordered;
use m365_archiver::datadir::DataDir;
use m365_archiver::wiring::{self, Stores};
use profile_engine::{
    CancellationToken, Profile, ProfileStore, ProgressEvent, ProgressSink, RunHistory, RunReport,
    RunStatus,
};
use tracing::{error, info, warn};

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

/// Runs one profile to its end (or until `cancel`).
async fn run_profile(
    dir: DataDir,
    stores: Stores,
    profile: Profile,
    cancel: CancellationToken,
) -> Result<RunReport> {
    wiring::check_reserve(&dir)?;
    let engine = wiring::engine_for(&dir, &profile, &stores)?;
    let progress = LogProgress {
        profile: profile.name.clone(),
    };
    Ok(engine.engine.run(&profile, &cancel, &progress).await?)
}

/// The profiles of `dir` whose schedule is due at `now`, and the earliest future slot.
fn due_profiles(
    dir: &DataDir,
    now: DateTime<Utc>,
    attempts: &HashMap<String, DateTime<Utc>>,
    running: &HashMap<String, ()>,
    broken_seen: &mut HashMap<String, String>,
) -> Result<(Vec<Profile>, Option<DateTime<Utc>>)> {
    let store = ProfileStore::new(dir.profiles());
    let history = RunHistory::new(wiring::history_dir(dir));
    let mut due = Vec::new();
    let mut next: Option<DateTime<Utc>> = None;
    for name in store.names()? {
        let profile = match store.load(&name) {
            Ok(p) => {
                broken_seen.remove(&name);
                p
            }
            Err(e) => {
                let text = e.to_string();
                if broken_seen.get(&name) != Some(&text) {
                    error!(profile = %name, "profile skipped: {text}");
                    broken_seen.insert(name.clone(), text);
                }
                continue;
            }
        };
        if profile.run.schedule.is_manual() || running.contains_key(&name) {
            continue;
        }
        let from_history = match history.last(&name) {
            Ok(last) => last.map(|entry| entry.started_at),
            Err(e) => {
                warn!(profile = %name, "run history unreadable ({e}); treating the profile as never run");
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
            Some(when) if when <= now => due.push(profile),
            Some(when) => next = Some(next.map_or(when, |n| n.min(when))),
            None => {}
        }
    }
    Ok((due, next))
}

/// Runs due profiles until `stop` is cancelled (or, with `once`, until the due ones finished).
pub async fn serve(dir: DataDir, once: bool, stop: CancellationToken) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut attempts: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut running: HashMap<String, ()> = HashMap::new();
    let mut broken_seen = HashMap::new();
    // Runs are polled here rather than spawned: the engine's run future borrows across
    // its mailbox pipeline in a way the compiler cannot prove `Send` for `tokio::spawn`.
    let mut tasks: FuturesUnordered<LocalBoxFuture<'static, (String, Result<RunReport>)>> =
        FuturesUnordered::new();
    let mut stores: Option<Stores> = None;
    info!(data_dir = %dir.root().display(), once, "m365-archiverd started");
    loop {
        let now = Utc::now();
        let mut next_wake = now + chrono::Duration::from_std(IDLE_POLL).unwrap_or_default();
        if !stop.is_cancelled() {
            let (due, next) = due_profiles(&dir, now, &attempts, &running, &mut broken_seen)?;
            if let Some(next) = next {
                next_wake = next_wake.min(next);
            }
            for profile in due {
                let shared = match &stores {
                    Some(s) => s.clone(),
                    None => match Stores::open(&dir) {
                        Ok(s) => {
                            stores = Some(s.clone());
                            s
                        }
                        Err(e) => {
                            error!(profile = %profile.name, "cannot open the stores: {e:#}");
                            attempts.insert(profile.name.clone(), now);
                            outcome.failed += 1;
                            continue;
                        }
                    },
                };
                info!(profile = %profile.name, schedule = %profile.run.schedule, "run started");
                attempts.insert(profile.name.clone(), now);
                running.insert(profile.name.clone(), ());
                let name = profile.name.clone();
                let cancel = stop.child_token();
                let dir = dir.clone();
                tasks.push(Box::pin(async move {
                    (name, run_profile(dir, shared, profile, cancel).await)
                }));
            }
        }
        if tasks.is_empty() {
            stores = None;
            if once || stop.is_cancelled() {
                break;
            }
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
                        error!(profile = %name, "run failed: {e:#}");
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
