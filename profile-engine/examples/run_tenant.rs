//! Figures of a profile run against the emulator with the real stack: run time,
//! messages per second, Graph requests, throttling, retries, peak memory, and the
//! cost of an unchanged rerun.
//!
//! `cargo run -p profile-engine --example run_tenant -- [USERS] [MESSAGES_PER_USER] [PARALLEL]`
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use archive_store::{DiskArchiveStore, StoreOptions};
use directory_sync::{GraphDirectoryOptions, GraphDirectorySource, SqliteUserStore};
use m365_auth::{
    AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud, ProviderOptions,
    TokenProvider,
};
use m365_emulator::{Emulator, EmulatorConfig};
use m365_mailbox::{GraphMailboxOptions, GraphMailboxSource};
use profile_engine::{
    CancellationToken, CheckpointStore, Engine, NoProgress, Profile, RunReport, Select, Source,
};

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn print(label: &str, report: &RunReport) {
    let t = &report.totals;
    println!(
        "{label}: {:.2}s, {} archived, {} duplicate, {} failed, {:.1} MiB, {:.0} msg/s, {} requests, {} throttled, {} retries, status {:?}",
        report.duration_secs,
        t.messages_archived,
        t.messages_duplicate,
        t.messages_failed,
        t.bytes as f64 / 1048576.0,
        t.messages_archived as f64 / report.duration_secs.max(1e-9),
        report.requests,
        report.throttled,
        report.retries,
        report.status
    );
}

#[tokio::main]
async fn main() {
    let users = arg(1, 10);
    let per_user = arg(2, 200);
    let parallel = arg(3, 8);
    let emu = Emulator::start(EmulatorConfig {
        users,
        messages_per_user: per_user,
        seed: 42,
        special_users: false,
        ..Default::default()
    })
    .await
    .expect("emulator");
    let data = tempfile::tempdir().expect("temp dir");
    let cloud = Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str()).unwrap();
    let registration = AppRegistration::new(
        &emu.tenant_id(),
        &emu.client_id(),
        ClientCredential::secret(emu.client_secret()),
        cloud,
    )
    .unwrap();
    let tokens: Arc<dyn TokenProvider> =
        Arc::new(ClientCredentialsProvider::new(registration, ProviderOptions::default()).unwrap());
    let mail = GraphMailboxSource::new(
        tokens.clone(),
        emu.graph_url(),
        GraphMailboxOptions::default(),
    )
    .unwrap();
    let directory = GraphDirectorySource::new(
        tokens.clone(),
        emu.graph_url(),
        GraphDirectoryOptions::default(),
    )
    .unwrap();
    let engine = Engine::builder()
        .token_provider(tokens)
        .mailbox_source(Arc::new(mail))
        .directory_source(Arc::new(directory))
        .user_store(Arc::new(
            SqliteUserStore::open(data.path().join("users.db")).unwrap(),
        ))
        .archive_store(Arc::new(
            DiskArchiveStore::open(data.path().join("archive"), StoreOptions::default()).unwrap(),
        ))
        .checkpoints(CheckpointStore::new(data.path().join("checkpoints")))
        .build()
        .unwrap();
    let mut profile = Profile::new(
        "bench",
        "emulator",
        Source::Multiple {
            select: Select::All,
            users: vec![],
            sync_directory_first: true,
            mailbox_kinds: profile_engine::MailboxKinds::default(),
        },
    );
    profile.run.parallel_mailboxes = parallel;
    println!("tenant: {users} users x {per_user} messages, {parallel} mailboxes at once");
    let started = Instant::now();
    let first = engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    print("first run", &first);
    let second = engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    print("unchanged rerun", &second);
    println!(
        "total {:.2}s, peak RSS {:.1} MiB (emulator included)",
        started.elapsed().as_secs_f64(),
        peak_rss_kib() as f64 / 1024.0
    );
    emu.shutdown().await;
}
