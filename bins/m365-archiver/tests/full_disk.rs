//! A data directory on a filesystem that fills up: a run and a directory sync stop
//! cleanly with a disk-full error, every read command still works on the full disk,
//! and once the data directory is moved to a roomy disk no user is lost and the next
//! run archives every message exactly once, with no manual step.
//!
//! The small filesystem is a tmpfs mounted by the test (it needs root, as CI has);
//! where mounting is impossible the test says why and returns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use m365_emulator::{Emulator, EmulatorConfig, NewUser};
use serde_json::Value;
use support::{Archiver, custom_cloud_args, strs, tail};

const SECRET_VAR: &str = "CONTOSO_CLIENT_SECRET";

/// A tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    fn available(&self) -> u64 {
        fs2::available_space(&self.path).unwrap()
    }

    /// Writes a ballast file leaving about `free` bytes available.
    fn fill_leaving(&self, name: &str, free: u64) {
        let available = self.available();
        let size = available.saturating_sub(free);
        let block = vec![0x5au8; 64 * 1024];
        let mut file = std::fs::File::create(self.path.join(name)).unwrap();
        let mut written = 0u64;
        use std::io::Write;
        while written < size {
            let n = (size - written).min(block.len() as u64) as usize;
            if file.write_all(&block[..n]).is_err() {
                break;
            }
            written += n as u64;
        }
        let _ = file.sync_all();
    }

    /// Fills the filesystem to the last byte.
    fn fill_completely(&self, name: &str) {
        self.fill_leaving(name, 0);
        // Whatever is left (less than a page) goes in byte by byte.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path.join(name))
            .unwrap();
        use std::io::Write;
        while file.write_all(&[0u8; 512]).is_ok() && file.flush().is_ok() {
            if self.available() == 0 {
                break;
            }
        }
        while file.write_all(&[0u8]).is_ok() {
            if file.sync_all().is_err() {
                break;
            }
            if self.available() == 0 {
                break;
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn regular_users(emu: &Emulator) -> Vec<String> {
    emu.users()
        .into_iter()
        .filter(|u| u.enabled && !u.guest && u.has_mailbox && !u.access_denied && u.mail.is_some())
        .map(|u| u.upn)
        .collect()
}

/// Runs `args` with `--json` and returns the exit code and the one JSON document printed.
fn json_run(cli: &Archiver, args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let run = cli.run(&all);
    let value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no single JSON document ({e}):\n{}\n{}",
            run.stdout,
            tail(&run.stderr)
        )
    });
    (run.code, value)
}

