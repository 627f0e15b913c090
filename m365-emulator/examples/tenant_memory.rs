//! Memory and rendering figures of the generated tenant: RSS after generating USERS × MESSAGES
//! (default 100 × 1,000), the size distribution of the generated mail, and MIME render speed.
//!
//! `cargo run -p m365-emulator --example tenant_memory -- 100 1000`
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::Instant;

use m365_emulator::{Emulator, EmulatorConfig};

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let messages: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let before = rss_kib("VmRSS:");
    let started = Instant::now();
    let emu = Emulator::start(EmulatorConfig {
        users,
        messages_per_user: messages,
        seed: 1,
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    let generated = started.elapsed();
    let after = rss_kib("VmRSS:");
    println!(
        "tenant {users} users x {messages} messages generated in {:.2?}",
        generated
    );
    println!(
        "RSS before {} MiB, after generation {} MiB",
        before / 1024,
        after / 1024
    );

    // Size distribution over the first user's mailbox, and render speed.
    let upn = emu.users()[0].upn.clone();
    let ids = emu.message_ids(&upn);
    let started = Instant::now();
    let mut sizes: Vec<usize> = ids
        .iter()
        .map(|id| emu.message_mime(&upn, id).map_or(0, |m| m.len()))
        .collect();
    let rendered = started.elapsed();
    sizes.sort_unstable();
    let total: usize = sizes.iter().sum();
    let pick = |q: f64| {
        sizes
            .get(((sizes.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "one mailbox: {} messages, {:.1} MiB, median {} KiB, p90 {} KiB, p99 {} KiB, max {} KiB",
        sizes.len(),
        total as f64 / 1048576.0,
        pick(0.5) / 1024,
        pick(0.9) / 1024,
        pick(0.99) / 1024,
        pick(1.0) / 1024
    );
    println!(
        "rendered in {:.2?} ({:.0} MiB/s); RSS now {} MiB, peak {} MiB",
        rendered,
        total as f64 / 1048576.0 / rendered.as_secs_f64(),
        rss_kib("VmRSS:") / 1024,
        rss_kib("VmHWM:") / 1024
    );
    emu.shutdown().await;
}
