//! Retention over the real archive ([`ArchiveTarget`] on a `DiskArchiveStore`):
//! overlapping policies and holds expunge exactly the expected set (computed here
//! independently), held and too-young mail stays, search / export / stats /
//! verify agree, compaction reclaims the space; erasure is carried out, or the
//! entry is restricted (invisible to its user, visible to privileged readers) and
//! erased by a later apply; random sequences behave exactly as over the
//! in-memory target.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeSet;

use archive_store::{
    ArchiveRequest, ArchiveStore, DiskArchiveStore, ExportFilter, ExportFormat, RawMessage, Scope,
    SearchQuery, StoreOptions, Visibility,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use retention::{
    ArchiveTarget, EntryKey, EntryView, ErasureOutcome, Hold, MemoryGovernanceStore, MemoryTarget,
    Policy, Reference, Release, RetentionEngine, RetentionTarget, Selector,
};

fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap()
}

fn day(d: i64) -> DateTime<Utc> {
    epoch() + Duration::days(d)
}

/// Deterministic incompressible bytes.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn hex_lines(data: &[u8]) -> String {
    data.chunks(38)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A message with a subject word and an incompressible body of `size` bytes.
fn mail(n: u64, word: &str, size: usize) -> Vec<u8> {
    format!(
        "From: sender@contoso.test\r\nTo: staff@contoso.test\r\nSubject: {word} number {n}\r\nMessage-ID: <{n}@contoso.test>\r\n\r\n{}\r\n",
        hex_lines(&noise(n, size / 2))
    )
    .into_bytes()
}

fn archive(
    store: &DiskArchiveStore,
    user: &str,
    folder: &str,
    n: u64,
    word: &str,
    received: i64,
) -> archive_store::ArchiveOutcome {
    store
        .archive(
            &ArchiveRequest {
                user: user.into(),
                folder: folder.into(),
                source: None,
                received: Some(day(received)),
            },
            RawMessage::Bytes(&mail(n, word, 4_000)),
        )
        .unwrap()
}

fn policy(name: &str, min: u32, max: Option<u32>, scope: Selector) -> Policy {
    Policy {
        name: name.into(),
        min_days: min,
        max_days: max,
        scope,
        reference: Reference::Received,
        created: epoch(),
    }
}

fn hold(case: &str, scope: Selector) -> Hold {
    Hold {
        case: case.into(),
        reason: "litigation".into(),
        scope,
        created: epoch(),
        created_by: "counsel".into(),
        released: None,
    }
}

const USERS: [&str; 20] = [
    "ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal", "ida", "jon", "kim", "lea", "max",
    "ned", "oli", "pam", "quin", "rob", "sue", "tom",
];
const WORDS: [&str; 3] = ["contract", "invoice", "lunch"];

/// Prints its figures with `--nocapture` (archive, dry run, apply and compaction times).
#[test]
fn apply_over_ten_thousand_messages_of_twenty_users_expunges_exactly_the_expected_entries() {
    check_apply(10_000, 20);
}

