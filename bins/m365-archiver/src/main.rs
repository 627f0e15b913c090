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

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Parser;

use cli::{Cli, Command};
use m365_archiver::datadir::{self, DATA_DIR_ENV};
use output::Output;

/// What every command gets: where the data lives and how to print.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// `--data-dir`, else `$M365_ARCHIVER_DATA`, else the platform data directory.
    pub data_dir: PathBuf,
    /// `--data-dir` was given (the demo uses a temporary directory otherwise).
    pub data_dir_explicit: bool,
    /// Output mode.
    pub out: Output,
}

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
    datadir::restrict_umask();
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
    let env_dir = std::env::var_os(DATA_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let data_dir_explicit = cli.data_dir.is_some();
    let data_dir = match cli.data_dir.or(env_dir) {
        Some(dir) => dir,
        None => datadir::platform_data_dir(
            std::env::var("XDG_DATA_HOME").ok().as_deref(),
            std::env::var("HOME").ok().as_deref(),
        )?,
    };
    let ctx = Ctx {
        data_dir,
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
            Command::Demo(args) => commands::demo::run(&ctx, args).await,
            Command::Credentials(cmd) => commands::credentials::run(&ctx, cmd).await,
            Command::Users(cmd) => commands::users::run(&ctx, cmd).await,
            Command::Profile(cmd) => commands::profile::run(&ctx, cmd).await,
            Command::Archive(cmd) => commands::archive::run(&ctx, cmd).await,
        }
    })
}
