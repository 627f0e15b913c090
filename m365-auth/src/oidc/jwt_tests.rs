//! Unit tests of id_token verification: every refusal, header tricks, and proptests.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPrivateKey;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use serde_json::{Value, json};
use url::Url;

use super::*;

/// A predicate on the error a case must produce.
type Check = fn(&AuthError) -> bool;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OTHER_TENANT: &str = "11111111-1111-4111-8111-111111111111";
const CLIENT: &str = "22222222-3333-4444-5555-666666666666";
const OID: &str = "33333333-4444-4555-8666-777777777777";
const NONCE: &str = "n0nce-value-0123456789";
const NOW: i64 = 1_800_000_000;

fn keys() -> &'static (RsaPrivateKey, RsaPrivateKey) {
    static KEYS: OnceLock<(RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand::rngs::OsRng;
        (
            RsaPrivateKey::new(&mut rng, 2048).unwrap(),
            RsaPrivateKey::new(&mut rng, 2048).unwrap(),
        )
    })
}

fn key_set() -> KeySet {
    let (ours, other) = keys();
    KeySet::from_keys([
        ("k1".to_owned(), ours.to_public_key()),
        ("k2".to_owned(), other.to_public_key()),
    ])
}

fn discovery(issuer: &str) -> Discovery {
    let url = Url::parse("https://login.microsoftonline.com/t/x").unwrap();
    Discovery {
        issuer: issuer.to_owned(),
        authorization_endpoint: url.clone(),
        token_endpoint: url.clone(),
        jwks_uri: url,
    }
}

fn fixed_issuer() -> String {
    format!("https://login.microsoftonline.com/{TENANT}/v2.0")
}

