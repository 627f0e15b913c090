//! The gates every Graph request passes before a handler, outermost first:
//! 1. context: `request-id`/`client-request-id`, counters (requests, routes, bytes served);
//! 2. token: `Authorization: Bearer` checked against the identity platform (401
//!    `InvalidAuthenticationToken` otherwise);
//! 3. permissions: the app roles the token carries (less those withdrawn through the control API)
//!    must include one the route needs (403 `ErrorAccessDenied` / `Authorization_RequestDenied`);
//! 4. throttle: Outlook limits per app and mailbox on mail routes (429 `ApplicationThrottled`),
//!    plus the mail service latency inside the admitted slot;
//! 5. faults: seeded 503/504, reset, truncation and slowness (outer requests only).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use hyper::body::{Frame, SizeHint};
use tracing::Instrument as _;

use crate::faults::Fault;
use crate::identity::{Caller, TokenRejection};
use crate::state::{AppState, InnerRequest, RequestContext, graph_error};

/// Per-connection control the server puts into each request: lets the fault gate ask for the
/// connection to be reset (closed with RST) rather than closed.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionControl {
    /// Set to make the connection close with a TCP reset.
    pub(crate) reset: Arc<AtomicBool>,
}

/// Puts the `request-id` and `client-request-id` headers on a response.
pub(crate) fn set_request_headers(headers: &mut HeaderMap, context: &RequestContext) {
    if let Ok(value) = HeaderValue::from_str(&context.request_id) {
        headers.insert("request-id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&context.client_request_id) {
        headers.insert("client-request-id", value);
    }
}

/// Outlook resources under `/users/{id}/...`: requests to these count against the mailbox.
const MAIL_SEGMENTS: [&str; 9] = [
    "messages",
    "mailfolders",
    "mailboxsettings",
    "events",
    "calendar",
    "calendars",
    "contacts",
    "contactfolders",
    "inferenceclassification",
];

/// Of a `/{v1.0|beta}/users...` path: the user segment (if any) and the resource segment after
/// it (if any, without a `(...)` suffix). `None` for other paths.
fn user_route(path: &str) -> Option<(Option<&str>, Option<&str>)> {
    let mut segments = path.trim_start_matches('/').split('/');
    let version = segments.next()?;
    if !version.eq_ignore_ascii_case("v1.0") && !version.eq_ignore_ascii_case("beta") {
        return None;
    }
    if !segments.next()?.eq_ignore_ascii_case("users") {
        return None;
    }
    let user = segments.next();
    let resource = segments.next().map(|r| r.split('(').next().unwrap_or(r));
    Some((user, resource))
}

/// The user segment of a mail route (`/v1.0/users/{user}/messages/...`), if this is one.
pub(crate) fn mailbox_segment(path: &str) -> Option<&str> {
    let (user, resource) = user_route(path)?;
    let resource = resource?.to_ascii_lowercase();
    MAIL_SEGMENTS.contains(&resource.as_str()).then_some(user?)
}

/// Gate 1: request ids and counters.
pub(crate) async fn context(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = request
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| request_id.clone(), str::to_owned);
    let context = RequestContext {
        request_id,
        client_request_id,
    };
    let inner = request.extensions().get::<InnerRequest>().is_some();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", MatchedPath::as_str)
        .to_owned();
    state.stats.route(&format!("{} {route}", request.method()));
    if !inner {
        state.stats.request();
    }
    let span = tracing::debug_span!(
        "graph_request",
        request_id = %context.request_id,
        method = %request.method(),
        route = %route,
        inner,
    );
    request.extensions_mut().insert(context.clone());
    let mut response = next.run(request).instrument(span).await;
    set_request_headers(response.headers_mut(), &context);
    if inner {
        return response;
    }
    let (parts, body) = response.into_parts();
    let counter = Arc::clone(&state);
    let body = body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            counter.stats.bytes(data.len() as u64);
        }
        frame
    });
    Response::from_parts(parts, Body::new(body))
}

