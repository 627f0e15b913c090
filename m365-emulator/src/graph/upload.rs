//! Large attachments and the Outlook upload budget.
//!
//! `POST …/messages/{id}/attachments/createUploadSession` (2–150 MB) answers a pre-authenticated
//! `uploadUrl` (no bearer token: an unguessable token in the query authorises it) where the
//! client PUTs chunks of at most 4 MB in order with `Content-Range: bytes a-b/total`; each chunk
//! answers 200 with `nextExpectedRanges`, the last 201 with a `Location`. Sessions expire (the
//! lifetime is divided by `time_scale`).
//!
//! Outlook limits uploads to 150 MB per 5 minutes per app and mailbox: every write request's
//! body counts (creates, PATCHes, attachments, chunks); one that would pass the budget answers
//! 429 with `Retry-After` (the window is divided by `time_scale`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use rand::RngCore as _;
use serde_json::{Value, json};
use std::sync::Arc;

use super::folders::segment;
use super::write::{add_attachment, read_body};
use super::{ApiError, Ctx, json_response, link_base};
use crate::state::AppState;
use crate::tenant::created::CreatedAttachment;

/// Outlook's upload budget per app and mailbox (150 MB).
pub(crate) const UPLOAD_BUDGET_BYTES: u64 = 150 * 1024 * 1024;
/// The budget's window, unscaled (5 minutes).
const UPLOAD_WINDOW: Duration = Duration::from_secs(300);
/// Smallest attachment an upload session takes. Graph's guidance is "3 MB and more through
/// a session", but Exchange takes sessions from 2 MB (2,097,152 bytes) on, and needs to: an
/// attachment just under 3 MB is over 4 MB in base64 and fits no `POST …/attachments`.
const MIN_SESSION_BYTES: u64 = 2 * 1024 * 1024;
/// Largest attachment an upload session takes (150 MB).
const MAX_SESSION_BYTES: u64 = 150 * 1024 * 1024;
/// Lifetime of an upload session, unscaled. Graph documents that a session expires at its
/// `expirationDateTime` but not how long it lives; one hour is the emulator's choice.
const SESSION_LIFETIME: Duration = Duration::from_secs(3600);
/// Path prefix of upload URLs (Outlook's REST root, served on the Graph listener).
pub(crate) const UPLOAD_PREFIX: &str = "/api/v2.0/";

/// One upload session.
#[derive(Debug)]
struct Session {
    app: String,
    /// The user segment the session was created with.
    user: String,
    /// Throttling key of the mailbox (what the throttle gate uses).
    mailbox: String,
    message_id: String,
    name: String,
    content_type: String,
    content_id: Option<String>,
    inline: bool,
    size: u64,
    received: Vec<u8>,
    expires: Instant,
    expires_at: chrono::DateTime<chrono::Utc>,
}

/// (when, bytes) of the uploads in a window, oldest first.
type Window = VecDeque<(Instant, u64)>;

/// Upload sessions and the per-mailbox upload budget.
#[derive(Debug)]
pub(crate) struct Uploads {
    sessions: Mutex<HashMap<String, Session>>,
    /// (app, mailbox) → (when, bytes) of the uploads in the window, oldest first.
    window: Mutex<HashMap<(String, String), Window>>,
    budget: std::sync::atomic::AtomicU64,
    scale: f64,
}

impl Uploads {
    /// Empty, with Outlook's budget; `time_scale` divides the window and session lifetimes.
    pub(crate) fn new(time_scale: f64) -> Uploads {
        Uploads {
            sessions: Mutex::new(HashMap::new()),
            window: Mutex::new(HashMap::new()),
            budget: std::sync::atomic::AtomicU64::new(UPLOAD_BUDGET_BYTES),
            scale: if time_scale > 0.0 && time_scale.is_finite() {
                time_scale
            } else {
                1.0
            },
        }
    }

    fn window_length(&self) -> Duration {
        UPLOAD_WINDOW.div_f64(self.scale)
    }

    /// Sets the budget (bytes per window).
    pub(crate) fn set_budget(&self, bytes: u64) {
        self.budget
            .store(bytes, std::sync::atomic::Ordering::SeqCst);
    }

