//! What every Graph client of the workspace shares: the retry policy (fault backoff
//! with jitter, a separate throttling budget, a cap on `Retry-After`), the one
//! `Retry-After` parser (delay-seconds, fractional accepted, or an HTTP date), the retry
//! loop itself ([`Transport`], [`Exchange`]), per-resource admission control
//! ([`ResourceGate`]), request counting ([`RequestCounters`]), Graph's error body, the
//! API root and paging-link checks, and failure descriptions.
//! Invariant: no wait computed here exceeds the policy's caps.

mod exchange;
mod gate;

pub use exchange::{
    BodyError, Exchange, Fault, GaveUp, Lane, Refusal, RequestCounters, RequestCounts, Transport,
    Verdict, check_length, next_chunk, read_body,
};
pub use gate::{Admission, GateLimits, GateRegistry, ResourceGate};

use std::time::{Duration, SystemTime};

use rand::Rng;
use url::Url;

use crate::AccessToken;

/// Limits and delays of a Graph client's retry loop.
///
/// Two budgets, because the causes differ: *faults* (5xx, resets, truncated bodies,
/// timeouts) back off exponentially with jitter and give up after a few attempts, while
/// *throttling* (429) is the service asking us to wait: we wait what `Retry-After` says
/// (capped) and allow many more rounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request when it fails with 5xx, I/O errors, truncated bodies or
    /// timeouts (the first attempt included).
    pub max_attempts: u32,
    /// How many 429 answers one request may receive before giving up.
    pub max_throttled: u32,
    /// First backoff delay; doubles with each fault.
    pub base_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured; longer values are cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// The mailbox client's limits: 8 attempts, 60 throttled answers, 200 ms doubling
    /// up to 30 s, `Retry-After` up to 5 minutes.
    fn default() -> Self {
        Self {
            max_attempts: 8,
            max_throttled: 60,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1 for the first retry) after a fault:
    /// exponential, with "equal jitter" (half fixed, half random) so that many tasks hit
    /// by the same fault do not come back in lockstep, yet each waits a little.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(20);
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let half = ceiling / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=jitter_ms)
        };
        (half + Duration::from_millis(extra)).min(ceiling)
    }

    /// The wait a `Retry-After` value asks for, capped at [`RetryPolicy::max_retry_after`].
    pub fn retry_after(&self, header: &str, now: SystemTime) -> Option<Duration> {
        parse_retry_after(header, now).map(|d| d.min(self.max_retry_after))
    }

    /// The capped wait the `Retry-After` header of `headers` asks for, if any.
    pub fn retry_after_header(&self, headers: &reqwest::header::HeaderMap) -> Option<Duration> {
        headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| self.retry_after(v, SystemTime::now()))
    }
}

/// Parses a `Retry-After` value: delay-seconds (`120`, fractional accepted) or an HTTP
/// date (`Wed, 21 Oct 2015 07:28:00 GMT`, a date in the past meaning "now").
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Duration::try_from_secs_f64(secs.min(1.0e9)).ok();
        }
        return None;
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Graph's error body `{"error": {"code", "message", "innerError": {"request-id"}}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphError {
    /// Error code, e.g. `ErrorItemNotFound`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// `innerError.request-id`, for support cases.
    pub request_id: Option<String>,
}

#[derive(serde::Deserialize)]
struct ErrorBodyWire {
    error: ErrorDetailWire,
}

#[derive(serde::Deserialize)]
struct ErrorDetailWire {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(rename = "innerError", default)]
    inner_error: Option<InnerErrorWire>,
}

#[derive(serde::Deserialize)]
struct InnerErrorWire {
    #[serde(rename = "request-id", default)]
    request_id: Option<String>,
}

impl GraphError {
    /// A code and message (no request id).
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            request_id: None,
        }
    }

    /// Parses an error body; `None` when the bytes are not a Graph error.
    pub fn parse(bytes: &[u8]) -> Option<GraphError> {
        serde_json::from_slice::<ErrorBodyWire>(bytes)
            .ok()
            .map(|b| Self::from_wire(b.error))
    }

    /// The error inside a JSON value (an inner `$batch` answer's body).
    pub fn from_value(body: &serde_json::Value) -> Option<GraphError> {
        ErrorBodyWire::deserialize_value(body).map(|b| Self::from_wire(b.error))
    }

    fn from_wire(e: ErrorDetailWire) -> Self {
        Self {
            code: e.code,
            message: e.message,
            request_id: e.inner_error.and_then(|i| i.request_id),
        }
    }
}

