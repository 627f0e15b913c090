//! Role grants, unblocks, local sign-in, directory sign-in and API tokens, through
//! the service over a real data directory: what is stored survives reopening, a
//! damaged file is named, every change and sign-in leaves its audit event, and no
//! principal ever exceeds what its grants say.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use archiver_service::audit_log::{Action, AuditSink, MemoryAuditLog, Outcome};
use archiver_service::secrecy::{ExposeSecret as _, SecretString};
use archiver_service::{
    ApiScope, ErrorCategory, Principal, Reach, Role, Service, ServiceError, ServiceOptions, Visible,
};
use chrono::{DateTime, Duration, Utc};
use directory_sync::{SqliteUserStore, UserOrigin, UserStore as _};

const LOCAL: &Principal = &Principal::LocalAdministrator;
const PASSWORD: &str = "correct horse battery";

/// A data directory with users alice, bob, carol and root (root an admin); the
/// service records into the returned log.
fn setup(root: &Path) -> (Service, Arc<MemoryAuditLog>) {
    let sink = Arc::new(MemoryAuditLog::new());
    let service = service_with(root, sink.clone());
    for name in ["alice", "bob", "carol", "root"] {
        service
            .add_user(LOCAL, name, &[format!("{name}@example.com")])
            .unwrap();
    }
    service
        .grant_access(LOCAL, "root", Role::Admin, Reach::All, None)
        .unwrap();
    (service, sink)
}

fn service_with(root: &Path, sink: Arc<MemoryAuditLog>) -> Service {
    let options = ServiceOptions {
        audit: Some(sink as Arc<dyn AuditSink>),
        ..ServiceOptions::default()
    };
    Service::new(root.join("data"), options)
}

fn users(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_string()).collect()
}

fn visible(service: &Service, user: &str, now: DateTime<Utc>) -> Visible {
    service.principal_for(user, now).unwrap().visible(now)
}

fn category<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> ErrorCategory {
    result.unwrap_err().category()
}

fn actions(sink: &MemoryAuditLog) -> Vec<(Action, bool)> {
    sink.events()
        .into_iter()
        .map(|e| (e.action, e.outcome == Outcome::Allowed))
        .collect()
}

/// An API token with `scopes` for carol, made an auditor of every archive first.
fn auditor_token(service: &Service, scopes: Vec<ApiScope>, now: DateTime<Utc>) -> SecretString {
    service
        .grant_access(LOCAL, "carol", Role::Auditor, Reach::All, None)
        .unwrap();
    let carol = service.principal_for("carol", now).unwrap();
    service
        .create_api_token(&carol, "ci", scopes, None)
        .unwrap()
        .1
}

/// Whether each event of `action` was allowed, in order.
fn outcomes(sink: &MemoryAuditLog, action: Action) -> Vec<bool> {
    actions(sink)
        .into_iter()
        .filter(|(a, _)| *a == action)
        .map(|(_, allowed)| allowed)
        .collect()
}

fn user_store(root: &Path) -> SqliteUserStore {
    SqliteUserStore::open(root.join("data/users.db")).unwrap()
}

fn disable(root: &Path, name: &str) {
    let store = user_store(root);
    let mut user = store.get(name).unwrap().unwrap();
    user.enabled = false;
    store.put(&user).unwrap();
}

#[test]
fn grants_survive_reopening_and_a_revoke_takes_effect_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, sink) = setup(tmp.path());
    let now = Utc::now();
    let until = now + Duration::days(30);
    service
        .grant_access(
            LOCAL,
            "carol",
            Role::Auditor,
            Reach::Users(users(&["alice"])),
            Some(until),
        )
        .unwrap();
    assert_eq!(
        visible(&service, "carol", now),
        Visible::Only(users(&["alice", "carol"]))
    );
    // Without any grant, a user sees their own archive.
    assert_eq!(
        visible(&service, "bob", now),
        Visible::Only(users(&["bob"]))
    );
    // The grant ends at its end.
    assert_eq!(
        visible(&service, "carol", until + Duration::seconds(1)),
        Visible::Only(users(&["carol"]))
    );

    let reopened = service_with(tmp.path(), Arc::new(MemoryAuditLog::new()));
    let listed = reopened.list_access(LOCAL).unwrap();
    let names: Vec<&str> = listed.iter().map(|e| e.user.as_str()).collect();
    assert_eq!(names, ["carol", "root"]);
    assert_eq!(listed[0].grants[0].role, Role::Auditor);
    assert_eq!(listed[0].grants[0].reach, Reach::Users(users(&["alice"])));
    assert_eq!(
        listed[0].grants[0].until.map(|t| t.timestamp()),
        Some(until.timestamp())
    );

    reopened
        .revoke_access(LOCAL, "carol", Role::Auditor)
        .unwrap();
    assert_eq!(
        visible(&service, "carol", now),
        Visible::Only(users(&["carol"]))
    );
    assert_eq!(
        category(service.revoke_access(LOCAL, "carol", Role::Auditor)),
        ErrorCategory::NotFound
    );
    assert_eq!(
        category(service.grant_access(LOCAL, "nobody", Role::Auditor, Reach::All, None)),
        ErrorCategory::NotFound
    );
    let grants: Vec<(Action, bool)> = actions(&sink)
        .into_iter()
        .filter(|(a, _)| matches!(a, Action::RoleGrant | Action::RoleRevoke))
        .collect();
    assert_eq!(
        grants,
        [(Action::RoleGrant, true), (Action::RoleGrant, true)],
        "the reopened service records into its own log"
    );
}

