//! The engine over the crates' in-memory mail service, user store and archive:
//! selection, isolation of failures, incremental reruns, resume after
//! cancellation, folder rules, filters and deletion rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use archive_store::{ArchiveStore, MemoryArchiveStore};
use chrono::{DateTime, Duration, Utc};
use common::{Archived, Users, mime};
use directory_sync::MemoryUserStore;
use m365_mailbox::{DeleteMode, InjectedFailure, MailboxSource, MemoryMailboxSource, Operation};
use profile_engine::{
    CancellationToken, CheckpointStore, DeletionMode, Engine, EngineError, EngineOptions,
    MailboxStatus, NoProgress, Profile, ProgressEvent, RunHistory, RunStatus, Select, Source,
};

const A: &str = "adele@contoso.com";
const B: &str = "bert@contoso.com";
const NOBOX: &str = "nobox@contoso.com";
const DENIED: &str = "denied@contoso.com";

struct Harness {
    dir: tempfile::TempDir,
    mail: Arc<MemoryMailboxSource>,
    users: Arc<MemoryUserStore>,
    archive: Arc<MemoryArchiveStore>,
}

impl Harness {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            mail: Arc::new(MemoryMailboxSource::new()),
            users: Arc::new(MemoryUserStore::new()),
            archive: Arc::new(MemoryArchiveStore::new()),
        }
    }

    fn engine_at(&self, now: Option<DateTime<Utc>>) -> Engine {
        Engine::builder()
            .mailbox_source(self.mail.clone())
            .user_store(self.users.clone())
            .archive_store(self.archive.clone())
            .checkpoints(CheckpointStore::new(self.dir.path().join("checkpoints")))
            .options(EngineOptions {
                now,
                lock_dir: Some(self.dir.path().join("locks")),
                history: Some(RunHistory::new(self.dir.path().join("history"))),
                ..EngineOptions::default()
            })
            .build()
            .unwrap()
    }

    fn engine(&self) -> Engine {
        self.engine_at(None)
    }

    /// A mailbox with `n` messages spread over Inbox, Sent Items and Inbox/Projects.
    fn mailbox(&self, address: &str, n: usize) -> Vec<String> {
        self.mail.add_mailbox(address);
        let projects = self
            .mail
            .add_folder(address, Some("inbox"), "Projects")
            .unwrap();
        (0..n)
            .map(|i| {
                let folder = match i % 3 {
                    0 => "inbox".to_owned(),
                    1 => "sentitems".to_owned(),
                    _ => projects.clone(),
                };
                self.mail
                    .deliver(address, &folder, mime(&format!("{address}-{i}")))
                    .unwrap()
            })
            .collect()
    }
}

