//! Damaged caches heal themselves: whatever happens to `index.db`, tantivy, the
//! recorded positions or the generation pointer, or with the caches of an older
//! (sled) layout, opening the archive (writable or
//! read-only) and `rebuild_indexes` work and every answer is what it was before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use archive_store::{
    ArchiveStore, DiskArchiveStore, ExportFilter, ExportFormat, MessageId, RawMessage, Scope,
    SearchQuery, StoreOptions,
};
use common::{Mail, july, noise, request};
use proptest::prelude::*;

const USERS: [&str; 2] = ["alice", "bob"];
const QUERIES: [&str; 4] = ["budget", "report", "sailing", ""];

/// Archives a small fixture; returns the ids.
fn fixture(dir: &Path) -> Vec<MessageId> {
    let store = common::open(dir);
    let shared = noise(7, 3000);
    let mut ids = Vec::new();
    for i in 0..12u32 {
        let topic = ["budget", "report", "sailing"][i as usize % 3];
        let attachment = noise(u64::from(i), 500);
        let attachments: Vec<(&str, &[u8])> = if i % 2 == 0 {
            vec![("shared.bin", &shared), ("own.bin", &attachment)]
        } else {
            Vec::new()
        };
        let raw = Mail {
            from: "megan@contoso.test",
            to: "alice@contoso.test",
            subject: &format!("{topic} number {i}"),
            date: july(1 + i % 28),
            body: &format!("The {topic} text of message {i}."),
            attachments: &attachments,
            extra_headers: "",
            boundary: "b0undary",
        }
        .render();
        let user = USERS[i as usize % 2];
        let folder = if i % 3 == 0 { "Inbox" } else { "Archive/2025" };
        let out = store
            .archive(
                &request(user, folder, Some(&format!("m{i}"))),
                RawMessage::Bytes(&raw),
            )
            .unwrap();
        ids.push(out.id);
    }
    ids
}

/// Everything a reader can ask, in comparable form.
#[derive(Debug, PartialEq)]
struct Answers {
    lists: Vec<Vec<archive_store::ArchiveEntry>>,
    hits: Vec<Vec<archive_store::SearchHit>>,
    stats: archive_store::ArchiveStats,
    shows: Vec<archive_store::MessageInfo>,
    sources: Vec<Option<MessageId>>,
    exported: Vec<Vec<u8>>,
    clean: bool,
}

fn answers(store: &DiskArchiveStore, ids: &[MessageId], out: &Path) -> Answers {
    let hits = QUERIES
        .iter()
        .map(|q| {
            let query = SearchQuery {
                text: (*q).to_string(),
                user: None,
                from_date: None,
                to_date: None,
                limit: 100,
            };
            let mut hits = store.search(&query, &Scope::Admin).unwrap();
            hits.sort_by(|a, b| (&a.id, &a.user, &a.folder).cmp(&(&b.id, &b.user, &b.folder)));
            hits
        })
        .collect();
    let exported = USERS
        .iter()
        .map(|u| {
            let file = out.join(format!("{u}.mbox"));
            let filter = ExportFilter {
                user: (*u).to_string(),
                folder: None,
                ids: None,
            };
            store.export(&filter, ExportFormat::Mbox, &file).unwrap();
            std::fs::read(&file).unwrap()
        })
        .collect();
    Answers {
        lists: USERS.iter().map(|u| store.list(u, None).unwrap()).collect(),
        hits,
        stats: store.stats().unwrap(),
        shows: ids.iter().map(|id| store.show(id).unwrap()).collect(),
        sources: (0..12)
            .map(|i| {
                let r = request(USERS[i % 2], "x", Some(&format!("m{i}")));
                store
                    .find_source(&r.user, r.source.as_ref().unwrap())
                    .unwrap()
            })
            .collect(),
        exported,
        clean: store.verify().unwrap().is_clean(),
    }
}

