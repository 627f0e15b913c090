//! Index rebuild benchmark: archives N small generated messages (default 100,000)
//! into a temporary archive (or reuses `--dir DIR`), then times
//! `DiskArchiveStore::rebuild_indexes` (a fresh index generation built from the
//! packs and the record log, swapped in). Prints messages, seconds and messages/s
//! to stderr, and one JSON line on stdout with `--json`.
//!
//! `cargo run --release -p archive-store --example rebuild_bench -- [--messages N] [--dir DIR] [--json]`
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use archive_store::{
    ArchiveRequest, ArchiveStore, DiskArchiveStore, RawMessage, SourceRef, StoreOptions,
};

const THREADS: u64 = 4;
const WORDS: [&str; 12] = [
    "budget", "forecast", "meeting", "review", "contract", "invoice", "travel", "project",
    "release", "customer", "report", "schedule",
];

fn message(i: u64) -> Vec<u8> {
    let w = |k: u64| WORDS[((i.wrapping_mul(2_654_435_761) >> k) % WORDS.len() as u64) as usize];
    let body: String = (0..40).map(|k| format!("{} ", w(k))).collect();
    format!(
        "From: user{}@contoso.test\r\nTo: user{}@contoso.test\r\nSubject: {} {} #{i}\r\nDate: Tue, 1 Jul 2025 09:{:02}:00 +0000\r\nMessage-ID: <{i}@bench.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        i % 97,
        i % 89,
        w(3),
        w(7),
        i % 60
    )
    .into_bytes()
}

fn main() {
    let mut messages = 100_000u64;
    let mut dir: Option<PathBuf> = None;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--messages" => messages = args.next().and_then(|v| v.parse().ok()).expect("N"),
            "--dir" => dir = args.next().map(PathBuf::from),
            "--json" => json = true,
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = dir.unwrap_or_else(|| tmp.path().join("archive"));
    {
        let store = Arc::new(DiskArchiveStore::open(&dir, StoreOptions::default()).unwrap());
        let have = store.stats().unwrap().messages;
        if have < messages {
            let started = Instant::now();
            std::thread::scope(|scope| {
                for t in 0..THREADS {
                    let store = store.clone();
                    scope.spawn(move || {
                        for i in (have..messages).filter(|i| i % THREADS == t) {
                            let request = ArchiveRequest {
                                user: format!("user{}", i % 50),
                                folder: "Inbox".into(),
                                source: Some(SourceRef {
                                    mailbox: format!("user{}@contoso.test", i % 50),
                                    message_id: format!("m{i}"),
                                }),
                                received: None,
                            };
                            store
                                .archive(&request, RawMessage::Bytes(&message(i)))
                                .unwrap();
                        }
                    });
                }
            });
            eprintln!(
                "archived {} messages in {:.1} s",
                messages - have,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let started = Instant::now();
    let stats = DiskArchiveStore::rebuild_indexes(&dir, StoreOptions::default()).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let rate = stats.messages as f64 / seconds;
    eprintln!(
        "rebuild_indexes: {} messages in {seconds:.2} s = {rate:.0} msgs/s",
        stats.messages
    );
    if json {
        println!(
            "{}",
            serde_json::json!({ "messages": stats.messages, "seconds": seconds, "msgs_per_s": rate })
        );
    }
}
