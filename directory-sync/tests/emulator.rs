//! Acceptance tests against the in-process emulator over real HTTP on 127.0.0.1:
//! the first sync, incremental syncs through the delta token, idle syncs that write
//! nothing, reopening the store, refused tokens, paging, token revocation, faults
//! and TLS with a private CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use directory_sync::{
    DirectorySource, DirectoryToken, GraphDirectoryOptions, GraphDirectorySource, RetryPolicy,
    SkipReason, SqliteUserStore, SyncOptions, SyncReport, UserStore, sync,
};
use m365_auth::{
    AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud, ProviderOptions,
    TokenProvider,
};
use m365_emulator::{Emulator, EmulatorConfig, FaultConfig, NewUser, UserPatch};

async fn emulator(users: usize) -> Emulator {
    Emulator::start(EmulatorConfig {
        users,
        messages_per_user: 0,
        seed: 7,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn tokens(emu: &Emulator) -> Arc<dyn TokenProvider> {
    let cloud = Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str()).unwrap();
    let registration = AppRegistration::new(
        &emu.tenant_id(),
        &emu.client_id(),
        ClientCredential::secret(emu.client_secret()),
        cloud,
    )
    .unwrap();
    let options = ProviderOptions {
        extra_ca_pem: emu.ca_pem(),
        ..Default::default()
    };
    Arc::new(ClientCredentialsProvider::new(registration, options).unwrap())
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 12,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(2),
    }
}

fn source(emu: &Emulator) -> GraphDirectorySource {
    let options = GraphDirectoryOptions {
        extra_ca_pem: emu.ca_pem(),
        retry: fast_retries(),
        ..Default::default()
    };
    GraphDirectorySource::new(tokens(emu), emu.graph_url(), options).unwrap()
}

fn store() -> (tempfile::TempDir, SqliteUserStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteUserStore::open(dir.path().join("users.db")).unwrap();
    (dir, store)
}

async fn run(source: &GraphDirectorySource, store: &SqliteUserStore) -> SyncReport {
    sync(source, store, &SyncOptions::default()).await.unwrap()
}

/// Requests the emulator saw on `/users/delta` (with or without `()`).
async fn delta_requests(emu: &Emulator) -> u64 {
    emu.stats()
        .await
        .per_route
        .iter()
        .filter(|(route, _)| route.contains("/users/delta"))
        .map(|(_, n)| *n)
        .sum()
}

/// The local names of the users the emulator says should be synchronised.
fn expected_names(emu: &Emulator) -> BTreeSet<String> {
    emu.users()
        .iter()
        .filter(|u| u.enabled && !u.guest && u.mail.is_some())
        .map(|u| {
            let mail = u.mail.clone().unwrap().to_lowercase();
            mail.split('@').next().unwrap().to_owned()
        })
        .collect()
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

#[tokio::test]
async fn first_sync_creates_exactly_the_enabled_members_with_mail() {
    let emu = emulator(5).await;
    let (source, (_dir, store)) = (source(&emu), store());
    let report = run(&source, &store).await;
    assert!(report.full_listing);
    assert_eq!(set(&report.created), expected_names(&emu));
    assert_eq!(
        report.created.len(),
        7,
        "5 regular + unlicensed + policy-excluded: {report:?}"
    );
    let skipped: Vec<(String, SkipReason)> = report.skipped.clone();
    let reason_of = |needle: &str| {
        skipped
            .iter()
            .find(|(upn, _)| upn.contains(needle))
            .map(|(_, r)| r.clone())
    };
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert_eq!(reason_of("#EXT#"), Some(SkipReason::Guest));
    assert_eq!(reason_of("former.employee"), Some(SkipReason::Disabled));
    assert_eq!(reason_of("svc-scanner"), Some(SkipReason::NoMailboxAddress));

    // Every user is stored with the addresses the directory gives.
    for info in emu
        .users()
        .iter()
        .filter(|u| u.enabled && !u.guest && u.mail.is_some())
    {
        let mail = info.mail.clone().unwrap();
        let local = store.find_by_address(&mail).unwrap().unwrap();
        assert_eq!(
            local.display_name.as_deref(),
            Some(info.display_name.as_str())
        );
        assert_eq!(
            local.origin,
            directory_sync::UserOrigin::Directory {
                object_id: info.id.clone()
            }
        );
        assert!(local.enabled);
    }
    // Regular users carry their smtp: aliases.
    let adele = store
        .list()
        .unwrap()
        .into_iter()
        .find(|u| !u.aliases.is_empty());
    assert!(adele.is_some(), "aliases from proxyAddresses");
    assert!(store.directory_token().unwrap().is_some());
    assert_eq!(source.stats().full_reads, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn changes_arrive_through_the_delta_token_and_nobody_is_deleted() {
    let emu = emulator(5).await;
    let (source, (_dir, store)) = (source(&emu), store());
    run(&source, &store).await;
    let users_before = store.list().unwrap().len();
    let regular: Vec<_> = emu
        .users()
        .into_iter()
        .filter(|u| u.enabled && !u.guest && u.has_mailbox && !u.access_denied)
        .collect();
    let name = |upn: &str| upn.split('@').next().unwrap().to_owned();
    let (renamed, aliased, disabled, deleted) =
        (&regular[0], &regular[1], &regular[2], &regular[3]);
    store.mark_has_archive(&name(&deleted.upn)).unwrap();
    store.mark_has_archive(&name(&renamed.upn)).unwrap();

    emu.add_user(NewUser {
        upn: "new.hire@contoso.onmicrosoft.com".into(),
        display_name: "New Hire".into(),
        mail: Some("new.hire@contoso.onmicrosoft.com".into()),
        aliases: vec!["nh@contoso.com".into()],
        ..Default::default()
    })
    .unwrap();
    emu.update_user(
        &renamed.id,
        UserPatch {
            display_name: Some("Renamed Person".into()),
            ..Default::default()
        },
    )
    .unwrap();
    emu.update_user(
        &aliased.id,
        UserPatch {
            add_alias: Some("Fresh.Alias@Contoso.com".into()),
            ..Default::default()
        },
    )
    .unwrap();
    emu.update_user(
        &disabled.id,
        UserPatch {
            enabled: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    emu.delete_user(&deleted.id).unwrap();

    let (requests, deltas) = (emu.stats().await.requests_total, delta_requests(&emu).await);
    let report = run(&source, &store).await;
    let (requests_after, deltas_after) =
        (emu.stats().await.requests_total, delta_requests(&emu).await);

    assert!(!report.full_listing, "{report:?}");
    assert_eq!(report.created, vec!["new.hire".to_string()]);
    assert_eq!(
        set(&report.updated),
        set(&[name(&renamed.upn), name(&aliased.upn)])
    );
    assert_eq!(
        set(&report.deactivated),
        set(&[name(&disabled.upn), name(&deleted.upn)])
    );
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(deltas_after - deltas, 1, "one delta page");
    assert!(
        requests_after - requests <= 2,
        "a handful of requests: {}",
        requests_after - requests
    );
    assert_eq!(source.stats().delta_reads, 1);

    // Nobody deleted; the renamed user keeps name and archive; the alias is findable.
    assert_eq!(store.list().unwrap().len(), users_before + 1);
    let r = store.get(&name(&renamed.upn)).unwrap().unwrap();
    assert_eq!(r.display_name.as_deref(), Some("Renamed Person"));
    assert!(r.has_archive && r.enabled);
    assert_eq!(
        store
            .find_by_address("fresh.alias@contoso.com")
            .unwrap()
            .unwrap()
            .name,
        name(&aliased.upn)
    );
    let gone = store.get(&name(&deleted.upn)).unwrap().unwrap();
    assert!(!gone.enabled && gone.has_archive);
    assert!(!store.get(&name(&disabled.upn)).unwrap().unwrap().enabled);
    assert_eq!(
        store
            .find_by_address("nh@contoso.com")
            .unwrap()
            .unwrap()
            .name,
        "new.hire"
    );

    // Re-enabled in the directory: the same local user is active again.
    emu.update_user(
        &disabled.id,
        UserPatch {
            enabled: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    let report = run(&source, &store).await;
    assert_eq!(report.updated, vec![name(&disabled.upn)]);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_second_sync_without_changes_writes_nothing() {
    let emu = emulator(5).await;
    let (source, (_dir, store)) = (source(&emu), store());
    run(&source, &store).await;
    let users = store.list().unwrap();
    let token = store.directory_token().unwrap();
    let writes = store.write_count();
    let report = run(&source, &store).await;
    assert!(!report.full_listing);
    assert!(!report.changed_anything(), "{report:?}");
    assert_eq!(report.unchanged.len(), users.len());
    assert_eq!(store.list().unwrap(), users);
    // At most the (new) delta link is saved; no user record is written.
    let token_moved = u64::from(store.directory_token().unwrap() != token);
    assert_eq!(store.write_count() - writes, token_moved);
    emu.shutdown().await;
}

#[tokio::test]
async fn the_store_survives_reopening_and_the_next_sync_is_incremental() {
    let emu = emulator(3).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    let first = {
        let store = SqliteUserStore::open(&path).unwrap();
        let report = run(&source(&emu), &store).await;
        store.list().unwrap();
        report
    };
    let store = SqliteUserStore::open(&path).unwrap();
    assert_eq!(
        set(&store
            .list()
            .unwrap()
            .into_iter()
            .map(|u| u.name)
            .collect::<Vec<_>>()),
        set(&first.created)
    );
    let report = run(&source(&emu), &store).await;
    assert!(
        !report.full_listing && !report.changed_anything(),
        "{report:?}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_refused_token_falls_back_to_a_full_listing() {
    let emu = emulator(3).await;
    let (source, (_dir, store)) = (source(&emu), store());
    run(&source, &store).await;
    // A link of this Graph with a token it does not know: 410 syncStateNotFound.
    let mut stale = emu.graph_url();
    stale.set_path("/v1.0/users/delta");
    stale.set_query(Some("$deltatoken=c3RhbGU"));
    store
        .set_directory_token(Some(&DirectoryToken(stale.to_string())))
        .unwrap();
    let report = run(&source, &store).await;
    assert!(report.full_listing);
    assert!(!report.changed_anything(), "{report:?}");
    assert_eq!(source.stats().links_refused, 1);
    assert_eq!(source.stats().full_reads, 2);
    // The fresh link works again.
    let report = run(&source, &store).await;
    assert!(!report.full_listing);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_large_directory_is_read_page_by_page() {
    let emu = emulator(230).await;
    let source = source(&emu);
    let changes = source.changes(None).await.unwrap();
    assert_eq!(changes.users.len(), emu.users().len());
    let ids: BTreeSet<_> = changes.users.iter().map(|u| u.id.clone()).collect();
    assert_eq!(ids.len(), changes.users.len(), "no user twice");
    assert!(delta_requests(&emu).await >= 3, "followed the nextLinks");
    let (_dir, store) = store();
    let report = run(&source, &store).await;
    assert_eq!(set(&report.created), expected_names(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn revoked_tokens_are_refreshed_once() {
    let emu = emulator(2).await;
    let (source, (_dir, store)) = (source(&emu), store());
    run(&source, &store).await;
    emu.revoke_tokens();
    let report = run(&source, &store).await;
    assert!(!report.changed_anything());
    assert_eq!(source.stats().token_refreshes, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn transient_faults_are_retried_without_changing_the_outcome() {
    let emu = emulator(230).await;
    let expected = expected_names(&emu);
    emu.set_faults(FaultConfig {
        status_503: 0.2,
        status_504: 0.1,
        reset: 0.1,
        truncate: 0.1,
        slow_ms: 0,
    });
    let (source, (_dir, store)) = (source(&emu), store());
    let report = run(&source, &store).await;
    assert_eq!(set(&report.created), expected);
    assert!(
        source.stats().retries > 0,
        "faults were injected: {:?}",
        source.stats()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn tls_with_a_private_ca() {
    let emu = Emulator::start(EmulatorConfig {
        users: 2,
        messages_per_user: 0,
        tls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(emu.graph_url().scheme(), "https");
    let (source, (_dir, store)) = (source(&emu), store());
    let report = run(&source, &store).await;
    assert_eq!(set(&report.created), expected_names(&emu));

    // Without the CA the certificate is refused, and the error says what to do.
    let plain = GraphDirectorySource::new(
        tokens(&emu),
        emu.graph_url(),
        GraphDirectoryOptions {
            retry: RetryPolicy {
                max_attempts: 1,
                ..fast_retries()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let err = plain.changes(None).await.unwrap_err();
    assert!(err.to_string().contains("CA certificate"), "{err}");
    emu.shutdown().await;
}

#[tokio::test]
async fn disabled_users_and_guests_are_synchronised_on_request() {
    let emu = emulator(2).await;
    let (source, (_dir, store)) = (source(&emu), store());
    let options = SyncOptions {
        include_disabled: true,
        include_guests: true,
        ..SyncOptions::default()
    };
    let report = sync(&source, &store, &options).await.unwrap();
    assert!(
        report.created.contains(&"former.employee".to_string()),
        "{report:?}"
    );
    assert!(
        report.created.contains(&"partner".to_string()),
        "{report:?}"
    );
    assert_eq!(
        report.skipped.len(),
        1,
        "only the user without mail: {report:?}"
    );
    assert!(store.get("former.employee").unwrap().unwrap().enabled);
    // Back to the defaults: both are deactivated, not deleted.
    store.set_directory_token(None).unwrap();
    let report = run(&source, &store).await;
    assert_eq!(
        set(&report.deactivated),
        set(&["former.employee".to_string(), "partner".to_string()])
    );
    assert!(store.get("partner").unwrap().is_some());
    emu.shutdown().await;
}
