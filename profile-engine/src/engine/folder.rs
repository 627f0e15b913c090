//! One folder's delta round through the bounded pipeline, the age filters, the
//! waiting list (messages too young to archive or to delete), and the booking of
//! each message's outcome.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Duration, Utc};
use futures::stream::{FuturesUnordered, StreamExt};
use m365_mailbox::{DeltaEvent, Folder, MailboxError, MessageSummary};
use tracing::{debug, info, warn};

use super::mailbox::MailboxCtx;
use super::message::{Candidate, MessageOutcome};
use crate::checkpoint::{FailedItem, FolderCheckpoint, WaitingMessage};
use crate::error::FolderFailure;
use crate::progress::ProgressEvent;
use crate::report::{FailureKind, ItemFailure, MailboxReport};

/// Runs that try an item the service cannot render before it is given up (the first
/// attempt included).
pub(super) const UNCONVERTIBLE_ATTEMPTS: u32 = 3;

/// How one folder round ended.
pub(super) struct FolderRound {
    pub(super) completed: bool,
    pub(super) error: Option<FolderFailure>,
    /// The folder was deleted while the run enumerated it.
    pub(super) gone: bool,
}

impl FolderRound {
    /// The error concerns the whole mailbox: its other folders are not tried.
    pub(super) fn mailbox_wide(&self) -> bool {
        self.error
            .as_ref()
            .is_some_and(FolderFailure::is_mailbox_wide)
    }
}

