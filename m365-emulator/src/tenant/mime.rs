//! Lazy, deterministic MIME: a [`Recipe`] (seed, kind, size) becomes a list of segments, literal
//! text or seeded random attachment bytes in base64, whose length is known without rendering them.
//!
//! Rendering the same recipe always gives the same bytes. Big attachments are produced chunk by
//! chunk from a ChaCha stream, so a 150 MB message is served without ever being held whole.

use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, TimeZone as _, Utc};
use rand::{Rng as _, RngCore as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use super::model::mix_all;
use super::names;

mod encode;
pub(crate) mod render;

use encode::{
    address_list, base64_lines, encode_header_value, filename_params, mailbox_header,
    quoted_printable,
};

/// Raw bytes per base64 line (76 characters).
const LINE_RAW: u64 = 57;
/// Raw bytes generated per streamed chunk (1,024 base64 lines).
const BLOCK_RAW: u64 = LINE_RAW * 1024;

/// The shape of a generated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MimeKind {
    /// One text/plain part.
    Plain,
    /// multipart/alternative: text and HTML.
    Alternative,
    /// multipart/mixed: alternative body plus attachments (shared and unique).
    Attachments,
    /// multipart/related: HTML with an inline image (cid:).
    InlineImage,
    /// Intentionally broken MIME (the archiver must keep it anyway).
    Malformed,
    /// One very large attachment (the `large_message_bytes` option).
    Large,
}

/// Recipients of a message delivered to several mailboxes (the copies differ only in a few headers).
#[derive(Debug, Clone)]
pub(crate) struct SharedGroup {
    /// (display name, address) of every recipient.
    pub(crate) recipients: Vec<(String, String)>,
}

/// Everything needed to render one generated message.
#[derive(Debug, Clone)]
pub(crate) struct Recipe {
    /// Drives subject, body and attachments; copies of a shared message have the same one.
    pub(crate) content_seed: u64,
    /// Drives the per-mailbox headers and the thread's Message-IDs.
    pub(crate) mailbox_key: u64,
    /// Position in the mailbox's generation order.
    pub(crate) slot: u32,
    /// First slot of the thread (== slot for a thread's first message).
    pub(crate) thread_start: u32,
    pub(crate) kind: MimeKind,
    /// Target size in bytes (the result is close to it).
    pub(crate) size: u64,
    /// Unix seconds.
    pub(crate) received: i64,
    pub(crate) group: Option<Arc<SharedGroup>>,
}

/// Header values of a stored (delivered) message, for the Graph summary.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoredMeta {
    pub(crate) subject: String,
    pub(crate) internet_message_id: String,
    pub(crate) from: Option<(String, String)>,
    pub(crate) to: Vec<(String, String)>,
}

impl StoredMeta {
    /// Reads Subject, Message-ID, From and To (RFC 2047 decoded) with mail-parser; a message it
    /// cannot read (or that makes it panic) keeps empty values: it is stored and served anyway.
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        std::panic::catch_unwind(|| Self::parse_with_mail_parser(bytes)).unwrap_or_default()
    }

    fn parse_with_mail_parser(bytes: &[u8]) -> Self {
        let Some(message) = mail_parser::MessageParser::default().parse_headers(bytes) else {
            return StoredMeta::default();
        };
        let person = |a: &mail_parser::Addr<'_>| {
            (
                a.name().unwrap_or_default().to_owned(),
                a.address().unwrap_or_default().to_owned(),
            )
        };
        StoredMeta {
            subject: message.subject().unwrap_or_default().to_owned(),
            internet_message_id: message
                .message_id()
                .map(|id| format!("<{id}>"))
                .unwrap_or_default(),
            from: message.from().and_then(|f| f.first()).map(person),
            to: message
                .to()
                .map(|t| t.iter().map(person).collect())
                .unwrap_or_default(),
        }
    }
}

/// One piece of a message's bytes.
#[derive(Debug, Clone)]
enum Segment {
    Literal(Bytes),
    /// `raw_len` seeded random bytes, base64 with CRLF every 76 characters.
    RandomBase64 {
        seed: u64,
        raw_len: u64,
    },
}

fn base64_len(raw_len: u64) -> u64 {
    let encoded = raw_len.div_ceil(3) * 4;
    encoded + 2 * encoded.div_ceil(76)
}

