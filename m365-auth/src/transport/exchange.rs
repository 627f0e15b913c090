//! The one retry loop of the workspace's Graph clients: admission by the resource's gate,
//! a fresh token, send under a timeout, the status checked, the body read (and checked
//! against `Content-Length`), then the retry rules of a [`RetryPolicy`]: `Retry-After` for
//! 429 (closing the gate for everyone), backoff for 5xx / resets / truncated bodies /
//! timeouts, one token refresh on 401. What a refused answer means for the client is the
//! client's call ([`Exchange::refused`]); everything else is decided here.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;

use super::gate::ResourceGate;
use super::{GraphError, RetryPolicy};
use crate::{AccessToken, AuthError, TokenProvider};

/// Largest error body read (the rest is discarded).
const MAX_ERROR_BODY: usize = 64 << 10;

/// Request counters of one resource (or one client), updated by [`Transport::run`].
#[derive(Debug, Default)]
pub struct RequestCounters {
    requests: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU64,
    token_refreshes: AtomicU64,
    bytes: AtomicU64,
}

/// A snapshot of [`RequestCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// 429 answers received (inner answers of a batch included when reported).
    pub throttled: u64,
    /// Requests repeated after a throttle, fault or timeout.
    pub retries: u64,
    /// Tokens refreshed after a 401.
    pub token_refreshes: u64,
    /// Body bytes received.
    pub bytes: u64,
}

impl RequestCounters {
    /// The counts so far.
    pub fn snapshot(&self) -> RequestCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestCounts {
            requests: get(&self.requests),
            throttled: get(&self.throttled),
            retries: get(&self.retries),
            token_refreshes: get(&self.token_refreshes),
            bytes: get(&self.bytes),
        }
    }

    /// Counts `n` throttled answers the loop did not see itself (inner batch answers).
    pub fn add_throttled(&self, n: u64) {
        self.throttled.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a repetition the loop did not make itself (a batch round asked again).
    pub fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts received body bytes.
    pub fn add_bytes(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A non-success answer, its (capped) body read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// The capped wait `Retry-After` asked for.
    pub retry_after: Option<Duration>,
    /// Graph's error body, when the answer carried one.
    pub error: Option<GraphError>,
}

impl Refusal {
    /// A refusal with this status and Graph error, without `Retry-After`.
    pub fn new(status: StatusCode, error: Option<GraphError>) -> Self {
        Self {
            status,
            retry_after: None,
            error,
        }
    }

    /// Graph's error code (`""` when there is none).
    pub fn code(&self) -> &str {
        self.error.as_ref().map_or("", |e| e.code.as_str())
    }

    /// Graph's error message (`""` when there is none).
    pub fn message(&self) -> &str {
        self.error.as_ref().map_or("", |e| e.message.as_str())
    }

    /// Whether the code says a delta state expired (`syncStateNotFound`, `resyncRequired`, ...).
    pub fn is_sync_reset(&self) -> bool {
        let code = self.code().to_ascii_lowercase();
        self.status == StatusCode::GONE || code.contains("syncstate") || code == "resyncrequired"
    }

    /// A server fault or a request timeout: worth asking again.
    pub fn is_transient(&self) -> bool {
        self.status.is_server_error()
            || self.status == StatusCode::REQUEST_TIMEOUT
            || self.status == StatusCode::TOO_MANY_REQUESTS
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.error {
            Some(e) if !e.code.is_empty() => {
                write!(f, "HTTP {} {}: {}", self.status.as_u16(), e.code, e.message)
            }
            _ => write!(f, "HTTP {}", self.status.as_u16()),
        }
    }
}

/// Why one attempt failed in a way worth another attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// No answer, or no next body chunk, within the per-request timeout.
    Timeout(Duration),
    /// The request could not be sent or the body was interrupted.
    Network(String),
    /// The body was truncated or malformed.
    Body(String),
    /// The service refused (5xx, 408, or 429 beyond the throttling budget).
    Refused(Refusal),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Timeout(after) => write!(f, "no answer within {after:?}"),
            Fault::Network(reason) | Fault::Body(reason) => f.write_str(reason),
            Fault::Refused(refusal) => write!(f, "{refusal}"),
        }
    }
}

/// The retry limits were reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp {
    /// Requests sent.
    pub attempts: u32,
    /// 429 answers received.
    pub throttled: u32,
    /// The last failure.
    pub last: Fault,
}

/// Why reading a successful answer failed.
#[derive(Debug)]
pub enum BodyError<E> {
    /// Worth another attempt.
    Retry(Fault),
    /// Final.
    Fatal(E),
}

/// What a client makes of a refused answer.
#[derive(Debug)]
pub enum Verdict<E> {
    /// Ask again (after backoff or the refusal's `Retry-After`).
    Retry(Refusal),
    /// Stop with this error.
    Fail(E),
}