impl MailboxCtx<'_> {
    /// Whether a message received at `received` is old enough to archive.
    fn old_enough_to_archive(&self, received: Option<DateTime<Utc>>) -> bool {
        let days = self.profile.filter.older_than_days;
        days == 0 || received.is_none_or(|r| r <= self.now - Duration::days(i64::from(days)))
    }

    fn excluded_by_date(&self, received: Option<DateTime<Utc>>) -> bool {
        match (self.profile.filter.received_after, received) {
            (Some(after), Some(r)) => r < after.with_timezone(&Utc),
            _ => false,
        }
    }

    pub(super) async fn run_folder(
        &self,
        folder: &Folder,
        state: &mut FolderCheckpoint,
        report: &mut MailboxReport,
    ) -> FolderRound {
        let mailbox = self.mailbox();
        self.progress.event(ProgressEvent::FolderStarted {
            mailbox: mailbox.to_owned(),
            folder: folder.path.clone(),
        });
        let limit = self.limit();
        // Items earlier runs could not convert: tried again after the round, unless the
        // round lists them itself (never twice in one run).
        let mut retry_failed: HashSet<String> = state
            .failed
            .iter()
            .filter(|(_, f)| !f.given_up)
            .map(|(id, _)| id.clone())
            .collect();
        let mut stream = self
            .engine
            .mailboxes
            .changes(mailbox, &folder.id, state.cursor.clone());
        let mut in_hand: FuturesUnordered<_> = FuturesUnordered::new();
        let mut in_hand_ids: HashSet<String> = HashSet::new();
        let mut stream_open = true;
        let mut stopping = false;
        let mut round_failed = false;
        let mut new_cursor = None;
        let mut error = None;
        let mut gone = false;
        loop {
            if self.archive_broken() {
                stopping = true;
            }
            if !stream_open || stopping {
                match in_hand.next().await {
                    Some(outcome) => {
                        round_failed |=
                            self.absorb(folder, state, report, &mut in_hand_ids, outcome);
                        continue;
                    }
                    None => break,
                }
            }
            tokio::select! {
                biased;
                Some(outcome) = in_hand.next(), if !in_hand.is_empty() => {
                    round_failed |= self.absorb(folder, state, report, &mut in_hand_ids, outcome);
                }
                _ = self.cancel.cancelled() => {
                    stopping = true;
                }
                event = stream.next(), if in_hand.len() < limit => match event {
                    None => {
                        stream_open = false;
                        error.get_or_insert(FolderFailure::NoCursor);
                    }
                    Some(Err(MailboxError::FolderGone { .. })) => {
                        stream_open = false;
                        gone = true;
                    }
                    Some(Err(e)) => {
                        stream_open = false;
                        error = Some(FolderFailure::Listing(e));
                    }
                    Some(Ok(DeltaEvent::Done(cursor))) => {
                        stream_open = false;
                        new_cursor = Some(cursor);
                    }
                    Some(Ok(DeltaEvent::Restarted)) => {
                        info!("saved cursor rejected: enumerating the folder again");
                    }
                    Some(Ok(DeltaEvent::Removed { id })) => {
                        state.waiting.remove(&id);
                        state.failed.remove(&id);
                        retry_failed.remove(&id);
                    }
                    Some(Ok(DeltaEvent::Upsert(summary))) => {
                        retry_failed.remove(&summary.id);
                        let given_up = state.failed.get(&summary.id).is_some_and(|f| f.given_up);
                        if !given_up
                            && let Some(candidate) = self.consider(&summary, state)
                            && in_hand_ids.insert(candidate.id.clone())
                        {
                            in_hand.push(self.handle(folder, candidate));
                        }
                    }
                }
            }
        }
        drop(stream);
        let completed = new_cursor.is_some() && !round_failed && error.is_none();
        if completed {
            state.cursor = new_cursor;
        }
        let mailbox_wide = error.as_ref().is_some_and(FolderFailure::is_mailbox_wide);
        if !self.cancel.is_cancelled() && !gone && !mailbox_wide && !self.archive_broken() {
            round_failed |= self
                .process_waiting(folder, state, report, &retry_failed)
                .await;
        }
        // Items given up on by earlier runs stay listed.
        let listed: HashSet<String> = report.failures.iter().map(|f| f.id.clone()).collect();
        let given_up: Vec<ItemFailure> = state
            .failed
            .iter()
            .filter(|(id, f)| f.given_up && !listed.contains(*id))
            .map(|(id, f)| ItemFailure {
                id: id.clone(),
                subject: f.subject.clone(),
                folder: folder.path.clone(),
                reason: f.reason.clone(),
                kind: FailureKind::Unconvertible,
                attempts: f.attempts,
                given_up: true,
            })
            .collect();
        report.list_failures(given_up);
        if round_failed && error.is_none() && !completed {
            debug!("round incomplete: cursor kept for the next run");
        }
        FolderRound {
            completed,
            error,
            gone,
        }
    }

    /// Decides what to do with a listed message: `Some` = hand it to the pipeline.
    fn consider(
        &self,
        summary: &MessageSummary,
        state: &mut FolderCheckpoint,
    ) -> Option<Candidate> {
        if self.excluded_by_date(summary.received) {
            state.waiting.remove(&summary.id);
            return None;
        }
        if !self.old_enough_to_archive(summary.received) {
            state.waiting.insert(
                summary.id.clone(),
                WaitingMessage {
                    received: summary.received,
                    is_read: summary.is_read,
                    archived: false,
                },
            );
            return None;
        }
        state.waiting.remove(&summary.id);
        Some(Candidate::from_summary(summary))
    }

    /// After the round: archive messages that have come of age, delete archived
    /// ones whose deletion is now due, try again the unconvertible items of earlier
    /// runs in `retry_failed`.
    async fn process_waiting(
        &self,
        folder: &Folder,
        state: &mut FolderCheckpoint,
        report: &mut MailboxReport,
        retry_failed: &HashSet<String>,
    ) -> bool {
        let retries = state
            .failed
            .iter()
            .filter(|(id, f)| !f.given_up && retry_failed.contains(*id))
            .map(|(id, f)| Candidate {
                id: id.clone(),
                received: f.received,
                is_read: f.is_read,
                subject: f.subject.clone(),
                from_waiting: false,
            });
        let due: Vec<Candidate> = state
            .waiting
            .iter()
            .filter_map(|(id, w)| {
                let candidate = Candidate {
                    id: id.clone(),
                    received: w.received,
                    is_read: w.is_read,
                    subject: None,
                    from_waiting: true,
                };
                let is_due = if w.archived {
                    self.deletion_due(folder, &candidate) == Some(true)
                } else {
                    self.old_enough_to_archive(w.received)
                };
                is_due.then_some(candidate)
            })
            .chain(retries)
            .collect();
        if due.is_empty() {
            return false;
        }
        let limit = self.limit();
        let mut pending = due.into_iter();
        let mut running = FuturesUnordered::new();
        let mut failed = false;
        let mut ids = HashSet::new();
        loop {
            while running.len() < limit && !self.cancel.is_cancelled() && !self.archive_broken() {
                match pending.next() {
                    Some(candidate) => running.push(self.handle(folder, candidate)),
                    None => break,
                }
            }
            let Some(outcome) = running.next().await else {
                break;
            };
            failed |= self.absorb(folder, state, report, &mut ids, outcome);
        }
        // Messages not started (cancelled) are still in the waiting list.
        failed
    }

    /// Books one outcome; `true` when the message failed.
    fn absorb(
        &self,
        folder: &Folder,
        state: &mut FolderCheckpoint,
        report: &mut MailboxReport,
        in_hand_ids: &mut HashSet<String>,
        outcome: MessageOutcome,
    ) -> bool {
        let MessageOutcome { candidate, result } = outcome;
        in_hand_ids.remove(&candidate.id);
        if candidate.from_waiting {
            // Settled now; put back below if it must wait again.
            state.waiting.remove(&candidate.id);
        }
        let mailbox = self.mailbox().to_owned();
        match result {
            Err(failure) => {
                report.messages_failed += 1;
                if failure.is_archive_side() {
                    self.archive_failures_in_a_row
                        .fetch_add(1, Ordering::SeqCst);
                }
                let permanent = failure.is_permanent();
                warn!(message = %candidate.id, error = %failure, "message not archived");
                let (attempts, given_up) = if failure.is_unconvertible() {
                    self.unreadable.fetch_add(1, Ordering::SeqCst);
                    let earlier = state.failed.get(&candidate.id);
                    let attempts = earlier.map_or(0, |f| f.attempts) + 1;
                    let subject = candidate
                        .subject
                        .clone()
                        .or_else(|| earlier.and_then(|f| f.subject.clone()));
                    let given_up = attempts >= UNCONVERTIBLE_ATTEMPTS;
                    state.failed.insert(
                        candidate.id.clone(),
                        FailedItem {
                            subject,
                            received: candidate.received,
                            is_read: candidate.is_read,
                            attempts,
                            given_up,
                            reason: failure.to_string(),
                        },
                    );
                    (attempts, given_up)
                } else {
                    (1, permanent)
                };
                let subject = candidate.subject.clone().or_else(|| {
                    state
                        .failed
                        .get(&candidate.id)
                        .and_then(|f| f.subject.clone())
                });
                report.list_failures([ItemFailure {
                    id: candidate.id.clone(),
                    subject,
                    folder: folder.path.clone(),
                    reason: failure.to_string(),
                    kind: failure.kind(),
                    attempts,
                    given_up,
                }]);
                self.progress.event(ProgressEvent::MessageFailed {
                    mailbox,
                    folder: folder.path.clone(),
                    message_id: candidate.id.clone(),
                    error: failure.to_string(),
                });
                if candidate.from_waiting && !permanent {
                    state.waiting.insert(
                        candidate.id,
                        WaitingMessage {
                            received: candidate.received,
                            is_read: candidate.is_read,
                            archived: false,
                        },
                    );
                }
                !permanent
            }
            Ok(handled) if handled.gone => {
                debug!(message = %candidate.id, "message left the mailbox before it was fetched");
                state.failed.remove(&candidate.id);
                false
            }
            Ok(handled) if handled.forgotten => {
                debug!(message = %candidate.id, "expunged from the archive before: left alone");
                state.failed.remove(&candidate.id);
                state.waiting.remove(&candidate.id);
                report.messages_forgotten += 1;
                false
            }
            Ok(handled) => {
                state.failed.remove(&candidate.id);
                self.archive_failures_in_a_row.store(0, Ordering::SeqCst);
                if handled.new_entry {
                    report.messages_archived += 1;
                } else {
                    report.messages_duplicate += 1;
                }
                report.bytes += handled.bytes;
                self.progress.event(ProgressEvent::MessageArchived {
                    mailbox: mailbox.clone(),
                    folder: folder.path.clone(),
                    bytes: handled.bytes,
                    duplicate: !handled.new_entry,
                });
                if handled.deleted {
                    report.deleted += 1;
                    report.deleted_ids.push(candidate.id.clone());
                    self.progress.event(ProgressEvent::MessageDeleted {
                        mailbox,
                        message_id: candidate.id.clone(),
                    });
                } else {
                    if let Some(why) = &handled.delete_error {
                        warn!(message = %candidate.id, reason = %why, "message kept in the mailbox");
                    }
                    if handled.wait_for_deletion || handled.delete_error.is_some() {
                        state.waiting.insert(
                            candidate.id,
                            WaitingMessage {
                                received: candidate.received,
                                is_read: candidate.is_read,
                                archived: true,
                            },
                        );
                    }
                }
                false
            }
        }
    }
}
