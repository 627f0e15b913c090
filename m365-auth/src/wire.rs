//! Token-endpoint wire format: the form we post and the JSON we get back.
//!
//! Responses are read as untyped JSON first and picked apart by hand, so a bad
//! field yields our own message: serde's messages quote offending values, and a
//! value here may be a token. Nothing in this module panics on any input.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;

/// Largest token-endpoint body we read (real ones are a few kilobytes).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Longest access token we accept.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Longest token lifetime we accept (Entra issues 60–90 minutes; 24 h at most).
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(7 * 24 * 3600);

/// The `client_assertion_type` of a certificate credential.
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A token the endpoint granted.
pub struct TokenGrant {
    /// The bearer value.
    pub access_token: SecretString,
    /// `expires_in`: how long it is valid from now.
    pub expires_in: Duration,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Why the token endpoint's answer is not a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFailure {
    /// An OAuth error answer (4xx, usually with an AADSTS code).
    Refused(Refusal),
    /// A server-side failure worth retrying (5xx, 429).
    Server {
        /// HTTP status.
        status: u16,
    },
    /// Something that is neither a token nor an error answer.
    Malformed {
        /// HTTP status.
        status: u16,
        /// What is wrong, never quoting the body.
        reason: String,
    },
}

/// An OAuth error answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// The AADSTS number (from `error_codes`, else from the description).
    pub aadsts: Option<u32>,
    /// The OAuth `error` (e.g. `invalid_client`).
    pub error: String,
    /// First line of `error_description`, without its `AADSTSnnn: ` prefix.
    pub description: String,
    /// `trace_id`, for a support request.
    pub trace_id: Option<String>,
    /// `correlation_id`, for a support request.
    pub correlation_id: Option<String>,
}

impl Refusal {
    /// `AADSTSnnnn`, or the OAuth error when there is no AADSTS code.
    pub fn code(&self) -> String {
        match self.aadsts {
            Some(n) => format!("AADSTS{n}"),
            None if !self.error.is_empty() => self.error.clone(),
            None => format!("HTTP {}", self.status),
        }
    }

    /// Description plus trace and correlation ids, for an error's `detail`.
    pub fn detail(&self) -> String {
        let mut detail = self.description.clone();
        let mut ids = Vec::new();
        if let Some(t) = &self.trace_id {
            ids.push(format!("trace id {t}"));
        }
        if let Some(c) = &self.correlation_id {
            ids.push(format!("correlation id {c}"));
        }
        if !ids.is_empty() {
            if !detail.is_empty() {
                detail.push(' ');
            }
            detail.push('(');
            detail.push_str(&ids.join(", "));
            detail.push(')');
        }
        detail
    }
}

/// Interprets a token-endpoint answer.
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<TokenGrant, TokenFailure> {
    let malformed = |reason: &str| TokenFailure::Malformed {
        status,
        reason: reason.to_owned(),
    };
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(malformed("the answer is too large"));
    }
    let json: Option<Value> = serde_json::from_slice(body).ok();
    match status {
        200 => {
            let Some(Value::Object(map)) = json else {
                return Err(malformed(
                    "the answer to a successful request is not a JSON object",
                ));
            };
            parse_grant(&map).map_err(|reason| malformed(&reason))
        }
        429 | 500..=599 => Err(TokenFailure::Server { status }),
        400..=499 => match json {
            Some(Value::Object(map)) if map.get("error").is_some_and(Value::is_string) => {
                Err(TokenFailure::Refused(parse_refusal(status, &map)))
            }
            _ => Err(malformed(
                "a refusal without an OAuth error body (is the login URL right?)",
            )),
        },
        _ => Err(malformed("unexpected HTTP status")),
    }
}