/// Gate 2: the bearer token.
pub(crate) async fn token(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let context = request.extensions().get::<RequestContext>().cloned();
    if request
        .uri()
        .path()
        .starts_with(crate::graph::upload::UPLOAD_PREFIX)
    {
        // Upload URLs are pre-authenticated: their handler checks the token in the query.
        return next.run(request).await;
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let checked = match bearer.as_deref() {
        None | Some("") => Err(TokenRejection::Missing),
        Some(token) => state.identity.validate(token),
    };
    match checked {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            let roles = bearer.as_deref().map(token_roles).unwrap_or_default();
            request.extensions_mut().insert(GrantedRoles(roles));
            next.run(request).await
        }
        Err(rejection) => {
            tracing::debug!(?rejection, path = %request.uri().path(), "bearer token refused");
            let mut response = graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                rejection.message(),
                context.as_ref(),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
                ),
            );
            response
        }
    }
}

/// The `roles` claim of a token the identity platform has already checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct GrantedRoles(pub(crate) Vec<String>);

/// The `roles` claim of a JWT (empty when it has none).
fn token_roles(token: &str) -> Vec<String> {
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Claims {
        #[serde(default)]
        roles: Vec<String>,
    }
    token
        .split('.')
        .nth(1)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload.trim_end_matches('='))
                .ok()
        })
        .and_then(|json| serde_json::from_slice::<Claims>(&json).ok())
        .map(|claims| claims.roles)
        .unwrap_or_default()
}

/// Which family of permissions a route belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permission {
    /// Reading mail: Mail.Read or Mail.ReadWrite.
    MailRead,
    /// Changing mail (DELETE, move, permanentDelete): Mail.ReadWrite.
    MailWrite,
    /// `mailboxSettings`: MailboxSettings.Read or MailboxSettings.ReadWrite.
    MailboxSettings,
    /// The directory (`/users`, `settings/exchange`): User.Read.All or broader.
    Directory,
}

impl Permission {
    /// The application roles of which any one suffices.
    pub(crate) fn roles(self) -> &'static [&'static str] {
        match self {
            Permission::MailRead => &["Mail.Read", "Mail.ReadWrite"],
            Permission::MailWrite => &["Mail.ReadWrite"],
            Permission::MailboxSettings => &["MailboxSettings.Read", "MailboxSettings.ReadWrite"],
            Permission::Directory => &[
                "User.Read.All",
                "User.ReadWrite.All",
                "Directory.Read.All",
                "Directory.ReadWrite.All",
            ],
        }
    }

    /// The status, code and message Graph refuses a call with when the app lacks the role.
    fn denial(self) -> (&'static str, &'static str) {
        match self {
            Permission::Directory => (
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            ),
            _ => (
                "ErrorAccessDenied",
                "Access is denied. Check credentials and try again.",
            ),
        }
    }
}

/// The permission a Graph path needs (`None`: none, e.g. `$batch`, whose inner requests are
/// checked one by one).
pub(crate) fn required_permission(method: &axum::http::Method, path: &str) -> Option<Permission> {
    let (_, resource) = user_route(path)?;
    let Some(resource) = resource else {
        return Some(Permission::Directory);
    };
    if resource.eq_ignore_ascii_case("mailboxSettings") {
        Some(Permission::MailboxSettings)
    } else if resource.eq_ignore_ascii_case("messages")
        || resource.eq_ignore_ascii_case("mailFolders")
    {
        Some(if method == axum::http::Method::GET {
            Permission::MailRead
        } else {
            Permission::MailWrite
        })
    } else {
        Some(Permission::Directory)
    }
}

