//! The JSON API under `/api/v1` (design.md, "Web and API"): search, messages and
//! their parts, folders, export, restore, the audit log and legal holds.
//!
//! Every route takes the session cookie or an API token; scoping is the service's
//! (a message outside the caller's archives is 403 and recorded); an API token may
//! only do what its scopes allow; a cookie-authenticated write needs the session's
//! CSRF token in `X-CSRF-Token`. Service calls touch disk and run on the blocking pool.

use std::collections::BTreeMap;

use archive_store::{ExportFormat, MessageId};
use archiver_service::audit_log::ListQuery;
use archiver_service::{
    ApiScope, ExportRequest, HoldSpec, Principal, RestoreReport, RestoreRequest, SearchRequest,
    Selection, Service,
};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::WebError;
use crate::render::disposition::{SAFE_DOWNLOAD_HEADERS, content_disposition};
use crate::state::WebState;

/// Hits per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// Most hits per page.
pub const MAX_LIMIT: usize = 500;
/// Deepest a cursor pages (offset + limit).
pub const MAX_DEPTH: usize = 10_000;

/// Runs `work` on the blocking pool (the service reads and writes files).
pub(crate) async fn blocking<T: Send + 'static>(
    state: &WebState,
    work: impl FnOnce(&Service) -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    let service = state.service().clone();
    tokio::task::spawn_blocking(move || work(&service))
        .await
        .map_err(|e| WebError::Internal(format!("a request task failed: {e}")))?
}

/// The query of `GET /api/v1/search` (and of the search page).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SearchParams {
    /// The search (field syntax: `from:`, `subject:`, `folder:`, ...).
    #[serde(default)]
    pub q: Option<String>,
    /// Only this archive.
    #[serde(default)]
    pub user: Option<String>,
    /// Received on or after (`YYYY-MM-DD` or RFC 3339).
    #[serde(default)]
    pub from: Option<String>,
    /// Received before (`YYYY-MM-DD` or RFC 3339).
    #[serde(default)]
    pub to: Option<String>,
    /// Hits per page (1..=500).
    #[serde(default)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// One search hit (a fixed shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    /// Message id (content address).
    pub id: String,
    /// Archive.
    pub user: String,
    /// Folder path.
    pub folder: String,
    /// Date (RFC 3339).
    pub date: Option<DateTime<Utc>>,
    /// From.
    pub from: Option<String>,
    /// Subject.
    pub subject: Option<String>,
}

/// A page of hits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchPage {
    /// The hits, newest first.
    pub hits: Vec<Hit>,
    /// The cursor of the next page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Where this page starts among all hits.
    #[serde(skip)]
    pub offset: usize,
}

/// A date parameter: `YYYY-MM-DD` (midnight UTC) or RFC 3339.
pub fn parse_date(name: &str, value: &str) -> Result<DateTime<Utc>, WebError> {
    let value = value.trim();
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return date
            .and_hms_opt(0, 0, 0)
            .map(|d| d.and_utc())
            .ok_or_else(|| WebError::BadRequest(format!("`{name}`: not a date: {value}")));
    }
    DateTime::parse_from_rfc3339(value)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| {
            WebError::BadRequest(format!(
                "`{name}` must be a date (YYYY-MM-DD or RFC 3339), not `{}`",
                value.chars().take(40).collect::<String>()
            ))
        })
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Encodes a paging offset as an opaque cursor.
pub fn encode_cursor(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("o{offset}"))
}

/// Decodes a cursor (`None`: the first page).
pub fn decode_cursor(cursor: Option<&str>) -> Result<usize, WebError> {
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(0);
    };
    let bad = || WebError::BadRequest("`cursor` is not a cursor this API gave".into());
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.as_bytes())
        .map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let offset: usize = text
        .strip_prefix('o')
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    if offset > MAX_DEPTH {
        return Err(bad());
    }
    Ok(offset)
}

