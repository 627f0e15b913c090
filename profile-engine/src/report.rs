//! Run and test reports (the fixed `profile run --json` shape) and the run
//! history, one fsynced JSON line per run and profile.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::fsutil;
use crate::profile::valid_name;

/// Outcome of a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every selected mailbox was archived (or skipped for a stated reason).
    Ok,
    /// Some mailboxes or messages failed; the others were archived.
    Partial,
    /// Nothing could be archived.
    Failed,
    /// Stopped on request; checkpoints saved, the next run resumes.
    Cancelled,
}

/// Outcome of one mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxStatus {
    /// Archived completely.
    Ok,
    /// Archived, but some messages or folders failed (see `error`).
    Partial,
    /// Not archived (see `error`): access denied, retries exhausted, ...
    Failed,
    /// Not archived for a stated reason, e.g. the user has no mailbox.
    Skipped,
    /// Stopped on request.
    Cancelled,
}

/// Counters of one mailbox, as `profile run --json` prints them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxReport {
    /// Mailbox address (or the unknown name from `only`).
    pub mailbox: String,
    /// Outcome.
    pub status: MailboxStatus,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Folders processed.
    pub folders: u64,
    /// Messages newly recorded in the archive.
    pub messages_archived: u64,
    /// Messages already in the archive (by source or content).
    pub messages_duplicate: u64,
    /// Messages that could not be archived (retried next run).
    pub messages_failed: u64,
    /// Messages whose archived copy was expunged (by retention or erasure): not
    /// archived again, and never deleted from the mailbox on the strength of it.
    #[serde(default)]
    pub messages_forgotten: u64,
    /// Bytes downloaded and archived.
    pub bytes: u64,
    /// Messages deleted from the mailbox after verified archiving.
    pub deleted: u64,
    /// The ids of the messages deleted from the mailbox in this run, for the audit
    /// log (not part of the JSON report, whose shape scripts rely on).
    #[serde(skip)]
    pub deleted_ids: Vec<String>,
    /// The messages that failed, each by id, subject and folder (at most
    /// [`MAX_LISTED_FAILURES`]; `messages_failed` counts them all), and the items the
    /// service cannot render that earlier runs gave up on.
    #[serde(default)]
    pub failures: Vec<ItemFailure>,
    /// The legal holds that kept deletion rules from applying in this mailbox (its
    /// archive's owner is under hold; `[deletion] despite_holds` was not set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deletion_held: Vec<String>,
}

/// Most failures listed per mailbox in a report.
pub const MAX_LISTED_FAILURES: usize = 1000;

/// Why one message is not in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The mail service cannot render the item as MIME; retried by the next runs a
    /// bounded number of times.
    Unconvertible,
    /// Larger than the size cap; not retried.
    TooLarge,
    /// The download failed (retried next run).
    Download,
    /// The archive could not take it (retried next run).
    Archive,
    /// Anything else (retried next run).
    Other,
}

/// One message that could not be archived, as the run report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemFailure {
    /// The message id in its mailbox.
    pub id: String,
    /// Its subject, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The archive folder it was to go to (e.g. `Inbox`, `Online Archive/Inbox`).
    pub folder: String,
    /// What went wrong.
    pub reason: String,
    /// The kind of failure.
    pub kind: FailureKind,
    /// Runs that tried it so far (items the service cannot render).
    #[serde(default)]
    pub attempts: u32,
    /// No run tries it again (the attempts ran out, or retrying cannot help).
    #[serde(default)]
    pub given_up: bool,
}

impl MailboxReport {
    pub(crate) fn new(mailbox: &str, status: MailboxStatus) -> Self {
        Self {
            mailbox: mailbox.to_owned(),
            status,
            error: None,
            folders: 0,
            messages_archived: 0,
            messages_duplicate: 0,
            messages_failed: 0,
            messages_forgotten: 0,
            bytes: 0,
            deleted: 0,
            deleted_ids: Vec::new(),
            failures: Vec::new(),
            deletion_held: Vec::new(),
        }
    }

    /// Adds the counters and failures of part of this mailbox (a folder's round).
    pub(crate) fn absorb(&mut self, part: MailboxReport) {
        self.messages_archived += part.messages_archived;
        self.messages_duplicate += part.messages_duplicate;
        self.messages_failed += part.messages_failed;
        self.messages_forgotten += part.messages_forgotten;
        self.bytes += part.bytes;
        self.deleted += part.deleted;
        self.deleted_ids.extend(part.deleted_ids);
        self.list_failures(part.failures);
    }

    /// Lists failures, up to [`MAX_LISTED_FAILURES`].
    pub(crate) fn list_failures(&mut self, failures: impl IntoIterator<Item = ItemFailure>) {
        let room = MAX_LISTED_FAILURES.saturating_sub(self.failures.len());
        self.failures.extend(failures.into_iter().take(room));
    }
}

