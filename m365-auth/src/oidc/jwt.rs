//! id_token verification as pure functions: JWS compact parsing (strict base64url, at
//! most 16 KiB, checked before any other work), the RS256 signature (RSA PKCS#1 v1.5
//! with SHA-256) against the tenant's key set, then the claims. Claims are read only
//! after the signature verified. Errors name what was wrong and never quote the token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use super::metadata::{Discovery, KeySet, MAX_KID_LEN};
use super::pending::unix_seconds;
use crate::AuthError;

/// Longest id_token accepted (Entra's are 1–3 KiB; group overage keeps them small).
pub const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;
/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Longest `name` / `preferred_username` kept (characters).
const MAX_NAME_CHARS: usize = 512;

/// Who signed in, from a verified id_token. Match local users on
/// (`tenant_id`, `object_id`), never on `preferred_username` (mutable, and not verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityClaims {
    /// `tid`: the user's tenant (the configured one).
    pub tenant_id: Uuid,
    /// `oid`: the user's object id in the tenant, stable across apps.
    pub object_id: Uuid,
    /// `sub`: the pairwise subject (per user and application).
    pub subject: String,
    /// `preferred_username`: usually the UPN; for display only.
    pub preferred_username: Option<String>,
    /// `name`: the display name; for display only.
    pub name: Option<String>,
    /// `iat`.
    pub issued_at: SystemTime,
    /// `exp`.
    pub expires_at: SystemTime,
}

/// A token split into its parts, header read, signature bytes decoded.
pub(crate) struct Parsed<'a> {
    /// The header's `kid`.
    pub(crate) kid: String,
    signing_input: &'a str,
    payload: &'a str,
    signature: Vec<u8>,
}

fn malformed(reason: &str) -> AuthError {
    AuthError::IdTokenMalformed {
        reason: reason.to_owned(),
    }
}

/// A value from the token fit for an error message: at most 64 printable ASCII characters.
fn clip(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    if text.chars().count() > 64 {
        out.push('…');
    }
    out
}

/// Strict base64url without padding: only `A-Z a-z 0-9 - _`, canonical trailing bits.
fn decode_part(part: &str, what: &str) -> Result<Vec<u8>, AuthError> {
    if part.is_empty() {
        return Err(malformed(&format!("the {what} is empty")));
    }
    if !part
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(malformed(&format!(
            "the {what} holds characters outside base64url"
        )));
    }
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed(&format!("the {what} is not valid base64url")))
}

fn json_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, AuthError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(malformed(&format!("the {what} is not a JSON object"))),
    }
}

/// Splits a compact JWS and reads its header: RS256 exactly, a `kid`, no `crit`.
pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, AuthError> {
    if token.len() > MAX_ID_TOKEN_BYTES {
        return Err(malformed("it is longer than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("it is not three dot-separated parts"));
    };
    let header_map = json_object(&decode_part(header, "header")?, "header")?;
    // The payload is decoded now only to refuse garbage early; its JSON is read after the
    // signature verified.
    decode_part(payload, "payload")?;
    let signature = decode_part(signature, "signature")?;
    match header_map.get("alg") {
        Some(Value::String(alg)) if alg == "RS256" => {}
        Some(Value::String(alg)) => {
            return Err(AuthError::IdTokenAlgorithm { alg: clip(alg) });
        }
        Some(_) => {
            return Err(AuthError::IdTokenAlgorithm {
                alg: "(not a string)".into(),
            });
        }
        None => {
            return Err(AuthError::IdTokenAlgorithm {
                alg: "(none given)".into(),
            });
        }
    }
    if header_map.contains_key("crit") {
        return Err(malformed("the header lists critical extensions (`crit`)"));
    }
    // `jku`, `jwk`, `x5u` and `x5c` in the header are ignored: keys come only from the
    // tenant's `jwks_uri`.
    let kid = match header_map.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => kid.clone(),
        Some(Value::String(kid)) if !kid.is_empty() => {
            return Err(AuthError::IdTokenUnknownKey {
                kid: Some(clip(kid)),
            });
        }
        _ => return Err(AuthError::IdTokenUnknownKey { kid: None }),
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    Ok(Parsed {
        kid,
        signing_input,
        payload,
        signature,
    })
}

/// Verifies the signature with the key named by `kid`.
pub(crate) fn check_signature(parsed: &Parsed<'_>, keys: &KeySet) -> Result<(), AuthError> {
    let Some(key) = keys.get(&parsed.kid) else {
        return Err(AuthError::IdTokenUnknownKey {
            kid: Some(clip(&parsed.kid)),
        });
    };
    let bad = || AuthError::IdTokenSignature {
        kid: clip(&parsed.kid),
    };
    if parsed.signature.len() != key.size() {
        return Err(bad());
    }
    let signature =
        rsa::pkcs1v15::Signature::try_from(parsed.signature.as_slice()).map_err(|_| bad())?;
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.clone())
        .verify(parsed.signing_input.as_bytes(), &signature)
        .map_err(|_| bad())
}

/// What the claims must say.
pub(crate) struct Expected<'a> {
    pub(crate) discovery: &'a Discovery,
    pub(crate) client_id: &'a str,
    pub(crate) tenant: Uuid,
    pub(crate) nonce: &'a str,
    pub(crate) now: SystemTime,
}

