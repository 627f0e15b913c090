//! Who is calling, and what they may do and see.
//!
//! The rules (the roles of the design):
//! - [`Principal::LocalAdministrator`], the command line on the archive host, may do
//!   everything and sees every archive.
//! - `user` sees (searches, views, exports) only their own archive.
//! - `auditor` and `compliance` see the archives in their reach (all, or a list), until
//!   the grant's end when it has one.
//! - `admin` manages credentials, users, profiles, runs and the archive's upkeep
//!   (stats, verify, reindex, import), and sees **no mail content** unless an unblock
//!   (a reason and an end) is in force, which opens every archive until it ends.
//!
//! What counts as mail content: a message's bytes and text, and also its metadata
//! (sender, recipients, subject, attachment names), so a search hit is content and
//! an admin without an unblock cannot search. Counts and sizes per archive
//! (`archive stats`) are not content.
//!
//! Not leaking existence: a caller who may not see every archive gets the same
//! [`Forbidden`](crate::ErrorCategory::Forbidden) for a message of someone else's
//! archive and for an id that is not in the archive at all; only a caller who could
//! have seen any message learns that an id is unknown (`NotFound`).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::error::ServiceError;

/// A role of a signed-in account.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Their own archive.
    User,
    /// Read-only access to the archives in reach, and the audit log.
    Auditor,
    /// As auditor, plus retention policies, legal holds and erasure requests.
    Compliance,
    /// Profiles, users, credentials, runs and role grants; no mail content by default.
    Admin,
}

impl Role {
    /// Every role, from the least to the most powerful over the installation.
    pub const ALL: [Role; 4] = [Role::User, Role::Auditor, Role::Compliance, Role::Admin];

    /// The role's name on the command line and in JSON (`user`, `auditor`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Auditor => "auditor",
            Role::Compliance => "compliance",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Role {
    type Err = ServiceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == text)
            .ok_or_else(|| {
                ServiceError::invalid(format!(
                    "unknown role `{text}`: use user, auditor, compliance or admin"
                ))
            })
    }
}

/// Whose archives a grant reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Every archive.
    All,
    /// These archives (local user names).
    Users(BTreeSet<String>),
}

/// One role given to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The role.
    pub role: Role,
    /// Whose archives it reaches (ignored for [`Role::User`]: their own; and for
    /// [`Role::Admin`]: none, or all under an unblock).
    pub reach: Reach,
    /// When the grant ends (`None`: until revoked).
    pub until: Option<DateTime<Utc>>,
}

impl Grant {
    /// A grant of `role` over every archive, without end.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            reach: Reach::All,
            until: None,
        }
    }

    /// Whether the grant holds at `now` (it has no end, or ends later).
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// An admin's time-limited access to mail content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unblock {
    /// Why (recorded with every access).
    pub reason: String,
    /// When it ends.
    pub until: DateTime<Utc>,
}

/// A signed-in account (archive-web, the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The local user name (also the name of their own archive).
    pub name: String,
    /// The account's roles.
    pub grants: Vec<Grant>,
    /// An admin's unblock, when one is in force.
    pub unblock: Option<Unblock>,
}

/// The caller of a use case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The command line on the archive host: full access.
    LocalAdministrator,
    /// A signed-in account.
    Account(Account),
}

/// Which archives a caller may read the mail of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    /// Every archive.
    All,
    /// These archives only (possibly none).
    Only(BTreeSet<String>),
}

impl Visible {
    /// Whether `user`'s archive is visible.
    pub fn contains(&self, user: &str) -> bool {
        match self {
            Visible::All => true,
            Visible::Only(users) => users.contains(user),
        }
    }
}

impl Principal {
    /// A signed-in account holding only the `user` role (their own archive).
    pub fn user(name: impl Into<String>) -> Self {
        Self::Account(Account {
            name: name.into(),
            grants: vec![Grant::new(Role::User)],
            unblock: None,
        })
    }

    /// A signed-in account with these grants and no unblock.
    pub fn with_grants(name: impl Into<String>, grants: Vec<Grant>) -> Self {
        Self::Account(Account {
            name: name.into(),
            grants,
            unblock: None,
        })
    }

    /// Who this is, for messages and audit (`local administrator`, `account alice`).
    pub fn label(&self) -> String {
        match self {
            Principal::LocalAdministrator => "the local administrator".to_string(),
            Principal::Account(a) => format!("account `{}`", a.name),
        }
    }

    /// Whether the caller holds `role` at `now` (the local administrator holds every role).
    pub fn has_role(&self, role: Role, now: DateTime<Utc>) -> bool {
        match self {
            Principal::LocalAdministrator => true,
            Principal::Account(a) => a.grants.iter().any(|g| g.role == role && g.in_force(now)),
        }
    }

    /// The archives whose mail this caller may read at `now`.
    pub fn visible(&self, now: DateTime<Utc>) -> Visible {
        let account = match self {
            Principal::LocalAdministrator => return Visible::All,
            Principal::Account(a) => a,
        };
        let unblocked = account.unblock.as_ref().is_some_and(|u| now < u.until)
            && self.has_role(Role::Admin, now);
        if unblocked {
            return Visible::All;
        }
        let mut users = BTreeSet::new();
        for grant in account.grants.iter().filter(|g| g.in_force(now)) {
            match (grant.role, &grant.reach) {
                (Role::User, _) => {
                    users.insert(account.name.clone());
                }
                (Role::Auditor | Role::Compliance, Reach::All) => return Visible::All,
                (Role::Auditor | Role::Compliance, Reach::Users(list)) => {
                    users.extend(list.iter().cloned());
                }
                (Role::Admin, _) => {}
            }
        }
        Visible::Only(users)
    }

