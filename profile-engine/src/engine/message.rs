//! One message through the pipeline: recognise it in the archive, fetch it,
//! archive it, and delete it when its deletion is due and the copy is verified.

use std::sync::atomic::Ordering;

use archive_store::{ArchiveError, ArchiveRequest, RawMessage, SourceRef, SourceState};
use chrono::{DateTime, Utc};
use m365_mailbox::{Folder, MailboxError, MessageSummary, MimeContent};

use super::mailbox::MailboxCtx;
use super::spawn_blocking;
use crate::error::{MessageFailure, NotDeleted};

/// A message the pipeline is to handle.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub(super) id: String,
    pub(super) received: Option<DateTime<Utc>>,
    pub(super) is_read: bool,
    /// Its subject, when known (for the report of a failure).
    pub(super) subject: Option<String>,
    /// Came from the waiting list (re-insert on failure).
    pub(super) from_waiting: bool,
}

impl Candidate {
    pub(super) fn from_summary(s: &MessageSummary) -> Self {
        Self {
            id: s.id.clone(),
            received: s.received,
            is_read: s.is_read,
            subject: s.subject.clone(),
            from_waiting: false,
        }
    }
}

/// What happened to one message.
#[derive(Debug)]
pub(super) struct MessageOutcome {
    pub(super) candidate: Candidate,
    pub(super) result: Result<Handled, MessageFailure>,
}

#[derive(Debug, Default)]
pub(super) struct Handled {
    /// Newly recorded in the archive.
    pub(super) new_entry: bool,
    /// Bytes downloaded and archived.
    pub(super) bytes: u64,
    /// Deleted from the mailbox.
    pub(super) deleted: bool,
    /// Why a due deletion did not happen.
    pub(super) delete_error: Option<NotDeleted>,
    /// Archived, deletion not due yet: remember it.
    pub(super) wait_for_deletion: bool,
    /// The message left the mailbox before it could be fetched: nothing to do.
    pub(super) gone: bool,
    /// Its archived copy was expunged (retention, erasure): not archived again,
    /// not deleted.
    pub(super) forgotten: bool,
}

impl Handled {
    fn forgotten() -> Self {
        Handled {
            forgotten: true,
            ..Handled::default()
        }
    }
}

impl MailboxCtx<'_> {
    /// One message through the pipeline: recognise, fetch, archive, maybe delete.
    pub(super) async fn handle(&self, folder: &Folder, candidate: Candidate) -> MessageOutcome {
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
        let state = spawn_blocking(move || archive.source_state(&lookup_user, &lookup))
            .await?
            .map_err(MessageFailure::Lookup)?;
        let existing = match state {
            SourceState::Archived(id) => Some(id),
            SourceState::Unknown => None,
            // Expunged from the archive by its rules: taking it back would undo
            // them, and deleting it at the source would rest on a copy that is gone.
            SourceState::Forgotten(_) => return Ok(Handled::forgotten()),
        };
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
                Some(id) => Ok((id, false, false)),
                None => {
                    let raw = match &content {
                        MimeContent::Memory(bytes) => RawMessage::Bytes(bytes),
                        MimeContent::Spooled(path) => RawMessage::File(path),
                    };
                    archive
                        .archive(&request, raw)
                        .map(|o| (o.id, o.new_entry, o.forgotten))
                }
            };
            (result, content, size)
        })
        .await?;
        let bytes = size;
        let (id, new_entry, forgotten) = stored.map_err(|error| {
            if storage_failed(&error) {
                self.halt.halt(storage_halt_reason(&error, size));
            }
            MessageFailure::Archive(error)
        })?;
        if forgotten {
            // The same content under a new id (a copy made in the mailbox).
            return Ok(Handled::forgotten());
        }
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

fn content_size(content: &MimeContent) -> u64 {
    match content {
        MimeContent::Memory(bytes) => bytes.len() as u64,
        MimeContent::Spooled(path) => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
    }
}
