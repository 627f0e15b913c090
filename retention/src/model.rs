//! What governance is made of: retention policies, legal holds, erasure requests, and
//! the view of an archive entry they are judged against.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::RetentionError;

/// One message in one user's archive: what retention keeps or lets go.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntryKey {
    /// Archive owner (local user name).
    pub user: String,
    /// Content address of the message.
    pub id: String,
    /// Folder path inside the archive.
    pub folder: String,
}

/// An archive entry with the dates retention counts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryView {
    /// Which entry.
    pub key: EntryKey,
    /// When the message was received, when known.
    pub received: Option<DateTime<Utc>>,
    /// When it entered the archive.
    pub archived: DateTime<Utc>,
    /// Bytes the message's content takes (its raw size).
    pub size: u64,
}

impl EntryView {
    /// The date a policy with this reference counts from. A message without a received
    /// date counts from its archive date, which is never earlier: the entry is kept
    /// longer, never shorter.
    pub fn reference_date(&self, reference: Reference) -> DateTime<Utc> {
        match reference {
            Reference::Received => self.received.unwrap_or(self.archived),
            Reference::Archived => self.archived,
        }
    }
}

/// The date a retention period counts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reference {
    /// The message's received date (the default).
    #[default]
    Received,
    /// The date it entered the archive.
    Archived,
}

impl Reference {
    /// Parses `received` or `archived`.
    pub fn from_name(name: &str) -> Result<Reference, RetentionError> {
        match name {
            "received" => Ok(Reference::Received),
            "archived" => Ok(Reference::Archived),
            other => Err(RetentionError::Invalid {
                field: "reference".into(),
                reason: format!("`{other}` is neither `received` nor `archived`"),
            }),
        }
    }
}

/// Which entries a policy or a hold covers. Every given criterion must match; an empty
/// list or `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// Archive owners (empty: every user).
    #[serde(default)]
    pub users: Vec<String>,
    /// Folder paths; an entry matches a folder and everything below it (empty: every
    /// folder).
    #[serde(default)]
    pub folders: Vec<String>,
    /// A full-text query, answered by the archive's search.
    #[serde(default)]
    pub query: Option<String>,
    /// Received on or after (by the entry's reference date when it has no received date).
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    /// Received before.
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
}

impl Selector {
    /// Whether the entry matches every criterion but the query (which only the archive
    /// can answer: `query_match` says whether it matched, when there is a query).
    pub fn matches(&self, entry: &EntryView, query_match: impl FnOnce() -> bool) -> bool {
        let key = &entry.key;
        if !self.users.is_empty() && !self.users.iter().any(|u| u == &key.user) {
            return false;
        }
        if !self.folders.is_empty() && !self.folders.iter().any(|f| folder_within(&key.folder, f)) {
            return false;
        }
        let date = entry.reference_date(Reference::Received);
        if self.from.is_some_and(|from| date < from) || self.to.is_some_and(|to| date >= to) {
            return false;
        }
        self.query.is_none() || query_match()
    }
}

/// Whether `folder` is `scope` or lies below it (`Inbox/Projects` is within `Inbox`,
/// `Inboxes` is not).
pub fn folder_within(folder: &str, scope: &str) -> bool {
    let scope = scope.trim_end_matches('/');
    folder == scope
        || (folder.len() > scope.len()
            && folder.starts_with(scope)
            && folder.as_bytes().get(scope.len()) == Some(&b'/'))
}

/// A retention policy: entries it covers are kept at least `min_days` and, when
/// `max_days` is set, expunged once older than that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Unique name.
    pub name: String,
    /// Minimum retention in days: nothing it covers leaves the archive sooner.
    pub min_days: u32,
    /// Maximum retention in days: what it covers leaves once older (none: kept forever).
    pub max_days: Option<u32>,
    /// What it covers.
    #[serde(default)]
    pub scope: Selector,
    /// The date the days count from.
    #[serde(default)]
    pub reference: Reference,
    /// When it was created.
    pub created: DateTime<Utc>,
}

impl Policy {
    /// Checks the policy's own consistency: a name of letters, digits, `-`, `_` and `.`,
    /// a maximum not below the minimum, a date range in order.
    pub fn validate(&self) -> Result<(), RetentionError> {
        validate_name("policy name", &self.name)?;
        if let Some(max) = self.max_days
            && max < self.min_days
        {
            return Err(RetentionError::Invalid {
                field: format!("policy {}: max_days", self.name),
                reason: format!("{max} is below min_days {}", self.min_days),
            });
        }
        validate_range(&self.name, &self.scope)
    }

    /// When the minimum ends for this entry.
    pub fn minimum_end(&self, entry: &EntryView) -> DateTime<Utc> {
        add_days(entry.reference_date(self.reference), self.min_days)
    }

    /// When the maximum ends for this entry (`None`: never).
    pub fn maximum_end(&self, entry: &EntryView) -> Option<DateTime<Utc>> {
        self.max_days
            .map(|days| add_days(entry.reference_date(self.reference), days))
    }
}

/// A legal hold: a named case that keeps every entry it covers, whatever retention or
/// erasure say, until it is released with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The case name (unique).
    pub case: String,
    /// Why the hold was placed.
    pub reason: String,
    /// What it covers (users, query, date range; folders too).
    #[serde(default)]
    pub scope: Selector,
    /// When it was placed.
    pub created: DateTime<Utc>,
    /// Who placed it.
    pub created_by: String,
    /// Set once released.
    #[serde(default)]
    pub released: Option<Release>,
}

impl Hold {
    /// Whether the hold still holds.
    pub fn is_active(&self) -> bool {
        self.released.is_none()
    }

    /// Checks the case name, the reason and the date range.
    pub fn validate(&self) -> Result<(), RetentionError> {
        validate_name("case name", &self.case)?;
        if self.reason.trim().is_empty() {
            return Err(RetentionError::Invalid {
                field: format!("hold {}: reason", self.case),
                reason: "a hold needs a reason".into(),
            });
        }
        validate_range(&self.case, &self.scope)
    }
}

/// How and why a hold ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub by: String,
    /// Why (required).
    pub reason: String,
}

/// A GDPR erasure request that could not be carried out yet: the entry stays
/// *restricted* (hidden from all but auditors and compliance officers) until minimum
/// retention has passed and no hold covers it, then it is erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureRequest {
    /// The entry to erase.
    pub key: EntryKey,
    /// Why (required).
    pub reason: String,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub requested: DateTime<Utc>,
}

fn add_days(date: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    date.checked_add_signed(Duration::days(i64::from(days)))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn validate_name(what: &str, name: &str) -> Result<(), RetentionError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(RetentionError::Invalid {
            field: what.into(),
            reason: format!(
                "`{name}` must be 1 to 128 letters, digits, `-`, `_` or `.` characters"
            ),
        })
    }
}

fn validate_range(name: &str, scope: &Selector) -> Result<(), RetentionError> {
    if let (Some(from), Some(to)) = (scope.from, scope.to)
        && to <= from
    {
        return Err(RetentionError::Invalid {
            field: format!("{name}: date range"),
            reason: format!("`to` ({to}) is not after `from` ({from})"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_match_themselves_and_below_only() {
        for (folder, scope, expected) in [
            ("Inbox", "Inbox", true),
            ("Inbox/Projects", "Inbox", true),
            ("Inbox/Projects", "Inbox/", true),
            ("Inboxes", "Inbox", false),
            ("Sent Items", "Inbox", false),
            ("Inbox", "Inbox/Projects", false),
        ] {
            assert_eq!(
                folder_within(folder, scope),
                expected,
                "{folder} in {scope}"
            );
        }
    }
}
