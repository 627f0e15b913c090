//! `AuthError`: every way obtaining a token can fail, each variant something an
//! administrator can act on. Identity-platform refusals carry their AADSTS code and
//! a plain-language hint; nothing here ever holds a secret, a key or a token.

use std::path::PathBuf;
use std::time::Duration;

/// Why no token could be obtained (or a credential could not be loaded or stored).
///
/// Variants name the culprit: the field, file, credential or AADSTS code. Use
/// [`AuthError::aadsts_code`], [`AuthError::hint`] and [`AuthError::is_transient`]
/// rather than matching on every variant.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The authority rejected the request with an AADSTS code this crate has no
    /// dedicated variant for.
    #[error("the identity platform refused the token request ({code}): {hint}")]
    Rejected {
        /// The AADSTS code, e.g. `AADSTS7000215`.
        code: String,
        /// Plain-language advice for an administrator.
        hint: String,
    },

    /// AADSTS7000215: the client secret is not one of the app's secrets.
    #[error(
        "the client secret was refused ({code}): {}{}",
        hint_for(code),
        detail_suffix(detail)
    )]
    InvalidClientSecret {
        /// The AADSTS code.
        code: String,
        /// The authority's own description (first line, trace ids).
        detail: String,
    },

    /// AADSTS7000222: the client secret expired.
    #[error(
        "the client secret has expired ({code}): {}{}",
        hint_for(code),
        detail_suffix(detail)
    )]
    ExpiredClientSecret {
        /// The AADSTS code.
        code: String,
        /// The authority's own description.
        detail: String,
    },

    /// AADSTS90002 / AADSTS900023 / AADSTS90072: the tenant does not exist (in this cloud).
    #[error(
        "tenant `{tenant}` was not found ({code}): {}{}",
        hint_for(code),
        detail_suffix(detail)
    )]
    UnknownTenant {
        /// The tenant as configured.
        tenant: String,
        /// The AADSTS code.
        code: String,
        /// The authority's own description.
        detail: String,
    },

    /// AADSTS700016: no application with this client id in the tenant.
    #[error(
        "application `{client_id}` was not found in the tenant ({code}): {}{}",
        hint_for(code),
        detail_suffix(detail)
    )]
    UnknownApplication {
        /// The client id as configured.
        client_id: String,
        /// The AADSTS code.
        code: String,
        /// The authority's own description.
        detail: String,
    },

    /// AADSTS7000112 and relatives: the application is disabled.
    #[error(
        "the application is disabled ({code}): {}{}",
        hint_for(code),
        detail_suffix(detail)
    )]
    ApplicationDisabled {
        /// The AADSTS code.
        code: String,
        /// The authority's own description.
        detail: String,
    },

    /// AADSTS700027, 700024, 700021, 7000274...: the signed certificate assertion was
    /// refused (key does not match a registered certificate, clock skew, ...).
    #[error(
        "the certificate assertion was refused ({code}): {}{}",
        hint_for(code),
        detail_suffix(detail)
    )]
    CertificateRejected {
        /// The AADSTS code.
        code: String,
        /// The authority's own description.
        detail: String,
    },

    /// AADSTS70011 / 700022 / 500011: the requested scope is not valid.
    #[error(
        "scope `{scope}` was refused ({code}): {}{}",
        hint_for(code),
        detail_suffix(detail)
    )]
    InvalidScope {
        /// The scope that was requested.
        scope: String,
        /// The AADSTS code.
        code: String,
        /// The authority's own description.
        detail: String,
    },

    /// The authority could not be reached (DNS, connection refused or reset, proxy).
    #[error(
        "the identity platform at {authority} could not be reached: {reason}. Check the network, \
         the proxy settings and the cloud/login URL of the credential"
    )]
    Unreachable {
        /// The authority (scheme, host and port).
        authority: String,
        /// What the network stack reported.
        reason: String,
    },

    /// The TLS handshake with the authority failed.
    #[error(
        "TLS with the identity platform at {authority} failed: {reason}. Behind a TLS-intercepting \
         proxy, add its CA certificate as the credential's CA bundle"
    )]
    Tls {
        /// The authority (scheme, host and port).
        authority: String,
        /// What the TLS stack reported.
        reason: String,
    },

    /// The authority did not answer within the per-request timeout.
    #[error(
        "the identity platform at {authority} did not answer within {} s; raise the timeout or \
         check the network", after.as_secs_f64()
    )]
    Timeout {
        /// The authority (scheme, host and port).
        authority: String,
        /// The per-request timeout that elapsed.
        after: Duration,
    },

    /// The authority kept failing with server errors (5xx or 429) through every retry.
    #[error(
        "the identity platform at {authority} kept failing (last status {status}) after {attempts} \
         attempts; it is probably having an outage: retry later"
    )]
    ServiceUnavailable {
        /// The authority (scheme, host and port).
        authority: String,
        /// The last HTTP status.
        status: u16,
        /// How many requests were made.
        attempts: u32,
    },

    /// The authority's answer could not be understood.
    #[error(
        "the identity platform at {authority} sent an unusable answer (HTTP {status}): {reason}. \
         Check that the login URL points at a Microsoft identity platform"
    )]
    MalformedResponse {
        /// The authority (scheme, host and port).
        authority: String,
        /// HTTP status of the answer.
        status: u16,
        /// What was wrong with it.
        reason: String,
    },

    /// A field of the app registration is invalid.
    #[error("invalid {field} `{value}`: {reason}")]
    InvalidRegistration {
        /// The field: `tenant`, `client_id`, `login_url`, `graph_url`, `cloud`, ...
        field: &'static str,
        /// The offending value (never a secret).
        value: String,
        /// What is wrong and what is expected.
        reason: String,
    },

    /// A client secret or password could not be obtained from its source.
    #[error("the secret from {source_name} is unavailable: {reason}")]
    SecretUnavailable {
        /// Where it should come from: `environment variable X`, `file /p`, ...
        source_name: String,
        /// What went wrong.
        reason: String,
    },

    /// A certificate, private key or PKCS#12 file could not be loaded.
    #[error("the certificate credential from {source_name} is unusable: {reason}")]
    InvalidCertificate {
        /// The file (or `inline PEM`) that was being read.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Signing the client assertion failed.
    #[error("signing the client assertion failed: {reason}")]
    Signing {
        /// What the signer reported.
        reason: String,
    },

    /// A provider option (proxy, CA bundle, timeout) is invalid.
    #[error("invalid {option}: {reason}")]
    InvalidOption {
        /// The option: `proxy`, `ca bundle`, ...
        option: &'static str,
        /// What is wrong (never the option's value when it can hold credentials).
        reason: String,
    },

    /// A credential-store file or directory could not be read or written.
    #[error("credential store {}: {reason}", path.display())]
    Store {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// No stored credential has this name.
    #[error("no credential named `{name}`; `credentials list` shows the stored ones")]
    CredentialNotFound {
        /// The name asked for.
        name: String,
    },

    /// A stored credential with this name already exists.
    #[error("a credential named `{name}` already exists; remove it first or choose another name")]
    CredentialExists {
        /// The name.
        name: String,
    },

    /// An id_token is not a well-formed JWS compact token with the claims sign-in needs
    /// (too long, not three base64url parts, not JSON, a required claim missing or mistyped).
    #[error("the id_token is malformed: {reason}")]
    IdTokenMalformed {
        /// What is wrong, never quoting the token.
        reason: String,
    },

    /// An id_token's header names a signature algorithm other than RS256.
    #[error("the id_token is signed with `{alg}`; only RS256 is accepted")]
    IdTokenAlgorithm {
        /// The header's `alg` (clipped, printable characters only).
        alg: String,
    },

    /// An id_token's `kid` names no key of the tenant's key set (or the header has no `kid`).
    #[error(
        "the id_token's signing key {} is not one of the tenant's published keys",
        kid.as_deref().map_or_else(|| "(no kid)".to_owned(), |k| format!("`{k}`"))
    )]
    IdTokenUnknownKey {
        /// The header's `kid` (clipped, printable characters only), if it had one.
        kid: Option<String>,
    },

    /// An id_token's signature does not verify with the key its `kid` names.
    #[error("the id_token's signature does not verify with the tenant's key `{kid}`")]
    IdTokenSignature {
        /// The key it was checked with.
        kid: String,
    },

    /// An id_token was issued by someone other than the tenant's issuer.
    #[error("the id_token's issuer `{found}` is not the expected `{expected}`")]
    IdTokenIssuer {
        /// The issuer of the discovery document (with the tenant substituted).
        expected: String,
        /// The token's `iss` (clipped).
        found: String,
    },

    /// An id_token was not issued to this application.
    #[error("the id_token was issued for another application (expected audience `{expected}`)")]
    IdTokenAudience {
        /// This application's client id.
        expected: String,
    },

    /// An id_token names a user of another tenant.
    #[error("the id_token is from tenant `{found}`, not the configured tenant `{expected}`")]
    IdTokenTenant {
        /// The configured tenant (directory id).
        expected: String,
        /// The token's `tid` (clipped).
        found: String,
    },

    /// An id_token has expired (beyond the allowed clock skew).
    #[error(
        "the id_token expired at Unix time {expired_at} (now {now}); sign in again, and check this \
         machine's clock if it keeps happening"
    )]
    IdTokenExpired {
        /// Its `exp`.
        expired_at: i64,
        /// The time it was checked at.
        now: i64,
    },

    /// An id_token is not valid yet (its `nbf` or `iat` lies beyond the allowed clock skew).
    #[error(
        "the id_token is not valid before Unix time {valid_from} (`{claim}`; now {now}): check \
         this machine's clock"
    )]
    IdTokenNotYetValid {
        /// `nbf` or `iat`.
        claim: &'static str,
        /// The claim's value.
        valid_from: i64,
        /// The time it was checked at.
        now: i64,
    },

    /// An id_token's `nonce` is not the one of this sign-in (a replayed or injected token).
    #[error("the id_token's nonce does not match the sign-in it answers")]
    IdTokenNonce,

    /// The `state` returned to the redirect URI is not the one of the pending sign-in.
    #[error(
        "the sign-in answer's state does not match the pending sign-in; start the sign-in again"
    )]
    SignInStateMismatch,

    /// The pending sign-in is too old (or dated in the future) to be finished.
    #[error(
        "the sign-in was started {age_secs} s ago, longer than the {limit_secs} s allowed; start \
         the sign-in again"
    )]
    SignInExpired {
        /// Seconds since the sign-in began (0 when it is dated in the future).
        age_secs: u64,
        /// The limit.
        limit_secs: u64,
    },

    /// The answer delivered to the redirect URI is unusable (no code, an implausible code).
    #[error("the sign-in answer is unusable: {reason}")]
    SignInResponseInvalid {
        /// What is wrong, never quoting the code.
        reason: String,
    },

    /// The identity platform refused the sign-in itself (an `error` sent to the redirect
    /// URI, e.g. AADSTS65001 consent missing, AADSTS50011 redirect URI mismatch).
    #[error(
        "the sign-in was refused ({code}): {}{}",
        hint_for(code),
        detail_suffix(detail)
    )]
    SignInRefused {
        /// The AADSTS code, or the OAuth `error` when there is none.
        code: String,
        /// The authority's own description (first line).
        detail: String,
    },

    /// The token endpoint refused to redeem the authorization code (expired, already
    /// redeemed, PKCE verifier or redirect URI mismatch).
    #[error(
        "the authorization code was refused ({code}): {}{}",
        hint_for(code),
        detail_suffix(detail)
    )]
    SignInCodeRejected {
        /// The AADSTS code (or OAuth `error`).
        code: String,
        /// The authority's own description.
        detail: String,
    },
}