/// `count` messages over the first `users` of [`USERS`], three overlapping policies
/// and two holds: the dry run lists exactly the set computed here, apply removes
/// exactly it, search, export, stats and verify agree, compaction reclaims the
/// expunged messages' bytes.
fn check_apply(count: u64, users: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive");
    let store = DiskArchiveStore::open(&path, StoreOptions::default()).unwrap();
    // Messages received between day 0 and day 1199.
    let mut all = Vec::new();
    let started = std::time::Instant::now();
    for n in 0..count {
        let user = USERS[(n % users as u64) as usize];
        let folder = if n.is_multiple_of(5) {
            "Inbox/Legal"
        } else {
            "Inbox"
        };
        let word = WORDS[(n % 3) as usize];
        let received = ((n * 7) % 1200) as i64;
        archive(&store, user, folder, n, word, received);
        all.push((user, folder, word, received, n));
    }
    let archive_time = started.elapsed();
    let governance = MemoryGovernanceStore::new();
    let target = ArchiveTarget::new(&store);
    let engine = RetentionEngine::new(&governance, &target);
    // Three overlapping policies: everything at most 900 days; Legal at least 1000
    // (its maximum is the longest of the overlapping ones: none for Legal); ann and
    // ben 300 to 600 days.
    engine
        .add_policy(policy("all", 30, Some(900), Selector::default()))
        .unwrap();
    engine
        .add_policy(policy(
            "legal",
            1000,
            None,
            Selector {
                folders: vec!["Inbox/Legal".into()],
                ..Selector::default()
            },
        ))
        .unwrap();
    engine
        .add_policy(policy(
            "short",
            300,
            Some(600),
            Selector {
                users: vec!["ann".into(), "ben".into()],
                ..Selector::default()
            },
        ))
        .unwrap();
    // Two holds: cat's contracts, and everything dan received before day 200.
    engine
        .create_hold(hold(
            "cat-contracts",
            Selector {
                users: vec!["cat".into()],
                query: Some("contract".into()),
                ..Selector::default()
            },
        ))
        .unwrap();
    engine
        .create_hold(hold(
            "dan-early",
            Selector {
                users: vec!["dan".into()],
                to: Some(day(200)),
                ..Selector::default()
            },
        ))
        .unwrap();
    let now = 1250i64;
    // Independently: the longest maximum wins, so "all" (900) decides for everyone
    // outside Legal; Legal has no maximum at all.
    let expected: BTreeSet<(String, String, u64)> = all
        .iter()
        .filter(|(user, folder, word, received, _)| {
            let legal = *folder == "Inbox/Legal";
            let held =
                (*user == "cat" && *word == "contract") || (*user == "dan" && *received < 200);
            !legal && !held && now - received >= 900
        })
        .map(|(user, folder, _, _, n)| (user.to_string(), folder.to_string(), *n))
        .collect();
    let held_count = all
        .iter()
        .filter(|(user, folder, word, received, _)| {
            *folder != "Inbox/Legal"
                && now - received >= 900
                && ((*user == "cat" && *word == "contract") || (*user == "dan" && *received < 200))
        })
        .count();
    let numbers: std::collections::HashMap<String, u64> = store
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| {
            let n = e
                .subject
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (e.id.0, n)
        })
        .collect();
    let subject_n = |key: &EntryKey| -> u64 { numbers[&key.id] };
    let started = std::time::Instant::now();
    let dry = engine.apply(day(now), true).unwrap();
    let dry_time = started.elapsed();
    let listed: BTreeSet<(String, String, u64)> = dry
        .items
        .iter()
        .filter(|i| i.action == "expunge")
        .map(|i| (i.key.user.clone(), i.key.folder.clone(), subject_n(&i.key)))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(dry.held as usize, held_count);
    assert_eq!(
        store.stats().unwrap().messages,
        count,
        "a dry run changes nothing"
    );

    let stored_before = store.stats().unwrap().stored_bytes;
    let started = std::time::Instant::now();
    let report = engine.apply(day(now), false).unwrap();
    let apply_time = started.elapsed();
    assert_eq!(report.deleted as usize, expected.len());
    assert_eq!(report.bytes_reclaimed, dry.bytes_reclaimed);
    let remaining = count as usize - expected.len();
    let stats = store.stats().unwrap();
    assert_eq!(stats.messages as usize, remaining);
    let search = store
        .search(
            &SearchQuery {
                text: String::new(),
                user: None,
                from_date: None,
                to_date: None,
                limit: 10_000,
            },
            &Scope::Admin,
        )
        .unwrap();
    assert_eq!(search.len(), remaining);
    let mut exported = 0;
    for user in &USERS[..users] {
        exported += store
            .export(
                &ExportFilter {
                    user: user.to_string(),
                    folder: None,
                    ids: None,
                },
                ExportFormat::Mbox,
                &dir.path().join(format!("{user}.mbox")),
            )
            .unwrap()
            .messages;
    }
    assert_eq!(exported as usize, remaining);
    assert!(store.verify().unwrap().is_clean());
    // A second apply finds nothing more to remove.
    assert_eq!(engine.apply(day(now), false).unwrap().deleted, 0);

    let started = std::time::Instant::now();
    let compaction = store.compact().unwrap();
    let compact_time = started.elapsed();
    let reclaimed = compaction.bytes_reclaimed;
    eprintln!(
        "{count} messages over {users} users archived in {archive_time:?}; dry run {dry_time:?}; \
         apply of {} expunges ({} held) in {apply_time:?}; {} bytes unreferenced; compaction \
         in {compact_time:?} reclaimed {reclaimed} of {stored_before} stored bytes",
        report.deleted, report.held, report.bytes_reclaimed
    );
    // The messages are distinct and of one size, so the expunged ones took their
    // share of the stored bytes.
    assert_eq!(compaction.messages_dropped as usize, expected.len());
    let garbage = stored_before * expected.len() as u64 / count;
    assert!(
        reclaimed * 10 >= garbage * 9,
        "reclaimed {reclaimed} of about {garbage}"
    );
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(store.stats().unwrap().messages as usize, remaining);
}