/// A message's bytes, not yet rendered.
#[derive(Debug, Clone)]
pub(crate) struct MimeSource {
    segments: Vec<Segment>,
    len: u64,
}

impl MimeSource {
    /// Bytes kept as given.
    pub(crate) fn stored(bytes: Bytes) -> Self {
        let len = bytes.len() as u64;
        Self {
            segments: vec![Segment::Literal(bytes)],
            len,
        }
    }

    fn from_segments(segments: Vec<Segment>) -> Self {
        let len = segments
            .iter()
            .map(|s| match s {
                Segment::Literal(b) => b.len() as u64,
                Segment::RandomBase64 { raw_len, .. } => base64_len(*raw_len),
            })
            .sum();
        Self { segments, len }
    }

    /// Exact size in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// All bytes at once.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        for chunk in self.stream() {
            out.extend_from_slice(&chunk);
        }
        out
    }

    /// The bytes as a sequence of chunks (at most about 80 KB each for generated parts).
    pub(crate) fn stream(&self) -> MimeStream {
        MimeStream {
            segments: self.segments.clone(),
            index: 0,
            random: None,
        }
    }
}

/// Iterator over a message's bytes in chunks.
#[derive(Debug)]
pub(crate) struct MimeStream {
    segments: Vec<Segment>,
    index: usize,
    /// (generator, raw bytes still to produce) of the random segment in progress.
    random: Option<(ChaCha8Rng, u64)>,
}

impl Iterator for MimeStream {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some((rng, remaining)) = &mut self.random {
                if *remaining == 0 {
                    self.random = None;
                    self.index += 1;
                    continue;
                }
                let take = (*remaining).min(BLOCK_RAW);
                let mut raw = vec![0u8; usize::try_from(take).unwrap_or(0)];
                rng.fill_bytes(&mut raw);
                *remaining -= take;
                let encoded = base64::engine::general_purpose::STANDARD.encode(&raw);
                let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 2);
                for line in encoded.as_bytes().chunks(76) {
                    out.extend_from_slice(line);
                    out.extend_from_slice(b"\r\n");
                }
                return Some(Bytes::from(out));
            }
            match self.segments.get(self.index)? {
                Segment::Literal(bytes) => {
                    self.index += 1;
                    if !bytes.is_empty() {
                        return Some(bytes.clone());
                    }
                }
                Segment::RandomBase64 { seed, raw_len } => {
                    self.random = Some((ChaCha8Rng::seed_from_u64(*seed), *raw_len));
                }
            }
        }
    }
}

/// Header-level facts of a generated message (what the Graph summary shows).
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) subject: String,
    pub(crate) from: (String, String),
    pub(crate) to: Vec<(String, String)>,
    pub(crate) cc: Vec<(String, String)>,
    pub(crate) message_id: String,
    pub(crate) references: Vec<String>,
    pub(crate) has_attachments: bool,
    pub(crate) date: DateTime<Utc>,
}

/// Message-ID of a slot of a mailbox (threads refer to earlier slots).
fn slot_message_id(mailbox_key: u64, slot: u32) -> String {
    format!(
        "<{:016x}{:08x}@EX{:04}.namprd{:02}.prod.outlook.com>",
        mix_all(&[mailbox_key, u64::from(slot)]),
        slot,
        mix_all(&[mailbox_key, 7]) % 10_000,
        mailbox_key % 20
    )
}

fn person(rng: &mut ChaCha8Rng, internal_domain: &str) -> (String, String) {
    if rng.gen_ratio(1, 8) {
        let (name, local) = names::UNICODE_PEOPLE[rng.gen_range(0..names::UNICODE_PEOPLE.len())];
        let domain = names::EXTERNAL_DOMAINS[rng.gen_range(0..names::EXTERNAL_DOMAINS.len())];
        return (name.to_owned(), format!("{local}@{domain}"));
    }
    let given = names::GIVEN[rng.gen_range(0..names::GIVEN.len())];
    let surname = names::SURNAMES[rng.gen_range(0..names::SURNAMES.len())];
    let domain = if rng.gen_bool(0.5) {
        internal_domain.to_owned()
    } else {
        names::EXTERNAL_DOMAINS[rng.gen_range(0..names::EXTERNAL_DOMAINS.len())].to_owned()
    };
    (
        format!("{given} {surname}"),
        format!(
            "{}.{}@{domain}",
            given.to_lowercase(),
            surname.to_lowercase()
        ),
    )
}

