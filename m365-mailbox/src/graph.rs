//! [`GraphMailboxSource`]: mailboxes over Microsoft Graph v1.0, requests built and sent
//! with graph-rs-sdk, everything around them ours.
//!
//! Why our own loop: graph-rs-sdk's paging helpers do not check the status of each page
//! and its retry layers end a listing silently on a throttled page. So every request goes
//! through [`Inner::execute`]: admission by the mailbox's shared gate ([`crate::throttle`]),
//! a fresh token, `send()`, a status check, the body read under a per-chunk timeout and
//! checked against `Content-Length`, then retry rules ([`crate::retry`]): `Retry-After`
//! for 429 (closing the mailbox for everyone), exponential backoff for 5xx / resets /
//! truncated bodies / timeouts, one token refresh on 401. Paging follows
//! `@odata.nextLink`/`@odata.deltaLink` verbatim (same origin only: they carry our token).
//!
//! Request economy: `probe` and `folders` share one `$batch` (every well-known folder
//! id, the top-level listing and the first page of `mailFolders/delta`), and
//! `prefetch_changes` asks the first delta page of up to 20 folders in one `$batch`; a
//! batch holds all of the mailbox's slots while the service runs its inner requests, and
//! inner 429s are asked again after their `Retry-After`. Where the folder delta leaves
//! folders out (search folders), `childFolderCount` tells, and those parents are walked.
//!
//! The SDK gets its bearer token from a [`TokenBridge`] that hands out the token chosen for
//! the current request (a task-local), so after a 401 we invalidate exactly the token
//! Graph rejected. graph-rs-sdk 3.0.1 cannot be given extra trust anchors, so when an
//! extra CA certificate is configured (an https emulator), the URL is still built by the
//! SDK but sent with our own reqwest client that trusts it.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use graph_rs_sdk::http::Method;
use graph_rs_sdk::{GraphClient, ODataQuery};
use m365_auth::{AccessToken, TokenProvider};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::AsyncWriteExt;
use tracing::Instrument;
use url::Url;

use crate::paths;
use crate::retry::RetryPolicy;
use crate::throttle::{GateLimits, MailboxGate, ThrottleRegistry};
use crate::wire;
use crate::{
    DeleteMode, DeltaCursor, DeltaEvent, Folder, MailboxError, MailboxMetrics, MailboxSource,
    MessageSummary, MimeContent, SourceLimits,
};

/// Well-known folder names resolved to ids for [`Folder::well_known_name`] (the root,
/// `msgfolderroot`, is not part of the tree and is not asked for).
pub const WELL_KNOWN_FOLDERS: &[&str] = &[
    "archive",
    "clutter",
    "conflicts",
    "conversationhistory",
    "deleteditems",
    "drafts",
    "inbox",
    "junkemail",
    "localfailures",
    "outbox",
    "recoverableitemsdeletions",
    "scheduled",
    "searchfolders",
    "sentitems",
    "serverfailures",
    "syncissues",
];

/// `Prefer: odata.maxpagesize` of the folder delta: the whole tree in one page where the
/// service allows it (larger trees continue over nextLinks).
const FOLDER_DELTA_PAGE_SIZE: u32 = 1000;
/// How long a folder survey made by [`MailboxSource::probe`] is reused by the following
/// [`MailboxSource::folders`] call instead of asking again.
const SURVEY_REUSE: Duration = Duration::from_secs(120);
/// How long a first delta page fetched by [`MailboxSource::prefetch_changes`] waits for
/// its [`MailboxSource::changes`] call before it is dropped (and fetched again if asked).
const PREFETCH_KEEP: Duration = Duration::from_secs(600);
/// Most inner requests in one `$batch` (Graph's limit).
const BATCH_LIMIT: usize = 20;
/// Characters escaped in one path segment of a `$batch` inner URL.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Message properties asked for in delta rounds.
const SUMMARY_SELECT: &[&str] = &[
    "receivedDateTime",
    "internetMessageId",
    "isRead",
    "flag",
    "parentFolderId",
    "subject",
];

/// Largest JSON page accepted.
const MAX_PAGE_BYTES: usize = 64 << 20;
/// Largest error body read (the rest is discarded).
const MAX_ERROR_BODY: usize = 64 << 10;
/// How many times one folder's delta may be restarted in one stream.
const MAX_DELTA_RESTARTS: u32 = 3;

/// Settings of a [`GraphMailboxSource`].
#[derive(Debug, Clone)]
pub struct GraphMailboxOptions {
    /// Longest wait for a response's headers, and for each chunk of its body.
    pub request_timeout: Duration,
    /// Per-mailbox limits: requests in flight (Outlook: 4) and request budget
    /// (Outlook: 10,000 per 10 minutes; keep a margin).
    pub limits: GateLimits,
    /// Retry limits and delays.
    pub retry: RetryPolicy,
    /// `Prefer: odata.maxpagesize` (and `$top` on folder listings).
    pub page_size: u32,
    /// MIME bodies up to this size stay in memory; larger ones go to a temporary file.
    pub spool_threshold: u64,
    /// Directory for spooled MIME bodies (the system temporary directory if `None`).
    pub spool_dir: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust, e.g. a local emulator's.
    pub extra_ca_pem: Option<String>,
    /// Registry of per-mailbox gates; `None` uses the process-wide one.
    pub registry: Option<Arc<ThrottleRegistry>>,
    /// Combine lookups into `$batch` requests (the folder survey: well-known folders,
    /// top level and folder delta in one request). `false` sends one request per lookup
    /// and walks the folder tree, for proxies that do not pass `$batch`.
    pub batch: bool,
}

impl Default for GraphMailboxOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(120),
            limits: GateLimits::default(),
            retry: RetryPolicy::default(),
            page_size: 100,
            spool_threshold: 4 << 20,
            spool_dir: None,
            extra_ca_pem: None,
            registry: None,
            batch: true,
        }
    }
}

/// Microsoft Graph implementation of [`MailboxSource`].
///
/// Cheap to clone; clones share gates, caches and metrics.
///
/// ```no_run
/// # async fn demo(tokens: std::sync::Arc<dyn m365_auth::TokenProvider>) -> Result<(), m365_mailbox::MailboxError> {
/// use m365_mailbox::{GraphMailboxOptions, GraphMailboxSource, MailboxSource};
/// let graph = url::Url::parse("https://graph.microsoft.com").map_err(|e| m365_mailbox::MailboxError::Config(e.to_string()))?;
/// let source = GraphMailboxSource::new(tokens, graph, GraphMailboxOptions::default())?;
/// source.probe("adele.vance@contoso.onmicrosoft.com").await?;
/// for folder in source.folders("adele.vance@contoso.onmicrosoft.com").await? {
///     println!("{} ({} items)", folder.path, folder.total_items);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GraphMailboxSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GraphMailboxSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphMailboxSource")
            .field("api", &self.inner.api.as_str())
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

struct Inner {
    api: Url,
    tokens: Arc<dyn TokenProvider>,
    graph: GraphClient,
    /// Set when an extra CA is configured: sends what the SDK built.
    direct: Option<reqwest::Client>,
    options: GraphMailboxOptions,
    registry: Arc<ThrottleRegistry>,
    metrics: Mutex<HashMap<String, Arc<Counters>>>,
    well_known: Mutex<HashMap<String, Arc<HashMap<String, String>>>>,
    /// Surveys made by `probe`, kept for the `folders` call that follows it.
    surveys: Mutex<HashMap<String, (std::time::Instant, Survey)>>,
    /// First delta pages fetched ahead, by (mailbox, folder id).
    prefetched: Mutex<HashMap<(String, String), Prefetched>>,
}

/// A folder's first delta page, fetched in a batch before its stream asked for it.
#[derive(Debug)]
struct Prefetched {
    /// The cursor the page continues from (`None`: a full enumeration).
    cursor: Option<DeltaCursor>,
    fetched: std::time::Instant,
    page: wire::Page<wire::Message>,
}

