//! graph-rs-sdk integration: our [`TokenProvider`] behind graph-core's
//! `ClientApplication`, and a `GraphClient` pointed at a cloud's Graph root.
//!
//! graph-rs-sdk clones its `ClientApplication` into every request and calls
//! `get_token_silent_async` for each, so every Graph request asks our provider
//! (which answers from its cache). `ForceTokenRefresh` is honoured; its state is
//! shared by the clones of one [`GraphTokenSource`]. A client running its own retry
//! loop chooses the token of each request with [`with_request_token`], so that after a
//! 401 it invalidates exactly the token Graph refused.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use graph_core::identity::{ClientApplication, ForceTokenRefresh};
use graph_rs_sdk::error::{AuthExecutionError, AuthExecutionResult};
use graph_rs_sdk::{GraphClient, GraphClientConfiguration};

use crate::{AccessToken, AuthError, Cloud, TokenProvider};
use url::Url;

tokio::task_local! {
    /// The bearer token chosen for the request being sent by this task.
    static REQUEST_TOKEN: String;
}

/// Runs `send` (a graph-rs-sdk request) with `token` as the token every
/// [`GraphTokenSource`] hands out inside it, instead of asking the provider.
pub async fn with_request_token<F: Future>(token: &AccessToken, send: F) -> F::Output {
    REQUEST_TOKEN.scope(token.secret().to_owned(), send).await
}

fn chosen_token() -> Option<String> {
    REQUEST_TOKEN.try_with(Clone::clone).ok()
}

const FORCE_NEVER: u8 = 0;
const FORCE_ONCE: u8 = 1;
const FORCE_ALWAYS: u8 = 2;

/// A graph-rs-sdk `ClientApplication` that takes every token from a [`TokenProvider`].
#[derive(Clone)]
pub struct GraphTokenSource {
    provider: Arc<dyn TokenProvider>,
    force: Arc<AtomicU8>,
}

impl std::fmt::Debug for GraphTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphTokenSource")
            .field("force", &self.force.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl GraphTokenSource {
    /// Wraps `provider`.
    pub fn new(provider: Arc<dyn TokenProvider>) -> GraphTokenSource {
        GraphTokenSource {
            provider,
            force: Arc::new(AtomicU8::new(FORCE_NEVER)),
        }
    }

    /// Whether the next token must bypass the cache (consumes a pending `Once`).
    fn take_force(&self) -> bool {
        match self.force.load(Ordering::Acquire) {
            FORCE_ALWAYS => true,
            FORCE_ONCE => self
                .force
                .compare_exchange(FORCE_ONCE, FORCE_NEVER, Ordering::AcqRel, Ordering::Acquire)
                .is_ok(),
            _ => false,
        }
    }

    async fn token_string(&self) -> Result<String, AuthError> {
        let token = if self.take_force() {
            self.provider.refreshed_token().await?
        } else {
            self.provider.token().await?
        };
        Ok(token.secret().to_owned())
    }
}

fn to_graph_error(err: AuthError) -> AuthExecutionError {
    AuthExecutionError::Other(Box::new(err))
}

#[async_trait]
impl ClientApplication for GraphTokenSource {
    /// Blocking variant: only usable outside an async runtime, or inside a
    /// multi-threaded tokio runtime (it then blocks this worker thread).
    fn get_token_silent(&mut self) -> AuthExecutionResult<String> {
        if let Some(token) = chosen_token() {
            return Ok(token);
        }
        let this = self.clone();
        let run = async move { this.token_string().await };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => match handle.runtime_flavor() {
                tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(|| handle.block_on(run)).map_err(to_graph_error)
                }
                _ => Err(to_graph_error(AuthError::InvalidOption {
                    option: "runtime",
                    reason: "blocking Graph calls cannot get a token inside a single-threaded \
                             async runtime; use the async API"
                        .into(),
                })),
            },
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| {
                    to_graph_error(AuthError::InvalidOption {
                        option: "runtime",
                        reason: e.to_string(),
                    })
                })?
                .block_on(run)
                .map_err(to_graph_error),
        }
    }

    async fn get_token_silent_async(&mut self) -> AuthExecutionResult<String> {
        if let Some(token) = chosen_token() {
            return Ok(token);
        }
        self.token_string().await.map_err(to_graph_error)
    }

    fn with_force_token_refresh(&mut self, force_token_refresh: ForceTokenRefresh) {
        let value = match force_token_refresh {
            ForceTokenRefresh::Never => FORCE_NEVER,
            ForceTokenRefresh::Once => FORCE_ONCE,
            ForceTokenRefresh::Always => FORCE_ALWAYS,
        };
        self.force.store(value, Ordering::Release);
    }
}

