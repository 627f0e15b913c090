//! Archived MIME → [`NewMessage`]: everything a JSON create can carry, read with
//! mail-parser inside `catch_unwind` (no input makes it panic across this crate's API).
//!
//! - Body: the HTML part(s) when the original had one, else the plain text; inline parts
//!   an HTML body refers to (`cid:`) become inline attachments keeping their content ids.
//! - Addresses: From, Sender (when it differs), To, Cc, Bcc, Reply-To, names decoded.
//! - Message-ID (with angle brackets), the `X-` headers, Importance (or X-Priority),
//!   Keywords as categories.
//! - Dates: the Date header is the sent time; the received time is the archive's (given
//!   by the caller), else the newest Received header's, else the sent time.
//! - Attachments: files, inline parts, attached messages (`message/rfc822`, restored as
//!   `<name>.eml` with their exact bytes), names decoded (RFC 2047 and 2231).

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use chrono::{DateTime, TimeZone as _, Utc};
use m365_mailbox::{BodyKind, Importance, NewAttachment, NewMessage, Recipient, RestoreKey};
use mail_parser::{Address, Encoding, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use crate::RestoreError;

/// Reads `mime` into a [`NewMessage`] marked with `key`. `received` is the archive's
/// received time when it knows one. Fails with [`RestoreError::Unparseable`] when
/// mail-parser cannot read the message (or panics on it).
pub fn to_new_message(
    key: RestoreKey,
    mime: &[u8],
    received: Option<DateTime<Utc>>,
) -> Result<NewMessage, RestoreError> {
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        let message = MessageParser::default().parse(mime)?;
        Some(convert(&message, key.clone(), received))
    }));
    match parsed {
        Ok(Some(message)) => Ok(message),
        Ok(None) => Err(RestoreError::Unparseable {
            id: key.0,
            detail: "mail-parser found no message in it".into(),
        }),
        Err(_) => Err(RestoreError::Unparseable {
            id: key.0,
            detail: "mail-parser failed on it".into(),
        }),
    }
}

/// The `Message-ID` of `mime` with angle brackets (as Graph's `internetMessageId`), read
/// from its headers only.
pub fn message_id_of(mime: &[u8]) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| {
        let message = MessageParser::default().parse_headers(mime)?;
        let id = message.message_id()?.trim();
        (!id.is_empty()).then(|| format!("<{id}>"))
    }))
    .ok()
    .flatten()
}

fn convert(message: &Message<'_>, key: RestoreKey, received: Option<DateTime<Utc>>) -> NewMessage {
    let (body_kind, body, body_parts) = body_of(message);
    let sent = message.date().and_then(|d| timestamp(d.to_timestamp()));
    let received = received
        .or_else(|| {
            message
                .received()
                .and_then(|r| r.date.as_ref())
                .and_then(|d| timestamp(d.to_timestamp()))
        })
        .or(sent);
    let from = recipients(message.from()).into_iter().next();
    let sender = recipients(message.sender())
        .into_iter()
        .next()
        .filter(|s| from.as_ref().is_none_or(|f| !same_address(f, s)));
    let html = (body_kind == BodyKind::Html).then_some(body.as_str());
    let attachments = attachments_of(message, &body_parts, html);
    NewMessage {
        key,
        subject: message.subject().unwrap_or_default().to_string(),
        body_kind,
        from,
        sender,
        to: recipients(message.to()),
        cc: recipients(message.cc()),
        bcc: recipients(message.bcc()),
        reply_to: recipients(message.reply_to()),
        internet_message_id: message
            .message_id()
            .filter(|id| !id.trim().is_empty())
            .map(|id| format!("<{}>", id.trim())),
        headers: x_headers(message),
        importance: importance_of(message),
        categories: categories_of(message),
        is_read: true,
        received,
        sent,
        attachments,
        body,
    }
}

fn timestamp(secs: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(secs, 0).single()
}

fn same_address(a: &Recipient, b: &Recipient) -> bool {
    a.address.eq_ignore_ascii_case(&b.address)
}

fn recipients(address: Option<&Address<'_>>) -> Vec<Recipient> {
    let Some(address) = address else {
        return Vec::new();
    };
    address
        .iter()
        .filter_map(|addr| {
            let mail = addr.address()?.trim();
            if mail.is_empty() {
                return None;
            }
            Some(Recipient {
                name: addr
                    .name()
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string),
                address: mail.to_string(),
            })
        })
        .collect()
}

/// The body as in the original (HTML when it has an HTML part), with the ids of the
/// parts it was made of.
fn body_of(message: &Message<'_>) -> (BodyKind, String, HashSet<u32>) {
    let collect = |ids: &[u32], html: bool| {
        let mut used = HashSet::new();
        let mut texts = Vec::new();
        for &id in ids {
            match message.part(id).map(|p| &p.body) {
                Some(PartType::Html(s)) if html => {
                    used.insert(id);
                    texts.push(s.to_string());
                }
                Some(PartType::Text(s)) if !html => {
                    used.insert(id);
                    texts.push(s.to_string());
                }
                _ => {}
            }
        }
        (texts.join("\n"), used)
    };
    let (html, used) = collect(&message.html_body, true);
    if !used.is_empty() {
        return (BodyKind::Html, html, used);
    }
    let (text, used) = collect(&message.text_body, false);
    (BodyKind::Text, text, used)
}

