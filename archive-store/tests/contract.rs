//! The [`ArchiveStore`] contract, checked on both implementations: every rule below
//! runs once against a [`DiskArchiveStore`] in a temporary directory (then verified
//! clean and reopened read-only with the same figures) and once against a
//! [`MemoryArchiveStore`]. Callers (the profile engine, the CLI) rely on exactly these
//! rules, whichever store they are given.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use archive_store::{
    ArchiveError, ArchiveRequest, ArchiveStore, DiskArchiveStore, MemoryArchiveStore, MessageId,
    RawMessage, Scope, SearchQuery, SourceRef, StoreOptions,
};
use common::{Mail, july, request};
use proptest::prelude::*;

/// Runs `rule` on a fresh disk store (then checks it verifies clean and reopens
/// read-only with the same figures) and on a fresh memory store.
fn on_both(rule: impl Fn(&dyn ArchiveStore)) {
    let dir = tempfile::tempdir().unwrap();
    let disk = common::open(dir.path());
    rule(&disk);
    let report = disk.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    let stats = disk.stats().unwrap();
    drop(disk);
    let reopened = DiskArchiveStore::open_read_only(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(
        reopened.stats().unwrap(),
        stats,
        "figures survive reopening"
    );

    rule(&MemoryArchiveStore::new());
}

fn mail(from: &str, subject: &str, day: u32, body: &str) -> Vec<u8> {
    Mail {
        from,
        to: "alice@contoso.test",
        subject,
        date: july(day),
        body,
        attachments: &[],
        extra_headers: "",
        boundary: "b",
    }
    .render()
}

fn query(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.into(),
        user: None,
        from_date: None,
        to_date: None,
        limit: 100,
    }
}

fn archive(
    store: &dyn ArchiveStore,
    user: &str,
    folder: &str,
    source: &str,
    raw: &[u8],
) -> MessageId {
    store
        .archive(&request(user, folder, Some(source)), RawMessage::Bytes(raw))
        .unwrap()
        .id
}

/// The ids `query` finds in `scope`, as a set.
fn found(store: &dyn ArchiveStore, query: &SearchQuery, scope: &Scope) -> BTreeSet<MessageId> {
    store
        .search(query, scope)
        .unwrap()
        .into_iter()
        .map(|hit| hit.id)
        .collect()
}

fn set<const N: usize>(ids: [&MessageId; N]) -> BTreeSet<MessageId> {
    ids.into_iter().cloned().collect()
}

#[test]
fn archive_gives_a_stable_content_address() {
    on_both(|store| {
        let raw = mail("bob@contoso.test", "Budget", 1, "numbers");
        let first = store
            .archive(
                &request("alice", "Inbox", Some("m1")),
                RawMessage::Bytes(&raw),
            )
            .unwrap();
        assert!(first.new_content && first.new_entry);
        // The address is the hash of the bytes: lower-case hex, the same every time.
        assert_eq!(first.id.0, blake3::hash(&raw).to_hex().to_string());
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &raw).unwrap();
        let from_file = store
            .archive(
                &request("alice", "Inbox", Some("m1")),
                RawMessage::File(file.path()),
            )
            .unwrap();
        assert_eq!(from_file.id, first.id, "from a file as from memory");
        assert!(!from_file.new_content && !from_file.new_entry);
        let other = archive(
            store,
            "alice",
            "Inbox",
            "m2",
            b"Subject: other\r\n\r\nx\r\n",
        );
        assert_ne!(other, first.id);
    });
}

