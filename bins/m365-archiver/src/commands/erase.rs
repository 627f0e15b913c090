//! `archive erase`: GDPR erasure of messages, now where allowed, else restricted.

use std::process::ExitCode;

use anyhow::Result;
use archiver_service::retention::ErasureOutcome;
use serde::Serialize;

use crate::output::Table;
use crate::{CALLER, Ctx};

/// `archive erase --json`.
#[derive(Debug, Serialize)]
struct EraseJson<'a> {
    /// Entries erased now.
    erased: usize,
    /// Entries restricted until erasure is allowed.
    restricted: usize,
    /// What happened to each archive entry of the ids.
    entries: &'a [ErasureOutcome],
}

/// Erases the messages `ids` (every archive entry of each) for `reason`.
pub fn erase(ctx: &Ctx, ids: &[String], reason: &str) -> Result<ExitCode> {
    let outcomes = ctx.service.erase_messages(CALLER, ids, reason)?;
    let erased = outcomes
        .iter()
        .filter(|o| matches!(o, ErasureOutcome::Erased { .. }))
        .count();
    let json = EraseJson {
        erased,
        restricted: outcomes.len() - erased,
        entries: &outcomes,
    };
    ctx.out.emit(&json, || {
        let mut table = Table::new(&["OUTCOME", "USER", "FOLDER", "ID", "WHY"]);
        for outcome in &outcomes {
            let (what, key, reason) = match outcome {
                ErasureOutcome::Erased { key } => ("erased", key, String::new()),
                ErasureOutcome::Restricted { key, verdict } => (
                    "restricted",
                    key,
                    archiver_service::restriction_text(verdict),
                ),
            };
            table.row(vec![
                what.to_string(),
                key.user.clone(),
                key.folder.clone(),
                key.id.clone(),
                reason,
            ]);
        }
        format!(
            "{erased} entries erased, {} restricted (hidden from their owners, erased by \
             `retention apply` once allowed)\n\n{}",
            json.restricted,
            table.render()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
