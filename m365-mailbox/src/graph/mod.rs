//! [`GraphMailboxSource`]: mailboxes over Microsoft Graph v1.0, requests built and sent
//! with graph-rs-sdk, everything around them ours.
//!
//! Why our own loop: graph-rs-sdk's paging helpers do not check the status of each page
//! and its retry layers end a listing silently on a throttled page. So every request goes
//! through the workspace's one retry loop (`m365_auth::transport::Transport`, see [`op`]):
//! admission by the mailbox's shared gate ([`crate::throttle`]), a fresh token, `send()`,
//! a status check, the body read under a per-chunk timeout and checked against
//! `Content-Length`, then the retry rules: `Retry-After` for 429 (closing the mailbox for
//! everyone), exponential backoff for 5xx / resets / truncated bodies / timeouts, one
//! token refresh on 401. Paging follows `@odata.nextLink`/`@odata.deltaLink` verbatim
//! (same origin only: they carry our token). Refusals become errors in [`classify`].
//!
//! Request economy: `probe` and `folders` share one `$batch` ([`batch`], [`folders`]:
//! every well-known folder id, the top-level listing and the first page of
//! `mailFolders/delta`), and `prefetch_changes` asks the first delta page of up to 20
//! folders in one `$batch` ([`delta`]); a batch holds all of the mailbox's slots while the
//! service runs its inner requests, and inner 429s are asked again after their
//! `Retry-After`. Where the folder delta leaves folders out (search folders),
//! `childFolderCount` tells, and those parents are walked. MIME bodies are streamed to
//! memory or a temporary file ([`body`]).
//!
//! graph-rs-sdk 3.0.1 cannot be given extra trust anchors, so when an extra CA
//! certificate is configured (an https emulator), the URL is still built by the SDK but
//! sent with our own reqwest client that trusts it.

mod batch;
mod body;
mod classify;
mod compose;
mod delta;
mod folders;
mod op;
mod request;
mod upload;
mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use graph_rs_sdk::GraphClient;
use m365_auth::TokenProvider;
use m365_auth::transport::{RequestCounters, ResourceGate, Transport};
use tracing::Instrument;
use url::Url;

use crate::budget::UploadBudgets;
use crate::retry::RetryPolicy;
use crate::throttle::{GateLimits, ThrottleRegistry, gate_key};
use crate::write::WriteLimits;
use crate::{
    DeleteMode, DeltaCursor, DeltaEvent, Folder, MailboxError, MailboxMetrics, MailboxSource,
    MimeContent, SourceLimits, wire,
};

pub use folders::WELL_KNOWN_FOLDERS;
use op::{Failure, Op, Target};

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
    /// What writes may send (request size, attachment sizes) and the upload budget per
    /// mailbox ([`WriteLimits::GRAPH`]; a test against a time-scaled emulator shortens the
    /// budget's window).
    pub write_limits: WriteLimits,
    /// Registry of per-mailbox upload budgets; `None` uses the process-wide one.
    pub upload_budgets: Option<Arc<UploadBudgets>>,
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
            write_limits: WriteLimits::GRAPH,
            upload_budgets: None,
        }
    }
}

/// Microsoft Graph implementation of [`MailboxSource`] and of [`crate::MailboxWriter`]:
/// one object reads and writes, with one gate and one upload budget per mailbox.
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
    transport: Transport,
    graph: GraphClient,
    /// The same Graph at `/beta`: archive mailboxes and `settings/exchange`.
    graph_beta: GraphClient,
    /// Sends beta requests (following no redirect by itself, see `op::send_following`).
    plain: reqwest::Client,
    /// Set when an extra CA is configured: sends what the SDK built.
    direct: Option<reqwest::Client>,
    options: GraphMailboxOptions,
    registry: Arc<ThrottleRegistry>,
    metrics: Mutex<HashMap<String, Arc<RequestCounters>>>,
    well_known: Mutex<HashMap<String, Arc<HashMap<String, String>>>>,
    /// Surveys made by `probe`, kept for the `folders` call that follows it.
    surveys: Mutex<HashMap<String, (std::time::Instant, folders::Survey)>>,
    /// The first page of the Recoverable Items root's children asked in a survey
    /// (`None`: the mailbox has no such root), kept for `recoverable_folders`.
    recoverable_first: Mutex<HashMap<String, folders::KeptPage>>,
    /// First delta pages fetched ahead, by (mailbox, folder id).
    prefetched: Mutex<HashMap<(String, String), delta::Prefetched>>,
    /// The write side: its retry loop, upload budgets, counters and folder cache.
    writes: write::WriteState,
}

