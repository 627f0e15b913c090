//! Local users (archive owners): synchronised from the tenant's directory or added
//! by hand. A sync never deletes anyone, and a user with an archive is never
//! removed. Managing them needs the admin role.

use audit_log::{Action, Target};
use directory_sync::{LocalUser, Role as UserRole, SyncOptions, SyncReport, UserOrigin};

use crate::datadir::Access;
use crate::error::{ResultExt, ServiceError};
use crate::wiring;
use crate::{Principal, Service};

type Result<T> = std::result::Result<T, ServiceError>;

impl Service {
    /// Synchronises the local users from the directory of credential `credentials`
    /// (`users sync`). The credential must exist before anything is written.
    pub async fn sync_users(
        &self,
        principal: &Principal,
        credentials: &str,
        options: &SyncOptions,
    ) -> Result<SyncReport> {
        self.admin_only(
            principal,
            "synchronise users",
            Action::UserSync,
            Target::object(credentials),
        )?;
        let existing = self
            .open(Access::Read)
            .context_with(|| format!("no credential named `{credentials}`"))?;
        wiring::load_credential(&existing, credentials)?;
        let dir = self.open(Access::Write)?;
        let credential = wiring::load_credential(&dir, credentials)?;
        let connection = wiring::connect(&credential, self.secrets())?;
        let directory = connection.directory_source()?;
        let store = wiring::open_user_store(&dir)?;
        let report = directory_sync::sync(directory.as_ref(), store.as_ref(), options)
            .await
            .context_with(|| format!("directory sync with credential `{credentials}`"))?;
        self.audit(
            principal,
            Action::UserSync,
            Target::object(credentials),
            &[
                ("created", report.created.join(",")),
                ("updated", report.updated.join(",")),
                ("deactivated", report.deactivated.join(",")),
            ],
        )?;
        Ok(report)
    }

    /// The local users (`users list`). Read-only: works on a full disk and creates nothing.
    pub fn list_users(&self, principal: &Principal) -> Result<Vec<LocalUser>> {
        self.admin_only(
            principal,
            "list users",
            Action::ConfigurationRead,
            Target::default(),
        )?;
        if !self.data_dir().is_dir() {
            return Ok(Vec::new());
        }
        let dir = self.open(Access::Read)?;
        match wiring::open_user_store_read_only(&dir)? {
            Some(store) => Ok(store.list()?),
            None => Ok(Vec::new()),
        }
    }

    /// Adds a user by hand: the first address primary, the others aliases (`users add`).
    pub fn add_user(
        &self,
        principal: &Principal,
        name: &str,
        emails: &[String],
    ) -> Result<LocalUser> {
        self.admin_only(principal, "add users", Action::UserAdd, Target::user(name))?;
        if let Err(why) = directory_sync::validate_name(name) {
            return Err(ServiceError::invalid(format!("user name `{name}`: {why}")));
        }
        let mut addresses = Vec::new();
        for email in emails {
            let Some(address) = directory_sync::normalize_address(email) else {
                return Err(ServiceError::invalid(format!(
                    "--email `{email}` is not a mail address"
                )));
            };
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
        let dir = self.open(Access::Write)?;
        let store = wiring::open_user_store(&dir)?;
        if store.get(name)?.is_some() {
            return Err(ServiceError::conflict(format!(
                "a user named `{name}` already exists"
            )));
        }
        for address in &addresses {
            if let Some(owner) = store.find_by_address(address)? {
                return Err(ServiceError::conflict(format!(
                    "address {address} already belongs to user `{}`",
                    owner.name
                )));
            }
        }
        let user = LocalUser {
            name: name.to_string(),
            display_name: None,
            email: addresses.first().cloned(),
            aliases: addresses.iter().skip(1).cloned().collect(),
            origin: UserOrigin::Manual,
            enabled: true,
            role: UserRole::User,
            has_archive: false,
            kind: None,
        };
        store.put(&user)?;
        self.audit(
            principal,
            Action::UserAdd,
            Target::user(name),
            &[("email", addresses.join(","))],
        )?;
        Ok(user)
    }

    /// Removes a user who has no archive (`users remove`).
    pub fn remove_user(&self, principal: &Principal, name: &str) -> Result<()> {
        self.admin_only(
            principal,
            "remove users",
            Action::UserRemove,
            Target::user(name),
        )?;
        let missing = || ServiceError::not_found(format!("no user named `{name}`"));
        if !self.data_dir().is_dir() {
            return Err(missing());
        }
        let dir = self.open(Access::Write)?;
        if !wiring::has_user_store(&dir) {
            return Err(missing());
        }
        let store = wiring::open_user_store(&dir)?;
        if store.get(name)?.is_none() {
            return Err(ServiceError::not_found(format!(
                "no user named `{name}` (see `users list`)"
            )));
        }
        store.remove(name)?;
        // A user added later under the same name starts with nothing of this one's.
        self.forget_account(name).context_with(|| {
            format!("user `{name}` was removed, but its grants, password and API tokens could not be cleared")
        })?;
        self.audit(principal, Action::UserRemove, Target::user(name), &[])
    }
}
