//! Message metadata (from, to, cc, subject, date, Message-ID, attachment names,
//! body text) extracted with mail-parser inside `catch_unwind`.
//!
//! A message mail-parser cannot parse (or panics on) is still archived: its
//! metadata is empty and `unparseable` is set, so an admin can find and inspect it.

use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, TimeZone, Utc};
use mail_parser::{Address, MessageParser, MimeHeaders};
use serde::{Deserialize, Serialize};

/// Body text kept for indexing, per message.
const BODY_TEXT_MAX: usize = 1 << 20;

/// What the archive knows about a message's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMetadata {
    /// Subject.
    pub subject: Option<String>,
    /// From, as `Name <address>` or `address`.
    pub from: Option<String>,
    /// To recipients.
    pub to: Vec<String>,
    /// Cc recipients.
    pub cc: Vec<String>,
    /// Date header.
    pub date: Option<DateTime<Utc>>,
    /// Message-ID header.
    pub message_id: Option<String>,
    /// File names of attachments.
    pub attachments: Vec<String>,
    /// Raw size in bytes.
    pub size: u64,
    /// mail-parser could not parse the message; it is archived anyway.
    pub unparseable: bool,
    /// Plain text of the body (html reduced to text), capped at 1 MiB; for indexing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body_text: String,
}

fn addresses(address: Option<&Address<'_>>) -> Vec<String> {
    let Some(address) = address else {
        return Vec::new();
    };
    address
        .iter()
        .filter_map(|addr| match (addr.name(), addr.address()) {
            (Some(name), Some(mail)) if !name.trim().is_empty() => {
                Some(format!("{} <{mail}>", name.trim()))
            }
            (_, Some(mail)) => Some(mail.to_string()),
            (Some(name), None) => Some(name.to_string()),
            (None, None) => None,
        })
        .collect()
}

/// Extracts metadata from `bytes` (the whole message or its skeleton); `size` is the real size.
pub(crate) fn extract(bytes: &[u8], size: u64) -> MessageMetadata {
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        let message = MessageParser::default().parse(bytes)?;
        let mut body_text = String::new();
        for pos in 0..message.text_body_count().max(1) {
            if let Some(text) = message.body_text(pos) {
                if !body_text.is_empty() {
                    body_text.push('\n');
                }
                body_text.push_str(&text);
                if body_text.len() >= BODY_TEXT_MAX {
                    break;
                }
            }
        }
        if body_text.len() > BODY_TEXT_MAX {
            let mut cut = BODY_TEXT_MAX;
            while !body_text.is_char_boundary(cut) {
                cut -= 1;
            }
            body_text.truncate(cut);
        }
        Some(MessageMetadata {
            subject: message.subject().map(str::to_string),
            from: addresses(message.from()).into_iter().next(),
            to: addresses(message.to()),
            cc: addresses(message.cc()),
            date: message
                .date()
                .and_then(|d| Utc.timestamp_opt(d.to_timestamp(), 0).single()),
            message_id: message.message_id().map(str::to_string),
            attachments: message
                .attachments()
                .filter_map(|part| part.attachment_name().map(str::to_string))
                .collect(),
            size,
            unparseable: false,
            body_text,
        })
    }));
    match parsed {
        Ok(Some(meta)) => meta,
        Ok(None) | Err(_) => {
            tracing::warn!(
                size,
                "message could not be parsed; archived without metadata"
            );
            MessageMetadata {
                size,
                unparseable: true,
                ..MessageMetadata::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_usual_fields() {
        let raw = b"From: Adele Vance <adele@contoso.com>\r\nTo: a@b.c, D <d@e.f>\r\nSubject: Quarterly numbers\r\nDate: Tue, 1 Jul 2025 10:00:00 +0000\r\nMessage-ID: <x@y>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>world</b></p>\r\n--b\r\nContent-Type: application/pdf; name=report.pdf\r\n\r\nxx\r\n--b--\r\n";
        let meta = extract(raw, raw.len() as u64);
        assert_eq!(meta.subject.as_deref(), Some("Quarterly numbers"));
        assert_eq!(
            meta.from.as_deref(),
            Some("Adele Vance <adele@contoso.com>")
        );
        assert_eq!(meta.to, vec!["a@b.c".to_string(), "D <d@e.f>".to_string()]);
        assert_eq!(meta.attachments, vec!["report.pdf".to_string()]);
        assert_eq!(meta.message_id.as_deref(), Some("x@y"));
        assert!(meta.body_text.contains("Hello"), "{}", meta.body_text);
        assert_eq!(meta.date.unwrap().to_rfc3339(), "2025-07-01T10:00:00+00:00");
    }

    #[test]
    fn legacy_charsets_decode_in_subject_names_and_body() {
        // 王小明 and 会议通知 in GB2312 (encoded-words, B and Q), the body in GB2312 base64.
        let raw = b"From: =?gb2312?B?zfXQocP3?= <w@example.cn>\r\nTo: =?gb2312?Q?=BB=E1=D2=E9?= <t@example.cn>\r\nSubject: =?gb2312?B?u+HS6c2o1qo=?=\r\nContent-Type: text/plain; charset=gb2312\r\nContent-Transfer-Encoding: base64\r\n\r\nu+HS6c2o1qo=\r\n";
        let meta = extract(raw, raw.len() as u64);
        assert_eq!(meta.subject.as_deref(), Some("会议通知"));
        assert_eq!(meta.from.as_deref(), Some("王小明 <w@example.cn>"));
        assert_eq!(meta.to, vec!["会议 <t@example.cn>".to_string()]);
        assert_eq!(meta.body_text.trim_end(), "会议通知");
    }

    #[test]
    fn empty_input_is_flagged() {
        assert!(extract(b"", 0).unparseable);
    }
}
