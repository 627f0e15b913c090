//! The restore job: the selection read from the archive, one target folder per original
//! folder, what each already holds, and the messages written a few at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use archive_store::{ArchiveEntry, ArchiveStore, DiskArchiveStore, MessageId, Scope, SearchQuery};
use chrono::NaiveDate;
use futures::StreamExt as _;
use m365_mailbox::paths::{join_path, split_path};
use m365_mailbox::{FolderRestoreState, MailboxError, MailboxWriter, RestoreKey, SourceLimits};
use serde::Serialize;
use tracing::Instrument as _;

use crate::RestoreError;
use crate::convert::{message_id_of, to_new_message};

/// Most search hits a restore by query takes.
const QUERY_LIMIT: usize = 1_000_000;

/// Which messages of the user's archive to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These archive ids (every folder of the archive holding each).
    Ids(Vec<MessageId>),
    /// The hits of this full-text search.
    Query(String),
    /// This folder and its subfolders.
    Folder(String),
}

/// What to restore, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    /// The archive owner.
    pub user: String,
    /// Which of their messages.
    pub selection: Selection,
    /// The mailbox to write into (an address).
    pub to_mailbox: String,
    /// The folder path (display names joined by `/`) under which the original folder
    /// paths are recreated; `None`: `Restored/<date>`.
    pub to_folder: Option<String>,
    /// Post the archived MIME itself (lands as a draft) instead of a JSON create.
    pub exact_mime: bool,
    /// The day naming the default target folder (the caller's today).
    pub date: NaiveDate,
}

/// How the job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Messages written at once (Graph serves four requests per mailbox at a time).
    pub concurrency: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self {
            concurrency: SourceLimits::GRAPH.requests_per_mailbox,
        }
    }
}

/// One message that could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreFailure {
    /// The archive id.
    pub id: String,
    /// Its folder in the archive.
    pub folder: String,
    /// Why.
    pub error: String,
}

/// What a restore did (`archive restore --json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// Messages written by this run.
    pub restored: u64,
    /// Messages the target held complete already (from an earlier run).
    pub skipped_existing: u64,
    /// Messages that could not be restored (see `failures`).
    pub failed: u64,
    /// Archived bytes of the messages restored.
    pub bytes: u64,
    /// The target mailbox.
    pub to_mailbox: String,
    /// The target folder path the original folders were recreated under.
    pub to_folder: String,
    /// Each failed message, with the reason.
    pub failures: Vec<RestoreFailure>,
}

/// Progress of a restore, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreEvent {
    /// The selection is known.
    Started {
        /// Messages selected.
        messages: u64,
        /// Their archived bytes.
        bytes: u64,
    },
    /// A target folder is ready (created or found) and its messages follow.
    FolderStarted {
        /// The folder in the archive.
        folder: String,
        /// Its path in the target mailbox.
        target: String,
        /// Messages to restore into it.
        messages: u64,
    },
    /// A message was written.
    Restored {
        /// The archive id.
        id: MessageId,
        /// Its archived bytes.
        bytes: u64,
    },
    /// A message was there already (complete).
    Skipped {
        /// The archive id.
        id: MessageId,
    },
    /// A message could not be restored.
    Failed {
        /// The archive id.
        id: MessageId,
        /// Why.
        error: String,
    },
}

/// What happened to one message.
enum Outcome {
    Restored(u64),
    Skipped,
    Failed(String),
}

/// The folder path the originals are recreated under: `to_folder`, else
/// `Restored/<date>`. An empty path or an empty segment is refused.
pub fn target_root(request: &RestoreRequest) -> Result<Vec<String>, RestoreError> {
    match &request.to_folder {
        None => Ok(vec![
            "Restored".to_string(),
            request.date.format("%Y-%m-%d").to_string(),
        ]),
        Some(path) => {
            let segments = split_path(path.trim_matches('/'));
            if segments.iter().any(|s| s.trim().is_empty()) {
                return Err(RestoreError::InvalidRequest {
                    field: "to_folder",
                    detail: format!(
                        "`{path}` has an empty folder name; give display names joined by `/`"
                    ),
                });
            }
            Ok(segments)
        }
    }
}