#[test]
fn the_same_bytes_twice_are_stored_once_with_an_entry_per_folder_and_user() {
    on_both(|store| {
        let raw = mail("bob@contoso.test", "Shared", 2, "same bytes");
        let req = |user: &str, folder: &str| request(user, folder, Some("m1"));
        let a = store
            .archive(&req("alice", "Inbox"), RawMessage::Bytes(&raw))
            .unwrap();
        let b = store
            .archive(&req("alice", "Archive"), RawMessage::Bytes(&raw))
            .unwrap();
        let c = store
            .archive(&req("carol", "Inbox"), RawMessage::Bytes(&raw))
            .unwrap();
        let again = store
            .archive(&req("carol", "Inbox"), RawMessage::Bytes(&raw))
            .unwrap();
        assert!(a.new_content && a.new_entry);
        assert!(!b.new_content && b.new_entry, "another folder: {b:?}");
        assert!(!c.new_content && c.new_entry, "another user: {c:?}");
        assert!(!again.new_content && !again.new_entry, "{again:?}");
        assert!([&b.id, &c.id, &again.id].iter().all(|id| **id == a.id));
        let stats = store.stats().unwrap();
        assert_eq!((stats.messages, stats.unique_messages), (3, 1), "{stats:?}");
        assert_eq!(stats.logical_bytes, raw.len() as u64);
    });
}

#[test]
fn find_source_is_per_user() {
    on_both(|store| {
        let raw = mail("bob@contoso.test", "Sourced", 3, "x");
        let id = archive(store, "alice", "Inbox", "AAMk-1", &raw);
        let source = SourceRef {
            mailbox: "alice@contoso.test".into(),
            message_id: "AAMk-1".into(),
        };
        assert_eq!(store.find_source("alice", &source).unwrap(), Some(id));
        assert_eq!(
            store.find_source("carol", &source).unwrap(),
            None,
            "another user's archive"
        );
        let unknown = SourceRef {
            message_id: "AAMk-2".into(),
            ..source.clone()
        };
        assert_eq!(store.find_source("alice", &unknown).unwrap(), None);
        let no_source = ArchiveRequest {
            source: None,
            ..request("alice", "Inbox", None)
        };
        store
            .archive(&no_source, RawMessage::Bytes(b"Subject: n\r\n\r\nn\r\n"))
            .unwrap();
        assert_eq!(store.stats().unwrap().users["alice"], 2);
    });
}

#[test]
fn read_and_verify_give_back_exactly_what_was_archived() {
    on_both(|store| {
        let raw = mail("bob@contoso.test", "Exact", 4, "bytes\r\n\r\n.\r\nend");
        let id = archive(store, "alice", "Inbox", "m1", &raw);
        assert_eq!(store.read_message(&id).unwrap(), raw);
        assert!(store.verify_message(&id).unwrap());
        for unknown in [
            MessageId("0".repeat(64)),
            MessageId("not an id".into()),
            MessageId(String::new()),
        ] {
            let err = store.read_message(&unknown).unwrap_err();
            assert!(
                matches!(err, ArchiveError::NotFound { .. }),
                "{unknown:?}: {err:?}"
            );
            let err = store.verify_message(&unknown).unwrap_err();
            assert!(
                matches!(err, ArchiveError::NotFound { .. }),
                "{unknown:?}: {err:?}"
            );
        }
    });
}

#[test]
fn holds_exactly_compares_the_bytes_offered() {
    on_both(|store| {
        let raw = mail("bob@contoso.test", "Held", 5, "the archived copy");
        let id = archive(store, "alice", "Inbox", "m1", &raw);
        assert!(store.holds_exactly(&id, &mut raw.as_slice()).unwrap());
        let mut changed = raw.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(!store.holds_exactly(&id, &mut changed.as_slice()).unwrap());
        let shorter = &raw[..raw.len() - 1];
        assert!(!store.holds_exactly(&id, &mut &shorter[..]).unwrap());
        let err = store
            .holds_exactly(&MessageId("0".repeat(64)), &mut raw.as_slice())
            .unwrap_err();
        assert!(matches!(err, ArchiveError::NotFound { .. }), "{err:?}");
        let err = store.holds_exactly(&id, &mut FailingReader).unwrap_err();
        assert!(matches!(err, ArchiveError::BadInput { .. }), "{err:?}");
    });
}

/// A reader that always fails.
struct FailingReader;

impl std::io::Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("the offered copy is unreadable"))
    }
}

