//! `users` commands.

use std::process::ExitCode;

use anyhow::Result;

use crate::Ctx;
use crate::cli::UsersCommand;

/// Runs one `users` command.
pub async fn run(_ctx: &Ctx, _cmd: UsersCommand) -> Result<ExitCode> {
    Err(super::not_available("users"))
}
