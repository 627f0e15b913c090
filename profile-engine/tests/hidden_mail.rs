//! The engine and the mail a mailbox hides, against the Graph emulator over real HTTP
//! on 127.0.0.1 (client-credentials tokens, the Graph mailbox source; in-memory users
//! and archive): Recoverable Items' Deletions archived, a message soft-deleted between
//! two runs archived after the second, a moved one stored and downloaded once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use archive_store::MemoryArchiveStore;
use common::{Users, entries_by_folder, mime, run_once};
use directory_sync::MemoryUserStore;
use m365_auth::{
    AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud, ProviderOptions,
};
use m365_emulator::{Emulator, EmulatorConfig, EmulatorStats};
use m365_mailbox::{DeleteMode, GraphMailboxOptions, GraphMailboxSource, MailboxSource};
use profile_engine::{Profile, RunReport, RunStatus, Source};

/// An emulated tenant, a Graph source for it and an engine archiving into memory.
struct Setup {
    emu: Emulator,
    source: Arc<GraphMailboxSource>,
    users: Arc<MemoryUserStore>,
    archive: Arc<MemoryArchiveStore>,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new(config: EmulatorConfig) -> Self {
        let emu = Emulator::start(config).await.unwrap();
        let cloud = Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str()).unwrap();
        let registration = AppRegistration::new(
            &emu.tenant_id(),
            &emu.client_id(),
            ClientCredential::secret(emu.client_secret()),
            cloud,
        )
        .unwrap();
        let tokens = Arc::new(
            ClientCredentialsProvider::new(registration, ProviderOptions::default()).unwrap(),
        );
        let source = Arc::new(
            GraphMailboxSource::new(tokens, emu.graph_url(), GraphMailboxOptions::default())
                .unwrap(),
        );
        Self {
            emu,
            source,
            users: Arc::new(MemoryUserStore::new()),
            archive: Arc::new(MemoryArchiveStore::new()),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// UPNs of the regular mailboxes the app may read.
    fn readable(&self) -> Vec<String> {
        self.emu
            .users()
            .into_iter()
            .filter(|u| u.enabled && !u.guest && u.has_mailbox && !u.access_denied)
            .map(|u| u.upn)
            .collect()
    }

    async fn run(&self, profile: &Profile) -> RunReport {
        let (users, archive) = (self.users.clone(), self.archive.clone());
        run_once(
            self.source.clone(),
            users,
            archive,
            self.dir.path(),
            profile,
        )
        .await
    }

    /// Archive entries of `user` per archive folder.
    fn entries(&self, user: &str) -> BTreeMap<String, usize> {
        entries_by_folder(&self.archive, user)
    }
}

/// Requests between two snapshots on the routes whose name contains `needle`.
fn spent_on(before: &EmulatorStats, after: &EmulatorStats, needle: &str) -> u64 {
    after
        .per_route
        .iter()
        .filter(|(route, _)| route.contains(needle))
        .map(|(route, count)| count - before.per_route.get(route).copied().unwrap_or(0))
        .sum()
}

fn single(upn: &str) -> Profile {
    Profile::new(
        "one",
        "contoso",
        Source::Single {
            mailbox: upn.to_owned(),
            target_user: "owner".into(),
        },
    )
}

#[tokio::test]
async fn soft_deleted_mail_is_archived_after_the_next_run_and_a_moved_message_only_once() {
    let setup = Setup::new(EmulatorConfig {
        users: 2,
        messages_per_user: 8,
        seed: 14,
        ..EmulatorConfig::default()
    })
    .await;
    let upn = setup.readable().remove(0);
    setup.users.add("owner", Some(&upn), true);
    let profile = single(&upn);

    let first = setup.run(&profile).await;
    assert_eq!(first.status, RunStatus::Ok, "{first:?}");
    let in_view = setup.emu.message_count(&upn) as u64;
    assert_eq!(first.mailboxes[0].messages_archived, in_view);
    let entries = setup.entries("owner");
    let archived: usize = entries.values().sum();
    assert_eq!(archived as u64, in_view);

    // Between the runs: an archived message and a new one are Shift+Deleted.
    let moved = setup.emu.message_ids(&upn).remove(0);
    let fresh = setup
        .emu
        .deliver(&upn, "inbox", mime("shift-deleted-before-any-run"))
        .unwrap();
    for id in [&moved, &fresh] {
        setup
            .source
            .delete(&upn, id, DeleteMode::SoftDelete)
            .await
            .unwrap();
    }

    let before = setup.emu.stats().await;
    let second = setup.run(&profile).await;
    let after = setup.emu.stats().await;
    assert_eq!(second.status, RunStatus::Ok, "{second:?}");
    assert_eq!(second.mailboxes[0].messages_archived, 1, "{second:?}");
    assert_eq!(spent_on(&before, &after, "$value"), 1, "downloaded once");
    let mut expected = entries.clone();
    *expected
        .entry("Recoverable Items/Deletions".to_owned())
        .or_default() += 1;
    assert_eq!(setup.entries("owner"), expected, "stored once");
}

#[tokio::test]
async fn a_mailbox_is_archived_with_its_deletions_and_its_online_archive_and_unconvertible_items_are_listed_and_retried()
 {
    let setup = Setup::new(EmulatorConfig {
        users: 3,
        messages_per_user: 12,
        seed: 31,
        hidden_mail: true,
        ..EmulatorConfig::default()
    })
    .await;
    let upn = setup.readable().remove(0);
    assert!(
        !setup.emu.auxiliary_archive_ids(&upn).is_empty(),
        "the first user's archive is auto-expanded"
    );
    setup.users.add("owner", Some(&upn), true);
    let mut profile = single(&upn);
    profile.folders.archive_mailbox = true;

    let first = setup.run(&profile).await;
    let report = &first.mailboxes[0];
    let unconvertible = setup.emu.unconvertible_items(&upn);
    assert!(!unconvertible.is_empty());
    assert_eq!(first.status, RunStatus::Partial, "{first:?}");
    let mut listed: Vec<&str> = report.failures.iter().map(|f| f.id.as_str()).collect();
    listed.sort_unstable();
    let mut expected_ids: Vec<&str> = unconvertible.iter().map(|u| u.id.as_str()).collect();
    expected_ids.sort_unstable();
    assert_eq!(listed, expected_ids, "{report:?}");
    assert!(
        report
            .failures
            .iter()
            .all(|f| f.attempts == 1 && !f.given_up)
    );

    let entries = setup.entries("owner");
    let in_folder = |prefix: &str| -> usize {
        entries
            .iter()
            .filter(|(folder, _)| folder.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    };
    let deletions = setup.emu.recoverable_counts(&upn)["Deletions"];
    assert!(deletions > 0);
    assert_eq!(in_folder("Recoverable Items/Deletions"), deletions);
    assert_eq!(
        in_folder("Recoverable Items/Purges"),
        0,
        "only Deletions by default"
    );
    let archived_online = setup.emu.archive_message_count(&upn);
    assert!(archived_online > 0);
    assert_eq!(in_folder("Online Archive/"), archived_online);
    let total: usize = entries.values().sum();
    assert_eq!(
        total,
        setup.emu.message_count(&upn) - unconvertible.len() + deletions + archived_online,
        "{entries:?}"
    );

    // A rerun asks for the unconvertible items again, and for nothing else.
    let before = setup.emu.stats().await;
    let second = setup.run(&profile).await;
    let after = setup.emu.stats().await;
    let again = &second.mailboxes[0];
    assert_eq!(again.messages_archived, 0, "{second:?}");
    assert_eq!(
        spent_on(&before, &after, "$value"),
        unconvertible.len() as u64
    );
    assert!(again.failures.iter().all(|f| f.attempts == 2), "{again:?}");
    assert_eq!(setup.entries("owner"), entries);
}
