//! Role grants and unblocks (`access grant | revoke | list | unblock`), and the
//! [`Principal`] of a signed-in account, built afresh from the stored grants on every
//! request so that a revoke or an ended unblock takes effect at once.
//!
//! Rules kept here:
//! - Only the local administrator and `admin` accounts change grants, and an account
//!   never changes its own grants (no one raises their own rights).
//! - Every local user holds the `user` role over their own archive, whatever else
//!   they are granted; other roles come from explicit grants only.
//! - An unblock needs a reason and ends at most [`MAX_UNBLOCK_DAYS`] days ahead. The
//!   local administrator may unblock any admin; an admin account may unblock only
//!   itself. The design lets an admin reach content "only with a reason, for a
//!   limited time, audited": the reason and the end are stored, the unblock itself is
//!   an audit event, and every read made under it carries the reason in its own
//!   event, so the reviewer sees who read what and why. Unblocking another admin is
//!   refused so that no admin opens content to someone else without a host login.

use audit_log::{Action, Target};
use chrono::{DateTime, Utc};
use directory_sync::LocalUser;

use crate::access_store::{AccessBook, AccessStore, StoredGrant, StoredUnblock};
use crate::audit::actor;
use crate::datadir::Access;
use crate::error::ServiceError;
use crate::principal::{Account, Grant, Principal, Reach, Role, Unblock};
use crate::{Service, wiring};

type Result<T> = std::result::Result<T, ServiceError>;

/// The longest an unblock may last, in days. A week covers an investigation that
/// spans a weekend; anything longer should be a fresh, separately audited decision.
pub const MAX_UNBLOCK_DAYS: i64 = 7;

/// The stored access of one account (`access list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// The local user name.
    pub user: String,
    /// The explicit grants, ended ones included (the `user` role over their own
    /// archive is implied and not listed unless granted explicitly).
    pub grants: Vec<Grant>,
    /// The unblock, while one is in force.
    pub unblock: Option<Unblock>,
}

fn details(grant: &Grant) -> Vec<(&'static str, String)> {
    let mut details = vec![("role", grant.role.name().to_string())];
    if let Reach::Users(users) = &grant.reach {
        details.push(("scope", users.iter().cloned().collect::<Vec<_>>().join(",")));
    }
    if let Some(until) = grant.until {
        details.push(("until", until.to_rfc3339()));
    }
    details
}

impl Service {
    /// The access store of the data directory.
    pub(crate) fn access_store(&self) -> Result<AccessStore> {
        Ok(AccessStore::new(self.open(Access::Write)?.access()))
    }

    /// What the access file holds now (empty when nothing was stored yet).
    pub(crate) fn access_book(&self) -> Result<AccessBook> {
        if !self.data_dir().is_dir() {
            return Ok(AccessBook::default());
        }
        AccessStore::new(self.open(Access::Read)?.access()).load()
    }

    /// The local user `name`, if there is one.
    pub(crate) fn find_user(&self, name: &str) -> Result<Option<LocalUser>> {
        if !self.data_dir().is_dir() {
            return Ok(None);
        }
        let dir = self.open(Access::Read)?;
        match wiring::open_user_store_read_only(&dir)? {
            Some(store) => Ok(store.get(name)?),
            None => Ok(None),
        }
    }

    fn existing_user(&self, name: &str) -> Result<LocalUser> {
        self.find_user(name)?.ok_or_else(|| {
            ServiceError::not_found(format!(
                "no user named `{name}` (see `users list`; add one with `users add` or `users sync`)"
            ))
        })
    }

    /// Refuses (and records) unless the caller manages grants and `user` is not the
    /// caller's own account.
    fn grant_manager(&self, principal: &Principal, user: &str, action: Action) -> Result<()> {
        self.admin_only(principal, "change role grants", action, Target::user(user))?;
        if let Principal::Account(account) = principal
            && account.name == user
        {
            let error = ServiceError::forbidden(format!(
                "{} may not change its own role grants: ask another admin or use the command line on the archive host",
                principal.label()
            ));
            return Err(self.denial(principal, action, Target::user(user), error));
        }
        Ok(())
    }

