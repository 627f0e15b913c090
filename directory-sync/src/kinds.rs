//! Mailbox kinds: what a mailbox is for, as Exchange classifies it
//! (`mailboxSettings.userPurpose`), reduced to what an archive tells apart, and sets
//! of kinds ([`MailboxKinds`]) as a sync and a profile choose them.
//!
//! Graph's `userPurpose` has seven values; they map to four kinds:
//! - `user` and `linked` are [`MailboxKind::User`]: a linked mailbox is a person's
//!   mailbox whose account lives in another (account) forest, so it is archived like
//!   any user's;
//! - `shared`, `room` and `equipment` map to their own kinds;
//! - `others` and `unknown` (Exchange could not say, or a type Graph does not name)
//!   are [`MailboxKind::User`]: archiving a mailbox of an unclear type is better than
//!   silently missing its mail, and the rules for user accounts (a disabled account
//!   is only synchronised when disabled users are included) still apply to it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a mailbox is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxKind {
    /// A person's mailbox (also Exchange's `linked`, `others` and `unknown`).
    User,
    /// A shared mailbox (info@, support@, a departed employee's converted mailbox);
    /// its account is disabled in the directory by design.
    Shared,
    /// A room's mailbox (meeting requests).
    Room,
    /// An equipment mailbox (a projector, a car).
    Equipment,
}

impl MailboxKind {
    /// Every kind, in this order.
    pub const ALL: [MailboxKind; 4] = [
        MailboxKind::User,
        MailboxKind::Shared,
        MailboxKind::Room,
        MailboxKind::Equipment,
    ];

    /// The kind's name: `user`, `shared`, `room` or `equipment`.
    pub fn as_str(self) -> &'static str {
        match self {
            MailboxKind::User => "user",
            MailboxKind::Shared => "shared",
            MailboxKind::Room => "room",
            MailboxKind::Equipment => "equipment",
        }
    }

    /// The kind named `name` (exactly as [`as_str`](Self::as_str) writes it).
    pub fn from_name(name: &str) -> Option<MailboxKind> {
        MailboxKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The kind of a mailbox whose `mailboxSettings.userPurpose` is `purpose`
    /// (case-insensitive; see the module documentation for the mapping).
    pub fn from_user_purpose(purpose: &str) -> MailboxKind {
        match purpose.trim().to_ascii_lowercase().as_str() {
            "shared" => MailboxKind::Shared,
            "room" => MailboxKind::Room,
            "equipment" => MailboxKind::Equipment,
            // user, linked, others, unknown and anything new.
            _ => MailboxKind::User,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for MailboxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MailboxKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MailboxKind::from_name(s).ok_or_else(|| {
            format!("{s:?} is not a mailbox kind: expected one of \"user\", \"shared\", \"room\", \"equipment\"")
        })
    }
}

/// A set of mailbox kinds. The default is `user` and `shared`: people's and shared
/// mailboxes, not rooms or equipment. Serialised as a list of names.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MailboxKinds(u8);

impl MailboxKinds {
    /// No kind.
    pub const fn empty() -> Self {
        MailboxKinds(0)
    }

    /// Every kind.
    pub fn all() -> Self {
        MailboxKind::ALL.into_iter().collect()
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: MailboxKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The set with `kind` added.
    pub fn with(self, kind: MailboxKind) -> Self {
        MailboxKinds(self.0 | kind.bit())
    }

    /// The kinds in either set.
    pub fn union(self, other: MailboxKinds) -> Self {
        MailboxKinds(self.0 | other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, in [`MailboxKind::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = MailboxKind> {
        MailboxKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }

    /// The names of the kinds, in order (what a profile file holds).
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(MailboxKind::as_str).collect()
    }
}

impl Default for MailboxKinds {
    fn default() -> Self {
        MailboxKinds::empty()
            .with(MailboxKind::User)
            .with(MailboxKind::Shared)
    }
}

impl FromIterator<MailboxKind> for MailboxKinds {
    fn from_iter<I: IntoIterator<Item = MailboxKind>>(iter: I) -> Self {
        iter.into_iter()
            .fold(MailboxKinds::empty(), MailboxKinds::with)
    }
}

impl fmt::Debug for MailboxKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Display for MailboxKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(", "))
    }
}

impl Serialize for MailboxKinds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for MailboxKinds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<MailboxKind>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// What a lookup of mailbox kinds found ([`DirectorySource::mailbox_kinds`](crate::DirectorySource::mailbox_kinds)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindLookup {
    /// The kind of each directory object that could be classified. An object the
    /// service has no mailbox settings for (no Exchange Online mailbox, or gone) is a
    /// `user`. Objects left out could not be classified now and are asked again at
    /// the next sync.
    pub kinds: BTreeMap<String, MailboxKind>,
    /// Why some objects could not be classified (for the sync report), e.g. the app
    /// lacks the MailboxSettings.Read permission.
    pub warnings: Vec<String>,
}

/// The warning of a lookup the service refused for lack of permission.
pub(crate) fn permission_warning(detail: &str) -> String {
    format!(
        "mailbox kinds could not be read ({detail}): grant the application the \
         MailboxSettings.Read application permission (and an administrator's consent) so \
         shared, room and equipment mailboxes are told apart; until then every mailbox \
         counts as a user's and disabled accounts (shared mailboxes among them) are skipped"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn user_purposes_map_to_kinds() {
        for (purpose, kind) in [
            ("user", MailboxKind::User),
            ("linked", MailboxKind::User),
            ("Shared", MailboxKind::Shared),
            ("room", MailboxKind::Room),
            ("equipment", MailboxKind::Equipment),
            ("others", MailboxKind::User),
            ("unknown", MailboxKind::User),
            ("somethingNew", MailboxKind::User),
        ] {
            assert_eq!(MailboxKind::from_user_purpose(purpose), kind, "{purpose}");
        }
    }

    #[test]
    fn names_round_trip_and_bad_names_are_named() {
        for kind in MailboxKind::ALL {
            assert_eq!(kind.as_str().parse::<MailboxKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
        let err = "Room".parse::<MailboxKind>().unwrap_err();
        assert!(err.contains("\"Room\""), "{err}");
    }

    #[test]
    fn the_default_set_is_users_and_shared_mailboxes() {
        let set = MailboxKinds::default();
        assert_eq!(set.names(), vec!["user", "shared"]);
        assert!(!set.contains(MailboxKind::Room));
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["user","shared"]"#);
    }

    proptest! {
        #[test]
        fn sets_hold_exactly_what_was_put_in(picks in proptest::collection::vec(0usize..4, 0..8)) {
            let kinds: Vec<MailboxKind> = picks.iter().map(|i| MailboxKind::ALL[*i]).collect();
            let set: MailboxKinds = kinds.iter().copied().collect();
            for kind in MailboxKind::ALL {
                prop_assert_eq!(set.contains(kind), kinds.contains(&kind));
            }
            let json = serde_json::to_string(&set).unwrap();
            prop_assert_eq!(serde_json::from_str::<MailboxKinds>(&json).unwrap(), set);
        }
    }
}
