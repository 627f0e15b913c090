//! `archiver-bench`: figures measured side by side in one run on the same machine.
//!
//! - ingest: one generated corpus as a maildir; our import (store + search index) vs
//!   `notmuch new` vs `restic backup`; stored bytes vs restic's repository;
//! - graph: an end-to-end profile run against the emulator under Outlook limits;
//!   achieved request rate per mailbox over the ceiling (4 requests in flight);
//! - incremental: requests of a no-change rerun, and the folder count;
//! - memory: peak RSS of a run over many mailboxes including a 150 MB message,
//!   measured in a child process so the emulator's own memory is not counted.
//!
//! Usage: `cargo run --release -p archiver-bench -- [--quick] [--json]`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod corpus;
mod peers;
mod stack;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use archive_store::{ArchiveStore, DiskArchiveStore, StoreOptions};
use m365_emulator::{Emulator, EmulatorConfig};
use serde_json::json;

use stack::TenantAccess;

/// Sizes of one benchmark run.
struct Plan {
    corpus_users: usize,
    corpus_per_user: usize,
    graph_mailboxes: usize,
    graph_per_user: usize,
    mail_latency: Duration,
    memory_mailboxes: usize,
    memory_per_user: usize,
    large_message: u64,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                corpus_users: 4,
                corpus_per_user: 500,
                graph_mailboxes: 4,
                graph_per_user: 100,
                mail_latency: Duration::from_millis(100),
                memory_mailboxes: 20,
                memory_per_user: 10,
                large_message: 150 * 1024 * 1024,
            }
        } else {
            Plan {
                corpus_users: 20,
                corpus_per_user: 1000,
                graph_mailboxes: 10,
                graph_per_user: 300,
                mail_latency: Duration::from_millis(100),
                memory_mailboxes: 100,
                memory_per_user: 30,
                large_message: 150 * 1024 * 1024,
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child-run") {
        let spec = args.get(1).context("--child-run needs a JSON argument")?;
        return child_run(spec);
    }
    let mut quick = false;
    let mut json_out = false;
    let mut work: Option<PathBuf> = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--json" => json_out = true,
            "--work-dir" => {
                work = Some(PathBuf::from(
                    iter.next().context("--work-dir needs a path")?,
                ))
            }
            "-h" | "--help" => {
                println!("usage: archiver-bench [--quick] [--json] [--work-dir DIR]");
                return Ok(());
            }
            other => bail!(
                "unknown argument {other:?} (usage: archiver-bench [--quick] [--json] [--work-dir DIR])"
            ),
        }
    }
    let temp = tempfile::tempdir()?;
    let work = work.unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&work)?;
    let plan = Plan::new(quick);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(bench(&plan, &work))?;
    if json_out {
        println!("{}", serde_json::to_string(&fixed_shape(&result))?);
    } else {
        print_table(&result);
    }
    Ok(())
}

async fn bench(plan: &Plan, work: &Path) -> anyhow::Result<serde_json::Value> {
    eprintln!(
        "generating the corpus ({} × {} messages)…",
        plan.corpus_users, plan.corpus_per_user
    );
    let corpus = corpus::generate(
        &work.join("corpus"),
        plan.corpus_users,
        plan.corpus_per_user,
        42,
    )
    .await?;

    eprintln!("ingest: ours…");
    let (ours_secs, ours_stored, ours_total) = ingest_ours(&corpus.maildir, &work.join("ours"))?;
    eprintln!("ingest: notmuch…");
    let notmuch = peers::notmuch(&corpus.maildir, &work.join("notmuch"));
    eprintln!("ingest: restic…");
    let restic = peers::restic(&corpus.maildir, &work.join("restic"));
    for (name, r) in [("notmuch", &notmuch), ("restic", &restic)] {
        if let peers::PeerResult::Missing(why) = r {
            eprintln!("{name}: {why}");
        }
    }

    eprintln!(
        "graph: profile run over {} mailboxes…",
        plan.graph_mailboxes
    );
    let graph = graph_run(plan, &work.join("graph")).await?;

    eprintln!(
        "memory: child run over {} mailboxes with a {} MB message…",
        plan.memory_mailboxes,
        plan.large_message >> 20
    );
    let peak_rss_mb = memory_run(plan, &work.join("memory")).await?;

    Ok(json!({
        "ingest": {
            "messages": corpus.messages,
            "mb": corpus.bytes as f64 / 1e6,
            "ours_secs": ours_secs,
            "ours_stored_bytes": ours_stored,
            "ours_dir_bytes": ours_total,
            "notmuch_secs": notmuch.secs(),
            "notmuch_db_bytes": notmuch.bytes(),
            "restic_secs": restic.secs(),
            "restic_bytes": restic.bytes(),
        },
        "graph": {
            "mailboxes": graph.mailboxes,
            "ceiling_rps": graph.ceiling_rps,
            "achieved_rps": graph.achieved_rps,
            "efficiency": graph.achieved_rps / graph.ceiling_rps,
            "messages": graph.messages,
            "messages_per_sec": graph.messages_per_sec,
            "throttled": graph.throttled,
            "max_concurrency": graph.max_concurrency,
        },
        "incremental": {
            "requests": graph.rerun_requests,
            "folders": graph.folders,
        },
        "memory": {
            "peak_rss_mb": peak_rss_mb,
        },
    }))
}

