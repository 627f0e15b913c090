//! The write side of a mailbox, beside [`crate::MailboxSource`]: folder paths created
//! (or reused) and messages put back from an archive (restore).
//!
//! The seam is [`MailboxWriter`]. A restore sends a [`NewMessage`] (a JSON create that sets
//! the MAPI flags which make it "received, not draft": they can be set only at creation)
//! or, in exact-MIME mode, the archived MIME itself (which lands as a draft). Every
//! restored item carries its [`RestoreKey`] (the archive's message id) in a named
//! extended property, so a rerun finds what is there already
//! ([`MailboxWriter::restored_in`]) and a crash between the create and the last
//! attachment leaves an item marked *incomplete*, which the rerun removes and restores
//! again ([`MailboxWriter::remove_incomplete`]).

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::{MailboxError, MailboxMetrics};

/// The archive's id of a message, stored on each restored item (a named string extended
/// property) so restores are idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RestoreKey(pub String);

/// A mail address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// Display name, when the original had one.
    pub name: Option<String>,
    /// The address.
    pub address: String,
}

/// Whether a body is HTML or plain text (Graph `body.contentType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `text`.
    Text,
    /// `html`.
    Html,
}

/// Graph `importance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Importance {
    /// `low`.
    Low,
    /// `normal`.
    Normal,
    /// `high`.
    High,
}

/// One attachment of a [`NewMessage`], added after the create: in one request when it is
/// small, through an upload session in chunks otherwise (the writer decides, see
/// [`WriteLimits`]). An attached message (`message/rfc822`) is restored as a file named
/// `….eml`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewAttachment {
    /// File name as the recipient sees it.
    pub name: String,
    /// MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// `Content-ID` without angle brackets, for inline parts the HTML body refers to
    /// (`cid:`).
    pub content_id: Option<String>,
    /// Shown inline rather than as an attachment.
    pub inline: bool,
    /// The decoded bytes.
    pub bytes: Bytes,
}

impl std::fmt::Debug for NewAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAttachment")
            .field("name", &self.name)
            .field("content_type", &self.content_type)
            .field("content_id", &self.content_id)
            .field("inline", &self.inline)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A message to create from archived mail: everything Graph lets a JSON create set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Marks the restored item (see [`RestoreKey`]).
    pub key: RestoreKey,
    /// Subject (empty when the original had none).
    pub subject: String,
    /// Body kind as in the original (HTML when it had an HTML part).
    pub body_kind: BodyKind,
    /// Body content.
    pub body: String,
    /// `From`.
    pub from: Option<Recipient>,
    /// `Sender`, when it differs from `From`.
    pub sender: Option<Recipient>,
    /// `To`.
    pub to: Vec<Recipient>,
    /// `Cc`.
    pub cc: Vec<Recipient>,
    /// `Bcc`.
    pub bcc: Vec<Recipient>,
    /// `Reply-To`.
    pub reply_to: Vec<Recipient>,
    /// `Message-ID` with angle brackets, as Graph's `internetMessageId` wants it.
    pub internet_message_id: Option<String>,
    /// Further headers Graph accepts on a create (`internetMessageHeaders`: names starting
    /// with `x-` or `X-` only).
    pub headers: Vec<(String, String)>,
    /// Importance, when the original said.
    pub importance: Option<Importance>,
    /// Outlook categories (`Keywords`), when present.
    pub categories: Vec<String>,
    /// Restored as read (`PR_MESSAGE_FLAGS` 1) or unread (0); never a draft either way.
    pub is_read: bool,
    /// When it was received (`PR_MESSAGE_DELIVERY_TIME`, 0x0E06).
    pub received: Option<DateTime<Utc>>,
    /// When it was sent (`PR_CLIENT_SUBMIT_TIME`, 0x0039).
    pub sent: Option<DateTime<Utc>>,
    /// Attachments, in the original's order.
    pub attachments: Vec<NewAttachment>,
}

impl NewMessage {
    /// Sum of the attachments' decoded sizes.
    pub fn attachment_bytes(&self) -> u64 {
        self.attachments.iter().map(|a| a.bytes.len() as u64).sum()
    }
}

/// A restored item found in a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredItem {
    /// The item's (immutable) message id in the target mailbox.
    pub message_id: String,
    /// Every attachment arrived (the item was marked complete after the last one).
    pub complete: bool,
}

