//! The migration from stores the old sled code wrote: complete, interrupted, corrupt.

use super::legacy::SledUserStore;
use super::*;
use crate::{Role, UserOrigin, UserStore};

fn user(name: &str, email: &str, object: Option<&str>) -> LocalUser {
    LocalUser {
        name: name.into(),
        display_name: Some(format!("{name} display")),
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

/// An old store with directory and manual users, aliases, an archive, an admin, a
/// deactivated user, a collision name and a token; returns what it holds.
/// Opens the sled directory once the store dropped just before has let go of its
/// file lock (sled's flusher thread releases it shortly after the last handle).
fn open_when_released(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::yield_now();
            }
            Err(e) => panic!("cannot open {}: {e}", dir.display()),
        }
    }
}

fn old_store(dir: &Path) -> (Vec<LocalUser>, DirectoryToken) {
    let store = SledUserStore::open(dir).unwrap();
    let mut ann = user("john.smith", "john.smith@x.com", Some("o1"));
    ann.aliases = vec!["js@x.com".into(), "john@x.com".into()];
    let mut twin = user("john.smith-2", "john.smith@y.com", Some("o2"));
    twin.enabled = false;
    let mut boss = user("boss", "boss@x.com", None);
    boss.role = Role::Admin;
    boss.display_name = None;
    store
        .put_many(&[ann, twin, boss, user("desk", "desk@x.com", None)])
        .unwrap();
    store.mark_has_archive("john.smith-2").unwrap();
    store.mark_has_archive("desk").unwrap();
    let token = DirectoryToken("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=t".into());
    store.set_directory_token(Some(&token)).unwrap();
    (store.list().unwrap(), token)
}

struct Layout {
    _tmp: tempfile::TempDir,
    legacy: PathBuf,
    db: PathBuf,
}

fn layout() -> Layout {
    let tmp = tempfile::tempdir().unwrap();
    Layout {
        legacy: tmp.path().join("users"),
        db: tmp.path().join("users.db"),
        _tmp: tmp,
    }
}

#[test]
fn every_user_and_the_token_are_migrated_and_the_old_store_is_kept() {
    let l = layout();
    let (users, token) = old_store(&l.legacy);
    assert_eq!(users.len(), 4);
    let (store, report) = SqliteUserStore::open_or_migrate(&l.db, &l.legacy).unwrap();
    let report = report.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert!(report.token_recovered);
    assert_eq!(
        report.recovered_users,
        ["boss", "desk", "john.smith", "john.smith-2"]
    );
    assert_eq!(store.list().unwrap(), users);
    assert_eq!(store.directory_token().unwrap(), Some(token.clone()));
    assert_eq!(
        store.find_by_address("JS@x.com").unwrap().unwrap().name,
        "john.smith"
    );
    assert_eq!(
        store.find_by_object_id("o2").unwrap().unwrap().name,
        "john.smith-2"
    );
    store.integrity_check().unwrap();
    // The old store is renamed, intact, never deleted.
    assert!(!l.legacy.exists());
    assert_eq!(report.old_path, with_suffix(&l.legacy, ".sled-migrated"));
    assert_eq!(
        SledUserStore::open(&report.old_path)
            .unwrap()
            .list()
            .unwrap(),
        users
    );
    // The report is kept in the new store.
    let kept: MigrationReport =
        serde_json::from_str(&store.meta(META_MIGRATION).unwrap().unwrap()).unwrap();
    assert_eq!(kept, report);
    drop(store);
    // Later opens just open.
    let (again, none) = SqliteUserStore::open_or_migrate(&l.db, &l.legacy).unwrap();
    assert!(none.is_none());
    assert_eq!(again.list().unwrap(), users);
    assert_eq!(again.directory_token().unwrap(), Some(token));
}