#[test]
fn a_damaged_access_file_is_reported_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, _) = setup(tmp.path());
    let path = tmp.path().join("data/access/access.json");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"admin\"", "\"auditor\"")).unwrap();
    for error in [
        service.list_access(LOCAL).unwrap_err(),
        service.principal_for("root", Utc::now()).unwrap_err(),
        service
            .grant_access(LOCAL, "bob", Role::Auditor, Reach::All, None)
            .unwrap_err(),
    ] {
        let message = archiver_service::chain(&error);
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("checksum"), "{message}");
    }
    // Nothing was written over the damaged file.
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("\"auditor\"")
    );
}

#[test]
fn only_admins_change_grants_and_never_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, sink) = setup(tmp.path());
    let now = Utc::now();
    let root = service.principal_for("root", now).unwrap();
    let alice = service.principal_for("alice", now).unwrap();
    for (caller, user) in [(&alice, "bob"), (&alice, "alice"), (&root, "root")] {
        let result = service.grant_access(caller, user, Role::Auditor, Reach::All, None);
        assert_eq!(
            category(result),
            ErrorCategory::Forbidden,
            "{caller:?} {user}"
        );
    }
    assert_eq!(
        category(service.revoke_access(&root, "root", Role::Admin)),
        ErrorCategory::Forbidden
    );
    assert_eq!(
        category(service.list_access(&alice)),
        ErrorCategory::Forbidden
    );
    service
        .grant_access(&root, "bob", Role::Compliance, Reach::All, None)
        .unwrap();
    assert_eq!(visible(&service, "bob", now), Visible::All);
    let refused = actions(&sink)
        .iter()
        .filter(|(_, allowed)| !allowed)
        .count();
    assert_eq!(refused, 5);
}

#[test]
fn an_unblock_needs_a_reason_and_a_near_end_and_then_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, sink) = setup(tmp.path());
    let now = Utc::now();
    let root = service.principal_for("root", now).unwrap();
    assert_eq!(root.visible(now), Visible::Only(users(&["root"])));
    let soon = now + Duration::hours(2);
    let check = |caller: &Principal, admin: &str, reason: &str, until, expected| {
        let result = service.unblock_content(caller, admin, reason, until);
        assert_eq!(
            result.as_ref().err().map(ServiceError::category),
            expected,
            "{admin} {reason:?} {until}: {result:?}"
        );
    };
    check(LOCAL, "root", "  ", soon, Some(ErrorCategory::Invalid));
    check(
        LOCAL,
        "root",
        "case 7",
        now - Duration::hours(1),
        Some(ErrorCategory::Invalid),
    );
    check(
        LOCAL,
        "root",
        "case 7",
        now + Duration::days(8),
        Some(ErrorCategory::Invalid),
    );
    check(LOCAL, "alice", "case 7", soon, Some(ErrorCategory::Invalid));
    check(
        &service.principal_for("alice", now).unwrap(),
        "root",
        "case 7",
        soon,
        Some(ErrorCategory::Forbidden),
    );
    service
        .grant_access(LOCAL, "bob", Role::Admin, Reach::All, None)
        .unwrap();
    // An admin account unblocks itself only.
    check(&root, "bob", "case 7", soon, Some(ErrorCategory::Forbidden));
    check(&root, "root", "case 7", soon, None);

    let unblocked = service.principal_for("root", now).unwrap();
    assert_eq!(unblocked.visible(now), Visible::All);
    assert_eq!(
        visible(&service, "root", soon + Duration::seconds(1)),
        Visible::Only(users(&["root"]))
    );
    let event = sink
        .events()
        .into_iter()
        .rfind(|e| e.action == Action::AccessUnblock && e.outcome == Outcome::Allowed)
        .unwrap();
    assert_eq!(event.details["reason"], "case 7");
    assert_eq!(event.target.user.as_deref(), Some("root"));
    // Revoking the admin role ends the unblock.
    service.revoke_access(LOCAL, "root", Role::Admin).unwrap();
    service
        .grant_access(LOCAL, "root", Role::Admin, Reach::All, None)
        .unwrap();
    assert_eq!(
        visible(&service, "root", now),
        Visible::Only(users(&["root"]))
    );
}

