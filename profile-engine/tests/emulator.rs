//! Acceptance tests of the engine against the Graph emulator over real HTTP on
//! 127.0.0.1, with the real stack: client-credentials tokens, the Graph mailbox
//! and directory sources, the SQLite user store and the disk archive.
//!
//! The kill-and-resume test runs the engine in a child process (this test binary
//! re-invoked with `PROFILE_ENGINE_CHILD` set), kills it with SIGKILL at random
//! points, and checks that the resumed runs end with every message archived
//! exactly once and a clean `verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;

use archive_store::{ArchiveStore, DiskArchiveStore, SourceRef, StoreOptions};
use directory_sync::{GraphDirectoryOptions, GraphDirectorySource, SqliteUserStore, UserStore};
use m365_auth::{
    AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud, ProviderOptions,
    TokenProvider,
};
use m365_emulator::{Emulator, EmulatorConfig, FaultConfig, UserInfo};
use m365_mailbox::{GraphMailboxOptions, GraphMailboxSource};
use profile_engine::{
    CancellationToken, CheckpointStore, Engine, EngineOptions, MailboxStatus, NoProgress, Profile,
    ProgressEvent, RunHistory, RunStatus, Select, Source,
};
use tokio::io::AsyncBufReadExt;

/// What a process needs to reach the tenant.
#[derive(Clone)]
struct Tenant {
    login: String,
    graph: String,
    tenant: String,
    client_id: String,
    secret: String,
}

impl Tenant {
    fn of(emu: &Emulator) -> Self {
        Self {
            login: emu.login_url().to_string(),
            graph: emu.graph_url().to_string(),
            tenant: emu.tenant_id(),
            client_id: emu.client_id(),
            secret: emu.client_secret(),
        }
    }
}

/// The real stack over a data directory.
struct Stack {
    engine: Engine,
    archive: Arc<DiskArchiveStore>,
    users: Arc<SqliteUserStore>,
}

fn stack(tenant: &Tenant, data: &Path) -> Stack {
    let cloud = Cloud::custom(&tenant.login, &tenant.graph).unwrap();
    let registration = AppRegistration::new(
        &tenant.tenant,
        &tenant.client_id,
        ClientCredential::secret(tenant.secret.clone()),
        cloud,
    )
    .unwrap();
    let tokens: Arc<dyn TokenProvider> =
        Arc::new(ClientCredentialsProvider::new(registration, ProviderOptions::default()).unwrap());
    let graph_root = url::Url::parse(&tenant.graph).unwrap();
    let mail = GraphMailboxSource::new(
        tokens.clone(),
        graph_root.clone(),
        GraphMailboxOptions::default(),
    )
    .unwrap();
    let directory =
        GraphDirectorySource::new(tokens.clone(), graph_root, GraphDirectoryOptions::default())
            .unwrap();
    let users = Arc::new(SqliteUserStore::open(data.join("users.db")).unwrap());
    let archive =
        Arc::new(DiskArchiveStore::open(data.join("archive"), StoreOptions::default()).unwrap());
    let engine = Engine::builder()
        .token_provider(tokens)
        .mailbox_source(Arc::new(mail))
        .directory_source(Arc::new(directory))
        .user_store(users.clone())
        .archive_store(archive.clone())
        .checkpoints(CheckpointStore::new(data.join("checkpoints")))
        .options(EngineOptions {
            lock_dir: Some(data.join("locks")),
            history: Some(RunHistory::new(data.join("history"))),
            ..EngineOptions::default()
        })
        .build()
        .unwrap();
    Stack {
        engine,
        archive,
        users,
    }
}

fn everyone() -> Profile {
    Profile::new(
        "everyone",
        "contoso",
        Source::Multiple {
            select: Select::All,
            users: vec![],
            sync_directory_first: true,
            mailbox_kinds: profile_engine::MailboxKinds::default(),
        },
    )
}

/// Regular readable mailboxes of the tenant.
fn readable(emu: &Emulator) -> Vec<UserInfo> {
    emu.users()
        .into_iter()
        .filter(|u| u.enabled && !u.guest && u.has_mailbox && !u.access_denied && u.mail.is_some())
        .collect()
}

