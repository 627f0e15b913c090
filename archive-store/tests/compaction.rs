//! Compaction: packs are rewritten without the chunks and manifests no live entry
//! references; shared chunks stay; the space is reclaimed (measured against a
//! store that never held the expunged messages); a failed write (disk full, EIO,
//! a short write) at any point of a compaction leaves a valid store; random
//! sequences of archive / expunge / restrict / compact / reopen agree with a model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use archive_store::io::Fault;
use archive_store::{
    ArchiveError, ArchiveStore, DiskArchiveStore, EntryRef, FaultyIo, MessageId, RawMessage, Scope,
    SearchQuery, StoreOptions, Visibility,
};
use proptest::prelude::*;

fn mail(n: u64, attachment: &[u8]) -> Vec<u8> {
    common::Mail {
        from: "bob@contoso.test",
        to: "alice@contoso.test",
        subject: &format!("compaction message {n}"),
        date: common::july(1 + (n % 28) as u32),
        body: "see attached",
        attachments: &[("data.bin", attachment)],
        extra_headers: "",
        boundary: &format!("b{n}"),
    }
    .render()
}

fn put(store: &DiskArchiveStore, user: &str, n: u64, raw: &[u8]) -> MessageId {
    store
        .archive(
            &common::request(user, "Inbox", Some(&n.to_string())),
            RawMessage::Bytes(raw),
        )
        .unwrap()
        .id
}

fn small_packs() -> StoreOptions {
    StoreOptions {
        pack_size_limit: 1 << 20,
        ..StoreOptions::default()
    }
}

#[test]
fn compaction_reclaims_what_nothing_references_and_keeps_shared_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let full = DiskArchiveStore::open(dir.path().join("full"), small_packs()).unwrap();
    let kept_only = DiskArchiveStore::open(dir.path().join("kept"), small_packs()).unwrap();
    let shared = common::noise(1, 150_000);
    let mut kept = Vec::new();
    let mut gone = Vec::new();
    for n in 0..40u64 {
        // Every third message to go shares its attachment with a kept one.
        let own = common::noise(100 + n, 60_000 + (n as usize % 5) * 10_000);
        let raw = if n.is_multiple_of(6) {
            mail(n, &shared)
        } else {
            mail(n, &own)
        };
        let id = put(&full, "alice", n, &raw);
        if n.is_multiple_of(2) {
            put(&kept_only, "alice", n, &raw);
            kept.push((id, raw));
        } else {
            gone.push((id, raw));
        }
    }
    // The shared attachment stays referenced by kept messages (multiples of 6 are even).
    let goes_shared = mail(1_001, &shared);
    let shared_gone = put(&full, "alice", 1_001, &goes_shared);
    gone.push((shared_gone, goes_shared));
    let before = full.stats().unwrap().stored_bytes;
    let baseline = kept_only.stats().unwrap().stored_bytes;
    let refs: Vec<EntryRef> = gone
        .iter()
        .map(|(id, _)| EntryRef::new("alice", "Inbox", id.clone()))
        .collect();
    let expunged = full.expunge(&refs, &|_| true).unwrap();
    assert_eq!(expunged.expunged.len(), gone.len());
    let report = full.compact().unwrap();
    let after = full.stats().unwrap().stored_bytes;
    let garbage = before - baseline;
    eprintln!(
        "compaction: {before} bytes before, {after} after, {baseline} for the kept messages alone; {report:?}"
    );
    assert_eq!(report.bytes_before, before);
    assert_eq!(report.bytes_after, after);
    assert!(
        report.bytes_reclaimed * 10 >= garbage * 9,
        "reclaimed {} of {garbage}",
        report.bytes_reclaimed
    );
    assert_eq!(report.messages_moved, kept.len() as u64);
    assert_eq!(report.messages_dropped, gone.len() as u64);
    assert!(report.kept.is_empty());
    let check = |store: &DiskArchiveStore| {
        for (id, raw) in &kept {
            assert_eq!(&store.read_message(id).unwrap(), raw);
        }
        for (id, _) in &gone {
            assert!(matches!(
                store.read_message(id),
                Err(ArchiveError::NotFound { .. })
            ));
        }
        let report = store.verify().unwrap();
        assert!(report.is_clean(), "{report:#?}");
        assert_eq!(report.messages, kept.len() as u64);
        assert_eq!(store.stats().unwrap().messages, kept.len() as u64);
    };
    check(&full);
    // Nothing left to do.
    let again = full.compact().unwrap();
    assert_eq!(again.packs_rewritten, 0);
    drop(full);
    check(&DiskArchiveStore::open(dir.path().join("full"), small_packs()).unwrap());
    DiskArchiveStore::rebuild_indexes(dir.path().join("full"), small_packs()).unwrap();
    let full = DiskArchiveStore::open(dir.path().join("full"), small_packs()).unwrap();
    check(&full);
    // What compaction dropped can be archived again.
    let (id, raw) = &gone[0];
    let outcome = full
        .archive(
            &common::request("bob", "Inbox", None),
            RawMessage::Bytes(raw),
        )
        .unwrap();
    assert!(outcome.new_content);
    assert_eq!(&full.read_message(id).unwrap(), raw);
    assert!(full.verify().unwrap().is_clean());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn faulty(io: Arc<FaultyIo>) -> StoreOptions {
    StoreOptions {
        io: Some(io),
        ..small_packs()
    }
}

