//! The engine and the mail a mailbox hides, over the in-memory stores: Recoverable Items
//! (soft-deleted mail archived once, a moved message neither downloaded nor stored
//! twice), the online archive (its own mailbox id and checkpoint, filed under
//! `Online Archive/`), deletion rules that never reach either, and items the service
//! cannot render (listed, retried by the next runs a bounded number of times).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use archive_store::MemoryArchiveStore;
use chrono::{Duration, Utc};
use common::{Users, entries_by_folder, mime, run_once};
use directory_sync::MemoryUserStore;
use m365_mailbox::{InjectedFailure, MailboxSource, MemoryMailboxSource};
use profile_engine::{
    CheckpointStore, DeletionMode, FailureKind, MailboxReport, MailboxStatus, Profile,
    RecoverableItems, RunReport, RunStatus, Source, UnreadableItems,
};

const A: &str = "adele@contoso.com";

struct Harness {
    dir: tempfile::TempDir,
    mail: Arc<MemoryMailboxSource>,
    users: Arc<MemoryUserStore>,
    archive: Arc<MemoryArchiveStore>,
}

impl Harness {
    /// Adele's mailbox with `n` messages in the Inbox.
    fn new(n: usize) -> (Self, Vec<String>) {
        let h = Self {
            dir: tempfile::tempdir().unwrap(),
            mail: Arc::new(MemoryMailboxSource::new()),
            users: Arc::new(MemoryUserStore::new()),
            archive: Arc::new(MemoryArchiveStore::new()),
        };
        h.mail.add_mailbox(A);
        h.users.add("adele", Some(A), true);
        let ids = (0..n)
            .map(|i| h.deliver("inbox", &format!("m{i}")))
            .collect();
        (h, ids)
    }

    fn deliver(&self, folder: &str, tag: &str) -> String {
        self.deliver_to(A, folder, tag)
    }

    fn deliver_to(&self, mailbox: &str, folder: &str, tag: &str) -> String {
        // Received long ago, read: due for any deletion rule.
        self.mail
            .deliver_at(mailbox, folder, mime(tag), Utc::now() - Duration::days(400))
            .inspect(|id| self.mail.update(mailbox, id, true, false).unwrap())
            .unwrap()
    }

    async fn run(&self, profile: &Profile) -> RunReport {
        let (users, archive) = (self.users.clone(), self.archive.clone());
        run_once(self.mail.clone(), users, archive, self.dir.path(), profile).await
    }

    /// Archive entries per archive folder of Adele's archive.
    fn entries(&self) -> BTreeMap<String, usize> {
        entries_by_folder(&self.archive, "adele")
    }

    /// Bytes the mailbox (or archive mailbox) served as MIME so far.
    fn served(&self, mailbox: &str) -> u64 {
        self.mail.metrics(mailbox).bytes
    }
}

fn profile() -> Profile {
    Profile::new(
        "adele",
        "contoso",
        Source::Single {
            mailbox: A.into(),
            target_user: "adele".into(),
        },
    )
}

fn mailbox(report: &RunReport) -> &MailboxReport {
    &report.mailboxes[0]
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(f, n)| ((*f).to_owned(), *n)).collect()
}

#[tokio::test]
async fn soft_deleted_mail_is_archived_once_and_a_moved_message_is_not_fetched_again() {
    let (h, ids) = Harness::new(3);
    let first = h.run(&profile()).await;
    assert_eq!(first.status, RunStatus::Ok);
    assert_eq!(mailbox(&first).messages_archived, 3);
    let served = h.served(A);

    // Between the runs: one archived message is Shift+Deleted, one message arrives and is
    // Shift+Deleted before any run saw it in the Inbox.
    h.mail.soft_delete_message(A, &ids[0]).unwrap();
    let unseen = h.deliver("inbox", "unseen");
    h.mail.soft_delete_message(A, &unseen).unwrap();
    let unseen_size = h.mail.mime(A, &unseen).unwrap().len() as u64;

    let second = h.run(&profile()).await;
    assert_eq!(second.status, RunStatus::Ok, "{second:?}");
    assert_eq!(mailbox(&second).messages_archived, 1, "only the unseen one");
    assert_eq!(
        h.served(A) - served,
        unseen_size,
        "the moved message is not downloaded again"
    );
    assert_eq!(
        h.entries(),
        counts(&[("Inbox", 3), ("Recoverable Items/Deletions", 1)]),
        "the moved message is stored once"
    );
    let third = h.run(&profile()).await;
    assert_eq!(mailbox(&third).messages_archived, 0);
    assert_eq!(h.served(A) - served, unseen_size);
}

