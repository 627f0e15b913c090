//! The user store contract, checked on both implementations (every rule test runs
//! against [`MemoryUserStore`] and [`SqliteUserStore`]), and the SQLite store's
//! persistence: reopening, locking, corruption, versions, permissions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use directory_sync::{
    DirectoryError, DirectoryToken, LocalUser, MailboxKind, MemoryUserStore, Role, SqliteUserStore,
    UserOrigin, UserStore,
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
        kind: None,
    }
}

/// Runs contract `check` on a fresh memory store and a fresh SQLite store (then checks
/// the SQLite file's integrity and that it reopens with the same content).
fn on_both(check: impl Fn(&dyn UserStore)) {
    check(&MemoryUserStore::new());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    let store = SqliteUserStore::open(&path).unwrap();
    check(&store);
    store.integrity_check().unwrap();
    let (users, token) = (store.list().unwrap(), store.directory_token().unwrap());
    drop(store);
    let reopened = SqliteUserStore::open_read_only(&path).unwrap();
    assert_eq!(reopened.list().unwrap(), users);
    assert_eq!(reopened.directory_token().unwrap(), token);
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
fn a_sync_batch_and_its_token_commit_together() {
    on_both(|store| {
        let token = DirectoryToken("t1".into());
        store
            .apply_sync(&[user("ann", "ann@x.com", Some("o1"))], Some(&token))
            .unwrap();
        assert_eq!(store.directory_token().unwrap(), Some(token.clone()));
        // A refused batch leaves the token where it was.
        let err = store
            .apply_sync(
                &[user("bob", "ann@x.com", Some("o2"))],
                Some(&DirectoryToken("t2".into())),
            )
            .unwrap_err();
        assert!(matches!(err, DirectoryError::AddressTaken { .. }), "{err}");
        assert_eq!(store.directory_token().unwrap(), Some(token));
        assert!(store.get("bob").unwrap().is_none());
    });
}

#[test]
fn nothing_to_change_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteUserStore::open(dir.path().join("users.db")).unwrap();
    let memory = MemoryUserStore::new();
    let stores: [(&dyn UserStore, &dyn Fn() -> u64); 2] = [
        (&sqlite, &|| sqlite.write_count()),
        (&memory, &|| memory.write_count()),
    ];
    for (store, writes) in stores {
        let token = DirectoryToken("t".into());
        store
            .apply_sync(&[user("ann", "ann@x.com", None)], Some(&token))
            .unwrap();
        assert_eq!(writes(), 1, "users and token: one write");
        store.apply_sync(&[], Some(&token)).unwrap();
        store.set_directory_token(Some(&token)).unwrap();
        store.put_many(&[]).unwrap();
        store.mark_has_archive("ann").unwrap();
        store.mark_has_archive("ann").unwrap();
        assert_eq!(writes(), 2, "only the first mark writes");
    }
}

fn path_in(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("users.db")
}

#[test]
fn the_sqlite_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    let token = DirectoryToken("link".into());
    {
        let store = SqliteUserStore::open(&path).unwrap();
        let mut ann = user("ann", "ann@x.com", Some("o1"));
        ann.aliases = vec!["a@x.com".into()];
        store
            .put_many(&[ann, user("bob", "bob@x.com", None)])
            .unwrap();
        store.mark_has_archive("bob").unwrap();
        store.set_directory_token(Some(&token)).unwrap();
        // Several handles (and processes) may have the store open at once.
        let other = SqliteUserStore::open(&path).unwrap();
        assert_eq!(other.list().unwrap().len(), 2);
    }
    let store = SqliteUserStore::open(&path).unwrap();
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
fn the_database_file_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    let store = SqliteUserStore::open(&path).unwrap();
    store.put(&user("ann", "ann@x.com", None)).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // An existing file with loose permissions is tightened on open.
    drop(store);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(SqliteUserStore::open(&path).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_writer_held_up_by_another_process_fails_with_store_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    let store = SqliteUserStore::open(&path).unwrap();
    store
        .set_busy_timeout(std::time::Duration::from_millis(50))
        .unwrap();
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    let err = store.put(&user("ann", "ann@x.com", None)).unwrap_err();
    assert!(matches!(err, DirectoryError::StoreLocked { .. }), "{err}");
    drop(tx);
    store.put(&user("ann", "ann@x.com", None)).unwrap();
}

#[test]
fn a_read_only_store_reads_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    SqliteUserStore::open(&path)
        .unwrap()
        .put(&user("ann", "ann@x.com", None))
        .unwrap();
    let store = SqliteUserStore::open_read_only(&path).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    let err = store.put(&user("bob", "bob@x.com", None)).unwrap_err();
    assert!(err.to_string().contains("read"), "{err}");
    // A missing file is not created.
    let missing = dir.path().join("none.db");
    assert!(SqliteUserStore::open_read_only(&missing).is_err());
    assert!(!missing.exists());
    // An empty file (created, never initialised) holds no users.
    std::fs::write(&missing, b"").unwrap();
    let empty = SqliteUserStore::open_read_only(&missing).unwrap();
    assert!(empty.list().unwrap().is_empty());
    assert_eq!(empty.directory_token().unwrap(), None);
}

