//! In-memory implementations of the seams, for tests of this and other crates:
//! [`MemoryDirectorySource`] (a directory with a change log, so deltas behave like
//! Graph's, and mailbox kinds looked up like Graph's `mailboxSettings`) and [`MemoryUserStore`] (the same rules as the SQLite store).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::kinds::permission_warning;
use crate::rules::{addresses_of, check_batch, object_of};
use crate::{
    DirectoryChanges, DirectoryError, DirectorySource, DirectoryToken, DirectoryUser, KindLookup,
    LocalUser, MailboxKind, UserStore,
};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One entry of the directory's change log.
#[derive(Debug, Clone)]
enum Change {
    Upsert(String),
    Remove(String),
}

#[derive(Debug, Default)]
struct Directory {
    users: BTreeMap<String, DirectoryUser>,
    log: Vec<Change>,
    /// Tokens of earlier epochs are rejected (a full listing follows).
    epoch: u64,
    failure: Option<(u16, String)>,
    /// Mailbox kinds other than `user`, by object id.
    kinds: BTreeMap<String, MailboxKind>,
    /// Kind lookups are refused (as Graph does without MailboxSettings.Read).
    kinds_denied: bool,
}

/// A directory held in memory. Tokens are positions in its change log, so a read
/// with a token returns just what changed since, like `/users/delta`.
///
/// ```
/// # async fn demo() -> Result<(), directory_sync::DirectoryError> {
/// use directory_sync::{DirectorySource, DirectoryUser, MemoryDirectorySource, UserType};
/// let dir = MemoryDirectorySource::new();
/// dir.upsert(DirectoryUser {
///     id: "1".into(),
///     user_principal_name: "a@x.com".into(),
///     display_name: Some("A".into()),
///     mail: Some("a@x.com".into()),
///     proxy_addresses: vec!["SMTP:a@x.com".into()],
///     account_enabled: true,
///     user_type: UserType::Member,
/// });
/// let first = dir.changes(None).await?;
/// assert!(first.full && first.users.len() == 1);
/// let again = dir.changes(Some(&first.next)).await?;
/// assert!(!again.full && again.users.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct MemoryDirectorySource {
    state: Mutex<Directory>,
    reads: AtomicU64,
    kind_lookups: AtomicU64,
}

impl MemoryDirectorySource {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// A directory holding `users`.
    pub fn with_users(users: impl IntoIterator<Item = DirectoryUser>) -> Self {
        let dir = Self::new();
        for user in users {
            dir.upsert(user);
        }
        dir
    }

    /// Adds or replaces a user.
    pub fn upsert(&self, user: DirectoryUser) {
        let mut state = lock(&self.state);
        state.log.push(Change::Upsert(user.id.clone()));
        state.users.insert(user.id.clone(), user);
    }

    /// Changes a user in place; `false` when there is no such user.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut DirectoryUser)) -> bool {
        let mut state = lock(&self.state);
        let Some(user) = state.users.get_mut(id) else {
            return false;
        };
        change(user);
        state.log.push(Change::Upsert(id.to_owned()));
        true
    }

    /// Deletes a user; `false` when there is no such user.
    pub fn remove(&self, id: &str) -> bool {
        let mut state = lock(&self.state);
        if state.users.remove(id).is_none() {
            return false;
        }
        state.log.push(Change::Remove(id.to_owned()));
        true
    }

    /// The users now in the directory.
    pub fn users(&self) -> Vec<DirectoryUser> {
        lock(&self.state).users.values().cloned().collect()
    }

    /// Makes every token issued so far stale (the next read is a full listing), as
    /// when Graph answers 410 to an expired delta token.
    pub fn expire_tokens(&self) {
        lock(&self.state).epoch += 1;
    }

    /// Makes every read fail with this Graph status and code until cleared with `None`.
    pub fn set_failure(&self, failure: Option<(u16, &str)>) {
        lock(&self.state).failure = failure.map(|(s, c)| (s, c.to_owned()));
    }

    /// Number of [`DirectorySource::changes`] calls so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Sets the mailbox kind of object `id` (every object is a `user` until set). Like
    /// Graph, this is no change of the user: a delta does not report it.
    pub fn set_kind(&self, id: &str, kind: MailboxKind) {
        lock(&self.state).kinds.insert(id.to_owned(), kind);
    }

    /// Refuses (or allows again) kind lookups, as Graph does for an app without
    /// MailboxSettings.Read.
    pub fn deny_kinds(&self, denied: bool) {
        lock(&self.state).kinds_denied = denied;
    }

    /// Number of objects whose kind was looked up so far (one `mailboxSettings`
    /// request each in Graph).
    pub fn kind_lookups(&self) -> u64 {
        self.kind_lookups.load(Ordering::Relaxed)
    }
}

