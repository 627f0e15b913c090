//! Client credentials: a client secret or a certificate with its private key.
//!
//! Secret material lives in `secrecy` wrappers (or `rsa`'s zeroizing key type) and
//! never shows in `Debug`. Where a secret comes from (a value, an environment
//! variable *name*, a file) is a [`SecretSource`]; this crate never reads the
//! environment itself: the caller resolves variables through a lookup closure.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey};
use secrecy::{ExposeSecret, SecretString};
use sha1::Digest as _;

use crate::AuthError;

/// Where a secret (client secret, private key PEM, PKCS#12 password) comes from.
#[derive(Clone)]
pub enum SecretSource {
    /// The secret itself.
    Value(SecretString),
    /// The *name* of an environment variable, resolved by the caller's lookup.
    EnvVar(String),
    /// A file holding the secret (surrounding whitespace is ignored for secrets).
    File(PathBuf),
}

impl SecretSource {
    /// A source holding the secret value itself.
    pub fn value(secret: impl Into<String>) -> SecretSource {
        SecretSource::Value(SecretString::from(secret.into()))
    }

    /// Where the secret comes from, for messages (`inline value`,
    /// `environment variable NAME`, `file PATH`): never the secret.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Value(_) => "inline value".to_owned(),
            SecretSource::EnvVar(name) => format!("environment variable {name}"),
            SecretSource::File(path) => format!("file {}", path.display()),
        }
    }

    /// Resolves the secret. Environment variables are looked up through `lookup`
    /// (e.g. `|name| std::env::var(name).ok()` in a binary); the crate never reads
    /// the environment on its own. Surrounding whitespace (a trailing newline) is
    /// trimmed; an empty secret is an error.
    pub fn resolve(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SecretString, AuthError> {
        let raw = self.resolve_raw(lookup)?;
        let trimmed = raw.expose_secret().trim();
        if trimmed.is_empty() {
            return Err(AuthError::SecretUnavailable {
                source_name: self.describe(),
                reason: "it is empty".into(),
            });
        }
        if trimmed.len() == raw.expose_secret().len() {
            Ok(raw)
        } else {
            Ok(SecretString::from(trimmed.to_owned()))
        }
    }

    /// Resolves the secret without trimming (for PEM text).
    fn resolve_raw(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SecretString, AuthError> {
        match self {
            SecretSource::Value(secret) => Ok(secret.clone()),
            SecretSource::EnvVar(name) => {
                lookup(name)
                    .map(SecretString::from)
                    .ok_or_else(|| AuthError::SecretUnavailable {
                        source_name: self.describe(),
                        reason: "the variable is not set".into(),
                    })
            }
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(SecretString::from)
                .map_err(|e| AuthError::SecretUnavailable {
                    source_name: self.describe(),
                    reason: e.to_string(),
                }),
        }
    }
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Value(_) => f.write_str("SecretSource::Value([redacted])"),
            SecretSource::EnvVar(name) => write!(f, "SecretSource::EnvVar({name:?})"),
            SecretSource::File(path) => write!(f, "SecretSource::File({path:?})"),
        }
    }
}

/// How a certificate assertion is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AssertionAlgorithm {
    /// RSASSA-PSS with SHA-256, header `x5t#S256` (what Microsoft documents today).
    #[default]
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, header `x5t` (SHA-1 thumbprint; older documentation).
    Rs256,
}

impl AssertionAlgorithm {
    /// The JWS `alg` value.
    pub fn jws_name(self) -> &'static str {
        match self {
            AssertionAlgorithm::Ps256 => "PS256",
            AssertionAlgorithm::Rs256 => "RS256",
        }
    }
}

impl std::str::FromStr for AssertionAlgorithm {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "PS256" => Ok(AssertionAlgorithm::Ps256),
            "RS256" => Ok(AssertionAlgorithm::Rs256),
            _ => Err(AuthError::InvalidRegistration {
                field: "algorithm",
                value: s.to_owned(),
                reason: "expected PS256 or RS256".into(),
            }),
        }
    }
}

/// A certificate (public part, as registered on the app) and its RSA private key.
#[derive(Clone)]
pub struct ClientCertificate {
    certificate_der: Vec<u8>,
    private_key: RsaPrivateKey,
    algorithm: AssertionAlgorithm,
    subject: String,
    not_before: i64,
    not_after: i64,
}