fn all_profile() -> Profile {
    Profile::new(
        "all-staff",
        "contoso",
        Source::Multiple {
            select: Select::All,
            users: vec![],
            sync_directory_first: false,
            mailbox_kinds: profile_engine::MailboxKinds::default(),
        },
    )
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// The standard tenant: two readable mailboxes, one user without mailbox, one
/// denied by policy, one disabled, one without email.
fn tenant(h: &Harness) -> (Vec<String>, Vec<String>) {
    let a = h.mailbox(A, 12);
    let b = h.mailbox(B, 7);
    h.mail.add_mailbox(NOBOX);
    h.mail
        .fail(NOBOX, Operation::Any, InjectedFailure::NoMailbox);
    h.mailbox(DENIED, 3);
    h.mail
        .fail(DENIED, Operation::Any, InjectedFailure::AccessDenied);
    h.mailbox("disabled@contoso.com", 2);
    h.users.add("adele", Some(A), true);
    h.users.add("bert", Some(B), true);
    h.users.add("nobox", Some(NOBOX), true);
    h.users.add("denied", Some(DENIED), true);
    h.users.add("disabled", Some("disabled@contoso.com"), false);
    h.users.add("nomail", None, true);
    (a, b)
}

#[tokio::test]
async fn multi_mailbox_run_archives_every_message_and_isolates_failures() {
    let h = Harness::new();
    let (a, b) = tenant(&h);
    let report = h
        .engine()
        .run(&all_profile(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();

    assert_eq!(report.status, RunStatus::Partial);
    let by = |m: &str| {
        report
            .mailboxes
            .iter()
            .find(|r| r.mailbox == m)
            .unwrap()
            .clone()
    };
    assert_eq!(
        report.mailboxes.len(),
        4,
        "disabled and email-less users are not selected"
    );
    assert_eq!(by(A).status, MailboxStatus::Ok);
    assert_eq!(by(A).messages_archived, 12);
    assert_eq!(by(B).messages_archived, 7);
    assert_eq!(by(NOBOX).status, MailboxStatus::Skipped);
    assert!(
        by(NOBOX)
            .error
            .unwrap()
            .contains("no Exchange Online mailbox")
    );
    assert_eq!(by(DENIED).status, MailboxStatus::Failed);
    assert!(by(DENIED).error.is_some());
    assert_eq!(h.archive.archived("adele"), sorted(a));
    assert_eq!(h.archive.archived("bert"), sorted(b));
    assert!(h.archive.archived("denied").is_empty());
    assert_eq!(report.totals.messages_archived, 19);
    assert_eq!(report.totals.mailboxes_skipped, 1);
    assert_eq!(report.totals.mailboxes_failed, 1);
    assert!(h.users.get_user("adele").has_archive);
    assert!(!h.users.get_user("nobox").has_archive);

    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "profile",
        "status",
        "mailboxes",
        "totals",
        "requests",
        "throttled",
        "retries",
        "duration_secs",
    ] {
        assert!(json.get(key).is_some(), "report lacks {key}");
    }
    let first = &json["mailboxes"][0];
    for key in [
        "mailbox",
        "status",
        "folders",
        "messages_archived",
        "messages_duplicate",
        "messages_failed",
        "bytes",
        "deleted",
    ] {
        assert!(first.get(key).is_some(), "mailbox report lacks {key}");
    }
    let history = RunHistory::new(h.dir.path().join("history"))
        .list("all-staff")
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].report, report);
}

#[tokio::test]
async fn rerun_downloads_nothing_and_a_delivered_message_is_archived_once() {
    let h = Harness::new();
    h.mailbox(A, 9);
    h.users.add("adele", Some(A), true);
    let engine = h.engine();
    let profile = all_profile();
    engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    let downloaded = h.mail.metrics(A).bytes;
    let before = h.mail.metrics(A).requests;

    let again = engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(again.status, RunStatus::Ok);
    assert_eq!(
        again.totals.messages_archived + again.totals.messages_duplicate,
        0
    );
    assert_eq!(
        h.mail.metrics(A).bytes,
        downloaded,
        "nothing downloaded again"
    );
    let folders = again.mailboxes[0].folders;
    // probe + folder tree + Recoverable Items' tree + one delta request per folder.
    assert_eq!(h.mail.metrics(A).requests - before, 3 + folders);

    let id = h.mail.deliver(A, "inbox", mime("late")).unwrap();
    let third = engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(third.totals.messages_archived, 1);
    let late = h.mail.mime(A, &id).unwrap().len() as u64;
    assert_eq!(h.mail.metrics(A).bytes, downloaded + late);
    assert!(h.archive.archived("adele").contains(&id));
}

#[tokio::test]
async fn cancelled_run_resumes_without_loss_or_duplicates() {
    let h = Harness::new();
    let ids = h.mailbox(A, 40);
    h.users.add("adele", Some(A), true);
    let engine = h.engine();
    let profile = all_profile();
    let cancel = CancellationToken::new();
    let seen = AtomicUsize::new(0);
    let progress = |e: ProgressEvent| {
        if matches!(e, ProgressEvent::MessageArchived { .. })
            && seen.fetch_add(1, Ordering::SeqCst) == 5
        {
            cancel.cancel();
        }
    };
    let first = engine.run(&profile, &cancel, &progress).await.unwrap();
    assert_eq!(first.status, RunStatus::Cancelled);
    let partial = first.totals.messages_archived;
    assert!(
        (6..40).contains(&partial),
        "stopped after the messages in hand: {partial}"
    );
    assert_eq!(h.archive.archived("adele").len() as u64, partial);

    let second = engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(second.status, RunStatus::Ok);
    assert_eq!(
        first.totals.messages_archived + second.totals.messages_archived,
        40
    );
    assert_eq!(
        h.archive.archived("adele"),
        sorted(ids),
        "every message exactly once"
    );
}