/// `mem:{epoch}:{position}` split, or `None` for anything else.
fn token_position(token: &DirectoryToken) -> Option<(u64, usize)> {
    let (epoch, position) = token.0.strip_prefix("mem:")?.split_once(':')?;
    Some((epoch.parse().ok()?, position.parse().ok()?))
}

#[async_trait]
impl DirectorySource for MemoryDirectorySource {
    async fn changes(
        &self,
        since: Option<&DirectoryToken>,
    ) -> Result<DirectoryChanges, DirectoryError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let state = lock(&self.state);
        if let Some((status, code)) = &state.failure {
            return Err(DirectoryError::Graph {
                request: "GET memory directory".into(),
                status: *status,
                code: code.clone(),
                message: "failure injected by the test".into(),
                request_id: None,
            });
        }
        let next = DirectoryToken(format!("mem:{}:{}", state.epoch, state.log.len()));
        let position = since
            .and_then(token_position)
            .filter(|(epoch, p)| *epoch == state.epoch && *p <= state.log.len())
            .map(|(_, p)| p);
        let Some(position) = position else {
            return Ok(DirectoryChanges {
                full: true,
                users: state.users.values().cloned().collect(),
                removed: Vec::new(),
                next,
            });
        };
        // The latest state of every object touched since `position`, in log order.
        let mut touched: Vec<&str> = Vec::new();
        for change in &state.log[position..] {
            let id = match change {
                Change::Upsert(id) | Change::Remove(id) => id.as_str(),
            };
            touched.retain(|t| *t != id);
            touched.push(id);
        }
        let mut users = Vec::new();
        let mut removed = Vec::new();
        for id in touched {
            match state.users.get(id) {
                Some(user) => users.push(user.clone()),
                None => removed.push(id.to_owned()),
            }
        }
        Ok(DirectoryChanges {
            full: false,
            users,
            removed,
            next,
        })
    }

    async fn mailbox_kinds(&self, ids: &[String]) -> Result<KindLookup, DirectoryError> {
        self.kind_lookups
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        let state = lock(&self.state);
        if state.kinds_denied {
            return Ok(KindLookup {
                kinds: BTreeMap::new(),
                warnings: vec![permission_warning("403 ErrorAccessDenied")],
            });
        }
        Ok(KindLookup {
            kinds: ids
                .iter()
                .map(|id| {
                    let kind = state.kinds.get(id).copied().unwrap_or(MailboxKind::User);
                    (id.clone(), kind)
                })
                .collect(),
            warnings: Vec::new(),
        })
    }
}

#[derive(Debug, Clone, Default)]
struct Table {
    users: BTreeMap<String, LocalUser>,
    by_address: HashMap<String, String>,
    by_object: HashMap<String, String>,
    token: Option<DirectoryToken>,
}

impl Table {
    fn unindex(&mut self, user: &LocalUser) {
        for address in addresses_of(user) {
            if self.by_address.get(address) == Some(&user.name) {
                self.by_address.remove(address);
            }
        }
        if let Some(object) = object_of(user)
            && self.by_object.get(object) == Some(&user.name)
        {
            self.by_object.remove(object);
        }
    }

    fn apply(&mut self, batch: Vec<LocalUser>) -> Result<(), DirectoryError> {
        let previous: Vec<Option<LocalUser>> = batch
            .iter()
            .map(|u| self.users.get(&u.name).cloned())
            .collect();
        for old in previous.iter().flatten() {
            self.unindex(old);
        }
        for (mut user, old) in batch.into_iter().zip(previous) {
            for address in addresses_of(&user) {
                match self.by_address.get(address) {
                    Some(owner) if *owner != user.name => {
                        return Err(DirectoryError::AddressTaken {
                            name: user.name.clone(),
                            address: address.to_owned(),
                            owner: owner.clone(),
                        });
                    }
                    _ => {}
                }
                self.by_address
                    .insert(address.to_owned(), user.name.clone());
            }
            if let Some(object) = object_of(&user) {
                match self.by_object.get(object) {
                    Some(owner) if *owner != user.name => {
                        return Err(DirectoryError::ObjectTaken {
                            name: user.name.clone(),
                            object_id: object.to_owned(),
                            owner: owner.clone(),
                        });
                    }
                    _ => {}
                }
                self.by_object.insert(object.to_owned(), user.name.clone());
            }
            user.has_archive |= old.is_some_and(|o| o.has_archive);
            self.users.insert(user.name.clone(), user);
        }
        Ok(())
    }
}

