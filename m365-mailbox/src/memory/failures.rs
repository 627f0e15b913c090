//! Failures injected into the in-memory mail service: which call, which message, how
//! often, and the [`MailboxError`] each becomes.

use std::time::Duration;

use crate::MailboxError;

/// Which [`MailboxSource`] or [`MailboxWriter`](crate::MailboxWriter) call an injected
/// failure applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// [`MailboxSource::probe`].
    Probe,
    /// [`MailboxSource::folders`].
    Folders,
    /// [`MailboxSource::changes`].
    Changes,
    /// [`MailboxSource::fetch_mime`].
    FetchMime,
    /// [`MailboxSource::delete`].
    Delete,
    /// [`MailboxSource::recoverable_folders`].
    RecoverableFolders,
    /// [`MailboxSource::archive_mailbox`].
    ArchiveMailbox,
    /// [`MailboxWriter::ensure_folder`](crate::MailboxWriter::ensure_folder): each
    /// segment's lookup.
    EnsureFolder,
    /// [`MailboxWriter::restored_in`](crate::MailboxWriter::restored_in).
    RestoredIn,
    /// The create request of
    /// [`MailboxWriter::create_message`](crate::MailboxWriter::create_message).
    CreateMessage,
    /// One attachment added after a create (attachments too large to travel inside it).
    AddAttachment,
    /// The create request of
    /// [`MailboxWriter::create_from_mime`](crate::MailboxWriter::create_from_mime).
    CreateFromMime,
    /// Setting a restore key: [`MailboxWriter::mark_restored`](crate::MailboxWriter::mark_restored),
    /// the second step of an exact-MIME create, and the completion of a create whose
    /// attachments followed it.
    MarkRestored,
    /// [`MailboxWriter::remove_incomplete`](crate::MailboxWriter::remove_incomplete).
    RemoveIncomplete,
    /// Every call.
    Any,
}

/// A failure to inject; turned into the matching [`MailboxError`] for the mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectedFailure {
    /// [`MailboxError::NoMailbox`].
    NoMailbox,
    /// [`MailboxError::AccessDenied`] (application access policy).
    AccessDenied,
    /// [`MailboxError::UnknownUser`].
    UnknownUser,
    /// [`MailboxError::RetriesExhausted`].
    RetriesExhausted,
    /// [`MailboxError::Timeout`].
    Timeout,
    /// [`MailboxError::Protocol`] with this detail.
    Protocol(String),
    /// [`MailboxError::Unconvertible`]: the item has no MIME form (for a message,
    /// with [`MemoryMailboxSource::fail_message`](super::MemoryMailboxSource::fail_message)).
    Unconvertible,
}

impl InjectedFailure {
    pub(super) fn to_error(
        &self,
        mailbox: &str,
        operation: Operation,
        message_id: Option<&str>,
    ) -> MailboxError {
        let mailbox = mailbox.to_string();
        let operation = format!("{operation:?}");
        match self {
            InjectedFailure::NoMailbox => MailboxError::NoMailbox { mailbox },
            InjectedFailure::AccessDenied => MailboxError::AccessDenied {
                mailbox,
                code: "ErrorAccessDenied".into(),
                message: "Access to OData is disabled.".into(),
            },
            InjectedFailure::UnknownUser => MailboxError::UnknownUser {
                mailbox,
                code: "ErrorInvalidUser".into(),
            },
            InjectedFailure::RetriesExhausted => MailboxError::RetriesExhausted {
                mailbox,
                operation,
                attempts: 8,
                last: "HTTP 503 (injected)".into(),
            },
            InjectedFailure::Timeout => MailboxError::Timeout {
                mailbox,
                operation,
                after: Duration::from_secs(120),
                attempts: 8,
            },
            InjectedFailure::Protocol(detail) => MailboxError::Protocol {
                mailbox,
                operation,
                detail: detail.clone(),
            },
            InjectedFailure::Unconvertible => MailboxError::Unconvertible {
                mailbox,
                message_id: message_id.unwrap_or_default().to_string(),
                code: "ErrorInternalServerError".into(),
                message: "Text does not support structured data.".into(),
            },
        }
    }
}

#[derive(Debug)]
pub(super) struct FailureRule {
    pub(super) operation: Operation,
    pub(super) message_id: Option<String>,
    pub(super) failure: InjectedFailure,
    pub(super) remaining: Option<u32>,
}
