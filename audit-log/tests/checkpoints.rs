//! Signed checkpoints: made every N events and on demand, checked by `verify`
//! (a changed checkpoint, another key, a rewritten or cut log are each named), the
//! key kept private (a key file others may read is refused, naming it), and carried
//! by the export.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use audit_log::{Action, AuditEntry, AuditError, AuditSink, FileAuditLog, FileOptions, Target};

fn entry(i: u64) -> AuditEntry {
    AuditEntry::new(
        format!("actor{i}"),
        Action::ContentShow,
        Target::user("alice"),
    )
    .detail("n", i.to_string())
}

/// A log of `n` events in `dir`, checkpointed every `every`.
fn log_of(dir: &Path, n: u64, every: u64) -> FileAuditLog {
    let options = FileOptions {
        checkpoint_every: every,
        ..FileOptions::default()
    };
    let log = FileAuditLog::open(dir, options).unwrap();
    for i in 1..=n {
        log.append(entry(i)).unwrap();
    }
    log
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn checkpoints_are_signed_every_n_events_and_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of(dir.path(), 25, 10);
    let seqs: Vec<u64> = log.checkpoints().unwrap().iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [10, 20]);
    let now = log.checkpoint().unwrap();
    assert_eq!(now.seq, 25);
    assert_eq!(mode(&log.key_path()), 0o600);
    assert_eq!(mode(&log.checkpoints_path()), 0o600);
    let report = log.verify().unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.checkpoints, 3);
    assert_eq!(report.public_key, log.public_key().unwrap());
    assert_eq!(now.public_key, report.public_key.unwrap());
    // A second process (another handle) goes on with the same key and schedule.
    let again = log_of(dir.path(), 0, 10);
    for i in 26..=31 {
        again.append(entry(i)).unwrap();
    }
    let seqs: Vec<u64> = again.checkpoints().unwrap().iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [10, 20, 25]);
    for i in 32..=35 {
        again.append(entry(i)).unwrap();
    }
    let last = again.checkpoints().unwrap().pop().unwrap();
    assert_eq!((last.seq, last.public_key), (35, now.public_key));
}

/// Builds a checkpointed log, applies `damage` to its directory, and checks that
/// `verify` names checkpoint `index` with a reason containing `reason`.
fn check(damage: impl FnOnce(&Path), index: u64, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of(dir.path(), 30, 10);
    assert!(log.verify().unwrap().ok);
    damage(dir.path());
    let report = log.verify().unwrap();
    assert!(!report.ok, "{reason}: {report:#?}");
    let bad = report.first_bad_checkpoint.expect(reason);
    assert_eq!(bad.index, index, "{reason}: {bad:?}");
    assert!(bad.reason.contains(reason), "{reason}: {bad:?}");
}

fn edit_checkpoints(dir: &Path, edit: impl FnOnce(String) -> String) {
    let path = dir.join("checkpoints");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

#[test]
fn verify_names_the_first_bad_checkpoint() {
    // The second checkpoint claims another event.
    check(
        |dir| edit_checkpoints(dir, |t| t.replacen("\"seq\":20", "\"seq\":21", 1)),
        2,
        "signature does not match",
    );
    // One hex digit of the first signature changed.
    check(
        |dir| {
            edit_checkpoints(dir, |t| {
                let at = t.find("\"signature\":\"").unwrap() + 13;
                let mut bytes = t.into_bytes();
                bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
                String::from_utf8(bytes).unwrap()
            })
        },
        1,
        "signature",
    );
    // A line that is not a checkpoint.
    check(
        |dir| edit_checkpoints(dir, |t| t.replacen("{\"seq\":10", "{\"sq\":10", 1)),
        1,
        "not a checkpoint",
    );
    // Another key in place of the log's.
    check(
        |dir| std::fs::write(dir.join("checkpoint.key"), format!("{}\n", "11".repeat(32))).unwrap(),
        1,
        "another key",
    );
    // The key removed.
    check(
        |dir| std::fs::remove_file(dir.join("checkpoint.key")).unwrap(),
        1,
        "checkpoint.key is missing",
    );
    // Events cut off the end, anchor and all.
    check(
        |dir| {
            let path = dir.join("audit.log");
            let text = std::fs::read_to_string(&path).unwrap();
            let kept: String = text.split_inclusive('\n').take(15).collect();
            std::fs::write(&path, kept).unwrap();
            let _ = std::fs::remove_file(dir.join("audit.head"));
        },
        2,
        "events were cut off",
    );
    // The whole log rewritten by someone without the key (a valid chain of other
    // events): the first signed event differs.
    check(
        |dir| {
            let other = tempfile::tempdir().unwrap();
            let forged = FileAuditLog::open(other.path(), FileOptions::default()).unwrap();
            for i in 1..=30 {
                forged
                    .append(AuditEntry::new(
                        "nobody",
                        Action::UserAdd,
                        Target::user(format!("u{i}")),
                    ))
                    .unwrap();
            }
            std::fs::copy(other.path().join("audit.log"), dir.join("audit.log")).unwrap();
            let _ = std::fs::remove_file(dir.join("audit.head"));
        },
        1,
        "the log was rewritten",
    );
}

#[test]
fn a_key_file_others_may_read_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of(dir.path(), 3, 0);
    log.checkpoint().unwrap();
    let key = log.key_path();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    for error in [log.checkpoint().unwrap_err(), log.verify().unwrap_err()] {
        assert!(
            matches!(error, AuditError::KeyExposed { mode: 0o644, .. }),
            "{error}"
        );
        let text = error.to_string();
        assert!(
            text.contains(&key.display().to_string()) && text.contains("644"),
            "{text}"
        );
    }
    // Appends go on (the event matters more than its checkpoint).
    log.append(entry(4)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(log.verify().unwrap().ok);
}

#[test]
fn a_torn_checkpoint_is_not_a_checkpoint_and_the_next_one_cuts_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of(dir.path(), 12, 10);
    let path = log.checkpoints_path();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"seq\":12,\"ha");
    std::fs::write(&path, &bytes).unwrap();
    let report = log.verify().unwrap();
    assert!(report.ok && report.checkpoints == 1, "{report:#?}");
    log.checkpoint().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.ends_with('\n'));
    assert!(log.verify().unwrap().ok);
}

#[test]
fn the_export_carries_the_checkpoints_after_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of(dir.path(), 20, 10);
    let mut out = Vec::new();
    assert_eq!(log.export(&mut out).unwrap(), 20);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 22);
    assert!(lines[..20].iter().all(|l| l.get("seq").is_some()));
    let signed: Vec<u64> = lines[20..]
        .iter()
        .map(|l| l["checkpoint"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(signed, [10, 20]);
    // What an auditor checks elsewhere: the signature with the noted public key, and
    // the signed hash against the BLAKE3 of the exported event line.
    let checkpoint: audit_log::Checkpoint =
        serde_json::from_value(lines[21]["checkpoint"].clone()).unwrap();
    let public = log.public_key().unwrap().unwrap();
    assert_eq!(checkpoint.check_signature(&public), Ok(()));
    let line20 = text.lines().nth(19).unwrap();
    assert_eq!(
        checkpoint.hash,
        blake3::hash(line20.as_bytes()).to_hex().to_string()
    );
}