#[test]
fn an_old_store_that_yields_nobody_is_not_trusted() {
    let l = layout();
    drop(SledUserStore::open(&l.legacy).unwrap());
    let err = SqliteUserStore::open_or_migrate(&l.db, &l.legacy).unwrap_err();
    assert!(err.to_string().contains("move it away"), "{err}");
    assert!(!l.db.exists());
    // Moved away, a new empty store is created.
    std::fs::rename(&l.legacy, with_suffix(&l.legacy, ".empty")).unwrap();
    let (store, report) = SqliteUserStore::open_or_migrate(&l.db, &l.legacy).unwrap();
    assert!(report.is_none());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn an_interrupted_migration_is_done_again_from_the_old_store() {
    let l = layout();
    let (users, _) = old_store(&l.legacy);
    // A crash before the rename left a partial temporary database behind.
    let temporary = with_suffix(&l.db, ".migrating");
    std::fs::write(&temporary, b"partial").unwrap();
    std::fs::write(with_suffix(&temporary, "-journal"), b"partial").unwrap();
    let (store, report) = SqliteUserStore::open_or_migrate(&l.db, &l.legacy).unwrap();
    assert!(report.unwrap().is_complete());
    assert_eq!(store.list().unwrap(), users);
    assert!(!temporary.exists());
}

#[test]
fn a_crash_between_the_renames_is_finished_on_the_next_open() {
    let l = layout();
    let (users, _) = old_store(&l.legacy);
    let (store, _) = SqliteUserStore::open_or_migrate(&l.db, &l.legacy).unwrap();
    drop(store);
    // As if the old directory had not been renamed yet.
    std::fs::rename(with_suffix(&l.legacy, ".sled-migrated"), &l.legacy).unwrap();
    let (store, report) = SqliteUserStore::open_or_migrate(&l.db, &l.legacy).unwrap();
    assert!(report.is_none());
    assert_eq!(store.list().unwrap(), users);
    assert!(!l.legacy.exists());
    assert!(with_suffix(&l.legacy, ".sled-migrated").is_dir());
}

#[test]
fn a_record_that_does_not_decode_is_reported_and_the_rest_migrated() {
    let l = layout();
    let (users, _) = old_store(&l.legacy);
    {
        let db = open_when_released(&l.legacy);
        let tree = db.open_tree("users").unwrap();
        tree.insert("desk", &b"{not json"[..]).unwrap();
        db.flush().unwrap();
    }
    let (store, report) = SqliteUserStore::open_or_migrate(&l.db, &l.legacy).unwrap();
    let report = report.unwrap();
    assert!(!report.is_complete());
    assert_eq!(report.unreadable_records, 1);
    assert_eq!(report.lost_users, ["desk"], "named by the address index");
    assert!(report.problems[0].starts_with("users/desk"), "{report:?}");
    let expected: Vec<LocalUser> = users.into_iter().filter(|u| u.name != "desk").collect();
    assert_eq!(store.list().unwrap(), expected);
    assert!(report.old_path.is_dir(), "the old store is kept");
}

/// What a corrupted old store gives: never an empty store without a word.
fn check_corrupt(corrupt: impl Fn(&Path)) {
    let l = layout();
    let (users, _) = old_store(&l.legacy);
    corrupt(&l.legacy);
    let before = snapshot(&l.legacy);
    match SqliteUserStore::open_or_migrate(&l.db, &l.legacy) {
        Err(err) => {
            assert!(
                matches!(&err, DirectoryError::StoreMigration { old_path, .. } if *old_path == shown(&l.legacy)),
                "{err}"
            );
            assert!(err.to_string().contains("restore"), "{err}");
            assert!(!l.db.exists(), "no new store after a failed migration");
            assert_eq!(snapshot(&l.legacy), before, "the old store is untouched");
        }
        Ok((store, report)) => {
            let report = report.unwrap();
            let got = store.list().unwrap();
            assert!(!got.is_empty(), "{report:?}");
            assert!(got.iter().all(|u| users.contains(u)), "{got:?}");
            if got.len() < users.len() {
                assert!(!report.is_complete(), "{report:?}");
            }
            assert_eq!(
                snapshot(&report.old_path),
                before,
                "the old store is kept as it was"
            );
        }
    }
}

/// Every file of a directory with its content.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out.into_iter()
        .map(|(p, c)| (p.strip_prefix(dir).unwrap_or(&p).to_path_buf(), c))
        .collect()
}

fn garble(path: &Path, from: f64) {
    let mut bytes = std::fs::read(path).unwrap();
    let start = (bytes.len() as f64 * from) as usize;
    for b in bytes.iter_mut().skip(start) {
        *b ^= 0x5a;
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_truncated_old_store_is_never_silently_empty() {
    check_corrupt(|dir| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("db"))
            .unwrap()
            .set_len(0)
            .unwrap();
    });
}

#[test]
fn a_half_truncated_old_store_is_never_silently_empty() {
    check_corrupt(|dir| {
        let db = dir.join("db");
        let len = std::fs::metadata(&db).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&db)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    });
}

#[test]
fn a_garbled_old_store_is_never_silently_empty() {
    check_corrupt(|dir| garble(&dir.join("db"), 0.0));
    check_corrupt(|dir| garble(&dir.join("db"), 0.5));
    check_corrupt(|dir| garble(&dir.join("conf"), 0.0));
}

#[test]
fn an_old_store_without_its_files_is_refused() {
    check_corrupt(|dir| {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::remove_file(path).unwrap();
            }
        }
    });
}
