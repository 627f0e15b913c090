//! Messages: folder and mailbox listings (`$top`, `$skip`, `$select`, `$filter`, `$orderby`,
//! the size property by `$expand`), single messages, raw MIME (`$value`, streamed), DELETE,
//! `move` and `permanentDelete`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::folders::segment;
use super::query::{MessageClause, Query, graph_time, message_filter, message_orderby};
use super::wire::{self, MESSAGE_PROPERTIES, MessageView};
use super::{ApiError, Ctx, json_response, link_base};
use crate::state::AppState;
use crate::tenant::created::PropertyId;
use crate::tenant::{FolderKind, Mailbox, MessageRecord};

/// The extended properties a `$expand=singleValueExtendedProperties($filter=id eq '…' or …)`
/// asks for; `None` without `$expand` (and for a bare `singleValueExtendedProperties`, which
/// Graph answers without properties).
pub(crate) fn parse_expand(raw: Option<&str>) -> Result<Option<Vec<PropertyId>>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let refused = || {
        ApiError::bad_request(
            "BadRequest",
            format!("Parsing OData Select and Expand failed: unsupported $expand '{raw}'."),
        )
    };
    let trimmed = raw.trim();
    const NAV: &str = "singlevalueextendedproperties";
    if trimmed.eq_ignore_ascii_case(NAV) {
        return Ok(None);
    }
    if !trimmed
        .get(..NAV.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(NAV))
    {
        return Err(refused());
    }
    let inner = trimmed[NAV.len()..]
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(refused)?
        .trim();
    let filter = inner
        .get(..8)
        .filter(|p| p.eq_ignore_ascii_case("$filter="))
        .map(|_| &inner[8..])
        .ok_or_else(refused)?;
    let mut ids = Vec::new();
    for clause in split_or(filter) {
        let (property, rest) = clause.trim().split_once(' ').ok_or_else(refused)?;
        let (op, value) = rest.trim().split_once(' ').ok_or_else(refused)?;
        if !property.eq_ignore_ascii_case("id") || !op.eq_ignore_ascii_case("eq") {
            return Err(refused());
        }
        let value = value
            .trim()
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .ok_or_else(refused)?
            .replace("''", "'");
        ids.push(PropertyId::parse(&value).ok_or_else(|| invalid_property(&value))?);
    }
    Ok(Some(ids))
}

/// 400 for an extended property id Graph cannot read.
pub(crate) fn invalid_property(id: &str) -> ApiError {
    ApiError::bad_request(
        "ErrorInvalidProperty",
        format!("The extended property id '{id}' is not valid."),
    )
}

/// Splits a filter at ` or ` outside quotes (case-insensitive).
fn split_or(filter: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let words: Vec<&str> = filter.split(' ').collect();
    for word in words {
        if !quoted && word.eq_ignore_ascii_case("or") {
            parts.push(String::new());
            continue;
        }
        quoted ^= word.matches('\'').count() % 2 == 1;
        let current = parts.last_mut().map(std::mem::take).unwrap_or_default();
        let joined = if current.is_empty() {
            word.to_owned()
        } else {
            format!("{current} {word}")
        };
        if let Some(last) = parts.last_mut() {
            *last = joined;
        }
    }
    parts
}

/// The values of the asked-for extended properties a message has: the tagged ones Exchange
/// computes (size, flags, delivery and submit times) and the custom ones stored on it.
fn extended_values(mailbox: &Mailbox, record: &MessageRecord, ids: &[PropertyId]) -> Vec<Value> {
    let mut values = Vec::new();
    for id in ids {
        let canonical = id.canonical();
        let value = match id {
            PropertyId::Tagged { tag: 0x0E08, .. } => {
                Some(mailbox.mime_source(record).len().to_string())
            }
            PropertyId::Tagged { tag: 0x0E07, .. } => Some(record.flags().to_string()),
            PropertyId::Tagged { tag: 0x0E06, .. } => Some(graph_time(record.received)),
            PropertyId::Tagged { tag: 0x0039, .. } => {
                Some(graph_time(mailbox.summary(record).sent))
            }
            _ => record
                .created()
                .and_then(|c| c.property(&canonical))
                .map(str::to_owned),
        };
        if let Some(value) = value
            && !values.iter().any(|v: &Value| v["id"] == json!(canonical))
        {
            values.push(json!({"id": canonical, "value": value}));
        }
    }
    values
}

