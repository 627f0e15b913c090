//! Shared by the restore tests: MIME building blocks, what a reader sees of a message
//! (for comparing an original with its restored copy), and a Graph mailbox client
//! against the in-process emulator over real HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use futures::StreamExt as _;
use m365_auth::{
    AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud, ProviderOptions,
};
use m365_emulator::{Emulator, EmulatorConfig};
use m365_mailbox::{
    DeltaEvent, GraphMailboxOptions, GraphMailboxSource, MailboxSource, MessageSummary, MimeContent,
};
use mail_parser::{MessageParser, MimeHeaders, PartType};

/// Base64 in 76-character lines, as a mail client writes a part.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    text.as_bytes()
        .chunks(76)
        .map(|l| format!("{}\r\n", String::from_utf8_lossy(l)))
        .collect()
}

/// Deterministic bytes for attachments.
pub fn blob(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

/// What a reader of a message sees, for comparing an original with its restored copy.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub subject: String,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Vec<String>,
    pub date: Option<i64>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// (name, content id, bytes), sorted.
    pub attachments: Vec<(String, Option<String>, Vec<u8>)>,
}

fn addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .map(|x| {
                format!(
                    "{} <{}>",
                    x.name().unwrap_or_default(),
                    x.address().unwrap_or_default()
                )
            })
            .collect()
    })
    .unwrap_or_default()
}

/// What a reader sees of `mime`.
pub fn seen(mime: &[u8]) -> Seen {
    let m = MessageParser::default().parse(mime).unwrap();
    let html: Vec<String> = m
        .html_body
        .iter()
        .filter_map(|&id| match &m.part(id)?.body {
            PartType::Html(h) => Some(h.to_string()),
            _ => None,
        })
        .collect();
    let text: Vec<String> = m
        .text_body
        .iter()
        .filter_map(|&id| match &m.part(id)?.body {
            PartType::Text(t) => Some(t.to_string()),
            _ => None,
        })
        .collect();
    let mut attachments: Vec<(String, Option<String>, Vec<u8>)> = m
        .attachments()
        .filter(|p| {
            !matches!(p.body, PartType::Text(_) | PartType::Html(_))
                || p.attachment_name().is_some()
        })
        .map(|p| {
            let name = p.attachment_name().unwrap_or("inner.eml").to_string();
            let cid = p
                .content_id()
                .map(|c| c.trim_matches(|c| c == '<' || c == '>').to_string());
            (name, cid, p.contents().to_vec())
        })
        .collect();
    attachments.sort();
    Seen {
        subject: m.subject().unwrap_or_default().to_string(),
        from: addresses(m.from()),
        to: addresses(m.to()),
        cc: addresses(m.cc()),
        bcc: addresses(m.bcc()),
        reply_to: addresses(m.reply_to()),
        date: m.date().map(|d| d.to_timestamp()),
        // The restored copy has one body: HTML when the original had one, else text.
        text: html.is_empty().then(|| text.join("\n")),
        html: (!html.is_empty()).then(|| html.join("\n")),
        attachments,
    }
}

/// The named header of `mime` (first occurrence), decoded as mail-parser reads it.
pub fn header(mime: &[u8], name: &str) -> Option<String> {
    let m = MessageParser::default().parse_headers(mime)?;
    m.header(name).and_then(|h| h.as_text().map(str::to_string))
}

/// An emulated tenant with `users` regular mailboxes (and the special users), no mail.
pub async fn emulator(users: usize, seed: u64) -> Emulator {
    Emulator::start(EmulatorConfig {
        users,
        messages_per_user: 0,
        seed,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap()
}

/// The regular mailboxes of the tenant the app may read and write.
pub fn writable_users(emu: &Emulator) -> Vec<String> {
    emu.users()
        .into_iter()
        .filter(|u| u.enabled && !u.guest && u.has_mailbox && !u.access_denied)
        .map(|u| u.upn)
        .collect()
}

/// A Graph mailbox client (reader and writer) signed in as the emulator's app.
pub fn graph(emu: &Emulator) -> GraphMailboxSource {
    let cloud = Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str()).unwrap();
    let registration = AppRegistration::new(
        &emu.tenant_id(),
        &emu.client_id(),
        ClientCredential::secret(emu.client_secret()),
        cloud,
    )
    .unwrap();
    let tokens = Arc::new(
        ClientCredentialsProvider::new(
            registration,
            ProviderOptions {
                extra_ca_pem: emu.ca_pem(),
                ..ProviderOptions::default()
            },
        )
        .unwrap(),
    );
    GraphMailboxSource::new(
        tokens,
        emu.graph_url(),
        GraphMailboxOptions {
            extra_ca_pem: emu.ca_pem(),
            ..GraphMailboxOptions::default()
        },
    )
    .unwrap()
}

/// The bytes of a fetched MIME.
pub fn mime_bytes(content: MimeContent) -> Vec<u8> {
    match content {
        MimeContent::Memory(b) => b.to_vec(),
        MimeContent::Spooled(p) => std::fs::read(&p).unwrap(),
    }
}

/// Every message of a folder as an archive run reads it: the folder's delta from the
/// start, then each message's `$value`.
pub async fn read_folder(
    source: &dyn MailboxSource,
    mailbox: &str,
    folder_id: &str,
) -> Vec<(MessageSummary, Vec<u8>)> {
    let mut summaries = Vec::new();
    let mut stream = source.changes(mailbox, folder_id, None);
    while let Some(event) = stream.next().await {
        if let DeltaEvent::Upsert(m) = event.unwrap() {
            summaries.push(m);
        }
    }
    let mut out = Vec::new();
    for m in summaries {
        let mime = mime_bytes(source.fetch_mime(mailbox, &m.id, u64::MAX).await.unwrap());
        out.push((m, mime));
    }
    out
}
