//! Retention, holds and erasure as use cases: who may do what (one role matrix),
//! the audit event of every change (and no change when it cannot be recorded), bad
//! input named by field, and restricted mail hidden from its owner but shown to
//! auditors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use archive_store::{ArchiveRequest, ArchiveStore, DiskArchiveStore, RawMessage, StoreOptions};
use archiver_service::audit_log::{Action, AuditEvent, MemoryAuditLog, Outcome};
use archiver_service::retention::{
    EntryKey, EntryView, ErasureOutcome, MemoryTarget, RetentionTarget,
};
use archiver_service::{
    ErrorCategory, ExportRequest, Grant, HoldSpec, PolicySpec, Principal, Reach, Role,
    SearchRequest, Service, ServiceError, ServiceOptions,
};
use chrono::{Duration, Utc};

/// A service over `data` with an in-memory audit log and archive (as retention sees it).
fn service(data: &Path) -> (Service, Arc<MemoryAuditLog>, Arc<MemoryTarget>) {
    let audit = Arc::new(MemoryAuditLog::new());
    let target = Arc::new(MemoryTarget::new());
    let options = ServiceOptions {
        audit: Some(audit.clone()),
        retention_target: Some(target.clone()),
        ..ServiceOptions::default()
    };
    (Service::new(data, options), audit, target)
}

fn key(user: &str, id: &str) -> EntryKey {
    EntryKey {
        user: user.into(),
        id: id.into(),
        folder: "Inbox".into(),
    }
}

/// An entry of `user` received `age` days ago.
fn entry(user: &str, id: &str, age: i64) -> EntryView {
    let received = Utc::now() - Duration::days(age);
    EntryView {
        key: key(user, id),
        received: Some(received),
        archived: received,
        size: 100,
    }
}

fn compliance() -> Principal {
    Principal::with_grants("carol", vec![Grant::new(Role::Compliance)])
}

fn policy(name: &str, min: i64, max: Option<i64>) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        min_days: min,
        max_days: max,
        ..PolicySpec::default()
    }
}

fn hold(case: &str, users: &[&str]) -> HoldSpec {
    HoldSpec {
        case: case.into(),
        reason: "litigation 2026-17".into(),
        users: users.iter().map(|u| (*u).to_string()).collect(),
        ..HoldSpec::default()
    }
}

/// `Ok(())` or the category of the error.
fn category<T>(result: Result<T, ServiceError>) -> Result<(), ErrorCategory> {
    result.map(drop).map_err(|e| e.category())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    AddPolicy,
    ListPolicies,
    ShowPolicy,
    RemovePolicy,
    DryRun,
    Apply,
    CreateHold,
    ListHolds,
    ShowHold,
    ReleaseHold,
    Erase,
}

impl Op {
    const ALL: [Op; 11] = [
        Op::AddPolicy,
        Op::ListPolicies,
        Op::ShowPolicy,
        Op::RemovePolicy,
        Op::DryRun,
        Op::Apply,
        Op::CreateHold,
        Op::ListHolds,
        Op::ShowHold,
        Op::ReleaseHold,
        Op::Erase,
    ];

    fn reads(self) -> bool {
        matches!(
            self,
            Op::ListPolicies | Op::ShowPolicy | Op::ListHolds | Op::ShowHold
        )
    }

    fn run(self, service: &Service, who: &Principal) -> Result<(), ErrorCategory> {
        match self {
            Op::AddPolicy => category(service.add_retention_policy(who, &policy("new", 1, None))),
            Op::ListPolicies => category(service.retention_policies(who)),
            Op::ShowPolicy => category(service.retention_policy(who, "keep")),
            Op::RemovePolicy => category(service.remove_retention_policy(who, "keep")),
            Op::DryRun => category(service.apply_retention(who, true)),
            Op::Apply => category(service.apply_retention(who, false)),
            Op::CreateHold => category(service.create_hold(who, &hold("new-case", &["alice"]))),
            Op::ListHolds => category(service.holds(who)),
            Op::ShowHold => category(service.hold(who, "case-1")),
            Op::ReleaseHold => category(service.release_hold(who, "case-1", "settled")),
            Op::Erase => category(service.erase_messages(who, &["aa01".into()], "GDPR art. 17")),
        }
    }
}