    /// Refuses (and records) unless the caller is the local administrator or the
    /// account `user` itself: what an account does for itself, nobody does for it
    /// but the command line on the archive host.
    pub(crate) fn own_account_only(
        &self,
        principal: &Principal,
        user: &str,
        what: &str,
        action: Action,
    ) -> Result<()> {
        match principal {
            Principal::Account(account) if account.name != user => {
                let error = ServiceError::forbidden(format!(
                    "{} may {what} only for itself; for `{user}` that is done from the command line on the archive host",
                    principal.label()
                ));
                Err(self.denial(principal, action, Target::user(user), error))
            }
            _ => Ok(()),
        }
    }

    /// Gives `user` the role `role` over `reach` until `until` (`None`: until revoked),
    /// replacing a grant of the same role (`access grant`). Admins only, never to
    /// themselves; `until` must lie ahead.
    pub fn grant_access(
        &self,
        principal: &Principal,
        user: &str,
        role: Role,
        reach: Reach,
        until: Option<DateTime<Utc>>,
    ) -> Result<Grant> {
        self.grant_manager(principal, user, Action::RoleGrant)?;
        self.existing_user(user)?;
        if let Reach::Users(users) = &reach {
            if users.is_empty() {
                return Err(ServiceError::invalid(
                    "--scope names no user: leave it out for every archive",
                ));
            }
            for name in users {
                if let Err(why) = directory_sync::validate_name(name) {
                    return Err(ServiceError::invalid(format!(
                        "--scope user `{name}`: {why}"
                    )));
                }
            }
        }
        if let Some(until) = until
            && until <= Self::now()
        {
            return Err(ServiceError::invalid(format!(
                "--until {} has passed: a grant must end in the future",
                until.to_rfc3339()
            )));
        }
        let grant = Grant { role, reach, until };
        let stored = StoredGrant::from_grant(&grant);
        self.access_store()?.update(|book| {
            let account = book.account_mut(user);
            account.grants.retain(|g| g.role != role);
            account.grants.push(stored);
            account.grants.sort_by_key(|g| g.role);
            Ok(())
        })?;
        self.audit(
            principal,
            Action::RoleGrant,
            Target::user(user),
            &details(&grant),
        )?;
        Ok(grant)
    }

    /// Takes the role `role` from `user` (`access revoke`); effective on the next
    /// request of any session of theirs. Revoking `admin` also ends an unblock.
    pub fn revoke_access(&self, principal: &Principal, user: &str, role: Role) -> Result<()> {
        self.grant_manager(principal, user, Action::RoleRevoke)?;
        self.access_store()?.update(|book| {
            let account = book.account_mut(user);
            let before = account.grants.len();
            account.grants.retain(|g| g.role != role);
            if account.grants.len() == before {
                return Err(ServiceError::not_found(format!(
                    "user `{user}` holds no {role} grant (see `access list`)"
                )));
            }
            if role == Role::Admin {
                account.unblock = None;
            }
            Ok(())
        })?;
        self.audit(
            principal,
            Action::RoleRevoke,
            Target::user(user),
            &[("role", role.name().to_string())],
        )
    }

    /// Every account with stored grants or an unblock in force, by name (`access list`).
    pub fn list_access(&self, principal: &Principal) -> Result<Vec<AccessEntry>> {
        self.admin_only(
            principal,
            "list role grants",
            Action::ConfigurationRead,
            Target::default(),
        )?;
        let now = Self::now();
        let book = self.access_book()?;
        Ok(book
            .accounts
            .iter()
            .map(|(user, account)| AccessEntry {
                user: user.clone(),
                grants: account.grants.iter().map(StoredGrant::to_grant).collect(),
                unblock: account
                    .unblock
                    .as_ref()
                    .filter(|u| now < u.until)
                    .map(StoredUnblock::to_unblock),
            })
            .filter(|entry| !entry.grants.is_empty() || entry.unblock.is_some())
            .collect())
    }

