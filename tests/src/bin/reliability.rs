//! The reliability suite: SIGKILL loops over archive writes and profile runs, a
//! fault storm against the Graph emulator, malformed-MIME corpora, fuzzed profile
//! TOML and fuzzed command lines. Every section is bounded in count and time and
//! reports its counts and its losses; the process exits 1 when anything was lost.
//!
//! `cargo run --release -p archiver-tests --bin reliability -- [--quick] [--json] [--seed S]`
//!
//! The binary re-invokes itself with the hidden `--child-archive DIR RUN SEED` and
//! `--child-run DIR` modes for the processes the SIGKILL loops kill.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use archive_store::{
    ArchiveRequest, ArchiveStore, DiskArchiveStore, MessageId, RawMessage, SourceRef, StoreOptions,
};
use directory_sync::{GraphDirectoryOptions, GraphDirectorySource, SqliteUserStore, UserStore};
use m365_auth::{
    AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud, ProviderOptions,
    TokenProvider,
};
use m365_emulator::{Emulator, EmulatorConfig, FaultConfig, UserInfo};
use m365_mailbox::{GraphMailboxOptions, GraphMailboxSource};
use profile_engine::{
    CancellationToken, CheckpointStore, Engine, EngineOptions, NoProgress, Profile, ProfileStore,
    ProgressEvent, RunHistory, RunReport, Select, Source,
};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// Environment variable carrying the tenant to `--child-run`.
const TENANT_ENV: &str = "RELIABILITY_TENANT";
/// Writer threads of the `--child-archive` process.
const ARCHIVE_WRITERS: u64 = 3;
/// Requests of one noisy-neighbour loop of the fault storm.
const NEIGHBOUR_REQUESTS: u64 = 150;
/// Owner of the archive written by the archive-kill loop.
const CRASH_USER: &str = "victim";

/// Sizes of every section.
struct Plan {
    archive_kills: u32,
    run_kills: u32,
    run_users: usize,
    run_messages: usize,
    storm_users: usize,
    storm_messages: usize,
    mime_inputs: u32,
    profile_inputs: u32,
    cli_inputs: u32,
    /// Wall-clock budget of one section; a section stops starting new rounds past it.
    section_budget: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                archive_kills: 10,
                run_kills: 5,
                run_users: 3,
                run_messages: 20,
                storm_users: 3,
                storm_messages: 20,
                mime_inputs: 300,
                profile_inputs: 2_000,
                cli_inputs: 300,
                section_budget: Duration::from_secs(120),
            }
        } else {
            Plan {
                archive_kills: 30,
                run_kills: 15,
                run_users: 5,
                run_messages: 40,
                storm_users: 5,
                storm_messages: 40,
                mime_inputs: 3_000,
                profile_inputs: 20_000,
                cli_inputs: 3_000,
                section_budget: Duration::from_secs(600),
            }
        }
    }
}

/// Parsed command line of the suite.
struct Args {
    quick: bool,
    json: bool,
    seed: u64,
    cli: Option<PathBuf>,
}

const USAGE: &str =
    "usage: reliability [--quick] [--json] [--seed S] [--cli PATH-TO-m365-archiver]";

