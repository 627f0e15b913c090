//! Mail content for the web pages and the API: a message's parts (text, HTML,
//! attachments), its archived bytes, one attachment, the folders of an archive,
//! the archives a caller may open, and exports written as a zip of `.eml` files
//! with a SHA-256 manifest.
//!
//! Every read goes through the same scoping as `archive show`
//! ([`Service::visible_message`]): a message outside the caller's archives and an
//! unknown id are the same `Forbidden` for a caller who cannot see every archive,
//! and the refusal is recorded. Every read that hands out content is recorded too,
//! before the content is returned.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use archive_store::{ArchiveStore, ExportFormat, ExportReport, MessageInfo};
use audit_log::{Action, Target};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::ExportRequest;
use crate::error::{ResultExt, ServiceError};
use crate::principal::Visible;
use crate::{Principal, Service};

type Result<T> = std::result::Result<T, ServiceError>;

/// One attachment (or inline part) of a message, as listed on its page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachmentInfo {
    /// Position among the message's attachments (0-based): the `{n}` of
    /// `/api/v1/messages/{id}/attachments/{n}`.
    pub index: usize,
    /// The file name the sender gave (unsanitised: render it escaped, and pass it
    /// through a safe-file-name function before using it as one).
    pub name: String,
    /// `type/subtype` as the message declares it (`application/octet-stream` when absent).
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: u64,
    /// The part's `Content-ID` without angle brackets, for `cid:` references.
    pub content_id: Option<String>,
}

/// A message as its page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// Metadata and the places it is archived in that the caller may see.
    #[serde(flatten)]
    pub info: MessageInfo,
    /// The readable text (the first text part, or the HTML reduced to text).
    pub text: String,
    /// The first HTML part, as sent (hostile input: sanitise before showing it).
    #[serde(skip)]
    pub html: Option<String>,
    /// Recipients (`To`), as the message names them.
    pub to: Vec<String>,
    /// Copies (`Cc`).
    pub cc: Vec<String>,
    /// Attachments and inline parts.
    pub attachments: Vec<AttachmentInfo>,
}

/// One attachment's bytes.
#[derive(Debug, Clone)]
pub struct AttachmentContent {
    /// What it is.
    pub info: AttachmentInfo,
    /// Its decoded bytes.
    pub bytes: Vec<u8>,
}

/// A folder of an archive and the messages filed in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FolderCount {
    /// Folder path (`Inbox/Projects`).
    pub path: String,
    /// Messages filed in exactly this folder.
    pub messages: u64,
}

/// Where an export as a zip of `.eml` files went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipExport {
    /// Messages written, bytes, failures.
    pub report: ExportReport,
    /// Files in the zip (manifest excluded).
    pub files: usize,
}

/// Name of the manifest inside an `.eml` zip: `sha256  path` lines, as `sha256sum -c` reads them.
pub const ZIP_MANIFEST: &str = "SHA256SUMS";

/// The parts of a parsed message; the parser runs inside `catch_unwind`, so a
/// message that makes it panic yields no parts rather than a crash.
struct Parts {
    html: Option<String>,
    to: Vec<String>,
    cc: Vec<String>,
    attachments: Vec<(AttachmentInfo, Vec<u8>)>,
}

