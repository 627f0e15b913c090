//! Figures of directory synchronisation against the local emulator: a first (full)
//! sync, an idle sync, and a sync after a batch of changes, with the Graph requests
//! each one cost, the store writes (transactions), the bytes the process wrote to
//! storage during the sync (`/proc/self/io`: `write_bytes` minus
//! `cancelled_write_bytes`, so a journal created and deleted before writeback counts
//! nothing; the emulator is in memory) and the size of the user store.
//!
//! `cargo run --release -p directory-sync --example directory_figures -- [USERS] [CHANGES]`
//! (defaults: 5000 users, 100 changes).
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use directory_sync::{
    GraphDirectoryOptions, GraphDirectorySource, SqliteUserStore, SyncOptions, SyncReport, sync,
};
use m365_auth::{AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud};
use m365_emulator::{Emulator, EmulatorConfig, NewUser, UserPatch};

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Bytes this process has caused to be written to storage so far (Linux only; 0
/// elsewhere).
fn storage_bytes() -> i64 {
    let Ok(io) = std::fs::read_to_string("/proc/self/io") else {
        return 0;
    };
    let field = |name: &str| -> i64 {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    field("write_bytes:") - field("cancelled_write_bytes:")
}

async fn measured(
    label: &str,
    emu: &Emulator,
    source: &GraphDirectorySource,
    store: &SqliteUserStore,
) -> SyncReport {
    let requests = emu.stats().await.requests_total;
    let writes = store.write_count();
    let bytes = storage_bytes();
    let started = Instant::now();
    let report = sync(source, store, &SyncOptions::default()).await.unwrap();
    let elapsed = started.elapsed();
    let written = storage_bytes() - bytes;
    println!(
        "{label:<22} {:>9.1} ms  {:>5} Graph requests  {:>3} store writes  {:>7} KiB written  created {:>5}  updated {:>4}  deactivated {:>4}  unchanged {:>5}  skipped {:>3}  address conflicts {:>4}",
        elapsed.as_secs_f64() * 1000.0,
        emu.stats().await.requests_total - requests,
        store.write_count() - writes,
        written / 1024,
        report.created.len(),
        report.updated.len(),
        report.deactivated.len(),
        report.unchanged.len(),
        report.skipped.len(),
        report.address_conflicts.len(),
    );
    report
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let changes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let emu = Emulator::start(EmulatorConfig {
        users,
        messages_per_user: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let cloud = Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str()).unwrap();
    let registration = AppRegistration::new(
        &emu.tenant_id(),
        &emu.client_id(),
        ClientCredential::secret(emu.client_secret()),
        cloud,
    )
    .unwrap();
    let tokens =
        Arc::new(ClientCredentialsProvider::new(registration, Default::default()).unwrap());
    let source =
        GraphDirectorySource::new(tokens, emu.graph_url(), GraphDirectoryOptions::default())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteUserStore::open(dir.path().join("users.db")).unwrap();

    println!(
        "directory of {} users ({} regular), {changes} changes",
        emu.users().len(),
        users
    );
    measured("first sync (full)", &emu, &source, &store).await;
    measured("idle sync (delta)", &emu, &source, &store).await;

    let existing = emu.users();
    for i in 0..changes {
        let target = &existing[i % existing.len()];
        match i % 4 {
            0 => {
                emu.add_user(NewUser {
                    upn: format!("hire{i}@contoso.onmicrosoft.com"),
                    display_name: format!("Hire {i}"),
                    mail: Some(format!("hire{i}@contoso.onmicrosoft.com")),
                    ..Default::default()
                })
                .unwrap();
            }
            1 => {
                emu.update_user(
                    &target.id,
                    UserPatch {
                        display_name: Some(format!("Renamed {i}")),
                        ..Default::default()
                    },
                )
                .unwrap();
            }
            2 => {
                emu.update_user(
                    &target.id,
                    UserPatch {
                        enabled: Some(false),
                        ..Default::default()
                    },
                )
                .unwrap();
            }
            _ => emu.delete_user(&target.id).unwrap(),
        }
    }
    measured("sync after changes", &emu, &source, &store).await;
    measured("idle sync (delta)", &emu, &source, &store).await;
    println!("user store on disk: {} KiB", dir_size(dir.path()) / 1024);
    println!("client counters: {:?}", source.stats());
    emu.shutdown().await;
}