/// Runs a search for `principal`: validated parameters, one page of hits.
pub(crate) fn run_search(
    service: &Service,
    principal: &Principal,
    params: &SearchParams,
) -> Result<SearchPage, WebError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(WebError::BadRequest(format!(
            "`limit` must be 1 to {MAX_LIMIT}"
        )));
    }
    let offset = decode_cursor(params.cursor.as_deref())?;
    if offset + limit > MAX_DEPTH {
        return Err(WebError::BadRequest(format!(
            "paging stops after {MAX_DEPTH} hits: narrow the search"
        )));
    }
    let request = SearchRequest {
        text: non_empty(&params.q).unwrap_or_default(),
        user: non_empty(&params.user),
        from_date: non_empty(&params.from)
            .map(|v| parse_date("from", &v))
            .transpose()?,
        to_date: non_empty(&params.to)
            .map(|v| parse_date("to", &v))
            .transpose()?,
        limit: offset + limit + 1,
    };
    let found = service.search(principal, &request)?;
    let more = found.len() > offset + limit;
    let hits = found
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|h| Hit {
            id: h.id.0,
            user: h.user,
            folder: h.folder,
            date: h.date,
            from: h.from,
            subject: h.subject,
        })
        .collect();
    Ok(SearchPage {
        hits,
        next_cursor: more.then(|| encode_cursor(offset + limit)),
        offset,
    })
}

/// `GET /api/v1/search`.
pub async fn search(
    State(state): State<WebState>,
    caller: Caller,
    Query(params): Query<SearchParams>,
) -> Result<Json<SearchPage>, WebError> {
    caller.require_scope(ApiScope::Read)?;
    let principal = caller.principal;
    Ok(Json(
        blocking(&state, move |s| run_search(s, &principal, &params)).await?,
    ))
}

/// `GET /api/v1/messages/{id}`: metadata, text, recipients, attachments.
pub async fn message(
    State(state): State<WebState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    caller.require_scope(ApiScope::Read)?;
    let principal = caller.principal;
    let view = blocking(&state, move |s| Ok(s.message_view(&principal, &id)?)).await?;
    Ok(Json(view).into_response())
}

/// Headers every download carries (no sniffing, sandboxed, not cached), and its name.
pub(crate) fn download(bytes: impl Into<Body>, content_type: &str, file_name: &str) -> Response {
    let mut response = (StatusCode::OK, bytes.into()).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&content_disposition(file_name)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    for (name, value) in SAFE_DOWNLOAD_HEADERS {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
    response
}

/// `GET /api/v1/messages/{id}/raw`: the archived bytes, exactly.
pub async fn raw(
    State(state): State<WebState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    caller.require_scope(ApiScope::Read)?;
    let principal = caller.principal;
    let (info, bytes) = blocking(&state, move |s| Ok(s.message_raw(&principal, &id)?)).await?;
    Ok(download(
        bytes,
        "message/rfc822",
        &format!("{}.eml", info.id.0),
    ))
}

/// `GET /api/v1/messages/{id}/attachments/{n}`: always a download, never rendered.
pub async fn attachment(
    State(state): State<WebState>,
    caller: Caller,
    Path((id, n)): Path<(String, usize)>,
) -> Result<Response, WebError> {
    caller.require_scope(ApiScope::Read)?;
    let principal = caller.principal;
    let content = blocking(&state, move |s| {
        Ok(s.message_attachment(&principal, &id, n)?)
    })
    .await?;
    Ok(download(
        content.bytes,
        "application/octet-stream",
        &content.info.name,
    ))
}

/// The query of `GET /api/v1/folders`.
#[derive(Debug, Deserialize)]
pub struct FoldersParams {
    /// The archive (default: the caller's own).
    #[serde(default)]
    pub user: Option<String>,
}

/// `GET /api/v1/folders?user=`.
pub async fn folders(
    State(state): State<WebState>,
    caller: Caller,
    Query(params): Query<FoldersParams>,
) -> Result<Response, WebError> {
    caller.require_scope(ApiScope::Read)?;
    let user = non_empty(&params.user).unwrap_or_else(|| caller.name.clone());
    let principal = caller.principal;
    let folders = blocking(&state, move |s| Ok(s.archive_folders(&principal, &user)?)).await?;
    Ok(Json(folders).into_response())
}

/// The body of `POST /api/v1/export`.
#[derive(Debug, Clone, Deserialize)]
pub struct ExportBody {
    /// Only messages matching this search (none: the whole archive or folder).
    #[serde(default)]
    pub query: Option<String>,
    /// The archive.
    pub user: String,
    /// Only this folder.
    #[serde(default)]
    pub folder: Option<String>,
    /// `mbox` or `eml-zip`.
    pub format: String,
}

fn csrf_header(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-csrf-token").and_then(|v| v.to_str().ok())
}

/// Exports for `principal` into a staged file and answers it as a download (the
/// file is unlinked once open, so nothing stays behind).
pub(crate) async fn export_download(
    state: &WebState,
    principal: Principal,
    body: ExportBody,
) -> Result<Response, WebError> {
    let zip = match body.format.as_str() {
        "mbox" => false,
        "eml-zip" | "zip" => true,
        other => {
            return Err(WebError::BadRequest(format!(
                "`format` must be `mbox` or `eml-zip`, not `{}`",
                other.chars().take(20).collect::<String>()
            )));
        }
    };
    let dir = state.config().export_dir.clone();
    let user = body.user.clone();
    let file = blocking(state, move |s| {
        std::fs::create_dir_all(&dir)
            .map_err(|e| WebError::Internal(format!("cannot create {}: {e}", dir.display())))?;
        let staged = tempfile::Builder::new()
            .prefix(".web-export-")
            .tempfile_in(&dir)
            .map_err(|e| {
                WebError::Internal(format!("cannot stage an export in {}: {e}", dir.display()))
            })?;
        let request = ExportRequest {
            user: body.user,
            folder: non_empty(&body.folder),
            query: non_empty(&body.query),
            format: ExportFormat::Mbox,
            out: staged.path().to_path_buf(),
        };
        if zip {
            s.export_eml_zip(&principal, &request, staged.path())?;
        } else {
            s.export(&principal, &request)?;
        }
        let file = staged
            .reopen()
            .map_err(|e| WebError::Internal(format!("cannot reopen the export: {e}")))?;
        drop(staged);
        Ok(file)
    })
    .await?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let (content_type, name) = if zip {
        ("application/zip", format!("{user}-export.zip"))
    } else {
        ("application/mbox", format!("{user}-export.mbox"))
    };
    Ok(download(Body::from_stream(stream), content_type, &name))
}

/// `POST /api/v1/export`: an mbox, or a zip of `.eml` files with a SHA-256 manifest.
pub async fn export(
    State(state): State<WebState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<ExportBody>,
) -> Result<Response, WebError> {
    caller.require_scope(ApiScope::Export)?;
    caller.check_csrf(csrf_header(&headers))?;
    export_download(&state, caller.principal, body).await
}

/// The body of `POST /api/v1/restore`.
#[derive(Debug, Clone, Deserialize)]
pub struct RestoreBody {
    /// Message ids.
    pub ids: Vec<String>,
    /// The mailbox to write into (default: each archive owner's own).
    #[serde(default)]
    pub to_mailbox: Option<String>,
    /// The folder to restore under (default `Restored/<date>`).
    #[serde(default)]
    pub to_folder: Option<String>,
}

/// What `POST /api/v1/restore` answers (the shape of `archive restore --json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestoreAnswer {
    /// Messages written.
    pub restored: u64,
    /// Messages already in the target folder.
    pub skipped_existing: u64,
    /// Messages that could not be written.
    pub failed: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The mailboxes written into.
    pub to_mailbox: String,
    /// The folder.
    pub to_folder: String,
}

