//! Ingest benchmark: archives a generated corpus (default 20,000 messages of
//! realistic sizes, with attachments shared between messages and copies of the
//! same mail in several users' archives) from several writer threads, and prints
//! messages/s, MB/s, stored versus logical bytes and peak RSS.
//!
//! `cargo run --release -p archive-store --example ingest_bench -- [--messages N] [--threads T] [--dir DIR] [--large-mb N]`
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use archive_store::{
    ArchiveRequest, ArchiveStore, DiskArchiveStore, RawMessage, SourceRef, StoreOptions,
};

const USERS: u64 = 200;
const SHARED_ATTACHMENTS: u64 = 300;

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

fn base64_lines(data: &[u8]) -> Vec<u8> {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + data.len() / 38 + 4);
    for (i, chunk) in data.chunks(3).enumerate() {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ABC[(n >> 18) as usize & 63]);
        out.push(ABC[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            ABC[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if chunk.len() > 2 {
            ABC[n as usize & 63]
        } else {
            b'='
        });
        if i % 19 == 18 {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

const WORDS: &[&str] = &[
    "meeting",
    "budget",
    "forecast",
    "contract",
    "review",
    "project",
    "deadline",
    "customer",
    "invoice",
    "travel",
    "design",
    "release",
    "quarterly",
    "report",
    "please",
    "thanks",
    "attached",
    "schedule",
    "update",
    "team",
];

fn text(seed: u64, words: usize) -> String {
    let mut x = seed | 1;
    let mut out = String::with_capacity(words * 8);
    for i in 0..words {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
        out.push(if i % 12 == 11 { '\n' } else { ' ' });
    }
    out
}

/// Message `i`: its recipients and bytes. A quarter of the mails reach 3 users as
/// identical copies; every 5th carries one of 300 shared attachments (the mails
/// carrying the same attachment differ in headers and text).
fn message(i: u64) -> (Vec<u64>, Vec<u8>) {
    let base = i / 3;
    let (recipients, seed) = if i % 12 < 3 {
        (
            vec![base % USERS, (base + 1) % USERS, (base + 2) % USERS],
            1_000_000 + base,
        )
    } else {
        (vec![i % USERS], i)
    };
    let words = 200 + (seed % 40) as usize * 60;
    let mut m = format!(
        "Received: from mx{}.fabrikam.test\r\nFrom: Sender {seed} <sender{}@fabrikam.test>\r\nTo: user{}@contoso.test\r\nSubject: {} {seed}\r\nDate: Tue, {} Jul 2025 10:{:02}:00 +0000\r\nMessage-ID: <{seed}@fabrikam.test>\r\nMIME-Version: 1.0\r\n",
        seed % 7,
        seed % 500,
        recipients[0],
        text(seed * 31, 5).trim(),
        1 + seed % 28,
        seed % 60
    )
    .into_bytes();
    let body = text(seed, words);
    if seed % 5 == 0 {
        let k = (seed / 5) % SHARED_ATTACHMENTS;
        let b = format!("----=_NextPart_{i:08x}");
        m.extend_from_slice(format!("Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--{b}\r\nContent-Type: application/pdf; name=\"doc{}.pdf\"\r\nContent-Disposition: attachment; filename=\"doc{}.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", k, k).as_bytes());
        // Generated on the fly, so the benchmark's own memory does not hide the store's.
        m.extend_from_slice(&base64_lines(&noise(
            k,
            30_000 + (k as usize % 20) * 40_000,
        )));
        m.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    } else {
        m.extend_from_slice(format!("Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>{}</p></body></html>\r\n", body.replace('\n', "</p><p>")).as_bytes());
    }
    (recipients, m)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Writes one message of about `mb` MB (a base64 attachment) to a spool file, archives
/// it from the file and prints time and peak RSS: memory stays bounded.
fn archive_large(store: &DiskArchiveStore, tmp: &std::path::Path, mb: u64) {
    use std::io::Write;
    let path = tmp.join("large.eml");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    file.write_all(b"From: scanner@contoso.test\r\nTo: user0@contoso.test\r\nSubject: Large scan\r\nContent-Type: multipart/mixed; boundary=\"L\"\r\n\r\n--L\r\nContent-Type: text/plain\r\n\r\nThe scan.\r\n--L\r\nContent-Type: image/tiff; name=\"scan.tiff\"\r\nContent-Transfer-Encoding: base64\r\n\r\n").unwrap();
    let mut written = 0u64;
    let mut k = 0u64;
    while written < mb * 1_000_000 {
        let block = base64_lines(&noise(10_000 + k, 750_000));
        file.write_all(&block).unwrap();
        written += block.len() as u64;
        k += 1;
    }
    file.write_all(b"--L--\r\n").unwrap();
    file.flush().unwrap();
    drop(file);
    let size = std::fs::metadata(&path).unwrap().len();
    let before = peak_rss_kib().unwrap_or(0);
    let started = Instant::now();
    let request = ArchiveRequest {
        user: "user0".into(),
        folder: "Inbox".into(),
        source: None,
        received: None,
    };
    store.archive(&request, RawMessage::File(&path)).unwrap();
    println!(
        "large message         {:.1} MB from a file in {:.1} s; peak RSS {:.1} MB before, {:.1} MB after",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        before as f64 / 1024.0,
        peak_rss_kib().unwrap_or(0) as f64 / 1024.0
    );
    std::fs::remove_file(&path).unwrap();
}

fn main() {
    let mut messages: u64 = 20_000;
    let mut threads: u64 = 4;
    let mut dir: Option<std::path::PathBuf> = None;
    let mut large_mb: u64 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--messages" => {
                messages = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--messages N")
            }
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--threads T")
            }
            "--dir" => dir = args.next().map(Into::into),
            "--large-mb" => {
                large_mb = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--large-mb N")
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = dir.unwrap_or_else(|| tmp.path().join("archive"));
    let store = Arc::new(DiskArchiveStore::open(&dir, StoreOptions::default()).unwrap());
    if large_mb > 0 {
        archive_large(&store, tmp.path(), large_mb);
    }
    let next = Arc::new(AtomicU64::new(0));
    let input_bytes = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (store, next, input_bytes, calls) = (
                store.clone(),
                next.clone(),
                input_bytes.clone(),
                calls.clone(),
            );
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= messages {
                        break;
                    }
                    let (recipients, raw) = message(i);
                    let user = recipients[(i % 3) as usize % recipients.len()];
                    let request = ArchiveRequest {
                        user: format!("user{user}"),
                        folder: if i % 9 == 0 {
                            "Sent Items".into()
                        } else {
                            "Inbox".into()
                        },
                        source: Some(SourceRef {
                            mailbox: format!("user{user}@contoso.test"),
                            message_id: format!("AAMk{i}"),
                        }),
                        received: None,
                    };
                    store.archive(&request, RawMessage::Bytes(&raw)).unwrap();
                    input_bytes.fetch_add(raw.len() as u64, Ordering::Relaxed);
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let ingest = started.elapsed().as_secs_f64();
    store.flush().unwrap();
    let total = started.elapsed().as_secs_f64();
    let stats = store.stats().unwrap();
    let input = input_bytes.load(Ordering::Relaxed) as f64;
    let n = calls.load(Ordering::Relaxed) as f64;
    println!("messages archived     {n}");
    println!("writer threads        {threads}");
    println!("ingest time           {ingest:.1} s (with final index flush {total:.1} s)");
    println!("messages/s            {:.0}", n / ingest);
    println!("input MB/s            {:.1}", input / ingest / 1e6);
    println!("input bytes           {:.1} MB", input / 1e6);
    println!("archive entries       {}", stats.messages);
    println!("unique messages       {}", stats.unique_messages);
    println!("chunks                {}", stats.chunks);
    println!(
        "logical bytes         {:.1} MB (distinct contents)",
        stats.logical_bytes as f64 / 1e6
    );
    println!(
        "stored bytes          {:.1} MB ({:.1}% of logical, {:.1}% of input)",
        stats.stored_bytes as f64 / 1e6,
        100.0 * stats.stored_bytes as f64 / stats.logical_bytes.max(1) as f64,
        100.0 * stats.stored_bytes as f64 / input.max(1.0)
    );
    if let Some(kib) = peak_rss_kib() {
        println!("peak RSS (VmHWM)      {:.1} MB", kib as f64 / 1024.0);
    }
    let started = Instant::now();
    let report = store.verify().unwrap();
    println!(
        "verify                {:.1} s, clean: {}",
        started.elapsed().as_secs_f64(),
        report.is_clean()
    );
}