impl ClientCertificate {
    /// From a PEM certificate and a PEM private key (PKCS#8 `PRIVATE KEY` or PKCS#1
    /// `RSA PRIVATE KEY`). The key must belong to the certificate.
    pub fn from_pem(
        certificate_pem: &str,
        private_key_pem: &SecretString,
    ) -> Result<Self, AuthError> {
        Self::from_pem_named(
            certificate_pem,
            "inline certificate PEM",
            private_key_pem,
            "inline private key PEM",
        )
    }

    /// Reads a PEM certificate file and a PEM private key file.
    pub fn from_pem_files(certificate: &Path, private_key: &Path) -> Result<Self, AuthError> {
        let cert =
            std::fs::read_to_string(certificate).map_err(|e| AuthError::InvalidCertificate {
                source_name: format!("file {}", certificate.display()),
                reason: e.to_string(),
            })?;
        let key = SecretSource::File(private_key.to_owned())
            .resolve_raw(&|_| None)
            .map_err(|e| match e {
                AuthError::SecretUnavailable {
                    source_name,
                    reason,
                } => AuthError::InvalidCertificate {
                    source_name,
                    reason,
                },
                other => other,
            })?;
        Self::from_pem_named(
            &cert,
            &format!("file {}", certificate.display()),
            &key,
            &format!("file {}", private_key.display()),
        )
    }

    pub(crate) fn from_pem_named(
        certificate_pem: &str,
        certificate_source: &str,
        private_key_pem: &SecretString,
        key_source: &str,
    ) -> Result<Self, AuthError> {
        let certificate_der = certificate_der_from_pem(certificate_pem, certificate_source)?;
        let private_key = private_key_from_pem(private_key_pem.expose_secret(), key_source)?;
        Self::from_parts(certificate_der, private_key, certificate_source)
    }

    /// From a PKCS#12 (`.pfx`/`.p12`) archive and its password: the first entry
    /// holding a private key and its certificate is used.
    pub fn from_pkcs12(data: &[u8], password: &SecretString) -> Result<Self, AuthError> {
        Self::from_pkcs12_named(data, password, "PKCS#12 data")
    }

    /// Reads a PKCS#12 (`.pfx`/`.p12`) file.
    pub fn from_pkcs12_file(path: &Path, password: &SecretString) -> Result<Self, AuthError> {
        let source = format!("file {}", path.display());
        let data = std::fs::read(path).map_err(|e| AuthError::InvalidCertificate {
            source_name: source.clone(),
            reason: e.to_string(),
        })?;
        Self::from_pkcs12_named(&data, password, &source)
    }

    fn from_pkcs12_named(
        data: &[u8],
        password: &SecretString,
        source: &str,
    ) -> Result<Self, AuthError> {
        let bad = |reason: String| AuthError::InvalidCertificate {
            source_name: source.to_owned(),
            reason,
        };
        // p12-keystore parses attacker-controlled DER: never let a panic escape.
        let parsed = std::panic::catch_unwind(|| {
            p12_keystore::KeyStore::from_pkcs12(data, password.expose_secret())
        })
        .map_err(|_| bad("the PKCS#12 archive is malformed".into()))?;
        let store = parsed.map_err(|e| {
            bad(format!(
                "cannot open the PKCS#12 archive (wrong password or damaged file): {e}"
            ))
        })?;
        let (_, chain) = store
            .private_key_chain()
            .ok_or_else(|| bad("the PKCS#12 archive holds no private key".into()))?;
        let certificate = chain
            .chain()
            .first()
            .ok_or_else(|| bad("the PKCS#12 archive holds no certificate for its key".into()))?;
        let private_key = RsaPrivateKey::from_pkcs8_der(chain.key())
            .map_err(|e| bad(format!("the private key is not an RSA PKCS#8 key: {e}")))?;
        Self::from_parts(certificate.as_der().to_vec(), private_key, source)
    }

