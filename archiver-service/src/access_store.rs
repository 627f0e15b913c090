//! The durable record of who may do what beyond their own archive: role grants,
//! unblocks, local password hashes and API token hashes, in `access/access.json`.
//!
//! The file is the source of truth, so it is never read silently when damaged: it
//! holds its body and the SHA-256 of the body's canonical JSON, and a file that does
//! not parse or whose digest differs is an error naming the file. Writers take the
//! lock `access/access.lock`, read, change and write the whole file by atomic replace
//! (temporary file, fsync, rename, fsync of the directory), `0600`. Readers need no
//! lock: a rename never shows half a file. No secret is stored: passwords as argon2id
//! PHC strings, tokens as the SHA-256 of the token.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use fs2::FileExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::ServiceError;
use crate::principal::{Grant, Reach, Role, Unblock};

type Result<T> = std::result::Result<T, ServiceError>;

/// The version of the file's layout this build writes and reads.
const FORMAT: u32 = 1;

/// What an API token lets its holder do (always at most what its owner may do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiScope {
    /// Search and read mail.
    Read,
    /// Export mail.
    Export,
    /// Restore mail into mailboxes.
    Restore,
    /// Retention policies, legal holds and erasure.
    Governance,
    /// Read the audit log.
    Audit,
    /// Manage the installation (the owner's admin role, and an unblock in force).
    Admin,
}

impl ApiScope {
    /// Every scope.
    pub const ALL: [ApiScope; 6] = [
        ApiScope::Read,
        ApiScope::Export,
        ApiScope::Restore,
        ApiScope::Governance,
        ApiScope::Audit,
        ApiScope::Admin,
    ];

    /// The scope's name on the command line and in JSON (`read`, `export`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ApiScope::Read => "read",
            ApiScope::Export => "export",
            ApiScope::Restore => "restore",
            ApiScope::Governance => "governance",
            ApiScope::Audit => "audit",
            ApiScope::Admin => "admin",
        }
    }
}

impl std::fmt::Display for ApiScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ApiScope {
    type Err = ServiceError;

    fn from_str(text: &str) -> Result<Self> {
        ApiScope::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| {
                ServiceError::invalid(format!(
                    "unknown API scope `{text}`: use read, export, restore, governance, audit or admin"
                ))
            })
    }
}

/// One stored grant: `scope` is `None` for every archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredGrant {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl StoredGrant {
    pub fn from_grant(grant: &Grant) -> Self {
        Self {
            role: grant.role,
            scope: match &grant.reach {
                Reach::All => None,
                Reach::Users(users) => Some(users.iter().cloned().collect()),
            },
            until: grant.until,
        }
    }

    pub fn to_grant(&self) -> Grant {
        Grant {
            role: self.role,
            reach: match &self.scope {
                None => Reach::All,
                Some(users) => Reach::Users(users.iter().cloned().collect()),
            },
            until: self.until,
        }
    }
}

/// A stored unblock, with who opened it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredUnblock {
    pub reason: String,
    pub until: DateTime<Utc>,
    pub by: String,
    pub at: DateTime<Utc>,
}

impl StoredUnblock {
    pub fn to_unblock(&self) -> Unblock {
        Unblock {
            reason: self.reason.clone(),
            until: self.until,
        }
    }
}

/// What is stored about one account (a local user name).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredAccount {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<StoredGrant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unblock: Option<StoredUnblock>,
    /// The argon2id PHC string of the local password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl StoredAccount {
    fn is_empty(&self) -> bool {
        self.grants.is_empty() && self.unblock.is_none() && self.password.is_none()
    }
}

impl std::fmt::Debug for StoredAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAccount")
            .field("grants", &self.grants)
            .field("unblock", &self.unblock)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One stored API token: its hash, never the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredToken {
    /// The public part of the token (`m365a_` and its first characters), shown in lists.
    pub id: String,
    pub owner: String,
    pub name: String,
    pub scopes: Vec<ApiScope>,
    pub created: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<DateTime<Utc>>,
    /// SHA-256 of the whole token, hex.
    pub sha256: String,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("until", &self.until)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

/// Everything the file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccessBook {
    #[serde(default)]
    pub accounts: BTreeMap<String, StoredAccount>,
    #[serde(default)]
    pub tokens: Vec<StoredToken>,
}

impl AccessBook {
    /// The account `name`, created empty if missing.
    pub fn account_mut(&mut self, name: &str) -> &mut StoredAccount {
        self.accounts.entry(name.to_string()).or_default()
    }

    /// Drops accounts with nothing left in them.
    fn tidy(&mut self) {
        self.accounts.retain(|_, a| !a.is_empty());
    }
}

/// The file as written: the body and the digest of its canonical JSON.
#[derive(Serialize, Deserialize)]
struct Envelope {
    format: u32,
    sha256: String,
    body: AccessBook,
}

