//! [`MemoryMailboxSource`]: an in-memory mail service behind the [`MailboxSource`] seam, for
//! the tests of the crates built on it (profile engine, binaries).
//!
//! It keeps Graph's semantics where callers depend on them: a folder tree with well-known,
//! hidden and search folders; per-folder delta rounds with opaque cursors that report
//! exactly the messages added, changed, moved in and moved out or deleted since the
//! cursor; cursors that can be expired (the next round starts with
//! [`DeltaEvent::Restarted`] and a full listing); immutable ids that survive moves;
//! deletion in the three modes (a soft delete moves to Recoverable Items, whose tree is
//! listed apart); online archives addressed by `MBX:` ids; size caps; spooling of large bodies to a temporary file;
//! and failures injected per mailbox, per operation or per message.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};

mod failures;
mod render;
mod write;

use failures::FailureRule;
pub use failures::{InjectedFailure, Operation};
pub use write::WrittenFlags;

use crate::paths;
use crate::{
    DeleteMode, DeltaCursor, DeltaEvent, Folder, MailboxError, MailboxMetrics, MailboxSource,
    MessageSummary, MimeContent, SourceLimits,
};

/// Folders every new in-memory mailbox starts with: (well-known name, display name).
pub const DEFAULT_FOLDERS: &[(&str, &str)] = &[
    ("inbox", "Inbox"),
    ("drafts", "Drafts"),
    ("sentitems", "Sent Items"),
    ("deleteditems", "Deleted Items"),
    ("junkemail", "Junk Email"),
    ("archive", "Archive"),
    ("outbox", "Outbox"),
];

#[derive(Debug, Clone)]
struct StoredMessage {
    summary: MessageSummary,
    mime: Bytes,
    changed: u64,
    /// How the writer put it there (nothing for delivered mail).
    restore: write::RestoreMark,
}

/// Write calls in flight on a mailbox, now and at most.
#[derive(Debug, Default)]
struct WriteGauge {
    in_flight: usize,
    max_in_flight: usize,
}

#[derive(Debug, Default)]
struct MemMailbox {
    address: String,
    folders: Vec<Folder>,
    messages: BTreeMap<String, StoredMessage>,
    /// (folder id, message id, change number) of messages that left a folder.
    departures: Vec<(String, String, u64)>,
    change: u64,
    epoch: u64,
    failures: Vec<FailureRule>,
    deletions: Vec<(String, DeleteMode)>,
    metrics: MailboxMetrics,
    /// Ids of the folders of the Recoverable Items tree (listed apart).
    recoverable: HashSet<String>,
    /// The id of this mailbox's online archive, when it has one.
    archive: Option<String>,
    /// Requests of the write side.
    write_metrics: MailboxMetrics,
    /// Concurrent write calls.
    writes: WriteGauge,
}

impl MemMailbox {
    fn bump(&mut self) -> u64 {
        self.change += 1;
        self.change
    }

    fn folder(&self, id: &str) -> Option<&Folder> {
        self.folders.iter().find(|f| f.id == id)
    }

    /// Whether a message lies in the Recoverable Items tree.
    fn in_recoverable(&self, m: &StoredMessage) -> bool {
        self.recoverable.contains(&m.summary.folder_id)
    }

    fn resolve_folder(&self, id_or_name: &str) -> Option<String> {
        self.folders
            .iter()
            .find(|f| {
                f.id == id_or_name
                    || f.well_known_name.as_deref() == Some(id_or_name)
                    || f.path == id_or_name
            })
            .map(|f| f.id.clone())
    }

    fn take_failure(
        &mut self,
        operation: Operation,
        message_id: Option<&str>,
    ) -> Option<MailboxError> {
        let index = self.failures.iter().position(|r| {
            (r.operation == operation || r.operation == Operation::Any)
                && match (&r.message_id, message_id) {
                    (None, _) => true,
                    (Some(want), Some(got)) => want == got,
                    (Some(_), None) => false,
                }
        })?;
        let rule = &mut self.failures[index];
        let error = rule.failure.to_error(&self.address, operation, message_id);
        if let Some(n) = rule.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.failures.remove(index);
            }
        }
        Some(error)
    }

    fn depart(&mut self, folder_id: &str, message_id: &str) {
        let change = self.bump();
        self.departures
            .push((folder_id.to_string(), message_id.to_string(), change));
    }
}