fn subject_for(rng: &mut ChaCha8Rng) -> String {
    if rng.gen_ratio(1, 6) {
        names::UNICODE_SUBJECTS[rng.gen_range(0..names::UNICODE_SUBJECTS.len())].to_owned()
    } else {
        let base = names::SUBJECTS[rng.gen_range(0..names::SUBJECTS.len())];
        format!("{base} #{}", rng.gen_range(100..10_000))
    }
}

/// Computes the header-level facts of a recipe for a mailbox owner.
pub(crate) fn plan(recipe: &Recipe, owner_upn: &str, owner_name: &str) -> Plan {
    let domain = owner_upn
        .split_once('@')
        .map_or("contoso.onmicrosoft.com", |(_, d)| d);
    // Subjects of a thread come from its first message; everything else from the content seed.
    let mut thread_rng = ChaCha8Rng::seed_from_u64(
        if recipe.group.is_some() || recipe.thread_start == recipe.slot {
            recipe.content_seed
        } else {
            mix_all(&[recipe.mailbox_key, u64::from(recipe.thread_start), 0x7E])
        },
    );
    let thread_subject = subject_for(&mut thread_rng);
    let mut rng = ChaCha8Rng::seed_from_u64(recipe.content_seed);
    let _ = subject_for(&mut rng);
    let depth = recipe.slot.saturating_sub(recipe.thread_start);
    let subject = if depth == 0 || recipe.group.is_some() {
        thread_subject
    } else if depth % 3 == 2 {
        format!("RE: RE: {thread_subject}")
    } else {
        format!("RE: {thread_subject}")
    };
    let from = person(&mut rng, domain);
    let (to, message_id, references) = match &recipe.group {
        Some(group) => (
            group.recipients.clone(),
            format!(
                "<{:016x}.shared@{}>",
                recipe.content_seed,
                from.1.split_once('@').map_or(domain, |(_, d)| d)
            ),
            Vec::new(),
        ),
        None => {
            let mut to = vec![(owner_name.to_owned(), owner_upn.to_owned())];
            if rng.gen_ratio(1, 3) {
                to.push(person(&mut rng, domain));
            }
            let references = (recipe.thread_start..recipe.slot)
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .map(|s| slot_message_id(recipe.mailbox_key, s))
                .collect();
            (
                to,
                slot_message_id(recipe.mailbox_key, recipe.slot),
                references,
            )
        }
    };
    let cc = if rng.gen_ratio(1, 4) {
        vec![person(&mut rng, domain)]
    } else {
        Vec::new()
    };
    let has_attachments = matches!(recipe.kind, MimeKind::Attachments | MimeKind::Large);
    let sent = recipe.received - rng.gen_range(5..600);
    let date = Utc.timestamp_opt(sent, 0).single().unwrap_or_default();
    Plan {
        subject,
        from,
        to,
        cc,
        message_id,
        references,
        has_attachments,
        date,
    }
}

fn paragraph(rng: &mut ChaCha8Rng) -> String {
    let words = rng.gen_range(20..90);
    let mut p = String::new();
    for i in 0..words {
        if i > 0 {
            p.push(' ');
        }
        let word = names::WORDS[rng.gen_range(0..names::WORDS.len())];
        if i == 0 {
            let mut c = word.chars();
            if let Some(first) = c.next() {
                p.extend(first.to_uppercase());
                p.push_str(c.as_str());
            }
        } else {
            p.push_str(word);
        }
    }
    p.push('.');
    if rng.gen_ratio(1, 5) {
        p.push(' ');
        p.push_str(names::UNICODE_SENTENCES[rng.gen_range(0..names::UNICODE_SENTENCES.len())]);
    }
    p
}

fn body_text(rng: &mut ChaCha8Rng, target: u64, greeting: &str, from_name: &str) -> String {
    let mut text = format!("Hi {greeting},\n\n");
    loop {
        text.push_str(&paragraph(rng));
        text.push_str("\n\n");
        if text.len() as u64 >= target {
            break;
        }
    }
    let _ = write!(text, "Best regards,\n{from_name}\n");
    text
}

