//! Local passwords and sign-in: a local password (argon2id), or the tenant's own
//! sign-in, matched to a synced user by Entra object id and never by address (an
//! address can be renamed or reused; the object id cannot).
//!
//! A failed local sign-in takes as long and says the same whether the user is
//! unknown, has no password or typed a wrong one: an unknown user's password is
//! checked against a dummy hash. Every sign-in, good or bad, is an audit event.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use audit_log::{Action, Outcome, Target};
use chrono::{DateTime, Utc};

use crate::error::ServiceError;
use crate::principal::Principal;
use crate::{Service, wiring};

type Result<T> = std::result::Result<T, ServiceError>;

/// The shortest local password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// The longest local password accepted, in bytes (hashing is costly by design).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The refusal of every failed local sign-in, whatever the cause.
const BAD_LOCAL_SIGN_IN: &str = "wrong user name or password";

/// Refuses a password too short or too long to be a local password.
pub fn check_password(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(ServiceError::invalid(format!(
            "the password has {chars} characters: a local password needs at least {MIN_PASSWORD_CHARS}"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ServiceError::invalid(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The argon2id PHC string of `password`, with a fresh salt.
fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ServiceError::invalid(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches the PHC string `phc` (a malformed one matches nothing).
fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash that no password is known for, checked when there is nothing to check.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password("a password nobody uses, hashed once per process").unwrap_or_default()
    })
}

/// `name` as an audit actor, cut to a sensible length (it comes from the sign-in form).
fn claimed(name: &str) -> Principal {
    Principal::user(name.chars().take(128).collect::<String>())
}

impl Service {
    /// Sets the local password of `user` (`users add --password-file`): the local
    /// administrator for anyone, an account for itself only (an admin who could set
    /// someone else's password could sign in as them and read their mail).
    pub fn set_local_password(
        &self,
        principal: &Principal,
        user: &str,
        password: &str,
    ) -> Result<()> {
        self.own_account_only(principal, user, "set the password", Action::PasswordChange)?;
        check_password(password)?;
        if self.find_user(user)?.is_none() {
            return Err(ServiceError::not_found(format!(
                "no user named `{user}` (see `users list`)"
            )));
        }
        let phc = hash_password(password)?;
        self.access_store()?.update(|book| {
            book.account_mut(user).password = Some(phc);
            Ok(())
        })?;
        self.audit(principal, Action::PasswordChange, Target::user(user), &[])
    }

    /// Signs in a local account with its password at `now` (the web's `POST
    /// /auth/local`). Unknown user, no password and wrong password all give the same
    /// `Forbidden` after the same work; a disabled user is refused too.
    pub fn sign_in_local(
        &self,
        username: &str,
        password: &str,
        now: DateTime<Utc>,
    ) -> Result<Principal> {
        let book = self.access_book()?;
        let user = self.find_user(username)?;
        let phc = user
            .as_ref()
            .and_then(|_| book.accounts.get(username))
            .and_then(|a| a.password.as_deref());
        let matches = verify_password(phc.unwrap_or(dummy_hash()), password) && phc.is_some();
        let user = match user {
            Some(user) if matches => user,
            _ => return Err(self.refused_sign_in(username, "local", BAD_LOCAL_SIGN_IN)),
        };
        if !user.enabled {
            return Err(self.refused_sign_in(
                username,
                "local",
                &format!("account `{username}` is disabled"),
            ));
        }
        self.signed_in(username, now, &[("method", "local".to_string())])
    }

    /// Signs in the directory user `object_id` of tenant `tenant_id` (claims of a
    /// verified ID token) at `now`. The user is found by object id only; a tenant
    /// other than `expected_tenant` (the tenant id of the web's credential), an
    /// unknown object id or a disabled user is refused.
    pub fn sign_in_entra(
        &self,
        expected_tenant: &str,
        tenant_id: &str,
        object_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Principal> {
        let label = format!("object {}", object_id.chars().take(64).collect::<String>());
        if !tenant_id
            .trim()
            .eq_ignore_ascii_case(expected_tenant.trim())
        {
            return Err(self.refused_sign_in(
                &label,
                "entra",
                &format!("the sign-in came from tenant {tenant_id}, not the archive's tenant"),
            ));
        }
        let user = if self.data_dir().is_dir() {
            let dir = self.open(crate::datadir::Access::Read)?;
            match wiring::open_user_store_read_only(&dir)? {
                Some(store) => store.find_by_object_id(object_id)?,
                None => None,
            }
        } else {
            None
        };
        let Some(user) = user else {
            return Err(self.refused_sign_in(
                &label,
                "entra",
                "this directory user has no account in the archive (run `users sync`)",
            ));
        };
        if !user.enabled {
            return Err(self.refused_sign_in(
                &user.name,
                "entra",
                &format!("account `{}` is disabled", user.name),
            ));
        }
        self.signed_in(
            &user.name,
            now,
            &[
                ("method", "entra".to_string()),
                ("object_id", object_id.to_string()),
            ],
        )
    }

    /// The principal of `username`, its sign-in recorded (fails when it cannot be).
    fn signed_in(
        &self,
        username: &str,
        now: DateTime<Utc>,
        details: &[(&str, String)],
    ) -> Result<Principal> {
        let principal = self.principal_for(username, now)?;
        self.audit(&principal, Action::SignIn, Target::user(username), details)?;
        Ok(principal)
    }

    /// Records a refused sign-in of `who` (best effort) and gives the refusal back.
    pub(crate) fn refused_sign_in(&self, who: &str, method: &str, why: &str) -> ServiceError {
        let error = ServiceError::forbidden(why.to_string());
        if let Err(e) = self.record(
            &claimed(who),
            Action::SignIn,
            Target::default(),
            &[("method", method.to_string())],
            Outcome::denied(why.to_string()),
        ) {
            tracing::warn!(error = %crate::chain(&e), "a refused sign-in could not be recorded in the audit log");
        }
        error
    }
}
