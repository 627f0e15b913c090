//! Tests of the mailbox-kind rules of a sync over the in-memory directory and store.

use super::*;
use crate::{MemoryDirectorySource, MemoryUserStore};

fn mailbox(id: &str, mail: &str, enabled: bool) -> DirectoryUser {
    DirectoryUser {
        id: id.into(),
        user_principal_name: mail.into(),
        display_name: Some(format!("Mailbox {id}")),
        mail: Some(mail.into()),
        proxy_addresses: vec![format!("SMTP:{mail}")],
        account_enabled: enabled,
        user_type: UserType::Member,
    }
}

/// Two people, a departed person (disabled), info@ and support@ (shared), a room and a
/// projector; all but the people are disabled accounts.
fn tenant() -> MemoryDirectorySource {
    let dir = MemoryDirectorySource::with_users([
        mailbox("a", "ann@x.com", true),
        mailbox("b", "bob@x.com", true),
        mailbox("d", "former@x.com", false),
        mailbox("i", "info@x.com", false),
        mailbox("s", "support@x.com", false),
        mailbox("r", "boardroom@x.com", false),
        mailbox("e", "projector@x.com", false),
    ]);
    for (id, kind) in [
        ("i", MailboxKind::Shared),
        ("s", MailboxKind::Shared),
        ("r", MailboxKind::Room),
        ("e", MailboxKind::Equipment),
    ] {
        dir.set_kind(id, kind);
    }
    dir
}

async fn run(
    dir: &MemoryDirectorySource,
    store: &MemoryUserStore,
    options: SyncOptions,
) -> SyncReport {
    sync(dir, store, &options).await.unwrap()
}

/// Every local user as (name, kind, enabled).
fn kinds(store: &MemoryUserStore) -> Vec<(String, Option<MailboxKind>, bool)> {
    store
        .list()
        .unwrap()
        .into_iter()
        .map(|u| (u.name, u.kind, u.enabled))
        .collect()
}

fn row(name: &str, kind: MailboxKind) -> (String, Option<MailboxKind>, bool) {
    (name.to_owned(), Some(kind), true)
}

#[tokio::test]
async fn shared_mailboxes_are_synchronised_and_rooms_skipped_with_the_reason() {
    let (dir, store) = (tenant(), MemoryUserStore::new());
    let report = run(&dir, &store, SyncOptions::default()).await;
    assert_eq!(report.created, ["ann", "bob", "info", "support"]);
    assert_eq!(
        report.skipped,
        vec![
            (
                "boardroom@x.com".to_string(),
                SkipReason::KindNotIncluded {
                    mailbox_kind: MailboxKind::Room
                }
            ),
            ("former@x.com".to_string(), SkipReason::Disabled),
            (
                "projector@x.com".to_string(),
                SkipReason::KindNotIncluded {
                    mailbox_kind: MailboxKind::Equipment
                }
            ),
        ]
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.mailbox_kinds_read, 7);
    assert_eq!(
        kinds(&store),
        vec![
            row("ann", MailboxKind::User),
            row("bob", MailboxKind::User),
            row("info", MailboxKind::Shared),
            row("support", MailboxKind::Shared),
        ]
    );
    let reason = &report.skipped[0].1;
    assert!(reason.to_string().contains("mailbox_kinds"), "{reason}");
    // Disabled people stay opt-in, and rooms come when asked for.
    let (dir, store) = (tenant(), MemoryUserStore::new());
    let options = SyncOptions {
        include_disabled: true,
        mailbox_kinds: MailboxKinds::all(),
        ..SyncOptions::default()
    };
    let report = run(&dir, &store, options).await;
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.created.len(), 7);
}