#[tokio::test]
async fn rejected_cursors_relist_without_downloading_again() {
    let h = Harness::new();
    h.mailbox(A, 10);
    h.users.add("adele", Some(A), true);
    let engine = h.engine();
    engine
        .run(&all_profile(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    let downloaded = h.mail.metrics(A).bytes;
    h.mail.expire_cursors(A);
    let report = engine
        .run(&all_profile(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok);
    assert_eq!(report.totals.messages_archived, 0);
    assert_eq!(report.totals.messages_duplicate, 10);
    assert_eq!(
        h.mail.metrics(A).bytes,
        downloaded,
        "nothing downloaded again"
    );
    assert_eq!(h.archive.archived("adele").len(), 10);
}

#[tokio::test]
async fn failed_download_keeps_the_cursor_and_is_retried_next_run() {
    let h = Harness::new();
    let ids = h.mailbox(A, 6);
    h.users.add("adele", Some(A), true);
    h.mail
        .fail_message(A, &ids[0], InjectedFailure::RetriesExhausted);
    let engine = h.engine();
    let report = engine
        .run(&all_profile(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Partial);
    assert_eq!(report.mailboxes[0].status, MailboxStatus::Partial);
    assert_eq!(report.totals.messages_failed, 1);
    assert_eq!(report.totals.messages_archived, 5);
    h.mail.clear_failures(A);
    let report = engine
        .run(&all_profile(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok);
    assert_eq!(report.totals.messages_archived, 1);
    assert_eq!(h.archive.archived("adele"), sorted(ids));
}

#[tokio::test]
async fn single_mailbox_goes_to_the_target_users_archive() {
    let h = Harness::new();
    let ids = h.mailbox("shared@contoso.com", 5);
    h.users.add("carol", Some("carol@contoso.com"), true);
    let profile = Profile::new(
        "shared",
        "contoso",
        Source::Single {
            mailbox: "shared@contoso.com".into(),
            target_user: "carol".into(),
        },
    );
    let report = h
        .engine()
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.totals.messages_archived, 5);
    assert_eq!(h.archive.archived("carol"), sorted(ids));
    assert!(h.users.get_user("carol").has_archive);

    let missing = Profile::new(
        "shared2",
        "contoso",
        Source::Single {
            mailbox: "shared@contoso.com".into(),
            target_user: "zed".into(),
        },
    );
    let err = h
        .engine()
        .run(&missing, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::TargetUserMissing { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("\"zed\""));
}

#[tokio::test]
async fn only_and_all_except_choose_users_and_report_unknown_names() {
    let h = Harness::new();
    tenant(&h);
    let mut profile = all_profile();
    profile.source = Source::Multiple {
        select: Select::Only,
        users: vec!["ADELE".into(), B.into(), "ghost".into()],
        sync_directory_first: false,
        mailbox_kinds: profile_engine::MailboxKinds::default(),
    };
    let report = h
        .engine()
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    let names: Vec<&str> = report
        .mailboxes
        .iter()
        .map(|m| m.mailbox.as_str())
        .collect();
    assert_eq!(names, vec![A, B, "ghost"]);
    let ghost = &report.mailboxes[2];
    assert_eq!(ghost.status, MailboxStatus::Failed);
    assert!(ghost.error.as_deref().unwrap().contains("ghost"));

    profile.name = "except".into();
    profile.source = Source::Multiple {
        select: Select::AllExcept,
        users: vec!["denied".into(), NOBOX.into()],
        sync_directory_first: false,
        mailbox_kinds: profile_engine::MailboxKinds::default(),
    };
    let report = h
        .engine()
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    let names: Vec<&str> = report
        .mailboxes
        .iter()
        .map(|m| m.mailbox.as_str())
        .collect();
    assert_eq!(names, vec![A, B]);
    assert_eq!(report.status, RunStatus::Ok);

    let test = h.engine().test(&all_profile()).await.unwrap();
    assert!(!test.ok);
    let readable: Vec<&str> = test
        .mailboxes
        .iter()
        .filter(|m| m.readable)
        .map(|m| m.mailbox.as_str())
        .collect();
    assert_eq!(readable, vec![A, B]);
    assert!(
        test.mailboxes
            .iter()
            .all(|m| m.readable || m.error.is_some())
    );
}

#[tokio::test]
async fn folder_rules_include_exclude_subfolders_and_search_folders() {
    let h = Harness::new();
    h.mail.add_mailbox(A);
    h.users.add("adele", Some(A), true);
    let projects = h.mail.add_folder(A, Some("inbox"), "Projects").unwrap();
    let deep = h.mail.add_folder(A, Some(&projects), "Deep").unwrap();
    let search = h
        .mail
        .add_folder_with(A, None, "Unread Mail", false, true)
        .unwrap();
    let put = |folder: &str, tag: &str| h.mail.deliver(A, folder, mime(tag)).unwrap();
    let inbox = put("inbox", "i");
    let proj = put(&projects, "p");
    let deep_msg = put(&deep, "d");
    let sent = put("sentitems", "s");
    let junk = put("junkemail", "j");
    let _ = search;

    let run = |include: Vec<&str>, exclude: Vec<&str>, subfolders: bool, name: &str| {
        let mut p = all_profile();
        p.name = name.into();
        p.folders.include = include.into_iter().map(String::from).collect();
        p.folders.exclude = exclude.into_iter().map(String::from).collect();
        p.folders.include_subfolders = subfolders;
        p
    };
    let cases: Vec<(Profile, Vec<&String>)> = vec![
        (
            run(vec!["Inbox"], vec![], true, "c1"),
            vec![&inbox, &proj, &deep_msg],
        ),
        (run(vec!["inbox"], vec![], false, "c2"), vec![&inbox]),
        (
            run(vec![], vec!["Inbox/Projects", "junkemail"], true, "c3"),
            vec![&inbox, &sent],
        ),
        (
            run(
                vec!["sentitems", "inbox/projects/deep"],
                vec![],
                false,
                "c4",
            ),
            vec![&sent, &deep_msg],
        ),
        (
            run(vec![], vec![], true, "c5"),
            vec![&inbox, &proj, &deep_msg, &sent, &junk],
        ),
    ];
    for (profile, expected) in cases {
        let fresh = Arc::new(MemoryArchiveStore::new());
        let engine = Engine::builder()
            .mailbox_source(h.mail.clone())
            .user_store(h.users.clone())
            .archive_store(fresh.clone())
            .checkpoints(CheckpointStore::new(h.dir.path().join(&profile.name)))
            .build()
            .unwrap();
        let report = engine
            .run(&profile, &CancellationToken::new(), &NoProgress)
            .await
            .unwrap();
        assert_eq!(report.status, RunStatus::Ok, "{}", profile.name);
        let expected: Vec<String> = sorted(expected.into_iter().cloned().collect());
        assert_eq!(fresh.archived("adele"), expected, "case {}", profile.name);
    }
}

#[tokio::test]
async fn age_filters_archive_old_mail_now_and_young_mail_once_it_is_old_enough() {
    let h = Harness::new();
    h.mail.add_mailbox(A);
    h.users.add("adele", Some(A), true);
    let now = Utc::now();
    let old = h
        .mail
        .deliver_at(A, "inbox", mime("old"), now - Duration::days(40))
        .unwrap();
    let young = h
        .mail
        .deliver_at(A, "inbox", mime("young"), now - Duration::days(3))
        .unwrap();
    let ancient = h
        .mail
        .deliver_at(A, "inbox", mime("ancient"), now - Duration::days(400))
        .unwrap();
    let mut profile = all_profile();
    profile.filter.older_than_days = 10;
    profile.filter.received_after = Some((now - Duration::days(365)).fixed_offset());

    let report = h
        .engine_at(Some(now))
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.totals.messages_archived, 1);
    assert_eq!(h.archive.archived("adele"), vec![old.clone()]);
    assert!(
        !h.archive.archived("adele").contains(&ancient),
        "received_after excludes it"
    );

    // A week later the young message has come of age, though the mailbox did not change.
    let later = h.engine_at(Some(now + Duration::days(8)));
    let report = later
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.totals.messages_archived, 1);
    assert_eq!(h.archive.archived("adele"), sorted(vec![old, young]));
}

#[tokio::test]
async fn deletion_removes_exactly_the_verified_old_read_messages() {
    let h = Harness::new();
    h.mail.add_mailbox(A);
    h.users.add("adele", Some(A), true);
    let now = Utc::now();
    let mut old_read = Vec::new();
    let mut keep = Vec::new();
    for i in 0..6 {
        let id = h
            .mail
            .deliver_at(
                A,
                "inbox",
                mime(&format!("old{i}")),
                now - Duration::days(31 + i),
            )
            .unwrap();
        h.mail.update(A, &id, true, false).unwrap();
        old_read.push(id);
    }
    let unread = h
        .mail
        .deliver_at(A, "inbox", mime("old-unread"), now - Duration::days(60))
        .unwrap();
    keep.push(unread.clone());
    for i in 0..3 {
        let id = h
            .mail
            .deliver_at(
                A,
                "sentitems",
                mime(&format!("young{i}")),
                now - Duration::days(5),
            )
            .unwrap();
        h.mail.update(A, &id, true, false).unwrap();
        keep.push(id);
    }
    // This old, read message cannot be archived: it must stay.
    let poisoned = h
        .mail
        .deliver_at(A, "inbox", mime("POISON"), now - Duration::days(90))
        .unwrap();
    h.mail.update(A, &poisoned, true, false).unwrap();
    h.archive.refuse_writes_containing(Some(b"POISON"));

    let mut profile = all_profile();
    profile.deletion.mode = DeletionMode::MoveToDeletedItems;
    profile.deletion.after_days = 30;
    profile.deletion.keep_unread = true;
    let engine = h.engine_at(Some(now));
    let report = engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.totals.deleted, 6);
    assert_eq!(report.totals.messages_failed, 1);
    let deleted: Vec<String> = sorted(
        h.mail
            .deletions(A)
            .into_iter()
            .map(|(id, mode)| {
                assert_eq!(mode, DeleteMode::MoveToDeletedItems);
                id
            })
            .collect(),
    );
    assert_eq!(deleted, sorted(old_read.clone()));
    let deleted_items = h.mail.folder_id(A, "deleteditems").unwrap();
    for id in &old_read {
        assert_eq!(h.mail.message(A, id).unwrap().folder_id, deleted_items);
    }
    for id in keep.iter().chain([&poisoned]) {
        assert_ne!(
            h.mail.message(A, id).unwrap().folder_id,
            deleted_items,
            "{id} must stay"
        );
    }

    // Once read, the old unread message goes too; the young ones go after their 30 days.
    h.mail.update(A, &unread, true, false).unwrap();
    h.archive.refuse_writes_containing(None);
    let report = engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        report.totals.deleted, 2,
        "the unread one (now read) and the once-failed one"
    );
    let much_later = h.engine_at(Some(now + Duration::days(26)));
    let report = much_later
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.totals.deleted, 3);
    assert_eq!(h.mail.deletions(A).len(), 11);
    // Everything deleted is in the archive.
    let archived = h.archive.archived("adele");
    for (id, _) in h.mail.deletions(A) {
        assert!(archived.contains(&id));
    }
}