/// Restores `body.ids` for `principal`, grouped by the archive holding each.
pub(crate) async fn run_restore(
    state: &WebState,
    principal: Principal,
    body: RestoreBody,
) -> Result<RestoreAnswer, WebError> {
    let Some(credentials) = state.config().restore_credentials.clone() else {
        return Err(WebError::Service(
            archiver_service::ServiceError::unavailable(
                "restore is not set up on this server (start it with --credentials)",
            ),
        ));
    };
    if body.ids.is_empty() || body.ids.len() > 10_000 {
        return Err(WebError::BadRequest(
            "`ids` must name 1 to 10000 messages".into(),
        ));
    }
    let owners = {
        let principal = principal.clone();
        let ids = body.ids.clone();
        blocking(state, move |s| {
            let mut owners: BTreeMap<String, Vec<MessageId>> = BTreeMap::new();
            for id in &ids {
                let owner = s.message_owner(&principal, id)?;
                owners
                    .entry(owner)
                    .or_default()
                    .push(MessageId(id.trim().to_ascii_lowercase()));
            }
            Ok(owners)
        })
        .await?
    };
    let mut answer = RestoreAnswer::default();
    let mut mailboxes = Vec::new();
    for (user, ids) in owners {
        let request = RestoreRequest {
            user,
            selection: Selection::Ids(ids),
            to_mailbox: non_empty(&body.to_mailbox),
            to_folder: non_empty(&body.to_folder),
            exact_mime: false,
        };
        // The restore job's future is not `Send` (a borrow held across an await
        // in its folder walk), so it runs to completion on a blocking thread.
        let (service, who, creds) = (
            state.service().clone(),
            principal.clone(),
            credentials.clone(),
        );
        let handle = tokio::runtime::Handle::current();
        let report: RestoreReport = tokio::task::spawn_blocking(move || {
            handle.block_on(service.restore(&who, &request, &creds, &|_| {}))
        })
        .await
        .map_err(|e| WebError::Internal(format!("the restore task failed: {e}")))??;
        answer.restored += report.restored;
        answer.skipped_existing += report.skipped_existing;
        answer.failed += report.failed;
        answer.bytes += report.bytes;
        if !mailboxes.contains(&report.to_mailbox) {
            mailboxes.push(report.to_mailbox);
        }
        answer.to_folder = report.to_folder;
    }
    answer.to_mailbox = mailboxes.join(", ");
    Ok(answer)
}

