//! The page routes: search, message (and its sandboxed body frame and inline
//! images), folders, export and restore forms, holds and retention, the audit
//! log. Each handler asks the service (which scopes and records every read) and
//! renders a view model through [`crate::render`]; every form carries the
//! session's CSRF token. A visitor who is not signed in is sent to `/signin`.

use std::collections::BTreeMap;

use archiver_service::{ApiScope, HoldSpec, PolicySpec, Principal, Role, SearchRequest};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;

use crate::api::{self, ExportBody, RestoreBody, SearchParams, blocking};
use crate::auth::{Caller, MaybeCaller};
use crate::error::{PageError, WebError};
use crate::render::{self, models};
use crate::state::WebState;

/// The routes of the pages.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(search))
        .route("/static/app.css", get(stylesheet))
        .route("/messages/{id}", get(message))
        .route("/messages/{id}/body", get(message_body))
        .route("/messages/{id}/inline/{n}", get(inline_part))
        .route("/folders", get(folders))
        .route("/export", post(export))
        .route("/restore", post(restore))
        .route("/holds", get(holds).post(create_hold))
        .route("/holds/release", post(release_hold))
        .route("/retention", post(add_policy))
        .route("/retention/remove", post(remove_policy))
        .route("/audit", get(audit))
}

/// Headers of an HTML page.
pub fn html_headers() -> [(HeaderName, HeaderValue); 1] {
    [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    )]
}

/// The sign-in page.
pub fn signin_document(csrf: &str, error: Option<&str>, entra: bool, return_to: &str) -> String {
    render::signin_page(csrf, error, entra, return_to)
}

/// An error page.
pub fn error_document(status: StatusCode, message: &str) -> String {
    render::error_page(status.as_u16(), message)
}

fn page(html: String) -> Response {
    (StatusCode::OK, html_headers(), html).into_response()
}

/// The signed-in caller of a page, or the way to the sign-in page.
fn signed_in(caller: MaybeCaller, return_to: &str) -> Result<Caller, Box<Response>> {
    caller.0.ok_or_else(|| {
        Box::new(
            Redirect::to(&format!(
                "/signin?return_to={}",
                models::encode_component(return_to)
            ))
            .into_response(),
        )
    })
}

fn viewer(caller: &Caller) -> models::Viewer {
    let now = Utc::now();
    let mut roles = Vec::new();
    for (role, view) in [
        (Role::User, models::Role::User),
        (Role::Auditor, models::Role::Auditor),
        (Role::Compliance, models::Role::Compliance),
        (Role::Admin, models::Role::Admin),
    ] {
        if caller.principal.has_role(role, now) {
            roles.push(view);
        }
    }
    models::Viewer {
        name: caller.name.clone(),
        roles,
        csrf: caller.csrf().to_string(),
    }
}

