//! The bodies of the write requests, built from outside input (archived mail) without
//! I/O: the JSON create of a [`NewMessage`] with its MAPI flags and restore key, file
//! attachments, upload sessions, the key's PATCH, and the restore key's encoding
//! (`<id>` complete, `<id>#incomplete` while attachments are still being added).
//! Also the OData string literal of a `$filter` and the `Message-ID` of a MIME header.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::wire::{
    DELIVERY_TIME_PROPERTY, MESSAGE_FLAGS_PROPERTY, RESTORE_KEY_PROPERTY, SUBMIT_TIME_PROPERTY,
};
use crate::write::{BodyKind, Importance, NewAttachment, NewMessage, Recipient, RestoreKey};

/// What follows the archive id in the key of an item whose attachments are not all there.
pub(super) const INCOMPLETE_SUFFIX: &str = "#incomplete";

/// `PR_MESSAGE_FLAGS` of a restored item: `MSGFLAG_READ` or nothing (never `MSGFLAG_UNSENT`,
/// which would make it a draft).
fn message_flags(is_read: bool) -> &'static str {
    if is_read { "1" } else { "0" }
}

/// The value of the restore key property.
pub(super) fn key_value(key: &RestoreKey, complete: bool) -> String {
    if complete {
        key.0.clone()
    } else {
        format!("{}{INCOMPLETE_SUFFIX}", key.0)
    }
}

/// The key and completeness a property value says; `None` for an empty id.
pub(super) fn decode_key(value: &str) -> Option<(RestoreKey, bool)> {
    let (id, complete) = match value.strip_suffix(INCOMPLETE_SUFFIX) {
        Some(id) => (id, false),
        None => (value, true),
    };
    (!id.is_empty()).then(|| (RestoreKey(id.to_string()), complete))
}

/// Whether a property id is the restore key's (Graph may change the case of the GUID or
/// of the kind and name, and the spacing).
pub(super) fn is_restore_key_property(id: &str) -> bool {
    let words = |s: &str| {
        s.split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
    };
    words(id) == words(RESTORE_KEY_PROPERTY)
}

fn recipient(r: &Recipient) -> Value {
    let mut address = json!({ "address": r.address });
    if let Some(name) = r.name.as_deref().filter(|n| !n.is_empty()) {
        address["name"] = json!(name);
    }
    json!({ "emailAddress": address })
}

fn recipients(list: &[Recipient]) -> Value {
    Value::Array(list.iter().map(recipient).collect())
}

/// A header value on one line (Graph refuses CR and LF in `internetMessageHeaders`).
fn one_line(value: &str) -> String {
    value
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether Graph takes the header on a create: an `x-` name made of header-name
/// characters.
fn is_settable_header(name: &str) -> bool {
    name.len() > 2
        && name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("x-"))
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b':' && !b.is_ascii_whitespace())
}

fn extended(id: &str, value: String) -> Value {
    json!({ "id": id, "value": value })
}

/// The JSON create of `message`: with its attachments inside when `with_attachments`,
/// the restore key marked complete or incomplete as `complete` says.
pub(super) fn create_body(message: &NewMessage, with_attachments: bool, complete: bool) -> Value {
    let mut properties = vec![
        extended(
            MESSAGE_FLAGS_PROPERTY,
            message_flags(message.is_read).into(),
        ),
        extended(RESTORE_KEY_PROPERTY, key_value(&message.key, complete)),
    ];
    let stamp = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    if let Some(received) = &message.received {
        properties.push(extended(DELIVERY_TIME_PROPERTY, stamp(received)));
    }
    if let Some(sent) = &message.sent {
        properties.push(extended(SUBMIT_TIME_PROPERTY, stamp(sent)));
    }
    let mut body = json!({
        "subject": message.subject,
        "body": {
            "contentType": match message.body_kind {
                BodyKind::Html => "html",
                BodyKind::Text => "text",
            },
            "content": message.body,
        },
        "singleValueExtendedProperties": properties,
    });
    let fields = [
        ("from", message.from.as_ref().map(recipient)),
        ("sender", message.sender.as_ref().map(recipient)),
        (
            "toRecipients",
            (!message.to.is_empty()).then(|| recipients(&message.to)),
        ),
        (
            "ccRecipients",
            (!message.cc.is_empty()).then(|| recipients(&message.cc)),
        ),
        (
            "bccRecipients",
            (!message.bcc.is_empty()).then(|| recipients(&message.bcc)),
        ),
        (
            "replyTo",
            (!message.reply_to.is_empty()).then(|| recipients(&message.reply_to)),
        ),
        (
            "internetMessageId",
            message
                .internet_message_id
                .as_deref()
                .filter(|id| !id.trim().is_empty())
                .map(|id| json!(id.trim())),
        ),
        (
            "importance",
            message.importance.map(|i| {
                json!(match i {
                    Importance::Low => "low",
                    Importance::Normal => "normal",
                    Importance::High => "high",
                })
            }),
        ),
        (
            "categories",
            (!message.categories.is_empty()).then(|| json!(message.categories)),
        ),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            body[name] = value;
        }
    }
    let headers: Vec<Value> = message
        .headers
        .iter()
        .filter(|(name, _)| is_settable_header(name))
        .map(|(name, value)| json!({ "name": name, "value": one_line(value) }))
        .collect();
    if !headers.is_empty() {
        body["internetMessageHeaders"] = Value::Array(headers);
    }
    if with_attachments && !message.attachments.is_empty() {
        body["attachments"] = Value::Array(message.attachments.iter().map(attachment).collect());
    }
    body
}

