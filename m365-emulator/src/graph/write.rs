//! The write side of mail (restore): message creates (JSON and MIME), PATCH, attachments in one
//! request, and folder creates.
//!
//! A JSON create honours `singleValueExtendedProperties` as Exchange does: `Integer 0x0E07`
//! (message flags: without it the item is a draft), `SystemTime 0x0E06` (received) and
//! `SystemTime 0x0039` (sent) at creation only; custom named properties are stored, served back
//! by `$expand` and may be PATCHed later. A MIME create (`Content-Type: text/plain`, base64
//! body) always lands as a draft. Every write needs Mail.ReadWrite (the permission gate), counts
//! against the mailbox's throttling like a read, and its body is capped at 4 MB.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::folders::{all_counts, folder_json, segment};
use super::messages::{invalid_property, message_json};
use super::query::graph_time;
use super::wire::MESSAGE_DEFAULT;
use super::{ApiError, Ctx, json_response, link_base};
use crate::state::AppState;
use crate::tenant::created::{
    BodyKind, CreatedAttachment, CreatedMessage, Importance, Lookup, MSGFLAG_READ, MSGFLAG_UNSENT,
    Person, PropertyId,
};
use crate::tenant::mime::render;
use crate::tenant::{FolderKind, Mailbox, exchange_id};

/// Largest request body Graph takes (4 MB).
pub(crate) const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest attachment one `POST …/attachments` takes (3 MB); larger ones need an upload session.
pub(crate) const MAX_INLINE_ATTACHMENT_BYTES: usize = 3 * 1024 * 1024;

/// 413 for a body over the limit. Graph documents the status (413 Request Entity Too Large)
/// but not the error code; `ErrorRequestEntityTooLarge` is the emulator's choice.
pub(crate) fn too_large(what: &str, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "ErrorRequestEntityTooLarge",
        format!("The {what} exceeds the maximum size of {limit} bytes."),
    )
}

/// Reads a request body of at most 4 MB (413 otherwise).
pub(crate) async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_REQUEST_BYTES)
        .await
        .map_err(|_| too_large("request body", MAX_REQUEST_BYTES))
}

fn invalid_request(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("ErrorInvalidRequest", message)
}

/// A property of a JSON object, names compared case-insensitively (Graph is lenient there).
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn text_field(object: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match field(object, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid_request(format!(
            "The property '{name}' must be a string."
        ))),
    }
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid_request("The request body must be a JSON object.")),
        Err(e) => Err(invalid_request(format!(
            "Cannot read the request body: {e}"
        ))),
    }
}

/// Properties a message create or PATCH may carry besides annotations.
const WRITABLE: &[&str] = &[
    "subject",
    "body",
    "from",
    "sender",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "internetMessageId",
    "internetMessageHeaders",
    "importance",
    "categories",
    "isRead",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "inferenceClassification",
    "flag",
    "singleValueExtendedProperties",
    "attachments",
    // Read-only or not modelled: accepted and ignored.
    "id",
    "isDraft",
    "hasAttachments",
    "createdDateTime",
    "lastModifiedDateTime",
    "receivedDateTime",
    "sentDateTime",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "changeKey",
    "webLink",
    "bodyPreview",
    "uniqueBody",
    "multiValueExtendedProperties",
    "extensions",
];

fn check_known(object: &Map<String, Value>) -> Result<(), ApiError> {
    for key in object.keys() {
        if key.starts_with('@') || key.contains("@odata") {
            continue;
        }
        if !WRITABLE.iter().any(|w| w.eq_ignore_ascii_case(key)) {
            return Err(ApiError::bad_request(
                "RequestBroker--ParseUri",
                format!(
                    "The property '{key}' does not exist on type 'Microsoft.OutlookServices.Message'."
                ),
            ));
        }
    }
    Ok(())
}

fn person(value: &Value, property: &str) -> Result<Person, ApiError> {
    let address = value
        .get("emailAddress")
        .or_else(|| value.get("EmailAddress"))
        .and_then(Value::as_object)
        .ok_or_else(|| {
            ApiError::bad_request(
                "ErrorInvalidRecipients",
                format!("A recipient in '{property}' has no emailAddress."),
            )
        })?;
    let addr = text_field(address, "address")?.unwrap_or_default();
    if addr.trim().is_empty() {
        return Err(ApiError::bad_request(
            "ErrorInvalidRecipients",
            format!("A recipient in '{property}' has no address."),
        ));
    }
    Ok((text_field(address, "name")?.unwrap_or_default(), addr))
}

