//! [`MemoryMailboxSource`] as a [`MailboxWriter`]: restored messages land in the in-memory
//! mailboxes and are read back through [`crate::MailboxSource`] like delivered mail.
//!
//! What it keeps of the service's write semantics: folder paths created segment by segment
//! and reused when a sibling of the same name exists (names compare case-insensitively, as
//! Exchange's do); JSON creates that are never drafts, served as MIME rendered from what
//! was created; exact-MIME creates that land as drafts, with their restore key set in a
//! second step; restore keys with the *incomplete* mark while attachments follow the
//! create in further requests (a create whose attachments fit in one request is atomic);
//! [`WriteLimits`] (Graph's by default); injected failures per write operation, and per
//! archive id (the restore key) through
//! [`MemoryMailboxSource::fail_message`]; a count of concurrent write calls per mailbox.

use async_trait::async_trait;
use bytes::Bytes;

use super::{MemMailbox, MemoryMailboxSource, Operation, StoredMessage, render};
use crate::write::{
    FolderRestoreState, MailboxWriter, NewMessage, RestoreKey, RestoredItem, WriteLimits,
};
use crate::{MailboxError, MailboxMetrics, MessageSummary};

/// How a message came to be in a mailbox through the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFlags {
    /// It is a draft (an exact-MIME create).
    pub draft: bool,
    /// Read (`PR_MESSAGE_FLAGS` read bit).
    pub read: bool,
    /// Its restore key, if set.
    pub key: Option<RestoreKey>,
    /// The key is set and not marked incomplete.
    pub complete: bool,
}

/// Restore state of one stored message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct RestoreMark {
    pub(super) key: Option<RestoreKey>,
    pub(super) complete: bool,
    pub(super) draft: bool,
}

/// JSON bytes of a create carrying `message` whole (attachments base64 inside): a
/// conservative estimate of the request Graph would get.
fn create_request_bytes(message: &NewMessage) -> u64 {
    let text = message.body.len() as u64 + message.subject.len() as u64 + 4096;
    let attachments: u64 = message
        .attachments
        .iter()
        .map(|a| (a.bytes.len() as u64).div_ceil(3) * 4 + a.name.len() as u64 + 256)
        .sum();
    text + attachments
}

impl MemoryMailboxSource {
    /// What [`MailboxWriter::write_limits`] answers and the writer enforces (Graph's by
    /// default).
    pub fn set_write_limits(&self, limits: WriteLimits) {
        *self
            .write_limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(limits);
    }

    /// How a message was written: draft, read, restore key and completeness. `None` for
    /// an unknown message.
    pub fn written_flags(&self, mailbox: &str, id: &str) -> Option<WrittenFlags> {
        self.lock()
            .get(&mailbox.to_lowercase())
            .and_then(|mb| mb.messages.get(id))
            .map(|m| WrittenFlags {
                draft: m.restore.draft,
                read: m.summary.is_read,
                key: m.restore.key.clone(),
                complete: m.restore.key.is_some() && m.restore.complete,
            })
    }

    /// Whether a message is a draft (`None` for an unknown message).
    pub fn is_draft(&self, mailbox: &str, id: &str) -> Option<bool> {
        self.written_flags(mailbox, id).map(|f| f.draft)
    }

    /// Most write calls seen in flight at once on `mailbox`.
    pub fn max_writes_in_flight(&self, mailbox: &str) -> usize {
        self.lock()
            .get(&mailbox.to_lowercase())
            .map_or(0, |mb| mb.writes.max_in_flight)
    }

