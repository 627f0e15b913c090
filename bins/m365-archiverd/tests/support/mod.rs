//! What the service's tests share: a data directory with the emulator's credentials
//! and a scheduled profile, the tenant's message count, and the binaries.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use archiver_service::{Principal, Service, ServiceOptions};
use m365_auth::{Cloud, CredentialSource, CredentialStore, SecretSource, StoredCredential};
use m365_emulator::Emulator;
use profile_engine::{Profile, ProfileStore, Select, Source};

pub const PROFILE: &str = "nightly";

/// A data directory with the emulator's credentials (secret in a file) and a profile
/// over every mailbox, scheduled `every 1m`.
pub fn prepare(emu: &Emulator, root: &Path, parallel_mailboxes: usize) -> PathBuf {
    let data = root.join("data");
    std::fs::create_dir(&data).unwrap();
    let secret = root.join("client-secret.txt");
    std::fs::write(&secret, emu.client_secret()).unwrap();
    CredentialStore::open(data.join("credentials"))
        .unwrap()
        .add(&StoredCredential {
            name: "contoso".into(),
            tenant: emu.tenant_id().parse().unwrap(),
            client_id: emu.client_id().parse().unwrap(),
            cloud: Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str()).unwrap(),
            credential: CredentialSource::Secret(SecretSource::File(secret)),
            ca_file: None,
            scope: None,
        })
        .unwrap();
    let mut profile = Profile::new(
        PROFILE,
        "contoso",
        Source::Multiple {
            select: Select::All,
            users: Vec::new(),
            sync_directory_first: true,
            mailbox_kinds: profile_engine::MailboxKinds::default(),
        },
    );
    profile.run.schedule = "every 1m".parse().unwrap();
    profile.run.parallel_mailboxes = parallel_mailboxes;
    ProfileStore::new(data.join("profiles"))
        .save(&profile)
        .unwrap();
    data
}

pub fn tenant_total(emu: &Emulator) -> u64 {
    emu.users()
        .iter()
        .filter(|u| u.has_mailbox && !u.access_denied)
        .map(|u| emu.message_count(&u.upn) as u64)
        .sum()
}

pub fn archived(data: &Path) -> u64 {
    Service::new(data, ServiceOptions::default())
        .archive_stats(&Principal::LocalAdministrator)
        .unwrap()
        .stats
        .messages
}

pub fn daemon(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_m365-archiverd"));
    cmd.arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "info")
        .env_remove("M365_ARCHIVER_DATA");
    cmd
}

/// The `m365-archiver` command line, built next to the service by
/// `cargo test -p m365-archiver -p m365-archiverd` (or `cargo build -p m365-archiver`).
pub fn cli(data: &Path) -> Command {
    let path = Path::new(env!("CARGO_BIN_EXE_m365-archiverd")).with_file_name("m365-archiver");
    assert!(
        path.is_file(),
        "{} not found: build it first (`cargo build -p m365-archiver`)",
        path.display()
    );
    let mut cmd = Command::new(path);
    cmd.arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .env_remove("M365_ARCHIVER_DATA");
    cmd
}
