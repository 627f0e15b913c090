//! Service that runs scheduled archiving profiles.
//!
//! Every minute (and whenever a run ends) it reloads the profiles of the data
//! directory, starts those whose schedule is due, never two runs of one profile at
//! once (a run lock held across processes), and logs each run's report. SIGTERM or
//! SIGINT cancels the running profiles: each finishes the message in hand, saves its
//! checkpoints and stops; the service then exits 0. `--once` runs what is due and exits.
//!
//! With `--web ADDR --credentials C` it also serves the archive's pages and API
//! (archive-web): Entra sign-in with credential `C`'s app registration, restore
//! through it; over TLS with `--tls-cert/--tls-key`, plain HTTP only on loopback.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

mod scheduler;
mod web;

use anyhow::{Context as _, Result};
use archiver_service::Principal;
use clap::Parser;
use profile_engine::CancellationToken;
use tracing::info;

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
    /// Also serve the archive's web pages and API on this address (`127.0.0.1:8080`).
    #[arg(long, value_name = "ADDR", requires = "credentials")]
    web: Option<std::net::SocketAddr>,
    /// The credential whose app registration signs people in (and restores).
    #[arg(long, value_name = "NAME")]
    credentials: Option<String>,
    /// The address people open (default `http(s)://ADDR/`); the redirect URI to
    /// register in Entra is `<public-url>auth/callback`.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    m365_archiver::restrict_umask();
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
    let service = m365_archiver::service(m365_archiver::data_dir(args.data_dir.clone())?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("m365-archiverd")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // The service holds credentials that open every mailbox: refuse a shared directory.
        service.prepare_private(CALLER)?;
        let stop = CancellationToken::new();
        // Watched before the scheduler announces anything, so that a SIGTERM sent the
        // moment the service is seen running always stops it cleanly.
        tokio::spawn(stop_on_signal(watch_signals(), stop.clone()));
        if let Some(addr) = args.web {
            web::start(&service, &args, addr, stop.clone()).await?;
        }
        let outcome = scheduler::serve(service, args.once, stop).await?;
        Ok(if outcome.failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// The service on the archive host acts as the local administrator.
pub const CALLER: &Principal = &Principal::LocalAdministrator;

type Signals = (tokio::signal::unix::Signal, tokio::signal::unix::Signal);

/// SIGTERM and SIGINT, watched from now on; `None` when they cannot be.
fn watch_signals() -> Option<Signals> {
    use tokio::signal::unix::{SignalKind, signal};
    Some((
        signal(SignalKind::terminate()).ok()?,
        signal(SignalKind::interrupt()).ok()?,
    ))
}

/// Cancels `stop` on SIGTERM or SIGINT.
async fn stop_on_signal(signals: Option<Signals>, stop: CancellationToken) {
    let Some((mut term, mut int)) = signals else {
        tracing::error!(
            "cannot listen for SIGTERM/SIGINT; stop the service with SIGKILL (checkpoints are still consistent)"
        );
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    stop.cancel();
}
