//! One Graph request of the mailbox client: what it is ([`Op`]), how graph-rs-sdk builds
//! it, how it is sent, and how the shared retry loop (`m365_auth::transport`) runs it
//! with the mailbox's gate and counters. Paging over `@odata.nextLink` is here too.

use std::future::Future;

use graph_rs_sdk::ODataQuery;
use graph_rs_sdk::http::Method;
use m365_auth::AccessToken;
use m365_auth::transport::{BodyError, Exchange, GaveUp, Lane, Refusal, RequestCounters, Verdict};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::classify::classify;
use super::{Inner, MailboxCtx};
use crate::MailboxError;
use crate::wire;

/// Message properties asked for in delta rounds.
const SUMMARY_SELECT: &[&str] = &[
    "receivedDateTime",
    "internetMessageId",
    "isRead",
    "flag",
    "parentFolderId",
    "subject",
];

/// Redirects followed for one request (an archive's folder may live in an auxiliary
/// archive, which may redirect once more).
const MAX_REDIRECTS: usize = 5;

/// Largest JSON page accepted.
const MAX_PAGE_BYTES: usize = 64 << 20;

/// What a request is about, for turning a 404 into the right error.
#[derive(Debug, Clone)]
pub(super) enum Target {
    Mailbox,
    Folder(String),
    Message(String),
}

/// The requests this client makes.
#[derive(Debug, Clone)]
pub(super) enum Op {
    WellKnownFolder(String),
    RootFolders,
    ChildFolders(String),
    FolderDelta(String),
    Link(Url),
    Mime(String),
    SoftDelete(String),
    Move {
        id: String,
        destination: String,
    },
    PermanentDelete(String),
    /// `POST $batch` with these inner requests.
    Batch(wire::BatchRequest),
    /// `GET /beta/users/{id}/settings/exchange` (the archive mailbox's id).
    ExchangeSettings,
}

impl Op {
    pub(super) fn label(&self) -> String {
        match self {
            Op::WellKnownFolder(n) => format!("GET mailFolders/{n}"),
            Op::RootFolders => "GET mailFolders".into(),
            Op::ChildFolders(id) => format!("GET mailFolders/{id}/childFolders"),
            Op::FolderDelta(id) => format!("GET mailFolders/{id}/messages/delta"),
            Op::Link(url) => format!("GET {}", url.path()),
            Op::Mime(id) => format!("GET messages/{id}/$value"),
            Op::SoftDelete(id) => format!("DELETE messages/{id}"),
            Op::Move { id, .. } => format!("POST messages/{id}/move"),
            Op::PermanentDelete(id) => format!("POST messages/{id}/permanentDelete"),
            Op::Batch(_) => "POST $batch".into(),
            Op::ExchangeSettings => "GET settings/exchange".into(),
        }
    }

    fn method(&self) -> Method {
        match self {
            Op::SoftDelete(_) => Method::DELETE,
            Op::Move { .. } | Op::PermanentDelete(_) | Op::Batch(_) => Method::POST,
            _ => Method::GET,
        }
    }

    fn body(&self) -> Option<serde_json::Value> {
        match self {
            Op::Move { destination, .. } => {
                Some(serde_json::json!({ "destinationId": destination }))
            }
            Op::Batch(payload) => serde_json::to_value(payload).ok(),
            _ => None,
        }
    }

    /// Whether the request goes to Graph beta whatever the mailbox.
    pub(super) fn is_beta(&self) -> bool {
        matches!(self, Op::ExchangeSettings)
    }

    fn is_delete(&self) -> bool {
        matches!(self, Op::SoftDelete(_) | Op::PermanentDelete(_))
    }
}

/// Why a call did not produce a value.
#[derive(Debug)]
pub(super) enum Failure {
    /// An error for the caller.
    Error(MailboxError),
    /// The delta state is gone (410 / `syncStateNotFound`): restart the folder.
    SyncReset(Refusal),
    /// A deletion was repeated after its answer was lost, and the message is gone: the
    /// first attempt did the work.
    AlreadyDone,
}

impl From<MailboxError> for Failure {
    fn from(e: MailboxError) -> Self {
        Failure::Error(e)
    }
}

