//! [`GraphDirectorySource`]: the tenant's users through Microsoft Graph.
//!
//! The first read is an initial `/users/delta` round (every user, page by page,
//! ending in a deltaLink); later reads follow the saved deltaLink and return only
//! what changed. A refused link (410 Gone, `syncStateNotFound`, 400 for a bad or
//! expired token, a link for another Graph root) falls back to a full round. With a
//! group restriction the source lists `/groups/{id}/transitiveMembers` in full every
//! time (Graph has no delta of transitive membership), so users who leave the group
//! are deactivated.
//!
//! graph-rs-sdk builds and sends the first request of a round; nextLink and
//! deltaLink URLs are followed verbatim with reqwest (also used for every request
//! when an extra CA certificate is configured, which graph-rs-sdk cannot trust).
//! Every request goes through the workspace's one retry loop
//! (`m365_auth::transport::Transport`): 429 and 5xx are retried with `Retry-After` or
//! exponential backoff with jitter, a 401 leads to one token refresh, network
//! failures and truncated or garbled bodies are retried, anything else is an error
//! naming the request and Graph's code.
//!
//! Mailbox kinds (`mailboxSettings.userPurpose`) are read in `$batch`es of twenty
//! ([`kinds`]), only for the users a sync asks about.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use graph_rs_sdk::{GraphClient, ODataQuery};
use m365_auth::transport::{
    BodyError, Exchange, Fault, GaveUp, Lane, Refusal, RequestCounters, Transport, Verdict,
};
use m365_auth::{AccessToken, TokenProvider};
use reqwest::StatusCode;
use tracing::{debug, warn};
use url::Url;

use crate::wire::{self, Item, Page, WireObject};

mod kinds;

/// Largest page accepted.
const MAX_PAGE_BYTES: usize = 64 << 20;
use crate::{
    DirectoryChanges, DirectoryError, DirectorySource, DirectoryToken, DirectoryUser, KindLookup,
};

/// How failed requests are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles with each further retry.
    pub initial_backoff: Duration,
    /// Longest backoff between two attempts.
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured (longer values are cut to this).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl From<&RetryPolicy> for m365_auth::RetryPolicy {
    /// The shared policy with these limits; every 429 counts as an attempt.
    fn from(p: &RetryPolicy) -> Self {
        m365_auth::RetryPolicy {
            max_attempts: p.max_attempts,
            max_throttled: p.max_attempts,
            base_delay: p.initial_backoff,
            max_delay: p.max_backoff,
            max_retry_after: p.max_retry_after,
        }
    }
}

/// Options of [`GraphDirectorySource`].
#[derive(Debug, Clone)]
pub struct GraphDirectoryOptions {
    /// Longest time one request (answer and body) may take.
    pub request_timeout: Duration,
    /// A PEM CA certificate (or bundle) to trust besides the system's, e.g. for a
    /// TLS-intercepting proxy or a private Graph endpoint.
    pub extra_ca_pem: Option<String>,
    /// Only the (transitive) members of this group, by object id.
    pub group_id: Option<String>,
    /// Retries of failed requests.
    pub retry: RetryPolicy,
}

impl Default for GraphDirectoryOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            extra_ca_pem: None,
            group_id: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// Counters of a [`GraphDirectorySource`] since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphDirectoryStats {
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// Requests retried after a throttling answer, a 5xx, a network failure or a bad body.
    pub retries: u64,
    /// 429 answers received.
    pub throttled: u64,
    /// Tokens refreshed after a 401.
    pub token_refreshes: u64,
    /// Full reads (first sync, refused token, group restriction).
    pub full_reads: u64,
    /// Incremental reads from a saved deltaLink.
    pub delta_reads: u64,
    /// Saved links Graph (or this client) refused, each followed by a full read.
    pub links_refused: u64,
    /// `mailboxSettings` reads sent inside `$batch`es (retried ones included).
    pub mailbox_settings_reads: u64,
}