    /// Bytes uploaded to a mailbox (throttling key) in the current window, all apps together.
    pub(crate) fn bytes_in_window(&self, mailbox: &str) -> u64 {
        let now = Instant::now();
        let window = self.window_length();
        let key = mailbox.to_ascii_lowercase();
        lock(&self.window)
            .iter()
            .filter(|((_, m), _)| *m == key)
            .flat_map(|(_, entries)| entries.iter())
            .filter(|(when, _)| now.saturating_duration_since(*when) < window)
            .map(|(_, bytes)| bytes)
            .sum()
    }

    /// Counts `bytes` against the budget of `app` on `mailbox`, or answers the `Retry-After`
    /// seconds after which they would fit.
    fn charge(&self, app: &str, mailbox: &str, bytes: u64) -> Result<(), u64> {
        let now = Instant::now();
        let window = self.window_length();
        let budget = self.budget.load(std::sync::atomic::Ordering::SeqCst);
        let mut windows = lock(&self.window);
        let entries = windows
            .entry((app.to_owned(), mailbox.to_ascii_lowercase()))
            .or_default();
        while entries
            .front()
            .is_some_and(|(when, _)| now.saturating_duration_since(*when) >= window)
        {
            entries.pop_front();
        }
        let total: u64 = entries.iter().map(|(_, b)| b).sum();
        if total + bytes <= budget {
            entries.push_back((now, bytes));
            return Ok(());
        }
        let mut freed = 0;
        let mut wait = window;
        for (when, b) in entries.iter() {
            freed += b;
            wait = (*when + window).saturating_duration_since(now);
            if total - freed + bytes <= budget {
                break;
            }
        }
        let secs = (wait.as_secs_f64() - 1e-6).ceil().max(1.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let secs = secs as u64;
        Err(secs)
    }

    /// Makes every open session expired.
    pub(crate) fn expire_all(&self) {
        let past = Instant::now();
        for session in lock(&self.sessions).values_mut() {
            session.expires = past;
        }
    }

    /// (app, mailbox throttling key) of the session an upload URL names, for the throttle gate.
    pub(crate) fn owner(&self, query: Option<&str>) -> Option<(String, String)> {
        let token = auth_token(query)?;
        lock(&self.sessions)
            .get(&token)
            .map(|s| (s.app.clone(), s.mailbox.clone()))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn auth_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("authtoken"))
        .map(|(_, v)| v.into_owned())
}

fn throttled(retry_after: u64) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "ApplicationThrottled",
        "Application is over its MailboxUpload limit (150 MB per 5 minutes).",
    );
    error.retry_after = Some(retry_after);
    error
}

/// Counts a write request's body against the upload budget of the caller on `user`'s mailbox.
pub(crate) fn charge(
    state: &AppState,
    ctx: &Ctx,
    user: &str,
    bytes: usize,
) -> Result<(), ApiError> {
    let Some(mailbox) = state.tenant.resolve_mailbox(user) else {
        return Ok(());
    };
    charge_key(
        state,
        ctx.app.as_deref().unwrap_or_default(),
        &mailbox,
        bytes,
    )
}

fn charge_key(state: &AppState, app: &str, mailbox: &str, bytes: usize) -> Result<(), ApiError> {
    if bytes == 0 {
        return Ok(());
    }
    state
        .uploads
        .charge(app, mailbox, bytes as u64)
        .map_err(|retry_after| {
            state.stats.throttled_after_admission(mailbox);
            throttled(retry_after)
        })
}