fn in_folder(entry_folder: &str, wanted: &str) -> bool {
    let wanted = wanted.trim_matches('/');
    wanted.is_empty()
        || entry_folder == wanted
        || entry_folder
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The entries of `user`'s archive that `selection` names. Ids outside the archive are
/// [`RestoreError::UnknownIds`]; a folder it does not have is
/// [`RestoreError::UnknownFolder`].
pub fn select(
    store: &DiskArchiveStore,
    user: &str,
    selection: &Selection,
) -> Result<Vec<ArchiveEntry>, RestoreError> {
    let entries = store.list(user, None)?;
    match selection {
        Selection::Ids(ids) => {
            if ids.is_empty() {
                return Err(RestoreError::InvalidRequest {
                    field: "ids",
                    detail: "no message id given".into(),
                });
            }
            let wanted: BTreeSet<MessageId> = ids
                .iter()
                .map(|id| MessageId(id.0.trim().to_ascii_lowercase()))
                .collect();
            let found: BTreeSet<&MessageId> = entries.iter().map(|e| &e.id).collect();
            let unknown: Vec<String> = wanted
                .iter()
                .filter(|id| !found.contains(id))
                .map(|id| id.0.clone())
                .collect();
            if !unknown.is_empty() {
                return Err(RestoreError::UnknownIds {
                    user: user.to_string(),
                    ids: unknown,
                });
            }
            Ok(entries
                .into_iter()
                .filter(|e| wanted.contains(&e.id))
                .collect())
        }
        Selection::Query(text) => {
            let hits = store.search(
                &SearchQuery {
                    text: text.clone(),
                    user: Some(user.to_string()),
                    from_date: None,
                    to_date: None,
                    limit: QUERY_LIMIT,
                },
                &Scope::User(user.to_string()),
            )?;
            let ids: BTreeSet<MessageId> = hits.into_iter().map(|h| h.id).collect();
            Ok(entries
                .into_iter()
                .filter(|e| ids.contains(&e.id))
                .collect())
        }
        Selection::Folder(folder) => {
            let selected: Vec<ArchiveEntry> = entries
                .into_iter()
                .filter(|e| in_folder(&e.folder, folder))
                .collect();
            if selected.is_empty() {
                let known = store.folders(user)?;
                if !known.iter().any(|f| in_folder(f, folder)) {
                    return Err(RestoreError::UnknownFolder {
                        user: user.to_string(),
                        folder: folder.clone(),
                        known: known.into_iter().take(20).collect(),
                    });
                }
            }
            Ok(selected)
        }
    }
}

/// Shared by the messages of one job.
struct Job<'a> {
    store: Arc<DiskArchiveStore>,
    writer: &'a dyn MailboxWriter,
    request: &'a RestoreRequest,
    progress: &'a (dyn Fn(&RestoreEvent) + Send + Sync),
}

/// Restores `request` from `store` through `writer`, reporting progress to `progress`.
/// See the crate docs for what is written where and how reruns behave.
pub async fn restore(
    store: Arc<DiskArchiveStore>,
    writer: &dyn MailboxWriter,
    request: &RestoreRequest,
    options: RestoreOptions,
    progress: &(dyn Fn(&RestoreEvent) + Send + Sync),
) -> Result<RestoreReport, RestoreError> {
    let mailbox = request.to_mailbox.trim();
    if mailbox.is_empty() {
        return Err(RestoreError::InvalidRequest {
            field: "to_mailbox",
            detail: "no target mailbox given".into(),
        });
    }
    let root = target_root(request)?;
    let span = tracing::info_span!("restore", user = %request.user, mailbox = %mailbox);
    async {
        let entries = {
            let store = store.clone();
            let user = request.user.clone();
            let selection = request.selection.clone();
            tokio::task::spawn_blocking(move || select(&store, &user, &selection))
                .await
                .map_err(|e| RestoreError::Task {
                    detail: e.to_string(),
                })??
        };
        let mut by_folder: BTreeMap<String, Vec<ArchiveEntry>> = BTreeMap::new();
        for entry in entries {
            by_folder
                .entry(entry.folder.clone())
                .or_default()
                .push(entry);
        }
        let total: u64 = by_folder.values().map(|v| v.len() as u64).sum();
        let total_bytes: u64 = by_folder.values().flatten().map(|e| e.size).sum();
        progress(&RestoreEvent::Started {
            messages: total,
            bytes: total_bytes,
        });
        tracing::info!(messages = total, bytes = total_bytes, "restore started");
        let mut report = RestoreReport {
            to_mailbox: mailbox.to_string(),
            to_folder: join_path(&root),
            ..RestoreReport::default()
        };
        let job = Job {
            store,
            writer,
            request,
            progress,
        };
        for (folder, entries) in &by_folder {
            let mut path = root.clone();
            if !folder.is_empty() {
                path.extend(split_path(folder));
            }
            let span = tracing::info_span!("folder", folder = %folder, target = %join_path(&path));
            job.restore_folder(mailbox, folder, &path, entries, options, &mut report)
                .instrument(span)
                .await?;
        }
        tracing::info!(
            restored = report.restored,
            skipped = report.skipped_existing,
            failed = report.failed,
            "restore finished"
        );
        Ok::<_, RestoreError>(report)
    }
    .instrument(span)
    .await
}

