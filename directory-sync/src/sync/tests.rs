//! Tests of the sync rules over the in-memory directory and store.

use super::*;
use crate::{MemoryDirectorySource, MemoryUserStore};
use proptest::prelude::*;

fn member(id: &str, mail: &str) -> DirectoryUser {
    DirectoryUser {
        id: id.into(),
        user_principal_name: mail.into(),
        display_name: Some(format!("User {id}")),
        mail: Some(mail.into()),
        proxy_addresses: vec![format!("SMTP:{mail}")],
        account_enabled: true,
        user_type: UserType::Member,
    }
}

fn tenant() -> MemoryDirectorySource {
    let mut disabled = member("d", "former@x.com");
    disabled.account_enabled = false;
    let mut guest = member("g", "partner@fabrikam.com");
    guest.user_principal_name = "partner_fabrikam.com#EXT#@x.com".into();
    guest.user_type = UserType::Guest;
    let mut no_mail = member("n", "svc@x.com");
    no_mail.mail = None;
    no_mail.proxy_addresses.clear();
    MemoryDirectorySource::with_users([
        member("a", "ann@x.com"),
        member("b", "bob@x.com"),
        disabled,
        guest,
        no_mail,
    ])
}

async fn run(dir: &MemoryDirectorySource, store: &MemoryUserStore) -> SyncReport {
    sync(dir, store, &SyncOptions::default()).await.unwrap()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn first_sync_creates_eligible_users_and_skips_the_rest_with_reasons() {
    let (dir, store) = (tenant(), MemoryUserStore::new());
    let report = run(&dir, &store).await;
    assert!(report.full_listing);
    assert_eq!(report.created, names(&["ann", "bob"]));
    assert_eq!(
        report.skipped,
        vec![
            ("former@x.com".to_string(), SkipReason::Disabled),
            (
                "partner_fabrikam.com#EXT#@x.com".to_string(),
                SkipReason::Guest
            ),
            ("svc@x.com".to_string(), SkipReason::NoMailboxAddress),
        ]
    );
    let ann = store.get("ann").unwrap().unwrap();
    assert_eq!(ann.email.as_deref(), Some("ann@x.com"));
    assert_eq!(
        ann.origin,
        UserOrigin::Directory {
            object_id: "a".into()
        }
    );
    assert!(ann.enabled && !ann.has_archive && ann.role == Role::User);
    assert_eq!(
        store.directory_token().unwrap(),
        Some(crate::DirectoryToken("mem:0:5".into()))
    );
}

#[tokio::test]
async fn options_include_disabled_users_and_guests() {
    let (dir, store) = (tenant(), MemoryUserStore::new());
    let options = SyncOptions {
        include_disabled: true,
        include_guests: true,
        ..SyncOptions::default()
    };
    let report = sync(&dir, &store, &options).await.unwrap();
    assert_eq!(report.created, names(&["ann", "bob", "former", "partner"]));
    assert_eq!(
        report.skipped,
        vec![("svc@x.com".to_string(), SkipReason::NoMailboxAddress)]
    );
    assert!(store.get("former").unwrap().unwrap().enabled);
}

#[tokio::test]
async fn a_sync_without_changes_writes_nothing() {
    let (dir, store) = (tenant(), MemoryUserStore::new());
    run(&dir, &store).await;
    let writes = store.write_count();
    let before = store.list().unwrap();
    let report = run(&dir, &store).await;
    assert!(!report.full_listing);
    assert!(!report.changed_anything(), "{report:?}");
    assert_eq!(report.unchanged, names(&["ann", "bob"]));
    assert!(report.skipped.is_empty());
    assert_eq!(store.write_count(), writes);
    assert_eq!(store.list().unwrap(), before);
    // A full listing with nothing new writes nothing either.
    dir.expire_tokens();
    let report = run(&dir, &store).await;
    assert!(
        report.full_listing && !report.changed_anything(),
        "{report:?}"
    );
    assert_eq!(store.list().unwrap(), before);
}

#[tokio::test]
async fn changes_are_reflected_and_nobody_is_deleted() {
    let (dir, store) = (tenant(), MemoryUserStore::new());
    run(&dir, &store).await;
    store.mark_has_archive("ann").unwrap();
    dir.upsert(member("c", "cat@x.com"));
    dir.update("a", |u| u.display_name = Some("Ann Renamed".into()));
    dir.update("b", |u| u.proxy_addresses.push("smtp:Robert@X.com".into()));
    dir.update("c", |u| u.account_enabled = true);
    let report = run(&dir, &store).await;
    assert!(!report.full_listing);
    assert_eq!(report.created, names(&["cat"]));
    assert_eq!(report.updated, names(&["ann", "bob"]));
    let ann = store.get("ann").unwrap().unwrap();
    assert_eq!(ann.display_name.as_deref(), Some("Ann Renamed"));
    assert!(ann.has_archive, "a rename keeps the archive");
    assert_eq!(
        store.find_by_address("robert@x.com").unwrap().unwrap().name,
        "bob"
    );

    dir.update("a", |u| u.account_enabled = false);
    dir.remove("b");
    let report = run(&dir, &store).await;
    assert_eq!(report.deactivated, names(&["ann", "bob"]));
    assert_eq!(report.unchanged, names(&["cat"]));
    assert_eq!(store.list().unwrap().len(), 3, "nobody deleted");
    assert!(!store.get("ann").unwrap().unwrap().enabled);
    assert!(store.get("ann").unwrap().unwrap().has_archive);
    assert!(!store.get("bob").unwrap().unwrap().enabled);

    // Re-enabled: the same local user comes back.
    dir.update("a", |u| u.account_enabled = true);
    let report = run(&dir, &store).await;
    assert_eq!(report.updated, names(&["ann"]));
    assert!(store.get("ann").unwrap().unwrap().enabled);
}

#[tokio::test]
async fn a_user_who_loses_eligibility_is_deactivated() {
    let (dir, store) = (tenant(), MemoryUserStore::new());
    run(&dir, &store).await;
    dir.update("a", |u| {
        u.mail = None;
        u.proxy_addresses.clear();
    });
    dir.update("b", |u| u.user_type = UserType::Guest);
    let report = run(&dir, &store).await;
    assert_eq!(report.deactivated, names(&["ann", "bob"]));
    assert!(
        report.skipped.is_empty(),
        "known users are not 'skipped': {report:?}"
    );
}

#[tokio::test]
async fn users_gone_from_a_full_listing_are_deactivated() {
    let (dir, store) = (tenant(), MemoryUserStore::new());
    run(&dir, &store).await;
    dir.remove("b");
    dir.expire_tokens();
    let report = run(&dir, &store).await;
    assert!(report.full_listing);
    assert_eq!(report.deactivated, names(&["bob"]));
    assert_eq!(report.unchanged, names(&["ann"]));
}

#[tokio::test]
async fn colliding_local_parts_get_unique_stable_names() {
    let dir = MemoryDirectorySource::with_users([
        member("z", "john.smith@fabrikam.com"),
        member("y", "John.Smith@contoso.com"),
    ]);
    let store = MemoryUserStore::new();
    let report = run(&dir, &store).await;
    assert_eq!(report.created, names(&["john.smith", "john.smith-2"]));
    // Ordered by address: contoso's John gets the plain name.
    assert_eq!(
        store
            .find_by_address("john.smith@contoso.com")
            .unwrap()
            .unwrap()
            .name,
        "john.smith"
    );
    // A third John arrives and the first leaves: nobody is renamed.
    dir.upsert(member("x", "john.smith@northwind.com"));
    dir.remove("y");
    let report = run(&dir, &store).await;
    assert_eq!(report.created, names(&["john.smith-3"]));
    assert_eq!(report.deactivated, names(&["john.smith"]));
    assert_eq!(
        store
            .find_by_address("john.smith@fabrikam.com")
            .unwrap()
            .unwrap()
            .name,
        "john.smith-2"
    );
}

#[tokio::test]
async fn manual_users_are_never_touched() {
    let store = MemoryUserStore::new();
    let manual = LocalUser {
        name: "ann".into(),
        display_name: Some("Ann (archive import)".into()),
        email: Some("ann.old@x.com".into()),
        aliases: vec![],
        origin: UserOrigin::Manual,
        enabled: true,
        role: Role::Admin,
        has_archive: true,
        kind: None,
    };
    let keeper = LocalUser {
        name: "keeper".into(),
        email: Some("shared@x.com".into()),
        role: Role::User,
        has_archive: false,
        ..manual.clone()
    };
    store.put_many(&[manual.clone(), keeper.clone()]).unwrap();
    let mut claimer = member("s", "sam@x.com");
    claimer.proxy_addresses.push("smtp:shared@x.com".into());
    let dir = MemoryDirectorySource::with_users([member("a", "ann@x.com"), claimer]);
    let report = run(&dir, &store).await;
    assert_eq!(report.created, names(&["ann-2", "sam"]));
    assert!(report.skipped.is_empty());
    assert_eq!(
        report.address_conflicts,
        vec![AddressConflict {
            user: "sam".into(),
            address: "shared@x.com".into(),
            owner: "keeper".into()
        }]
    );
    // A newcomer whose primary address a manual user holds is not created.
    dir.upsert(member("t", "ann.old@x.com"));
    let report = run(&dir, &store).await;
    assert_eq!(
        report.skipped,
        vec![(
            "ann.old@x.com".to_string(),
            SkipReason::AddressInUse {
                address: "ann.old@x.com".into(),
                owner: "ann".into()
            }
        )]
    );
    assert_eq!(store.get("ann").unwrap().unwrap(), manual);
    assert_eq!(store.get("keeper").unwrap().unwrap(), keeper);
    assert!(
        !report.unchanged.contains(&"ann".to_string()),
        "manual users are not reported"
    );
}

#[tokio::test]
async fn a_reused_address_moves_from_a_deactivated_user_to_the_new_one() {
    let dir = MemoryDirectorySource::with_users([member("old", "info@x.com")]);
    let store = MemoryUserStore::new();
    run(&dir, &store).await;
    store.mark_has_archive("info").unwrap();
    dir.remove("old");
    dir.upsert(member("new", "info@x.com"));
    let report = run(&dir, &store).await;
    assert_eq!(report.created, names(&["info-2"]));
    assert_eq!(report.deactivated, names(&["info"]));
    let old = store.get("info").unwrap().unwrap();
    assert!(!old.enabled && old.has_archive && old.email.is_none());
    assert_eq!(
        store.find_by_address("info@x.com").unwrap().unwrap().name,
        "info-2"
    );
}

#[tokio::test]
async fn two_users_may_trade_an_alias_in_one_sync() {
    let mut a = member("a", "ann@x.com");
    a.proxy_addresses.push("smtp:desk@x.com".into());
    let dir = MemoryDirectorySource::with_users([a, member("b", "bob@x.com")]);
    let store = MemoryUserStore::new();
    run(&dir, &store).await;
    dir.update("a", |u| u.proxy_addresses.retain(|p| !p.contains("desk")));
    dir.update("b", |u| u.proxy_addresses.push("smtp:desk@x.com".into()));
    let report = run(&dir, &store).await;
    assert_eq!(report.updated, names(&["ann", "bob"]));
    assert_eq!(
        store.find_by_address("desk@x.com").unwrap().unwrap().name,
        "bob"
    );
}

#[tokio::test]
async fn an_address_two_active_users_claim_stays_with_its_holder() {
    let dir =
        MemoryDirectorySource::with_users([member("a", "ann@x.com"), member("b", "bob@x.com")]);
    let store = MemoryUserStore::new();
    run(&dir, &store).await;
    // Bob claims Ann's address as an alias (a directory inconsistency): he is
    // updated without it.
    dir.update("b", |u| {
        u.proxy_addresses.push("smtp:ann@x.com".into());
        u.display_name = Some("Bob 2".into());
    });
    let report = run(&dir, &store).await;
    assert_eq!(report.updated, names(&["bob"]));
    assert_eq!(
        report.address_conflicts,
        vec![AddressConflict {
            user: "bob".into(),
            address: "ann@x.com".into(),
            owner: "ann".into()
        }]
    );
    assert_eq!(
        store.find_by_address("ann@x.com").unwrap().unwrap().name,
        "ann"
    );
    assert_eq!(
        store.get("bob").unwrap().unwrap().display_name.as_deref(),
        Some("Bob 2")
    );
    // Nothing new next time: the conflict is reported again, nothing is written.
    let writes = store.write_count();
    let report = run(&dir, &store).await;
    assert!(!report.changed_anything());
    assert_eq!(store.write_count(), writes);

    // Bob's primary address becomes Ann's: his update waits, with the reason.
    dir.update("b", |u| {
        u.mail = Some("ann@x.com".into());
        u.display_name = Some("Bob 3".into());
    });
    let report = run(&dir, &store).await;
    assert!(report.updated.is_empty(), "{report:?}");
    assert_eq!(
        report.skipped,
        vec![(
            "bob@x.com".to_string(),
            SkipReason::AddressInUse {
                address: "ann@x.com".into(),
                owner: "ann".into()
            }
        )]
    );
    assert_eq!(
        store.get("bob").unwrap().unwrap().display_name.as_deref(),
        Some("Bob 2")
    );
}

#[tokio::test]
async fn newcomers_sharing_an_alias_are_all_created() {
    let mut a = member("a", "adele.vance@x.com");
    a.proxy_addresses.push("smtp:adele@x.com".into());
    let mut b = member("b", "adele.hunter@x.com");
    b.proxy_addresses.push("smtp:adele@x.com".into());
    let mut c = member("c", "adele@x.com");
    c.proxy_addresses.push("smtp:adele.v@x.com".into());
    let dir = MemoryDirectorySource::with_users([a, b, c]);
    let store = MemoryUserStore::new();
    let report = run(&dir, &store).await;
    assert_eq!(
        report.created,
        names(&["adele", "adele.hunter", "adele.vance"])
    );
    // The user whose primary address it is wins it.
    assert_eq!(
        store.find_by_address("adele@x.com").unwrap().unwrap().name,
        "adele"
    );
    assert_eq!(report.address_conflicts.len(), 2, "{report:?}");
}

#[tokio::test]
async fn a_failed_read_changes_nothing() {
    let (dir, store) = (tenant(), MemoryUserStore::new());
    run(&dir, &store).await;
    let token = store.directory_token().unwrap();
    let writes = store.write_count();
    dir.upsert(member("c", "cat@x.com"));
    dir.set_failure(Some((503, "ServiceUnavailable")));
    let err = sync(&dir, &store, &SyncOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(store.write_count(), writes);
    assert_eq!(store.directory_token().unwrap(), token);
    dir.set_failure(None);
    assert_eq!(run(&dir, &store).await.created, names(&["cat"]));
}

/// A store whose user writes fail: the token must not move.
struct FailingWrites(MemoryUserStore);

impl UserStore for FailingWrites {
    fn get(&self, name: &str) -> Result<Option<LocalUser>, DirectoryError> {
        self.0.get(name)
    }
    fn list(&self) -> Result<Vec<LocalUser>, DirectoryError> {
        self.0.list()
    }
    fn find_by_address(&self, address: &str) -> Result<Option<LocalUser>, DirectoryError> {
        self.0.find_by_address(address)
    }
    fn put(&self, _user: &LocalUser) -> Result<(), DirectoryError> {
        Err(DirectoryError::StoreIo {
            path: "test".into(),
            reason: "disk full".into(),
        })
    }
    fn remove(&self, name: &str) -> Result<(), DirectoryError> {
        self.0.remove(name)
    }
    fn mark_has_archive(&self, name: &str) -> Result<(), DirectoryError> {
        self.0.mark_has_archive(name)
    }
    fn directory_token(&self) -> Result<Option<crate::DirectoryToken>, DirectoryError> {
        self.0.directory_token()
    }
    fn set_directory_token(&self, t: Option<&crate::DirectoryToken>) -> Result<(), DirectoryError> {
        self.0.set_directory_token(t)
    }
}

#[tokio::test]
async fn the_token_is_saved_only_after_the_users() {
    let dir = tenant();
    let store = FailingWrites(MemoryUserStore::new());
    let err = sync(&dir, &store, &SyncOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, DirectoryError::StoreIo { .. }), "{err}");
    assert_eq!(store.directory_token().unwrap(), None);
}

fn arbitrary_directory() -> impl Strategy<Value = Vec<DirectoryUser>> {
    // Few local parts and domains, so collisions are the rule.
    let local = prop_oneof![
        Just("john.smith"),
        Just("John.Smith"),
        Just("info"),
        Just("a+b"),
        Just("x")
    ];
    let domain = prop_oneof![Just("contoso.com"), Just("fabrikam.com"), Just("x.org")];
    let alias = (local.clone(), domain.clone()).prop_map(|(l, d)| format!("smtp:{l}@{d}"));
    proptest::collection::vec(
        (
            local,
            domain,
            proptest::collection::vec(alias, 0..3),
            any::<bool>(),
        ),
        0..12,
    )
    .prop_map(|users| {
        users
            .into_iter()
            .enumerate()
            .map(|(i, (l, d, aliases, enabled))| {
                let mut u = member(&format!("id{i:02}"), &format!("{l}@{d}"));
                u.user_principal_name = format!("u{i}@x.com");
                u.proxy_addresses.extend(aliases);
                u.account_enabled = enabled;
                u
            })
            .collect()
    })
}

fn by_object(store: &MemoryUserStore) -> BTreeMap<String, String> {
    store
        .list()
        .unwrap()
        .into_iter()
        .filter_map(|u| object_of(&u).map(|o| (o.to_owned(), u.name.clone())))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn names_are_unique_stable_and_independent_of_listing_order(
        users in arbitrary_directory(),
        leaving in proptest::collection::vec(any::<bool>(), 12),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let dir = MemoryDirectorySource::with_users(users.clone());
            let store = MemoryUserStore::new();
            let first = run(&dir, &store).await;
            // Unique, valid names; every address belongs to one user.
            let all = store.list().unwrap();
            let mut addresses = std::collections::HashSet::new();
            for u in &all {
                prop_assert!(crate::validate_name(&u.name).is_ok(), "{}", u.name);
                for a in addresses_of(u) {
                    prop_assert!(addresses.insert(a.to_owned()), "{} twice", a);
                    prop_assert_eq!(store.find_by_address(a).unwrap().map(|f| f.name), Some(u.name.clone()));
                }
            }
            prop_assert_eq!(first.created.len() + first.skipped.len(), users.len());
            // Only a taken primary address or a disabled account keeps a user out.
            for (_, reason) in &first.skipped {
                let allowed = matches!(reason, SkipReason::Disabled | SkipReason::AddressInUse { .. });
                prop_assert!(allowed, "{:?}", reason);
            }

            // The same directory listed in reverse order gives the same names.
            let reversed = MemoryDirectorySource::with_users(users.iter().rev().cloned());
            let other = MemoryUserStore::new();
            run(&reversed, &other).await;
            prop_assert_eq!(by_object(&other), by_object(&store));

            // A second sync changes nothing; a full one neither.
            let names_before = by_object(&store);
            let again = run(&dir, &store).await;
            prop_assert!(!again.changed_anything(), "{:?}", again);
            dir.expire_tokens();
            let full = run(&dir, &store).await;
            prop_assert!(!full.changed_anything(), "{:?}", full);

            // Some users leave: the others keep their names, nobody is deleted.
            for (u, leaves) in users.iter().zip(&leaving) {
                if *leaves {
                    dir.remove(&u.id);
                }
            }
            run(&dir, &store).await;
            let after = by_object(&store);
            prop_assert_eq!(&after, &names_before);
            Ok(())
        })?;
    }
}

/// OpenArchiver #125: a sync broke on B2B (`#EXT#`) accounts, which have no mailbox in
/// the tenant even when `userType` says Member and `mail` holds their home address.
#[tokio::test]
async fn external_accounts_count_as_guests_openarchiver_125() {
    let mut external = member("e", "partner@fabrikam.com");
    external.user_principal_name = "partner_fabrikam.com#EXT#@x.com".into();
    let dir = MemoryDirectorySource::with_users([external, member("a", "ann@x.com")]);
    let store = MemoryUserStore::new();
    let report = run(&dir, &store).await;
    assert_eq!(report.created, names(&["ann"]));
    assert_eq!(
        report.skipped,
        vec![(
            "partner_fabrikam.com#EXT#@x.com".to_string(),
            SkipReason::Guest
        )]
    );
}
