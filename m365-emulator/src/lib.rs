//! A local Microsoft identity platform + Graph v1.0 emulator: the tenant every
//! test, example, demo and benchmark of the archiver runs against on 127.0.0.1.
//!
//! [`Emulator::start`] generates a tenant deterministically from a seed, then serves three
//! loopback listeners: the identity platform (`login_url`), Graph (`graph_url`) and the control
//! API (`admin_url`). They are separate on purpose: a client that sends a Graph call to the login
//! host (or the reverse) fails as it would against Microsoft. Graph calls go through the same
//! gates as the real service: bearer-token check, Outlook throttling per app and mailbox, and
//! seeded fault injection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), m365_emulator::EmulatorError> {
//! use m365_emulator::{Emulator, EmulatorConfig};
//! let emu = Emulator::start(EmulatorConfig { users: 5, messages_per_user: 30, seed: 7, ..Default::default() }).await?;
//! let token_url = emu.login_url().join(&format!("{}/oauth2/v2.0/token", emu.tenant_id())).ok();
//! assert!(token_url.is_some());
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

mod admin;
mod faults;
mod gate;
mod graph;
mod identity;
mod server;
mod state;
mod stats;
mod tenant;
mod throttle;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use stats::{EmulatorStats, MailboxStats};
pub use tenant::{
    AttachmentInfo, FolderArea, FolderCount, MailboxId, MailboxPurpose, MessageState, NewUser,
    TenantError, UnconvertibleItem, UserInfo, UserPatch,
};

use state::AppState;

/// How to build and run an emulator. Every field has a default; start from
/// `EmulatorConfig { users: 5, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Regular enabled members with mailboxes.
    pub users: usize,
    /// Messages generated in each regular mailbox.
    pub messages_per_user: usize,
    /// Seed of the tenant generator and of the fault injector: same seed, same bytes.
    pub seed: u64,
    /// Serve https with a freshly generated CA ([`Emulator::ca_pem`]).
    pub tls: bool,
    /// Divides the Outlook throttling windows, `Retry-After` values and the mail service latency
    /// (benchmarks use e.g. 60.0 to compress ten minutes into ten seconds). Values ≤ 0 count as 1.
    pub time_scale: f64,
    /// Fault rates applied from the start (change them later with [`Emulator::set_faults`]).
    pub faults: FaultConfig,
    /// Lifetime of issued access tokens (`expires_in`).
    pub token_lifetime: Duration,
    /// Enforce Outlook's per-mailbox limits (4 concurrent requests, 10,000 per 10 minutes).
    pub throttling: bool,
    /// Add the special users: disabled, guest, unlicensed, policy-excluded, without mail.
    pub special_users: bool,
    /// Add one message of this size to the first user's inbox.
    pub large_message_bytes: Option<u64>,
    /// Fill the first user's mailbox from the `.eml` files under this directory (folder = sub-directory).
    pub eml_dir: Option<PathBuf>,
    /// Time Exchange takes to answer a mail request before its body starts (divided by
    /// `time_scale`). Real Outlook answers in tens to hundreds of milliseconds; a few milliseconds
    /// keep tests fast while letting concurrent requests overlap as they do in production.
    pub mail_latency: Duration,
    /// Address of the Graph listener (port 0: any free port). The login and control listeners
    /// take free ports on the same address; the control API always listens on 127.0.0.1.
    pub listen: SocketAddr,
    /// Add the mailboxes that are not a person's: two shared mailboxes (info@, support@), a
    /// departed employee's mailbox converted to shared, a room and an equipment mailbox. All are
    /// user objects with `accountEnabled = false` and mail, told apart by
    /// `mailboxSettings.userPurpose` ([`Emulator::mailbox_kind`]).
    pub mailbox_kinds: bool,
    /// Add the mail a plain folder walk does not see: the hidden Recoverable Items tree with
    /// soft-deleted messages (`DELETE` moves there, `permanentDelete` to Purges), online archive
    /// mailboxes on beta (`settings/exchange`, `MBX:` ids, an auto-expanded archive answering
    /// 308) and a few items per mailbox whose `$value` always fails.
    pub hidden_mail: bool,
    /// Redirect URIs registered for the app's web sign-in (more with
    /// [`Emulator::add_redirect_uri`]). Matched as exact strings, except that the port of an
    /// `http://localhost` (or `127.0.0.1`, `[::1]`) URI is ignored, as Entra ignores it.
    pub redirect_uris: Vec<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            users: 5,
            messages_per_user: 30,
            seed: 1,
            tls: false,
            time_scale: 1.0,
            faults: FaultConfig::default(),
            token_lifetime: Duration::from_secs(3599),
            throttling: true,
            special_users: true,
            large_message_bytes: None,
            eml_dir: None,
            mail_latency: Duration::from_millis(5),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            mailbox_kinds: false,
            hidden_mail: false,
            redirect_uris: Vec::new(),
        }
    }
}

