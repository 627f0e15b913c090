//! What an expunge leaves behind: the archive forgets the entry's sources and,
//! once no entry of that user holds it, the content itself, so a later profile run
//! or import does not bring expunged mail back. The marks live in the record
//! log's tombstones: a reopen, a rebuild of the indexes and a compaction keep
//! them. Other users' archives and the user's other live folders are untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use archive_store::{
    ArchiveStore, DiskArchiveStore, EntryRef, MemoryArchiveStore, MessageId, RawMessage, SourceRef,
    SourceState, StoreOptions,
};

fn mail(subject: &str) -> Vec<u8> {
    common::Mail {
        from: "bob@contoso.test",
        to: "alice@contoso.test",
        subject,
        date: common::july(3),
        body: "minutes of the board",
        attachments: &[],
        extra_headers: "",
        boundary: "b0undary",
    }
    .render()
}

fn source(user: &str, id: &str) -> SourceRef {
    SourceRef {
        mailbox: format!("{user}@contoso.test"),
        message_id: id.into(),
    }
}

/// Archives `raw` as `source` into `user`'s `folder`: (id, new entry, forgotten).
fn put(
    store: &dyn ArchiveStore,
    user: &str,
    folder: &str,
    source: Option<&str>,
    raw: &[u8],
) -> (MessageId, bool, bool) {
    let outcome = store
        .archive(
            &common::request(user, folder, source),
            RawMessage::Bytes(raw),
        )
        .unwrap();
    (outcome.id, outcome.new_entry, outcome.forgotten)
}

/// Each (user, source id) is in the state expected.
fn check(store: &dyn ArchiveStore, expected: &[(&str, &str, SourceState)]) {
    for (user, id, state) in expected {
        assert_eq!(
            &store.source_state(user, &source(user, id)).unwrap(),
            state,
            "{user}'s source {id}"
        );
    }
}

#[test]
fn expunged_mail_is_forgotten_by_source_and_by_content_across_reopen_rebuild_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = common::open(&path);
    let board = mail("board minutes");
    let other = mail("lunch menu");
    let (id, ..) = put(&store, "alice", "Inbox", Some("1"), &board);
    put(&store, "alice", "Archive", Some("2"), &board);
    put(&store, "bob", "Inbox", Some("1"), &board);
    let (lunch, ..) = put(&store, "alice", "Inbox", Some("3"), &other);

    // One of alice's two entries goes: source 1 is forgotten, the content is not
    // (her Archive folder still holds it), so a copy in a third folder is archived.
    store
        .expunge(&[EntryRef::new("alice", "Inbox", id.clone())], &|_| true)
        .unwrap();
    check(
        &store,
        &[
            ("alice", "1", SourceState::Forgotten(id.clone())),
            ("alice", "2", SourceState::Archived(id.clone())),
            ("bob", "1", SourceState::Archived(id.clone())),
            ("alice", "3", SourceState::Archived(lunch.clone())),
            ("alice", "9", SourceState::Unknown),
        ],
    );
    assert_eq!(
        store.find_source("alice", &source("alice", "1")).unwrap(),
        None
    );
    let (_, new_entry, forgotten) = put(&store, "alice", "Projects", Some("4"), &board);
    assert!(new_entry && !forgotten);

    // Her last entries go: the content is forgotten for her, whatever the source
    // or folder; bob's archive still takes it.
    store
        .expunge(
            &[
                EntryRef::new("alice", "Archive", id.clone()),
                EntryRef::new("alice", "Projects", id.clone()),
            ],
            &|_| true,
        )
        .unwrap();
    let refused = |store: &DiskArchiveStore| {
        for (folder, source) in [("Inbox", Some("1")), ("Sent", Some("5")), ("Import", None)] {
            let (got, new_entry, forgotten) = put(store, "alice", folder, source, &board);
            assert_eq!(got, id);
            assert!(forgotten && !new_entry, "{folder}");
        }
        assert!(
            store
                .entries()
                .unwrap()
                .iter()
                .all(|e| !(e.user == "alice" && e.id == id)),
            "nothing of it is back in alice's archive"
        );
    };
    refused(&store);
    let (_, new_entry, forgotten) = put(&store, "bob", "Archive", Some("6"), &board);
    assert!(new_entry && !forgotten);
    let after = [
        ("alice", "1", SourceState::Forgotten(id.clone())),
        ("alice", "2", SourceState::Forgotten(id.clone())),
        ("alice", "4", SourceState::Forgotten(id.clone())),
        ("alice", "5", SourceState::Unknown),
        ("bob", "1", SourceState::Archived(id.clone())),
        ("alice", "3", SourceState::Archived(lunch.clone())),
    ];
    check(&store, &after);
    drop(store);

    // The marks are in the record log: a reopen, a rebuild and a compaction keep them.
    let reopened = |path: &Path, expected: &[(&str, &str, SourceState)]| {
        let store = common::open(path);
        check(&store, expected);
        refused(&store);
        store
    };
    drop(reopened(&path, &after));
    DiskArchiveStore::rebuild_indexes(&path, StoreOptions::default()).unwrap();
    let store = reopened(&path, &after);
    store
        .expunge(&[EntryRef::new("alice", "Inbox", lunch.clone())], &|_| true)
        .unwrap();
    let report = store.compact().unwrap();
    assert!(report.messages_dropped >= 1, "{report:?}");
    let mut after = after.to_vec();
    after[5] = ("alice", "3", SourceState::Forgotten(lunch));
    check(&store, &after);
    store.reindex().unwrap();
    check(&store, &after);
    drop(store);
    DiskArchiveStore::rebuild_indexes(&path, StoreOptions::default()).unwrap();
    drop(reopened(&path, &after));
    assert!(common::open(&path).verify().unwrap().is_clean());
}

#[test]
fn the_memory_store_forgets_alike() {
    let store = MemoryArchiveStore::new();
    let board = mail("board minutes");
    let (id, ..) = put(&store, "alice", "Inbox", Some("1"), &board);
    put(&store, "bob", "Inbox", Some("1"), &board);
    store
        .expunge(&[EntryRef::new("alice", "Inbox", id.clone())], &|_| true)
        .unwrap();
    check(
        &store,
        &[
            ("alice", "1", SourceState::Forgotten(id.clone())),
            ("bob", "1", SourceState::Archived(id.clone())),
        ],
    );
    let (_, new_entry, forgotten) = put(&store, "alice", "Sent", Some("2"), &board);
    assert!(forgotten && !new_entry);
    assert!(store.list("alice").is_empty());
}
