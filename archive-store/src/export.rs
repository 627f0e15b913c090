//! Export of one user's archive to a directory of `.eml` files (folder structure
//! kept, every path component made safe) or to one mbox file (mboxrd quoting).
//! Messages are streamed chunk by chunk and come out byte-exact; a damaged message
//! is reported and skipped, never half-written.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::chunker::next_piece;
use crate::store::{ArchiveEntry, DiskArchiveStore, Visibility, parse_id};
use crate::{ArchiveError, MessageId};

/// Output format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A directory of `.eml` files, one sub-directory per folder.
    Eml,
    /// One mbox file (mboxrd).
    Mbox,
}

/// What to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFilter {
    /// Whose archive.
    pub user: String,
    /// This folder and its subfolders only.
    pub folder: Option<String>,
    /// Only these messages (e.g. the hits of a search).
    pub ids: Option<BTreeSet<MessageId>>,
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// Messages written.
    pub messages: u64,
    /// Message bytes written.
    pub bytes: u64,
    /// Messages that could not be read, with the reason.
    pub failed: Vec<(MessageId, String)>,
}

/// Turns one folder-path component into a file name that is safe on Linux,
/// macOS and Windows: no separators, no control or reserved characters, no `.`/`..`,
/// no reserved device names, no trailing dot or space, at most 100 bytes.
pub fn safe_file_name(component: &str) -> String {
    let mut out: String = component
        .chars()
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    while out.ends_with('.') || out.ends_with(' ') {
        out.pop();
    }
    if out.trim().is_empty() {
        out = "_".to_string();
    }
    let stem = out
        .split('.')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved || out.starts_with('.') {
        out.insert(0, '_');
    }
    if out.len() > 100 {
        let mut cut = 100;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

fn folder_dir(root: &Path, folder: &str) -> PathBuf {
    let mut dir = root.to_path_buf();
    for part in folder.split('/').filter(|p| !p.is_empty()) {
        dir.push(safe_file_name(part));
    }
    dir
}

fn in_folder(entry_folder: &str, wanted: &str) -> bool {
    let wanted = wanted.trim_matches('/');
    wanted.is_empty()
        || entry_folder == wanted
        || entry_folder
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The envelope sender for an mbox `From ` line (no spaces).
fn envelope_sender(from: Option<&str>) -> String {
    let Some(from) = from else {
        return "MAILER-DAEMON".into();
    };
    let addr = match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => &from[a + 1..b],
        _ => from,
    };
    if addr.is_empty() || addr.contains(char::is_whitespace) {
        "MAILER-DAEMON".into()
    } else {
        addr.to_string()
    }
}

/// Whether a line needs mboxrd quoting (`>*From `).
pub(crate) fn is_from_line(line: &[u8]) -> bool {
    let start = line.iter().take_while(|&&b| b == b'>').count();
    line[start..].starts_with(b"From ")
}

impl DiskArchiveStore {
    /// Exports the selected part of one user's archive to `out` (a directory for
    /// [`ExportFormat::Eml`], a file for [`ExportFormat::Mbox`]); restricted entries
    /// are left out (see [`DiskArchiveStore::export_with`]).
    pub fn export(
        &self,
        filter: &ExportFilter,
        format: ExportFormat,
        out: &Path,
    ) -> Result<ExportReport, ArchiveError> {
        self.export_with(filter, format, out, Visibility::Ordinary)
    }

    /// Like [`DiskArchiveStore::export`], restricted entries included only with
    /// [`Visibility::Privileged`].
    pub fn export_with(
        &self,
        filter: &ExportFilter,
        format: ExportFormat,
        out: &Path,
        visibility: Visibility,
    ) -> Result<ExportReport, ArchiveError> {
        // Damaged caches abort the export, are rebuilt, and the export starts again.
        self.healing(|| self.export_raw(filter, format, out, visibility))
    }

    fn export_raw(
        &self,
        filter: &ExportFilter,
        format: ExportFormat,
        out: &Path,
        visibility: Visibility,
    ) -> Result<ExportReport, ArchiveError> {
        let span = tracing::info_span!("export", user = %filter.user, out = %out.display());
        let _enter = span.enter();
        let entries: Vec<ArchiveEntry> = self
            .list_with(&filter.user, None, visibility)?
            .into_iter()
            .filter(|e| {
                filter
                    .folder
                    .as_deref()
                    .is_none_or(|f| in_folder(&e.folder, f))
            })
            .filter(|e| filter.ids.as_ref().is_none_or(|ids| ids.contains(&e.id)))
            .collect();
        let mut report = ExportReport::default();
        match format {
            ExportFormat::Eml => {
                std::fs::create_dir_all(out).map_err(|e| ArchiveError::io(out, e))?;
                for entry in &entries {
                    let dir = folder_dir(out, &entry.folder);
                    std::fs::create_dir_all(&dir).map_err(|e| ArchiveError::io(&dir, e))?;
                    let stamp = entry
                        .received
                        .or(entry.date)
                        .map(|d| d.format("%Y%m%d-%H%M%S_").to_string())
                        .unwrap_or_default();
                    let path = dir.join(format!("{stamp}{}.eml", entry.id.0));
                    match self.write_eml(&entry.id, &path) {
                        Ok(n) => {
                            report.messages += 1;
                            report.bytes += n;
                        }
                        Err(WriteError::Output(e)) => return Err(e),
                        Err(WriteError::Message(e)) => {
                            let _ = std::fs::remove_file(&path);
                            report.failed.push((entry.id.clone(), e));
                        }
                    }
                }
            }
            ExportFormat::Mbox => {
                if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| ArchiveError::io(parent, e))?;
                }
                let file = File::create(out).map_err(|e| ArchiveError::io(out, e))?;
                let mut writer = BufWriter::with_capacity(1 << 20, file);
                for entry in &entries {
                    let start = writer
                        .stream_position()
                        .map_err(|e| ArchiveError::io(out, e))?;
                    match self.write_mbox_message(entry, &mut writer, out) {
                        Ok(n) => {
                            report.messages += 1;
                            report.bytes += n;
                        }
                        Err(WriteError::Output(e)) => return Err(e),
                        Err(WriteError::Message(e)) => {
                            // Roll back the partial message.
                            writer.flush().map_err(|e| ArchiveError::io(out, e))?;
                            writer
                                .get_ref()
                                .set_len(start)
                                .map_err(|e| ArchiveError::io(out, e))?;
                            writer
                                .seek(SeekFrom::Start(start))
                                .map_err(|e| ArchiveError::io(out, e))?;
                            report.failed.push((entry.id.clone(), e));
                        }
                    }
                }
                writer.flush().map_err(|e| ArchiveError::io(out, e))?;
                writer
                    .get_ref()
                    .sync_all()
                    .map_err(|e| ArchiveError::io(out, e))?;
            }
        }
        tracing::info!(
            messages = report.messages,
            failed = report.failed.len(),
            "export finished"
        );
        Ok(report)
    }

    /// A message that cannot be opened is skipped, unless the caches are what failed:
    /// then the whole export stops so that they are rebuilt and it runs again.
    fn unreadable(&self, e: ArchiveError) -> WriteError {
        if crate::caches::is_cache_error(&e, &self.index_dir) {
            WriteError::Output(e)
        } else {
            WriteError::Message(e.to_string())
        }
    }

    fn write_eml(&self, id: &MessageId, path: &Path) -> Result<u64, WriteError> {
        let address = parse_id(id).map_err(|e| WriteError::Message(e.to_string()))?;
        let mut reader = self
            .open_message(&address)
            .map_err(|e| self.unreadable(e))?;
        let output = |e| WriteError::Output(ArchiveError::io(path, e));
        let file = File::create(path).map_err(output)?;
        let mut writer = BufWriter::new(file);
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = std::io::Read::read(&mut reader, &mut buf)
                .map_err(|e| WriteError::Message(e.to_string()))?;
            if n == 0 {
                break;
            }
            writer.write_all(&buf[..n]).map_err(output)?;
            total += n as u64;
        }
        writer.flush().map_err(output)?;
        Ok(total)
    }

    fn write_mbox_message(
        &self,
        entry: &ArchiveEntry,
        writer: &mut BufWriter<File>,
        out: &Path,
    ) -> Result<u64, WriteError> {
        let address = parse_id(&entry.id).map_err(|e| WriteError::Message(e.to_string()))?;
        let reader = self
            .open_message(&address)
            .map_err(|e| self.unreadable(e))?;
        let when = entry.received.or(entry.date).unwrap_or_default();
        let output = |e| WriteError::Output(ArchiveError::io(out, e));
        writeln!(
            writer,
            "From {} {}",
            envelope_sender(entry.from.as_deref()),
            when.format("%a %b %e %H:%M:%S %Y")
        )
        .map_err(output)?;
        let mut reader = BufReader::with_capacity(256 * 1024, reader);
        let mut piece = Vec::new();
        let mut at_line_start = true;
        let mut total = 0u64;
        loop {
            piece.clear();
            let ends_line = next_piece(&mut reader, &mut piece)
                .map_err(|e| WriteError::Message(e.to_string()))?;
            if piece.is_empty() {
                break;
            }
            if at_line_start && is_from_line(&piece) {
                writer.write_all(b">").map_err(output)?;
            }
            writer.write_all(&piece).map_err(output)?;
            total += piece.len() as u64;
            at_line_start = ends_line;
        }
        // Separator: exactly one newline, removed again on import.
        writer.write_all(b"\n").map_err(output)?;
        Ok(total)
    }
}