#[tokio::test]
async fn nothing_is_deleted_when_the_archive_fails_every_write() {
    let h = Harness::new();
    h.mail.add_mailbox(A);
    h.users.add("adele", Some(A), true);
    let now = Utc::now();
    for i in 0..5 {
        let id = h
            .mail
            .deliver_at(
                A,
                "inbox",
                mime(&format!("m{i}")),
                now - Duration::days(100),
            )
            .unwrap();
        h.mail.update(A, &id, true, false).unwrap();
    }
    h.archive.refuse_writes_containing(Some(b""));
    let mut profile = all_profile();
    profile.deletion.mode = DeletionMode::HardDelete;
    profile.deletion.after_days = 1;
    profile.deletion.keep_unread = false;
    let report = h
        .engine_at(Some(now))
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert!(report.totals.messages_failed >= 3);
    assert_eq!(report.totals.messages_archived, 0);
    assert_eq!(report.totals.deleted, 0);
    assert!(h.mail.deletions(A).is_empty());
    assert_eq!(h.mail.message_ids(A).len(), 5);
}

#[tokio::test]
async fn one_profile_never_runs_twice_at_once() {
    let h = Harness::new();
    h.mailbox(A, 1);
    h.users.add("adele", Some(A), true);
    let held = profile_engine::RunLock::acquire(&h.dir.path().join("locks"), "all-staff").unwrap();
    let err = h
        .engine()
        .run(&all_profile(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::AlreadyRunning { .. }), "{err}");
    drop(held);
    h.engine()
        .run(&all_profile(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
}

#[tokio::test]
async fn nothing_is_deleted_when_the_archived_copy_fails_verification() {
    let h = Harness::new();
    h.mail.add_mailbox(A);
    h.users.add("adele", Some(A), true);
    let now = Utc::now();
    for i in 0..4 {
        let id = h
            .mail
            .deliver_at(
                A,
                "inbox",
                mime(&format!("m{i}")),
                now - Duration::days(100),
            )
            .unwrap();
        h.mail.update(A, &id, true, false).unwrap();
    }
    h.archive.set_damaged(true);
    let mut profile = all_profile();
    profile.deletion.mode = DeletionMode::SoftDelete;
    profile.deletion.after_days = 30;
    let engine = h.engine_at(Some(now));
    let report = engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.totals.messages_archived, 4);
    assert_eq!(report.totals.deleted, 0);
    assert!(h.mail.deletions(A).is_empty());

    // Once the archive verifies again, the remembered messages are deleted.
    h.archive.set_damaged(false);
    let report = engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.totals.deleted, 4);
    assert_eq!(h.mail.message_ids(A).len(), 0);
}

