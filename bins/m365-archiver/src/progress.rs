//! Progress for long operations: an indicatif bar on a terminal, plain lines on
//! stderr otherwise (logs, pipes, the service), never anything on stdout.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One progress display (a bar, or plain lines).
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
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

    /// Adds to the total (more work discovered).
    pub fn add_total(&self, more: u64) {
        if let Some(bar) = &self.bar {
            bar.inc_length(more);
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
