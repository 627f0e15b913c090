//! Client assertions as the token endpoint reads them: the JWT's three segments, its JOSE header
//! and its claims, parsed as leniently as Entra ID is on form. NumericDates may be fractional
//! (RFC 7519 §2), thumbprints are base64url with or without `=` padding, `x5c` carries the
//! certificate chain in base64 (RFC 7515 §4.1.6). Whether the assertion is acceptable (key,
//! signature, audience, lifetime) is decided by the caller.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde::Deserialize;

/// An assertion split and decoded; `signing_input` is the text its signature covers.
#[derive(Debug)]
pub(super) struct ParsedAssertion<'a> {
    pub(super) signing_input: &'a str,
    pub(super) header: AssertionHeader,
    pub(super) claims: AssertionClaims,
    pub(super) signature: Vec<u8>,
}

/// Why an assertion cannot even be read (answered as a malformed JWT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Malformed(pub(super) String);

/// JOSE header of a client assertion.
#[derive(Debug, Deserialize)]
pub(super) struct AssertionHeader {
    pub(super) alg: String,
    /// base64url SHA-1 thumbprint of the signing certificate, as sent.
    #[serde(default)]
    pub(super) x5t: Option<String>,
    /// base64url SHA-256 thumbprint of the signing certificate, as sent.
    #[serde(rename = "x5t#S256", default)]
    pub(super) x5t_s256: Option<String>,
    /// The certificate chain, leaf first, each a base64 (not base64url) DER certificate.
    #[serde(default)]
    pub(super) x5c: Option<Vec<String>>,
}

impl AssertionHeader {
    /// The thumbprint to name in error messages: the SHA-256 one if sent, else the SHA-1 one.
    pub(super) fn shown_thumbprint(&self) -> &str {
        self.x5t_s256
            .as_deref()
            .or(self.x5t.as_deref())
            .unwrap_or("")
    }

    /// DER of the `x5c` leaf certificate, if the header carries a chain.
    pub(super) fn x5c_leaf(&self) -> Result<Option<Vec<u8>>, Malformed> {
        let Some(chain) = &self.x5c else {
            return Ok(None);
        };
        let Some(leaf) = chain.first() else {
            return Err(Malformed("the 'x5c' header is an empty array".to_owned()));
        };
        decode_base64(leaf).map(Some).ok_or_else(|| {
            Malformed("the first 'x5c' certificate is not base64-encoded DER".to_owned())
        })
    }
}

/// `aud` may be a string or an array of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// Whether the audience names `wanted`.
    pub(super) fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(one) => one == wanted,
            Audience::Many(many) => many.iter().any(|a| a == wanted),
        }
    }
}

/// An RFC 7519 NumericDate: seconds since the epoch, integer or not.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
#[serde(transparent)]
pub(super) struct NumericDate(pub(super) f64);

impl NumericDate {
    /// Whole seconds since the epoch (rounded down, saturating).
    pub(super) fn whole_secs(self) -> i64 {
        // `as` saturates on out-of-range floats, which is what a display needs.
        #[allow(clippy::cast_possible_truncation)]
        let secs = self.0.floor() as i64;
        secs
    }
}

/// Claims of a client assertion.
#[derive(Debug, Deserialize)]
pub(super) struct AssertionClaims {
    #[serde(default)]
    pub(super) aud: Option<Audience>,
    #[serde(default)]
    pub(super) iss: Option<String>,
    #[serde(default)]
    pub(super) sub: Option<String>,
    #[serde(default)]
    pub(super) jti: Option<String>,
    #[serde(default)]
    pub(super) exp: Option<NumericDate>,
    #[serde(default)]
    pub(super) nbf: Option<NumericDate>,
    #[serde(default)]
    pub(super) iat: Option<NumericDate>,
}

/// Decodes base64url, with or without `=` padding.
pub(super) fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(strip_padding(text)?).ok()
}

/// Decodes standard base64, with or without `=` padding, ignoring line breaks and spaces (an
/// `x5c` entry may be a PEM body as it stood in the file).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD_NO_PAD.decode(strip_padding(&compact)?).ok()
}

/// `text` without its trailing `=` padding; `None` for more than two or padding mid-text.
fn strip_padding(text: &str) -> Option<&str> {
    let stripped = text.trim_end_matches('=');
    (text.len() - stripped.len() <= 2).then_some(stripped)
}

/// Whether a thumbprint as sent (base64url, padded or not) names the digest `expected`.
pub(super) fn thumbprint_matches(sent: &str, expected: &[u8]) -> bool {
    decode_base64url(sent).is_some_and(|bytes| bytes == expected)
}

fn segment<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, Malformed> {
    let json = decode_base64url(text)
        .ok_or_else(|| Malformed(format!("the {what} segment is not base64url")))?;
    serde_json::from_slice(&json).map_err(|e| Malformed(format!("the {what} is not valid: {e}")))
}

