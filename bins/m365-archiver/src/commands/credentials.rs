//! `credentials` commands.

use std::process::ExitCode;

use anyhow::Result;

use crate::Ctx;
use crate::cli::CredentialsCommand;

/// Runs one `credentials` command.
pub async fn run(_ctx: &Ctx, _cmd: CredentialsCommand) -> Result<ExitCode> {
    Err(super::not_available("credentials"))
}