/// A `fileAttachment` with its bytes (base64).
pub(super) fn attachment(a: &NewAttachment) -> Value {
    let mut value = json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": a.name,
        "contentType": a.content_type,
        "contentBytes": base64::engine::general_purpose::STANDARD.encode(&a.bytes),
        "isInline": a.inline,
    });
    if let Some(id) = a.content_id.as_deref().filter(|id| !id.is_empty()) {
        value["contentId"] = json!(id);
    }
    value
}

/// The body of `createUploadSession` for `a`.
pub(super) fn upload_session(a: &NewAttachment) -> Value {
    let mut item = json!({
        "attachmentType": "file",
        "name": a.name,
        "size": a.bytes.len(),
        "contentType": a.content_type,
        "isInline": a.inline,
    });
    if let Some(id) = a.content_id.as_deref().filter(|id| !id.is_empty()) {
        item["contentId"] = json!(id);
    }
    json!({ "AttachmentItem": item })
}

/// The PATCH that sets the restore key.
pub(super) fn key_patch(key: &RestoreKey, complete: bool) -> Value {
    json!({
        "singleValueExtendedProperties": [extended(RESTORE_KEY_PROPERTY, key_value(key, complete))]
    })
}

/// An OData string literal: quoted, inner quotes doubled.
pub(super) fn odata_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The `Message-ID` of a MIME message's header block, if it has one.
pub(super) fn mime_message_id(mime: &[u8]) -> Option<String> {
    crate::memory::header(mime, "message-id")
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn person(name: Option<&str>, address: &str) -> Recipient {
        Recipient {
            name: name.map(str::to_string),
            address: address.into(),
        }
    }

    fn message() -> NewMessage {
        NewMessage {
            key: RestoreKey("A1".into()),
            subject: "Größe".into(),
            body_kind: BodyKind::Html,
            body: "<p>hi</p>".into(),
            from: Some(person(Some("Adele"), "adele@contoso.com")),
            sender: None,
            to: vec![person(None, "b@contoso.com")],
            cc: vec![],
            bcc: vec![person(Some("Hidden"), "c@contoso.com")],
            reply_to: vec![],
            internet_message_id: Some("<m1@contoso.com>".into()),
            headers: vec![
                ("X-Mailer".into(), "Outlook\r\n 16".into()),
                ("Received".into(), "by mx".into()),
                ("x-".into(), "empty name".into()),
                ("x-bad name".into(), "v".into()),
            ],
            importance: Some(Importance::High),
            categories: vec!["Red".into()],
            is_read: false,
            received: Some(chrono::Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap()),
            sent: Some(chrono::Utc.with_ymd_and_hms(2024, 5, 6, 7, 0, 0).unwrap()),
            attachments: vec![NewAttachment {
                name: "a.png".into(),
                content_type: "image/png".into(),
                content_id: Some("img1".into()),
                inline: true,
                bytes: Bytes::from_static(b"\x89PNG"),
            }],
        }
    }

    fn property<'a>(body: &'a Value, id: &str) -> Option<&'a str> {
        body["singleValueExtendedProperties"]
            .as_array()?
            .iter()
            .find(|p| p["id"] == id)?["value"]
            .as_str()
    }

    #[test]
    fn a_create_carries_flags_dates_key_and_what_graph_may_set() {
        let body = create_body(&message(), true, true);
        assert_eq!(property(&body, "Integer 0x0E07"), Some("0"));
        assert_eq!(
            property(&body, "SystemTime 0x0E06"),
            Some("2024-05-06T07:08:09Z")
        );
        assert_eq!(
            property(&body, "SystemTime 0x0039"),
            Some("2024-05-06T07:00:00Z")
        );
        assert_eq!(property(&body, RESTORE_KEY_PROPERTY), Some("A1"));
        assert_eq!(body["subject"], "Größe");
        assert_eq!(
            body["body"],
            json!({"contentType": "html", "content": "<p>hi</p>"})
        );
        assert_eq!(
            body["from"],
            json!({"emailAddress": {"name": "Adele", "address": "adele@contoso.com"}})
        );
        assert!(body.get("sender").is_none() && body.get("ccRecipients").is_none());
        assert_eq!(
            body["toRecipients"],
            json!([{"emailAddress": {"address": "b@contoso.com"}}])
        );
        assert_eq!(body["bccRecipients"][0]["emailAddress"]["name"], "Hidden");
        assert_eq!(body["internetMessageId"], "<m1@contoso.com>");
        assert_eq!(body["importance"], "high");
        assert_eq!(body["categories"], json!(["Red"]));
        // Only x- headers, on one line each.
        assert_eq!(
            body["internetMessageHeaders"],
            json!([{"name": "X-Mailer", "value": "Outlook 16"}])
        );
        assert_eq!(
            body["attachments"],
            json!([{
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": "a.png", "contentType": "image/png", "contentBytes": "iVBORw==",
                "isInline": true, "contentId": "img1",
            }])
        );
        assert!(body.get("isDraft").is_none());
    }

    #[test]
    fn a_create_without_its_attachments_is_marked_incomplete() {
        let mut m = message();
        m.is_read = true;
        m.received = None;
        let body = create_body(&m, false, false);
        assert!(body.get("attachments").is_none());
        assert_eq!(property(&body, RESTORE_KEY_PROPERTY), Some("A1#incomplete"));
        assert_eq!(property(&body, "Integer 0x0E07"), Some("1"));
        assert_eq!(property(&body, "SystemTime 0x0E06"), None);
        assert_eq!(
            key_patch(&m.key, true),
            json!({"singleValueExtendedProperties": [{"id": RESTORE_KEY_PROPERTY, "value": "A1"}]})
        );
    }

    #[test]
    fn upload_sessions_describe_the_attachment() {
        let a = &message().attachments[0];
        assert_eq!(
            upload_session(a),
            json!({"AttachmentItem": {
                "attachmentType": "file", "name": "a.png", "size": 4,
                "contentType": "image/png", "isInline": true, "contentId": "img1",
            }})
        );
    }

    #[test]
    fn odata_literals_double_quotes() {
        for (name, literal) in [
            ("Inbox", "'Inbox'"),
            ("O'Brien's", "'O''Brien''s'"),
            ("''", "''''''"),
        ] {
            assert_eq!(odata_string(name), literal);
        }
    }

    #[test]
    fn message_ids_come_from_the_header_block_only() {
        for (mime, id) in [
            (
                &b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nbody"[..],
                Some("<a@b>"),
            ),
            (
                b"message-id:\r\n <long@example>\r\n\r\n",
                Some("<long@example>"),
            ),
            (b"Subject: x\n\nMessage-ID: <not@header>", None),
            (b"", None),
            (b"Message-ID:   \r\n\r\n", None),
        ] {
            assert_eq!(mime_message_id(mime).as_deref(), id, "{mime:?}");
        }
    }

    #[test]
    fn key_property_ids_compare_loosely() {
        assert!(is_restore_key_property(RESTORE_KEY_PROPERTY));
        assert!(is_restore_key_property(
            "string  {6F3B2A1E-5C7D-4E8F-9A0B-1C2D3E4F5A6B} name archivemessageid"
        ));
        assert!(!is_restore_key_property("Integer 0x0E08"));
    }

    fn arb_recipient() -> impl Strategy<Value = Recipient> {
        (proptest::option::of(".{0,12}"), ".{0,20}")
            .prop_map(|(name, address)| Recipient { name, address })
    }

    proptest! {
        #[test]
        fn keys_round_trip(id in ".{0,40}", complete: bool) {
            prop_assume!(!id.is_empty() && !id.ends_with(INCOMPLETE_SUFFIX));
            let key = RestoreKey(id);
            prop_assert_eq!(decode_key(&key_value(&key, complete)), Some((key, complete)));
        }

        #[test]
        fn decoding_any_value_never_panics(value in ".{0,60}") {
            if let Some((key, complete)) = decode_key(&value) {
                prop_assert_eq!(key_value(&key, complete), value);
            }
        }

        #[test]
        fn any_message_makes_a_create_graph_can_read(
            subject in ".{0,30}",
            body in ".{0,200}",
            to in proptest::collection::vec(arb_recipient(), 0..4),
            headers in proptest::collection::vec((".{0,12}", ".{0,30}"), 0..4),
            categories in proptest::collection::vec(".{0,8}", 0..3),
            id in ".{1,20}",
            is_read: bool,
        ) {
            let mut m = message();
            m.subject = subject.clone();
            m.body = body.clone();
            m.to = to.clone();
            m.headers = headers;
            m.categories = categories;
            m.key = RestoreKey(id.clone());
            m.is_read = is_read;
            let value = create_body(&m, true, true);
            let text = serde_json::to_string(&value).unwrap();
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back["subject"], &json!(subject));
            prop_assert_eq!(&back["body"]["content"], &json!(body));
            prop_assert_eq!(back["toRecipients"].as_array().map_or(0, Vec::len), to.len());
            prop_assert_eq!(property(&back, RESTORE_KEY_PROPERTY), Some(id.as_str()));
            prop_assert_eq!(property(&back, "Integer 0x0E07"), Some(if is_read { "1" } else { "0" }));
            for h in back["internetMessageHeaders"].as_array().into_iter().flatten() {
                let name = h["name"].as_str().unwrap();
                let value = h["value"].as_str().unwrap();
                prop_assert!(name.to_ascii_lowercase().starts_with("x-"));
                prop_assert!(!value.contains(['\r', '\n']));
            }
        }

        #[test]
        fn message_id_parsing_never_panics(mime in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = mime_message_id(&mime);
        }
    }
}
