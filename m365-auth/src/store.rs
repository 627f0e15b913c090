//! `CredentialStore`: named app credentials kept on disk, one TOML file each.
//!
//! The directory is created `0700` and files `0600` (written to a temporary file,
//! fsynced, then renamed). A secret is either stored inline or as a reference to an
//! environment variable or a file; listing never shows a secret.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::{
    AppRegistration, AssertionAlgorithm, AuthError, CertificateSource, ClientCredentialsProvider,
    ClientId, Cloud, CredentialSource, ProviderOptions, SecretSource, TenantId,
};

/// A named credential as kept in the store.
#[derive(Debug, Clone)]
pub struct StoredCredential {
    /// Its name (`[A-Za-z0-9._-]`, at most 64 characters).
    pub name: String,
    /// The tenant.
    pub tenant: TenantId,
    /// The application (client) id.
    pub client_id: ClientId,
    /// The cloud.
    pub cloud: Cloud,
    /// Where the secret or certificate is.
    pub credential: CredentialSource,
    /// Extra CA bundle (PEM file) trusted for the token endpoint.
    pub ca_file: Option<PathBuf>,
    /// A scope other than the cloud's Graph `.default`.
    pub scope: Option<String>,
}

impl StoredCredential {
    /// Loads the credential material and builds the registration; environment
    /// variables resolve through `lookup`.
    pub fn registration(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AppRegistration, AuthError> {
        Ok(AppRegistration {
            tenant: self.tenant.clone(),
            client_id: self.client_id,
            credential: self.credential.load(lookup)?,
            cloud: self.cloud.clone(),
        })
    }

    /// A provider for this credential: `base` plus its CA bundle and scope.
    pub fn provider(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
        base: ProviderOptions,
    ) -> Result<ClientCredentialsProvider, AuthError> {
        let mut options = base;
        if let Some(ca) = &self.ca_file {
            options.extra_ca_pem =
                Some(
                    std::fs::read_to_string(ca).map_err(|e| AuthError::InvalidOption {
                        option: "CA bundle",
                        reason: format!("cannot read {}: {e}", ca.display()),
                    })?,
                );
        }
        if self.scope.is_some() {
            options.scope.clone_from(&self.scope);
        }
        ClientCredentialsProvider::new(self.registration(lookup)?, options)
    }

    /// What `credentials list` shows: never a secret.
    pub fn summary(&self) -> CredentialSummary {
        let (login_url, graph_url) = match &self.cloud {
            Cloud::Custom {
                login_url,
                graph_url,
            } => (Some(login_url.to_string()), Some(graph_url.to_string())),
            _ => (None, None),
        };
        let secret_storage = match &self.credential {
            CredentialSource::Secret(s) => storage_of(s),
            CredentialSource::Certificate {
                source: CertificateSource::Pem { private_key, .. },
                ..
            } => storage_of(private_key),
            CredentialSource::Certificate {
                source: CertificateSource::Pkcs12 { password, .. },
                ..
            } => storage_of(password),
        };
        CredentialSummary {
            name: self.name.clone(),
            tenant: self.tenant.to_string(),
            client_id: self.client_id.to_string(),
            kind: self.credential.kind().to_owned(),
            secret_storage,
            cloud: self.cloud.name().to_owned(),
            login_url,
            graph_url,
            problem: None,
        }
    }
}

fn storage_of(source: &SecretSource) -> String {
    match source {
        SecretSource::Value(_) => "inline".to_owned(),
        SecretSource::EnvVar(name) => format!("env:{name}"),
        SecretSource::File(path) => format!("file:{}", path.display()),
    }
}

/// One line of `credentials list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialSummary {
    /// The credential's name.
    pub name: String,
    /// The tenant.
    pub tenant: String,
    /// The application (client) id.
    pub client_id: String,
    /// `secret`, `certificate` or `pkcs12` (`unknown` for an unreadable file).
    pub kind: String,
    /// Where the secret lives: `inline`, `env:VAR` or `file:PATH`.
    pub secret_storage: String,
    /// `global`, `usgov`, `usgov-dod`, `china` or `custom`.
    pub cloud: String,
    /// The custom cloud's login URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_url: Option<String>,
    /// The custom cloud's Graph URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_url: Option<String>,
    /// Why the file could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A directory of credential files.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    dir: PathBuf,
}