    /// Ids of the messages of one folder, sorted.
    pub fn messages_in(&self, mailbox: &str, folder_id: &str) -> Vec<String> {
        self.lock()
            .get(&mailbox.to_lowercase())
            .map(|mb| {
                mb.messages
                    .iter()
                    .filter(|(_, m)| m.summary.folder_id == folder_id)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn current_write_limits(&self) -> WriteLimits {
        self.write_limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .unwrap_or(WriteLimits::GRAPH)
    }

    /// Runs one write call: counted, checked for injected failures of `operation` (and of
    /// `subject`, an archive id or message id), with a suspension point inside so that
    /// concurrent callers overlap and [`Self::max_writes_in_flight`] sees them.
    async fn write_call<T>(
        &self,
        mailbox: &str,
        operation: Operation,
        subject: Option<&str>,
        f: impl FnOnce(&mut MemMailbox) -> Result<T, MailboxError>,
    ) -> Result<T, MailboxError> {
        self.with_mailbox(mailbox, |mb| {
            mb.write_metrics.requests += 1;
            mb.writes.in_flight += 1;
            mb.writes.max_in_flight = mb.writes.max_in_flight.max(mb.writes.in_flight);
            Ok(())
        })?;
        tokio::task::yield_now().await;
        self.with_mailbox(mailbox, |mb| {
            mb.writes.in_flight = mb.writes.in_flight.saturating_sub(1);
            if let Some(e) = mb.take_failure(operation, subject) {
                return Err(e);
            }
            f(mb)
        })
    }

    fn store_written(
        mb: &mut MemMailbox,
        id: &str,
        folder_id: &str,
        summary: MessageSummary,
        mime: Bytes,
        restore: RestoreMark,
    ) -> Result<(), MailboxError> {
        if mb.folder(folder_id).is_none() {
            return Err(MailboxError::FolderGone {
                mailbox: mb.address.clone(),
                folder_id: folder_id.to_string(),
            });
        }
        let changed = mb.bump();
        mb.messages.insert(
            id.to_string(),
            StoredMessage {
                summary,
                mime,
                changed,
                restore,
            },
        );
        Ok(())
    }

    fn set_mark(
        mb: &mut MemMailbox,
        message_id: &str,
        key: &RestoreKey,
        complete: bool,
    ) -> Result<(), MailboxError> {
        let change = mb.bump();
        let m = mb
            .messages
            .get_mut(message_id)
            .ok_or_else(|| MailboxError::MessageGone {
                mailbox: mb.address.clone(),
                message_id: message_id.to_string(),
            })?;
        m.restore.key = Some(key.clone());
        m.restore.complete = complete;
        m.changed = change;
        Ok(())
    }
}

#[async_trait]
impl MailboxWriter for MemoryMailboxSource {
    async fn ensure_folder(&self, mailbox: &str, path: &[String]) -> Result<String, MailboxError> {
        if path.is_empty() {
            return Ok("msgfolderroot".to_string());
        }
        let mut parent: Option<String> = None;
        for name in path {
            let found = self
                .write_call(mailbox, Operation::EnsureFolder, None, |mb| {
                    Ok(mb
                        .folders
                        .iter()
                        .find(|f| {
                            f.parent_id == parent
                                && !mb.recoverable.contains(&f.id)
                                && f.display_name.to_lowercase() == name.to_lowercase()
                        })
                        .map(|f| f.id.clone()))
                })
                .await?;
            let id = match found {
                Some(id) => id,
                None => self.add_folder(mailbox, parent.as_deref(), name)?,
            };
            parent = Some(id);
        }
        parent.ok_or_else(|| MailboxError::Config("empty folder path".into()))
    }

    async fn restored_in(
        &self,
        mailbox: &str,
        folder_id: &str,
    ) -> Result<FolderRestoreState, MailboxError> {
        self.write_call(mailbox, Operation::RestoredIn, None, |mb| {
            if mb.folder(folder_id).is_none() {
                return Err(MailboxError::FolderGone {
                    mailbox: mb.address.clone(),
                    folder_id: folder_id.to_string(),
                });
            }
            let mut state = FolderRestoreState::default();
            for (id, m) in mb
                .messages
                .iter()
                .filter(|(_, m)| m.summary.folder_id == folder_id)
            {
                match &m.restore.key {
                    Some(key) => {
                        state.marked.insert(
                            key.clone(),
                            RestoredItem {
                                message_id: id.clone(),
                                complete: m.restore.complete,
                            },
                        );
                    }
                    None => {
                        if let Some(imid) = &m.summary.internet_message_id {
                            state.unmarked.insert(imid.clone(), id.clone());
                        }
                    }
                }
            }
            Ok(state)
        })
        .await
    }

    async fn create_message(
        &self,
        mailbox: &str,
        folder_id: &str,
        message: &NewMessage,
    ) -> Result<String, MailboxError> {
        let limits = self.current_write_limits();
        for a in &message.attachments {
            if a.bytes.len() as u64 > limits.max_attachment_bytes {
                return Err(MailboxError::RequestTooLarge {
                    mailbox: mailbox.to_string(),
                    what: format!("attachment `{}` of message {}", a.name, message.key.0),
                    size: a.bytes.len() as u64,
                    limit: limits.max_attachment_bytes,
                    limit_name: "an attachment upload session".into(),
                });
            }
        }
        let id = self.new_id("M");
        let mime = Bytes::from(render::render(message, &id));
        let summary = MessageSummary {
            id: id.clone(),
            folder_id: folder_id.to_string(),
            received: message.received,
            internet_message_id: message.internet_message_id.clone(),
            is_read: message.is_read,
            flagged: false,
            size: Some(mime.len() as u64),
            subject: Some(message.subject.clone()),
        };
        // Attachments inside the create keep it atomic; otherwise they follow it and the
        // item stays marked incomplete until the last one arrived.
        let atomic = message.attachments.is_empty()
            || create_request_bytes(message) <= limits.max_request_bytes;
        let key = Some(message.key.0.as_str());
        self.write_call(mailbox, Operation::CreateMessage, key, |mb| {
            let mark = RestoreMark {
                key: Some(message.key.clone()),
                complete: atomic,
                draft: false,
            };
            Self::store_written(mb, &id, folder_id, summary, mime, mark)
        })
        .await?;
        if !atomic {
            for _ in &message.attachments {
                self.write_call(mailbox, Operation::AddAttachment, key, |_| Ok(()))
                    .await?;
            }
            self.write_call(mailbox, Operation::MarkRestored, key, |mb| {
                Self::set_mark(mb, &id, &message.key, true)
            })
            .await?;
        }
        Ok(id)
    }

    async fn create_from_mime(
        &self,
        mailbox: &str,
        folder_id: &str,
        key: &RestoreKey,
        mime: &[u8],
    ) -> Result<String, MailboxError> {
        let limits = self.current_write_limits();
        let size = mime.len() as u64;
        if size > limits.max_mime_bytes {
            return Err(MailboxError::RequestTooLarge {
                mailbox: mailbox.to_string(),
                what: format!("the MIME of message {}", key.0),
                size,
                limit: limits.max_mime_bytes,
                limit_name: "an exact-MIME create".into(),
            });
        }
        let id = self.new_id("M");
        let mime = Bytes::copy_from_slice(mime);
        let summary = MessageSummary {
            id: id.clone(),
            folder_id: folder_id.to_string(),
            received: None,
            internet_message_id: super::header(&mime, "message-id"),
            is_read: true,
            flagged: false,
            size: Some(size),
            subject: super::header(&mime, "subject"),
        };
        let subject = Some(key.0.as_str());
        self.write_call(mailbox, Operation::CreateFromMime, subject, |mb| {
            let mark = RestoreMark {
                key: None,
                complete: false,
                draft: true,
            };
            Self::store_written(mb, &id, folder_id, summary, mime, mark)
        })
        .await?;
        self.mark_restored(mailbox, &id, key).await?;
        Ok(id)
    }

    async fn mark_restored(
        &self,
        mailbox: &str,
        message_id: &str,
        key: &RestoreKey,
    ) -> Result<(), MailboxError> {
        self.write_call(mailbox, Operation::MarkRestored, Some(&key.0), |mb| {
            Self::set_mark(mb, message_id, key, true)
        })
        .await
    }

    async fn remove_incomplete(&self, mailbox: &str, message_id: &str) -> Result<(), MailboxError> {
        self.write_call(
            mailbox,
            Operation::RemoveIncomplete,
            Some(message_id),
            |mb| {
                let gone = || MailboxError::MessageGone {
                    mailbox: mb.address.clone(),
                    message_id: message_id.to_string(),
                };
                let m = mb.messages.get(message_id).ok_or_else(gone)?;
                if m.restore.key.is_none() || m.restore.complete {
                    return Err(MailboxError::Protocol {
                        mailbox: mb.address.clone(),
                        operation: "remove_incomplete".into(),
                        detail: format!("message {message_id} is not an incomplete restore"),
                    });
                }
                let folder = m.summary.folder_id.clone();
                mb.messages.remove(message_id);
                mb.depart(&folder, message_id);
                Ok(())
            },
        )
        .await
    }

    fn write_metrics(&self, mailbox: &str) -> MailboxMetrics {
        self.lock()
            .get(&mailbox.to_lowercase())
            .map(|mb| mb.write_metrics.clone())
            .unwrap_or_default()
    }

    fn write_limits(&self) -> WriteLimits {
        self.current_write_limits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::{BodyKind, Recipient};
    use crate::{InjectedFailure, MailboxSource};

    const MB: &str = "Adele@contoso.com";

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| (*s).to_string()).collect()
    }

    fn message(key: &str) -> NewMessage {
        NewMessage {
            key: RestoreKey(key.into()),
            subject: "Grüße".into(),
            body_kind: BodyKind::Text,
            body: "hello".into(),
            from: Some(Recipient {
                name: Some("Adele".into()),
                address: "adele@contoso.com".into(),
            }),
            sender: None,
            to: vec![],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            internet_message_id: Some("<k@x>".into()),
            headers: vec![],
            importance: None,
            categories: vec![],
            is_read: false,
            received: None,
            sent: None,
            attachments: vec![],
        }
    }

    #[tokio::test]
    async fn folder_paths_are_created_once_and_reused() {
        let s = MemoryMailboxSource::new();
        s.add_mailbox(MB);
        let a = s
            .ensure_folder(MB, &path(&["Restored", "Inbox"]))
            .await
            .unwrap();
        let b = s
            .ensure_folder(MB, &path(&["restored", "INBOX"]))
            .await
            .unwrap();
        assert_eq!(a, b);
        let c = s
            .ensure_folder(MB, &path(&["Restored", "Inbox", "Q1/Q2"]))
            .await
            .unwrap();
        let folders = s.folders(MB).await.unwrap();
        let paths: Vec<&str> = folders.iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&"Restored/Inbox/Q1\\/Q2"), "{paths:?}");
        assert_eq!(folders.iter().filter(|f| f.id == c).count(), 1);
        // The top-level Inbox is not the restored one.
        assert_ne!(s.folder_id(MB, "inbox"), Some(a));
    }

