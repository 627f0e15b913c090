//! One write request of the mailbox client ([`WriteRequest`]) and how it goes through the
//! shared retry loop: its body drawn from the mailbox's upload budget first, then the
//! mailbox's gate (4 in flight), a token, `send()` with our own reqwest client (the bodies
//! are JSON, base64 text or raw chunks, and an upload URL is pre-authenticated: the bearer
//! token goes to the Graph origin only), and the read side's classification of refusals.
//!
//! Repeating a request is not always safe. A create whose answer was lost (a reset or a
//! truncated answer after the service did the work, a timeout, a 5xx) may have created
//! the item: such requests ([`Repeat::Once`]) are sent once per fault and come back as
//! [`WriteFailure::Unsure`], and the caller looks before it sends again. A 429 is always
//! waited out and repeated: the service did nothing.

use bytes::Bytes;
use m365_auth::AccessToken;
use m365_auth::transport::{BodyError, Exchange, GaveUp, Lane, Refusal, RequestCounters, Verdict};
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use super::op::{Target, read_json};
use super::{Inner, MailboxCtx};
use crate::MailboxError;

/// A request body.
#[derive(Debug, Clone)]
pub(super) enum Body {
    /// No body.
    Empty,
    /// `application/json`.
    Json(Bytes),
    /// `text/plain` (base64 MIME).
    Text(Bytes),
    /// One chunk of an upload session: the bytes from `first` of `total`.
    Chunk {
        /// The bytes.
        bytes: Bytes,
        /// Offset of the first byte.
        first: u64,
        /// Size of the whole upload.
        total: u64,
    },
}

impl Body {
    /// JSON text of a value.
    pub(super) fn json(value: &serde_json::Value) -> Body {
        Body::Json(Bytes::from(value.to_string()))
    }

    /// Bytes sent.
    pub(super) fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Json(b) | Body::Text(b) | Body::Chunk { bytes: b, .. } => b.len() as u64,
        }
    }
}

/// Whether and how a request may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repeat {
    /// Reads and idempotent writes: repeated on faults.
    Safe,
    /// A folder create: repeated on faults; 409 ends it with [`WriteFailure::Conflict`].
    CreateFolder,
    /// A create that must not be repeated blindly (see the module doc).
    Once,
    /// A deletion: repeated on faults; a 404 after a fault means the first attempt did it.
    Delete,
    /// An upload chunk (`last`: the final one): repeated on faults; a session gone (404,
    /// 401) or a range refused (416) ends it with [`WriteFailure::Session`], or after a
    /// fault with [`WriteFailure::AlreadyDone`] (the chunk was taken).
    Chunk {
        /// The final chunk of the upload.
        last: bool,
    },
}

/// One write request (or a lookup made for one).
#[derive(Debug, Clone)]
pub(super) struct WriteRequest {
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) body: Body,
    /// What it is, for logs and errors (never a query string or an upload URL).
    pub(super) label: String,
    /// What a 404 is about.
    pub(super) target: Target,
    pub(super) repeat: Repeat,
    /// What is sent, for [`MailboxError::RequestTooLarge`] (e.g. `the create of message X`).
    pub(super) what: String,
}

/// A successful answer: status and body.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Bytes,
}

impl Answer {
    /// The body as a `T`, or [`MailboxError::Malformed`].
    pub(super) fn parse<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &MailboxCtx,
        request: &WriteRequest,
    ) -> Result<T, MailboxError> {
        crate::wire::parse_object(&self.body).map_err(|source| MailboxError::Malformed {
            mailbox: ctx.mailbox.clone(),
            operation: request.label.clone(),
            source,
        })
    }
}

/// Why a write request did not succeed.
#[derive(Debug)]
pub(super) enum WriteFailure {
    /// An error for the caller.
    Error(MailboxError),
    /// A folder create answered 409: a folder of that name exists.
    Conflict,
    /// A [`Repeat::Once`] request failed after it may have been carried out; the error
    /// stands if it was not.
    Unsure(MailboxError),
    /// A repeated deletion (or final chunk) found nothing: the first attempt did it.
    AlreadyDone,
    /// The upload session does not take this chunk (404 gone, 416 range): ask it where
    /// it stands, or start a new one.
    Session(Refusal),
}

impl From<MailboxError> for WriteFailure {
    fn from(e: MailboxError) -> Self {
        WriteFailure::Error(e)
    }
}

