//! Progress events of a run (run, mailbox, folder, message, bytes) for progress
//! bars and logs. A sink is a closure, a channel, or [`NoProgress`].

use crate::report::{MailboxReport, RunStatus};

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgressEvent {
    /// The run started with this many mailboxes selected.
    RunStarted {
        /// Profile name.
        profile: String,
        /// Mailboxes selected.
        mailboxes: usize,
    },
    /// A mailbox started.
    MailboxStarted {
        /// Mailbox address.
        mailbox: String,
        /// Archive owner.
        user: String,
    },
    /// A folder started.
    FolderStarted {
        /// Mailbox address.
        mailbox: String,
        /// Folder path.
        folder: String,
    },
    /// A message was archived (or found already archived by content).
    MessageArchived {
        /// Mailbox address.
        mailbox: String,
        /// Folder path.
        folder: String,
        /// Raw size in bytes.
        bytes: u64,
        /// Already in the archive.
        duplicate: bool,
    },
    /// A message could not be archived; it is retried by the next run.
    MessageFailed {
        /// Mailbox address.
        mailbox: String,
        /// Folder path.
        folder: String,
        /// Message id.
        message_id: String,
        /// Why.
        error: String,
    },
    /// A message was deleted from the mailbox after verified archiving.
    MessageDeleted {
        /// Mailbox address.
        mailbox: String,
        /// Message id.
        message_id: String,
    },
    /// A folder finished.
    FolderFinished {
        /// Mailbox address.
        mailbox: String,
        /// Folder path.
        folder: String,
        /// Whether its cursor advanced (the round completed).
        completed: bool,
    },
    /// A mailbox finished.
    MailboxFinished {
        /// Its report.
        report: MailboxReport,
    },
    /// The run finished.
    RunFinished {
        /// Outcome.
        status: RunStatus,
    },
}

/// Receives progress events. Must be cheap: it is called on the run's task.
pub trait ProgressSink: Send + Sync {
    /// One event.
    fn event(&self, event: ProgressEvent);
}

impl<F: Fn(ProgressEvent) + Send + Sync> ProgressSink for F {
    fn event(&self, event: ProgressEvent) {
        self(event)
    }
}

impl ProgressSink for tokio::sync::mpsc::UnboundedSender<ProgressEvent> {
    fn event(&self, event: ProgressEvent) {
        // A closed receiver only means nobody watches any more.
        let _ = self.send(event);
    }
}

/// Discards events.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn event(&self, _event: ProgressEvent) {}
}
