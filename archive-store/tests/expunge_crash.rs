//! SIGKILL during expunges and compactions: a child process (this test binary
//! re-invoked) archives, expunges and compacts in a loop, printing a line for
//! every call that returned and one for every write or fsync of the store while
//! an expunge or a compaction runs; the parent kills it after a random number of
//! those, alternating between the two, then reopens the store and checks that no
//! acknowledged live entry is lost, no acknowledged expunge is undone and verify
//! is clean.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use archive_store::{
    ArchiveStore, DiskArchiveStore, EntryRef, MessageId, RawMessage, StoreIo, StoreOptions,
    Visibility,
};
use rand::{Rng, SeedableRng};

const CHILD_DIR: &str = "ARCHIVE_STORE_EXPUNGE_CRASH_DIR";
const CHILD_SEED: &str = "ARCHIVE_STORE_EXPUNGE_CRASH_SEED";

const ARCHIVING: u8 = 0;
const EXPUNGING: u8 = 1;
const COMPACTING: u8 = 2;

/// The operating system's I/O, announcing each operation of an expunge or a
/// compaction on stdout (the parent's cue to kill).
#[derive(Debug)]
struct Announcing {
    phase: Arc<AtomicU8>,
}

impl StoreIo for Announcing {
    fn write(&self, mut file: &File, path: &Path, buf: &[u8]) -> std::io::Result<()> {
        self.announce(path);
        file.write_all(buf)
    }

    fn sync(&self, file: &File, path: &Path) -> std::io::Result<()> {
        self.announce(path);
        file.sync_data()
    }
}

impl Announcing {
    fn announce(&self, path: &Path) {
        let phase = self.phase.load(Ordering::SeqCst);
        if phase != ARCHIVING {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let mut out = std::io::stdout().lock();
            writeln!(out, "IO {phase} {}", name.unwrap_or_default()).unwrap();
            out.flush().unwrap();
        }
    }
}