/// One Graph request, as the client sees it: how to send it, how to read a successful
/// answer, what a refusal means. [`Transport::run`] does the rest.
pub trait Exchange: Sync {
    /// The value of a successful answer.
    type Output: Send;
    /// The client's error.
    type Error: Send;

    /// What the request is, for logs (never a query string: links carry tokens).
    fn label(&self) -> String;

    /// Slots of the gate the request holds at once, and requests it counts against the
    /// budget (a `$batch`: its inner requests).
    fn weight(&self) -> (usize, usize) {
        (1, 1)
    }

    /// Runs after admission and before each attempt is sent, outside the request timeout:
    /// waiting for a byte budget that must be drawn as close to the send as possible (a
    /// draw made before a long wait at the gate would reach the service late, inside a
    /// later window). The default does nothing.
    fn before_send(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Sends one attempt with `token`; `Err` describes a failure to send.
    fn send(
        &self,
        token: &AccessToken,
    ) -> impl Future<Output = Result<reqwest::Response, String>> + Send;

    /// Reads a successful answer.
    fn accept(
        &self,
        response: reqwest::Response,
        counters: &RequestCounters,
    ) -> impl Future<Output = Result<Self::Output, BodyError<Self::Error>>> + Send;

    /// A refused answer other than a 429 or the first 401. `repeated`: an earlier attempt
    /// failed after it may have been carried out. The default retries transient refusals.
    fn refused(&self, refusal: Refusal, repeated: bool) -> Verdict<Self::Error> {
        let _ = repeated;
        if refusal.is_transient() {
            Verdict::Retry(refusal)
        } else {
            Verdict::Fail(self.failed(refusal))
        }
    }

    /// The error for a refusal that is final.
    fn failed(&self, refusal: Refusal) -> Self::Error;

    /// The error when the retry limits are reached.
    fn gave_up(&self, gave_up: GaveUp) -> Self::Error;

    /// The error when no token could be obtained.
    fn no_token(&self, error: AuthError) -> Self::Error;
}

/// Where a request goes: the resource's gate (if it has one) and its counters.
#[derive(Debug, Clone, Copy)]
pub struct Lane<'a> {
    /// The gate requests wait at; `None` for resources without limits of their own.
    pub gate: Option<&'a ResourceGate>,
    /// The counters the requests are counted in.
    pub counters: &'a RequestCounters,
}

/// Tokens, retry policy and timeout of a Graph client: runs [`Exchange`]s.
#[derive(Clone)]
pub struct Transport {
    tokens: Arc<dyn TokenProvider>,
    policy: RetryPolicy,
    timeout: Duration,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport taking tokens from `tokens`; `timeout` bounds the wait for an answer's
    /// headers and for each chunk of its body.
    pub fn new(tokens: Arc<dyn TokenProvider>, policy: RetryPolicy, timeout: Duration) -> Self {
        Self {
            tokens,
            policy,
            timeout,
        }
    }

    /// The retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The token provider.
    pub fn tokens(&self) -> &Arc<dyn TokenProvider> {
        &self.tokens
    }