/// Gate 3: the app roles a route needs.
pub(crate) async fn permissions(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(permission) = required_permission(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let withdrawn = state.withdrawn_roles();
    let allowed = request
        .extensions()
        .get::<GrantedRoles>()
        .is_some_and(|granted| {
            granted.0.iter().any(|role| {
                !withdrawn.contains(role)
                    && permission
                        .roles()
                        .iter()
                        .any(|needed| needed.eq_ignore_ascii_case(role))
            })
        });
    if allowed {
        return next.run(request).await;
    }
    let context = request.extensions().get::<RequestContext>().cloned();
    let (code, message) = permission.denial();
    graph_error(StatusCode::FORBIDDEN, code, message, context.as_ref())
}

/// Gate 4: Outlook throttling per app and mailbox, and the mail service latency.
pub(crate) async fn throttle(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let (app, mailbox) = if request
        .uri()
        .path()
        .starts_with(crate::graph::upload::UPLOAD_PREFIX)
    {
        // An upload URL counts against the mailbox and app its session was created for.
        let owner = state.uploads.owner(request.uri().query());
        match owner {
            Some(owner) => owner,
            None => return next.run(request).await,
        }
    } else {
        let Some(segment) = mailbox_segment(request.uri().path()) else {
            return next.run(request).await;
        };
        let Some(mailbox) = state.tenant.resolve_mailbox(segment) else {
            // Unknown user: the handler answers ErrorInvalidUser.
            return next.run(request).await;
        };
        let app = request
            .extensions()
            .get::<Caller>()
            .map_or_else(String::new, |c| c.app_id.clone());
        (app, mailbox)
    };
    let admission = match state.throttle.admit(&app, &mailbox) {
        Ok(admission) => admission,
        Err(refusal) => {
            state.stats.mailbox_request(&mailbox, true, 0);
            tracing::debug!(mailbox = %mailbox, ?refusal, "request throttled");
            let context = request.extensions().get::<RequestContext>().cloned();
            let mut response = graph_error(
                StatusCode::TOO_MANY_REQUESTS,
                "ApplicationThrottled",
                refusal.message(),
                context.as_ref(),
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(refusal.retry_after()),
            );
            return response;
        }
    };
    state
        .stats
        .mailbox_request(&mailbox, false, u64::from(admission.concurrency));
    let latency = state.mail_latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let response = next.run(request).await;
    // The slot stays taken until the body's last frame has been produced (or the body dropped).
    let (parts, body) = response.into_parts();
    let slot = (!body.is_end_stream()).then_some(admission.slot);
    Response::from_parts(parts, Body::new(SlotBody { inner: body, slot }))
}

/// A response body holding a throttle slot: released as the last frame leaves, so a client that
/// has read a whole response never finds its slot still taken.
struct SlotBody {
    inner: Body,
    slot: Option<crate::throttle::Slot>,
}

impl HttpBody for SlotBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let finished = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if finished {
            this.slot.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Gate 5: seeded faults (outer requests only).
pub(crate) async fn faults(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if request.extensions().get::<InnerRequest>().is_some() {
        return next.run(request).await;
    }
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().path().to_owned(), |p| p.to_string());
    let plan = state
        .faults
        .plan(request.method().as_str(), &path_and_query);
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    let Some(fault) = plan.fault else {
        return next.run(request).await;
    };
    state.stats.fault();
    let context = request.extensions().get::<RequestContext>().cloned();
    tracing::debug!(?fault, path = %path_and_query, "injecting fault");
    match fault {
        Fault::ServiceUnavailable { retry_after } => {
            let mut response = graph_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                "The service is temporarily unavailable. Please retry later.",
                context.as_ref(),
            );
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Fault::GatewayTimeout => graph_error(
            StatusCode::GATEWAY_TIMEOUT,
            "UnknownError",
            "The gateway did not receive a response in time.",
            context.as_ref(),
        ),
        Fault::Reset | Fault::Truncate => {
            let control = request.extensions().get::<ConnectionControl>().cloned();
            let response = next.run(request).await;
            let (mut parts, body) = response.into_parts();
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => Bytes::new(),
            };
            if fault == Fault::Reset
                && let Some(control) = control
            {
                control.reset.store(true, Ordering::SeqCst);
            }
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            let sent = bytes.slice(..bytes.len() / 2);
            let first = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(sent) });
            // Give the first half time to leave before the connection dies.
            let cut = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected fault: connection cut mid-body",
                ))
            });
            Response::from_parts(parts, Body::from_stream(first.chain(cut)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mailbox_segment;
    use proptest::prelude::*;

    #[test]
    fn mail_routes_name_their_mailbox_and_directory_routes_do_not() {
        let mail = [
            ("/v1.0/users/a%40x.com/messages/AAMk/$value", "a%40x.com"),
            (
                "/v1.0/users/a@x.com/mailFolders/inbox/messages/delta()",
                "a@x.com",
            ),
            ("/v1.0/Users/ID/MailFolders", "ID"),
            ("/v1.0/users/a@x.com/messages", "a@x.com"),
        ];
        for (path, user) in mail {
            assert_eq!(mailbox_segment(path), Some(user), "{path}");
        }
        for path in [
            "/v1.0/users",
            "/v1.0/users/a@x.com",
            "/v1.0/users/delta",
            "/v1.0/$batch",
            "/v2/users/a/messages",
            "",
        ] {
            assert_eq!(mailbox_segment(path), None, "{path}");
        }
    }

    proptest! {
        #[test]
        fn any_path_is_classified_without_panicking(path in "\\PC{0,60}") {
            let _ = mailbox_segment(&path);
        }
    }
}
