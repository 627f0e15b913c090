//! Command line of the Microsoft 365 mail archiver.
//!
//! Wiring only: parse the command, resolve the data directory, build the library
//! objects and print what they return. Exit codes: 0 success, 1 failed run or bad
//! input, 2 usage error.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;
mod output;
mod progress;

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use archiver_service::{Principal, Service};
use clap::Parser;

use cli::{Cli, Command};
use output::Output;

/// What every command gets: the service over the data directory, the caller and how to print.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The use cases over `--data-dir`, else `$M365_ARCHIVER_DATA`, else the platform
    /// data directory.
    pub service: Service,
    /// `--data-dir` was given (the demo uses a temporary directory otherwise).
    pub data_dir_explicit: bool,
    /// Output mode.
    pub out: Output,
}

/// The command line on the archive host acts as the local administrator.
pub const CALLER: &Principal = &Principal::LocalAdministrator;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version exit 0; every usage error exits 2.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    m365_archiver::restrict_umask();
    m365_archiver::logging::init(std::env::var("RUST_LOG").ok().as_deref(), "warn");
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let data_dir_explicit = cli.data_dir.is_some();
    let ctx = Ctx {
        service: m365_archiver::service(m365_archiver::data_dir(cli.data_dir)?),
        data_dir_explicit,
        out: Output {
            json: cli.json,
            quiet: false,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("m365-archiver")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            #[cfg(feature = "demo")]
            Command::Demo(args) => commands::demo::run(&ctx, args).await,
            Command::Credentials(cmd) => commands::credentials::run(&ctx, cmd).await,
            Command::Users(cmd) => commands::users::run(&ctx, cmd).await,
            Command::Profile(cmd) => commands::profile::run(&ctx, cmd).await,
            Command::Archive(cmd) => commands::archive::run(&ctx, cmd).await,
            Command::Audit(cmd) => commands::audit::run(&ctx, cmd),
            Command::Retention(cmd) => commands::retention::run(&ctx, cmd),
            Command::Hold(cmd) => commands::hold::run(&ctx, cmd),
            Command::Access(cmd) => commands::access::run(&ctx, cmd),
        }
    })
}
