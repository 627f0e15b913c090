//! Import of a directory of `.eml` files (sub-directories become folders; the files
//! of a maildir's `cur`/`new` count too, in the maildir's folder), a
//! single `.eml` file, or an mbox file (mboxrd unquoting), into any [`ArchiveStore`].
//!
//! Content addressing makes re-import a no-op: an entry already in the folder is
//! not added again. A file that cannot be read is reported by name and the import
//! goes on; large mbox messages are spooled to a temporary file, never held whole.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::chunker::next_piece;
use crate::export::is_from_line;
use crate::store::DiskArchiveStore;
use crate::{ArchiveError, ArchiveRequest, ArchiveStore, RawMessage};

/// Messages larger than this are spooled to a temporary file during mbox import.
const SPOOL_IN_MEMORY: usize = 16 << 20;
/// Folder for files at the top of an import when none is given.
const DEFAULT_FOLDER: &str = "Inbox";

/// One input that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportFailure {
    /// The file.
    pub path: PathBuf,
    /// Position of the message in an mbox file (1-based), if it came from one.
    pub message: Option<u64>,
    /// What went wrong.
    pub error: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Messages read.
    pub messages: u64,
    /// New archive entries.
    pub imported: u64,
    /// Messages already in that folder of the archive.
    pub duplicates: u64,
    /// Messages expunged from this archive before (by retention or erasure): not
    /// taken back.
    pub forgotten: u64,
    /// Inputs that failed.
    pub failed: Vec<ImportFailure>,
}

fn join_folder(base: Option<&str>, rel: &[String]) -> String {
    let mut parts: Vec<String> = base
        .map(|b| {
            b.split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    parts.extend(rel.iter().cloned());
    if parts.is_empty() {
        DEFAULT_FOLDER.to_string()
    } else {
        parts.join("/")
    }
}

fn record(
    report: &mut ImportReport,
    result: Result<crate::ArchiveOutcome, ArchiveError>,
    path: &Path,
    message: Option<u64>,
) {
    report.messages += 1;
    match result {
        Ok(outcome) if outcome.new_entry => report.imported += 1,
        Ok(outcome) if outcome.forgotten => report.forgotten += 1,
        Ok(_) => report.duplicates += 1,
        Err(e) => report.failed.push(ImportFailure {
            path: path.to_path_buf(),
            message,
            error: e.to_string(),
        }),
    }
}

/// Imports `path` (directory of `.eml`, single `.eml`, or mbox) into `user`'s archive.
pub fn import_path(
    store: &dyn ArchiveStore,
    user: &str,
    folder: Option<&str>,
    path: &Path,
) -> Result<ImportReport, ArchiveError> {
    let meta = std::fs::metadata(path).map_err(|e| ArchiveError::io(path, e))?;
    let mut report = ImportReport::default();
    if meta.is_dir() {
        import_dir(store, user, folder, path, &mut Vec::new(), &mut report)?;
        return Ok(report);
    }
    let mut head = [0u8; 5];
    let n = {
        use std::io::Read;
        let mut f = File::open(path).map_err(|e| ArchiveError::io(path, e))?;
        let mut got = 0;
        while got < 5 {
            match f.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) => return Err(ArchiveError::io(path, e)),
            }
        }
        got
    };
    if n == 5 && &head == b"From " {
        import_mbox(store, user, folder, path, &mut report)?;
    } else if is_eml(path) {
        let request = ArchiveRequest {
            user: user.to_string(),
            folder: join_folder(folder, &[]),
            source: None,
            received: None,
        };
        record(
            &mut report,
            store.archive(&request, RawMessage::File(path)),
            path,
            None,
        );
    } else {
        return Err(ArchiveError::BadInput {
            path: path.to_path_buf(),
            detail: "neither a directory of .eml files, an .eml file, nor an mbox file (an mbox starts with \"From \")"
                .into(),
        });
    }
    Ok(report)
}

fn is_eml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("eml"))
}

fn import_dir(
    store: &dyn ArchiveStore,
    user: &str,
    folder: Option<&str>,
    dir: &Path,
    rel: &mut Vec<String>,
    report: &mut ImportReport,
) -> Result<(), ArchiveError> {
    let mut files = Vec::new();
    collect_eml(dir, folder, rel, &mut files, report)?;
    archive_files(store, user, &files, report);
    Ok(())
}

/// A message file of a maildir: any visible file directly in `cur` or `new`.
fn in_maildir(rel: &[String], name: &std::ffi::OsStr) -> bool {
    rel.last().is_some_and(|d| d == "cur" || d == "new") && !name.to_string_lossy().starts_with('.')
}

/// Walks `dir` (sorted, symbolic links not followed) and lists its `.eml` files with
/// the archive folder each belongs to.
fn collect_eml(
    dir: &Path,
    folder: Option<&str>,
    rel: &mut Vec<String>,
    files: &mut Vec<(PathBuf, String)>,
    report: &mut ImportReport,
) -> Result<(), ArchiveError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| ArchiveError::io(dir, e))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        // Do not follow symbolic links: no loops, nothing outside the tree.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            rel.push(entry.file_name().to_string_lossy().into_owned());
            let result = collect_eml(&path, folder, rel, files, report);
            rel.pop();
            if let Err(e) = result {
                report.failed.push(ImportFailure {
                    path,
                    message: None,
                    error: e.to_string(),
                });
            }
        } else if meta.is_file() && is_eml(&path) {
            files.push((path, join_folder(folder, rel)));
        } else if meta.is_file() && in_maildir(rel, &entry.file_name()) {
            // A maildir's `cur`/`new` directories are not folders of their own.
            files.push((path, join_folder(folder, &rel[..rel.len() - 1])));
        }
    }
    Ok(())
}