fn attachments_of(
    message: &Message<'_>,
    body_parts: &HashSet<u32>,
    html: Option<&str>,
) -> Vec<NewAttachment> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for &id in &message.attachments {
        if body_parts.contains(&id) || !seen.insert(id) {
            continue;
        }
        let Some(part) = message.part(id) else {
            continue;
        };
        if matches!(part.body, PartType::Multipart(_)) {
            continue;
        }
        out.push(attachment(message, part, html, out.len() + 1));
    }
    out
}

fn attachment(
    message: &Message<'_>,
    part: &MessagePart<'_>,
    html: Option<&str>,
    n: usize,
) -> NewAttachment {
    let content_id = part
        .content_id()
        .map(|c| {
            c.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .filter(|c| !c.is_empty());
    let inline = match (&content_id, html) {
        (Some(cid), Some(html)) => html.contains(&format!("cid:{cid}")),
        _ => false,
    };
    let declared_type = part.content_type().map(|ct| match ct.subtype() {
        Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
        None => ct.ctype().to_ascii_lowercase(),
    });
    let name = part
        .attachment_name()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let (name, content_type, bytes) = match &part.body {
        PartType::Message(inner) => {
            let base = name
                .or_else(|| inner.subject().map(str::to_string))
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| format!("message-{n}"));
            let name = if base.to_ascii_lowercase().ends_with(".eml") {
                base
            } else {
                format!("{base}.eml")
            };
            let bytes = decoded_raw(message, part).unwrap_or_else(|| inner.raw_message.to_vec());
            (name, "message/rfc822".to_string(), bytes)
        }
        PartType::Binary(b) | PartType::InlineBinary(b) => (
            name.unwrap_or_else(|| format!("attachment-{n}")),
            declared_type.unwrap_or_else(|| "application/octet-stream".into()),
            b.to_vec(),
        ),
        PartType::Text(s) | PartType::Html(s) => (
            name.unwrap_or_else(|| format!("attachment-{n}")),
            declared_type.unwrap_or_else(|| "text/plain".into()),
            decoded_raw(message, part).unwrap_or_else(|| s.as_bytes().to_vec()),
        ),
        PartType::Multipart(_) => (
            name.unwrap_or_else(|| format!("attachment-{n}")),
            declared_type.unwrap_or_else(|| "application/octet-stream".into()),
            Vec::new(),
        ),
    };
    NewAttachment {
        name,
        content_type,
        content_id,
        inline,
        bytes: Bytes::from(bytes),
    }
}

/// A part's bytes as sent, transfer encoding undone (text parts keep their charset);
/// `None` when the part is not transfer-encoded (its parsed form is then exact enough) or
/// its offsets do not fit.
fn decoded_raw(message: &Message<'_>, part: &MessagePart<'_>) -> Option<Vec<u8>> {
    let raw = message
        .raw_message
        .get(part.offset_body as usize..part.offset_end as usize)?;
    match part.encoding {
        Encoding::Base64 => mail_parser::decoders::base64::base64_decode(raw),
        Encoding::QuotedPrintable => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(raw)
        }
        Encoding::None => match &part.body {
            PartType::Message(_) => Some(raw.to_vec()),
            _ => None,
        },
    }
}

