//! `demo`: an emulated tenant archived end to end through the real commands' code.

use std::process::ExitCode;

use anyhow::Result;

use crate::Ctx;
use crate::cli::DemoArgs;

/// Runs the demo.
pub async fn run(_ctx: &Ctx, _args: DemoArgs) -> Result<ExitCode> {
    Err(super::not_available("demo"))
}