/// Fault rates per Graph request (0.0..=1.0), drawn from a generator seeded by the tenant seed so
/// that the same sequence of requests meets the same faults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// 503 Service Unavailable (half of them with `Retry-After`).
    pub status_503: f64,
    /// 504 Gateway Timeout.
    pub status_504: f64,
    /// Connection reset in the middle of the response body.
    pub reset: f64,
    /// Truncated body: `Content-Length` larger than the bytes sent, then the connection closes.
    pub truncate: f64,
    /// Extra delay before every Graph response, in milliseconds (0: none).
    pub slow_ms: u64,
}

impl FaultConfig {
    /// Checks that every rate lies in 0..=1; names the culprit otherwise.
    ///
    /// # Errors
    /// [`EmulatorError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), EmulatorError> {
        for (name, rate) in [
            ("status_503", self.status_503),
            ("status_504", self.status_504),
            ("reset", self.reset),
            ("truncate", self.truncate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(EmulatorError::InvalidConfig(format!(
                    "fault rate '{name}' must lie in 0..=1, got {rate}"
                )));
            }
        }
        Ok(())
    }

    /// Parses the command-line form `503=0.05,504=0.01,reset=0.02,truncate=0.01,slow=200`.
    ///
    /// # Errors
    /// [`EmulatorError::InvalidConfig`] naming the unknown key or bad value.
    pub fn parse_spec(spec: &str) -> Result<FaultConfig, EmulatorError> {
        let mut faults = FaultConfig::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                EmulatorError::InvalidConfig(format!("fault '{part}' is not KEY=VALUE"))
            })?;
            let key = key.trim();
            let value = value.trim();
            let rate = || {
                value.parse::<f64>().map_err(|_| {
                    EmulatorError::InvalidConfig(format!(
                        "fault '{key}': '{value}' is not a number"
                    ))
                })
            };
            match key {
                "503" | "status_503" => faults.status_503 = rate()?,
                "504" | "status_504" => faults.status_504 = rate()?,
                "reset" => faults.reset = rate()?,
                "truncate" => faults.truncate = rate()?,
                "slow" | "slow_ms" => {
                    faults.slow_ms = value.parse().map_err(|_| {
                        EmulatorError::InvalidConfig(format!(
                            "fault '{key}': '{value}' is not a whole number of ms"
                        ))
                    })?;
                }
                other => {
                    return Err(EmulatorError::InvalidConfig(format!(
                        "unknown fault '{other}' (expected 503, 504, reset, truncate, slow)"
                    )));
                }
            }
        }
        faults.validate()?;
        Ok(faults)
    }
}

/// What can go wrong when starting or driving an emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The tenant could not be built or changed (unknown user, folder, message, duplicate UPN...).
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The app certificate, the CA or the TLS configuration could not be built.
    #[error("cannot build credentials: {0}")]
    Credentials(String),
    /// A configuration value is unusable.
    #[error("invalid emulator configuration: {0}")]
    InvalidConfig(String),
}

