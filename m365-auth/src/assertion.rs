//! Signed client assertions (RFC 7523 JWT bearer) for certificate credentials.
//!
//! PS256 with `x5t#S256` by default, RS256 with `x5t` as an option. Each assertion
//! gets a fresh `jti` and a short lifetime; `aud` is the token endpoint URL. The
//! returned JWT is a secret (whoever holds it can get a token for a few minutes).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use secrecy::SecretString;
use serde::Serialize;
use sha2::Sha256;

use crate::{AssertionAlgorithm, AuthError, ClientCertificate};

/// How long a client assertion stays valid after it is signed.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    x5t: Option<&'a str>,
    #[serde(rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    x5t_s256: Option<&'a str>,
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: u64,
    iat: u64,
    exp: u64,
}

/// Signs a client assertion for `client_id` addressed to `token_endpoint`, valid
/// from `now` for [`ASSERTION_LIFETIME`].
pub fn sign_client_assertion(
    certificate: &ClientCertificate,
    client_id: &str,
    token_endpoint: &str,
    now: SystemTime,
) -> Result<SecretString, AuthError> {
    let algorithm = certificate.algorithm();
    let (x5t, x5t_s256) = match algorithm {
        AssertionAlgorithm::Ps256 => (None, Some(certificate.x5t_s256())),
        AssertionAlgorithm::Rs256 => (Some(certificate.x5t()), None),
    };
    let header = Header {
        alg: algorithm.jws_name(),
        typ: "JWT",
        x5t: x5t.as_deref(),
        x5t_s256: x5t_s256.as_deref(),
    };
    let issued = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| AuthError::Signing {
            reason: "the system clock is before 1970".into(),
        })?
        .as_secs();
    let claims = Claims {
        aud: token_endpoint,
        iss: client_id,
        sub: client_id,
        jti: uuid::Uuid::new_v4().hyphenated().to_string(),
        nbf: issued,
        iat: issued,
        exp: issued + ASSERTION_LIFETIME.as_secs(),
    };
    let signing_input = format!("{}.{}", encode_part(&header)?, encode_part(&claims)?);
    let key = certificate.private_key().clone();
    let signature = match algorithm {
        AssertionAlgorithm::Ps256 => {
            let signer = rsa::pss::BlindedSigningKey::<Sha256>::new(key);
            signer
                .try_sign_with_rng(&mut rand::rngs::OsRng, signing_input.as_bytes())
                .map_err(|e| AuthError::Signing {
                    reason: e.to_string(),
                })?
                .to_vec()
        }
        AssertionAlgorithm::Rs256 => {
            let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key);
            signer
                .try_sign(signing_input.as_bytes())
                .map_err(|e| AuthError::Signing {
                    reason: e.to_string(),
                })?
                .to_vec()
        }
    };
    Ok(SecretString::from(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    )))
}

/// base64url(JSON) of one JWT part.
fn encode_part<T: Serialize>(part: &T) -> Result<String, AuthError> {
    let json = serde_json::to_vec(part).map_err(|e| AuthError::Signing {
        reason: e.to_string(),
    })?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::signature::Verifier;
    use secrecy::ExposeSecret;

    pub(crate) fn decode_part(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    fn check(algorithm: AssertionAlgorithm) {
        let cert = crate::test_support::certificate().with_algorithm(algorithm);
        let now = SystemTime::now();
        let endpoint = "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token";
        let jwt = sign_client_assertion(&cert, "cid", endpoint, now).unwrap();
        let parts: Vec<&str> = jwt.expose_secret().split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = decode_part(parts[0]);
        let claims = decode_part(parts[1]);
        assert_eq!(header["alg"], algorithm.jws_name());
        assert_eq!(header["typ"], "JWT");
        match algorithm {
            AssertionAlgorithm::Ps256 => {
                assert_eq!(header["x5t#S256"], cert.x5t_s256());
                assert!(header.get("x5t").is_none());
            }
            AssertionAlgorithm::Rs256 => {
                assert_eq!(header["x5t"], cert.x5t());
                assert!(header.get("x5t#S256").is_none());
            }
        }
        assert_eq!(claims["aud"], endpoint);
        assert_eq!(claims["iss"], "cid");
        assert_eq!(claims["sub"], "cid");
        uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).unwrap();
        let nbf = claims["nbf"].as_u64().unwrap();
        assert_eq!(claims["exp"].as_u64().unwrap() - nbf, 300);

        let message = format!("{}.{}", parts[0], parts[1]);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let public = cert.private_key().to_public_key();
        match algorithm {
            AssertionAlgorithm::Ps256 => {
                let key = rsa::pss::VerifyingKey::<Sha256>::new(public);
                let sig = rsa::pss::Signature::try_from(sig.as_slice()).unwrap();
                key.verify(message.as_bytes(), &sig).unwrap();
            }
            AssertionAlgorithm::Rs256 => {
                let key = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public);
                let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).unwrap();
                key.verify(message.as_bytes(), &sig).unwrap();
                // A tampered message must not verify.
                assert!(key.verify(b"tampered", &sig).is_err());
            }
        }
        // Every assertion is unique.
        let again = sign_client_assertion(&cert, "cid", endpoint, now).unwrap();
        assert_ne!(
            decode_part(again.expose_secret().split('.').nth(1).unwrap())["jti"],
            claims["jti"]
        );
    }

    #[test]
    fn ps256_assertion_verifies() {
        check(AssertionAlgorithm::Ps256);
    }

    #[test]
    fn rs256_assertion_verifies() {
        check(AssertionAlgorithm::Rs256);
    }
}