fn day(date: Option<DateTime<Utc>>) -> String {
    date.map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn may_restore(principal: &Principal) -> bool {
    let now = Utc::now();
    match principal {
        Principal::LocalAdministrator => true,
        Principal::Account(a) => {
            principal.has_role(Role::User, now)
                || (principal.has_role(Role::Admin, now)
                    && a.unblock.as_ref().is_some_and(|u| now < u.until))
        }
    }
}

/// Hits a facet is computed over (the first ones of the search).
const FACET_HITS: usize = 1000;

fn sender_domain(from: &str) -> Option<String> {
    let address = from
        .rsplit_once('<')
        .map_or(from, |(_, rest)| rest.trim_end_matches('>'));
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

fn facets(query: &models::SearchQuery, hits: &[archive_store::SearchHit]) -> Vec<models::Facet> {
    let mut folders: BTreeMap<String, u64> = BTreeMap::new();
    let mut years: BTreeMap<i32, u64> = BTreeMap::new();
    let mut domains: BTreeMap<String, u64> = BTreeMap::new();
    for hit in hits {
        *folders.entry(hit.folder.clone()).or_default() += 1;
        if let Some(date) = hit.date {
            *years.entry(date.year()).or_default() += 1;
        }
        if let Some(domain) = hit.from.as_deref().and_then(sender_domain) {
            *domains.entry(domain).or_default() += 1;
        }
    }
    let top = |map: BTreeMap<String, u64>| {
        let mut v: Vec<(String, u64)> = map.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(10);
        v
    };
    let folder_values = top(folders)
        .into_iter()
        .map(|(path, count)| {
            let term = models::folder_query_term(&path);
            models::FacetValue {
                active: query.q.contains(&term),
                query: query.with_term(&term),
                label: path,
                count,
            }
        })
        .collect();
    let year_values = years
        .into_iter()
        .rev()
        .map(|(year, count)| {
            let (from, to) = (format!("{year}-01-01"), format!("{}-01-01", year + 1));
            models::FacetValue {
                active: query.from == from && query.to == to,
                query: query.with_dates(&from, &to),
                label: year.to_string(),
                count,
            }
        })
        .collect();
    let domain_values = top(domains)
        .into_iter()
        .map(|(domain, count)| {
            let term = format!("from:\"{domain}\"");
            models::FacetValue {
                active: query.q.contains(&term),
                query: query.with_term(&term),
                label: domain,
                count,
            }
        })
        .collect();
    vec![
        models::Facet {
            kind: models::FacetKind::Folder,
            values: folder_values,
        },
        models::Facet {
            kind: models::FacetKind::Year,
            values: year_values,
        },
        models::Facet {
            kind: models::FacetKind::SenderDomain,
            values: domain_values,
        },
    ]
}

/// `GET /`: the search page.
async fn search(
    State(state): State<WebState>,
    caller: MaybeCaller,
    Query(params): Query<SearchParams>,
) -> Result<Response, PageError> {
    let query = models::SearchQuery {
        q: params.q.clone().unwrap_or_default(),
        user: params.user.clone().unwrap_or_default(),
        from: params.from.clone().unwrap_or_default(),
        to: params.to.clone().unwrap_or_default(),
    };
    let caller = match signed_in(
        caller,
        &query.href_with_cursor(params.cursor.as_deref().unwrap_or("")),
    ) {
        Ok(c) => c,
        Err(redirect) => return Ok(*redirect),
    };
    caller.require_scope(ApiScope::Read)?;
    let viewer = viewer(&caller);
    let can_export =
        caller.principal.visible(Utc::now()) != archiver_service::Visible::Only(Default::default());
    let searched = [&query.q, &query.user, &query.from, &query.to]
        .iter()
        .any(|v| !v.trim().is_empty());
    let principal = caller.principal.clone();
    let (archives, outcome) = blocking(&state, move |s| {
        let archives = s.visible_archives(&principal)?;
        if !searched {
            return Ok((archives, None));
        }
        let offset = api::decode_cursor(params.cursor.as_deref())?;
        let limit = params
            .limit
            .unwrap_or(api::DEFAULT_LIMIT)
            .clamp(1, api::MAX_LIMIT);
        let request = SearchRequest {
            text: params.q.clone().unwrap_or_default(),
            user: params.user.clone().filter(|u| !u.trim().is_empty()),
            from_date: params
                .from
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| api::parse_date("from", v))
                .transpose()?,
            to_date: params
                .to
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| api::parse_date("to", v))
                .transpose()?,
            limit: (offset + limit + 1).clamp(FACET_HITS, api::MAX_DEPTH),
        };
        let found = match s.search(&principal, &request) {
            Ok(found) => found,
            Err(e) if e.category() == archiver_service::ErrorCategory::Invalid => {
                return Ok((archives, Some(Err(archiver_service::chain(&e)))));
            }
            Err(e) => return Err(e.into()),
        };
        Ok((archives, Some(Ok((found, offset, limit)))))
    })
    .await?;
    let mut view = models::SearchView {
        viewer,
        archives: archives
            .into_iter()
            .map(|user| models::ArchiveOption {
                label: user.clone(),
                user,
            })
            .collect(),
        searched,
        hits: Vec::new(),
        total: None,
        facets: Vec::new(),
        next_cursor: None,
        prev_cursor: None,
        error: None,
        can_export,
        query,
    };
    match outcome {
        None => {}
        Some(Err(message)) => view.error = Some(message),
        Some(Ok((found, offset, limit))) => {
            view.facets = facets(&view.query, &found[..found.len().min(FACET_HITS)]);
            if found.len() < FACET_HITS.max(offset + limit + 1) {
                view.total = Some(found.len() as u64);
            }
            view.next_cursor =
                (found.len() > offset + limit).then(|| api::encode_cursor(offset + limit));
            view.prev_cursor = (offset > 0).then(|| {
                let prev = offset.saturating_sub(limit);
                if prev == 0 {
                    String::new()
                } else {
                    api::encode_cursor(prev)
                }
            });
            view.hits = found
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|h| models::SearchHit {
                    id: h.id.0,
                    user: h.user,
                    date: day(h.date),
                    from: h.from.unwrap_or_default(),
                    subject: h.subject.unwrap_or_default(),
                    folder: h.folder,
                    has_attachments: false,
                })
                .collect();
        }
    }
    Ok(page(render::search_page(&view)))
}