/// Runs `op` as `who` on a fresh installation holding policy `keep`, hold `case-1`
/// and alice's message `aa01`; a refusal must be `Forbidden` and recorded.
fn check(who: &Principal, op: Op, allowed: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let (service, audit, target) = service(&tmp.path().join("data"));
    let local = &Principal::LocalAdministrator;
    service
        .add_retention_policy(local, &policy("keep", 10, Some(3650)))
        .unwrap();
    service
        .create_hold(local, &hold("case-1", &["bob"]))
        .unwrap();
    target.add(entry("alice", "aa01", 30), &["budget"]);
    let before = audit.events().len();
    let got = op.run(&service, who);
    let expected = if allowed {
        Ok(())
    } else {
        Err(ErrorCategory::Forbidden)
    };
    assert_eq!(got, expected, "{op:?} by {who:?}");
    let events = audit.events();
    if !allowed {
        let last = events.last().unwrap();
        assert!(
            matches!(last.outcome, Outcome::Denied { .. }) && events.len() == before + 1,
            "{op:?} by {who:?}: refusal not recorded: {last:?}"
        );
    }
}

#[test]
fn each_role_may_do_what_the_design_says() {
    let auditor = Principal::with_grants("audrey", vec![Grant::new(Role::Auditor)]);
    let admin = Principal::with_grants("root", vec![Grant::new(Role::Admin)]);
    type May = fn(Op) -> bool;
    let roles: [(Principal, May); 5] = [
        (Principal::LocalAdministrator, |_| true),
        (compliance(), |_| true),
        (auditor, Op::reads),
        (admin, |_| false),
        (Principal::user("alice"), |_| false),
    ];
    for (who, may) in &roles {
        for op in Op::ALL {
            check(who, op, may(op));
        }
    }
}

#[test]
fn a_compliance_officer_with_a_limited_reach_stays_within_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, _, target) = service(&tmp.path().join("data"));
    target.add(entry("alice", "aa01", 30), &[]);
    target.add(entry("bob", "bb01", 30), &[]);
    let officer = Principal::with_grants(
        "carol",
        vec![Grant {
            role: Role::Compliance,
            reach: Reach::Users(["alice".to_string()].into()),
            until: None,
        }],
    );
    use ErrorCategory::Forbidden;
    type Case = (
        &'static str,
        Result<(), ErrorCategory>,
        Result<(), ErrorCategory>,
    );
    let cases: [Case; 6] = [
        (
            "hold on alice",
            category(service.create_hold(&officer, &hold("a", &["alice"]))),
            Ok(()),
        ),
        (
            "hold on everyone",
            category(service.create_hold(&officer, &hold("b", &[]))),
            Err(Forbidden),
        ),
        (
            "hold on bob",
            category(service.create_hold(&officer, &hold("c", &["bob"]))),
            Err(Forbidden),
        ),
        (
            "apply",
            category(service.apply_retention(&officer, true)),
            Err(Forbidden),
        ),
        (
            "erase alice's",
            category(service.erase_messages(&officer, &["aa01".into()], "r")),
            Ok(()),
        ),
        (
            "erase bob's",
            category(service.erase_messages(&officer, &["bb01".into()], "r")),
            Err(Forbidden),
        ),
    ];
    for (what, got, expected) in cases {
        assert_eq!(got, expected, "{what}");
    }
    assert!(target.keys().contains(&key("bob", "bb01")));
}

fn last(audit: &MemoryAuditLog) -> AuditEvent {
    audit.events().pop().unwrap()
}

fn detail<'a>(event: &'a AuditEvent, key: &str) -> &'a str {
    event
        .details
        .get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {key} in {event:?}"))
}

