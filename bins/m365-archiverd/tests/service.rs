//! The service as a real process against an emulated tenant: a scheduled profile runs
//! under `--once`, and SIGTERM in the middle of a run stops it cleanly with its
//! checkpoints saved, so the next run resumes without losing or repeating a message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use archiver_service::{Principal, Service, ServiceOptions};
use m365_emulator::{Emulator, EmulatorConfig};
use profile_engine::{CancellationToken, CheckpointStore, NoProgress, RunHistory, RunStatus};

mod support;

use support::{PROFILE, archived, daemon, prepare, tenant_total};

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
    assert!(!stderr.contains("panicked at "), "{stderr}");
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
    assert!(!log.contains("panicked at "), "{log}");

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

    // The next run (the same use case as the service's) resumes: nothing lost, nothing twice.
    let service = Service::new(&data, ServiceOptions::default());
    let report = service
        .run_profile(
            &Principal::LocalAdministrator,
            PROFILE,
            &CancellationToken::new(),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok);
    assert_eq!(
        before + report.totals.messages_archived,
        total,
        "{report:?}"
    );
    drop(service);
    assert_eq!(archived(&data), total);
    emu.shutdown().await;
}