/// What one `$batch` tells about a mailbox: its well-known folders, the first page of its
/// top-level folders and the first page of its folder delta (the flat list of every folder
/// with its parent).
#[derive(Debug)]
struct Survey {
    /// Well-known folder ids → names.
    well_known: Arc<HashMap<String, String>>,
    /// First page of `GET mailFolders` (the top level, hidden folders included).
    top: Option<wire::Page<wire::MailFolder>>,
    /// First page of `mailFolders/delta`, when the service answered it.
    tree: Option<wire::Page<wire::MailFolder>>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> MailboxMetrics {
        MailboxMetrics {
            requests: self.requests.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// graph-rs-sdk's view of our [`TokenProvider`]: the token chosen for the current request
/// (see [`m365_auth::with_request_token`]), or a token from the provider outside one.
pub type TokenBridge = m365_auth::GraphTokenSource;

/// What a request is about, for turning a 404 into the right error.
#[derive(Debug, Clone)]
enum Target {
    Mailbox,
    Folder(String),
    Message(String),
}

/// The requests this client makes.
#[derive(Debug, Clone)]
enum Op {
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
    /// `POST $batch` with this payload.
    Batch(serde_json::Value),
}

impl Op {
    fn label(&self) -> String {
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
            Op::Batch(payload) => Some(payload.clone()),
            _ => None,
        }
    }
}

/// Per-mailbox context of one call.
struct MailboxCtx {
    mailbox: String,
    gate: Arc<MailboxGate>,
    counters: Arc<Counters>,
}

/// Why a call did not produce a value.
#[derive(Debug)]
enum Failure {
    /// An error for the caller.
    Error(MailboxError),
    /// The delta state is gone (410 / `syncStateNotFound`): restart the folder.
    SyncReset,
    /// A deletion was repeated after its answer was lost, and the message is gone: the
    /// first attempt did the work.
    AlreadyDone,
}

impl From<MailboxError> for Failure {
    fn from(e: MailboxError) -> Self {
        Failure::Error(e)
    }
}

/// Why reading a successful response's body failed.
enum BodyFailure {
    /// Worth another attempt (reset, truncation, stall).
    Retry { reason: String, timeout: bool },
    /// Final.
    Fatal(MailboxError),
}

impl GraphMailboxSource {
    /// A source talking to the Graph root `graph_root` (e.g. `https://graph.microsoft.com`,
    /// `https://graph.microsoft.us`, or an emulator's root; a `/v1.0` path is accepted too)
    /// with tokens from `tokens`.
    pub fn new(
        tokens: Arc<dyn TokenProvider>,
        graph_root: Url,
        options: GraphMailboxOptions,
    ) -> Result<Self, MailboxError> {
        let api = api_root(&graph_root)?;
        let graph = m365_auth::graph_client_at(
            tokens.clone(),
            &api,
            &m365_auth::GraphClientOptions {
                request_timeout: None,
                connect_timeout: Some(options.request_timeout),
            },
        );
        let direct = match &options.extra_ca_pem {
            None => None,
            Some(pem) => {
                let cert = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| {
                    MailboxError::Config(format!("the extra CA certificate is not valid PEM: {e}"))
                })?;
                let client = reqwest::Client::builder()
                    .add_root_certificate(cert)
                    .connect_timeout(options.request_timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| MailboxError::Config(format!("HTTP client: {e}")))?;
                Some(client)
            }
        };
        let registry = options
            .registry
            .clone()
            .unwrap_or_else(ThrottleRegistry::global);
        Ok(Self {
            inner: Arc::new(Inner {
                api,
                tokens,
                graph,
                direct,
                options,
                registry,
                metrics: Mutex::new(HashMap::new()),
                well_known: Mutex::new(HashMap::new()),
                surveys: Mutex::new(HashMap::new()),
                prefetched: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The v1.0 API root requests go to.
    pub fn api_root(&self) -> &Url {
        &self.inner.api
    }

    /// Total time this process's requests to `mailbox` held one of its slots (summed over
    /// requests; shared with every source using the same gate). Divided by the slot count
    /// and the elapsed time, it is the share of Outlook's concurrency allowance used.
    pub fn busy_time(&self, mailbox: &str) -> Duration {
        self.inner.ctx(mailbox).gate.busy_time()
    }
}

/// `{root}/v1.0` from a Graph root, with or without the `/v1.0`.
fn api_root(root: &Url) -> Result<Url, MailboxError> {
    if root.cannot_be_a_base() || !matches!(root.scheme(), "http" | "https") {
        return Err(MailboxError::Config(format!(
            "Graph URL {root} is not an http(s) URL"
        )));
    }
    if root.query().is_some() || root.fragment().is_some() {
        return Err(MailboxError::Config(format!(
            "Graph URL {root} must not carry a query or fragment"
        )));
    }
    let trimmed = root.path().trim_end_matches('/');
    let path = if trimmed.ends_with("/v1.0") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1.0")
    };
    let mut api = root.clone();
    api.set_path(&path);
    Ok(api)
}

impl Inner {
    fn ctx(&self, mailbox: &str) -> MailboxCtx {
        let key = mailbox.to_lowercase();
        let gate = self.registry.gate(
            &format!("{}|{key}", self.api.as_str()),
            &self.options.limits,
        );
        let counters = lock(&self.metrics).entry(key).or_default().clone();
        MailboxCtx {
            mailbox: mailbox.to_string(),
            gate,
            counters,
        }
    }

    fn mail_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let prefer = format!(
            "IdType=\"ImmutableId\", odata.maxpagesize={}",
            self.options.page_size.max(1)
        );
        if let Ok(value) = HeaderValue::from_str(&prefer) {
            headers.insert(HeaderName::from_static("prefer"), value);
        }
        headers
    }

    /// Builds the request with graph-rs-sdk.
    fn build(&self, mailbox: &str, op: &Op) -> graph_http::api_impl::RequestHandler {
        let g = &self.graph;
        let user = g.user(mailbox);
        let page = self.options.page_size.max(1).to_string();
        let handler = match op {
            Op::WellKnownFolder(name) => user.mail_folder(name).get_mail_folders().select(&["id"]),
            Op::RootFolders => user
                .mail_folders()
                .list_mail_folders()
                .append_query_pair("includeHiddenFolders", "true")
                .top(page.as_str()),
            Op::ChildFolders(id) => user
                .mail_folder(id)
                .child_folders()
                .list_child_folders()
                .append_query_pair("includeHiddenFolders", "true")
                .top(page.as_str()),
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
            Op::Move { id, .. } => {
                let body = op.body().unwrap_or_default();
                g.custom(
                    Method::POST,
                    Some(graph_rs_sdk::http::BodyRead::new(body.to_string())),
                )
                .extend_path(&["users", mailbox, "messages", id, "move"])
            }
            Op::PermanentDelete(id) => g.custom(Method::POST, None).extend_path(&[
                "users",
                mailbox,
                "messages",
                id,
                "permanentDelete",
            ]),
            Op::Batch(payload) => g
                .custom(
                    Method::POST,
                    Some(graph_rs_sdk::http::BodyRead::new(payload.to_string())),
                )
                .extend_path(&["$batch"]),
        };
        handler.headers(self.mail_headers())
    }

    /// Sends one attempt with the given token.
    async fn dispatch(
        &self,
        mailbox: &str,
        op: &Op,
        token: &AccessToken,
    ) -> Result<reqwest::Response, String> {
        let handler = self.build(mailbox, op);
        match &self.direct {
            None => m365_auth::with_request_token(token, handler.send())
                .await
                .map_err(|e| describe_graph_failure(&e)),
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
                request.send().await.map_err(|e| describe_reqwest(&e))
            }
        }
    }

    /// Runs one Graph call to completion: admission, token, send, status, body, retries.
    async fn execute<T, C, Fut>(
        &self,
        ctx: &MailboxCtx,
        op: &Op,
        target: &Target,
        mut consume: C,
    ) -> Result<T, Failure>
    where
        C: FnMut(reqwest::Response) -> Fut,
        Fut: Future<Output = Result<T, BodyFailure>>,
    {
        let policy = &self.options.retry;
        let timeout = self.options.request_timeout;
        let mut faults = 0u32;
        let mut throttles = 0u32;
        let mut refreshed = false;
        let mut last_was_timeout;
        let mut last_fault;
        let mut attempts = 0u32;
        // Whether an earlier attempt may have been carried out although we saw no answer.
        let mut uncertain = false;
        loop {
            // A batch's inner requests run up to 4 at once at the service: hold as many
            // slots as it may use so the mailbox's concurrency limit is kept.
            let admission = match op {
                Op::Batch(payload) => {
                    // Outlook counts every inner request against the mailbox's budget.
                    let inner = payload
                        .get("requests")
                        .and_then(|r| r.as_array())
                        .map_or(1, Vec::len);
                    ctx.gate
                        .admit_many(self.options.limits.max_in_flight, inner)
                        .await
                }
                _ => ctx.gate.admit().await,
            };
            // After admission: a long Retry-After wait must not leave us with a stale token.
            let token = self.tokens.token().await.map_err(MailboxError::Auth)?;
            attempts += 1;
            ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
            let sent = tokio::time::timeout(timeout, self.dispatch(&ctx.mailbox, op, &token)).await;
            match sent {
                Err(_) => {
                    last_was_timeout = true;
                    uncertain = true;
                    last_fault = format!("no response within {timeout:?}");
                }
                Ok(Err(e)) => {
                    last_was_timeout = false;
                    uncertain = true;
                    last_fault = e;
                }
                Ok(Ok(response)) => {
                    let status = response.status();
                    if status.is_success() {
                        match consume(response).await {
                            Ok(value) => return Ok(value),
                            Err(BodyFailure::Fatal(e)) => return Err(e.into()),
                            Err(BodyFailure::Retry { reason, timeout }) => {
                                last_was_timeout = timeout;
                                last_fault = reason;
                            }
                        }
                    } else {
                        let retry_after = policy.retry_after_header(response.headers());
                        let body = read_error_body(response, timeout, &ctx.counters).await;
                        let detail = wire::ErrorBody::parse(&body);
                        drop(admission);
                        match status {
                            StatusCode::TOO_MANY_REQUESTS => {
                                throttles += 1;
                                ctx.counters.throttled.fetch_add(1, Ordering::Relaxed);
                                if throttles > policy.max_throttled {
                                    return Err(MailboxError::RetriesExhausted {
                                        mailbox: ctx.mailbox.clone(),
                                        operation: op.label(),
                                        attempts,
                                        last: format!(
                                            "still throttled after {throttles} 429 answers"
                                        ),
                                    }
                                    .into());
                                }
                                let delay =
                                    retry_after.unwrap_or_else(|| policy.backoff(throttles));
                                tracing::debug!(
                                    mailbox = %ctx.mailbox,
                                    op = %op.label(),
                                    delay_ms = delay.as_millis() as u64,
                                    "throttled (429); mailbox closed until Retry-After expires"
                                );
                                ctx.gate.close_for(delay);
                                ctx.counters.retries.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            StatusCode::UNAUTHORIZED if !refreshed => {
                                tracing::info!(
                                    mailbox = %ctx.mailbox,
                                    "Graph rejected the access token (401); acquiring a new one"
                                );
                                self.tokens.invalidate(&token);
                                refreshed = true;
                                ctx.counters.retries.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                                last_was_timeout = false;
                                uncertain = true;
                                last_fault = match &detail {
                                    Some(d) => {
                                        format!("HTTP {} {}: {}", s.as_u16(), d.code, d.message)
                                    }
                                    None => format!("HTTP {}", s.as_u16()),
                                };
                            }
                            StatusCode::NOT_FOUND
                                if uncertain
                                    && matches!(op, Op::SoftDelete(_) | Op::PermanentDelete(_)) =>
                            {
                                return Err(Failure::AlreadyDone);
                            }
                            s => return Err(classify(&ctx.mailbox, op, target, s, detail)),
                        }
                        let wait = retry_after;
                        faults += 1;
                        if faults >= policy.max_attempts.max(1) {
                            return Err(give_up(
                                ctx,
                                op,
                                attempts,
                                last_was_timeout,
                                timeout,
                                last_fault,
                            )
                            .into());
                        }
                        let delay = wait.unwrap_or_else(|| policy.backoff(faults));
                        tracing::debug!(mailbox = %ctx.mailbox, op = %op.label(), fault = %last_fault, delay_ms = delay.as_millis() as u64, "retrying");
                        ctx.counters.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                }
            }
            drop(admission);
            faults += 1;
            if faults >= policy.max_attempts.max(1) {
                return Err(
                    give_up(ctx, op, attempts, last_was_timeout, timeout, last_fault).into(),
                );
            }
            let delay = policy.backoff(faults);
            tracing::debug!(mailbox = %ctx.mailbox, op = %op.label(), fault = %last_fault, delay_ms = delay.as_millis() as u64, "retrying");
            ctx.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
        }
    }

    /// A call whose successful answer is one JSON document.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &MailboxCtx,
        op: &Op,
        target: &Target,
    ) -> Result<T, Failure> {
        let timeout = self.options.request_timeout;
        let counters = ctx.counters.clone();
        self.execute(ctx, op, target, |response| {
            let counters = counters.clone();
            async move {
                let bytes = read_json_body(response, timeout, &counters).await?;
                wire::parse_object::<T>(&bytes).map_err(|e| {
                    if e.is_truncation() {
                        BodyFailure::Retry {
                            reason: e.to_string(),
                            timeout: false,
                        }
                    } else {
                        BodyFailure::Fatal(MailboxError::Protocol {
                            mailbox: String::new(),
                            operation: String::new(),
                            detail: e.to_string(),
                        })
                    }
                })
            }
        })
        .await
        .map_err(|f| fill_protocol(f, ctx, op))
    }

    /// A call whose successful answer body is ignored.
    async fn no_content(&self, ctx: &MailboxCtx, op: &Op, target: &Target) -> Result<(), Failure> {
        let timeout = self.options.request_timeout;
        let counters = ctx.counters.clone();
        self.execute(ctx, op, target, |response| {
            let counters = counters.clone();
            async move {
                // Read (and count) the body so the request is complete before the slot frees.
                read_json_body(response, timeout, &counters)
                    .await
                    .map(|_| ())
            }
        })
        .await
    }

    /// All pages of a collection, following nextLinks.
    async fn collect_pages<T: serde::de::DeserializeOwned>(
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
    fn check_link(&self, ctx: &MailboxCtx, link: &str) -> Result<Url, MailboxError> {
        let url = Url::parse(link).map_err(|e| MailboxError::Protocol {
            mailbox: ctx.mailbox.clone(),
            operation: "paging".into(),
            detail: format!("link {link:?} is not a URL: {e}"),
        })?;
        if url.origin() != self.api.origin() {
            return Err(MailboxError::Protocol {
                mailbox: ctx.mailbox.clone(),
                operation: "paging".into(),
                detail: format!(
                    "link points at {} instead of {}; not following it",
                    url.origin().ascii_serialization(),
                    self.api.origin().ascii_serialization()
                ),
            });
        }
        Ok(url)
    }

    /// Ids of the well-known folders of a mailbox (id → name), asked once per mailbox.
    async fn well_known(
        &self,
        ctx: &MailboxCtx,
    ) -> Result<Arc<HashMap<String, String>>, MailboxError> {
        let key = ctx.mailbox.to_lowercase();
        if let Some(cached) = lock(&self.well_known).get(&key) {
            return Ok(cached.clone());
        }
        let lookups = WELL_KNOWN_FOLDERS.iter().map(|name| async move {
            let op = Op::WellKnownFolder((*name).to_string());
            let target = Target::Folder((*name).to_string());
            match self.json::<wire::IdOnly>(ctx, &op, &target).await {
                Ok(found) => Ok(Some((found.id, (*name).to_string()))),
                // Not every mailbox has every well-known folder.
                Err(Failure::Error(MailboxError::FolderGone { .. }))
                | Err(Failure::Error(MailboxError::MessageGone { .. })) => Ok(None),
                Err(Failure::Error(MailboxError::Protocol { detail, .. }))
                    if detail.starts_with("HTTP 400") =>
                {
                    Ok(None)
                }
                Err(Failure::Error(e)) => Err(e),
                Err(Failure::SyncReset | Failure::AlreadyDone) => Ok(None),
            }
        });
        let mut map = HashMap::new();
        for result in futures::future::join_all(lookups).await {
            if let Some((id, name)) = result? {
                map.insert(id, name);
            }
        }
        let map = Arc::new(map);
        lock(&self.well_known).insert(key, map.clone());
        Ok(map)
    }

    /// One `$batch` asking for every well-known folder id, the top-level folders and the
    /// first page of the folder delta. Inner 429s (and 5xx) are asked again after their
    /// `Retry-After`; the inbox answers for the mailbox (its errors are the mailbox's).
    async fn survey(&self, ctx: &MailboxCtx) -> Result<Survey, MailboxError> {
        let user = percent_encoding::utf8_percent_encode(&ctx.mailbox, SEGMENT).to_string();
        let prefer = |size: u32| {
            serde_json::json!({
                "Prefer": format!("IdType=\"ImmutableId\", odata.maxpagesize={size}")
            })
        };
        let mut pending: Vec<(String, serde_json::Value)> = WELL_KNOWN_FOLDERS
            .iter()
            .map(|name| {
                (
                    format!("wk-{name}"),
                    serde_json::json!({
                        "id": format!("wk-{name}"),
                        "method": "GET",
                        "url": format!("/users/{user}/mailFolders/{name}?$select=id"),
                        "headers": prefer(1),
                    }),
                )
            })
            .collect();
        let page = self.options.page_size.max(1);
        pending.push((
            "top".into(),
            serde_json::json!({
                "id": "top",
                "method": "GET",
                "url": format!("/users/{user}/mailFolders?includeHiddenFolders=true&$top={page}"),
                "headers": prefer(page),
            }),
        ));
        pending.push((
            "tree".into(),
            serde_json::json!({
                "id": "tree",
                "method": "GET",
                "url": format!("/users/{user}/mailFolders/delta"),
                "headers": prefer(FOLDER_DELTA_PAGE_SIZE),
            }),
        ));
        let policy = &self.options.retry;
        let mut answers: HashMap<String, wire::BatchItem> = HashMap::new();
        let mut rounds = 0u32;
        while !pending.is_empty() {
            let payload = serde_json::json!({
                "requests": pending.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>()
            });
            let op = Op::Batch(payload);
            let response: wire::BatchResponse = self
                .json(ctx, &op, &Target::Mailbox)
                .await
                .map_err(|f| failure_to_error(f, ctx, &op.label()))?;
            let mut wait: Option<Duration> = None;
            let mut throttled = 0u64;
            for item in response.responses {
                if item.status == 429 || item.status >= 500 {
                    if item.status == 429 {
                        throttled += 1;
                    }
                    let after = item
                        .header("Retry-After")
                        .and_then(|v| policy.retry_after(v, SystemTime::now()));
                    if let Some(after) = after {
                        wait = Some(wait.map_or(after, |w| w.max(after)));
                    }
                    continue;
                }
                answers.insert(item.id.clone(), item);
            }
            // Requests the answer left out are asked again too.
            pending.retain(|(id, _)| !answers.contains_key(id));
            if pending.is_empty() {
                break;
            }
            rounds += 1;
            ctx.counters
                .throttled
                .fetch_add(throttled, Ordering::Relaxed);
            if rounds > policy.max_throttled {
                return Err(MailboxError::RetriesExhausted {
                    mailbox: ctx.mailbox.clone(),
                    operation: op.label(),
                    attempts: rounds,
                    last: format!("{} inner requests still unanswered", pending.len()),
                });
            }
            let delay = wait.unwrap_or_else(|| policy.backoff(rounds));
            tracing::debug!(mailbox = %ctx.mailbox, left = pending.len(), delay_ms = delay.as_millis() as u64, "inner batch requests throttled or failed; asking again");
            if throttled > 0 {
                ctx.gate.close_for(delay);
            } else {
                tokio::time::sleep(delay).await;
            }
            ctx.counters.retries.fetch_add(1, Ordering::Relaxed);
        }
        let mut well_known = HashMap::new();
        let mut top = None;
        let mut tree = None;
        for (id, item) in answers {
            let ok = (200..300).contains(&item.status);
            if let Some(name) = id.strip_prefix("wk-") {
                if ok {
                    if let Some(found) = item
                        .body
                        .and_then(|b| serde_json::from_value::<wire::IdOnly>(b).ok())
                    {
                        well_known.insert(found.id, name.to_string());
                    }
                    continue;
                }
                let status = StatusCode::from_u16(item.status).unwrap_or(StatusCode::BAD_GATEWAY);
                let inner = Op::WellKnownFolder(name.to_string());
                let target = if name == "inbox" {
                    Target::Mailbox
                } else {
                    Target::Folder(name.to_string())
                };
                match classify(&ctx.mailbox, &inner, &target, status, item.error()) {
                    // Not every mailbox has every well-known folder.
                    Failure::Error(MailboxError::FolderGone { .. })
                    | Failure::SyncReset
                    | Failure::AlreadyDone => {}
                    Failure::Error(MailboxError::Protocol { detail, .. })
                        if detail.starts_with("HTTP 400") && name != "inbox" => {}
                    Failure::Error(e) => return Err(e),
                }
            } else if ok {
                let page = item
                    .body
                    .and_then(|b| serde_json::from_value::<wire::Page<wire::MailFolder>>(b).ok());
                if id == "top" {
                    top = page;
                } else {
                    tree = page;
                }
            } else {
                tracing::debug!(mailbox = %ctx.mailbox, request = %id, status = item.status, "folder listing in the batch refused; asking alone");
            }
        }
        let well_known = Arc::new(well_known);
        lock(&self.well_known).insert(ctx.mailbox.to_lowercase(), well_known.clone());
        Ok(Survey {
            well_known,
            top,
            tree,
        })
    }

    /// The survey a recent probe made (taken: used once), or a new one; `None` when the
    /// service refuses `$batch` (the caller then asks one by one).
    async fn fresh_survey(&self, ctx: &MailboxCtx) -> Result<Option<Survey>, MailboxError> {
        if !self.options.batch {
            return Ok(None);
        }
        let key = ctx.mailbox.to_lowercase();
        let kept = lock(&self.surveys).remove(&key);
        if let Some((made, survey)) = kept
            && made.elapsed() < SURVEY_REUSE
        {
            return Ok(Some(survey));
        }
        match self.survey(ctx).await {
            Ok(s) => Ok(Some(s)),
            Err(MailboxError::Protocol { detail, .. }) => {
                tracing::info!(mailbox = %ctx.mailbox, %detail, "$batch refused; listing folders one request at a time");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// All pages of a listing whose first page is in hand; `None` when a later page
    /// fails for a reason that is not the mailbox's (the caller then asks otherwise).
    async fn rest_of(
        &self,
        ctx: &MailboxCtx,
        first: &wire::Page<wire::MailFolder>,
    ) -> Result<Option<Vec<wire::MailFolder>>, MailboxError> {
        let mut items = first.value.clone();
        let mut next = first.next_link.clone();
        while let Some(link) = next {
            let op = Op::Link(self.check_link(ctx, &link)?);
            match self
                .json::<wire::Page<wire::MailFolder>>(ctx, &op, &Target::Mailbox)
                .await
            {
                Ok(page) => {
                    items.extend(page.value);
                    next = page.next_link;
                }
                Err(Failure::Error(e)) if e.is_mailbox_wide() => return Err(e),
                Err(f) => {
                    let e = failure_to_error(f, ctx, &op.label());
                    tracing::info!(mailbox = %ctx.mailbox, error = %e, "folder listing page failed; asking otherwise");
                    return Ok(None);
                }
            }
        }
        Ok(Some(items))
    }

    /// `url` relative to the API root, for an inner `$batch` request; `None` if it is
    /// not below the root.
    fn relative(&self, url: &Url) -> Option<String> {
        if url.origin() != self.api.origin() {
            return None;
        }
        let rest = url.path().strip_prefix(self.api.path())?;
        if !rest.starts_with('/') {
            return None;
        }
        Some(match url.query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
        })
    }

    /// Fetches the first delta page of each folder, 20 folders per `$batch`, and keeps
    /// the pages for the streams. Folders whose answer is not a page (throttled, stale
    /// cursor, gone) are left to their stream.
    async fn prefetch(&self, ctx: &MailboxCtx, folders: &[(String, Option<DeltaCursor>)]) {
        let key = ctx.mailbox.to_lowercase();
        lock(&self.prefetched).retain(|(m, _), p| m != &key || p.fetched.elapsed() < PREFETCH_KEEP);
        let mut requests: Vec<(String, Option<DeltaCursor>, serde_json::Value)> = Vec::new();
        for (folder, cursor) in folders {
            let url = match cursor {
                None => Some(
                    self.build(&ctx.mailbox, &Op::FolderDelta(folder.clone()))
                        .url()
                        .clone(),
                ),
                Some(DeltaCursor(link)) => Url::parse(link)
                    .ok()
                    .filter(|u| link_folder(u).is_none_or(|f| &f == folder)),
            };
            let Some(relative) = url.as_ref().and_then(|u| self.relative(u)) else {
                continue;
            };
            let id = requests.len().to_string();
            let prefer = format!(
                "IdType=\"ImmutableId\", odata.maxpagesize={}",
                self.options.page_size.max(1)
            );
            requests.push((
                folder.clone(),
                cursor.clone(),
                serde_json::json!({"id": id, "method": "GET", "url": relative, "headers": {"Prefer": prefer}}),
            ));
        }
        let policy = &self.options.retry;
        for (chunk_index, chunk) in requests.chunks(BATCH_LIMIT).enumerate() {
            let payload = serde_json::json!({
                "requests": chunk.iter().map(|(_, _, r)| r.clone()).collect::<Vec<_>>()
            });
            let op = Op::Batch(payload);
            let response: wire::BatchResponse = match self.json(ctx, &op, &Target::Mailbox).await {
                Ok(r) => r,
                Err(f) => {
                    let e = failure_to_error(f, ctx, &op.label());
                    tracing::debug!(mailbox = %ctx.mailbox, error = %e, "delta prefetch failed; folders ask on their own");
                    return;
                }
            };
            let base = chunk_index * BATCH_LIMIT;
            let mut kept = Vec::new();
            for item in response.responses {
                if item.status == 429 {
                    ctx.counters.throttled.fetch_add(1, Ordering::Relaxed);
                    if let Some(after) = item
                        .header("Retry-After")
                        .and_then(|v| policy.retry_after(v, SystemTime::now()))
                    {
                        ctx.gate.close_for(after);
                    }
                    continue;
                }
                if !(200..300).contains(&item.status) {
                    continue;
                }
                let Some((folder, cursor, _)) = item
                    .id
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| requests.get(i))
                    .filter(|_| {
                        item.id
                            .parse::<usize>()
                            .is_ok_and(|i| i >= base && i < base + chunk.len())
                    })
                else {
                    continue;
                };
                let Some(page) = item
                    .body
                    .and_then(|b| serde_json::from_value::<wire::Page<wire::Message>>(b).ok())
                else {
                    continue;
                };
                kept.push((
                    (key.clone(), folder.clone()),
                    Prefetched {
                        cursor: cursor.clone(),
                        fetched: std::time::Instant::now(),
                        page,
                    },
                ));
            }
            lock(&self.prefetched).extend(kept);
        }
    }

    /// The prefetched first page of a folder's stream starting at `cursor`, if any.
    fn take_prefetched(
        &self,
        ctx: &MailboxCtx,
        folder: &str,
        cursor: Option<&DeltaCursor>,
    ) -> Option<wire::Page<wire::Message>> {
        let key = (ctx.mailbox.to_lowercase(), folder.to_string());
        let found = lock(&self.prefetched).remove(&key)?;
        (found.cursor.as_ref() == cursor && found.fetched.elapsed() < PREFETCH_KEEP)
            .then_some(found.page)
    }

    /// Every folder of the delta (all pages) grouped by parent id.
    async fn delta_children(
        &self,
        ctx: &MailboxCtx,
        first: &wire::Page<wire::MailFolder>,
    ) -> Result<HashMap<String, Vec<wire::MailFolder>>, MailboxError> {
        let mut children: HashMap<String, Vec<wire::MailFolder>> = HashMap::new();
        for folder in self.rest_of(ctx, first).await?.unwrap_or_default() {
            if let Some(parent) = folder.parent_folder_id.clone() {
                children.entry(parent).or_default().push(folder);
            }
        }
        Ok(children)
    }

    async fn list_folders(&self, ctx: &MailboxCtx) -> Result<Vec<Folder>, MailboxError> {
        let survey = self.fresh_survey(ctx).await?;
        let well_known = match &survey {
            Some(s) => s.well_known.clone(),
            None => self.well_known(ctx).await?,
        };
        // Children from the folder delta; a parent whose childFolderCount says the delta
        // missed some (it leaves out search folders) is asked for its children.
        let mut known = match survey.as_ref().and_then(|s| s.tree.as_ref()) {
            Some(first) => Some(self.delta_children(ctx, first).await?),
            None => None,
        };
        let top = match survey.as_ref().and_then(|s| s.top.as_ref()) {
            Some(first) => self.rest_of(ctx, first).await?,
            None => None,
        };
        // A folder's children are asked for unless Graph said it has none.
        let to_folder = |w: wire::MailFolder, parent: Option<&Folder>| -> (Folder, bool) {
            let name = w.display_name.clone().unwrap_or_default();
            let may_have_children = w.child_folder_count.is_none_or(|n| n > 0);
            let folder = Folder {
                path: paths::child_path(parent.map_or("", |p| p.path.as_str()), &name),
                well_known_name: well_known.get(&w.id).cloned(),
                parent_id: parent.map(|p| p.id.clone()),
                total_items: w.total_item_count.unwrap_or(0),
                unread_items: w.unread_item_count.unwrap_or(0),
                child_folders: w.child_folder_count.unwrap_or(0),
                hidden: w.is_hidden.unwrap_or(false),
                search_folder: w.is_search_folder(),
                display_name: name,
                id: w.id,
            };
            (folder, may_have_children)
        };
        let roots: Vec<wire::MailFolder> = match top {
            Some(top) => top,
            None => self
                .collect_pages(ctx, Op::RootFolders, &Target::Mailbox)
                .await
                .map_err(|f| failure_to_error(f, ctx, "GET mailFolders"))?,
        };
        let mut level: Vec<(Folder, bool)> =
            roots.into_iter().map(|w| to_folder(w, None)).collect();
        level.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        let mut all: Vec<Folder> = Vec::new();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        while !level.is_empty() {
            // A folder listed twice (or a cycle in a broken answer) is kept once.
            level.retain(|(f, _)| seen.insert(f.id.clone()));
            let mut next_level: Vec<(Folder, bool)> = Vec::new();
            let mut parents: Vec<Folder> = Vec::new();
            for (folder, more) in &level {
                if !*more {
                    continue;
                }
                let listed = known
                    .as_mut()
                    .and_then(|children| children.remove(folder.id.as_str()))
                    .filter(|kids| kids.len() as u64 >= folder.child_folders);
                match listed {
                    Some(kids) => {
                        let mut kids: Vec<(Folder, bool)> = kids
                            .into_iter()
                            .map(|w| to_folder(w, Some(folder)))
                            .collect();
                        kids.sort_by(|a, b| a.0.path.cmp(&b.0.path));
                        next_level.extend(kids);
                    }
                    None => parents.push(folder.clone()),
                }
            }
            all.extend(level.drain(..).map(|(f, _)| f));
            let children = stream::iter(parents.into_iter().map(|parent| async move {
                let target = Target::Folder(parent.id.clone());
                let found: Result<Vec<wire::MailFolder>, Failure> = self
                    .collect_pages(ctx, Op::ChildFolders(parent.id.clone()), &target)
                    .await;
                (parent, found)
            }))
            .buffered(self.options.limits.max_in_flight.max(1))
            .collect::<Vec<_>>()
            .await;
            for (parent, found) in children {
                match found {
                    Ok(kids) => {
                        let mut kids: Vec<(Folder, bool)> = kids
                            .into_iter()
                            .map(|w| to_folder(w, Some(&parent)))
                            .collect();
                        kids.sort_by(|a, b| a.0.path.cmp(&b.0.path));
                        next_level.extend(kids);
                    }
                    Err(Failure::Error(MailboxError::FolderGone { folder_id, .. })) => {
                        tracing::info!(mailbox = %ctx.mailbox, folder = %folder_id, "folder vanished while listing; skipped");
                    }
                    Err(f) => {
                        return Err(failure_to_error(f, ctx, "GET childFolders"));
                    }
                }
            }
            level = next_level;
        }
        Ok(all)
    }

    async fn fetch(
        &self,
        ctx: &MailboxCtx,
        id: &str,
        max_bytes: u64,
    ) -> Result<MimeContent, MailboxError> {
        let timeout = self.options.request_timeout;
        let threshold = self.options.spool_threshold;
        let spool_dir = self.options.spool_dir.clone();
        let counters = ctx.counters.clone();
        let op = Op::Mime(id.to_string());
        let target = Target::Message(id.to_string());
        self.execute(ctx, &op, &target, |response| {
            let counters = counters.clone();
            let spool_dir = spool_dir.clone();
            let mailbox = ctx.mailbox.clone();
            let id = id.to_string();
            async move {
                read_mime_body(
                    response,
                    MimeRead {
                        timeout,
                        threshold,
                        max_bytes,
                        spool_dir,
                        counters: &counters,
                        mailbox: &mailbox,
                        message_id: &id,
                    },
                )
                .await
            }
        })
        .await
        .map_err(|f| failure_to_error(f, ctx, &op.label()))
    }
}

/// State of one folder's change stream.
struct DeltaRun {
    span: tracing::Span,
    /// The first page, when it was fetched ahead in a batch.
    ready: Option<wire::Page<wire::Message>>,
    inner: Arc<Inner>,
    ctx: MailboxCtx,
    folder_id: String,
    next: Option<Op>,
    restarts: u32,
}

impl DeltaRun {
    /// Fetches the next page and turns it into events (possibly none: empty pages).
    async fn step(&mut self) -> Vec<Result<DeltaEvent, MailboxError>> {
        let Some(op) = self.next.take() else {
            return Vec::new();
        };
        let target = Target::Folder(self.folder_id.clone());
        let page: Result<wire::Page<wire::Message>, Failure> = match self.ready.take() {
            Some(page) => Ok(page),
            None => self.inner.json(&self.ctx, &op, &target).await,
        };
        match page {
            Err(Failure::SyncReset) => self.restart("the service no longer knows this delta state"),
            Err(Failure::AlreadyDone) => Vec::new(),
            Err(Failure::Error(e)) => vec![Err(e)],
            Ok(page) => {
                let mut events: Vec<Result<DeltaEvent, MailboxError>> = page
                    .value
                    .into_iter()
                    .map(|m| Ok(to_event(m, &self.folder_id)))
                    .collect();
                if let Some(next) = page.next_link {
                    match self.inner.check_link(&self.ctx, &next) {
                        Ok(url) => self.next = Some(Op::Link(url)),
                        Err(e) => events.push(Err(e)),
                    }
                } else if let Some(delta) = page.delta_link {
                    match self.inner.check_link(&self.ctx, &delta) {
                        Ok(_) => events.push(Ok(DeltaEvent::Done(DeltaCursor(delta)))),
                        Err(e) => events.push(Err(e)),
                    }
                } else {
                    events.push(Err(MailboxError::Protocol {
                        mailbox: self.ctx.mailbox.clone(),
                        operation: op.label(),
                        detail: "delta page carries neither @odata.nextLink nor @odata.deltaLink"
                            .into(),
                    }));
                }
                events
            }
        }
    }

    fn restart(&mut self, why: &str) -> Vec<Result<DeltaEvent, MailboxError>> {
        self.restarts += 1;
        if self.restarts > MAX_DELTA_RESTARTS {
            return vec![Err(MailboxError::Protocol {
                mailbox: self.ctx.mailbox.clone(),
                operation: format!("delta of folder {}", self.folder_id),
                detail: format!("delta state lost {} times in a row", self.restarts),
            })];
        }
        tracing::info!(mailbox = %self.ctx.mailbox, folder = %self.folder_id, "{why}; enumerating the folder again");
        self.next = Some(Op::FolderDelta(self.folder_id.clone()));
        vec![Ok(DeltaEvent::Restarted)]
    }
}

/// The folder a delta link names (`.../mailFolders/{id}/...` or `mailFolders('{id}')`), if
/// it names one in a form we recognise.
fn link_folder(url: &Url) -> Option<String> {
    let segments: Vec<String> = url
        .path_segments()?
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    for (i, segment) in segments.iter().enumerate() {
        if segment.eq_ignore_ascii_case("mailFolders") {
            return segments.get(i + 1).cloned();
        }
        if let Some(rest) = segment.strip_prefix("mailFolders(") {
            let id = rest.strip_suffix(')')?;
            return Some(id.trim_matches('\'').to_string());
        }
    }
    None
}

fn to_event(m: wire::Message, folder_id: &str) -> DeltaEvent {
    if m.removed.is_some() {
        return DeltaEvent::Removed { id: m.id };
    }
    DeltaEvent::Upsert(MessageSummary {
        size: m.size(),
        flagged: m.is_flagged(),
        folder_id: m
            .parent_folder_id
            .clone()
            .unwrap_or_else(|| folder_id.to_string()),
        received: m.received_date_time,
        internet_message_id: m.internet_message_id,
        is_read: m.is_read.unwrap_or(false),
        subject: m.subject,
        id: m.id,
    })
}

#[async_trait]
impl MailboxSource for GraphMailboxSource {
    fn limits(&self) -> SourceLimits {
        SourceLimits::GRAPH
    }

    async fn probe(&self, mailbox: &str) -> Result<(), MailboxError> {
        let span = tracing::info_span!("probe", mailbox);
        async {
            let ctx = self.inner.ctx(mailbox);
            // The survey `folders` needs anyway answers the probe too (its inbox lookup
            // carries the mailbox's errors); kept briefly for that `folders` call.
            let surveyed = if self.inner.options.batch {
                self.inner.survey(&ctx).await
            } else {
                Err(MailboxError::Protocol {
                    mailbox: mailbox.to_string(),
                    operation: "probe".into(),
                    detail: "$batch switched off".into(),
                })
            };
            match surveyed {
                Ok(survey) => {
                    lock(&self.inner.surveys)
                        .insert(mailbox.to_lowercase(), (std::time::Instant::now(), survey));
                    Ok(())
                }
                // A service without `$batch`: ask for the inbox alone.
                Err(MailboxError::Protocol { .. }) => {
                    let op = Op::WellKnownFolder("inbox".into());
                    self.inner
                        .json::<wire::IdOnly>(&ctx, &op, &Target::Mailbox)
                        .await
                        .map(|_| ())
                        .map_err(|f| failure_to_error(f, &ctx, &op.label()))
                }
                Err(e) => Err(e),
            }
        }
        .instrument(span)
        .await
    }

    async fn folders(&self, mailbox: &str) -> Result<Vec<Folder>, MailboxError> {
        let span = tracing::info_span!("folders", mailbox);
        async {
            let ctx = self.inner.ctx(mailbox);
            self.inner.list_folders(&ctx).await
        }
        .instrument(span)
        .await
    }

    fn changes(
        &self,
        mailbox: &str,
        folder_id: &str,
        cursor: Option<DeltaCursor>,
    ) -> BoxStream<'static, Result<DeltaEvent, MailboxError>> {
        let ctx = self.inner.ctx(mailbox);
        let mut ready = self.inner.take_prefetched(&ctx, folder_id, cursor.as_ref());
        let fresh = cursor.is_none();
        let mut run = DeltaRun {
            span: tracing::info_span!("changes", mailbox, folder = folder_id),
            ready: None,
            inner: self.inner.clone(),
            ctx,
            folder_id: folder_id.to_string(),
            next: Some(Op::FolderDelta(folder_id.to_string())),
            restarts: 0,
        };
        let mut first: Vec<Result<DeltaEvent, MailboxError>> = Vec::new();
        if fresh {
            run.ready = ready.take();
        }
        if let Some(DeltaCursor(link)) = cursor {
            match run.inner.check_link(&run.ctx, &link) {
                Ok(url) if link_folder(&url).is_some_and(|f| f != folder_id) => {
                    tracing::warn!(
                        mailbox,
                        folder = folder_id,
                        "delta cursor of another folder"
                    );
                    first = run.restart("the saved delta cursor belongs to another folder");
                }
                Ok(url) => {
                    run.next = Some(Op::Link(url));
                    run.ready = ready.take();
                }
                Err(e) => {
                    tracing::warn!(mailbox, folder = folder_id, error = %e, "unusable delta cursor");
                    first = run.restart("the saved delta cursor is unusable");
                }
            }
        }
        let pages = stream::unfold(run, |mut run| async move {
            run.next.as_ref()?;
            let span = run.span.clone();
            let events = run.step().instrument(span).await;
            if events.iter().any(|e| e.is_err()) {
                run.next = None;
            }
            Some((stream::iter(events), run))
        })
        .flatten();
        stream::iter(first).chain(pages).boxed()
    }

    async fn fetch_mime(
        &self,
        mailbox: &str,
        message_id: &str,
        max_bytes: u64,
    ) -> Result<MimeContent, MailboxError> {
        let span = tracing::info_span!("fetch_mime", mailbox, message = message_id);
        async {
            let ctx = self.inner.ctx(mailbox);
            self.inner.fetch(&ctx, message_id, max_bytes).await
        }
        .instrument(span)
        .await
    }

    async fn prefetch_changes(&self, mailbox: &str, folders: &[(String, Option<DeltaCursor>)]) {
        if !self.inner.options.batch || folders.is_empty() {
            return;
        }
        let span = tracing::info_span!("prefetch_changes", mailbox, folders = folders.len());
        let ctx = self.inner.ctx(mailbox);
        self.inner.prefetch(&ctx, folders).instrument(span).await;
    }

    async fn delete(
        &self,
        mailbox: &str,
        message_id: &str,
        mode: DeleteMode,
    ) -> Result<(), MailboxError> {
        let span = tracing::info_span!("delete", mailbox, message = message_id, ?mode);
        async {
            let ctx = self.inner.ctx(mailbox);
            let op = match mode {
                DeleteMode::MoveToDeletedItems => Op::Move {
                    id: message_id.to_string(),
                    destination: "deleteditems".into(),
                },
                DeleteMode::SoftDelete => Op::SoftDelete(message_id.to_string()),
                DeleteMode::HardDelete => Op::PermanentDelete(message_id.to_string()),
            };
            let target = Target::Message(message_id.to_string());
            match self.inner.no_content(&ctx, &op, &target).await {
                Ok(()) | Err(Failure::AlreadyDone) => Ok(()),
                Err(f) => Err(failure_to_error(f, &ctx, &op.label())),
            }
        }
        .instrument(span)
        .await
    }

    fn metrics(&self, mailbox: &str) -> MailboxMetrics {
        lock(&self.inner.metrics)
            .get(&mailbox.to_lowercase())
            .map(|c| c.snapshot())
            .unwrap_or_default()
    }
}

/// Turns a non-success answer into an error (or a delta reset).
fn classify(
    mailbox: &str,
    op: &Op,
    target: &Target,
    status: StatusCode,
    detail: Option<wire::ErrorDetail>,
) -> Failure {
    let (code, message) = detail.map(|d| (d.code, d.message)).unwrap_or_default();
    let code_lc = code.to_ascii_lowercase();
    if status == StatusCode::GONE || code_lc.contains("syncstate") || code_lc == "resyncrequired" {
        return Failure::SyncReset;
    }
    let mailbox = mailbox.to_string();
    let folder_gone = |mailbox: String| match target {
        Target::Folder(id) => MailboxError::FolderGone {
            mailbox,
            folder_id: id.clone(),
        },
        _ => MailboxError::FolderGone {
            mailbox,
            folder_id: String::new(),
        },
    };
    let error = match status {
        StatusCode::UNAUTHORIZED => MailboxError::TokenRejected {
            mailbox,
            code,
            message,
        },
        StatusCode::FORBIDDEN => MailboxError::AccessDenied {
            mailbox,
            code,
            message,
        },
        StatusCode::NOT_FOUND => match code.as_str() {
            "MailboxNotEnabledForRESTAPI"
            | "MailboxNotSupportedForRESTAPI"
            | "ErrorNonExistentMailbox" => MailboxError::NoMailbox { mailbox },
            "ErrorInvalidUser" | "Request_ResourceNotFound" | "UserNotFound" => {
                MailboxError::UnknownUser { mailbox, code }
            }
            "ErrorFolderNotFound" => folder_gone(mailbox),
            _ => match target {
                Target::Message(id) => MailboxError::MessageGone {
                    mailbox,
                    message_id: id.clone(),
                },
                Target::Folder(_) => folder_gone(mailbox),
                Target::Mailbox => MailboxError::NoMailbox { mailbox },
            },
        },
        s => MailboxError::Protocol {
            mailbox,
            operation: op.label(),
            detail: if code.is_empty() {
                format!("HTTP {}", s.as_u16())
            } else {
                format!("HTTP {} {code}: {message}", s.as_u16())
            },
        },
    };
    Failure::Error(error)
}

fn give_up(
    ctx: &MailboxCtx,
    op: &Op,
    attempts: u32,
    last_was_timeout: bool,
    timeout: Duration,
    last: String,
) -> MailboxError {
    if last_was_timeout {
        MailboxError::Timeout {
            mailbox: ctx.mailbox.clone(),
            operation: op.label(),
            after: timeout,
            attempts,
        }
    } else {
        MailboxError::RetriesExhausted {
            mailbox: ctx.mailbox.clone(),
            operation: op.label(),
            attempts,
            last,
        }
    }
}

/// Protocol errors raised inside body readers do not know the mailbox and operation yet.
fn fill_protocol(f: Failure, ctx: &MailboxCtx, op: &Op) -> Failure {
    match f {
        Failure::Error(MailboxError::Protocol {
            mailbox,
            operation,
            detail,
        }) => Failure::Error(MailboxError::Protocol {
            mailbox: if mailbox.is_empty() {
                ctx.mailbox.clone()
            } else {
                mailbox
            },
            operation: if operation.is_empty() {
                op.label()
            } else {
                operation
            },
            detail,
        }),
        other => other,
    }
}

fn failure_to_error(f: Failure, ctx: &MailboxCtx, operation: &str) -> MailboxError {
    match f {
        Failure::Error(e) => e,
        Failure::SyncReset => MailboxError::Protocol {
            mailbox: ctx.mailbox.clone(),
            operation: operation.to_string(),
            detail: "HTTP 410 Gone outside a delta round".into(),
        },
        Failure::AlreadyDone => MailboxError::Protocol {
            mailbox: ctx.mailbox.clone(),
            operation: operation.to_string(),
            detail: "HTTP 404 on a repeated request".into(),
        },
    }
}

fn describe_graph_failure(e: &graph_rs_sdk::GraphFailure) -> String {
    match e {
        graph_rs_sdk::GraphFailure::ReqwestError(r) => describe_reqwest(r),
        // Never print request headers: keep the variant's own message short.
        graph_rs_sdk::GraphFailure::PreFlightError { message, .. } => {
            format!("request could not be built: {message}")
        }
        other => {
            let text = other.to_string();
            text.chars().take(300).collect()
        }
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "body failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn read_error_body(
    response: reqwest::Response,
    timeout: Duration,
    counters: &Counters,
) -> Bytes {
    let mut stream = response.bytes_stream();
    let mut buf = BytesMut::new();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(timeout, stream.next()).await {
        counters
            .bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if buf.len() < MAX_ERROR_BODY {
            let room = MAX_ERROR_BODY - buf.len();
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }
    buf.freeze()
}

/// Reads a JSON body completely, checking it against `Content-Length`.
async fn read_json_body(
    response: reqwest::Response,
    timeout: Duration,
    counters: &Counters,
) -> Result<Bytes, BodyFailure> {
    let expected = response.content_length();
    let mut stream = response.bytes_stream();
    let mut buf = BytesMut::new();
    loop {
        match tokio::time::timeout(timeout, stream.next()).await {
            Err(_) => {
                return Err(BodyFailure::Retry {
                    reason: format!("body stalled for {timeout:?}"),
                    timeout: true,
                });
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(BodyFailure::Retry {
                    reason: format!("body interrupted: {}", describe_reqwest(&e)),
                    timeout: false,
                });
            }
            Ok(Some(Ok(chunk))) => {
                counters
                    .bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                buf.extend_from_slice(&chunk);
                if buf.len() > MAX_PAGE_BYTES {
                    return Err(BodyFailure::Fatal(MailboxError::Protocol {
                        mailbox: String::new(),
                        operation: String::new(),
                        detail: format!("JSON answer larger than {MAX_PAGE_BYTES} bytes"),
                    }));
                }
            }
        }
    }
    if let Some(n) = expected
        && buf.len() as u64 != n
    {
        return Err(BodyFailure::Retry {
            reason: format!("truncated body: {} of {n} bytes", buf.len()),
            timeout: false,
        });
    }
    Ok(buf.freeze())
}

struct MimeRead<'a> {
    timeout: Duration,
    threshold: u64,
    max_bytes: u64,
    spool_dir: Option<PathBuf>,
    counters: &'a Counters,
    mailbox: &'a str,
    message_id: &'a str,
}

/// Where MIME bytes go while they arrive.
enum Sink {
    Memory(BytesMut),
    File {
        writer: tokio::io::BufWriter<tokio::fs::File>,
        path: tempfile::TempPath,
    },
}

/// Streams a MIME body into memory or, past the threshold, a private temporary file.
async fn read_mime_body(
    response: reqwest::Response,
    r: MimeRead<'_>,
) -> Result<MimeContent, BodyFailure> {
    let too_large = |size: u64| {
        BodyFailure::Fatal(MailboxError::TooLarge {
            mailbox: r.mailbox.to_string(),
            message_id: r.message_id.to_string(),
            size,
            limit: r.max_bytes,
        })
    };
    let io_error = |doing: &str, source: std::io::Error| {
        BodyFailure::Fatal(MailboxError::Io {
            mailbox: r.mailbox.to_string(),
            doing: format!("{doing} message {}", r.message_id),
            source,
        })
    };
    let expected = response.content_length();
    if let Some(n) = expected
        && n > r.max_bytes
    {
        return Err(too_large(n));
    }
    let mut sink = if expected.is_some_and(|n| n > r.threshold) {
        spool_file(&r).await.map_err(|e| io_error("spooling", e))?
    } else {
        Sink::Memory(BytesMut::with_capacity(
            expected.map_or(64 << 10, |n| n as usize),
        ))
    };
    let mut received: u64 = 0;
    let mut stream = response.bytes_stream();
    loop {
        let chunk = match tokio::time::timeout(r.timeout, stream.next()).await {
            Err(_) => {
                return Err(BodyFailure::Retry {
                    reason: format!("body stalled for {:?}", r.timeout),
                    timeout: true,
                });
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(BodyFailure::Retry {
                    reason: format!("body interrupted: {}", describe_reqwest(&e)),
                    timeout: false,
                });
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        r.counters
            .bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        received += chunk.len() as u64;
        if received > r.max_bytes {
            return Err(too_large(received));
        }
        if let Sink::Memory(buf) = &mut sink
            && received > r.threshold
        {
            let mut file = spool_file(&r).await.map_err(|e| io_error("spooling", e))?;
            if let Sink::File { writer, .. } = &mut file {
                writer
                    .write_all(buf)
                    .await
                    .map_err(|e| io_error("spooling", e))?;
            }
            sink = file;
        }
        match &mut sink {
            Sink::Memory(buf) => buf.extend_from_slice(&chunk),
            Sink::File { writer, .. } => writer
                .write_all(&chunk)
                .await
                .map_err(|e| io_error("spooling", e))?,
        }
    }
    if let Some(n) = expected
        && received != n
    {
        return Err(BodyFailure::Retry {
            reason: format!("truncated body: {received} of {n} bytes"),
            timeout: false,
        });
    }
    match sink {
        Sink::Memory(buf) => Ok(MimeContent::Memory(buf.freeze())),
        Sink::File { mut writer, path } => {
            writer.flush().await.map_err(|e| io_error("spooling", e))?;
            drop(writer);
            Ok(MimeContent::Spooled(path))
        }
    }
}

async fn spool_file(r: &MimeRead<'_>) -> std::io::Result<Sink> {
    let named = match &r.spool_dir {
        Some(dir) => tempfile::Builder::new().prefix("mime-").tempfile_in(dir)?,
        None => tempfile::Builder::new().prefix("mime-").tempfile()?,
    };
    let (file, path) = named.into_parts();
    let writer = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
    Ok(Sink::File { writer, path })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_auth::StaticTokenProvider;

    fn source(root: &str) -> GraphMailboxSource {
        let tokens = Arc::new(StaticTokenProvider::new(AccessToken::new(
            "t",
            SystemTime::now() + Duration::from_secs(3600),
        )));
        GraphMailboxSource::new(
            tokens,
            Url::parse(root).unwrap(),
            GraphMailboxOptions::default(),
        )
        .unwrap()
    }

    fn url_of(s: &GraphMailboxSource, op: Op) -> String {
        s.inner.build("a@contoso.com", &op).url().to_string()
    }

    #[test]
    fn api_root_accepts_bare_and_versioned_roots() {
        for (root, api) in [
            (
                "https://graph.microsoft.com",
                "https://graph.microsoft.com/v1.0",
            ),
            (
                "https://graph.microsoft.com/",
                "https://graph.microsoft.com/v1.0",
            ),
            (
                "https://graph.microsoft.us/v1.0",
                "https://graph.microsoft.us/v1.0",
            ),
            ("http://127.0.0.1:8080/v1.0/", "http://127.0.0.1:8080/v1.0"),
            (
                "http://127.0.0.1:8080/graph",
                "http://127.0.0.1:8080/graph/v1.0",
            ),
        ] {
            assert_eq!(api_root(&Url::parse(root).unwrap()).unwrap().as_str(), api);
        }
        assert!(api_root(&Url::parse("ftp://x").unwrap()).is_err());
        assert!(api_root(&Url::parse("https://x/?a=b").unwrap()).is_err());
    }

    #[test]
    fn requests_are_built_with_the_sdk() {
        let s = source("http://127.0.0.1:9/");
        assert_eq!(
            url_of(&s, Op::RootFolders),
            "http://127.0.0.1:9/v1.0/users/a@contoso.com/mailFolders?includeHiddenFolders=true&%24top=100"
        );
        assert_eq!(
            url_of(&s, Op::ChildFolders("AQMk/x=".into())),
            "http://127.0.0.1:9/v1.0/users/a@contoso.com/mailFolders/AQMk%2Fx=/childFolders?includeHiddenFolders=true&%24top=100"
        );
        assert_eq!(
            url_of(&s, Op::WellKnownFolder("inbox".into())),
            "http://127.0.0.1:9/v1.0/users/a@contoso.com/mailFolders/inbox?%24select=id"
        );
        let delta = url_of(&s, Op::FolderDelta("F1".into()));
        assert!(
            delta.starts_with("http://127.0.0.1:9/v1.0/users/a@contoso.com/mailFolders/F1/messages/delta()?%24select=receivedDateTime%2CinternetMessageId"),
            "{delta}"
        );
        assert!(delta.contains("%24expand=singleValueExtendedProperties%28%24filter%3Did+eq+%27Integer+0x0E08%27%29"), "{delta}");
        assert_eq!(
            url_of(&s, Op::Mime("AAMk-1=".into())),
            "http://127.0.0.1:9/v1.0/users/a@contoso.com/messages/AAMk-1=/$value"
        );
        assert_eq!(
            url_of(&s, Op::PermanentDelete("M".into())),
            "http://127.0.0.1:9/v1.0/users/a@contoso.com/messages/M/permanentDelete"
        );
    }

    #[test]
    fn ids_with_slashes_stay_one_segment() {
        let s = source("http://127.0.0.1:9/");
        assert_eq!(
            url_of(&s, Op::Mime("AAMk/1+2=".into())),
            "http://127.0.0.1:9/v1.0/users/a@contoso.com/messages/AAMk%2F1+2=/$value"
        );
        assert_eq!(
            url_of(
                &s,
                Op::Move {
                    id: "a/b".into(),
                    destination: "deleteditems".into()
                }
            ),
            "http://127.0.0.1:9/v1.0/users/a@contoso.com/messages/a%2Fb/move"
        );
        assert_eq!(
            url_of(&s, Op::SoftDelete("a/b".into())),
            "http://127.0.0.1:9/v1.0/users/a@contoso.com/messages/a%2Fb"
        );
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
        assert!(
            s.inner
                .check_link(
                    &ctx,
                    "http://127.0.0.1:9/v1.0/users/a/messages/delta?$skiptoken=x"
                )
                .is_ok()
        );
        assert!(
            s.inner
                .check_link(&ctx, "http://127.0.0.1:10/v1.0/x")
                .is_err()
        );
        assert!(
            s.inner
                .check_link(&ctx, "https://evil.example/v1.0/x")
                .is_err()
        );
        assert!(s.inner.check_link(&ctx, "not a url").is_err());
    }

    #[test]
    fn delta_links_name_their_folder() {
        let folder = |u: &str| link_folder(&Url::parse(u).unwrap());
        assert_eq!(
            folder("https://g/v1.0/users/a/mailFolders/AQ%2Fx=/messages/delta?$deltatoken=1")
                .as_deref(),
            Some("AQ/x=")
        );
        assert_eq!(
            folder("https://g/v1.0/users('a')/mailFolders('AQx=')/messages/delta()?$deltatoken=1")
                .as_deref(),
            Some("AQx=")
        );
        assert_eq!(folder("https://g/v1.0/delta?$deltatoken=1"), None);
    }

    #[test]
    fn not_found_codes_map_to_actionable_errors() {
        let op = Op::RootFolders;
        let detail = |code: &str| {
            Some(wire::ErrorDetail {
                code: code.into(),
                message: "m".into(),
            })
        };
        let err = |target: Target, status: u16, code: &str| match classify(
            "a@x",
            &op,
            &target,
            StatusCode::from_u16(status).unwrap(),
            detail(code),
        ) {
            Failure::Error(e) => format!("{e:?}"),
            Failure::SyncReset => "SyncReset".into(),
            Failure::AlreadyDone => "AlreadyDone".into(),
        };
        assert!(err(Target::Mailbox, 404, "MailboxNotEnabledForRESTAPI").starts_with("NoMailbox"));
        assert!(err(Target::Mailbox, 404, "ResourceNotFound").starts_with("NoMailbox"));
        assert!(err(Target::Mailbox, 404, "ErrorInvalidUser").starts_with("UnknownUser"));
        assert!(err(Target::Mailbox, 403, "ErrorAccessDenied").starts_with("AccessDenied"));
        assert!(
            err(Target::Folder("F".into()), 404, "ErrorFolderNotFound").starts_with("FolderGone")
        );
        assert!(
            err(Target::Message("M".into()), 404, "ErrorItemNotFound").starts_with("MessageGone")
        );
        assert_eq!(err(Target::Folder("F".into()), 410, ""), "SyncReset");
        assert_eq!(
            err(Target::Folder("F".into()), 400, "syncStateNotFound"),
            "SyncReset"
        );
        assert!(err(Target::Mailbox, 400, "BadRequest").starts_with("Protocol"));
    }

    #[test]
    fn debug_never_shows_tokens() {
        let s = source("http://127.0.0.1:9/");
        let text = format!("{s:?}");
        assert!(!text.contains("Bearer"));
    }
}