/// Counters of reads (requests are counted by the transport).
#[derive(Debug, Default)]
struct Counters {
    full_reads: AtomicU64,
    delta_reads: AtomicU64,
    links_refused: AtomicU64,
    mailbox_settings: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    bump_by(counter, 1);
}

fn bump_by(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The error naming the request, the status and Graph's code.
fn graph_error(label: &str, refusal: &Refusal) -> DirectoryError {
    let code = if refusal.code().is_empty() {
        refusal
            .status
            .canonical_reason()
            .unwrap_or("error")
            .replace(' ', "")
    } else {
        refusal.code().to_owned()
    };
    DirectoryError::Graph {
        request: label.to_owned(),
        status: refusal.status.as_u16(),
        code,
        message: refusal.message().to_owned(),
        request_id: refusal.error.as_ref().and_then(|e| e.request_id.clone()),
    }
}

/// The error of a request given up after retries.
fn gave_up_error(label: &str, gave_up: GaveUp) -> DirectoryError {
    match gave_up.last {
        Fault::Refused(refusal) => graph_error(label, &refusal),
        Fault::Body(reason) => DirectoryError::InvalidResponse {
            request: label.to_owned(),
            reason,
        },
        fault @ (Fault::Timeout(_) | Fault::Network(_)) => DirectoryError::Network {
            request: label.to_owned(),
            attempts: gave_up.attempts,
            reason: fault.to_string(),
        },
    }
}

/// The tenant's directory, read through Microsoft Graph.
///
/// ```no_run
/// # async fn demo(tokens: std::sync::Arc<dyn m365_auth::TokenProvider>) -> Result<(), directory_sync::DirectoryError> {
/// use directory_sync::{GraphDirectoryOptions, GraphDirectorySource, MemoryUserStore, SyncOptions, sync};
/// let graph = url::Url::parse("https://graph.microsoft.com").expect("valid URL");
/// let source = GraphDirectorySource::new(tokens, graph, GraphDirectoryOptions::default())?;
/// let store = MemoryUserStore::new();
/// let report = sync(&source, &store, &SyncOptions::default()).await?;
/// println!("{} users created", report.created.len());
/// # Ok(()) }
/// ```
pub struct GraphDirectorySource {
    api: Url,
    transport: Transport,
    requests: RequestCounters,
    /// Builds (and, without an extra CA, sends) the first request of a round.
    graph: GraphClient,
    /// Follows links; sends everything when an extra CA is configured.
    http: reqwest::Client,
    sdk_sends: bool,
    options: GraphDirectoryOptions,
    counters: Counters,
}

impl std::fmt::Debug for GraphDirectorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphDirectorySource")
            .field("api", &self.api.as_str())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A request of a read.
#[derive(Debug, Clone)]
enum Request {
    /// The first request of a full `/users/delta` round.
    UsersDelta,
    /// The first request of a group's transitive member listing.
    GroupMembers(String),
    /// A nextLink or deltaLink; `saved` for a link from a previous sync.
    Link { url: Url, saved: bool },
}

/// Why a read stopped.
#[derive(Debug)]
enum Failure {
    /// The saved link was refused: read everything instead.
    LinkRefused { status: u16, code: String },
    /// An error for the caller.
    Error(DirectoryError),
}

impl From<DirectoryError> for Failure {
    fn from(e: DirectoryError) -> Self {
        Failure::Error(e)
    }
}

/// What one round of pages produced.
#[derive(Debug, Default)]
struct Round {
    users: Vec<DirectoryUser>,
    removed: Vec<String>,
    delta_link: Option<String>,
}

impl GraphDirectorySource {
    /// A source reading the directory behind Graph root `graph_root` (e.g.
    /// `https://graph.microsoft.com`, a national cloud's root, or an emulator's; a
    /// trailing `/v1.0` is accepted) with tokens from `tokens`.
    ///
    /// # Errors
    /// [`DirectoryError::Config`] for an unusable URL, CA certificate or group id.
    pub fn new(
        tokens: Arc<dyn TokenProvider>,
        graph_root: Url,
        options: GraphDirectoryOptions,
    ) -> Result<Self, DirectoryError> {
        let api = m365_auth::transport::api_root(&graph_root).map_err(|reason| {
            DirectoryError::Config {
                option: "graph_url",
                reason,
            }
        })?;
        if let Some(group) = &options.group_id
            && (group.trim().is_empty() || group.contains(['/', '?', '#', '%']))
        {
            return Err(DirectoryError::Config {
                option: "group_id",
                reason: format!("{group:?} is not a group object id"),
            });
        }
        let http = m365_auth::transport::http_client(
            options.extra_ca_pem.as_deref(),
            options.request_timeout,
            Some(options.request_timeout),
        )
        .map_err(|reason| DirectoryError::Config {
            option: "extra_ca_pem",
            reason,
        })?;
        let graph = m365_auth::graph_client_at(
            tokens.clone(),
            &api,
            &m365_auth::GraphClientOptions {
                request_timeout: Some(options.request_timeout),
                connect_timeout: Some(options.request_timeout),
            },
        );
        let policy = m365_auth::RetryPolicy::from(&options.retry);
        Ok(Self {
            sdk_sends: options.extra_ca_pem.is_none(),
            api,
            transport: Transport::new(tokens, policy, options.request_timeout),
            requests: RequestCounters::default(),
            graph,
            http,
            options,
            counters: Counters::default(),
        })
    }

    /// The v1.0 API root requests go to.
    pub fn api_root(&self) -> &Url {
        &self.api
    }

    /// Counters since this source was created.
    pub fn stats(&self) -> GraphDirectoryStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let sent = self.requests.snapshot();
        GraphDirectoryStats {
            requests: sent.requests,
            retries: sent.retries,
            throttled: sent.throttled,
            token_refreshes: sent.token_refreshes,
            full_reads: get(&c.full_reads),
            delta_reads: get(&c.delta_reads),
            links_refused: get(&c.links_refused),
            mailbox_settings_reads: get(&c.mailbox_settings),
        }
    }

    /// A saved token usable as a deltaLink: a `/users/delta` URL under this API root.
    fn saved_link(&self, token: &DirectoryToken) -> Option<Url> {
        let url = Url::parse(&token.0).ok()?;
        let api_path = self.api.path().trim_end_matches('/');
        let rest = url.path().strip_prefix(api_path)?;
        let is_users_delta = matches!(rest, "/users/delta" | "/users/delta()");
        (url.origin() == self.api.origin() && is_users_delta).then_some(url)
    }

    /// `GET path` of a request, for messages (never the query: links carry tokens).
    fn label(&self, request: &Request) -> String {
        match request {
            Request::UsersDelta => format!("GET {}/users/delta", self.api.path()),
            Request::GroupMembers(id) => {
                format!("GET {}/groups/{id}/transitiveMembers", self.api.path())
            }
            Request::Link { url, .. } => format!("GET {}", url.path()),
        }
    }

    /// Sends one attempt of `request` with `token`.
    async fn dispatch(
        &self,
        request: &Request,
        token: &AccessToken,
    ) -> Result<reqwest::Response, String> {
        let handler = match request {
            Request::Link { url, .. } => {
                return self
                    .http
                    .get(url.clone())
                    .bearer_auth(token.secret())
                    .send()
                    .await
                    .map_err(|e| m365_auth::transport::describe_reqwest(&e));
            }
            Request::UsersDelta => self.graph.users().delta().select(wire::USER_SELECT),
            Request::GroupMembers(id) => self
                .graph
                .group(id)
                .transitive_members()
                .list_transitive_members()
                .select(wire::USER_SELECT),
        };
        if self.sdk_sends {
            m365_auth::transport::send_with_token(token, handler.send()).await
        } else {
            self.http
                .get(handler.url())
                .bearer_auth(token.secret())
                .send()
                .await
                .map_err(|e| m365_auth::transport::describe_reqwest(&e))
        }
    }

    /// Fetches one page through the shared retry loop.
    async fn fetch(&self, request: &Request) -> Result<Page, Failure> {
        let exchange = PageFetch {
            source: self,
            request,
            label: self.label(request),
        };
        let lane = Lane {
            gate: None,
            counters: &self.requests,
        };
        self.transport.run(&exchange, lane).await
    }

    /// Reads a round from `first` to its last page.
    async fn read_round(&self, first: Request) -> Result<Round, Failure> {
        let label = self.label(&first);
        let mut request = first;
        let mut round = Round::default();
        // Position of each object in `round.users`, so a repeated item replaces the earlier.
        let mut position: HashMap<String, usize> = HashMap::new();
        let mut pages = 0u64;
        let mut previous_link: Option<Url> = None;
        loop {
            let page = self.fetch(&request).await?;
            pages += 1;
            for value in page.value {
                let object = match serde_json::from_value::<WireObject>(value) {
                    Ok(object) => object,
                    Err(e) => {
                        warn!(request = %label, error = %e, "ignoring a directory object Graph sent without an id");
                        continue;
                    }
                };
                match object.into_item() {
                    Item::Other => {}
                    Item::Removed(id) => {
                        if let Some(at) = position.remove(&id) {
                            round.users.remove(at);
                            for p in position.values_mut() {
                                if *p > at {
                                    *p -= 1;
                                }
                            }
                        }
                        if !round.removed.contains(&id) {
                            round.removed.push(id);
                        }
                    }
                    Item::User(user) => {
                        round.removed.retain(|r| *r != user.id);
                        match position.get(&user.id) {
                            Some(&at) => round.users[at] = user,
                            None => {
                                position.insert(user.id.clone(), round.users.len());
                                round.users.push(user);
                            }
                        }
                    }
                }
            }
            if let Some(next) = page.next_link {
                let url = self.link(&label, &next)?;
                if previous_link.as_ref() == Some(&url) {
                    return Err(DirectoryError::InvalidResponse {
                        request: label,
                        reason: "Graph sent the same nextLink twice in a row".into(),
                    }
                    .into());
                }
                previous_link = Some(url.clone());
                request = Request::Link { url, saved: false };
                continue;
            }
            round.delta_link = page.delta_link;
            debug!(request = %label, pages, users = round.users.len(), removed = round.removed.len(), "round read");
            return Ok(round);
        }
    }

    /// A nextLink or deltaLink, checked to point at this Graph (the bearer token is
    /// never sent anywhere else).
    fn link(&self, label: &str, raw: &str) -> Result<Url, DirectoryError> {
        m365_auth::transport::check_link(&self.api, raw).map_err(|reason| {
            DirectoryError::InvalidResponse {
                request: label.to_owned(),
                reason,
            }
        })
    }

    /// Every user (or every member of the group).
    async fn full_read(&self) -> Result<DirectoryChanges, DirectoryError> {
        bump(&self.counters.full_reads);
        let (first, group) = match &self.options.group_id {
            Some(group) => (Request::GroupMembers(group.clone()), Some(group)),
            None => (Request::UsersDelta, None),
        };
        let label = self.label(&first);
        let round = match self.read_round(first).await {
            Ok(round) => round,
            Err(Failure::Error(e)) => return Err(e),
            Err(Failure::LinkRefused { status, code }) => {
                return Err(DirectoryError::Graph {
                    request: label,
                    status,
                    code,
                    message: "Graph refused a fresh delta round".into(),
                    request_id: None,
                });
            }
        };
        let next = match (group, round.delta_link) {
            // Transitive membership has no delta: every read is a full listing.
            (Some(group), _) => DirectoryToken(format!("group:{group}")),
            (None, Some(link)) => DirectoryToken(self.link(&label, &link)?.to_string()),
            (None, None) => {
                return Err(DirectoryError::InvalidResponse {
                    request: label,
                    reason: "the delta round ended without a deltaLink".into(),
                });
            }
        };
        Ok(DirectoryChanges {
            full: true,
            users: round.users,
            removed: Vec::new(),
            next,
        })
    }
}

