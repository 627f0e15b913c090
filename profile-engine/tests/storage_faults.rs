//! A whole profile run against the emulator whose archive fails one storage
//! operation: for every N, the Nth write or fsync of the archive fails (disk full,
//! I/O error, short write). Each time the run stops cleanly with the storage error
//! in its report, the archive reopens with verify clean, and a rerun completes with
//! every message of the mailbox archived exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use archive_store::io::{Fault, FaultyIo, StoreIo};
use archive_store::{ArchiveStore, DiskArchiveStore, StoreOptions};
use directory_sync::{LocalUser, MemoryUserStore, Role, UserOrigin, UserStore};
use m365_auth::{
    AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud, ProviderOptions,
    TokenProvider,
};
use m365_emulator::{Emulator, EmulatorConfig};
use m365_mailbox::{GraphMailboxOptions, GraphMailboxSource, MailboxSource};
use profile_engine::{
    CancellationToken, CheckpointStore, Engine, NoProgress, Profile, RunReport, RunStatus, Source,
};

struct Tenant {
    tokens: Arc<dyn TokenProvider>,
    mail: Arc<dyn MailboxSource>,
    mailbox: String,
    expected: usize,
}

async fn tenant(emu: &Emulator) -> Tenant {
    let cloud = Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str()).unwrap();
    let registration = AppRegistration::new(
        &emu.tenant_id(),
        &emu.client_id(),
        ClientCredential::secret(emu.client_secret()),
        cloud,
    )
    .unwrap();
    let tokens: Arc<dyn TokenProvider> =
        Arc::new(ClientCredentialsProvider::new(registration, ProviderOptions::default()).unwrap());
    let mail = Arc::new(
        GraphMailboxSource::new(
            tokens.clone(),
            emu.graph_url(),
            GraphMailboxOptions::default(),
        )
        .unwrap(),
    );
    let user = emu
        .users()
        .into_iter()
        .find(|u| u.enabled && u.has_mailbox && !u.access_denied && u.mail.is_some())
        .unwrap();
    Tenant {
        tokens,
        mail,
        expected: emu.message_count(&user.upn),
        mailbox: user.mail.unwrap(),
    }
}

fn owner() -> LocalUser {
    LocalUser {
        name: "owner".into(),
        display_name: None,
        email: Some("owner@archive.example".into()),
        aliases: vec![],
        origin: UserOrigin::Manual,
        enabled: true,
        role: Role::User,
        has_archive: false,
        kind: None,
    }
}

/// One run of the single-mailbox profile over the archive in `data` with `io`.
async fn run(
    tenant: &Tenant,
    users: &Arc<MemoryUserStore>,
    data: &Path,
    io: Option<Arc<dyn StoreIo>>,
) -> Option<(RunReport, Arc<DiskArchiveStore>)> {
    let options = StoreOptions {
        io,
        ..StoreOptions::default()
    };
    // A failure while the archive is created is a clean error of `open`.
    let archive = Arc::new(DiskArchiveStore::open(data.join("archive"), options).ok()?);
    let engine = Engine::builder()
        .token_provider(tenant.tokens.clone())
        .mailbox_source(tenant.mail.clone())
        .user_store(users.clone())
        .archive_store(archive.clone())
        .checkpoints(CheckpointStore::new(data.join("checkpoints")))
        .build()
        .unwrap();
    let profile = Profile::new(
        "one",
        "contoso",
        Source::Single {
            mailbox: tenant.mailbox.clone(),
            target_user: "owner".into(),
        },
    );
    let report = engine
        .run(&profile, &CancellationToken::new(), &NoProgress)
        .await
        .unwrap();
    Some((report, archive))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_write_of_a_run_stops_it_cleanly_and_a_rerun_completes() {
    let emu = Emulator::start(EmulatorConfig {
        users: 1,
        messages_per_user: 12,
        seed: 1203,
        special_users: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let tenant = tenant(&emu).await;

    // A clean run tells how many storage operations a whole run performs.
    let clean = tempfile::tempdir().unwrap();
    let users = Arc::new(MemoryUserStore::new());
    users.put(&owner()).unwrap();
    let counter = Arc::new(FaultyIo::counting());
    let (report, archive) = run(&tenant, &users, clean.path(), Some(counter.clone()))
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    assert_eq!(archive.stats().unwrap().messages, tenant.expected as u64);
    drop(archive);
    let total = counter.ops();
    assert!(total > 10, "a run performs storage operations: {total}");

    let faults = [Fault::DiskFull, Fault::Eio, Fault::ShortWrite];
    let mut fired = 0;
    for n in 1..=total {
        let fault = faults[(n % 3) as usize];
        let dir = tempfile::tempdir().unwrap();
        let users = Arc::new(MemoryUserStore::new());
        users.put(&owner()).unwrap();
        let io = Arc::new(FaultyIo::failing(n, fault));
        let mut acknowledged = 0;
        if let Some((report, archive)) = run(&tenant, &users, dir.path(), Some(io.clone())).await {
            acknowledged = report.totals.messages_archived as usize;
            drop(archive);
            // The failure either stopped the run with the storage error in its report,
            // or hit a write whose loss the store absorbs (a cache checkpoint).
            if io.fired() && report.status != RunStatus::Ok {
                let error = report.error.clone().unwrap_or_default();
                assert!(
                    error.contains("archive"),
                    "op {n} ({fault:?}): the report names the archive failure: {report:?}"
                );
            }
        }
        fired += usize::from(io.fired());
        // Reopened with real I/O: what was acknowledged is there and intact.
        let (rerun, archive) = run(&tenant, &users, dir.path(), None).await.unwrap();
        assert_eq!(
            rerun.status,
            RunStatus::Ok,
            "op {n} ({fault:?}) rerun: {rerun:?}"
        );
        let entries = archive.list("owner", None).unwrap();
        assert!(
            entries.len() >= acknowledged,
            "op {n}: nothing acknowledged is lost"
        );
        assert_eq!(
            entries.len(),
            tenant.expected,
            "op {n} ({fault:?}): every message exactly once after the rerun"
        );
        let verify = archive.verify().unwrap();
        assert!(verify.is_clean(), "op {n} ({fault:?}): {verify:?}");
    }
    assert!(
        fired as u64 >= total / 2,
        "the faults were injected: {fired} of {total}"
    );
}
