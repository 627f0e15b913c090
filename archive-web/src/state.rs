//! What every request handler reaches: the service, the sessions, the sign-in
//! limiter, the Microsoft sign-in (when set up), the settings and the clock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use archiver_service::Service;
use chrono::{DateTime, Utc};
use url::Url;

use crate::entra::{EntraSignIn, PendingEntra};
use crate::limiter::{LimiterConfig, SignInLimiter};
use crate::session::{SessionConfig, SessionKey, Sessions};

/// A source of the current time (tests move it; production reads the system clock).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// How the web pages are set up.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The address people open (`https://archive.example.org/`): the redirect URI
    /// registered in Entra is `<public_url>auth/callback`.
    pub public_url: Url,
    /// Sessions and cookies.
    pub session: SessionConfig,
    /// Failed sign-in limits.
    pub limiter: LimiterConfig,
    /// The credential restores write with (`None`: restore is not offered).
    pub restore_credentials: Option<String>,
    /// Where exports are staged before they are sent (removed once sent).
    pub export_dir: PathBuf,
}

impl WebConfig {
    /// Settings for `public_url`, staging exports in `export_dir`.
    pub fn new(public_url: Url, export_dir: PathBuf) -> Self {
        let secure = public_url.scheme() == "https";
        Self {
            public_url,
            session: SessionConfig {
                secure_cookies: secure,
                ..SessionConfig::default()
            },
            limiter: LimiterConfig::default(),
            restore_credentials: None,
            export_dir,
        }
    }

    /// The redirect URI to register in Entra.
    pub fn redirect_uri(&self) -> String {
        format!("{}auth/callback", with_slash(&self.public_url))
    }
}

fn with_slash(url: &Url) -> String {
    let s = url.as_str();
    if s.ends_with('/') {
        s.to_string()
    } else {
        format!("{s}/")
    }
}

/// A Microsoft sign-in begun: kept until its callback, at most ten minutes.
pub(crate) struct PendingEntry {
    pub pending: PendingEntra,
    /// The browser session that began it (the callback by GET must come from it).
    pub session: Option<SessionKey>,
    pub return_to: String,
    pub created: DateTime<Utc>,
}

/// Most Microsoft sign-ins pending at once.
pub(crate) const MAX_PENDING: usize = 10_000;

/// The state of the web application. Cheap to clone.
#[derive(Clone)]
pub struct WebState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub service: Service,
    pub config: WebConfig,
    pub sessions: Sessions,
    pub limiter: SignInLimiter,
    pub entra: Option<Arc<dyn EntraSignIn>>,
    pub pending: Mutex<HashMap<String, PendingEntry>>,
    pub clock: Clock,
    /// Signs the links of a message body's inline images (see [`crate::inline`]).
    pub inline_key: [u8; 32],
}

impl WebState {
    /// The web application over `service`.
    pub fn new(service: Service, config: WebConfig) -> Self {
        Self::build(service, config, None, Arc::new(Utc::now))
    }

    fn build(
        service: Service,
        config: WebConfig,
        entra: Option<Arc<dyn EntraSignIn>>,
        clock: Clock,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                service,
                sessions: Sessions::new(config.session.clone()),
                limiter: SignInLimiter::new(config.limiter.clone()),
                config,
                entra,
                pending: Mutex::new(HashMap::new()),
                clock,
                inline_key: crate::inline::new_key(),
            }),
        }
    }

    /// With sign-in through Entra ID.
    pub fn with_entra(self, entra: Arc<dyn EntraSignIn>) -> Self {
        let inner = self.into_parts();
        Self::build(inner.0, inner.1, Some(entra), inner.2)
    }

    /// With another clock (tests).
    pub fn with_clock(self, clock: Clock) -> Self {
        let inner = self.into_parts();
        Self::build(inner.0, inner.1, inner.3, clock)
    }

    fn into_parts(self) -> (Service, WebConfig, Clock, Option<Arc<dyn EntraSignIn>>) {
        let inner = &self.inner;
        (
            inner.service.clone(),
            inner.config.clone(),
            inner.clock.clone(),
            inner.entra.clone(),
        )
    }

    /// The service.
    pub fn service(&self) -> &Service {
        &self.inner.service
    }

    /// The settings.
    pub fn config(&self) -> &WebConfig {
        &self.inner.config
    }

    /// The session table.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// Now, by the state's clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.inner.clock)()
    }
}