/// An in-memory [`MailboxSource`]. See the module docs.
///
/// ```
/// # tokio_test_block_on(async {
/// use futures::StreamExt;
/// use m365_mailbox::{DeltaEvent, MailboxSource, MemoryMailboxSource};
/// let source = MemoryMailboxSource::new();
/// source.add_mailbox("a@contoso.com");
/// let inbox = source.folder_id("a@contoso.com", "inbox").unwrap();
/// source.deliver("a@contoso.com", &inbox, b"Subject: hi\r\n\r\nbody".to_vec()).unwrap();
/// let events: Vec<_> = source.changes("a@contoso.com", &inbox, None).collect().await;
/// assert!(matches!(events[0], Ok(DeltaEvent::Upsert(_))));
/// assert!(matches!(events[1], Ok(DeltaEvent::Done(_))));
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MemoryMailboxSource {
    mailboxes: Mutex<HashMap<String, MemMailbox>>,
    next_id: Mutex<u64>,
    spool_threshold: Mutex<Option<u64>>,
    write_limits: Mutex<Option<crate::WriteLimits>>,
}

impl MemoryMailboxSource {
    /// An empty service.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, MemMailbox>> {
        self.mailboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn new_id(&self, prefix: &str) -> String {
        let mut n = self
            .next_id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *n += 1;
        format!("{prefix}{:08}", *n)
    }

    fn with_mailbox<T>(
        &self,
        mailbox: &str,
        f: impl FnOnce(&mut MemMailbox) -> Result<T, MailboxError>,
    ) -> Result<T, MailboxError> {
        let mut all = self.lock();
        match all.get_mut(&mailbox.to_lowercase()) {
            Some(mb) => f(mb),
            None => Err(MailboxError::UnknownUser {
                mailbox: mailbox.to_string(),
                code: "ErrorInvalidUser".into(),
            }),
        }
    }

    /// Bodies larger than this are returned spooled to a temporary file (like the Graph
    /// source does); `None` keeps every body in memory.
    pub fn set_spool_threshold(&self, threshold: Option<u64>) {
        *self
            .spool_threshold
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = threshold;
    }

    /// Adds a mailbox with the [`DEFAULT_FOLDERS`] and the Recoverable Items tree
    /// ([`crate::RECOVERABLE_FOLDERS`], hidden, under [`crate::RECOVERABLE_ITEMS_PATH`])
    /// (no-op if it exists).
    pub fn add_mailbox(&self, address: &str) {
        let key = address.to_lowercase();
        if self.lock().contains_key(&key) {
            return;
        }
        let archive = crate::is_archive_mailbox_id(address);
        let top = |name: &str, wk: Option<&str>, path: String, hidden: bool| Folder {
            id: self.new_id("F"),
            path,
            display_name: name.to_string(),
            well_known_name: wk.map(str::to_string),
            parent_id: None,
            total_items: 0,
            unread_items: 0,
            child_folders: 0,
            hidden,
            search_folder: false,
        };
        // Archive mailboxes are read by ids only: their folders carry no well-known names.
        let mut folders: Vec<Folder> = DEFAULT_FOLDERS
            .iter()
            .map(|(wk, name)| {
                let wk = (!archive).then_some(*wk);
                top(name, wk, paths::escape_segment(name), false)
            })
            .collect();
        let mut recoverable = HashSet::new();
        if !archive {
            for (wk, name) in crate::RECOVERABLE_FOLDERS {
                let path = paths::child_path(crate::RECOVERABLE_ITEMS_PATH, name);
                let folder = top(name, Some(wk), path, true);
                recoverable.insert(folder.id.clone());
                folders.push(folder);
            }
        }
        self.lock().entry(key).or_insert_with(|| MemMailbox {
            address: address.to_string(),
            folders,
            recoverable,
            ..MemMailbox::default()
        });
    }

