//! Crash safety in the style of sled's tests: a child process (this test binary
//! re-invoked with an environment variable) archives continuously from several
//! threads and prints a line for every `archive` call that returned; the parent
//! kills it with SIGKILL at random points, then reopens the store, runs `verify`
//! and checks that every acknowledged message is present and intact.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use archive_store::{ArchiveStore, MessageId, RawMessage, SourceRef};
use rand::{Rng, SeedableRng};

const CHILD_DIR: &str = "ARCHIVE_STORE_CRASH_DIR";
const CHILD_SEED: &str = "ARCHIVE_STORE_CRASH_SEED";
const WRITERS: u64 = 4;

fn message(seed: u64, writer: u64, i: u64, shared: &[Vec<u8>]) -> Vec<u8> {
    let attachments: Vec<(&str, &[u8])> = match i % 5 {
        0 => vec![(
            "shared.bin",
            shared[(i as usize / 5) % shared.len()].as_slice(),
        )],
        1 => vec![],
        _ => vec![("own.bin", &[])],
    };
    let own = common::noise(
        seed * 1_000_003 + writer * 10_007 + i,
        2_000 + (i as usize % 7) * 9_000,
    );
    let own_attachment;
    let attachments: Vec<(&str, &[u8])> =
        if attachments.first().is_some_and(|(n, _)| *n == "own.bin") {
            own_attachment = own;
            vec![("own.bin", own_attachment.as_slice())]
        } else {
            attachments
        };
    common::Mail {
        from: "crash@contoso.test",
        to: "victim@contoso.test",
        subject: &format!("crash round {seed} writer {writer} message {i}"),
        date: common::july(1 + (i % 28) as u32),
        body: "body text",
        attachments: &attachments,
        extra_headers: "",
        boundary: &format!("b{seed}x{writer}x{i}"),
    }
    .render()
}

/// The child: archives until killed. Does nothing in a normal test run.
#[test]
fn crash_child_process_helper() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
    let store = Arc::new(common::open(std::path::Path::new(&dir)));
    let shared: Arc<Vec<Vec<u8>>> = Arc::new((0..3).map(|k| common::noise(k, 700_000)).collect());
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, shared, out) = (store.clone(), shared.clone(), out.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    let raw = message(seed, writer, i, &shared);
                    let user = format!("user{}", (writer + i) % 3);
                    let source = format!("{seed}-{writer}-{i}");
                    let outcome = store
                        .archive(
                            &common::request(&user, "Inbox", Some(&source)),
                            RawMessage::Bytes(&raw),
                        )
                        .unwrap();
                    let mut out = out.lock().unwrap();
                    writeln!(out, "ACK {user} {source} {}", outcome.id.0).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn sigkilled_writers_never_lose_an_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
    let mut acknowledged: Vec<(String, String, String)> = Vec::new();
    let mut torn_tails_cut = 0;
    for round in 0..22u64 {
        let round_start = acknowledged.len();
        let stderr = std::fs::File::create(dir.path().join("child.err")).unwrap();
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_process_helper",
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
        let kill_after = rng.gen_range(1..60);
        let mut seen = 0;
        while seen < kill_after {
            let Some(line) = lines.next() else {
                let status = child.wait().unwrap();
                let err = std::fs::read_to_string(dir.path().join("child.err")).unwrap();
                panic!("child ended early ({status}): {err}");
            };
            if let Some(ack) = line.unwrap().strip_prefix("ACK ") {
                let parts: Vec<&str> = ack.split(' ').collect();
                acknowledged.push((parts[0].into(), parts[1].into(), parts[2].into()));
                seen += 1;
            }
        }
        child.kill().unwrap();
        // Lines printed before the kill belong to calls that returned.
        for line in lines {
            let Ok(line) = line else { break };
            if let Some(ack) = line.strip_prefix("ACK ") {
                let parts: Vec<&str> = ack.split(' ').collect();
                if parts.len() == 3 && parts[2].len() == 64 {
                    acknowledged.push((parts[0].into(), parts[1].into(), parts[2].into()));
                }
            }
        }
        child.wait().unwrap();

        let lengths = || {
            ["packs/pack-00000001.pack", "records.log"]
                .map(|f| std::fs::metadata(store_dir.join(f)).map_or(0, |m| m.len()))
        };
        let before = lengths();
        let store = common::open(&store_dir);
        let after = lengths();
        if after[0] < before[0] || after[1] < before[1] {
            torn_tails_cut += 1;
        }
        let report = store.verify().unwrap();
        assert!(report.is_clean(), "round {round}: {report:#?}");
        for (user, source, id) in &acknowledged {
            let found = store
                .find_source(
                    user,
                    &SourceRef {
                        mailbox: format!("{user}@contoso.test"),
                        message_id: source.clone(),
                    },
                )
                .unwrap();
            assert_eq!(
                found.as_ref().map(|m| m.0.as_str()),
                Some(id.as_str()),
                "round {round}: {user} {source}"
            );
        }
        let stats = store.stats().unwrap();
        assert!(stats.messages >= acknowledged.len() as u64);
        // Every message acknowledged in this round is findable by its subject.
        for (user, source, id) in &acknowledged[round_start..] {
            let parts: Vec<&str> = source.split('-').collect();
            let q = archive_store::SearchQuery {
                text: format!(
                    "\"crash round {} writer {} message {}\"",
                    parts[0], parts[1], parts[2]
                ),
                user: None,
                from_date: None,
                to_date: None,
                limit: 5,
            };
            let hits = store
                .search(&q, &archive_store::Scope::User(user.clone()))
                .unwrap();
            assert!(
                hits.iter().any(|h| h.id == MessageId(id.clone())),
                "round {round}: not searchable"
            );
        }
    }
    assert!(acknowledged.len() >= 22);
    eprintln!(
        "{} acknowledged messages over 22 kills; torn tails cut after {torn_tails_cut} of them",
        acknowledged.len()
    );
}