fn parse_args(args: &[String]) -> Result<Args> {
    let mut parsed = Args {
        quick: false,
        json: false,
        seed: rand::thread_rng().next_u64() >> 1,
        cli: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => parsed.quick = true,
            "--json" => parsed.json = true,
            "--seed" => {
                let value = it.next().ok_or_else(|| anyhow!("--seed needs a value"))?;
                parsed.seed = value
                    .parse()
                    .with_context(|| format!("--seed {value:?}: not an unsigned integer"))?;
            }
            "--cli" => {
                let value = it.next().ok_or_else(|| anyhow!("--cli needs a path"))?;
                parsed.cli = Some(PathBuf::from(value));
            }
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("--child-archive") => child_archive(&args[1..]).map(|()| ExitCode::SUCCESS),
        Some("--child-run") => child_run(&args[1..]).map(|()| ExitCode::SUCCESS),
        _ => match parse_args(&args) {
            Ok(parsed) => suite(&parsed),
            Err(e) => {
                eprintln!("{e:#}");
                return ExitCode::from(2);
            }
        },
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("reliability: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every section and prints the results.
fn suite(args: &Args) -> Result<ExitCode> {
    let plan = Plan::new(args.quick);
    let started = Instant::now();
    eprintln!(
        "reliability suite, seed {} ({}); reproduce with --seed {}",
        args.seed,
        if args.quick { "quick" } else { "full" },
        args.seed
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    let mut sections: Vec<(&str, Value)> = Vec::new();
    let section = |name: &str, f: &mut dyn FnMut() -> Result<Value>| -> Value {
        eprintln!("== {name}");
        let clock = Instant::now();
        let mut value = f().unwrap_or_else(|e| {
            // A section that could not run is a failure the report must show.
            json!({"error": format!("{e:#}"), "lost": 1})
        });
        if let Some(map) = value.as_object_mut() {
            map.insert("secs".into(), json!(round2(clock.elapsed().as_secs_f64())));
        }
        eprintln!("   {value}");
        value
    };
    let seed = args.seed;
    sections.push((
        "archive_kills",
        section("SIGKILL loop over archive writes", &mut || {
            archive_kills(&plan, seed)
        }),
    ));
    sections.push((
        "run_kills",
        section("SIGKILL loop over profile runs", &mut || {
            runtime.block_on(run_kills(&plan, seed))
        }),
    ));
    sections.push((
        "fault_storm",
        section("fault storm", &mut || {
            runtime.block_on(fault_storm(&plan, seed))
        }),
    ));
    sections.push((
        "mime",
        section("malformed MIME corpora", &mut || mime_corpus(&plan, seed)),
    ));
    sections.push((
        "profile_fuzz",
        section("fuzzed profile TOML", &mut || profile_fuzz(&plan, seed)),
    ));
    sections.push((
        "cli_fuzz",
        section("fuzzed command lines", &mut || {
            cli_fuzz(&plan, seed, args.cli.as_deref())
        }),
    ));

    let losses: u64 = sections.iter().map(|(_, v)| section_losses(v)).sum();
    print_table(&sections, losses, args.seed, started.elapsed());
    if args.json {
        let mut doc = serde_json::Map::new();
        for (name, value) in &sections {
            doc.insert((*name).to_owned(), value.clone());
        }
        doc.insert("seed".into(), json!(args.seed));
        doc.insert("losses".into(), json!(losses));
        println!("{}", Value::Object(doc));
    }
    Ok(if losses == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The loss-like counters of a section: lost, duplicated, mismatches, panics, unnamed errors, bad exits.
fn section_losses(value: &Value) -> u64 {
    [
        "lost",
        "duplicated",
        "mismatches",
        "panics",
        "unnamed_errors",
        "bad_exit_codes",
        "verify_problems",
        "child_failures",
    ]
    .iter()
    .filter_map(|key| value.get(*key).and_then(Value::as_u64))
    .sum()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn print_table(sections: &[(&str, Value)], losses: u64, seed: u64, elapsed: Duration) {
    println!("{:<14} {:>7} {:>7}  counts", "section", "losses", "secs");
    for (name, value) in sections {
        let mut counts: Vec<String> = Vec::new();
        if let Some(map) = value.as_object() {
            for (key, v) in map {
                if key != "secs" {
                    counts.push(format!("{key}={v}"));
                }
            }
        }
        let secs = value.get("secs").and_then(Value::as_f64).unwrap_or(0.0);
        println!(
            "{:<14} {:>7} {:>7.1}  {}",
            name,
            section_losses(value),
            secs,
            counts.join(" ")
        );
    }
    println!(
        "total losses {losses} (must be 0); seed {seed}; {:.1} s",
        elapsed.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// 1. SIGKILL loop over archive writes
// ---------------------------------------------------------------------------

/// A deterministic message of the archive-kill loop: sizes from 300 bytes to ~70 KB,
/// every fourth one carrying an attachment shared by many messages.
fn crash_message(seed: u64, run: u64, writer: u64, i: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(
        seed ^ run.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (writer << 48) ^ i.wrapping_mul(31),
    );
    let body_len = rng.gen_range(100..20_000);
    let body: String = (0..body_len)
        .map(|k| {
            if k % 72 == 71 {
                '\n'
            } else {
                char::from(rng.gen_range(b' '..=b'~'))
            }
        })
        .collect();
    let boundary = format!("b-{run}-{writer}-{i}");
    let mut out = format!(
        "From: crash@contoso.test\r\nTo: victim@contoso.test\r\nSubject: run {run} writer {writer} message {i}\r\n\
         Date: Tue, 1 Jul 2025 10:{:02}:00 +0000\r\nMessage-ID: <{run}.{writer}.{i}@contoso.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        i % 60
    );
    if i.is_multiple_of(4) {
        // Shared across every run: exercises single-instance storage under kills.
        let mut shared = ChaCha8Rng::seed_from_u64(seed ^ 0x5A5A);
        let mut blob = vec![0u8; 48_000];
        shared.fill_bytes(&mut blob);
        out.push_str(&format!(
            "--{boundary}\r\nContent-Type: application/octet-stream; name=\"shared.bin\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            base64_lines(&blob)
        ));
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out.into_bytes()
}

fn base64_lines(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 * 2 + 4);
    for (n, chunk) in data.chunks(3).enumerate() {
        if n > 0 && n % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(TABLE[((v >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn crash_source(run: u64, writer: u64, i: u64) -> SourceRef {
    SourceRef {
        mailbox: "victim@contoso.test".into(),
        message_id: format!("run{run}-w{writer}-m{i}"),
    }
}

/// `--child-archive DIR RUN SEED`: archives until killed, one `ack` line per returned call.
fn child_archive(args: &[String]) -> Result<()> {
    let [dir, run, seed] = args else {
        bail!("--child-archive DIR RUN SEED");
    };
    let run: u64 = run.parse().context("RUN")?;
    let seed: u64 = seed.parse().context("SEED")?;
    let store = Arc::new(DiskArchiveStore::open(dir, StoreOptions::default())?);
    println!("ready");
    let mut writers = Vec::new();
    for writer in 0..ARCHIVE_WRITERS {
        let store = store.clone();
        writers.push(std::thread::spawn(move || -> Result<()> {
            for i in 0.. {
                let bytes = crash_message(seed, run, writer, i);
                let request = ArchiveRequest {
                    user: CRASH_USER.into(),
                    folder: "Inbox".into(),
                    source: Some(crash_source(run, writer, i)),
                    received: None,
                };
                let outcome = store.archive(&request, RawMessage::Bytes(&bytes))?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {writer} {i} {}", outcome.id)?;
                out.flush()?;
            }
            Ok(())
        }));
    }
    for writer in writers {
        writer
            .join()
            .map_err(|_| anyhow!("writer thread panicked"))??;
    }
    Ok(())
}

/// Kills a child with SIGKILL when `deadline` passes unless `done` is set first.
fn watchdog(pid: u32, deadline: Duration) -> std::sync::mpsc::Sender<()> {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(deadline) {
            // std offers no kill by pid; `kill -KILL` is the portable Unix way.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    });
    done
}

fn archive_kills(plan: &Plan, seed: u64) -> Result<Value> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let archive_dir = dir.path().join("archive");
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xA11);
    let clock = Instant::now();
    let (mut runs, mut kills, mut acknowledged, mut lost, mut verify_problems) = (0u64, 0, 0, 0, 0);
    let mut child_failures = 0u64;
    let mut acked: Vec<(u64, u64, u64, String)> = Vec::new();
    for run in 0..u64::from(plan.archive_kills) {
        if clock.elapsed() > plan.section_budget {
            break;
        }
        runs += 1;
        let kill_after: u64 = rng.gen_range(0..=60);
        let mut child = Command::new(&exe)
            .arg("--child-archive")
            .arg(&archive_dir)
            .arg(run.to_string())
            .arg(seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning the archive child")?;
        let done = watchdog(child.id(), Duration::from_secs(120));
        let stdout = child.stdout.take().context("child stdout")?;
        let lines = BufReader::new(stdout).lines();
        let mut seen = 0u64;
        let mut killed = false;
        if kill_after == 0 {
            // Somewhere inside open/recovery.
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..40)));
            child.kill().context("SIGKILL")?;
            killed = true;
        }
        for line in lines {
            let line = line.context("reading the child")?;
            if let Some(rest) = line.strip_prefix("ack ") {
                let parts: Vec<&str> = rest.split(' ').collect();
                if let [w, i, id] = parts.as_slice() {
                    acked.push((run, w.parse()?, i.parse()?, (*id).to_owned()));
                    seen += 1;
                }
                if !killed && seen >= kill_after {
                    child.kill().context("SIGKILL")?;
                    killed = true;
                }
            }
        }
        // Lines still in the pipe after the kill were printed after durable writes: counted above.
        let status = child.wait()?;
        let _ = done.send(());
        if killed || status.code().is_none() {
            kills += 1;
        } else {
            // The child archives forever: ending on its own means it failed.
            child_failures += 1;
            eprintln!("   run {run}: the child stopped by itself ({status})");
        }

        // Reopen, verify, and check every acknowledged message so far.
        let store = DiskArchiveStore::open(&archive_dir, StoreOptions::default())
            .with_context(|| format!("reopening after kill {run}"))?;
        let report = store.verify()?;
        if !report.is_clean() {
            verify_problems += (report.problems.len() + report.drift.len()) as u64;
            eprintln!(
                "   run {run}: verify found {:?} {:?}",
                report.problems, report.drift
            );
        }
        drop(store);
    }
    let store = DiskArchiveStore::open(&archive_dir, StoreOptions::default())?;
    for (run, writer, i, id) in &acked {
        acknowledged += 1;
        let expected = crash_message(seed, *run, *writer, *i);
        let id = MessageId(id.clone());
        let intact = matches!(store.read_message(&id), Ok(bytes) if bytes == expected);
        let recorded = store
            .find_source(CRASH_USER, &crash_source(*run, *writer, *i))?
            .is_some_and(|found| found == id);
        if !intact || !recorded {
            lost += 1;
            eprintln!("   lost: run {run} writer {writer} message {i} ({id})");
        }
    }
    Ok(json!({
        "runs": runs, "kills": kills, "acknowledged": acknowledged, "lost": lost,
        "verify_problems": verify_problems, "child_failures": child_failures,
    }))
}

// ---------------------------------------------------------------------------
// 2 and 3. Profile runs against the emulator
// ---------------------------------------------------------------------------

/// What a process needs to reach the tenant.
#[derive(Clone)]
struct Tenant {
    login: String,
    graph: String,
    tenant: String,
    client_id: String,
    secret: String,
}

impl Tenant {
    fn of(emu: &Emulator) -> Self {
        Self {
            login: emu.login_url().to_string(),
            graph: emu.graph_url().to_string(),
            tenant: emu.tenant_id(),
            client_id: emu.client_id(),
            secret: emu.client_secret(),
        }
    }

    fn encode(&self) -> String {
        [
            self.login.as_str(),
            &self.graph,
            &self.tenant,
            &self.client_id,
            &self.secret,
        ]
        .join("\u{1f}")
    }

    fn decode(text: &str) -> Result<Self> {
        let parts: Vec<&str> = text.split('\u{1f}').collect();
        let [login, graph, tenant, client_id, secret] = parts.as_slice() else {
            bail!("{TENANT_ENV} holds {} fields, expected 5", parts.len());
        };
        Ok(Self {
            login: (*login).into(),
            graph: (*graph).into(),
            tenant: (*tenant).into(),
            client_id: (*client_id).into(),
            secret: (*secret).into(),
        })
    }
}

/// The production stack over a data directory.
struct Stack {
    engine: Engine,
    archive: Arc<DiskArchiveStore>,
    users: Arc<SqliteUserStore>,
}

/// Client-credentials tokens for the tenant's app.
fn token_provider(tenant: &Tenant) -> Result<Arc<dyn TokenProvider>> {
    let cloud = Cloud::custom(&tenant.login, &tenant.graph)?;
    let registration = AppRegistration::new(
        &tenant.tenant,
        &tenant.client_id,
        ClientCredential::secret(tenant.secret.clone()),
        cloud,
    )?;
    Ok(Arc::new(ClientCredentialsProvider::new(
        registration,
        ProviderOptions::default(),
    )?))
}

fn stack(tenant: &Tenant, data: &Path) -> Result<Stack> {
    let tokens = token_provider(tenant)?;
    let graph_root = url::Url::parse(&tenant.graph)?;
    let mail = GraphMailboxSource::new(
        tokens.clone(),
        graph_root.clone(),
        GraphMailboxOptions::default(),
    )?;
    let directory =
        GraphDirectorySource::new(tokens.clone(), graph_root, GraphDirectoryOptions::default())?;
    let users = Arc::new(SqliteUserStore::open(data.join("users.db"))?);
    let archive = Arc::new(DiskArchiveStore::open(
        data.join("archive"),
        StoreOptions::default(),
    )?);
    let engine = Engine::builder()
        .token_provider(tokens)
        .mailbox_source(Arc::new(mail))
        .directory_source(Arc::new(directory))
        .user_store(users.clone())
        .archive_store(archive.clone())
        .checkpoints(CheckpointStore::new(data.join("checkpoints")))
        .options(EngineOptions {
            lock_dir: Some(data.join("locks")),
            history: Some(RunHistory::new(data.join("history"))),
            ..EngineOptions::default()
        })
        .build()?;
    Ok(Stack {
        engine,
        archive,
        users,
    })
}

fn everyone() -> Profile {
    Profile::new(
        "everyone",
        "contoso",
        Source::Multiple {
            select: Select::All,
            users: vec![],
            sync_directory_first: true,
        },
    )
}

/// `--child-run DIR`: runs the all-mailboxes profile, one `archived` line per message.
fn child_run(args: &[String]) -> Result<()> {
    let [dir] = args else {
        bail!("--child-run DIR");
    };
    let tenant = Tenant::decode(&std::env::var(TENANT_ENV).context(TENANT_ENV)?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let stack = stack(&tenant, Path::new(dir))?;
        let progress = |e: ProgressEvent| {
            if let ProgressEvent::MessageArchived { .. } = e {
                println!("archived");
            }
        };
        let report = stack
            .engine
            .run(&everyone(), &CancellationToken::new(), &progress)
            .await?;
        println!("done {}", serde_json::to_string(&report.status)?);
        Ok(())
    })
}

/// Regular readable mailboxes of the tenant.
fn readable(emu: &Emulator) -> Vec<UserInfo> {
    emu.users()
        .into_iter()
        .filter(|u| u.enabled && !u.guest && u.has_mailbox && !u.access_denied && u.mail.is_some())
        .collect()
}

/// Messages checked, missing or altered, and duplicated entries.
#[derive(Default)]
struct Audit {
    messages: u64,
    lost: u64,
    duplicated: u64,
}

/// Every message of every readable mailbox is in its owner's archive exactly once, byte-exact.
fn audit(emu: &Emulator, stack: &Stack) -> Result<Audit> {
    let stats = stack.archive.stats()?;
    let mut audit = Audit::default();
    for user in readable(emu) {
        let Some(mail) = user.mail.clone() else {
            continue;
        };
        let ids = emu.message_ids(&user.upn);
        let Some(local) = stack.users.find_by_address(&mail)? else {
            eprintln!("   {mail}: not synced; its {} messages are lost", ids.len());
            audit.messages += ids.len() as u64;
            audit.lost += ids.len() as u64;
            continue;
        };
        for id in &ids {
            audit.messages += 1;
            let source = SourceRef {
                mailbox: mail.to_ascii_lowercase(),
                message_id: id.clone(),
            };
            let exact = match stack.archive.find_source(&local.name, &source)? {
                Some(archived) => {
                    let bytes = stack.archive.read_message(&archived).ok();
                    bytes.is_some() && bytes == emu.message_mime(&user.upn, id)
                }
                None => false,
            };
            if !exact {
                audit.lost += 1;
                eprintln!("   {mail}: {id} missing or altered");
            }
        }
        let entries = stats.users.get(&local.name).copied().unwrap_or(0);
        audit.duplicated += entries.saturating_sub(ids.len() as u64);
    }
    Ok(audit)
}

async fn run_kills(plan: &Plan, seed: u64) -> Result<Value> {
    let emu = Emulator::start(EmulatorConfig {
        users: plan.run_users,
        messages_per_user: plan.run_messages,
        seed: seed % 1_000_000 + 1,
        time_scale: 20.0,
        ..Default::default()
    })
    .await?;
    let result = run_kills_against(plan, seed, &emu).await;
    emu.shutdown().await;
    result
}

async fn run_kills_against(plan: &Plan, seed: u64, emu: &Emulator) -> Result<Value> {
    let data = tempfile::tempdir()?;
    let tenant = Tenant::of(emu);
    let exe = std::env::current_exe()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x2B2);
    let total: usize = readable(emu)
        .iter()
        .map(|u| emu.message_count(&u.upn))
        .sum();
    let clock = Instant::now();
    let (mut runs, mut kills, mut finished_early, mut child_failures) = (0u64, 0u64, 0u64, 0u64);
    for _ in 0..plan.run_kills {
        if clock.elapsed() > plan.section_budget {
            break;
        }
        runs += 1;
        // Each killed run gets a little further, so the kills spread over the whole run.
        let kill_after = rng.gen_range(0..=total / (plan.run_kills as usize + 1));
        let mut child = tokio::process::Command::new(&exe)
            .arg("--child-run")
            .arg(data.path())
            .env(TENANT_ENV, tenant.encode())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let mut archived = 0usize;
        let mut finished = false;
        let mut reached = false;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await;
            let Ok(Ok(Some(line))) = next else { break };
            if line == "archived" {
                archived += 1;
                if archived > kill_after {
                    reached = true;
                    break;
                }
            } else if line.starts_with("done") {
                finished = true;
            }
        }
        if finished {
            finished_early += 1;
        } else {
            child.start_kill()?; // SIGKILL
            if reached {
                kills += 1;
            }
        }
        let status = child.wait().await?;
        if !finished && !reached && status.code().is_some() {
            // Neither killed nor done: the run itself broke off.
            child_failures += 1;
            eprintln!("   run {runs}: the child stopped by itself ({status})");
        }
    }
    // The final run, in this process, to the end.
    let stack = stack(&tenant, data.path())?;
    let report = stack
        .engine
        .run(&everyone(), &CancellationToken::new(), &NoProgress)
        .await?;
    let audit = audit(emu, &stack)?;
    let verify = stack.archive.verify()?;
    Ok(json!({
        "runs": runs + 1, "kills": kills, "finished_before_kill": finished_early,
        "child_failures": child_failures,
        "messages": audit.messages, "lost": audit.lost, "duplicated": audit.duplicated,
        "final_status": report.status, "verify_problems": verify.problems.len() + verify.drift.len(),
    }))
}

async fn fault_storm(plan: &Plan, seed: u64) -> Result<Value> {
    let emu = Emulator::start(EmulatorConfig {
        users: plan.storm_users,
        messages_per_user: plan.storm_messages,
        seed: seed % 1_000_000 + 2,
        time_scale: 20.0,
        throttling: true,
        faults: FaultConfig {
            status_503: 0.10,
            status_504: 0.0,
            reset: 0.05,
            truncate: 0.02,
            // Slow answers keep requests in flight long enough to overlap.
            slow_ms: 25,
        },
        ..Default::default()
    })
    .await?;
    let result = fault_storm_against(&emu).await;
    emu.shutdown().await;
    result
}

async fn fault_storm_against(emu: &Emulator) -> Result<Value> {
    // Two independent installations archive the same tenant at once while a noisy
    // neighbour (the same app, two requests at a time per mailbox, at most
    // NEIGHBOUR_REQUESTS each) keeps slots of every mailbox busy: together they exceed Outlook's four concurrent requests per
    // app and mailbox, so Graph throttles them.
    let tenant = Tenant::of(emu);
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let stacks = dirs
        .iter()
        .map(|d| stack(&tenant, d.path()))
        .collect::<Result<Vec<_>>>()?;
    let bearer = token_provider(&tenant)?.token().await?.secret().to_owned();
    let graph = url::Url::parse(&tenant.graph)?;
    let stop = CancellationToken::new();
    let client = reqwest::Client::new();
    let mut neighbours = Vec::new();
    for user in readable(emu) {
        let url = graph.join(&format!(
            "v1.0/users/{}/mailFolders/inbox/messages?$top=10",
            user.upn
        ))?;
        for _ in 0..2 {
            let (stop, client, bearer, url) =
                (stop.clone(), client.clone(), bearer.clone(), url.clone());
            neighbours.push(tokio::spawn(async move {
                let mut sent = 0u64;
                while !stop.is_cancelled() && sent < NEIGHBOUR_REQUESTS {
                    sent += 1;
                    if let Ok(response) = client.get(url.clone()).bearer_auth(&bearer).send().await
                    {
                        let _ = response.bytes().await;
                    }
                }
                sent
            }));
        }
    }
    let cancel = CancellationToken::new();
    let profile = everyone();
    let runs = futures::future::join_all(
        stacks
            .iter()
            .map(|s| s.engine.run(&profile, &cancel, &NoProgress)),
    )
    .await;
    stop.cancel();
    let mut neighbour_requests = 0u64;
    for neighbour in neighbours {
        neighbour_requests += neighbour.await.unwrap_or(0);
    }
    let reports = runs.into_iter().collect::<Result<Vec<RunReport>, _>>()?;
    let stats = emu.stats().await;
    let (mut checked, mut lost, mut duplicated, mut verify_problems) = (0, 0, 0, 0);
    for s in &stacks {
        let audit = audit(emu, s)?;
        checked += audit.messages;
        lost += audit.lost;
        duplicated += audit.duplicated;
        let verify = s.archive.verify()?;
        verify_problems += verify.problems.len() + verify.drift.len();
    }
    Ok(json!({
        "runs": reports.len(),
        "neighbour_requests": neighbour_requests,
        "messages": checked,
        "requests": stats.requests_total,
        "faults_injected": stats.faults_total,
        "throttled": stats.throttled_total,
        "max_concurrency": stats.per_mailbox.values().map(|m| m.max_concurrency).max().unwrap_or(0),
        "engine_throttled": reports.iter().map(|r| r.throttled).sum::<u64>(),
        "retries": reports.iter().map(|r| r.retries).sum::<u64>(),
        "messages_failed_in_run": reports.iter().map(|r| r.totals.messages_failed).sum::<u64>(),
        "lost": lost,
        "duplicated": duplicated,
        "verify_problems": verify_problems,
    }))
}

// ---------------------------------------------------------------------------
// 4. Malformed MIME corpora
// ---------------------------------------------------------------------------

/// A seeded MIME input of one of several kinds; returns (kind, bytes).
fn random_mime(rng: &mut ChaCha8Rng, n: u32) -> (&'static str, Vec<u8>) {
    let boundary = format!("=_b{n}_{}", rng.gen_range(0..1_000_000));
    let text: String = (0..rng.gen_range(0..3_000))
        .map(|_| char::from(rng.gen_range(b' '..=b'~')))
        .collect();
    match rng.gen_range(0..6) {
        0 => {
            let s = format!(
                "From: \"Müller, Jörg\" <j@contoso.test>\r\nTo: a@b.test, \"x\" <y@z.test>\r\nSubject: =?utf-8?q?caf=C3=A9_{n}?=\r\n\
                 Date: Wed, 2 Jul 2025 08:00:00 +0200\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
                 --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--{boundary}\r\nContent-Type: text/html\r\n\r\n<p>{text}</p>\r\n--{boundary}--\r\n"
            );
            ("well_formed", s.into_bytes())
        }
        1 => {
            // Broken boundaries: undeclared, never closed, nested with the same name.
            let s = match rng.gen_range(0..3) {
                0 => format!(
                    "Subject: broken {n}\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--other\r\n\r\n{text}\r\n--other--\r\n"
                ),
                1 => format!(
                    "Subject: unclosed {n}\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n--{boundary}\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n--{boundary}\r\n{text}"
                ),
                _ => format!(
                    "Subject: empty boundary {n}\r\nContent-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n{text}\r\n----\r\n"
                ),
            };
            ("broken_boundary", s.into_bytes())
        }
        2 => {
            // Bad encodings: invalid base64 / quoted-printable, unknown charsets, raw 8-bit headers.
            let mut s = format!(
                "Subject: =?x-unknown?B?!!!{n}?=\r\nFrom: =?utf-8?Q?=ZZ=?= <bad@enc.test>\r\nContent-Type: text/plain; charset=\"x-klingon\"\r\n\
                 Content-Transfer-Encoding: {}\r\n\r\n",
                ["base64", "quoted-printable", "x-uuencode", "7bit"][rng.gen_range(0..4)]
            )
            .into_bytes();
            s.extend_from_slice(b"Zm9v!!!@@==\r\n=A=\r\n=\xff\xfe\r\nSubject: \xc3\x28\r\n");
            s.extend_from_slice(text.as_bytes());
            ("bad_encoding", s)
        }
        3 => {
            let mut bytes = vec![0u8; rng.gen_range(1..8_192)];
            rng.fill_bytes(&mut bytes);
            ("arbitrary_bytes", bytes)
        }
        4 => {
            // Headers only, no body, endless header line, bare LF, NULs.
            let mut s = b"Subject: ".to_vec();
            s.extend(std::iter::repeat_n(b'x', rng.gen_range(0..100_000)));
            s.extend_from_slice(b"\nX-Nul: a\0b\n\nbody\0\n");
            ("degenerate_headers", s)
        }
        _ => {
            // A well-formed message with random bytes spliced in.
            let mut s = format!(
                "Subject: spliced {n}\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\n{text}\r\n--{boundary}--\r\n"
            )
            .into_bytes();
            for _ in 0..rng.gen_range(1..20) {
                let at = rng.gen_range(0..=s.len());
                s.insert(at, rng.r#gen());
            }
            ("spliced", s)
        }
    }
}

/// The `.eml` files committed under `archive-store/tests/corpus/`, if the source tree is at hand.
fn committed_corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../archive-store/tests/corpus");
    let mut files = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("eml"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn mime_corpus(plan: &Plan, seed: u64) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let store = DiskArchiveStore::open(dir.path().join("archive"), StoreOptions::default())?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x31E);
    let mut inputs: Vec<(String, &'static str, Vec<u8>)> = Vec::new();
    for path in committed_corpus() {
        let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
        inputs.push((path.display().to_string(), "committed_corpus", bytes));
    }
    let committed = inputs.len();
    for n in 0..plan.mime_inputs {
        let (kind, bytes) = random_mime(&mut rng, n);
        inputs.push((format!("random #{n}"), kind, bytes));
    }
    let clock = Instant::now();
    let (mut tried, mut mismatches, mut panics, mut unparseable) = (0u64, 0u64, 0u64, 0u64);
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for (n, (name, kind, bytes)) in inputs.iter().enumerate() {
        if clock.elapsed() > plan.section_budget {
            break;
        }
        tried += 1;
        *kinds.entry(kind).or_default() += 1;
        let request = ArchiveRequest {
            user: "corpus".into(),
            folder: (*kind).into(),
            source: Some(SourceRef {
                mailbox: "corpus@contoso.test".into(),
                message_id: format!("input-{n}"),
            }),
            received: None,
        };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<bool> {
            let outcome = store.archive(&request, RawMessage::Bytes(bytes))?;
            let back = store.read_message(&outcome.id)?;
            let info = store.show(&outcome.id)?;
            if info.metadata.unparseable {
                unparseable += 1;
            }
            Ok(back == *bytes && info.size == bytes.len() as u64)
        }));
        match outcome {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                mismatches += 1;
                eprintln!("   {name}: read back differs");
            }
            Ok(Err(e)) => {
                mismatches += 1;
                eprintln!("   {name}: {e:#}");
            }
            Err(_) => {
                panics += 1;
                eprintln!("   {name}: panicked");
            }
        }
    }
    let verify = store.verify()?;
    Ok(json!({
        "inputs": tried, "committed_files": committed, "kinds": kinds, "unparseable": unparseable,
        "mismatches": mismatches, "panics": panics,
        "verify_problems": verify.problems.len() + verify.drift.len(),
    }))
}

// ---------------------------------------------------------------------------
// 5. Fuzzed profile TOML
// ---------------------------------------------------------------------------

/// Every key of the profile format; an error must name one of them or the file.
const PROFILE_FIELDS: &[&str] = &[
    "name",
    "credentials",
    "source",
    "kind",
    "select",
    "users",
    "sync_directory_first",
    "mailbox",
    "target_user",
    "folders",
    "include",
    "exclude",
    "include_subfolders",
    "filter",
    "older_than_days",
    "received_after",
    "deletion",
    "mode",
    "after_days",
    "keep_unread",
    "run",
    "timeout_secs",
    "parallel_mailboxes",
    "schedule",
];

const PROFILE_SEEDS: &[&str] = &[
    r#"name = "all-staff"
credentials = "contoso"
[source]
kind = "multiple"
select = "all"
users = []
sync_directory_first = true
[folders]
include = []
exclude = ["junkemail", "deleteditems"]
include_subfolders = true
[filter]
older_than_days = 0
received_after = ""
[deletion]
mode = "never"
after_days = 90
keep_unread = true
[run]
timeout_secs = 300
parallel_mailboxes = 8
schedule = "manual"
"#,
    r#"name = "ceo"
credentials = "contoso"
[source]
kind = "single"
mailbox = "ceo@contoso.com"
target_user = "alice"
[folders]
include = ["Inbox/Projects", "sentitems"]
[filter]
older_than_days = 30
received_after = "2024-01-01T00:00:00Z"
[deletion]
mode = "move_to_deleted_items"
after_days = 365
keep_unread = false
[run]
timeout_secs = 60
parallel_mailboxes = 1
schedule = "weekly mon 03:00"
"#,
    r#"name = "some"
credentials = "fabrikam"
[source]
kind = "multiple"
select = "all_except"
users = ["bob", "carol"]
[deletion]
mode = "hard_delete"
after_days = 1
[run]
schedule = "daily 02:00"
"#,
];

/// Replacement values that break types, ranges and enums.
const PROFILE_JUNK_VALUES: &[&str] = &[
    "-1",
    "0",
    "99999999999999999999",
    "1.5",
    "nan",
    "true",
    "\"\"",
    "\"every 0m\"",
    "\"daily 25:61\"",
    "\"weekly xyz 03:00\"",
    "\"../../etc/passwd\"",
    "\"ünïcödé\"",
    "[]",
    "[1, 2]",
    "{}",
    "{ a = 1 }",
    "\"2024-13-45T99:00:00Z\"",
    "\"soft_delete\"",
    "\"only\"",
    "\"single\"",
    "'''\nmulti\n'''",
];

fn mutate_profile(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let seed_text = PROFILE_SEEDS[rng.gen_range(0..PROFILE_SEEDS.len())];
    let mut lines: Vec<String> = seed_text.lines().map(str::to_owned).collect();
    for _ in 0..rng.gen_range(1..5) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let at = rng.gen_range(0..lines.len());
        match rng.gen_range(0..7) {
            0 => {
                lines.remove(at);
            }
            1 => {
                let line = lines[at].clone();
                lines.insert(at, line);
            }
            2 => {
                // Flip the value of a `key = value` line.
                if let Some((key, _)) = lines[at].split_once('=') {
                    let value = PROFILE_JUNK_VALUES[rng.gen_range(0..PROFILE_JUNK_VALUES.len())];
                    lines[at] = format!("{key}= {value}");
                }
            }
            3 => {
                let other = rng.gen_range(0..lines.len());
                lines.swap(at, other);
            }
            4 => {
                // Truncate a line.
                let cut = rng.gen_range(0..=lines[at].len());
                let cut = (0..=cut)
                    .rev()
                    .find(|c| lines[at].is_char_boundary(*c))
                    .unwrap_or(0);
                lines[at].truncate(cut);
            }
            5 => {
                let extra = ["[source]", "[run]", "[[run]]", "unknown_key = 1", "name ="];
                lines.insert(at, extra[rng.gen_range(0..extra.len())].to_owned());
            }
            _ => lines.shuffle(rng),
        }
    }
    let mut bytes = lines.join("\n").into_bytes();
    if rng.gen_bool(0.2) {
        for _ in 0..rng.gen_range(1..8) {
            let at = rng.gen_range(0..=bytes.len());
            bytes.insert(at, rng.r#gen());
        }
    }
    bytes
}

/// One input through `Profile::from_toml` (when it is UTF-8) and through `ProfileStore::load`.
type ParsedTwice = (Option<Result<Profile, String>>, Result<Profile, String>);

fn profile_fuzz(plan: &Plan, seed: u64) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let store = ProfileStore::new(dir.path());
    let file = "profiles/fuzzed.toml";
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x70F);
    let clock = Instant::now();
    let (mut inputs, mut accepted, mut rejected, mut panics, mut unnamed, mut roundtrip) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let names_culprit = |msg: &str, file: &str| {
        msg.contains(file) || PROFILE_FIELDS.iter().any(|f| msg.contains(f))
    };
    for _ in 0..plan.profile_inputs {
        if clock.elapsed() > plan.section_budget {
            break;
        }
        inputs += 1;
        let bytes = mutate_profile(&mut rng);
        // Through the text parser (valid UTF-8 only) and through the store (any bytes).
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<ParsedTwice> {
            let parsed = std::str::from_utf8(&bytes)
                .ok()
                .map(|text| Profile::from_toml(file, text).map_err(|e| e.to_string()));
            std::fs::write(dir.path().join("fuzzed.toml"), &bytes)?;
            let loaded = store.load("fuzzed").map_err(|e| e.to_string());
            Ok((parsed, loaded))
        }));
        let Ok(outcome) = outcome else {
            panics += 1;
            eprintln!("   panic on input {:?}", String::from_utf8_lossy(&bytes));
            continue;
        };
        let (parsed, loaded) = outcome?;
        for (result, culprit) in [(parsed, file), (Some(loaded), "fuzzed")] {
            match result {
                Some(Ok(profile)) => {
                    accepted += 1;
                    // What parses must survive its own serialisation unchanged.
                    let again =
                        std::panic::catch_unwind(|| Profile::from_toml(file, &profile.to_toml()));
                    match again {
                        Ok(Ok(back)) if back == profile => {}
                        Ok(_) => {
                            roundtrip += 1;
                            eprintln!("   round trip differs for {:?}", profile.name);
                        }
                        Err(_) => panics += 1,
                    }
                }
                Some(Err(message)) => {
                    rejected += 1;
                    if !names_culprit(&message, culprit) {
                        unnamed += 1;
                        eprintln!("   error names neither field nor file: {message}");
                    }
                }
                None => {}
            }
        }
    }
    Ok(json!({
        "inputs": inputs, "accepted": accepted, "rejected": rejected, "panics": panics,
        "unnamed_errors": unnamed, "mismatches": roundtrip,
    }))
}

// ---------------------------------------------------------------------------
// 6. Fuzzed command lines
// ---------------------------------------------------------------------------

/// Words of the command line. Commands that reach the network or run long
/// (`demo`, `test`, `run`, `sync`) are left out: the suite contacts nothing but loopback.
const CLI_WORDS: &[&str] = &[
    "credentials",
    "users",
    "profile",
    "archive",
    "add",
    "list",
    "remove",
    "create",
    "show",
    "stats",
    "verify",
    "reindex",
    "search",
    "export",
    "import",
    "help",
];

/// Command groups and their subcommands (the network-bound ones left out, as above).
const CLI_COMMANDS: &[(&str, &[&str])] = &[
    ("credentials", &["add", "list", "remove"]),
    ("users", &["list", "add", "remove"]),
    ("profile", &["create", "list", "show", "remove"]),
    (
        "archive",
        &[
            "stats", "verify", "reindex", "search", "show", "export", "import",
        ],
    ),
];

const CLI_FLAGS: &[&str] = &[
    "--json",
    "--tenant",
    "--client-id",
    "--secret-env",
    "--secret-file",
    "--certificate",
    "--private-key",
    "--cloud",
    "--ca-file",
    "--email",
    "--credentials",
    "--mailbox",
    "--target-user",
    "--all",
    "--all-except",
    "--only",
    "--sync-directory",
    "--include-folder",
    "--exclude-folder",
    "--older-than-days",
    "--delete",
    "--delete-after-days",
    "--timeout-secs",
    "--schedule",
    "--user",
    "--limit",
    "--folder",
    "--query",
    "--format",
    "--out",
    "--include-disabled",
    "--include-guests",
    "--help",
    "--version",
    "-h",
    "--",
    "-",
];

const CLI_VALUES: &[&str] = &[
    "contoso",
    "alice",
    "alice@contoso.com",
    "0",
    "-1",
    "99999999999999999999999",
    "eml",
    "mbox",
    "pst",
    "every 30m",
    "daily 25:99",
    "hard_delete",
    "never",
    "global",
    "custom",
    "",
    " ",
    "a,b,,c",
    "Inbox/Projects",
    "00000000-0000-0000-0000-000000000000",
    "ünïcödé ✉ 名前",
    "\u{202e}rtl",
    "out.mbox",
    "exports",
    "missing.eml",
];

fn junk_arg(rng: &mut ChaCha8Rng) -> String {
    let len = if rng.gen_bool(0.1) {
        rng.gen_range(1_000..20_000)
    } else {
        rng.gen_range(0..24)
    };
    (0..len)
        .map(|_| {
            let c = match rng.gen_range(0..4) {
                0 => char::from(rng.gen_range(b'a'..=b'z')),
                1 => char::from_u32(rng.gen_range(0x80..0x3_0000)).unwrap_or('?'),
                2 => ['-', '=', ' ', '\\', '"', '\'', '*', '$', '\n', '\t'][rng.gen_range(0..10)],
                _ => char::from(rng.gen_range(b'!'..=b'~')),
            };
            // Never a path separator or NUL: junk must not name files outside the sandbox.
            if matches!(c, '/' | '\0') { '_' } else { c }
        })
        .collect()
}

fn random_argv(rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut argv = Vec::new();
    if rng.gen_bool(0.7) {
        // A real command, then plausible names and flags with values.
        let (group, subs) = CLI_COMMANDS[rng.gen_range(0..CLI_COMMANDS.len())];
        argv.push(group.to_owned());
        argv.push(subs[rng.gen_range(0..subs.len())].to_owned());
        if rng.gen_bool(0.6) {
            argv.push(CLI_VALUES[rng.gen_range(0..CLI_VALUES.len())].to_owned());
        }
        for _ in 0..rng.gen_range(0..3) {
            argv.push(CLI_FLAGS[rng.gen_range(0..CLI_FLAGS.len())].to_owned());
            if rng.gen_bool(0.8) {
                let value = if rng.gen_bool(0.8) {
                    CLI_VALUES[rng.gen_range(0..CLI_VALUES.len())].to_owned()
                } else {
                    junk_arg(rng)
                };
                argv.push(value);
            }
        }
    } else {
        if rng.gen_bool(0.8) {
            argv.push(CLI_WORDS[rng.gen_range(0..4)].to_owned());
            if rng.gen_bool(0.85) {
                argv.push(CLI_WORDS[rng.gen_range(4..CLI_WORDS.len())].to_owned());
            }
        }
        for _ in 0..rng.gen_range(0..8) {
            let arg = match rng.gen_range(0..10) {
                0..=3 => CLI_FLAGS[rng.gen_range(0..CLI_FLAGS.len())].to_owned(),
                4..=6 => CLI_VALUES[rng.gen_range(0..CLI_VALUES.len())].to_owned(),
                7 => CLI_WORDS[rng.gen_range(0..CLI_WORDS.len())].to_owned(),
                _ => junk_arg(rng),
            };
            argv.push(arg);
        }
    }
    // `credentials add` proves the credential by fetching a token: send it to a closed
    // loopback port, never to a real cloud.
    if argv.iter().any(|a| a == "credentials") && argv.iter().any(|a| a == "add") {
        let mut kept = Vec::new();
        let mut skip = false;
        for a in argv {
            if skip {
                skip = false;
                continue;
            }
            if matches!(a.as_str(), "--cloud" | "--login-url" | "--graph-url") {
                skip = true;
                continue;
            }
            kept.push(a);
        }
        argv = kept;
        argv.extend(
            [
                "--cloud",
                "custom",
                "--login-url",
                "http://127.0.0.1:9/",
                "--graph-url",
                "http://127.0.0.1:9/",
            ]
            .map(str::to_owned),
        );
    }
    argv
}

/// The `m365-archiver` binary built next to this one.
fn find_cli(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        // The child runs in a sandbox directory: a relative path must not be resolved there.
        return std::fs::canonicalize(path).with_context(|| format!("--cli {}", path.display()));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("directory of this binary")?;
    let cli = dir.join(format!("m365-archiver{}", std::env::consts::EXE_SUFFIX));
    if cli.is_file() {
        Ok(cli)
    } else {
        bail!(
            "{} not found; build it first with `cargo build --release -p m365-archiver` (or pass --cli PATH)",
            cli.display()
        )
    }
}

fn cli_fuzz(plan: &Plan, seed: u64, explicit: Option<&Path>) -> Result<Value> {
    let cli = match find_cli(explicit) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("   skipped: {e:#}");
            return Ok(json!({"inputs": 0, "skipped": format!("{e:#}")}));
        }
    };
    let sandbox = tempfile::tempdir()?;
    let data = sandbox.path().join("data");
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC11);
    let clock = Instant::now();
    let (mut inputs, mut panics, mut bad_exit) = (0u64, 0u64, 0u64);
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..plan.cli_inputs {
        if clock.elapsed() > plan.section_budget {
            break;
        }
        inputs += 1;
        let mut argv = random_argv(&mut rng);
        // The data directory goes before or after the rest, as users write it.
        if rng.gen_bool(0.5) {
            argv.splice(0..0, ["--data-dir".to_owned(), data.display().to_string()]);
        } else {
            argv.extend(["--data-dir".to_owned(), data.display().to_string()]);
        }
        let mut child = Command::new(&cli)
            .args(&argv)
            .current_dir(sandbox.path())
            .env("M365_ARCHIVER_DATA", &data)
            .env("HOME", sandbox.path())
            .env("XDG_DATA_HOME", sandbox.path())
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("ALL_PROXY", "http://127.0.0.1:9")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", cli.display()))?;
        let done = watchdog(child.id(), Duration::from_secs(60));
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut pipe, &mut raw)?;
            stderr = String::from_utf8_lossy(&raw).into_owned();
        }
        let status = child.wait()?;
        let _ = done.send(());
        let code = status.code();
        *codes
            .entry(code.map_or("signal".into(), |c| c.to_string()))
            .or_default() += 1;
        if stderr.contains("panicked") {
            panics += 1;
            eprintln!("   panic for {argv:?}: {stderr}");
        } else if !matches!(code, Some(0..=2)) {
            bad_exit += 1;
            eprintln!("   exit {code:?} for {argv:?}: {stderr}");
        }
    }
    Ok(json!({
        "inputs": inputs, "exit_codes": codes, "panics": panics, "bad_exit_codes": bad_exit,
    }))
}
