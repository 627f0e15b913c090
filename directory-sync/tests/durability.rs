//! Durability of the SQLite user store: writers SIGKILLed at random points never lose
//! an acknowledged batch nor leave half of one; a full disk refuses a write with a
//! disk-full error naming the file and loses nothing; a read-only open works on a
//! full disk.
//!
//! The kill test re-invokes this test binary as the writer (an environment variable
//! selects the child role). The full-disk tests mount a small tmpfs (they need root;
//! without it they say why and return).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use directory_sync::{
    DirectoryError, DirectoryToken, DirectoryUser, LocalUser, MemoryDirectorySource, Role,
    SqliteUserStore, SyncOptions, UserOrigin, UserStore, UserType, sync,
};
use rand::{Rng, SeedableRng};

const CHILD_DB: &str = "DIRECTORY_SYNC_KILL_DB";
const CHILD_ROUND: &str = "DIRECTORY_SYNC_KILL_ROUND";
const WRITERS: u32 = 2;
const PER_BATCH: u32 = 10;

fn manual(name: &str) -> LocalUser {
    LocalUser {
        name: name.into(),
        display_name: Some(format!("{name} display")),
        email: Some(format!("{name}@x.com")),
        aliases: vec![format!("{name}.alias@x.com")],
        origin: UserOrigin::Manual,
        enabled: true,
        role: Role::User,
        has_archive: false,
        kind: None,
    }
}

fn batch_names(round: u32, writer: u32, i: u64) -> Vec<String> {
    (0..PER_BATCH)
        .map(|k| format!("r{round}-w{writer}-i{i}-k{k}"))
        .collect()
}