/// Three messages of alice's and one of bob's; their ids in that order.
fn search_fixture(store: &dyn ArchiveStore) -> [MessageId; 4] {
    [
        archive(
            store,
            "alice",
            "Inbox",
            "q",
            &mail(
                "Megan Bowen <megan@contoso.test>",
                "Quarterly forecast",
                2,
                "Numbers look strong.",
            ),
        ),
        archive(
            store,
            "alice",
            "Inbox",
            "l",
            &mail(
                "Lee Gu <lee@contoso.test>",
                "Lunch on Friday",
                10,
                "Pizza or sushi?",
            ),
        ),
        archive(
            store,
            "alice",
            "Archive/2025",
            "n",
            &mail("news@fabrikam.test", "Newsletter", 20, "Regatta results."),
        ),
        archive(
            store,
            "bob",
            "Inbox",
            "b",
            &mail(
                "Megan Bowen <megan@contoso.test>",
                "Quarterly forecast for Bob",
                5,
                "Bob's numbers.",
            ),
        ),
    ]
}

#[test]
fn search_finds_subject_words_and_senders_within_the_scope() {
    on_both(|store| {
        let [q3, lunch, _, bob] = search_fixture(store);
        let alice = Scope::User("alice".into());
        assert_eq!(found(store, &query("quarterly"), &alice), set([&q3]));
        assert_eq!(
            found(store, &query("QUARTERLY"), &alice),
            set([&q3]),
            "case-insensitive"
        );
        assert_eq!(
            found(store, &query("quarterly"), &Scope::User("bob".into())),
            set([&bob])
        );
        assert_eq!(
            found(store, &query("quarterly"), &Scope::Admin),
            set([&q3, &bob])
        );
        assert_eq!(
            found(store, &query("quarterly forecast bob"), &Scope::Admin),
            set([&bob]),
            "every word"
        );
        assert_eq!(
            found(store, &query("lee@contoso.test"), &alice),
            set([&lunch])
        );
        assert_eq!(found(store, &query("megan"), &alice), set([&q3]));
        assert_eq!(
            found(store, &query("sushi"), &alice),
            set([&lunch]),
            "body text"
        );
        assert!(found(store, &query("sushi"), &Scope::User("bob".into())).is_empty());
        assert!(found(store, &query("zeppelin"), &Scope::Admin).is_empty());
        let hit = &store.search(&query("lunch"), &alice).unwrap()[0];
        assert_eq!(hit.user, "alice");
        assert_eq!(hit.folder, "Inbox");
        assert_eq!(hit.subject.as_deref(), Some("Lunch on Friday"));
        assert_eq!(hit.date, Some(july(10)));
        assert!(
            hit.from
                .as_deref()
                .is_some_and(|f| f.contains("lee@contoso.test")),
            "{hit:?}"
        );
    });
}

#[test]
fn search_by_date_range_includes_the_start_and_excludes_the_end() {
    on_both(|store| {
        let [q3, lunch, news, bob] = search_fixture(store);
        let range = |from: Option<u32>, to: Option<u32>| SearchQuery {
            from_date: from.map(july),
            to_date: to.map(july),
            ..query("")
        };
        let alice = Scope::User("alice".into());
        assert_eq!(found(store, &range(Some(1), Some(8)), &alice), set([&q3]));
        assert_eq!(
            found(store, &range(Some(1), Some(8)), &Scope::Admin),
            set([&q3, &bob])
        );
        assert_eq!(
            found(store, &range(Some(10), None), &alice),
            set([&lunch, &news])
        );
        assert_eq!(found(store, &range(None, Some(10)), &alice), set([&q3]));
        assert_eq!(
            found(store, &range(None, None), &alice),
            set([&q3, &lunch, &news])
        );
        let mut limited = range(None, None);
        limited.limit = 2;
        assert_eq!(store.search(&limited, &Scope::Admin).unwrap().len(), 2);
    });
}

#[test]
fn a_user_may_not_search_another_users_archive() {
    on_both(|store| {
        let [_, _, _, bob] = search_fixture(store);
        let mut other = query("quarterly");
        other.user = Some("bob".into());
        let err = store
            .search(&other, &Scope::User("alice".into()))
            .unwrap_err();
        let ArchiveError::AccessDenied { caller, requested } = &err else {
            panic!("{err:?}");
        };
        assert_eq!((caller.as_str(), requested.as_str()), ("alice", "bob"));
        assert_eq!(found(store, &other, &Scope::Admin), set([&bob]));
        // Naming oneself is allowed.
        assert_eq!(
            found(store, &other, &Scope::User("bob".into())),
            set([&bob])
        );
    });
}