fn message(seed: u64, i: u64) -> Vec<u8> {
    let own = common::noise(seed * 1_000_003 + i, 3_000 + (i as usize % 5) * 4_000);
    let shared = common::noise(7, 40_000);
    let attachment: &[u8] = if i.is_multiple_of(4) { &shared } else { &own };
    common::Mail {
        from: "crash@contoso.test",
        to: "victim@contoso.test",
        subject: &format!("expunge crash {seed} {i}"),
        date: common::july(1 + (i % 28) as u32),
        body: "body",
        attachments: &[("a.bin", attachment)],
        extra_headers: "",
        boundary: &format!("b{seed}x{i}"),
    }
    .render()
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// The child: archives, expunges and compacts until killed. Does nothing in a
/// normal test run.
#[test]
fn expunge_crash_child_process_helper() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
    let phase = Arc::new(AtomicU8::new(ARCHIVING));
    let store = DiskArchiveStore::open(
        &dir,
        StoreOptions {
            pack_size_limit: 1 << 20,
            io: Some(Arc::new(Announcing {
                phase: phase.clone(),
            })),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in 0.. {
        let users = ["ann", "ben"];
        for k in 0..4u64 {
            let n = i * 4 + k;
            let raw = message(seed, n);
            let user = users[(n % 2) as usize];
            let id = store
                .archive(
                    &common::request(user, "Inbox", None),
                    RawMessage::Bytes(&raw),
                )
                .unwrap()
                .id;
            say(&format!("LIVE {user} {}", id.0));
        }
        let live = store.entries().unwrap();
        let chosen: Vec<EntryRef> = live
            .iter()
            .filter(|_| rng.gen_bool(0.4))
            .map(|e| EntryRef::new(e.user.clone(), e.folder.clone(), e.id.clone()))
            .collect();
        for e in &chosen {
            say(&format!("DOOMED {} {}", e.user, e.id.0));
        }
        phase.store(EXPUNGING, Ordering::SeqCst);
        store.expunge(&chosen, &|_| true).unwrap();
        phase.store(ARCHIVING, Ordering::SeqCst);
        for e in &chosen {
            say(&format!("GONE {} {}", e.user, e.id.0));
        }
        phase.store(COMPACTING, Ordering::SeqCst);
        store.compact().unwrap();
        phase.store(ARCHIVING, Ordering::SeqCst);
        say("COMPACTED");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Live,
    /// An expunge was asked for and did not return.
    Doubt,
    Gone,
}

#[test]
fn sigkilled_expunges_and_compactions_lose_nothing_live_and_undo_no_expunge() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC0_FFEE);
    // (user, id) → what is known of the entry.
    let mut known: BTreeMap<(String, String), Known> = BTreeMap::new();
    let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut kills = [0u32; 3];
    // Kills that left a compaction's intent behind (finished by the next open).
    let mut intents = 0;
    for round in 0..24u64 {
        let target = if round % 2 == 0 {
            EXPUNGING
        } else {
            COMPACTING
        };
        let stderr = File::create(dir.path().join("child.err")).unwrap();
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "expunge_crash_child_process_helper",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DIR, &store_dir)
            .env(CHILD_SEED, round.to_string())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Every other compaction round is killed around the write of the intent
        // (the commit point), the others anywhere.
        let at_intent = target == COMPACTING && round % 4 == 3;
        let mut cue = if at_intent {
            u32::MAX
        } else {
            rng.gen_range(1..40u32)
        };
        let handle = |line: &str, known: &mut BTreeMap<(String, String), Known>| {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["LIVE", user, id] => {
                    known.insert((user.to_string(), id.to_string()), Known::Live);
                }
                ["DOOMED", user, id] => {
                    known.insert((user.to_string(), id.to_string()), Known::Doubt);
                }
                ["GONE", user, id] => {
                    known.insert((user.to_string(), id.to_string()), Known::Gone);
                }
                _ => {}
            }
        };
        loop {
            let Some(line) = lines.next() else {
                let status = child.wait().unwrap();
                let err = std::fs::read_to_string(dir.path().join("child.err")).unwrap();
                panic!("child ended early ({status}): {err}");
            };
            let line = line.unwrap();
            if line.starts_with(&format!("IO {target} ")) {
                if at_intent && line.ends_with(" COMPACT.tmp") {
                    cue = rng.gen_range(1..5u32);
                }
                cue = cue.saturating_sub(1);
                if cue == 0 {
                    break;
                }
            }
            handle(&line, &mut known);
        }
        child.kill().unwrap();
        kills[target as usize] += 1;
        for line in lines {
            let Ok(line) = line else { break };
            handle(&line, &mut known);
        }
        child.wait().unwrap();

        if store_dir.join("COMPACT").exists() {
            intents += 1;
        }
        let store = common::open(&store_dir);
        let report = store.verify().unwrap();
        assert!(report.is_clean(), "round {round}: {report:#?}");
        let present: BTreeSet<(String, String)> = store
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| (e.user, e.id.0))
            .collect();
        for (entry, state) in &known {
            match state {
                Known::Live => assert!(present.contains(entry), "round {round}: lost {entry:?}"),
                Known::Gone => {
                    assert!(
                        !present.contains(entry),
                        "round {round}: resurrected {entry:?}"
                    )
                }
                Known::Doubt => {}
            }
        }
        // What is there is intact; what is gone is not listed.
        for (user, id) in &present {
            let id = MessageId(id.clone());
            let bytes = store.read_message(&id).unwrap();
            assert_eq!(blake3::hash(&bytes).to_hex().as_str(), id.0.as_str());
            contents.insert(id.0.clone(), bytes);
            assert!(
                store
                    .list_with(user, None, Visibility::Privileged)
                    .unwrap()
                    .iter()
                    .any(|e| e.id == id)
            );
        }
        // The doubts are settled by what the store holds now.
        for (entry, state) in known.iter_mut() {
            if *state == Known::Doubt {
                *state = if present.contains(entry) {
                    Known::Live
                } else {
                    Known::Gone
                };
            }
        }
        // An interrupted compaction was finished on open.
        assert!(!store_dir.join("COMPACT").exists(), "round {round}");
    }
    assert!(kills[EXPUNGING as usize] + kills[COMPACTING as usize] >= 20);
    eprintln!(
        "{} kills during expunges, {} during compactions ({intents} after the intent); {} entries known, {} contents read back",
        kills[EXPUNGING as usize],
        kills[COMPACTING as usize],
        known.len(),
        contents.len()
    );
}
