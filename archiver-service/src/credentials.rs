//! Credentials: app registrations, stored one TOML file each (`0600`) under
//! `credentials/`. A secret may stay outside as an environment-variable or file
//! reference; nothing here ever returns one. Managing them needs the admin role.

use std::path::{Path, PathBuf};
use std::time::Duration;

use audit_log::{Action, Target};
use m365_auth::{
    AssertionAlgorithm, CertificateSource, ClientId, Cloud, CredentialSource, CredentialStore,
    CredentialSummary, SecretSource, StoredCredential, TenantId,
};
use m365_mailbox::MailboxSource;

use crate::datadir::{Access, DataDir};
use crate::error::{ResultExt, ServiceError};
use crate::wiring;
use crate::{Principal, Service};

type Result<T> = std::result::Result<T, ServiceError>;

/// Where the secret of a new credential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretInput {
    /// An environment variable, read at each use (never stored).
    EnvVar(String),
    /// A file holding the client secret.
    File(PathBuf),
    /// A PEM certificate registered with the app and its private key.
    Certificate {
        /// The certificate.
        certificate: PathBuf,
        /// Its private key (PKCS#8 or PKCS#1).
        private_key: PathBuf,
    },
}

/// A credential to add (`credentials add`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    /// The name to refer to it by.
    pub name: String,
    /// Tenant id (GUID) or primary domain.
    pub tenant: String,
    /// Application (client) id.
    pub client_id: String,
    /// The secret or certificate.
    pub secret: SecretInput,
    /// Cloud name: `global`, `usgov`, `usgov-dod`, `china` or `custom`.
    pub cloud: String,
    /// Login root URL (`custom` cloud).
    pub login_url: Option<String>,
    /// Graph root URL (`custom` cloud).
    pub graph_url: Option<String>,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
}

/// A credential that was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedCredential {
    /// Its name.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// Remaining lifetime of the token obtained to prove it works.
    pub token_lifetime: Duration,
}

/// A mailbox probed with a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxProbe {
    /// The address.
    pub address: String,
    /// Why it cannot be read (`None`: readable).
    pub error: Option<String>,
}

/// What `credentials test` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialTest {
    /// The credential.
    pub name: String,
    /// Remaining lifetime of the token obtained.
    pub token_lifetime: Duration,
    /// The mailbox probed, when one was asked for.
    pub mailbox: Option<MailboxProbe>,
}

fn absolute(path: &Path, what: &str) -> Result<PathBuf> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ServiceError::io(format!("cannot read {what}"), path, e))?;
    if !meta.is_file() {
        return Err(ServiceError::invalid(format!(
            "{what} {} is not a file",
            path.display()
        )));
    }
    std::fs::canonicalize(path)
        .map_err(|e| ServiceError::io(format!("cannot resolve {what}"), path, e))
}

/// The credential `new` describes (validated, nothing contacted or written).
pub(crate) fn stored_from(new: &NewCredential) -> Result<StoredCredential> {
    let tenant: TenantId = new.tenant.parse().context_with(|| "--tenant".into())?;
    let client_id: ClientId = new
        .client_id
        .parse()
        .context_with(|| "--client-id".into())?;
    let cloud = Cloud::from_name(
        &new.cloud,
        new.login_url.as_deref(),
        new.graph_url.as_deref(),
    )
    .context_with(|| "--cloud".into())?;
    let credential = match &new.secret {
        SecretInput::EnvVar(var) => {
            if var.is_empty() || var.contains('=') {
                return Err(ServiceError::invalid(format!(
                    "--secret-env `{var}` is not an environment variable name"
                )));
            }
            CredentialSource::Secret(SecretSource::EnvVar(var.clone()))
        }
        SecretInput::File(file) => {
            CredentialSource::Secret(SecretSource::File(absolute(file, "secret file")?))
        }
        SecretInput::Certificate {
            certificate,
            private_key,
        } => CredentialSource::Certificate {
            source: CertificateSource::Pem {
                certificate: absolute(certificate, "certificate")?,
                private_key: SecretSource::File(absolute(private_key, "private key")?),
            },
            algorithm: AssertionAlgorithm::default(),
        },
    };
    let ca_file = match &new.ca_file {
        Some(path) => Some(absolute(path, "CA file")?),
        None => None,
    };
    Ok(StoredCredential {
        name: new.name.clone(),
        tenant,
        client_id,
        cloud,
        credential,
        ca_file,
        scope: None,
    })
}