impl AuthError {
    /// The AADSTS code of an identity-platform refusal (e.g. `AADSTS7000215`).
    pub fn aadsts_code(&self) -> Option<&str> {
        match self {
            AuthError::Rejected { code, .. }
            | AuthError::InvalidClientSecret { code, .. }
            | AuthError::ExpiredClientSecret { code, .. }
            | AuthError::UnknownTenant { code, .. }
            | AuthError::UnknownApplication { code, .. }
            | AuthError::ApplicationDisabled { code, .. }
            | AuthError::CertificateRejected { code, .. }
            | AuthError::InvalidScope { code, .. }
            | AuthError::SignInRefused { code, .. }
            | AuthError::SignInCodeRejected { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Plain-language advice for an administrator, when there is one beyond the message.
    pub fn hint(&self) -> Option<&str> {
        match self {
            AuthError::Rejected { hint, .. } => Some(hint),
            other => other.aadsts_code().map(hint_for),
        }
    }

    /// Whether trying again later may succeed without changing anything
    /// (network trouble, timeouts, an authority outage). A refused credential is not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AuthError::Unreachable { .. }
                | AuthError::Timeout { .. }
                | AuthError::ServiceUnavailable { .. }
        )
    }

    /// Whether the identity platform refused the credential or registration itself
    /// (retrying with the same configuration cannot succeed).
    pub fn is_credential_refused(&self) -> bool {
        self.aadsts_code().is_some()
            && !matches!(
                self,
                AuthError::SignInRefused { .. } | AuthError::SignInCodeRejected { .. }
            )
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" [{detail}]")
    }
}

