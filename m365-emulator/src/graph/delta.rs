//! Per-folder message delta (`/mailFolders/{id}/messages/delta` and `delta()`).
//!
//! A round lists the folder's changes between two mailbox sequence numbers: on the first round
//! every message, later ones the messages created, changed or moved in and, as
//! `@removed {"reason":"deleted"}`, those deleted or moved away. Pages are cut by
//! `Prefer: odata.maxpagesize` (else `$top`, else 10); now and then a page is empty or repeats the
//! previous page's last item, as Graph's do. All query options of the first call are baked into
//! the `$skiptoken`/`$deltatoken` links. An unknown or foreign token gets 410 `syncStateNotFound`.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::folders::segment;
use super::messages::{message_json, parse_expand};
use super::query::{MessageClause, Query, message_filter, message_orderby};
use super::wire::{MESSAGE_PROPERTIES, removed_message};
use super::{ApiError, Ctx, json_response, link_base, token};
use crate::state::AppState;
use crate::tenant::{FolderKind, model_mix};

/// Everything a delta link carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeltaCursor {
    k: String,
    /// Mailbox key and folder index the token belongs to.
    mailbox: u64,
    folder: usize,
    /// The mailbox's sync-state generation when the sync started.
    epoch: u64,
    /// This round covers changes with from < seq <= to (`to` fixed when a deltaLink is followed).
    from: u64,
    to: u64,
    /// Last sequence already returned in this round.
    after: u64,
    initial: bool,
    /// The first call's query options.
    query: Vec<(String, String)>,
    /// Pages served so far in this round (drives the empty pages and repeats).
    pages: u64,
    /// The previous page was an injected empty one.
    was_empty: bool,
}

/// `GET /users/{u}/mailFolders/{f}/messages/delta`.
pub(crate) async fn messages_delta(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, folder)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond(delta(&state, &ctx, &user, &folder, raw.as_deref()))
}