impl Job<'_> {
    fn stop(&self, mailbox: &str, source: MailboxError) -> RestoreError {
        RestoreError::Mailbox {
            mailbox: mailbox.to_string(),
            source: Box::new(source),
        }
    }

    async fn restore_folder(
        &self,
        mailbox: &str,
        folder: &str,
        path: &[String],
        entries: &[ArchiveEntry],
        options: RestoreOptions,
        report: &mut RestoreReport,
    ) -> Result<(), RestoreError> {
        let folder_id = self
            .writer
            .ensure_folder(mailbox, path)
            .await
            .map_err(|e| self.stop(mailbox, e))?;
        let state = self
            .writer
            .restored_in(mailbox, &folder_id)
            .await
            .map_err(|e| self.stop(mailbox, e))?;
        (self.progress)(&RestoreEvent::FolderStarted {
            folder: folder.to_string(),
            target: join_path(path),
            messages: entries.len() as u64,
        });
        let mut outcomes = futures::stream::iter(entries)
            .map(|entry| {
                let (folder_id, state) = (&folder_id, &state);
                async move {
                    (
                        entry,
                        self.restore_one(mailbox, folder_id, state, entry).await,
                    )
                }
            })
            .buffer_unordered(options.concurrency.max(1));
        while let Some((entry, outcome)) = outcomes.next().await {
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) if e.is_mailbox_wide() => return Err(self.stop(mailbox, e)),
                Err(e) => Outcome::Failed(e.to_string()),
            };
            let id = entry.id.clone();
            match outcome {
                Outcome::Restored(bytes) => {
                    report.restored += 1;
                    report.bytes += bytes;
                    (self.progress)(&RestoreEvent::Restored { id, bytes });
                }
                Outcome::Skipped => {
                    report.skipped_existing += 1;
                    (self.progress)(&RestoreEvent::Skipped { id });
                }
                Outcome::Failed(error) => {
                    tracing::warn!(id = %id, error = %error, "message not restored");
                    report.failed += 1;
                    report.failures.push(RestoreFailure {
                        id: id.0.clone(),
                        folder: entry.folder.clone(),
                        error: error.clone(),
                    });
                    (self.progress)(&RestoreEvent::Failed { id, error });
                }
            }
        }
        Ok(())
    }

    async fn read(&self, id: &MessageId) -> Result<Vec<u8>, String> {
        let store = self.store.clone();
        let id = id.clone();
        match tokio::task::spawn_blocking(move || store.read_message(&id)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) => Err(format!("the archive failed: {e}")),
            Err(e) => Err(format!("reading the message failed: {e}")),
        }
    }

    /// Restores one message into `folder_id`; `Err` only for a mailbox error (the caller
    /// decides whether it stops the job).
    async fn restore_one(
        &self,
        mailbox: &str,
        folder_id: &str,
        state: &FolderRestoreState,
        entry: &ArchiveEntry,
    ) -> Result<Outcome, MailboxError> {
        let key = RestoreKey(entry.id.0.clone());
        if let Some(item) = state.marked.get(&key) {
            if item.complete {
                return Ok(Outcome::Skipped);
            }
            match self
                .writer
                .remove_incomplete(mailbox, &item.message_id)
                .await
            {
                Ok(()) | Err(MailboxError::MessageGone { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let limits = self.writer.write_limits();
        if self.request.exact_mime && entry.size > limits.max_mime_bytes {
            let refusal = RestoreError::ExactMimeTooLarge {
                id: entry.id.0.clone(),
                size: entry.size,
                limit: limits.max_mime_bytes,
                request_limit: limits.max_request_bytes,
            };
            return Ok(Outcome::Failed(refusal.to_string()));
        }
        let mime = match self.read(&entry.id).await {
            Ok(mime) => mime,
            Err(e) => return Ok(Outcome::Failed(e)),
        };
        if self.request.exact_mime {
            let adopt = message_id_of(&mime).and_then(|imid| state.unmarked.get(&imid));
            match adopt {
                Some(existing) => self.writer.mark_restored(mailbox, existing, &key).await?,
                None => {
                    self.writer
                        .create_from_mime(mailbox, folder_id, &key, &mime)
                        .await?;
                }
            }
            return Ok(Outcome::Restored(entry.size));
        }
        let message = match to_new_message(key, &mime, entry.received) {
            Ok(message) => message,
            Err(e) => return Ok(Outcome::Failed(e.to_string())),
        };
        drop(mime);
        self.writer
            .create_message(mailbox, folder_id, &message)
            .await?;
        Ok(Outcome::Restored(entry.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(to_folder: Option<&str>) -> RestoreRequest {
        RestoreRequest {
            user: "u".into(),
            selection: Selection::Folder(String::new()),
            to_mailbox: "m@x".into(),
            to_folder: to_folder.map(str::to_string),
            exact_mime: false,
            date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default(),
        }
    }

    #[test]
    fn target_roots() {
        assert_eq!(
            target_root(&request(None)).unwrap(),
            ["Restored", "2026-12-01"]
        );
        assert_eq!(
            target_root(&request(Some("Review/Case 7"))).unwrap(),
            ["Review", "Case 7"]
        );
        assert_eq!(target_root(&request(Some("a\\/b"))).unwrap(), ["a/b"]);
        for bad in ["", "a//b", "/"] {
            assert!(target_root(&request(Some(bad))).is_err(), "{bad}");
        }
    }

    #[test]
    fn folders_match_with_subfolders() {
        assert!(in_folder("Inbox/Projects", "Inbox"));
        assert!(in_folder("Inbox", ""));
        assert!(!in_folder("Inboxes", "Inbox"));
    }
}
