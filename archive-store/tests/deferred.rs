//! The `index.db` rows of acknowledged writes are committed later, together: an
//! acknowledged message is visible before that commit to every lookup and read of
//! the writing store, to a read-only store of the same directory (which replays
//! the record log), and after a crash that loses the waiting rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use archive_store::{
    ArchiveStore, DiskArchiveStore, MessageId, RawMessage, Scope, SearchQuery, SourceRef,
    StoreOptions,
};

const N: u64 = 6;

/// Long enough that no deferred commit happens during a test.
fn options() -> StoreOptions {
    StoreOptions {
        index_commit_delay: Duration::from_secs(3_600),
        ..StoreOptions::default()
    }
}

fn message(i: u64) -> Vec<u8> {
    common::Mail {
        from: "megan@contoso.test",
        to: "alice@contoso.test",
        subject: &format!("deferred{i} report"),
        date: common::july(1 + i as u32),
        body: "acknowledged before its listing rows",
        attachments: &[("a.bin", &common::noise(i, 20_000))],
        extra_headers: "",
        boundary: "bnd",
    }
    .render()
}

fn source(i: u64) -> SourceRef {
    common::request("alice", "Inbox", Some(&format!("m{i}")))
        .source
        .unwrap()
}

fn archive_all(store: &DiskArchiveStore) -> Vec<MessageId> {
    (0..N)
        .map(|i| {
            let outcome = store
                .archive(
                    &common::request("alice", "Inbox", Some(&format!("m{i}"))),
                    RawMessage::Bytes(&message(i)),
                )
                .unwrap();
            assert!(outcome.new_entry);
            outcome.id
        })
        .collect()
}

/// Entries rows `index.db` of the current generation holds.
fn entries_in_index_db(dir: &Path) -> i64 {
    let name = std::fs::read_to_string(dir.join("index/CURRENT")).unwrap();
    let db =
        rusqlite::Connection::open(dir.join("index").join(name.trim()).join("index.db")).unwrap();
    db.query_row("SELECT count(*) FROM kv WHERE t = 3", [], |row| row.get(0))
        .unwrap()
}

/// What a store answers for the archived messages: found by source, readable,
/// verified, listed, shown, counted and searchable.
fn check_visible(store: &DiskArchiveStore, ids: &[MessageId]) {
    for (i, id) in ids.iter().enumerate() {
        let i = i as u64;
        assert_eq!(
            store.find_source("alice", &source(i)).unwrap().as_ref(),
            Some(id)
        );
        assert_eq!(store.read_message(id).unwrap(), message(i));
        assert!(store.verify_message(id).unwrap());
    }
    let listed: Vec<MessageId> = store
        .list("alice", None)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed.len(), ids.len());
    assert!(ids.iter().all(|id| listed.contains(id)));
    let shown = store.show(&ids[0]).unwrap();
    assert_eq!(shown.locations, vec![("alice".into(), "Inbox".into())]);
    assert_eq!(store.stats().unwrap().messages, ids.len() as u64);
    let hits = store
        .search(
            &SearchQuery {
                text: "deferred3".into(),
                user: None,
                from_date: None,
                to_date: None,
                limit: 10,
            },
            &Scope::Admin,
        )
        .unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].id, ids[3]);
}

#[test]
fn acknowledged_messages_are_visible_before_the_deferred_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DiskArchiveStore::open(tmp.path(), options()).unwrap();
    let ids = archive_all(&store);
    assert_eq!(
        entries_in_index_db(tmp.path()),
        0,
        "the rows are still waiting"
    );
    // Lookups that consult the waiting rows leave them waiting.
    for i in 0..N {
        assert!(store.find_source("alice", &source(i)).unwrap().is_some());
    }
    assert!(store.verify_message(&ids[0]).unwrap());
    // Archiving again finds the entries and sources among the waiting rows.
    let again = store
        .archive(
            &common::request("alice", "Inbox", Some("m1")),
            RawMessage::Bytes(&message(1)),
        )
        .unwrap();
    assert!(!again.new_entry && !again.new_content);
    assert_eq!(entries_in_index_db(tmp.path()), 0);

    // Another store of the directory replays the record log.
    let reader = DiskArchiveStore::open_read_only(tmp.path(), options()).unwrap();
    check_visible(&reader, &ids);
    // The writer's reads see the same (committing the waiting rows first).
    check_visible(&store, &ids);
    drop(store);
    drop(reader);
    let reopened = DiskArchiveStore::open_read_only(tmp.path(), options()).unwrap();
    check_visible(&reopened, &ids);
    assert!(reopened.verify().unwrap().is_clean());
}

#[test]
fn a_crash_loses_only_waiting_rows_which_the_next_open_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DiskArchiveStore::open(tmp.path(), options()).unwrap();
    let ids = archive_all(&store);
    assert_eq!(entries_in_index_db(tmp.path()), 0);
    // A crash: nothing of the store runs again (no commit, no close).
    std::mem::forget(store);
    let reopened = DiskArchiveStore::open(tmp.path(), options()).unwrap();
    check_visible(&reopened, &ids);
    assert_eq!(entries_in_index_db(tmp.path()), N as i64);
    assert!(reopened.verify().unwrap().is_clean());
    // The reopened store writes on from there.
    let more = reopened
        .archive(
            &common::request("alice", "Sent", Some("s0")),
            RawMessage::Bytes(&message(N)),
        )
        .unwrap();
    assert!(more.new_entry);
    assert_eq!(reopened.stats().unwrap().messages, N + 1);
}

#[test]
fn a_writer_sees_what_another_writer_left_waiting() {
    // Two writable stores of one directory take turns; each one's waiting rows go
    // into index.db before it replays what the other wrote since.
    let tmp = tempfile::tempdir().unwrap();
    let a = DiskArchiveStore::open(tmp.path(), options()).unwrap();
    let b = DiskArchiveStore::open(tmp.path(), options()).unwrap();
    for i in 0..N {
        let (store, user) = if i % 2 == 0 {
            (&a, "alice")
        } else {
            (&b, "bob")
        };
        store
            .archive(
                &common::request(user, "Inbox", Some(&format!("m{i}"))),
                RawMessage::Bytes(&message(i)),
            )
            .unwrap();
    }
    // The last write was b's: a has not taken the lock since, its reads still see it
    // once b's rows are committed (b's close) and a's reads replay nothing itself.
    drop(b);
    assert_eq!(a.stats().unwrap().messages, N);
    assert_eq!(a.list("bob", None).unwrap().len() as u64, N / 2);
    assert!(a.verify().unwrap().is_clean());
}
