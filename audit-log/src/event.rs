//! What an audit event says: who ([`AuditEntry::actor`]), did what ([`Action`]), to
//! what ([`Target`]), with which outcome ([`Outcome`]); and what the log adds when it
//! records it (sequence number, time, the hash of the previous event).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What was done (or attempted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// A full-text search of mail (its hits are mail content).
    ContentSearch,
    /// One message's headers and text read.
    ContentShow,
    /// Mail written out of the archive (eml, mbox).
    ContentExport,
    /// Mail put back into a mailbox.
    ContentRestore,
    /// Mail imported into an archive.
    ContentImport,
    /// An administrator's time-limited access to mail content.
    AccessUnblock,
    /// A role given to an account.
    RoleGrant,
    /// A role taken from an account.
    RoleRevoke,
    /// A sign-in to an account (a local password, or the tenant's sign-in).
    SignIn,
    /// An account's local password set or changed.
    PasswordChange,
    /// An API token created for an account.
    TokenCreate,
    /// An API token revoked.
    TokenRevoke,
    /// Installation settings changed (or the data directory set up).
    SettingsChange,
    /// Configuration read: users, profiles or credentials listed or shown.
    ConfigurationRead,
    /// The archive's figures or upkeep: stats, verify, reindex.
    ArchiveMaintenance,
    /// Credentials tried (a token obtained, a mailbox probed).
    CredentialTest,
    /// Credentials added.
    CredentialAdd,
    /// Credentials removed.
    CredentialRemove,
    /// A local user added.
    UserAdd,
    /// A local user removed.
    UserRemove,
    /// Local users synchronised from the directory.
    UserSync,
    /// A profile created.
    ProfileCreate,
    /// A profile removed.
    ProfileRemove,
    /// A profile tested (its mailboxes probed).
    ProfileTest,
    /// A profile run (a summary).
    ProfileRun,
    /// Messages deleted from a source mailbox by a profile's deletion rules (one
    /// event per mailbox and run, naming the mailbox's message ids), or deletion
    /// withheld there by a legal hold.
    SourceDeletion,
    /// A legal hold created.
    HoldCreate,
    /// A legal hold released.
    HoldRelease,
    /// A retention policy added, changed or removed.
    RetentionPolicyChange,
    /// Retention applied (messages past their maximum removed).
    RetentionApply,
    /// A message erased (or restricted) on request.
    Erasure,
    /// The audit log read (listed or exported).
    AuditRead,
    /// An action this version does not know (written by a newer one).
    #[serde(other)]
    Unknown,
}

impl Action {
    /// The name the log stores (`content_show`, ...).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".to_string())
    }

    /// Whether the action reads or moves mail content.
    pub fn is_content(self) -> bool {
        matches!(
            self,
            Action::ContentSearch
                | Action::ContentShow
                | Action::ContentExport
                | Action::ContentRestore
        )
    }
}

/// What an action was about. Every field is optional; an empty target is not stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The archive (local user name) whose mail was touched, or the user changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The messages read, exported or restored (their archive ids); for a
    /// [`Action::SourceDeletion`], the ids the messages had in their mailbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
    /// The named object changed: a profile, credential, hold, policy, account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The search query, when the action ran one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl Target {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Target::default()
    }

    /// A target naming one archive.
    pub fn user(user: impl Into<String>) -> Self {
        Target {
            user: Some(user.into()),
            ..Target::default()
        }
    }

    /// A target naming one object (profile, credential, ...).
    pub fn object(object: impl Into<String>) -> Self {
        Target {
            object: Some(object.into()),
            ..Target::default()
        }
    }

    /// A target naming messages.
    pub fn messages(ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Target {
            messages: ids.into_iter().map(Into::into).collect(),
            ..Target::default()
        }
    }
}

/// Whether the action was allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Allowed (and, for content, about to be handed over).
    Allowed,
    /// Refused.
    Denied {
        /// Why.
        reason: String,
    },
    /// Allowed and recorded first, but the action then failed (a change recorded
    /// before it is made, which did not happen or happened only in part).
    Failed {
        /// What went wrong.
        reason: String,
    },
}

