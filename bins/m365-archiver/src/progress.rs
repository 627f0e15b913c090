//! Progress for long operations: an indicatif bar on a terminal, plain lines on
//! stderr otherwise (logs, pipes, the service), never anything on stdout.

use std::io::IsTerminal;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use profile_engine::{ProgressEvent, ProgressSink};

/// One progress display (a bar, or plain lines).
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    quiet: bool,
}

impl Progress {
    /// A display for `label`; `total` units when known. A bar only when stderr is a terminal
    /// and `quiet` is false (`--json` runs stay quiet).
    pub fn new(label: &str, total: Option<u64>, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = match total {
                Some(total) => {
                    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                }
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if total.is_some() {
                "{spinner} {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})"
            } else {
                "{spinner} {prefix} {pos} {msg} ({elapsed})"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            bar,
            label: label.to_string(),
            quiet,
        }
    }

    /// Whether a bar is drawn (otherwise callers print milestones with [`Progress::line`]).
    pub fn is_bar(&self) -> bool {
        self.bar.is_some()
    }

    /// Sets the total once known.
    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    /// Advances by `n` units.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Short status text next to the bar.
    pub fn message(&self, text: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(text);
        }
    }

    /// A milestone: printed above the bar, or as a plain line on stderr.
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None if self.quiet => {}
            None => {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("{}: {text}", self.label);
                }
            }
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Progress of a profile run: a bar over the selected mailboxes with running message
/// and byte counts, and one line per finished mailbox and per failed message.
#[derive(Debug)]
pub struct RunProgress {
    display: Progress,
    archived: AtomicU64,
    duplicates: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

impl RunProgress {
    /// A display for a run of `profile`; `quiet` under `--json`.
    pub fn new(profile: &str, quiet: bool) -> Self {
        Self {
            display: Progress::new(profile, Some(0), quiet),
            archived: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.display.finish();
    }

    fn counts(&self) -> String {
        format!(
            "mailboxes | {} archived, {} duplicate, {} failed, {}",
            self.archived.load(Ordering::Relaxed),
            self.duplicates.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            crate::output::human_bytes(self.bytes.load(Ordering::Relaxed))
        )
    }
}

impl ProgressSink for RunProgress {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::RunStarted { mailboxes, .. } => {
                self.display.set_total(mailboxes as u64);
                self.display
                    .line(&format!("{mailboxes} mailboxes selected"));
            }
            ProgressEvent::MessageArchived {
                bytes, duplicate, ..
            } => {
                if duplicate {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.archived.fetch_add(1, Ordering::Relaxed);
                }
                self.bytes.fetch_add(bytes, Ordering::Relaxed);
                if self.display.is_bar() {
                    self.display.message(self.counts());
                }
            }
            ProgressEvent::MessageFailed {
                mailbox,
                folder,
                message_id,
                error,
            } => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.display.line(&format!(
                    "{mailbox}: message {message_id} in {folder} failed: {error}"
                ));
            }
            ProgressEvent::MailboxFinished { report } => {
                self.display.inc(1);
                let status = serde_json::to_value(report.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let mut line = format!(
                    "{}: {status}, {} archived, {} duplicate, {} failed",
                    report.mailbox,
                    report.messages_archived,
                    report.messages_duplicate,
                    report.messages_failed
                );
                if let Some(error) = &report.error {
                    line.push_str(&format!(" ({error})"));
                }
                self.display.line(&line);
                self.display.message(self.counts());
            }
            _ => {}
        }
    }
}

/// Progress of a restore: a bar over the selected messages with running counts, and one
/// line per failed message.
#[derive(Debug)]
pub struct RestoreProgress {
    display: Progress,
    restored: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

impl RestoreProgress {
    /// A display for a restore; `quiet` under `--json`.
    pub fn new(quiet: bool) -> Self {
        Self {
            display: Progress::new("restore", Some(0), quiet),
            restored: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.display.finish();
    }

    fn counts(&self) -> String {
        format!(
            "| {} restored, {} there already, {} failed, {}",
            self.restored.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            crate::output::human_bytes(self.bytes.load(Ordering::Relaxed))
        )
    }

    /// Shows one event of the restore job.
    pub fn event(&self, event: &archiver_service::RestoreEvent) {
        use archiver_service::RestoreEvent as E;
        match event {
            E::Started { messages, bytes } => {
                self.display.set_total(*messages);
                self.display.line(&format!(
                    "{messages} messages selected ({})",
                    crate::output::human_bytes(*bytes)
                ));
            }
            E::FolderStarted {
                folder,
                target,
                messages,
            } => {
                let folder = if folder.is_empty() { "(top)" } else { folder };
                self.display
                    .line(&format!("{folder} → {target}: {messages} messages"));
            }
            E::Restored { bytes, .. } => {
                self.restored.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(*bytes, Ordering::Relaxed);
                self.display.inc(1);
                self.display.message(self.counts());
            }
            E::Skipped { .. } => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                self.display.inc(1);
                self.display.message(self.counts());
            }
            E::Failed { id, error } => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.display.inc(1);
                self.display
                    .line(&format!("message {} failed: {error}", id.0));
            }
        }
    }
}