impl Service {
    /// Stores a credential after proving it obtains a token; nothing is written
    /// otherwise (`credentials add`).
    pub async fn add_credential(
        &self,
        principal: &Principal,
        new: &NewCredential,
    ) -> Result<AddedCredential> {
        self.admin_only(
            principal,
            "add credentials",
            Action::CredentialAdd,
            Target::object(&new.name),
        )?;
        let root = self.data_dir();
        // A directory that exists must be private before anything else happens.
        if root.exists() {
            self.open(Access::Admin)?;
        }
        let stored = stored_from(new)?;
        if let Ok(existing) = DataDir::open(root, Access::Read)
            && let Some(store) = wiring::existing_credential_store(&existing)?
            && store.path_of(&stored.name)?.exists()
        {
            return Err(ServiceError::conflict(format!(
                "a credential named `{}` already exists; remove it first or choose another name",
                stored.name
            )));
        }
        let connection = wiring::connect(&stored, self.secrets())?;
        let token_lifetime = connection
            .check_token()
            .await
            .map_err(|e| e.context("nothing was stored"))?;
        let dir = self.open(Access::Admin)?;
        let path = CredentialStore::open(dir.credentials())?.add(&stored)?;
        self.audit(
            principal,
            Action::CredentialAdd,
            Target::object(&stored.name),
            &[
                ("tenant", new.tenant.clone()),
                ("client_id", new.client_id.clone()),
            ],
        )?;
        Ok(AddedCredential {
            name: stored.name,
            path,
            token_lifetime,
        })
    }

    /// The app registration of credential `name` and the provider options its CA
    /// bundle needs, for signing people in to the web pages with the same app
    /// (administrators only: it holds the secret or key).
    pub fn sign_in_registration(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<(m365_auth::AppRegistration, m365_auth::ProviderOptions)> {
        self.admin_only(
            principal,
            "use credentials for web sign-in",
            Action::ConfigurationRead,
            Target::object(name),
        )?;
        let dir = self.open(Access::Read)?;
        let stored = wiring::load_credential(&dir, name)?;
        let lookup = self.secrets();
        let registration = stored
            .registration(&|n: &str| lookup(n))
            .context_with(|| format!("credential `{name}`"))?;
        let mut options = m365_auth::ProviderOptions::default();
        if let Some(path) = &stored.ca_file {
            options.extra_ca_pem = Some(
                std::fs::read_to_string(path)
                    .map_err(|e| ServiceError::io("cannot read the CA bundle", path, e))?,
            );
        }
        Ok((registration, options))
    }

    /// The stored credentials, never their secrets (`credentials list`).
    pub fn list_credentials(&self, principal: &Principal) -> Result<Vec<CredentialSummary>> {
        self.admin_only(
            principal,
            "list credentials",
            Action::ConfigurationRead,
            Target::default(),
        )?;
        match self.open(Access::Read) {
            Ok(dir) => match wiring::existing_credential_store(&dir)? {
                Some(store) => Ok(store.list()?),
                None => Ok(Vec::new()),
            },
            Err(_) if !self.data_dir().exists() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Obtains a token with credential `name` and, given a mailbox, probes it
    /// (`credentials test`). An unreadable mailbox is reported in the result.
    pub async fn test_credential(
        &self,
        principal: &Principal,
        name: &str,
        mailbox: Option<&str>,
    ) -> Result<CredentialTest> {
        self.admin_only(
            principal,
            "test credentials",
            Action::CredentialTest,
            Target::object(name),
        )?;
        let dir = self.open(Access::Read)?;
        let stored = wiring::load_credential(&dir, name)?;
        let connection = wiring::connect(&stored, self.secrets())?;
        let token_lifetime = connection.check_token().await?;
        let mailbox = match mailbox {
            Some(address) => {
                let source = connection.mailbox_source(Duration::from_secs(60))?;
                Some(MailboxProbe {
                    address: address.to_string(),
                    error: source.probe(address).await.err().map(|e| e.to_string()),
                })
            }
            None => None,
        };
        Ok(CredentialTest {
            name: name.to_string(),
            token_lifetime,
            mailbox,
        })
    }

    /// Deletes credential `name` (`credentials remove`).
    pub fn remove_credential(&self, principal: &Principal, name: &str) -> Result<()> {
        self.admin_only(
            principal,
            "remove credentials",
            Action::CredentialRemove,
            Target::object(name),
        )?;
        let dir = self.open(Access::Read)?;
        dir.check_private()?;
        let Some(store) = wiring::existing_credential_store(&dir)? else {
            return Err(ServiceError::not_found(format!(
                "no credential named `{name}`; `credentials list` shows the stored ones"
            )));
        };
        store.remove(name)?;
        self.audit(
            principal,
            Action::CredentialRemove,
            Target::object(name),
            &[],
        )
    }
}