/// Writers importing at once: each `archive` call waits for its fsync, and concurrent
/// calls share group commits, so several writers keep the disk busy with few syncs.
const IMPORT_WRITERS: usize = 16;

/// Archives `files` with [`IMPORT_WRITERS`] concurrent writers; results are recorded
/// in file order.
fn archive_files(
    store: &dyn ArchiveStore,
    user: &str,
    files: &[(PathBuf, String)],
    report: &mut ImportReport,
) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<crate::ArchiveOutcome, ArchiveError>>>> =
        files.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..IMPORT_WRITERS.min(files.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((path, folder)) = files.get(i) else {
                        break;
                    };
                    let request = ArchiveRequest {
                        user: user.to_string(),
                        folder: folder.clone(),
                        source: None,
                        received: None,
                    };
                    let result = store.archive(&request, RawMessage::File(path));
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(result);
                    }
                }
            });
        }
    });
    for ((path, _), slot) in files.iter().zip(results) {
        let result = slot.into_inner().ok().flatten().unwrap_or_else(|| {
            Err(ArchiveError::BadInput {
                path: path.clone(),
                detail: "the import writer stopped before this file".into(),
            })
        });
        record(report, result, path, None);
    }
}

/// A message being collected from an mbox: in memory, then in a temp file when large.
struct Spool {
    memory: Vec<u8>,
    file: Option<(tempfile::NamedTempFile, std::io::BufWriter<File>)>,
}

impl Spool {
    fn new() -> Self {
        Spool {
            memory: Vec::new(),
            file: None,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if let Some((_, w)) = &mut self.file {
            return w.write_all(bytes);
        }
        self.memory.extend_from_slice(bytes);
        if self.memory.len() > SPOOL_IN_MEMORY {
            let tmp = tempfile::NamedTempFile::new()?;
            let mut w = std::io::BufWriter::new(tmp.reopen()?);
            w.write_all(&self.memory)?;
            self.memory = Vec::new();
            self.file = Some((tmp, w));
        }
        Ok(())
    }
}

fn import_mbox(
    store: &dyn ArchiveStore,
    user: &str,
    folder: Option<&str>,
    path: &Path,
    report: &mut ImportReport,
) -> Result<(), ArchiveError> {
    let file = File::open(path).map_err(|e| ArchiveError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let folder = match folder {
        Some(f) => join_folder(Some(f), &[]),
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_FOLDER.to_string()),
    };
    let request = ArchiveRequest {
        user: user.to_string(),
        folder,
        source: None,
        received: None,
    };
    let mut piece = Vec::new();
    let mut at_line_start = true;
    let mut current: Option<Spool> = None;
    let mut held_newline = false;
    let mut index = 0u64;
    let io = |e| ArchiveError::io(path, e);
    let finish =
        |spool: Spool, index: u64, report: &mut ImportReport| -> Result<(), ArchiveError> {
            let result = match spool.file {
                Some((tmp, mut w)) => {
                    w.flush().map_err(|e| ArchiveError::io(tmp.path(), e))?;
                    drop(w);
                    store.archive(&request, RawMessage::File(tmp.path()))
                }
                None => store.archive(&request, RawMessage::Bytes(&spool.memory)),
            };
            record(report, result, path, Some(index));
            Ok(())
        };
    loop {
        piece.clear();
        let ends_line = next_piece(&mut reader, &mut piece).map_err(io)?;
        if piece.is_empty() {
            break;
        }
        if at_line_start && piece.starts_with(b"From ") {
            if let Some(spool) = current.take() {
                finish(spool, index, report)?;
            }
            index += 1;
            current = Some(Spool::new());
            held_newline = false;
            at_line_start = ends_line;
            if !ends_line {
                // An absurdly long From_ line: skip the rest of it.
                loop {
                    piece.clear();
                    let ends = next_piece(&mut reader, &mut piece).map_err(io)?;
                    if ends || piece.is_empty() {
                        break;
                    }
                }
                at_line_start = true;
            }
            continue;
        }
        let Some(spool) = current.as_mut() else {
            return Err(ArchiveError::BadInput {
                path: path.to_path_buf(),
                detail: "not an mbox file: it does not start with a \"From \" line".into(),
            });
        };
        if held_newline {
            spool.write(b"\n").map_err(io)?;
            held_newline = false;
        }
        let mut bytes: &[u8] = &piece;
        if at_line_start && bytes.first() == Some(&b'>') && is_from_line(bytes) {
            bytes = &bytes[1..];
        }
        if let Some(body) = bytes.strip_suffix(b"\n") {
            spool.write(body).map_err(io)?;
            held_newline = true;
        } else {
            spool.write(bytes).map_err(io)?;
        }
        at_line_start = ends_line;
    }
    if let Some(spool) = current.take() {
        finish(spool, index, report)?;
    }
    Ok(())
}

impl DiskArchiveStore {
    /// Imports a directory of `.eml` files, an `.eml` file or an mbox file into
    /// `user`'s archive (`folder`, default: sub-directories / the mbox file name).
    pub fn import(
        &self,
        user: &str,
        folder: Option<&str>,
        path: &Path,
    ) -> Result<ImportReport, ArchiveError> {
        let span = tracing::info_span!("import", user, path = %path.display());
        let _enter = span.enter();
        let report = import_path(self, user, folder, path)?;
        tracing::info!(
            messages = report.messages,
            imported = report.imported,
            duplicates = report.duplicates,
            failed = report.failed.len(),
            "import finished"
        );
        Ok(report)
    }
}
