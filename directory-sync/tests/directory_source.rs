//! The [`DirectorySource`] contract, checked on both implementations: every rule below
//! runs once against [`GraphDirectorySource`] talking to the in-process emulator over
//! real HTTP, and once against [`MemoryDirectorySource`]. A sync relies on exactly these
//! rules, whichever source it is given.
//!
//! The group restriction (`/groups/{id}/transitiveMembers`) is a Graph-only option the
//! memory directory does not model; it is checked against a scripted Graph in
//! `graph_protocol.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use directory_sync::{
    DirectoryChanges, DirectorySource, DirectoryToken, DirectoryUser, GraphDirectoryOptions,
    GraphDirectorySource, MailboxKind, MemoryDirectorySource, RetryPolicy, UserType,
};
use m365_auth::{
    AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud, ProviderOptions,
};
use m365_emulator::{Emulator, EmulatorConfig, NewUser, UserPatch};
use proptest::prelude::*;

/// One implementation of the seam, with the means to change its directory from
/// outside (as an administrator would).
// One fixture per test, never copied: the size of the Graph side does not matter.
#[allow(clippy::large_enum_variant)]
enum Fixture {
    Graph {
        emu: Emulator,
        source: GraphDirectorySource,
    },
    Memory(MemoryDirectorySource),
}

fn memory_user(upn: &str, display_name: &str, alias: Option<&str>) -> DirectoryUser {
    let mut proxy_addresses = vec![format!("SMTP:{upn}")];
    proxy_addresses.extend(alias.map(|a| format!("smtp:{a}")));
    DirectoryUser {
        id: format!("id-{upn}"),
        user_principal_name: upn.into(),
        display_name: Some(display_name.into()),
        mail: Some(upn.into()),
        proxy_addresses,
        account_enabled: true,
        user_type: UserType::Member,
    }
}

