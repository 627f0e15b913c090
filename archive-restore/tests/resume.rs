//! A restore SIGKILLed at random points and resumed ends with every message exactly once
//! in the target. The emulator lives in this test process (so it outlives the kills); the
//! restore runs in a child process (this test binary re-invoked with an environment
//! variable) through the Graph writer over real HTTP. Each kill waits for an observable
//! event, in turn: the emulator having received a seeded number of further requests, an
//! item marked incomplete appearing in the target (a kill between a create and its last
//! attachment), the child having reported a seeded number of messages restored.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod harness;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use archive_restore::{RestoreEvent, RestoreOptions, restore};
use archive_store::DiskArchiveStore;
use harness::{Corpus, Mail, Tenant};
use m365_emulator::Emulator;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Names the child's job file; unset in a normal test run.
const CHILD: &str = "ARCHIVE_RESTORE_RESUME_CHILD";
/// Kills before the run that may finish.
const KILLS: usize = 12;
/// Longest a child may take.
const CHILD_DEADLINE: Duration = Duration::from_secs(180);

/// What the child restores, and where.
#[derive(Debug, Serialize, Deserialize)]
struct ChildJob {
    tenant: Tenant,
    archive: PathBuf,
    mailbox: String,
}

/// The child: restores the whole archive into the mailbox, one line per event, the
/// report last. Does nothing in a normal test run.
#[tokio::test]
async fn resume_child_process_helper() {
    let Ok(job) = std::env::var(CHILD) else {
        return;
    };
    let job: ChildJob = serde_json::from_slice(&std::fs::read(job).unwrap()).unwrap();
    let graph = job.tenant.graph(&job.tenant.graph, harness::options());
    let store = Arc::new(DiskArchiveStore::open(&job.archive, Default::default()).unwrap());
    let print = |e: &RestoreEvent| {
        let line = match e {
            RestoreEvent::Restored { id, .. } => format!("EVENT restored {id}"),
            RestoreEvent::Skipped { id } => format!("EVENT skipped {id}"),
            RestoreEvent::Failed { id, error } => format!("EVENT failed {id} {error}"),
            other => format!("EVENT {other:?}"),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    let report = restore(
        store,
        &graph,
        &harness::request(&job.mailbox),
        RestoreOptions::default(),
        &print,
    )
    .await
    .unwrap();
    println!("REPORT {}", serde_json::to_string(&report).unwrap());
}

/// A running child and the lines it printed.
struct Child {
    process: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
    stderr: PathBuf,
    started: Instant,
}

impl Child {
    fn spawn(job: &std::path::Path, stderr: PathBuf) -> Child {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "resume_child_process_helper",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD, job)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = process.stdout.take().unwrap();
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            })
        };
        Child {
            process,
            lines,
            reader,
            stderr,
            started: Instant::now(),
        }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.process.try_wait().unwrap();
        if status.is_none() && self.started.elapsed() > CHILD_DEADLINE {
            self.process.kill().unwrap();
            panic!("the child took over {CHILD_DEADLINE:?}: {}", self.stderr());
        }
        status
    }

    /// Messages the child reported restored so far.
    fn restored(&self) -> usize {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.starts_with("EVENT restored"))
            .count()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGKILLs the child (when still running) and answers what it printed.
    fn kill(mut self) -> Vec<String> {
        // `Child::kill` sends SIGKILL on Unix.
        let _ = self.process.kill();
        self.process.wait().unwrap();
        self.reader.join().unwrap();
        self.lines.lock().unwrap().clone()
    }

    /// The report (`archive restore --json`) of a child that ran to its end.
    fn report(self, status: ExitStatus) -> serde_json::Value {
        let stderr = self.stderr();
        self.reader.join().unwrap();
        let lines = self.lines.lock().unwrap().clone();
        assert!(
            status.success(),
            "child failed ({status}): {lines:?}\n{stderr}"
        );
        let Some(json) = lines.iter().find_map(|l| l.strip_prefix("REPORT ")) else {
            panic!("no report: {lines:?}\n{stderr}");
        };
        serde_json::from_str(json).unwrap()
    }
}

/// When to kill a child.
#[derive(Debug)]
enum Trigger {
    /// Once the emulator has received this many requests in all.
    Requests(u64),
    /// Once an item marked incomplete that is not one of these appears in the target.
    NewIncomplete(BTreeSet<String>),
    /// Once the child reported this many messages restored.
    Restored(usize),
}

