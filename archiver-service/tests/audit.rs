//! The audit of the use cases: every read of mail content and every change leaves
//! an event naming who and what, every refusal a denied one, and a read whose
//! event cannot be recorded hands nothing over.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use archive_store::{ArchiveRequest, ArchiveStore, DiskArchiveStore, RawMessage, StoreOptions};
use archiver_service::audit_log::{
    Action, AuditEvent, AuditSink, ListQuery, MemoryAuditLog, Outcome,
};
use archiver_service::{
    ErrorCategory, ExportRequest, Grant, Principal, Role, SearchRequest, Service, ServiceOptions,
};

/// An archive where alice holds one message; the service records into `sink`
/// (`None`: the file log of the data directory). Returns the service and the id.
fn archive(root: &Path, sink: Option<Arc<MemoryAuditLog>>) -> (Service, String) {
    let data = root.join("data");
    let store = DiskArchiveStore::open(data.join("archive"), StoreOptions::default()).unwrap();
    let request = ArchiveRequest {
        user: "alice".into(),
        folder: "Inbox".into(),
        source: None,
        received: None,
    };
    let raw = "From: x@example.com\r\nSubject: budget for alice\r\n\r\nAlice's budget.\r\n";
    let id = store
        .archive(&request, RawMessage::Bytes(raw.as_bytes()))
        .unwrap()
        .id
        .0;
    drop(store);
    let options = ServiceOptions {
        audit: sink.map(|s| s as Arc<dyn AuditSink>),
        os_user: Some("operator".into()),
        ..ServiceOptions::default()
    };
    (Service::new(data, options), id)
}

fn search_request(user: Option<&str>) -> SearchRequest {
    SearchRequest {
        text: "budget".into(),
        user: user.map(str::to_string),
        from_date: None,
        to_date: None,
        limit: 10,
    }
}

/// The only event of `events` (asserting there is exactly one).
fn only(events: Vec<AuditEvent>) -> AuditEvent {
    assert_eq!(events.len(), 1, "{events:#?}");
    events.into_iter().next().unwrap()
}

#[test]
fn reading_a_message_records_who_read_which_message() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemoryAuditLog::new());
    let (service, id) = archive(tmp.path(), Some(sink.clone()));
    let shown = service
        .show_message(&Principal::user("alice"), &id)
        .unwrap();
    assert!(shown.text.contains("Alice's budget"));
    let event = only(sink.events());
    assert_eq!(event.action, Action::ContentShow);
    assert_eq!(event.actor, "account `alice`");
    assert_eq!(event.target.messages, vec![id.clone()]);
    assert_eq!(event.target.user.as_deref(), Some("alice"));
    assert_eq!(event.outcome, Outcome::Allowed);

    // The command line's administrator is named with the OS user.
    service
        .show_message(&Principal::LocalAdministrator, &id)
        .unwrap();
    let last = sink.events().pop().unwrap();
    assert!(
        last.actor.contains("local administrator") && last.actor.contains("operator"),
        "{}",
        last.actor
    );
    assert!(sink.verify().unwrap().ok);
}

#[test]
fn a_search_records_its_query_and_hits() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemoryAuditLog::new());
    let (service, id) = archive(tmp.path(), Some(sink.clone()));
    let hits = service
        .search(&Principal::user("alice"), &search_request(None))
        .unwrap();
    assert_eq!(hits.len(), 1);
    let event = only(sink.events());
    assert_eq!(event.action, Action::ContentSearch);
    assert_eq!(event.target.query.as_deref(), Some("budget"));
    assert_eq!(event.target.messages, vec![id]);
    assert_eq!(event.details.get("hits").map(String::as_str), Some("1"));
}

