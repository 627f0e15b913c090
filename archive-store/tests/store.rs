//! Single-instance storage, scoped search, verify and reindex, locking,
//! torn tails and encryption at rest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use archive_store::{
    ArchiveError, ArchiveStore, DiskArchiveStore, MessageId, RawMessage, Scope, SearchQuery,
    StoreOptions,
};
use common::{Mail, july, open, request};

fn query(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.into(),
        user: None,
        from_date: None,
        to_date: None,
        limit: 100,
    }
}

#[test]
fn one_message_in_fifty_archives_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let attachment = common::noise(1, 300_000);
    let raw = Mail {
        from: "Adele Vance <adele@contoso.test>",
        to: "all@contoso.test",
        subject: "Company meeting",
        date: july(3),
        body: "See attached.",
        attachments: &[("agenda.pdf", &attachment)],
        extra_headers: "",
        boundary: "b1",
    }
    .render();
    // Concurrent writers: the group commit must keep every entry.
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            let raw = raw.clone();
            std::thread::spawn(move || {
                store
                    .archive(
                        &request(&format!("user{i:02}"), "Inbox", Some("m1")),
                        RawMessage::Bytes(&raw),
                    )
                    .unwrap()
            })
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        outcomes
            .iter()
            .all(|o| o.new_entry && o.id == outcomes[0].id)
    );
    assert_eq!(outcomes.iter().filter(|o| o.new_content).count(), 1);
    let stats = store.stats().unwrap();
    assert_eq!(stats.messages, 50);
    assert_eq!(stats.unique_messages, 1);
    assert_eq!(stats.users.len(), 50);
    assert_eq!(stats.logical_bytes, raw.len() as u64);
    assert!(stats.stored_bytes < raw.len() as u64 + 4096, "{stats:?}");
    // Again: nothing new.
    let again = store
        .archive(
            &request("user07", "Inbox", Some("m1")),
            RawMessage::Bytes(&raw),
        )
        .unwrap();
    assert!(!again.new_entry && !again.new_content);
    assert_eq!(store.stats().unwrap().messages, 50);
    assert_eq!(
        store
            .find_source("user07", &request("user07", "", Some("m1")).source.unwrap())
            .unwrap(),
        Some(outcomes[0].id.clone())
    );
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn fifty_copies_with_other_headers_share_one_attachment() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let attachment = common::noise(2, 5 << 20);
    let mut logical = 0u64;
    for i in 0..50 {
        let raw = Mail {
            from: "Nestor Wilke <nestor@contoso.test>",
            to: &format!("user{i}@contoso.test"),
            subject: &format!("Design review, copy {i}"),
            date: july(1 + i % 28),
            body: &format!("Dear user {i}, the drawings are attached."),
            attachments: &[("drawings.zip", &attachment)],
            extra_headers: &format!("X-Copy: {i}\r\nReceived: from mx{i}.contoso.test\r\n"),
            boundary: &format!("----=_Part_{i}_{}", i * 7919),
        }
        .render();
        logical += raw.len() as u64;
        let id = store
            .archive(
                &request(&format!("user{i}"), "Inbox", None),
                RawMessage::Bytes(&raw),
            )
            .unwrap()
            .id;
        if i % 10 == 0 {
            assert_eq!(store.read_message(&id).unwrap(), raw);
        }
    }
    let stats = store.stats().unwrap();
    assert_eq!(stats.unique_messages, 50);
    assert_eq!(stats.logical_bytes, logical);
    let one_copy = logical / 50;
    assert!(
        stats.stored_bytes < one_copy + one_copy / 10,
        "stored {} for 50 copies of {one_copy}",
        stats.stored_bytes
    );
}