/// The child: writes batches from several handles until killed, printing a line for
/// every batch the store acknowledged. Does nothing in a normal test run.
#[test]
fn kill_child_process_helper() {
    let Ok(db) = std::env::var(CHILD_DB) else {
        return;
    };
    let round: u32 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let threads: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let db = db.clone();
            std::thread::spawn(move || {
                // One handle per writer, as two processes would have.
                let store = SqliteUserStore::open(&db).unwrap();
                for i in 0u64.. {
                    let users: Vec<LocalUser> = batch_names(round, writer, i)
                        .iter()
                        .map(|n| manual(n))
                        .collect();
                    if writer == 0 {
                        // Users and token in one transaction, as a sync writes them.
                        let token = DirectoryToken(format!("r{round}-i{i}"));
                        store.apply_sync(&users, Some(&token)).unwrap();
                    } else {
                        store.put_many(&users).unwrap();
                    }
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {writer} {i}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Acknowledged batches so far, per round and writer: the highest batch number.
type Acks = BTreeMap<(u32, u32), u64>;

fn record(acks: &mut Acks, round: u32, line: &str) -> bool {
    let Some(rest) = line.strip_prefix("ACK ") else {
        return false;
    };
    let parts: Vec<&str> = rest.split(' ').collect();
    let (Some(w), Some(i)) = (
        parts.first().and_then(|w| w.parse().ok()),
        parts.get(1).and_then(|i| i.parse().ok()),
    ) else {
        return false;
    };
    let top = acks.entry((round, w)).or_insert(0);
    *top = (*top).max(i);
    true
}

/// Every acknowledged batch is there, every batch present is whole, and the token
/// belongs to a batch whose users are there.
fn check_after_kill(store: &SqliteUserStore, acks: &Acks, round: u32) {
    store.integrity_check().unwrap();
    let names: BTreeSet<String> = store.list().unwrap().into_iter().map(|u| u.name).collect();
    for (&(r, w), &top) in acks {
        for i in 0..=top {
            for name in batch_names(r, w, i) {
                assert!(names.contains(&name), "round {round}: lost {name}");
            }
        }
        // A batch past the acknowledged ones is whole or absent.
        for i in top + 1..top + 3 {
            let present = batch_names(r, w, i)
                .iter()
                .filter(|n| names.contains(*n))
                .count();
            assert!(
                present == 0 || present == PER_BATCH as usize,
                "round {round}: batch {r}/{w}/{i} half there"
            );
        }
    }
    let Some(token) = store.directory_token().unwrap() else {
        assert!(
            !acks.keys().any(|(_, w)| *w == 0),
            "round {round}: acknowledged token lost"
        );
        return;
    };
    let (r, i) = token.0.strip_prefix('r').unwrap().split_once("-i").unwrap();
    let (r, i): (u32, u64) = (r.parse().unwrap(), i.parse().unwrap());
    // Never behind the last acknowledged sync batch.
    let last = acks
        .iter()
        .filter(|((_, w), _)| *w == 0)
        .map(|(&(r, _), &i)| (r, i))
        .max()
        .unwrap_or((0, 0));
    assert!(
        (r, i) >= last,
        "round {round}: token {token:?} behind {last:?}"
    );
    for name in batch_names(r, 0, i) {
        assert!(
            names.contains(&name),
            "token {token:?} without its user {name}"
        );
    }
    let user = store.find_by_address(&format!("{}.alias@x.com", batch_names(r, 0, i)[0]));
    assert!(
        user.unwrap().is_some(),
        "addresses committed with the users"
    );
}

#[test]
fn sigkilled_writers_never_lose_an_acknowledged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("users.db");
    let exe = std::env::current_exe().unwrap();
    let seed: u64 = std::env::var("DIRECTORY_SYNC_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x05EE_D5EE);
    eprintln!("kill test seed {seed} (DIRECTORY_SYNC_KILL_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acks = Acks::new();
    let err_path = dir.path().join("child.err");
    let journal = dir.path().join("users.db-journal");
    let mut torn = 0;
    for round in 0..24u32 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kill_child_process_helper",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DB, &db)
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let kill_after = rng.gen_range(1..40);
        let mut seen = 0;
        while seen < kill_after {
            let Some(line) = lines.next() else {
                let status = child.wait().unwrap();
                let err = std::fs::read_to_string(&err_path).unwrap();
                panic!("round {round}: child ended early ({status}): {err}");
            };
            if record(&mut acks, round, &line.unwrap()) {
                seen += 1;
            }
        }
        // A random point inside the next batches, not just after an acknowledgement
        // (a delay to spread the kill, not to wait for anything).
        std::thread::sleep(std::time::Duration::from_micros(rng.gen_range(0..20_000)));
        child.kill().unwrap();
        // Lines printed before the kill belong to batches that were acknowledged.
        for line in lines.map_while(Result::ok) {
            record(&mut acks, round, &line);
        }
        child.wait().unwrap();
        // A journal left behind: killed inside a transaction, rolled back on open.
        torn += u32::from(journal.exists());
        // Read-only first (as `users list`): it must cope with the hot journal too.
        let reader = SqliteUserStore::open_read_only(&db).unwrap();
        check_after_kill(&reader, &acks, round);
        drop(reader);
        let store = SqliteUserStore::open(&db).unwrap();
        check_after_kill(&store, &acks, round);
    }
    eprintln!("{torn} of 24 kills landed inside a transaction");
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one of `size` bytes, or says why not.
    fn mount(size: u64) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self { dir }),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs (root needed): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem to the last byte; returns the filler file.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        for chunk in [64 * 1024, 4096, 512, 1] {
            let buf = vec![0u8; chunk];
            while file.write_all(&buf).is_ok() {}
        }
        let _ = file.sync_all();
        // Not one more byte fits.
        let mut probe = std::fs::File::create(self.path().join("probe")).unwrap();
        assert!(
            probe
                .write_all(&[0])
                .and_then(|()| probe.sync_all())
                .is_err()
        );
        std::fs::remove_file(self.path().join("probe")).unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn member(id: u32) -> DirectoryUser {
    let mail = format!("user{id}@x.com");
    DirectoryUser {
        id: format!("o{id}"),
        user_principal_name: mail.clone(),
        display_name: Some(format!("User {id} with a long enough display name")),
        mail: Some(mail.clone()),
        proxy_addresses: vec![format!("SMTP:{mail}"), format!("smtp:alias{id}@x.com")],
        account_enabled: true,
        user_type: UserType::Member,
    }
}

#[test]
fn a_read_only_open_works_on_a_full_disk() {
    let Some(fs) = Tmpfs::mount(4 << 20) else {
        return;
    };
    let db = fs.path().join("users.db");
    {
        let store = SqliteUserStore::open(&db).unwrap();
        store.put_many(&[manual("ann"), manual("bob")]).unwrap();
        store
            .set_directory_token(Some(&DirectoryToken("t".into())))
            .unwrap();
    }
    fs.fill();
    let store = SqliteUserStore::open_read_only(&db).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
    assert_eq!(
        store
            .find_by_address("bob.alias@x.com")
            .unwrap()
            .unwrap()
            .name,
        "bob"
    );
    assert_eq!(
        store.directory_token().unwrap(),
        Some(DirectoryToken("t".into()))
    );
    store.integrity_check().unwrap();
}

#[tokio::test]
async fn a_full_disk_refuses_a_sync_names_the_file_and_loses_nothing() {
    let Some(fs) = Tmpfs::mount(4 << 20) else {
        return;
    };
    let db = fs.path().join("users.db");
    let store = SqliteUserStore::open(&db).unwrap();
    store.put(&manual("desk")).unwrap();
    let dir = MemoryDirectorySource::with_users((0..20).map(member));
    sync(&dir, &store, &SyncOptions::default()).await.unwrap();
    let before = store.list().unwrap();
    let token = store.directory_token().unwrap();
    assert_eq!(before.len(), 21);

    // Many new users while the disk is full.
    for id in 20..2_000 {
        dir.upsert(member(id));
    }
    let filler = fs.fill();
    let err = sync(&dir, &store, &SyncOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, DirectoryError::StoreFull { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&db.display().to_string()), "{message}");
    assert!(message.contains("disk is full"), "{message}");
    // Nothing half-written, the token unchanged, the store sound, even a manual add
    // refused cleanly.
    assert_eq!(store.list().unwrap(), before);
    assert_eq!(store.directory_token().unwrap(), token);
    store.integrity_check().unwrap();
    let err = store
        .put_many(
            &(0..200)
                .map(|k| manual(&format!("m{k}")))
                .collect::<Vec<_>>(),
        )
        .unwrap_err();
    assert!(matches!(err, DirectoryError::StoreFull { .. }), "{err}");
    drop(store);

    // Room again: everything is there and the next sync completes.
    std::fs::remove_file(filler).unwrap();
    let store = SqliteUserStore::open(&db).unwrap();
    store.integrity_check().unwrap();
    assert_eq!(store.list().unwrap(), before);
    let report = sync(&dir, &store, &SyncOptions::default()).await.unwrap();
    assert_eq!(report.created.len(), 1_980);
    assert_eq!(store.list().unwrap().len(), 2_001);
    assert!(store.get("desk").unwrap().is_some());
}