/// JSON of one message as the caller asked for it.
pub(crate) fn message_json(
    mailbox: &Mailbox,
    record: &MessageRecord,
    immutable: bool,
    select: Option<&[&str]>,
    expand: Option<&[PropertyId]>,
    delta: bool,
) -> Value {
    let summary = mailbox.summary(record);
    let extended = expand
        .map(|ids| extended_values(mailbox, record, ids))
        .filter(|values| !values.is_empty());
    let wants = |p: &str| select.is_some_and(|s| s.contains(&p));
    let preview = wants("bodyPreview").then(|| mailbox.preview(record));
    let body = (wants("body") || wants("uniqueBody")).then(|| mailbox.body_text(record));
    let view = MessageView {
        record,
        summary: &summary,
        folder_id: &mailbox.folders[record.folder].id,
        immutable,
        extended,
        preview,
        body,
    };
    wire::message(&view, select, delta)
}

fn clause_holds(record: &MessageRecord, clauses: &[MessageClause]) -> bool {
    clauses.iter().all(|c| match c {
        MessageClause::Received(op, t) => op.holds(&record.received, t),
        MessageClause::IsRead(v) => record.is_read == *v,
    })
}

/// `GET /users/{u}/mailFolders/{id}/messages`.
pub(crate) async fn list_folder(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, folder)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond(list(&state, &ctx, &user, Some(&folder), raw.as_deref()))
}

/// `GET /users/{u}/messages`.
pub(crate) async fn list_mailbox(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path(user): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond(list(&state, &ctx, &user, None, raw.as_deref()))
}

fn list(
    state: &AppState,
    ctx: &Ctx,
    user: &str,
    folder: Option<&str>,
    raw: Option<&str>,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw)?;
    query.only(&[
        "$top", "$skip", "$select", "$filter", "$orderby", "$expand", "$count",
    ])?;
    let default_top = ctx.max_page_size().unwrap_or(10).clamp(1, 1000);
    let top = query.top(default_top, 1000, "ErrorInvalidParameter")?;
    let skip = query.skip()?;
    let select = query.select(MESSAGE_PROPERTIES, "Microsoft.OutlookServices.Message")?;
    let expand = parse_expand(query.get("$expand"))?;
    let clauses = match query.get("$filter") {
        Some(f) => message_filter(f, false)?,
        None => Vec::new(),
    };
    let descending = match query.get("$orderby") {
        Some(o) => message_orderby(o, &clauses)?,
        None => true,
    };
    let immutable = ctx.immutable_ids();
    let tenant = state.tenant.read();
    let mailbox = tenant
        .mailbox_checked(user)
        .map_err(|a| ApiError::mailbox(a, user))?;
    let mut items: Vec<(usize, &MessageRecord)> = match folder {
        Some(id) => {
            let index = super::archive::folder_index(mailbox, id)?;
            super::archive::redirect_folder(state, ctx, &tenant, mailbox, index)?;
            mailbox.folder_items(index)
        }
        None => {
            let visible = mailbox.visible_folders();
            mailbox.live().filter(|(_, m)| visible[m.folder]).collect()
        }
    };
    items.retain(|(_, m)| clause_holds(m, &clauses));
    items.sort_by_key(|(slot, m)| (m.received, *slot));
    if descending {
        items.reverse();
    }
    let total = items.len();
    let page: Vec<Value> = items
        .iter()
        .skip(skip)
        .take(top)
        .map(|(_, m)| {
            message_json(
                mailbox,
                m,
                immutable,
                select.as_deref(),
                expand.as_deref(),
                false,
            )
        })
        .collect();
    let base = link_base(state, ctx);
    let path = match folder {
        Some(id) => format!(
            "users/{}/mailFolders/{}/messages",
            segment(user),
            segment(id)
        ),
        None => format!("users/{}/messages", segment(user)),
    };
    let mut body =
        json!({"@odata.context": format!("{base}/$metadata#users('{}')/messages", segment(user))});
    if query
        .get("$count")
        .is_some_and(|c| c.eq_ignore_ascii_case("true"))
    {
        body["@odata.count"] = json!(total);
    }
    body["value"] = Value::Array(page);
    if skip + top < total {
        let rest = query.encode_without(&["$skip", "skip"], &[("$skip", (skip + top).to_string())]);
        body["@odata.nextLink"] = json!(format!("{base}/{path}?{rest}"));
    }
    let mut response = json_response(StatusCode::OK, &body);
    mark_immutable(&mut response, immutable);
    Ok(response)
}

