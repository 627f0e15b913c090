//! Tests of the lazy MIME renderer: determinism, lazy streaming, shared copies,
//! stored-message parsing and RFC 2047 header words.

use super::*;
use mail_parser::{MessageParser, MimeHeaders as _};
use proptest::prelude::*;

fn recipe(seed: u64, kind: MimeKind, size: u64, slot: u32, thread_start: u32) -> Recipe {
    Recipe {
        content_seed: seed,
        mailbox_key: seed.rotate_left(17),
        slot,
        thread_start,
        kind,
        size,
        received: 1_700_000_000,
        group: None,
    }
}

fn kind_strategy() -> impl Strategy<Value = MimeKind> {
    prop_oneof![
        Just(MimeKind::Plain),
        Just(MimeKind::Alternative),
        Just(MimeKind::Attachments),
        Just(MimeKind::InlineImage),
        Just(MimeKind::Malformed),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Every generated message parses with mail-parser and shows the subject, Message-ID and
    /// sender the Graph summary reports; malformed ones at least never panic the parser.
    #[test]
    fn generated_mime_parses_like_its_summary(
        seed in any::<u64>(),
        kind in kind_strategy(),
        size in 600u64..400_000,
        slot in 0u32..40,
        back in 0u32..5,
    ) {
        let recipe = recipe(seed, kind, size, slot, slot.saturating_sub(back));
        let source = render_recipe(&recipe, "adele.vance@contoso.onmicrosoft.com", "Adele Vance");
        let bytes = source.render();
        prop_assert_eq!(bytes.len() as u64, source.len(), "announced length is exact");
        prop_assert_eq!(&bytes, &source.render(), "rendering is deterministic");
        let parsed = MessageParser::default().parse(&bytes);
        if kind == MimeKind::Malformed {
            return Ok(());
        }
        let parsed = parsed.expect("parses");
        let plan = plan(&recipe, "adele.vance@contoso.onmicrosoft.com", "Adele Vance");
        prop_assert_eq!(parsed.subject(), Some(plan.subject.as_str()));
        prop_assert_eq!(parsed.message_id().map(|m| format!("<{m}>")), Some(plan.message_id.clone()));
        let from = parsed.from().and_then(|f| f.first()).expect("From");
        prop_assert_eq!(from.address(), Some(plan.from.1.as_str()));
        prop_assert_eq!(from.name(), Some(plan.from.0.as_str()));
        prop_assert!(parsed.body_text(0).is_some_and(|t| t.contains("Best regards")));
        let body = body_text_for(&recipe, "adele.vance@contoso.onmicrosoft.com", "Adele Vance");
        let collapsed: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
        let preview = preview_for(&recipe, "adele.vance@contoso.onmicrosoft.com", "Adele Vance");
        prop_assert!(collapsed.starts_with(&preview), "preview is the start of the body");
        prop_assert!(parsed.body_text(0).is_some_and(|t| t.replace("\r\n", "\n").trim_end() == body.trim_end()));
        if kind == MimeKind::Attachments {
            prop_assert!(parsed.attachment_count() >= 1);
            for attachment in parsed.attachments() {
                prop_assert!(attachment.attachment_name().is_some_and(|n| !n.is_empty()));
            }
        }
        if !plan.references.is_empty() {
            prop_assert!(parsed.in_reply_to().as_text_list().is_some());
        }
        // Sizes land near the target (real mail's distribution is drawn by the generator).
        if matches!(kind, MimeKind::Attachments | MimeKind::Plain) && size > 20_000 {
            let ratio = bytes.len() as f64 / size as f64;
            prop_assert!((0.5..2.0).contains(&ratio), "size {} for target {}", bytes.len(), size);
        }
    }

    /// Quoted-printable output decodes back to the text.
    #[test]
    fn quoted_printable_round_trips(text in "[a-zA-Z0-9 =äöü€\\t.,\n]{0,300}") {
        let encoded = quoted_printable(&text);
        prop_assert!(encoded.split("\r\n").all(|l| l.len() <= 76));
        let message = format!("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{encoded}");
        let parsed = MessageParser::default().parse(message.as_bytes()).expect("parses");
        let expected = text.replace('\r', "");
        let decoded = parsed.body_text(0).map(|t| t.replace("\r\n", "\n")).unwrap_or_default();
        prop_assert_eq!(decoded.trim_end(), expected.trim_end());
    }
}

#[test]
fn streamed_chunks_equal_the_whole_and_large_messages_stay_lazy() {
    let large = recipe(5, MimeKind::Large, 20 * 1024 * 1024, u32::MAX, u32::MAX);
    let source = render_recipe(&large, "a@contoso.onmicrosoft.com", "A");
    let announced = source.len();
    assert!(
        (20 * 1024 * 1024 - 4096..20 * 1024 * 1024 + 4096).contains(&announced),
        "{announced}"
    );
    let mut total = 0u64;
    let mut largest_chunk = 0;
    for chunk in source.stream() {
        total += chunk.len() as u64;
        largest_chunk = largest_chunk.max(chunk.len());
    }
    assert_eq!(total, announced);
    assert!(
        largest_chunk < 128 * 1024,
        "chunks stay small: {largest_chunk}"
    );
    let bytes = source.render();
    let parsed = MessageParser::default().parse(&bytes).expect("parses");
    assert_eq!(parsed.attachment_count(), 1);
}

#[test]
fn shared_copies_differ_only_in_per_mailbox_headers() {
    let group = Arc::new(SharedGroup {
        recipients: vec![
            ("A".into(), "a@contoso.onmicrosoft.com".into()),
            ("B".into(), "b@contoso.onmicrosoft.com".into()),
        ],
    });
    let mut first = recipe(77, MimeKind::Attachments, 300_000, 3, 3);
    first.group = Some(Arc::clone(&group));
    let mut second = first.clone();
    second.mailbox_key = 12345;
    let a = render_recipe(&first, "a@contoso.onmicrosoft.com", "A").render();
    let b = render_recipe(&second, "b@contoso.onmicrosoft.com", "B").render();
    assert_ne!(a, b);
    let body = |m: &[u8]| {
        let text = String::from_utf8_lossy(m).into_owned();
        text.split_once("\r\nFrom: ")
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_default()
    };
    assert_eq!(body(&a), body(&b), "everything from From: on is identical");
}

#[test]
fn stored_messages_show_decoded_headers_and_survive_garbage() {
    let meta = StoredMeta::parse(
        b"From: =?utf-8?Q?Zo=C3=AB?= <zoe@example.org>\r\nTo: a@x.org, \"B\" <b@x.org>\r\nSubject: =?UTF-8?B?w5xiZXI=?=\r\nMessage-ID: <m1@x>\r\n\r\nbody",
    );
    assert_eq!(meta.subject, "Über");
    assert_eq!(meta.internet_message_id, "<m1@x>");
    assert_eq!(
        meta.from,
        Some(("Zoë".to_owned(), "zoe@example.org".to_owned()))
    );
    assert_eq!(meta.to.len(), 2);
    let garbage = StoredMeta::parse(&[0xff, 0x00, b':', b'\n']);
    assert!(garbage.subject.is_empty());
}

#[test]
fn rfc2047_words_stay_short_and_decode() {
    let subject = "日本語の件名: 会議の議事録 — Überprüfung der Verträge für Müller & Söhne";
    let encoded = encode_header_value(subject);
    assert!(encoded.split("\r\n ").all(|w| w.len() <= 75), "{encoded}");
    let message = format!("Subject: {encoded}\r\n\r\nx");
    let parsed = MessageParser::default()
        .parse(message.as_bytes())
        .expect("parses");
    assert_eq!(parsed.subject(), Some(subject));
}