#[test]
fn every_refusal_records_a_denied_event() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemoryAuditLog::new());
    let (service, id) = archive(tmp.path(), Some(sink.clone()));
    let bob = Principal::user("bob");
    let check = |result: Result<(), archiver_service::ServiceError>, action: Action| {
        assert_eq!(result.unwrap_err().category(), ErrorCategory::Forbidden);
        let event = sink.events().pop().unwrap();
        assert_eq!(
            (event.action, event.actor.as_str()),
            (action, "account `bob`")
        );
        let Outcome::Denied { reason } = &event.outcome else {
            panic!("not denied: {event:#?}");
        };
        assert!(reason.contains("bob"), "{reason}");
        event
    };
    let event = check(
        service.show_message(&bob, &id).map(drop),
        Action::ContentShow,
    );
    assert_eq!(event.target.messages, vec![id.clone()]);
    // An unknown id is refused (and recorded) like someone else's.
    check(
        service.show_message(&bob, &"0".repeat(64)).map(drop),
        Action::ContentShow,
    );
    let event = check(
        service
            .search(&bob, &search_request(Some("alice")))
            .map(drop),
        Action::ContentSearch,
    );
    assert_eq!(event.target.user.as_deref(), Some("alice"));
    let export = ExportRequest {
        user: "alice".into(),
        folder: None,
        query: None,
        format: archive_store::ExportFormat::Mbox,
        out: tmp.path().join("out.mbox"),
    };
    check(
        service.export(&bob, &export).map(drop),
        Action::ContentExport,
    );
    check(
        service.add_user(&bob, "mallory", &[]).map(drop),
        Action::UserAdd,
    );
    check(
        service.list_users(&bob).map(drop),
        Action::ConfigurationRead,
    );
    check(
        service.audit_events(&bob, &ListQuery::default()).map(drop),
        Action::AuditRead,
    );
    assert!(!tmp.path().join("out.mbox").exists());
    assert!(sink.verify().unwrap().ok);
}

#[test]
fn no_content_leaves_when_its_event_cannot_be_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemoryAuditLog::new());
    let (service, id) = archive(tmp.path(), Some(sink.clone()));
    sink.set_failing(true);
    let alice = Principal::user("alice");
    let err = service.show_message(&alice, &id).unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Unavailable, "{err}");
    assert!(err.to_string().contains("nothing is handed over"), "{err}");
    assert!(service.search(&alice, &search_request(None)).is_err());
    let out = tmp.path().join("out.mbox");
    let export = ExportRequest {
        user: "alice".into(),
        folder: None,
        query: None,
        format: archive_store::ExportFormat::Mbox,
        out: out.clone(),
    };
    assert!(service.export(&alice, &export).is_err());
    assert!(!out.exists(), "an export without its event wrote mail");
    assert!(sink.events().is_empty());

    // Once the log works again, so do the reads, and each is recorded.
    sink.set_failing(false);
    service.export(&alice, &export).unwrap();
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
    assert_eq!(only(sink.events()).action, Action::ContentExport);
}

#[test]
fn the_file_log_of_the_data_directory_records_changes_and_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, id) = archive(tmp.path(), None);
    let admin = Principal::LocalAdministrator;
    service
        .add_user(&admin, "carol", &["carol@example.com".to_string()])
        .unwrap();
    service.show_message(&admin, &id).unwrap();
    assert!(tmp.path().join("data/audit/audit.log").is_file());

    let auditor = Principal::with_grants("audra", vec![Grant::new(Role::Auditor)]);
    let events = service
        .audit_events(&auditor, &ListQuery::default())
        .unwrap();
    let actions: Vec<Action> = events.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [Action::UserAdd, Action::ContentShow, Action::AuditRead]
    );
    assert_eq!(events[0].target.user.as_deref(), Some("carol"));
    let report = service.verify_audit(&auditor).unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!((report.events, report.head.seq), (3, 3));

    let out = tmp.path().join("audit.jsonl");
    assert_eq!(service.export_audit(&auditor, &out).unwrap(), 4);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 4);
    assert!(text.contains("\"action\":\"user_add\""), "{text}");

    // Another service over the same directory (another process) continues the chain.
    let other = Service::new(tmp.path().join("data"), ServiceOptions::default());
    other.show_message(&admin, &id).unwrap();
    let report = other.verify_audit(&admin).unwrap();
    assert!(report.ok && report.events == 5, "{report:#?}");
}