/// `POST /api/v1/restore`.
pub async fn restore(
    State(state): State<WebState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<RestoreBody>,
) -> Result<Json<RestoreAnswer>, WebError> {
    caller.require_scope(ApiScope::Restore)?;
    caller.check_csrf(csrf_header(&headers))?;
    Ok(Json(run_restore(&state, caller.principal, body).await?))
}

/// The query of `GET /api/v1/audit`.
#[derive(Debug, Default, Deserialize)]
pub struct AuditParams {
    /// Events at or after (RFC 3339 or a date).
    #[serde(default)]
    pub since: Option<String>,
    /// At most this many (default 100, at most 10000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `GET /api/v1/audit`.
pub async fn audit(
    State(state): State<WebState>,
    caller: Caller,
    Query(params): Query<AuditParams>,
) -> Result<Response, WebError> {
    caller.require_scope(ApiScope::Audit)?;
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > 10_000 {
        return Err(WebError::BadRequest("`limit` must be 1 to 10000".into()));
    }
    let since = non_empty(&params.since)
        .map(|v| parse_date("since", &v))
        .transpose()?;
    let principal = caller.principal;
    let events = blocking(&state, move |s| {
        Ok(s.audit_events(
            &principal,
            &ListQuery {
                since,
                limit: Some(limit),
            },
        )?)
    })
    .await?;
    Ok(Json(events).into_response())
}

/// `GET /api/v1/holds`.
pub async fn holds(State(state): State<WebState>, caller: Caller) -> Result<Response, WebError> {
    caller.require_scope(ApiScope::Governance)?;
    let principal = caller.principal;
    let holds = blocking(&state, move |s| Ok(s.holds(&principal)?)).await?;
    Ok(Json(holds).into_response())
}

/// The body of `POST /api/v1/holds`.
#[derive(Debug, Clone, Deserialize)]
pub struct HoldBody {
    /// The case name.
    pub case: String,
    /// Why (required).
    pub reason: String,
    /// Only these archives (none: all).
    #[serde(default)]
    pub users: Vec<String>,
    /// Only messages matching this search.
    #[serde(default)]
    pub query: Option<String>,
    /// Received on or after.
    #[serde(default)]
    pub from: Option<String>,
    /// Received before.
    #[serde(default)]
    pub to: Option<String>,
}

/// `POST /api/v1/holds`: places a legal hold.
pub async fn create_hold(
    State(state): State<WebState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<HoldBody>,
) -> Result<Response, WebError> {
    caller.require_scope(ApiScope::Governance)?;
    caller.check_csrf(csrf_header(&headers))?;
    let spec = HoldSpec {
        case: body.case,
        reason: body.reason,
        users: body.users,
        query: non_empty(&body.query),
        from: non_empty(&body.from)
            .map(|v| parse_date("from", &v))
            .transpose()?,
        to: non_empty(&body.to)
            .map(|v| parse_date("to", &v))
            .transpose()?,
    };
    let principal = caller.principal;
    let hold = blocking(&state, move |s| Ok(s.create_hold(&principal, &spec)?)).await?;
    Ok((StatusCode::CREATED, Json(hold)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(decode_cursor(None).ok(), Some(0));
        assert_eq!(decode_cursor(Some(&encode_cursor(150))).ok(), Some(150));
        for bad in ["x", "bzEwMDAwMDAw", "%%%", "b2FiYw"] {
            assert!(decode_cursor(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_are_days_or_rfc3339() {
        assert!(parse_date("from", "2024-02-29").is_ok());
        assert!(parse_date("from", "2024-02-30").is_err());
        assert!(parse_date("from", "2024-01-01T10:00:00+02:00").is_ok());
        let err = parse_date("to", "yesterday")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("`to`"), "{err}");
    }
}
