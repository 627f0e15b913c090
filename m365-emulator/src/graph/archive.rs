//! Online archive on Graph: `settings/exchange` (the mailbox ids), `MBX:` ids reaching archive
//! mailboxes on beta only, the error for well-known folder names there, and the 308 Permanent
//! Redirect of reads that land on an auto-expanded archive's auxiliary mailbox.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use super::folders::segment;
use super::query::Query;
use super::{ApiError, Ctx, json_response, link_base};
use crate::state::AppState;
use crate::tenant::{Mailbox, MailboxAccess, MailboxId, Tenant};

/// Well-known folder names Graph knows (an archive refuses them all).
const WELL_KNOWN: &[&str] = &[
    "archive",
    "clutter",
    "conflicts",
    "conversationhistory",
    "deleteditems",
    "drafts",
    "inbox",
    "junkemail",
    "localfailures",
    "msgfolderroot",
    "outbox",
    "recoverableitemsdeletions",
    "recoverableitemsdiscoveryholds",
    "recoverableitemspurges",
    "recoverableitemsroot",
    "recoverableitemsversions",
    "scheduled",
    "searchfolders",
    "sentitems",
    "serverfailures",
    "syncissues",
];

/// A folder of a mailbox by id (or, outside archives, well-known name), or Graph's error.
///
/// Graph documents that well-known names are not supported for archive mailboxes but not the
/// error it answers; the emulator answers 400 `ErrorInvalidRequest` naming the folder.
pub(crate) fn folder_index(mailbox: &Mailbox, name: &str) -> Result<usize, ApiError> {
    if let Some(index) = mailbox.folder_index(name) {
        return Ok(index);
    }
    let lower = name.to_ascii_lowercase();
    if mailbox.archive && WELL_KNOWN.contains(&lower.as_str()) {
        return Err(ApiError::bad_request(
            "ErrorInvalidRequest",
            format!(
                "Well-known folder name '{name}' is not supported for archive mailboxes; use the folder id."
            ),
        ));
    }
    Err(ApiError::folder_not_found())
}

/// The URL of this request with the mailbox segment replaced by another `MBX:` id.
fn relocated(state: &AppState, ctx: &Ctx, mbx: &str) -> String {
    let base = link_base(state, ctx);
    let origin = base
        .strip_suffix("/v1.0")
        .or_else(|| base.strip_suffix("/beta"))
        .unwrap_or(&base);
    let (path, query) = ctx
        .path_and_query
        .split_once('?')
        .map_or((ctx.path_and_query.as_str(), None), |(p, q)| (p, Some(q)));
    let mut segments: Vec<String> = path.split('/').map(str::to_owned).collect();
    // "", version, "users", user, ...
    // `MBX:<guid>@<guid>` holds only characters a path segment may carry as they are.
    if let Some(user) = segments.get_mut(3) {
        *user = mbx.to_owned();
    }
    let mut url = format!("{origin}{}", segments.join("/"));
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// 308 to the auxiliary archive when the folder's content lives there.
pub(crate) fn redirect_folder(
    state: &AppState,
    ctx: &Ctx,
    tenant: &Tenant,
    mailbox: &Mailbox,
    index: usize,
) -> Result<(), ApiError> {
    match mailbox.folders.get(index).and_then(|f| f.redirect.as_ref()) {
        Some(aux) => Err(ApiError::redirect(relocated(state, ctx, &tenant.mbx(aux)))),
        None => Ok(()),
    }
}

/// The error for an item a mailbox does not hold: 308 to the auxiliary archive holding it, else
/// 404 `ErrorItemNotFound`.
pub(crate) fn missing_item(
    state: &AppState,
    ctx: &Ctx,
    tenant: &Tenant,
    mailbox: &Mailbox,
    id: &str,
) -> ApiError {
    match tenant.auxiliary_holding(mailbox, id) {
        Some(mbx) => ApiError::redirect(relocated(state, ctx, &mbx)),
        None => ApiError::item_not_found(),
    }
}

/// Refuses `MBX:` ids outside beta: v1.0 does not reach mailboxes by id (Graph documents the
/// archive mail API on beta only; the emulator answers as for an unknown user).
pub(crate) async fn mbx_on_beta_only(ctx: Ctx, request: Request, next: Next) -> Response {
    let mut segments = request.uri().path().trim_start_matches('/').split('/');
    let version = segments.next().unwrap_or_default();
    let users = segments.next().unwrap_or_default();
    let user = segments.next().unwrap_or_default();
    if version.eq_ignore_ascii_case("v1.0")
        && users.eq_ignore_ascii_case("users")
        && MailboxId::parse(user).is_some()
    {
        let user = user.to_owned();
        return ctx.error(ApiError::mailbox(MailboxAccess::UnknownUser, &user));
    }
    next.run(request).await
}

/// `GET /users/{u}/settings/exchange`: `primaryMailboxId` and, on beta, `inPlaceArchiveMailboxId`
/// (null for a user without an archive). A user without a mailbox has neither (the
/// documentation is silent; the emulator answers nulls).
pub(crate) async fn exchange_settings(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path(user): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond((|| {
        Query::parse(raw.as_deref())?.only(&["$select"])?;
        let tenant = state.tenant.read();
        let record = tenant
            .user(&user)
            .ok_or_else(|| ApiError::user_not_found(&user))?;
        let primary = record
            .has_mailbox
            .then(|| tenant.mbx(&tenant.primary_mailbox_guid(&record.id)));
        let base = link_base(&state, &ctx);
        let mut body = json!({
            "@odata.context": format!("{base}/$metadata#users('{}')/settings/exchange/$entity", segment(&user)),
            "primaryMailboxId": primary,
        });
        if ctx.beta {
            let archive = tenant.archive_of.get(&record.id).map(|guid| tenant.mbx(guid));
            body["inPlaceArchiveMailboxId"] = json!(archive);
        }
        Ok(json_response(StatusCode::OK, &body))
    })())
}
