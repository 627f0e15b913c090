//! `archive export` and `archive import`: byte-exact `.eml` files or mbox out,
//! `.eml` directories or mbox files in (re-importing the same mail adds nothing).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use archive_store::{ArchiveStore, ExportFilter, Scope, SearchQuery};
use m365_archiver::datadir::{Access, DataDir};
use m365_archiver::wiring;

use crate::Ctx;
use crate::cli::ExportFormat;
use crate::progress::Progress;

/// Most search hits an export by `--query` takes.
const EXPORT_QUERY_LIMIT: usize = 1_000_000;

/// Writes a user's archive as `.eml` files or mbox.
pub fn export(
    ctx: &Ctx,
    user: &str,
    folder: Option<String>,
    query: Option<String>,
    format: ExportFormat,
    out: &Path,
) -> Result<ExitCode> {
    let dir = DataDir::open(&ctx.data_dir, Access::Read)?;
    let archive = wiring::open_archive_read_only(&dir)?;
    if !archive.users()?.iter().any(|u| u == user) {
        bail!("user `{user}` has no archive (see `archive stats` for the archives there are)");
    }
    let ids = match &query {
        Some(text) => {
            let hits = archive.search(
                &SearchQuery {
                    text: text.clone(),
                    user: Some(user.to_string()),
                    from_date: None,
                    to_date: None,
                    limit: EXPORT_QUERY_LIMIT,
                },
                &Scope::User(user.to_string()),
            )?;
            Some(hits.into_iter().map(|h| h.id).collect::<BTreeSet<_>>())
        }
        None => None,
    };
    let filter = ExportFilter {
        user: user.to_string(),
        folder,
        ids,
    };
    let format = match format {
        ExportFormat::Eml => archive_store::ExportFormat::Eml,
        ExportFormat::Mbox => archive_store::ExportFormat::Mbox,
    };
    let progress = Progress::new("export", None, ctx.out.json);
    let report = archive
        .export(&filter, format, out)
        .with_context(|| format!("export of `{user}` to {}", out.display()))?;
    progress.finish();
    ctx.out.emit(&report, || {
        let mut text = format!(
            "{} messages ({}) of `{user}` written to {}\n",
            report.messages,
            crate::output::human_bytes(report.bytes),
            out.display()
        );
        for (id, why) in &report.failed {
            text.push_str(&format!("  NOT exported: message {}: {why}\n", id.0));
        }
        text
    })?;
    if !report.failed.is_empty() {
        bail!(
            "{} messages could not be exported (damaged; `archive verify` names the broken objects)",
            report.failed.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Imports `.eml` files or an mbox into a user's archive.
pub fn import(ctx: &Ctx, user: &str, folder: Option<String>, path: &Path) -> Result<ExitCode> {
    if !path.exists() {
        bail!("nothing to import: {} does not exist", path.display());
    }
    let existing = DataDir::open(&ctx.data_dir, Access::Read)
        .with_context(|| format!("no user named `{user}`"))?;
    if !wiring::has_user_store(&existing) {
        bail!("no user named `{user}`: add it with `users add` (or `users sync`) first");
    }
    let dir = DataDir::open(&ctx.data_dir, Access::Write)?;
    let users = wiring::open_user_store(&dir)?;
    if users.get(user)?.is_none() {
        bail!("no user named `{user}`: add it with `users add` (or `users sync`) first");
    }
    let archive = wiring::open_archive(&dir, true)?;
    let progress = Progress::new("import", None, ctx.out.json);
    let report = archive
        .import(user, folder.as_deref(), path)
        .with_context(|| format!("import of {} into `{user}`", path.display()))?;
    progress.finish();
    if report.imported > 0 || report.duplicates > 0 {
        users.mark_has_archive(user)?;
    }
    ctx.out.emit(&report, || {
        let mut text = format!(
            "{} messages read from {}: {} imported into `{user}`, {} already there\n",
            report.messages,
            path.display(),
            report.imported,
            report.duplicates
        );
        for failure in &report.failed {
            match failure.message {
                Some(n) => text.push_str(&format!(
                    "  failed: {} (message {n}): {}\n",
                    failure.path.display(),
                    failure.error
                )),
                None => text.push_str(&format!(
                    "  failed: {}: {}\n",
                    failure.path.display(),
                    failure.error
                )),
            }
        }
        text
    })?;
    if !report.failed.is_empty() {
        bail!(
            "{} inputs could not be imported (listed above)",
            report.failed.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