#[test]
fn a_corrupt_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    let store = SqliteUserStore::open(&path).unwrap();
    store.put(&user("ann", "ann@x.com", None)).unwrap();
    store.put(&user("bob", "bob@x.com", None)).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE users SET role = 'wizard' WHERE name = 'bob'", [])
        .unwrap();
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
fn a_file_that_is_no_database_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = SqliteUserStore::open(&path).unwrap_err();
    assert!(matches!(err, DirectoryError::StoreCorrupt { .. }), "{err}");
    let err = SqliteUserStore::open_read_only(&path).unwrap_err();
    assert!(matches!(err, DirectoryError::StoreCorrupt { .. }), "{err}");
}

#[test]
fn mailbox_kinds_are_kept_and_changed() {
    on_both(|store| {
        let mut users: Vec<LocalUser> = [None]
            .into_iter()
            .chain(MailboxKind::ALL.map(Some))
            .enumerate()
            .map(|(i, kind)| {
                let mut u = user(
                    &format!("u{i}"),
                    &format!("u{i}@x.com"),
                    Some(&format!("o{i}")),
                );
                u.kind = kind;
                u
            })
            .collect();
        store.put_many(&users).unwrap();
        assert_eq!(store.list().unwrap(), users);
        assert_eq!(
            store.get("u0").unwrap().unwrap().mailbox_kind(),
            MailboxKind::User
        );
        // A converted mailbox: user -> shared.
        users[1].kind = Some(MailboxKind::Shared);
        store.put(&users[1]).unwrap();
        assert_eq!(
            store.find_by_object_id("o1").unwrap().unwrap().kind,
            Some(MailboxKind::Shared)
        );
    });
}

/// The schema of the version before mailbox kinds (version 1), as that version created it.
const SCHEMA_V1: &str = "
CREATE TABLE users (
    name         TEXT PRIMARY KEY NOT NULL,
    display_name TEXT,
    origin       TEXT NOT NULL CHECK (origin IN ('directory', 'manual')),
    object_id    TEXT UNIQUE,
    enabled      INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    role         TEXT NOT NULL,
    has_archive  INTEGER NOT NULL CHECK (has_archive IN (0, 1)),
    CHECK ((origin = 'directory') = (object_id IS NOT NULL))
) STRICT;
CREATE TABLE addresses (
    address    TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    is_primary INTEGER NOT NULL CHECK (is_primary IN (0, 1))
) STRICT;
CREATE INDEX addresses_by_name ON addresses (name);
CREATE UNIQUE INDEX one_primary_address ON addresses (name) WHERE is_primary = 1;
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
INSERT INTO users VALUES ('ann', 'Ann', 'directory', 'o1', 1, 'user', 1);
INSERT INTO addresses VALUES ('ann@x.com', 'ann', 1), ('a@x.com', 'ann', 0);
INSERT INTO meta VALUES ('directory_token', 'link');
PRAGMA user_version = 1;
";

#[test]
fn a_store_of_the_version_before_kinds_is_read_and_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(SCHEMA_V1)
        .unwrap();
    let ann = LocalUser {
        display_name: Some("Ann".into()),
        aliases: vec!["a@x.com".into()],
        has_archive: true,
        ..user("ann", "ann@x.com", Some("o1"))
    };
    // Read-only: read as it is, nothing written (still version 1).
    let read_only = SqliteUserStore::open_read_only(&path).unwrap();
    assert_eq!(read_only.list().unwrap(), vec![ann.clone()]);
    assert_eq!(read_only.get("ann").unwrap(), Some(ann.clone()));
    drop(read_only);
    let version = |path: &std::path::Path| -> u32 {
        rusqlite::Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    };
    assert_eq!(version(&path), 1);
    // Opened for writing: upgraded in place, the users and the token kept, unclassified.
    let store = SqliteUserStore::open(&path).unwrap();
    assert_eq!(version(&path), 2);
    assert_eq!(store.write_count(), 0, "an upgrade is no write of users");
    assert_eq!(store.list().unwrap(), vec![ann.clone()]);
    assert_eq!(
        store.directory_token().unwrap(),
        Some(DirectoryToken("link".into()))
    );
    let shared = LocalUser {
        kind: Some(MailboxKind::Shared),
        ..ann
    };
    store.put(&shared).unwrap();
    store.integrity_check().unwrap();
    drop(store);
    let reopened = SqliteUserStore::open(&path).unwrap();
    assert_eq!(reopened.get("ann").unwrap(), Some(shared));
}

#[test]
fn a_store_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    drop(SqliteUserStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    for err in [
        SqliteUserStore::open(&path).unwrap_err(),
        SqliteUserStore::open_read_only(&path).unwrap_err(),
    ] {
        assert!(
            matches!(err, DirectoryError::StoreVersion { found: 99, .. }),
            "{err}"
        );
    }
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
        let sqlite = SqliteUserStore::open(dir.path().join("u.db")).unwrap();
        let memory = MemoryUserStore::new();
        let stores: [&dyn UserStore; 2] = [&sqlite, &memory];
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
        prop_assert_eq!(sqlite.list().unwrap(), memory.list().unwrap());
        sqlite.integrity_check().unwrap();
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