/// `GET /static/app.css`.
async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        render::APP_CSS,
    )
        .into_response()
}

/// Subject without reply and forward prefixes, for the conversation.
fn thread_subject(subject: &str) -> String {
    let mut s = subject.trim();
    loop {
        let lower = s.to_ascii_lowercase();
        let cut = ["re:", "fw:", "fwd:", "aw:", "wg:", "sv:", "tr:"]
            .iter()
            .find(|p| lower.starts_with(*p))
            .map(|p| p.len());
        match cut {
            Some(n) => s = s[n..].trim_start(),
            None => return s.to_string(),
        }
    }
}

/// `GET /messages/{id}`: the message page.
async fn message(
    State(state): State<WebState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let caller = match signed_in(
        caller,
        &format!("/messages/{}", models::encode_component(&id)),
    ) {
        Ok(c) => c,
        Err(redirect) => return Ok(*redirect),
    };
    caller.require_scope(ApiScope::Read)?;
    let viewer = viewer(&caller);
    let can_restore =
        may_restore(&caller.principal) && state.config().restore_credentials.is_some();
    let principal = caller.principal.clone();
    let (message, conversation) = blocking(&state, move |s| {
        let message = s.message_view(&principal, &id)?;
        let subject = thread_subject(message.info.metadata.subject.as_deref().unwrap_or(""));
        let user = message.info.locations.first().map(|(u, _)| u.clone());
        let mut conversation = Vec::new();
        let words: String = subject
            .chars()
            .map(|c| if c.is_alphanumeric() { c } else { ' ' })
            .collect();
        if !words.trim().is_empty() {
            let request = SearchRequest {
                text: format!("subject:({})", words.trim()),
                user,
                from_date: None,
                to_date: None,
                limit: 50,
            };
            if let Ok(hits) = s.search(&principal, &request) {
                conversation = hits
                    .into_iter()
                    .filter(|h| thread_subject(h.subject.as_deref().unwrap_or("")) == subject)
                    .collect();
            }
        }
        Ok((message, conversation))
    })
    .await?;
    let body = message.html.as_deref().map(|html| {
        let mut policy = render::BodyPolicy::new();
        for a in &message.attachments {
            if let Some(cid) = &a.content_id {
                policy = policy.with_cid(
                    cid,
                    &format!("/messages/{}/inline/{}", message.info.id.0, a.index),
                );
            }
        }
        render::sanitize_html(html, &policy)
    });
    let mut conversation: Vec<_> = conversation
        .into_iter()
        .map(|h| {
            (
                h.date,
                models::ConversationItem {
                    id: h.id.0,
                    date: day(h.date),
                    from: h.from.unwrap_or_default(),
                    subject: h.subject.unwrap_or_default(),
                },
            )
        })
        .collect();
    conversation.sort_by_key(|c| c.0);
    conversation.dedup_by(|a, b| a.1.id == b.1.id);
    let (user, folder) = message.info.locations.first().cloned().unwrap_or_default();
    let meta = &message.info.metadata;
    let view = models::MessageView {
        viewer,
        id: message.info.id.0.clone(),
        user,
        folder,
        subject: meta.subject.clone().unwrap_or_default(),
        from: meta.from.clone().unwrap_or_default(),
        to: message.to.clone(),
        cc: message.cc.clone(),
        date: day(meta.date),
        attachments: message
            .attachments
            .iter()
            .map(|a| models::AttachmentView {
                index: a.index,
                file_name: a.name.clone(),
                content_type: a.content_type.clone(),
                size: a.size,
            })
            .collect(),
        blocked_remote_images: body.as_ref().map_or(0, |b| b.blocked_remote_images),
        conversation: conversation.into_iter().map(|(_, c)| c).collect(),
        can_restore,
    };
    Ok(page(render::message_page(&view)))
}

