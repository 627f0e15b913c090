//! [`sync`]: the directory's users into the user store.
//!
//! A sync reads the changes since the saved token (everything on the first run or
//! when the token was refused), plans the new state of every local user it concerns,
//! writes only users whose record actually changes, and saves the new token with them
//! ([`UserStore::apply_sync`]: one transaction in the SQLite store, the token after the
//! users otherwise); a failure anywhere leaves the token alone so the next sync reads
//! the same changes again.
//!
//! Rules: users are matched by directory object id, never by name or address, so a
//! renamed user keeps their name and archive. A user gone from the directory, disabled
//! in it, or no longer eligible (guest, no mail address) is deactivated, never
//! deleted. Manual users are never touched. When two users claim one address, a
//! manual user wins over a synchronised one, an active user over a deactivated one
//! (who gives the address up: addresses get reused), the current holder over a
//! newcomer, an existing user over a new one, then the first name. A loser goes
//! without a contested alias (reported in `address_conflicts`); a newcomer whose
//! primary address is taken is skipped, and an update that would take someone's
//! primary address waits, both with the reason.
//!
//! Mailbox kinds: each user with a mail address is classified (user, shared, room,
//! equipment) through [`DirectorySource::mailbox_kinds`], and the kind is kept with the
//! local user. A kind is looked up only for a user the store does not know yet, one
//! not classified yet (a store of an earlier version, a lookup that failed), or one
//! the directory reports changed (every user of a delta; in a full listing, a user
//! whose name, addresses or enabled state differ from the stored ones): a delta with
//! no changes looks nothing up. Shared mailboxes are synchronised whatever their
//! `accountEnabled` (it is false by design); the account-enabled rule applies to user
//! mailboxes only. A newcomer whose kind is not in [`SyncOptions::mailbox_kinds`]
//! (rooms and equipment by default) is skipped with the reason; a user already
//! synchronised keeps being updated whatever its kind, so a sync asking for fewer
//! kinds never deactivates mailboxes another profile asked for. When kinds cannot be
//! read (the app lacks MailboxSettings.Read) the sync goes on with a warning, those
//! users count as user mailboxes and are asked again next time; if that left a
//! disabled newcomer out (possibly a shared mailbox), the directory token is not
//! advanced, so the next sync sees that user again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::Serialize;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::addresses::mail_addresses;
use crate::names::NameAllocator;
use crate::rules::{addresses_of, object_of};
use crate::{
    DirectoryChanges, DirectoryError, DirectorySource, DirectoryUser, KindLookup, LocalUser,
    MailboxKind, MailboxKinds, Role, UserOrigin, UserStore, UserType,
};

/// What a sync includes beyond enabled members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// Mailbox kinds synchronised as new users (default: `user` and `shared`; rooms
    /// and equipment are skipped unless listed). Users already synchronised are kept
    /// whatever their kind.
    pub mailbox_kinds: MailboxKinds,
    /// Also synchronise users whose account is disabled in the directory (for example to
    /// archive the mailboxes of people who left); they are created active locally.
    pub include_disabled: bool,
    /// Also synchronise guests (`userType` Guest or a `#EXT#` principal name). Guests
    /// rarely have a mailbox in the tenant.
    pub include_guests: bool,
}

/// Why a directory user was not synchronised.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SkipReason {
    /// A guest, and guests are not included.
    Guest,
    /// Disabled in the directory, and disabled users are not included.
    Disabled,
    /// Neither `mail` nor an `SMTP:` proxy address.
    NoMailboxAddress,
    /// The mailbox's kind is not among the kinds synchronised.
    KindNotIncluded {
        /// The mailbox's kind.
        mailbox_kind: MailboxKind,
    },
    /// One of the user's addresses belongs to another local user.
    AddressInUse {
        /// The contested address.
        address: String,
        /// The local user holding it.
        owner: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Guest => f.write_str("guest user (include guests to synchronise it)"),
            SkipReason::Disabled => f.write_str(
                "account disabled in the directory (include disabled users to synchronise it)",
            ),
            SkipReason::NoMailboxAddress => f.write_str("no mailbox address"),
            SkipReason::KindNotIncluded { mailbox_kind } => write!(
                f,
                "{mailbox_kind} mailbox (list \"{mailbox_kind}\" in a profile's [source] \
                 mailbox_kinds, with sync_directory_first, to synchronise it)"
            ),
            SkipReason::AddressInUse { address, owner } => {
                write!(f, "address {address} already belongs to local user {owner}")
            }
        }
    }
}