/// Options of [`graph_client`].
#[derive(Debug, Clone, Default)]
pub struct GraphClientOptions {
    /// Timeout of each Graph request (none by default: large MIME downloads).
    pub request_timeout: Option<Duration>,
    /// Timeout of establishing a connection.
    pub connect_timeout: Option<Duration>,
}

/// A `GraphClient` for `cloud`'s Graph v1.0 root whose every request takes its token
/// from `provider`.
///
/// Microsoft clouds go through graph-rs-sdk's host validation (`use_endpoint`);
/// custom URLs use `use_test_endpoint` (and may be plain http on loopback).
/// graph-rs-sdk builds its own HTTP client: it cannot trust extra CA certificates,
/// so a custom Graph URL behind a private CA is not reachable through it.
pub fn graph_client(
    provider: Arc<dyn TokenProvider>,
    cloud: &Cloud,
    options: &GraphClientOptions,
) -> GraphClient {
    let endpoint = cloud.graph_v1_url();
    let mut client = configured(provider, &endpoint, options);
    if cloud.is_microsoft() {
        client.use_endpoint(&endpoint);
    } else {
        client.use_test_endpoint(&endpoint);
    }
    client
}

/// A `GraphClient` whose requests go to the v1.0 API root `api` as given (any host,
/// plain http allowed when `api` is http), every token taken from `provider`.
pub fn graph_client_at(
    provider: Arc<dyn TokenProvider>,
    api: &Url,
    options: &GraphClientOptions,
) -> GraphClient {
    let mut client = configured(provider, api, options);
    client.use_test_endpoint(api);
    client
}

fn configured(
    provider: Arc<dyn TokenProvider>,
    endpoint: &Url,
    options: &GraphClientOptions,
) -> GraphClient {
    let mut config = GraphClientConfiguration::new()
        .client_application(GraphTokenSource::new(provider))
        .https_only(endpoint.scheme() == "https");
    if let Some(timeout) = options.request_timeout {
        config = config.timeout(timeout);
    }
    if let Some(timeout) = options.connect_timeout {
        config = config.connect_timeout(timeout);
    }
    GraphClient::from(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccessToken, StaticTokenProvider};
    use std::time::SystemTime;

    fn static_provider() -> Arc<dyn TokenProvider> {
        Arc::new(StaticTokenProvider::new(AccessToken::new(
            "static-token",
            SystemTime::now() + Duration::from_secs(600),
        )))
    }

    #[test]
    fn every_cloud_gets_a_client_at_its_v1_root() {
        let clouds = [
            Cloud::Global,
            Cloud::UsGov,
            Cloud::UsGovDod,
            Cloud::China,
            Cloud::custom("http://127.0.0.1:1", "http://127.0.0.1:2/graph").unwrap(),
        ];
        for cloud in clouds {
            let client = graph_client(static_provider(), &cloud, &GraphClientOptions::default());
            assert_eq!(client.url(), &cloud.graph_v1_url());
        }
    }

    #[test]
    fn blocking_token_outside_a_runtime_works() {
        let mut source = GraphTokenSource::new(static_provider());
        assert_eq!(source.get_token_silent().unwrap(), "static-token");
        assert!(!format!("{source:?}").contains("static-token"));
    }

    #[tokio::test]
    async fn a_chosen_token_wins_inside_its_scope() {
        let mut source = GraphTokenSource::new(static_provider());
        let chosen = AccessToken::new("chosen", SystemTime::now() + Duration::from_secs(60));
        let inside = with_request_token(&chosen, source.clone().get_token_silent_async()).await;
        assert_eq!(inside.unwrap(), "chosen");
        assert_eq!(
            source.get_token_silent_async().await.unwrap(),
            "static-token"
        );
    }

    #[test]
    fn force_once_is_consumed_and_always_sticks() {
        let mut source = GraphTokenSource::new(static_provider());
        assert!(!source.take_force());
        source.with_force_token_refresh(ForceTokenRefresh::Once);
        let clone = source.clone();
        assert!(clone.take_force());
        assert!(
            !source.take_force(),
            "Once is shared by clones and consumed once"
        );
        source.with_force_token_refresh(ForceTokenRefresh::Always);
        assert!(source.take_force() && source.take_force());
        source.with_force_token_refresh(ForceTokenRefresh::Never);
        assert!(!source.take_force());
    }
}
