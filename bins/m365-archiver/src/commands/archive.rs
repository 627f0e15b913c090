//! `archive` commands: statistics, integrity, search, show, export, import and restore.

use std::process::ExitCode;

use anyhow::{Result, bail};
use archiver_service::SearchRequest;

use crate::cli::ArchiveCommand;
use crate::output::{Table, human_bytes, truncate};
use crate::{CALLER, Ctx};

/// Runs one `archive` command.
pub async fn run(ctx: &Ctx, cmd: ArchiveCommand) -> Result<ExitCode> {
    match cmd {
        ArchiveCommand::Stats => stats(ctx),
        ArchiveCommand::Verify => verify(ctx),
        ArchiveCommand::Reindex => reindex(ctx),
        ArchiveCommand::Search { query, user, limit } => search(ctx, &query, user, limit),
        ArchiveCommand::Show { id } => show(ctx, &id),
        ArchiveCommand::Export {
            user,
            folder,
            query,
            format,
            out,
        } => super::transfer::export(ctx, &user, folder, query, format, &out),
        ArchiveCommand::Import { user, folder, path } => {
            super::transfer::import(ctx, &user, folder, &path)
        }
        ArchiveCommand::Restore(args) => super::restore::restore(ctx, &args).await,
        ArchiveCommand::Erase { ids, reason } => super::erase::erase(ctx, &ids, &reason),
    }
}

/// Prints the archive's figures (`archive stats`, also used by the demo).
pub fn print_stats(ctx: &Ctx) -> Result<archive_store::ArchiveStats> {
    let overview = ctx.service.archive_stats(CALLER)?;
    let stats = overview.stats;
    let (free, total, reserve) = (
        overview.free_bytes,
        overview.filesystem_bytes,
        overview.reserve_bytes,
    );
    // The fixed keys scripts read, plus the archive filesystem's free space and reserve.
    let mut json = serde_json::to_value(&stats)?;
    if let Some(object) = json.as_object_mut() {
        object.insert("free_bytes".into(), free.into());
        object.insert("filesystem_bytes".into(), total.into());
        object.insert("reserve_bytes".into(), reserve.into());
    }
    ctx.out.emit(&json, || {
        let mut text = format!(
            "{} messages ({} unique), {} chunks, {} of mail stored in {} ({:.0}% of the original)\n",
            stats.messages,
            stats.unique_messages,
            stats.chunks,
            human_bytes(stats.logical_bytes),
            human_bytes(stats.stored_bytes),
            if stats.logical_bytes == 0 {
                100.0
            } else {
                stats.stored_bytes as f64 * 100.0 / stats.logical_bytes as f64
            }
        );
        text.push_str(&format!(
            "{} free of {} on the archive's filesystem; runs need {} free to start{}\n",
            human_bytes(free),
            human_bytes(total),
            human_bytes(reserve),
            if free < reserve {
                " (below the reserve: runs are refused until space is freed)"
            } else {
                ""
            }
        ));
        if !stats.users.is_empty() {
            let mut table = Table::new(&["USER", "MESSAGES"]);
            for (user, count) in &stats.users {
                table.row(vec![user.clone(), count.to_string()]);
            }
            text.push('\n');
            text.push_str(&table.render());
        }
        text
    })?;
    Ok(stats)
}

fn stats(ctx: &Ctx) -> Result<ExitCode> {
    print_stats(ctx)?;
    Ok(ExitCode::SUCCESS)
}

fn verify(ctx: &Ctx) -> Result<ExitCode> {
    let progress = crate::progress::Progress::new("verify", None, ctx.out.json);
    let report = ctx.service.verify_archive(CALLER)?;
    progress.finish();
    let clean = report.is_clean();
    ctx.out.emit(&report, || {
        let mut text = format!(
            "{}: {} packs, {} chunks, {} manifests, {} messages, {} records re-read and re-hashed\n",
            if clean { "archive intact" } else { "ARCHIVE DAMAGED" },
            report.packs,
            report.chunks,
            report.manifests,
            report.messages,
            report.records
        );
        for problem in &report.problems {
            text.push_str(&format!("broken: {}: {}\n", problem.object, problem.detail));
            for affected in &problem.affected {
                let places: Vec<String> = affected.archives.iter().map(|(u, f)| format!("{u}: {f}")).collect();
                text.push_str(&format!("  affects message {} ({})\n", affected.id.0, places.join("; ")));
            }
        }
        for drift in &report.drift {
            text.push_str(&format!("index drift: {drift} (`archive reindex` repairs it)\n"));
        }
        text
    })?;
    if !clean {
        bail!("the archive failed verification (see above for each broken object)");
    }
    Ok(ExitCode::SUCCESS)
}

fn reindex(ctx: &Ctx) -> Result<ExitCode> {
    let progress = crate::progress::Progress::new("reindex", None, ctx.out.json);
    let stats = ctx.service.reindex_archive(CALLER)?;
    progress.finish();
    ctx.out.emit(&stats, || {
        format!(
            "indexes rebuilt from the packs: {} messages ({} unique)",
            stats.messages, stats.unique_messages
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Searches and prints the hits (`archive search`, also the demo's).
pub fn print_search(ctx: &Ctx, text: &str, user: Option<String>, limit: usize) -> Result<usize> {
    let request = SearchRequest {
        text: text.to_string(),
        user,
        from_date: None,
        to_date: None,
        limit,
    };
    let hits = ctx.service.search(CALLER, &request)?;
    ctx.out.emit(&hits, || {
        if hits.is_empty() {
            return format!("no message matches {text:?}");
        }
        let mut table = Table::new(&["DATE", "FROM", "SUBJECT", "USER", "FOLDER", "ID"]);
        for hit in &hits {
            table.row(vec![
                hit.date
                    .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default(),
                truncate(hit.from.as_deref().unwrap_or(""), 32),
                truncate(hit.subject.as_deref().unwrap_or(""), 48),
                hit.user.clone(),
                truncate(&hit.folder, 24),
                hit.id.0.clone(),
            ]);
        }
        format!("{}{} hits for {text:?}", table.render(), hits.len())
    })?;
    Ok(hits.len())
}

fn search(ctx: &Ctx, text: &str, user: Option<String>, limit: usize) -> Result<ExitCode> {
    print_search(ctx, text, user, limit)?;
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    let shown = ctx.service.show_message(CALLER, id)?;
    ctx.out.emit(&shown, || {
        let info = &shown.info;
        let m = &info.metadata;
        let mut out = String::new();
        let mut field = |name: &str, value: &str| {
            if !value.is_empty() {
                out.push_str(&format!("{name:<12}{value}\n"));
            }
        };
        field("Id:", &info.id.0);
        field("Date:", &m.date.map(|d| d.to_rfc2822()).unwrap_or_default());
        field("From:", m.from.as_deref().unwrap_or(""));
        field("To:", &m.to.join(", "));
        field("Cc:", &m.cc.join(", "));
        field("Subject:", m.subject.as_deref().unwrap_or(""));
        field("Message-ID:", m.message_id.as_deref().unwrap_or(""));
        field("Size:", &human_bytes(info.size));
        field("Attachments:", &m.attachments.join(", "));
        let places: Vec<String> = info
            .locations
            .iter()
            .map(|(u, f)| format!("{u}: {f}"))
            .collect();
        field("Archived in:", &places.join("; "));
        if m.unparseable {
            out.push_str("(the message could not be parsed; it is archived byte for byte)\n");
        }
        out.push('\n');
        out.push_str(&shown.text);
        out
    })?;
    Ok(ExitCode::SUCCESS)
}
