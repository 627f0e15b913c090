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

mod archive_kills;
mod cli_fuzz;
mod mime_corpus;
mod profile_fuzz;
mod runs;

use archive_kills::{archive_kills, child_archive};
use cli_fuzz::cli_fuzz;
use mime_corpus::mime_corpus;
use profile_fuzz::profile_fuzz;
use runs::{child_run, fault_storm, run_kills};

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
