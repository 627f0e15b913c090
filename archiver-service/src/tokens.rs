//! API tokens (`Authorization: Bearer m365a_...`): created by an account for itself
//! (or by the local administrator for an account), shown once, stored only as the
//! SHA-256 of the token beside its public id, refused once expired or revoked.
//!
//! A token acts as its owner, whose grants are read afresh at every use, so it never
//! exceeds them; without the `admin` scope it also loses the owner's admin role and
//! unblock. The scopes it carries are handed to the web layer, which checks them per
//! route.

use audit_log::{Action, Target};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::Service;
use crate::access_store::{ApiScope, StoredToken, hex};
use crate::error::ServiceError;
use crate::principal::{Principal, Role};

type Result<T> = std::result::Result<T, ServiceError>;

/// How every API token starts.
pub const TOKEN_PREFIX: &str = "m365a_";

/// How many characters of the random part the public id keeps.
const ID_CHARS: usize = 8;

/// An API token as lists show it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// Its public id (`m365a_` and the token's first characters), used to revoke it.
    pub id: String,
    /// The account it acts as.
    pub owner: String,
    /// The name its owner gave it.
    pub name: String,
    /// What it may be used for.
    pub scopes: Vec<ApiScope>,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it ends (`None`: until revoked).
    pub until: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked: Option<DateTime<Utc>>,
}

fn info(token: &StoredToken) -> TokenInfo {
    TokenInfo {
        id: token.id.clone(),
        owner: token.owner.clone(),
        name: token.name.clone(),
        scopes: token.scopes.clone(),
        created: token.created,
        until: token.until,
        revoked: token.revoked,
    }
}

fn token_digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn check_token_name(name: &str) -> Result<()> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ' '));
    if fine {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "token name `{name}`: use 1 to 64 letters, digits, spaces, `.`, `_` or `-`"
        )))
    }
}

impl Service {
    /// Creates an API token for the caller's own account; the token is returned once
    /// and never again (`m365a_` and 32 random bytes, base64url).
    pub fn create_api_token(
        &self,
        principal: &Principal,
        name: &str,
        scopes: Vec<ApiScope>,
        until: Option<DateTime<Utc>>,
    ) -> Result<(TokenInfo, SecretString)> {
        let Principal::Account(account) = principal else {
            return Err(ServiceError::invalid(
                "API tokens act as an account: name the account the token is for",
            ));
        };
        let owner = account.name.clone();
        self.create_api_token_for(principal, &owner, name, scopes, until)
    }

    /// Creates an API token acting as `owner`: the local administrator for any
    /// account, an account for itself only.
    pub fn create_api_token_for(
        &self,
        principal: &Principal,
        owner: &str,
        name: &str,
        mut scopes: Vec<ApiScope>,
        until: Option<DateTime<Utc>>,
    ) -> Result<(TokenInfo, SecretString)> {
        self.own_account_only(principal, owner, "create API tokens", Action::TokenCreate)?;
        check_token_name(name)?;
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(ServiceError::invalid(
                "an API token needs at least one scope (read, export, restore, governance, audit, admin)",
            ));
        }
        let now = Self::now();
        if let Some(until) = until
            && until <= now
        {
            return Err(ServiceError::invalid(format!(
                "--until {} has passed: a token must end in the future",
                until.to_rfc3339()
            )));
        }
        self.principal_for(owner, now)?;
        let mut random = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
        let secret = format!("{TOKEN_PREFIX}{body}");
        let stored = StoredToken {
            id: format!("{TOKEN_PREFIX}{}", &body[..ID_CHARS]),
            owner: owner.to_string(),
            name: name.to_string(),
            scopes,
            created: now,
            until,
            revoked: None,
            sha256: token_digest(&secret),
        };
        self.access_store()?.update(|book| {
            let taken = book
                .tokens
                .iter()
                .any(|t| t.revoked.is_none() && t.owner == owner && t.name == name);
            if taken {
                return Err(ServiceError::conflict(format!(
                    "`{owner}` already has an API token named `{name}`"
                )));
            }
            book.tokens.push(stored.clone());
            Ok(())
        })?;
        let scope_names: Vec<&str> = stored.scopes.iter().map(|s| s.name()).collect();
        self.audit(
            principal,
            Action::TokenCreate,
            Target {
                user: Some(owner.to_string()),
                object: Some(stored.id.clone()),
                ..Target::default()
            },
            &[
                ("name", name.to_string()),
                ("scopes", scope_names.join(",")),
            ],
        )?;
        Ok((info(&stored), SecretString::from(secret)))
    }

    /// The API tokens the caller may see: every token for the local administrator
    /// and admins, else the caller's own.
    pub fn list_api_tokens(&self, principal: &Principal) -> Result<Vec<TokenInfo>> {
        let all = principal.has_role(Role::Admin, Self::now());
        let book = self.access_book()?;
        Ok(book
            .tokens
            .iter()
            .filter(|t| all || matches!(principal, Principal::Account(a) if a.name == t.owner))
            .map(info)
            .collect())
    }

    /// Revokes the token with public id `id`: its owner, an admin or the local
    /// administrator. Takes effect on its next use.
    pub fn revoke_api_token(&self, principal: &Principal, id: &str) -> Result<TokenInfo> {
        let all = principal.has_role(Role::Admin, Self::now());
        let now = Self::now();
        let revoked = self.access_store()?.update(|book| {
            let token = book
                .tokens
                .iter_mut()
                .filter(|t| t.revoked.is_none())
                .find(|t| {
                    t.id == id
                        && (all || matches!(principal, Principal::Account(a) if a.name == t.owner))
                })
                .ok_or_else(|| {
                    ServiceError::not_found(format!(
                        "no API token `{id}` in force that you may revoke (see the token list)"
                    ))
                })?;
            token.revoked = Some(now);
            Ok(info(token))
        })?;
        self.audit(
            principal,
            Action::TokenRevoke,
            Target {
                user: Some(revoked.owner.clone()),
                object: Some(revoked.id.clone()),
                ..Target::default()
            },
            &[],
        )?;
        Ok(revoked)
    }

    /// The caller behind the API token `secret` at `now`, and the token's scopes.
    /// The token's hash is compared in constant time; an unknown, expired or revoked
    /// token, or one whose owner is disabled, is refused (and recorded).
    pub fn principal_for_api_token(
        &self,
        secret: &SecretString,
        now: DateTime<Utc>,
    ) -> Result<(Principal, Vec<ApiScope>)> {
        let secret = secret.expose_secret();
        let refuse = |why: &str| self.refused_sign_in("an API token", "api_token", why);
        if !secret.starts_with(TOKEN_PREFIX) {
            return Err(refuse("not an API token of this archive"));
        }
        let digest = token_digest(secret);
        let book = self.access_book()?;
        let mut found: Option<&StoredToken> = None;
        for token in &book.tokens {
            if bool::from(token.sha256.as_bytes().ct_eq(digest.as_bytes())) {
                found = Some(token);
            }
        }
        let Some(token) = found else {
            return Err(refuse("unknown API token"));
        };
        if token.revoked.is_some() {
            return Err(refuse(&format!("API token {} was revoked", token.id)));
        }
        if token.until.is_some_and(|until| until <= now) {
            return Err(refuse(&format!("API token {} has expired", token.id)));
        }
        let mut principal = self.principal_for(&token.owner, now)?;
        if !token.scopes.contains(&ApiScope::Admin)
            && let Principal::Account(account) = &mut principal
        {
            account.grants.retain(|g| g.role != Role::Admin);
            account.unblock = None;
        }
        Ok((principal, token.scopes.clone()))
    }
}