fn parse_grant(map: &serde_json::Map<String, Value>) -> Result<TokenGrant, String> {
    match map.get("token_type") {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(Value::String(_)) => return Err("`token_type` is not Bearer".into()),
        Some(_) => return Err("`token_type` is not a string".into()),
    }
    let token = match map.get("access_token") {
        Some(Value::String(t)) => t,
        Some(_) => return Err("`access_token` is not a string".into()),
        None => return Err("`access_token` is missing".into()),
    };
    if token.is_empty() {
        return Err("`access_token` is empty".into());
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err("`access_token` is implausibly long".into());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("`access_token` holds characters not allowed in an HTTP header".into());
    }
    let expires_in = match map.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= 1e12)
                .map(|f| f as u64)
        }),
        // Older endpoints (v1, ADFS) send it as a string.
        Some(Value::String(s)) if s.len() <= 20 => s.trim().parse::<u64>().ok(),
        Some(_) => None,
        None => return Err("`expires_in` is missing".into()),
    }
    .ok_or("`expires_in` is not a whole number of seconds")?;
    if expires_in == 0 {
        return Err("`expires_in` is zero".into());
    }
    if expires_in > MAX_EXPIRES_IN.as_secs() {
        return Err("`expires_in` is implausibly large (over 7 days)".into());
    }
    Ok(TokenGrant {
        access_token: SecretString::from(token.clone()),
        expires_in: Duration::from_secs(expires_in),
    })
}

fn parse_refusal(status: u16, map: &serde_json::Map<String, Value>) -> Refusal {
    let text = |key: &str| map.get(key).and_then(Value::as_str).map(clip);
    let description_full = map
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("");
    let first_line = description_full.lines().next().unwrap_or("");
    // Some answers put the trace lines on the same line; they are kept separately.
    let first_line = first_line
        .find(" Trace ID:")
        .map_or(first_line, |cut| &first_line[..cut])
        .trim();
    let from_codes = map
        .get("error_codes")
        .and_then(Value::as_array)
        .and_then(|codes| codes.first())
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok());
    let (from_description, description) = split_aadsts(first_line);
    Refusal {
        status,
        aadsts: from_codes.or(from_description),
        error: text("error").unwrap_or_default(),
        description: clip(description),
        trace_id: text("trace_id"),
        correlation_id: text("correlation_id"),
    }
}

/// `AADSTS7000215: Invalid client secret provided.` → (7000215, `Invalid client secret provided.`)
fn split_aadsts(line: &str) -> (Option<u32>, &str) {
    if let Some(rest) = line.strip_prefix("AADSTS") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            let number = rest[..digits].parse::<u32>().ok();
            let text = rest[digits..].trim_start_matches(':').trim();
            return (number, text);
        }
    }
    (None, line)
}