/// Sums over all mailboxes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTotals {
    /// Mailboxes in the report.
    pub mailboxes: u64,
    /// Mailboxes that failed.
    pub mailboxes_failed: u64,
    /// Mailboxes skipped.
    pub mailboxes_skipped: u64,
    /// Folders processed.
    pub folders: u64,
    /// Messages newly archived.
    pub messages_archived: u64,
    /// Messages already archived.
    pub messages_duplicate: u64,
    /// Messages that failed.
    pub messages_failed: u64,
    /// Messages expunged from the archive before: neither archived again nor deleted.
    #[serde(default)]
    pub messages_forgotten: u64,
    /// Bytes archived.
    pub bytes: u64,
    /// Messages deleted.
    pub deleted: u64,
}

/// The report of one run (`profile run --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Profile name.
    pub profile: String,
    /// Outcome.
    pub status: RunStatus,
    /// Per mailbox, sorted by address.
    pub mailboxes: Vec<MailboxReport>,
    /// Sums.
    pub totals: RunTotals,
    /// Graph requests sent (retries included).
    pub requests: u64,
    /// Requests answered 429.
    pub throttled: u64,
    /// Requests repeated.
    pub retries: u64,
    /// Wall-clock duration.
    pub duration_secs: f64,
    /// Why the whole run stopped early (the archive's disk is full, ...), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What went wrong after the mail was safe (e.g. the run history could not be written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl RunReport {
    /// Builds totals and the overall status from the mailbox reports.
    pub(crate) fn finish(&mut self, cancelled: bool) {
        let mut totals = RunTotals::default();
        for m in &self.mailboxes {
            totals.mailboxes += 1;
            totals.mailboxes_failed += u64::from(m.status == MailboxStatus::Failed);
            totals.mailboxes_skipped += u64::from(m.status == MailboxStatus::Skipped);
            totals.folders += m.folders;
            totals.messages_archived += m.messages_archived;
            totals.messages_duplicate += m.messages_duplicate;
            totals.messages_failed += m.messages_failed;
            totals.messages_forgotten += m.messages_forgotten;
            totals.bytes += m.bytes;
            totals.deleted += m.deleted;
        }
        let troubled = self
            .mailboxes
            .iter()
            .filter(|m| matches!(m.status, MailboxStatus::Failed | MailboxStatus::Partial))
            .count();
        let worked = self
            .mailboxes
            .iter()
            .filter(|m| matches!(m.status, MailboxStatus::Ok | MailboxStatus::Partial))
            .count();
        self.status = if cancelled {
            RunStatus::Cancelled
        } else if troubled == 0 {
            RunStatus::Ok
        } else if worked == 0 {
            RunStatus::Failed
        } else {
            RunStatus::Partial
        };
        self.totals = totals;
    }
}

/// Whether one selected mailbox can be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxProbe {
    /// Mailbox address (or the unknown name from `only`).
    pub mailbox: String,
    /// Archive owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Readable.
    pub readable: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The report of [`crate::Engine::test`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReport {
    /// Profile name.
    pub profile: String,
    /// Every selected mailbox is readable.
    pub ok: bool,
    /// Per mailbox.
    pub mailboxes: Vec<MailboxProbe>,
}

/// One run in the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Its report.
    pub report: RunReport,
}

/// Persisted run reports: `DIR/PROFILE.jsonl`, one fsynced line per run.
#[derive(Debug, Clone)]
pub struct RunHistory {
    dir: PathBuf,
}

impl RunHistory {
    /// A history over `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path_of(&self, profile: &str) -> Result<PathBuf, EngineError> {
        if !valid_name(profile) {
            return Err(EngineError::InvalidName {
                name: profile.to_owned(),
            });
        }
        Ok(self.dir.join(format!("{profile}.jsonl")))
    }

    /// Appends a run durably.
    pub fn append(&self, entry: &HistoryEntry) -> Result<(), EngineError> {
        let path = self.path_of(&entry.report.profile)?;
        fsutil::ensure_dir(&self.dir)?;
        let mut line = serde_json::to_vec(entry).map_err(|e| EngineError::io(&path, e.into()))?;
        line.push(b'\n');
        let existed = path.exists();
        let mut file =
            fsutil::create_private(&path, true).map_err(|e| EngineError::io(&path, e))?;
        file.write_all(&line)
            .and_then(|()| file.sync_all())
            .map_err(|e| EngineError::io(&path, e))?;
        if !existed {
            fsutil::sync_dir(&self.dir).map_err(|e| EngineError::io(&self.dir, e))?;
        }
        Ok(())
    }

    /// Every recorded run of a profile, oldest first. A torn last line (crash while
    /// appending) is ignored.
    pub fn list(&self, profile: &str) -> Result<Vec<HistoryEntry>, EngineError> {
        let path = self.path_of(profile)?;
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(EngineError::io(&path, e)),
        };
        let mut entries = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| EngineError::io(&path, e))?;
            if let Ok(entry) = serde_json::from_str::<HistoryEntry>(&line) {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// The latest run of a profile.
    pub fn last(&self, profile: &str) -> Result<Option<HistoryEntry>, EngineError> {
        Ok(self.list(profile)?.pop())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
