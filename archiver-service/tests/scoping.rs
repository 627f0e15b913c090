//! Who sees what: every read of mail content is scoped to the caller's archives, an
//! id outside them answers like an unknown one, and each refusal is `Forbidden`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use archive_store::{ArchiveRequest, ArchiveStore, DiskArchiveStore, RawMessage, StoreOptions};
use archiver_service::{
    Account, ErrorCategory, ExportRequest, Grant, ImportRequest, Principal, Reach, Role,
    SearchRequest, Service, ServiceError, ServiceOptions, Unblock,
};

/// An archive where alice and bob each hold a "budget" message, and both hold a
/// shared one. Returns the service and the ids (alice's, bob's, shared).
fn archive(root: &Path) -> (Service, [String; 3]) {
    let data = root.join("data");
    let store = DiskArchiveStore::open(data.join("archive"), StoreOptions::default()).unwrap();
    let put = |user: &str, raw: &str| {
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
    let alice = put(
        "alice",
        "From: x@example.com\r\nSubject: budget for alice\r\n\r\nAlice's budget.\r\n",
    );
    let bob = put(
        "bob",
        "From: y@example.com\r\nSubject: budget for bob\r\n\r\nBob's budget.\r\n",
    );
    let shared_raw = "From: z@example.com\r\nSubject: budget for all\r\n\r\nEveryone's.\r\n";
    let shared = put("alice", shared_raw);
    put("bob", shared_raw);
    drop(store);
    (
        Service::new(data, ServiceOptions::default()),
        [alice, bob, shared],
    )
}

fn search(
    service: &Service,
    who: &Principal,
    user: Option<&str>,
) -> Result<BTreeSet<String>, ServiceError> {
    let request = SearchRequest {
        text: "budget".into(),
        user: user.map(str::to_string),
        from_date: None,
        to_date: None,
        limit: 50,
    };
    Ok(service
        .search(who, &request)?
        .into_iter()
        .map(|h| format!("{}:{}", h.user, h.id.0))
        .collect())
}

/// `Ok(())` or the category of the error.
fn category<T>(result: Result<T, ServiceError>) -> Result<(), ErrorCategory> {
    result.map(drop).map_err(|e| e.category())
}

fn check(what: &str, got: Result<(), ErrorCategory>, expected: Result<(), ErrorCategory>) {
    assert_eq!(got, expected, "{what}");
}

fn admin(unblocked: bool) -> Principal {
    Principal::Account(Account {
        name: "root".into(),
        grants: vec![Grant::new(Role::Admin)],
        unblock: unblocked.then(|| Unblock {
            reason: "case 7".into(),
            until: chrono::Utc::now() + chrono::Duration::hours(1),
        }),
    })
}

#[test]
fn each_caller_reads_only_the_archives_in_its_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, [alice_id, bob_id, shared_id]) = archive(tmp.path());
    let alice = Principal::user("alice");
    let auditor_of_bob = Principal::with_grants(
        "audit",
        vec![Grant {
            role: Role::Auditor,
            reach: Reach::Users(["bob".to_string()].into()),
            until: None,
        }],
    );
    let unknown = "0".repeat(alice_id.len());
    use ErrorCategory::{Forbidden, NotFound};

    // Search: scoped to the caller's archives.
    let all = search(&service, &Principal::LocalAdministrator, None).unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    let mine = search(&service, &alice, None).unwrap();
    assert_eq!(
        mine,
        [format!("alice:{alice_id}"), format!("alice:{shared_id}")].into()
    );
    let bobs = search(&service, &auditor_of_bob, None).unwrap();
    assert!(
        bobs.iter().all(|h| h.starts_with("bob:")) && bobs.len() == 2,
        "{bobs:?}"
    );
    assert_eq!(search(&service, &admin(true), None).unwrap(), all);

    // Show: a message outside the scope and an unknown id are the same refusal.
    check(
        "alice shows her own",
        category(service.show_message(&alice, &alice_id)),
        Ok(()),
    );
    check(
        "alice shows bob's",
        category(service.show_message(&alice, &bob_id)),
        Err(Forbidden),
    );
    check(
        "alice shows an unknown id",
        category(service.show_message(&alice, &unknown)),
        Err(Forbidden),
    );
    check(
        "the administrator shows an unknown id",
        category(service.show_message(&Principal::LocalAdministrator, &unknown)),
        Err(NotFound),
    );
    check(
        "the auditor shows bob's",
        category(service.show_message(&auditor_of_bob, &bob_id)),
        Ok(()),
    );
    check(
        "the auditor shows alice's",
        category(service.show_message(&auditor_of_bob, &alice_id)),
        Err(Forbidden),
    );
    check(
        "an admin shows any",
        category(service.show_message(&admin(false), &alice_id)),
        Err(Forbidden),
    );
    check(
        "an unblocked admin shows any",
        category(service.show_message(&admin(true), &bob_id)),
        Ok(()),
    );
    // A shared message shows only the places the caller may see.
    let shown = service
        .show_message(&alice, &shared_id.to_uppercase())
        .unwrap();
    assert_eq!(
        shown.info.locations,
        vec![("alice".to_string(), "Inbox".to_string())]
    );
    assert!(shown.text.contains("Everyone's"), "{}", shown.text);

    // Each refusal.
    check(
        "alice searches bob's archive",
        category(search(&service, &alice, Some("bob"))),
        Err(Forbidden),
    );
    check(
        "an admin searches",
        category(search(&service, &admin(false), None)),
        Err(Forbidden),
    );
    let export = |user: &str| ExportRequest {
        user: user.into(),
        folder: None,
        query: None,
        format: archive_store::ExportFormat::Mbox,
        out: tmp.path().join(format!("{user}.mbox")),
    };
    check(
        "alice exports bob's",
        category(service.export(&alice, &export("bob"))),
        Err(Forbidden),
    );
    check(
        "alice exports a stranger's",
        category(service.export(&alice, &export("nobody"))),
        Err(Forbidden),
    );
    check(
        "the administrator exports a stranger's",
        category(service.export(&Principal::LocalAdministrator, &export("nobody"))),
        Err(NotFound),
    );
    check(
        "alice exports her own",
        category(service.export(&alice, &export("alice"))),
        Ok(()),
    );
    let import = ImportRequest {
        user: "alice".into(),
        folder: None,
        path: tmp.path().join("alice.mbox"),
    };
    check(
        "alice imports",
        category(service.import(&alice, &import)),
        Err(Forbidden),
    );
    check(
        "alice sees the figures",
        category(service.archive_stats(&alice)),
        Err(Forbidden),
    );
    check(
        "an admin sees the figures",
        category(service.archive_stats(&admin(false))),
        Ok(()),
    );
    check(
        "alice lists users",
        category(service.list_users(&alice)),
        Err(Forbidden),
    );
    check(
        "the auditor lists profiles",
        category(service.list_profiles(&auditor_of_bob)),
        Err(Forbidden),
    );
    check(
        "alice verifies",
        category(service.verify_archive(&alice)),
        Err(Forbidden),
    );
    check(
        "alice removes a credential",
        category(service.remove_credential(&alice, "c")),
        Err(Forbidden),
    );
    check(
        "an admin verifies",
        category(service.verify_archive(&admin(false))),
        Ok(()),
    );
}
