//! The control API on loopback (`admin_url`): counters, mailbox and directory changes, fault
//! rates, token revocation, the app's redirect URIs. Tests, the demo and benchmarks drive the tenant through it while an
//! archiver runs against Graph.
//!
//! ```text
//! GET    /stats                              counters (EmulatorStats)
//! POST   /mailboxes/{upn}/messages?folder=F  body: raw MIME → 201 {"id"}
//! DELETE /mailboxes/{upn}/messages/{id}      → 204 (gone for good; `?mode=soft` moves it to
//!                                            Recoverable Items/Deletions as Graph's DELETE does,
//!                                            `?mode=hard` to Purges as permanentDelete does)
//! POST   /mailboxes/{upn}/archive/messages?folder=F  raw MIME into the online archive (F: folder
//!                                            id or display name, default Inbox) → 201 {"id"}
//! GET    /users                              → [UserInfo]
//! POST   /users                              NewUser → 201 UserInfo
//! PATCH  /users/{id}                         UserPatch → 200 UserInfo
//! DELETE /users/{id}                         → 204
//! GET    /faults, POST /faults               FaultConfig
//! POST   /tokens/revoke                      → 204
//! POST   /tokens/lifetime                    {"seconds": N} → 204
//! GET    /app/withdrawn-roles                → ["MailboxSettings.Read", ...]
//! PUT    /app/withdrawn-roles                ["MailboxSettings.Read"] → 204 (Graph answers 403
//!                                            where a route needs only withdrawn roles; [] restores)
//! GET    /redirect-uris                      → ["https://…", ...] (the app's web redirect URIs)
//! POST   /redirect-uris                      {"uri": "https://…"} → 201 ["https://…", ...]
//!                                            (400 for a URI app registration refuses)
//! ```
//!
//! `POST /users` takes an optional `"purpose"`: `user` (default), `shared`, `room`, `equipment`,
//! `linked`, `others` or `unknown`, answered by Graph's `mailboxSettings.userPurpose`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use serde::Deserialize;

use crate::state::AppState;
use crate::tenant::{NewUser, TenantError, UserPatch};
use crate::{EmulatorStats, FaultConfig};

/// The control routes.
pub(crate) fn router() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/stats", get(stats))
        .route("/mailboxes/{upn}/messages", post(deliver))
        .route("/mailboxes/{upn}/messages/{id}", delete(delete_message))
        .route(
            "/mailboxes/{upn}/archive/messages",
            post(deliver_to_archive),
        )
        .route("/users", get(list_users).post(add_user))
        .route("/users/{id}", patch(update_user).delete(delete_user))
        .route("/faults", get(get_faults).post(set_faults))
        .route("/tokens/revoke", post(revoke))
        .route("/tokens/lifetime", post(token_lifetime))
        .route(
            "/app/withdrawn-roles",
            get(get_withdrawn_roles).put(set_withdrawn_roles),
        )
        .route(
            "/redirect-uris",
            get(get_redirect_uris).post(add_redirect_uri),
        )
}

