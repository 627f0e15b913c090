//! Throughput of `GraphMailboxSource` under Outlook's limits, against the emulator.
//!
//! For 1 and for 20 mailboxes (or `--mailboxes a,b,...`): list every folder, run every
//! folder's delta, fetch every message's MIME; print messages/s, requests/s and the ratio
//! to the ceiling Outlook allows: 4 requests in flight per mailbox, i.e. 4 / latency
//! requests per second per mailbox, where latency is the measured time of one unloaded
//! request. `--time-scale X` divides the emulator's throttling windows and its mail latency
//! (`--latency-ms`, unscaled, default 100 ms like a real Exchange answer); the client's request
//! budget window is scaled the same way so that it stays under the emulator's.
//!
//! `cargo run --release -p m365-mailbox --example throughput -- --time-scale 10`
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use m365_auth::{
    AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud, ProviderOptions,
};
use m365_emulator::{Emulator, EmulatorConfig};
use m365_mailbox::{
    DeltaEvent, GateLimits, GraphMailboxOptions, GraphMailboxSource, MailboxSource, MimeContent,
};

struct Args {
    time_scale: f64,
    messages: usize,
    latency_ms: u64,
    mailboxes: Vec<usize>,
}

fn parse_args() -> Args {
    let mut args = Args {
        time_scale: 10.0,
        messages: 200,
        latency_ms: 100,
        mailboxes: vec![1, 20],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--time-scale" => args.time_scale = value.parse().expect("--time-scale: a number"),
            "--messages" => args.messages = value.parse().expect("--messages: a count"),
            "--latency-ms" => args.latency_ms = value.parse().expect("--latency-ms: milliseconds"),
            "--mailboxes" => {
                args.mailboxes = value
                    .split(',')
                    .map(|v| v.trim().parse().expect("--mailboxes: counts like 1,20"))
                    .collect();
            }
            other => panic!(
                "unknown option {other} (--time-scale, --messages, --latency-ms, --mailboxes)"
            ),
        }
    }
    args
}

fn provider(emu: &Emulator) -> Arc<ClientCredentialsProvider> {
    let cloud = Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str()).unwrap();
    let registration = AppRegistration::new(
        &emu.tenant_id(),
        &emu.client_id(),
        ClientCredential::secret(emu.client_secret()),
        cloud,
    )
    .unwrap();
    Arc::new(ClientCredentialsProvider::new(registration, ProviderOptions::default()).unwrap())
}

/// Lists, enumerates and fetches one mailbox, as a pipeline: folder deltas run side by
/// side and every message is fetched as soon as its summary arrives; returns (messages, bytes).
async fn archive(source: &GraphMailboxSource, upn: &str) -> (u64, u64) {
    let folders = source.folders(upn).await.unwrap();
    let ids = futures::stream::iter(folders.into_iter().filter(|f| !f.search_folder))
        .map(|folder| source.changes(upn, &folder.id, None))
        .flatten_unordered(4)
        .filter_map(|event| async move {
            match event.unwrap() {
                DeltaEvent::Upsert(summary) => Some(summary.id),
                _ => None,
            }
        });
    ids.map(|id| async move {
        match source.fetch_mime(upn, &id, 1 << 30).await.unwrap() {
            MimeContent::Memory(b) => b.len() as u64,
            MimeContent::Spooled(p) => std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0),
        }
    })
    .buffer_unordered(8)
    .fold((0u64, 0u64), |(n, total), bytes| async move {
        (n + 1, total + bytes)
    })
    .await
}

async fn run(args: &Args, mailboxes: usize) {
    let emu = Emulator::start(EmulatorConfig {
        users: mailboxes,
        messages_per_user: args.messages,
        seed: 42,
        special_users: false,
        time_scale: args.time_scale,
        mail_latency: Duration::from_millis(args.latency_ms),
        ..Default::default()
    })
    .await
    .unwrap();
    let upns: Vec<String> = emu.users().into_iter().map(|u| u.upn).collect();
    let options = GraphMailboxOptions {
        limits: GateLimits {
            max_in_flight: 4,
            budget: 9_000,
            window: Duration::from_secs(600).div_f64(args.time_scale.max(1e-3)),
        },
        ..GraphMailboxOptions::default()
    };
    let source = GraphMailboxSource::new(provider(&emu), emu.graph_url(), options).unwrap();

    // Latency of one unloaded request (median of 15 sequential probes, each one GET:
    // a source without `$batch`, whose probe asks for the inbox alone).
    let single = GraphMailboxSource::new(
        provider(&emu),
        emu.graph_url(),
        GraphMailboxOptions {
            batch: false,
            ..GraphMailboxOptions::default()
        },
    )
    .unwrap();
    let mut samples = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        single.probe(&upns[0]).await.unwrap();
        samples.push(t.elapsed());
    }
    samples.sort();
    let latency = samples[samples.len() / 2];

    let requests_before: u64 = upns.iter().map(|u| source.metrics(u).requests).sum();
    let start = Instant::now();
    let tasks: Vec<_> = upns
        .iter()
        .cloned()
        .map(|upn| {
            let source = source.clone();
            tokio::spawn(async move { archive(&source, &upn).await })
        })
        .collect();
    let (mut messages, mut bytes) = (0u64, 0u64);
    for t in tasks {
        let (m, b) = t.await.unwrap();
        messages += m;
        bytes += b;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let metrics: Vec<_> = upns.iter().map(|u| source.metrics(u)).collect();
    let requests = metrics.iter().map(|m| m.requests).sum::<u64>() - requests_before;
    let throttled: u64 = metrics.iter().map(|m| m.throttled).sum();
    let retries: u64 = metrics.iter().map(|m| m.retries).sum();
    let stats = emu.stats().await;
    let max_concurrency = stats
        .per_mailbox
        .values()
        .map(|m| m.max_concurrency)
        .max()
        .unwrap_or(0);

    let busy: f64 = upns.iter().map(|u| source.busy_time(u).as_secs_f64()).sum();
    // Share of the allowance used: average requests in flight per mailbox / 4.
    let utilisation = busy / (mailboxes as f64 * 4.0 * elapsed);
    let ceiling_rps = mailboxes as f64 * 4.0 / latency.as_secs_f64();
    let achieved_rps = requests as f64 / elapsed;
    let ceiling_mps = ceiling_rps * messages as f64 / requests.max(1) as f64;
    println!(
        "mailboxes={mailboxes:>2} messages={messages} bytes={:.1}MiB elapsed={elapsed:.2}s \
         messages/s={:.1} requests={requests} requests/s={achieved_rps:.1} \
         latency={:.1}ms ceiling_requests/s={ceiling_rps:.1} ceiling_messages/s={ceiling_mps:.1} \
         ratio={:.2} in_flight_share={utilisation:.2} throttled={throttled} retries={retries} emulator_throttled={} max_in_flight={max_concurrency}",
        bytes as f64 / (1024.0 * 1024.0),
        messages as f64 / elapsed,
        latency.as_secs_f64() * 1000.0,
        achieved_rps / ceiling_rps,
        stats.throttled_total,
    );
    emu.shutdown().await;
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "time_scale={} latency_ms={} (unscaled) messages_per_mailbox={}",
        args.time_scale, args.latency_ms, args.messages
    );
    runtime.block_on(async {
        for &n in &args.mailboxes {
            run(&args, n).await;
        }
    });
}
