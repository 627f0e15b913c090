//! Graph v1.0 routes: users, mail folders, messages, delta, `$value`, `$batch`.
//!
//! Handlers are strict the way Graph is: unknown query options, page sizes
//! out of range, unsupported filters and stale tokens are refused with Graph's error bodies.
//! The gates (token, throttling, faults) wrap this router; `$batch` sends its inner requests back
//! through them via [`AppState::dispatch_inner`].

mod archive;
mod batch;
mod delta;
mod folders;
mod messages;
mod query;
mod settings;
mod token;
pub(crate) mod upload;
mod users;
mod wire;
mod write;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};

use crate::state::{AppState, RequestContext, graph_error};
use crate::tenant::MailboxAccess;

/// The Graph router (state: [`AppState`]): every route under `/v1.0` and under `/beta`.
fn routes() -> Router<Arc<AppState>> {
    let routes: Vec<(&str, MethodRouter<Arc<AppState>>)> = vec![
        ("/v1.0/users/{user}/mailboxSettings", get(settings::get_all)),
        (
            "/v1.0/users/{user}/mailboxSettings/{property}",
            get(settings::get_property),
        ),
        (
            "/v1.0/users/{user}/settings/exchange",
            get(archive::exchange_settings),
        ),
        ("/v1.0/users", get(users::list)),
        ("/v1.0/users/delta", get(users::delta)),
        ("/v1.0/users/delta()", get(users::delta)),
        ("/v1.0/users/{user}", get(users::get_one)),
        (
            "/v1.0/users/{user}/mailFolders",
            get(folders::list_root).post(write::create_root_folder),
        ),
        ("/v1.0/users/{user}/mailFolders/delta", get(folders::delta)),
        (
            "/v1.0/users/{user}/mailFolders/delta()",
            get(folders::delta),
        ),
        (
            "/v1.0/users/{user}/mailFolders/{folder}",
            get(folders::get_one),
        ),
        (
            "/v1.0/users/{user}/mailFolders/{folder}/childFolders",
            get(folders::list_children).post(write::create_child_folder),
        ),
        (
            "/v1.0/users/{user}/mailFolders/{folder}/messages",
            get(messages::list_folder).post(write::create_in_folder),
        ),
        (
            "/v1.0/users/{user}/mailFolders/{folder}/messages/delta",
            get(delta::messages_delta),
        ),
        (
            "/v1.0/users/{user}/mailFolders/{folder}/messages/delta()",
            get(delta::messages_delta),
        ),
        (
            "/v1.0/users/{user}/mailFolders/{folder}/messages/{id}",
            get(messages::get_in_folder),
        ),
        (
            "/v1.0/users/{user}/mailFolders/{folder}/messages/{id}/$value",
            get(messages::value_in_folder),
        ),
        (
            "/v1.0/users/{user}/messages",
            get(messages::list_mailbox).post(write::create_in_drafts),
        ),
        (
            "/v1.0/users/{user}/messages/{id}",
            get(messages::get_one)
                .delete(messages::delete_one)
                .patch(write::patch_one),
        ),
        (
            "/v1.0/users/{user}/messages/{id}/$value",
            get(messages::value),
        ),
        (
            "/v1.0/users/{user}/messages/{id}/move",
            post(messages::move_one),
        ),
        (
            "/v1.0/users/{user}/messages/{id}/permanentDelete",
            post(messages::permanent_delete),
        ),
        (
            "/v1.0/users/{user}/messages/{id}/attachments",
            post(write::create_attachment),
        ),
        (
            "/v1.0/users/{user}/messages/{id}/attachments/createUploadSession",
            post(upload::create_upload_session),
        ),
        ("/v1.0/$batch", post(batch::batch)),
    ];
    let mut router = Router::new();
    for (path, method_router) in routes {
        let beta = format!("/beta{}", &path["/v1.0".len()..]);
        router = router
            .route(path, method_router.clone())
            .route(&beta, method_router);
    }
    router.route(
        "/api/v2.0/{*rest}",
        axum::routing::put(upload::upload_chunk).delete(upload::cancel_upload),
    )
}

/// The Graph v1.0 router: [`routes`] plus a fallback that retries a path whose segments differ from
/// the canonical spelling only by case (Graph's paths are case-insensitive), else answers 400.
pub(crate) fn router() -> Router<Arc<AppState>> {
    routes()
        .fallback(fallback)
        .layer(axum::middleware::from_fn(archive::mbx_on_beta_only))
}

/// Path segments with a canonical spelling.
const CANONICAL_SEGMENTS: [&str; 17] = [
    "v1.0",
    "beta",
    "mailboxSettings",
    "settings",
    "exchange",
    "users",
    "delta",
    "delta()",
    "mailFolders",
    "childFolders",
    "messages",
    "$value",
    "move",
    "permanentDelete",
    "$batch",
    "attachments",
    "createUploadSession",
];