/// A NumericDate: whole or fractional seconds (fractions dropped).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 1e15)
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or_else(|| malformed(&format!("`{name}` is not a plausible time"))),
        Some(_) => Err(malformed(&format!("`{name}` is not a number"))),
    }
}

fn string_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<&'a str, AuthError> {
    match claims.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(malformed(&format!("`{name}` is not a string"))),
        None => Err(malformed(&format!("`{name}` is missing"))),
    }
}

fn optional_text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).map(|s| {
        s.chars()
            .filter(|c| !c.is_control())
            .take(MAX_NAME_CHARS)
            .collect()
    })
}

fn guid_claim(claims: &Map<String, Value>, name: &str) -> Result<Uuid, AuthError> {
    let text = string_claim(claims, name)?;
    // Entra writes GUIDs hyphenated; braces, URNs and the simple form are refused.
    if text.len() != 36 {
        return Err(malformed(&format!("`{name}` is not a GUID")));
    }
    Uuid::try_parse(text).map_err(|_| malformed(&format!("`{name}` is not a GUID")))
}

fn time_of(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH,
    }
}

/// Checks the claims of a token whose signature verified.
pub(crate) fn check_claims(
    parsed: &Parsed<'_>,
    expected: &Expected<'_>,
) -> Result<IdentityClaims, AuthError> {
    let claims = json_object(&decode_part(parsed.payload, "payload")?, "payload")?;
    let tid_text = string_claim(&claims, "tid")?;

    let issuer = string_claim(&claims, "iss")?;
    let expected_issuer = expected.discovery.issuer_for(tid_text);
    if issuer != expected_issuer {
        return Err(AuthError::IdTokenIssuer {
            expected: expected_issuer,
            found: clip(issuer),
        });
    }

    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud.eq_ignore_ascii_case(expected.client_id),
        Some(Value::Array(auds)) => {
            let ours = auds.iter().any(|a| {
                a.as_str()
                    .is_some_and(|a| a.eq_ignore_ascii_case(expected.client_id))
            });
            // With several audiences the authorized party must be this application.
            ours && (auds.len() == 1
                || claims
                    .get("azp")
                    .and_then(Value::as_str)
                    .is_some_and(|azp| azp.eq_ignore_ascii_case(expected.client_id)))
        }
        Some(_) => false,
        None => return Err(malformed("`aud` is missing")),
    };
    if !audience_ok {
        return Err(AuthError::IdTokenAudience {
            expected: expected.client_id.to_owned(),
        });
    }

    let tenant = Uuid::try_parse(tid_text)
        .ok()
        .filter(|_| tid_text.len() == 36)
        .filter(|tid| *tid == expected.tenant);
    let Some(tenant_id) = tenant else {
        return Err(AuthError::IdTokenTenant {
            expected: expected.tenant.hyphenated().to_string(),
            found: clip(tid_text),
        });
    };

    let now = unix_seconds(expected.now);
    let skew = i64::try_from(CLOCK_SKEW.as_secs()).unwrap_or(300);
    let exp = numeric_date(&claims, "exp")?.ok_or_else(|| malformed("`exp` is missing"))?;
    if exp <= now.saturating_sub(skew) {
        return Err(AuthError::IdTokenExpired {
            expired_at: exp,
            now,
        });
    }
    let iat = numeric_date(&claims, "iat")?.ok_or_else(|| malformed("`iat` is missing"))?;
    for (claim, value) in [("nbf", numeric_date(&claims, "nbf")?), ("iat", Some(iat))] {
        if let Some(valid_from) = value
            && valid_from > now.saturating_add(skew)
        {
            return Err(AuthError::IdTokenNotYetValid {
                claim,
                valid_from,
                now,
            });
        }
    }

    let nonce_ok = match claims.get("nonce") {
        Some(Value::String(nonce)) => bool::from(nonce.as_bytes().ct_eq(expected.nonce.as_bytes())),
        _ => false,
    };
    if !nonce_ok {
        return Err(AuthError::IdTokenNonce);
    }

    let object_id = guid_claim(&claims, "oid")?;
    let subject = string_claim(&claims, "sub")?;
    if subject.is_empty() || subject.len() > 256 {
        return Err(malformed("`sub` is empty or implausibly long"));
    }
    Ok(IdentityClaims {
        tenant_id,
        object_id,
        subject: subject.to_owned(),
        preferred_username: optional_text(&claims, "preferred_username"),
        name: optional_text(&claims, "name"),
        issued_at: time_of(iat),
        expires_at: time_of(exp),
    })
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