fn claims() -> Value {
    json!({
        "aud": CLIENT,
        "iss": fixed_issuer(),
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "exp": NOW + 3540,
        "name": "Adele Vance",
        "oid": OID,
        "preferred_username": "adele@contoso.example",
        "sub": "pairwise-subject",
        "tid": TENANT,
        "nonce": NONCE,
        "ver": "2.0",
    })
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn sign_with(key: &RsaPrivateKey, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", encode(header), encode(claims));
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
    let signature = signer.sign(input.as_bytes()).to_bytes();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn sign(claims: &Value) -> String {
    sign_with(
        &keys().0,
        &json!({"typ": "JWT", "alg": "RS256", "kid": "k1"}),
        claims,
    )
}

fn verify_with(token: &str, issuer: &str) -> Result<IdentityClaims, AuthError> {
    let parsed = parse(token)?;
    check_signature(&parsed, &key_set())?;
    check_claims(
        &parsed,
        &Expected {
            discovery: &discovery(issuer),
            client_id: CLIENT,
            tenant: Uuid::parse_str(TENANT).unwrap(),
            nonce: NONCE,
            now: time_of(NOW),
        },
    )
}

fn verify(token: &str) -> Result<IdentityClaims, AuthError> {
    verify_with(token, &fixed_issuer())
}

fn with(changes: &[(&str, Value)]) -> String {
    let mut c = claims();
    for (name, value) in changes {
        if value.is_null() {
            c.as_object_mut().unwrap().remove(*name);
        } else {
            c[*name] = value.clone();
        }
    }
    sign(&c)
}

#[test]
fn a_good_token_yields_the_identity() {
    let identity = verify(&sign(&claims())).unwrap();
    assert_eq!(identity.tenant_id.to_string(), TENANT);
    assert_eq!(identity.object_id.to_string(), OID);
    assert_eq!(identity.subject, "pairwise-subject");
    assert_eq!(
        identity.preferred_username.as_deref(),
        Some("adele@contoso.example")
    );
    assert_eq!(identity.name.as_deref(), Some("Adele Vance"));
    assert_eq!(identity.issued_at, time_of(NOW - 60));
    assert_eq!(identity.expires_at, time_of(NOW + 3540));
    // Optional claims may be absent; upper-case GUIDs are the same ids.
    let bare = with(&[
        ("name", Value::Null),
        ("preferred_username", Value::Null),
        ("nbf", Value::Null),
        ("oid", json!(OID.to_uppercase())),
        ("aud", json!(CLIENT.to_uppercase())),
    ]);
    let identity = verify(&bare).unwrap();
    assert_eq!(identity.object_id.to_string(), OID);
    assert_eq!(identity.name, None);
}

#[test]
fn a_templated_issuer_takes_the_tokens_tenant() {
    let templated = "https://login.microsoftonline.com/{tenantid}/v2.0";
    verify_with(&sign(&claims()), templated).unwrap();
    // Another tenant's token names its own issuer correctly, and is refused for its tenant.
    let other = with(&[
        ("tid", json!(OTHER_TENANT)),
        (
            "iss",
            json!(format!(
                "https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"
            )),
        ),
    ]);
    assert!(matches!(
        verify_with(&other, templated),
        Err(AuthError::IdTokenTenant { .. })
    ));
}

/// Each claim problem gets its own error.
#[test]
fn every_claim_refusal_is_distinct() {
    let cases: Vec<(Vec<(&str, Value)>, Check)> = vec![
        (vec![("iss", json!("https://sts.windows.net/x/"))], |e| {
            matches!(e, AuthError::IdTokenIssuer { .. })
        }),
        (
            vec![("aud", json!("44444444-3333-4444-5555-666666666666"))],
            |e| matches!(e, AuthError::IdTokenAudience { .. }),
        ),
        (vec![("aud", json!(5))], |e| {
            matches!(e, AuthError::IdTokenAudience { .. })
        }),
        (vec![("aud", json!([CLIENT, "other"]))], |e| {
            matches!(e, AuthError::IdTokenAudience { .. })
        }),
        (vec![("aud", Value::Null)], |e| {
            matches!(e, AuthError::IdTokenMalformed { .. })
        }),
        (vec![("tid", json!(OTHER_TENANT))], |e| {
            matches!(e, AuthError::IdTokenTenant { .. })
        }),
        (vec![("tid", json!("contoso.example"))], |e| {
            matches!(e, AuthError::IdTokenTenant { .. })
        }),
        (vec![("exp", json!(NOW - 301))], |e| {
            matches!(e, AuthError::IdTokenExpired { .. })
        }),
        (vec![("exp", json!("tomorrow"))], |e| {
            matches!(e, AuthError::IdTokenMalformed { .. })
        }),
        (vec![("exp", Value::Null)], |e| {
            matches!(e, AuthError::IdTokenMalformed { .. })
        }),
        (vec![("nbf", json!(NOW + 301))], |e| {
            matches!(e, AuthError::IdTokenNotYetValid { claim: "nbf", .. })
        }),
        (vec![("iat", json!(NOW + 301))], |e| {
            matches!(e, AuthError::IdTokenNotYetValid { claim: "iat", .. })
        }),
        (vec![("nonce", json!("another"))], |e| {
            matches!(e, AuthError::IdTokenNonce)
        }),
        (vec![("nonce", Value::Null)], |e| {
            matches!(e, AuthError::IdTokenNonce)
        }),
        (vec![("nonce", json!(NONCE.to_uppercase()))], |e| {
            matches!(e, AuthError::IdTokenNonce)
        }),
        (
            vec![("oid", Value::Null)],
            |e| matches!(e, AuthError::IdTokenMalformed { reason } if reason.contains("oid")),
        ),
        (
            vec![("oid", json!("not-a-guid"))],
            |e| matches!(e, AuthError::IdTokenMalformed { reason } if reason.contains("oid")),
        ),
        (
            vec![("oid", json!(OID.replace('-', "")))],
            |e| matches!(e, AuthError::IdTokenMalformed { reason } if reason.contains("oid")),
        ),
        (
            vec![("sub", Value::Null)],
            |e| matches!(e, AuthError::IdTokenMalformed { reason } if reason.contains("sub")),
        ),
    ];
    for (changes, expected) in cases {
        let err = verify(&with(&changes)).unwrap_err();
        assert!(expected(&err), "{changes:?}: {err:?}");
    }
}

#[test]
fn clock_skew_is_five_minutes_each_way() {
    verify(&with(&[("exp", json!(NOW - 299))])).unwrap();
    verify(&with(&[
        ("nbf", json!(NOW + 299)),
        ("iat", json!(NOW + 299)),
    ]))
    .unwrap();
    // Fractional NumericDates are accepted.
    verify(&with(&[("exp", json!(NOW as f64 + 0.5))])).unwrap();
}

#[test]
fn several_audiences_need_azp() {
    verify(&with(&[("aud", json!([CLIENT]))])).unwrap();
    verify(&with(&[
        ("aud", json!(["other", CLIENT])),
        ("azp", json!(CLIENT)),
    ]))
    .unwrap();
    assert!(matches!(
        verify(&with(&[
            ("aud", json!(["other", CLIENT])),
            ("azp", json!("other"))
        ])),
        Err(AuthError::IdTokenAudience { .. })
    ));
}

#[test]
fn header_tricks_are_refused() {
    let (ours, other) = keys();
    let c = claims();
    let payload = encode(&c);

    // alg none with an empty or any signature.
    let none_header = encode(&json!({"alg": "none", "kid": "k1"}));
    for token in [
        format!("{none_header}.{payload}."),
        format!("{none_header}.{payload}.AAAA"),
    ] {
        let err = verify(&token).unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::IdTokenAlgorithm { .. } | AuthError::IdTokenMalformed { .. }
            ),
            "{err:?}"
        );
    }
    assert!(matches!(
        verify(&format!("{none_header}.{payload}.AAAA")),
        Err(AuthError::IdTokenAlgorithm { ref alg }) if alg == "none"
    ));

    // HS256 with the public key (as PEM and as DER) as the HMAC secret.
    use rsa::pkcs8::EncodePublicKey as _;
    let public_pem = ours
        .to_public_key()
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();
    let hs_header = encode(&json!({"alg": "HS256", "kid": "k1"}));
    let input = format!("{hs_header}.{payload}");
    let mac = hmac_sha256(public_pem.as_bytes(), input.as_bytes());
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac));
    assert!(matches!(
        verify(&token),
        Err(AuthError::IdTokenAlgorithm { ref alg }) if alg == "HS256"
    ));

    // Lower-case, PS256, ES256 and a non-string alg.
    for alg in [
        json!("rs256"),
        json!("PS256"),
        json!("ES256"),
        json!(["RS256"]),
        Value::Null,
    ] {
        let mut header = json!({"kid": "k1"});
        if !alg.is_null() {
            header["alg"] = alg.clone();
        }
        let token = sign_with(ours, &header, &c);
        assert!(
            matches!(verify(&token), Err(AuthError::IdTokenAlgorithm { .. })),
            "{alg}"
        );
    }

    // Missing kid, a kid nobody published, a non-string kid.
    for header in [
        json!({"alg": "RS256"}),
        json!({"alg": "RS256", "kid": 7}),
        json!({"alg": "RS256", "kid": ""}),
    ] {
        assert!(matches!(
            verify(&sign_with(ours, &header, &c)),
            Err(AuthError::IdTokenUnknownKey { kid: None })
        ));
    }
    assert!(matches!(
        verify(&sign_with(ours, &json!({"alg": "RS256", "kid": "k9"}), &c)),
        Err(AuthError::IdTokenUnknownKey { kid: Some(ref k) }) if k == "k9"
    ));

    // The kid of the other key, signed with ours; signed by the other key with our kid.
    for token in [
        sign_with(ours, &json!({"alg": "RS256", "kid": "k2"}), &c),
        sign_with(other, &json!({"alg": "RS256", "kid": "k1"}), &c),
    ] {
        assert!(matches!(
            verify(&token),
            Err(AuthError::IdTokenSignature { .. })
        ));
    }

    // Critical extensions are not understood.
    assert!(matches!(
        verify(&sign_with(
            ours,
            &json!({"alg": "RS256", "kid": "k1", "crit": ["exp"]}),
            &c
        )),
        Err(AuthError::IdTokenMalformed { .. })
    ));
    // A header `jwk` naming the attacker's key is ignored: the other key still fails.
    assert!(matches!(
        verify(&sign_with(
            other,
            &json!({"alg": "RS256", "kid": "k1", "jwk": {"kty": "RSA"}, "jku": "https://evil.example/"}),
            &c
        )),
        Err(AuthError::IdTokenSignature { .. })
    ));
}