/// The path with every known literal segment in its canonical case.
fn canonical_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            // `%24value` is `$value`, `delta%28%29` is `delta()`.
            let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
            CANONICAL_SEGMENTS
                .iter()
                .find(|c| c.eq_ignore_ascii_case(&decoded))
                .map_or(segment, |c| *c)
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn fallback(State(state): State<Arc<AppState>>, ctx: Ctx, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let canonical = canonical_path(&path);
    if canonical != path {
        let query = request
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        if let Ok(uri) = format!("{canonical}{query}").parse::<axum::http::Uri>() {
            let mut request = request;
            *request.uri_mut() = uri;
            let retry = routes().fallback(unknown_segment).with_state(state);
            return match tower::ServiceExt::oneshot(retry, request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
        }
    }
    unknown_segment(ctx, request).await
}

async fn unknown_segment(ctx: Ctx, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let segment = path
        .trim_start_matches('/')
        .split('/')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    ctx.error(ApiError::new(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!("Resource not found for the segment '{segment}'."),
    ))
}

/// A Graph error before it becomes a response.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// `Location` header (410 Gone).
    pub(crate) location: Option<String>,
    /// `Retry-After` seconds (429).
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            location: None,
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The error a mail route gives when it cannot reach the mailbox.
    pub(crate) fn mailbox(access: MailboxAccess, user: &str) -> Self {
        match access {
            MailboxAccess::UnknownUser => Self::new(
                StatusCode::NOT_FOUND,
                "ErrorInvalidUser",
                format!("The requested user '{user}' is invalid."),
            ),
            MailboxAccess::NoMailbox => Self::new(
                StatusCode::NOT_FOUND,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            ),
            MailboxAccess::Denied => Self::new(
                StatusCode::FORBIDDEN,
                "ErrorAccessDenied",
                "Access to OData is disabled.",
            ),
        }
    }

    /// 308 Permanent Redirect to `location` (an auxiliary archive), empty body.
    pub(crate) fn redirect(location: String) -> Self {
        let mut error = Self::new(StatusCode::PERMANENT_REDIRECT, "", "");
        error.location = Some(location);
        error
    }

    /// 404 `Request_ResourceNotFound`: a directory route naming no user.
    pub(crate) fn user_not_found(user: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{user}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    pub(crate) fn folder_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ErrorFolderNotFound",
            "The specified folder could not be found in the store.",
        )
    }

    pub(crate) fn item_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        )
    }
}

/// The request's ids (from the context gate) and the Graph base URL it came in on.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) context: Option<RequestContext>,
    /// `{scheme}://{host}/v1.0` (or `/beta` for a beta request).
    pub(crate) base: String,
    /// The request came in under `/beta`.
    pub(crate) beta: bool,
    /// The request's path and query, as sent.
    pub(crate) path_and_query: String,
    pub(crate) headers: HeaderMap,
    /// The calling app's client id (from the bearer token), when there is one.
    pub(crate) app: Option<String>,
}

impl Ctx {
    /// Turns an error into Graph's error response.
    pub(crate) fn error(&self, error: ApiError) -> Response {
        if error.status == StatusCode::PERMANENT_REDIRECT {
            let mut response = Response::new(axum::body::Body::empty());
            *response.status_mut() = error.status;
            if let Some(location) = error.location
                && let Ok(value) = header::HeaderValue::from_str(&location)
            {
                response.headers_mut().insert(header::LOCATION, value);
            }
            if let Some(context) = &self.context {
                crate::gate::set_request_headers(response.headers_mut(), context);
            }
            return response;
        }
        let mut response = graph_error(
            error.status,
            error.code,
            &error.message,
            self.context.as_ref(),
        );
        if let Some(location) = error.location
            && let Ok(value) = header::HeaderValue::from_str(&location)
        {
            response.headers_mut().insert(header::LOCATION, value);
        }
        if let Some(secs) = error.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }

    /// Either the response or the error response.
    pub(crate) fn respond(&self, result: Result<Response, ApiError>) -> Response {
        result.unwrap_or_else(|error| self.error(error))
    }

    /// True when the caller asked for immutable ids.
    pub(crate) fn immutable_ids(&self) -> bool {
        prefer_values(&self.headers).iter().any(|p| {
            let p = p.replace(' ', "");
            p.eq_ignore_ascii_case("IdType=\"ImmutableId\"")
                || p.eq_ignore_ascii_case("IdType=ImmutableId")
        })
    }

    /// `Prefer: odata.maxpagesize=N`.
    pub(crate) fn max_page_size(&self) -> Option<usize> {
        prefer_values(&self.headers).iter().find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("odata.maxpagesize")
                .then(|| value.trim().trim_matches('"').parse().ok())?
        })
    }
}

/// The comma-separated entries of every `Prefer` header.
fn prefer_values(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_prefer)
        .collect()
}

/// Splits a `Prefer` value at commas outside quotes.
fn split_prefer(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for ch in value.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                current.push(ch);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut current).trim().to_owned()),
            _ => current.push(ch),
        }
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_owned());
    }
    parts
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let context = Option::<Extension<RequestContext>>::from_request_parts(parts, state)
            .await
            .ok()
            .flatten()
            .map(|Extension(c)| c);
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        let beta = parts
            .uri
            .path()
            .trim_start_matches('/')
            .split('/')
            .next()
            .is_some_and(|v| v.eq_ignore_ascii_case("beta"));
        let version = if beta { "beta" } else { "v1.0" };
        // http here; `link_base` switches to https when the emulator serves TLS.
        Ok(Ctx {
            context,
            base: format!("http://{host}/{version}"),
            beta,
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), ToString::to_string),
            headers: parts.headers.clone(),
            app: parts
                .extensions
                .get::<crate::identity::Caller>()
                .map(|c| c.app_id.clone()),
        })
    }
}

/// The scheme for links: https when the emulator runs with TLS.
pub(crate) fn link_base(state: &AppState, ctx: &Ctx) -> String {
    if state.config.tls && ctx.base.starts_with("http://") {
        format!("https://{}", &ctx.base["http://".len()..])
    } else {
        ctx.base.clone()
    }
}

/// `application/json` response with OData metadata minimal.
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"),
    );
    response
}
