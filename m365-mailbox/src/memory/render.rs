//! MIME for a message created as a JSON create ([`NewMessage`]), as the mail service would
//! serve it afterwards: headers from the fields that were set, the one body, inline parts
//! in a `multipart/related` beside an HTML body, file attachments in a `multipart/mixed`.
//!
//! Rendered from what was created, never a copy of the original bytes: text goes out as
//! UTF-8 base64, non-ASCII header values as RFC 2047 encoded words, names as RFC 2231
//! parameters.

use std::fmt::Write as _;

use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::write::{BodyKind, Importance, NewAttachment, NewMessage, Recipient};

/// Renders `message` as RFC 5322 bytes; `boundary_seed` makes the boundaries unique.
pub(super) fn render(message: &NewMessage, boundary_seed: &str) -> Vec<u8> {
    let mut head = String::new();
    if let Some(from) = &message.from {
        header(&mut head, "From", &mailbox(from));
    }
    if let Some(sender) = &message.sender {
        header(&mut head, "Sender", &mailbox(sender));
    }
    for (name, list) in [
        ("To", &message.to),
        ("Cc", &message.cc),
        ("Bcc", &message.bcc),
        ("Reply-To", &message.reply_to),
    ] {
        if !list.is_empty() {
            let joined: Vec<String> = list.iter().map(mailbox).collect();
            header(&mut head, name, &joined.join(", "));
        }
    }
    header(&mut head, "Subject", &encode_word(&message.subject));
    if let Some(sent) = message.sent.or(message.received) {
        header(&mut head, "Date", &rfc2822(sent));
    }
    if let Some(id) = &message.internet_message_id {
        header(&mut head, "Message-ID", id);
    }
    if let Some(importance) = message.importance {
        let text = match importance {
            Importance::Low => "low",
            Importance::Normal => "normal",
            Importance::High => "high",
        };
        header(&mut head, "Importance", text);
    }
    if !message.categories.is_empty() {
        let words: Vec<String> = message.categories.iter().map(|c| encode_word(c)).collect();
        header(&mut head, "Keywords", &words.join(", "));
    }
    for (name, value) in &message.headers {
        header(&mut head, name, &encode_word(value));
    }
    header(&mut head, "MIME-Version", "1.0");

    let body = body_part(message);
    let (inline, files): (Vec<&NewAttachment>, Vec<&NewAttachment>) =
        message.attachments.iter().partition(|a| a.inline);
    let mut content = body;
    if !inline.is_empty() {
        let boundary = format!("related_{boundary_seed}");
        content = multipart(
            &format!("multipart/related; boundary=\"{boundary}\""),
            &boundary,
            std::iter::once(content).chain(inline.iter().map(|a| attachment_part(a))),
        );
    }
    if !files.is_empty() {
        let boundary = format!("mixed_{boundary_seed}");
        content = multipart(
            &format!("multipart/mixed; boundary=\"{boundary}\""),
            &boundary,
            std::iter::once(content).chain(files.iter().map(|a| attachment_part(a))),
        );
    }
    let mut out = head.into_bytes();
    out.extend_from_slice(&content);
    out
}

fn header(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, "{name}: {value}\r\n");
}

fn rfc2822(when: DateTime<Utc>) -> String {
    when.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// `"Name" <address>` (the name as an encoded word when it is not plain ASCII).
fn mailbox(r: &Recipient) -> String {
    match r.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) if name.is_ascii() => {
            let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{quoted}\" <{}>", r.address)
        }
        Some(name) => format!("{} <{}>", encode_word(name), r.address),
        None => format!("<{}>", r.address),
    }
}

/// The value itself when it is printable ASCII, else one UTF-8 base64 encoded word.
fn encode_word(value: &str) -> String {
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        value.to_string()
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
        format!("=?utf-8?B?{b64}?=")
    }
}

fn base64_lines(bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 * 2 + 2);
    for line in b64.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push_str("\r\n");
    }
    out
}

/// A part whose headers end with the blank line (the body follows).
fn part(headers: &[String], body: &str) -> Vec<u8> {
    let mut out = String::new();
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

fn body_part(message: &NewMessage) -> Vec<u8> {
    let subtype = match message.body_kind {
        BodyKind::Html => "html",
        BodyKind::Text => "plain",
    };
    part(
        &[
            format!("Content-Type: text/{subtype}; charset=utf-8"),
            "Content-Transfer-Encoding: base64".to_string(),
        ],
        &base64_lines(message.body.as_bytes()),
    )
}

/// An RFC 2231 `name*=utf-8''…` parameter (or a quoted plain one for ASCII).
fn name_param(param: &str, name: &str) -> String {
    if name
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        format!("{param}=\"{name}\"")
    } else {
        let encoded: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("{param}*=utf-8''{encoded}")
    }
}

fn attachment_part(a: &NewAttachment) -> Vec<u8> {
    // An attached message travels as itself (RFC 2046 forbids base64 for message/rfc822).
    let message = a.content_type.eq_ignore_ascii_case("message/rfc822");
    let mut headers = vec![
        format!(
            "Content-Type: {}; {}",
            a.content_type,
            name_param("name", &a.name)
        ),
        format!(
            "Content-Disposition: {}; {}",
            if a.inline { "inline" } else { "attachment" },
            name_param("filename", &a.name)
        ),
        format!(
            "Content-Transfer-Encoding: {}",
            if message { "8bit" } else { "base64" }
        ),
    ];
    if let Some(cid) = &a.content_id {
        headers.push(format!("Content-ID: <{cid}>"));
    }
    let mut out = part(&headers, "");
    if message {
        out.extend_from_slice(&a.bytes);
    } else {
        out.extend_from_slice(base64_lines(&a.bytes).as_bytes());
    }
    out
}

/// A multipart entity: `Content-Type` header, blank line, the parts between boundaries.
fn multipart(content_type: &str, boundary: &str, parts: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut out = format!("Content-Type: {content_type}\r\n\r\n").into_bytes();
    for p in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(&p);
        if !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}
