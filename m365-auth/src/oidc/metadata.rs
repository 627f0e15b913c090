//! The tenant's OpenID Connect metadata: the discovery document
//! (`/{tenant}/v2.0/.well-known/openid-configuration`) and its key set (`jwks_uri`).
//! Both are read as untyped JSON and checked by hand; every endpoint must be https,
//! unless the authority itself is plain http on a loopback address (a local test
//! authority), and then it must be loopback too.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPublicKey;
use rsa::traits::PublicKeyParts as _;
use serde_json::Value;
use url::Url;

/// Smallest RSA modulus accepted for a signing key.
const MIN_KEY_BITS: usize = 2048;
/// Largest RSA modulus accepted (Entra publishes 2048-bit keys).
const MAX_KEY_BITS: usize = 4096;
/// Most keys read from one key set.
const MAX_KEYS: usize = 64;
/// Longest `kid` kept.
pub(crate) const MAX_KID_LEN: usize = 128;

/// Which endpoints the metadata may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndpointPolicy {
    /// https only.
    HttpsOnly,
    /// https, or http to a loopback address (the authority itself is http loopback).
    AllowLoopbackHttp,
}

impl EndpointPolicy {
    /// The policy for an authority root; `None` when it is plain http elsewhere than loopback.
    pub(crate) fn for_authority(authority: &Url) -> Option<EndpointPolicy> {
        match authority.scheme() {
            "https" => Some(EndpointPolicy::HttpsOnly),
            "http" if is_loopback(authority) => Some(EndpointPolicy::AllowLoopbackHttp),
            _ => None,
        }
    }

    /// Whether `url` may be used.
    pub(crate) fn allows(self, url: &Url) -> bool {
        if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return false;
        }
        match url.scheme() {
            "https" => url.host_str().is_some_and(|h| !h.is_empty()),
            "http" => self == EndpointPolicy::AllowLoopbackHttp && is_loopback(url),
            _ => false,
        }
    }
}

/// Whether the URL's host is `localhost` or a loopback address.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// What the discovery document says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Discovery {
    /// `issuer`, possibly templated with `{tenantid}`.
    pub(crate) issuer: String,
    pub(crate) authorization_endpoint: Url,
    pub(crate) token_endpoint: Url,
    pub(crate) jwks_uri: Url,
}

impl Discovery {
    /// The issuer a token of tenant `tid` must name.
    pub(crate) fn issuer_for(&self, tid: &str) -> String {
        self.issuer.replace("{tenantid}", tid)
    }

    /// The tenant's directory id as the issuer names it (`…/{guid}/v2.0`), when it does.
    pub(crate) fn issuer_tenant(&self) -> Option<uuid::Uuid> {
        let url = Url::parse(&self.issuer).ok()?;
        url.path_segments()?
            .find_map(|segment| uuid::Uuid::try_parse(segment).ok())
    }
}

/// Reads a discovery document; the reason never quotes the document.
pub(crate) fn parse_discovery(body: &[u8], policy: EndpointPolicy) -> Result<Discovery, String> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err("the discovery document is not a JSON object".into());
    };
    let url_field = |name: &str| -> Result<Url, String> {
        let text = map
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the discovery document has no `{name}`"))?;
        let url = Url::parse(text)
            .map_err(|_| format!("the discovery document's `{name}` is not a URL"))?;
        if !policy.allows(&url) {
            return Err(format!(
                "the discovery document's `{name}` is not an https URL (http is accepted only \
                 from a loopback test authority)"
            ));
        }
        Ok(url)
    };
    // The issuer may carry the `{tenantid}` template of the multi-tenant documents, which
    // is not a valid URL as it stands: check it with a GUID in its place.
    let issuer = map
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or("the discovery document has no `issuer`")?
        .to_owned();
    let probe = issuer.replace("{tenantid}", "00000000-0000-0000-0000-000000000000");
    match Url::parse(&probe) {
        Ok(url) if policy.allows(&url) => {}
        _ => {
            return Err(
                "the discovery document's `issuer` is not an https URL (http is accepted only \
                 from a loopback test authority)"
                    .into(),
            );
        }
    }
    Ok(Discovery {
        issuer,
        authorization_endpoint: url_field("authorization_endpoint")?,
        token_endpoint: url_field("token_endpoint")?,
        jwks_uri: url_field("jwks_uri")?,
    })
}

/// The signing keys of the tenant, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, RsaPublicKey>,
}

impl KeySet {
    /// A key set of the given `(kid, key)` pairs (for callers that obtained keys elsewhere).
    pub fn from_keys(keys: impl IntoIterator<Item = (String, RsaPublicKey)>) -> KeySet {
        KeySet {
            keys: keys.into_iter().collect(),
        }
    }

