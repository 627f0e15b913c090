//! RSA keys with self-signed certificates derived from the seed (ChaCha20 seeded RNG): the app
//! registration's certificate credential and the tenant's token-signing key. Generating a 2048-bit
//! key is costly, so each is made once per seed and process and shared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rand::SeedableRng as _;
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
use sha1::Digest as _;

use crate::EmulatorError;

/// A key pair and its certificate.
pub(super) struct AppCredential {
    pub(super) certificate_pem: String,
    pub(super) private_key_pem: String,
    pub(super) private_key: rsa::RsaPrivateKey,
    pub(super) public_key: rsa::RsaPublicKey,
    /// The certificate's DER (what an `x5c` leaf must be).
    pub(super) der: Vec<u8>,
    /// SHA-1 of the certificate DER (what `x5t` names).
    pub(super) sha1: Vec<u8>,
    /// SHA-256 of the certificate DER (what `x5t#S256` names).
    pub(super) sha256: Vec<u8>,
}

/// What a cached key is for: one cache entry per purpose and seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Purpose {
    App,
    TokenSigning,
}

type Cache = Mutex<HashMap<(Purpose, u64), Arc<AppCredential>>>;

fn credential_cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn cached(
    purpose: Purpose,
    seed: u64,
    make: impl FnOnce() -> Result<AppCredential, EmulatorError>,
) -> Result<Arc<AppCredential>, EmulatorError> {
    let mut cache = credential_cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(found) = cache.get(&(purpose, seed)) {
        return Ok(Arc::clone(found));
    }
    let credential = Arc::new(make()?);
    cache.insert((purpose, seed), Arc::clone(&credential));
    Ok(credential)
}

/// The app registration's certificate credential of a seed.
pub(super) fn app_credential(
    seed: u64,
    client_id: &str,
) -> Result<Arc<AppCredential>, EmulatorError> {
    cached(Purpose::App, seed, || {
        generate(
            seed ^ 0x6170_702d_6365_7274,
            seed,
            &format!("m365-archiver app {client_id}"),
        )
    })
}

/// The tenant's token-signing key of a seed (what `jwks_uri` publishes).
pub(super) fn signing_credential(seed: u64) -> Result<Arc<AppCredential>, EmulatorError> {
    cached(Purpose::TokenSigning, seed, || {
        generate(
            seed ^ 0x6964_2d74_6f6b_656e,
            seed.rotate_left(17),
            "m365-emulator token signing",
        )
    })
}

fn generate(rng_seed: u64, serial: u64, common_name: &str) -> Result<AppCredential, EmulatorError> {
    let fail =
        |what: &str, e: &dyn std::fmt::Display| EmulatorError::Credentials(format!("{what}: {e}"));
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(rng_seed);
    let private_key =
        rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| fail("RSA key generation", &e))?;
    let public_key = rsa::RsaPublicKey::from(&private_key);
    let pkcs8 = private_key
        .to_pkcs8_der()
        .map_err(|e| fail("PKCS#8 encoding", &e))?;
    let private_key_pem = private_key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| fail("PKCS#8 PEM encoding", &e))?
        .to_string();
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .map_err(|e| fail("certificate key", &e))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    let mut serial = serial.to_be_bytes().to_vec();
    serial.insert(0, 0x01);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let certificate = params
        .self_signed(&key_pair)
        .map_err(|e| fail("certificate", &e))?;
    let der: &[u8] = certificate.der();
    Ok(AppCredential {
        certificate_pem: certificate.pem(),
        private_key_pem,
        private_key,
        public_key,
        der: der.to_vec(),
        sha1: sha1::Sha1::digest(der).to_vec(),
        sha256: sha2::Sha256::digest(der).to_vec(),
    })
}