impl ErrorBodyWire {
    fn deserialize_value(v: &serde_json::Value) -> Option<Self> {
        serde::Deserialize::deserialize(v).ok()
    }
}

/// `{root}/v1.0` from a Graph root given with or without the `/v1.0`; `Err` says what
/// is wrong with `root`.
pub fn api_root(root: &Url) -> Result<Url, String> {
    if root.cannot_be_a_base() || !matches!(root.scheme(), "http" | "https") {
        return Err(format!("{root} is not an http(s) URL"));
    }
    if root.host_str().is_none_or(str::is_empty) {
        return Err(format!("{root} has no host"));
    }
    if root.query().is_some() || root.fragment().is_some() {
        return Err(format!("{root} must not carry a query or fragment"));
    }
    let trimmed = root.path().trim_end_matches('/');
    let path = if trimmed.ends_with("/v1.0") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1.0")
    };
    let mut api = root.clone();
    api.set_path(&path);
    Ok(api)
}

/// A nextLink or deltaLink, checked to point at `api`'s origin (it will carry the bearer
/// token); `Err` says why it is refused.
pub fn check_link(api: &Url, raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("link {raw:?} is not a URL: {e}"))?;
    if url.origin() != api.origin() {
        return Err(format!(
            "a link points to {} instead of {}: refusing to send the token there",
            url.origin().ascii_serialization(),
            api.origin().ascii_serialization()
        ));
    }
    Ok(url)
}

/// An HTTP client following no redirect, for paging links and for requests graph-rs-sdk
/// builds but cannot send (it cannot be given extra trust anchors): trusts the PEM
/// certificates of `extra_ca_pem` besides the system's. `Err` says what is wrong with the
/// PEM text.
pub fn http_client(
    extra_ca_pem: Option<&str>,
    connect_timeout: Duration,
    timeout: Option<Duration>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    if let Some(pem) = extra_ca_pem {
        let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("not a PEM certificate: {e}"))?;
        if certificates.is_empty() {
            return Err("no certificate in the PEM text".into());
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Sends a request graph-rs-sdk built, with `token` as its bearer token.
pub async fn send_with_token<F>(token: &AccessToken, send: F) -> Result<reqwest::Response, String>
where
    F: std::future::Future<Output = Result<reqwest::Response, graph_rs_sdk::GraphFailure>>,
{
    crate::with_request_token(token, send)
        .await
        .map_err(|e| describe_graph_failure(&e))
}

const TLS_HINT: &str =
    " (TLS: if a proxy or private CA signs this endpoint, configure its CA certificate)";

/// A reqwest error with its causes (TLS and connection failures hide there).
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "body failed"
    } else {
        "request failed"
    };
    with_causes(kind.to_owned(), std::error::Error::source(e))
}

/// A graph-rs-sdk failure with its causes (the reqwest error inside, when there is one);
/// never request headers.
pub fn describe_graph_failure(e: &graph_rs_sdk::GraphFailure) -> String {
    if let graph_rs_sdk::GraphFailure::ReqwestError(r) = e {
        return describe_reqwest(r);
    }
    if let graph_rs_sdk::GraphFailure::PreFlightError { message, .. } = e {
        return format!("request could not be built: {message}");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(r) = cause.downcast_ref::<reqwest::Error>() {
            return describe_reqwest(r);
        }
        source = cause.source();
    }
    // Variants print their inner error's Debug form: keep the start of the first line.
    let text = e.to_string();
    let first: String = text
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    let mut described = with_causes(first, std::error::Error::source(e));
    if text.contains("UnknownIssuer") && !described.contains("UnknownIssuer") {
        described.push_str(": invalid peer certificate: UnknownIssuer");
        described.push_str(TLS_HINT);
    }
    described
}

