//! Who may restore what: a user their own archive into their own mailbox, an admin only
//! under an unblock, auditors never; ids outside the caller's archives answer like unknown
//! ones (`Forbidden`), unknown archives and ids are clear errors for those who may see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use archive_store::{
    ArchiveRequest, ArchiveStore, DiskArchiveStore, MessageId, RawMessage, StoreOptions,
};
use archiver_service::{
    Account, ErrorCategory, Grant, Principal, RestoreReport, RestoreRequest, Role, Selection,
    Service, ServiceError, ServiceOptions, Unblock,
};
use m365_mailbox::MemoryMailboxSource;

const ALICE_MAILBOX: &str = "alice@contoso.com";

/// alice and bob with one archived message each; alice's mailbox exists in `mail`.
fn setup(root: &Path) -> (Service, MemoryMailboxSource, String, String) {
    let data = root.join("data");
    let store = DiskArchiveStore::open(data.join("archive"), StoreOptions::default()).unwrap();
    let put = |user: &str, subject: &str| {
        let raw = format!("From: x@example.com\r\nSubject: {subject}\r\n\r\nbody\r\n");
        let request = ArchiveRequest {
            user: user.into(),
            folder: "Inbox".into(),
            source: None,
            received: None,
        };
        store
            .archive(&request, RawMessage::Bytes(raw.as_bytes()))
            .unwrap()
            .id
            .0
    };
    let alice = put("alice", "for alice");
    let bob = put("bob", "for bob");
    drop(store);
    let service = Service::new(data, ServiceOptions::default());
    let admin = Principal::LocalAdministrator;
    service
        .add_user(&admin, "alice", &[ALICE_MAILBOX.to_string()])
        .unwrap();
    service
        .add_user(&admin, "bob", &["bob@contoso.com".to_string()])
        .unwrap();
    let mail = MemoryMailboxSource::new();
    mail.add_mailbox(ALICE_MAILBOX);
    mail.add_mailbox("bob@contoso.com");
    mail.add_mailbox("review@contoso.com");
    (service, mail, alice, bob)
}

fn ids(id: &str) -> Selection {
    Selection::Ids(vec![MessageId(id.to_string())])
}

async fn restore(
    service: &Service,
    mail: &MemoryMailboxSource,
    who: &Principal,
    user: &str,
    selection: Selection,
    to_mailbox: Option<&str>,
) -> Result<RestoreReport, ServiceError> {
    let request = RestoreRequest {
        user: user.into(),
        selection,
        to_mailbox: to_mailbox.map(str::to_string),
        to_folder: None,
        exact_mime: false,
    };
    service
        .restore_with_writer(who, &request, mail, &|_| {})
        .await
}

fn refused(result: Result<RestoreReport, ServiceError>, needle: &str) {
    let e = result.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Forbidden, "{e}");
    assert!(e.to_string().contains(needle), "{e}");
}

#[tokio::test]
async fn a_user_restores_their_own_archive_into_their_own_mailbox_only() {
    let dir = tempfile::tempdir().unwrap();
    let (service, mail, alice_id, bob_id) = setup(dir.path());
    let alice = Principal::user("alice");
    let report = restore(&service, &mail, &alice, "alice", ids(&alice_id), None)
        .await
        .unwrap();
    assert_eq!(
        (report.restored, report.to_mailbox.as_str()),
        (1, ALICE_MAILBOX)
    );

    // Someone else's archive, a guessed id of it, an unknown id: the same refusal.
    refused(
        restore(&service, &mail, &alice, "bob", ids(&bob_id), None).await,
        "archive of `bob`",
    );
    let guessed = restore(&service, &mail, &alice, "alice", ids(&bob_id), None).await;
    refused(guessed, &format!("may not read message {bob_id}"));
    let unknown = "0".repeat(64);
    let e = restore(&service, &mail, &alice, "alice", ids(&unknown), None).await;
    refused(e, &format!("may not read message {unknown}"));

    // Another mailbox is refused, before anything is written there.
    refused(
        restore(
            &service,
            &mail,
            &alice,
            "alice",
            ids(&alice_id),
            Some("review@contoso.com"),
        )
        .await,
        "own mailbox",
    );
    assert!(mail.message_ids("review@contoso.com").is_empty());
}

#[tokio::test]
async fn admins_need_an_unblock_and_auditors_never_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (service, mail, alice_id, _) = setup(dir.path());
    let admin = Principal::with_grants("root", vec![Grant::new(Role::Admin)]);
    refused(
        restore(&service, &mail, &admin, "alice", ids(&alice_id), None).await,
        "unblock",
    );
    let auditor = Principal::with_grants("audit", vec![Grant::new(Role::Auditor)]);
    refused(
        restore(&service, &mail, &auditor, "alice", ids(&alice_id), None).await,
        "auditor",
    );
    let unblocked = Principal::Account(Account {
        name: "root".into(),
        grants: vec![Grant::new(Role::Admin)],
        unblock: Some(Unblock {
            reason: "case 7".into(),
            until: chrono::Utc::now() + chrono::Duration::hours(1),
        }),
    });
    let report = restore(
        &service,
        &mail,
        &unblocked,
        "alice",
        ids(&alice_id),
        Some("review@contoso.com"),
    )
    .await
    .unwrap();
    assert_eq!(report.restored, 1);
    assert_eq!(mail.message_ids("review@contoso.com").len(), 1);
}

#[tokio::test]
async fn unknown_archives_and_ids_are_named_for_those_who_may_see() {
    let dir = tempfile::tempdir().unwrap();
    let (service, mail, _, _) = setup(dir.path());
    let admin = Principal::LocalAdministrator;
    let e = restore(&service, &mail, &admin, "carol", ids("ab"), None)
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::NotFound, "{e}");
    assert!(e.to_string().contains("`carol` has no archive"), "{e}");
    let unknown = "1".repeat(64);
    let e = restore(&service, &mail, &admin, "alice", ids(&unknown), None)
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::NotFound, "{e}");
    assert!(archiver_service::chain(&e).contains(&unknown), "{e}");
}
