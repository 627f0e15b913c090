//! What commands print: aligned tables and lines for people, exactly one JSON
//! document on stdout under `--json`.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

/// Where a command's result goes.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// `--json` was given.
    pub json: bool,
    /// Print nothing (the demo under `--json` prints one summary document instead).
    pub quiet: bool,
}

impl Output {
    /// Prints `value` as the command's single JSON document.
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let text = serde_json::to_string_pretty(value).context("cannot encode the JSON output")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}").context("cannot write to stdout")?;
        Ok(())
    }

    /// Prints `value` under `--json`, else the human text `human()` builds.
    pub fn emit<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> Result<()> {
        if self.quiet {
            Ok(())
        } else if self.json {
            self.json(value)
        } else {
            let text = human();
            let mut out = std::io::stdout().lock();
            write!(out, "{text}").context("cannot write to stdout")?;
            if !text.ends_with('\n') && !text.is_empty() {
                writeln!(out).context("cannot write to stdout")?;
            }
            Ok(())
        }
    }
}

/// A plain-text table with a header row and left-aligned columns.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, columns separated by two spaces.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut text = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                text.push_str(cell);
                if i + 1 < columns {
                    let pad = width.saturating_sub(cell.chars().count()) + 2;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&self.header);
        for row in &self.rows {
            line(row);
        }
        out
    }
}

pub use archiver_service::human_bytes;

/// Text cut to at most `max` characters, with an ellipsis when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["NAME", "KIND"]);
        t.row(vec!["contoso".into(), "secret".into()]);
        t.row(vec!["x".into(), "certificate".into()]);
        assert_eq!(
            t.render(),
            "NAME     KIND\ncontoso  secret\nx        certificate\n"
        );
    }

    #[test]
    fn bytes_read_well() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn truncate_counts_characters() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo wörld", 6), "héllo…");
    }
}