    fn from_parts(
        certificate_der: Vec<u8>,
        private_key: RsaPrivateKey,
        source: &str,
    ) -> Result<Self, AuthError> {
        let bad = |reason: String| AuthError::InvalidCertificate {
            source_name: source.to_owned(),
            reason,
        };
        let (_, cert) = x509_parser::parse_x509_certificate(&certificate_der)
            .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
        let modulus = match cert.public_key().parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => BigUint::from_bytes_be(rsa.modulus),
            Ok(_) => {
                return Err(bad(
                    "the certificate's key is not RSA; only RSA certificates are supported".into(),
                ));
            }
            Err(e) => {
                return Err(bad(format!(
                    "the certificate's public key is unreadable: {e}"
                )));
            }
        };
        if &modulus != private_key.n() {
            return Err(bad(
                "the private key does not belong to this certificate (their public keys differ)"
                    .into(),
            ));
        }
        if private_key.size() < 256 {
            return Err(bad(
                "the RSA key is shorter than 2048 bits; Microsoft Entra requires at least 2048"
                    .into(),
            ));
        }
        let subject = cert.subject().to_string();
        let not_before = cert.validity().not_before.timestamp();
        let not_after = cert.validity().not_after.timestamp();
        Ok(ClientCertificate {
            certificate_der,
            private_key,
            algorithm: AssertionAlgorithm::default(),
            subject,
            not_before,
            not_after,
        })
    }

    /// The same certificate signing with `algorithm`.
    pub fn with_algorithm(mut self, algorithm: AssertionAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The assertion signing algorithm.
    pub fn algorithm(&self) -> AssertionAlgorithm {
        self.algorithm
    }

    /// The certificate in DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// SHA-1 thumbprint, upper-case hex, as the Entra portal shows it.
    pub fn thumbprint_sha1_hex(&self) -> String {
        hex_upper(&sha1::Sha1::digest(&self.certificate_der))
    }

    /// `x5t`: base64url of the SHA-1 thumbprint.
    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&self.certificate_der))
    }

    /// `x5t#S256`: base64url of the SHA-256 thumbprint.
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&self.certificate_der))
    }

    /// The certificate's subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Start of validity (Unix seconds).
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// End of validity (Unix seconds).
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    pub(crate) fn private_key(&self) -> &RsaPrivateKey {
        &self.private_key
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("thumbprint", &self.thumbprint_sha1_hex())
            .field("subject", &self.subject)
            .field("algorithm", &self.algorithm)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

/// The credential an app proves its identity with.
#[derive(Clone)]
pub enum ClientCredential {
    /// A client secret.
    Secret(SecretString),
    /// A certificate whose private key signs a client assertion.
    Certificate(Box<ClientCertificate>),
}

impl ClientCredential {
    /// A client-secret credential.
    pub fn secret(secret: impl Into<String>) -> ClientCredential {
        ClientCredential::Secret(SecretString::from(secret.into()))
    }

    /// A certificate credential.
    pub fn certificate(certificate: ClientCertificate) -> ClientCredential {
        ClientCredential::Certificate(Box::new(certificate))
    }

    /// `secret` or `certificate`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientCredential::Secret(_) => "secret",
            ClientCredential::Certificate(_) => "certificate",
        }
    }
}

impl fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientCredential::Secret(_) => f.write_str("ClientCredential::Secret([redacted])"),
            ClientCredential::Certificate(c) => write!(f, "ClientCredential::Certificate({c:?})"),
        }
    }
}

/// Where a certificate credential comes from, before it is loaded.
#[derive(Debug, Clone)]
pub enum CertificateSource {
    /// A PEM certificate file and a private key (PEM text from a value, variable or file).
    Pem {
        /// The certificate file (public part).
        certificate: PathBuf,
        /// The PEM private key.
        private_key: SecretSource,
    },
    /// A PKCS#12 (`.pfx`) file and its password.
    Pkcs12 {
        /// The archive.
        path: PathBuf,
        /// Its password.
        password: SecretSource,
    },
}

/// A credential described by where its material lives; [`CredentialSource::load`]
/// turns it into a [`ClientCredential`].
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// A client secret.
    Secret(SecretSource),
    /// A certificate and the assertion algorithm to sign with.
    Certificate {
        /// Where the certificate and key are.
        source: CertificateSource,
        /// PS256 (default) or RS256.
        algorithm: AssertionAlgorithm,
    },
}

