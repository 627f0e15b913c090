//! One data directory, two processes: while the service archives a slow tenant, the
//! command line searches, exports, counts, lists users and imports against the same
//! directory. Every command succeeds, nothing is lost, and the archive verifies clean.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use m365_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;
use support::{cli, daemon, prepare, tenant_total};

/// Runs the command line with `--json`; requires exit 0 and returns its document.
fn json(data: &std::path::Path, args: &[&str]) -> Value {
    let out = cli(data).args(args).arg("--json").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{args:?} failed while the service archives:\n{stderr}"
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON document ({e}):\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_works_on_the_data_dir_the_service_archives_into() {
    let emu = Emulator::start(EmulatorConfig {
        users: 4,
        messages_per_user: 60,
        seed: 21,
        special_users: false,
        mail_latency: Duration::from_millis(30),
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
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    // Mailboxes run one at a time: once the first is done, the run is in the middle.
    while let Ok(line) = lines.recv() {
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

    // The command line, while the run goes on.
    let stats = json(&data, &["archive", "stats"]);
    let (owner, held) = stats["users"]
        .as_object()
        .and_then(|users| users.iter().find(|(_, n)| n.as_u64() > Some(0)))
        .map(|(user, n)| (user.clone(), n.as_u64().unwrap()))
        .expect("an archive with mail while the run goes on");
    let hits = json(&data, &["archive", "search", "the", "--limit", "5"]);
    assert!(hits.is_array(), "{hits}");
    let users = json(&data, &["users", "list"]);
    assert!(!users.as_array().unwrap().is_empty(), "{users}");
    let mbox = tmp.path().join("owner.mbox");
    let export = json(
        &data,
        &[
            "archive",
            "export",
            "--user",
            &owner,
            "--format",
            "mbox",
            "--out",
            mbox.to_str().unwrap(),
        ],
    );
    let exported = export["messages"].as_u64().unwrap();
    assert!(exported >= held, "{export}");
    json(
        &data,
        &[
            "users",
            "add",
            "restored",
            "--email",
            "restored@example.com",
        ],
    );
    let import = json(
        &data,
        &[
            "archive",
            "import",
            "--user",
            "restored",
            "--folder",
            "Restored",
            mbox.to_str().unwrap(),
        ],
    );
    assert_eq!(import["imported"].as_u64(), Some(exported), "{import}");
    // All of it happened during the run.
    while let Ok(line) = lines.try_recv() {
        assert!(
            !line.contains("run finished"),
            "the run ended before the command line was done; make the tenant slower:\n{log}"
        );
        log.push_str(&line);
        log.push('\n');
    }

    // The run finishes with every message of the tenant archived.
    while let Ok(line) = lines.recv() {
        log.push_str(&line);
        log.push('\n');
        if line.contains("run finished") {
            break;
        }
    }
    assert!(log.contains("run finished"), "{log}");
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    reader.join().unwrap();
    assert!(
        exit.success(),
        "m365-archiverd did not stop cleanly ({exit}):\n{log}"
    );
    assert!(!log.contains("panicked at "), "{log}");

    let stats = json(&data, &["archive", "stats"]);
    assert_eq!(
        stats["messages"].as_u64(),
        Some(total + exported),
        "nothing lost: {stats}"
    );
    assert_eq!(
        stats["users"]["restored"].as_u64(),
        Some(exported),
        "{stats}"
    );
    let verify = json(&data, &["archive", "verify"]);
    assert!(
        verify["problems"].as_array().is_none_or(Vec::is_empty),
        "{verify}"
    );
    emu.shutdown().await;
}
