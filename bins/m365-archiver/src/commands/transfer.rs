//! `archive export` and `archive import`: byte-exact `.eml` files or mbox out,
//! `.eml` directories or mbox files in (re-importing the same mail adds nothing).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use archiver_service::{ExportRequest, ImportRequest};

use crate::cli::ExportFormat;
use crate::progress::Progress;
use crate::{CALLER, Ctx};

/// Writes a user's archive as `.eml` files or mbox.
pub fn export(
    ctx: &Ctx,
    user: &str,
    folder: Option<String>,
    query: Option<String>,
    format: ExportFormat,
    out: &Path,
) -> Result<ExitCode> {
    let request = ExportRequest {
        user: user.to_string(),
        folder,
        query,
        format: match format {
            ExportFormat::Eml => archive_store::ExportFormat::Eml,
            ExportFormat::Mbox => archive_store::ExportFormat::Mbox,
        },
        out: out.to_path_buf(),
    };
    let progress = Progress::new("export", None, ctx.out.json);
    let report = ctx.service.export(CALLER, &request)?;
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
    let request = ImportRequest {
        user: user.to_string(),
        folder,
        path: path.to_path_buf(),
    };
    let progress = Progress::new("import", None, ctx.out.json);
    let report = ctx.service.import(CALLER, &request);
    progress.finish();
    let report = report?;
    ctx.out.emit(&report, || {
        let mut text = format!(
            "{} messages read from {}: {} imported into `{user}`, {} already there\n",
            report.messages,
            path.display(),
            report.imported,
            report.duplicates
        );
        if report.forgotten > 0 {
            text.push_str(&format!(
                "  {} not taken back: expunged from this archive before (retention, erasure)\n",
                report.forgotten
            ));
        }
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