impl Outcome {
    /// A refusal for `reason`.
    pub fn denied(reason: impl Into<String>) -> Self {
        Outcome::Denied {
            reason: reason.into(),
        }
    }

    /// A failure for `reason`.
    pub fn failed(reason: impl Into<String>) -> Self {
        Outcome::Failed {
            reason: reason.into(),
        }
    }
}

/// What a caller asks the log to record; the log adds the sequence number, the time
/// and the link to the previous event ([`AuditEvent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who: the principal, as a description (`the local administrator (OS user alice,
    /// uid 1000)`, `account bob`).
    pub actor: String,
    /// What.
    pub action: Action,
    /// On what.
    pub target: Target,
    /// Allowed or refused.
    pub outcome: Outcome,
    /// Anything else worth keeping (`hits`, `format`, `out`, `reason` of an unblock...).
    pub details: BTreeMap<String, String>,
}

impl AuditEntry {
    /// An allowed `action` by `actor` on `target`, without details.
    pub fn new(actor: impl Into<String>, action: Action, target: Target) -> Self {
        AuditEntry {
            actor: actor.into(),
            action,
            target,
            outcome: Outcome::Allowed,
            details: BTreeMap::new(),
        }
    }

    /// This entry with `outcome`.
    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// This entry with one more detail.
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// One recorded event, as the log stores it (one JSON object per record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the log: 1 for the first event, then one more for each.
    pub seq: u64,
    /// When it was recorded (never earlier than the event before).
    pub time: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What.
    pub action: Action,
    /// On what.
    #[serde(default, skip_serializing_if = "Target::is_empty")]
    pub target: Target,
    /// Allowed or refused.
    pub outcome: Outcome,
    /// Anything else.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// The hash (BLAKE3, hex) of the previous record's JSON; 64 zeros for the first.
    pub prev: String,
}

/// The hash the first event links to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The last event of a log: what the next one links to, and what an auditor notes
/// down (or anchors elsewhere) to detect a later rewrite or truncation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Sequence number of the last event (0: the log is empty).
    pub seq: u64,
    /// Hash (BLAKE3, hex) of its record's JSON ([`GENESIS`] when empty).
    pub hash: String,
    /// When it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
}

impl Head {
    /// The head of an empty log.
    pub fn genesis() -> Self {
        Head {
            seq: 0,
            hash: GENESIS.to_string(),
            time: None,
        }
    }

    /// The event that follows this head, recorded at `now` (or at the head's time if
    /// the clock went back: times never decrease along the chain).
    pub(crate) fn next(&self, entry: AuditEntry, now: DateTime<Utc>) -> AuditEvent {
        let time = self.time.map_or(now, |t| t.max(now));
        AuditEvent {
            seq: self.seq + 1,
            time,
            actor: entry.actor,
            action: entry.action,
            target: entry.target,
            outcome: entry.outcome,
            details: entry.details,
            prev: self.hash.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_have_stable_names_and_unknown_ones_decode() {
        assert_eq!(Action::ContentShow.name(), "content_show");
        assert_eq!(Action::RoleGrant.name(), "role_grant");
        let action: Action = serde_json::from_str("\"launch_rockets\"").unwrap();
        assert_eq!(action, Action::Unknown);
        assert!(Action::ContentExport.is_content());
        assert!(!Action::UserAdd.is_content());
    }

    #[test]
    fn outcome_and_target_encode_compactly() {
        let json = serde_json::to_string(&Outcome::denied("no")).unwrap();
        assert_eq!(json, r#"{"result":"denied","reason":"no"}"#);
        let json = serde_json::to_string(&Target::user("alice")).unwrap();
        assert_eq!(json, r#"{"user":"alice"}"#);
    }

    #[test]
    fn time_never_goes_back_along_the_chain() {
        use chrono::TimeZone;
        let t1 = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let head = Head {
            seq: 4,
            hash: "ab".repeat(32),
            time: Some(t1),
        };
        let event = head.next(AuditEntry::new("a", Action::UserAdd, Target::default()), t0);
        assert_eq!(
            (event.seq, event.time, event.prev.as_str()),
            (5, t1, head.hash.as_str())
        );
    }
}