fn search_fixture(store: &DiskArchiveStore) -> BTreeMap<&'static str, MessageId> {
    let pdf = common::noise(3, 40_000);
    let mut ids = BTreeMap::new();
    let mails = [
        (
            "alice",
            "q3",
            Mail {
                from: "Megan Bowen <megan@contoso.test>",
                to: "alice@contoso.test",
                subject: "Quarterly forecast",
                date: july(2),
                body: "Numbers look strong.",
                attachments: &[("forecast-2025.xlsx", &pdf)],
                extra_headers: "",
                boundary: "x1",
            },
        ),
        (
            "alice",
            "lunch",
            Mail {
                from: "Lee Gu <lee@contoso.test>",
                to: "alice@contoso.test",
                subject: "Lunch on Friday",
                date: july(10),
                body: "Pizza or sushi?",
                attachments: &[],
                extra_headers: "",
                boundary: "x2",
            },
        ),
        (
            "alice",
            "html",
            Mail {
                from: "news@fabrikam.test",
                to: "alice@contoso.test",
                subject: "Newsletter",
                date: july(20),
                body: "",
                attachments: &[],
                extra_headers: "",
                boundary: "x3",
            },
        ),
        (
            "bob",
            "bobq3",
            Mail {
                from: "Megan Bowen <megan@contoso.test>",
                to: "bob@contoso.test",
                subject: "Quarterly forecast for Bob",
                date: july(5),
                body: "Bob's numbers.",
                attachments: &[("forecast-2025.xlsx", &pdf)],
                extra_headers: "",
                boundary: "x4",
            },
        ),
    ];
    for (user, key, mail) in mails {
        let mut raw = mail.render();
        if key == "html" {
            raw = b"From: news@fabrikam.test\r\nTo: alice@contoso.test\r\nSubject: Newsletter\r\nDate: Sun, 20 Jul 2025 09:30:00 +0000\r\nContent-Type: text/html\r\n\r\n<html><body><p>Our <b>sailing</b> regatta</p></body></html>\r\n".to_vec();
        }
        let id = store
            .archive(&request(user, "Inbox", Some(key)), RawMessage::Bytes(&raw))
            .unwrap()
            .id;
        ids.insert(key, id);
    }
    ids
}

fn hits(store: &DiskArchiveStore, q: &SearchQuery, scope: &Scope) -> Vec<MessageId> {
    let mut ids: Vec<MessageId> = store
        .search(q, scope)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    ids.sort();
    ids
}

#[test]
fn search_by_subject_sender_attachment_and_date_scoped_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ids = search_fixture(&store);
    let alice = Scope::User("alice".into());
    let bob = Scope::User("bob".into());
    assert_eq!(
        hits(&store, &query("quarterly"), &alice),
        vec![ids["q3"].clone()]
    );
    assert_eq!(
        hits(&store, &query("quarterly"), &bob),
        vec![ids["bobq3"].clone()]
    );
    let mut both = vec![ids["q3"].clone(), ids["bobq3"].clone()];
    both.sort();
    assert_eq!(hits(&store, &query("quarterly"), &Scope::Admin), both);
    assert_eq!(
        hits(&store, &query("lee@contoso.test"), &alice),
        vec![ids["lunch"].clone()]
    );
    assert_eq!(
        hits(&store, &query("from:megan"), &alice),
        vec![ids["q3"].clone()]
    );
    assert_eq!(
        hits(&store, &query("forecast-2025.xlsx"), &alice),
        vec![ids["q3"].clone()]
    );
    assert_eq!(
        hits(&store, &query("attachment:xlsx"), &bob),
        vec![ids["bobq3"].clone()]
    );
    assert_eq!(
        hits(&store, &query("sushi"), &alice),
        vec![ids["lunch"].clone()]
    );
    assert_eq!(
        hits(&store, &query("sailing"), &alice),
        vec![ids["html"].clone()],
        "html body reduced to text"
    );
    assert!(hits(&store, &query("sushi"), &bob).is_empty());
    let mut july_first_week = query("");
    july_first_week.from_date = Some(july(1));
    july_first_week.to_date = Some(july(8));
    assert_eq!(
        hits(&store, &july_first_week, &alice),
        vec![ids["q3"].clone()]
    );
    assert_eq!(hits(&store, &july_first_week, &Scope::Admin), both);
    let mut later = query("");
    later.from_date = Some(july(9));
    assert_eq!(hits(&store, &later, &alice).len(), 2);
    // Without text, newest first.
    let listed: Vec<MessageId> = store
        .search(&later, &alice)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(listed, vec![ids["html"].clone(), ids["lunch"].clone()]);
    // A user asking for someone else's archive is refused.
    let mut other = query("quarterly");
    other.user = Some("bob".into());
    assert!(matches!(
        store.search(&other, &alice),
        Err(ArchiveError::AccessDenied { .. })
    ));
    assert_eq!(
        hits(&store, &other, &Scope::Admin),
        vec![ids["bobq3"].clone()]
    );
    let hit = &store.search(&query("lunch"), &alice).unwrap()[0];
    assert_eq!(hit.subject.as_deref(), Some("Lunch on Friday"));
    assert_eq!(hit.user, "alice");
    assert_eq!(hit.folder, "Inbox");
}