/// Imports the maildir into a fresh archive: wall seconds, pack bytes, whole directory bytes.
fn ingest_ours(maildir: &Path, dir: &Path) -> anyhow::Result<(f64, u64, u64)> {
    fresh_dir(dir)?;
    let start = Instant::now();
    let store = DiskArchiveStore::open(dir, StoreOptions::default())?;
    let report = store.import("bench", Some("Inbox"), &maildir.join("cur"))?;
    store.flush()?;
    let secs = start.elapsed().as_secs_f64();
    if !report.failed.is_empty() {
        bail!("{} messages failed to import", report.failed.len());
    }
    let stats = store.stats()?;
    drop(store);
    Ok((secs, stats.stored_bytes, peers::dir_size(dir)))
}

struct GraphFigures {
    mailboxes: usize,
    ceiling_rps: f64,
    achieved_rps: f64,
    messages: u64,
    messages_per_sec: f64,
    throttled: u64,
    max_concurrency: u64,
    rerun_requests: u64,
    folders: u64,
}

/// A full run then a no-change rerun against an emulator enforcing Outlook's limits.
async fn graph_run(plan: &Plan, dir: &Path) -> anyhow::Result<GraphFigures> {
    fresh_dir(dir)?;
    let emulator = Emulator::start(EmulatorConfig {
        users: plan.graph_mailboxes,
        messages_per_user: plan.graph_per_user,
        seed: 7,
        special_users: false,
        throttling: true,
        mail_latency: plan.mail_latency,
        ..Default::default()
    })
    .await?;
    let access = TenantAccess::of(&emulator);
    let stack = stack::build(&access, dir)?;
    let first = stack::run_everyone(&stack, plan.graph_mailboxes).await?;
    let before = emulator.stats().await;
    let rerun = stack::run_everyone(&stack, plan.graph_mailboxes).await?;
    let stats = emulator.stats().await;
    // Where a no-change rerun spends its requests, route by route.
    for (route, count) in &stats.per_route {
        let delta = count - before.per_route.get(route).copied().unwrap_or(0);
        if delta > 0 {
            eprintln!("rerun: {delta:>6}  {route}");
        }
    }
    let expected: usize = emulator
        .users()
        .iter()
        .map(|u| emulator.message_count(&u.upn))
        .sum();
    let in_archive = stack.archive.stats()?.messages;
    if in_archive != expected as u64 {
        bail!("the graph run archived {in_archive} messages of {expected}");
    }
    emulator.shutdown().await;
    let mailboxes = first.mailboxes.len().max(1);
    let messages: u64 = first.mailboxes.iter().map(|m| m.messages_archived).sum();
    let folders: u64 = rerun.mailboxes.iter().map(|m| m.folders).sum();
    // Four requests in flight per mailbox, each answered after the service latency:
    // the most any client can get out of a mailbox under Outlook's concurrency limit.
    let ceiling_rps = 4.0 / plan.mail_latency.as_secs_f64();
    // Requests Outlook served per mailbox, inner requests of a `$batch` included: each takes
    // one of the mailbox's four slots, exactly as Microsoft counts them against its limits.
    let served: u64 = before.per_mailbox.values().map(|m| m.requests).sum();
    let achieved_rps = served as f64 / first.duration_secs.max(1e-9) / mailboxes as f64;
    let max_concurrency = stats
        .per_mailbox
        .values()
        .map(|m| m.max_concurrency)
        .max()
        .unwrap_or(0);
    Ok(GraphFigures {
        mailboxes,
        ceiling_rps,
        achieved_rps,
        messages,
        messages_per_sec: messages as f64 / first.duration_secs.max(1e-9),
        throttled: first.throttled,
        max_concurrency: max_concurrency as u64,
        rerun_requests: rerun.requests,
        folders,
    })
}

