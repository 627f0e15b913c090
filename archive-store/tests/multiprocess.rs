//! Many processes on one archive directory: a child process (this test binary
//! re-invoked with an environment variable naming its role) writes while the test
//! writes or reads. Two writers serialise on the write lock and deduplicate across
//! processes; a reader never blocks and sees what the other process committed; a
//! writer killed mid-write leaves the archive to the other, which catches up.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use archive_store::{
    ArchiveStore, DiskArchiveStore, MessageId, RawMessage, Scope, SearchQuery, SourceRef,
    StoreOptions,
};

const CHILD_DIR: &str = "ARCHIVE_STORE_MP_DIR";
const CHILD_USER: &str = "ARCHIVE_STORE_MP_USER";
const CHILD_COUNT: &str = "ARCHIVE_STORE_MP_COUNT";
/// Every bounded wait of these tests.
const PATIENCE: Duration = Duration::from_secs(60);

/// Message `i` of `user`; messages with `i % 4 == 0` have the same bytes for every
/// user (deduplicated across processes).
fn message(user: &str, i: u64) -> Vec<u8> {
    let shared = i.is_multiple_of(4);
    let owner = if shared { "everyone" } else { user };
    let attachment = common::noise(i, 5_000 + (i as usize % 3) * 70_000);
    common::Mail {
        from: "megan@contoso.test",
        to: "alice@contoso.test",
        subject: &format!("token{owner}x{i} parallel"),
        date: common::july(1 + (i % 28) as u32),
        body: "written by two processes",
        attachments: &[("a.bin", &attachment)],
        extra_headers: "",
        boundary: "bnd",
    }
    .render()
}

/// The child: archives `count` messages as `user` (0: until killed), printing one
/// line per acknowledged call. Does nothing in a normal test run.
#[test]
fn multiprocess_child_helper() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let user = std::env::var(CHILD_USER).unwrap();
    let count: u64 = std::env::var(CHILD_COUNT).unwrap().parse().unwrap();
    let store = common::open(Path::new(&dir));
    let mut out = std::io::stdout();
    // On a line of its own: the test harness has just printed "test NAME ... ".
    writeln!(out, "\nREADY").unwrap();
    out.flush().unwrap();
    let mut i = 0;
    while count == 0 || i < count {
        let outcome = store
            .archive(
                &common::request(&user, "Inbox", Some(&format!("m{i}"))),
                RawMessage::Bytes(&message(&user, i)),
            )
            .unwrap();
        writeln!(out, "ACK {i} {}", outcome.id.0).unwrap();
        out.flush().unwrap();
        i += 1;
    }
}

fn spawn_writer(dir: &Path, user: &str, count: u64) -> (Child, mpsc::Receiver<String>) {
    let child_err = dir.with_extension(format!("{user}.err"));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "multiprocess_child_helper",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_USER, user)
        .env(CHILD_COUNT, count.to_string())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(child_err).unwrap())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    (child, lines)
}

/// The child's output lines, through a channel (so every wait is bounded).
fn lines_of(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(lines: &mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(PATIENCE)
            .expect("the child process answers in time");
        if line.starts_with(prefix) {
            return line;
        }
    }
}

fn query(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.to_string(),
        user: None,
        from_date: None,
        to_date: None,
        limit: 1000,
    }
}

fn source(user: &str, i: u64) -> SourceRef {
    common::request(user, "Inbox", Some(&format!("m{i}")))
        .source
        .unwrap()
}

/// Every message `0..count` of `user` is listed once, found by source and by search.
fn check_user(store: &DiskArchiveStore, user: &str, count: u64) {
    let listed = store.list(user, None).unwrap();
    assert_eq!(listed.len() as u64, count, "{user}: listed once each");
    for i in 0..count {
        let id = store.find_source(user, &source(user, i)).unwrap();
        let id = id.unwrap_or_else(|| panic!("{user} m{i} is archived"));
        let owner = if i.is_multiple_of(4) {
            "everyone"
        } else {
            user
        };
        let hits = store
            .search(
                &query(&format!("token{owner}x{i}")),
                &Scope::User(user.into()),
            )
            .unwrap();
        assert_eq!(
            hits.iter().filter(|h| h.id == id).count(),
            1,
            "{user} m{i}: searchable exactly once"
        );
    }
}

#[test]
fn two_processes_archive_into_one_directory_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    const N: u64 = 40;
    // Created first, so both processes open an existing archive.
    drop(common::open(&dir));
    let (mut child, lines) = spawn_writer(&dir, "bob", N);
    wait_for(&lines, "READY");
    let store = common::open(&dir);
    let mut new_content = 0;
    for i in 0..N {
        let outcome = store
            .archive(
                &common::request("alice", "Inbox", Some(&format!("m{i}"))),
                RawMessage::Bytes(&message("alice", i)),
            )
            .unwrap();
        new_content += u64::from(outcome.new_content);
    }
    for _ in 0..N {
        wait_for(&lines, "ACK ");
    }
    assert!(child.wait().unwrap().success());
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:#?}");
    check_user(&store, "alice", N);
    check_user(&store, "bob", N);
    let stats = store.stats().unwrap();
    assert_eq!(stats.messages, 2 * N);
    // Shared contents are stored once, whichever process came first.
    assert_eq!(stats.unique_messages, 2 * N - N / 4);
    assert!(new_content <= N);
    drop(store);
    let reopened = DiskArchiveStore::open_read_only(&dir, StoreOptions::default()).unwrap();
    assert!(reopened.verify().unwrap().is_clean());
}