    /// The key named `kid`.
    pub fn get(&self, kid: &str) -> Option<&RsaPublicKey> {
        self.keys.get(kid)
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Reads a JWK set. Keys that cannot verify RS256 signatures (other key types, `use`
/// other than `sig`, another `alg`, moduli outside 2048..=4096 bits, no `kid`) are left
/// out; a set with no usable key is an error.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<KeySet, String> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err("the key set is not a JSON object".into());
    };
    let Some(Value::Array(entries)) = map.get("keys") else {
        return Err("the key set has no `keys` array".into());
    };
    let mut keys = HashMap::new();
    for entry in entries.iter().take(MAX_KEYS) {
        if let Some((kid, key)) = usable_key(entry) {
            keys.insert(kid, key);
        }
    }
    if keys.is_empty() {
        return Err("the key set holds no usable RSA signing key".into());
    }
    Ok(KeySet { keys })
}

fn usable_key(entry: &Value) -> Option<(String, RsaPublicKey)> {
    let text = |name: &str| entry.get(name).and_then(Value::as_str);
    if text("kty") != Some("RSA") {
        return None;
    }
    if entry.get("use").is_some() && text("use") != Some("sig") {
        return None;
    }
    if entry.get("alg").is_some() && text("alg") != Some("RS256") {
        return None;
    }
    let kid = text("kid").filter(|k| !k.is_empty() && k.len() <= MAX_KID_LEN)?;
    let n = URL_SAFE_NO_PAD.decode(text("n")?).ok()?;
    let e = URL_SAFE_NO_PAD.decode(text("e")?).ok()?;
    if e.len() > 8 {
        return None;
    }
    let key = RsaPublicKey::new_with_max_size(
        rsa::BigUint::from_bytes_be(&n),
        rsa::BigUint::from_bytes_be(&e),
        MAX_KEY_BITS,
    )
    .ok()?;
    if key.n().bits() < MIN_KEY_BITS {
        return None;
    }
    Some((kid.to_owned(), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn policy_follows_the_authority() {
        let https = EndpointPolicy::for_authority(&url("https://login.microsoftonline.com/"));
        assert_eq!(https, Some(EndpointPolicy::HttpsOnly));
        let local = EndpointPolicy::for_authority(&url("http://127.0.0.1:8080/"));
        assert_eq!(local, Some(EndpointPolicy::AllowLoopbackHttp));
        assert_eq!(
            EndpointPolicy::for_authority(&url("http://login.example/")),
            None
        );
        assert_eq!(
            EndpointPolicy::for_authority(&url("ftp://127.0.0.1/")),
            None
        );

        let strict = EndpointPolicy::HttpsOnly;
        assert!(strict.allows(&url(
            "https://login.microsoftonline.com/t/oauth2/v2.0/token"
        )));
        assert!(!strict.allows(&url("http://127.0.0.1/t/token")));
        assert!(!strict.allows(&url("https://user:pw@login.example/")));
        assert!(!strict.allows(&url("https://login.example/#x")));
        let lax = EndpointPolicy::AllowLoopbackHttp;
        assert!(lax.allows(&url("http://127.0.0.1:9/t")));
        assert!(lax.allows(&url("http://[::1]:9/t")));
        assert!(lax.allows(&url("http://localhost:9/t")));
        assert!(!lax.allows(&url("http://evil.example/t")));
        assert!(!lax.allows(&url("javascript:alert(1)")));
    }

    fn document(token_endpoint: &str) -> Vec<u8> {
        serde_json::json!({
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
            "authorization_endpoint": "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize",
            "token_endpoint": token_endpoint,
            "jwks_uri": "https://login.microsoftonline.com/organizations/discovery/v2.0/keys",
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn discovery_reads_endpoints_and_templated_issuers() {
        let d = parse_discovery(
            &document("https://login.microsoftonline.com/organizations/oauth2/v2.0/token"),
            EndpointPolicy::HttpsOnly,
        )
        .unwrap();
        let tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        assert_eq!(
            d.issuer_for(tid),
            format!("https://login.microsoftonline.com/{tid}/v2.0")
        );
        assert_eq!(d.issuer_tenant(), None);
        let fixed = Discovery {
            issuer: format!("https://login.microsoftonline.com/{tid}/v2.0"),
            ..d.clone()
        };
        assert_eq!(fixed.issuer_tenant().unwrap().to_string(), tid);
        assert_eq!(fixed.issuer_for("other"), fixed.issuer);
    }

    #[test]
    fn discovery_refuses_http_and_gaps() {
        let err = parse_discovery(
            &document("http://login.microsoftonline.com/t/oauth2/v2.0/token"),
            EndpointPolicy::HttpsOnly,
        )
        .unwrap_err();
        assert!(err.contains("token_endpoint"), "{err}");
        for bad in [
            &b"[]"[..],
            b"",
            b"{\"issuer\":\"https://x.example/\"}",
            b"{\"issuer\":\"http://x.example/\",\"authorization_endpoint\":\"https://a.example/\",\"token_endpoint\":\"https://a.example/\",\"jwks_uri\":\"https://a.example/\"}",
            b"{\"issuer\":\"https://x.example/\",\"authorization_endpoint\":\"not a url\",\"token_endpoint\":\"https://a.example/\",\"jwks_uri\":\"https://a.example/\"}",
        ] {
            assert!(parse_discovery(bad, EndpointPolicy::AllowLoopbackHttp).is_err());
        }
    }

    #[test]
    fn jwks_keeps_only_rsa_signing_keys() {
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let public = key.to_public_key();
        let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
        let small = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
        let small_n = URL_SAFE_NO_PAD.encode(small.to_public_key().n().to_bytes_be());
        let body = serde_json::json!({"keys": [
            {"kty": "RSA", "use": "sig", "kid": "good", "n": n, "e": e},
            {"kty": "RSA", "kid": "no-use", "n": n, "e": e},
            {"kty": "RSA", "use": "enc", "kid": "enc", "n": n, "e": e},
            {"kty": "RSA", "alg": "RS512", "kid": "rs512", "n": n, "e": e},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "small", "n": small_n, "e": e},
            {"kty": "RSA", "kid": "padded", "n": format!("{n}=="), "e": e},
            {"kty": "RSA", "n": n, "e": e},
            "garbage",
        ]})
        .to_string();
        let set = parse_jwks(body.as_bytes()).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.get("good"), Some(&public));
        assert!(set.get("no-use").is_some());
        for absent in ["enc", "rs512", "ec", "small", "padded"] {
            assert!(set.get(absent).is_none(), "{absent}");
        }
        assert!(parse_jwks(b"{\"keys\":[]}").is_err());
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"nope").is_err());
    }
}