/// Splits and decodes a compact JWS client assertion.
pub(super) fn parse(assertion: &str) -> Result<ParsedAssertion<'_>, Malformed> {
    let mut parts = assertion.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed(
            "a JWT has three dot-separated segments".to_owned(),
        ));
    };
    let header: AssertionHeader = segment(header_b64, "header")?;
    let claims: AssertionClaims = segment(claims_b64, "payload")?;
    let signature = decode_base64url(signature_b64)
        .ok_or_else(|| Malformed("the signature segment is not base64url".to_owned()))?;
    Ok(ParsedAssertion {
        signing_input: &assertion[..header_b64.len() + 1 + claims_b64.len()],
        header,
        claims,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    use proptest::prelude::*;

    fn jwt(header: &serde_json::Value, claims: &serde_json::Value) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(b"sig")
        )
    }

    fn check_dates(claims: serde_json::Value, expected: Option<(f64, f64, f64)>) {
        let text = jwt(&serde_json::json!({"alg": "RS256"}), &claims);
        match (parse(&text), expected) {
            (Ok(parsed), Some((exp, nbf, iat))) => {
                assert_eq!(parsed.claims.exp, Some(NumericDate(exp)));
                assert_eq!(parsed.claims.nbf, Some(NumericDate(nbf)));
                assert_eq!(parsed.claims.iat, Some(NumericDate(iat)));
            }
            (Err(_), None) => {}
            (got, wanted) => panic!("{claims}: got {got:?}, wanted {wanted:?}"),
        }
    }

    #[test]
    fn numeric_dates_may_be_integers_or_fractions_but_not_strings() {
        check_dates(
            serde_json::json!({"exp": 1_796_113_869.809_056, "nbf": 1_796_113_269, "iat": 1.5}),
            Some((1_796_113_869.809_056, 1_796_113_269.0, 1.5)),
        );
        check_dates(
            serde_json::json!({"exp": 10, "nbf": 0, "iat": 1e9}),
            Some((10.0, 0.0, 1e9)),
        );
        check_dates(
            serde_json::json!({"exp": "1796113869", "nbf": 0, "iat": 0}),
            None,
        );
        check_dates(serde_json::json!({"exp": true, "nbf": 0, "iat": 0}), None);
    }

    #[test]
    fn whole_seconds_round_down_and_saturate() {
        assert_eq!(
            NumericDate(1_796_113_869.809_056).whole_secs(),
            1_796_113_869
        );
        assert_eq!(NumericDate(-0.5).whole_secs(), -1);
        assert_eq!(NumericDate(1e300).whole_secs(), i64::MAX);
    }

    #[test]
    fn x5c_leaf_is_standard_base64_padded_or_not() {
        let der = [0x30u8, 0x82, 0x01, 0xfe, 0xff];
        let header = |x5c: serde_json::Value| {
            let text = jwt(
                &serde_json::json!({"alg": "PS256", "x5c": x5c}),
                &serde_json::json!({}),
            );
            parse(&text).map(|p| p.header)
        };
        let padded = STANDARD.encode(der);
        assert!(padded.ends_with('='));
        let wrapped = format!("{}\n{}\r\n", &padded[..3], &padded[3..]);
        for sent in [
            padded.clone(),
            padded.trim_end_matches('=').to_owned(),
            wrapped,
        ] {
            let leaf = header(serde_json::json!([sent, "AAAA"]))
                .unwrap()
                .x5c_leaf();
            assert_eq!(leaf, Ok(Some(der.to_vec())));
        }
        assert!(header(serde_json::json!([])).unwrap().x5c_leaf().is_err());
        assert!(
            header(serde_json::json!(["not base64!"]))
                .unwrap()
                .x5c_leaf()
                .is_err()
        );
        assert!(header(serde_json::json!("MIIB")).is_err());
        let none = header(serde_json::Value::Null).unwrap();
        assert_eq!(none.x5c_leaf(), Ok(None));
    }

    #[test]
    fn malformed_assertions_name_the_culprit() {
        for (text, culprit) in [
            ("a.b", "three"),
            ("a.b.c.d", "three"),
            ("!!.e30.c2ln", "header"),
            ("e30.e30.c2ln", "header"),
            ("eyJhbGciOiJSUzI1NiJ9.!!.c2ln", "payload"),
            ("eyJhbGciOiJSUzI1NiJ9.e30.!!", "signature"),
        ] {
            let Err(Malformed(why)) = parse(text) else {
                panic!("{text} parsed");
            };
            assert!(why.contains(culprit), "{text}: {why}");
        }
    }

    proptest! {
        #[test]
        fn thumbprints_match_padded_or_unpadded(digest in proptest::collection::vec(any::<u8>(), 0..64)) {
            let padded = URL_SAFE.encode(&digest);
            let unpadded = URL_SAFE_NO_PAD.encode(&digest);
            prop_assert!(thumbprint_matches(&padded, &digest));
            prop_assert!(thumbprint_matches(&unpadded, &digest));
            let mut other = digest.clone();
            other.push(0);
            prop_assert!(!thumbprint_matches(&padded, &other));
            let overpadded = unpadded + "===";
            prop_assert!(!thumbprint_matches(&overpadded, &digest));
        }

        #[test]
        fn numeric_dates_round_trip(secs in -1e12f64..1e12f64) {
            let text = jwt(&serde_json::json!({"alg": "PS256"}), &serde_json::json!({"exp": secs}));
            let parsed = parse(&text).map_err(|e| TestCaseError::fail(e.0))?;
            // JSON float text round-trips to within an ulp or so.
            let exp = parsed.claims.exp.map_or(f64::NAN, |d| d.0);
            prop_assert!((exp - secs).abs() <= secs.abs() * 1e-12, "{} vs {}", exp, secs);
            prop_assert!(NumericDate(secs).whole_secs() as f64 <= secs);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn arbitrary_headers_never_panic(header in "\\PC{0,120}", claims in "\\PC{0,120}") {
            let text = format!(
                "{}.{}.c2ln",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims)
            );
            if let Ok(parsed) = parse(&text) {
                let _ = parsed.header.x5c_leaf();
            }
        }
    }
}