fn people(object: &Map<String, Value>, property: &str) -> Result<Option<Vec<Person>>, ApiError> {
    match field(object, property) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| person(v, property))
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(invalid_request(format!(
            "The property '{property}' must be an array."
        ))),
    }
}

fn categories(object: &Map<String, Value>) -> Result<Option<Vec<String>>, ApiError> {
    match field(object, "categories") {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid_request("'categories' must hold strings."))
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(invalid_request(
            "The property 'categories' must be an array.",
        )),
    }
}

fn headers(object: &Map<String, Value>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(value) = field(object, "internetMessageHeaders") else {
        return Ok(Vec::new());
    };
    let items = value.as_array().ok_or_else(|| {
        invalid_request("The property 'internetMessageHeaders' must be an array.")
    })?;
    let mut out = Vec::new();
    for item in items {
        let item = item
            .as_object()
            .ok_or_else(|| invalid_request("An internet message header must be an object."))?;
        let name = text_field(item, "name")?.unwrap_or_default();
        if !(name.starts_with("x-") || name.starts_with("X-")) {
            return Err(ApiError::bad_request(
                "InvalidInternetMessageHeader",
                format!(
                    "The internet message header name '{name}' should start with 'x-' or 'X-'."
                ),
            ));
        }
        out.push((name, text_field(item, "value")?.unwrap_or_default()));
    }
    Ok(out)
}

fn importance(object: &Map<String, Value>) -> Result<Option<Importance>, ApiError> {
    text_field(object, "importance")?
        .map(|text| {
            Importance::parse(&text).ok_or_else(|| {
                invalid_request(format!(
                    "'{text}' is not a valid importance (low, normal, high)."
                ))
            })
        })
        .transpose()
}

fn body_field(object: &Map<String, Value>) -> Result<Option<(BodyKind, String)>, ApiError> {
    let Some(value) = field(object, "body") else {
        return Ok(None);
    };
    let body = value
        .as_object()
        .ok_or_else(|| invalid_request("The property 'body' must be an object."))?;
    let kind = match text_field(body, "contentType")?.map(|k| k.to_ascii_lowercase()) {
        None => BodyKind::Text,
        Some(k) if k == "text" => BodyKind::Text,
        Some(k) if k == "html" => BodyKind::Html,
        Some(k) => {
            return Err(invalid_request(format!(
                "'{k}' is not a valid body contentType (text, html)."
            )));
        }
    };
    Ok(Some((
        kind,
        text_field(body, "content")?.unwrap_or_default(),
    )))
}

fn bool_field(object: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match field(object, name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid_request(format!(
            "The property '{name}' must be true or false."
        ))),
    }
}

fn bad_value(id: &str, value: &str) -> ApiError {
    ApiError::bad_request(
        "ErrorInvalidExtendedPropertyValue",
        format!("The value '{value}' is not valid for the extended property '{id}'."),
    )
}

/// What a create's or PATCH's `singleValueExtendedProperties` said.
#[derive(Debug, Default)]
struct Extended {
    flags: Option<u32>,
    received: Option<i64>,
    sent: Option<i64>,
    named: Vec<(String, String)>,
}

fn system_time(id: &str, value: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.timestamp())
        .map_err(|_| bad_value(id, value))
}

fn extended(object: &Map<String, Value>) -> Result<Extended, ApiError> {
    let mut out = Extended::default();
    let Some(value) = field(object, "singleValueExtendedProperties") else {
        return Ok(out);
    };
    let items = value.as_array().ok_or_else(|| {
        invalid_request("The property 'singleValueExtendedProperties' must be an array.")
    })?;
    for item in items {
        let item = item
            .as_object()
            .ok_or_else(|| invalid_request("An extended property must be an object."))?;
        let id_text = text_field(item, "id")?.unwrap_or_default();
        let id = PropertyId::parse(&id_text).ok_or_else(|| invalid_property(&id_text))?;
        let value = text_field(item, "value")?.unwrap_or_default();
        match &id {
            PropertyId::Tagged { tag: 0x0E07, .. } => {
                out.flags = Some(
                    value
                        .trim()
                        .parse::<u32>()
                        .map_err(|_| bad_value(&id_text, &value))?,
                );
            }
            PropertyId::Tagged { tag: 0x0E06, .. } => {
                out.received = Some(system_time(&id_text, &value)?);
            }
            PropertyId::Tagged { tag: 0x0039, .. } => {
                out.sent = Some(system_time(&id_text, &value)?);
            }
            // Other tagged properties are accepted and not modelled by the emulator.
            PropertyId::Tagged { .. } => {}
            PropertyId::Named { .. } => out.named.push((id.canonical(), value)),
        }
    }
    Ok(out)
}