impl CredentialStore {
    /// Opens (creating, mode `0700`) the store directory `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<CredentialStore, AuthError> {
        let dir = dir.into();
        let store_err = |e: std::io::Error| AuthError::Store {
            path: dir.clone(),
            reason: e.to_string(),
        };
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(store_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&dir)
                .map_err(store_err)?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(store_err)?;
            }
        }
        Ok(CredentialStore { dir })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of credential `name`.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, AuthError> {
        validate_name(name)?;
        Ok(self.dir.join(format!("{name}.toml")))
    }

    /// Stores a new credential; fails if the name is taken.
    pub fn add(&self, credential: &StoredCredential) -> Result<PathBuf, AuthError> {
        let path = self.path_of(&credential.name)?;
        if path.exists() {
            return Err(AuthError::CredentialExists {
                name: credential.name.clone(),
            });
        }
        self.write(&path, credential)?;
        Ok(path)
    }

    /// Stores a credential, replacing any of the same name.
    pub fn replace(&self, credential: &StoredCredential) -> Result<PathBuf, AuthError> {
        let path = self.path_of(&credential.name)?;
        self.write(&path, credential)?;
        Ok(path)
    }

    /// Reads credential `name`.
    pub fn get(&self, name: &str) -> Result<StoredCredential, AuthError> {
        let path = self.path_of(name)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AuthError::CredentialNotFound {
                    name: name.to_owned(),
                });
            }
            Err(e) => {
                return Err(AuthError::Store {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        from_file_text(&text, name, &path)
    }

    /// All stored credentials, sorted by name; an unreadable file is listed with its problem.
    pub fn list(&self) -> Result<Vec<CredentialSummary>, AuthError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| AuthError::Store {
            path: self.dir.clone(),
            reason: e.to_string(),
        })?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| AuthError::Store {
                path: self.dir.clone(),
                reason: e.to_string(),
            })?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".toml")) else {
                continue;
            };
            if validate_name(name).is_err() {
                continue;
            }
            out.push(match self.get(name) {
                Ok(credential) => credential.summary(),
                Err(e) => CredentialSummary {
                    name: name.to_owned(),
                    tenant: String::new(),
                    client_id: String::new(),
                    kind: "unknown".into(),
                    secret_storage: String::new(),
                    cloud: String::new(),
                    login_url: None,
                    graph_url: None,
                    problem: Some(e.to_string()),
                },
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes credential `name`.
    pub fn remove(&self, name: &str) -> Result<(), AuthError> {
        let path = self.path_of(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(AuthError::CredentialNotFound {
                    name: name.to_owned(),
                })
            }
            Err(e) => Err(AuthError::Store {
                path,
                reason: e.to_string(),
            }),
        }
    }

    fn write(&self, path: &Path, credential: &StoredCredential) -> Result<(), AuthError> {
        let text = SecretString::from(to_file_text(credential)?);
        let tmp = self.dir.join(format!(".{}.toml.tmp", credential.name));
        let io_err = |p: &Path, e: std::io::Error| AuthError::Store {
            path: p.to_owned(),
            reason: e.to_string(),
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(|e| io_err(&tmp, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io_err(&tmp, e))?;
        }
        file.write_all(text.expose_secret().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io_err(&tmp, e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            // Make the rename durable; not all platforms can fsync a directory.
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

fn validate_name(name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidRegistration {
            field: "name",
            value: name.to_owned(),
            reason: "a credential name is 1 to 64 letters, digits, `.`, `_` or `-`, not \
                     starting with `.` or `-`"
                .into(),
        })
    }
}

// ---- file format ----

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFile {
    name: String,
    tenant: String,
    client_id: String,
    cloud: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    login_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    graph_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    credential: CredentialEntry,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum CredentialEntry {
    Secret {
        secret: SecretEntry,
    },
    Certificate {
        certificate_file: PathBuf,
        private_key: SecretEntry,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        algorithm: Option<String>,
    },
    Pkcs12 {
        pkcs12_file: PathBuf,
        password: SecretEntry,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        algorithm: Option<String>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SecretEntry {
    Value(String),
    EnvVar(String),
    File(PathBuf),
}

impl From<&SecretSource> for SecretEntry {
    fn from(source: &SecretSource) -> Self {
        match source {
            SecretSource::Value(v) => SecretEntry::Value(v.expose_secret().to_owned()),
            SecretSource::EnvVar(n) => SecretEntry::EnvVar(n.clone()),
            SecretSource::File(p) => SecretEntry::File(p.clone()),
        }
    }
}

impl From<SecretEntry> for SecretSource {
    fn from(entry: SecretEntry) -> Self {
        match entry {
            SecretEntry::Value(v) => SecretSource::Value(SecretString::from(v)),
            SecretEntry::EnvVar(n) => SecretSource::EnvVar(n),
            SecretEntry::File(p) => SecretSource::File(p),
        }
    }
}

fn algorithm_name(algorithm: AssertionAlgorithm) -> Option<String> {
    match algorithm {
        AssertionAlgorithm::Ps256 => None,
        other => Some(other.jws_name().to_owned()),
    }
}

fn to_file_text(credential: &StoredCredential) -> Result<String, AuthError> {
    validate_name(&credential.name)?;
    let (login_url, graph_url) = match &credential.cloud {
        Cloud::Custom {
            login_url,
            graph_url,
        } => (Some(login_url.to_string()), Some(graph_url.to_string())),
        _ => (None, None),
    };
    let entry = match &credential.credential {
        CredentialSource::Secret(s) => CredentialEntry::Secret { secret: s.into() },
        CredentialSource::Certificate {
            source:
                CertificateSource::Pem {
                    certificate,
                    private_key,
                },
            algorithm,
        } => CredentialEntry::Certificate {
            certificate_file: certificate.clone(),
            private_key: private_key.into(),
            algorithm: algorithm_name(*algorithm),
        },
        CredentialSource::Certificate {
            source: CertificateSource::Pkcs12 { path, password },
            algorithm,
        } => CredentialEntry::Pkcs12 {
            pkcs12_file: path.clone(),
            password: password.into(),
            algorithm: algorithm_name(*algorithm),
        },
    };
    let file = CredentialFile {
        name: credential.name.clone(),
        tenant: credential.tenant.to_string(),
        client_id: credential.client_id.to_string(),
        cloud: credential.cloud.name().to_owned(),
        login_url,
        graph_url,
        ca_file: credential.ca_file.clone(),
        scope: credential.scope.clone(),
        credential: entry,
    };
    // Serialisation errors never quote values; no secret can leak through them.
    toml::to_string(&file).map_err(|e| AuthError::Store {
        path: PathBuf::from(format!("{}.toml", credential.name)),
        reason: format!("cannot serialise the credential: {e}"),
    })
}

fn from_file_text(text: &str, name: &str, path: &Path) -> Result<StoredCredential, AuthError> {
    let file: CredentialFile = toml::from_str(text).map_err(|e| AuthError::Store {
        path: path.to_owned(),
        // toml's message quotes the offending line, which may hold an inline secret.
        reason: format!("not a valid credential file: {}", e.message()),
    })?;
    if file.name != name {
        return Err(AuthError::Store {
            path: path.to_owned(),
            reason: format!("the file names credential `{}`, not `{name}`", file.name),
        });
    }
    let parse_algorithm = |a: Option<String>| -> Result<AssertionAlgorithm, AuthError> {
        a.map_or(Ok(AssertionAlgorithm::Ps256), |a| a.parse())
    };
    let credential = match file.credential {
        CredentialEntry::Secret { secret } => CredentialSource::Secret(secret.into()),
        CredentialEntry::Certificate {
            certificate_file,
            private_key,
            algorithm,
        } => CredentialSource::Certificate {
            source: CertificateSource::Pem {
                certificate: certificate_file,
                private_key: private_key.into(),
            },
            algorithm: parse_algorithm(algorithm)?,
        },
        CredentialEntry::Pkcs12 {
            pkcs12_file,
            password,
            algorithm,
        } => CredentialSource::Certificate {
            source: CertificateSource::Pkcs12 {
                path: pkcs12_file,
                password: password.into(),
            },
            algorithm: parse_algorithm(algorithm)?,
        },
    };
    let with_path = |e: AuthError| AuthError::Store {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    Ok(StoredCredential {
        name: file.name,
        tenant: file.tenant.parse().map_err(with_path)?,
        client_id: file.client_id.parse().map_err(with_path)?,
        cloud: Cloud::from_name(
            &file.cloud,
            file.login_url.as_deref(),
            file.graph_url.as_deref(),
        )
        .map_err(with_path)?,
        credential,
        ca_file: file.ca_file,
        scope: file.scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_credential(name: &str, secret: SecretSource) -> StoredCredential {
        StoredCredential {
            name: name.to_owned(),
            tenant: "contoso.onmicrosoft.com".parse().unwrap(),
            client_id: "11111111-2222-3333-4444-555555555555".parse().unwrap(),
            cloud: Cloud::Global,
            credential: CredentialSource::Secret(secret),
            ca_file: None,
            scope: None,
        }
    }

    #[test]
    fn round_trips_every_kind_and_never_lists_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path().join("credentials")).unwrap();
        let inline = secret_credential("inline", SecretSource::value("TOP-SECRET-VALUE"));
        let env = secret_credential("env", SecretSource::EnvVar("ARCHIVER_SECRET".into()));
        let mut cert =
            secret_credential("cert", SecretSource::File("/etc/archiver/key.pem".into()));
        cert.credential = CredentialSource::Certificate {
            source: CertificateSource::Pem {
                certificate: "/etc/archiver/cert.pem".into(),
                private_key: SecretSource::File("/etc/archiver/key.pem".into()),
            },
            algorithm: AssertionAlgorithm::Rs256,
        };
        cert.cloud = Cloud::custom("http://127.0.0.1:1", "http://127.0.0.1:2").unwrap();
        cert.ca_file = Some("/etc/archiver/ca.pem".into());
        let mut pfx = secret_credential("pfx", SecretSource::EnvVar("PFX_PASSWORD".into()));
        pfx.credential = CredentialSource::Certificate {
            source: CertificateSource::Pkcs12 {
                path: "/etc/archiver/app.pfx".into(),
                password: SecretSource::EnvVar("PFX_PASSWORD".into()),
            },
            algorithm: AssertionAlgorithm::Ps256,
        };
        pfx.cloud = Cloud::UsGovDod;
        for c in [&inline, &env, &cert, &pfx] {
            store.add(c).unwrap();
        }
        assert!(matches!(
            store.add(&inline),
            Err(AuthError::CredentialExists { .. })
        ));

        let list = store.list().unwrap();
        let names: Vec<_> = list.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["cert", "env", "inline", "pfx"]);
        let json = serde_json::to_string(&list).unwrap();
        assert!(!json.contains("TOP-SECRET-VALUE"));
        assert!(!format!("{list:?}").contains("TOP-SECRET-VALUE"));
        assert_eq!(list[0].kind, "certificate");
        assert_eq!(list[0].cloud, "custom");
        assert_eq!(list[1].secret_storage, "env:ARCHIVER_SECRET");
        assert_eq!(list[2].secret_storage, "inline");
        assert_eq!(list[3].kind, "pkcs12");
        assert_eq!(list[3].cloud, "usgov-dod");

        let back = store.get("inline").unwrap();
        let lookup = |_: &str| None;
        match back.registration(&lookup).unwrap().credential {
            crate::ClientCredential::Secret(s) => assert_eq!(s.expose_secret(), "TOP-SECRET-VALUE"),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{back:?}").contains("TOP-SECRET-VALUE"));
        let back = store.get("cert").unwrap();
        assert_eq!(back.cloud, cert.cloud);
        assert_eq!(back.ca_file, cert.ca_file);
        assert!(matches!(
            back.credential,
            CredentialSource::Certificate {
                algorithm: AssertionAlgorithm::Rs256,
                ..
            }
        ));

        store.remove("env").unwrap();
        assert!(matches!(
            store.get("env"),
            Err(AuthError::CredentialNotFound { .. })
        ));
        assert!(matches!(
            store.remove("env"),
            Err(AuthError::CredentialNotFound { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("creds");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = CredentialStore::open(&root).unwrap();
        let path = store
            .add(&secret_credential("a", SecretSource::value("s")))
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&path), 0o600);
        store
            .replace(&secret_credential("a", SecretSource::value("t")))
            .unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn bad_names_and_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        for bad in ["", "../x", ".hidden", "a/b", "-x", &"x".repeat(65)] {
            assert!(matches!(
                store.get(bad),
                Err(AuthError::InvalidRegistration { field: "name", .. })
            ));
        }
        std::fs::write(
            dir.path().join("broken.toml"),
            "name = \"broken\"\nsecret = \"LEAKY\"",
        )
        .unwrap();
        let err = store.get("broken").unwrap_err();
        assert!(err.to_string().contains("broken.toml"), "{err}");
        assert!(!err.to_string().contains("LEAKY"), "{err}");
        let list = store.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].kind, "unknown");
        assert!(list[0].problem.is_some());
        std::fs::write(
            dir.path().join("other.toml"),
            toml::to_string(&toml::toml! {
                name = "renamed"
                tenant = "contoso.com"
                client_id = "11111111-2222-3333-4444-555555555555"
                cloud = "global"
                [credential]
                kind = "secret"
                secret = { env_var = "X" }
            })
            .unwrap(),
        )
        .unwrap();
        assert!(
            store
                .get("other")
                .unwrap_err()
                .to_string()
                .contains("renamed")
        );
    }
}