/// What a sync did. Local users are named by their local name; skipped directory
/// users by their user principal name. Every list is sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Whether the directory was read in full (first sync, refused token, group
    /// restriction) rather than as a delta.
    pub full_listing: bool,
    /// Users created.
    pub created: Vec<String>,
    /// Users whose display name, addresses or active state changed (re-activations
    /// included).
    pub updated: Vec<String>,
    /// Users deactivated: gone from the directory, disabled, or no longer eligible.
    pub deactivated: Vec<String>,
    /// Synchronised users left as they were.
    pub unchanged: Vec<String>,
    /// Directory users not synchronised, with the reason.
    pub skipped: Vec<(String, SkipReason)>,
    /// Addresses a synchronised user did not get (or gave up) because another local
    /// user holds them. Exchange keeps addresses unique, so outside address reuse
    /// these point at a directory inconsistency or a manual user to reconcile.
    pub address_conflicts: Vec<AddressConflict>,
    /// Mailbox kinds read from the directory by this sync (0 when nothing changed).
    pub mailbox_kinds_read: usize,
    /// What the administrator should know, e.g. that mailbox kinds could not be read
    /// for lack of a permission.
    pub warnings: Vec<String>,
}

/// An address left to another user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct AddressConflict {
    /// The local user who does not have the address.
    pub user: String,
    /// The address.
    pub address: String,
    /// The local user who has it.
    pub owner: String,
}

impl SyncReport {
    /// Whether the sync changed any user.
    pub fn changed_anything(&self) -> bool {
        !(self.created.is_empty() && self.updated.is_empty() && self.deactivated.is_empty())
    }
}

/// Synchronises the users of `source` into `store`.
///
/// # Errors
/// A directory read or store write failure; nothing is half-applied (users and token
/// are written together) and the token is never saved without the users.
///
/// ```
/// # async fn demo() -> Result<(), directory_sync::DirectoryError> {
/// use directory_sync::*;
/// let dir = MemoryDirectorySource::new();
/// dir.upsert(DirectoryUser {
///     id: "1".into(),
///     user_principal_name: "ann@x.com".into(),
///     display_name: Some("Ann".into()),
///     mail: Some("Ann@x.com".into()),
///     proxy_addresses: vec!["SMTP:ann@x.com".into(), "smtp:a@x.com".into()],
///     account_enabled: true,
///     user_type: UserType::Member,
/// });
/// let store = MemoryUserStore::new();
/// let report = sync(&dir, &store, &SyncOptions::default()).await?;
/// assert_eq!(report.created, vec!["ann".to_string()]);
/// assert_eq!(store.find_by_address("A@X.COM")?.map(|u| u.name), Some("ann".into()));
/// # Ok(()) }
/// ```
pub async fn sync<S, U>(
    source: &S,
    store: &U,
    options: &SyncOptions,
) -> Result<SyncReport, DirectoryError>
where
    S: DirectorySource + ?Sized,
    U: UserStore + ?Sized,
{
    sync_in_span(source, store, options)
        .instrument(info_span!("directory_sync"))
        .await
}

async fn sync_in_span<S, U>(
    source: &S,
    store: &U,
    options: &SyncOptions,
) -> Result<SyncReport, DirectoryError>
where
    S: DirectorySource + ?Sized,
    U: UserStore + ?Sized,
{
    let token = store.directory_token()?;
    let changes = source.changes(token.as_ref()).await?;
    let local = store.list()?;
    let ask = kinds_to_ask(&local, &changes, options);
    let lookup = if ask.is_empty() {
        KindLookup::default()
    } else {
        source.mailbox_kinds(&ask).await?
    };
    for warning in &lookup.warnings {
        warn!(%warning, "mailbox kinds");
    }
    let plan = plan(&local, &changes, &lookup, options);
    debug!(
        writes = plan.writes.len(),
        kinds = ask.len(),
        "sync planned"
    );
    let next = if plan.see_again {
        token.as_ref()
    } else {
        Some(&changes.next)
    };
    store.apply_sync(&plan.writes, next)?;
    let r = &plan.report;
    info!(
        full_listing = r.full_listing,
        created = r.created.len(),
        updated = r.updated.len(),
        deactivated = r.deactivated.len(),
        unchanged = r.unchanged.len(),
        skipped = r.skipped.len(),
        "directory synchronised"
    );
    Ok(plan.report)
}

