//! `m365-emulator serve`: runs the emulated tenant until SIGINT/SIGTERM and prints, once it
//! listens, one JSON line with everything a client needs (URLs, ids, secret, PEM file paths,
//! the users' password).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use m365_emulator::{Emulator, EmulatorConfig, FaultConfig};

/// A local Microsoft identity platform and Graph v1.0 emulator.
#[derive(Debug, Parser)]
#[command(name = "m365-emulator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a tenant and serve it on loopback until interrupted.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address of the Graph listener; login and control take free ports on the same host.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Regular users with mailboxes.
    #[arg(long, default_value_t = 5)]
    users: usize,
    /// Messages per regular mailbox.
    #[arg(long, default_value_t = 30)]
    messages_per_user: usize,
    /// Seed: the same seed serves the same tenant, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Serve https with a freshly generated CA (its PEM path is printed as `ca_pem`).
    #[arg(long)]
    tls: bool,
    /// Fill the first user's mailbox from the .eml files under DIR (folder = sub-directory).
    #[arg(long, value_name = "DIR")]
    eml_dir: Option<PathBuf>,
    /// Divide Outlook's throttling windows and Retry-After by X (e.g. 60 for benchmarks).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    time_scale: f64,
    /// Fault rates, e.g. `503=0.05,504=0.01,reset=0.02,truncate=0.01,slow=200`.
    #[arg(long, value_name = "SPEC")]
    faults: Option<String>,
    /// Leave out the special users (disabled, guest, unlicensed, policy-excluded, no mail).
    #[arg(long)]
    no_special_users: bool,
    /// Add one message of this many bytes to the first user's inbox.
    #[arg(long, value_name = "BYTES")]
    large_message_bytes: Option<u64>,
    /// Turn Outlook throttling off.
    #[arg(long)]
    no_throttling: bool,
    /// Mail service latency in milliseconds (divided by --time-scale).
    #[arg(long, value_name = "MS", default_value_t = 5)]
    mail_latency_ms: u64,
    /// Lifetime of issued tokens in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3599)]
    token_lifetime: u64,
    /// Leave out the shared, room and equipment mailboxes.
    #[arg(long)]
    no_mailbox_kinds: bool,
    /// Leave out Recoverable Items content, online archives and unconvertible items.
    #[arg(long)]
    no_hidden_mail: bool,
    /// Register a redirect URI for the app's web sign-in (repeatable).
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { 2 } else { 0 };
            let _ = error.print();
            return std::process::ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::from(1);
        }
    };
    let Command::Serve(args) = cli.command;
    match runtime.block_on(serve(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// A private directory for the PEM files, removed on exit.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create() -> anyhow::Result<PrivateDir> {
        let base = std::env::temp_dir();
        for attempt in 0..16u32 {
            let path = base.join(format!("m365-emulator-{}-{}", std::process::id(), attempt));
            let mut builder = std::fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            match builder.create(&path) {
                Ok(()) => return Ok(PrivateDir(path)),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => {
                    return Err(error).with_context(|| format!("cannot create {}", path.display()));
                }
            }
        }
        bail!("cannot create a private directory under {}", base.display())
    }

    fn write(&self, name: &str, content: &str) -> anyhow::Result<PathBuf> {
        let path = self.0.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(content.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    fn path_string(path: &Path) -> String {
        path.to_string_lossy().into_owned()
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let faults = match &args.faults {
        Some(spec) => FaultConfig::parse_spec(spec).context("--faults")?,
        None => FaultConfig::default(),
    };
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        bail!(
            "--time-scale must be a positive number, got {}",
            args.time_scale
        );
    }
    let config = EmulatorConfig {
        users: args.users,
        messages_per_user: args.messages_per_user,
        seed: args.seed,
        tls: args.tls,
        time_scale: args.time_scale,
        faults,
        token_lifetime: std::time::Duration::from_secs(args.token_lifetime),
        throttling: !args.no_throttling,
        special_users: !args.no_special_users,
        large_message_bytes: args.large_message_bytes,
        eml_dir: args.eml_dir,
        mail_latency: std::time::Duration::from_millis(args.mail_latency_ms),
        listen: args.listen,
        mailbox_kinds: !args.no_mailbox_kinds,
        hidden_mail: !args.no_hidden_mail,
        redirect_uris: args.redirect_uris,
    };
    // Watch the signals before the JSON line announces us: whoever reads the line may
    // send SIGTERM at once, and an unwatched SIGTERM kills without cleaning up.
    let stop = StopSignal::watch()?;
    let emulator = Emulator::start(config)
        .await
        .context("cannot start the emulator")?;
    let dir = PrivateDir::create()?;
    let certificate = dir.write("certificate.pem", &emulator.certificate_pem())?;
    let private_key = dir.write("private-key.pem", &emulator.private_key_pem())?;
    let mut line = serde_json::json!({
        "login_url": emulator.login_url().as_str(),
        "graph_url": emulator.graph_url().as_str(),
        "admin_url": emulator.admin_url().as_str(),
        "tenant_id": emulator.tenant_id(),
        "tenant_domain": emulator.tenant_domain(),
        "client_id": emulator.client_id(),
        "client_secret": emulator.client_secret(),
        "certificate_pem": PrivateDir::path_string(&certificate),
        "private_key_pem": PrivateDir::path_string(&private_key),
        "user_password": emulator.user_password(),
    });
    if let Some(ca) = emulator.ca_pem() {
        let ca_path = dir.write("ca.pem", &ca)?;
        line["ca_pem"] = serde_json::Value::String(PrivateDir::path_string(&ca_path));
    }
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}").context("cannot write to stdout")?;
        stdout.flush().context("cannot flush stdout")?;
    }
    stop.wait().await;
    emulator.shutdown().await;
    drop(dir);
    Ok(())
}

/// SIGTERM and SIGINT (Ctrl-C elsewhere), watched from the moment it is created.
struct StopSignal {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn watch() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
                interrupt: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    #[cfg(unix)]
    async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn wait(self) {
        // If Ctrl-C cannot be watched, there is nothing to wait for but the process's end.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