/// The directory of the current index generation.
fn generation(dir: &Path) -> PathBuf {
    let name = std::fs::read_to_string(dir.join("index/CURRENT")).unwrap();
    dir.join("index").join(name.trim())
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn overwrite(path: &Path, seed: u64) {
    let len = std::fs::metadata(path).unwrap().len() as usize;
    std::fs::write(path, noise(seed, len.max(64))).unwrap();
}

fn truncate(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
}

type Damage = fn(&Path);

fn damages() -> Vec<(&'static str, Damage)> {
    vec![
        ("index.db overwritten", |g| {
            overwrite(&g.join("index.db"), 1);
        }),
        ("index.db truncated", |g| {
            truncate(&g.join("index.db"));
        }),
        ("index.db deleted", |g| {
            std::fs::remove_file(g.join("index.db")).unwrap();
        }),
        ("index.db rows damaged", |g| {
            let db = rusqlite::Connection::open(g.join("index.db")).unwrap();
            db.execute("UPDATE kv SET v = x'00112233445566' WHERE t = 3", [])
                .unwrap();
        }),
        ("tantivy meta.json overwritten", |g| {
            overwrite(&g.join("search/meta.json"), 3);
        }),
        ("tantivy meta.json deleted", |g| {
            std::fs::remove_file(g.join("search/meta.json")).unwrap();
        }),
        ("tantivy segments overwritten", |g| {
            for (i, f) in files(&g.join("search")).iter().enumerate() {
                if !f.ends_with("meta.json") {
                    overwrite(f, 100 + i as u64);
                }
            }
        }),
        ("tantivy segments truncated", |g| {
            for f in files(&g.join("search")) {
                if !f.ends_with("meta.json") {
                    truncate(&f);
                }
            }
        }),
        ("tantivy segments deleted", |g| {
            for f in files(&g.join("search")) {
                if !f.ends_with("meta.json") {
                    std::fs::remove_file(f).unwrap();
                }
            }
        }),
        ("positions beyond the files", |g| {
            let db = rusqlite::Connection::open(g.join("index.db")).unwrap();
            let far = (1u64 << 50).to_le_bytes();
            let mut v = far.to_vec();
            let mut crc = crc32fast_free(0, b"log", &far);
            v.extend_from_slice(&crc.to_le_bytes());
            db.execute(
                "UPDATE kv SET v = ?1 WHERE t = 0 AND k = CAST('log' AS BLOB)",
                [&v],
            )
            .unwrap();
            v.truncate(8);
            crc = crc32fast_free(0, b"pack", &far);
            v.extend_from_slice(&crc.to_le_bytes());
            db.execute(
                "UPDATE kv SET v = ?1 WHERE t = 0 AND k = CAST('pack' AS BLOB)",
                [&v],
            )
            .unwrap();
        }),
        ("pointer garbage", |g| {
            std::fs::write(g.parent().unwrap().join("CURRENT"), b"\x00\xffnonsense").unwrap();
        }),
        ("pointer missing", |g| {
            std::fs::remove_file(g.parent().unwrap().join("CURRENT")).unwrap();
        }),
        ("pointer names a missing generation", |g| {
            std::fs::write(g.parent().unwrap().join("CURRENT"), b"gen-999\n").unwrap();
        }),
        ("generation deleted", |g| {
            std::fs::remove_dir_all(g).unwrap();
        }),
        ("sled layout without generations", |g| {
            let index = g.parent().unwrap();
            std::fs::rename(g.join("search"), index.join("search")).unwrap();
            sled_layout(index);
            std::fs::remove_dir_all(g).unwrap();
            std::fs::remove_file(index.join("CURRENT")).unwrap();
        }),
        ("generation of the sled layout", |g| {
            std::fs::remove_file(g.join("index.db")).unwrap();
            sled_layout(g);
        }),
    ]
}

/// What an older version left in an index directory: sled's files and a checkpoint.
fn sled_layout(dir: &Path) {
    std::fs::create_dir_all(dir.join("sled/blobs")).unwrap();
    std::fs::write(dir.join("sled/conf"), noise(5, 200)).unwrap();
    std::fs::write(dir.join("sled/db"), noise(6, 4096)).unwrap();
    std::fs::write(
        dir.join("checkpoint.json"),
        br#"{"index_id":"x","log_offset":0,"packs":{}}"#,
    )
    .unwrap();
}

/// The row checksum of `index.db` (kind, key length, key, value).
fn crc32fast_free(kind: u8, key: &[u8], value: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(value);
    h.finalize()
}

/// After `damage`, each way of opening gives the same answers as before.
fn check(name: &str, damage: Damage) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let ids = fixture(&dir);
    let before = answers(&common::open(&dir), &ids, &out);
    assert!(before.clean, "{name}: fixture verifies clean");

    damage(&generation(&dir));
    let store = common::open(&dir);
    assert_eq!(answers(&store, &ids, &out), before, "{name}: open");
    drop(store);

    damage(&generation(&dir));
    let store = DiskArchiveStore::open_read_only(&dir, StoreOptions::default())
        .unwrap_or_else(|e| panic!("{name}: open_read_only: {e}"));
    assert_eq!(
        answers(&store, &ids, &out),
        before,
        "{name}: open_read_only"
    );
    drop(store);

    damage(&generation(&dir));
    let stats = DiskArchiveStore::rebuild_indexes(&dir, StoreOptions::default())
        .unwrap_or_else(|e| panic!("{name}: rebuild_indexes: {e}"));
    assert_eq!(stats, before.stats, "{name}: rebuild_indexes");
    let store = common::open(&dir);
    assert_eq!(answers(&store, &ids, &out), before, "{name}: after rebuild");
    let generations = std::fs::read_dir(dir.join("index"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("gen-")
        })
        .count();
    assert_eq!(generations, 1, "{name}: old generations are removed");
}