#[async_trait]
impl DirectorySource for GraphDirectorySource {
    async fn changes(
        &self,
        since: Option<&DirectoryToken>,
    ) -> Result<DirectoryChanges, DirectoryError> {
        let saved = match (since, &self.options.group_id) {
            (Some(token), None) => {
                let link = self.saved_link(token);
                if link.is_none() {
                    bump(&self.counters.links_refused);
                    warn!(
                        api = %self.api,
                        "the saved directory token is not a delta link of this Graph: reading every user"
                    );
                }
                link
            }
            _ => None,
        };
        let Some(url) = saved else {
            return self.full_read().await;
        };
        bump(&self.counters.delta_reads);
        match self.read_round(Request::Link { url, saved: true }).await {
            Ok(round) => {
                let label = format!("GET {}/users/delta", self.api.path());
                let Some(link) = round.delta_link else {
                    return Err(DirectoryError::InvalidResponse {
                        request: label,
                        reason: "the delta round ended without a deltaLink".into(),
                    });
                };
                Ok(DirectoryChanges {
                    full: false,
                    users: round.users,
                    removed: round.removed,
                    next: DirectoryToken(self.link(&label, &link)?.to_string()),
                })
            }
            Err(Failure::LinkRefused { status, code }) => {
                bump(&self.counters.links_refused);
                warn!(status, %code, "Graph refused the saved delta link: reading every user");
                self.full_read().await
            }
            Err(Failure::Error(e)) => Err(e),
        }
    }