#[test]
fn every_change_leaves_its_event() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, audit, target) = service(&tmp.path().join("data"));
    let carol = compliance();
    // alice's old message goes (past 30 days), bob's is held, dave's is too young.
    target.add(entry("alice", "aa01", 400), &[]);
    target.add(entry("bob", "bb01", 400), &[]);
    target.add(entry("dave", "dd01", 5), &[]);

    service
        .add_retention_policy(
            &carol,
            &PolicySpec {
                users: vec!["alice".into(), "bob".into(), "dave".into()],
                ..policy("short", 10, Some(30))
            },
        )
        .unwrap();
    let event = last(&audit);
    assert_eq!(event.action, Action::RetentionPolicyChange);
    assert_eq!(event.target.object.as_deref(), Some("short"));
    assert_eq!(
        (
            detail(&event, "change"),
            detail(&event, "min_days"),
            detail(&event, "max_days")
        ),
        ("add", "10", "30")
    );
    assert_eq!(detail(&event, "users"), "alice,bob,dave");
    assert_eq!(event.actor, "account `carol`");

    service
        .create_hold(&carol, &hold("case-1", &["bob"]))
        .unwrap();
    let event = last(&audit);
    assert_eq!(event.action, Action::HoldCreate);
    assert_eq!(detail(&event, "reason"), "litigation 2026-17");

    let dry = service.apply_retention(&carol, true).unwrap();
    assert_eq!(
        (dry.dry_run, dry.candidates, dry.deleted, dry.held),
        (true, 2, 1, 1)
    );
    assert_eq!(target.keys().len(), 3, "a dry run removed something");
    let event = last(&audit);
    assert_eq!(event.action, Action::RetentionApply);
    assert_eq!(detail(&event, "dry_run"), "true");
    assert_eq!(event.target.messages, ["aa01"]);

    let report = service.apply_retention(&carol, false).unwrap();
    assert_eq!(
        (report.deleted, report.held, report.bytes_reclaimed),
        (1, 1, 100)
    );
    let events = audit.events();
    let [start, done] = &events[events.len() - 2..] else {
        unreachable!()
    };
    assert_eq!(detail(start, "phase"), "start");
    assert_eq!(
        (
            detail(done, "phase"),
            detail(done, "deleted"),
            detail(done, "held")
        ),
        ("done", "1", "1")
    );
    assert!(!target.keys().contains(&key("alice", "aa01")));

    // Erasure: bob's is held (restricted), dave's is under minimum retention
    // (restricted); the outcome of each is recorded.
    let outcomes = service
        .erase_messages(&carol, &["bb01".into(), "DD01".into()], "GDPR art. 17")
        .unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ErasureOutcome::Restricted { .. })),
        "{outcomes:?}"
    );
    let event = last(&audit);
    assert_eq!(event.action, Action::Erasure);
    assert_eq!(event.target.messages, ["bb01", "dd01"]);
    assert!(
        detail(&event, "bb01 (bob: Inbox)").contains("under hold case-1"),
        "{event:?}"
    );
    assert!(
        detail(&event, "dd01 (dave: Inbox)").contains("minimum retention until"),
        "{event:?}"
    );

    service
        .release_hold(&carol, "case-1", "case settled")
        .unwrap();
    let event = last(&audit);
    assert_eq!(event.action, Action::HoldRelease);
    assert_eq!(detail(&event, "reason"), "case settled");

    service.remove_retention_policy(&carol, "short").unwrap();
    assert_eq!(detail(&last(&audit), "change"), "remove");
    assert!(audit.verify().unwrap().ok);
}

use archiver_service::audit_log::AuditSink as _;

