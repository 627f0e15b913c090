//! `/users/{u}/mailFolders` (root children), `/mailFolders/{id}`, `/childFolders` and
//! `/mailFolders/delta`: the folder tree with Graph's paging (default 10), hidden folders only on
//! request, and search folders typed `mailSearchFolder`.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::query::Query;
use super::wire::{self, FOLDER_PROPERTIES, FolderCounts};
use super::{ApiError, Ctx, json_response, link_base, token};
use crate::state::AppState;
use crate::tenant::{FolderKind, Mailbox, exchange_id};

/// Path-segment encoding for users and ids in links (keeps `@`).
pub(crate) const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'@')
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'=');

/// Encodes a path segment.
pub(crate) fn segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
}

/// Counts of every folder in one pass.
pub(crate) fn all_counts(mailbox: &Mailbox) -> Vec<FolderCounts> {
    let mut counts = vec![FolderCounts::default(); mailbox.folders.len()];
    let visible = mailbox.visible_folders();
    let mut flagged = (0, 0);
    for (_, message) in mailbox.live() {
        if let Some(c) = counts.get_mut(message.folder) {
            c.total += 1;
            if !message.is_read {
                c.unread += 1;
            }
        }
        if message.flagged && visible.get(message.folder).copied().unwrap_or(false) {
            flagged.0 += 1;
            if !message.is_read {
                flagged.1 += 1;
            }
        }
    }
    for (index, folder) in mailbox.folders.iter().enumerate() {
        if let Some(parent) = folder.parent
            && let Some(c) = counts.get_mut(parent)
        {
            c.children += 1;
        }
        if folder.kind == FolderKind::SearchFlagged {
            counts[index].total = flagged.0;
            counts[index].unread = flagged.1;
        }
    }
    counts
}

/// The `parentFolderId` of a folder.
pub(crate) fn parent_id(mailbox: &Mailbox, index: usize) -> String {
    match mailbox.folders[index].parent {
        Some(parent) => mailbox.folders[parent].id.clone(),
        None => exchange_id("AAMkAD", &[mailbox.key, 0xF0, u64::MAX]),
    }
}

/// One folder's JSON.
pub(crate) fn folder_json(
    mailbox: &Mailbox,
    index: usize,
    counts: &[FolderCounts],
    select: Option<&[&str]>,
) -> Value {
    let sources: Vec<String> = if mailbox.folders[index].kind == FolderKind::SearchFlagged {
        vec![mailbox.folders[mailbox.root()].id.clone()]
    } else {
        Vec::new()
    };
    wire::folder(
        &mailbox.folders[index],
        &parent_id(mailbox, index),
        counts[index],
        select,
        &sources,
    )
}

/// `GET /users/{u}/mailFolders`.
pub(crate) async fn list_root(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path(user): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond(list(&state, &ctx, &user, None, raw.as_deref()))
}

/// `GET /users/{u}/mailFolders/{id}/childFolders`.
pub(crate) async fn list_children(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, folder)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond(list(&state, &ctx, &user, Some(&folder), raw.as_deref()))
}