/// graph-rs-sdk's view of our [`TokenProvider`]: the token chosen for the current request
/// (see [`m365_auth::with_request_token`]), or a token from the provider outside one.
pub type TokenBridge = m365_auth::GraphTokenSource;

/// Per-mailbox context of one call.
struct MailboxCtx {
    mailbox: String,
    /// Per-chunk timeout of body reads.
    timeout: Duration,
    gate: Arc<ResourceGate>,
    counters: Arc<RequestCounters>,
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
        let api = m365_auth::transport::api_root(&graph_root)
            .map_err(|reason| MailboxError::Config(format!("Graph URL: {reason}")))?;
        let client_options = m365_auth::GraphClientOptions {
            request_timeout: None,
            connect_timeout: Some(options.request_timeout),
        };
        let graph = m365_auth::graph_client_at(tokens.clone(), &api, &client_options);
        let graph_beta =
            m365_auth::graph_client_at(tokens.clone(), &beta_root(&api), &client_options);
        let plain = m365_auth::transport::http_client(
            options.extra_ca_pem.as_deref(),
            options.request_timeout,
            None,
        )
        .map_err(|reason| MailboxError::Config(format!("the extra CA certificate: {reason}")))?;
        let direct = match &options.extra_ca_pem {
            None => None,
            Some(pem) => Some(
                m365_auth::transport::http_client(Some(pem), options.request_timeout, None)
                    .map_err(|reason| {
                        MailboxError::Config(format!("the extra CA certificate: {reason}"))
                    })?,
            ),
        };
        let registry = options
            .registry
            .clone()
            .unwrap_or_else(ThrottleRegistry::global);
        let transport = Transport::new(tokens, options.retry.clone(), options.request_timeout);
        let writes = write::WriteState::new(&transport, &options);
        Ok(Self {
            inner: Arc::new(Inner {
                api,
                transport,
                graph,
                graph_beta,
                plain,
                direct,
                options,
                registry,
                metrics: Mutex::new(HashMap::new()),
                well_known: Mutex::new(HashMap::new()),
                surveys: Mutex::new(HashMap::new()),
                recoverable_first: Mutex::new(HashMap::new()),
                prefetched: Mutex::new(HashMap::new()),
                writes,
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

/// The beta API root beside a `…/v1.0` root (`…/beta`).
fn beta_root(api: &Url) -> Url {
    let mut beta = api.clone();
    let path = api.path().trim_end_matches('/');
    let base = path.strip_suffix("v1.0").unwrap_or(path);
    let base = base.trim_end_matches('/');
    beta.set_path(&format!("{base}/beta"));
    beta
}

impl Inner {
    fn ctx(&self, mailbox: &str) -> MailboxCtx {
        let gate = self
            .registry
            .gate(&gate_key(&self.api, mailbox), &self.options.limits);
        let counters = lock(&self.metrics)
            .entry(mailbox.to_lowercase())
            .or_default()
            .clone();
        MailboxCtx {
            mailbox: mailbox.to_string(),
            timeout: self.options.request_timeout,
            gate,
            counters,
        }
    }
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
            self.inner.probe(&ctx).await
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

    async fn recoverable_folders(&self, mailbox: &str) -> Result<Vec<Folder>, MailboxError> {
        if crate::is_archive_mailbox_id(mailbox) {
            return Ok(Vec::new());
        }
        let span = tracing::info_span!("recoverable_folders", mailbox);
        async {
            let ctx = self.inner.ctx(mailbox);
            self.inner.list_recoverable(&ctx).await
        }
        .instrument(span)
        .await
    }

    async fn archive_mailbox(&self, mailbox: &str) -> Result<Option<String>, MailboxError> {
        let span = tracing::info_span!("archive_mailbox", mailbox);
        async {
            let ctx = self.inner.ctx(mailbox);
            let op = Op::ExchangeSettings;
            let settings: wire::ExchangeSettings = self
                .inner
                .json(&ctx, &op, &op::Target::Mailbox)
                .await
                .map_err(|f| f.into_error(&ctx, &op))?;
            Ok(settings
                .in_place_archive_mailbox_id
                .filter(|id| !id.trim().is_empty()))
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
        delta::changes(self.inner.clone(), mailbox, folder_id, cursor)
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
        // Archive mailboxes are read without `$batch`: their redirects cannot be
        // followed inside one.
        if !self.inner.options.batch || folders.is_empty() || crate::is_archive_mailbox_id(mailbox)
        {
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
                Err(f) => Err(f.into_error(&ctx, &op)),
            }
        }
        .instrument(span)
        .await
    }

    fn metrics(&self, mailbox: &str) -> MailboxMetrics {
        metrics_of(&self.inner.metrics, mailbox)
    }
}

/// The counters of `mailbox` in `map`, as [`MailboxMetrics`].
fn metrics_of(map: &Mutex<HashMap<String, Arc<RequestCounters>>>, mailbox: &str) -> MailboxMetrics {
    let counts = lock(map)
        .get(&mailbox.to_lowercase())
        .map(|c| c.snapshot())
        .unwrap_or_default();
    MailboxMetrics {
        requests: counts.requests,
        throttled: counts.throttled,
        // A token refresh repeats the request too.
        retries: counts.retries + counts.token_refreshes,
        bytes: counts.bytes,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_auth::{AccessToken, StaticTokenProvider};
    use std::time::SystemTime;

    pub(super) fn source(root: &str) -> GraphMailboxSource {
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

    #[test]
    fn api_root_accepts_bare_and_versioned_roots() {
        for (root, api) in [
            (
                "https://graph.microsoft.com",
                "https://graph.microsoft.com/v1.0",
            ),
            (
                "https://graph.microsoft.us/v1.0",
                "https://graph.microsoft.us/v1.0",
            ),
            (
                "http://127.0.0.1:8080/graph",
                "http://127.0.0.1:8080/graph/v1.0",
            ),
        ] {
            assert_eq!(source(root).api_root().as_str(), api);
        }
        let tokens = Arc::new(StaticTokenProvider::new(AccessToken::new(
            "t",
            SystemTime::now() + Duration::from_secs(3600),
        )));
        for bad in ["ftp://x", "https://x/?a=b"] {
            let err = GraphMailboxSource::new(
                tokens.clone(),
                Url::parse(bad).unwrap(),
                GraphMailboxOptions::default(),
            )
            .unwrap_err();
            assert!(matches!(err, MailboxError::Config(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn the_beta_root_sits_beside_v1() {
        for (root, beta) in [
            (
                "https://graph.microsoft.com",
                "https://graph.microsoft.com/beta",
            ),
            (
                "https://graph.microsoft.us/v1.0/",
                "https://graph.microsoft.us/beta",
            ),
            (
                "http://127.0.0.1:8080/graph",
                "http://127.0.0.1:8080/graph/beta",
            ),
        ] {
            assert_eq!(beta_root(source(root).api_root()).as_str(), beta);
        }
    }

    #[test]
    fn debug_never_shows_tokens() {
        let s = source("http://127.0.0.1:9/");
        let text = format!("{s:?}");
        assert!(!text.contains("Bearer"));
    }
}