fn mark_immutable(response: &mut Response, immutable: bool) {
    if immutable {
        response.headers_mut().insert(
            "preference-applied",
            header::HeaderValue::from_static("IdType=\"ImmutableId\""),
        );
    }
}

fn get(
    state: &AppState,
    ctx: &Ctx,
    user: &str,
    folder: Option<&str>,
    id: &str,
    raw: Option<&str>,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw)?;
    query.only(&["$select", "$expand"])?;
    let select = query.select(MESSAGE_PROPERTIES, "Microsoft.OutlookServices.Message")?;
    let expand = parse_expand(query.get("$expand"))?;
    let immutable = ctx.immutable_ids();
    let tenant = state.tenant.read();
    let mailbox = tenant
        .mailbox_checked(user)
        .map_err(|a| ApiError::mailbox(a, user))?;
    if let Some(folder) = folder {
        let index = super::archive::folder_index(mailbox, folder)?;
        super::archive::redirect_folder(state, ctx, &tenant, mailbox, index)?;
    }
    let record = mailbox
        .message(id)
        .ok_or_else(|| super::archive::missing_item(state, ctx, &tenant, mailbox, id))?;
    let mut body = message_json(
        mailbox,
        record,
        immutable,
        select.as_deref(),
        expand.as_deref(),
        false,
    );
    body["@odata.context"] = json!(format!(
        "{}/$metadata#users('{}')/messages/$entity",
        link_base(state, ctx),
        segment(user)
    ));
    let mut response = json_response(StatusCode::OK, &body);
    mark_immutable(&mut response, immutable);
    Ok(response)
}

/// `GET /users/{u}/messages/{id}`.
pub(crate) async fn get_one(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond(get(&state, &ctx, &user, None, &id, raw.as_deref()))
}

/// `GET /users/{u}/mailFolders/{f}/messages/{id}`.
pub(crate) async fn get_in_folder(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, folder, id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond(get(&state, &ctx, &user, Some(&folder), &id, raw.as_deref()))
}

fn mime(
    state: &AppState,
    ctx: &Ctx,
    user: &str,
    folder: Option<&str>,
    id: &str,
) -> Result<Response, ApiError> {
    let source = {
        let tenant = state.tenant.read();
        let mailbox = tenant
            .mailbox_checked(user)
            .map_err(|a| ApiError::mailbox(a, user))?;
        if let Some(folder) = folder {
            let index = super::archive::folder_index(mailbox, folder)?;
            super::archive::redirect_folder(state, ctx, &tenant, mailbox, index)?;
        }
        let record = mailbox
            .message(id)
            .ok_or_else(|| super::archive::missing_item(state, ctx, &tenant, mailbox, id))?;
        if record.unconvertible {
            return Err(unconvertible());
        }
        mailbox.mime_source(record)
    };
    let len = source.len();
    let chunks = source.stream().map(Ok::<Bytes, std::io::Error>);
    let mut response = Response::new(Body::from_stream(futures::stream::iter(chunks)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    Ok(response)
}

/// The error `$value` answers, every time, for an item Exchange cannot convert to MIME. The
/// message text is what Graph sends; its status and code are not documented anywhere: 500
/// `ErrorInternalServerError` is the emulator's choice (a client must not count on the status,
/// only on the failure repeating).
fn unconvertible() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ErrorInternalServerError",
        "Text does not support structured data.",
    )
}