fn digest(body: &AccessBook) -> Result<String> {
    let canonical = serde_json::to_vec(body)
        .map_err(|e| ServiceError::invalid(format!("cannot encode the access file: {e}")))?;
    Ok(hex(&Sha256::digest(&canonical)))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes the bytes of the access file at `path` (named in every error).
pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<AccessBook> {
    let damaged = |why: String| {
        ServiceError::invalid(format!(
            "the access file {} is damaged ({why}): restore it from a backup; \
             until then no grant, password or API token can be used",
            path.display()
        ))
    };
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| damaged(format!("not valid JSON: {e}")))?;
    if envelope.format != FORMAT {
        return Err(damaged(format!(
            "layout version {} is not {FORMAT}, the one this version reads",
            envelope.format
        )));
    }
    if digest(&envelope.body)? != envelope.sha256 {
        return Err(damaged(
            "its checksum does not match its content".to_string(),
        ));
    }
    Ok(envelope.body)
}

/// Encodes `book` as the access file's bytes.
pub(crate) fn encode(book: &AccessBook) -> Result<Vec<u8>> {
    let envelope = Envelope {
        format: FORMAT,
        sha256: digest(book)?,
        body: book.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&envelope)
        .map_err(|e| ServiceError::invalid(format!("cannot encode the access file: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The access file of one data directory.
#[derive(Debug, Clone)]
pub(crate) struct AccessStore {
    dir: PathBuf,
}

impl AccessStore {
    /// The store in `dir` (`<data dir>/access`); nothing is opened yet.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// `access.json`.
    pub fn path(&self) -> PathBuf {
        self.dir.join("access.json")
    }

    /// The current content (empty when the file does not exist yet).
    pub fn load(&self) -> Result<AccessBook> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => decode(&bytes, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AccessBook::default()),
            Err(e) => Err(ServiceError::io("cannot read the access file", &path, e)),
        }
    }

    /// Applies `change` under the writers' lock and stores the result; gives back
    /// what `change` returned. Nothing is written when `change` fails.
    pub fn update<T>(&self, change: impl FnOnce(&mut AccessBook) -> Result<T>) -> Result<T> {
        if !self.dir.is_dir() {
            fs::create_dir_all(&self.dir)
                .and_then(|()| fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)))
                .map_err(|e| ServiceError::io("cannot create", &self.dir, e))?;
        }
        let lock_path = self.dir.join("access.lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| ServiceError::io("cannot open the lock", &lock_path, e))?;
        lock.lock_exclusive()
            .map_err(|e| ServiceError::io("cannot lock", &lock_path, e))?;
        let mut book = self.load()?;
        let result = change(&mut book)?;
        book.tidy();
        self.write(&book)?;
        // The lock is released when `lock` is dropped.
        drop(lock);
        Ok(result)
    }

    /// Replaces the file atomically: a `0600` temporary file, fsynced, renamed over
    /// the file, then the directory fsynced.
    fn write(&self, book: &AccessBook) -> Result<()> {
        let path = self.path();
        let failed = |e| ServiceError::io("cannot write the access file", &path, e);
        let bytes = encode(book)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".access")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(&self.dir)
            .map_err(failed)?;
        tmp.write_all(&bytes).map_err(failed)?;
        tmp.as_file().sync_all().map_err(failed)?;
        tmp.persist(&path).map_err(|e| failed(e.error))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ServiceError::io("cannot sync the directory", &self.dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn book() -> AccessBook {
        let mut book = AccessBook::default();
        book.account_mut("carol").grants.push(StoredGrant {
            role: Role::Auditor,
            scope: Some(vec!["alice".into()]),
            until: None,
        });
        book
    }

    #[test]
    fn a_book_survives_encoding() {
        let path = Path::new("/data/access/access.json");
        let bytes = encode(&book()).unwrap();
        assert_eq!(decode(&bytes, path).unwrap(), book());
    }

    #[test]
    fn a_changed_byte_is_reported_with_the_path() {
        let path = Path::new("/data/access/access.json");
        let text = String::from_utf8(encode(&book()).unwrap()).unwrap();
        let changed = text.replace("alice", "alicf");
        let error = decode(changed.as_bytes(), path).unwrap_err();
        assert!(
            error.to_string().contains("/data/access/access.json"),
            "{error}"
        );
        assert!(error.to_string().contains("checksum"), "{error}");
    }

    #[test]
    fn the_debug_form_hides_password_hashes() {
        let account = StoredAccount {
            password: Some("$argon2id$v=19$secret-hash".into()),
            ..StoredAccount::default()
        };
        assert!(!format!("{account:?}").contains("secret-hash"));
    }

    proptest! {
        #[test]
        fn random_bytes_are_an_error_naming_the_file(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let path = Path::new("/x/access.json");
            let error = decode(&bytes, path).unwrap_err();
            prop_assert!(error.to_string().contains("/x/access.json"));
        }

        #[test]
        fn a_valid_file_cut_short_is_an_error_naming_the_file(cut in 0usize..200) {
            let path = Path::new("/x/access.json");
            let bytes = encode(&book()).unwrap();
            let end = cut.min(bytes.len().saturating_sub(2));
            let error = decode(&bytes[..end], path).unwrap_err();
            prop_assert!(error.to_string().contains("/x/access.json"));
        }
    }
}