/// `GET /messages/{id}/body`: the sanitised body as its own document, for the
/// sandboxed frame (its own CSP: no script, images only from this site).
async fn message_body(
    State(state): State<WebState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    caller.require_scope(ApiScope::Read)?;
    let name = caller.name.clone();
    let principal = caller.principal;
    let message = blocking(&state, move |s| Ok(s.message_view(&principal, &id)?)).await?;
    let body = match message.html.as_deref() {
        Some(html) => {
            let mut policy = render::BodyPolicy::new();
            for a in &message.attachments {
                if let Some(cid) = &a.content_id {
                    let link = crate::inline::link(
                        &state.inner.inline_key,
                        &name,
                        &message.info.id.0,
                        a.index,
                        state.now(),
                    );
                    policy = policy.with_cid(cid, &link);
                }
            }
            render::sanitize_html(html, &policy).html
        }
        None => render::text_to_html(&message.text),
    };
    let mut response = page(render::message_document(&body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(render::MESSAGE_BODY_CSP),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    Ok(response)
}

/// Image types shown inline (never SVG, which can carry script).
const INLINE_IMAGE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
];

/// `GET /messages/{id}/inline/{n}`: an inline image of the body (`cid:`).
/// The signature of an inline image link (see [`crate::inline`]).
#[derive(Deserialize, Default)]
struct InlineLink {
    #[serde(default)]
    u: Option<String>,
    #[serde(default)]
    e: Option<i64>,
    #[serde(default)]
    t: Option<String>,
}

async fn inline_part(
    State(state): State<WebState>,
    caller: MaybeCaller,
    Path((id, n)): Path<(String, usize)>,
    Query(link): Query<InlineLink>,
) -> Result<Response, PageError> {
    let principal = match (caller.0, link.u, link.e, link.t) {
        (Some(caller), _, _, _) => {
            caller.require_scope(ApiScope::Read)?;
            caller.principal
        }
        (None, Some(user), Some(expires), Some(token)) => {
            let now = state.now();
            let key = &state.inner.inline_key;
            if !crate::inline::verify(key, &user, &id, n, expires, &token, now) {
                return Err(WebError::Unauthenticated.into());
            }
            state
                .service()
                .principal_for(&user, now)
                .map_err(|_| WebError::Unauthenticated)?
        }
        _ => return Err(WebError::Unauthenticated.into()),
    };
    let part = blocking(&state, move |s| {
        Ok(s.message_attachment(&principal, &id, n)?)
    })
    .await?;
    let content_type = part.info.content_type.as_str();
    if !INLINE_IMAGE_TYPES.contains(&content_type) {
        return Err(WebError::NotFound("no inline image here".into()).into());
    }
    let mut response = (StatusCode::OK, part.bytes).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}

/// The query of `GET /folders`.
#[derive(Deserialize)]
struct FoldersQuery {
    #[serde(default)]
    user: Option<String>,
}

/// `GET /folders`: the folder tree of an archive.
async fn folders(
    State(state): State<WebState>,
    caller: MaybeCaller,
    Query(query): Query<FoldersQuery>,
) -> Result<Response, PageError> {
    let caller = match signed_in(caller, "/folders") {
        Ok(c) => c,
        Err(redirect) => return Ok(*redirect),
    };
    caller.require_scope(ApiScope::Read)?;
    let viewer = viewer(&caller);
    let principal = caller.principal.clone();
    let asked = query.user.filter(|u| !u.trim().is_empty());
    let own = caller.name.clone();
    let (user, archives, folders) = blocking(&state, move |s| {
        let archives = s.visible_archives(&principal)?;
        let user = asked.unwrap_or_else(|| {
            if archives.contains(&own) {
                own.clone()
            } else {
                archives.first().cloned().unwrap_or(own)
            }
        });
        // An archive outside the visible ones goes to the service all the same,
        // which refuses it and records the refusal.
        let folders = s.archive_folders(&principal, &user)?;
        Ok((user, archives, folders))
    })
    .await?;
    let view = models::FoldersView {
        viewer,
        user,
        archives: archives
            .into_iter()
            .map(|user| models::ArchiveOption {
                label: user.clone(),
                user,
            })
            .collect(),
        folders: folders
            .into_iter()
            .map(|f| models::FolderCount {
                path: f.path,
                count: f.messages,
            })
            .collect(),
    };
    Ok(page(render::folders_page(&view)))
}

/// The export form of the search page.
#[derive(Deserialize)]
struct ExportForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    folder: Option<String>,
    format: String,
}