    /// Refuses unless the caller manages the installation (local administrator or
    /// `admin`): credentials, users, profiles, runs, import and the archive's upkeep.
    pub(crate) fn require_admin(&self, what: &str, now: DateTime<Utc>) -> Result<(), ServiceError> {
        if self.has_role(Role::Admin, now) {
            Ok(())
        } else {
            Err(ServiceError::forbidden(format!(
                "{} may not {what}: it needs the admin role",
                self.label()
            )))
        }
    }

    /// Refuses unless the caller may read the audit log (auditor, compliance, and the
    /// local administrator).
    pub(crate) fn require_audit_reader(
        &self,
        what: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        if [Role::Auditor, Role::Compliance]
            .iter()
            .any(|r| self.has_role(*r, now))
        {
            Ok(())
        } else {
            Err(ServiceError::forbidden(format!(
                "{} may not {what}: it needs the auditor or compliance role",
                self.label()
            )))
        }
    }

    /// Refuses unless the caller manages retention, legal holds and erasure
    /// (`compliance`, and the local administrator).
    pub(crate) fn require_compliance(
        &self,
        what: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        if self.has_role(Role::Compliance, now) {
            Ok(())
        } else {
            Err(ServiceError::forbidden(format!(
                "{} may not {what}: it needs the compliance role",
                self.label()
            )))
        }
    }

    /// Refuses unless the caller may see the archive's figures (admin, auditor, compliance).
    pub(crate) fn require_overview(&self, now: DateTime<Utc>) -> Result<(), ServiceError> {
        if [Role::Admin, Role::Auditor, Role::Compliance]
            .iter()
            .any(|r| self.has_role(*r, now))
        {
            Ok(())
        } else {
            Err(ServiceError::forbidden(format!(
                "{} may not see the archive's figures: it needs the admin, auditor or compliance role",
                self.label()
            )))
        }
    }

    /// Refuses unless `user`'s archive is visible to the caller.
    pub(crate) fn require_archive(
        &self,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        if self.visible(now).contains(user) {
            Ok(())
        } else {
            Err(self.refused_archive(user))
        }
    }

    pub(crate) fn refused_archive(&self, user: &str) -> ServiceError {
        ServiceError::forbidden(format!(
            "{} may not read the archive of `{user}`",
            self.label()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hour: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2026, 3, 1, hour, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn only(names: &[&str]) -> Visible {
        Visible::Only(names.iter().map(|n| (*n).to_string()).collect())
    }

    fn check(principal: Principal, now: DateTime<Utc>, expected: Visible) {
        assert_eq!(principal.visible(now), expected, "{principal:?}");
    }

    #[test]
    fn each_role_sees_what_the_design_says() {
        let list: BTreeSet<String> = ["bob".to_string(), "carol".to_string()].into();
        let admin = Grant::new(Role::Admin);
        check(Principal::LocalAdministrator, at(1), Visible::All);
        check(Principal::user("alice"), at(1), only(&["alice"]));
        check(
            Principal::with_grants("a", vec![Grant::new(Role::Auditor)]),
            at(1),
            Visible::All,
        );
        check(
            Principal::with_grants(
                "a",
                vec![Grant {
                    role: Role::Compliance,
                    reach: Reach::Users(list.clone()),
                    until: None,
                }],
            ),
            at(1),
            only(&["bob", "carol"]),
        );
        // A grant that ended reaches nothing.
        check(
            Principal::with_grants(
                "a",
                vec![Grant {
                    role: Role::Auditor,
                    reach: Reach::All,
                    until: Some(at(2)),
                }],
            ),
            at(3),
            only(&[]),
        );
        // An admin sees no content, unless unblocked, and only until the unblock ends.
        check(
            Principal::with_grants("root", vec![admin.clone()]),
            at(1),
            only(&[]),
        );
        let unblocked = Principal::Account(Account {
            name: "root".into(),
            grants: vec![admin.clone()],
            unblock: Some(Unblock {
                reason: "case 42".into(),
                until: at(5),
            }),
        });
        check(unblocked.clone(), at(4), Visible::All);
        check(unblocked, at(5), only(&[]));
        // An unblock without the admin role opens nothing.
        let mut user = Principal::user("alice");
        if let Principal::Account(a) = &mut user {
            a.unblock = Some(Unblock {
                reason: "x".into(),
                until: at(9),
            });
        }
        check(user, at(1), only(&["alice"]));
    }

    #[test]
    fn management_needs_the_admin_role() {
        let now = at(1);
        assert!(
            Principal::LocalAdministrator
                .require_admin("x", now)
                .is_ok()
        );
        assert!(
            Principal::with_grants("root", vec![Grant::new(Role::Admin)])
                .require_admin("x", now)
                .is_ok()
        );
        for p in [
            Principal::user("alice"),
            Principal::with_grants("a", vec![Grant::new(Role::Auditor)]),
        ] {
            let e = p.require_admin("add credentials", now).unwrap_err();
            assert_eq!(e.category(), crate::ErrorCategory::Forbidden);
            assert!(e.to_string().contains("add credentials"), "{e}");
        }
        assert!(Principal::user("alice").require_overview(now).is_err());
    }
}