/// Plain-language advice for an AADSTS code (with or without the `AADSTS` prefix).
pub fn hint_for(code: &str) -> &'static str {
    let number = code.trim_start_matches("AADSTS");
    match number {
        "7000215" => {
            "the client secret is wrong or was rotated: create a new secret in the app \
             registration (Certificates & secrets) and update the credential"
        }
        "7000222" => {
            "the client secret has expired: create a new secret in the app registration \
             (Certificates & secrets) and update the credential"
        }
        "90002" | "900023" | "90072" => {
            "the tenant does not exist in this cloud: check the tenant id or domain and the \
             cloud (global, usgov, usgov-dod, china) of the credential"
        }
        "700016" => {
            "no application with this client id exists in the tenant: check the client id, \
             the tenant, and that admin consent was granted in this tenant"
        }
        "7000112" | "7000113" => {
            "the application is disabled: an administrator must enable it in Enterprise applications"
        }
        "700027" | "7000274" | "5000811" => {
            "the assertion's signature does not match a certificate registered for the app: \
             upload the certificate (public part) to the app registration or use the matching \
             private key"
        }
        "700024" => {
            "the client assertion is outside its validity window: check that this machine's \
             clock is correct"
        }
        "50027" => {
            "the client assertion was malformed: check the certificate and private key of \
             the credential"
        }
        "700021" | "700023" => {
            "the client assertion does not name this application or audience: check the client \
             id and tenant of the credential"
        }
        "70011" | "700022" | "500011" | "1002012" => {
            "the scope is invalid for this cloud: use the Graph `.default` scope of the \
             credential's cloud"
        }
        "7000218" | "900144" | "90014" => {
            "the token request lacked a required field: the credential has neither a secret \
             nor a certificate"
        }
        "53003" => {
            "a Conditional Access policy blocked the app: ask an administrator to exempt it \
             or allow this network location"
        }
        "50053" | "50057" => "the account is locked or disabled in the tenant",
        "50011" => {
            "the redirect URI is not registered for the application: add it (exactly, scheme \
             and path included) under Authentication > Web in the app registration"
        }
        "65001" => {
            "the user or an administrator has not consented to the application's sign-in \
             permissions: grant admin consent in the app registration"
        }
        "700054" => {
            "the authorization code flow is not enabled for the application: register a Web \
             platform with the redirect URI"
        }
        "70008" | "54005" | "70000" | "50148" | "501481" => {
            "the authorization code is expired, already used or does not match this sign-in: \
             start the sign-in again"
        }
        "50058" | "50126" => "the user did not sign in: start the sign-in again",
        _ => {
            "see the AADSTS code in Microsoft's error reference and the app registration's \
             settings"
        }
    }
}