/// Waits for `trigger`, watching the emulator; `false` when the child ended first.
async fn reached(emu: &Emulator, mailbox: &str, child: &mut Child, trigger: &Trigger) -> bool {
    loop {
        if child.exited().is_some() {
            return false;
        }
        let hit = match trigger {
            Trigger::Requests(n) => emu.stats().await.requests_total >= *n,
            Trigger::NewIncomplete(known) => harness::incomplete_in(emu, mailbox)
                .iter()
                .any(|id| !known.contains(id)),
            Trigger::Restored(n) => child.restored() >= *n,
        };
        if hit {
            return true;
        }
        // Polling the emulator's state: the condition, not the pause, is what is waited for.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// 60 messages: most fit one create (plain, or with a small attachment inside it); six
/// carry a 4.5 MB attachment (an upload session in two chunks), six two 1.6 MB ones (one
/// POST each after the create): those are created marked incomplete first.
fn mails() -> Vec<Mail> {
    (0..60)
        .map(|n| {
            let folder = if n % 3 == 0 {
                "Inbox/Projects"
            } else {
                "Inbox"
            };
            let seed = n as u64 * 7 + 1;
            let attachments = match n % 10 {
                3 => vec![(format!("big-{n}.bin"), harness::blob(4_500_000, seed))],
                7 => vec![
                    (format!("half-{n}-a.bin"), harness::blob(1_600_000, seed)),
                    (
                        format!("half-{n}-b.bin"),
                        harness::blob(1_600_000, seed + 1),
                    ),
                ],
                1 | 6 => vec![(format!("small-{n}.pdf"), harness::blob(20_000, seed))],
                _ => vec![],
            };
            Mail::new(n, folder, attachments)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_at_random_points_ends_with_every_message_exactly_once() {
    let emu = harness::emulator(1.0).await;
    // Every run sends again what the killed one had not finished: keep Outlook's upload
    // budget out of this test (the throttling test covers it).
    emu.set_upload_budget(u64::MAX / 4);
    let mailbox = harness::target(&emu);
    let corpus = Corpus::archive(mails());
    let job = corpus.dir.path().join("job.json");
    std::fs::write(
        &job,
        serde_json::to_vec(&ChildJob {
            tenant: Tenant::of(&emu),
            archive: corpus.archive.clone(),
            mailbox: mailbox.clone(),
        })
        .unwrap(),
    )
    .unwrap();
    let stderr = corpus.dir.path().join("child.err");

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x0015_5EED);
    let (mut kills, mut incomplete_left, mut restored_before_kills) = (0usize, 0usize, 0usize);
    let mut finished = None;
    for run in 0..KILLS {
        let known: BTreeSet<String> = harness::incomplete_in(&emu, &mailbox).into_iter().collect();
        let trigger = match run % 3 {
            0 => Trigger::Requests(emu.stats().await.requests_total + rng.gen_range(4..=30)),
            1 => Trigger::NewIncomplete(known),
            _ => Trigger::Restored(rng.gen_range(1..=6)),
        };
        let mut child = Child::spawn(&job, stderr.clone());
        if !reached(&emu, &mailbox, &mut child, &trigger).await {
            let status = child.exited().unwrap();
            finished = Some(child.report(status));
            break;
        }
        let lines = child.kill();
        kills += 1;
        restored_before_kills += lines
            .iter()
            .filter(|l| l.starts_with("EVENT restored"))
            .count();
        if !harness::incomplete_in(&emu, &mailbox).is_empty() {
            incomplete_left += 1;
        }
    }
    let report = match finished {
        Some(report) => report,
        None => {
            let mut child = Child::spawn(&job, stderr.clone());
            let status = loop {
                if let Some(status) = child.exited() {
                    break status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            child.report(status)
        }
    };
    let total = corpus.messages.len() as u64;
    println!(
        "{kills} kills, {incomplete_left} left an incomplete item, {restored_before_kills} \
         messages restored by killed runs; the last run: {report}; emulator: {} requests",
        emu.stats().await.requests_total
    );
    assert!(
        kills >= 10,
        "only {kills} kills before the restore finished"
    );
    assert!(
        incomplete_left >= 1,
        "no kill left an item marked incomplete"
    );
    assert!(
        restored_before_kills > 0,
        "the killed runs restored nothing"
    );
    let count = |field: &str| report[field].as_u64().unwrap();
    assert_eq!(count("failed"), 0, "{report}");
    assert_eq!(
        count("restored") + count("skipped_existing"),
        total,
        "{report}"
    );
    assert!(
        count("skipped_existing") > 0,
        "nothing kept across kills: {report}"
    );
    harness::assert_exactly_once(&emu, &mailbox, &corpus);
}