#[test]
fn every_kind_of_cache_damage_heals() {
    for (name, damage) in damages() {
        check(name, damage);
    }
}

#[test]
fn reindex_builds_a_new_generation_and_removes_the_old() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let ids = fixture(&dir);
    let store = common::open(&dir);
    let before = answers(&store, &ids, &out);
    let first = generation(&dir);
    store.reindex().unwrap();
    let second = generation(&dir);
    assert_ne!(first, second, "reindex builds a new generation");
    assert!(!first.exists(), "the old generation is removed");
    assert_eq!(answers(&store, &ids, &out), before);
}

#[test]
fn read_only_open_writes_no_source_of_truth_and_refuses_to_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing-here");
    assert!(DiskArchiveStore::open_read_only(&missing, StoreOptions::default()).is_err());
    assert!(!missing.exists(), "a read-only open creates nothing");

    let dir = tmp.path().join("archive");
    fixture(&dir);
    // A torn tail in the record log stays where it is.
    let log = dir.join("records.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"ASf1\x03torn");
    std::fs::write(&log, &bytes).unwrap();
    let pack = dir.join("packs/pack-00000001.pack");
    let pack_before = std::fs::read(&pack).unwrap();
    let a = DiskArchiveStore::open_read_only(&dir, StoreOptions::default()).unwrap();
    assert_eq!(a.stats().unwrap().messages, 12);
    assert!(a.verify().unwrap().is_clean());
    let refused = a.archive(&request("alice", "Inbox", None), RawMessage::Bytes(b"x"));
    assert!(matches!(
        refused,
        Err(archive_store::ArchiveError::ReadOnly { .. })
    ));
    drop(a);
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "record log untouched");
    assert_eq!(std::fs::read(&pack).unwrap(), pack_before, "pack untouched");
    // Readers and writers coexist.
    let reader = DiskArchiveStore::open_read_only(&dir, StoreOptions::default()).unwrap();
    let writer = common::open(&dir);
    let second = DiskArchiveStore::open_read_only(&dir, StoreOptions::default()).unwrap();
    assert_eq!(second.stats().unwrap().messages, 12);
    drop((reader, second, writer));
    assert!(
        std::fs::read(&log).unwrap().len() < bytes.len(),
        "a writer cuts the tail"
    );
}

#[test]
fn space_reports_the_filesystem() {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::open(tmp.path());
    let space = store.space().unwrap();
    assert!(space.total_bytes > 0 && space.available_bytes <= space.total_bytes);
    assert_eq!(
        archive_store::space_at(tmp.path()).unwrap().total_bytes,
        space.total_bytes
    );
    assert!(archive_store::space_at(tmp.path().join("missing")).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    /// Random bytes written anywhere in any cache file never change an answer after
    /// the verify that finds them.
    #[test]
    fn random_cache_damage_never_changes_an_answer(
        picks in proptest::collection::vec((any::<prop::sample::Index>(), any::<u64>(), 1usize..64), 1..6)
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("archive");
        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let ids = fixture(&dir);
        let before = answers(&common::open(&dir), &ids, &out);
        let all = files(&dir.join("index"));
        for (pick, at, len) in picks {
            let file = pick.get(&all);
            let mut bytes = std::fs::read(file).unwrap();
            if bytes.is_empty() {
                continue;
            }
            let start = (at as usize) % bytes.len();
            let end = (start + len).min(bytes.len());
            bytes[start..end].copy_from_slice(&noise(at, end - start));
            std::fs::write(file, bytes).unwrap();
        }
        let store = common::open(&dir);
        // Damage a read notices (SQLite, a row's checksum, tantivy) heals at once. Rows
        // a damaged page loses without a read failing cost duplicate work at most (a
        // lookup that misses re-stores deduplicated data) until the next verify, which
        // checks every page and heals; from then on every answer is the same again.
        let report = store.verify().unwrap();
        prop_assert!(report.is_clean(), "verify did not heal: {report:?}");
        // Compared without printing: the answers are long.
        prop_assert!(answers(&store, &ids, &out) == before, "answers changed");
    }
}
