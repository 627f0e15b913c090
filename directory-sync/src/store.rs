//! [`SledUserStore`]: local users in a sled database, indexed by address and by
//! directory object id, every write flushed to disk before it returns.
//!
//! Users are few (thousands at most) and written rarely, so each write is a sled
//! transaction over the three trees followed by a flush: sled would otherwise
//! acknowledge writes it has not yet persisted. The rules a store enforces
//! (valid names, unique addresses and object ids, `has_archive` never cleared,
//! users with an archive never removed) live in [`check_batch`] and are shared
//! with the in-memory store.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::addresses::normalize_address;
use crate::names::validate_name;
use crate::{DirectoryError, DirectoryToken, LocalUser, UserOrigin, UserStore};

/// Format version of the records this version writes.
const FORMAT_VERSION: u32 = 1;
const META_FORMAT: &[u8] = b"format";
const META_TOKEN: &[u8] = b"directory_token";

/// The user store on disk (a sled database in its own directory).
pub struct SledUserStore {
    path: PathBuf,
    db: sled::Db,
    users: sled::Tree,
    by_address: sled::Tree,
    by_object: sled::Tree,
    meta: sled::Tree,
    writes: AtomicU64,
}

impl std::fmt::Debug for SledUserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledUserStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SledUserStore {
    /// Opens (creating when missing) the store in directory `path`.
    ///
    /// # Errors
    /// [`DirectoryError::StoreLocked`] when another process has it open,
    /// [`DirectoryError::StoreVersion`] when a newer version wrote it,
    /// [`DirectoryError::StoreIo`] otherwise.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DirectoryError> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        // Users are few: a small page cache is plenty.
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(16 * 1024 * 1024)
            .open()
            .map_err(|e| match &e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    DirectoryError::StoreLocked {
                        path: shown.clone(),
                    }
                }
                _ => DirectoryError::StoreIo {
                    path: shown.clone(),
                    reason: e.to_string(),
                },
            })?;
        let tree = |name: &str| {
            db.open_tree(name).map_err(|e| DirectoryError::StoreIo {
                path: shown.clone(),
                reason: format!("tree {name}: {e}"),
            })
        };
        let store = Self {
            users: tree("users")?,
            by_address: tree("by_address")?,
            by_object: tree("by_object")?,
            meta: tree("meta")?,
            db,
            path,
            writes: AtomicU64::new(0),
        };
        store.check_format()?;
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of write transactions committed since the store was opened (a sync that
    /// finds nothing to change performs none).
    pub fn write_count(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    fn io(&self, e: impl std::fmt::Display) -> DirectoryError {
        DirectoryError::StoreIo {
            path: self.shown(),
            reason: e.to_string(),
        }
    }

    fn check_format(&self) -> Result<(), DirectoryError> {
        match self.meta.get(META_FORMAT).map_err(|e| self.io(e))? {
            Some(raw) => {
                let found = <[u8; 4]>::try_from(raw.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| DirectoryError::StoreCorrupt {
                        path: self.shown(),
                        key: "meta/format".into(),
                        reason: format!("{} bytes instead of 4", raw.len()),
                    })?;
                if found > FORMAT_VERSION {
                    return Err(DirectoryError::StoreVersion {
                        path: self.shown(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                Ok(())
            }
            None => {
                self.meta
                    .insert(META_FORMAT, &FORMAT_VERSION.to_be_bytes())
                    .map_err(|e| self.io(e))?;
                self.flush()
            }
        }
    }

    fn flush(&self) -> Result<(), DirectoryError> {
        self.db
            .flush()
            .map_err(|e| self.io(format!("flush: {e}")))?;
        Ok(())
    }

    fn decode(&self, key: &[u8], raw: &[u8]) -> Result<LocalUser, DirectoryError> {
        decode_user(&self.shown(), key, raw)
    }

    fn committed<T>(
        &self,
        result: Result<T, TransactionError<DirectoryError>>,
    ) -> Result<T, DirectoryError> {
        match result {
            Ok(value) => {
                self.flush()?;
                self.writes.fetch_add(1, Ordering::Relaxed);
                Ok(value)
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(self.io(e)),
        }
    }

    fn user_by_key(
        &self,
        tree: &sled::Tree,
        key: &str,
    ) -> Result<Option<LocalUser>, DirectoryError> {
        let Some(name) = tree.get(key.as_bytes()).map_err(|e| self.io(e))? else {
            return Ok(None);
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        self.get(&name)
    }
}

fn decode_user(path: &str, key: &[u8], raw: &[u8]) -> Result<LocalUser, DirectoryError> {
    serde_json::from_slice(raw).map_err(|e| DirectoryError::StoreCorrupt {
        path: path.to_owned(),
        key: format!("users/{}", String::from_utf8_lossy(key)),
        reason: e.to_string(),
    })
}

/// A user as it will be stored: name checked, addresses lower-cased and validated,
/// aliases sorted and deduplicated without the primary.
pub(crate) fn normalized(user: &LocalUser) -> Result<LocalUser, DirectoryError> {
    let invalid = |reason: String| DirectoryError::InvalidUser {
        name: user.name.clone(),
        reason,
    };
    validate_name(&user.name).map_err(&invalid)?;
    let email = match &user.email {
        None => None,
        Some(raw) => Some(
            normalize_address(raw)
                .ok_or_else(|| invalid(format!("email {raw:?} is not a mail address")))?,
        ),
    };
    let mut aliases = Vec::with_capacity(user.aliases.len());
    for raw in &user.aliases {
        let alias = normalize_address(raw)
            .ok_or_else(|| invalid(format!("alias {raw:?} is not a mail address")))?;
        if Some(&alias) != email.as_ref() {
            aliases.push(alias);
        }
    }
    aliases.sort();
    aliases.dedup();
    if let UserOrigin::Directory { object_id } = &user.origin
        && object_id.trim().is_empty()
    {
        return Err(invalid("the directory object id is empty".into()));
    }
    Ok(LocalUser {
        email,
        aliases,
        ..user.clone()
    })
}

/// Normalises a batch and refuses a name given twice.
pub(crate) fn check_batch(users: &[LocalUser]) -> Result<Vec<LocalUser>, DirectoryError> {
    let mut seen = HashSet::new();
    users
        .iter()
        .map(|u| {
            if !seen.insert(u.name.as_str()) {
                return Err(DirectoryError::InvalidUser {
                    name: u.name.clone(),
                    reason: "the user appears twice in one batch".into(),
                });
            }
            normalized(u)
        })
        .collect()
}

/// Every address of a user, primary first.
pub(crate) fn addresses_of(user: &LocalUser) -> impl Iterator<Item = &str> {
    user.email
        .as_deref()
        .into_iter()
        .chain(user.aliases.iter().map(String::as_str))
}

/// The directory object id of a user, if synchronised.
pub(crate) fn object_of(user: &LocalUser) -> Option<&str> {
    match &user.origin {
        UserOrigin::Directory { object_id } => Some(object_id),
        UserOrigin::Manual => None,
    }
}

type Abort = ConflictableTransactionError<DirectoryError>;

/// Removes `user`'s index entries that point at `user.name`.
fn unindex(
    addrs: &TransactionalTree,
    objs: &TransactionalTree,
    user: &LocalUser,
) -> Result<(), Abort> {
    let name = user.name.as_bytes();
    for address in addresses_of(user) {
        if addrs.get(address.as_bytes())?.as_deref() == Some(name) {
            addrs.remove(address.as_bytes())?;
        }
    }
    if let Some(object) = object_of(user)
        && objs.get(object.as_bytes())?.as_deref() == Some(name)
    {
        objs.remove(object.as_bytes())?;
    }
    Ok(())
}

impl UserStore for SledUserStore {
    fn get(&self, name: &str) -> Result<Option<LocalUser>, DirectoryError> {
        match self.users.get(name.as_bytes()).map_err(|e| self.io(e))? {
            Some(raw) => Ok(Some(self.decode(name.as_bytes(), &raw)?)),
            None => Ok(None),
        }
    }

    fn list(&self) -> Result<Vec<LocalUser>, DirectoryError> {
        self.users
            .iter()
            .map(|item| {
                let (key, raw) = item.map_err(|e| self.io(e))?;
                self.decode(&key, &raw)
            })
            .collect()
    }

    fn find_by_address(&self, address: &str) -> Result<Option<LocalUser>, DirectoryError> {
        self.user_by_key(&self.by_address, &address.trim().to_lowercase())
    }

    fn find_by_object_id(&self, object_id: &str) -> Result<Option<LocalUser>, DirectoryError> {
        self.user_by_key(&self.by_object, object_id)
    }

    fn put(&self, user: &LocalUser) -> Result<(), DirectoryError> {
        self.put_many(std::slice::from_ref(user))
    }

    fn put_many(&self, users: &[LocalUser]) -> Result<(), DirectoryError> {
        if users.is_empty() {
            return Ok(());
        }
        let batch = check_batch(users)?;
        let path = self.shown();
        let result = (&self.users, &self.by_address, &self.by_object).transaction(
            |(tx_users, tx_addrs, tx_objs)| {
                // First drop the index entries of every user's previous version, so
                // users of one batch may trade addresses.
                let mut previous = Vec::with_capacity(batch.len());
                for user in &batch {
                    let old = match tx_users.get(user.name.as_bytes())? {
                        Some(raw) => Some(
                            decode_user(&path, user.name.as_bytes(), &raw)
                                .map_err(ConflictableTransactionError::Abort)?,
                        ),
                        None => None,
                    };
                    if let Some(old) = &old {
                        unindex(tx_addrs, tx_objs, old)?;
                    }
                    previous.push(old);
                }
                for (user, old) in batch.iter().zip(&previous) {
                    let name = user.name.as_bytes();
                    for address in addresses_of(user) {
                        if let Some(owner) = tx_addrs.get(address.as_bytes())?
                            && owner.as_ref() != name
                        {
                            return Err(ConflictableTransactionError::Abort(
                                DirectoryError::AddressTaken {
                                    name: user.name.clone(),
                                    address: address.to_owned(),
                                    owner: String::from_utf8_lossy(&owner).into_owned(),
                                },
                            ));
                        }
                        tx_addrs.insert(address.as_bytes(), name)?;
                    }
                    if let Some(object) = object_of(user) {
                        if let Some(owner) = tx_objs.get(object.as_bytes())?
                            && owner.as_ref() != name
                        {
                            return Err(ConflictableTransactionError::Abort(
                                DirectoryError::ObjectTaken {
                                    name: user.name.clone(),
                                    object_id: object.to_owned(),
                                    owner: String::from_utf8_lossy(&owner).into_owned(),
                                },
                            ));
                        }
                        tx_objs.insert(object.as_bytes(), name)?;
                    }
                    // An archive, once recorded, is never forgotten.
                    let mut stored = user.clone();
                    stored.has_archive |= old.as_ref().is_some_and(|o| o.has_archive);
                    let raw = serde_json::to_vec(&stored).map_err(|e| {
                        ConflictableTransactionError::Abort(DirectoryError::InvalidUser {
                            name: user.name.clone(),
                            reason: format!("cannot be encoded: {e}"),
                        })
                    })?;
                    tx_users.insert(name, raw)?;
                }
                Ok(())
            },
        );
        self.committed(result)
    }

    fn remove(&self, name: &str) -> Result<(), DirectoryError> {
        let path = self.shown();
        let result = (&self.users, &self.by_address, &self.by_object).transaction(
            |(tx_users, tx_addrs, tx_objs)| {
                let Some(raw) = tx_users.get(name.as_bytes())? else {
                    return Err(ConflictableTransactionError::Abort(
                        DirectoryError::NotFound {
                            name: name.to_owned(),
                        },
                    ));
                };
                let user = decode_user(&path, name.as_bytes(), &raw)
                    .map_err(ConflictableTransactionError::Abort)?;
                if user.has_archive {
                    return Err(ConflictableTransactionError::Abort(
                        DirectoryError::HasArchive {
                            name: name.to_owned(),
                        },
                    ));
                }
                unindex(tx_addrs, tx_objs, &user)?;
                tx_users.remove(name.as_bytes())?;
                Ok(())
            },
        );
        self.committed(result)
    }

    fn mark_has_archive(&self, name: &str) -> Result<(), DirectoryError> {
        let mut user = self.get(name)?.ok_or_else(|| DirectoryError::NotFound {
            name: name.to_owned(),
        })?;
        if user.has_archive {
            return Ok(());
        }
        user.has_archive = true;
        self.put(&user)
    }

    fn directory_token(&self) -> Result<Option<DirectoryToken>, DirectoryError> {
        match self.meta.get(META_TOKEN).map_err(|e| self.io(e))? {
            None => Ok(None),
            Some(raw) => String::from_utf8(raw.to_vec())
                .map(|t| Some(DirectoryToken(t)))
                .map_err(|e| DirectoryError::StoreCorrupt {
                    path: self.shown(),
                    key: "meta/directory_token".into(),
                    reason: e.to_string(),
                }),
        }
    }

    fn set_directory_token(&self, token: Option<&DirectoryToken>) -> Result<(), DirectoryError> {
        let current = self.meta.get(META_TOKEN).map_err(|e| self.io(e))?;
        if current.as_deref() == token.map(|t| t.0.as_bytes()) {
            return Ok(());
        }
        match token {
            Some(t) => self.meta.insert(META_TOKEN, t.0.as_bytes()),
            None => self.meta.remove(META_TOKEN),
        }
        .map_err(|e| self.io(e))?;
        self.flush()?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