/// The outcome of planning: users to write and the report.
#[derive(Debug)]
struct Plan {
    writes: Vec<LocalUser>,
    report: SyncReport,
    /// Keep the previous token: a user left out may be a shared mailbox whose kind
    /// could not be read, and must be seen again.
    see_again: bool,
}

/// Whether a directory user counts as a guest.
fn is_guest(user: &DirectoryUser) -> bool {
    user.user_type == UserType::Guest || user.user_principal_name.contains("#EXT#")
}

/// A user the directory lists and the store does not have yet.
#[derive(Debug)]
struct Newcomer {
    upn: String,
    object_id: String,
    display_name: Option<String>,
    email: String,
    aliases: Vec<String>,
    kind: Option<MailboxKind>,
}

/// The last word on each object of `changes` (delta pages may repeat an object).
fn latest_users(changes: &DirectoryChanges) -> BTreeMap<&str, &DirectoryUser> {
    changes.users.iter().map(|u| (u.id.as_str(), u)).collect()
}

/// The directory objects whose mailbox kind a sync must look up (see the module
/// documentation): newcomers, unclassified users, and users that changed.
fn kinds_to_ask(
    local: &[LocalUser],
    changes: &DirectoryChanges,
    options: &SyncOptions,
) -> Vec<String> {
    let by_object: HashMap<&str, &LocalUser> = local
        .iter()
        .filter_map(|u| object_of(u).map(|o| (o, u)))
        .collect();
    let latest = latest_users(changes);
    let mut ask: BTreeSet<String> = BTreeSet::new();
    for user in latest.values() {
        if is_guest(user) && !options.include_guests {
            continue;
        }
        let addresses = mail_addresses(user.mail.as_deref(), &user.proxy_addresses);
        let Some(primary) = &addresses.primary else {
            continue;
        };
        let wanted = match by_object.get(user.id.as_str()) {
            None => true,
            Some(known) if known.kind.is_none() || !changes.full => true,
            Some(known) => {
                let mut aliases = addresses.aliases.clone();
                aliases.sort();
                let enabled_differs = match known.mailbox_kind() {
                    MailboxKind::User => known.enabled != user.account_enabled,
                    // Other kinds are disabled accounts by design: one enabled again
                    // may have become a user's mailbox.
                    _ => user.account_enabled,
                };
                known.display_name != user.display_name
                    || known.email.as_ref() != Some(primary)
                    || known.aliases != aliases
                    || enabled_differs
            }
        };
        if wanted {
            ask.insert(user.id.clone());
        }
    }
    for user in local.iter().filter(|u| u.kind.is_none()) {
        if let Some(object) = object_of(user)
            && !latest.contains_key(object)
        {
            ask.insert(object.to_owned());
        }
    }
    ask.into_iter().collect()
}

