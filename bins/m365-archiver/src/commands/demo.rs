//! `demo`: an emulated tenant on 127.0.0.1, archived end to end through exactly the
//! code of the real commands (`credentials add`, `users sync`, `profile create`,
//! `profile run`, `archive stats`, `archive search`), then archived again
//! incrementally after new mail arrives.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use m365_emulator::{Emulator, EmulatorConfig};
use serde::Serialize;

use super::{archive, credentials, profile, users};
use crate::cli::{CloudArg, CredentialsAddArgs, DemoArgs, ProfileCreateArgs};
use crate::output::{Output, human_bytes};
use crate::{CALLER, Ctx};

const CREDENTIAL: &str = "demo-tenant";
const PROFILE: &str = "all-mailboxes";

/// Everything the demo did, as one JSON document under `--json`.
#[derive(Debug, Serialize)]
struct DemoSummary {
    data_dir: String,
    kept: bool,
    users: usize,
    messages_in_tenant: u64,
    first_run: profile_engine::RunReport,
    second_run: profile_engine::RunReport,
    delivered_before_second_run: usize,
    stats: archive_store::ArchiveStats,
    search: String,
    search_hits: usize,
    duration_secs: f64,
}

fn heading(ctx: &Ctx, text: &str) {
    if !ctx.out.json {
        println!("\n== {text}");
    }
}

