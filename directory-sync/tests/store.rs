//! The user store rules, checked on both implementations, and the sled store's
//! persistence: reopening, locking, corruption.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use directory_sync::{
    DirectoryError, DirectoryToken, LocalUser, MemoryUserStore, Role, SledUserStore, UserOrigin,
    UserStore,
};
use proptest::prelude::*;

fn user(name: &str, email: &str, object: Option<&str>) -> LocalUser {
    LocalUser {
        name: name.into(),
        display_name: Some(name.to_uppercase()),
        email: Some(email.into()),
        aliases: vec![],
        origin: match object {
            Some(id) => UserOrigin::Directory {
                object_id: id.into(),
            },
            None => UserOrigin::Manual,
        },
        enabled: true,
        role: Role::User,
        has_archive: false,
    }
}

/// Runs `check` on a fresh memory store and a fresh sled store.
fn on_both(check: impl Fn(&dyn UserStore)) {
    check(&MemoryUserStore::new());
    let dir = tempfile::tempdir().unwrap();
    check(&SledUserStore::open(dir.path().join("users")).unwrap());
}

#[test]
fn put_get_list_and_find() {
    on_both(|store| {
        let mut ann = user("ann", "Ann@X.com", Some("o1"));
        ann.aliases = vec!["A@x.com".into(), "ann@x.com".into(), "a@X.COM".into()];
        store.put(&ann).unwrap();
        store.put(&user("bob", "bob@x.com", None)).unwrap();
        let got = store.get("ann").unwrap().unwrap();
        assert_eq!(got.email.as_deref(), Some("ann@x.com"), "lower-cased");
        assert_eq!(
            got.aliases,
            vec!["a@x.com".to_string()],
            "deduplicated, without the primary"
        );
        assert_eq!(
            store
                .list()
                .unwrap()
                .iter()
                .map(|u| u.name.as_str())
                .collect::<Vec<_>>(),
            ["ann", "bob"]
        );
        assert_eq!(
            store.find_by_address(" A@x.COM ").unwrap().unwrap().name,
            "ann"
        );
        assert_eq!(store.find_by_object_id("o1").unwrap().unwrap().name, "ann");
        assert!(store.find_by_address("nobody@x.com").unwrap().is_none());
        assert!(store.get("carol").unwrap().is_none());
    });
}

#[test]
fn replacing_a_user_moves_the_indexes() {
    on_both(|store| {
        let mut ann = user("ann", "ann@x.com", Some("o1"));
        ann.aliases = vec!["old@x.com".into()];
        store.put(&ann).unwrap();
        ann.aliases = vec!["new@x.com".into()];
        store.put(&ann).unwrap();
        assert!(store.find_by_address("old@x.com").unwrap().is_none());
        assert_eq!(
            store.find_by_address("new@x.com").unwrap().unwrap().name,
            "ann"
        );
        // The freed address may now go to someone else.
        store.put(&user("bob", "old@x.com", None)).unwrap();
    });
}

#[test]
fn addresses_and_object_ids_are_unique() {
    on_both(|store| {
        store.put(&user("ann", "ann@x.com", Some("o1"))).unwrap();
        let err = store.put(&user("bob", "ANN@x.com", None)).unwrap_err();
        assert!(
            matches!(&err, DirectoryError::AddressTaken { address, owner, .. } if address == "ann@x.com" && owner == "ann"),
            "{err}"
        );
        let err = store
            .put(&user("bob", "bob@x.com", Some("o1")))
            .unwrap_err();
        assert!(
            matches!(&err, DirectoryError::ObjectTaken { owner, .. } if owner == "ann"),
            "{err}"
        );
        assert!(
            store.get("bob").unwrap().is_none(),
            "a refused write writes nothing"
        );
    });
}

#[test]
fn batches_are_atomic_and_may_trade_addresses() {
    on_both(|store| {
        let mut ann = user("ann", "ann@x.com", Some("o1"));
        ann.aliases = vec!["desk@x.com".into()];
        store
            .put_many(&[ann.clone(), user("bob", "bob@x.com", Some("o2"))])
            .unwrap();
        // Trade: ann gives desk@ to bob in the same batch.
        ann.aliases.clear();
        let mut bob = user("bob", "bob@x.com", Some("o2"));
        bob.aliases = vec!["desk@x.com".into()];
        store.put_many(&[bob.clone(), ann.clone()]).unwrap();
        assert_eq!(
            store.find_by_address("desk@x.com").unwrap().unwrap().name,
            "bob"
        );
        // A batch with one bad user writes nobody.
        let carol = user("carol", "carol@x.com", Some("o3"));
        let thief = user("dave", "ann@x.com", Some("o4"));
        assert!(store.put_many(&[carol, thief]).is_err());
        assert!(store.get("carol").unwrap().is_none());
        // A name twice in a batch is refused.
        assert!(matches!(
            store.put_many(&[ann.clone(), ann.clone()]),
            Err(DirectoryError::InvalidUser { .. })
        ));
    });
}