impl Fixture {
    /// The emulator's generated tenant (regular users, a guest, a disabled user, ...).
    async fn graph() -> Fixture {
        let emu = Emulator::start(EmulatorConfig {
            users: 4,
            messages_per_user: 0,
            seed: 23,
            ..Default::default()
        })
        .await
        .unwrap();
        let cloud = Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str()).unwrap();
        let registration = AppRegistration::new(
            &emu.tenant_id(),
            &emu.client_id(),
            ClientCredential::secret(emu.client_secret()),
            cloud,
        )
        .unwrap();
        let tokens = ClientCredentialsProvider::new(
            registration,
            ProviderOptions {
                extra_ca_pem: emu.ca_pem(),
                ..Default::default()
            },
        )
        .unwrap();
        let options = GraphDirectoryOptions {
            extra_ca_pem: emu.ca_pem(),
            retry: RetryPolicy {
                max_attempts: 12,
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(50),
                max_retry_after: Duration::from_secs(2),
            },
            ..Default::default()
        };
        let source = GraphDirectorySource::new(Arc::new(tokens), emu.graph_url(), options).unwrap();
        Fixture::Graph { emu, source }
    }

    /// A memory directory of four members.
    fn memory() -> Fixture {
        Fixture::Memory(MemoryDirectorySource::with_users(
            ["adele", "alex", "megan", "lee"].map(|name| {
                memory_user(
                    &format!("{name}@contoso.test"),
                    &name.to_uppercase(),
                    Some(&format!("{name}.alias@contoso.test")),
                )
            }),
        ))
    }

    /// A memory directory of 25 people (more than one `$batch` of kinds), two shared
    /// mailboxes, a departed employee's converted one, a room and a projector.
    fn memory_with_kinds() -> Fixture {
        let source = MemoryDirectorySource::new();
        for i in 0..25 {
            source.upsert(memory_user(
                &format!("person{i}@contoso.test"),
                "Person",
                None,
            ));
        }
        for (name, kind) in [
            ("info", MailboxKind::Shared),
            ("support", MailboxKind::Shared),
            ("former.employee", MailboxKind::Shared),
            ("boardroom", MailboxKind::Room),
            ("projector", MailboxKind::Equipment),
        ] {
            let mut user = memory_user(&format!("{name}@contoso.test"), name, None);
            user.account_enabled = false;
            source.set_kind(&user.id, kind);
            source.upsert(user);
        }
        Fixture::Memory(source)
    }

    /// The kind of every mailbox of the directory, as the service itself knows it.
    async fn expected_kinds(&self) -> BTreeMap<String, MailboxKind> {
        match self {
            Fixture::Graph { .. } => unreachable!("set when the emulator serves mailbox kinds"),
            Fixture::Memory(source) => source
                .users()
                .into_iter()
                .map(|u| {
                    let kind = match u.user_principal_name.split('@').next() {
                        Some("info" | "support" | "former.employee") => MailboxKind::Shared,
                        Some("boardroom") => MailboxKind::Room,
                        Some("projector") => MailboxKind::Equipment,
                        _ => MailboxKind::User,
                    };
                    (u.id, kind)
                })
                .collect(),
        }
    }

    fn source(&self) -> &dyn DirectorySource {
        match self {
            Fixture::Graph { source, .. } => source,
            Fixture::Memory(source) => source,
        }
    }

    async fn changes(&self, since: Option<&DirectoryToken>) -> DirectoryChanges {
        self.source().changes(since).await.unwrap()
    }

    /// Object ids of the users in the directory now, as the service itself counts them.
    fn ids(&self) -> BTreeSet<String> {
        match self {
            Fixture::Graph { emu, .. } => emu.users().into_iter().map(|u| u.id).collect(),
            Fixture::Memory(source) => source.users().into_iter().map(|u| u.id).collect(),
        }
    }

    /// Adds a member with a primary address and one alias; their object id.
    fn add(&self, upn: &str, display_name: &str, alias: &str) -> String {
        match self {
            Fixture::Graph { emu, .. } => {
                emu.add_user(NewUser {
                    upn: upn.into(),
                    display_name: display_name.into(),
                    mail: Some(upn.into()),
                    aliases: vec![alias.into()],
                    ..Default::default()
                })
                .unwrap()
                .id
            }
            Fixture::Memory(source) => {
                let user = memory_user(upn, display_name, Some(alias));
                let id = user.id.clone();
                source.upsert(user);
                id
            }
        }
    }

    fn rename(&self, id: &str, display_name: &str) {
        match self {
            Fixture::Graph { emu, .. } => {
                emu.update_user(
                    id,
                    UserPatch {
                        display_name: Some(display_name.into()),
                        ..Default::default()
                    },
                )
                .unwrap();
            }
            Fixture::Memory(source) => {
                assert!(source.update(id, |u| u.display_name = Some(display_name.into())));
            }
        }
    }

    fn set_enabled(&self, id: &str, enabled: bool) {
        match self {
            Fixture::Graph { emu, .. } => {
                emu.update_user(
                    id,
                    UserPatch {
                        enabled: Some(enabled),
                        ..Default::default()
                    },
                )
                .unwrap();
            }
            Fixture::Memory(source) => assert!(source.update(id, |u| u.account_enabled = enabled)),
        }
    }

    fn delete(&self, id: &str) {
        match self {
            Fixture::Graph { emu, .. } => emu.delete_user(id).unwrap(),
            Fixture::Memory(source) => assert!(source.remove(id)),
        }
    }

    /// A token of this source's own kind that the service no longer accepts.
    fn stale(&self, issued: &DirectoryToken) -> DirectoryToken {
        match self {
            // A delta link of this Graph with a token it does not know: 410 syncStateNotFound.
            Fixture::Graph { emu, .. } => {
                let mut stale = emu.graph_url();
                stale.set_path("/v1.0/users/delta");
                stale.set_query(Some("$deltatoken=c3RhbGU"));
                DirectoryToken(stale.to_string())
            }
            Fixture::Memory(source) => {
                source.expire_tokens();
                issued.clone()
            }
        }
    }
}

/// The users of `changes` by object id; fails on an id given twice.
fn by_id(changes: &DirectoryChanges) -> BTreeMap<String, DirectoryUser> {
    let mut users = BTreeMap::new();
    for user in &changes.users {
        let twice = users.insert(user.id.clone(), user.clone());
        assert!(twice.is_none(), "{} listed twice: {changes:?}", user.id);
    }
    users
}

/// Three distinct object ids of existing members.
fn three_members(full: &DirectoryChanges) -> [String; 3] {
    let members: Vec<String> = full
        .users
        .iter()
        .filter(|u| u.user_type == UserType::Member && u.account_enabled && u.mail.is_some())
        .map(|u| u.id.clone())
        .collect();
    assert!(members.len() >= 3, "{full:?}");
    [members[0].clone(), members[1].clone(), members[2].clone()]
}

/// Generates one `#[tokio::test]` per rule and implementation.
macro_rules! contract {
    ($($rule:ident),* $(,)?) => {
        mod graph {
            $(#[tokio::test]
            async fn $rule() {
                super::$rule(super::Fixture::graph().await).await;
            })*
        }
        mod memory {
            $(#[tokio::test]
            async fn $rule() {
                super::$rule(super::Fixture::memory()).await;
            })*
        }
    };
}

contract!(
    a_first_read_lists_every_user_once,
    a_read_from_the_fresh_token_is_an_empty_delta,
    a_delta_reports_exactly_the_added_renamed_disabled_and_deleted,
    several_changes_to_one_user_come_as_its_latest_state,
    a_refused_token_falls_back_to_a_full_listing,
    a_token_of_another_kind_falls_back_to_a_full_listing,
);