#[test]
fn a_local_sign_in_says_the_same_for_an_unknown_user_and_a_wrong_password() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, sink) = setup(tmp.path());
    let now = Utc::now();
    assert_eq!(
        category(service.set_local_password(LOCAL, "alice", "short")),
        ErrorCategory::Invalid
    );
    service
        .set_local_password(LOCAL, "alice", PASSWORD)
        .unwrap();
    service
        .set_local_password(LOCAL, "carol", PASSWORD)
        .unwrap();
    let alice = service.principal_for("alice", now).unwrap();
    assert_eq!(
        category(service.set_local_password(&alice, "bob", PASSWORD)),
        ErrorCategory::Forbidden
    );
    disable(tmp.path(), "carol");

    let signed_in = service.sign_in_local("alice", PASSWORD, now).unwrap();
    assert_eq!(signed_in, alice);
    let refusal = |user: &str, password: &str| {
        let error = service.sign_in_local(user, password, now).unwrap_err();
        assert_eq!(error.category(), ErrorCategory::Forbidden, "{user}");
        error.to_string()
    };
    let wrong = refusal("alice", "not the password");
    assert_eq!(refusal("nobody", PASSWORD), wrong);
    assert_eq!(refusal("bob", PASSWORD), wrong, "bob has no password");
    assert!(refusal("carol", PASSWORD).contains("disabled"));

    assert_eq!(
        outcomes(&sink, Action::SignIn),
        [true, false, false, false, false]
    );
    let stored = std::fs::read_to_string(tmp.path().join("data/access/access.json")).unwrap();
    assert!(!stored.contains(PASSWORD) && stored.contains("$argon2id$"));
}

#[test]
fn a_directory_sign_in_maps_by_object_id_never_by_address() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, sink) = setup(tmp.path());
    let now = Utc::now();
    let store = user_store(tmp.path());
    // alice's object id reads like carol's address, and bob's address changes.
    for (name, oid) in [
        ("alice", "carol@example.com"),
        ("bob", "oid-bob"),
        ("carol", "oid-carol"),
    ] {
        let mut user = store.get(name).unwrap().unwrap();
        user.origin = UserOrigin::Directory {
            object_id: oid.into(),
        };
        if name == "bob" {
            user.email = Some("robert@example.com".into());
        }
        store.put(&user).unwrap();
    }
    drop(store);
    let tenant = "11111111-2222-3333-4444-555555555555";
    let check = |tid: &str, oid: &str, expected: Option<&str>| {
        let result = service.sign_in_entra(tenant, tid, oid, now);
        match (result, expected) {
            (Ok(Principal::Account(a)), Some(name)) => assert_eq!(a.name, name),
            (Err(e), None) => assert_eq!(e.category(), ErrorCategory::Forbidden),
            (other, _) => panic!("{tid} {oid}: {other:?}, expected {expected:?}"),
        }
    };
    check(tenant, "carol@example.com", Some("alice"));
    check(&tenant.to_uppercase(), "oid-bob", Some("bob"));
    check(tenant, "oid-carol", Some("carol"));
    check(tenant, "bob@example.com", None);
    check("99999999-2222-3333-4444-555555555555", "oid-bob", None);
    disable(tmp.path(), "carol");
    check(tenant, "oid-carol", None);
    assert_eq!(
        outcomes(&sink, Action::SignIn),
        [true, true, true, false, false, false]
    );
}

