//! MIME of messages created through Graph: rendered from what the create set (headers, body,
//! attachments), and read back from a MIME create.
//!
//! Rendering is deterministic (boundaries derive from the content), and reading then rendering
//! again gives the same bytes: a MIME create of the emulator's own rendering is byte-identical.
//! No `Received` or other transport header is written; the body is the one created (no
//! alternative part is made up); `Bcc` is written when the item carries bcc recipients (Graph's
//! documentation is silent on `$value` of such items; Exchange keeps Bcc on the sender's copy).

use std::fmt::Write as _;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use mail_parser::{MessageParser, MimeHeaders as _};

use super::encode::{base64_lines, encode_header_value, filename_params, quoted_printable};
use crate::tenant::created::{BodyKind, CreatedAttachment, CreatedMessage, Importance, Person};
use crate::tenant::model::mix_all;

/// One address for a header: `"Name" <addr>`, or `<addr>` alone without a name.
fn address(person: &Person) -> String {
    let (name, addr) = person;
    if name.is_empty() {
        format!("<{addr}>")
    } else if name.is_ascii() {
        let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\" <{addr}>")
    } else {
        format!("{} <{addr}>", encode_header_value(name))
    }
}

fn address_list(people: &[Person]) -> String {
    people
        .iter()
        .map(address)
        .collect::<Vec<_>>()
        .join(",\r\n ")
}