/// A running emulator. Dropping it stops its listeners; [`Emulator::shutdown`] also waits for them.
pub struct Emulator {
    state: Arc<AppState>,
    endpoints: server::Endpoints,
    running: server::Running,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("login_url", &self.endpoints.login_url.as_str())
            .field("graph_url", &self.endpoints.graph_url.as_str())
            .field("admin_url", &self.endpoints.admin_url.as_str())
            .field("tenant_id", &self.state.identity.tenant_id())
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Generates the tenant and starts the listeners.
    ///
    /// # Errors
    /// [`EmulatorError::Tenant`] for an unusable tenant spec (e.g. unreadable `eml_dir`),
    /// [`EmulatorError::Bind`], [`EmulatorError::Credentials`], [`EmulatorError::InvalidConfig`].
    pub async fn start(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        config.faults.validate()?;
        if !config.time_scale.is_finite() {
            return Err(EmulatorError::InvalidConfig(format!(
                "time_scale must be finite, got {}",
                config.time_scale
            )));
        }
        let state = Arc::new(AppState::build(config)?);
        let (endpoints, running) = server::serve(Arc::clone(&state)).await?;
        Ok(Emulator {
            state,
            endpoints,
            running,
        })
    }

    /// Authority root: the token endpoint is `{login_url}/{tenant}/oauth2/v2.0/token`.
    pub fn login_url(&self) -> url::Url {
        self.endpoints.login_url.clone()
    }

    /// Graph root: the v1.0 API lives at `{graph_url}/v1.0/...`.
    pub fn graph_url(&self) -> url::Url {
        self.endpoints.graph_url.clone()
    }

    /// Control API root (`GET {admin_url}/stats`, `POST {admin_url}/faults`, ...).
    pub fn admin_url(&self) -> url::Url {
        self.endpoints.admin_url.clone()
    }

    /// The tenant id (GUID).
    pub fn tenant_id(&self) -> String {
        self.state.identity.tenant_id().to_owned()
    }

    /// The tenant's initial domain, accepted by the token endpoint in place of the id.
    pub fn tenant_domain(&self) -> String {
        self.state.identity.tenant_domain().to_owned()
    }

    /// The registered application's client id (GUID).
    pub fn client_id(&self) -> String {
        self.state.identity.client_id().to_owned()
    }

    /// A valid client secret of the application.
    pub fn client_secret(&self) -> String {
        self.state.identity.client_secret().to_owned()
    }

    /// A second secret of the same application that has expired (AADSTS7000222).
    pub fn expired_client_secret(&self) -> String {
        self.state.identity.expired_client_secret().to_owned()
    }

    /// The application's registered certificate (PEM).
    pub fn certificate_pem(&self) -> String {
        self.state.identity.certificate_pem().to_owned()
    }

    /// The certificate's private key (PKCS#8 PEM).
    pub fn private_key_pem(&self) -> String {
        self.state.identity.private_key_pem().to_owned()
    }

    /// The CA certificate that signed the listeners' certificate, when started with `tls`.
    pub fn ca_pem(&self) -> Option<String> {
        self.endpoints.ca_pem.clone()
    }

    /// Counters since start (the same content as `GET {admin_url}/stats`).
    pub async fn stats(&self) -> EmulatorStats {
        self.state.stats.snapshot()
    }

    /// All live users of the tenant, in directory order.
    pub fn users(&self) -> Vec<UserInfo> {
        self.state.tenant.users()
    }

    /// Messages in the mailbox view: every folder under msgfolderroot (hidden ones included),
    /// not search folders, not Recoverable Items, not the online archive; unconvertible items
    /// count (they are listed like any message). 0 for an unknown mailbox.
    pub fn message_count(&self, upn: &str) -> usize {
        self.state.tenant.message_count(upn)
    }

    /// Immutable ids of the messages [`Emulator::message_count`] counts.
    pub fn message_ids(&self, upn: &str) -> Vec<String> {
        self.state.tenant.message_ids(upn)
    }

    /// The exact bytes `$value` serves for this message.
    pub fn message_mime(&self, upn: &str, id: &str) -> Option<Vec<u8>> {
        self.state.tenant.message_mime(upn, id)
    }

    /// What Graph holds on a message beside its MIME (flags, draft, dates, categories, custom
    /// extended properties, attachments); `None` for an unknown user or message.
    pub fn message_state(&self, upn: &str, id: &str) -> Option<MessageState> {
        self.state.tenant.message_state(upn, id)
    }