fn content_bytes(text: &str) -> Result<Bytes, ApiError> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map(Bytes::from)
        .map_err(|_| {
            // Graph's OData reader refuses a binary value that is not base64; its exact code is
            // not documented.
            invalid_request("The property 'contentBytes' is not valid base64.")
        })
}

/// A `fileAttachment` object (its id is assigned when stored).
fn file_attachment(object: &Map<String, Value>) -> Result<CreatedAttachment, ApiError> {
    let kind = text_field(object, "@odata.type")?.unwrap_or_default();
    let kind = kind.trim_start_matches('#').to_ascii_lowercase();
    if kind != "microsoft.graph.fileattachment" {
        return Err(invalid_request(format!(
            "The emulator takes only '#microsoft.graph.fileAttachment' attachments, got '{kind}'."
        )));
    }
    let bytes = content_bytes(&text_field(object, "contentBytes")?.unwrap_or_default())?;
    Ok(CreatedAttachment {
        id: String::new(),
        name: text_field(object, "name")?.unwrap_or_else(|| "attachment".to_owned()),
        content_type: text_field(object, "contentType")?
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
        content_id: text_field(object, "contentId")?
            .map(|c| c.trim_start_matches('<').trim_end_matches('>').to_owned()),
        inline: bool_field(object, "isInline")?.unwrap_or(false),
        bytes,
    })
}

fn attachments(object: &Map<String, Value>) -> Result<Vec<CreatedAttachment>, ApiError> {
    let Some(value) = field(object, "attachments") else {
        return Ok(Vec::new());
    };
    value
        .as_array()
        .ok_or_else(|| invalid_request("The property 'attachments' must be an array."))?
        .iter()
        .map(|item| {
            item.as_object()
                .ok_or_else(|| invalid_request("An attachment must be an object."))
                .and_then(file_attachment)
        })
        .collect()
}

/// A message id Exchange would stamp on an item created without one.
fn new_message_id(mailbox: &Mailbox) -> String {
    let id = exchange_id("", &[mailbox.key, 0x1E1D, mailbox.serial + 1]);
    let token: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    format!("<{token}@emulator.prod.outlook.com>")
}

/// A message as a JSON create describes it: (message, received, isRead).
fn from_json(
    object: &Map<String, Value>,
    mailbox: &Mailbox,
    now: i64,
) -> Result<(CreatedMessage, i64, bool), ApiError> {
    check_known(object)?;
    let ext = extended(object)?;
    let (body_kind, body) = body_field(object)?.unwrap_or((BodyKind::Text, String::new()));
    let is_draft = ext.flags.is_none_or(|f| f & MSGFLAG_UNSENT != 0);
    let is_read = bool_field(object, "isRead")?
        .or(ext.flags.map(|f| f & MSGFLAG_READ != 0))
        .unwrap_or(true);
    let single = |name: &str| -> Result<Option<Person>, ApiError> {
        field(object, name).map(|v| person(v, name)).transpose()
    };
    let internet_message_id = match text_field(object, "internetMessageId")? {
        Some(id) if !id.trim().is_empty() => {
            let id = id.trim();
            if id.starts_with('<') {
                id.to_owned()
            } else {
                format!("<{id}>")
            }
        }
        _ => new_message_id(mailbox),
    };
    let message = CreatedMessage {
        subject: text_field(object, "subject")?.unwrap_or_default(),
        body_kind,
        body,
        from: single("from")?,
        sender: single("sender")?,
        to: people(object, "toRecipients")?.unwrap_or_default(),
        cc: people(object, "ccRecipients")?.unwrap_or_default(),
        bcc: people(object, "bccRecipients")?.unwrap_or_default(),
        reply_to: people(object, "replyTo")?.unwrap_or_default(),
        internet_message_id,
        headers: headers(object)?,
        importance: importance(object)?.unwrap_or(Importance::Normal),
        categories: categories(object)?.unwrap_or_default(),
        is_draft,
        sent: ext.sent.unwrap_or(now),
        created: now,
        extended: ext.named,
        attachments: attachments(object)?,
        mime: Bytes::new(),
    };
    Ok((message, ext.received.unwrap_or(now), is_read))
}

