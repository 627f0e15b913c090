//! The sled user store of earlier versions, exactly as they wrote it: kept (for tests
//! only) so the migration is tested against stores the old code wrote.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::rules::{addresses_of, check_batch, object_of};
use crate::{DirectoryError, DirectoryToken, LocalUser, UserStore};

/// Format version of the records this version writes.
const FORMAT_VERSION: u32 = 1;
const META_FORMAT: &[u8] = b"format";
const META_TOKEN: &[u8] = b"directory_token";

/// The user store on disk (a sled database in its own directory).
pub(crate) struct SledUserStore {
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
    pub(crate) fn open(path: impl AsRef<Path>) -> Result<Self, DirectoryError> {
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
