//! Helpers for the command-line tests: run the real binary, check every output for
//! secrets and panics, and snapshot a data directory to prove nothing was written.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use m365_emulator::Emulator;
use serde_json::Value;

/// What one command printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The `m365-archiver` binary against one data directory, with the secrets that must
/// never appear in any of its output.
pub struct Archiver {
    pub data: PathBuf,
    pub env: Vec<(String, String)>,
    pub secrets: Vec<String>,
}

impl Archiver {
    pub fn new(data: &Path, secrets: Vec<String>) -> Self {
        Self {
            data: data.to_path_buf(),
            env: Vec::new(),
            secrets,
        }
    }

    /// Runs `m365-archiver --data-dir DATA ARGS` with `RUST_LOG=trace`; asserts that no
    /// secret and no panic shows in its output.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_m365-archiver"));
        cmd.arg("--data-dir").arg(&self.data).args(args);
        cmd.env("RUST_LOG", "trace")
            .env_remove("M365_ARCHIVER_DATA");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("spawn m365-archiver");
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        for secret in &self.secrets {
            assert!(
                !run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()),
                "a secret appeared in the output of {args:?}"
            );
        }
        // A Rust panic prints "panicked at"; an error text of a library (tantivy's
        // "... encountered an error or panicked.") is not one.
        assert!(
            !run.stderr.contains("panicked at "),
            "{args:?} panicked:\n{}",
            tail(&run.stderr)
        );
        run
    }

    /// Runs and requires exit 0.
    pub fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "{args:?} failed:\n{}", tail(&run.stderr));
        run
    }

    /// Runs with `--json`, requires exit 0 and one JSON document on stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let run = self.ok(&all);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no single JSON document ({e}):\n{}",
                run.stdout
            )
        })
    }

    /// Runs and requires exit 1 with an error line naming every `culprits` entry.
    pub fn fails(&self, args: &[&str], culprits: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(
            run.code,
            1,
            "{args:?} should fail with 1:\n{}",
            tail(&run.stderr)
        );
        let error = error_line(&run.stderr);
        for culprit in culprits {
            assert!(
                error.contains(culprit),
                "the error of {args:?} does not name {culprit:?}: {error}"
            );
        }
        run
    }
}

/// A data directory under `root` with user alice, whose archive holds one imported
/// message per subject (from bob, body `Text N.`).
pub fn with_mail(root: &Path, subjects: &[&str]) -> Archiver {
    let cli = Archiver::new(&root.join("data"), Vec::new());
    cli.ok(&["users", "add", "alice", "--email", "alice@example.com"]);
    let mail = root.join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    for (i, subject) in subjects.iter().enumerate() {
        std::fs::write(
            mail.join(format!("{i}.eml")),
            format!("From: bob@example.com\r\nSubject: {subject}\r\n\r\nText {i}.\r\n"),
        )
        .unwrap();
    }
    cli.ok(&[
        "archive",
        "import",
        "--user",
        "alice",
        mail.to_str().unwrap(),
    ]);
    cli
}

/// The action of every event `audit list` shows, in order.
pub fn audit_actions(cli: &Archiver) -> Vec<String> {
    let events = cli.json(&["audit", "list"]);
    events
        .as_array()
        .expect("audit list prints an array")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The `error: ...` lines of stderr (the log lines before it are not the message).
pub fn error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.starts_with("error: "))
        .unwrap_or(0);
    lines[start..].join("\n")
}

/// The last lines of a long output.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Every file and directory under `root` with its bytes (directories map to `None`).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut map = BTreeMap::new();
    fn walk(dir: &Path, root: &Path, map: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                map.insert(rel, None);
                walk(&path, root, map);
            } else {
                map.insert(rel, Some(std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    walk(root, root, &mut map);
    map
}

/// Writes the emulator's certificate and key to `dir`, returning their paths.
pub fn write_pems(emu: &Emulator, dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("app-cert.pem");
    let key = dir.join("app-key.pem");
    std::fs::write(&cert, emu.certificate_pem()).unwrap();
    std::fs::write(&key, emu.private_key_pem()).unwrap();
    (cert, key)
}

/// `credentials add NAME` arguments for the emulator's custom cloud (without the secret part).
pub fn custom_cloud_args(emu: &Emulator, name: &str) -> Vec<String> {
    vec![
        "credentials".into(),
        "add".into(),
        name.into(),
        "--tenant".into(),
        emu.tenant_id(),
        "--client-id".into(),
        emu.client_id(),
        "--cloud".into(),
        "custom".into(),
        "--login-url".into(),
        emu.login_url().to_string(),
        "--graph-url".into(),
        emu.graph_url().to_string(),
    ]
}

/// Borrows a `Vec<String>` as `&[&str]`.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
