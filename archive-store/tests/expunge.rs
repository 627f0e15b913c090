//! Expunge and restriction: tombstone and restriction records hide entries from
//! listings, `show`, search, export, stats and verify's live set, in this store
//! and in another one open on the same directory, and a reopen, a rebuild of the
//! indexes and a read-only open reach the same state; shared content survives.
//! (What an expunge leaves behind, the forgotten sources and contents, is
//! `forgotten.rs`'s subject.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use archive_store::{
    ArchiveStore, DiskArchiveStore, EntryRef, ExportFilter, ExportFormat, MessageId, RawMessage,
    Scope, SearchQuery, SourceRef, StoreOptions, Visibility,
};

fn mail(subject: &str, attachment: Option<&[u8]>) -> Vec<u8> {
    let attachments: Vec<(&str, &[u8])> = attachment.map(|a| ("a.bin", a)).into_iter().collect();
    common::Mail {
        from: "bob@contoso.test",
        to: "alice@contoso.test",
        subject,
        date: common::july(3),
        body: "quarterly numbers inside",
        attachments: &attachments,
        extra_headers: "",
        boundary: "b0undary",
    }
    .render()
}

fn archive(
    store: &DiskArchiveStore,
    user: &str,
    folder: &str,
    source: &str,
    raw: &[u8],
) -> MessageId {
    store
        .archive(
            &common::request(user, folder, Some(source)),
            RawMessage::Bytes(raw),
        )
        .unwrap()
        .id
}

fn everything(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.into(),
        user: None,
        from_date: None,
        to_date: None,
        limit: 1_000,
    }
}

/// (user, folder, id) triples.
type Visible = BTreeSet<(String, String, String)>;

fn triples(entries: impl IntoIterator<Item = (String, String, MessageId)>) -> Visible {
    entries.into_iter().map(|(u, f, id)| (u, f, id.0)).collect()
}

/// Checks that every read agrees on the visible entries (`visible`, restricted
/// ones left out) and on all entries (`all`, restricted included).
fn check(store: &DiskArchiveStore, visible: &Visible, all: &Visible, out: &Path) {
    let users: BTreeSet<String> = all.iter().map(|(u, _, _)| u.clone()).collect();
    assert_eq!(
        store.users().unwrap().into_iter().collect::<BTreeSet<_>>(),
        users
    );
    let mut listed = Visible::new();
    let mut privileged = Visible::new();
    for user in &users {
        listed.extend(triples(
            store
                .list(user, None)
                .unwrap()
                .into_iter()
                .map(|e| (e.user, e.folder, e.id)),
        ));
        privileged.extend(triples(
            store
                .list_with(user, None, Visibility::Privileged)
                .unwrap()
                .into_iter()
                .map(|e| (e.user, e.folder, e.id)),
        ));
    }
    assert_eq!(&listed, visible, "listing");
    assert_eq!(&privileged, all, "privileged listing");
    let hits = |scope: &Scope| {
        triples(
            store
                .search(&everything("quarterly"), scope)
                .unwrap()
                .into_iter()
                .map(|h| (h.user, h.folder, h.id)),
        )
    };
    assert_eq!(&hits(&Scope::Admin), visible, "search as admin");
    assert_eq!(&hits(&Scope::Privileged), all, "privileged search");
    for user in &users {
        let mine: Visible = visible
            .iter()
            .filter(|(u, _, _)| u == user)
            .cloned()
            .collect();
        assert_eq!(hits(&Scope::User(user.clone())), mine, "search as {user}");
        let dir = out.join(format!("export-{user}-{}", rand_suffix()));
        let report = store
            .export(
                &ExportFilter {
                    user: user.clone(),
                    folder: None,
                    ids: None,
                },
                ExportFormat::Eml,
                &dir,
            )
            .unwrap();
        assert_eq!(report.messages, mine.len() as u64, "export of {user}");
    }
    let stats = store.stats().unwrap();
    assert_eq!(stats.messages, all.len() as u64, "stats");
    let ids: BTreeSet<&String> = all.iter().map(|(_, _, id)| id).collect();
    assert_eq!(stats.unique_messages, ids.len() as u64, "stats");
    for (user, folder, id) in all {
        let id = MessageId(id.clone());
        let shown = store.show_with(&id, Visibility::Privileged).unwrap();
        assert!(shown.locations.contains(&(user.clone(), folder.clone())));
        assert!(store.verify_message(&id).unwrap());
    }
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:#?}");
}