#[test]
fn invalid_users_are_refused_with_the_reason() {
    on_both(|store| {
        for (bad, why) in [
            (user("Ann", "ann@x.com", None), "lower-case"),
            (user("", "ann@x.com", None), "empty"),
            (user("ann", "not-an-address", None), "not a mail address"),
            (user("ann", "ann@x.com", Some(" ")), "object id"),
        ] {
            let err = store.put(&bad).unwrap_err();
            assert!(err.to_string().contains(why), "{err} should mention {why}");
        }
    });
}

#[test]
fn archives_protect_users() {
    on_both(|store| {
        store.put(&user("ann", "ann@x.com", Some("o1"))).unwrap();
        store.put(&user("bob", "bob@x.com", None)).unwrap();
        store.mark_has_archive("ann").unwrap();
        let err = store.remove("ann").unwrap_err();
        assert!(matches!(err, DirectoryError::HasArchive { .. }), "{err}");
        // A put cannot clear the flag either.
        store.put(&user("ann", "ann@x.com", Some("o1"))).unwrap();
        assert!(store.get("ann").unwrap().unwrap().has_archive);
        store.remove("bob").unwrap();
        assert!(store.find_by_address("bob@x.com").unwrap().is_none());
        assert!(matches!(
            store.remove("bob"),
            Err(DirectoryError::NotFound { .. })
        ));
        assert!(matches!(
            store.mark_has_archive("zed"),
            Err(DirectoryError::NotFound { .. })
        ));
    });
}

#[test]
fn the_directory_token_round_trips() {
    on_both(|store| {
        assert_eq!(store.directory_token().unwrap(), None);
        let token =
            DirectoryToken("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=x".into());
        store.set_directory_token(Some(&token)).unwrap();
        assert_eq!(store.directory_token().unwrap(), Some(token));
        store.set_directory_token(None).unwrap();
        assert_eq!(store.directory_token().unwrap(), None);
    });
}

#[test]
fn the_sled_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    let token = DirectoryToken("link".into());
    {
        let store = SledUserStore::open(&path).unwrap();
        let mut ann = user("ann", "ann@x.com", Some("o1"));
        ann.aliases = vec!["a@x.com".into()];
        store
            .put_many(&[ann, user("bob", "bob@x.com", None)])
            .unwrap();
        store.mark_has_archive("bob").unwrap();
        store.set_directory_token(Some(&token)).unwrap();
        // Only one process (or handle) at a time.
        let err = SledUserStore::open(&path).unwrap_err();
        assert!(matches!(err, DirectoryError::StoreLocked { .. }), "{err}");
    }
    let store = SledUserStore::open(&path).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
    assert_eq!(
        store.find_by_address("a@x.com").unwrap().unwrap().name,
        "ann"
    );
    assert_eq!(store.find_by_object_id("o1").unwrap().unwrap().name, "ann");
    assert!(store.get("bob").unwrap().unwrap().has_archive);
    assert_eq!(store.directory_token().unwrap(), Some(token));
    assert_eq!(store.write_count(), 0);
}

#[test]
fn a_corrupt_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    {
        let store = SledUserStore::open(&path).unwrap();
        store.put(&user("ann", "ann@x.com", None)).unwrap();
    }
    {
        let db = sled::open(&path).unwrap();
        db.open_tree("users")
            .unwrap()
            .insert("bob", &b"{not json"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let store = SledUserStore::open(&path).unwrap();
    let err = store.list().unwrap_err();
    assert!(
        matches!(&err, DirectoryError::StoreCorrupt { key, .. } if key == "users/bob"),
        "{err}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(
        store.get("ann").unwrap().is_some(),
        "the other records are still readable"
    );
}

#[test]
fn a_store_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    {
        let db = sled::open(&path).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("format", &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = SledUserStore::open(&path).unwrap_err();
    assert!(
        matches!(err, DirectoryError::StoreVersion { found: 99, .. }),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever sequence of writes, the address index answers exactly like a scan.
    #[test]
    fn indexes_agree_with_the_records(
        ops in proptest::collection::vec(
            (0usize..4, proptest::collection::vec(0usize..6, 0..3), any::<bool>()),
            1..20,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let sled_store = SledUserStore::open(dir.path().join("u")).unwrap();
        let memory = MemoryUserStore::new();
        let stores: [&dyn UserStore; 2] = [&sled_store, &memory];
        for (who, addrs, remove) in &ops {
            let name = format!("u{who}");
            for store in stores {
                if *remove {
                    let _ = store.remove(&name);
                } else {
                    let mut u = user(&name, &format!("{name}@x.com"), Some(&format!("o{who}")));
                    u.aliases = addrs.iter().map(|a| format!("shared{a}@x.com")).collect();
                    let _ = store.put(&u);
                }
            }
        }
        prop_assert_eq!(sled_store.list().unwrap(), memory.list().unwrap());
        for store in stores {
            let all = store.list().unwrap();
            for a in 0..6 {
                let address = format!("shared{a}@x.com");
                let owners: Vec<&str> = all.iter()
                    .filter(|u| u.aliases.contains(&address))
                    .map(|u| u.name.as_str())
                    .collect();
                prop_assert!(owners.len() <= 1);
                prop_assert_eq!(
                    store.find_by_address(&address).unwrap().map(|u| u.name),
                    owners.first().map(|s| s.to_string())
                );
            }
        }
    }
}