/// `X-` headers with their raw (unfolded) values, as `internetMessageHeaders` takes them.
fn x_headers(message: &Message<'_>) -> Vec<(String, String)> {
    let raw = message.raw_message();
    message
        .root_part()
        .headers
        .iter()
        .filter(|h| {
            let name = h.name();
            name.len() > 2 && name[..2].eq_ignore_ascii_case("x-")
        })
        .filter_map(|h| {
            let bytes = raw.get(h.offset_start() as usize..h.offset_end() as usize)?;
            let value = String::from_utf8_lossy(bytes);
            let unfolded: Vec<&str> = value.split_whitespace().collect();
            Some((h.name().to_string(), unfolded.join(" ")))
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

fn header_text(message: &Message<'_>, name: &str) -> Option<String> {
    message
        .header_raw(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn importance_of(message: &Message<'_>) -> Option<Importance> {
    if let Some(value) = header_text(message, "Importance") {
        match value.to_ascii_lowercase().as_str() {
            "high" => return Some(Importance::High),
            "low" => return Some(Importance::Low),
            "normal" => return Some(Importance::Normal),
            _ => {}
        }
    }
    let priority = header_text(message, "X-Priority")?;
    match priority.trim_start().chars().next()? {
        '1' | '2' => Some(Importance::High),
        '3' => Some(Importance::Normal),
        '4' | '5' => Some(Importance::Low),
        _ => None,
    }
}

fn categories_of(message: &Message<'_>) -> Vec<String> {
    let value = message.keywords();
    let mut out: Vec<String> = match value.as_text_list() {
        Some(list) => list.iter().map(|s| s.trim().to_string()).collect(),
        None => value
            .as_text()
            .map(|t| t.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default(),
    };
    out.retain(|c| !c.is_empty());
    let mut seen = HashSet::new();
    out.retain(|c| seen.insert(c.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(mime: &str) -> NewMessage {
        to_new_message(RestoreKey("k".into()), mime.as_bytes(), None).unwrap()
    }

    #[test]
    fn plain_message_keeps_its_fields() {
        let m = convert(
            "From: \"Adele Vance\" <adele@contoso.com>\r\nSender: sec@contoso.com\r\nTo: a@b.c, D <d@e.f>\r\nCc: c@c.c\r\nBcc: hidden@x.y\r\nReply-To: r@r.r\r\nSubject: =?utf-8?B?w5xiZXJzaWNodA==?=\r\nDate: Tue, 1 Jul 2025 10:00:00 +0200\r\nMessage-ID: <x@y>\r\nX-Mailer: test  mailer\r\nX-Priority: 1\r\nKeywords: Red, Project X\r\n\r\nHello\r\n",
        );
        assert_eq!(m.subject, "Übersicht");
        assert_eq!(m.body_kind, BodyKind::Text);
        assert_eq!(m.body.trim_end(), "Hello");
        assert_eq!(
            m.from.as_ref().unwrap().name.as_deref(),
            Some("Adele Vance")
        );
        assert_eq!(m.sender.as_ref().unwrap().address, "sec@contoso.com");
        assert_eq!(m.to.len(), 2);
        assert_eq!(m.bcc[0].address, "hidden@x.y");
        assert_eq!(m.reply_to[0].address, "r@r.r");
        assert_eq!(m.internet_message_id.as_deref(), Some("<x@y>"));
        assert_eq!(m.importance, Some(Importance::High));
        assert_eq!(m.categories, ["Red", "Project X"]);
        assert!(
            m.headers
                .contains(&("X-Mailer".into(), "test mailer".into()))
        );
        assert_eq!(m.sent.unwrap().to_rfc3339(), "2025-07-01T08:00:00+00:00");
        assert_eq!(m.received, m.sent);
    }

    #[test]
    fn html_with_inline_image_and_attachments() {
        let m = convert(concat!(
            "From: a@b.c\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n",
            "--m\r\nContent-Type: multipart/related; boundary=r\r\n\r\n",
            "--r\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n",
            "--a\r\nContent-Type: text/plain\r\n\r\nplain\r\n",
            "--a\r\nContent-Type: text/html\r\n\r\n<p>hi <img src=\"cid:img1@x\"></p>\r\n--a--\r\n",
            "--r\r\nContent-Type: image/png\r\nContent-ID: <img1@x>\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--r--\r\n",
            "--m\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''R%C3%A9sum%C3%A9.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n",
            "--m\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n",
            "--m--\r\n"
        ));
        assert_eq!(m.body_kind, BodyKind::Html);
        assert!(m.body.contains("cid:img1@x"), "{}", m.body);
        let names: Vec<&str> = m.attachments.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["attachment-1", "Résumé.pdf", "inner.eml"], "{m:?}");
        let img = &m.attachments[0];
        assert!(img.inline);
        assert_eq!(img.content_id.as_deref(), Some("img1@x"));
        assert_eq!(&img.bytes[..], b"hello");
        assert_eq!(&m.attachments[1].bytes[..], b"%PDF");
        assert!(!m.attachments[1].inline);
        assert_eq!(m.attachments[2].content_type, "message/rfc822");
        assert!(m.attachments[2].bytes.starts_with(b"Subject: inner"));
    }

    #[test]
    fn received_header_dates_the_delivery() {
        let m = convert(
            "Received: from a by b; Wed, 2 Jul 2025 09:00:00 +0000\r\nDate: Tue, 1 Jul 2025 10:00:00 +0000\r\nSubject: s\r\n\r\nx\r\n",
        );
        assert_eq!(
            m.received.unwrap().to_rfc3339(),
            "2025-07-02T09:00:00+00:00"
        );
        assert_eq!(m.sent.unwrap().to_rfc3339(), "2025-07-01T10:00:00+00:00");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = to_new_message(RestoreKey("k".into()), &bytes, None);
        }

        #[test]
        fn arbitrary_mime_like_text_never_panics(
            head in "[A-Za-z-]{1,12}: [ -~]{0,40}\r\n",
            boundary in "[a-z]{1,5}",
            body in "[ -~\r\n]{0,200}",
        ) {
            let mime = format!("{head}Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n--{boundary}\r\n{body}\r\n--{boundary}--\r\n");
            let _ = to_new_message(RestoreKey("k".into()), mime.as_bytes(), None);
        }
    }
}
