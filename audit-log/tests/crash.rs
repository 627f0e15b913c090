//! Crash safety: two child processes (this test binary re-invoked with an
//! environment variable) append to one log at the same time and print a line for
//! every append that returned; the parent kills both with SIGKILL at random
//! points, then checks that the chain verifies and holds every acknowledged event.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use audit_log::{Action, AuditEntry, AuditSink, FileAuditLog, FileOptions, ListQuery, Target};
use rand::{Rng, SeedableRng};

const CHILD_DIR: &str = "AUDIT_LOG_CRASH_DIR";
const CHILD_NAME: &str = "AUDIT_LOG_CRASH_NAME";
const ROUNDS: u64 = 20;

/// The child: appends until killed. Does nothing in a normal test run.
#[test]
fn crash_child_process_helper() {
    let (Ok(dir), Ok(name)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_NAME)) else {
        return;
    };
    let options = FileOptions {
        anchor_every: 5,
        ..FileOptions::default()
    };
    let log = FileAuditLog::open(std::path::Path::new(&dir), options).unwrap();
    let mut out = std::io::stdout();
    for i in 0.. {
        let actor = format!("{name}-{i}");
        let entry = AuditEntry::new(actor.clone(), Action::ContentShow, Target::user("victim"))
            .detail("padding", "x".repeat(i % 700));
        let event = log.append(entry).unwrap();
        writeln!(out, "ACK {} {actor}", event.seq).unwrap();
        out.flush().unwrap();
    }
}

fn spawn(dir: &std::path::Path, name: &str) -> (Child, std::io::Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_process_helper",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_NAME, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

fn ack(line: &str, acknowledged: &mut BTreeMap<u64, String>) {
    if let Some(rest) = line.strip_prefix("ACK ")
        && let Some((seq, actor)) = rest.split_once(' ')
        && let Ok(seq) = seq.parse::<u64>()
    {
        assert!(
            acknowledged.insert(seq, actor.to_string()).is_none(),
            "seq {seq} twice"
        );
    }
}

#[test]
fn sigkilled_appenders_never_lose_an_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xA0D17);
    let mut acknowledged: BTreeMap<u64, String> = BTreeMap::new();
    let mut torn = 0;
    for round in 0..ROUNDS {
        let (mut a, mut a_lines) = spawn(dir.path(), &format!("r{round}a"));
        let (mut b, b_lines) = spawn(dir.path(), &format!("r{round}b"));
        let kill_after = rng.gen_range(1..80);
        for _ in 0..kill_after {
            let line = a_lines.next().expect("child a ended early").unwrap();
            ack(&line, &mut acknowledged);
        }
        a.kill().unwrap();
        b.kill().unwrap();
        // Lines printed before the kill belong to appends that returned.
        for line in a_lines.chain(b_lines).map_while(Result::ok) {
            ack(&line, &mut acknowledged);
        }
        a.wait().unwrap();
        b.wait().unwrap();

        let log = FileAuditLog::open(dir.path(), FileOptions::default()).unwrap();
        let report = log.verify().unwrap();
        assert!(report.ok, "round {round}: {report:#?}");
        if report.unfinished_bytes > 0 {
            torn += 1;
        }
        let events: BTreeMap<u64, String> = log
            .list(&ListQuery::default())
            .unwrap()
            .into_iter()
            .map(|e| (e.seq, e.actor))
            .collect();
        for (seq, actor) in &acknowledged {
            assert_eq!(events.get(seq), Some(actor), "round {round}: event {seq}");
        }
        // The next append continues the chain (cutting any torn tail).
        let next = log
            .append(AuditEntry::new(
                "parent",
                Action::AuditRead,
                Target::default(),
            ))
            .unwrap();
        acknowledged.insert(next.seq, "parent".into());
        assert_eq!(next.seq, report.head.seq + 1);
        assert!(log.verify().unwrap().ok);
    }
    assert!(acknowledged.len() as u64 >= ROUNDS * 2);
    println!(
        "{} acknowledged events over {ROUNDS} rounds of 2 killed appenders; {torn} torn tails",
        acknowledged.len()
    );
}
