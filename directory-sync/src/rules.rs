//! The rules every user store enforces, shared by [`SqliteUserStore`](crate::SqliteUserStore)
//! and [`MemoryUserStore`](crate::MemoryUserStore): valid names, lower-cased and
//! deduplicated addresses, no user twice in a batch. Uniqueness of addresses and object
//! ids, `has_archive` never cleared and users with an archive never removed are checked
//! by each store against its own state.

use std::collections::HashSet;

use crate::addresses::normalize_address;
use crate::names::validate_name;
use crate::{DirectoryError, LocalUser, UserOrigin};

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