async fn get_redirect_uris(State(state): State<Arc<AppState>>) -> Response {
    Json(state.oidc.redirect_uris()).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedirectUri {
    uri: String,
}

async fn add_redirect_uri(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let request: RedirectUri = match parse_json(&body, "redirect URI") {
        Ok(request) => request,
        Err(response) => return *response,
    };
    match state.oidc.add_redirect_uri(&request.uri) {
        Ok(()) => (StatusCode::CREATED, Json(state.oidc.redirect_uris())).into_response(),
        Err(error) => problem(StatusCode::BAD_REQUEST, error.to_string()),
    }
}

async fn get_withdrawn_roles(State(state): State<Arc<AppState>>) -> Response {
    Json(state.withdrawn_roles()).into_response()
}

async fn set_withdrawn_roles(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let roles: Vec<String> = match parse_json(&body, "role list") {
        Ok(roles) => roles,
        Err(response) => return *response,
    };
    state.set_withdrawn_roles(roles.into_iter().collect());
    StatusCode::NO_CONTENT.into_response()
}

fn problem(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn tenant_problem(error: &TenantError) -> Response {
    let status = match error {
        TenantError::UnknownUser(_)
        | TenantError::NoMailbox(_)
        | TenantError::NoArchive(_)
        | TenantError::FolderNotFound { .. }
        | TenantError::MessageNotFound { .. } => StatusCode::NOT_FOUND,
        TenantError::DuplicateUser(_) => StatusCode::CONFLICT,
        TenantError::InvalidUser { .. }
        | TenantError::InvalidSpec(_)
        | TenantError::EmlDir { .. } => StatusCode::BAD_REQUEST,
    };
    problem(status, error.to_string())
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<EmulatorStats> {
    Json(state.stats.snapshot())
}

#[derive(Debug, Deserialize)]
struct DeliverQuery {
    #[serde(default = "inbox")]
    folder: String,
}

fn inbox() -> String {
    "inbox".to_owned()
}

async fn deliver(
    State(state): State<Arc<AppState>>,
    Path(upn): Path<String>,
    Query(query): Query<DeliverQuery>,
    body: Bytes,
) -> Response {
    deliver_with(&body, |mime| {
        state.tenant.deliver(&upn, &query.folder, mime)
    })
}

/// A delivery of the raw MIME in `body`: 201 `{"id"}`, 400 for an empty body.
fn deliver_with(
    body: &Bytes,
    deliver: impl FnOnce(Vec<u8>) -> Result<String, TenantError>,
) -> Response {
    if body.is_empty() {
        return problem(
            StatusCode::BAD_REQUEST,
            "the request body must hold the raw MIME message".to_owned(),
        );
    }
    match deliver(body.to_vec()) {
        Ok(id) => (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response(),
        Err(error) => tenant_problem(&error),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    mode: Option<String>,
}

async fn delete_message(
    State(state): State<Arc<AppState>>,
    Path((upn, id)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
) -> Response {
    let outcome = match query
        .mode
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("purge") => state.tenant.delete_message(&upn, &id),
        Some("soft") => state.tenant.soft_delete_message(&upn, &id).map(drop),
        Some("hard") => state.tenant.hard_delete_message(&upn, &id).map(drop),
        Some(other) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("query 'mode': '{other}' is not soft, hard or purge"),
            );
        }
    };
    match outcome {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => tenant_problem(&error),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveQuery {
    #[serde(default)]
    folder: Option<String>,
}

async fn deliver_to_archive(
    State(state): State<Arc<AppState>>,
    Path(upn): Path<String>,
    Query(query): Query<ArchiveQuery>,
    body: Bytes,
) -> Response {
    deliver_with(&body, |mime| {
        state
            .tenant
            .deliver_to_archive(&upn, query.folder.as_deref(), mime)
    })
}

async fn list_users(State(state): State<Arc<AppState>>) -> Response {
    Json(state.tenant.users()).into_response()
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            format!("invalid {what} JSON: {e}"),
        ))
    })
}

async fn add_user(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let user: NewUser = match parse_json(&body, "user") {
        Ok(user) => user,
        Err(response) => return *response,
    };
    match state.tenant.add_user(user) {
        Ok(info) => (StatusCode::CREATED, Json(info)).into_response(),
        Err(error) => tenant_problem(&error),
    }
}

async fn update_user(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let patch: UserPatch = match parse_json(&body, "user patch") {
        Ok(patch) => patch,
        Err(response) => return *response,
    };
    match state.tenant.update_user(&id, patch) {
        Ok(info) => Json(info).into_response(),
        Err(error) => tenant_problem(&error),
    }
}

async fn delete_user(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.tenant.delete_user(&id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => tenant_problem(&error),
    }
}

async fn get_faults(State(state): State<Arc<AppState>>) -> Json<FaultConfig> {
    Json(state.faults.config())
}

async fn set_faults(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let faults: FaultConfig = match parse_json(&body, "fault configuration") {
        Ok(faults) => faults,
        Err(response) => return *response,
    };
    if let Err(error) = faults.validate() {
        return problem(StatusCode::BAD_REQUEST, error.to_string());
    }
    state.faults.set(faults);
    Json(state.faults.config()).into_response()
}

async fn revoke(State(state): State<Arc<AppState>>) -> StatusCode {
    state.identity.revoke_all();
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lifetime {
    seconds: u64,
}

async fn token_lifetime(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let lifetime: Lifetime = match parse_json(&body, "token lifetime") {
        Ok(lifetime) => lifetime,
        Err(response) => return *response,
    };
    state
        .identity
        .set_token_lifetime(Duration::from_secs(lifetime.seconds));
    StatusCode::NO_CONTENT.into_response()
}