/// Plans the new state of the local users from `changes`. Pure: no I/O.
fn plan(
    local: &[LocalUser],
    changes: &DirectoryChanges,
    lookup: &KindLookup,
    options: &SyncOptions,
) -> Plan {
    let current: BTreeMap<String, LocalUser> =
        local.iter().map(|u| (u.name.clone(), u.clone())).collect();
    let mut planned = current.clone();
    let by_object: HashMap<&str, &str> = local
        .iter()
        .filter_map(|u| object_of(u).map(|o| (o, u.name.as_str())))
        .collect();
    let mut skipped: Vec<(String, SkipReason)> = Vec::new();
    let mut newcomers: Vec<Newcomer> = Vec::new();
    let mut upn_of: HashMap<String, String> = HashMap::new();
    let mut conflicts: Vec<AddressConflict> = Vec::new();
    let mut see_again = false;

    // The last word on each object wins (delta pages may repeat an object).
    let latest = latest_users(changes);
    let removed: BTreeSet<&str> = changes
        .removed
        .iter()
        .map(String::as_str)
        .filter(|id| !latest.contains_key(id))
        .collect();

    for user in latest.values() {
        let addresses = mail_addresses(user.mail.as_deref(), &user.proxy_addresses);
        let existing = by_object.get(user.id.as_str()).copied();
        let kind = lookup.kinds.get(user.id.as_str()).copied().or_else(|| {
            existing
                .and_then(|name| current.get(name))
                .and_then(|u| u.kind)
        });
        let effective = kind.unwrap_or(MailboxKind::User);
        let skip = if is_guest(user) && !options.include_guests {
            Some(SkipReason::Guest)
        } else if existing.is_none() && !options.mailbox_kinds.contains(effective) {
            Some(SkipReason::KindNotIncluded {
                mailbox_kind: effective,
            })
        } else if effective == MailboxKind::User
            && !user.account_enabled
            && !options.include_disabled
        {
            Some(SkipReason::Disabled)
        } else if addresses.primary.is_none() {
            Some(SkipReason::NoMailboxAddress)
        } else {
            None
        };
        if let Some(u) = existing.and_then(|name| planned.get_mut(name))
            && kind.is_some()
        {
            u.kind = kind;
        }
        match (existing, skip, addresses.primary) {
            (Some(name), Some(reason), _) => {
                if let Some(u) = planned.get_mut(name)
                    && u.enabled
                {
                    debug!(user = name, %reason, "deactivating");
                    u.enabled = false;
                }
            }
            (None, Some(reason), _) => {
                // Disabled and unclassified because the lookup failed: perhaps a
                // shared mailbox.
                see_again |=
                    reason == SkipReason::Disabled && kind.is_none() && !lookup.warnings.is_empty();
                skipped.push((user.user_principal_name.clone(), reason));
            }
            (Some(name), None, Some(email)) => {
                upn_of.insert(name.to_owned(), user.user_principal_name.clone());
                if let Some(u) = planned.get_mut(name) {
                    u.display_name = user.display_name.clone();
                    u.email = Some(email);
                    u.aliases = addresses.aliases;
                    u.enabled = true;
                }
            }
            (None, None, Some(email)) => newcomers.push(Newcomer {
                upn: user.user_principal_name.clone(),
                object_id: user.id.clone(),
                display_name: user.display_name.clone(),
                email,
                aliases: addresses.aliases,
                kind,
            }),
            (_, None, None) => {} // unreachable: no primary means a skip reason
        }
    }

    // Classified now though the directory reported no change (unclassified before).
    for (object, name) in &by_object {
        if let Some(kind) = lookup.kinds.get(*object)
            && !latest.contains_key(object)
            && let Some(u) = planned.get_mut(*name)
        {
            u.kind = Some(*kind);
        }
    }

    // Gone from the directory: removed in a delta, or absent from a full listing.
    for (object, name) in &by_object {
        let gone = if changes.full {
            !latest.contains_key(object)
        } else {
            removed.contains(object)
        };
        if gone
            && let Some(u) = planned.get_mut(*name)
            && u.enabled
        {
            debug!(user = name, "gone from the directory: deactivating");
            u.enabled = false;
        }
    }

    // Names for newcomers, in an order that does not depend on Graph's.
    newcomers.sort_by(|a, b| (&a.email, &a.object_id).cmp(&(&b.email, &b.object_id)));
    let mut names = NameAllocator::new(current.keys().cloned());
    let mut created: BTreeSet<String> = BTreeSet::new();
    for n in newcomers {
        let name = names.allocate(&n.email);
        upn_of.insert(name.clone(), n.upn);
        created.insert(name.clone());
        planned.insert(
            name.clone(),
            LocalUser {
                name,
                display_name: n.display_name,
                email: Some(n.email),
                aliases: n.aliases,
                origin: UserOrigin::Directory {
                    object_id: n.object_id,
                },
                enabled: true,
                role: Role::User,
                has_archive: false,
                kind: n.kind,
            },
        );
    }

    resolve_address_conflicts(
        &current,
        &mut planned,
        &mut created,
        &upn_of,
        &mut skipped,
        &mut conflicts,
    );

    let mut report = SyncReport {
        full_listing: changes.full,
        mailbox_kinds_read: lookup.kinds.len(),
        warnings: lookup.warnings.clone(),
        ..SyncReport::default()
    };
    let mut writes = Vec::new();
    for (name, user) in &planned {
        if matches!(user.origin, UserOrigin::Manual) {
            continue;
        }
        match current.get(name) {
            None => {
                report.created.push(name.clone());
                writes.push(user.clone());
            }
            Some(before) if before == user => report.unchanged.push(name.clone()),
            Some(before) => {
                if before.enabled && !user.enabled {
                    report.deactivated.push(name.clone());
                } else {
                    report.updated.push(name.clone());
                }
                writes.push(user.clone());
            }
        }
    }
    skipped.sort();
    report.skipped = skipped;
    conflicts.sort();
    conflicts.dedup();
    report.address_conflicts = conflicts;
    Plan {
        writes,
        report,
        see_again,
    }
}