fn rand_suffix() -> u64 {
    rand::random::<u64>()
}

fn entry(user: &str, folder: &str, id: &MessageId) -> EntryRef {
    EntryRef::new(user, folder, id.clone())
}

fn triple(user: &str, folder: &str, id: &MessageId) -> (String, String, String) {
    (user.into(), folder.into(), id.0.clone())
}

fn source(user: &str, id: &str) -> SourceRef {
    SourceRef {
        mailbox: format!("{user}@contoso.test"),
        message_id: id.into(),
    }
}

#[test]
fn expunged_entries_are_gone_from_every_read_and_stay_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = common::open(&path);
    let shared = common::noise(7, 200_000);
    let m1 = mail("quarterly one", Some(&shared));
    let m2 = mail("quarterly two", Some(&shared));
    let m3 = mail("quarterly three", None);
    let a1 = archive(&store, "alice", "Inbox", "1", &m1);
    let b1 = archive(&store, "bob", "Inbox", "1", &m1);
    let a2 = archive(&store, "alice", "Inbox", "2", &m2);
    let a3 = archive(&store, "alice", "Archive", "3", &m3);
    assert_eq!(a1, b1);
    // Another store open on the same directory, its search index already used.
    let other = common::open(&path);
    assert_eq!(
        other
            .search(&everything("quarterly"), &Scope::Admin)
            .unwrap()
            .len(),
        4
    );

    let report = store
        .expunge(
            &[entry("alice", "Inbox", &a1), entry("alice", "Inbox", &a2)],
            &|_| true,
        )
        .unwrap();
    assert_eq!(report.expunged.len(), 2);
    // m1 is still bob's; m2 has no entry left (its attachment chunks are m1's too).
    assert_eq!(report.unreferenced_messages, 1);
    assert_eq!(report.unreferenced_bytes, m2.len() as u64);
    let all: Visible = [triple("bob", "Inbox", &b1), triple("alice", "Archive", &a3)].into();
    check(&store, &all, &all, dir.path());
    check(&other, &all, &all, dir.path());
    assert_eq!(store.read_message(&b1).unwrap(), m1);
    assert_eq!(
        store.find_source("alice", &source("alice", "1")).unwrap(),
        None
    );
    assert_eq!(
        store.find_source("bob", &source("bob", "1")).unwrap(),
        Some(b1.clone())
    );
    assert!(store.show(&a2).unwrap().locations.is_empty());
    drop(other);
    drop(store);

    let store = common::open(&path);
    check(&store, &all, &all, dir.path());
    drop(store);
    DiskArchiveStore::rebuild_indexes(&path, StoreOptions::default()).unwrap();
    let reader = DiskArchiveStore::open_read_only(&path, StoreOptions::default()).unwrap();
    check(&reader, &all, &all, dir.path());
    drop(reader);
    let store = common::open(&path);
    store.reindex().unwrap();
    check(&store, &all, &all, dir.path());
}

#[test]
fn the_permit_sees_the_current_entry_and_refusals_and_absent_entries_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(&dir.path().join("store"));
    let a = archive(&store, "alice", "Inbox", "1", &mail("quarterly a", None));
    let b = archive(&store, "alice", "Inbox", "2", &mail("quarterly b", None));
    store
        .set_restricted(&[entry("alice", "Inbox", &b)], true)
        .unwrap();
    let asked = std::sync::Mutex::new(Vec::new());
    let report = store
        .expunge(
            &[
                entry("alice", "Inbox", &a),
                entry("alice", "Inbox", &b),
                entry("alice", "Inbox", &a),
                entry("alice", "Sent", &a),
                entry("carol", "Inbox", &MessageId("not hex".into())),
            ],
            &|view| {
                asked
                    .lock()
                    .unwrap()
                    .push((view.id.clone(), view.restricted, view.size));
                !view.restricted
            },
        )
        .unwrap();
    assert_eq!(report.expunged, vec![entry("alice", "Inbox", &a)]);
    assert_eq!(report.refused, vec![entry("alice", "Inbox", &b)]);
    assert_eq!(report.missing.len(), 3);
    let asked = asked.into_inner().unwrap();
    assert_eq!(asked.len(), 2);
    assert!(asked.contains(&(b.clone(), true, mail("quarterly b", None).len() as u64)));
    let all: Visible = [triple("alice", "Inbox", &b)].into();
    check(&store, &Visible::new(), &all, dir.path());
}