fn source(id: &str) -> archive_store::SourceRef {
    archive_store::SourceRef {
        mailbox: A.to_owned(),
        message_id: id.to_owned(),
    }
}

#[tokio::test]
async fn spooled_messages_are_archived_and_verified_from_their_files() {
    let h = Harness::new();
    h.mail.add_mailbox(A);
    h.mail.set_spool_threshold(Some(16));
    h.users.add("adele", Some(A), true);
    let now = Utc::now();
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = h
            .mail
            .deliver_at(
                A,
                "inbox",
                mime(&format!("big{i}")),
                now - Duration::days(50),
            )
            .unwrap();
        h.mail.update(A, &id, true, false).unwrap();
        ids.push(id);
    }
    let mut profile = all_profile();
    profile.deletion.mode = DeletionMode::HardDelete;
    profile.deletion.after_days = 30;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let report = h
        .engine_at(Some(now))
        .run(&profile, &CancellationToken::new(), &tx)
        .await
        .unwrap();
    assert_eq!(report.totals.messages_archived, 5);
    assert_eq!(report.totals.deleted, 5);
    let expected_bytes: u64 = ids
        .iter()
        .map(|id| {
            let stored = h
                .archive
                .find_source("adele", &source(id))
                .unwrap()
                .unwrap();
            h.archive.read_message(&stored).unwrap().len() as u64
        })
        .sum();
    assert_eq!(report.totals.bytes, expected_bytes);
    drop(tx);
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    assert!(matches!(
        events.first(),
        Some(ProgressEvent::RunStarted { mailboxes: 1, .. })
    ));
    assert!(matches!(
        events.last(),
        Some(ProgressEvent::RunFinished {
            status: RunStatus::Ok
        })
    ));
    let archived: u64 = events
        .iter()
        .map(|e| match e {
            ProgressEvent::MessageArchived { bytes, .. } => *bytes,
            _ => 0,
        })
        .sum();
    assert_eq!(archived, expected_bytes);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, ProgressEvent::MessageDeleted { .. }))
            .count(),
        5
    );
}

