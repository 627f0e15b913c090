//! The archive's web pages and JSON API (design.md, "Web and API").
//!
//! [`router`] builds an `axum::Router` from a [`WebState`] (the service, sessions,
//! the Entra sign-in seam); [`serve`] serves it over TLS, or plain HTTP on loopback
//! only. Pages are rendered on the server ([`render`]); the same operations are JSON
//! under `/api/v1` ([`api`]), described at `/api/v1/openapi.json`.

pub mod api;
pub mod auth;
pub mod entra;
mod error;
pub mod inline;
pub mod limiter;
pub mod openapi;
pub mod pages;
pub mod render;
pub mod serve;
pub mod session;
pub mod state;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};

pub use entra::{EntraIdentity, EntraSignIn, OidcSignIn, PendingEntra};
pub use error::{PageError, WebError};
pub use serve::{ServeError, TlsFiles, serve};
pub use state::{Clock, WebConfig, WebState};

/// Largest request body taken (forms and JSON; mail never comes in through the web).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The application: pages, sign-in, the API.
pub fn router(state: WebState) -> Router {
    let api = Router::new()
        .route(
            "/openapi.json",
            get(|| async { axum::Json(openapi::document()) }),
        )
        .route("/search", get(api::search))
        .route("/messages/{id}", get(api::message))
        .route("/messages/{id}/raw", get(api::raw))
        .route("/messages/{id}/attachments/{n}", get(api::attachment))
        .route("/folders", get(api::folders))
        .route("/export", post(api::export))
        .route("/restore", post(api::restore))
        .route("/audit", get(api::audit))
        .route("/holds", get(api::holds).post(api::create_hold));
    Router::new()
        .nest("/api/v1", api)
        .route("/signin", get(auth::signin_page))
        .route("/auth/local", post(auth::local_sign_in))
        .route("/auth/signin", get(auth::entra_begin))
        .route(
            "/auth/callback",
            get(auth::entra_callback_get).post(auth::entra_callback_post),
        )
        .route("/auth/signout", post(auth::sign_out))
        .merge(pages::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers on every answer: no framing, no sniffing, no referrer, and the page CSP
/// unless the route set its own.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(render::csp::PAGE_CSP));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