/// Every message of every readable mailbox is in its owner's archive exactly once.
fn assert_archived_exactly_once(emu: &Emulator, stack: &Stack) {
    let stats = stack.archive.stats().unwrap();
    for user in readable(emu) {
        let mail = user.mail.clone().unwrap();
        let local = stack
            .users
            .find_by_address(&mail)
            .unwrap()
            .unwrap_or_else(|| panic!("{mail} not synced"));
        for id in emu.message_ids(&user.upn) {
            let source = SourceRef {
                mailbox: mail.to_ascii_lowercase(),
                message_id: id.clone(),
            };
            assert!(
                stack
                    .archive
                    .find_source(&local.name, &source)
                    .unwrap()
                    .is_some(),
                "{mail}: {id} missing"
            );
        }
        assert_eq!(
            stats.users.get(&local.name).copied().unwrap_or(0),
            emu.message_count(&user.upn) as u64,
            "{mail}: archive entries must equal the mailbox's messages (no duplicates)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_run_rerun_and_delivery_against_the_emulator() {
    let emu = Emulator::start(EmulatorConfig {
        users: 3,
        messages_per_user: 25,
        seed: 7,
        ..Default::default()
    })
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let stack = stack(&Tenant::of(&emu), data.path());
    let report = stack
        .engine
        .run(&everyone(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();

    let users = emu.users();
    let status_of = |u: &UserInfo| {
        let mail = u.mail.clone()?.to_ascii_lowercase();
        report
            .mailboxes
            .iter()
            .find(|m| m.mailbox == mail)
            .map(|m| (m.status, m.error.clone(), m.messages_archived))
    };
    for user in readable(&emu) {
        let (status, error, archived) = status_of(&user).unwrap();
        assert_eq!(status, MailboxStatus::Ok, "{}: {error:?}", user.upn);
        assert_eq!(
            archived,
            emu.message_count(&user.upn) as u64,
            "{}",
            user.upn
        );
    }
    let unlicensed = users
        .iter()
        .find(|u| u.enabled && !u.guest && !u.has_mailbox && u.mail.is_some())
        .unwrap();
    let (status, error, _) = status_of(unlicensed).unwrap();
    assert_eq!(status, MailboxStatus::Skipped);
    assert!(error.unwrap().contains("mailbox"));
    let denied = users.iter().find(|u| u.access_denied).unwrap();
    let (status, error, _) = status_of(denied).unwrap();
    assert_eq!(status, MailboxStatus::Failed);
    assert!(error.is_some());
    assert_eq!(report.status, RunStatus::Partial);
    assert!(report.requests > 0);
    assert_archived_exactly_once(&emu, &stack);

    // The "Test" button: every selected mailbox, readable or why not.
    let test = stack.engine.test(&everyone()).await.unwrap();
    assert!(!test.ok);
    for probe in &test.mailboxes {
        let user = users
            .iter()
            .find(|u| {
                u.mail
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(&probe.mailbox))
            })
            .unwrap();
        let readable = user.has_mailbox && !user.access_denied;
        assert_eq!(
            probe.readable, readable,
            "{}: {:?}",
            probe.mailbox, probe.error
        );
        assert_eq!(probe.error.is_some(), !readable);
    }

    // A rerun with no change downloads nothing: about one request per folder.
    let before = emu.stats().await;
    let again = stack
        .engine
        .run(&everyone(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    let after = emu.stats().await;
    let spent_on = |needle: &str| -> u64 {
        after
            .per_route
            .iter()
            .filter(|(route, _)| route.contains(needle))
            .map(|(route, count)| count - before.per_route.get(route).copied().unwrap_or(0))
            .sum()
    };
    let folders: u64 = again.mailboxes.iter().map(|m| m.folders).sum();
    assert!(folders > 0);
    assert_eq!(
        spent_on("messages/delta"),
        folders,
        "one delta request per folder"
    );
    assert_eq!(spent_on("$value"), 0, "nothing downloaded");
    // Over HTTP: per mailbox one `$batch` for probe and folder tree, and one `$batch`
    // per 20 folders for their first delta pages.
    // (A mailbox that cannot be read costs its probe.)
    let bound: u64 = again
        .mailboxes
        .iter()
        .map(|m| 1 + m.folders.div_ceil(20))
        .sum();
    assert!(
        again.requests <= bound && again.requests < folders,
        "a no-change rerun sent {} requests for {folders} folders (at most {bound} expected)",
        again.requests
    );
    // The directory sync before the run asks again, in one `$batch` per 20, for the
    // kinds it could not read (the mailbox the app may not open refuses those too).
    assert_eq!(
        spent_on("$batch"),
        again.requests + spent_on("mailboxSettings").div_ceil(20),
        "every rerun request is a batch"
    );
    for user in readable(&emu) {
        let mail = user.mail.clone().unwrap().to_ascii_lowercase();
        let folders = again
            .mailboxes
            .iter()
            .find(|m| m.mailbox == mail)
            .unwrap()
            .folders;
        let spent = after.per_mailbox.get(&user.upn).map_or(0, |s| s.requests)
            - before.per_mailbox.get(&user.upn).map_or(0, |s| s.requests);
        // One delta request per folder, plus the probe and the folder tree walk.
        assert!(
            spent <= 2 * folders + 3,
            "{}: {spent} requests for {folders} folders",
            user.upn
        );
    }

    // One delivered message -> exactly one archived.
    let first = &readable(&emu)[0];
    let mime = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: late\r\nMessage-ID: <late@example.com>\r\n\r\nhello\r\n".to_vec();
    let id = emu.deliver(&first.upn, "inbox", mime).unwrap();
    let third = stack
        .engine
        .run(&everyone(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(third.totals.messages_archived, 1);
    assert_archived_exactly_once(&emu, &stack);
    let local = stack
        .users
        .find_by_address(first.mail.as_deref().unwrap())
        .unwrap()
        .unwrap();
    assert!(local.has_archive);
    let source = SourceRef {
        mailbox: first.mail.clone().unwrap().to_ascii_lowercase(),
        message_id: id,
    };
    assert!(
        stack
            .archive
            .find_source(&local.name, &source)
            .unwrap()
            .is_some()
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_throttling_lose_nothing() {
    let faults = FaultConfig {
        status_503: 0.04,
        status_504: 0.02,
        reset: 0.02,
        truncate: 0.02,
        slow_ms: 0,
    };
    let emu = Emulator::start(EmulatorConfig {
        users: 3,
        messages_per_user: 30,
        seed: 11,
        time_scale: 100.0,
        faults,
        special_users: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let stack = stack(&Tenant::of(&emu), data.path());
    let report = stack
        .engine
        .run(&everyone(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    assert!(emu.stats().await.faults_total > 0, "faults were injected");
    assert!(report.retries > 0);
    assert_archived_exactly_once(&emu, &stack);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_mailbox_into_another_users_archive() {
    let emu = Emulator::start(EmulatorConfig {
        users: 2,
        messages_per_user: 10,
        seed: 3,
        special_users: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let stack = stack(&Tenant::of(&emu), data.path());
    // Users come from a sync; the profile itself does not sync.
    let mut sync_only = everyone();
    sync_only.source = Source::Multiple {
        select: Select::Only,
        users: vec!["nobody-at-all".into()],
        sync_directory_first: true,
        mailbox_kinds: profile_engine::MailboxKinds::default(),
    };
    stack
        .engine
        .run(&sync_only, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();

    let users = readable(&emu);
    let (source_user, target_user) = (&users[0], &users[1]);
    let target = stack
        .users
        .find_by_address(target_user.mail.as_deref().unwrap())
        .unwrap()
        .unwrap();
    let mailbox = source_user.mail.clone().unwrap().to_ascii_lowercase();
    let profile = Profile::new(
        "shared",
        "contoso",
        Source::Single {
            mailbox: mailbox.clone(),
            target_user: target.name.clone(),
        },
    );
    let report = stack
        .engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok);
    assert_eq!(
        report.totals.messages_archived,
        emu.message_count(&source_user.upn) as u64
    );
    for id in emu.message_ids(&source_user.upn) {
        let source = SourceRef {
            mailbox: mailbox.clone(),
            message_id: id,
        };
        assert!(
            stack
                .archive
                .find_source(&target.name, &source)
                .unwrap()
                .is_some()
        );
    }
    emu.shutdown().await;
}

const CHILD_ENV: &str = "PROFILE_ENGINE_CHILD";

/// The child side of the kill-and-resume test: runs the profile, printing a line
/// per archived message (the parent kills it after a random number of lines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('\u{1f}').collect();
    let tenant = Tenant {
        login: parts[0].into(),
        graph: parts[1].into(),
        tenant: parts[2].into(),
        client_id: parts[3].into(),
        secret: parts[4].into(),
    };
    let stack = stack(&tenant, Path::new(parts[5]));
    let progress = |e: ProgressEvent| {
        if let ProgressEvent::MessageArchived { .. } = e {
            println!("archived");
        }
    };
    let report = stack
        .engine
        .run(&everyone(), &CancellationToken::new(), &progress)
        .await
        .unwrap();
    println!("done {}", serde_json::to_string(&report.status).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_resume_without_loss_or_duplicates() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    // Enough mail that twelve children killed after at most a dozen messages each
    // (plus those in hand) cannot finish the tenant.
    let emu = Emulator::start(EmulatorConfig {
        users: 3,
        messages_per_user: 100,
        seed: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let t = Tenant::of(&emu);
    let spec = [
        t.login.as_str(),
        &t.graph,
        &t.tenant,
        &t.client_id,
        &t.secret,
        &data.path().display().to_string(),
    ]
    .join("\u{1f}");
    let exe = std::env::current_exe().unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("kill points seed {seed}");
    let mut kills = 0;
    for _ in 0..12 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = (seed % 12) as usize;
        let mut child = tokio::process::Command::new(&exe)
            .args([
                "--exact",
                "child_process_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &spec)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut archived = 0;
        let mut finished = false;
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "archived" {
                archived += 1;
                if archived > kill_after {
                    break;
                }
            } else if line.starts_with("done") {
                finished = true;
            }
        }
        if !finished {
            child.start_kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().await.unwrap();
    }
    assert!(kills >= 10, "only {kills} runs were killed");

    // Resume to the end in this process, then check.
    let stack = stack(&t, data.path());
    let report = stack
        .engine
        .run(&everyone(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_ne!(report.status, RunStatus::Cancelled);
    assert_archived_exactly_once(&emu, &stack);
    let verify = stack.archive.verify().unwrap();
    assert!(verify.is_clean(), "{verify:?}");
    emu.shutdown().await;
}

/// Every message of a mailbox as Graph lists it: id -> (folder well-known name or
/// path, summary).
async fn listing(
    tenant: &Tenant,
    mailbox: &str,
) -> std::collections::BTreeMap<String, (String, m365_mailbox::MessageSummary)> {
    use futures::StreamExt;
    use m365_mailbox::{DeltaEvent, MailboxSource};
    let cloud = Cloud::custom(&tenant.login, &tenant.graph).unwrap();
    let registration = AppRegistration::new(
        &tenant.tenant,
        &tenant.client_id,
        ClientCredential::secret(tenant.secret.clone()),
        cloud,
    )
    .unwrap();
    let tokens: Arc<dyn TokenProvider> =
        Arc::new(ClientCredentialsProvider::new(registration, ProviderOptions::default()).unwrap());
    let source = GraphMailboxSource::new(
        tokens,
        url::Url::parse(&tenant.graph).unwrap(),
        GraphMailboxOptions::default(),
    )
    .unwrap();
    let mut all = std::collections::BTreeMap::new();
    for folder in source.folders(mailbox).await.unwrap() {
        if folder.search_folder {
            continue;
        }
        let name = folder
            .well_known_name
            .clone()
            .unwrap_or(folder.path.clone());
        let mut changes = source.changes(mailbox, &folder.id, None);
        while let Some(event) = changes.next().await {
            if let DeltaEvent::Upsert(summary) = event.unwrap() {
                all.insert(summary.id.clone(), (name.clone(), summary));
            }
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_moves_exactly_the_old_read_archived_messages() {
    let emu = Emulator::start(EmulatorConfig {
        users: 1,
        messages_per_user: 60,
        seed: 21,
        special_users: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let tenant = Tenant::of(&emu);
    let user = readable(&emu).remove(0);
    let mailbox = user.mail.clone().unwrap().to_ascii_lowercase();
    let before = listing(&tenant, &mailbox).await;
    let cutoff = chrono::Utc::now() - chrono::Duration::days(30);
    let is_old = |s: &m365_mailbox::MessageSummary| s.received.is_some_and(|r| r <= cutoff);
    let expected: Vec<String> = before
        .iter()
        .filter(|(_, (folder, s))| folder != "deleteditems" && is_old(s) && s.is_read)
        .map(|(id, _)| id.clone())
        .collect();
    let old_unread = before
        .values()
        .filter(|(f, s)| f != "deleteditems" && is_old(s) && !s.is_read)
        .count();
    assert!(
        !expected.is_empty() && old_unread > 0,
        "the tenant has old read and old unread mail"
    );

    let data = tempfile::tempdir().unwrap();
    let stack = stack(&tenant, data.path());
    let mut profile = everyone();
    profile.deletion.mode = profile_engine::DeletionMode::MoveToDeletedItems;
    profile.deletion.after_days = 30;
    profile.deletion.keep_unread = true;
    let report = stack
        .engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    assert_eq!(report.totals.deleted, expected.len() as u64);

    let after = listing(&tenant, &mailbox).await;
    let local = stack.users.find_by_address(&mailbox).unwrap().unwrap();
    for (id, (folder, summary)) in &before {
        let (now_in, _) = after.get(id).unwrap_or_else(|| panic!("{id} vanished"));
        let moved = folder != "deleteditems" && now_in == "deleteditems";
        assert_eq!(
            moved,
            expected.contains(id),
            "{id} ({folder} -> {now_in}, read {})",
            summary.is_read
        );
        if moved {
            let source = SourceRef {
                mailbox: mailbox.clone(),
                message_id: id.clone(),
            };
            let archived = stack
                .archive
                .find_source(&local.name, &source)
                .unwrap()
                .expect("moved only once archived");
            assert!(stack.archive.verify_message(&archived).unwrap());
        }
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_rules_and_age_filter_against_the_emulator() {
    let emu = Emulator::start(EmulatorConfig {
        users: 1,
        messages_per_user: 60,
        seed: 9,
        special_users: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let tenant = Tenant::of(&emu);
    let mailbox = readable(&emu).remove(0).mail.unwrap().to_ascii_lowercase();
    let all = listing(&tenant, &mailbox).await;
    let cutoff = chrono::Utc::now() - chrono::Duration::days(20);
    let mut expected: Vec<String> = all
        .iter()
        .filter(|(_, (folder, s))| folder == "inbox" && s.received.is_some_and(|r| r <= cutoff))
        .map(|(id, _)| id.clone())
        .collect();
    expected.sort();
    assert!(!expected.is_empty());
    assert!(
        all.values().any(|(f, _)| f != "inbox"),
        "other folders hold mail too"
    );

    let data = tempfile::tempdir().unwrap();
    let stack = stack(&tenant, data.path());
    let mut profile = everyone();
    profile.folders.include = vec!["inbox".into()];
    profile.folders.include_subfolders = false;
    profile.filter.older_than_days = 20;
    let report = stack
        .engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok);
    let local = stack.users.find_by_address(&mailbox).unwrap().unwrap();
    let mut archived: Vec<String> = all
        .keys()
        .filter(|id| {
            let source = SourceRef {
                mailbox: mailbox.clone(),
                message_id: (*id).clone(),
            };
            stack
                .archive
                .find_source(&local.name, &source)
                .unwrap()
                .is_some()
        })
        .cloned()
        .collect();
    archived.sort();
    assert_eq!(archived, expected);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_fail_the_run_once_with_the_aadsts_advice() {
    let emu = Emulator::start(EmulatorConfig {
        users: 1,
        messages_per_user: 1,
        special_users: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut tenant = Tenant::of(&emu);
    tenant.secret = emu.expired_client_secret();
    let data = tempfile::tempdir().unwrap();
    let stack = stack(&tenant, data.path());
    let err = stack
        .engine
        .run(&everyone(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, profile_engine::EngineError::Auth(_)), "{err}");
    assert!(err.to_string().contains("AADSTS7000222"), "{err}");
    assert!(
        !err.to_string().contains(&tenant.secret),
        "the secret never appears"
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_is_spooled_archived_and_byte_exact() {
    let size = 12 << 20;
    let emu = Emulator::start(EmulatorConfig {
        users: 1,
        messages_per_user: 3,
        seed: 4,
        special_users: false,
        large_message_bytes: Some(size),
        ..Default::default()
    })
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let stack = stack(&Tenant::of(&emu), data.path());
    let report = stack
        .engine
        .run(&everyone(), &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    assert!(report.totals.bytes >= size);
    assert_archived_exactly_once(&emu, &stack);
    let user = readable(&emu).remove(0);
    let mail = user.mail.clone().unwrap().to_ascii_lowercase();
    let local = stack.users.find_by_address(&mail).unwrap().unwrap();
    let largest = emu
        .message_ids(&user.upn)
        .into_iter()
        .max_by_key(|id| emu.message_mime(&user.upn, id).map_or(0, |m| m.len()))
        .unwrap();
    let source = SourceRef {
        mailbox: mail,
        message_id: largest.clone(),
    };
    let stored = stack
        .archive
        .find_source(&local.name, &source)
        .unwrap()
        .unwrap();
    assert_eq!(
        stack.archive.read_message(&stored).unwrap(),
        emu.message_mime(&user.upn, &largest).unwrap()
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_and_shared_mailbox_is_archived_with_its_hidden_mail_and_rooms_are_skipped() {
    use m365_emulator::MailboxPurpose;
    let emu = Emulator::start(EmulatorConfig {
        users: 6,
        messages_per_user: 10,
        seed: 9,
        special_users: false,
        mailbox_kinds: true,
        hidden_mail: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let stack = stack(&Tenant::of(&emu), data.path());
    let mut profile = everyone();
    profile.folders.archive_mailbox = true;
    let report = stack
        .engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    // Items Graph cannot convert make the run partial (the default), nothing else does.
    assert_eq!(report.status, RunStatus::Partial, "{report:?}");
    let stats = stack.archive.stats().unwrap();
    let (mut shared, mut with_archive, mut with_auxiliary) = (0, 0, 0);
    for user in emu.users() {
        let mail = user.mail.clone().unwrap().to_ascii_lowercase();
        let archived = report.mailboxes.iter().find(|m| m.mailbox == mail);
        let local = stack.users.find_by_address(&mail).unwrap();
        match user.purpose {
            MailboxPurpose::Room | MailboxPurpose::Equipment => {
                assert!(archived.is_none(), "{mail} archived");
                assert!(local.is_none(), "{mail} synced");
            }
            purpose => {
                let expected = if purpose == MailboxPurpose::Shared {
                    shared += 1;
                    profile_engine::MailboxKind::Shared
                } else {
                    profile_engine::MailboxKind::User
                };
                let local = local.unwrap_or_else(|| panic!("{mail} not synced"));
                assert_eq!(local.mailbox_kind(), expected, "{mail}");
                let archived = archived.unwrap_or_else(|| panic!("{mail} not archived"));
                let unconvertible = emu.unconvertible_items(&user.upn);
                let mut failed: Vec<&str> =
                    archived.failures.iter().map(|f| f.id.as_str()).collect();
                failed.sort_unstable();
                let mut expected_failed: Vec<&str> =
                    unconvertible.iter().map(|u| u.id.as_str()).collect();
                expected_failed.sort_unstable();
                assert_eq!(failed, expected_failed, "{mail}");
                let in_view = emu.message_count(&user.upn) - unconvertible.len();
                let deletions = emu
                    .recoverable_counts(&user.upn)
                    .get("Deletions")
                    .copied()
                    .unwrap_or(0);
                let online = emu.archive_message_count(&user.upn);
                let count = (in_view + deletions + online) as u64;
                assert!(in_view > 0 && deletions > 0, "{mail}");
                assert_eq!(archived.messages_archived, count, "{mail}: {archived:?}");
                assert_eq!(stats.users.get(&local.name).copied(), Some(count), "{mail}");
                let listing = stack.archive.list(&local.name, None).unwrap();
                let under = |prefix: &str| {
                    listing
                        .iter()
                        .filter(|e| e.folder.starts_with(prefix))
                        .count()
                };
                assert_eq!(under("Recoverable Items/Deletions"), deletions, "{mail}");
                assert_eq!(under("Online Archive/"), online, "{mail}");
                with_archive += usize::from(online > 0);
                with_auxiliary += usize::from(!emu.auxiliary_archive_ids(&user.upn).is_empty());
            }
        }
    }
    assert_eq!(
        shared, 3,
        "info@, support@ and a departed employee's mailbox"
    );
    assert!(
        with_archive >= 2 && with_auxiliary >= 1,
        "{with_archive} online archives, {with_auxiliary} auto-expanded"
    );
}