    /// Runs `exchange` to completion: admission, token, send, status, body, retries.
    pub async fn run<X: Exchange>(
        &self,
        exchange: &X,
        lane: Lane<'_>,
    ) -> Result<X::Output, X::Error> {
        let policy = &self.policy;
        let counters = lane.counters;
        let (slots, cost) = exchange.weight();
        let mut faults = 0u32;
        let mut throttled = 0u32;
        let mut refreshed = false;
        let mut attempts = 0u32;
        loop {
            let admission = match lane.gate {
                Some(gate) => Some(gate.admit_many(slots, cost).await),
                None => None,
            };
            exchange.before_send().await;
            // After admission: a long Retry-After wait must not leave us with a stale token.
            let token = self
                .tokens
                .token()
                .await
                .map_err(|e| exchange.no_token(e))?;
            attempts += 1;
            counters.requests.fetch_add(1, Ordering::Relaxed);
            let fault = match tokio::time::timeout(self.timeout, exchange.send(&token)).await {
                Err(_) => Fault::Timeout(self.timeout),
                Ok(Err(reason)) => Fault::Network(reason),
                Ok(Ok(response)) if response.status().is_success() => {
                    match exchange.accept(response, counters).await {
                        Ok(value) => return Ok(value),
                        Err(BodyError::Fatal(e)) => return Err(e),
                        Err(BodyError::Retry(fault)) => fault,
                    }
                }
                Ok(Ok(response)) => {
                    let refusal = self.refusal(response, counters).await;
                    drop(admission);
                    if refusal.status == StatusCode::TOO_MANY_REQUESTS {
                        throttled += 1;
                        counters.throttled.fetch_add(1, Ordering::Relaxed);
                        let delay = refusal
                            .retry_after
                            .unwrap_or_else(|| policy.backoff(throttled));
                        if throttled > policy.max_throttled {
                            return Err(exchange.gave_up(GaveUp {
                                attempts,
                                throttled,
                                last: Fault::Refused(refusal),
                            }));
                        }
                        tracing::debug!(request = %exchange.label(), delay_ms = delay.as_millis() as u64, "throttled (429); waiting for Retry-After");
                        counters.retries.fetch_add(1, Ordering::Relaxed);
                        match lane.gate {
                            Some(gate) => gate.close_for(delay),
                            None => tokio::time::sleep(delay).await,
                        }
                        continue;
                    }
                    if refusal.status == StatusCode::UNAUTHORIZED && !refreshed {
                        tracing::info!(request = %exchange.label(), "Graph rejected the access token (401); acquiring a new one");
                        self.tokens.invalidate(&token);
                        refreshed = true;
                        counters.token_refreshes.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    match exchange.refused(refusal, faults > 0) {
                        Verdict::Fail(e) => return Err(e),
                        Verdict::Retry(refusal) => {
                            faults += 1;
                            let fault = Fault::Refused(refusal);
                            self.pause(exchange, counters, fault, [faults, attempts, throttled])
                                .await
                                .map_err(|g| exchange.gave_up(g))?;
                            continue;
                        }
                    }
                }
            };
            drop(admission);
            faults += 1;
            self.pause(exchange, counters, fault, [faults, attempts, throttled])
                .await
                .map_err(|g| exchange.gave_up(g))?;
        }
    }

    /// Waits before the next attempt after a fault, or gives up (`tally`: faults,
    /// attempts and 429s so far).
    async fn pause<X: Exchange>(
        &self,
        exchange: &X,
        counters: &RequestCounters,
        fault: Fault,
        tally: [u32; 3],
    ) -> Result<(), GaveUp> {
        let [faults, attempts, throttled] = tally;
        if faults >= self.policy.max_attempts.max(1) {
            return Err(GaveUp {
                attempts,
                throttled,
                last: fault,
            });
        }
        let asked = match &fault {
            Fault::Refused(r) => r.retry_after,
            _ => None,
        };
        let delay = asked.unwrap_or_else(|| self.policy.backoff(faults));
        tracing::debug!(request = %exchange.label(), %fault, delay_ms = delay.as_millis() as u64, "retrying");
        counters.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Reads a refused answer: its `Retry-After` and (capped) Graph error body.
    async fn refusal(
        &self,
        mut response: reqwest::Response,
        counters: &RequestCounters,
    ) -> Refusal {
        let status = response.status();
        let retry_after = self.policy.retry_after_header(response.headers());
        let mut body = BytesMut::new();
        while let Ok(Some(chunk)) = next_chunk(&mut response, self.timeout, counters).await {
            if body.len() < MAX_ERROR_BODY {
                let room = MAX_ERROR_BODY - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
        }
        Refusal {
            status,
            retry_after,
            error: GraphError::parse(&body),
        }
    }
}

/// The next chunk of a body (counted in `counters`), waiting at most `timeout` for it.
pub async fn next_chunk(
    response: &mut reqwest::Response,
    timeout: Duration,
    counters: &RequestCounters,
) -> Result<Option<Bytes>, Fault> {
    match tokio::time::timeout(timeout, response.chunk()).await {
        Err(_) => Err(Fault::Timeout(timeout)),
        Ok(Err(e)) => Err(Fault::Network(format!(
            "body interrupted: {}",
            super::describe_reqwest(&e)
        ))),
        Ok(Ok(chunk)) => {
            if let Some(c) = &chunk {
                counters.add_bytes(c.len());
            }
            Ok(chunk)
        }
    }
}

/// Checks the bytes received against the announced `Content-Length`.
pub fn check_length(expected: Option<u64>, received: u64) -> Result<(), Fault> {
    match expected {
        Some(n) if n != received => Err(Fault::Body(format!(
            "truncated body: {received} of {n} bytes"
        ))),
        _ => Ok(()),
    }
}

/// Reads a whole body of at most `limit` bytes, checked against `Content-Length`; a
/// larger body ends the request with the error `too_large` makes of the limit.
pub async fn read_body<E>(
    mut response: reqwest::Response,
    timeout: Duration,
    counters: &RequestCounters,
    limit: usize,
    too_large: impl FnOnce(usize) -> E,
) -> Result<Bytes, BodyError<E>> {
    let expected = response.content_length();
    let mut buf = BytesMut::new();
    while let Some(chunk) = next_chunk(&mut response, timeout, counters)
        .await
        .map_err(BodyError::Retry)?
    {
        buf.extend_from_slice(&chunk);
        if buf.len() > limit {
            return Err(BodyError::Fatal(too_large(limit)));
        }
    }
    check_length(expected, buf.len() as u64).map_err(BodyError::Retry)?;
    Ok(buf.freeze())
}
