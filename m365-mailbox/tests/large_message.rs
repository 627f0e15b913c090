//! A 150 MB message is fetched with peak memory far below its size: the body streams into a
//! spool file. Its own test binary, so that no other test disturbs the process's peak RSS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;

use common::*;
use m365_emulator::EmulatorConfig;
use m365_mailbox::MailboxSource;

const LARGE: u64 = 150 * 1024 * 1024;

/// Peak resident set size of this process so far, in bytes (`VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_of_150_mb_is_fetched_with_bounded_memory() {
    let emu = emulator(EmulatorConfig {
        users: 1,
        messages_per_user: 3,
        seed: 31,
        special_users: false,
        large_message_bytes: Some(LARGE),
        ..Default::default()
    })
    .await;
    let upn = first_user(&emu);
    let source = source(&emu);
    let (messages, _, _) = enumerate(&source, &upn).await;
    let large = messages.values().max_by_key(|m| m.size).unwrap();
    let size = large.size.unwrap();
    assert!(size >= LARGE / 100 * 99, "largest message has {size} bytes");

    // Start measuring from here (resetting the peak where the kernel allows it).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss();
    let content = source.fetch_mime(&upn, &large.id, 200 << 20).await.unwrap();
    let growth = peak_rss().saturating_sub(before);
    eprintln!(
        "peak RSS growth fetching {size} bytes: {} KiB",
        growth >> 10
    );
    let path = content
        .path()
        .expect("a large body is spooled")
        .to_path_buf();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    assert!(
        growth < size / 5,
        "peak RSS grew by {} MiB fetching a {} MiB message",
        growth >> 20,
        size >> 20
    );

    // Byte-exact (compared after the measurement: the reference copy is in memory).
    let expected = emu.message_mime(&upn, &large.id).unwrap();
    let mut file = std::fs::File::open(&path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0usize;
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(
            &buf[..n],
            &expected[offset..offset + n],
            "bytes differ near offset {offset}"
        );
        offset += n;
    }
    assert_eq!(offset, expected.len());
    drop(content);
    assert!(!path.exists());
}
