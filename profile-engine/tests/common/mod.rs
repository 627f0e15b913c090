//! Helpers for the engine's tests over the crates' in-memory stores: local users
//! added in one line, the source ids of an archive, and small unique messages.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use archive_store::MemoryArchiveStore;
use chrono::{DateTime, Utc};
use directory_sync::{LocalUser, MemoryUserStore, Role, UserOrigin, UserStore};
use m365_mailbox::MailboxSource;
use profile_engine::{
    CancellationToken, CheckpointStore, Engine, EngineOptions, NoProgress, Profile, RunReport,
    Select, Source,
};

/// One run of `profile` by an engine over these seams, checkpoints under `dir`.
pub async fn run_once(
    mail: Arc<dyn MailboxSource>,
    users: Arc<MemoryUserStore>,
    archive: Arc<MemoryArchiveStore>,
    dir: &Path,
    profile: &Profile,
) -> RunReport {
    run_at(
        mail,
        users,
        archive,
        &dir.join("checkpoints"),
        profile,
        None,
    )
    .await
}

/// One run of `profile` at `now` (`None`: the clock), checkpoints in `checkpoints`
/// (a fresh directory: a full resync).
pub async fn run_at(
    mail: Arc<dyn MailboxSource>,
    users: Arc<MemoryUserStore>,
    archive: Arc<MemoryArchiveStore>,
    checkpoints: &Path,
    profile: &Profile,
    now: Option<DateTime<Utc>>,
) -> RunReport {
    Engine::builder()
        .mailbox_source(mail)
        .user_store(users)
        .archive_store(archive)
        .checkpoints(CheckpointStore::new(checkpoints.to_path_buf()))
        .options(EngineOptions {
            now,
            ..EngineOptions::default()
        })
        .build()
        .unwrap()
        .run(profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap()
}

/// A profile archiving every mailbox of the tenant.
pub fn all_mailboxes(name: &str) -> Profile {
    Profile::new(
        name,
        "contoso",
        Source::Multiple {
            select: Select::All,
            users: vec![],
            sync_directory_first: false,
            mailbox_kinds: profile_engine::MailboxKinds::default(),
        },
    )
}

/// Archive entries of `user` per archive folder.
pub fn entries_by_folder(archive: &MemoryArchiveStore, user: &str) -> BTreeMap<String, usize> {
    let mut by_folder = BTreeMap::new();
    for (folder, _) in archive.list(user) {
        *by_folder.entry(folder).or_default() += 1;
    }
    by_folder
}

/// One-line access to the local users of a test.
pub trait Users {
    /// Adds a manual user.
    fn add(&self, name: &str, email: Option<&str>, enabled: bool);
    /// The user, which must exist.
    fn get_user(&self, name: &str) -> LocalUser;
}

impl Users for MemoryUserStore {
    fn add(&self, name: &str, email: Option<&str>, enabled: bool) {
        self.put(&LocalUser {
            name: name.to_owned(),
            display_name: None,
            email: email.map(str::to_ascii_lowercase),
            aliases: Vec::new(),
            origin: UserOrigin::Manual,
            enabled,
            role: Role::User,
            has_archive: false,
            kind: None,
        })
        .unwrap();
    }

    fn get_user(&self, name: &str) -> LocalUser {
        self.get(name).unwrap().unwrap()
    }
}

/// The mailbox message ids recorded as sources in a user's archive, sorted.
pub trait Archived {
    /// The ids.
    fn archived(&self, user: &str) -> Vec<String>;
}

impl Archived for MemoryArchiveStore {
    fn archived(&self, user: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .sources(user)
            .into_iter()
            .map(|s| s.message_id)
            .collect();
        ids.sort();
        ids
    }
}

/// A small unique RFC 822 message.
pub fn mime(tag: &str) -> Vec<u8> {
    format!(
        "From: sender@example.com\r\nTo: someone@contoso.com\r\nSubject: {tag}\r\nMessage-ID: <{tag}@example.com>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nBody of {tag}\r\n"
    )
    .into_bytes()
}
