//! The reference tools we measure against, run on the same corpus in the same run:
//! `notmuch new` (Xapian indexing of a maildir) and `restic backup`
//! (content-addressed, compressed backup). A missing tool is reported, never faked.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// Outcome of one peer tool on the corpus.
#[derive(Debug, Clone)]
pub enum PeerResult {
    /// The tool ran: wall seconds and, for restic, repository bytes.
    Ran {
        /// Wall-clock seconds.
        secs: f64,
        /// Bytes on disk of what the tool wrote (repository or database).
        bytes: u64,
    },
    /// The tool is not installed or failed; the reason says which.
    Missing(String),
}

impl PeerResult {
    /// Seconds, when the tool ran.
    pub fn secs(&self) -> Option<f64> {
        match self {
            PeerResult::Ran { secs, .. } => Some(*secs),
            PeerResult::Missing(_) => None,
        }
    }

    /// Bytes written, when the tool ran.
    pub fn bytes(&self) -> Option<u64> {
        match self {
            PeerResult::Ran { bytes, .. } => Some(*bytes),
            PeerResult::Missing(_) => None,
        }
    }
}

fn tool_present(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
        || Command::new(name)
            .arg("version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

/// Indexes `maildir` with `notmuch new` in a fresh database under `work`.
pub fn notmuch(maildir: &Path, work: &Path) -> PeerResult {
    if !tool_present("notmuch") {
        return PeerResult::Missing("notmuch is not installed (apt-get install notmuch)".into());
    }
    match run_notmuch(maildir, work) {
        Ok(r) => r,
        Err(e) => PeerResult::Missing(format!("notmuch failed: {e:#}")),
    }
}

fn run_notmuch(maildir: &Path, work: &Path) -> anyhow::Result<PeerResult> {
    std::fs::create_dir_all(work)?;
    let config = work.join("notmuch-config");
    std::fs::write(
        &config,
        format!(
            "[database]\npath={}\n[user]\nname=Bench\nprimary_email=bench@example.org\n[new]\ntags=inbox;\n[maildir]\nsynchronize_flags=false\n",
            maildir.display()
        ),
    )?;
    let db = maildir.join(".notmuch");
    if db.exists() {
        std::fs::remove_dir_all(&db)?;
    }
    let start = Instant::now();
    let out = Command::new("notmuch")
        .arg(format!("--config={}", config.display()))
        .arg("new")
        .arg("--quiet")
        .output()
        .context("running notmuch new")?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let bytes = dir_size(&db);
    std::fs::remove_dir_all(&db).ok();
    Ok(PeerResult::Ran { secs, bytes })
}

/// Backs `maildir` up with `restic backup` into a fresh compressed repository under `work`.
pub fn restic(maildir: &Path, work: &Path) -> PeerResult {
    if !tool_present("restic") {
        return PeerResult::Missing("restic is not installed (apt-get install restic)".into());
    }
    match run_restic(maildir, work) {
        Ok(r) => r,
        Err(e) => PeerResult::Missing(format!("restic failed: {e:#}")),
    }
}

fn run_restic(maildir: &Path, work: &Path) -> anyhow::Result<PeerResult> {
    let repo = work.join("restic-repo");
    if repo.exists() {
        std::fs::remove_dir_all(&repo)?;
    }
    let restic = |args: &[&str]| {
        let mut cmd = Command::new("restic");
        cmd.arg("--repo")
            .arg(&repo)
            .arg("--quiet")
            .args(args)
            .env("RESTIC_PASSWORD", "archiver-bench")
            .env("RESTIC_CACHE_DIR", work.join("restic-cache"));
        cmd
    };
    let init = restic(&["init", "--repository-version", "2"])
        .output()
        .context("running restic init")?;
    if !init.status.success() {
        bail!("restic init: {}", String::from_utf8_lossy(&init.stderr));
    }
    let start = Instant::now();
    let out = restic(&["backup", "--compression", "auto"])
        .arg(maildir)
        .output()
        .context("running restic backup")?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("restic backup: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(PeerResult::Ran {
        secs,
        bytes: dir_size(&repo),
    })
}

/// Total size of the regular files below `path`.
pub fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