/// A message as a MIME create describes it (always a draft, received now).
fn from_mime(body: &[u8], mailbox: &Mailbox, now: i64) -> Result<CreatedMessage, ApiError> {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let mime = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|_| {
            ApiError::bad_request(
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            )
        })?;
    let parsed = render::parse(&mime);
    Ok(CreatedMessage {
        subject: parsed.subject,
        body_kind: if parsed.html {
            BodyKind::Html
        } else {
            BodyKind::Text
        },
        body: parsed.body,
        from: parsed.from,
        sender: parsed.sender,
        to: parsed.to,
        cc: parsed.cc,
        bcc: parsed.bcc,
        reply_to: parsed.reply_to,
        internet_message_id: parsed
            .internet_message_id
            .unwrap_or_else(|| new_message_id(mailbox)),
        headers: parsed.headers,
        importance: parsed.importance.unwrap_or(Importance::Normal),
        categories: parsed.categories,
        is_draft: true,
        sent: parsed.sent.unwrap_or(now),
        created: now,
        extended: Vec::new(),
        attachments: parsed
            .attachments
            .into_iter()
            .map(
                |(name, content_type, content_id, inline, bytes)| CreatedAttachment {
                    id: String::new(),
                    name,
                    content_type,
                    content_id,
                    inline,
                    bytes,
                },
            )
            .collect(),
        mime: Bytes::new(),
    })
}

fn message_response(
    state: &AppState,
    ctx: &Ctx,
    user: &str,
    mailbox: &Mailbox,
    id: &str,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let record = mailbox.message(id).ok_or_else(ApiError::item_not_found)?;
    let immutable = ctx.immutable_ids();
    // A create or PATCH answers with the default properties plus the body and its preview.
    let answered: Vec<&str> = MESSAGE_DEFAULT
        .iter()
        .copied()
        .chain(["bodyPreview", "body"])
        .collect();
    let mut body = message_json(mailbox, record, immutable, Some(&answered), None, false);
    body["@odata.context"] = json!(format!(
        "{}/$metadata#users('{}')/messages/$entity",
        link_base(state, ctx),
        segment(user)
    ));
    let mut response = json_response(status, &body);
    if immutable {
        response.headers_mut().insert(
            "preference-applied",
            header::HeaderValue::from_static("IdType=\"ImmutableId\""),
        );
    }
    Ok(response)
}

fn is_mime(ctx: &Ctx) -> bool {
    ctx.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("text/plain"))
}

async fn create(
    state: &AppState,
    ctx: &Ctx,
    user: &str,
    folder: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body).await?;
    super::upload::charge(state, ctx, user, bytes.len())?;
    let now = chrono::Utc::now().timestamp();
    let mut tenant = state.tenant.write();
    let mailbox = tenant
        .mailbox_access_mut(user)
        .map_err(|a| ApiError::mailbox(a, user))?;
    let index = super::archive::folder_index(mailbox, folder)?;
    if mailbox.folders[index].kind == FolderKind::SearchFlagged {
        return Err(ApiError::bad_request(
            "ErrorInvalidOperation",
            "Items cannot be created in a search folder.",
        ));
    }
    let (mut message, received, is_read) = if is_mime(ctx) {
        (from_mime(&bytes, mailbox, now)?, now, true)
    } else {
        from_json(&json_object(&bytes)?, mailbox, now)?
    };
    for attachment in &mut message.attachments {
        attachment.id = mailbox.attachment_id();
    }
    let id = mailbox.create_message(index, received, is_read, message);
    message_response(state, ctx, user, mailbox, &id, StatusCode::CREATED)
}

/// `POST /users/{u}/mailFolders/{f}/messages`: JSON or MIME create.
pub(crate) async fn create_in_folder(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, folder)): Path<(String, String)>,
    body: Body,
) -> Response {
    ctx.respond(create(&state, &ctx, &user, &folder, body).await)
}

/// `POST /users/{u}/messages`: JSON or MIME create in Drafts.
pub(crate) async fn create_in_drafts(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path(user): Path<String>,
    body: Body,
) -> Response {
    ctx.respond(create(&state, &ctx, &user, "drafts", body).await)
}

fn not_created() -> ApiError {
    // Graph changes any item; the emulator keeps delivered and generated mail as bytes and
    // changes only isRead and flag on them.
    ApiError::bad_request(
        "ErrorInvalidOperation",
        "The emulator changes only isRead and flag on messages not created through Graph.",
    )
}