async fn a_first_read_lists_every_user_once(f: Fixture) {
    let full = f.changes(None).await;
    assert!(full.full);
    assert!(full.removed.is_empty());
    assert!(!full.next.0.is_empty());
    let users = by_id(&full);
    assert_eq!(users.keys().cloned().collect::<BTreeSet<_>>(), f.ids());
    for user in users.values() {
        assert!(!user.user_principal_name.is_empty(), "{user:?}");
        if let Some(mail) = &user.mail {
            assert!(
                user.proxy_addresses.iter().any(|p| p
                    .strip_prefix("SMTP:")
                    .is_some_and(|a| a.eq_ignore_ascii_case(mail))),
                "the primary address is the SMTP: proxy address: {user:?}"
            );
        }
    }
}

async fn a_read_from_the_fresh_token_is_an_empty_delta(f: Fixture) {
    let full = f.changes(None).await;
    let delta = f.changes(Some(&full.next)).await;
    assert!(!delta.full);
    assert!(
        delta.users.is_empty() && delta.removed.is_empty(),
        "{delta:?}"
    );
    let again = f.changes(Some(&delta.next)).await;
    assert!(
        !again.full && again.users.is_empty() && again.removed.is_empty(),
        "{again:?}"
    );
}

async fn a_delta_reports_exactly_the_added_renamed_disabled_and_deleted(f: Fixture) {
    let full = f.changes(None).await;
    let [renamed, disabled, deleted] = three_members(&full);
    let added = f.add("new.hire@contoso.test", "New Hire", "nh@contoso.test");
    f.rename(&renamed, "Renamed Person");
    f.set_enabled(&disabled, false);
    f.delete(&deleted);

    let delta = f.changes(Some(&full.next)).await;
    assert!(!delta.full, "{delta:?}");
    let users = by_id(&delta);
    assert_eq!(
        users.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([added.clone(), renamed.clone(), disabled.clone()])
    );
    assert_eq!(delta.removed, vec![deleted.clone()]);
    let new = &users[&added];
    assert_eq!(new.user_principal_name, "new.hire@contoso.test");
    assert_eq!(new.display_name.as_deref(), Some("New Hire"));
    assert_eq!(new.mail.as_deref(), Some("new.hire@contoso.test"));
    assert!(new.account_enabled && new.user_type == UserType::Member);
    let proxies: BTreeSet<String> = new
        .proxy_addresses
        .iter()
        .map(|p| p.to_lowercase())
        .collect();
    assert_eq!(
        proxies,
        BTreeSet::from([
            "smtp:new.hire@contoso.test".into(),
            "smtp:nh@contoso.test".into()
        ])
    );
    assert_eq!(
        users[&renamed].display_name.as_deref(),
        Some("Renamed Person")
    );
    assert!(users[&renamed].account_enabled);
    assert!(!users[&disabled].account_enabled);
    assert!(!f.ids().contains(&deleted));

    let quiet = f.changes(Some(&delta.next)).await;
    assert!(
        !quiet.full && quiet.users.is_empty() && quiet.removed.is_empty(),
        "{quiet:?}"
    );
    // Enabled again: the same object comes back enabled.
    f.set_enabled(&disabled, true);
    let back = f.changes(Some(&quiet.next)).await;
    let users = by_id(&back);
    assert_eq!(users.keys().collect::<Vec<_>>(), vec![&disabled]);
    assert!(users[&disabled].account_enabled);
}

async fn several_changes_to_one_user_come_as_its_latest_state(f: Fixture) {
    let full = f.changes(None).await;
    let [user, _, _] = three_members(&full);
    f.rename(&user, "First Name");
    f.set_enabled(&user, false);
    f.rename(&user, "Second Name");
    let delta = f.changes(Some(&full.next)).await;
    let users = by_id(&delta);
    assert_eq!(users.len(), 1, "{delta:?}");
    assert_eq!(users[&user].display_name.as_deref(), Some("Second Name"));
    assert!(!users[&user].account_enabled);
    // Added then deleted between two reads: the delta says it is gone (or nothing).
    let added = f.add("brief@contoso.test", "Brief", "b@contoso.test");
    f.delete(&added);
    let delta = f.changes(Some(&delta.next)).await;
    assert!(delta.users.is_empty(), "{delta:?}");
    assert!(delta.removed.iter().all(|id| *id == added), "{delta:?}");
}

