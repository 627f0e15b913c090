//! `archive restore`: archived mail written back into a mailbox, exactly once, with a
//! progress bar on a terminal and the report (`--json`: the fixed shape of the design).

use std::process::ExitCode;

use anyhow::{Result, bail};
use archive_store::MessageId;
use archiver_service::{RestoreRequest, Selection};

use crate::cli::RestoreArgs;
use crate::progress::RestoreProgress;
use crate::{CALLER, Ctx};

/// The selection the arguments name (clap makes exactly one present).
fn selection(args: &RestoreArgs) -> Result<Selection> {
    if !args.id.is_empty() {
        return Ok(Selection::Ids(
            args.id.iter().map(|id| MessageId(id.clone())).collect(),
        ));
    }
    if let Some(query) = &args.query {
        return Ok(Selection::Query(query.clone()));
    }
    if let Some(folder) = &args.folder {
        return Ok(Selection::Folder(folder.clone()));
    }
    bail!("choose what to restore: --id, --query or --folder")
}

/// Restores the selected messages and prints the report.
pub async fn restore(ctx: &Ctx, args: &RestoreArgs) -> Result<ExitCode> {
    let request = RestoreRequest {
        user: args.user.clone(),
        selection: selection(args)?,
        to_mailbox: args.to_mailbox.clone(),
        to_folder: args.to_folder.clone(),
        exact_mime: args.exact_mime,
    };
    let progress = RestoreProgress::new(ctx.out.json);
    let report = ctx
        .service
        .restore(CALLER, &request, &args.credentials, &|e| progress.event(e))
        .await;
    progress.finish();
    let report = report?;
    ctx.out.emit(&report, || {
        let mut text = format!(
            "{} messages ({}) restored into {} under {}, {} there already, {} failed\n",
            report.restored,
            crate::output::human_bytes(report.bytes),
            report.to_mailbox,
            report.to_folder,
            report.skipped_existing,
            report.failed
        );
        for failure in &report.failures {
            text.push_str(&format!(
                "  NOT restored: message {} ({}): {}\n",
                failure.id, failure.folder, failure.error
            ));
        }
        text
    })?;
    if report.failed > 0 {
        bail!(
            "{} messages could not be restored (listed above); run the same restore again to retry them",
            report.failed
        );
    }
    Ok(ExitCode::SUCCESS)
}