/// What a target folder already holds from earlier restores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderRestoreState {
    /// Items carrying a restore key, by key.
    pub marked: std::collections::HashMap<RestoreKey, RestoredItem>,
    /// Items without a restore key, by `internetMessageId`: an exact-MIME create whose key
    /// was not yet set when a run stopped can be adopted through
    /// [`MailboxWriter::mark_restored`] instead of being created twice.
    pub unmarked: std::collections::HashMap<String, String>,
}

/// What a [`MailboxWriter`] accepts, so callers can refuse up front with a clear message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// Largest request body (Graph: 4 MB).
    pub max_request_bytes: u64,
    /// Largest MIME an exact-MIME create can post (base64 inside the request limit).
    pub max_mime_bytes: u64,
    /// Attachments up to this size go in one request; larger ones through an upload
    /// session (Graph: 3 MB).
    pub max_inline_attachment_bytes: u64,
    /// Largest attachment an upload session takes (Graph: 150 MB).
    pub max_attachment_bytes: u64,
    /// Upload budget per mailbox: bytes per window (Outlook: 150 MB per 5 minutes).
    pub upload_budget_bytes: u64,
    /// The budget's window.
    pub upload_budget_window: std::time::Duration,
}

impl WriteLimits {
    /// Exchange Online through Graph (graph-facts §9).
    pub const GRAPH: WriteLimits = WriteLimits {
        max_request_bytes: 4 * 1024 * 1024,
        max_mime_bytes: 3 * 1024 * 1024,
        max_inline_attachment_bytes: 3 * 1024 * 1024,
        max_attachment_bytes: 150 * 1024 * 1024,
        upload_budget_bytes: 150 * 1024 * 1024,
        upload_budget_window: std::time::Duration::from_secs(300),
    };
}

/// The seam between a restore and a mail service: create folders and messages.
///
/// Errors are [`MailboxError`]s as on the read side: a 403 is
/// [`MailboxError::AccessDenied`] (Mail.ReadWrite missing, or an application access
/// policy), throttling and the upload budget are waited out inside.
#[async_trait]
pub trait MailboxWriter: Send + Sync {
    /// The id of the folder at `path` (display names from the mailbox's root, e.g.
    /// `["Restored", "2026-12-01", "Inbox"]`), creating the segments that are missing
    /// and reusing those that exist (a create that answers 409 `ErrorFolderExists` is
    /// looked up again). An empty path is the root's well-known `msgfolderroot`.
    async fn ensure_folder(&self, mailbox: &str, path: &[String]) -> Result<String, MailboxError>;

    /// What a folder already holds from earlier restores.
    async fn restored_in(
        &self,
        mailbox: &str,
        folder_id: &str,
    ) -> Result<FolderRestoreState, MailboxError>;

    /// Creates a message as a JSON create (received, not draft), then its attachments,
    /// then marks it complete. Answers the new message's id.
    async fn create_message(
        &self,
        mailbox: &str,
        folder_id: &str,
        message: &NewMessage,
    ) -> Result<String, MailboxError>;

    /// Posts the MIME itself (Graph: base64 `text/plain`; it lands as a draft), then sets
    /// its restore key. Fails with [`MailboxError::RequestTooLarge`] when the MIME does not
    /// fit [`WriteLimits::max_mime_bytes`]. Answers the new message's id.
    async fn create_from_mime(
        &self,
        mailbox: &str,
        folder_id: &str,
        key: &RestoreKey,
        mime: &[u8],
    ) -> Result<String, MailboxError>;

    /// Sets the restore key on an item (adopting an unmarked exact-MIME create).
    async fn mark_restored(
        &self,
        mailbox: &str,
        message_id: &str,
        key: &RestoreKey,
    ) -> Result<(), MailboxError>;

    /// Removes an item a stopped restore left incomplete, so it can be restored again.
    /// Only for items whose [`RestoredItem::complete`] is false.
    async fn remove_incomplete(&self, mailbox: &str, message_id: &str) -> Result<(), MailboxError>;

    /// Request counters for a mailbox so far (writes and their lookups).
    fn write_metrics(&self, mailbox: &str) -> MailboxMetrics;

    /// What this writer accepts.
    fn write_limits(&self) -> WriteLimits;
}