    /// The id of the folder at a path of display names below msgfolderroot (e.g.
    /// `["Restored", "2026-12-01", "Inbox"]`; an empty path is msgfolderroot itself).
    pub fn folder_id_by_path(&self, upn: &str, path: &[&str]) -> Option<String> {
        self.state.tenant.folder_by_path(upn, path)
    }

    /// Bytes written to a mailbox in the current upload window (Outlook's 150 MB per 5 minutes,
    /// divided by `time_scale`), all apps together.
    pub fn upload_bytes_in_window(&self, upn: &str) -> u64 {
        let key = self
            .state
            .tenant
            .resolve_mailbox(upn)
            .unwrap_or_else(|| upn.to_owned());
        self.state.uploads.bytes_in_window(&key)
    }

    /// Changes the upload budget per app and mailbox and window (Outlook: 150 MB), so tests can
    /// reach it with little data.
    pub fn set_upload_budget(&self, bytes: u64) {
        self.state.uploads.set_budget(bytes);
    }

    /// Makes every open attachment upload session expired (their next PUT fails).
    pub fn expire_upload_sessions(&self) {
        self.state.uploads.expire_all();
    }

    /// The counters of one mailbox (requests, throttled, highest concurrency); zeros when it saw
    /// no request.
    pub async fn mailbox_stats(&self, upn: &str) -> MailboxStats {
        let key = self
            .state
            .tenant
            .resolve_mailbox(upn)
            .unwrap_or_else(|| upn.to_owned());
        self.state
            .stats
            .snapshot()
            .per_mailbox
            .get(&key)
            .copied()
            .unwrap_or_default()
    }

    /// Delivers raw MIME into a folder (well-known name or folder id); answers the new message id.
    ///
    /// # Errors
    /// [`EmulatorError::Tenant`]: unknown user, user without mailbox, unknown folder.
    pub fn deliver(&self, upn: &str, folder: &str, mime: Vec<u8>) -> Result<String, EmulatorError> {
        Ok(self.state.tenant.deliver(upn, folder, mime)?)
    }

    /// Every mail folder of the primary mailbox with its message count, in folder order: the
    /// mailbox view ([`FolderArea::Mailbox`], summing to [`Emulator::message_count`]) and the
    /// Recoverable Items tree ([`FolderArea::RecoverableItems`]). Empty for an unknown user.
    pub fn folder_counts(&self, upn: &str) -> Vec<FolderCount> {
        self.state.tenant.folder_counts(upn)
    }

    /// Messages per Recoverable Items folder by display name: `Deletions`, and with
    /// `hidden_mail` `Purges`, `Versions`, `DiscoveryHolds`.
    pub fn recoverable_counts(&self, upn: &str) -> std::collections::BTreeMap<String, usize> {
        self.state.tenant.recoverable_counts(upn)
    }

    /// The online archive's folders with their counts (expanded folders count the auxiliary
    /// archive's messages; [`FolderCount::mailbox_id`] names the mailbox holding them). Empty
    /// for a user without an archive.
    pub fn archive_folder_counts(&self, upn: &str) -> Vec<FolderCount> {
        self.state.tenant.archive_folder_counts(upn)
    }

    /// Messages in the user's online archive, auxiliary archives included (0 without one).
    pub fn archive_message_count(&self, upn: &str) -> usize {
        self.state.tenant.archive_message_count(upn)
    }

    /// Immutable ids of the messages [`Emulator::archive_message_count`] counts.
    pub fn archive_message_ids(&self, upn: &str) -> Vec<String> {
        self.state.tenant.archive_message_ids(upn)
    }

    /// The primary mailbox's `MBX:` id (`primaryMailboxId`); `None` for a user without mailbox.
    pub fn primary_mailbox_id(&self, upn: &str) -> Option<String> {
        self.state
            .tenant
            .mailbox_ids(upn)
            .map(|(primary, _, _)| primary)
    }

    /// The online archive's `MBX:` id (`inPlaceArchiveMailboxId`), if the user has one.
    pub fn archive_mailbox_id(&self, upn: &str) -> Option<String> {
        self.state
            .tenant
            .mailbox_ids(upn)
            .and_then(|(_, main, _)| main)
    }