/// `GET /users/{u}/messages/{id}/$value`: the raw RFC 822 bytes, streamed.
pub(crate) async fn value(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, id)): Path<(String, String)>,
) -> Response {
    ctx.respond(mime(&state, &ctx, &user, None, &id))
}

/// `GET /users/{u}/mailFolders/{f}/messages/{id}/$value`.
pub(crate) async fn value_in_folder(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, folder, id)): Path<(String, String, String)>,
) -> Response {
    ctx.respond(mime(&state, &ctx, &user, Some(&folder), &id))
}

/// `DELETE /users/{u}/messages/{id}`: to Recoverable Items (Deletions).
pub(crate) async fn delete_one(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, id)): Path<(String, String)>,
) -> Response {
    ctx.respond((|| {
        let mut tenant = state.tenant.write();
        let mailbox = tenant
            .mailbox_access_mut(&user)
            .map_err(|a| ApiError::mailbox(a, &user))?;
        mailbox
            .soft_delete(&id)
            .ok_or_else(ApiError::item_not_found)?;
        Ok(empty(StatusCode::NO_CONTENT))
    })())
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// `POST /users/{u}/messages/{id}/move` `{"destinationId": ...}`: 201 with the moved message.
pub(crate) async fn move_one(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    ctx.respond((|| {
        let request: Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(
                "ErrorInvalidRequest",
                format!("Cannot read the request body: {e}"),
            )
        })?;
        let destination = request
            .get("destinationId")
            .or_else(|| request.get("DestinationId"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "ErrorInvalidParameter",
                    "The parameter 'destinationId' is missing.",
                )
            })?
            .to_owned();
        let immutable = ctx.immutable_ids();
        let mut tenant = state.tenant.write();
        let mailbox = tenant
            .mailbox_access_mut(&user)
            .map_err(|a| ApiError::mailbox(a, &user))?;
        mailbox.slot(&id).ok_or_else(ApiError::item_not_found)?;
        let target = super::archive::folder_index(mailbox, &destination)?;
        if mailbox.folders[target].kind != FolderKind::Mail {
            return Err(ApiError::bad_request(
                "ErrorInvalidOperation",
                "Items cannot be moved into a search folder or a root folder.",
            ));
        }
        let slot = mailbox
            .move_message(&id, target)
            .ok_or_else(ApiError::item_not_found)?;
        let mailbox = &*mailbox;
        let record = mailbox
            .messages
            .get(slot)
            .and_then(Option::as_ref)
            .ok_or_else(ApiError::item_not_found)?;
        let mut body = message_json(mailbox, record, immutable, None, None, false);
        body["@odata.context"] = json!(format!(
            "{}/$metadata#users('{}')/messages/$entity",
            link_base(&state, &ctx),
            segment(&user)
        ));
        let mut response = json_response(StatusCode::CREATED, &body);
        mark_immutable(&mut response, immutable);
        Ok(response)
    })())
}

/// `POST /users/{u}/messages/{id}/permanentDelete`: to Recoverable Items/Purges (gone for good
/// when the mailbox has no Purges folder).
pub(crate) async fn permanent_delete(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, id)): Path<(String, String)>,
) -> Response {
    ctx.respond((|| {
        let mut tenant = state.tenant.write();
        let mailbox = tenant
            .mailbox_access_mut(&user)
            .map_err(|a| ApiError::mailbox(a, &user))?;
        mailbox
            .hard_delete(&id)
            .ok_or_else(ApiError::item_not_found)?;
        Ok(empty(StatusCode::NO_CONTENT))
    })())
}