    /// Gives `mailbox` an online archive (a mailbox of its own, with the default
    /// folders but no well-known names) and returns the archive's `MBX:` id, which
    /// [`MailboxSource::archive_mailbox`] then answers and every other call accepts.
    pub fn add_archive_mailbox(&self, mailbox: &str) -> Result<String, MailboxError> {
        let id = format!("MBX:{}@memory", self.new_id("A").to_lowercase());
        self.with_mailbox(mailbox, |mb| {
            mb.archive = Some(id.clone());
            Ok(())
        })?;
        self.add_mailbox(&id);
        Ok(id)
    }

    /// Deletes a message as another client's `DELETE` does: it moves to Recoverable
    /// Items' Deletions and keeps its id.
    pub fn soft_delete_message(&self, mailbox: &str, id: &str) -> Result<(), MailboxError> {
        self.with_mailbox(mailbox, |mb| move_in(mb, id, "recoverableitemsdeletions"))
    }

    /// Ids of the messages in the Recoverable Items tree, sorted.
    pub fn recoverable_message_ids(&self, mailbox: &str) -> Vec<String> {
        self.lock()
            .get(&mailbox.to_lowercase())
            .map(|mb| {
                mb.messages
                    .iter()
                    .filter(|(_, m)| mb.in_recoverable(m))
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Adds a folder under `parent` (a folder id, well-known name or path; `None` for the
    /// top level) and returns its id.
    pub fn add_folder(
        &self,
        mailbox: &str,
        parent: Option<&str>,
        display_name: &str,
    ) -> Result<String, MailboxError> {
        self.add_folder_with(mailbox, parent, display_name, false, false)
    }

    /// Adds a folder with the hidden and search-folder flags chosen.
    pub fn add_folder_with(
        &self,
        mailbox: &str,
        parent: Option<&str>,
        display_name: &str,
        hidden: bool,
        search_folder: bool,
    ) -> Result<String, MailboxError> {
        let id = self.new_id("F");
        self.with_mailbox(mailbox, |mb| {
            let parent_folder = match parent {
                None => None,
                Some(p) => {
                    let pid = mb
                        .resolve_folder(p)
                        .ok_or_else(|| MailboxError::FolderGone {
                            mailbox: mb.address.clone(),
                            folder_id: p.to_string(),
                        })?;
                    mb.folder(&pid).cloned()
                }
            };
            let path = paths::child_path(
                parent_folder.as_ref().map_or("", |p| p.path.as_str()),
                display_name,
            );
            let folder = Folder {
                id: id.clone(),
                path,
                display_name: display_name.to_string(),
                well_known_name: None,
                parent_id: parent_folder.as_ref().map(|p| p.id.clone()),
                total_items: 0,
                unread_items: 0,
                child_folders: 0,
                hidden,
                search_folder,
            };
            // Keep parents before children: insert after the parent's last descendant.
            match &parent_folder {
                None => mb.folders.push(folder),
                Some(p) => {
                    let prefix = format!("{}/", p.path);
                    let at = mb
                        .folders
                        .iter()
                        .rposition(|f| f.id == p.id || f.path.starts_with(&prefix))
                        .map_or(mb.folders.len(), |i| i + 1);
                    mb.folders.insert(at, folder);
                }
            }
            Ok(id.clone())
        })
    }

    /// Removes a folder and everything in it (its messages depart; later calls on it
    /// answer [`MailboxError::FolderGone`]).
    pub fn remove_folder(&self, mailbox: &str, folder: &str) -> Result<(), MailboxError> {
        self.with_mailbox(mailbox, |mb| {
            let id = mb
                .resolve_folder(folder)
                .ok_or_else(|| MailboxError::FolderGone {
                    mailbox: mb.address.clone(),
                    folder_id: folder.to_string(),
                })?;
            let path = mb.folder(&id).map(|f| f.path.clone()).unwrap_or_default();
            let prefix = format!("{path}/");
            let gone: Vec<String> = mb
                .folders
                .iter()
                .filter(|f| f.id == id || f.path.starts_with(&prefix))
                .map(|f| f.id.clone())
                .collect();
            mb.folders.retain(|f| !gone.contains(&f.id));
            let doomed: Vec<(String, String)> = mb
                .messages
                .iter()
                .filter(|(_, m)| gone.contains(&m.summary.folder_id))
                .map(|(id, m)| (id.clone(), m.summary.folder_id.clone()))
                .collect();
            for (mid, fid) in doomed {
                mb.messages.remove(&mid);
                mb.depart(&fid, &mid);
            }
            Ok(())
        })
    }

    /// The id of a folder given by id, well-known name or path.
    pub fn folder_id(&self, mailbox: &str, folder: &str) -> Option<String> {
        self.lock()
            .get(&mailbox.to_lowercase())
            .and_then(|mb| mb.resolve_folder(folder))
    }

    /// Delivers a message into a folder (id, well-known name or path); returns its id.
    /// Subject and Message-ID are read from the MIME headers.
    pub fn deliver(
        &self,
        mailbox: &str,
        folder: &str,
        mime: impl Into<Bytes>,
    ) -> Result<String, MailboxError> {
        self.deliver_at(mailbox, folder, mime, Utc::now())
    }

    /// Like [`MemoryMailboxSource::deliver`] with a chosen `receivedDateTime`.
    pub fn deliver_at(
        &self,
        mailbox: &str,
        folder: &str,
        mime: impl Into<Bytes>,
        received: DateTime<Utc>,
    ) -> Result<String, MailboxError> {
        let mime: Bytes = mime.into();
        let id = self.new_id("M");
        self.with_mailbox(mailbox, |mb| {
            let folder_id = mb
                .resolve_folder(folder)
                .ok_or_else(|| MailboxError::FolderGone {
                    mailbox: mb.address.clone(),
                    folder_id: folder.to_string(),
                })?;
            let change = mb.bump();
            let summary = MessageSummary {
                id: id.clone(),
                folder_id,
                received: Some(received),
                internet_message_id: header(&mime, "message-id"),
                is_read: false,
                flagged: false,
                size: Some(mime.len() as u64),
                subject: header(&mime, "subject"),
            };
            mb.messages.insert(
                id.clone(),
                StoredMessage {
                    summary,
                    mime,
                    changed: change,
                    restore: write::RestoreMark::default(),
                },
            );
            Ok(id.clone())
        })
    }

    /// Changes a message's read and flag state (an "updated" change in its folder's delta).
    pub fn update(
        &self,
        mailbox: &str,
        id: &str,
        is_read: bool,
        flagged: bool,
    ) -> Result<(), MailboxError> {
        self.with_mailbox(mailbox, |mb| {
            let change = mb.bump();
            let m = mb
                .messages
                .get_mut(id)
                .ok_or_else(|| MailboxError::MessageGone {
                    mailbox: mailbox.to_string(),
                    message_id: id.to_string(),
                })?;
            m.summary.is_read = is_read;
            m.summary.flagged = flagged;
            m.changed = change;
            Ok(())
        })
    }

    /// Moves a message to another folder; its (immutable) id stays the same.
    pub fn move_message(
        &self,
        mailbox: &str,
        id: &str,
        to_folder: &str,
    ) -> Result<(), MailboxError> {
        self.with_mailbox(mailbox, |mb| move_in(mb, id, to_folder))
    }

    /// Removes a message as if purged by someone else (gone for good).
    pub fn remove_message(&self, mailbox: &str, id: &str) -> Result<(), MailboxError> {
        self.with_mailbox(mailbox, |mb| {
            let m = mb
                .messages
                .remove(id)
                .ok_or_else(|| MailboxError::MessageGone {
                    mailbox: mb.address.clone(),
                    message_id: id.to_string(),
                })?;
            mb.depart(&m.summary.folder_id, id);
            Ok(())
        })
    }

    /// Makes every cursor issued so far for this mailbox stale: the next round of each
    /// folder starts with [`DeltaEvent::Restarted`] and a full listing.
    pub fn expire_cursors(&self, mailbox: &str) {
        let _ = self.with_mailbox(mailbox, |mb| {
            mb.epoch += 1;
            Ok(())
        });
    }

    /// Every call of `operation` on this mailbox fails with `failure` until cleared.
    pub fn fail(&self, mailbox: &str, operation: Operation, failure: InjectedFailure) {
        self.push_rule(mailbox, operation, None, failure, None);
    }

    /// The next `times` calls of `operation` on this mailbox fail with `failure`.
    pub fn fail_times(
        &self,
        mailbox: &str,
        operation: Operation,
        failure: InjectedFailure,
        times: u32,
    ) {
        self.push_rule(mailbox, operation, None, failure, Some(times.max(1)));
    }

    /// Fetching or deleting this message fails with `failure` until cleared; on the write
    /// side `message_id` may also be an archive id (a restore key): its writes fail.
    pub fn fail_message(&self, mailbox: &str, message_id: &str, failure: InjectedFailure) {
        self.push_rule(
            mailbox,
            Operation::Any,
            Some(message_id.to_string()),
            failure,
            None,
        );
    }

    /// Removes every injected failure of this mailbox.
    pub fn clear_failures(&self, mailbox: &str) {
        let _ = self.with_mailbox(mailbox, |mb| {
            mb.failures.clear();
            Ok(())
        });
    }

    fn push_rule(
        &self,
        mailbox: &str,
        operation: Operation,
        message_id: Option<String>,
        failure: InjectedFailure,
        remaining: Option<u32>,
    ) {
        // Failures may be injected for addresses without a mailbox (e.g. NoMailbox).
        self.add_mailbox_if_missing(mailbox);
        let _ = self.with_mailbox(mailbox, |mb| {
            mb.failures.push(FailureRule {
                operation,
                message_id,
                failure,
                remaining,
            });
            Ok(())
        });
    }

    fn add_mailbox_if_missing(&self, address: &str) {
        let key = address.to_lowercase();
        let mut all = self.lock();
        all.entry(key).or_insert_with(|| MemMailbox {
            address: address.to_string(),
            ..MemMailbox::default()
        });
    }

    /// Ids of the messages of a mailbox (all folders except search folders and the
    /// Recoverable Items tree), sorted.
    pub fn message_ids(&self, mailbox: &str) -> Vec<String> {
        self.lock()
            .get(&mailbox.to_lowercase())
            .map(|mb| {
                mb.messages
                    .iter()
                    .filter(|(_, m)| !mb.in_recoverable(m))
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Summary of a message as it is now.
    pub fn message(&self, mailbox: &str, id: &str) -> Option<MessageSummary> {
        self.lock()
            .get(&mailbox.to_lowercase())
            .and_then(|mb| mb.messages.get(id))
            .map(|m| m.summary.clone())
    }

    /// The MIME bytes of a message.
    pub fn mime(&self, mailbox: &str, id: &str) -> Option<Bytes> {
        self.lock()
            .get(&mailbox.to_lowercase())
            .and_then(|mb| mb.messages.get(id))
            .map(|m| m.mime.clone())
    }

    /// Deletions performed through [`MailboxSource::delete`], in order.
    pub fn deletions(&self, mailbox: &str) -> Vec<(String, DeleteMode)> {
        self.lock()
            .get(&mailbox.to_lowercase())
            .map(|mb| mb.deletions.clone())
            .unwrap_or_default()
    }

    fn count(&self, mailbox: &str) {
        if let Some(mb) = self.lock().get_mut(&mailbox.to_lowercase()) {
            mb.metrics.requests += 1;
        }
    }

    fn folder_listing(mb: &MemMailbox, recoverable: bool) -> Vec<Folder> {
        mb.folders
            .iter()
            .filter(|f| mb.recoverable.contains(&f.id) == recoverable)
            .map(|f| {
                let mut f = f.clone();
                let in_folder = mb.messages.values().filter(|m| m.summary.folder_id == f.id);
                let (total, unread) = in_folder.fold((0u64, 0u64), |(t, u), m| {
                    (t + 1, u + u64::from(!m.summary.is_read))
                });
                f.total_items = total;
                f.unread_items = unread;
                f.child_folders = mb
                    .folders
                    .iter()
                    .filter(|c| c.parent_id.as_deref() == Some(f.id.as_str()))
                    .count() as u64;
                f
            })
            .collect()
    }

    fn round(
        &self,
        mailbox: &str,
        folder_id: &str,
        cursor: Option<DeltaCursor>,
    ) -> Vec<Result<DeltaEvent, MailboxError>> {
        self.count(mailbox);
        let result = self.with_mailbox(mailbox, |mb| {
            if let Some(e) = mb.take_failure(Operation::Changes, None) {
                return Err(e);
            }
            if mb.folder(folder_id).is_none() {
                return Err(MailboxError::FolderGone {
                    mailbox: mb.address.clone(),
                    folder_id: folder_id.to_string(),
                });
            }
            let mut events = Vec::new();
            let since = match cursor.as_ref().map(|c| parse_cursor(&c.0)) {
                None => None,
                Some(Some((mbx, fid, epoch, change)))
                    if mbx == mb.address.to_lowercase()
                        && fid == folder_id
                        && epoch == mb.epoch =>
                {
                    Some(change)
                }
                Some(_) => {
                    events.push(Ok(DeltaEvent::Restarted));
                    None
                }
            };
            for m in mb.messages.values() {
                if m.summary.folder_id == folder_id && since.is_none_or(|s| m.changed > s) {
                    events.push(Ok(DeltaEvent::Upsert(m.summary.clone())));
                }
            }
            if let Some(s) = since {
                let mut seen = std::collections::HashSet::new();
                for (fid, mid, change) in &mb.departures {
                    let still_here = mb
                        .messages
                        .get(mid)
                        .is_some_and(|m| m.summary.folder_id == folder_id);
                    if fid == folder_id && *change > s && !still_here && seen.insert(mid.clone()) {
                        events.push(Ok(DeltaEvent::Removed { id: mid.clone() }));
                    }
                }
            }
            let cursor = format!(
                "memory:{}:{}:{}:{}",
                mb.address.to_lowercase(),
                folder_id,
                mb.epoch,
                mb.change
            );
            events.push(Ok(DeltaEvent::Done(DeltaCursor(cursor))));
            Ok(events)
        });
        match result {
            Ok(events) => events,
            Err(e) => vec![Err(e)],
        }
    }
}

fn move_in(mb: &mut MemMailbox, id: &str, to_folder: &str) -> Result<(), MailboxError> {
    let to = mb
        .resolve_folder(to_folder)
        .ok_or_else(|| MailboxError::FolderGone {
            mailbox: mb.address.clone(),
            folder_id: to_folder.to_string(),
        })?;
    let from = mb
        .messages
        .get(id)
        .map(|m| m.summary.folder_id.clone())
        .ok_or_else(|| MailboxError::MessageGone {
            mailbox: mb.address.clone(),
            message_id: id.to_string(),
        })?;
    if from == to {
        return Ok(());
    }
    mb.depart(&from, id);
    let change = mb.bump();
    if let Some(m) = mb.messages.get_mut(id) {
        m.summary.folder_id = to;
        m.changed = change;
    }
    Ok(())
}

/// `memory:{mailbox}:{folder}:{epoch}:{change}`; the mailbox may contain `:` no more
/// than an address does (never), the folder id never does.
fn parse_cursor(cursor: &str) -> Option<(String, String, u64, u64)> {
    let rest = cursor.strip_prefix("memory:")?;
    let mut parts = rest.rsplitn(4, ':');
    let change = parts.next()?.parse().ok()?;
    let epoch = parts.next()?.parse().ok()?;
    let folder = parts.next()?.to_string();
    let mailbox = parts.next()?.to_string();
    Some((mailbox, folder, epoch, change))
}

/// The first value of a header in the header block of `mime` (unfolded, trimmed).
pub(crate) fn header(mime: &[u8], name: &str) -> Option<String> {
    let end = mime
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| mime.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(mime.len());
    let head = String::from_utf8_lossy(&mime[..end]);
    let mut value: Option<String> = None;
    for line in head.lines() {
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_string());
        }
    }
    value
}

#[async_trait]
impl MailboxSource for MemoryMailboxSource {
    fn limits(&self) -> SourceLimits {
        SourceLimits::GRAPH
    }

    async fn probe(&self, mailbox: &str) -> Result<(), MailboxError> {
        self.count(mailbox);
        self.with_mailbox(mailbox, |mb| {
            match mb.take_failure(Operation::Probe, None) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
    }

    async fn folders(&self, mailbox: &str) -> Result<Vec<Folder>, MailboxError> {
        self.count(mailbox);
        self.with_mailbox(mailbox, |mb| {
            match mb.take_failure(Operation::Folders, None) {
                Some(e) => Err(e),
                None => Ok(Self::folder_listing(mb, false)),
            }
        })
    }

    async fn recoverable_folders(&self, mailbox: &str) -> Result<Vec<Folder>, MailboxError> {
        self.count(mailbox);
        self.with_mailbox(mailbox, |mb| {
            match mb.take_failure(Operation::RecoverableFolders, None) {
                Some(e) => Err(e),
                None => Ok(Self::folder_listing(mb, true)),
            }
        })
    }

    async fn archive_mailbox(&self, mailbox: &str) -> Result<Option<String>, MailboxError> {
        self.count(mailbox);
        self.with_mailbox(mailbox, |mb| {
            match mb.take_failure(Operation::ArchiveMailbox, None) {
                Some(e) => Err(e),
                None => Ok(mb.archive.clone()),
            }
        })
    }

    fn changes(
        &self,
        mailbox: &str,
        folder_id: &str,
        cursor: Option<DeltaCursor>,
    ) -> BoxStream<'static, Result<DeltaEvent, MailboxError>> {
        // Computed when called; the stream replays the round.
        let events = self.round(mailbox, folder_id, cursor);
        stream::iter(events).boxed()
    }

    async fn fetch_mime(
        &self,
        mailbox: &str,
        message_id: &str,
        max_bytes: u64,
    ) -> Result<MimeContent, MailboxError> {
        self.count(mailbox);
        let mime = self.with_mailbox(mailbox, |mb| {
            if let Some(e) = mb.take_failure(Operation::FetchMime, Some(message_id)) {
                return Err(e);
            }
            let m = mb
                .messages
                .get(message_id)
                .ok_or_else(|| MailboxError::MessageGone {
                    mailbox: mb.address.clone(),
                    message_id: message_id.to_string(),
                })?;
            let size = m.mime.len() as u64;
            if size > max_bytes {
                return Err(MailboxError::TooLarge {
                    mailbox: mb.address.clone(),
                    message_id: message_id.to_string(),
                    size,
                    limit: max_bytes,
                });
            }
            mb.metrics.bytes += size;
            Ok(m.mime.clone())
        })?;
        let threshold = *self
            .spool_threshold
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match threshold {
            Some(t) if mime.len() as u64 > t => {
                let io = |source| MailboxError::Io {
                    mailbox: mailbox.to_string(),
                    doing: format!("spooling message {message_id}"),
                    source,
                };
                let mut file = tempfile::NamedTempFile::new().map_err(io)?;
                std::io::Write::write_all(&mut file, &mime).map_err(io)?;
                Ok(MimeContent::Spooled(file.into_temp_path()))
            }
            _ => Ok(MimeContent::Memory(mime)),
        }
    }

    async fn delete(
        &self,
        mailbox: &str,
        message_id: &str,
        mode: DeleteMode,
    ) -> Result<(), MailboxError> {
        self.count(mailbox);
        self.with_mailbox(mailbox, |mb| {
            if let Some(e) = mb.take_failure(Operation::Delete, Some(message_id)) {
                return Err(e);
            }
            match mode {
                DeleteMode::MoveToDeletedItems => move_in(mb, message_id, "deleteditems")?,
                // Like Graph: to Recoverable Items, same id (where the mailbox has them).
                DeleteMode::SoftDelete if !mb.recoverable.is_empty() => {
                    move_in(mb, message_id, "recoverableitemsdeletions")?
                }
                DeleteMode::SoftDelete | DeleteMode::HardDelete => {
                    let m = mb.messages.remove(message_id).ok_or_else(|| {
                        MailboxError::MessageGone {
                            mailbox: mb.address.clone(),
                            message_id: message_id.to_string(),
                        }
                    })?;
                    mb.depart(&m.summary.folder_id, message_id);
                }
            }
            mb.deletions.push((message_id.to_string(), mode));
            Ok(())
        })
    }

    fn metrics(&self, mailbox: &str) -> MailboxMetrics {
        self.lock()
            .get(&mailbox.to_lowercase())
            .map(|mb| mb.metrics.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