fn addresses(address: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    let Some(address) = address else {
        return Vec::new();
    };
    address
        .iter()
        .map(|a| match (&a.name, &a.address) {
            (Some(name), Some(addr)) => format!("{name} <{addr}>"),
            (None, Some(addr)) => addr.to_string(),
            (Some(name), None) => name.to_string(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_parts(raw: &[u8], with_bytes: Option<usize>) -> Option<Parts> {
    std::panic::catch_unwind(|| {
        use mail_parser::MimeHeaders;
        let message = mail_parser::MessageParser::default().parse(raw)?;
        let html = message.body_html(0).map(|h| h.into_owned());
        let mut attachments = Vec::new();
        for (index, part) in message.attachments().enumerate() {
            let content_type = part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".to_string())
                .to_ascii_lowercase();
            let name = part
                .attachment_name()
                .map(str::to_string)
                .unwrap_or_else(|| format!("attachment-{}", index + 1));
            let info = AttachmentInfo {
                index,
                name,
                content_type,
                size: part.contents().len() as u64,
                content_id: part
                    .content_id()
                    .map(|id| id.trim().trim_matches(['<', '>']).to_string()),
            };
            let bytes = if with_bytes == Some(index) {
                part.contents().to_vec()
            } else {
                Vec::new()
            };
            attachments.push((info, bytes));
        }
        Some(Parts {
            html,
            to: addresses(message.to()),
            cc: addresses(message.cc()),
            attachments,
        })
    })
    .ok()
    .flatten()
}

impl Service {
    /// A message for its page or `GET /api/v1/messages/{id}`: metadata, text, the
    /// HTML body (unsanitised), recipients and attachments. Recorded as a content read.
    pub fn message_view(&self, principal: &Principal, id: &str) -> Result<MessageView> {
        let (archive, info) = self.visible_message(principal, id, Action::ContentShow)?;
        let raw = archive.read_message(&info.id)?;
        let text = crate::text::message_text(&raw);
        let parts = parse_parts(&raw, None);
        self.audit_content_read(principal, Action::ContentShow, &info, &[])?;
        let (html, to, cc, attachments) = match parts {
            Some(p) => (
                p.html,
                p.to,
                p.cc,
                p.attachments.into_iter().map(|(a, _)| a).collect(),
            ),
            None => (None, Vec::new(), Vec::new(), Vec::new()),
        };
        Ok(MessageView {
            info,
            text,
            html,
            to,
            cc,
            attachments,
        })
    }

    /// The archived bytes of a message, exactly as archived (`GET
    /// /api/v1/messages/{id}/raw`). Recorded as a content read of the raw message.
    pub fn message_raw(&self, principal: &Principal, id: &str) -> Result<(MessageInfo, Vec<u8>)> {
        let (archive, info) = self.visible_message(principal, id, Action::ContentShow)?;
        let raw = archive.read_message(&info.id)?;
        self.audit_content_read(
            principal,
            Action::ContentShow,
            &info,
            &[("part", "raw".to_string())],
        )?;
        Ok((info, raw))
    }

    /// Attachment `index` of a message (`GET /api/v1/messages/{id}/attachments/{n}`).
    /// An index the message does not have is `NotFound` (the caller may see the
    /// message, so nothing is revealed). Recorded with the attachment's name.
    pub fn message_attachment(
        &self,
        principal: &Principal,
        id: &str,
        index: usize,
    ) -> Result<AttachmentContent> {
        let (archive, info) = self.visible_message(principal, id, Action::ContentShow)?;
        let raw = archive.read_message(&info.id)?;
        let found = parse_parts(&raw, Some(index))
            .and_then(|p| p.attachments.into_iter().nth(index))
            .filter(|(a, _)| a.index == index);
        let Some((attachment, bytes)) = found else {
            return Err(ServiceError::not_found(format!(
                "message {} has no attachment {index}",
                info.id.0
            )));
        };
        self.audit_content_read(
            principal,
            Action::ContentShow,
            &info,
            &[
                ("part", format!("attachment {index}")),
                ("attachment", attachment.name.clone()),
            ],
        )?;
        Ok(AttachmentContent {
            info: attachment,
            bytes,
        })
    }

    /// The archive that holds message `id` among those `principal` may see (the
    /// first, when several do), to restore it from (`POST /api/v1/restore` names ids
    /// only). A refusal is recorded as a refused restore; nothing is read.
    pub fn message_owner(&self, principal: &Principal, id: &str) -> Result<String> {
        let (_, info) = self.visible_message(principal, id, Action::ContentRestore)?;
        info.locations
            .first()
            .map(|(user, _)| user.clone())
            .ok_or_else(|| {
                ServiceError::not_found(format!("message {} is in no archive", info.id.0))
            })
    }

    /// The archives `principal` may open (names of users with an archive), sorted.
    pub fn visible_archives(&self, principal: &Principal) -> Result<Vec<String>> {
        let visible = principal.visible(Self::now());
        if visible == Visible::Only(Default::default()) || !self.data_dir().is_dir() {
            return Ok(Vec::new());
        }
        let archive = self.read_archive_for_content()?;
        let mut users = archive.users()?;
        users.retain(|u| visible.contains(u));
        Ok(users)
    }

    /// The folders of `user`'s archive with their message counts (`GET
    /// /api/v1/folders?user=`), for a caller who may read that archive. Folder
    /// names are not mail content; a refusal is recorded all the same.
    pub fn archive_folders(&self, principal: &Principal, user: &str) -> Result<Vec<FolderCount>> {
        principal
            .require_archive(user, Self::now())
            .map_err(|e| self.denial(principal, Action::ContentSearch, Target::user(user), e))?;
        let archive = self.read_archive_for_content()?;
        let visibility = if crate::governance::sees_restricted(principal) {
            archive_store::Visibility::Privileged
        } else {
            archive_store::Visibility::Ordinary
        };
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for entry in archive.list_with(user, None, visibility)? {
            *counts.entry(entry.folder).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|(path, messages)| FolderCount { path, messages })
            .collect())
    }

    /// Exports like [`Service::export`] (the request's `out` is ignored) into a zip
    /// of `.eml` files at `out_file`, with a [`ZIP_MANIFEST`] of their SHA-256
    /// digests. The `.eml` files are staged in a private directory beside
    /// `out_file`, removed afterwards.
    pub fn export_eml_zip(
        &self,
        principal: &Principal,
        request: &ExportRequest,
        out_file: &Path,
    ) -> Result<ZipExport> {
        let parent = out_file.parent().unwrap_or(Path::new("."));
        let staging = tempfile::Builder::new()
            .prefix(".export-")
            .tempdir_in(parent)
            .map_err(|e| ServiceError::io("cannot create a staging directory in", parent, e))?;
        let staged = ExportRequest {
            format: ExportFormat::Eml,
            out: staging.path().join("mail"),
            ..request.clone()
        };
        let report = self.export(principal, &staged)?;
        let files = write_zip(&staged.out, out_file)
            .context_with(|| format!("zip of the export at {}", out_file.display()))?;
        Ok(ZipExport { report, files })
    }

    fn read_archive_for_content(&self) -> Result<std::sync::Arc<archive_store::DiskArchiveStore>> {
        crate::wiring::open_archive_read_only(&self.open(crate::datadir::Access::Read)?)
    }
}

/// Files under `dir`, relative paths with `/`, sorted.
fn files_under(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        if !current.exists() {
            continue;
        }
        let entries = std::fs::read_dir(&current)
            .map_err(|e| ServiceError::io("cannot read the directory", &current, e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| ServiceError::io("cannot read the directory", &current, e))?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push((rel.join("/"), path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Zips the files under `dir` into `out` (deflated, zip64 when large) with a
/// SHA-256 manifest; fsyncs the zip. Answers the number of files.
fn write_zip(dir: &Path, out: &Path) -> Result<usize> {
    let files = files_under(dir)?;
    let io = |e: std::io::Error| ServiceError::io("cannot write the zip", out, e);
    let zip_err = |e: zip::result::ZipError| {
        ServiceError::io(
            "cannot write the zip",
            out,
            std::io::Error::other(e.to_string()),
        )
    };
    let file = std::fs::File::create(out).map_err(io)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let mut manifest = String::new();
    let mut buf = vec![0u8; 64 * 1024];
    for (name, path) in &files {
        zip.start_file(name.as_str(), options).map_err(zip_err)?;
        let mut input = std::fs::File::open(path)
            .map_err(|e| ServiceError::io("cannot read the exported file", path, e))?;
        let mut hasher = Sha256::new();
        loop {
            let n = input
                .read(&mut buf)
                .map_err(|e| ServiceError::io("cannot read the exported file", path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            zip.write_all(&buf[..n]).map_err(io)?;
        }
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        manifest.push_str(&format!("{digest}  {name}\n"));
    }
    zip.start_file(ZIP_MANIFEST, options).map_err(zip_err)?;
    zip.write_all(manifest.as_bytes()).map_err(io)?;
    let writer = zip.finish().map_err(zip_err)?;
    let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(files.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &[u8], expected: &[(&str, &str, u64, Option<&str>)]) {
        let parts = parse_parts(raw, None).expect("parses");
        let got: Vec<(String, String, u64, Option<String>)> = parts
            .attachments
            .into_iter()
            .map(|(a, _)| (a.name, a.content_type, a.size, a.content_id))
            .collect();
        let expected: Vec<(String, String, u64, Option<String>)> = expected
            .iter()
            .map(|(n, t, s, c)| (n.to_string(), t.to_string(), *s, c.map(str::to_string)))
            .collect();
        assert_eq!(got, expected);
    }

    const MIXED: &[u8] = b"From: a@b.c\r\nTo: Bob <bob@b.c>, carol@b.c\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\nContent-Type: text/html\r\n\r\n<p>hi <img src=\"cid:img1@x\"></p>\r\n--X\r\nContent-Type: image/png\r\nContent-ID: <img1@x>\r\nContent-Disposition: inline; filename=\"a.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--X\r\nContent-Type: application/pdf; name=\"../../etc/passwd\"\r\nContent-Disposition: attachment; filename=\"../../etc/passwd\"\r\n\r\nPDFDATA\r\n--X--\r\n";

    #[test]
    fn attachments_are_listed_with_names_types_sizes_and_content_ids() {
        check(
            MIXED,
            &[
                ("a.png", "image/png", 5, Some("img1@x")),
                ("../../etc/passwd", "application/pdf", 7, None),
            ],
        );
        check(b"From: a@b.c\r\n\r\nplain\r\n", &[]);
    }

    #[test]
    fn one_attachment_s_bytes_and_the_recipients() {
        let parts = parse_parts(MIXED, Some(0)).expect("parses");
        assert_eq!(parts.attachments[0].1, b"hello");
        assert!(parts.attachments[1].1.is_empty());
        assert_eq!(parts.to, vec!["Bob <bob@b.c>", "carol@b.c"]);
        assert!(
            parts
                .html
                .as_deref()
                .is_some_and(|h| h.contains("cid:img1@x"))
        );
    }

    #[test]
    fn a_zip_holds_every_file_and_a_manifest_of_their_digests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("mail");
        std::fs::create_dir_all(src.join("Inbox")).expect("mkdir");
        std::fs::write(src.join("Inbox/a.eml"), b"A").expect("write");
        std::fs::write(src.join("b.eml"), b"B").expect("write");
        let out = dir.path().join("x.zip");
        assert_eq!(write_zip(&src, &out).expect("zip"), 2);
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).expect("open")).expect("zip");
        let mut manifest = String::new();
        zip.by_name(ZIP_MANIFEST)
            .expect("manifest")
            .read_to_string(&mut manifest)
            .expect("read");
        let digest_a: String = Sha256::digest(b"A")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(
            manifest.contains(&format!("{digest_a}  Inbox/a.eml\n")),
            "{manifest}"
        );
        let mut a = Vec::new();
        zip.by_name("Inbox/a.eml")
            .expect("a")
            .read_to_end(&mut a)
            .expect("read");
        assert_eq!(a, b"A");
    }
}