/// Runs the demo.
pub async fn run(ctx: &Ctx, args: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let (root, _temp) = if ctx.data_dir_explicit {
        (ctx.service.data_dir().to_path_buf(), None)
    } else {
        let temp = tempfile::Builder::new()
            .prefix("m365-archiver-demo-")
            .tempdir()
            .context("cannot create a temporary data directory")?;
        (temp.path().join("data"), Some(temp))
    };
    let inner = Ctx {
        service: m365_archiver::service(root.clone()),
        data_dir_explicit: true,
        out: Output {
            json: false,
            quiet: ctx.out.json,
        },
    };
    inner.service.prepare_private(CALLER)?;

    heading(
        ctx,
        &format!(
            "Starting an emulated Microsoft 365 tenant: {} users x {} messages (plus special accounts)",
            args.users, args.messages_per_user
        ),
    );
    let emulator = Emulator::start(EmulatorConfig {
        users: args.users,
        messages_per_user: args.messages_per_user,
        seed: 2024,
        ..EmulatorConfig::default()
    })
    .await
    .context("cannot start the emulated tenant")?;
    let tenant_messages: u64 = emulator
        .users()
        .iter()
        .filter(|u| u.has_mailbox)
        .map(|u| emulator.message_count(&u.upn) as u64)
        .sum();
    if !ctx.out.json {
        println!(
            "tenant {} at {} (Graph at {}), {} messages in its mailboxes (a disabled account's and a \
             policy-excluded one's included); data directory {}",
            emulator.tenant_domain(),
            emulator.login_url(),
            emulator.graph_url(),
            tenant_messages,
            root.display()
        );
    }

    let result = walk_through(ctx, &inner, &emulator, tenant_messages, started).await;
    emulator.shutdown().await;
    let summary = result?;
    if ctx.out.json {
        ctx.out.json(&summary)?;
    } else {
        let first = &summary.first_run;
        println!(
            "\n== Done in {:.1} s: {} messages ({}) archived from {} mailboxes in {:.1} s ({:.0} messages/s); \
             stored {} for {} of mail; the incremental run archived the {} new messages in {:.1} s.",
            summary.duration_secs,
            first.totals.messages_archived,
            human_bytes(first.totals.bytes),
            first.totals.mailboxes - first.totals.mailboxes_skipped - first.totals.mailboxes_failed,
            first.duration_secs,
            first.totals.messages_archived as f64 / first.duration_secs.max(0.001),
            human_bytes(summary.stats.stored_bytes),
            human_bytes(summary.stats.logical_bytes),
            summary.second_run.totals.messages_archived,
            summary.second_run.duration_secs,
        );
        if summary.kept {
            println!(
                "The archive stays in {}: try `m365-archiver --data-dir {} archive search WORD`.",
                summary.data_dir, summary.data_dir
            );
        } else {
            println!(
                "The temporary data directory was removed; pass --data-dir DIR to keep the archive and explore it."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn walk_through(
    ctx: &Ctx,
    inner: &Ctx,
    emulator: &Emulator,
    tenant_messages: u64,
    started: Instant,
) -> Result<DemoSummary> {
    // 1. Credentials: a certificate, the way a production tenant should be set up.
    heading(
        ctx,
        "1. credentials add (certificate credential, verified by obtaining a token)",
    );
    let pem_dir = inner
        .service
        .ensure_dir(CALLER, &PathBuf::from("demo-app"))?;
    let certificate = pem_dir.join("certificate.pem");
    let private_key = pem_dir.join("private-key.pem");
    std::fs::write(&certificate, emulator.certificate_pem())
        .with_context(|| format!("cannot write {}", certificate.display()))?;
    std::fs::write(&private_key, emulator.private_key_pem())
        .with_context(|| format!("cannot write {}", private_key.display()))?;
    let add = CredentialsAddArgs {
        name: CREDENTIAL.into(),
        tenant: emulator.tenant_domain(),
        client_id: emulator.client_id(),
        secret_env: None,
        secret_file: None,
        certificate: Some(certificate),
        private_key: Some(private_key),
        cloud: CloudArg::Custom,
        login_url: Some(emulator.login_url().to_string()),
        graph_url: Some(emulator.graph_url().to_string()),
        ca_file: None,
    };
    credentials::run(inner, crate::cli::CredentialsCommand::Add(Box::new(add))).await?;

    // 2. Users from the directory.
    heading(
        ctx,
        "2. users sync (directory into local users; guests, disabled and mailbox-less users skipped)",
    );
    users::sync_and_print(inner, CREDENTIAL, false, false).await?;

    // 3. A profile over every mailbox.
    heading(ctx, "3. profile create --all --sync-directory");
    let create = ProfileCreateArgs {
        name: PROFILE.into(),
        credentials: CREDENTIAL.into(),
        mailbox: None,
        target_user: None,
        all: true,
        all_except: None,
        only: None,
        sync_directory: true,
        include_folder: Vec::new(),
        exclude_folder: Vec::new(),
        older_than_days: None,
        delete_mode: None,
        delete_after_days: None,
        timeout_secs: None,
        schedule: None,
    };
    profile::create_profile(inner, &create)?;

    // 4. The first run.
    heading(
        ctx,
        "4. profile run (full archive; the policy-excluded mailbox fails, the others go on)",
    );
    let first_run = profile::run_and_print(inner, PROFILE).await?;

    // 5. Statistics and a search.
    heading(ctx, "5. archive stats");
    archive::print_stats(inner)?;
    let search = pick_search_word(emulator).unwrap_or_else(|| "report".to_string());
    heading(ctx, &format!("6. archive search {search}"));
    let search_hits = archive::print_search(inner, &search, None, 10)?;

    // 6. New mail, then an incremental run.
    let delivered = deliver_new_mail(emulator)?;
    heading(
        ctx,
        &format!(
            "7. {delivered} new messages arrive; profile run again (incremental: only the new mail)"
        ),
    );
    let second_run = profile::run_and_print(inner, PROFILE).await?;
    let stats = inner.service.archive_stats(CALLER)?.stats;

    Ok(DemoSummary {
        data_dir: inner.service.data_dir().display().to_string(),
        kept: inner.data_dir_explicit && ctx.data_dir_explicit,
        users: emulator.users().len(),
        messages_in_tenant: tenant_messages,
        first_run,
        second_run,
        delivered_before_second_run: delivered,
        stats,
        search,
        search_hits,
        duration_secs: started.elapsed().as_secs_f64(),
    })
}

/// A word of a real subject in the tenant, so the demo's search finds something.
fn pick_search_word(emulator: &Emulator) -> Option<String> {
    let user = emulator
        .users()
        .into_iter()
        .find(|u| u.has_mailbox && !u.access_denied)?;
    for id in emulator.message_ids(&user.upn).into_iter().take(20) {
        let mime = emulator.message_mime(&user.upn, &id)?;
        let text = String::from_utf8_lossy(&mime);
        let subject = text
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix("Subject:"))?;
        if let Some(word) = subject
            .split(|c: char| !c.is_alphanumeric())
            .find(|w| w.len() >= 6 && w.chars().all(|c| c.is_ascii_alphabetic()))
        {
            return Some(word.to_ascii_lowercase());
        }
    }
    None
}

/// Delivers a few new messages to the first mailboxes.
fn deliver_new_mail(emulator: &Emulator) -> Result<usize> {
    let mut delivered = 0;
    for (n, user) in emulator
        .users()
        .into_iter()
        .filter(|u| u.has_mailbox && !u.access_denied && u.enabled)
        .take(3)
        .enumerate()
    {
        let to = user.mail.clone().unwrap_or_else(|| user.upn.clone());
        let mime = format!(
            "From: Demo Sender <sender@example.com>\r\nTo: {to}\r\nSubject: Quarterly figures {n}\r\n\
             Date: Mon, 2 Mar 2026 10:0{n}:00 +0000\r\nMessage-ID: <demo-incremental-{n}@example.com>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             The figures for the quarter are attached in spirit.\r\n"
        );
        emulator
            .deliver(&user.upn, "inbox", mime.into_bytes())
            .with_context(|| format!("cannot deliver a message to {}", user.upn))?;
        delivered += 1;
    }
    Ok(delivered)
}