fn hash_text(text: &str) -> u64 {
    text.as_bytes()
        .chunks(8)
        .map(|c| {
            let mut word = [0u8; 8];
            word[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(word)
        })
        .fold(0x5EED, |acc, w| mix_all(&[acc, w]))
}

fn boundary(message: &CreatedMessage, tag: &str) -> String {
    let seed = mix_all(&[
        hash_text(&message.internet_message_id),
        hash_text(&message.subject),
        message.attachments.len() as u64,
    ]);
    format!("_{tag}_{seed:016X}_")
}

fn date(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc2822()
}

/// The body part's headers and content (quoted-printable, no trailing line break).
fn body_part(message: &CreatedMessage) -> String {
    let subtype = match message.body_kind {
        BodyKind::Text => "plain",
        BodyKind::Html => "html",
    };
    format!(
        "Content-Type: text/{subtype}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}",
        quoted_printable(&message.body)
    )
}

fn attachment_part(attachment: &CreatedAttachment) -> String {
    let (name_param, filename_param) = filename_params(&attachment.name);
    let disposition = if attachment.inline {
        "inline"
    } else {
        "attachment"
    };
    let mut part = format!(
        "Content-Type: {}; {name_param}\r\nContent-Disposition: {disposition}; {filename_param}\r\n",
        attachment.content_type
    );
    if let Some(cid) = &attachment.content_id {
        let _ = write!(part, "Content-ID: <{cid}>\r\n");
    }
    let encoded = base64_lines(&attachment.bytes);
    let _ = write!(
        part,
        "Content-Transfer-Encoding: base64\r\n\r\n{}",
        encoded.strip_suffix("\r\n").unwrap_or(&encoded)
    );
    part
}

fn multipart(out: &mut String, subtype: &str, boundary: &str, parts: &[String]) {
    let _ = write!(
        out,
        "Content-Type: multipart/{subtype};\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    );
    for part in parts {
        let _ = write!(out, "--{boundary}\r\n{part}\r\n");
    }
    let _ = write!(out, "--{boundary}--\r\n");
}

/// The message's MIME.
pub(crate) fn render(message: &CreatedMessage) -> Vec<u8> {
    let mut out = String::new();
    if let Some(from) = &message.from {
        let _ = write!(out, "From: {}\r\n", address(from));
    }
    if let Some(sender) = &message.sender {
        let _ = write!(out, "Sender: {}\r\n", address(sender));
    }
    for (name, list) in [
        ("To", &message.to),
        ("Cc", &message.cc),
        ("Bcc", &message.bcc),
        ("Reply-To", &message.reply_to),
    ] {
        if !list.is_empty() {
            let _ = write!(out, "{name}: {}\r\n", address_list(list));
        }
    }
    let _ = write!(
        out,
        "Subject: {}\r\nDate: {}\r\nMessage-ID: {}\r\n",
        encode_header_value(&message.subject),
        date(message.sent),
        message.internet_message_id
    );
    if message.importance != Importance::Normal {
        let _ = write!(out, "Importance: {}\r\n", message.importance.as_str());
    }
    if !message.categories.is_empty() {
        let _ = write!(
            out,
            "Keywords: {}\r\n",
            encode_header_value(&message.categories.join(", "))
        );
    }
    for (name, value) in &message.headers {
        let _ = write!(out, "{name}: {}\r\n", encode_header_value(value));
    }
    out.push_str("MIME-Version: 1.0\r\n");
    let (inline, attached): (Vec<&CreatedAttachment>, Vec<&CreatedAttachment>) = message
        .attachments
        .iter()
        .partition(|a| a.inline && a.content_id.is_some() && message.body_kind == BodyKind::Html);
    let body = if inline.is_empty() {
        body_part(message)
    } else {
        let mut related = String::new();
        let mut parts = vec![body_part(message)];
        parts.extend(inline.iter().map(|a| attachment_part(a)));
        multipart(&mut related, "related", &boundary(message, "rel"), &parts);
        related.strip_suffix("\r\n").unwrap_or(&related).to_owned()
    };
    if attached.is_empty() {
        out.push_str(&body);
    } else {
        let mut parts = vec![body];
        parts.extend(attached.iter().map(|a| attachment_part(a)));
        multipart(&mut out, "mixed", &boundary(message, "mix"), &parts);
    }
    out.into_bytes()
}

/// What a MIME create reads from the MIME.
#[derive(Debug, Clone, Default)]
pub(crate) struct ParsedMime {
    pub(crate) subject: String,
    pub(crate) html: bool,
    pub(crate) body: String,
    pub(crate) from: Option<Person>,
    pub(crate) sender: Option<Person>,
    pub(crate) to: Vec<Person>,
    pub(crate) cc: Vec<Person>,
    pub(crate) bcc: Vec<Person>,
    pub(crate) reply_to: Vec<Person>,
    pub(crate) internet_message_id: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) importance: Option<Importance>,
    pub(crate) categories: Vec<String>,
    /// `Date`, Unix seconds.
    pub(crate) sent: Option<i64>,
    /// (name, content type, content id, inline, bytes).
    pub(crate) attachments: Vec<(String, String, Option<String>, bool, Bytes)>,
}

fn people(address: Option<&mail_parser::Address<'_>>) -> Vec<Person> {
    address
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some((
                        p.name().unwrap_or_default().to_owned(),
                        p.address()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a MIME message as Exchange does for a MIME create; anything unreadable is left empty
/// (Exchange stores nearly anything).
pub(crate) fn parse(bytes: &[u8]) -> ParsedMime {
    std::panic::catch_unwind(|| parse_with_mail_parser(bytes)).unwrap_or_default()
}

fn parse_with_mail_parser(bytes: &[u8]) -> ParsedMime {
    let Some(message) = MessageParser::default().parse(bytes) else {
        return ParsedMime::default();
    };
    let mut parsed = ParsedMime {
        subject: message.subject().unwrap_or_default().to_owned(),
        from: people(message.from()).into_iter().next(),
        sender: people(message.sender()).into_iter().next(),
        to: people(message.to()),
        cc: people(message.cc()),
        bcc: people(message.bcc()),
        reply_to: people(message.reply_to()),
        internet_message_id: message.message_id().map(|id| format!("<{id}>")),
        sent: message.date().map(mail_parser::DateTime::to_timestamp),
        ..ParsedMime::default()
    };
    if let Some(part) = message.html_part(0).filter(|p| p.is_text_html()) {
        parsed.html = true;
        parsed.body = part.text_contents().unwrap_or_default().to_owned();
    } else if let Some(part) = message.text_part(0) {
        parsed.body = part.text_contents().unwrap_or_default().to_owned();
    }
    for header in message.headers() {
        let name = header.name();
        let text = || {
            header
                .value()
                .as_text_list()
                .map(|l| l.join(", "))
                .or_else(|| header.value().as_text().map(str::to_owned))
                .unwrap_or_default()
        };
        if name.eq_ignore_ascii_case("importance") {
            parsed.importance = Importance::parse(&text());
        } else if name.eq_ignore_ascii_case("keywords") {
            parsed.categories = text()
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
        } else if name.len() > 2 && name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("x-")) {
            parsed.headers.push((name.to_owned(), text()));
        }
    }
    for part in message.attachments() {
        let content_type = part.content_type().map_or_else(
            || "application/octet-stream".to_owned(),
            |ct| match ct.subtype() {
                Some(sub) => format!("{}/{sub}", ct.ctype()),
                None => ct.ctype().to_owned(),
            },
        );
        let inline = part
            .content_disposition()
            .is_some_and(|d| d.ctype().eq_ignore_ascii_case("inline"));
        let content_id = part
            .content_id()
            .map(|c| c.trim_start_matches('<').trim_end_matches('>').to_owned());
        parsed.attachments.push((
            part.attachment_name().unwrap_or("attachment").to_owned(),
            content_type,
            content_id,
            inline,
            attachment_bytes(bytes, part),
        ));
    }
    parsed
}

/// The decoded bytes of an attachment part: base64 decoded from the raw part (a text part's
/// decoded contents went through a charset conversion that may not keep the bytes).
fn attachment_bytes(message: &[u8], part: &mail_parser::MessagePart<'_>) -> Bytes {
    let base64_encoded = part
        .content_transfer_encoding()
        .is_some_and(|e| e.eq_ignore_ascii_case("base64"));
    let raw = message.get(part.raw_body_offset() as usize..part.raw_end_offset() as usize);
    if base64_encoded && let Some(raw) = raw {
        let compact: Vec<u8> = raw
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&compact) {
            return Bytes::from(decoded);
        }
    }
    Bytes::copy_from_slice(part.contents())
}

/// Base64 of bytes, standard alphabet with padding (what Graph's `contentBytes` carries).
pub(crate) fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(attachments: Vec<CreatedAttachment>, kind: BodyKind) -> CreatedMessage {
        CreatedMessage {
            subject: "Quarterly numbers — Größe".into(),
            body_kind: kind,
            body: "<p>Hello &amp; welcome</p>\r\nSecond line with trailing space \r\nend".into(),
            from: Some(("Ada Lovelace".into(), "ada@example.com".into())),
            sender: Some(("Assistant".into(), "assistant@example.com".into())),
            to: vec![
                ("Bob".into(), "bob@example.com".into()),
                (String::new(), "carol@example.com".into()),
            ],
            cc: vec![("Zoë Ünal".into(), "zoe@example.com".into())],
            bcc: vec![("Hidden".into(), "hidden@example.com".into())],
            reply_to: vec![("Replies".into(), "replies@example.com".into())],
            internet_message_id: "<abc.123@example.com>".into(),
            headers: vec![("X-Custom-Tag".into(), "value one".into())],
            importance: Importance::High,
            categories: vec!["Red".into(), "Project X".into()],
            is_draft: false,
            sent: 1_700_000_000,
            created: 1_700_000_100,
            extended: Vec::new(),
            attachments,
            mime: Bytes::new(),
        }
    }

    fn attachment(name: &str, inline: bool, cid: Option<&str>, len: usize) -> CreatedAttachment {
        CreatedAttachment {
            id: "att".into(),
            name: name.into(),
            content_type: "application/pdf".into(),
            content_id: cid.map(str::to_owned),
            inline,
            bytes: Bytes::from((0..len).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>()),
        }
    }

    fn from_parsed(parsed: ParsedMime) -> CreatedMessage {
        let mut message = sample(Vec::new(), BodyKind::Text);
        message.subject = parsed.subject;
        message.body_kind = if parsed.html {
            BodyKind::Html
        } else {
            BodyKind::Text
        };
        message.body = parsed.body;
        message.from = parsed.from;
        message.sender = parsed.sender;
        message.to = parsed.to;
        message.cc = parsed.cc;
        message.bcc = parsed.bcc;
        message.reply_to = parsed.reply_to;
        message.internet_message_id = parsed.internet_message_id.unwrap_or_default();
        message.headers = parsed.headers;
        message.importance = parsed.importance.unwrap_or(Importance::Normal);
        message.categories = parsed.categories;
        message.sent = parsed.sent.unwrap_or_default();
        message.attachments = parsed
            .attachments
            .into_iter()
            .map(
                |(name, content_type, content_id, inline, bytes)| CreatedAttachment {
                    id: "att".into(),
                    name,
                    content_type,
                    content_id,
                    inline,
                    bytes,
                },
            )
            .collect();
        message
    }

    fn check(message: &CreatedMessage) {
        let first = render(message);
        let again = from_parsed(parse(&first));
        assert_eq!(again.subject, message.subject);
        assert_eq!(again.body, message.body);
        assert_eq!(again.from, message.from);
        assert_eq!(again.to, message.to);
        assert_eq!(again.cc, message.cc);
        assert_eq!(again.bcc, message.bcc);
        assert_eq!(again.reply_to, message.reply_to);
        assert_eq!(again.categories, message.categories);
        assert_eq!(again.headers, message.headers);
        assert_eq!(again.sent, message.sent);
        assert_eq!(again.attachments.len(), message.attachments.len());
        for (a, b) in again.attachments.iter().zip(&message.attachments) {
            assert_eq!(
                (&a.name, &a.bytes, &a.content_id),
                (&b.name, &b.bytes, &b.content_id)
            );
        }
        assert_eq!(
            String::from_utf8_lossy(&render(&again)),
            String::from_utf8_lossy(&first),
            "rendering what was read gives the same bytes"
        );
    }

    #[test]
    fn rendered_mime_reads_back_to_the_same_message_and_bytes() {
        check(&sample(Vec::new(), BodyKind::Text));
        check(&sample(Vec::new(), BodyKind::Html));
        check(&sample(
            vec![
                attachment("report.pdf", false, None, 5000),
                attachment("Übersicht 2024.pdf", false, None, 10),
            ],
            BodyKind::Text,
        ));
        check(&sample(
            vec![
                attachment("image001.png", true, Some("image001.png@01DA"), 300),
                attachment("notes.pdf", false, None, 77),
            ],
            BodyKind::Html,
        ));
    }
}