#[test]
fn restricted_entries_are_seen_by_privileged_reads_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = common::open(&path);
    let raw = mail("quarterly secret", None);
    let a = archive(&store, "alice", "Inbox", "1", &raw);
    let b = archive(&store, "bob", "Inbox", "1", &raw);
    let c = archive(&store, "alice", "Inbox", "2", &mail("quarterly open", None));
    let first = store
        .set_restricted(
            &[entry("alice", "Inbox", &a), entry("alice", "Nowhere", &a)],
            true,
        )
        .unwrap();
    assert_eq!(first.changed.len(), 1);
    assert_eq!(first.missing.len(), 1);
    let again = store
        .set_restricted(&[entry("alice", "Inbox", &a)], true)
        .unwrap();
    assert_eq!(again.unchanged.len(), 1);
    let all: Visible = [
        triple("alice", "Inbox", &a),
        triple("bob", "Inbox", &b),
        triple("alice", "Inbox", &c),
    ]
    .into();
    let visible: Visible = [triple("bob", "Inbox", &b), triple("alice", "Inbox", &c)].into();
    check(&store, &visible, &all, dir.path());
    // `show` leaves the restricted location out unless privileged.
    assert_eq!(
        store.show(&a).unwrap().locations,
        vec![("bob".into(), "Inbox".into())]
    );
    assert_eq!(
        store
            .show_with(&a, Visibility::Privileged)
            .unwrap()
            .locations
            .len(),
        2
    );
    // A search limited to one hit still finds the visible one.
    let one = SearchQuery {
        limit: 1,
        ..everything("secret")
    };
    let hits = store.search(&one, &Scope::Admin).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].user, "bob");
    drop(store);
    let store = common::open(&path);
    check(&store, &visible, &all, dir.path());
    store.reindex().unwrap();
    check(&store, &visible, &all, dir.path());
    store
        .set_restricted(&[entry("alice", "Inbox", &a)], false)
        .unwrap();
    check(&store, &all, &all, dir.path());
    drop(store);
    DiskArchiveStore::rebuild_indexes(&path, StoreOptions::default()).unwrap();
    check(&common::open(&path), &all, &all, dir.path());
}

#[test]
fn the_memory_store_expunges_and_restricts_alike() {
    let store = archive_store::MemoryArchiveStore::new();
    let raw = mail("quarterly memory", None);
    let id = store
        .archive(
            &common::request("alice", "Inbox", Some("1")),
            RawMessage::Bytes(&raw),
        )
        .unwrap()
        .id;
    store
        .archive(
            &common::request("bob", "Inbox", Some("1")),
            RawMessage::Bytes(&raw),
        )
        .unwrap();
    store
        .set_restricted(&[entry("bob", "Inbox", &id)], true)
        .unwrap();
    assert!(store.is_restricted(&entry("bob", "Inbox", &id)));
    assert_eq!(
        store
            .search(&everything("quarterly"), &Scope::Admin)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .search(&everything("quarterly"), &Scope::Privileged)
            .unwrap()
            .len(),
        2
    );
    let report = store
        .expunge(&[entry("alice", "Inbox", &id)], &|_| true)
        .unwrap();
    assert_eq!(
        (report.expunged.len(), report.unreferenced_messages),
        (1, 0)
    );
    assert_eq!(
        store.find_source("alice", &source("alice", "1")).unwrap(),
        None
    );
    let report = store
        .expunge(&[entry("bob", "Inbox", &id)], &|e| e.restricted)
        .unwrap();
    assert_eq!(report.unreferenced_bytes, raw.len() as u64);
    assert!(store.entries().is_empty());
    assert!(store.read_message(&id).is_err());
}