/// The search text with the form's date range as a query term.
fn with_date_range(q: &str, from: Option<&str>, to: Option<&str>) -> Result<String, WebError> {
    let bound = |name: &str, v: Option<&str>| -> Result<Option<String>, WebError> {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| {
                api::parse_date(name, v)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            })
            .transpose()
    };
    let (from, to) = (bound("from", from)?, bound("to", to)?);
    if from.is_none() && to.is_none() {
        return Ok(q.to_string());
    }
    let range = format!(
        "date:[{} TO {}}}",
        from.unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
        to.unwrap_or_else(|| "9999-12-31T00:00:00Z".into())
    );
    Ok(format!("{} {range}", q.trim()).trim().to_string())
}

/// `POST /export`: the search (or the archive) as an mbox or a zip of `.eml`.
async fn export(
    State(state): State<WebState>,
    caller: Caller,
    Form(form): Form<ExportForm>,
) -> Result<Response, PageError> {
    caller.require_scope(ApiScope::Export)?;
    caller.check_csrf(form.csrf.as_deref())?;
    let user = form
        .user
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| caller.name.clone());
    let query = with_date_range(
        form.q.as_deref().unwrap_or(""),
        form.from.as_deref(),
        form.to.as_deref(),
    )?;
    let body = ExportBody {
        query: Some(query),
        user,
        folder: form.folder,
        format: form.format,
    };
    Ok(api::export_download(&state, caller.principal, body).await?)
}

/// The restore form of the message page.
#[derive(Deserialize)]
struct RestoreForm {
    #[serde(default)]
    csrf: Option<String>,
    id: String,
    #[serde(default)]
    to_folder: Option<String>,
}

/// `POST /restore`: restores one message; answers a page with the outcome.
async fn restore(
    State(state): State<WebState>,
    caller: Caller,
    Form(form): Form<RestoreForm>,
) -> Result<Response, PageError> {
    caller.require_scope(ApiScope::Restore)?;
    caller.check_csrf(form.csrf.as_deref())?;
    let viewer = viewer(&caller);
    let body = RestoreBody {
        ids: vec![form.id.clone()],
        to_mailbox: None,
        to_folder: form.to_folder,
    };
    let answer = api::run_restore(&state, caller.principal, body).await?;
    let text = format!(
        "Restored {} message(s) to {} in folder {} ({} already there, {} failed).",
        answer.restored,
        answer.to_mailbox,
        answer.to_folder,
        answer.skipped_existing,
        answer.failed
    );
    let content = maud::html! {
        section.notice {
            h1 { "Restore" }
            p.restore-result { (text) }
            p { a href=(format!("/messages/{}", models::encode_component(&form.id))) { "Back to the message" } }
        }
    };
    Ok(page(render::layout(
        Some(&viewer),
        None,
        "Restore",
        content,
    )))
}

fn holds_view(
    caller: &Caller,
    service: &archiver_service::Service,
    notice: Option<String>,
) -> Result<models::HoldsView, WebError> {
    let holds = service.holds(&caller.principal)?;
    let policies = service.retention_policies(&caller.principal)?;
    let selector_scope = |users: &[String], folders: &[String], query: &Option<String>| {
        let mut parts = Vec::new();
        parts.push(if users.is_empty() {
            "all archives".to_string()
        } else {
            users.join(", ")
        });
        if !folders.is_empty() {
            parts.push(format!("folders {}", folders.join(", ")));
        }
        if let Some(q) = query {
            parts.push(format!("query {q}"));
        }
        parts.join("; ")
    };
    Ok(models::HoldsView {
        viewer: viewer(caller),
        holds: holds
            .into_iter()
            .map(|h| models::HoldRow {
                id: h.case.clone(),
                name: h.case,
                query: h.scope.query.clone().unwrap_or_default(),
                users: h.scope.users.clone(),
                created: day(Some(h.created)),
                created_by: h.created_by,
                released: h
                    .released
                    .map(|r| format!("{} by {}: {}", day(Some(r.at)), r.by, r.reason)),
            })
            .collect(),
        policies: policies
            .into_iter()
            .map(|p| models::PolicyRow {
                id: p.name.clone(),
                scope: selector_scope(&p.scope.users, &p.scope.folders, &p.scope.query),
                name: p.name,
                min_days: Some(p.min_days),
                max_days: p.max_days,
                basis: format!("{:?}", p.reference).to_lowercase(),
            })
            .collect(),
        notice,
    })
}