/// Makes every address belong to one planned user (see the module documentation for
/// who wins).
///
/// First, users who lose their *primary* address are dropped (newcomers) or keep
/// their stored record (updates), one at a time until no such loss remains: each
/// step removes a change from the plan, so this terminates, and since aliases are not
/// touched yet, an alias freed by a dropped user is not lost by anyone. Then every
/// remaining loser simply goes without the contested address.
fn resolve_address_conflicts(
    current: &BTreeMap<String, LocalUser>,
    planned: &mut BTreeMap<String, LocalUser>,
    created: &mut BTreeSet<String>,
    upn_of: &HashMap<String, String>,
    skipped: &mut Vec<(String, SkipReason)>,
    conflicts: &mut Vec<AddressConflict>,
) {
    let holder: HashMap<String, String> = current
        .values()
        .flat_map(|u| addresses_of(u).map(move |a| (a.to_owned(), u.name.clone())))
        .collect();
    let winner_of =
        |address: &str, claimants: &[&LocalUser], created: &BTreeSet<String>| -> Option<String> {
            claimants
                .iter()
                .min_by_key(|u| {
                    (
                        match (&u.origin, u.enabled) {
                            (UserOrigin::Manual, _) => 0u8,
                            (_, true) => 1,
                            (_, false) => 2,
                        },
                        holder.get(address) != Some(&u.name),
                        u.email.as_deref() != Some(address),
                        created.contains(&u.name),
                        u.name.clone(),
                    )
                })
                .map(|u| u.name.clone())
        };
    // Contested addresses with (copies of) their claimants, in address order.
    let contested = |planned: &BTreeMap<String, LocalUser>| {
        let mut claims: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for user in planned.values() {
            for address in addresses_of(user) {
                claims.entry(address).or_default().push(user.name.as_str());
            }
        }
        claims
            .into_iter()
            .filter(|(_, names)| names.len() > 1)
            .map(|(address, names)| {
                let users: Vec<LocalUser> = names
                    .iter()
                    .filter_map(|n| planned.get(*n).cloned())
                    .collect();
                (address.to_owned(), users)
            })
            .collect::<Vec<_>>()
    };

    // Phase 1: primary addresses.
    'settle: loop {
        for (address, claimants) in contested(planned) {
            let refs: Vec<&LocalUser> = claimants.iter().collect();
            let Some(winner) = winner_of(&address, &refs, created) else {
                continue;
            };
            for loser in claimants.iter().filter(|u| u.name != winner) {
                let active = loser.enabled && !matches!(loser.origin, UserOrigin::Manual);
                if !active || loser.email.as_deref() != Some(address.as_str()) {
                    continue;
                }
                let reason = SkipReason::AddressInUse {
                    address: address.clone(),
                    owner: winner.clone(),
                };
                let upn = upn_of
                    .get(&loser.name)
                    .cloned()
                    .unwrap_or(loser.name.clone());
                if created.remove(&loser.name) {
                    warn!(user = %upn, %reason, "not creating");
                    planned.remove(&loser.name);
                    skipped.push((upn, reason));
                    continue 'settle;
                }
                if let Some(before) = current.get(&loser.name).filter(|b| *b != loser) {
                    warn!(user = %loser.name, %reason, "not updating");
                    planned.insert(loser.name.clone(), before.clone());
                    skipped.push((upn, reason));
                    continue 'settle;
                }
            }
        }
        break;
    }

    // Phase 2: the remaining losers go without the address (an alias of an active
    // user, or any address of a deactivated one: addresses get reused).
    for (address, claimants) in contested(planned) {
        let refs: Vec<&LocalUser> = claimants.iter().collect();
        let Some(winner) = winner_of(&address, &refs, created) else {
            continue;
        };
        for loser in claimants.iter().filter(|u| u.name != winner) {
            if let Some(u) = planned.get_mut(&loser.name) {
                warn!(user = %u.name, %address, owner = %winner, "address left to another user");
                if u.email.as_deref() == Some(address.as_str()) {
                    u.email = None;
                }
                u.aliases.retain(|a| *a != address);
            }
            conflicts.push(AddressConflict {
                user: loser.name.clone(),
                address: address.clone(),
                owner: winner.clone(),
            });
        }
    }
}

#[cfg(test)]
mod kind_tests;
#[cfg(test)]
mod tests;