#[tokio::test]
async fn recoverable_items_follow_the_profile_and_exclude_rules() {
    let check = |setting: RecoverableItems, exclude: &[&str], expected: &[(&str, usize)]| {
        let (setting, exclude, expected) = (
            setting,
            exclude.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            counts(expected),
        );
        async move {
            let (h, _) = Harness::new(1);
            h.deliver("recoverableitemsdeletions", "deleted");
            h.deliver("recoverableitemspurges", "purged");
            h.deliver("recoverableitemsversions", "version");
            h.deliver("deleteditems", "binned");
            let mut p = profile();
            p.folders.recoverable_items = setting;
            p.folders.exclude = exclude.clone();
            let report = h.run(&p).await;
            assert_eq!(report.status, RunStatus::Ok, "{report:?}");
            assert_eq!(h.entries(), expected, "{setting:?} excluding {exclude:?}");
        }
    };
    check(
        RecoverableItems::None,
        &[],
        &[("Inbox", 1), ("Deleted Items", 1)],
    )
    .await;
    check(
        RecoverableItems::Deletions,
        &["deleteditems"],
        &[("Inbox", 1), ("Recoverable Items/Deletions", 1)],
    )
    .await;
    check(
        RecoverableItems::All,
        &["recoverableitemspurges", "Recoverable Items/Versions"],
        &[
            ("Inbox", 1),
            ("Deleted Items", 1),
            ("Recoverable Items/Deletions", 1),
        ],
    )
    .await;
    check(
        RecoverableItems::All,
        &[],
        &[
            ("Inbox", 1),
            ("Deleted Items", 1),
            ("Recoverable Items/Deletions", 1),
            ("Recoverable Items/Purges", 1),
            ("Recoverable Items/Versions", 1),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_online_archive_is_filed_apart_with_its_own_checkpoint() {
    let (h, _) = Harness::new(2);
    let mbx = h.mail.add_archive_mailbox(A).unwrap();
    let projects = h.mail.add_folder(&mbx, Some("Inbox"), "Projects").unwrap();
    h.deliver_to(&mbx, "Inbox", "old-1");
    h.deliver_to(&mbx, &projects, "old-2");
    h.deliver_to(&mbx, "Sent Items", "old-3");

    let report = h.run(&profile()).await;
    assert_eq!(mailbox(&report).messages_archived, 2, "opt-in only");

    let mut p = profile();
    p.folders.archive_mailbox = true;
    let report = h.run(&p).await;
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    assert_eq!(report.mailboxes.len(), 1, "one mailbox, one report");
    assert_eq!(mailbox(&report).messages_archived, 3);
    assert_eq!(
        h.entries(),
        counts(&[
            ("Inbox", 2),
            ("Online Archive/Inbox", 1),
            ("Online Archive/Inbox/Projects", 1),
            ("Online Archive/Sent Items", 1),
        ])
    );
    assert!(h.mail.metrics(&mbx).requests > 0);
    assert!(
        report.requests >= h.mail.metrics(&mbx).requests,
        "counted in the run"
    );
    // Checkpoints of the two never collide: both reruns are incremental.
    let store = CheckpointStore::new(h.dir.path().join("checkpoints"));
    let primary = store.load("adele", A).unwrap();
    let archived = store.load("adele", &mbx).unwrap();
    assert!(!primary.folders.is_empty() && !archived.folders.is_empty());
    assert!(
        primary
            .folders
            .keys()
            .all(|id| !archived.folders.contains_key(id))
    );
    let served = h.served(&mbx);
    h.deliver_to(&mbx, "Inbox", "old-4");
    let report = h.run(&p).await;
    assert_eq!(mailbox(&report).messages_archived, 1);
    assert_eq!(
        h.served(&mbx) - served,
        h.mail
            .mime(&mbx, &h.mail.message_ids(&mbx)[3])
            .unwrap()
            .len() as u64
    );
    // An archive that cannot be reached leaves the primary archived, the mailbox partial.
    h.mail.fail(
        A,
        m365_mailbox::Operation::ArchiveMailbox,
        InjectedFailure::AccessDenied,
    );
    h.deliver("inbox", "new");
    let report = h.run(&p).await;
    assert_eq!(mailbox(&report).status, MailboxStatus::Partial);
    assert!(
        mailbox(&report)
            .error
            .as_deref()
            .unwrap()
            .contains("online archive")
    );
    assert_eq!(mailbox(&report).messages_archived, 1);
}

#[tokio::test]
async fn deletion_rules_never_reach_recoverable_items_or_the_online_archive() {
    let (h, ids) = Harness::new(2);
    let mbx = h.mail.add_archive_mailbox(A).unwrap();
    let in_archive = h.deliver_to(&mbx, "Inbox", "archived-old");
    let deleted = h.deliver("recoverableitemsdeletions", "deleted-old");
    for mode in [DeletionMode::HardDelete, DeletionMode::SoftDelete] {
        let mut p = profile();
        p.folders.archive_mailbox = true;
        p.folders.recoverable_items = RecoverableItems::All;
        p.deletion.mode = mode;
        p.deletion.after_days = 1;
        p.deletion.keep_unread = false;
        let report = h.run(&p).await;
        assert_eq!(report.status, RunStatus::Ok, "{report:?}");
        assert!(h.mail.deletions(&mbx).is_empty(), "{mode:?}");
        assert!(
            h.mail.deletions(A).iter().all(|(id, _)| ids.contains(id)),
            "{mode:?}: {:?}",
            h.mail.deletions(A)
        );
    }
    assert!(h.mail.message(&mbx, &in_archive).is_some());
    assert!(h.mail.message(A, &deleted).is_some());
    assert_eq!(
        h.mail.deletions(A).len(),
        2,
        "the Inbox's mail was deleted (soft deleted into Deletions, then left there)"
    );
}

#[tokio::test]
async fn unconvertible_items_are_listed_retried_a_bounded_number_of_times_and_given_up() {
    let (h, ids) = Harness::new(4);
    let bad = ids[1].clone();
    h.mail.fail_message(A, &bad, InjectedFailure::Unconvertible);
    for run in 1..=4u32 {
        let report = h.run(&profile()).await;
        let m = mailbox(&report);
        assert_eq!(m.status, MailboxStatus::Partial, "run {run}: {m:?}");
        assert_eq!(report.status, RunStatus::Partial);
        let [failure] = m.failures.as_slice() else {
            panic!("run {run}: {:?}", m.failures);
        };
        assert_eq!(failure.id, bad);
        assert_eq!(failure.subject.as_deref(), Some("m1"));
        assert_eq!(failure.folder, "Inbox");
        assert_eq!(failure.kind, FailureKind::Unconvertible);
        assert!(failure.reason.contains("MIME"), "{}", failure.reason);
        let tried = run.min(3);
        assert_eq!(failure.attempts, tried, "run {run}");
        assert_eq!(failure.given_up, run >= 3, "run {run}");
        assert_eq!(
            m.messages_failed,
            u64::from(run <= 3),
            "run {run}: tried while attempts remain"
        );
        if run == 1 {
            assert_eq!(m.messages_archived, 3, "the other messages are archived");
        }
    }
    let json = serde_json::to_value(h.run(&profile()).await).unwrap();
    let listed = &json["mailboxes"][0]["failures"][0];
    for key in ["id", "subject", "folder", "reason"] {
        assert!(listed.get(key).is_some(), "failure lacks {key}: {listed}");
    }

    // With unreadable_items = "ok" such items are listed but the run is ok.
    let (h, ids) = Harness::new(2);
    h.mail
        .fail_message(A, &ids[0], InjectedFailure::Unconvertible);
    let mut p = profile();
    p.run.unreadable_items = UnreadableItems::Ok;
    let report = h.run(&p).await;
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    assert_eq!(mailbox(&report).failures.len(), 1);
    assert_eq!(mailbox(&report).messages_failed, 1);

    // An item the service renders again on a later run is archived then.
    h.mail.clear_failures(A);
    let report = h.run(&p).await;
    assert_eq!(mailbox(&report).messages_archived, 1);
    assert!(mailbox(&report).failures.is_empty());
}