    #[tokio::test]
    async fn json_creates_are_not_drafts_and_read_back_as_mime() {
        let s = MemoryMailboxSource::new();
        s.add_mailbox(MB);
        let folder = s.ensure_folder(MB, &path(&["R"])).await.unwrap();
        let id = s.create_message(MB, &folder, &message("a1")).await.unwrap();
        let flags = s.written_flags(MB, &id).unwrap();
        assert!(!flags.draft && !flags.read && flags.complete, "{flags:?}");
        let mime = s.mime(MB, &id).unwrap();
        let text = String::from_utf8_lossy(&mime);
        assert!(text.contains("Subject: =?utf-8?B?"), "{text}");
        assert!(
            text.contains("From: \"Adele\" <adele@contoso.com>"),
            "{text}"
        );
        let state = s.restored_in(MB, &folder).await.unwrap();
        assert!(state.marked[&RestoreKey("a1".into())].complete);
    }

    #[tokio::test]
    async fn exact_mime_lands_as_a_draft_within_the_limit_only() {
        let s = MemoryMailboxSource::new();
        s.add_mailbox(MB);
        s.set_write_limits(WriteLimits {
            max_mime_bytes: 64,
            ..WriteLimits::GRAPH
        });
        let folder = s.ensure_folder(MB, &path(&["R"])).await.unwrap();
        let key = RestoreKey("k".into());
        let small = b"Message-ID: <s@x>\r\nSubject: s\r\n\r\nx\r\n";
        let id = s.create_from_mime(MB, &folder, &key, small).await.unwrap();
        assert_eq!(s.is_draft(MB, &id), Some(true));
        assert_eq!(&s.mime(MB, &id).unwrap()[..], &small[..]);
        let big = vec![b'x'; 65];
        let e = s
            .create_from_mime(MB, &folder, &key, &big)
            .await
            .unwrap_err();
        assert!(
            matches!(e, MailboxError::RequestTooLarge { limit: 64, .. }),
            "{e}"
        );
    }

    #[tokio::test]
    async fn write_failures_are_injected_per_operation_and_per_key() {
        let s = MemoryMailboxSource::new();
        s.add_mailbox(MB);
        let folder = s.ensure_folder(MB, &path(&["R"])).await.unwrap();
        s.fail_message(MB, "bad", InjectedFailure::Timeout);
        assert!(
            s.create_message(MB, &folder, &message("bad"))
                .await
                .is_err()
        );
        assert!(
            s.create_message(MB, &folder, &message("good"))
                .await
                .is_ok()
        );
        s.fail(MB, Operation::RestoredIn, InjectedFailure::AccessDenied);
        let e = s.restored_in(MB, &folder).await.unwrap_err();
        assert!(e.is_mailbox_wide(), "{e}");
        assert_eq!(s.write_metrics(MB).requests, 4);
    }
}