impl WriteFailure {
    /// The error for a caller that has no better use for the failure.
    pub(super) fn into_error(self, ctx: &MailboxCtx, operation: &str) -> MailboxError {
        let refused = |status: StatusCode, code: &str, message: &str| MailboxError::Refused {
            mailbox: ctx.mailbox.clone(),
            operation: operation.to_string(),
            status: status.as_u16(),
            code: code.to_string(),
            message: message.to_string(),
        };
        match self {
            WriteFailure::Error(e) | WriteFailure::Unsure(e) => e,
            WriteFailure::Conflict => refused(StatusCode::CONFLICT, "ErrorFolderExists", ""),
            WriteFailure::AlreadyDone => refused(StatusCode::NOT_FOUND, "", ""),
            WriteFailure::Session(r) => refused(r.status, r.code(), r.message()),
        }
    }
}

/// One request in the retry loop.
struct WriteCall<'a> {
    inner: &'a Inner,
    ctx: &'a MailboxCtx,
    budget: &'a crate::budget::UploadBudget,
    request: &'a WriteRequest,
}

impl Exchange for WriteCall<'_> {
    type Output = Answer;
    type Error = WriteFailure;

    fn label(&self) -> String {
        format!("{} of {}", self.request.label, self.ctx.mailbox)
    }

    /// Each attempt's body is drawn from the upload budget once admitted, so it reaches the
    /// service inside the window it was counted in.
    async fn before_send(&self) {
        let bytes = self.request.body.len();
        if bytes > 0 {
            let waited = self.budget.draw(bytes).await;
            if !waited.is_zero() {
                tracing::debug!(request = %self.request.label, bytes, waited_ms = waited.as_millis() as u64, "waited for the upload budget");
            }
        }
    }

    async fn send(&self, token: &AccessToken) -> Result<reqwest::Response, String> {
        let request = self.request;
        let mut builder = self
            .inner
            .plain
            .request(request.method.clone(), request.url.clone());
        if request.url.origin() == self.inner.api.origin() {
            builder = builder
                .bearer_auth(token.secret())
                .header("prefer", self.inner.prefer(self.inner.options.page_size));
        }
        builder = match &request.body {
            Body::Empty if request.method == Method::GET => builder,
            Body::Empty => builder.header(reqwest::header::CONTENT_LENGTH, "0"),
            Body::Json(bytes) => builder
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(bytes.clone()),
            Body::Text(bytes) => builder
                .header(CONTENT_TYPE, HeaderValue::from_static("text/plain"))
                .body(bytes.clone()),
            Body::Chunk {
                bytes,
                first,
                total,
            } => {
                let last = first + (bytes.len() as u64).max(1) - 1;
                builder
                    .header(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    )
                    .header(CONTENT_RANGE, format!("bytes {first}-{last}/{total}"))
                    .body(bytes.clone())
            }
        };
        builder
            .send()
            .await
            .map_err(|e| m365_auth::transport::describe_reqwest(&e))
    }

    async fn accept(
        &self,
        response: reqwest::Response,
        counters: &RequestCounters,
    ) -> Result<Answer, BodyError<WriteFailure>> {
        let status = response.status();
        let body = read_json::<WriteFailure>(self.ctx, &self.request.label, response, counters)
            .await
            .map_err(|e| match e {
                // The answer of a create that may have been carried out was lost.
                BodyError::Retry(fault) if self.request.repeat == Repeat::Once => {
                    BodyError::Fatal(WriteFailure::Unsure(MailboxError::RetriesExhausted {
                        mailbox: self.ctx.mailbox.clone(),
                        operation: self.request.label.clone(),
                        attempts: 1,
                        last: fault.to_string(),
                    }))
                }
                other => other,
            })?;
        Ok(Answer { status, body })
    }

    fn refused(&self, refusal: Refusal, repeated: bool) -> Verdict<WriteFailure> {
        let status = refusal.status;
        match self.request.repeat {
            Repeat::CreateFolder if status == StatusCode::CONFLICT => {
                return Verdict::Fail(WriteFailure::Conflict);
            }
            Repeat::Delete if status == StatusCode::NOT_FOUND && repeated => {
                return Verdict::Fail(WriteFailure::AlreadyDone);
            }
            // A session forgets its token once the final chunk is in, and a range it has
            // already taken is refused: after a fault, the lost attempt did the work.
            Repeat::Chunk { last } if repeated && session_gone(status) && last => {
                return Verdict::Fail(WriteFailure::AlreadyDone);
            }
            Repeat::Chunk { .. } if repeated && status == StatusCode::RANGE_NOT_SATISFIABLE => {
                return Verdict::Fail(WriteFailure::AlreadyDone);
            }
            Repeat::Chunk { .. }
                if session_gone(status) || status == StatusCode::RANGE_NOT_SATISFIABLE =>
            {
                return Verdict::Fail(WriteFailure::Session(refusal));
            }
            Repeat::Once if refusal.is_transient() => {
                return Verdict::Fail(WriteFailure::Unsure(self.error(refusal)));
            }
            _ => {}
        }
        if refusal.is_transient() {
            Verdict::Retry(refusal)
        } else {
            Verdict::Fail(self.failed(refusal))
        }
    }

    fn failed(&self, refusal: Refusal) -> WriteFailure {
        WriteFailure::Error(self.error(refusal))
    }

    fn gave_up(&self, gave_up: GaveUp) -> WriteFailure {
        let error = super::classify::gave_up(
            &self.ctx.mailbox,
            &self.request.label,
            self.inner.options.request_timeout,
            gave_up,
        );
        match self.request.repeat {
            Repeat::Once => WriteFailure::Unsure(error),
            _ => WriteFailure::Error(error),
        }
    }

    fn no_token(&self, error: m365_auth::AuthError) -> WriteFailure {
        WriteFailure::Error(MailboxError::Auth(error))
    }
}

