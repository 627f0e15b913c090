//! `archive` commands.

use std::process::ExitCode;

use anyhow::Result;

use crate::Ctx;
use crate::cli::ArchiveCommand;

/// Runs one `archive` command.
pub async fn run(_ctx: &Ctx, _cmd: ArchiveCommand) -> Result<ExitCode> {
    Err(super::not_available("archive"))
}