#[test]
fn reindex_after_deleting_the_index_gives_identical_listings_and_results() {
    let dir = tempfile::tempdir().unwrap();
    let queries = [
        "quarterly",
        "from:megan",
        "forecast-2025.xlsx",
        "sailing",
        "sushi",
        "",
    ];
    let snapshot = |store: &DiskArchiveStore| {
        let listings: Vec<_> = ["alice", "bob"]
            .iter()
            .map(|u| store.list(u, None).unwrap())
            .collect();
        let results: Vec<_> = queries
            .iter()
            .map(|q| hits(store, &query(q), &Scope::Admin))
            .collect();
        (
            listings,
            results,
            store.stats().unwrap(),
            store.users().unwrap(),
        )
    };
    let before = {
        let store = open(dir.path());
        search_fixture(&store);
        snapshot(&store)
    };
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = open(dir.path());
    assert_eq!(snapshot(&store), before, "rebuilt on open");
    store.reindex().unwrap();
    assert_eq!(snapshot(&store), before, "explicit reindex");
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn verify_names_the_message_behind_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let attachment = common::noise(9, 200_000);
    let (victim, bystander, pack_len) = {
        let store = open(dir.path());
        let victim_raw = Mail {
            from: "a@contoso.test",
            to: "b@contoso.test",
            subject: "Victim",
            date: july(4),
            body: "x",
            attachments: &[("big.bin", &attachment)],
            extra_headers: "",
            boundary: "v",
        }
        .render();
        let victim = store
            .archive(
                &request("alice", "Inbox", None),
                RawMessage::Bytes(&victim_raw),
            )
            .unwrap()
            .id;
        let bystander = store
            .archive(
                &request("alice", "Sent", None),
                RawMessage::Bytes(b"Subject: other\r\n\r\nhello\r\n"),
            )
            .unwrap()
            .id;
        assert!(store.verify().unwrap().is_clean());
        let pack = dir.path().join("packs/pack-00000001.pack");
        (victim, bystander, std::fs::metadata(pack).unwrap().len())
    };
    // The attachment's chunks sit in the middle of the pack: flip one byte there.
    let pack = dir.path().join("packs/pack-00000001.pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    let at = (pack_len / 2) as usize;
    bytes[at] ^= 0x40;
    std::fs::write(&pack, &bytes).unwrap();

    let store = open(dir.path());
    let report = store.verify().unwrap();
    assert!(!report.is_clean());
    let named: Vec<_> = report
        .problems
        .iter()
        .flat_map(|p| p.affected.iter())
        .collect();
    assert!(
        named
            .iter()
            .any(|a| a.id == victim
                && a.archives == vec![("alice".to_string(), "Inbox".to_string())]),
        "{report:#?}"
    );
    assert!(named.iter().all(|a| a.id != bystander), "{report:#?}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.object.starts_with("packs/pack-00000001.pack@")),
        "{report:#?}"
    );
    // Reading it fails loudly, naming pack and message; the other message is fine.
    let err = store.read_message(&victim).unwrap_err().to_string();
    assert!(
        err.contains("pack-00000001.pack") && err.contains(&victim.0),
        "{err}"
    );
    assert!(!store.verify_message(&victim).unwrap());
    assert!(store.verify_message(&bystander).unwrap());
}

#[test]
fn a_second_writer_opens_the_same_archive() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let second = DiskArchiveStore::open(dir.path(), StoreOptions::default()).unwrap();
    let a = first
        .archive(
            &request("alice", "Inbox", Some("1")),
            RawMessage::Bytes(b"Subject: one\r\n\r\n1\r\n"),
        )
        .unwrap();
    let b = second
        .archive(
            &request("alice", "Inbox", Some("1")),
            RawMessage::Bytes(b"Subject: one\r\n\r\n1\r\n"),
        )
        .unwrap();
    assert_eq!(a.id, b.id);
    assert!(
        a.new_entry && !b.new_entry,
        "the second writer sees the first's entry"
    );
    assert_eq!(second.list("alice", None).unwrap().len(), 1);
}