/// Runs the profile in a child process (this binary with `--child-run`) and returns its peak RSS in MB.
async fn memory_run(plan: &Plan, dir: &Path) -> anyhow::Result<f64> {
    fresh_dir(dir)?;
    let emulator = Emulator::start(EmulatorConfig {
        users: plan.memory_mailboxes,
        messages_per_user: plan.memory_per_user,
        seed: 11,
        special_users: false,
        large_message_bytes: Some(plan.large_message),
        ..Default::default()
    })
    .await?;
    let spec = json!({ "tenant": TenantAccess::of(&emulator), "data": dir });
    let exe = std::env::current_exe()?;
    let out = tokio::process::Command::new(exe)
        .arg("--child-run")
        .arg(spec.to_string())
        .output()
        .await?;
    let expected: usize = emulator
        .users()
        .iter()
        .map(|u| emulator.message_count(&u.upn))
        .sum();
    emulator.shutdown().await;
    if !out.status.success() {
        bail!("child run failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let value: serde_json::Value = serde_json::from_str(line.trim()).context("child output")?;
    let kb = value["vmhwm_kb"]
        .as_u64()
        .context("child reported no VmHWM")?;
    let archived = value["messages_archived"].as_u64().unwrap_or(0);
    eprintln!("memory: child archived {archived} messages");
    if archived != expected as u64 {
        bail!("the memory run archived {archived} messages of {expected}");
    }
    Ok(kb as f64 / 1024.0)
}

/// The child side of [`memory_run`]: one profile run, then its own peak RSS on stdout.
fn child_run(spec: &str) -> anyhow::Result<()> {
    let value: serde_json::Value = serde_json::from_str(spec)?;
    let tenant: TenantAccess = serde_json::from_value(value["tenant"].clone())?;
    let data = PathBuf::from(value["data"].as_str().context("data dir")?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let stack = stack::build(&tenant, &data)?;
        stack::run_everyone(&stack, 8).await
    })?;
    let archived: u64 = report.mailboxes.iter().map(|m| m.messages_archived).sum();
    println!(
        "{}",
        json!({ "vmhwm_kb": vmhwm_kb()?, "messages_archived": archived, "status": report.status })
    );
    Ok(())
}

/// Empties `dir` left by an earlier run of the benchmark, so every phase starts from nothing.
fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// Peak resident set size of this process (`VmHWM`), in KiB.
fn vmhwm_kb() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmHWM in /proc/self/status")
}

/// The `--json` document, exactly the keys scripts rely on (the table shows the rest).
fn fixed_shape(r: &serde_json::Value) -> serde_json::Value {
    let pick = |section: &str, keys: &[&str]| {
        let map: serde_json::Map<String, serde_json::Value> = keys
            .iter()
            .map(|k| ((*k).to_string(), r[section][*k].clone()))
            .collect();
        serde_json::Value::Object(map)
    };
    json!({
        "ingest": pick("ingest", &["messages", "mb", "ours_secs", "ours_stored_bytes", "notmuch_secs", "restic_secs", "restic_bytes"]),
        "graph": pick("graph", &["mailboxes", "ceiling_rps", "achieved_rps", "efficiency"]),
        "incremental": pick("incremental", &["requests", "folders"]),
        "memory": pick("memory", &["peak_rss_mb"]),
    })
}

fn print_table(r: &serde_json::Value) {
    let i = &r["ingest"];
    let g = &r["graph"];
    let f = |v: &serde_json::Value| {
        v.as_f64()
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "missing".into())
    };
    let mb = |v: &serde_json::Value| {
        v.as_f64()
            .map(|x| format!("{:.1} MB", x / 1e6))
            .unwrap_or_else(|| "missing".into())
    };
    println!(
        "ingest   {} messages, {:.1} MB",
        i["messages"],
        i["mb"].as_f64().unwrap_or(0.0)
    );
    println!(
        "         ours     {:>10} s   stored {:>12} (archive dir {})",
        f(&i["ours_secs"]),
        mb(&i["ours_stored_bytes"]),
        mb(&i["ours_dir_bytes"])
    );
    println!(
        "         notmuch  {:>10} s   database {}",
        f(&i["notmuch_secs"]),
        mb(&i["notmuch_db_bytes"])
    );
    println!(
        "         restic   {:>10} s   repository {}",
        f(&i["restic_secs"]),
        mb(&i["restic_bytes"])
    );
    println!(
        "graph    {} mailboxes, {} messages at {} msg/s",
        g["mailboxes"],
        g["messages"],
        f(&g["messages_per_sec"])
    );
    println!(
        "         {} req/s per mailbox of a {} ceiling: efficiency {} (throttled {}, max in flight {})",
        f(&g["achieved_rps"]),
        f(&g["ceiling_rps"]),
        f(&g["efficiency"]),
        g["throttled"],
        g["max_concurrency"]
    );
    println!(
        "rerun    {} requests for {} folders",
        r["incremental"]["requests"], r["incremental"]["folders"]
    );
    println!("memory   peak RSS {} MB", f(&r["memory"]["peak_rss_mb"]));
}
