//! The state every listener and handler shares: the tenant, the identity platform, the
//! throttle, the fault injector, the counters and the configuration.
//!
//! Graph handlers take `State<Arc<AppState>>`. `$batch` hands each inner request to
//! [`AppState::dispatch_inner`], which runs it through the same router and gates (token check,
//! throttling) as an outer request, so every inner request is throttled on its own.

use std::collections::BTreeSet;
use std::sync::RwLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;

use crate::faults::FaultInjector;
use crate::identity::{IdentityRegistry, Oidc};
use crate::stats::StatsRecorder;
use crate::tenant::{TenantSpec, TenantStore};
use crate::throttle::Throttle;
use crate::{EmulatorConfig, EmulatorError};

/// Marks a request dispatched from inside a `$batch` (no fault injection, no outer counters).
#[derive(Debug, Clone, Copy)]
pub(crate) struct InnerRequest;

/// Per-request context the outer gate puts into the request extensions: the ids Graph echoes in
/// its `request-id`/`client-request-id` headers and in error bodies' `innerError`.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    /// The `request-id` of this request.
    pub(crate) request_id: String,
    /// The caller's `client-request-id`, or the request id when it sent none.
    pub(crate) client_request_id: String,
}

/// Shared state of one emulator.
pub(crate) struct AppState {
    /// The directory and the mailboxes.
    pub(crate) tenant: TenantStore,
    /// Tenant identity, app registration, credentials, issued tokens.
    pub(crate) identity: IdentityRegistry,
    /// User sign-in: redirect URIs, pending sign-ins, authorization codes, the signing key.
    pub(crate) oidc: Oidc,
    /// Outlook limits per app and mailbox.
    pub(crate) throttle: Throttle,
    /// Seeded fault injection.
    pub(crate) faults: FaultInjector,
    /// Counters.
    pub(crate) stats: StatsRecorder,
    /// Attachment upload sessions and the upload budget.
    pub(crate) uploads: crate::graph::upload::Uploads,
    /// The configuration the emulator was started with.
    pub(crate) config: EmulatorConfig,
    /// App roles withdrawn from the app since start: Graph acts as if the token lacked them.
    pub(crate) withdrawn_roles: RwLock<BTreeSet<String>>,
    /// The Graph router with its gates, for `$batch` inner requests. Cleared at shutdown to break
    /// the `AppState` → router → `AppState` cycle.
    graph_service: RwLock<Option<axum::Router>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Generates the tenant and the app registration.
    pub(crate) fn build(config: EmulatorConfig) -> Result<AppState, EmulatorError> {
        let identity = IdentityRegistry::generate(config.seed, config.token_lifetime)?;
        let spec = TenantSpec {
            users: config.users,
            messages_per_user: config.messages_per_user,
            seed: config.seed,
            special_users: config.special_users,
            large_message_bytes: config.large_message_bytes,
            eml_dir: config.eml_dir.clone(),
            mailbox_kinds: config.mailbox_kinds,
            hidden_mail: config.hidden_mail,
            tenant_id: identity.tenant_id().to_owned(),
        };
        let tenant = TenantStore::generate(&spec)?;
        let throttle = Throttle::new(config.throttling, config.time_scale);
        let faults = FaultInjector::new(config.seed, config.faults);
        let oidc = Oidc::new(config.seed, &config.redirect_uris, config.time_scale)?;
        Ok(AppState {
            tenant,
            identity,
            oidc,
            throttle,
            faults,
            stats: StatsRecorder::default(),
            uploads: crate::graph::upload::Uploads::new(config.time_scale),
            withdrawn_roles: RwLock::new(BTreeSet::new()),
            config,
            graph_service: RwLock::new(None),
        })
    }

    /// `time_scale`, never ≤ 0.
    pub(crate) fn time_scale(&self) -> f64 {
        if self.config.time_scale > 0.0 {
            self.config.time_scale
        } else {
            1.0
        }
    }

    /// The mail service latency after scaling.
    pub(crate) fn mail_latency(&self) -> Duration {
        self.config.mail_latency.div_f64(self.time_scale())
    }

    /// The app roles withdrawn so far (see [`crate::Emulator::set_withdrawn_app_roles`]).
    pub(crate) fn withdrawn_roles(&self) -> BTreeSet<String> {
        self.withdrawn_roles
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the set of withdrawn app roles.
    pub(crate) fn set_withdrawn_roles(&self, roles: BTreeSet<String>) {
        *self
            .withdrawn_roles
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = roles;
    }

    /// Installs the gated Graph router used for `$batch` inner requests.
    pub(crate) fn install_graph_service(&self, router: axum::Router) {
        *self
            .graph_service
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(router);
    }

    /// Drops the gated Graph router (at shutdown).
    pub(crate) fn clear_graph_service(&self) {
        self.graph_service
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }

    /// Runs one `$batch` inner request through the Graph router and its gates.
    ///
    /// `request` carries the inner method, a `/v1.0/...` URI, the inner headers and body; the
    /// outer request's `Authorization` header (as Graph does) is copied in when `outer_headers`
    /// holds one. Token check and throttling apply to it on its own; fault injection does not.
    pub(crate) async fn dispatch_inner(
        &self,
        outer_headers: &HeaderMap,
        mut request: Request<Body>,
    ) -> Response {
        let router = self
            .graph_service
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(router) = router else {
            return (StatusCode::SERVICE_UNAVAILABLE, "emulator shutting down").into_response();
        };
        if let Some(auth) = outer_headers.get(header::AUTHORIZATION) {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, auth.clone());
        }
        if let Some(client_request_id) = outer_headers.get("client-request-id") {
            request
                .headers_mut()
                .entry("client-request-id")
                .or_insert_with(|| client_request_id.clone());
        }
        request.extensions_mut().insert(InnerRequest);
        match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// A Graph error response: `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`
/// with the `request-id` and `client-request-id` headers.
pub(crate) fn graph_error(
    status: StatusCode,
    code: &str,
    message: &str,
    context: Option<&RequestContext>,
) -> Response {
    let fallback;
    let context = match context {
        Some(context) => context,
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            fallback = RequestContext {
                request_id: id.clone(),
                client_request_id: id,
            };
            &fallback
        }
    };
    let body = crate::wire::GraphErrorBody::new(
        code,
        message,
        &context.request_id,
        &context.client_request_id,
    );
    let mut response = (status, axum::Json(body)).into_response();
    crate::gate::set_request_headers(response.headers_mut(), context);
    response
}