/// `GET /holds`: legal holds and retention policies.
async fn holds(State(state): State<WebState>, caller: MaybeCaller) -> Result<Response, PageError> {
    let caller = match signed_in(caller, "/holds") {
        Ok(c) => c,
        Err(redirect) => return Ok(*redirect),
    };
    caller.require_scope(ApiScope::Governance)?;
    let view = blocking(&state, move |s| holds_view(&caller, s, None)).await?;
    Ok(page(render::holds_page(&view)))
}

fn list(value: &Option<String>) -> Vec<String> {
    value
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The hold form.
#[derive(Deserialize)]
struct HoldForm {
    #[serde(default)]
    csrf: Option<String>,
    name: String,
    reason: String,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    users: Option<String>,
}

async fn governance_change(
    state: &WebState,
    caller: Caller,
    csrf: Option<&str>,
    change: impl FnOnce(&archiver_service::Service, &Principal) -> Result<String, WebError>
    + Send
    + 'static,
) -> Result<Response, PageError> {
    caller.require_scope(ApiScope::Governance)?;
    caller.check_csrf(csrf)?;
    let view = blocking(state, move |s| {
        let notice = change(s, &caller.principal)?;
        holds_view(&caller, s, Some(notice))
    })
    .await?;
    Ok(page(render::holds_page(&view)))
}

/// `POST /holds`: places a legal hold.
async fn create_hold(
    State(state): State<WebState>,
    caller: Caller,
    Form(form): Form<HoldForm>,
) -> Result<Response, PageError> {
    let csrf = form.csrf.clone();
    governance_change(&state, caller, csrf.as_deref(), move |s, p| {
        let spec = HoldSpec {
            case: form.name.trim().to_string(),
            reason: form.reason,
            users: list(&form.users),
            query: form.query.filter(|q| !q.trim().is_empty()),
            from: None,
            to: None,
        };
        let hold = s.create_hold(p, &spec)?;
        Ok(format!("Hold {} placed.", hold.case))
    })
    .await
}

/// The release form.
#[derive(Deserialize)]
struct ReleaseForm {
    #[serde(default)]
    csrf: Option<String>,
    id: String,
    reason: String,
}

/// `POST /holds/release`.
async fn release_hold(
    State(state): State<WebState>,
    caller: Caller,
    Form(form): Form<ReleaseForm>,
) -> Result<Response, PageError> {
    let csrf = form.csrf.clone();
    governance_change(&state, caller, csrf.as_deref(), move |s, p| {
        let hold = s.release_hold(p, &form.id, &form.reason)?;
        Ok(format!("Hold {} released.", hold.case))
    })
    .await
}

/// The retention policy form.
#[derive(Deserialize)]
struct PolicyForm {
    #[serde(default)]
    csrf: Option<String>,
    name: String,
    #[serde(default)]
    min_days: Option<String>,
    #[serde(default)]
    max_days: Option<String>,
    #[serde(default)]
    users: Option<String>,
    #[serde(default)]
    folders: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    basis: Option<String>,
}

fn days(name: &str, value: &Option<String>) -> Result<Option<i64>, WebError> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            WebError::BadRequest(format!(
                "`{name}` must be a number of days, not `{}`",
                v.chars().take(20).collect::<String>()
            ))
        }),
    }
}

/// `POST /retention`: adds a retention policy.
async fn add_policy(
    State(state): State<WebState>,
    caller: Caller,
    Form(form): Form<PolicyForm>,
) -> Result<Response, PageError> {
    let csrf = form.csrf.clone();
    let min_days = days("min_days", &form.min_days)?.unwrap_or(0);
    let max_days = days("max_days", &form.max_days)?;
    governance_change(&state, caller, csrf.as_deref(), move |s, p| {
        let spec = PolicySpec {
            name: form.name.trim().to_string(),
            min_days,
            max_days,
            users: list(&form.users),
            folders: list(&form.folders),
            query: form.query.filter(|q| !q.trim().is_empty()),
            reference: form.basis.filter(|b| !b.trim().is_empty()),
        };
        let policy = s.add_retention_policy(p, &spec)?;
        Ok(format!("Policy {} added.", policy.name))
    })
    .await
}

