//! Service that runs scheduled archiving profiles.
//!
//! Every minute (and whenever a run ends) it reloads the profiles of the data
//! directory, starts those whose schedule is due, never two runs of one profile at
//! once (a run lock held across processes), and logs each run's report. SIGTERM or
//! SIGINT cancels the running profiles: each finishes the message in hand, saves its
//! checkpoints and stops; the service then exits 0. `--once` runs what is due and exits.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Parser;
use m365_archiver::datadir::{self, DATA_DIR_ENV};

/// Runs the archiving profiles of a data directory on their schedules.
#[derive(Debug, Parser)]
#[command(name = "m365-archiverd", version)]
struct Args {
    /// Data directory (default: $M365_ARCHIVER_DATA, else the platform data directory).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Run the profiles that are due now, wait for them, and exit.
    #[arg(long)]
    once: bool,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    datadir::restrict_umask();
    m365_archiver::logging::init(std::env::var("RUST_LOG").ok().as_deref(), "info");
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    let data_dir = match args
        .data_dir
        .or_else(|| std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
    {
        Some(dir) => dir,
        None => datadir::platform_data_dir(
            std::env::var("XDG_DATA_HOME").ok().as_deref(),
            std::env::var("HOME").ok().as_deref(),
        )?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("m365-archiverd")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let _ = (data_dir, args.once);
        anyhow::bail!("the scheduler is not available in this build")
    })
}