#[test]
fn tampering_and_shape_tricks_are_refused() {
    let token = sign(&claims());
    let parts: Vec<&str> = token.split('.').collect();

    // Payload changed after signing (a different oid).
    let mut changed = claims();
    changed["oid"] = json!("99999999-4444-4555-8666-777777777777");
    let forged = format!("{}.{}.{}", parts[0], encode(&changed), parts[2]);
    assert!(matches!(
        verify(&forged),
        Err(AuthError::IdTokenSignature { .. })
    ));
    // A signature truncated or of the wrong length.
    let short = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        &parts[2][..parts[2].len() - 4]
    );
    assert!(verify(&short).is_err());

    let malformed = |t: &str| matches!(verify(t), Err(AuthError::IdTokenMalformed { .. }));
    assert!(malformed(&format!("{token}.")));
    assert!(malformed(&format!("{token}.{}", parts[2])));
    assert!(malformed(&format!("{}.{}", parts[0], parts[1])));
    assert!(malformed(&format!("{}..{}", parts[0], parts[2])));
    assert!(malformed(&format!(
        "{}.{}=.{}",
        parts[0], parts[1], parts[2]
    )));
    assert!(malformed(&format!(
        "{}.{}+.{}",
        parts[0], parts[1], parts[2]
    )));
    assert!(malformed(&format!(
        "{}. {}.{}",
        parts[0], parts[1], parts[2]
    )));
    assert!(malformed(&format!(
        "{}.{}.{}/",
        parts[0], parts[1], parts[2]
    )));
    assert!(malformed(""));
    assert!(malformed("..."));
    assert!(malformed(&format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode("[1]"),
        parts[1],
        parts[2]
    )));
    // Non-canonical base64url (trailing bits set) is refused.
    assert!(decode_part("AA", "part").is_ok());
    assert!(decode_part("AB", "part").is_err());
    assert!(decode_part("A", "part").is_err());

    // A huge token is refused before anything is decoded.
    let huge = format!(
        "{}.{}.{}",
        parts[0],
        "A".repeat(MAX_ID_TOKEN_BYTES),
        parts[2]
    );
    assert!(matches!(
        parse(&huge),
        Err(AuthError::IdTokenMalformed { ref reason }) if reason.contains("16 KiB")
    ));
}

