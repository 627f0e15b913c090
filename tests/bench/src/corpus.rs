//! The benchmark corpus: every message of a generated tenant (realistic sizes, the
//! same mail delivered to several recipients, shared attachments), written once as a
//! maildir so that our import, notmuch and restic all read the very same files.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use m365_emulator::{Emulator, EmulatorConfig};

/// A corpus on disk.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// The maildir root (holding `cur/`, `new/`, `tmp/`).
    pub maildir: PathBuf,
    /// Number of message files.
    pub messages: usize,
    /// Sum of their sizes.
    pub bytes: u64,
}

/// Generates `users × per_user` messages with the emulator's tenant generator (seeded,
/// so every run measures the same bytes) and writes them under `dir/maildir`.
pub async fn generate(
    dir: &Path,
    users: usize,
    per_user: usize,
    seed: u64,
) -> anyhow::Result<Corpus> {
    let emulator = Emulator::start(EmulatorConfig {
        users,
        messages_per_user: per_user,
        seed,
        throttling: false,
        special_users: false,
        ..Default::default()
    })
    .await
    .context("starting the emulator that generates the corpus")?;
    let maildir = dir.join("maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub))?;
    }
    let mut messages = 0usize;
    let mut bytes = 0u64;
    for user in emulator.users() {
        for id in emulator.message_ids(&user.upn) {
            let Some(mime) = emulator.message_mime(&user.upn, &id) else {
                continue;
            };
            let path = maildir.join("cur").join(format!("{messages:07}.eml"));
            let mut file = std::fs::File::create(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            file.write_all(&mime)?;
            messages += 1;
            bytes += mime.len() as u64;
        }
    }
    emulator.shutdown().await;
    Ok(Corpus {
        maildir,
        messages,
        bytes,
    })
}
