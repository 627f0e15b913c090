//! Diagnostics to stderr through `tracing`, filtered `RUST_LOG`-style.
//!
//! stdout is reserved for command output (one JSON document under `--json`), so
//! every log line goes to stderr. Library crates never log secrets; the filter
//! string is read from the environment by the binary and passed in here.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `filter` is a `RUST_LOG`-style directive string
/// (e.g. `info,m365_mailbox=debug`); `default` applies when it is absent or invalid.
pub fn init(filter: Option<&str>, default: &str) {
    let filter = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .try_init();
}