impl CredentialSource {
    /// Loads the credential; environment variables resolve through `lookup`.
    pub fn load(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ClientCredential, AuthError> {
        match self {
            CredentialSource::Secret(source) => {
                Ok(ClientCredential::Secret(source.resolve(lookup)?))
            }
            CredentialSource::Certificate { source, algorithm } => {
                let certificate = match source {
                    CertificateSource::Pem {
                        certificate,
                        private_key,
                    } => {
                        let cert_source = format!("file {}", certificate.display());
                        let cert_pem = std::fs::read_to_string(certificate).map_err(|e| {
                            AuthError::InvalidCertificate {
                                source_name: cert_source.clone(),
                                reason: e.to_string(),
                            }
                        })?;
                        let key = private_key.resolve_raw(lookup)?;
                        ClientCertificate::from_pem_named(
                            &cert_pem,
                            &cert_source,
                            &key,
                            &private_key.describe(),
                        )?
                    }
                    CertificateSource::Pkcs12 { path, password } => {
                        let password = match password.resolve_raw(lookup) {
                            Ok(p) => SecretString::from(
                                p.expose_secret().trim_end_matches(['\r', '\n']).to_owned(),
                            ),
                            Err(e) => return Err(e),
                        };
                        ClientCertificate::from_pkcs12_file(path, &password)?
                    }
                };
                Ok(ClientCredential::certificate(
                    certificate.with_algorithm(*algorithm),
                ))
            }
        }
    }

    /// `secret`, `certificate` or `pkcs12`.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialSource::Secret(_) => "secret",
            CredentialSource::Certificate {
                source: CertificateSource::Pem { .. },
                ..
            } => "certificate",
            CredentialSource::Certificate {
                source: CertificateSource::Pkcs12 { .. },
                ..
            } => "pkcs12",
        }
    }
}

fn certificate_der_from_pem(pem: &str, source: &str) -> Result<Vec<u8>, AuthError> {
    let bad = |reason: String| AuthError::InvalidCertificate {
        source_name: source.to_owned(),
        reason,
    };
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| bad(format!("malformed PEM: {e}")))?;
        if block.label == "CERTIFICATE" {
            return Ok(block.contents);
        }
    }
    Err(bad("no `-----BEGIN CERTIFICATE-----` block found".into()))
}

fn private_key_from_pem(pem: &str, source: &str) -> Result<RsaPrivateKey, AuthError> {
    let bad = |reason: String| AuthError::InvalidCertificate {
        source_name: source.to_owned(),
        reason,
    };
    // Find the key block among possibly several (a combined cert+key file).
    let text = pem.trim();
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(bad(
            "the private key is encrypted; store it unencrypted with 0600 permissions or use a \
             PKCS#12 file with a password"
                .into(),
        ));
    }
    if let Some(block) = pem_block(text, "PRIVATE KEY") {
        return RsaPrivateKey::from_pkcs8_pem(block)
            .map_err(|e| bad(format!("not an RSA PKCS#8 private key: {e}")));
    }
    if let Some(block) = pem_block(text, "RSA PRIVATE KEY") {
        return RsaPrivateKey::from_pkcs1_pem(block)
            .map_err(|e| bad(format!("not a PKCS#1 RSA private key: {e}")));
    }
    Err(bad(
        "no `-----BEGIN PRIVATE KEY-----` or `-----BEGIN RSA PRIVATE KEY-----` block found".into(),
    ))
}