#[test]
fn torn_tails_are_cut_and_everything_before_them_survives() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = open(dir.path());
        store
            .archive(
                &request("alice", "Inbox", Some("1")),
                RawMessage::Bytes(b"Subject: keep\r\n\r\nme\r\n"),
            )
            .unwrap()
            .id
    };
    // A crash in the middle of writes leaves half frames behind.
    for file in ["packs/pack-00000001.pack", "records.log"] {
        let path = dir.path().join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"ASf1\x01\xff\x00\x00\x00partial");
        std::fs::write(&path, bytes).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(
        store.read_message(&id).unwrap(),
        b"Subject: keep\r\n\r\nme\r\n"
    );
    assert!(store.verify().unwrap().is_clean());
    let next = store
        .archive(
            &request("alice", "Inbox", Some("2")),
            RawMessage::Bytes(b"Subject: after\r\n\r\n"),
        )
        .unwrap();
    assert!(next.new_entry);
    assert_eq!(store.list("alice", Some("Inbox")).unwrap().len(), 2);
}

#[test]
fn encrypted_archives_hide_content_and_need_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("archive.key");
    std::fs::write(&key, "5a".repeat(32)).unwrap();
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, "17".repeat(32)).unwrap();
    let store_dir = dir.path().join("store");
    let raw =
        b"Subject: Merger talks with Fabrikam\r\n\r\nStrictly confidential plans\r\n".to_vec();
    let options = |k: &std::path::Path| StoreOptions {
        encryption_key_file: Some(k.to_path_buf()),
        ..StoreOptions::default()
    };
    let id = {
        let store = DiskArchiveStore::open(&store_dir, options(&key)).unwrap();
        let id = store
            .archive(&request("alice", "Inbox", None), RawMessage::Bytes(&raw))
            .unwrap()
            .id;
        assert_ne!(
            id.0,
            blake3::hash(&raw).to_hex().to_string(),
            "addresses are keyed"
        );
        assert_eq!(store.read_message(&id).unwrap(), raw);
        id
    };
    for file in ["packs/pack-00000001.pack", "records.log"] {
        let bytes = std::fs::read(store_dir.join(file)).unwrap();
        assert!(
            !bytes.windows(9).any(|w| w == b"Fabrikam "),
            "plain text in {file}"
        );
        assert!(
            !bytes.windows(5).any(|w| w == b"alice"),
            "user name in {file}"
        );
    }
    assert!(matches!(
        DiskArchiveStore::open(&store_dir, StoreOptions::default()),
        Err(ArchiveError::Key { .. })
    ));
    assert!(matches!(
        DiskArchiveStore::open(&store_dir, options(&other_key)),
        Err(ArchiveError::Key { .. })
    ));
    let store = DiskArchiveStore::open(&store_dir, options(&key)).unwrap();
    assert_eq!(store.read_message(&id).unwrap(), raw);
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn large_messages_from_files_are_archived_and_unparseable_ones_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store"));
    let attachment = common::noise(11, 12 << 20);
    let raw = Mail {
        from: "big@contoso.test",
        to: "alice@contoso.test",
        subject: "Huge scan",
        date: july(6),
        body: "the scan",
        attachments: &[("scan.tiff", &attachment)],
        extra_headers: "",
        boundary: "big",
    }
    .render();
    let spool = dir.path().join("spool.eml");
    std::fs::write(&spool, &raw).unwrap();
    let id = store
        .archive(&request("alice", "Inbox", None), RawMessage::File(&spool))
        .unwrap()
        .id;
    assert_eq!(store.read_message(&id).unwrap(), raw);
    let info = store.show(&id).unwrap();
    assert_eq!(info.metadata.attachments, vec!["scan.tiff".to_string()]);
    assert_eq!(info.size, raw.len() as u64);
    assert_eq!(
        hits(&store, &query("scan.tiff"), &Scope::User("alice".into())),
        vec![id]
    );

    let junk = store
        .archive(&request("alice", "Junk", None), RawMessage::Bytes(b""))
        .unwrap()
        .id;
    let listed = store.list("alice", Some("Junk")).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, junk);
    assert!(listed[0].unparseable);
}