#[tokio::test]
async fn corrupt_checkpoint_fails_its_mailbox_naming_the_file_and_history_survives_a_torn_line() {
    let h = Harness::new();
    h.mailbox(A, 3);
    h.mailbox(B, 2);
    h.users.add("adele", Some(A), true);
    h.users.add("bert", Some(B), true);
    let engine = h.engine();
    engine
        .run(&all_profile(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    let dir = h.dir.path().join("checkpoints").join("all-staff");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "one checkpoint per mailbox");
    let store = CheckpointStore::new(h.dir.path().join("checkpoints"));
    let target = files
        .iter()
        .find(|f| std::fs::read_to_string(f).unwrap().contains(A))
        .unwrap();
    std::fs::write(target, b"{ torn").unwrap();
    let err = store.load("all-staff", A).unwrap_err().to_string();
    assert!(err.contains(&target.display().to_string()), "{err}");

    let report = engine
        .run(&all_profile(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    let a = report.mailboxes.iter().find(|m| m.mailbox == A).unwrap();
    assert_eq!(a.status, MailboxStatus::Failed);
    assert!(a.error.as_deref().unwrap().contains("checkpoint"));
    assert_eq!(
        report
            .mailboxes
            .iter()
            .find(|m| m.mailbox == B)
            .unwrap()
            .status,
        MailboxStatus::Ok
    );

    let history_file = h.dir.path().join("history").join("all-staff.jsonl");
    let mut text = std::fs::read_to_string(&history_file).unwrap();
    text.push_str("{\"started_at\": \"2025-");
    std::fs::write(&history_file, text).unwrap();
    let history = RunHistory::new(h.dir.path().join("history"));
    assert_eq!(history.list("all-staff").unwrap().len(), 2);
    assert_eq!(history.last("all-staff").unwrap().unwrap().report, report);
}

#[tokio::test]
async fn oversized_messages_are_reported_without_holding_the_cursor_back() {
    let h = Harness::new();
    h.mailbox(A, 4);
    h.users.add("adele", Some(A), true);
    let engine = Engine::builder()
        .mailbox_source(h.mail.clone())
        .user_store(h.users.clone())
        .archive_store(h.archive.clone())
        .checkpoints(CheckpointStore::new(h.dir.path().join("checkpoints")))
        .options(EngineOptions {
            max_message_bytes: 10,
            ..EngineOptions::default()
        })
        .build()
        .unwrap();
    let report = engine
        .run(&all_profile(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.totals.messages_failed, 4);
    assert!(
        report.mailboxes[0]
            .error
            .as_deref()
            .unwrap()
            .contains("4 message(s)")
    );
    let again = engine
        .run(&all_profile(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        again.totals.messages_failed, 0,
        "cursors advanced past what can never be archived"
    );
    assert_eq!(again.status, RunStatus::Ok);
}

#[tokio::test]
async fn a_mailbox_wide_error_mid_run_stops_that_mailbox_only() {
    let h = Harness::new();
    h.mailbox(A, 6);
    h.mailbox(B, 6);
    h.users.add("adele", Some(A), true);
    h.users.add("bert", Some(B), true);
    h.mail
        .fail(A, Operation::Changes, InjectedFailure::AccessDenied);
    let report = h
        .engine()
        .run(&all_profile(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    let a = report.mailboxes.iter().find(|m| m.mailbox == A).unwrap();
    assert_eq!(a.status, MailboxStatus::Failed);
    assert_eq!(
        a.folders, 1,
        "no other folder is tried once access is denied"
    );
    assert!(a.error.as_deref().unwrap().contains("folder"));
    let b = report.mailboxes.iter().find(|m| m.mailbox == B).unwrap();
    assert_eq!(b.status, MailboxStatus::Ok);
    assert_eq!(b.messages_archived, 6);
    assert_eq!(report.status, RunStatus::Partial);
}

#[tokio::test]
async fn a_broken_archive_stops_the_mailbox_instead_of_downloading_everything() {
    let h = Harness::new();
    h.mailbox(A, 60);
    h.users.add("adele", Some(A), true);
    h.archive.refuse_writes_containing(Some(b""));
    let report = h
        .engine()
        .run(&all_profile(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    let a = &report.mailboxes[0];
    assert_eq!(a.status, MailboxStatus::Failed);
    assert!(
        a.messages_failed < 10,
        "stopped early, not after all 60: {}",
        a.messages_failed
    );
    assert!(
        a.error
            .as_deref()
            .unwrap()
            .contains("refused 3 writes in a row"),
        "{:?}",
        a.error
    );

    h.archive.refuse_writes_containing(None);
    let report = h
        .engine()
        .run(&all_profile(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok);
    assert_eq!(h.archive.archived("adele").len(), 60);
}

#[tokio::test]
async fn runs_can_be_spawned_on_the_runtime() {
    let h = Harness::new();
    h.mailbox(A, 2);
    h.users.add("adele", Some(A), true);
    let engine = Arc::new(h.engine());
    let task = tokio::spawn(async move {
        let profile = all_profile();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let run = engine.run(&profile, &CancellationToken::new(), &tx).await;
        let test = engine.test(&profile).await;
        (run, test)
    });
    let (run, test) = task.await.unwrap();
    assert_eq!(run.unwrap().totals.messages_archived, 2);
    assert!(test.unwrap().ok);
}

fn assert_send<T: Send>(_: T) {}
fn assert_send_sync<T: Send + Sync>() {}

/// Compile-time proof, for every lifetime and any progress sink, that the futures of
/// `run` and `test` are `Send` (so `tokio::spawn` takes them); never called.
#[allow(dead_code)]
fn run_and_test_futures_are_send(
    engine: &Engine,
    profile: &Profile,
    cancel: &CancellationToken,
    progress: &dyn profile_engine::ProgressSink,
) {
    assert_send_sync::<Engine>();
    assert_send(engine.run(profile, cancel, progress));
    assert_send(engine.test(profile));
}