    /// The `MBX:` ids of the auxiliary archives of an auto-expanded archive (empty otherwise).
    pub fn auxiliary_archive_ids(&self, upn: &str) -> Vec<String> {
        self.state
            .tenant
            .mailbox_ids(upn)
            .map(|(_, _, auxiliary)| auxiliary)
            .unwrap_or_default()
    }

    /// The items of the primary mailbox whose `$value` fails every time ("text does not support
    /// structured data"), with subject and folder path.
    pub fn unconvertible_items(&self, upn: &str) -> Vec<UnconvertibleItem> {
        self.state.tenant.unconvertible_items(upn)
    }

    /// Moves a message to Recoverable Items/Deletions as Graph's `DELETE` does (the immutable id
    /// stays, the current id changes; one already in Deletions goes on to Purges with
    /// `hidden_mail`). Answers the new current id, `None` when the message is gone for good.
    ///
    /// # Errors
    /// [`EmulatorError::Tenant`]: unknown user, user without mailbox, unknown message.
    pub fn soft_delete_message(
        &self,
        upn: &str,
        id: &str,
    ) -> Result<Option<String>, EmulatorError> {
        Ok(self.state.tenant.soft_delete_message(upn, id)?)
    }

    /// Moves a message to Recoverable Items/Purges as Graph's `permanentDelete` does (gone for
    /// good without `hidden_mail`). Answers the new current id, `None` when it is gone.
    ///
    /// # Errors
    /// [`EmulatorError::Tenant`]: unknown user, user without mailbox, unknown message.
    pub fn hard_delete_message(
        &self,
        upn: &str,
        id: &str,
    ) -> Result<Option<String>, EmulatorError> {
        Ok(self.state.tenant.hard_delete_message(upn, id)?)
    }

    /// Stores raw MIME in the user's online archive: `folder` is an archive folder id or display
    /// name (Inbox when `None`; an expanded folder's mail lands in its auxiliary archive).
    /// Answers the immutable id.
    ///
    /// # Errors
    /// [`EmulatorError::Tenant`]: unknown user, user without archive, unknown folder.
    pub fn deliver_to_archive(
        &self,
        upn: &str,
        folder: Option<&str>,
        mime: Vec<u8>,
    ) -> Result<String, EmulatorError> {
        Ok(self.state.tenant.deliver_to_archive(upn, folder, mime)?)
    }

    /// Deletes a message for good (no trace in Recoverable Items).
    ///
    /// # Errors
    /// [`EmulatorError::Tenant`]: unknown user, user without mailbox, unknown message.
    pub fn delete_message(&self, upn: &str, id: &str) -> Result<(), EmulatorError> {
        Ok(self.state.tenant.delete_message(upn, id)?)
    }

    /// Expires every message delta token of a mailbox: following an older deltaLink or nextLink
    /// then answers 410 Gone `syncStateNotFound` with a `Location`, as when Graph drops a sync state.
    ///
    /// # Errors
    /// [`EmulatorError::Tenant`]: unknown user, user without mailbox.
    pub fn expire_delta_tokens(&self, upn: &str) -> Result<(), EmulatorError> {
        Ok(self.state.tenant.expire_delta_tokens(upn)?)
    }

    /// Sets the fault rates from now on (rates outside 0..=1 are clamped).
    pub fn set_faults(&self, faults: FaultConfig) {
        self.state.faults.set(faults);
    }

    /// Invalidates every token issued so far: Graph answers 401 `InvalidAuthenticationToken`.
    pub fn revoke_tokens(&self) {
        self.state.identity.revoke_all();
    }