#[test]
fn no_change_is_made_when_its_event_cannot_be_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, audit, target) = service(&tmp.path().join("data"));
    let carol = compliance();
    let local = &Principal::LocalAdministrator;
    target.add(entry("alice", "aa01", 400), &[]);
    service
        .add_retention_policy(local, &policy("short", 0, Some(30)))
        .unwrap();
    service
        .create_hold(local, &hold("held", &["nobody"]))
        .unwrap();
    audit.set_failing(true);
    let unavailable = Err(ErrorCategory::Unavailable);
    assert_eq!(
        category(service.add_retention_policy(&carol, &policy("p2", 1, None))),
        unavailable
    );
    assert_eq!(
        category(service.remove_retention_policy(&carol, "short")),
        unavailable
    );
    assert_eq!(
        category(service.create_hold(&carol, &hold("c2", &[]))),
        unavailable
    );
    assert_eq!(
        category(service.release_hold(&carol, "held", "done")),
        unavailable
    );
    assert_eq!(
        category(service.apply_retention(&carol, false)),
        unavailable
    );
    assert_eq!(category(service.apply_retention(&carol, true)), unavailable);
    assert_eq!(
        category(service.erase_messages(&carol, &["aa01".into()], "GDPR")),
        unavailable
    );
    audit.set_failing(false);
    let names: Vec<String> = service
        .retention_policies(local)
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["short"]);
    let holds = service.holds(local).unwrap();
    assert_eq!(holds.len(), 1);
    assert!(holds[0].is_active());
    assert!(
        target.keys().contains(&key("alice", "aa01")),
        "expunged without its event"
    );
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, _, target) = service(&tmp.path().join("data"));
    let carol = compliance();
    target.add(entry("alice", "aa01", 1), &[]);
    service.create_hold(&carol, &hold("case-1", &[])).unwrap();
    service
        .add_retention_policy(&carol, &policy("keep", 1, None))
        .unwrap();
    use ErrorCategory::{Conflict, Invalid, NotFound};
    let bad_reference = PolicySpec {
        reference: Some("sent".into()),
        ..policy("r", 1, None)
    };
    let empty_query = PolicySpec {
        query: Some("  ".into()),
        ..policy("q", 1, None)
    };
    let backwards = HoldSpec {
        from: Some(Utc::now()),
        to: Some(Utc::now() - Duration::days(1)),
        ..hold("range", &[])
    };
    let cases: Vec<(&str, Result<(), ServiceError>, ErrorCategory, &str)> = vec![
        (
            "negative min",
            service
                .add_retention_policy(&carol, &policy("n", -3, None))
                .map(drop),
            Invalid,
            "min_days",
        ),
        (
            "negative max",
            service
                .add_retention_policy(&carol, &policy("n", 3, Some(-1)))
                .map(drop),
            Invalid,
            "max_days",
        ),
        (
            "max below min",
            service
                .add_retention_policy(&carol, &policy("n", 30, Some(10)))
                .map(drop),
            Invalid,
            "max_days",
        ),
        (
            "bad name",
            service
                .add_retention_policy(&carol, &policy("a b", 1, None))
                .map(drop),
            Invalid,
            "policy name",
        ),
        (
            "bad reference",
            service
                .add_retention_policy(&carol, &bad_reference)
                .map(drop),
            Invalid,
            "reference",
        ),
        (
            "empty query",
            service.add_retention_policy(&carol, &empty_query).map(drop),
            Invalid,
            "query",
        ),
        (
            "policy exists",
            service
                .add_retention_policy(&carol, &policy("keep", 1, None))
                .map(drop),
            Conflict,
            "keep",
        ),
        (
            "unknown policy shown",
            service.retention_policy(&carol, "nope").map(drop),
            NotFound,
            "nope",
        ),
        (
            "unknown policy removed",
            service.remove_retention_policy(&carol, "nope").map(drop),
            NotFound,
            "nope",
        ),
        (
            "unknown case shown",
            service.hold(&carol, "nope").map(drop),
            NotFound,
            "nope",
        ),
        (
            "unknown case released",
            service.release_hold(&carol, "nope", "why").map(drop),
            NotFound,
            "nope",
        ),
        (
            "release without reason",
            service.release_hold(&carol, "case-1", " ").map(drop),
            Invalid,
            "reason",
        ),
        (
            "hold without reason",
            service
                .create_hold(
                    &carol,
                    &HoldSpec {
                        reason: String::new(),
                        ..hold("x", &[])
                    },
                )
                .map(drop),
            Invalid,
            "reason",
        ),
        (
            "hold dates backwards",
            service.create_hold(&carol, &backwards).map(drop),
            Invalid,
            "date range",
        ),
        (
            "case exists",
            service.create_hold(&carol, &hold("case-1", &[])).map(drop),
            Conflict,
            "case-1",
        ),
        (
            "erase without reason",
            service
                .erase_messages(&carol, &["aa01".into()], "")
                .map(drop),
            Invalid,
            "reason",
        ),
        (
            "erase nothing",
            service.erase_messages(&carol, &[], "r").map(drop),
            Invalid,
            "message id",
        ),
        (
            "erase unknown id",
            service
                .erase_messages(&carol, &["ffff".into()], "r")
                .map(drop),
            NotFound,
            "ffff",
        ),
    ];
    for (what, got, expected, names) in cases {
        let error = got.expect_err(what);
        let text = archiver_service::chain(&error);
        assert_eq!(error.category(), expected, "{what}: {text}");
        assert!(
            text.contains(names),
            "{what}: `{text}` does not name {names}"
        );
    }
    assert!(service.hold(&carol, "case-1").unwrap().hold.is_active());
}

