//! Mailbox kinds in a run over the in-memory stores: a multiple-mailbox profile picks
//! the users whose kind it lists (shared mailboxes included by default, rooms not), a
//! profile that selects nothing fails with the advice to fill the user list, and a
//! refused mailbox is reported with the permissions the profile needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use archive_store::MemoryArchiveStore;
use common::{Archived, mime};
use directory_sync::{LocalUser, MemoryUserStore, Role, UserOrigin, UserStore};
use m365_mailbox::{InjectedFailure, MemoryMailboxSource, Operation};
use profile_engine::{
    CancellationToken, CheckpointStore, DeletionMode, Engine, MailboxKind, MailboxKinds,
    MailboxStatus, NoProgress, Profile, RunReport, RunStatus, Select, Source,
};

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

    /// A synchronised user with a mailbox of `kind` holding two messages.
    fn mailbox(&self, name: &str, kind: Option<MailboxKind>) {
        let address = format!("{name}@contoso.com");
        self.mail.add_mailbox(&address);
        for i in 0..2 {
            self.mail
                .deliver(&address, "inbox", mime(&format!("{name}-{i}")))
                .unwrap();
        }
        self.users
            .put(&LocalUser {
                name: name.to_owned(),
                display_name: None,
                email: Some(address),
                aliases: Vec::new(),
                origin: UserOrigin::Directory {
                    object_id: format!("id-{name}"),
                },
                enabled: true,
                role: Role::User,
                has_archive: false,
                kind,
            })
            .unwrap();
    }

    /// Ann (a person), Old (not classified yet), info (shared), boardroom (a room).
    fn tenant() -> Self {
        let h = Self::new();
        h.mailbox("ann", Some(MailboxKind::User));
        h.mailbox("old", None);
        h.mailbox("info", Some(MailboxKind::Shared));
        h.mailbox("boardroom", Some(MailboxKind::Room));
        h
    }

    async fn run(&self, profile: &Profile) -> RunReport {
        Engine::builder()
            .mailbox_source(self.mail.clone())
            .user_store(self.users.clone())
            .archive_store(self.archive.clone())
            .checkpoints(CheckpointStore::new(self.dir.path().join("checkpoints")))
            .build()
            .unwrap()
            .run(profile, &CancellationToken::new(), &NoProgress)
            .await
            .unwrap()
    }
}

fn profile(select: Select, users: &[&str], kinds: MailboxKinds) -> Profile {
    Profile::new(
        "staff",
        "contoso",
        Source::Multiple {
            select,
            users: users.iter().map(|u| u.to_string()).collect(),
            sync_directory_first: false,
            mailbox_kinds: kinds,
        },
    )
}

fn mailboxes(report: &RunReport) -> Vec<(&str, MailboxStatus)> {
    report
        .mailboxes
        .iter()
        .map(|m| (m.mailbox.as_str(), m.status))
        .collect()
}

#[tokio::test]
async fn the_default_kinds_archive_people_and_shared_mailboxes_not_rooms() {
    let h = Harness::tenant();
    let report = h
        .run(&profile(Select::All, &[], MailboxKinds::default()))
        .await;
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    assert_eq!(
        mailboxes(&report),
        vec![
            ("ann@contoso.com", MailboxStatus::Ok),
            ("info@contoso.com", MailboxStatus::Ok),
            ("old@contoso.com", MailboxStatus::Ok),
        ]
    );
    assert_eq!(h.archive.archived("info").len(), 2);
    assert!(h.archive.archived("boardroom").is_empty());
}

#[tokio::test]
async fn the_listed_kinds_are_archived_and_only_names_the_left_out() {
    let h = Harness::tenant();
    let rooms = MailboxKinds::empty().with(MailboxKind::Room);
    let report = h.run(&profile(Select::All, &[], rooms)).await;
    assert_eq!(
        mailboxes(&report),
        vec![("boardroom@contoso.com", MailboxStatus::Ok)]
    );
    let report = h
        .run(&profile(
            Select::Only,
            &["ann", "boardroom"],
            MailboxKinds::default(),
        ))
        .await;
    assert_eq!(
        mailboxes(&report),
        vec![
            ("ann@contoso.com", MailboxStatus::Ok),
            ("boardroom@contoso.com", MailboxStatus::Failed),
        ]
    );
    let why = report.mailboxes[1].error.as_deref().unwrap();
    assert!(
        why.contains("room mailbox") && why.contains("mailbox_kinds"),
        "{why}"
    );
}

#[tokio::test]
async fn a_profile_selecting_nothing_fails_with_the_advice() {
    let h = Harness::new();
    let report = h
        .run(&profile(Select::All, &[], MailboxKinds::default()))
        .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(report.mailboxes.is_empty());
    let error = report.error.as_deref().unwrap();
    assert!(
        error.contains("users sync --credentials contoso") && error.contains("--sync-directory"),
        "{error}"
    );
    let single = Profile::new(
        "one",
        "contoso",
        Source::Single {
            mailbox: "x@contoso.com".into(),
            target_user: "x".into(),
        },
    );
    assert_eq!(profile_engine::empty_selection_advice(&single), None);
    assert!(
        profile_engine::selected_mailboxes(
            &profile(Select::All, &[], MailboxKinds::default()),
            h.users.as_ref()
        )
        .unwrap()
        .is_empty()
    );
}

#[tokio::test]
async fn a_refused_mailbox_names_the_permission_the_profile_needs() {
    let h = Harness::new();
    h.mailbox("ann", Some(MailboxKind::User));
    h.mail.fail(
        "ann@contoso.com",
        Operation::Any,
        InjectedFailure::AccessDenied,
    );
    let mut p = profile(Select::All, &[], MailboxKinds::default());
    let error = |report: &RunReport| report.mailboxes[0].error.clone().unwrap();
    let report = h.run(&p).await;
    assert_eq!(report.mailboxes[0].status, MailboxStatus::Failed);
    let text = error(&report);
    assert!(
        text.contains("needs the application permission Mail.Read (this profile deletes nothing"),
        "{text}"
    );
    p.deletion.mode = DeletionMode::MoveToDeletedItems;
    let text = error(&h.run(&p).await);
    assert!(
        text.contains("needs the application permission Mail.ReadWrite (this profile deletes"),
        "{text}"
    );
}