#[test]
fn a_failed_write_at_any_point_of_a_compaction_leaves_a_valid_store() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template");
    let mut live = Vec::new();
    {
        let store = DiskArchiveStore::open(&template, small_packs()).unwrap();
        let mut refs = Vec::new();
        for n in 0..8u64 {
            let raw = mail(n, &common::noise(n, 20_000));
            let id = put(&store, "alice", n, &raw);
            if n.is_multiple_of(2) {
                live.push((id, raw));
            } else {
                refs.push(EntryRef::new("alice", "Inbox", id));
            }
        }
        store.expunge(&refs, &|_| true).unwrap();
    }
    // Operations an open takes, and those of the compaction after it.
    let counting = Arc::new(FaultyIo::counting());
    let probe = dir.path().join("probe");
    copy_dir(&template, &probe);
    let store = DiskArchiveStore::open(&probe, faulty(counting.clone())).unwrap();
    let opened = counting.ops();
    store.compact().unwrap();
    let total = counting.ops() - opened;
    drop(store);
    assert!(total > 5, "{total} operations");
    let mut failures = 0;
    for fault in [Fault::DiskFull, Fault::Eio, Fault::ShortWrite] {
        for k in 1..=total {
            let case = dir.path().join(format!("{fault:?}-{k}"));
            copy_dir(&template, &case);
            let io = Arc::new(FaultyIo::failing(opened + k, fault));
            {
                let store = DiskArchiveStore::open(&case, faulty(io.clone())).unwrap();
                match store.compact() {
                    Ok(_) => assert!(!io.fired(), "{fault:?} {k}: a fired fault went unnoticed"),
                    Err(e) => {
                        failures += 1;
                        assert!(e.io_kind().is_some(), "{fault:?} {k}: {e}");
                        // The store refuses further writes.
                        assert!(store.compact().is_err());
                    }
                }
            }
            let store = DiskArchiveStore::open(&case, small_packs()).unwrap();
            let check = |store: &DiskArchiveStore| {
                let report = store.verify().unwrap();
                assert!(report.is_clean(), "{fault:?} {k}: {report:#?}");
                for (id, raw) in &live {
                    assert_eq!(&store.read_message(id).unwrap(), raw, "{fault:?} {k}");
                }
                assert_eq!(store.list("alice", None).unwrap().len(), live.len());
            };
            check(&store);
            store.compact().unwrap();
            check(&store);
            drop(store);
            std::fs::remove_dir_all(&case).unwrap();
        }
    }
    assert!(failures > 0);
}

#[derive(Debug, Clone)]
enum Op {
    Archive {
        user: u8,
        folder: u8,
        message: u8,
    },
    Expunge {
        user: u8,
        folder: u8,
        message: u8,
    },
    Restrict {
        user: u8,
        folder: u8,
        message: u8,
        on: bool,
    },
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 0..2u8, 0..5u8).prop_map(|(user, folder, message)| Op::Archive { user, folder, message }),
        3 => (0..3u8, 0..2u8, 0..5u8).prop_map(|(user, folder, message)| Op::Expunge { user, folder, message }),
        2 => (0..3u8, 0..2u8, 0..5u8, any::<bool>()).prop_map(|(user, folder, message, on)| Op::Restrict { user, folder, message, on }),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