#[test]
fn erasure_is_carried_out_or_restricts_until_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        DiskArchiveStore::open(dir.path().join("archive"), StoreOptions::default()).unwrap();
    archive(&store, "ann", "Inbox", 1, "contract", 0);
    archive(&store, "ann", "Inbox", 2, "lunch", 0);
    archive(&store, "ann", "Inbox", 3, "invoice", 1000);
    let governance = MemoryGovernanceStore::new();
    let target = ArchiveTarget::new(&store);
    let engine = RetentionEngine::new(&governance, &target);
    engine
        .add_policy(policy("keep", 365, None, Selector::default()))
        .unwrap();
    engine
        .create_hold(hold(
            "contracts",
            Selector {
                query: Some("contract".into()),
                ..Selector::default()
            },
        ))
        .unwrap();
    let key = |n: u64| {
        let e = store
            .entries()
            .unwrap()
            .into_iter()
            .find(|e| {
                e.subject
                    .as_deref()
                    .is_some_and(|s| s.ends_with(&format!(" {n}")))
            })
            .unwrap();
        EntryKey {
            user: e.user,
            id: e.id.0,
            folder: e.folder,
        }
    };
    let (held, allowed, young) = (key(1), key(2), key(3));
    let outcomes = engine
        .erase(
            &[held.clone(), allowed.clone(), young.clone()],
            "GDPR art. 17",
            "dpo",
            day(1100),
        )
        .unwrap();
    assert!(matches!(&outcomes[0], ErasureOutcome::Restricted { .. }));
    assert!(matches!(&outcomes[1], ErasureOutcome::Erased { .. }));
    assert!(matches!(&outcomes[2], ErasureOutcome::Restricted { .. }));
    let ann = |scope: &Scope| {
        let mut ids: Vec<String> = store
            .search(
                &SearchQuery {
                    text: String::new(),
                    user: Some("ann".into()),
                    from_date: None,
                    to_date: None,
                    limit: 100,
                },
                scope,
            )
            .unwrap()
            .into_iter()
            .map(|h| h.id.0)
            .collect();
        ids.sort();
        ids
    };
    // Restricted: invisible to the user, visible to an auditor.
    assert!(ann(&Scope::User("ann".into())).is_empty());
    assert!(store.list("ann", None).unwrap().is_empty());
    let mut both = vec![held.id.clone(), young.id.clone()];
    both.sort();
    assert_eq!(ann(&Scope::Privileged), both);
    assert_eq!(
        store
            .list_with("ann", None, Visibility::Privileged)
            .unwrap()
            .len(),
        2
    );
    assert!(target.is_restricted(&held).unwrap() && target.is_restricted(&young).unwrap());
    // Minimum retention passes for the young one; the held one waits for its release.
    assert_eq!(engine.apply(day(1400), false).unwrap().deleted, 1);
    engine
        .release_hold(
            "contracts",
            Release {
                at: day(1400),
                by: "counsel".into(),
                reason: "settled".into(),
            },
        )
        .unwrap();
    assert_eq!(engine.apply(day(1400), false).unwrap().deleted, 1);
    assert!(store.entries().unwrap().is_empty());
    assert!(store.verify().unwrap().is_clean());
}