fn with_causes(mut text: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    if (text.contains("certificate") || text.contains("UnknownIssuer")) && !text.contains(TLS_HINT)
    {
        text.push_str(TLS_HINT);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(value: &str, now: SystemTime, expected: Option<Duration>) {
        assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        check("7", now, Some(Duration::from_secs(7)));
        check(" 0 ", now, Some(Duration::ZERO));
        check("0.25", now, Some(Duration::from_millis(250)));
        check("1.5", now, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        check(
            "Wed, 21 Oct 2015 07:28:30 GMT",
            now,
            Some(Duration::from_secs(30)),
        );
        check("Wed, 21 Oct 2015 07:27:00 GMT", now, Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        let now = SystemTime::now();
        for v in ["", "soon", "-3", "NaN", "inf", "12abc"] {
            check(v, now, None);
        }
    }

    #[test]
    fn retry_after_is_capped() {
        let policy = RetryPolicy {
            max_retry_after: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let now = SystemTime::now();
        assert_eq!(
            policy.retry_after("86400", now),
            Some(Duration::from_secs(60))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(3600));
        assert_eq!(
            policy.retry_after(&date, now),
            Some(Duration::from_secs(60))
        );
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "0.5".parse().unwrap());
        assert_eq!(
            policy.retry_after_header(&headers),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            policy.retry_after_header(&reqwest::header::HeaderMap::new()),
            None
        );
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
        for retry in 1..40 {
            let d = policy.backoff(retry);
            let ceiling = (Duration::from_millis(100) * 2u32.pow((retry - 1).min(20)))
                .min(Duration::from_secs(2));
            assert!(d >= ceiling / 2 && d <= ceiling, "retry {retry}: {d:?}");
        }
    }

    #[test]
    fn api_roots_and_links() {
        let root = |r: &str| api_root(&Url::parse(r).unwrap()).map(|u| u.to_string());
        assert_eq!(
            root("https://graph.microsoft.com").unwrap(),
            "https://graph.microsoft.com/v1.0"
        );
        assert_eq!(
            root("http://127.0.0.1:8/v1.0/").unwrap(),
            "http://127.0.0.1:8/v1.0"
        );
        assert_eq!(
            root("http://127.0.0.1:8/p").unwrap(),
            "http://127.0.0.1:8/p/v1.0"
        );
        for bad in ["ftp://x.com", "https://x.com/?a=b", "mailto:a@x.com"] {
            assert!(root(bad).is_err(), "{bad}");
        }
        let api = Url::parse("http://127.0.0.1:9/v1.0").unwrap();
        assert!(check_link(&api, "http://127.0.0.1:9/v1.0/users/delta?$skiptoken=1").is_ok());
        for bad in [
            "http://127.0.0.1:10/v1.0/x",
            "https://127.0.0.1:9/v1.0/x",
            "not a url",
        ] {
            assert!(check_link(&api, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusals_tell_resets_and_transient_faults() {
        use reqwest::StatusCode;
        let refusal = |status: u16, code: &str| {
            Refusal::new(
                StatusCode::from_u16(status).unwrap(),
                Some(GraphError::new(code, "m")),
            )
        };
        for (status, code, reset, transient) in [
            (410, "", true, false),
            (400, "syncStateNotFound", true, false),
            (400, "resyncRequired", true, false),
            (400, "BadRequest", false, false),
            (503, "serviceNotAvailable", false, true),
            (408, "", false, true),
            (429, "TooManyRequests", false, true),
        ] {
            let r = refusal(status, code);
            assert_eq!(
                (r.is_sync_reset(), r.is_transient()),
                (reset, transient),
                "{r}"
            );
        }
        assert_eq!(
            refusal(404, "ErrorItemNotFound").to_string(),
            "HTTP 404 ErrorItemNotFound: m"
        );
        assert_eq!(
            Refusal::new(StatusCode::BAD_GATEWAY, None).to_string(),
            "HTTP 502"
        );
        let inner = serde_json::json!({"error": {"code": "C", "message": "M", "innerError": {"request-id": "r"}}});
        let e = GraphError::from_value(&inner).unwrap();
        assert_eq!((e.code.as_str(), e.request_id.as_deref()), ("C", Some("r")));
        assert!(GraphError::from_value(&serde_json::json!({"id": "x"})).is_none());
        assert!(check_length(Some(10), 10).is_ok());
        assert!(check_length(None, 3).is_ok());
        assert!(matches!(check_length(Some(10), 4), Err(Fault::Body(_))));
    }

    proptest! {
        #[test]
        fn retry_after_never_panics(v in ".*") {
            let _ = parse_retry_after(&v, SystemTime::now());
        }

        #[test]
        fn retry_after_round_trips_seconds(n in 0u64..10_000_000) {
            prop_assert_eq!(parse_retry_after(&n.to_string(), SystemTime::now()), Some(Duration::from_secs(n)));
        }

        #[test]
        fn capped_waits_never_exceed_the_cap(v in ".*", cap in 0u64..1000) {
            let policy = RetryPolicy { max_retry_after: Duration::from_secs(cap), ..RetryPolicy::default() };
            if let Some(wait) = policy.retry_after(&v, SystemTime::now()) {
                prop_assert!(wait <= Duration::from_secs(cap));
            }
        }
    }
}