/// The ids a search for "budget" by `who` finds, sorted.
fn budget_hits(service: &Service, who: &Principal) -> Vec<String> {
    let request = SearchRequest {
        text: "budget".into(),
        user: None,
        from_date: None,
        to_date: None,
        limit: 50,
    };
    let mut ids: Vec<String> = service
        .search(who, &request)
        .unwrap()
        .into_iter()
        .map(|h| h.id.0)
        .collect();
    ids.sort();
    ids
}

/// A disk archive where alice holds `budget` messages: returns their ids.
fn disk_archive(data: &Path, subjects: &[&str]) -> Vec<String> {
    let aged: Vec<(&str, Option<i64>)> = subjects.iter().map(|s| (*s, None)).collect();
    disk_archive_aged(data, &aged)
}

/// [`disk_archive`], each message received this many days ago (when given).
fn disk_archive_aged(data: &Path, subjects: &[(&str, Option<i64>)]) -> Vec<String> {
    let store = DiskArchiveStore::open(data.join("archive"), StoreOptions::default()).unwrap();
    let ids = subjects
        .iter()
        .map(|(subject, age)| {
            let raw = format!("From: x@example.com\r\nSubject: {subject}\r\n\r\nbudget text\r\n");
            let request = ArchiveRequest {
                user: "alice".into(),
                folder: "Inbox".into(),
                source: None,
                received: age.map(|days| Utc::now() - Duration::days(days)),
            };
            store
                .archive(&request, RawMessage::Bytes(raw.as_bytes()))
                .unwrap()
                .id
                .0
        })
        .collect();
    drop(store);
    ids
}

#[test]
fn erasure_is_allowed_restricted_or_refused_and_restricted_mail_is_hidden_from_its_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ids = disk_archive(&data, &["budget one", "budget two", "budget three"]);
    let (service, _, target) = service(&data);
    let carol = compliance();
    let alice = Principal::user("alice");
    let auditor = Principal::with_grants("audrey", vec![Grant::new(Role::Auditor)]);
    // One past minimum retention (erased), one under it (restricted), one kept.
    target.add(entry("alice", &ids[0], 400), &[]);
    target.add(entry("alice", &ids[1], 2), &[]);
    target.add(entry("alice", &ids[2], 400), &[]);
    service
        .add_retention_policy(&carol, &policy("min", 30, None))
        .unwrap();

    let outcomes = service
        .erase_messages(&carol, &[ids[0].clone(), ids[1].clone()], "GDPR art. 17")
        .unwrap();
    let erased: Vec<bool> = outcomes
        .iter()
        .map(|o| matches!(o, ErasureOutcome::Erased { .. }))
        .collect();
    let first = outcomes.iter().position(|o| match o {
        ErasureOutcome::Erased { key } | ErasureOutcome::Restricted { key, .. } => key.id == ids[0],
    });
    assert_eq!(erased.iter().filter(|e| **e).count(), 1, "{outcomes:?}");
    assert!(erased[first.unwrap()], "{outcomes:?}");
    assert!(!target.keys().contains(&key("alice", &ids[0])));
    assert!(target.is_restricted(&key("alice", &ids[1])).unwrap());
    // Refused: the user role may not erase (its own mail included).
    assert_eq!(
        category(service.erase_messages(&alice, &[ids[2].clone()], "mine")),
        Err(ErrorCategory::Forbidden)
    );

    // The restricted message: invisible to alice, visible to an auditor.
    let found = |who: &Principal| budget_hits(&service, who);
    assert!(
        !found(&alice).contains(&ids[1]),
        "alice finds her restricted message"
    );
    assert!(found(&alice).contains(&ids[2]));
    assert!(found(&auditor).contains(&ids[1]));
    assert_eq!(
        category(service.show_message(&alice, &ids[1])),
        Err(ErrorCategory::Forbidden)
    );
    assert_eq!(category(service.show_message(&auditor, &ids[1])), Ok(()));
    let out = tmp.path().join("export.mbox");
    let report = service
        .export(
            &alice,
            &ExportRequest {
                user: "alice".into(),
                folder: None,
                query: None,
                format: archive_store::ExportFormat::Mbox,
                out: out.clone(),
            },
        )
        .unwrap();
    // The export takes what the archive, as retention sees it, still holds for
    // alice (the erased one is gone there) and leaves out the restricted one.
    assert_eq!(report.messages, 1);
    let mbox = std::fs::read_to_string(&out).unwrap();
    assert!(!mbox.contains("budget two") && mbox.contains("budget three"));
}