#[test]
fn api_tokens_are_stored_as_hashes_and_refused_once_revoked_or_expired() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, sink) = setup(tmp.path());
    let now = Utc::now();
    let alice = service.principal_for("alice", now).unwrap();
    let (info, secret) = service
        .create_api_token(
            &alice,
            "laptop",
            vec![ApiScope::Read, ApiScope::Read],
            Some(now + Duration::hours(1)),
        )
        .unwrap();
    assert!(secret.expose_secret().starts_with("m365a_"));
    assert!(secret.expose_secret().starts_with(&info.id));
    assert_eq!(info.scopes, [ApiScope::Read]);
    let stored = std::fs::read_to_string(tmp.path().join("data/access/access.json")).unwrap();
    assert!(!stored.contains(secret.expose_secret()));
    assert!(!format!("{secret:?}").contains(secret.expose_secret()));

    let (principal, scopes) = service.principal_for_api_token(&secret, now).unwrap();
    assert_eq!(principal, alice);
    assert_eq!(scopes, [ApiScope::Read]);
    let refused = |secret: &SecretString, at| category(service.principal_for_api_token(secret, at));
    assert_eq!(
        refused(&secret, now + Duration::hours(2)),
        ErrorCategory::Forbidden
    );
    let forged = SecretString::from(format!("{}x", secret.expose_secret()));
    assert_eq!(refused(&forged, now), ErrorCategory::Forbidden);

    assert_eq!(
        category(service.create_api_token(&alice, "laptop", vec![ApiScope::Read], None)),
        ErrorCategory::Conflict
    );
    assert_eq!(
        category(service.create_api_token(&alice, "x", vec![], None)),
        ErrorCategory::Invalid
    );
    let bob = service.principal_for("bob", now).unwrap();
    assert_eq!(
        category(service.revoke_api_token(&bob, &info.id)),
        ErrorCategory::NotFound
    );
    assert!(service.list_api_tokens(&bob).unwrap().is_empty());
    assert_eq!(service.list_api_tokens(LOCAL).unwrap().len(), 1);
    service.revoke_api_token(&alice, &info.id).unwrap();
    assert_eq!(refused(&secret, now), ErrorCategory::Forbidden);
    let recorded: Vec<Action> = actions(&sink)
        .into_iter()
        .filter(|(a, allowed)| *allowed && matches!(a, Action::TokenCreate | Action::TokenRevoke))
        .map(|(a, _)| a)
        .collect();
    assert_eq!(recorded, [Action::TokenCreate, Action::TokenRevoke]);
}

#[test]
fn a_token_never_exceeds_its_owners_grants() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, _) = setup(tmp.path());
    let now = Utc::now();
    let secret = auditor_token(&service, ApiScope::ALL.to_vec(), now);
    let token_sees = || {
        let (principal, _) = service.principal_for_api_token(&secret, now).unwrap();
        principal.visible(now)
    };
    assert_eq!(token_sees(), Visible::All);
    service
        .revoke_access(LOCAL, "carol", Role::Auditor)
        .unwrap();
    assert_eq!(token_sees(), Visible::Only(users(&["carol"])));
    // Without the admin scope, an admin's token holds no admin role.
    let (_, root_token) = service
        .create_api_token_for(LOCAL, "root", "read-only", vec![ApiScope::Read], None)
        .unwrap();
    let (root, _) = service.principal_for_api_token(&root_token, now).unwrap();
    assert!(!root.has_role(Role::Admin, now));
    assert_eq!(
        category(service.list_access(&root)),
        ErrorCategory::Forbidden
    );
    // A disabled owner's token is refused.
    disable(tmp.path(), "carol");
    assert_eq!(
        category(service.principal_for_api_token(&secret, now)),
        ErrorCategory::Forbidden
    );
}

#[test]
fn a_removed_user_leaves_nothing_to_whoever_takes_the_name_next() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, _) = setup(tmp.path());
    let now = Utc::now();
    let secret = auditor_token(&service, vec![ApiScope::Read], now);
    service
        .set_local_password(LOCAL, "carol", PASSWORD)
        .unwrap();
    service.remove_user(LOCAL, "carol").unwrap();
    service
        .add_user(LOCAL, "carol", &["new-carol@example.com".to_string()])
        .unwrap();
    assert_eq!(
        visible(&service, "carol", now),
        Visible::Only(users(&["carol"]))
    );
    assert_eq!(
        category(service.sign_in_local("carol", PASSWORD, now)),
        ErrorCategory::Forbidden
    );
    assert_eq!(
        category(service.principal_for_api_token(&secret, now)),
        ErrorCategory::Forbidden
    );
}

#[test]
fn concurrent_grants_are_all_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, _) = setup(tmp.path());
    let names: Vec<String> = (0..8).map(|i| format!("user{i}")).collect();
    for name in &names {
        service
            .add_user(LOCAL, name, &[format!("{name}@example.com")])
            .unwrap();
    }
    std::thread::scope(|scope| {
        for name in &names {
            // Each thread has its own service, as separate processes would.
            let service = service_with(tmp.path(), Arc::new(MemoryAuditLog::new()));
            scope.spawn(move || {
                service
                    .grant_access(LOCAL, name, Role::Compliance, Reach::All, None)
                    .unwrap();
            });
        }
    });
    let listed: Vec<String> = service
        .list_access(LOCAL)
        .unwrap()
        .into_iter()
        .map(|e| e.user)
        .filter(|u| u.starts_with("user"))
        .collect();
    assert_eq!(listed, names);
}