fn html_of(text: &str) -> String {
    let mut html = String::from(
        "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\n</head>\n<body>\n",
    );
    for para in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        let escaped = para
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('\n', "<br>\n");
        let _ = writeln!(
            html,
            "<div style=\"font-family:Calibri,sans-serif;font-size:11pt\">{escaped}</div>"
        );
    }
    html.push_str("</body>\n</html>\n");
    html
}

fn boundary(rng: &mut ChaCha8Rng, tag: &str) -> String {
    format!(
        "_{:03}_{tag}{:016X}_",
        rng.gen_range(0..1000),
        rng.r#gen::<u64>()
    )
}

/// A tiny but valid 1×1 PNG (the inline signature image).
const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// Builder of literal text and random segments.
#[derive(Default)]
struct Out {
    segments: Vec<Segment>,
    text: String,
}

impl Out {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }
    fn random(&mut self, seed: u64, raw_len: u64) {
        self.flush();
        self.segments.push(Segment::RandomBase64 { seed, raw_len });
    }
    fn flush(&mut self) {
        if !self.text.is_empty() {
            self.segments.push(Segment::Literal(Bytes::from(
                std::mem::take(&mut self.text).into_bytes(),
            )));
        }
    }
    fn finish(mut self) -> MimeSource {
        self.flush();
        MimeSource::from_segments(self.segments)
    }
}

fn attachment_part(
    out: &mut Out,
    boundary: &str,
    name: &str,
    mime_type: &str,
    seed: u64,
    raw_len: u64,
) {
    let (name_param, filename_param) = filename_params(name);
    let _ = write!(
        out.text,
        "--{boundary}\r\nContent-Type: {mime_type}; {name_param}\r\nContent-Description: {}\r\n\
         Content-Disposition: attachment; {filename_param}; size={raw_len}\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
        encode_header_value(name)
    );
    out.random(seed, raw_len);
}

/// The text body of a generated message (drawn first from the body stream `rng`).
fn body_text_of(recipe: &Recipe, plan: &Plan, rng: &mut ChaCha8Rng) -> String {
    let greeting = plan
        .to
        .first()
        .map_or("all", |(n, _)| n.split(' ').next().unwrap_or("all"))
        .to_owned();
    let text_target = match recipe.kind {
        MimeKind::Plain | MimeKind::Alternative => {
            recipe.size.saturating_sub(1500).clamp(200, 400_000)
        }
        _ => recipe.size.clamp(200, 3_000).min(3_000),
    };
    body_text(
        rng,
        if recipe.kind == MimeKind::Alternative {
            text_target / 3
        } else {
            text_target
        },
        &greeting,
        &plan.from.0,
    )
}

/// The text body of a generated message, as its MIME carries it (Graph's `body`).
pub(crate) fn body_text_for(recipe: &Recipe, owner_upn: &str, owner_name: &str) -> String {
    let plan = plan(recipe, owner_upn, owner_name);
    let mut rng = ChaCha8Rng::seed_from_u64(mix_all(&[recipe.content_seed, 0xB0D7]));
    body_text_of(recipe, &plan, &mut rng)
}

/// Graph's `bodyPreview`: the first 255 characters of the text body, whitespace collapsed.
pub(crate) fn preview_for(recipe: &Recipe, owner_upn: &str, owner_name: &str) -> String {
    let text = body_text_for(recipe, owner_upn, owner_name);
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(255)
        .collect()
}