impl Failure {
    /// The error for a caller outside a delta round (where a reset means nothing).
    pub(super) fn into_error(self, ctx: &MailboxCtx, op: &Op) -> MailboxError {
        let refused = |refusal: &Refusal| MailboxError::Refused {
            mailbox: ctx.mailbox.clone(),
            operation: op.label(),
            status: refusal.status.as_u16(),
            code: refusal.code().to_string(),
            message: refusal.message().to_string(),
        };
        match self {
            Failure::Error(e) => e,
            Failure::SyncReset(refusal) => refused(&refusal),
            Failure::AlreadyDone => refused(&Refusal::new(StatusCode::NOT_FOUND, None)),
        }
    }
}

/// One call: the op, its target and how to read a successful answer.
struct Call<'a, R> {
    inner: &'a Inner,
    ctx: &'a MailboxCtx,
    op: &'a Op,
    target: &'a Target,
    read: R,
}

/// How a call reads a successful answer.
pub(super) trait ReadAnswer: Sync {
    /// The value read.
    type Output: Send;
    /// Reads the answer of `op` for `ctx`.
    fn read(
        &self,
        ctx: &MailboxCtx,
        op: &Op,
        response: reqwest::Response,
        counters: &RequestCounters,
    ) -> impl Future<Output = Result<Self::Output, BodyError<Failure>>> + Send;
}

impl<R: ReadAnswer> Exchange for Call<'_, R> {
    type Output = R::Output;
    type Error = Failure;

    fn label(&self) -> String {
        format!("{} of {}", self.op.label(), self.ctx.mailbox)
    }

    fn weight(&self) -> (usize, usize) {
        match self.op {
            // A batch's inner requests run up to 4 at once at the service: hold as many
            // slots as it may use, and count each against the mailbox's budget.
            Op::Batch(payload) => (
                self.inner.options.limits.max_in_flight,
                payload.requests.len(),
            ),
            _ => (1, 1),
        }
    }

    fn send(
        &self,
        token: &AccessToken,
    ) -> impl Future<Output = Result<reqwest::Response, String>> + Send {
        self.inner.dispatch(&self.ctx.mailbox, self.op, token)
    }

    fn accept(
        &self,
        response: reqwest::Response,
        counters: &RequestCounters,
    ) -> impl Future<Output = Result<Self::Output, BodyError<Failure>>> + Send {
        self.read.read(self.ctx, self.op, response, counters)
    }

    fn refused(&self, refusal: Refusal, repeated: bool) -> Verdict<Failure> {
        if refusal.status == StatusCode::NOT_FOUND && repeated && self.op.is_delete() {
            return Verdict::Fail(Failure::AlreadyDone);
        }
        // An item the service cannot render fails the same way every time, whatever
        // the status: asking again only spends the mailbox's budget.
        if matches!(self.op, Op::Mime(_)) && super::classify::is_unconvertible(&refusal) {
            return Verdict::Fail(self.failed(refusal));
        }
        if refusal.is_transient() {
            return Verdict::Retry(refusal);
        }
        Verdict::Fail(self.failed(refusal))
    }

    fn failed(&self, refusal: Refusal) -> Failure {
        classify(&self.ctx.mailbox, self.op, self.target, refusal)
    }

    fn gave_up(&self, gave_up: GaveUp) -> Failure {
        Failure::Error(super::classify::gave_up(
            &self.ctx.mailbox,
            &self.op.label(),
            self.inner.options.request_timeout,
            gave_up,
        ))
    }

    fn no_token(&self, error: m365_auth::AuthError) -> Failure {
        Failure::Error(MailboxError::Auth(error))
    }
}

/// Reads a JSON answer into a `T`.
struct Json<T>(std::marker::PhantomData<fn() -> T>);

impl<T: serde::de::DeserializeOwned + Send> ReadAnswer for Json<T> {
    type Output = T;

    async fn read(
        &self,
        ctx: &MailboxCtx,
        op: &Op,
        response: reqwest::Response,
        counters: &RequestCounters,
    ) -> Result<T, BodyError<Failure>> {
        let bytes = read_json::<Failure>(ctx, &op.label(), response, counters).await?;
        wire::parse_object::<T>(&bytes).map_err(|source| {
            if source.is_truncation() {
                BodyError::Retry(m365_auth::transport::Fault::Body(source.to_string()))
            } else {
                BodyError::Fatal(Failure::Error(MailboxError::Malformed {
                    mailbox: ctx.mailbox.clone(),
                    operation: op.label(),
                    source,
                }))
            }
        })
    }
}

