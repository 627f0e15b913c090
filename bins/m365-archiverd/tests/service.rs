//! The service as a real process against an emulated tenant: a scheduled profile runs
//! under `--once`, and SIGTERM in the middle of a run stops it cleanly with its
//! checkpoints saved, so the next run resumes without losing or repeating a message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use archive_store::ArchiveStore;
use m365_archiver::datadir::{Access, DataDir};
use m365_archiver::wiring;
use m365_auth::{Cloud, CredentialSource, CredentialStore, SecretSource, StoredCredential};
use m365_emulator::{Emulator, EmulatorConfig};
use profile_engine::{
    CancellationToken, CheckpointStore, NoProgress, Profile, ProfileStore, RunHistory, RunStatus,
    Select, Source,
};

const PROFILE: &str = "nightly";

/// A data directory with the emulator's credentials (secret in a file) and a profile
/// over every mailbox, scheduled `every 1m`.
fn prepare(emu: &Emulator, root: &Path, parallel_mailboxes: usize) -> PathBuf {
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
        },
    );
    profile.run.schedule = "every 1m".parse().unwrap();
    profile.run.parallel_mailboxes = parallel_mailboxes;
    ProfileStore::new(data.join("profiles"))
        .save(&profile)
        .unwrap();
    data
}

fn tenant_total(emu: &Emulator) -> u64 {
    emu.users()
        .iter()
        .filter(|u| u.has_mailbox && !u.access_denied)
        .map(|u| emu.message_count(&u.upn) as u64)
        .sum()
}

fn archived(data: &Path) -> u64 {
    let dir = DataDir::open(data, Access::Read).unwrap();
    wiring::open_archive(&dir, false)
        .unwrap()
        .stats()
        .unwrap()
        .messages
}

fn daemon(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_m365-archiverd"));
    cmd.arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "info")
        .env_remove("M365_ARCHIVER_DATA");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_runs_the_due_profile_and_exits() {
    let emu = Emulator::start(EmulatorConfig {
        users: 3,
        messages_per_user: 15,
        seed: 5,
        special_users: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(&emu, tmp.path(), 8);
    let out = daemon(&data).arg("--once").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "m365-archiverd --once failed:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stderr.contains(&emu.client_secret()),
        "the secret reached the log"
    );
    assert!(
        stderr.contains("run started") && stderr.contains("run finished"),
        "{stderr}"
    );
    assert_eq!(archived(&data), tenant_total(&emu));
    let last = RunHistory::new(data.join("state/history"))
        .last(PROFILE)
        .unwrap()
        .unwrap();
    assert_eq!(last.report.status, RunStatus::Ok);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_saves_checkpoints_and_the_next_run_resumes() {
    let emu = Emulator::start(EmulatorConfig {
        users: 4,
        messages_per_user: 80,
        seed: 6,
        special_users: false,
        mail_latency: Duration::from_millis(25),
        ..Default::default()
    })
    .await
    .unwrap();
    let total = tenant_total(&emu);
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(&emu, tmp.path(), 1);

    let mut child = daemon(&data)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    // Mailboxes run one at a time: once the first is done, the run is in the middle.
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("mailbox finished") {
            break;
        }
    }
    assert!(
        log.contains("mailbox finished"),
        "the run never got going:\n{log}"
    );
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    let exit = child.wait().unwrap();
    assert!(
        exit.success(),
        "m365-archiverd did not stop cleanly ({exit}):\n{log}"
    );
    assert!(
        log.contains("SIGTERM received") && log.contains("m365-archiverd stopped"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");

    let last = RunHistory::new(data.join("state/history"))
        .last(PROFILE)
        .unwrap()
        .unwrap();
    assert_eq!(last.report.status, RunStatus::Cancelled, "{log}");
    let before = archived(&data);
    assert!(
        before > 0 && before < total,
        "stopped mid-run: {before} of {total} archived"
    );

    // The finished mailbox has its folders' cursors saved.
    let finished = last
        .report
        .mailboxes
        .iter()
        .find(|m| m.status == profile_engine::MailboxStatus::Ok)
        .expect("a mailbox finished before SIGTERM");
    let checkpoint = CheckpointStore::new(data.join("state/checkpoints"))
        .load(PROFILE, &finished.mailbox)
        .unwrap();
    assert!(!checkpoint.folders.is_empty());
    assert!(
        checkpoint.folders.values().all(|f| f.cursor.is_some()),
        "{checkpoint:?}"
    );

    // The next run (same wiring as the service) resumes: nothing lost, nothing twice.
    let dir = DataDir::open(&data, Access::Write).unwrap();
    let profile = ProfileStore::new(dir.profiles()).load(PROFILE).unwrap();
    let stores = wiring::Stores::open(&dir).unwrap();
    let engine = wiring::engine_for(&dir, &profile, &stores).unwrap();
    let report = engine
        .engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok);
    assert_eq!(
        before + report.totals.messages_archived,
        total,
        "{report:?}"
    );
    drop(engine);
    drop(stores);
    assert_eq!(archived(&data), total);
    emu.shutdown().await;
}