/// Renders a recipe for the mailbox owner.
pub(crate) fn render_recipe(recipe: &Recipe, owner_upn: &str, owner_name: &str) -> MimeSource {
    let plan = plan(recipe, owner_upn, owner_name);
    // Body content is drawn from a stream separate from the plan's, keyed by the content seed.
    let mut rng = ChaCha8Rng::seed_from_u64(mix_all(&[recipe.content_seed, 0xB0D7]));
    let mut out = Out::default();

    // Per-mailbox headers: the only bytes that differ between copies of a shared message.
    let received = Utc
        .timestamp_opt(recipe.received, 0)
        .single()
        .unwrap_or_default();
    let hop = mix_all(&[recipe.mailbox_key, u64::from(recipe.slot)]);
    let _ = write!(
        out.text,
        "Received: from EX{:04}.prod.outlook.com (2603:10b6:{:x}::{:x}) by EX{:04}.prod.outlook.com with HTTPS\r\n \
         id 15.20.{}.{}; {}\r\nDelivered-To: {owner_upn}\r\nX-MS-Exchange-Organization-SCL: {}\r\n",
        hop % 10_000,
        hop >> 48,
        (hop >> 32) & 0xffff,
        (hop >> 8) % 10_000,
        (hop >> 20) % 9000 + 1000,
        (hop >> 40) % 100,
        received.to_rfc2822(),
        hop % 3
    );
    let _ = write!(
        out.text,
        "From: {}\r\nTo: {}\r\n",
        mailbox_header(&plan.from.0, &plan.from.1),
        address_list(&plan.to)
    );
    if !plan.cc.is_empty() {
        let _ = write!(out.text, "Cc: {}\r\n", address_list(&plan.cc));
    }
    let _ = write!(
        out.text,
        "Subject: {}\r\nDate: {}\r\nMessage-ID: {}\r\n",
        encode_header_value(&plan.subject),
        plan.date.to_rfc2822(),
        plan.message_id
    );
    if let Some(parent) = plan.references.last() {
        let _ = write!(
            out.text,
            "In-Reply-To: {parent}\r\nReferences: {}\r\n",
            plan.references.join("\r\n ")
        );
    }
    let _ = write!(
        out.text,
        "Thread-Topic: {}\r\nContent-Language: en-US\r\n",
        encode_header_value(&plan.subject)
    );
    if plan.has_attachments {
        out.push("X-MS-Has-Attach: yes\r\n");
    }
    out.push("MIME-Version: 1.0\r\n");

    let text = body_text_of(recipe, &plan, &mut rng);

    match recipe.kind {
        MimeKind::Plain => {
            let _ = write!(
                out.text,
                "Content-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n",
                quoted_printable(&text)
            );
        }
        MimeKind::Alternative => {
            let b = boundary(&mut rng, "alt");
            let _ = write!(
                out.text,
                "Content-Type: multipart/alternative;\r\n\tboundary=\"{b}\"\r\n\r\n"
            );
            alternative_parts(&mut out, &b, &text);
        }
        MimeKind::InlineImage => {
            let b = boundary(&mut rng, "rel");
            let alt = boundary(&mut rng, "alt");
            let cid = format!(
                "image001.png@01DA{:012X}",
                rng.r#gen::<u64>() & 0xFFFF_FFFF_FFFF
            );
            let _ = write!(
                out.text,
                "Content-Type: multipart/related;\r\n\tboundary=\"{b}\";\r\n\ttype=\"multipart/alternative\"\r\n\r\n\
                 --{b}\r\nContent-Type: multipart/alternative;\r\n\tboundary=\"{alt}\"\r\n\r\n"
            );
            let html = html_of(&text).replace(
                "</body>",
                &format!("<img src=\"cid:{cid}\" width=\"1\" height=\"1\">\n</body>"),
            );
            let _ = write!(
                out.text,
                "--{alt}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n\
                 --{alt}\r\nContent-Type: text/html; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n--{alt}--\r\n\r\n",
                quoted_printable(&text),
                quoted_printable(&html)
            );
            let photo_len = recipe.size.saturating_sub(out.text.len() as u64 + 600) * 3 / 4;
            let _ = write!(
                out.text,
                "--{b}\r\nContent-Type: image/png; name=\"image001.png\"\r\nContent-Description: image001.png\r\n\
                 Content-Disposition: inline; filename=\"image001.png\"; size={}\r\nContent-ID: <{cid}>\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}",
                TINY_PNG.len(),
                base64_lines(TINY_PNG)
            );
            if photo_len > 1024 {
                let _ = write!(
                    out.text,
                    "\r\n--{b}\r\nContent-Type: image/jpeg; name=\"photo.jpg\"\r\nContent-Disposition: inline; filename=\"photo.jpg\"; size={photo_len}\r\n\
                     Content-ID: <photo{cid}>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                );
                out.random(mix_all(&[recipe.content_seed, 0x1A6E]), photo_len);
            }
            let _ = write!(out.text, "\r\n--{b}--\r\n");
        }
        MimeKind::Attachments | MimeKind::Large => {
            let b = boundary(&mut rng, "mix");
            let alt = boundary(&mut rng, "alt");
            let _ = write!(
                out.text,
                "Content-Type: multipart/mixed;\r\n\tboundary=\"{b}\"\r\n\r\n--{b}\r\nContent-Type: multipart/alternative;\r\n\tboundary=\"{alt}\"\r\n\r\n"
            );
            alternative_parts(&mut out, &alt, &text);
            let mut budget = recipe.size.saturating_sub(out.text.len() as u64 + 400);
            let mut added_shared = false;
            let shared_pick = rng.gen_range(0..names::SHARED_ATTACHMENTS.len());
            let (_, _, shared_len) = names::SHARED_ATTACHMENTS[shared_pick];
            if recipe.kind == MimeKind::Attachments
                && rng.gen_ratio(1, 2)
                && base64_len(shared_len) + 300 <= budget
            {
                // A shared attachment: the very same part bytes in many messages of the tenant.
                let index = shared_pick;
                added_shared = true;
                let (name, mime_type, len) = names::SHARED_ATTACHMENTS[index];
                out.push("\r\n");
                attachment_part(
                    &mut out,
                    &b,
                    name,
                    mime_type,
                    mix_all(&[0x5A4E_D000, index as u64]),
                    len,
                );
                budget = budget.saturating_sub(base64_len(len) + 300);
            }
            if budget > 600 || !added_shared {
                let (name, mime_type) = if recipe.kind == MimeKind::Large {
                    ("Large backup.bin", "application/octet-stream")
                } else {
                    names::ATTACHMENT_NAMES[rng.gen_range(0..names::ATTACHMENT_NAMES.len())]
                };
                let head_len = 260 + name.len() as u64 * 3;
                let raw = budget.saturating_sub(head_len) / 78 * 57;
                out.push("\r\n");
                attachment_part(
                    &mut out,
                    &b,
                    name,
                    mime_type,
                    mix_all(&[recipe.content_seed, 0xA77A]),
                    raw.max(1),
                );
            }
            let _ = write!(out.text, "\r\n--{b}--\r\n");
        }
        MimeKind::Malformed => malformed(&mut out, &mut rng, &text),
    }
    out.finish()
}

fn alternative_parts(out: &mut Out, b: &str, text: &str) {
    let _ = write!(
        out.text,
        "--{b}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n\
         --{b}\r\nContent-Type: text/html; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n--{b}--\r\n",
        quoted_printable(text),
        quoted_printable(&html_of(text))
    );
}

/// Broken on purpose, in one of several ways real mail is broken.
fn malformed(out: &mut Out, rng: &mut ChaCha8Rng, text: &str) {
    match rng.gen_range(0..4) {
        0 => {
            // Multipart whose closing boundary never comes and whose base64 is cut mid-line.
            let b = boundary(rng, "bad");
            let _ = write!(
                out.text,
                "Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\nContent-Type: text/plain\r\n\r\n{}\r\n\
                 --{b}\r\nContent-Type: application/pdf; name=\"cut.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJ%%",
                text.replace('\n', "\r\n")
            );
        }
        1 => {
            // Raw 8-bit Latin-1 in headers and body, no charset, a header line without a colon.
            out.flush();
            out.segments.push(Segment::Literal(Bytes::from_static(
                b"X-Broken-Header-Without-Colon\r\nX-Latin1: caf\xe9 cr\xe8me\r\nContent-Type: text/plain\r\n\r\nR\xe9sum\xe9 attached \xff\xfe\r\n",
            )));
        }
        2 => {
            // A boundary declared but never used, and a NUL byte in the body.
            let _ = write!(
                out.text,
                "Content-Type: multipart/alternative; boundary=\"never-used\"\r\n\r\n{}\r\n\0trailing\r\n",
                text.replace('\n', "\r\n")
            );
        }
        _ => {
            // Base64 declared, garbage given, bare LF line ends.
            let _ = write!(
                out.text,
                "Content-Type: text/plain; charset=\"utf-8\"\nContent-Transfer-Encoding: base64\n\n!!not*base64@@\n{}\n",
                text
            );
        }
    }
}

#[cfg(test)]
mod tests;
