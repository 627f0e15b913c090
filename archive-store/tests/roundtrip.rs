//! Byte-exact round trips: generated MIME, arbitrary bytes and the mail-parser
//! corpus go in and come back identical, through `read_message`, `.eml` export
//! and mbox export, and re-import adds nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use archive_store::{ArchiveStore, ExportFilter, ExportFormat, MessageId, RawMessage};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn eol() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\r\n"), Just("\n")]
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,90}",
        Just("From the desk of the director".to_string()),
        Just(">From quoted".to_string()),
        Just("--not-a-boundary".to_string()),
        Just(String::new()),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (prop::collection::vec(line(), 0..30), eol())
            .prop_map(|(lines, eol)| lines.join(eol).into_bytes()),
        prop::collection::vec(any::<u8>(), 0..3000),
        (any::<u64>(), 0usize..40_000)
            .prop_map(|(seed, n)| common::base64_lines(&common::noise(seed, n))),
    ]
}

fn part(depth: u32) -> BoxedStrategy<Vec<u8>> {
    let leaf = (body(), "[a-z/]{1,20}", eol())
        .prop_map(|(body, ctype, eol)| {
            let mut p =
                format!("Content-Type: {ctype}{eol}Content-Transfer-Encoding: base64{eol}{eol}")
                    .into_bytes();
            p.extend_from_slice(&body);
            p
        })
        .boxed();
    if depth == 0 {
        return leaf;
    }
    let multi = (
        prop::collection::vec(part(depth - 1), 0..4),
        "[A-Za-z0-9'()+_,./:=?-]{1,40}",
        eol(),
        any::<bool>(),
    )
        .prop_map(|(parts, boundary, eol, close)| {
            let mut p = format!(
                "Content-Type: multipart/mixed;{eol} boundary=\"{boundary}\"{eol}{eol}preamble{eol}"
            )
            .into_bytes();
            for part in parts {
                p.extend_from_slice(format!("--{boundary}{eol}").as_bytes());
                p.extend_from_slice(&part);
                p.extend_from_slice(eol.as_bytes());
            }
            if close {
                p.extend_from_slice(format!("--{boundary}--{eol}epilogue").as_bytes());
            }
            p
        })
        .boxed();
    prop_oneof![leaf, multi].boxed()
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => ("[ -~]{0,60}", part(3), eol()).prop_map(|(subject, body, eol)| {
            let mut m = format!("From: someone@example.com{eol}Subject: {subject}{eol}").into_bytes();
            m.extend_from_slice(&body);
            m
        }),
        1 => prop::collection::vec(any::<u8>(), 0..5000),
    ]
}

fn ids_of(store: &archive_store::DiskArchiveStore, user: &str) -> BTreeSet<MessageId> {
    store
        .list(user, None)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

#[test]
fn generated_mime_and_arbitrary_bytes_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let archived: std::cell::RefCell<Vec<Vec<u8>>> = std::cell::RefCell::new(Vec::new());
    runner
        .run(&message(), |raw| {
            let outcome = store
                .archive(
                    &common::request("alice", "Inbox", None),
                    RawMessage::Bytes(&raw),
                )
                .unwrap();
            prop_assert_eq!(&outcome.id.0, &blake3::hash(&raw).to_hex().to_string());
            prop_assert_eq!(store.read_message(&outcome.id).unwrap(), raw.clone());
            prop_assert!(store.verify_message(&outcome.id).unwrap());
            archived.borrow_mut().push(raw);
            Ok(())
        })
        .unwrap();
    export_import_round_trip(&store, dir.path(), &archived.borrow());
}

#[test]
fn mail_parser_corpus_round_trips_exactly() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(&dir.path().join("store"));
    let report = store.import("alice", None, &corpus).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(report.messages >= 100, "{report:?}");
    let mut originals = Vec::new();
    for sub in ["legacy", "malformed", "rfc", "thirdparty"] {
        for entry in std::fs::read_dir(corpus.join(sub)).unwrap() {
            let raw = std::fs::read(entry.unwrap().path()).unwrap();
            let id = MessageId(blake3::hash(&raw).to_hex().to_string());
            assert_eq!(store.read_message(&id).unwrap(), raw);
            originals.push(raw);
        }
    }
    assert_eq!(
        store.folders("alice").unwrap(),
        vec!["legacy", "malformed", "rfc", "thirdparty"]
    );
    // Unparseable or not, every message is listed; most have a subject.
    let listed = store.list("alice", None).unwrap();
    assert_eq!(listed.len() as u64, report.imported);
    assert!(listed.iter().filter(|e| e.subject.is_some()).count() > listed.len() / 2);
    // Re-import adds nothing.
    let again = store.import("alice", None, &corpus).unwrap();
    assert_eq!(again.imported, 0);
    assert_eq!(again.duplicates, report.messages);
    export_import_round_trip(&store, dir.path(), &originals);
    assert!(store.verify().unwrap().is_clean());
}

/// Exports alice's archive as .eml and mbox, imports both into other users and
/// checks the same contents arrive; importing again adds nothing.
fn export_import_round_trip(
    store: &archive_store::DiskArchiveStore,
    dir: &Path,
    originals: &[Vec<u8>],
) {
    let expected: BTreeSet<MessageId> = originals
        .iter()
        .map(|raw| MessageId(blake3::hash(raw).to_hex().to_string()))
        .collect();
    assert_eq!(ids_of(store, "alice"), expected);
    let filter = ExportFilter {
        user: "alice".into(),
        folder: None,
        ids: None,
    };
    let mbox = dir.join("export/alice.mbox");
    let report = store.export(&filter, ExportFormat::Mbox, &mbox).unwrap();
    assert!(report.failed.is_empty());
    let imported = store.import("bob", Some("Imported"), &mbox).unwrap();
    assert!(imported.failed.is_empty(), "{:?}", imported.failed);
    assert_eq!(
        ids_of(store, "bob"),
        expected,
        "mbox round trip changed bytes"
    );
    let again = store.import("bob", Some("Imported"), &mbox).unwrap();
    assert_eq!(again.imported, 0);

    let emls = dir.join("export/alice-eml");
    store.export(&filter, ExportFormat::Eml, &emls).unwrap();
    let imported = store.import("carol", None, &emls).unwrap();
    assert!(imported.failed.is_empty(), "{:?}", imported.failed);
    assert_eq!(
        ids_of(store, "carol"),
        expected,
        "eml round trip changed bytes"
    );
}

#[test]
fn maildir_files_without_extension_are_imported_into_the_maildir_folder() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail/Projects");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    std::fs::write(
        maildir.join("cur/1700000000.1.host:2,S"),
        b"Subject: seen\r\n\r\none\r\n",
    )
    .unwrap();
    std::fs::write(
        maildir.join("new/1700000001.2.host"),
        b"Subject: unseen\r\n\r\ntwo\r\n",
    )
    .unwrap();
    std::fs::write(
        maildir.join("tmp/1700000002.3.host"),
        b"Subject: half delivered\r\n",
    )
    .unwrap();
    let store = common::open(&dir.path().join("store"));
    let report = store
        .import("alice", None, &dir.path().join("mail"))
        .unwrap();
    assert_eq!((report.messages, report.imported), (2, 2), "{report:?}");
    assert_eq!(store.folders("alice").unwrap(), vec!["Projects"]);
}