    async fn mailbox_kinds(&self, ids: &[String]) -> Result<KindLookup, DirectoryError> {
        Ok(self.read_kinds(ids).await)
    }
}

/// One page request of a read, as the shared retry loop runs it.
struct PageFetch<'a> {
    source: &'a GraphDirectorySource,
    request: &'a Request,
    label: String,
}

impl PageFetch<'_> {
    /// The error naming the request, the status and Graph's code.
    fn graph_error(&self, refusal: &Refusal) -> DirectoryError {
        graph_error(&self.label, refusal)
    }

    fn link_refused(&self, refusal: &Refusal) -> Failure {
        Failure::LinkRefused {
            status: refusal.status.as_u16(),
            code: refusal.code().to_owned(),
        }
    }
}

impl Exchange for PageFetch<'_> {
    type Output = Page;
    type Error = Failure;

    fn label(&self) -> String {
        self.label.clone()
    }

    fn send(
        &self,
        token: &AccessToken,
    ) -> impl Future<Output = Result<reqwest::Response, String>> + Send {
        self.source.dispatch(self.request, token)
    }

    async fn accept(
        &self,
        response: reqwest::Response,
        counters: &RequestCounters,
    ) -> Result<Page, BodyError<Failure>> {
        let timeout = self.source.transport.timeout();
        let too_large = |limit| {
            Failure::Error(DirectoryError::InvalidResponse {
                request: self.label.clone(),
                reason: format!("the answer is larger than {limit} bytes"),
            })
        };
        let body =
            m365_auth::transport::read_body(response, timeout, counters, MAX_PAGE_BYTES, too_large)
                .await?;
        serde_json::from_slice::<Page>(&body).map_err(|e| {
            BodyError::Retry(Fault::Body(format!("the answer is not a Graph page: {e}")))
        })
    }

    fn refused(&self, refusal: Refusal, _repeated: bool) -> Verdict<Failure> {
        let saved_link = matches!(self.request, Request::Link { saved: true, .. });
        if refusal.is_sync_reset()
            || (saved_link
                && matches!(
                    refusal.status,
                    StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND
                ))
        {
            return Verdict::Fail(self.link_refused(&refusal));
        }
        if refusal.status == StatusCode::NOT_FOUND
            && let Request::GroupMembers(group) = self.request
        {
            return Verdict::Fail(Failure::Error(DirectoryError::GroupNotFound {
                group: group.clone(),
            }));
        }
        if refusal.status.is_server_error() {
            return Verdict::Retry(refusal);
        }
        Verdict::Fail(self.failed(refusal))
    }

    fn failed(&self, refusal: Refusal) -> Failure {
        Failure::Error(self.graph_error(&refusal))
    }

    fn gave_up(&self, gave_up: GaveUp) -> Failure {
        Failure::Error(gave_up_error(&self.label, gave_up))
    }

    fn no_token(&self, error: m365_auth::AuthError) -> Failure {
        Failure::Error(DirectoryError::Auth(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn tokens() -> Arc<dyn TokenProvider> {
        Arc::new(m365_auth::StaticTokenProvider::new(AccessToken::new(
            "t",
            SystemTime::now() + Duration::from_secs(3600),
        )))
    }

    #[test]
    fn api_roots() {
        for (root, api) in [
            (
                "https://graph.microsoft.com",
                "https://graph.microsoft.com/v1.0",
            ),
            (
                "https://graph.microsoft.com/",
                "https://graph.microsoft.com/v1.0",
            ),
            ("http://127.0.0.1:8080/v1.0/", "http://127.0.0.1:8080/v1.0"),
            (
                "http://127.0.0.1:8080/prefix",
                "http://127.0.0.1:8080/prefix/v1.0",
            ),
        ] {
            let source = GraphDirectorySource::new(
                tokens(),
                Url::parse(root).unwrap(),
                GraphDirectoryOptions::default(),
            )
            .unwrap();
            assert_eq!(source.api_root().as_str(), api, "{root}");
        }
        for bad in ["ftp://x.com", "https://x.com/?a=b", "mailto:a@x.com"] {
            let err = GraphDirectorySource::new(
                tokens(),
                Url::parse(bad).unwrap(),
                GraphDirectoryOptions::default(),
            )
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    DirectoryError::Config {
                        option: "graph_url",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_shared_policy_keeps_these_limits() {
        let policy = m365_auth::RetryPolicy::from(&RetryPolicy::default());
        assert_eq!(policy.max_attempts, 6);
        assert_eq!(policy.max_throttled, 6);
        assert_eq!(policy.base_delay, Duration::from_millis(500));
        assert_eq!(policy.max_delay, Duration::from_secs(30));
        assert_eq!(
            policy.retry_after("100000", SystemTime::now()),
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn saved_links_must_belong_to_this_graph() {
        let source = GraphDirectorySource::new(
            tokens(),
            Url::parse("http://127.0.0.1:9/").unwrap(),
            GraphDirectoryOptions::default(),
        )
        .unwrap();
        let ok = DirectoryToken("http://127.0.0.1:9/v1.0/users/delta?$deltatoken=abc".into());
        assert!(source.saved_link(&ok).is_some());
        let ok2 = DirectoryToken("http://127.0.0.1:9/v1.0/users/delta()?$deltatoken=abc".into());
        assert!(source.saved_link(&ok2).is_some());
        for bad in [
            "http://evil.example/v1.0/users/delta?$deltatoken=abc",
            "http://127.0.0.1:10/v1.0/users/delta?$deltatoken=abc",
            "http://127.0.0.1:9/v1.0/groups/delta?$deltatoken=abc",
            "group:123",
            "mem:0:4",
        ] {
            assert!(
                source.saved_link(&DirectoryToken(bad.into())).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn unusable_options_are_refused() {
        let tokens = tokens();
        let root = Url::parse("http://127.0.0.1:9/").unwrap();
        let bad_ca = GraphDirectoryOptions {
            extra_ca_pem: Some("not a certificate".into()),
            ..Default::default()
        };
        let err = GraphDirectorySource::new(tokens.clone(), root.clone(), bad_ca).unwrap_err();
        assert!(
            matches!(
                err,
                DirectoryError::Config {
                    option: "extra_ca_pem",
                    ..
                }
            ),
            "{err}"
        );
        let bad_group = GraphDirectoryOptions {
            group_id: Some("../users".into()),
            ..Default::default()
        };
        let err = GraphDirectorySource::new(tokens, root, bad_group).unwrap_err();
        assert!(
            matches!(
                err,
                DirectoryError::Config {
                    option: "group_id",
                    ..
                }
            ),
            "{err}"
        );
    }
}
