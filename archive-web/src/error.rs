//! `WebError`: every way a request can fail, and the answer it gets. API routes
//! answer `{"error": {"code", "message"}}`; pages answer an error page. A refusal
//! never says more than the caller may know (the service words its messages so).

use archiver_service::{ErrorCategory, ServiceError};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// No valid session or API token.
    #[error("sign in first")]
    Unauthenticated,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The form or call carried no valid CSRF token.
    #[error("the form expired or did not come from this site: reload the page and try again")]
    Csrf,
    /// Too many failed sign-ins; try again after the given seconds.
    #[error("too many failed sign-ins: try again in {retry_after_secs} seconds")]
    RateLimited {
        /// Seconds until the next attempt is taken.
        retry_after_secs: u64,
    },
    /// The request is malformed (a parameter, field or body), naming it.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing here.
    #[error("{0}")]
    NotFound(String),
    /// The sign-in with Microsoft failed (state, code, id_token), or is not set up.
    #[error("the sign-in with Microsoft failed: {0}")]
    SignIn(String),
    /// A use case failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The server could not answer (a file, a task).
    #[error("{0}")]
    Internal(String),
}

impl WebError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::Unauthenticated => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) | WebError::Csrf => StatusCode::FORBIDDEN,
            WebError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::SignIn(_) => StatusCode::FORBIDDEN,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WebError::Service(e) => match e.category() {
                ErrorCategory::NotFound => StatusCode::NOT_FOUND,
                ErrorCategory::Forbidden => StatusCode::FORBIDDEN,
                ErrorCategory::Invalid => StatusCode::BAD_REQUEST,
                ErrorCategory::Conflict => StatusCode::CONFLICT,
                ErrorCategory::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                ErrorCategory::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// A short machine-readable code (`forbidden`, `csrf`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            WebError::Unauthenticated => "unauthenticated",
            WebError::Forbidden(_) => "forbidden",
            WebError::Csrf => "csrf",
            WebError::RateLimited { .. } => "rate_limited",
            WebError::BadRequest(_) => "bad_request",
            WebError::NotFound(_) => "not_found",
            WebError::SignIn(_) => "sign_in_failed",
            WebError::Internal(_) => "internal",
            WebError::Service(e) => match e.category() {
                ErrorCategory::NotFound => "not_found",
                ErrorCategory::Forbidden => "forbidden",
                ErrorCategory::Invalid => "bad_request",
                ErrorCategory::Conflict => "conflict",
                ErrorCategory::Unavailable => "unavailable",
                ErrorCategory::Internal => "internal",
            },
        }
    }

    /// The message shown to the caller: internal faults are not detailed (the log has them).
    pub fn public_message(&self) -> String {
        match self.status() {
            StatusCode::INTERNAL_SERVER_ERROR => {
                "the archive could not answer; the administrator finds the cause in the log"
                    .to_string()
            }
            _ => match self {
                WebError::Service(e) => archiver_service::chain(e),
                other => other.to_string(),
            },
        }
    }

    fn retry_after(&self) -> Option<HeaderValue> {
        match self {
            WebError::RateLimited { retry_after_secs } => {
                HeaderValue::from_str(&retry_after_secs.to_string()).ok()
            }
            _ => None,
        }
    }

    /// The JSON answer of an API route.
    pub fn into_json_response(self) -> Response {
        if self.status() == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %archiver_service::chain(&self), "request failed");
        }
        let body = serde_json::json!({
            "error": {"code": self.code(), "message": self.public_message()}
        });
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let Some(value) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        self.into_json_response()
    }
}

/// An error of a page route: the same error, answered as an HTML page.
#[derive(Debug)]
pub struct PageError(pub WebError);

impl<E: Into<WebError>> From<E> for PageError {
    fn from(error: E) -> Self {
        PageError(error.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let error = self.0;
        if error.status() == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %archiver_service::chain(&error), "page failed");
        }
        if matches!(error, WebError::Unauthenticated) {
            return axum::response::Redirect::to("/signin").into_response();
        }
        let status = error.status();
        let html = crate::pages::error_document(status, &error.public_message());
        let mut response = (status, crate::pages::html_headers(), html).into_response();
        if let Some(value) = error.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