/// At most 300 characters, control characters removed (the text ends up in logs).
fn clip(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
    if text.chars().count() > 300 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn parses_a_grant() {
        let body = br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0.abc.def"}"#;
        let grant = parse_token_response(200, body).unwrap();
        assert_eq!(grant.access_token.expose_secret(), "eyJ0.abc.def");
        assert_eq!(grant.expires_in, Duration::from_secs(3599));
        assert!(!format!("{grant:?}").contains("eyJ0"));
        let grant =
            parse_token_response(200, br#"{"expires_in":"3600","access_token":"x"}"#).unwrap();
        assert_eq!(grant.expires_in, Duration::from_secs(3600));
    }

    #[test]
    fn parses_a_refusal_with_codes_and_ids() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.\r\nTrace ID: t\r\nCorrelation ID: c\r\nTimestamp: 2024","error_codes":[7000215],"timestamp":"2024","trace_id":"tid","correlation_id":"cid"}"#;
        let Err(TokenFailure::Refused(r)) = parse_token_response(401, body) else {
            panic!("not a refusal")
        };
        assert_eq!(r.aadsts, Some(7000215));
        assert_eq!(r.code(), "AADSTS7000215");
        assert!(r.description.starts_with("Invalid client secret provided."));
        assert!(!r.description.contains("Trace ID"));
        assert_eq!(r.detail().matches("tid").count(), 1);
        // Code only in the description.
        let body = br#"{"error":"invalid_request","error_description":"AADSTS90002: Tenant 'x' not found."}"#;
        let Err(TokenFailure::Refused(r)) = parse_token_response(400, body) else {
            panic!("not a refusal")
        };
        assert_eq!(r.aadsts, Some(90002));
    }

    #[test]
    fn rejects_bad_grants_without_quoting_them() {
        for body in [
            &br#"{"access_token":123,"expires_in":1}"#[..],
            br#"{"access_token":"","expires_in":1}"#,
            br#"{"access_token":"SECRET-TOKEN","expires_in":0}"#,
            br#"{"access_token":"SECRET-TOKEN","expires_in":-5}"#,
            br#"{"access_token":"SECRET-TOKEN","expires_in":1e300}"#,
            br#"{"access_token":"SECRET-TOKEN","expires_in":99999999999999999999999}"#,
            br#"{"access_token":"SECRET-TOKEN","expires_in":"soon"}"#,
            br#"{"access_token":"SECRET-TOKEN"}"#,
            br#"{"access_token":"SECRET TOKEN","expires_in":5}"#,
            br#"{"access_token":"SECRET-TOKEN","expires_in":5,"token_type":"pop"}"#,
            br#"{"access_token":"SECRET-TOKEN","expires_in":5"#,
            br#"["SECRET-TOKEN"]"#,
            b"",
            b"<html>SECRET-TOKEN</html>",
        ] {
            let err = parse_token_response(200, body).unwrap_err();
            assert!(matches!(err, TokenFailure::Malformed { .. }), "{err:?}");
            assert!(!format!("{err:?}").contains("SECRET"), "{err:?}");
        }
    }

    #[test]
    fn classifies_statuses() {
        assert_eq!(
            parse_token_response(503, b"x").unwrap_err(),
            TokenFailure::Server { status: 503 }
        );
        assert_eq!(
            parse_token_response(429, b"{}").unwrap_err(),
            TokenFailure::Server { status: 429 }
        );
        assert!(matches!(
            parse_token_response(404, b"<html>not found</html>").unwrap_err(),
            TokenFailure::Malformed { status: 404, .. }
        ));
        assert!(matches!(
            parse_token_response(302, b"").unwrap_err(),
            TokenFailure::Malformed { status: 302, .. }
        ));
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("access_token".to_owned()),
                        Just("expires_in".to_owned()),
                        Just("token_type".to_owned()),
                        Just("error".to_owned()),
                        Just("error_codes".to_owned()),
                        Just("error_description".to_owned()),
                        Just("trace_id".to_owned()),
                        ".*",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

        /// Arbitrary bytes under any status: an answer, never a panic; only 200 can be a token.
        #[test]
        fn arbitrary_bytes_never_panic(status in 0u16..1000, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let result = parse_token_response(status, &body);
            proptest::prop_assert!(result.is_err() || status == 200);
        }

        /// Arbitrary JSON (wrong types, huge numbers, nested garbage): a token only if
        /// every field is right; otherwise an error that never quotes the body.
        #[test]
        fn arbitrary_json_never_panics(status in proptest::prelude::prop_oneof![proptest::strategy::Just(200u16), 400u16..500, 500u16..600], value in json_value()) {
            let body = serde_json::to_vec(&value).unwrap();
            match parse_token_response(status, &body) {
                Ok(grant) => {
                    proptest::prop_assert_eq!(status, 200);
                    proptest::prop_assert!(grant.expires_in > Duration::ZERO && grant.expires_in <= MAX_EXPIRES_IN);
                    proptest::prop_assert_eq!(Some(grant.access_token.expose_secret()), value["access_token"].as_str());
                }
                Err(TokenFailure::Malformed { reason, .. }) => {
                    if let Some(token) = value.get("access_token").and_then(Value::as_str).filter(|t| t.len() > 3) {
                        proptest::prop_assert!(!reason.contains(token));
                    }
                }
                Err(TokenFailure::Refused(refusal)) => {
                    proptest::prop_assert!(refusal.description.chars().count() <= 301);
                }
                Err(TokenFailure::Server { status: s }) => proptest::prop_assert!(s == 429 || s >= 500),
            }
        }

        /// Truncations of a valid answer are errors (except the complete one).
        #[test]
        fn truncated_grants_are_errors(cut in 0usize..90) {
            let body = br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0.abc.def"}"#;
            let cut = cut.min(body.len() - 1);
            proptest::prop_assert!(parse_token_response(200, &body[..cut]).is_err());
        }
    }
}