#[tokio::test]
async fn kinds_are_read_only_for_users_that_changed() {
    let (dir, store) = (tenant(), MemoryUserStore::new());
    run(&dir, &store, SyncOptions::default()).await;
    assert_eq!(dir.kind_lookups(), 7);
    let quiet = run(&dir, &store, SyncOptions::default()).await;
    assert_eq!(
        dir.kind_lookups(),
        7,
        "a delta without changes reads no kind"
    );
    assert_eq!(quiet.mailbox_kinds_read, 0);
    assert!(!quiet.changed_anything());
    // Bob leaves; his mailbox becomes shared (his account disabled): one lookup.
    dir.set_kind("b", MailboxKind::Shared);
    assert!(dir.update("b", |u| u.account_enabled = false));
    let report = run(&dir, &store, SyncOptions::default()).await;
    assert_eq!(dir.kind_lookups(), 8);
    assert_eq!(report.updated, ["bob"]);
    assert!(report.deactivated.is_empty());
    let bob = store.get("bob").unwrap().unwrap();
    assert!(
        bob.enabled && bob.kind == Some(MailboxKind::Shared),
        "{bob:?}"
    );
    // A full listing (expired token) reads kinds only of users that differ or are new.
    dir.expire_tokens();
    let full = run(&dir, &store, SyncOptions::default()).await;
    assert!(full.full_listing);
    assert_eq!(
        dir.kind_lookups(),
        8 + 3,
        "the three mailboxes skipped last time are new again"
    );
}

#[tokio::test]
async fn a_refused_lookup_warns_keeps_users_and_sees_them_again() {
    let (dir, store) = (tenant(), MemoryUserStore::new());
    dir.deny_kinds(true);
    let report = run(&dir, &store, SyncOptions::default()).await;
    assert_eq!(report.created, ["ann", "bob"]);
    assert_eq!(report.warnings.len(), 1);
    assert!(
        report.warnings[0].contains("MailboxSettings.Read"),
        "{:?}",
        report.warnings
    );
    assert!(store.list().unwrap().iter().all(|u| u.kind.is_none()));
    assert!(
        store.directory_token().unwrap().is_none(),
        "the disabled accounts may be shared mailboxes: the next sync reads them again"
    );
    // Granted: the next sync classifies everyone and brings in the shared mailboxes.
    dir.deny_kinds(false);
    let report = run(&dir, &store, SyncOptions::default()).await;
    assert!(report.warnings.is_empty());
    assert_eq!(report.created, ["info", "support"]);
    assert_eq!(report.updated, ["ann", "bob"], "classified now");
    assert!(store.directory_token().unwrap().is_some());
    assert!(store.list().unwrap().iter().all(|u| u.kind.is_some()));
}

#[tokio::test]
async fn unclassified_users_of_an_earlier_version_are_classified_once() {
    let (dir, store) = (tenant(), MemoryUserStore::new());
    let options = SyncOptions {
        include_disabled: true,
        ..SyncOptions::default()
    };
    run(&dir, &store, options).await;
    // As an earlier version left them: no kinds.
    let unclassified: Vec<LocalUser> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|u| LocalUser { kind: None, ..u })
        .collect();
    store.put_many(&unclassified).unwrap();
    let before = dir.kind_lookups();
    let report = run(&dir, &store, options).await;
    assert_eq!(dir.kind_lookups() - before, unclassified.len() as u64);
    assert_eq!(report.updated.len(), unclassified.len());
    assert_eq!(
        store.get("info").unwrap().unwrap().kind,
        Some(MailboxKind::Shared)
    );
    run(&dir, &store, options).await;
    assert_eq!(dir.kind_lookups() - before, unclassified.len() as u64);
}

#[tokio::test]
async fn a_sync_asking_fewer_kinds_keeps_mailboxes_synchronised_before() {
    let (dir, store) = (tenant(), MemoryUserStore::new());
    let rooms = SyncOptions {
        mailbox_kinds: MailboxKinds::default().with(MailboxKind::Room),
        ..SyncOptions::default()
    };
    let report = run(&dir, &store, rooms).await;
    assert!(report.created.contains(&"boardroom".to_string()));
    assert!(dir.update("r", |u| u.display_name = Some("Board room".into())));
    let report = run(&dir, &store, SyncOptions::default()).await;
    assert_eq!(report.updated, ["boardroom"]);
    assert!(report.deactivated.is_empty());
    let room = store.get("boardroom").unwrap().unwrap();
    assert!(room.enabled && room.kind == Some(MailboxKind::Room));
}