/// Reads (and counts) an answer whose content does not matter.
struct Ignore;

impl ReadAnswer for Ignore {
    type Output = ();

    async fn read(
        &self,
        ctx: &MailboxCtx,
        op: &Op,
        response: reqwest::Response,
        counters: &RequestCounters,
    ) -> Result<(), BodyError<Failure>> {
        // Read the body so the request is complete before the slot frees.
        read_json::<Failure>(ctx, &op.label(), response, counters)
            .await
            .map(|_| ())
    }
}

/// Reads (and counts) a whole JSON answer of `operation`, at most [`MAX_PAGE_BYTES`].
pub(super) async fn read_json<E>(
    ctx: &MailboxCtx,
    operation: &str,
    response: reqwest::Response,
    counters: &RequestCounters,
) -> Result<bytes::Bytes, BodyError<E>>
where
    E: From<MailboxError>,
{
    let too_large = |limit| {
        E::from(MailboxError::Protocol {
            mailbox: ctx.mailbox.clone(),
            operation: operation.to_string(),
            detail: format!("JSON answer larger than {limit} bytes"),
        })
    };
    m365_auth::transport::read_body(response, ctx.timeout, counters, MAX_PAGE_BYTES, too_large)
        .await
}

impl Inner {
    fn mail_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&self.prefer(self.options.page_size)) {
            headers.insert(HeaderName::from_static("prefer"), value);
        }
        headers
    }

    /// The `Prefer` header of mail requests: immutable ids, `page_size` items a page.
    pub(super) fn prefer(&self, page_size: u32) -> String {
        format!(
            "IdType=\"ImmutableId\", odata.maxpagesize={}",
            page_size.max(1)
        )
    }

    /// Builds the request with graph-rs-sdk.
    pub(super) fn build(&self, mailbox: &str, op: &Op) -> graph_http::api_impl::RequestHandler {
        let g = if op.is_beta() || crate::is_archive_mailbox_id(mailbox) {
            &self.graph_beta
        } else {
            &self.graph
        };
        let user = g.user(mailbox);
        let page = self.options.page_size.max(1).to_string();
        // Folder listings include hidden folders, a page at a time.
        let listing = |h: graph_http::api_impl::RequestHandler| {
            h.append_query_pair("includeHiddenFolders", "true")
                .top(page.as_str())
        };
        let handler = match op {
            Op::WellKnownFolder(name) => user.mail_folder(name).get_mail_folders().select(&["id"]),
            Op::RootFolders => listing(user.mail_folders().list_mail_folders()),
            Op::ChildFolders(id) => {
                listing(user.mail_folder(id).child_folders().list_child_folders())
            }
            Op::FolderDelta(id) => user
                .mail_folder(id)
                .messages()
                .delta()
                .select(SUMMARY_SELECT)
                .expand(&[&format!(
                    "singleValueExtendedProperties($filter=id eq '{}')",
                    wire::MESSAGE_SIZE_PROPERTY
                )]),
            Op::Link(url) => {
                let mut h = g.custom(Method::GET, None);
                *h.as_mut() = url.clone();
                h
            }
            Op::Mime(id) if !id.contains('/') => user.message(id).get_messages_content(),
            Op::SoftDelete(id) if !id.contains('/') => user.message(id).delete_messages(),
            Op::Move { id, .. } if !id.contains('/') => {
                let body = op.body().unwrap_or_default();
                user.message(id).move_message(&body)
            }
            // Ids with a `/` (possible in base64 ids) would be split by the SDK's path
            // templates; build those paths segment by segment instead.
            Op::Mime(id) => g
                .custom(Method::GET, None)
                .extend_path(&["users", mailbox, "messages", id, "$value"]),
            Op::SoftDelete(id) => g
                .custom(Method::DELETE, None)
                .extend_path(&["users", mailbox, "messages", id]),
            Op::Move { id, .. } => g
                .custom(Method::POST, self.body_of(op))
                .extend_path(&["users", mailbox, "messages", id, "move"]),
            Op::PermanentDelete(id) => g.custom(Method::POST, None).extend_path(&[
                "users",
                mailbox,
                "messages",
                id,
                "permanentDelete",
            ]),
            Op::Batch(_) => g
                .custom(Method::POST, self.body_of(op))
                .extend_path(&["$batch"]),
            Op::ExchangeSettings => g
                .custom(Method::GET, None)
                .extend_path(&["users", mailbox, "settings", "exchange"]),
        };
        handler.headers(self.mail_headers())
    }

    fn body_of(&self, op: &Op) -> Option<graph_rs_sdk::http::BodyRead> {
        op.body()
            .map(|b| graph_rs_sdk::http::BodyRead::new(b.to_string()))
    }

    /// Sends one attempt with the given token.
    async fn dispatch(
        &self,
        mailbox: &str,
        op: &Op,
        token: &AccessToken,
    ) -> Result<reqwest::Response, String> {
        let handler = self.build(mailbox, op);
        if op.is_beta() || crate::is_archive_mailbox_id(mailbox) {
            return self.send_following(op, handler.url().clone(), token).await;
        }
        match &self.direct {
            None => m365_auth::transport::send_with_token(token, handler.send()).await,
            Some(client) => {
                let mut request = client
                    .request(op.method(), handler.url())
                    .bearer_auth(token.secret())
                    .headers(self.mail_headers());
                if let Some(body) = op.body() {
                    request = request.json(&body);
                } else if op.method() == Method::POST {
                    request = request.header(reqwest::header::CONTENT_LENGTH, "0");
                }
                request
                    .send()
                    .await
                    .map_err(|e| m365_auth::transport::describe_reqwest(&e))
            }
        }
    }

    /// Sends a Graph beta request (the archive mailboxes' API) with our own client and
    /// follows its redirects: an auto-expanded archive answers reads of content that
    /// lives in an auxiliary archive with `308` and the `Location` to ask instead. The
    /// bearer token goes only to the Graph origin; a redirect elsewhere is followed
    /// without it.
    async fn send_following(
        &self,
        op: &Op,
        first: Url,
        token: &AccessToken,
    ) -> Result<reqwest::Response, String> {
        let mut url = first;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self
                .plain
                .request(op.method(), url.clone())
                .headers(self.mail_headers());
            if url.origin() == self.api.origin() {
                request = request.bearer_auth(token.secret());
            }
            if let Some(body) = op.body() {
                request = request.json(&body);
            } else if op.method() == Method::POST {
                request = request.header(reqwest::header::CONTENT_LENGTH, "0");
            }
            let response = request
                .send()
                .await
                .map_err(|e| m365_auth::transport::describe_reqwest(&e))?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let Some(location) = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                return Ok(response);
            };
            let next = url
                .join(location)
                .map_err(|e| format!("redirect to an unusable Location {location:?}: {e}"))?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(format!("redirect to a non-HTTP Location {location:?}"));
            }
            tracing::debug!(from = %url.path(), to = %next.path(), status = response.status().as_u16(), "following a redirect");
            url = next;
        }
        Err(format!("more than {MAX_REDIRECTS} redirects in a row"))
    }

    /// Runs one call through the shared retry loop with the mailbox's gate and counters.
    pub(super) async fn run<R: ReadAnswer>(
        &self,
        ctx: &MailboxCtx,
        op: &Op,
        target: &Target,
        read: R,
    ) -> Result<R::Output, Failure> {
        let call = Call {
            inner: self,
            ctx,
            op,
            target,
            read,
        };
        let lane = Lane {
            gate: Some(&ctx.gate),
            counters: &ctx.counters,
        };
        self.transport.run(&call, lane).await
    }

    /// A call whose successful answer is one JSON document.
    pub(super) async fn json<T: serde::de::DeserializeOwned + Send>(
        &self,
        ctx: &MailboxCtx,
        op: &Op,
        target: &Target,
    ) -> Result<T, Failure> {
        self.run(ctx, op, target, Json(std::marker::PhantomData))
            .await
    }

    /// A call whose successful answer body is ignored.
    pub(super) async fn no_content(
        &self,
        ctx: &MailboxCtx,
        op: &Op,
        target: &Target,
    ) -> Result<(), Failure> {
        self.run(ctx, op, target, Ignore).await
    }

    /// All pages of a collection, following nextLinks.
    pub(super) async fn collect_pages<T: serde::de::DeserializeOwned + Send>(
        &self,
        ctx: &MailboxCtx,
        first: Op,
        target: &Target,
    ) -> Result<Vec<T>, Failure> {
        let mut items = Vec::new();
        let mut op = first;
        loop {
            let page: wire::Page<T> = self.json(ctx, &op, target).await?;
            items.extend(page.value);
            match page.next_link {
                Some(link) => op = Op::Link(self.check_link(ctx, &link)?),
                None => return Ok(items),
            }
        }
    }

    /// A nextLink/deltaLink may only point at our Graph origin (it will carry our token).
    pub(super) fn check_link(&self, ctx: &MailboxCtx, link: &str) -> Result<Url, MailboxError> {
        m365_auth::transport::check_link(&self.api, link).map_err(|detail| MailboxError::Protocol {
            mailbox: ctx.mailbox.clone(),
            operation: "paging".into(),
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::source;
    use super::*;

    fn url_of(s: &super::super::GraphMailboxSource, op: Op) -> String {
        s.inner.build("a@contoso.com", &op).url().to_string()
    }

    fn check(op: Op, expected: &str) {
        let s = source("http://127.0.0.1:9/");
        assert_eq!(
            url_of(&s, op),
            format!("http://127.0.0.1:9/v1.0/users/a@contoso.com/{expected}")
        );
    }

    #[test]
    fn requests_are_built_with_the_sdk() {
        for (op, expected) in [
            (
                Op::RootFolders,
                "mailFolders?includeHiddenFolders=true&%24top=100",
            ),
            (
                Op::ChildFolders("AQMk/x=".into()),
                "mailFolders/AQMk%2Fx=/childFolders?includeHiddenFolders=true&%24top=100",
            ),
            (
                Op::WellKnownFolder("inbox".into()),
                "mailFolders/inbox?%24select=id",
            ),
            (Op::Mime("AAMk-1=".into()), "messages/AAMk-1=/$value"),
            (
                Op::PermanentDelete("M".into()),
                "messages/M/permanentDelete",
            ),
            // Ids with a `/` stay one segment.
            (Op::Mime("AAMk/1+2=".into()), "messages/AAMk%2F1+2=/$value"),
            (
                Op::Move {
                    id: "a/b".into(),
                    destination: "deleteditems".into(),
                },
                "messages/a%2Fb/move",
            ),
            (Op::SoftDelete("a/b".into()), "messages/a%2Fb"),
        ] {
            check(op, expected);
        }
        let s = source("http://127.0.0.1:9/");
        let delta = url_of(&s, Op::FolderDelta("F1".into()));
        assert!(
            delta.starts_with("http://127.0.0.1:9/v1.0/users/a@contoso.com/mailFolders/F1/messages/delta()?%24select=receivedDateTime%2CinternetMessageId"),
            "{delta}"
        );
        assert!(delta.contains("%24expand=singleValueExtendedProperties%28%24filter%3Did+eq+%27Integer+0x0E08%27%29"), "{delta}");
    }

    #[test]
    fn guest_upn_is_escaped_in_paths() {
        let s = source("http://127.0.0.1:9/");
        let url = s
            .inner
            .build("ext_x.com#EXT#@contoso.onmicrosoft.com", &Op::RootFolders)
            .url()
            .to_string();
        assert!(
            url.contains("/users/ext_x.com%23EXT%23@contoso.onmicrosoft.com/mailFolders"),
            "{url}"
        );
    }

    #[test]
    fn links_must_stay_on_the_graph_origin() {
        let s = source("http://127.0.0.1:9/");
        let ctx = s.inner.ctx("a@contoso.com");
        let check = |link: &str| s.inner.check_link(&ctx, link).is_ok();
        assert!(check(
            "http://127.0.0.1:9/v1.0/users/a/messages/delta?$skiptoken=x"
        ));
        assert!(!check("http://127.0.0.1:10/v1.0/x"));
        assert!(!check("https://evil.example/v1.0/x"));
        assert!(!check("not a url"));
    }
}