fn user_names(cli: &Archiver) -> Vec<String> {
    let users = cli.json(&["users", "list"]);
    let mut names: Vec<String> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// A tenant of `users` × `messages` and a data directory on a tmpfs of `size` holding
/// its credentials and synced users; `None` (with the reason printed) where no
/// tmpfs can be mounted.
async fn tenant_on_small_disk(
    tmp: &Path,
    size: &str,
    users: usize,
    messages: usize,
    seed: u64,
) -> Option<(SmallDisk, Emulator, Archiver)> {
    let disk = match SmallDisk::mount(&tmp.join("small"), size) {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("skipped: this test needs a small filesystem it can fill ({why})");
            return None;
        }
    };
    let emu = Emulator::start(EmulatorConfig {
        users,
        messages_per_user: messages,
        seed,
        special_users: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut cli = Archiver::new(&disk.path.join("data"), vec![emu.client_secret()]);
    cli.env.push((SECRET_VAR.into(), emu.client_secret()));
    let mut add = custom_cloud_args(&emu, "contoso");
    add.extend(["--secret-env".into(), SECRET_VAR.into()]);
    cli.ok(&strs(&add));
    cli.ok(&["users", "sync", "--credentials", "contoso"]);
    Some((disk, emu, cli))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_cleanly_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((disk, emu, cli)) = tenant_on_small_disk(tmp.path(), "30m", 4, 200, 1201).await else {
        return;
    };
    let data = cli.data.clone();
    cli.ok(&[
        "users",
        "add",
        "records",
        "--email",
        "records@archive.example",
    ]);
    cli.ok(&[
        "profile",
        "create",
        "everyone",
        "--credentials",
        "contoso",
        "--all-except",
        "records",
    ]);
    let users_before = user_names(&cli);
    assert!(users_before.contains(&"records".to_owned()));

    // The run fills the disk: it stops with a disk-full error and still prints its report.
    disk.fill_leaving("ballast-1", 4 << 20);
    let (code, report) = json_run(&cli, &["profile", "run", "everyone"]);
    assert_eq!(code, 1, "a run on a full disk fails: {report}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("disk is full") && error.contains(&data.display().to_string()),
        "the run's error says the disk is full and names the path: {report}"
    );
    assert_ne!(report["status"], "ok");
    let archived_before_full = report["totals"]["messages_archived"].as_u64().unwrap();
    assert!(
        archived_before_full > 0,
        "the run stopped mid-way: {report}"
    );
    // Which archives hold mail depends on where the disk filled up: export one that does.
    let archived_mailbox = report["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["messages_archived"].as_u64().unwrap_or(0) > 0)
        .and_then(|m| m["mailbox"].as_str())
        .unwrap()
        .to_owned();
    let export_user = cli
        .json(&["users", "list"])
        .as_array()
        .unwrap()
        .iter()
        .find(|u| {
            u["email"]
                .as_str()
                .is_some_and(|e| e.eq_ignore_ascii_case(&archived_mailbox))
        })
        .and_then(|u| u["name"].as_str())
        .unwrap()
        .to_owned();

    // A directory sync with changes to write, on a disk with no byte left.
    for i in 0..30 {
        let domain = emu.tenant_domain();
        emu.add_user(NewUser {
            upn: format!("late.joiner{i}@{domain}"),
            display_name: format!("Late Joiner {i}"),
            mail: Some(format!("late.joiner{i}@{domain}")),
            enabled: true,
            has_mailbox: true,
            ..NewUser::default()
        })
        .unwrap();
    }
    disk.fill_completely("ballast-2");
    let sync = cli.run(&["users", "sync", "--credentials", "contoso"]);
    assert_eq!(
        sync.code,
        1,
        "sync on a full disk fails:\n{}",
        tail(&sync.stderr)
    );
    let add = cli.run(&["users", "add", "late", "--email", "late@archive.example"]);
    assert_eq!(
        add.code,
        1,
        "users add on a full disk fails:\n{}",
        tail(&add.stderr)
    );

    // Every read command works on the full disk.
    assert_eq!(
        user_names(&cli),
        users_before,
        "users list on the full disk"
    );
    // The archive's commands work, or (when the index cache must be rebuilt and there
    // is no byte to rebuild it in) fail cleanly saying the disk is full.
    let out = tmp.path().join("export.mbox");
    for args in [
        vec!["archive", "stats"],
        vec!["archive", "verify"],
        vec!["archive", "search", "*", "--limit", "5"],
        vec![
            "archive",
            "export",
            "--user",
            &export_user,
            "--format",
            "mbox",
            "--out",
            out.to_str().unwrap(),
        ],
    ] {
        let run = cli.run(&args);
        assert!(
            run.code == 0
                || (run.code == 1 && support::error_line(&run.stderr).contains("No space left")),
            "{args:?} on the full disk neither worked nor failed cleanly:\n{}",
            tail(&run.stderr)
        );
    }
    cli.ok(&["profile", "list"]);
    cli.ok(&["profile", "show", "everyone"]);
    cli.ok(&["credentials", "list"]);

    // The data directory moves to a roomy disk: nothing lost, the next run completes.
    let roomy = tmp.path().join("roomy");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&roomy)
        .status()
        .unwrap();
    assert!(copied.success());
    drop(disk);
    let mut cli = Archiver::new(&roomy, vec![emu.client_secret()]);
    cli.env.push((SECRET_VAR.into(), emu.client_secret()));
    assert_eq!(
        user_names(&cli),
        users_before,
        "no user lost, manual ones included"
    );
    let (code, report) = json_run(&cli, &["profile", "run", "everyone"]);
    assert_eq!(code, 0, "the next run completes: {report}");
    assert_eq!(report["status"], "ok");
    let stats = cli.json(&["archive", "stats"]);
    let expected: u64 = regular_users(&emu)
        .iter()
        .map(|upn| emu.message_count(upn) as u64)
        .sum();
    assert_eq!(
        stats["messages"].as_u64().unwrap(),
        expected,
        "every message archived exactly once: {stats}"
    );
    let verify = cli.json(&["archive", "verify"]);
    assert!(
        verify["problems"].as_array().unwrap().is_empty()
            && verify["drift"].as_array().unwrap().is_empty(),
        "verify clean after the move: {verify}"
    );
    // The sync that failed on the full disk now brings the late joiners in.
    cli.ok(&["users", "sync", "--credentials", "contoso"]);
    assert!(user_names(&cli).len() >= users_before.len() + 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_does_not_start_below_the_reserve() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((disk, _emu, cli)) = tenant_on_small_disk(tmp.path(), "8m", 1, 3, 1202).await else {
        return;
    };
    let data = cli.data.clone();
    cli.ok(&[
        "profile",
        "create",
        "all",
        "--credentials",
        "contoso",
        "--all",
    ]);
    std::fs::write(
        data.join("settings.toml"),
        "[archive]\nreserve = \"6 MiB\"\nreserve_percent = 100\n",
    )
    .unwrap();
    disk.fill_leaving("ballast", 3 << 20);
    cli.fails(
        &["profile", "run", "all"],
        &["reserve", "free", "settings.toml"],
    );
    assert!(
        !data.join("archive").exists(),
        "nothing is written when a run is refused"
    );
    // With a smaller reserve the same run goes.
    std::fs::write(
        data.join("settings.toml"),
        "[archive]\nreserve = \"1 MiB\"\nreserve_percent = 100\n",
    )
    .unwrap();
    cli.ok(&["profile", "run", "all"]);
    let stats = cli.json(&["archive", "stats"]);
    assert_eq!(stats["reserve_bytes"], 1 << 20, "{stats}");
}