/// Message `m`: its own attachment, and one shared by every even message.
fn model_mail(m: u8) -> Vec<u8> {
    let attachment = if m.is_multiple_of(2) {
        common::noise(999, 30_000)
    } else {
        common::noise(u64::from(m), 30_000)
    };
    mail(u64::from(m), &attachment)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 20, ..ProptestConfig::default() })]
    #[test]
    fn random_archive_expunge_restrict_compact_agree_with_a_model(ops in proptest::collection::vec(op(), 1..14)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let mut store = DiskArchiveStore::open(&path, small_packs()).unwrap();
        // (user, folder, message) → restricted
        let mut model: BTreeMap<(String, String, u8), bool> = BTreeMap::new();
        let ids: Vec<MessageId> = (0..5u8).map(|m| {
            MessageId(blake3::hash(&model_mail(m)).to_hex().to_string())
        }).collect();
        let names = |u: u8, f: u8| (format!("user{u}"), ["Inbox", "Sent"][f as usize].to_string());
        // (user, message) expunged from that user's archive, no entry of theirs left:
        // archiving it again is refused.
        let mut forgotten: BTreeSet<(String, u8)> = BTreeSet::new();
        for op in &ops {
            match *op {
                Op::Archive { user, folder, message } => {
                    let (u, f) = names(user, folder);
                    let outcome = store.archive(&common::request(&u, &f, None), RawMessage::Bytes(&model_mail(message))).unwrap();
                    let refused = forgotten.contains(&(u.clone(), message));
                    prop_assert_eq!(outcome.forgotten, refused);
                    if !refused {
                        model.entry((u, f, message)).or_insert(false);
                    }
                }
                Op::Expunge { user, folder, message } => {
                    let (u, f) = names(user, folder);
                    let report = store.expunge(&[EntryRef::new(&u, &f, ids[message as usize].clone())], &|_| true).unwrap();
                    let was = model.remove(&(u.clone(), f, message)).is_some();
                    prop_assert_eq!(report.expunged.len(), usize::from(was));
                    if was && !model.keys().any(|(mu, _, mm)| *mu == u && *mm == message) {
                        forgotten.insert((u, message));
                    }
                }
                Op::Restrict { user, folder, message, on } => {
                    let (u, f) = names(user, folder);
                    store.set_restricted(&[EntryRef::new(&u, &f, ids[message as usize].clone())], on).unwrap();
                    if let Some(mark) = model.get_mut(&(u, f, message)) {
                        *mark = on;
                    }
                }
                Op::Compact => {
                    store.compact().unwrap();
                }
                Op::Reopen => {
                    drop(store);
                    store = DiskArchiveStore::open(&path, small_packs()).unwrap();
                }
            }
        }
        let check = |store: &DiskArchiveStore| -> Result<(), TestCaseError> {
            let all: Vec<(String, String, String)> = model.keys().map(|(u, f, m)| (u.clone(), f.clone(), ids[*m as usize].0.clone())).collect();
            let visible: Vec<(String, String, String)> = model.iter().filter(|(_, r)| !**r).map(|((u, f, m), _)| (u.clone(), f.clone(), ids[*m as usize].0.clone())).collect();
            let mut listed = Vec::new();
            let mut privileged = Vec::new();
            for u in 0..3u8 {
                let user = format!("user{u}");
                listed.extend(store.list(&user, None).unwrap().into_iter().map(|e| (e.user, e.folder, e.id.0)));
                privileged.extend(store.list_with(&user, None, Visibility::Privileged).unwrap().into_iter().map(|e| (e.user, e.folder, e.id.0)));
            }
            listed.sort();
            privileged.sort();
            let mut sorted_all = all.clone();
            sorted_all.sort();
            let mut sorted_visible = visible.clone();
            sorted_visible.sort();
            prop_assert_eq!(&listed, &sorted_visible);
            prop_assert_eq!(&privileged, &sorted_all);
            let query = SearchQuery { text: "compaction".into(), user: None, from_date: None, to_date: None, limit: 100 };
            let mut hits: Vec<_> = store.search(&query, &Scope::Admin).unwrap().into_iter().map(|h| (h.user, h.folder, h.id.0)).collect();
            hits.sort();
            prop_assert_eq!(&hits, &sorted_visible);
            let mut seen: Vec<_> = store.search(&query, &Scope::Privileged).unwrap().into_iter().map(|h| (h.user, h.folder, h.id.0)).collect();
            seen.sort();
            prop_assert_eq!(&seen, &sorted_all);
            for (u, f, m) in model.keys() {
                prop_assert_eq!(store.read_message(&ids[*m as usize]).unwrap(), model_mail(*m), "{} {}", u, f);
            }
            prop_assert_eq!(store.stats().unwrap().messages, model.len() as u64);
            let report = store.verify().unwrap();
            prop_assert!(report.is_clean(), "{:#?}", report);
            Ok(())
        };
        check(&store)?;
        store.compact().unwrap();
        drop(store);
        DiskArchiveStore::rebuild_indexes(&path, small_packs()).unwrap();
        check(&DiskArchiveStore::open(&path, small_packs()).unwrap())?;
    }
}