#[test]
fn stats_count_entries_contents_and_users() {
    on_both(|store| {
        assert_eq!(store.stats().unwrap().messages, 0);
        let [_, _, _, _] = search_fixture(store);
        let shared = mail("x@contoso.test", "Shared", 7, "one content");
        archive(store, "alice", "Inbox", "s", &shared);
        archive(store, "bob", "Inbox", "s", &shared);
        let stats = store.stats().unwrap();
        assert_eq!(stats.messages, 6);
        assert_eq!(stats.unique_messages, 5);
        assert_eq!(
            stats.users.into_iter().collect::<Vec<_>>(),
            vec![("alice".to_string(), 4), ("bob".to_string(), 2)]
        );
        assert!(stats.chunks >= 1 && stats.stored_bytes > 0);
    });
}

#[test]
fn invalid_requests_are_refused_and_store_nothing() {
    on_both(|store| {
        let raw = b"Subject: refused\r\n\r\nx\r\n";
        let bad = |user: &str, folder: &str, source: Option<&str>| ArchiveRequest {
            source: source.map(|id| SourceRef {
                mailbox: "a@contoso.test".into(),
                message_id: id.into(),
            }),
            ..request(user, folder, None)
        };
        for (request, field) in [
            (bad("", "Inbox", None), "user"),
            (bad("  ", "Inbox", None), "user"),
            (bad("ali\nce", "Inbox", None), "user"),
            (bad("ali\u{7}ce", "Inbox", None), "user"),
            (bad(&"a".repeat(513), "Inbox", None), "user"),
            (bad("alice", "In\0box", None), "folder"),
            (bad("alice", &"f".repeat(4097), None), "folder"),
            (bad("alice", "Inbox", Some("m\0x")), "source"),
        ] {
            let err = store.archive(&request, RawMessage::Bytes(raw)).unwrap_err();
            let ArchiveError::InvalidRequest { field: got, .. } = &err else {
                panic!("{request:?}: {err:?}");
            };
            assert_eq!(*got, field, "{request:?}");
        }
        assert_eq!(store.stats().unwrap().messages, 0, "nothing stored");
        // At the limits, accepted.
        store
            .archive(
                &bad(&"a".repeat(512), &"f".repeat(4096), Some("m1")),
                RawMessage::Bytes(raw),
            )
            .unwrap();
    });
}

#[test]
fn the_same_bytes_get_the_same_address_in_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let disk = common::open(dir.path());
    let memory = MemoryArchiveStore::new();
    let raw = mail("bob@contoso.test", "Portable", 9, "addresses");
    assert_eq!(
        archive(&disk, "alice", "Inbox", "m1", &raw),
        archive(&memory, "alice", "Inbox", "m1", &raw)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any bytes (MIME or not) come back byte-exact, verify, and are held exactly, in
    /// both stores.
    #[test]
    fn arbitrary_bytes_round_trip_byte_exact(raw in prop::collection::vec(any::<u8>(), 0..6_000), folder in "[A-Za-z0-9 /._-]{1,24}") {
        let dir = tempfile::tempdir().unwrap();
        let disk = common::open(dir.path());
        let memory = MemoryArchiveStore::new();
        for store in [&disk as &dyn ArchiveStore, &memory] {
            let request = request("alice", &folder, Some("m1"));
            let outcome = store.archive(&request, RawMessage::Bytes(&raw)).unwrap();
            prop_assert_eq!(store.read_message(&outcome.id).unwrap(), raw.clone());
            prop_assert!(store.verify_message(&outcome.id).unwrap());
            prop_assert!(store.holds_exactly(&outcome.id, &mut raw.as_slice()).unwrap());
            let again = store.archive(&request, RawMessage::Bytes(&raw)).unwrap();
            prop_assert!(!again.new_content && !again.new_entry);
        }
    }
}