enum WriteError {
    /// The output failed: stop.
    Output(ArchiveError),
    /// This message could not be read: skip it.
    Message(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(safe_file_name(".."), "_");
        assert_eq!(safe_file_name("a/b\\c"), "a_b_c");
        assert_eq!(safe_file_name("CON"), "_CON");
        assert_eq!(safe_file_name("com1.txt"), "_com1.txt");
        assert_eq!(safe_file_name("Inbox. "), "Inbox");
        assert_eq!(safe_file_name(".hidden"), "_.hidden");
        assert_eq!(safe_file_name("Posteingang"), "Posteingang");
        assert!(safe_file_name(&"é".repeat(200)).len() <= 100);
    }

    #[test]
    fn folders_match_with_subfolders() {
        assert!(in_folder("Inbox/Projects", "Inbox"));
        assert!(in_folder("Inbox", "Inbox/"));
        assert!(!in_folder("Inboxes", "Inbox"));
    }

    #[test]
    fn from_lines() {
        assert!(is_from_line(b"From x"));
        assert!(is_from_line(b">>From x"));
        assert!(!is_from_line(b"from x"));
        assert_eq!(envelope_sender(Some("A B <a@b.c>")), "a@b.c");
        assert_eq!(envelope_sender(None), "MAILER-DAEMON");
    }
}
