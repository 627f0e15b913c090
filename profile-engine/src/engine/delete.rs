//! Deletion rules: which mode applies in a folder, when a message's deletion is
//! due, and the check that the archive holds exactly the mailbox's bytes.

use std::io::Read;

use archive_store::MessageId;
use chrono::Duration;
use m365_mailbox::{DeleteMode, Folder, MimeContent};

use super::mailbox::MailboxCtx;
use super::message::Candidate;
use super::spawn_blocking;
use crate::error::NotDeleted;

impl MailboxCtx<'_> {
    /// The deletion mode in `folder`; `None` where deletion rules never apply: in
    /// Recoverable Items and in the online archive (what an archive keeps beyond the
    /// mailbox is not the mailbox's to clean up).
    pub(super) fn delete_mode(&self, folder: &Folder) -> Option<DeleteMode> {
        if !self.deletable || super::mailbox::is_recoverable(folder) {
            return None;
        }
        let mode = self.profile.deletion.mode.delete_mode()?;
        let in_deleted_items = folder.well_known_name.as_deref() == Some("deleteditems");
        if mode == DeleteMode::MoveToDeletedItems && in_deleted_items {
            return None;
        }
        Some(mode)
    }

    /// Deletion is due now (age and read state); `None` = deletion never applies.
    pub(super) fn deletion_due(&self, folder: &Folder, c: &Candidate) -> Option<bool> {
        self.delete_mode(folder)?;
        if self.held {
            return Some(false);
        }
        let received = c.received?;
        let rules = &self.profile.deletion;
        let old = received <= self.now - Duration::days(i64::from(rules.after_days));
        let read_ok = c.is_read || !rules.keep_unread;
        Some(old && read_ok)
    }

    /// The archived copy is intact and its address is the hash of the bytes
    /// fetched from the mailbox.
    pub(super) async fn verified(
        &self,
        id: &MessageId,
        content: MimeContent,
    ) -> Result<(), NotDeleted> {
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