    /// Opens every archive's content to the admin `admin_user` until `until`, for
    /// `reason` (`access unblock`). The reason must not be empty and `until` must lie
    /// ahead, at most [`MAX_UNBLOCK_DAYS`] days. The local administrator may unblock
    /// any admin, an admin account only itself (see the module's rules).
    pub fn unblock_content(
        &self,
        principal: &Principal,
        admin_user: &str,
        reason: &str,
        until: DateTime<Utc>,
    ) -> Result<Unblock> {
        let now = Self::now();
        let target = Target::user(admin_user);
        let refuse = |error: ServiceError| {
            self.denial(principal, Action::AccessUnblock, target.clone(), error)
        };
        self.admin_only(
            principal,
            "unblock mail content",
            Action::AccessUnblock,
            target.clone(),
        )?;
        if let Principal::Account(account) = principal
            && account.name != admin_user
        {
            return Err(refuse(ServiceError::forbidden(format!(
                "{} may unblock only itself; another admin is unblocked from the command line on the archive host",
                principal.label()
            ))));
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ServiceError::invalid(
                "--reason is empty: an unblock needs the reason it is recorded with",
            ));
        }
        let latest = now + chrono::Duration::days(MAX_UNBLOCK_DAYS);
        if until <= now || until > latest {
            return Err(ServiceError::invalid(format!(
                "--until {} is not between now and {MAX_UNBLOCK_DAYS} days ahead ({})",
                until.to_rfc3339(),
                latest.to_rfc3339()
            )));
        }
        self.existing_user(admin_user)?;
        let stored = StoredUnblock {
            reason: reason.to_string(),
            until,
            by: actor(principal, self.inner.options.os_user.as_deref()),
            at: now,
        };
        self.access_store()?.update(|book| {
            let account = book.account_mut(admin_user);
            let admin = account
                .grants
                .iter()
                .any(|g| g.role == Role::Admin && g.to_grant().in_force(now));
            if !admin {
                return Err(ServiceError::invalid(format!(
                    "user `{admin_user}` holds no admin grant: only admins are unblocked \
                     (auditors and compliance officers reach content through their scope)"
                )));
            }
            account.unblock = Some(stored.clone());
            Ok(())
        })?;
        self.audit(
            principal,
            Action::AccessUnblock,
            Target::user(admin_user),
            &[
                ("reason", stored.reason.clone()),
                ("until", until.to_rfc3339()),
            ],
        )?;
        Ok(stored.to_unblock())
    }

    /// Clears what is stored for `user` (grants, unblock, password) and revokes
    /// their API tokens, once the user is removed.
    pub(crate) fn forget_account(&self, user: &str) -> Result<()> {
        let now = Self::now();
        self.access_store()?.update(|book| {
            book.accounts.remove(user);
            for token in book.tokens.iter_mut().filter(|t| t.owner == user) {
                token.revoked.get_or_insert(now);
            }
            Ok(())
        })
    }

    /// The caller behind a session of local user `user_name` at `now`: their grants
    /// in force (and the `user` role over their own archive), and their unblock while
    /// it lasts. A user who is unknown or disabled is refused.
    pub fn principal_for(&self, user_name: &str, now: DateTime<Utc>) -> Result<Principal> {
        let refused = || {
            ServiceError::forbidden(format!(
                "account `{user_name}` cannot sign in: there is no such user or it is disabled"
            ))
        };
        let user = self.find_user(user_name)?.ok_or_else(refused)?;
        if !user.enabled {
            return Err(refused());
        }
        let book = self.access_book()?;
        Ok(Principal::Account(account_at(&book, user_name, now)))
    }
}

/// The account `name` as `book` has it at `now`.
fn account_at(book: &AccessBook, name: &str, now: DateTime<Utc>) -> Account {
    let stored = book.accounts.get(name);
    let mut grants: Vec<Grant> = stored
        .map(|a| a.grants.iter().map(StoredGrant::to_grant).collect())
        .unwrap_or_default();
    grants.retain(|g| g.in_force(now));
    if !grants.iter().any(|g| g.role == Role::User) {
        grants.insert(0, Grant::new(Role::User));
    }
    let unblock = stored
        .and_then(|a| a.unblock.as_ref())
        .filter(|u| now < u.until)
        .map(StoredUnblock::to_unblock);
    Account {
        name: name.to_string(),
        grants,
        unblock,
    }
}