fn list(
    state: &AppState,
    ctx: &Ctx,
    user: &str,
    folder: Option<&str>,
    raw: Option<&str>,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw)?;
    query.only(&["$top", "$skip", "$select", "$filter", "$count"])?;
    let name_filter = match query.get("$filter") {
        Some(filter) => Some(display_name_filter(filter)?),
        None => None,
    };
    let top = query.top(10, 1000, "ErrorInvalidParameter")?;
    let skip = query.skip()?;
    let select = query.select(FOLDER_PROPERTIES, "Microsoft.OutlookServices.MailFolder")?;
    let include_hidden = query
        .get("includeHiddenFolders")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let tenant = state.tenant.read();
    let mailbox = tenant
        .mailbox_checked(user)
        .map_err(|a| ApiError::mailbox(a, user))?;
    let parent = match folder {
        Some(id) => {
            let index = super::archive::folder_index(mailbox, id)?;
            super::archive::redirect_folder(state, ctx, &tenant, mailbox, index)?;
            index
        }
        None => mailbox.root(),
    };
    let children: Vec<usize> = mailbox
        .children(parent)
        .filter(|&c| include_hidden || !mailbox.folders[c].hidden)
        .filter(|&c| {
            name_filter
                .as_ref()
                .is_none_or(|n| mailbox.folders[c].display_name.eq_ignore_ascii_case(n))
        })
        .collect();
    let counts = all_counts(mailbox);
    let page: Vec<Value> = children
        .iter()
        .skip(skip)
        .take(top)
        .map(|&c| folder_json(mailbox, c, &counts, select.as_deref()))
        .collect();
    let base = link_base(state, ctx);
    let path = match folder {
        Some(id) => format!(
            "users/{}/mailFolders/{}/childFolders",
            segment(user),
            segment(id)
        ),
        None => format!("users/{}/mailFolders", segment(user)),
    };
    let mut body = json!({"@odata.context": format!("{base}/$metadata#users('{}')/mailFolders", segment(user))});
    if query
        .get("$count")
        .is_some_and(|c| c.eq_ignore_ascii_case("true"))
    {
        body["@odata.count"] = json!(children.len());
    }
    body["value"] = Value::Array(page);
    if skip + top < children.len() {
        let rest = query.encode_without(&["$skip", "skip"], &[("$skip", (skip + top).to_string())]);
        body["@odata.nextLink"] = json!(format!("{base}/{path}?{rest}"));
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// The one folder filter supported: `displayName eq 'name'`.
fn display_name_filter(filter: &str) -> Result<String, ApiError> {
    let refused = || {
        ApiError::bad_request(
            "ErrorInvalidUrlQueryFilter",
            format!("The query filter '{filter}' is not supported."),
        )
    };
    let (property, rest) = filter.trim().split_once(' ').ok_or_else(refused)?;
    let (op, value) = rest.trim().split_once(' ').ok_or_else(refused)?;
    if !property.eq_ignore_ascii_case("displayName") || !op.eq_ignore_ascii_case("eq") {
        return Err(refused());
    }
    let value = value.trim();
    let inner = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .ok_or_else(refused)?;
    Ok(inner.replace("''", "'"))
}

/// `GET /users/{u}/mailFolders/{id}`.
pub(crate) async fn get_one(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, folder)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond((|| {
        let query = Query::parse(raw.as_deref())?;
        query.only(&["$select", "$expand"])?;
        let select = query.select(FOLDER_PROPERTIES, "Microsoft.OutlookServices.MailFolder")?;
        let tenant = state.tenant.read();
        let mailbox = tenant
            .mailbox_checked(&user)
            .map_err(|a| ApiError::mailbox(a, &user))?;
        let index = super::archive::folder_index(mailbox, &folder)?;
        super::archive::redirect_folder(&state, &ctx, &tenant, mailbox, index)?;
        let counts = all_counts(mailbox);
        let mut body = folder_json(mailbox, index, &counts, select.as_deref());
        body["@odata.context"] = json!(format!(
            "{}/$metadata#users('{}')/mailFolders/$entity",
            link_base(&state, &ctx),
            segment(&user)
        ));
        Ok(json_response(StatusCode::OK, &body))
    })())
}

/// State of `/mailFolders/delta` links.
#[derive(Debug, Serialize, Deserialize)]
struct FolderDelta {
    k: String,
    mailbox: u64,
    /// Folders with an index below this were reported in an earlier round.
    known: usize,
    /// Next folder index of this round.
    next: usize,
    initial: bool,
}

/// `GET /users/{u}/mailFolders/delta`: the whole tree (every folder under the root), then new folders.
pub(crate) async fn delta(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path(user): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond((|| {
        let query = Query::parse(raw.as_deref())?;
        let tenant = state.tenant.read();
        let seed = tenant.seed;
        let mailbox = tenant.mailbox_checked(&user).map_err(|a| ApiError::mailbox(a, &user))?;
        let base = link_base(&state, &ctx);
        let link = format!("{base}/users/{}/mailFolders/delta", segment(&user));
        let gone = || {
            let mut e = ApiError::new(StatusCode::GONE, "syncStateNotFound", "The sync state is not found or has expired.");
            e.location = Some(link.clone());
            e
        };
        let mut cursor = if let Some(t) = query.get("$deltatoken").or_else(|| query.get("$skiptoken")) {
            let c: FolderDelta = token::decode(seed, t).filter(|c: &FolderDelta| c.k == "fdelta" && c.mailbox == mailbox.key).ok_or_else(gone)?;
            c
        } else {
            query.only(&["$select", "$top"])?;
            FolderDelta { k: "fdelta".into(), mailbox: mailbox.key, known: 0, next: 0, initial: true }
        };
        if cursor.next < cursor.known {
            cursor.next = cursor.known;
        }
        let select = query.select(FOLDER_PROPERTIES, "Microsoft.OutlookServices.MailFolder")?;
        let page_size = ctx.max_page_size().unwrap_or(100).clamp(1, 1000);
        let counts = all_counts(mailbox);
        let candidates: Vec<usize> = (cursor.next..mailbox.folders.len())
            .filter(|&i| mailbox.folders[i].kind == FolderKind::Mail && mailbox.in_mailbox_view(i))
            .collect();
        let page: Vec<Value> = candidates.iter().take(page_size).map(|&i| folder_json(mailbox, i, &counts, select.as_deref())).collect();
        let mut body = json!({"@odata.context": format!("{base}/$metadata#Collection(mailFolder)"), "value": page});
        if candidates.len() > page_size {
            cursor.next = candidates[page_size];
            body["@odata.nextLink"] = json!(format!("{link}?$skiptoken={}", token::encode(seed, &cursor)));
        } else {
            let next = FolderDelta { k: "fdelta".into(), mailbox: mailbox.key, known: mailbox.folders.len(), next: 0, initial: false };
            body["@odata.deltaLink"] = json!(format!("{link}?$deltatoken={}", token::encode(seed, &next)));
        }
        Ok(json_response(StatusCode::OK, &body))
    })())
}
