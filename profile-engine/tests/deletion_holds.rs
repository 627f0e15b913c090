//! Deletion rules and legal holds: a mailbox whose archive is under an active hold keeps
//! its mail in Exchange too, unless the profile says `despite_holds`; a released hold
//! lets deletion go on; holds that cannot be read suspend deletion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use archive_store::MemoryArchiveStore;
use chrono::{Duration, Utc};
use common::{Users, mime};
use directory_sync::MemoryUserStore;
use m365_mailbox::MemoryMailboxSource;
use profile_engine::{
    CancellationToken, CheckpointStore, DeletionMode, Engine, EngineOptions, NoProgress, Profile,
    Select, Source,
};
use retention::{
    FileGovernanceStore, GovernanceState, GovernanceStore, Hold, MemoryGovernanceStore, Release,
    Selector,
};

const A: &str = "adele@contoso.com";
const B: &str = "bert@contoso.com";

struct Tenant {
    dir: tempfile::TempDir,
    mail: Arc<MemoryMailboxSource>,
    users: Arc<MemoryUserStore>,
    archive: Arc<MemoryArchiveStore>,
}

/// Two users with 4 old, read messages each.
fn tenant() -> Tenant {
    let t = Tenant {
        dir: tempfile::tempdir().unwrap(),
        mail: Arc::new(MemoryMailboxSource::new()),
        users: Arc::new(MemoryUserStore::new()),
        archive: Arc::new(MemoryArchiveStore::new()),
    };
    for (name, address) in [("adele", A), ("bert", B)] {
        t.mail.add_mailbox(address);
        t.users.add(name, Some(address), true);
        for i in 0..4 {
            let id = t
                .mail
                .deliver_at(
                    address,
                    "inbox",
                    mime(&format!("{name}-{i}")),
                    Utc::now() - Duration::days(100),
                )
                .unwrap();
            t.mail.update(address, &id, true, false).unwrap();
        }
    }
    t
}

fn profile(despite_holds: bool) -> Profile {
    let mut p = Profile::new(
        "cleanup",
        "contoso",
        Source::Multiple {
            select: Select::All,
            users: vec![],
            sync_directory_first: false,
            mailbox_kinds: profile_engine::MailboxKinds::default(),
        },
    );
    p.deletion.mode = DeletionMode::HardDelete;
    p.deletion.after_days = 30;
    p.deletion.despite_holds = despite_holds;
    p
}

fn hold(case: &str, users: &[&str]) -> Hold {
    Hold {
        case: case.into(),
        reason: "litigation".into(),
        scope: Selector {
            users: users.iter().map(|u| u.to_string()).collect(),
            ..Selector::default()
        },
        created: Utc::now(),
        created_by: "counsel".into(),
        released: None,
    }
}

/// Runs the profile once and answers (deleted in A, deleted in B, held cases per mailbox).
async fn check(
    t: &Tenant,
    governance: Arc<dyn GovernanceStore>,
    despite_holds: bool,
    expected: (usize, usize, Vec<(&str, Vec<String>)>),
) {
    let engine = Engine::builder()
        .mailbox_source(t.mail.clone())
        .user_store(t.users.clone())
        .archive_store(t.archive.clone())
        .checkpoints(CheckpointStore::new(t.dir.path().join("checkpoints")))
        .governance(governance)
        .options(EngineOptions::default())
        .build()
        .unwrap();
    let report = engine
        .run(
            &profile(despite_holds),
            &CancellationToken::new(),
            &NoProgress,
        )
        .await
        .unwrap();
    let held: Vec<(&str, Vec<String>)> = [A, B]
        .into_iter()
        .map(|m| {
            let r = report.mailboxes.iter().find(|r| r.mailbox == m).unwrap();
            (m, r.deletion_held.clone())
        })
        .collect();
    assert_eq!(
        (t.mail.deletions(A).len(), t.mail.deletions(B).len(), held),
        expected
    );
}

#[tokio::test]
async fn a_held_mailbox_keeps_its_mail_until_the_hold_is_released() {
    let t = tenant();
    let governance = Arc::new(MemoryGovernanceStore::new());
    let mut state = GovernanceState::default();
    state.holds.push(hold("acme-v-contoso", &["adele"]));
    governance.save(&state).unwrap();
    check(
        &t,
        governance.clone(),
        false,
        (0, 4, vec![(A, vec!["acme-v-contoso".into()]), (B, vec![])]),
    )
    .await;

    state.holds[0].released = Some(Release {
        at: Utc::now(),
        by: "counsel".into(),
        reason: "settled".into(),
    });
    governance.save(&state).unwrap();
    check(
        &t,
        governance,
        false,
        (4, 4, vec![(A, vec![]), (B, vec![])]),
    )
    .await;
}

#[tokio::test]
async fn a_hold_naming_no_user_holds_every_mailbox_and_despite_holds_overrides_it() {
    let t = tenant();
    let governance = Arc::new(MemoryGovernanceStore::new());
    let mut state = GovernanceState::default();
    let mut everyone = hold("sec-inquiry", &[]);
    everyone.scope.query = Some("invoice".into());
    state.holds.push(everyone);
    governance.save(&state).unwrap();
    let held = vec!["sec-inquiry".to_string()];
    check(
        &t,
        governance.clone(),
        false,
        (0, 0, vec![(A, held.clone()), (B, held)]),
    )
    .await;
    check(&t, governance, true, (4, 4, vec![(A, vec![]), (B, vec![])])).await;
}

#[tokio::test]
async fn unreadable_holds_suspend_deletion_and_say_why() {
    let t = tenant();
    let store = FileGovernanceStore::open(t.dir.path().join("governance")).unwrap();
    std::fs::write(store.path(), b"{ not json").unwrap();
    let engine_governance: Arc<dyn GovernanceStore> = Arc::new(store);
    let engine = Engine::builder()
        .mailbox_source(t.mail.clone())
        .user_store(t.users.clone())
        .archive_store(t.archive.clone())
        .checkpoints(CheckpointStore::new(t.dir.path().join("checkpoints")))
        .governance(engine_governance)
        .build()
        .unwrap();
    let report = engine
        .run(&profile(false), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert!(t.mail.deletions(A).is_empty() && t.mail.deletions(B).is_empty());
    for r in &report.mailboxes {
        assert_eq!(r.messages_archived, 4, "{}: archiving goes on", r.mailbox);
        let [why] = r.deletion_held.as_slice() else {
            panic!("{}: {:?}", r.mailbox, r.deletion_held)
        };
        assert!(why.contains("governance.json"), "{why}");
    }
}