#[derive(Debug, Clone)]
enum Op {
    Archive {
        user: usize,
        n: u64,
        word: usize,
        received: i64,
    },
    Hold {
        user: usize,
        word: Option<usize>,
    },
    Release(usize),
    Apply(i64),
    Erase(usize, i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..12u64, 0..3usize, 0..1500i64).prop_map(|(user, n, word, received)| Op::Archive { user, n, word, received }),
        1 => (0..3usize, proptest::option::of(0..3usize)).prop_map(|(user, word)| Op::Hold { user, word }),
        1 => (0..3usize).prop_map(Op::Release),
        2 => (0..3000i64).prop_map(Op::Apply),
        1 => (0..32usize, 0..3000i64).prop_map(|(i, now)| Op::Erase(i, now)),
    ]
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// Runs the same operations on the archive and on the in-memory target (checked
/// against a model of the rules in `model.rs`): both always hold the same
/// entries and the same restriction marks.
fn differential(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let store =
        DiskArchiveStore::open(dir.path().join("archive"), StoreOptions::default()).unwrap();
    let disk = ArchiveTarget::new(&store);
    let memory = MemoryTarget::new();
    let (gov_disk, gov_memory) = (MemoryGovernanceStore::new(), MemoryGovernanceStore::new());
    let on_disk = RetentionEngine::new(&gov_disk, &disk);
    let in_memory = RetentionEngine::new(&gov_memory, &memory);
    for engine in [&on_disk, &in_memory] {
        engine
            .add_policy(policy("base", 100, Some(700), Selector::default()))
            .map_err(fail)?;
        engine
            .add_policy(policy(
                "contracts",
                400,
                Some(1200),
                Selector {
                    query: Some("contract".into()),
                    ..Selector::default()
                },
            ))
            .map_err(fail)?;
    }
    let mut holds = 0usize;
    let mut words = std::collections::HashMap::new();
    // (user, content) pairs expunged from that user's archive: archiving them
    // again is refused, whatever the source.
    let mut forgotten: BTreeSet<(String, String)> = BTreeSet::new();
    for op in ops {
        let before = memory.keys();
        match op {
            Op::Archive {
                user,
                n,
                word,
                received,
            } => {
                // One content, one word (the first archive of it decides).
                let word = *words.entry(n).or_insert(word);
                let outcome = archive(&store, USERS[user], "Inbox", n, WORDS[word], received);
                let expunged = forgotten.contains(&(USERS[user].to_string(), outcome.id.0.clone()));
                prop_assert_eq!(outcome.forgotten, expunged);
                if expunged {
                    continue;
                }
                let entry = store
                    .entries()
                    .map_err(fail)?
                    .into_iter()
                    .find(|e| {
                        e.user == USERS[user]
                            && e.subject.as_deref() == Some(&format!("{} number {n}", WORDS[word]))
                    })
                    .ok_or_else(|| fail("archived entry missing"))?;
                let key = EntryKey {
                    user: entry.user,
                    id: entry.id.0,
                    folder: entry.folder,
                };
                if !memory.keys().contains(&key) {
                    memory.add(
                        EntryView {
                            key,
                            received: entry.received,
                            archived: entry.archived,
                            size: entry.size,
                        },
                        &[WORDS[word]],
                    );
                }
            }
            Op::Hold { user, word } => {
                let scope = Selector {
                    users: vec![USERS[user].into()],
                    query: word.map(|w| WORDS[w].to_string()),
                    ..Selector::default()
                };
                for engine in [&on_disk, &in_memory] {
                    engine
                        .create_hold(hold(&format!("case{holds}"), scope.clone()))
                        .map_err(fail)?;
                }
                holds += 1;
            }
            Op::Release(i) => {
                if i < holds {
                    let release = Release {
                        at: epoch(),
                        by: "counsel".into(),
                        reason: "settled".into(),
                    };
                    let a = on_disk
                        .release_hold(&format!("case{i}"), release.clone())
                        .is_ok();
                    let b = in_memory.release_hold(&format!("case{i}"), release).is_ok();
                    prop_assert_eq!(a, b);
                }
            }
            Op::Apply(now) => {
                let a = on_disk.apply(day(now), false).map_err(fail)?;
                let b = in_memory.apply(day(now), false).map_err(fail)?;
                prop_assert_eq!(a.deleted, b.deleted);
                prop_assert_eq!(a.bytes_reclaimed, b.bytes_reclaimed);
            }
            Op::Erase(i, now) => {
                let keys: Vec<EntryKey> = memory.keys().into_iter().collect();
                let Some(key) = keys.get(i % keys.len().max(1)).cloned() else {
                    continue;
                };
                let a = on_disk
                    .erase(std::slice::from_ref(&key), "GDPR", "dpo", day(now))
                    .map_err(fail)?;
                let b = in_memory
                    .erase(std::slice::from_ref(&key), "GDPR", "dpo", day(now))
                    .map_err(fail)?;
                prop_assert_eq!(a, b);
            }
        }
        for gone in before.difference(&memory.keys()) {
            forgotten.insert((gone.user.clone(), gone.id.clone()));
        }
        let on_disk_keys: BTreeSet<EntryKey> = disk
            .entries()
            .map_err(fail)?
            .into_iter()
            .map(|v| v.key)
            .collect();
        prop_assert_eq!(&on_disk_keys, &memory.keys());
        for key in &on_disk_keys {
            prop_assert_eq!(
                disk.is_restricted(key).map_err(fail)?,
                memory.is_restricted(key).map_err(fail)?
            );
        }
    }
    let report = store.verify().map_err(fail)?;
    prop_assert!(report.is_clean(), "{:#?}", report);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, max_shrink_iters: 30, ..ProptestConfig::default() })]
    #[test]
    fn retention_over_the_archive_behaves_as_over_the_memory_target(ops in proptest::collection::vec(op(), 1..25)) {
        differential(ops)?;
    }
}