/// The text of the first PEM block labelled `label` (BEGIN to END line, inclusive).
fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    text.get(start..stop)
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{CERT_PEM, KEY_PEM, KEY_PKCS1_PEM, OTHER_KEY_PEM};

    const PFX: &[u8] = include_bytes!("../tests/fixtures/cert.pfx");
    const PFX_LEGACY: &[u8] = include_bytes!("../tests/fixtures/cert-legacy.pfx");

    fn password() -> SecretString {
        SecretString::from("correct-horse")
    }

    #[test]
    fn pkcs8_and_pkcs1_keys_give_the_same_certificate() {
        let a = ClientCertificate::from_pem(CERT_PEM, &SecretString::from(KEY_PEM)).unwrap();
        let b = ClientCertificate::from_pem(CERT_PEM, &SecretString::from(KEY_PKCS1_PEM)).unwrap();
        assert_eq!(a.thumbprint_sha1_hex(), b.thumbprint_sha1_hex());
        assert_eq!(a.thumbprint_sha1_hex().len(), 40);
        assert!(a.subject().contains("m365-auth test certificate"));
        assert!(a.not_after() > a.not_before());
        // A combined file (certificate + key) works for both parts.
        let combined = format!("{CERT_PEM}\n{KEY_PEM}");
        ClientCertificate::from_pem(&combined, &SecretString::from(combined.clone())).unwrap();
    }

    #[test]
    fn pkcs12_modern_and_legacy_load() {
        let pem = ClientCertificate::from_pem(CERT_PEM, &SecretString::from(KEY_PEM)).unwrap();
        for data in [PFX, PFX_LEGACY] {
            let pfx = ClientCertificate::from_pkcs12(data, &password()).unwrap();
            assert_eq!(pfx.x5t_s256(), pem.x5t_s256());
        }
        let err = ClientCertificate::from_pkcs12(PFX, &SecretString::from("wrong")).unwrap_err();
        assert!(err.to_string().contains("wrong password"), "{err}");
        assert!(ClientCertificate::from_pkcs12(b"garbage", &password()).is_err());
        assert!(ClientCertificate::from_pkcs12(&PFX[..PFX.len() / 2], &password()).is_err());
    }

    #[test]
    fn mismatched_or_broken_material_is_refused() {
        let err =
            ClientCertificate::from_pem(CERT_PEM, &SecretString::from(OTHER_KEY_PEM)).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        assert!(ClientCertificate::from_pem("nothing", &SecretString::from(KEY_PEM)).is_err());
        assert!(ClientCertificate::from_pem(CERT_PEM, &SecretString::from("nothing")).is_err());
        let truncated = &KEY_PEM[..KEY_PEM.len() / 2];
        let err = ClientCertificate::from_pem(
            CERT_PEM,
            &SecretString::from(format!("{truncated}\n-----END PRIVATE KEY-----")),
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::InvalidCertificate { .. }));
        let err = ClientCertificate::from_pem(
            CERT_PEM,
            &SecretString::from(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----",
            ),
        )
        .unwrap_err();
        assert!(err.to_string().contains("encrypted"));
    }

    #[test]
    fn debug_never_shows_key_material() {
        let cert = crate::test_support::certificate();
        let text = format!("{:?}", ClientCredential::certificate(cert));
        assert!(text.contains("redacted"));
        assert!(!text.contains("MII"));
        let text = format!("{:?}", ClientCredential::secret("hunter2-secret"));
        assert!(!text.contains("hunter2"));
        let text = format!("{:?}", SecretSource::value("hunter2-secret"));
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn secret_sources_resolve_through_the_lookup_only() {
        let lookup = |name: &str| (name == "ARCHIVER_SECRET").then(|| "from-env\n".to_owned());
        let env = SecretSource::EnvVar("ARCHIVER_SECRET".into());
        assert_eq!(env.resolve(&lookup).unwrap().expose_secret(), "from-env");
        let missing = SecretSource::EnvVar("PATH".into())
            .resolve(&lookup)
            .unwrap_err();
        assert!(
            missing.to_string().contains("environment variable PATH"),
            "{missing}"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.txt");
        std::fs::write(&path, "  from-file \n").unwrap();
        let file = SecretSource::File(path.clone());
        assert_eq!(file.resolve(&lookup).unwrap().expose_secret(), "from-file");
        std::fs::write(&path, "\n").unwrap();
        assert!(
            file.resolve(&lookup)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let absent = SecretSource::File(dir.path().join("absent"))
            .resolve(&lookup)
            .unwrap_err();
        assert!(absent.to_string().contains("absent"));
    }

    #[test]
    fn credential_sources_load_files() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let pfx = dir.path().join("cert.pfx");
        std::fs::write(&cert, CERT_PEM).unwrap();
        std::fs::write(&key, KEY_PEM).unwrap();
        std::fs::write(&pfx, PFX).unwrap();
        let none = |_: &str| None;
        let pem = CredentialSource::Certificate {
            source: CertificateSource::Pem {
                certificate: cert,
                private_key: SecretSource::File(key),
            },
            algorithm: AssertionAlgorithm::Rs256,
        };
        match pem.load(&none).unwrap() {
            ClientCredential::Certificate(c) => {
                assert_eq!(c.algorithm(), AssertionAlgorithm::Rs256)
            }
            other => panic!("{other:?}"),
        }
        let p12 = CredentialSource::Certificate {
            source: CertificateSource::Pkcs12 {
                path: pfx,
                password: SecretSource::value("correct-horse"),
            },
            algorithm: AssertionAlgorithm::Ps256,
        };
        assert_eq!(p12.kind(), "pkcs12");
        assert_eq!(p12.load(&none).unwrap().kind(), "certificate");
    }
}