fn delta(
    state: &AppState,
    ctx: &Ctx,
    user: &str,
    folder: &str,
    raw: Option<&str>,
) -> Result<Response, ApiError> {
    let request_query = Query::parse(raw)?;
    let immutable = ctx.immutable_ids();
    let tenant = state.tenant.read();
    let seed = tenant.seed;
    let mailbox = tenant
        .mailbox_checked(user)
        .map_err(|a| ApiError::mailbox(a, user))?;
    let folder_index = super::archive::folder_index(mailbox, folder)?;
    super::archive::redirect_folder(state, ctx, &tenant, mailbox, folder_index)?;
    let base = link_base(state, ctx);
    let link = format!(
        "{base}/users/{}/mailFolders/{}/messages/delta",
        segment(user),
        segment(folder)
    );
    let gone = || {
        let mut error = ApiError::new(
            StatusCode::GONE,
            "syncStateNotFound",
            "The sync state generation is not found or has expired. Please restart the sync.",
        );
        error.location = Some(link.clone());
        error
    };
    let decode = |t: &str| -> Result<DeltaCursor, ApiError> {
        let cursor: DeltaCursor = token::decode(seed, t).ok_or_else(gone)?;
        if cursor.k != "mdelta"
            || cursor.mailbox != mailbox.key
            || cursor.folder != folder_index
            || cursor.epoch != mailbox.sync_epoch
            || cursor.from > mailbox.seq
        {
            return Err(gone());
        }
        Ok(cursor)
    };
    let mut cursor = if let Some(t) = request_query.get("$deltatoken") {
        let mut cursor = decode(t)?;
        cursor.to = mailbox.seq;
        cursor.after = cursor.from;
        cursor.pages = 0;
        cursor.was_empty = false;
        cursor
    } else if let Some(t) = request_query.get("$skiptoken") {
        decode(t)?
    } else {
        request_query.only(&["$select", "$top", "$expand", "$filter", "$orderby"])?;
        DeltaCursor {
            k: "mdelta".into(),
            mailbox: mailbox.key,
            folder: folder_index,
            epoch: mailbox.sync_epoch,
            from: 0,
            to: mailbox.seq,
            after: 0,
            initial: true,
            query: request_query.pairs().to_vec(),
            pages: 0,
            was_empty: false,
        }
    };
    let query = Query::from_pairs(cursor.query.clone());
    let select = query.select(MESSAGE_PROPERTIES, "Microsoft.OutlookServices.Message")?;
    let expand = parse_expand(query.get("$expand"))?;
    let clauses: Vec<MessageClause> = match query.get("$filter") {
        Some(f) => message_filter(f, true)?,
        None => Vec::new(),
    };
    if let Some(orderby) = query.get("$orderby")
        && !message_orderby(orderby, &clauses)?
    {
        return Err(ApiError::bad_request(
            "BadRequest",
            "Only '$orderby=receivedDateTime desc' is supported for delta.",
        ));
    }
    let baked_top = query.top(10, 1000, "ErrorInvalidParameter")?;
    let page_size = ctx.max_page_size().unwrap_or(baked_top).clamp(1, 1000);
    let change_type = query.get("changeType").map(str::to_ascii_lowercase);
    let want = |kind: &str| change_type.as_deref().is_none_or(|c| c == kind);

    // Events of the round after the cursor, in sequence order.
    enum Event<'a> {
        Present(&'a crate::tenant::MessageRecord),
        Removed(String),
    }
    let in_window =
        |seq: u64| seq > cursor.after && seq <= cursor.to && (cursor.initial || seq > cursor.from);
    let search = mailbox.folders[folder_index].kind == FolderKind::SearchFlagged;
    let mut events: Vec<(u64, Event<'_>)> = Vec::new();
    for (_, record) in mailbox.folder_items(folder_index) {
        let passes = clauses.iter().all(|c| match c {
            MessageClause::Received(op, t) => op.holds(&record.received, t),
            MessageClause::IsRead(v) => record.is_read == *v,
        });
        if in_window(record.seq) && passes && (want("created") || want("updated")) {
            events.push((record.seq, Event::Present(record)));
        }
    }
    if !cursor.initial && !search && want("deleted") {
        for removal in mailbox
            .removals
            .iter()
            .filter(|r| r.folder == folder_index && in_window(r.seq))
        {
            let id = if immutable {
                &removal.immutable_id
            } else {
                &removal.id
            };
            events.push((removal.seq, Event::Removed(id.clone())));
        }
    }
    events.sort_by_key(|(seq, _)| *seq);

    let roll = model_mix(
        seed ^ model_mix(
            mailbox.key ^ (folder_index as u64) << 32 ^ cursor.after ^ cursor.pages << 48,
        ),
    );
    let mut body = json!({"@odata.context": format!("{base}/$metadata#Collection(message)")});
    let remaining = events.len();
    // Now and then a page is empty even though more changes follow.
    if remaining > 0 && cursor.pages > 0 && !cursor.was_empty && roll.is_multiple_of(6) {
        cursor.pages += 1;
        cursor.was_empty = true;
        body["value"] = json!([]);
        body["@odata.nextLink"] = json!(format!(
            "{link}?$skiptoken={}",
            token::encode(seed, &cursor)
        ));
        return Ok(json_response(StatusCode::OK, &body));
    }
    let more = remaining > page_size;
    let page: Vec<&(u64, Event<'_>)> = events.iter().take(page_size).collect();
    let values: Vec<Value> = page
        .iter()
        .map(|(_, event)| match event {
            Event::Present(record) => message_json(
                mailbox,
                record,
                immutable,
                select.as_deref(),
                expand.as_deref(),
                true,
            ),
            Event::Removed(id) => removed_message(id),
        })
        .collect();
    if more {
        // Now and then the next page starts again with this page's last item.
        let repeat = page.len() >= 2 && (roll >> 8).is_multiple_of(4);
        let last = if repeat {
            page.len() - 2
        } else {
            page.len() - 1
        };
        cursor.after = page.get(last).map_or(cursor.after, |(seq, _)| *seq);
        cursor.pages += 1;
        cursor.was_empty = false;
        body["@odata.nextLink"] = json!(format!(
            "{link}?$skiptoken={}",
            token::encode(seed, &cursor)
        ));
    } else {
        let next = DeltaCursor {
            from: cursor.to,
            to: 0,
            after: 0,
            initial: false,
            pages: 0,
            was_empty: false,
            ..cursor.clone()
        };
        body["@odata.deltaLink"] =
            json!(format!("{link}?$deltatoken={}", token::encode(seed, &next)));
    }
    body["value"] = Value::Array(values);
    let mut response = json_response(StatusCode::OK, &body);
    if immutable {
        response.headers_mut().insert(
            "preference-applied",
            axum::http::HeaderValue::from_static("IdType=\"ImmutableId\""),
        );
    }
    Ok(response)
}
