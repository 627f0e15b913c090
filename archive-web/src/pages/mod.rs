//! The page routes: search, message (and its sandboxed body frame and inline
//! images), folders, export and restore forms, holds and retention, the audit
//! log. Each handler asks the service (which scopes and records every read) and
//! renders a view model through [`crate::render`]; every form carries the
//! session's CSRF token. A visitor who is not signed in is sent to `/signin`.

use std::collections::BTreeMap;

use archiver_service::{ApiScope, HoldSpec, PolicySpec, Principal, Role, SearchRequest};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
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

mod governance;
mod message;
mod search;

use governance::*;
use message::*;
use search::*;

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