#[test]
fn errors_never_quote_the_token() {
    let token = with(&[("nonce", json!("wrong"))]);
    let err = verify(&token).unwrap_err();
    let text = format!("{err} {err:?}");
    for part in token.split('.') {
        assert!(!text.contains(part), "{text}");
    }
}

/// HMAC-SHA256 (RFC 2104), for the HS256 confusion test.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = sha2::Sha256::new()
        .chain_update(&inner_pad)
        .chain_update(message)
        .finalize();
    sha2::Sha256::new()
        .chain_update(&outer_pad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

    /// Arbitrary text never panics and is never accepted.
    #[test]
    fn arbitrary_strings_are_refused(token in ".{0,600}") {
        proptest::prop_assert!(verify(&token).is_err());
    }

    /// Three arbitrary base64url parts: refused, never a panic.
    #[test]
    fn arbitrary_parts_are_refused(a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,200}", c in "[A-Za-z0-9_-]{0,400}") {
        let token = format!("{a}.{b}.{c}");
        proptest::prop_assert!(verify(&token).is_err());
    }

    /// Any single-character change to a good token makes it fail.
    #[test]
    fn any_flipped_character_is_refused(at in 0usize..2000, replacement in proptest::char::range('-', 'z')) {
        let token = sign(&claims());
        let at = at % token.len();
        let original = token.as_bytes()[at] as char;
        proptest::prop_assume!(original != replacement);
        let mut forged = token.clone();
        forged.replace_range(at..=at, &replacement.to_string());
        proptest::prop_assert!(verify(&forged).is_err());
    }

    /// A correctly signed token with arbitrary claim values: refused unless every claim is right.
    #[test]
    fn arbitrary_signed_claims_never_panic(aud in ".{0,40}", nonce in ".{0,40}", exp in proptest::prelude::any::<i64>(), oid in ".{0,40}") {
        let token = with(&[("aud", json!(aud)), ("nonce", json!(nonce)), ("exp", json!(exp)), ("oid", json!(oid))]);
        proptest::prop_assert!(verify(&token).is_err());
    }
}