fn random_token(bytes: usize) -> String {
    use base64::Engine as _;
    let mut raw = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn session_url(state: &AppState, ctx: &Ctx, session: &Session, sid: &str, token: &str) -> String {
    let base = link_base(state, ctx);
    let root = base
        .strip_suffix("/v1.0")
        .or_else(|| base.strip_suffix("/beta"))
        .unwrap_or(&base);
    format!(
        "{root}/api/v2.0/Users('{}')/Messages('{}')/AttachmentSessions('{sid}')?authtoken={token}",
        segment(&session.user),
        segment(&session.message_id)
    )
}

async fn create_session(
    state: &AppState,
    ctx: &Ctx,
    user: &str,
    id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body).await?;
    charge(state, ctx, user, bytes.len())?;
    let request: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "ErrorInvalidRequest",
            format!("Cannot read the request body: {e}"),
        )
    })?;
    let item = request
        .as_object()
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("AttachmentItem"))
                .map(|(_, v)| v)
        })
        .and_then(Value::as_object)
        .ok_or_else(|| {
            ApiError::bad_request(
                "ErrorInvalidParameter",
                "The parameter 'AttachmentItem' is missing.",
            )
        })?;
    let get = |name: &str| {
        item.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    };
    let kind = get("attachmentType")
        .and_then(Value::as_str)
        .unwrap_or("file");
    if !kind.eq_ignore_ascii_case("file") {
        return Err(ApiError::bad_request(
            "ErrorInvalidRequest",
            format!("The emulator takes upload sessions for file attachments only, not '{kind}'."),
        ));
    }
    let size = get("size").and_then(Value::as_u64).ok_or_else(|| {
        ApiError::bad_request("ErrorInvalidParameter", "The AttachmentItem has no size.")
    })?;
    if size < MIN_SESSION_BYTES {
        return Err(ApiError::bad_request(
            "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
            "The attachment size is less than the minimum size (2 MB) for an upload session; POST it to the attachments instead.",
        ));
    }
    if size > MAX_SESSION_BYTES {
        // Graph documents the 150 MB ceiling, not the error; the code is the emulator's choice.
        return Err(ApiError::bad_request(
            "ErrorAttachmentSizeLimitExceeded",
            "The attachment size exceeds the maximum size (150 MB).",
        ));
    }
    let text = |name: &str| get(name).and_then(Value::as_str).map(str::to_owned);
    let mailbox_key = state
        .tenant
        .resolve_mailbox(user)
        .ok_or_else(|| ApiError::mailbox(crate::tenant::MailboxAccess::UnknownUser, user))?;
    {
        let tenant = state.tenant.read();
        let mailbox = tenant
            .mailbox_checked(user)
            .map_err(|a| ApiError::mailbox(a, user))?;
        let record = mailbox.message(id).ok_or_else(ApiError::item_not_found)?;
        if record.created().is_none() {
            return Err(ApiError::bad_request(
                "ErrorInvalidOperation",
                "The emulator adds attachments only to messages created through Graph.",
            ));
        }
    }
    let lifetime = SESSION_LIFETIME.div_f64(state.uploads.scale);
    let expires_at = chrono::Utc::now()
        + chrono::Duration::from_std(lifetime).unwrap_or_else(|_| chrono::Duration::hours(1));
    let session = Session {
        app: ctx.app.clone().unwrap_or_default(),
        user: user.to_owned(),
        mailbox: mailbox_key,
        message_id: id.to_owned(),
        name: text("name").unwrap_or_else(|| "attachment".to_owned()),
        content_type: text("contentType").unwrap_or_else(|| "application/octet-stream".to_owned()),
        content_id: text("contentId")
            .map(|c| c.trim_start_matches('<').trim_end_matches('>').to_owned()),
        inline: get("isInline").and_then(Value::as_bool).unwrap_or(false),
        size,
        received: Vec::new(),
        expires: Instant::now() + lifetime,
        expires_at,
    };
    let sid = random_token(18);
    let token = random_token(32);
    let url = session_url(state, ctx, &session, &sid, &token);
    lock(&state.uploads.sessions).insert(token, session);
    let body = json!({
        "@odata.context": format!("{}/$metadata#microsoft.graph.uploadSession", link_base(state, ctx)),
        "uploadUrl": url,
        "expirationDateTime": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "nextExpectedRanges": ["0-"],
    });
    Ok(json_response(StatusCode::CREATED, &body))
}

/// `POST /users/{u}/messages/{id}/attachments/createUploadSession`.
pub(crate) async fn create_upload_session(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, id)): Path<(String, String)>,
    body: Body,
) -> Response {
    ctx.respond(create_session(&state, &ctx, &user, &id, body).await)
}

/// `bytes a-b/total` → (a, b, total).
fn content_range(ctx: &Ctx) -> Option<(u64, u64, u64)> {
    let value = ctx
        .headers
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?
        .trim();
    let rest = value.strip_prefix("bytes")?.trim();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.trim().split_once('-')?;
    let (start, end, total) = (
        start.trim().parse().ok()?,
        end.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    (start <= end && end < total).then_some((start, end, total))
}

fn unknown_session() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        "The upload URL's token is not valid.",
    )
}

