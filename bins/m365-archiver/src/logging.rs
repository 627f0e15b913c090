//! Diagnostics to stderr through `tracing`, filtered `RUST_LOG`-style.
//!
//! stdout is reserved for command output (one JSON document under `--json`), so
//! every log line goes to stderr. Library crates never log secrets; the filter
//! string is read from the environment by the binary and passed in here.

use tracing_subscriber::EnvFilter;

/// The directive that silences sled (see [`init`]).
const SLED_OFF: &str = "sled=off";

/// Installs the global subscriber: `filter` is a `RUST_LOG`-style directive string
/// (e.g. `info,m365_mailbox=debug`); `default` applies when it is absent or invalid.
///
/// sled's own log lines are always off: sled emits them from closures that
/// crossbeam-epoch may run inside a thread-local destructor, where the fmt layer's
/// thread-local buffer is already gone, so an enabled sled event there aborts the
/// process ("thread local panicked on drop"). Errors sled returns are logged by our
/// crates instead.
pub fn init(filter: Option<&str>, default: &str) {
    let mut filter = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    if let Ok(directive) = SLED_OFF.parse() {
        filter = filter.add_directive(directive);
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .try_init();
}