fn lookup_error(lookup: Lookup) -> ApiError {
    match lookup {
        Lookup::Missing => ApiError::item_not_found(),
        Lookup::NotCreated => not_created(),
    }
}

/// Properties Graph lets a PATCH change only while the item is a draft.
const DRAFT_ONLY: &[&str] = &[
    "body",
    "from",
    "sender",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "internetMessageId",
    "internetMessageHeaders",
    "attachments",
];

async fn patch(
    state: &AppState,
    ctx: &Ctx,
    user: &str,
    id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body).await?;
    super::upload::charge(state, ctx, user, bytes.len())?;
    let object = json_object(&bytes)?;
    check_known(&object)?;
    let is_read = bool_field(&object, "isRead")?;
    let flagged = field(&object, "flag")
        .and_then(|f| f.get("flagStatus"))
        .map(|status| {
            status
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("flagged"))
        });
    let ext = extended(&object)?;
    let subject = text_field(&object, "subject")?;
    let new_importance = importance(&object)?;
    let new_categories = categories(&object)?;
    let draft_fields: Vec<&str> = DRAFT_ONLY
        .iter()
        .copied()
        .filter(|p| field(&object, p).is_some())
        .collect();
    let changes_content = subject.is_some()
        || new_importance.is_some()
        || new_categories.is_some()
        || !ext.named.is_empty()
        || !draft_fields.is_empty();
    let mut tenant = state.tenant.write();
    let mailbox = tenant
        .mailbox_access_mut(user)
        .map_err(|a| ApiError::mailbox(a, user))?;
    if changes_content {
        let record = mailbox.created_mut(id).map_err(lookup_error)?;
        let created = record.created_body_mut().ok_or_else(not_created)?;
        if !draft_fields.is_empty() && !created.is_draft {
            return Err(ApiError::bad_request(
                "ErrorInvalidPropertyUpdateSentMessage",
                format!(
                    "The property '{}' can be updated only on a draft.",
                    draft_fields[0]
                ),
            ));
        }
        if let Some(subject) = subject {
            created.subject = subject;
        }
        if let Some(importance) = new_importance {
            created.importance = importance;
        }
        if let Some(categories) = new_categories {
            created.categories = categories;
        }
        // The MAPI flags and the delivery and submit times count at creation only (Exchange
        // ignores them later); named properties change.
        for (property, value) in ext.named {
            created.set_property(property, value);
        }
        if let Some((kind, content)) = body_field(&object)? {
            created.body_kind = kind;
            created.body = content;
        }
        for (name, slot) in [
            ("toRecipients", &mut created.to),
            ("ccRecipients", &mut created.cc),
            ("bccRecipients", &mut created.bcc),
            ("replyTo", &mut created.reply_to),
        ] {
            if let Some(list) = people(&object, name)? {
                *slot = list;
            }
        }
        created.refresh();
    }
    let slot = mailbox.slot(id).ok_or_else(ApiError::item_not_found)?;
    let seq = mailbox.next_seq();
    let record = mailbox.messages[slot]
        .as_mut()
        .ok_or_else(ApiError::item_not_found)?;
    record.seq = seq;
    if let Some(read) = is_read {
        record.is_read = read;
    }
    if let Some(flagged) = flagged {
        record.flagged = flagged;
    }
    message_response(state, ctx, user, mailbox, id, StatusCode::OK)
}

/// `PATCH /users/{u}/messages/{id}`.
pub(crate) async fn patch_one(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, id)): Path<(String, String)>,
    body: Body,
) -> Response {
    ctx.respond(patch(&state, &ctx, &user, &id, body).await)
}

/// An attachment's JSON (`contentBytes` included, as Graph answers a create).
pub(crate) fn attachment_json(attachment: &CreatedAttachment, modified: i64) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "@odata.mediaContentType": attachment.content_type,
        "id": attachment.id,
        "lastModifiedDateTime": graph_time(modified),
        "name": attachment.name,
        "contentType": attachment.content_type,
        "size": attachment.bytes.len(),
        "isInline": attachment.inline,
        "contentId": attachment.content_id,
        "contentBytes": render::base64(&attachment.bytes),
    })
}

