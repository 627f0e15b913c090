//! A full disk or an I/O error at every write and fsync of an append (the record
//! and the anchor): the append fails, records nothing, and the log stays valid and
//! appendable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use archive_store::io::{Fault, FaultyIo};
use audit_log::{Action, AuditEntry, AuditSink, FileAuditLog, FileOptions, ListQuery, Target};

fn entry(i: u64) -> AuditEntry {
    AuditEntry::new(
        format!("actor{i}"),
        Action::ContentExport,
        Target::user("alice"),
    )
}

/// Appends until operation `n` fails with `fault`; checks what is left.
fn check(n: u64, fault: Fault) {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = FileAuditLog::open(dir.path(), FileOptions::default()).unwrap();
        for i in 1..=3 {
            log.append(entry(i)).unwrap();
        }
    }
    let io = Arc::new(FaultyIo::failing(n, fault));
    let log = FileAuditLog::open(
        dir.path(),
        FileOptions {
            anchor_every: 2,
            io: io.clone(),
            ..FileOptions::default()
        },
    )
    .unwrap();
    let mut acknowledged = vec![1, 2, 3];
    let mut failed = 0;
    for i in 4..=12 {
        match log.append(entry(i)) {
            Ok(event) => acknowledged.push(event.seq),
            Err(e) => {
                failed += 1;
                let text = e.to_string();
                assert!(text.contains("audit.log"), "op {n} {fault:?}: {text}");
                if fault == Fault::DiskFull {
                    assert!(e.is_disk_full() || text.contains("sync"), "{text}");
                }
            }
        }
    }
    assert!(io.fired(), "op {n} was never reached ({} ops)", io.ops());
    // A failed anchor write does not fail the append; a failed record write does.
    assert!(failed <= 1, "op {n} {fault:?}: {failed} failures");
    for reader in [
        log.verify().unwrap(),
        FileAuditLog::open(dir.path(), FileOptions::default())
            .unwrap()
            .verify()
            .unwrap(),
    ] {
        assert!(reader.ok, "op {n} {fault:?}: {reader:#?}");
        assert_eq!(reader.unfinished_bytes, 0, "op {n} {fault:?}");
        assert_eq!(reader.events, acknowledged.len() as u64, "op {n} {fault:?}");
    }
    let seqs: Vec<u64> = log
        .list(&ListQuery::default())
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    let expected: Vec<u64> = (1..=acknowledged.len() as u64).collect();
    assert_eq!(seqs, expected, "op {n} {fault:?}");
    assert_eq!(acknowledged, expected, "op {n} {fault:?}");
}

#[test]
fn a_failed_write_or_fsync_at_any_point_leaves_the_log_valid() {
    // 9 appends: 2 operations each, and an anchor (2 writes/syncs + a directory
    // sync) every other event: about 30 operations.
    for n in 1..=30 {
        for fault in [Fault::DiskFull, Fault::Eio, Fault::ShortWrite] {
            check(n, fault);
        }
    }
}
