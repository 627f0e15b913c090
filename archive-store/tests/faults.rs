//! A failed write stops cleanly: a run-like workload (several threads, shared
//! attachments, messages spanning several chunks) is repeated with the Nth write or
//! fsync of the store failing (disk full, I/O error, short write), for every N of a
//! clean run. After each, the archive reopened with real I/O holds every
//! acknowledged message byte for byte, verifies clean, and a rerun archives the
//! rest without duplicate entries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use archive_store::io::Fault;
use archive_store::{
    ArchiveError, ArchiveRequest, ArchiveStore, DiskArchiveStore, FaultyIo, MessageId, RawMessage,
    StoreIo, StoreOptions,
};

const THREADS: usize = 3;

struct Message {
    request: ArchiveRequest,
    raw: Vec<u8>,
}

fn messages() -> Vec<Message> {
    let shared = common::noise(1, 20_000);
    let large = common::noise(2, 150_000);
    (0..18u64)
        .map(|i| {
            let own = common::noise(100 + i, 300);
            let attachments: Vec<(&str, &[u8])> = match i % 6 {
                0 | 4 => vec![("shared.bin", &shared)],
                3 => vec![("large.bin", &large), ("own.bin", &own)],
                _ => vec![("own.bin", &own)],
            };
            // The last few are copies of earlier contents in the other user's archive.
            let n = if i >= 15 { i - 15 } else { i };
            let raw = common::Mail {
                from: "megan@contoso.test",
                to: "alice@contoso.test",
                subject: &format!("message {n}"),
                date: common::july(1 + n as u32),
                body: "short body",
                attachments: &attachments,
                extra_headers: "",
                boundary: "bnd",
            }
            .render();
            let user = ["alice", "bob"][(i % 2) as usize];
            Message {
                request: common::request(user, "Inbox", Some(&format!("m{i}"))),
                raw,
            }
        })
        .collect()
}

/// What a run acknowledged, and the errors it saw.
#[derive(Default)]
struct Outcome {
    acked: Vec<(usize, MessageId)>,
    errors: Vec<ArchiveError>,
}

/// Runs the workload on `dir` with `io`; the store is dropped at the end.
fn run(dir: &Path, io: Option<Arc<dyn StoreIo>>, all: &[Message]) -> Outcome {
    let options = StoreOptions {
        io,
        pack_size_limit: 1 << 20,
        ..StoreOptions::default()
    };
    let store = match DiskArchiveStore::open(dir, options) {
        Ok(store) => store,
        Err(e) => {
            return Outcome {
                acked: Vec::new(),
                errors: vec![e],
            };
        }
    };
    let outcome = Mutex::new(Outcome::default());
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (store, outcome) = (&store, &outcome);
            scope.spawn(move || {
                for (i, m) in all.iter().enumerate().filter(|(i, _)| i % THREADS == t) {
                    let result = store.archive(&m.request, RawMessage::Bytes(&m.raw));
                    let mut o = outcome.lock().unwrap();
                    match result {
                        Ok(out) => o.acked.push((i, out.id)),
                        Err(e) => o.errors.push(e),
                    }
                }
            });
        }
    });
    drop(store);
    outcome.into_inner().unwrap()
}

/// Checks the archive after a run with a failing operation.
fn check(n: u64, fault: Fault, all: &[Message]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let io = Arc::new(FaultyIo::failing(n, fault));
    let faulty = run(&dir, Some(io.clone()), all);
    let at = format!("{fault:?} at operation {n}");
    for e in &faulty.errors {
        // A short write is a full disk; an fsync chosen for it fails with EIO.
        if fault == Fault::DiskFull {
            assert!(e.is_disk_full(), "{at}: not seen as disk full: {e}");
        } else {
            assert!(e.io_kind().is_some(), "{at}: no I/O kind: {e}");
        }
    }
    if io.fired() {
        assert!(
            !faulty.errors.is_empty() || faulty.acked.len() == all.len(),
            "{at}: a failure was swallowed"
        );
    }

    let store = common::open(&dir);
    for (i, id) in &faulty.acked {
        let m = &all[*i];
        assert_eq!(
            store.read_message(id).unwrap(),
            m.raw,
            "{at}: acknowledged message {i}"
        );
        let source = m.request.source.as_ref().unwrap();
        assert_eq!(
            store.find_source(&m.request.user, source).unwrap().as_ref(),
            Some(id),
            "{at}: acknowledged message {i} is listed"
        );
    }
    let report = store.verify().unwrap();
    assert!(
        report.is_clean(),
        "{at}: verify after the failure: {report:?}"
    );
    drop(store);

    let rerun = run(&dir, None, all);
    assert!(rerun.errors.is_empty(), "{at}: rerun: {:?}", rerun.errors);
    let store = common::open(&dir);
    let mut expected = BTreeSet::new();
    for (i, id) in &rerun.acked {
        expected.insert((all[*i].request.user.clone(), id.clone()));
    }
    let mut listed = Vec::new();
    for user in ["alice", "bob"] {
        for e in store.list(user, None).unwrap() {
            listed.push((e.user, e.id));
        }
    }
    assert_eq!(listed.len(), expected.len(), "{at}: no duplicate entries");
    assert_eq!(
        listed.into_iter().collect::<BTreeSet<_>>(),
        expected,
        "{at}"
    );
    assert!(
        store.verify().unwrap().is_clean(),
        "{at}: verify after rerun"
    );
}

#[test]
fn a_failed_write_at_any_point_stops_cleanly() {
    let all = messages();
    let tmp = tempfile::tempdir().unwrap();
    let counter = Arc::new(FaultyIo::counting());
    let clean = run(&tmp.path().join("archive"), Some(counter.clone()), &all);
    assert!(clean.errors.is_empty(), "clean run: {:?}", clean.errors);
    let ops = counter.ops();
    assert!(ops > 20, "the store's writes go through the seam ({ops})");
    // Thread interleaving makes the count vary a little between runs: go past it.
    for n in 1..=ops + 5 {
        for fault in [Fault::DiskFull, Fault::Eio, Fault::ShortWrite] {
            check(n, fault, &all);
        }
    }
}