/// Local users held in memory, with the same rules as
/// [`SqliteUserStore`](crate::SqliteUserStore): valid names, unique addresses and object
/// ids, atomic batches, `has_archive` never cleared.
#[derive(Debug, Default)]
pub struct MemoryUserStore {
    table: Mutex<Table>,
    writes: AtomicU64,
}

impl MemoryUserStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of writes (users or token) so far.
    pub fn write_count(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Applies `users` and, when given, the token as one write (none when nothing changes).
    fn commit(
        &self,
        users: &[LocalUser],
        token: Option<Option<&DirectoryToken>>,
    ) -> Result<(), DirectoryError> {
        let batch = check_batch(users)?;
        let mut table = lock(&self.table);
        let token = token.filter(|t| table.token.as_ref() != *t);
        if batch.is_empty() && token.is_none() {
            return Ok(());
        }
        let mut next = table.clone();
        next.apply(batch)?;
        if let Some(token) = token {
            next.token = token.cloned();
        }
        *table = next;
        self.wrote();
        Ok(())
    }

    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}

impl UserStore for MemoryUserStore {
    fn get(&self, name: &str) -> Result<Option<LocalUser>, DirectoryError> {
        Ok(lock(&self.table).users.get(name).cloned())
    }

    fn list(&self) -> Result<Vec<LocalUser>, DirectoryError> {
        Ok(lock(&self.table).users.values().cloned().collect())
    }

    fn find_by_address(&self, address: &str) -> Result<Option<LocalUser>, DirectoryError> {
        let table = lock(&self.table);
        Ok(table
            .by_address
            .get(&address.trim().to_lowercase())
            .and_then(|name| table.users.get(name))
            .cloned())
    }

    fn find_by_object_id(&self, object_id: &str) -> Result<Option<LocalUser>, DirectoryError> {
        let table = lock(&self.table);
        Ok(table
            .by_object
            .get(object_id)
            .and_then(|name| table.users.get(name))
            .cloned())
    }

    fn put(&self, user: &LocalUser) -> Result<(), DirectoryError> {
        self.put_many(std::slice::from_ref(user))
    }

    fn put_many(&self, users: &[LocalUser]) -> Result<(), DirectoryError> {
        self.commit(users, None)
    }

    fn apply_sync(
        &self,
        users: &[LocalUser],
        token: Option<&DirectoryToken>,
    ) -> Result<(), DirectoryError> {
        self.commit(users, Some(token))
    }

    fn remove(&self, name: &str) -> Result<(), DirectoryError> {
        let mut table = lock(&self.table);
        let user = table
            .users
            .get(name)
            .cloned()
            .ok_or_else(|| DirectoryError::NotFound {
                name: name.to_owned(),
            })?;
        if user.has_archive {
            return Err(DirectoryError::HasArchive {
                name: name.to_owned(),
            });
        }
        table.unindex(&user);
        table.users.remove(name);
        self.wrote();
        Ok(())
    }

    fn mark_has_archive(&self, name: &str) -> Result<(), DirectoryError> {
        let mut table = lock(&self.table);
        let user = table
            .users
            .get_mut(name)
            .ok_or_else(|| DirectoryError::NotFound {
                name: name.to_owned(),
            })?;
        if !user.has_archive {
            user.has_archive = true;
            self.wrote();
        }
        Ok(())
    }

    fn directory_token(&self) -> Result<Option<DirectoryToken>, DirectoryError> {
        Ok(lock(&self.table).token.clone())
    }

    fn set_directory_token(&self, token: Option<&DirectoryToken>) -> Result<(), DirectoryError> {
        self.commit(&[], Some(token))
    }
}