    /// Lifetime (`expires_in`) of the tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.identity.set_token_lifetime(lifetime);
    }

    /// Adds a user (with an empty mailbox when `has_mailbox`).
    ///
    /// # Errors
    /// [`EmulatorError::Tenant`]: duplicate UPN, invalid field.
    pub fn add_user(&self, user: NewUser) -> Result<UserInfo, EmulatorError> {
        Ok(self.state.tenant.add_user(user)?)
    }

    /// Renames, enables/disables or adds an alias to a user (by object id or UPN).
    ///
    /// # Errors
    /// [`EmulatorError::Tenant`]: unknown user, invalid field.
    pub fn update_user(&self, id: &str, patch: UserPatch) -> Result<UserInfo, EmulatorError> {
        Ok(self.state.tenant.update_user(id, patch)?)
    }

    /// Deletes a user and its mailbox (by object id or UPN).
    ///
    /// # Errors
    /// [`EmulatorError::Tenant`]: unknown user.
    pub fn delete_user(&self, id: &str) -> Result<(), EmulatorError> {
        Ok(self.state.tenant.delete_user(id)?)
    }

    /// What a mailbox is for (`mailboxSettings.userPurpose`), by UPN or object id; `None` for an
    /// unknown user. Users without a mailbox answer `user` as well.
    pub fn mailbox_kind(&self, upn: &str) -> Option<MailboxPurpose> {
        self.state.tenant.read().user(upn).map(|user| user.purpose)
    }

    /// Withdraws app roles from the application (e.g. `["MailboxSettings.Read"]`; an empty list
    /// restores every role). Graph then refuses the routes that need them with 403, for tokens
    /// issued before the change too (Entra would apply it to tokens issued afterwards only; tests
    /// fetch a new token anyway). Roles the app never had cannot be granted this way.
    pub fn set_withdrawn_app_roles(&self, roles: &[&str]) {
        self.state
            .set_withdrawn_roles(roles.iter().map(|r| (*r).to_owned()).collect());
    }

    /// The password every user of the tenant signs in with on the authorize endpoint's page
    /// (derived from the seed).
    pub fn user_password(&self) -> String {
        self.state.oidc.user_password().to_owned()
    }

    /// Registers a redirect URI for the app's web sign-in (registering it again changes nothing).
    ///
    /// # Errors
    /// [`EmulatorError::InvalidConfig`]: not an absolute URL, http other than for localhost, a
    /// fragment, a wildcard, longer than 256 characters (what app registration refuses).
    pub fn add_redirect_uri(&self, uri: &str) -> Result<(), EmulatorError> {
        self.state.oidc.add_redirect_uri(uri)
    }

    /// The registered redirect URIs, in registration order.
    pub fn redirect_uris(&self) -> Vec<String> {
        self.state.oidc.redirect_uris()
    }

    /// The issuer of the tenant's id tokens: `{login_url}{tenant id}/v2.0`.
    pub fn oidc_issuer(&self) -> String {
        identity::oidc::issuer(&self.state)
    }

    /// Signs arbitrary claims as an RS256 JWT with the tenant's signing key and `kid`, the key
    /// `jwks_uri` publishes: for tests that need a validly signed token with a wrong `aud`,
    /// `nonce` or `exp`.
    ///
    /// # Errors
    /// [`EmulatorError::InvalidConfig`] when `claims` is not a JSON object,
    /// [`EmulatorError::Credentials`] when the key cannot be made or sign.
    pub fn sign_id_token(&self, claims: serde_json::Value) -> Result<String, EmulatorError> {
        self.state.oidc.sign(&claims)
    }

    /// Makes every authorization code issued so far expired: redeeming one answers
    /// `invalid_grant` AADSTS70008, as after Entra's ten minutes.
    pub fn expire_authorization_codes(&self) {
        self.state.oidc.expire_codes();
    }

    /// Stops the listeners and waits until they have closed.
    pub async fn shutdown(self) {
        self.running.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_types_cross_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Emulator>();
        assert_send_sync::<EmulatorConfig>();
        assert_send_sync::<EmulatorStats>();
        assert_send_sync::<EmulatorError>();
    }

    #[test]
    fn fault_specs_name_the_culprit() {
        let parsed = FaultConfig::parse_spec("503=0.05, reset=0.02,slow=150").unwrap();
        assert_eq!(
            parsed,
            FaultConfig {
                status_503: 0.05,
                reset: 0.02,
                slow_ms: 150,
                ..FaultConfig::default()
            }
        );
        assert_eq!(FaultConfig::parse_spec("").unwrap(), FaultConfig::default());
        for (spec, culprit) in [
            ("503", "503"),
            ("504=x", "504"),
            ("boom=1", "boom"),
            ("truncate=3", "truncate"),
        ] {
            let error = FaultConfig::parse_spec(spec).unwrap_err().to_string();
            assert!(error.contains(culprit), "{spec}: {error}");
        }
    }
}