#[test]
fn before_anything_is_archived_policies_and_holds_work_and_apply_finds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let audit = Arc::new(MemoryAuditLog::new());
    let service = Service::new(
        tmp.path().join("data"),
        ServiceOptions {
            audit: Some(audit),
            ..ServiceOptions::default()
        },
    );
    let local = &Principal::LocalAdministrator;
    assert!(service.retention_policies(local).unwrap().is_empty());
    service
        .add_retention_policy(local, &policy("keep", 1, None))
        .unwrap();
    service.create_hold(local, &hold("case-1", &[])).unwrap();
    assert_eq!(service.hold(local, "case-1").unwrap().held, Some(vec![]));
    let report = service.apply_retention(local, true).unwrap();
    assert_eq!((report.candidates, report.deleted), (0, 0));
    assert!(!tmp.path().join("data").join("archive").exists());
    // What was written survives a new service over the same directory.
    let again = Service::new(tmp.path().join("data"), ServiceOptions::default());
    assert_eq!(again.retention_policies(local).unwrap()[0].name, "keep");
}

#[test]
fn on_the_disk_archive_an_erasure_removes_or_restricts_and_only_the_privileged_see_restricted_mail()
{
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ids = disk_archive_aged(
        &data,
        &[
            ("budget one", Some(400)),
            ("budget two", Some(2)),
            ("budget three", Some(400)),
        ],
    );
    // No target injected: the service wires the disk archive itself.
    let audit = Arc::new(MemoryAuditLog::new());
    let options = ServiceOptions {
        audit: Some(audit),
        ..ServiceOptions::default()
    };
    let service = Service::new(&data, options);
    let carol = compliance();
    let alice = Principal::user("alice");
    let auditor = Principal::with_grants("audrey", vec![Grant::new(Role::Auditor)]);
    service
        .add_retention_policy(&carol, &policy("min", 30, None))
        .unwrap();
    let outcomes = service
        .erase_messages(&carol, &[ids[0].clone(), ids[1].clone()], "GDPR art. 17")
        .unwrap();
    let erased: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| match o {
            ErasureOutcome::Erased { key } => Some(key.id.as_str()),
            ErasureOutcome::Restricted { .. } => None,
        })
        .collect();
    assert_eq!(erased, [ids[0].as_str()], "{outcomes:?}");

    let found = |who: &Principal| budget_hits(&service, who);
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    // The erased message is gone for everyone; the restricted one only the
    // privileged see.
    assert_eq!(found(&alice), [ids[2].clone()]);
    assert_eq!(
        found(&auditor),
        sorted(vec![ids[1].clone(), ids[2].clone()])
    );
    assert_eq!(
        category(service.show_message(&alice, &ids[1])),
        Err(ErrorCategory::Forbidden)
    );
    assert_eq!(category(service.show_message(&auditor, &ids[1])), Ok(()));
    // The erased one is not there to show, to anyone.
    assert!(category(service.show_message(&auditor, &ids[0])).is_err());
    let out = tmp.path().join("export.mbox");
    let report = service
        .export(
            &alice,
            &ExportRequest {
                user: "alice".into(),
                folder: None,
                query: None,
                format: archive_store::ExportFormat::Mbox,
                out: out.clone(),
            },
        )
        .unwrap();
    assert_eq!(report.messages, 1);
    let mbox = std::fs::read_to_string(&out).unwrap();
    assert!(mbox.contains("budget three") && !mbox.contains("budget two"));
}