#[test]
fn a_reader_never_waits_for_a_writer_and_sees_its_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    drop(common::open(&dir));
    let reader = DiskArchiveStore::open_read_only(&dir, StoreOptions::default()).unwrap();
    assert!(reader.list("carol", None).unwrap().is_empty());
    const N: u64 = 30;
    let (mut child, lines) = spawn_writer(&dir, "carol", N);
    wait_for(&lines, "READY");
    let reader = std::sync::Arc::new(reader);
    let mut seen_ids: Vec<MessageId> = Vec::new();
    for _ in 0..N {
        let ack = wait_for(&lines, "ACK ");
        let id = MessageId(ack.rsplit(' ').next().unwrap().to_string());
        // Every read runs while the other process writes; each answers in time.
        let (tx, rx) = mpsc::channel();
        let r = reader.clone();
        let want = id.clone();
        std::thread::spawn(move || {
            let listed = r
                .list("carol", None)
                .map(|l| l.iter().any(|e| e.id == want));
            let shown = r.show(&want).is_ok();
            tx.send((listed, shown)).unwrap();
        });
        let (listed, shown) = rx.recv_timeout(PATIENCE).expect("a read never blocks");
        assert!(listed.unwrap(), "an acknowledged message is listed at once");
        assert!(shown);
        seen_ids.push(id);
    }
    assert!(child.wait().unwrap().success());
    check_user(&reader, "carol", N);
    // A reader opened while the writer is gone sees the same.
    let late = DiskArchiveStore::open_read_only(&dir, StoreOptions::default()).unwrap();
    assert_eq!(late.list("carol", None).unwrap().len() as u64, N);
    assert!(late.verify().unwrap().is_clean());
}

#[test]
fn a_writer_killed_mid_write_leaves_the_archive_to_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let store = common::open(&dir);
    store
        .archive(
            &common::request("alice", "Inbox", Some("m0")),
            RawMessage::Bytes(&message("alice", 0)),
        )
        .unwrap();
    let (mut child, lines) = spawn_writer(&dir, "dave", 0);
    wait_for(&lines, "READY");
    let mut acked = 0;
    while acked < 12 {
        wait_for(&lines, "ACK ");
        acked += 1;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    while lines.recv_timeout(PATIENCE).is_ok() {
        acked += 1;
    }
    // The surviving writer takes the lock (released by the kill), catches up and
    // goes on; nothing acknowledged is lost.
    for i in 1..10 {
        store
            .archive(
                &common::request("alice", "Inbox", Some(&format!("m{i}"))),
                RawMessage::Bytes(&message("alice", i)),
            )
            .unwrap();
    }
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:#?}");
    check_user(&store, "alice", 10);
    let dave = store.list("dave", None).unwrap();
    assert!(
        dave.len() >= acked,
        "{} listed, {acked} acknowledged",
        dave.len()
    );
    for i in 0..acked as u64 {
        assert!(
            store
                .find_source("dave", &source("dave", i))
                .unwrap()
                .is_some()
        );
    }
}

#[test]
fn two_instances_in_one_process_share_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let a = common::open(tmp.path());
    let b = common::open(tmp.path());
    let first = a
        .archive(
            &common::request("alice", "Inbox", Some("m1")),
            RawMessage::Bytes(&message("alice", 4)),
        )
        .unwrap();
    let second = b
        .archive(
            &common::request("bob", "Inbox", Some("m1")),
            RawMessage::Bytes(&message("bob", 4)),
        )
        .unwrap();
    assert_eq!(first.id, second.id);
    assert!(first.new_content && !second.new_content, "deduplicated");
    let hits = a.search(&query("tokeneveryonex4"), &Scope::Admin).unwrap();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(b.stats().unwrap().messages, 2);
}

#[test]
fn two_instances_writing_in_turn_index_every_message_once() {
    // Each instance's indexer gets documents with the other's records between them
    // in the log (and deduplicated content whose metadata it did not parse).
    let tmp = tempfile::tempdir().unwrap();
    let count = 24;
    {
        let a = common::open(tmp.path());
        let b = common::open(tmp.path());
        for i in 0..count {
            for (store, user) in [(&a, "alice"), (&b, "bob")] {
                let name = format!("m{i}");
                store
                    .archive(
                        &common::request(user, "Inbox", Some(&name)),
                        RawMessage::Bytes(&message(user, i)),
                    )
                    .unwrap();
            }
        }
        check_user(&a, "alice", count);
    }
    let reader = DiskArchiveStore::open_read_only(tmp.path(), StoreOptions::default()).unwrap();
    check_user(&reader, "alice", count);
    check_user(&reader, "bob", count);
}
