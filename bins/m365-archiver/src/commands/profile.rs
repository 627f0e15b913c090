//! `profile` commands.

use std::process::ExitCode;

use anyhow::Result;

use crate::Ctx;
use crate::cli::ProfileCommand;

/// Runs one `profile` command.
pub async fn run(_ctx: &Ctx, _cmd: ProfileCommand) -> Result<ExitCode> {
    Err(super::not_available("profile"))
}