/// Adds an attachment to a created message; answers its id.
pub(crate) fn add_attachment(
    mailbox: &mut Mailbox,
    id: &str,
    mut attachment: CreatedAttachment,
) -> Result<String, ApiError> {
    let attachment_id = mailbox.attachment_id();
    attachment.id = attachment_id.clone();
    let record = mailbox.created_mut(id).map_err(lookup_error)?;
    let created = record.created_body_mut().ok_or_else(not_created)?;
    created.attachments.push(attachment);
    created.refresh();
    Ok(attachment_id)
}

async fn post_attachment(
    state: &AppState,
    ctx: &Ctx,
    user: &str,
    id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body).await?;
    super::upload::charge(state, ctx, user, bytes.len())?;
    let attachment = file_attachment(&json_object(&bytes)?)?;
    if attachment.bytes.len() > MAX_INLINE_ATTACHMENT_BYTES {
        return Err(too_large("attachment", MAX_INLINE_ATTACHMENT_BYTES));
    }
    let mut tenant = state.tenant.write();
    let mailbox = tenant
        .mailbox_access_mut(user)
        .map_err(|a| ApiError::mailbox(a, user))?;
    let attachment_id = add_attachment(mailbox, id, attachment)?;
    let record = mailbox.message(id).ok_or_else(ApiError::item_not_found)?;
    let created = record.created().ok_or_else(not_created)?;
    let stored = created
        .attachments
        .iter()
        .find(|a| a.id == attachment_id)
        .ok_or_else(ApiError::item_not_found)?;
    let mut body = attachment_json(stored, chrono::Utc::now().timestamp());
    body["@odata.context"] = json!(format!(
        "{}/$metadata#users('{}')/messages('{}')/attachments/$entity",
        link_base(state, ctx),
        segment(user),
        segment(id)
    ));
    Ok(json_response(StatusCode::CREATED, &body))
}

/// `POST /users/{u}/messages/{id}/attachments`: a file attachment up to 3 MB.
pub(crate) async fn create_attachment(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, id)): Path<(String, String)>,
    body: Body,
) -> Response {
    ctx.respond(post_attachment(&state, &ctx, &user, &id, body).await)
}

async fn create_folder(
    state: &AppState,
    ctx: &Ctx,
    user: &str,
    parent: Option<&str>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body).await?;
    let object = json_object(&bytes)?;
    let name = text_field(&object, "displayName")?.unwrap_or_default();
    if name.trim().is_empty() {
        return Err(ApiError::bad_request(
            "ErrorInvalidParameter",
            "The folder's displayName must not be empty.",
        ));
    }
    let hidden = bool_field(&object, "isHidden")?.unwrap_or(false);
    let mut tenant = state.tenant.write();
    let mailbox = tenant
        .mailbox_access_mut(user)
        .map_err(|a| ApiError::mailbox(a, user))?;
    let parent = match parent {
        Some(id) => super::archive::folder_index(mailbox, id)?,
        None => mailbox.root(),
    };
    if mailbox.folders[parent].kind == FolderKind::SearchFlagged {
        return Err(ApiError::bad_request(
            "ErrorInvalidOperation",
            "Folders cannot be created under a search folder.",
        ));
    }
    if mailbox
        .children(parent)
        .any(|c| mailbox.folders[c].display_name.eq_ignore_ascii_case(&name))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ErrorFolderExists",
            "A folder with the specified name already exists.",
        ));
    }
    let index = mailbox.add_folder(&name, Some(parent), None, hidden, FolderKind::Mail);
    mailbox.next_seq();
    let counts = all_counts(mailbox);
    let mut body = folder_json(mailbox, index, &counts, None);
    body["@odata.context"] = json!(format!(
        "{}/$metadata#users('{}')/mailFolders('{}')/childFolders/$entity",
        link_base(state, ctx),
        segment(user),
        segment(&mailbox.folders[parent].id)
    ));
    Ok(json_response(StatusCode::CREATED, &body))
}

/// `POST /users/{u}/mailFolders/{id}/childFolders {"displayName"}`: 201, or 409
/// `ErrorFolderExists` when the parent has a folder of that name (case-insensitive).
pub(crate) async fn create_child_folder(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, parent)): Path<(String, String)>,
    body: Body,
) -> Response {
    ctx.respond(create_folder(&state, &ctx, &user, Some(&parent), body).await)
}

/// `POST /users/{u}/mailFolders {"displayName"}`: a folder under msgfolderroot.
pub(crate) async fn create_root_folder(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path(user): Path<String>,
    body: Body,
) -> Response {
    ctx.respond(create_folder(&state, &ctx, &user, None, body).await)
}