/// An upload URL answering 404 (expired) or 401 (its token unknown) has no session.
pub(super) fn session_gone(status: StatusCode) -> bool {
    matches!(status, StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED)
}

impl WriteCall<'_> {
    fn error(&self, refusal: Refusal) -> MailboxError {
        if refusal.status == StatusCode::PAYLOAD_TOO_LARGE {
            return MailboxError::RequestTooLarge {
                mailbox: self.ctx.mailbox.clone(),
                what: self.request.what.clone(),
                size: self.request.body.len(),
                limit: self.inner.options.write_limits.max_request_bytes,
                limit_name: "one request".into(),
            };
        }
        super::classify::refusal_error(
            &self.ctx.mailbox,
            &self.request.label,
            &self.request.target,
            refusal,
        )
    }
}

impl Inner {
    /// Sends one write request through the retry loop (once per fault for
    /// [`Repeat::Once`]), each attempt's body drawn from `budget`.
    pub(super) async fn write(
        &self,
        ctx: &MailboxCtx,
        budget: &crate::budget::UploadBudget,
        request: &WriteRequest,
    ) -> Result<Answer, WriteFailure> {
        let transport = match request.repeat {
            Repeat::Once => &self.writes.once,
            _ => &self.transport,
        };
        let call = WriteCall {
            inner: self,
            ctx,
            budget,
            request,
        };
        let lane = Lane {
            gate: Some(&ctx.gate),
            counters: &ctx.counters,
        };
        transport.run(&call, lane).await
    }

    /// A Graph URL: the API root, then `users/{mailbox}` and `segments` (each one path
    /// segment, escaped), then `query`.
    pub(super) fn user_url(&self, mailbox: &str, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.api.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .push("users")
                .push(mailbox)
                .extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::source;
    use super::*;

    #[test]
    fn urls_escape_each_segment_and_the_query() {
        let s = source("http://127.0.0.1:9/");
        for (segments, query, expected) in [
            (
                &["mailFolders", "AQ/x=", "childFolders"][..],
                &[("$filter", "displayName eq 'O''Brien & co'")][..],
                "mailFolders/AQ%2Fx=/childFolders?%24filter=displayName+eq+%27O%27%27Brien+%26+co%27",
            ),
            (
                &["messages", "M#1", "attachments"],
                &[],
                "messages/M%231/attachments",
            ),
        ] {
            assert_eq!(
                s.inner
                    .user_url("ext_x.com#EXT#@contoso.com", segments, query)
                    .as_str(),
                format!("http://127.0.0.1:9/v1.0/users/ext_x.com%23EXT%23@contoso.com/{expected}")
            );
        }
    }

    #[test]
    fn bodies_report_their_length() {
        assert_eq!(Body::Empty.len(), 0);
        assert_eq!(Body::json(&serde_json::json!({"a": 1})).len(), 7);
        let chunk = Body::Chunk {
            bytes: Bytes::from_static(b"abc"),
            first: 3,
            total: 9,
        };
        assert_eq!(chunk.len(), 3);
    }
}