/// The policy removal form.
#[derive(Deserialize)]
struct RemovePolicyForm {
    #[serde(default)]
    csrf: Option<String>,
    id: String,
}

/// `POST /retention/remove`.
async fn remove_policy(
    State(state): State<WebState>,
    caller: Caller,
    Form(form): Form<RemovePolicyForm>,
) -> Result<Response, PageError> {
    let csrf = form.csrf.clone();
    governance_change(&state, caller, csrf.as_deref(), move |s, p| {
        let policy = s.remove_retention_policy(p, &form.id)?;
        Ok(format!("Policy {} removed.", policy.name))
    })
    .await
}

/// The audit filter.
#[derive(Deserialize, Default)]
struct AuditQuery {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// `GET /audit`: the audit log, filtered.
async fn audit(
    State(state): State<WebState>,
    caller: MaybeCaller,
    headers: HeaderMap,
    Query(query): Query<AuditQuery>,
) -> Result<Response, PageError> {
    let _ = headers;
    let caller = match signed_in(caller, "/audit") {
        Ok(c) => c,
        Err(redirect) => return Ok(*redirect),
    };
    caller.require_scope(ApiScope::Audit)?;
    let viewer = viewer(&caller);
    let limit = match query
        .limit
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| WebError::BadRequest("`limit` must be 1 to 10000".into()))?,
    };
    let since = query
        .since
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| api::parse_date("since", v))
        .transpose()?;
    let actor = query.actor.clone().unwrap_or_default();
    let principal = caller.principal.clone();
    let events = blocking(&state, move |s| {
        Ok(s.audit_events(
            &principal,
            &archiver_service::audit_log::ListQuery {
                since,
                limit: Some(limit),
            },
        )?)
    })
    .await?;
    let rows: Vec<models::AuditRow> = events
        .into_iter()
        .filter(|e| actor.trim().is_empty() || e.actor.contains(actor.trim()))
        .map(|e| models::AuditRow {
            seq: e.seq,
            time: e.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            actor: e.actor,
            action: e.action.name(),
            target: [
                e.target.user.clone().map(|u| format!("archive {u}")),
                e.target.object.clone(),
                e.target.query.clone().map(|q| format!("query {q}")),
                (!e.target.messages.is_empty())
                    .then(|| format!("{} message(s)", e.target.messages.len())),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; "),
            outcome: match &e.outcome {
                archiver_service::audit_log::Outcome::Allowed => "allowed".to_string(),
                other => format!("{other:?}"),
            },
            detail: e
                .details
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let view = models::AuditView {
        viewer,
        filter: models::AuditFilter {
            since: query.since.unwrap_or_default(),
            actor: query.actor.unwrap_or_default(),
            limit: limit.to_string(),
        },
        events: rows,
        next_since: None,
    };
    Ok(page(render::audit_page(&view)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_subjects_drop_reply_prefixes() {
        assert_eq!(thread_subject("Re: RE: Fwd: Budget"), "Budget");
        assert_eq!(thread_subject("Budget"), "Budget");
        assert_eq!(thread_subject("re:"), "");
    }

    #[test]
    fn sender_domains_come_from_the_address() {
        assert_eq!(
            sender_domain("Ann <ann@Example.org>").as_deref(),
            Some("example.org")
        );
        assert_eq!(sender_domain("bob@x.y").as_deref(), Some("x.y"));
        assert_eq!(sender_domain("nobody"), None);
    }

    #[test]
    fn export_dates_become_a_range_term() {
        assert_eq!(with_date_range("a", None, None).ok().as_deref(), Some("a"));
        assert_eq!(
            with_date_range("a", Some("2024-01-01"), None)
                .ok()
                .as_deref(),
            Some("a date:[2024-01-01T00:00:00Z TO 9999-12-31T00:00:00Z}")
        );
        assert!(with_date_range("a", Some("soon"), None).is_err());
    }
}