fn expired_session() -> ApiError {
    // Graph documents that the URL stops working at expirationDateTime, not the answer; 404
    // `ErrorItemNotFound` is the emulator's choice (a client creates a new session either way).
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The upload session has expired.",
    )
}

async fn put_chunk(
    state: &AppState,
    ctx: &Ctx,
    query: Option<&str>,
    body: Body,
) -> Result<Response, ApiError> {
    let token = auth_token(query).ok_or_else(unknown_session)?;
    let (app, mailbox) = state.uploads.owner(query).ok_or_else(unknown_session)?;
    let bytes = read_body(body).await?;
    let range = content_range(ctx).ok_or_else(|| {
        ApiError::bad_request(
            "ErrorInvalidRequest",
            "The Content-Range header is missing or not 'bytes {start}-{end}/{total}'.",
        )
    })?;
    let finished = {
        let mut sessions = lock(&state.uploads.sessions);
        let session = sessions.get_mut(&token).ok_or_else(unknown_session)?;
        if Instant::now() >= session.expires {
            sessions.remove(&token);
            return Err(expired_session());
        }
        let (start, end, total) = range;
        if total != session.size || end - start + 1 != bytes.len() as u64 {
            return Err(ApiError::bad_request(
                "ErrorInvalidRequest",
                format!(
                    "Content-Range bytes {start}-{end}/{total} does not match the session ({} bytes) or the {} bytes sent.",
                    session.size,
                    bytes.len()
                ),
            ));
        }
        let next = session.received.len() as u64;
        if start != next {
            // Graph documents that bytes go in order from nextExpectedRanges; the status for a
            // range that does not start there is not documented: 416 is the emulator's choice.
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "ErrorInvalidRange",
                format!("The next expected range starts at byte {next}, not {start}."),
            ));
        }
        drop(sessions);
        charge_key(state, &app, &mailbox, bytes.len())?;
        let mut sessions = lock(&state.uploads.sessions);
        let session = sessions.get_mut(&token).ok_or_else(unknown_session)?;
        if session.received.len() as u64 != start {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "ErrorInvalidRange",
                "Another chunk of this session arrived first.",
            ));
        }
        session.received.extend_from_slice(&bytes);
        if session.received.len() as u64 == session.size {
            sessions.remove(&token)
        } else {
            let body = json!({
                "@odata.context": format!("{}/$metadata#Users('{}')/Messages('{}')/AttachmentSessions/$entity",
                    link_base(state, ctx), segment(&session.user), segment(&session.message_id)),
                "expirationDateTime": session.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "nextExpectedRanges": [session.received.len().to_string()],
            });
            return Ok(json_response(StatusCode::OK, &body));
        }
    };
    let Some(session) = finished else {
        return Err(unknown_session());
    };
    let attachment = CreatedAttachment {
        id: String::new(),
        name: session.name,
        content_type: session.content_type,
        content_id: session.content_id,
        inline: session.inline,
        bytes: session.received.into(),
    };
    let attachment_id = {
        let mut tenant = state.tenant.write();
        let mailbox = tenant
            .mailbox_access_mut(&session.user)
            .map_err(|a| ApiError::mailbox(a, &session.user))?;
        add_attachment(mailbox, &session.message_id, attachment)?
    };
    let base = link_base(state, ctx);
    let root = base
        .strip_suffix("/v1.0")
        .or_else(|| base.strip_suffix("/beta"))
        .unwrap_or(&base);
    let location = format!(
        "{root}/api/v2.0/Users('{}')/Messages('{}')/Attachments('{attachment_id}')",
        segment(&session.user),
        segment(&session.message_id)
    );
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::CREATED;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `PUT {uploadUrl}`: one chunk of an upload session (no bearer token needed).
pub(crate) async fn upload_chunk(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    ctx.respond(put_chunk(&state, &ctx, query.as_deref(), body).await)
}

/// `DELETE {uploadUrl}`: cancels the session (204).
pub(crate) async fn cancel_upload(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    RawQuery(query): RawQuery,
) -> Response {
    ctx.respond((|| {
        let token = auth_token(query.as_deref()).ok_or_else(unknown_session)?;
        lock(&state.uploads.sessions)
            .remove(&token)
            .ok_or_else(unknown_session)?;
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        Ok(response)
    })())
}