async fn a_refused_token_falls_back_to_a_full_listing(f: Fixture) {
    let first = f.changes(None).await;
    f.rename(&three_members(&first)[0], "Changed Meanwhile");
    let stale = f.stale(&first.next);
    let relisted = f.changes(Some(&stale)).await;
    assert!(relisted.full, "{relisted:?}");
    assert!(relisted.removed.is_empty());
    assert_eq!(
        by_id(&relisted).keys().cloned().collect::<BTreeSet<_>>(),
        f.ids()
    );
    assert!(
        relisted
            .users
            .iter()
            .any(|u| u.display_name.as_deref() == Some("Changed Meanwhile"))
    );
    // The fresh token works incrementally again.
    let delta = f.changes(Some(&relisted.next)).await;
    assert!(!delta.full && delta.users.is_empty(), "{delta:?}");
}

async fn a_token_of_another_kind_falls_back_to_a_full_listing(f: Fixture) {
    for token in [
        "",
        "not a token",
        "https://elsewhere.example/v1.0/users/delta?$deltatoken=x",
        "mem:0:999999",
    ] {
        let relisted = f.changes(Some(&DirectoryToken(token.into()))).await;
        assert!(relisted.full, "{token:?}: {relisted:?}");
        assert_eq!(
            by_id(&relisted).keys().cloned().collect::<BTreeSet<_>>(),
            f.ids(),
            "{token:?}"
        );
    }
}

/// Generates one `#[tokio::test]` per mailbox-kind rule and implementation.
macro_rules! kinds_contract {
    ($($rule:ident),* $(,)?) => {
        mod memory_kinds {
            $(#[tokio::test]
            async fn $rule() {
                super::$rule(super::Fixture::memory_with_kinds()).await;
            })*
        }
    };
}

kinds_contract!(
    every_mailbox_is_classified,
    an_object_without_mailbox_settings_is_a_user_mailbox,
);

async fn every_mailbox_is_classified(f: Fixture) {
    let full = f.changes(None).await;
    let ids: Vec<String> = full.users.iter().map(|u| u.id.clone()).collect();
    assert!(ids.len() > 20, "more than one batch: {}", ids.len());
    let lookup = f.source().mailbox_kinds(&ids).await.unwrap();
    assert!(lookup.warnings.is_empty(), "{:?}", lookup.warnings);
    assert_eq!(
        lookup.kinds.keys().cloned().collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(lookup.kinds, f.expected_kinds().await);
    let by_upn: BTreeMap<&str, MailboxKind> = full
        .users
        .iter()
        .map(|u| (u.user_principal_name.as_str(), lookup.kinds[&u.id]))
        .collect();
    let count = |kind| by_upn.values().filter(|k| **k == kind).count();
    assert!(count(MailboxKind::Shared) >= 3, "{by_upn:?}");
    assert!(
        count(MailboxKind::Room) >= 1 && count(MailboxKind::Equipment) >= 1,
        "{by_upn:?}"
    );
    for (upn, kind) in &by_upn {
        if upn.starts_with("info@") || upn.starts_with("support@") {
            assert_eq!(*kind, MailboxKind::Shared, "{upn}");
        }
    }
    // Every shared, room and equipment mailbox is a disabled account.
    for user in &full.users {
        if lookup.kinds[&user.id] != MailboxKind::User {
            assert!(!user.account_enabled, "{user:?}");
        }
    }
    // Nothing asked, nothing read.
    let none = f.source().mailbox_kinds(&[]).await.unwrap();
    assert!(none.kinds.is_empty() && none.warnings.is_empty());
}

async fn an_object_without_mailbox_settings_is_a_user_mailbox(f: Fixture) {
    let unknown = "00000000-0000-0000-0000-000000000000".to_string();
    let lookup = f
        .source()
        .mailbox_kinds(std::slice::from_ref(&unknown))
        .await
        .unwrap();
    assert_eq!(
        lookup.kinds.get(&unknown),
        Some(&MailboxKind::User),
        "{lookup:?}"
    );
}

/// Display names of any letters and digits come back unchanged in the next delta, on
/// both implementations.
#[test]
fn renamed_display_names_round_trip() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fixtures = runtime.block_on(async { [Fixture::graph().await, Fixture::memory()] });
    let state: Vec<(String, DirectoryToken)> = fixtures
        .iter()
        .map(|f| {
            let full = runtime.block_on(f.changes(None));
            (three_members(&full)[0].clone(), full.next)
        })
        .collect();
    let state = std::cell::RefCell::new(state);
    let config = ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    };
    proptest!(config, |(name in "[\\p{L}\\p{N}][\\p{L}\\p{N} .'-]{0,38}[\\p{L}\\p{N}]")| {
        for (f, (id, token)) in fixtures.iter().zip(state.borrow_mut().iter_mut()) {
            f.rename(id, &name);
            let delta = runtime.block_on(f.changes(Some(token)));
            *token = delta.next.clone();
            prop_assert!(!delta.full);
            prop_assert_eq!(delta.users.len(), 1);
            prop_assert_eq!(delta.users[0].display_name.as_deref(), Some(name.as_str()));
        }
    });
}
