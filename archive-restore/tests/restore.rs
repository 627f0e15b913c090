//! The restore job against an archive in a temporary directory and the in-memory mail
//! service: round trip, reruns, incomplete items, exact MIME, failure isolation and
//! mailbox-wide refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use archive_restore::{
    RestoreError, RestoreEvent, RestoreOptions, RestoreReport, RestoreRequest, Selection, restore,
};
use archive_store::{ArchiveRequest, ArchiveStore, DiskArchiveStore, MessageId, RawMessage};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use m365_mailbox::{InjectedFailure, MailboxSource, MemoryMailboxSource, Operation, WriteLimits};
use mail_parser::MessageParser;

mod common;
use common::{b64, blob, seen};

const TARGET: &str = "review@contoso.com";
const USER: &str = "alice";

/// (folder, MIME) fixtures of varied shape.
fn fixtures() -> Vec<(&'static str, Vec<u8>)> {
    let plain = "From: \"Adele Vance\" <adele@contoso.com>\r\nTo: Bob <bob@contoso.com>, carol@contoso.com\r\nCc: dan@contoso.com\r\nBcc: eve@contoso.com\r\nSubject: =?utf-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\nDate: Tue, 1 Jul 2025 10:00:00 +0200\r\nMessage-ID: <plain@contoso.com>\r\nX-Mailer: fixture\r\nImportance: high\r\nKeywords: Red\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo Bob,\r\nbis morgen.\r\n".to_string();
    let alternative = "From: adele@contoso.com\r\nTo: bob@contoso.com\r\nSubject: Quarterly numbers\r\nDate: Wed, 2 Jul 2025 08:30:00 +0000\r\nMessage-ID: <alt@contoso.com>\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\nNumbers attached\r\n--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Numbers <b>attached</b></p>\r\n--a--\r\n".to_string();
    let png = blob(900, 7);
    let inline = format!(
        "From: adele@contoso.com\r\nTo: bob@contoso.com\r\nSubject: Logo\r\nDate: Thu, 3 Jul 2025 12:00:00 +0000\r\nMessage-ID: <inline@contoso.com>\r\nContent-Type: multipart/related; boundary=\"r\"\r\n\r\n--r\r\nContent-Type: text/html\r\n\r\n<p>See <img src=\"cid:logo@x\"></p>\r\n--r\r\nContent-Type: image/png; name=logo.png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline; filename=logo.png\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--r--\r\n",
        b64(&png)
    );
    let pdf = blob(20_000, 3);
    let attachments = format!(
        "From: =?utf-8?B?w4lsb2RpZQ==?= <elodie@contoso.com>\r\nTo: bob@contoso.com\r\nSubject: Contract\r\nDate: Fri, 4 Jul 2025 09:15:00 +0000\r\nMessage-ID: <attach@contoso.com>\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nSee the attachments.\r\n--m\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''Vertr%C3%A4ge%202025.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--m\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"forwarded.eml\"\r\n\r\nFrom: x@y.z\r\nSubject: inner\r\n\r\ninner body\r\n--m--\r\n",
        b64(&pdf)
    );
    let big = blob(5 * 1024 * 1024, 11);
    let large = format!(
        "From: adele@contoso.com\r\nTo: bob@contoso.com\r\nSubject: Big one\r\nDate: Sat, 5 Jul 2025 07:00:00 +0000\r\nMessage-ID: <large@contoso.com>\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nlarge\r\n--m\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--m--\r\n",
        b64(&big)
    );
    let nested = "From: adele@contoso.com\r\nTo: bob@contoso.com\r\nSubject: Deep folder\r\nDate: Sun, 6 Jul 2025 07:00:00 +0000\r\nMessage-ID: <deep@contoso.com>\r\n\r\ndeep\r\n".to_string();
    vec![
        ("Inbox", plain.into_bytes()),
        ("Inbox", alternative.into_bytes()),
        ("Inbox/Projects", inline.into_bytes()),
        ("Inbox/Projects", attachments.into_bytes()),
        ("Sent Items", large.into_bytes()),
        ("Archive/2025/Q3\\/Q4", nested.into_bytes()),
    ]
}

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<DiskArchiveStore>,
    mail: MemoryMailboxSource,
    /// (archive id, folder, MIME).
    archived: Vec<(MessageId, String, Vec<u8>)>,
}

fn received_at(n: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 7, 10, 6, n as u32, 0)
        .single()
        .unwrap_or_default()
}

fn setup_with(messages: Vec<(&'static str, Vec<u8>)>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskArchiveStore::open(dir.path(), Default::default()).unwrap();
    let mut archived = Vec::new();
    for (n, (folder, mime)) in messages.into_iter().enumerate() {
        let request = ArchiveRequest {
            user: USER.into(),
            folder: folder.into(),
            source: None,
            received: Some(received_at(n)),
        };
        let outcome = store.archive(&request, RawMessage::Bytes(&mime)).unwrap();
        archived.push((outcome.id, folder.to_string(), mime));
    }
    let mail = MemoryMailboxSource::new();
    mail.add_mailbox(TARGET);
    Setup {
        _dir: dir,
        store: Arc::new(store),
        mail,
        archived,
    }
}

fn request(selection: Selection) -> RestoreRequest {
    RestoreRequest {
        user: USER.into(),
        selection,
        to_mailbox: TARGET.into(),
        to_folder: None,
        exact_mime: false,
        date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default(),
    }
}

fn everything() -> Selection {
    Selection::Folder(String::new())
}

async fn run(s: &Setup, request: &RestoreRequest) -> Result<RestoreReport, RestoreError> {
    restore(
        s.store.clone(),
        &s.mail,
        request,
        RestoreOptions::default(),
        &|_| {},
    )
    .await
}

/// The folder of `mailbox` at `path`, by its display path.
async fn folder_at(mail: &MemoryMailboxSource, path: &str) -> Option<String> {
    mail.folders(TARGET)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.path == path)
        .map(|f| f.id)
}

/// The restored copies in `path`: (restore key, message id).
async fn restored_in(mail: &MemoryMailboxSource, path: &str) -> Vec<(String, String)> {
    let Some(folder) = folder_at(mail, path).await else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = mail
        .messages_in(TARGET, &folder)
        .into_iter()
        .map(|id| {
            let flags = mail.written_flags(TARGET, &id).unwrap();
            (flags.key.map(|k| k.0).unwrap_or_default(), id)
        })
        .collect();
    out.sort();
    out
}

fn target_path(folder: &str) -> String {
    format!("Restored/2026-12-01/{folder}")
}

#[tokio::test]
async fn round_trip_keeps_what_a_reader_sees_and_nothing_is_a_draft() {
    let s = setup_with(fixtures());
    let report = run(&s, &request(everything())).await.unwrap();
    assert_eq!(report.restored, s.archived.len() as u64, "{report:?}");
    assert_eq!((report.failed, report.skipped_existing), (0, 0));
    assert_eq!(report.to_folder, "Restored/2026-12-01");
    assert_eq!(report.to_mailbox, TARGET);
    let total: u64 = s.archived.iter().map(|(_, _, m)| m.len() as u64).sum();
    assert_eq!(report.bytes, total);
    for (n, (id, folder, original)) in s.archived.iter().enumerate() {
        let copies = restored_in(&s.mail, &target_path(folder)).await;
        let Some((_, message_id)) = copies.iter().find(|(k, _)| k == &id.0) else {
            panic!("{id} not restored into {folder}: {copies:?}");
        };
        let flags = s.mail.written_flags(TARGET, message_id).unwrap();
        assert!(!flags.draft && flags.complete, "{flags:?}");
        let summary = s.mail.message(TARGET, message_id).unwrap();
        assert_eq!(summary.received, Some(received_at(n)), "{folder}");
        let mime = common::mime_bytes(
            s.mail
                .fetch_mime(TARGET, message_id, u64::MAX)
                .await
                .unwrap(),
        );
        let (want, got) = (seen(original), seen(&mime));
        assert_eq!(want, got, "{folder}: {}", want.subject);
    }
    // The comparison saw the parts that matter.
    assert_eq!(
        seen(&s.archived[2].2).attachments.len(),
        1,
        "the inline logo"
    );
    assert_eq!(
        seen(&s.archived[4].2).attachments[0].2.len(),
        5 * 1024 * 1024
    );
    assert!(seen(&s.archived[1].2).html.is_some());
    // Names as a reader sees them, decoded.
    let contract = seen(&s.archived[3].2);
    let names: Vec<&str> = contract
        .attachments
        .iter()
        .map(|(n, _, _)| n.as_str())
        .collect();
    assert_eq!(names, ["Verträge 2025.pdf", "forwarded.eml"]);
    assert_eq!(seen(&s.archived[0].2).subject, "Grüße aus Köln");
}

#[tokio::test]
async fn a_rerun_restores_nothing_again() {
    let s = setup_with(fixtures());
    run(&s, &request(everything())).await.unwrap();
    let before = restored_in(&s.mail, &target_path("Inbox")).await;
    let again = run(&s, &request(everything())).await.unwrap();
    assert_eq!(again.skipped_existing, s.archived.len() as u64, "{again:?}");
    assert_eq!((again.restored, again.failed, again.bytes), (0, 0, 0));
    assert_eq!(restored_in(&s.mail, &target_path("Inbox")).await, before);
}

#[tokio::test]
async fn an_item_left_incomplete_is_removed_and_restored_again() {
    let s = setup_with(fixtures());
    // The contract's attachments (20 kB) follow the create: a stop after the create
    // leaves the item marked incomplete.
    s.mail.set_write_limits(WriteLimits {
        max_request_bytes: 8 * 1024,
        ..WriteLimits::GRAPH
    });
    let contract = &s.archived[3];
    s.mail.fail_times(
        TARGET,
        Operation::AddAttachment,
        InjectedFailure::RetriesExhausted,
        1,
    );
    let first = run(&s, &request(Selection::Ids(vec![contract.0.clone()])))
        .await
        .unwrap();
    assert_eq!((first.restored, first.failed), (0, 1), "{first:?}");
    let left = restored_in(&s.mail, &target_path("Inbox/Projects")).await;
    assert_eq!(left.len(), 1);
    assert!(!s.mail.written_flags(TARGET, &left[0].1).unwrap().complete);

    let second = run(&s, &request(Selection::Ids(vec![contract.0.clone()])))
        .await
        .unwrap();
    assert_eq!((second.restored, second.failed), (1, 0), "{second:?}");
    let now = restored_in(&s.mail, &target_path("Inbox/Projects")).await;
    assert_eq!(now.len(), 1, "exactly one copy: {now:?}");
    assert_ne!(now[0].1, left[0].1, "the incomplete item was replaced");
    assert!(s.mail.written_flags(TARGET, &now[0].1).unwrap().complete);
}

#[tokio::test]
async fn exact_mime_is_byte_identical_a_draft_and_refuses_what_does_not_fit() {
    let s = setup_with(fixtures());
    let mut exact = request(everything());
    exact.exact_mime = true;
    exact.to_folder = Some("Review/Exact".into());
    let report = run(&s, &exact).await.unwrap();
    // The 5 MB message does not fit one request; all others are restored.
    assert_eq!(
        (report.restored, report.failed),
        (s.archived.len() as u64 - 1, 1),
        "{report:?}"
    );
    let failure = &report.failures[0];
    assert_eq!(failure.id, s.archived[4].0.0);
    let limit = WriteLimits::GRAPH.max_mime_bytes.to_string();
    assert!(failure.error.contains(&limit), "{}", failure.error);
    assert!(
        failure.error.contains("without --exact-mime"),
        "{}",
        failure.error
    );
    for (id, folder, original) in &s.archived[..4] {
        let copies = restored_in(&s.mail, &format!("Review/Exact/{folder}")).await;
        let (_, message_id) = copies.iter().find(|(k, _)| k == &id.0).unwrap();
        assert_eq!(s.mail.is_draft(TARGET, message_id), Some(true));
        assert_eq!(&s.mail.mime(TARGET, message_id).unwrap()[..], &original[..]);
    }
}

#[tokio::test]
async fn an_exact_mime_item_whose_key_was_not_set_is_adopted() {
    let s = setup_with(fixtures()[..2].to_vec());
    let mut exact = request(everything());
    exact.exact_mime = true;
    let plain = &s.archived[0];
    s.mail.fail_times(
        TARGET,
        Operation::MarkRestored,
        InjectedFailure::RetriesExhausted,
        1,
    );
    let first = run(&s, &exact).await.unwrap();
    assert_eq!((first.restored, first.failed), (1, 1), "{first:?}");
    let second = run(&s, &exact).await.unwrap();
    assert_eq!(
        (second.restored, second.skipped_existing),
        (1, 1),
        "{second:?}"
    );
    let copies = restored_in(&s.mail, &target_path("Inbox")).await;
    assert_eq!(copies.len(), 2, "no duplicate: {copies:?}");
    assert!(copies.iter().any(|(k, _)| k == &plain.0.0));
}

#[tokio::test]
async fn one_failing_message_does_not_stop_the_others() {
    let s = setup_with(fixtures());
    let bad = &s.archived[1];
    s.mail
        .fail_message(TARGET, &bad.0.0, InjectedFailure::Protocol("boom".into()));
    let events = Mutex::new(Vec::new());
    let report = restore(
        s.store.clone(),
        &s.mail,
        &request(everything()),
        RestoreOptions::default(),
        &|e| events.lock().unwrap().push(e.clone()),
    )
    .await
    .unwrap();
    assert_eq!(report.restored, s.archived.len() as u64 - 1);
    assert_eq!(report.failed, 1);
    assert_eq!(report.failures[0].id, bad.0.0);
    assert_eq!(report.failures[0].folder, "Inbox");
    assert!(
        report.failures[0].error.contains("boom"),
        "{:?}",
        report.failures
    );
    let events = events.into_inner().unwrap();
    assert!(
        matches!(events[0], RestoreEvent::Started { messages: 6, .. }),
        "{events:?}"
    );
    let failed: Vec<&RestoreEvent> = events
        .iter()
        .filter(|e| matches!(e, RestoreEvent::Failed { .. }))
        .collect();
    assert_eq!(failed.len(), 1);
}

#[tokio::test]
async fn mailbox_wide_refusals_stop_the_job_before_anything_is_written() {
    let s = setup_with(fixtures());
    s.mail
        .fail(TARGET, Operation::Any, InjectedFailure::AccessDenied);
    let e = run(&s, &request(everything())).await.unwrap_err();
    assert!(matches!(e, RestoreError::Mailbox { .. }), "{e}");
    assert!(e.to_string().contains(TARGET), "{e}");
    s.mail.clear_failures(TARGET);
    assert!(folder_at(&s.mail, "Restored").await.is_none());

    let mut elsewhere = request(everything());
    elsewhere.to_mailbox = "nobody@contoso.com".into();
    let e = run(&s, &elsewhere).await.unwrap_err();
    assert!(e.to_string().contains("nobody@contoso.com"), "{e}");
}

#[tokio::test]
async fn selections_by_id_query_and_folder() {
    let s = setup_with(fixtures());
    let check = |selection: Selection, expected: usize| {
        let s = &s;
        async move {
            let mail = MemoryMailboxSource::new();
            mail.add_mailbox(TARGET);
            let report = restore(
                s.store.clone(),
                &mail,
                &request(selection.clone()),
                RestoreOptions::default(),
                &|_| {},
            )
            .await
            .unwrap();
            assert_eq!(
                report.restored, expected as u64,
                "{selection:?}: {report:?}"
            );
        }
    };
    check(Selection::Ids(vec![s.archived[0].0.clone()]), 1).await;
    check(Selection::Folder("Inbox".into()), 4).await;
    check(Selection::Folder("Inbox/Projects".into()), 2).await;
    check(Selection::Query("Contract".into()), 1).await;

    let unknown = MessageId("0".repeat(64));
    let e = run(&s, &request(Selection::Ids(vec![unknown.clone()])))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RestoreError::UnknownIds { ids, .. } if ids == std::slice::from_ref(&unknown.0)),
        "{e}"
    );
    let e = run(&s, &request(Selection::Folder("Nope".into())))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Nope"), "{e}");
}

#[tokio::test]
async fn never_more_than_the_concurrency_in_flight() {
    let many: Vec<(&'static str, Vec<u8>)> = (0..40)
        .map(|n| {
            (
                "Inbox",
                format!("Subject: m{n}\r\nMessage-ID: <m{n}@x>\r\n\r\nbody {n}\r\n").into_bytes(),
            )
        })
        .collect();
    let s = setup_with(many);
    let report = run(&s, &request(everything())).await.unwrap();
    assert_eq!(report.restored, 40);
    let max = s.mail.max_writes_in_flight(TARGET);
    assert!(
        (1..=RestoreOptions::default().concurrency).contains(&max),
        "{max}"
    );
}

/// Against the emulator over real HTTP with the Graph writer: the varied fixtures (a 5 MB
/// attachment through an upload session included) restored into another user's mailbox,
/// then read back through Graph like any mail: a reader sees the same message, none is a
/// draft, received and sent dates are the original's, and a rerun restores nothing.
#[tokio::test]
async fn round_trip_through_graph_into_another_mailbox() {
    let emu = common::emulator(2, 15).await;
    let target = common::writable_users(&emu).remove(0);
    let graph = common::graph(&emu);
    let s = setup_with(fixtures());
    let mut job = request(everything());
    job.to_mailbox = target.clone();
    let report = restore(
        s.store.clone(),
        &graph,
        &job,
        RestoreOptions::default(),
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.restored, s.archived.len() as u64, "{report:?}");
    assert_eq!(
        (report.failed, report.skipped_existing),
        (0, 0),
        "{report:?}"
    );

    let folders = graph.folders(&target).await.unwrap();
    for (n, (id, folder, original)) in s.archived.iter().enumerate() {
        let path = target_path(folder);
        let Some(restored) = folders.iter().find(|f| f.path == path) else {
            panic!(
                "{path} not created: {:?}",
                folders.iter().map(|f| &f.path).collect::<Vec<_>>()
            );
        };
        let want = seen(original);
        let mut found = false;
        for (m, mime) in common::read_folder(&graph, &target, &restored.id).await {
            let got = seen(&mime);
            if got.subject != want.subject {
                continue;
            }
            found = true;
            assert_eq!(want, got, "{folder}: {}", want.subject);
            let state = emu.message_state(&target, &m.id).unwrap();
            assert!(!state.is_draft, "{id} restored as a draft");
            assert_eq!(state.received, received_at(n), "{folder}");
            let sent = MessageParser::default()
                .parse(original.as_slice())
                .and_then(|p| p.date().map(|d| d.to_timestamp()));
            assert_eq!(Some(state.sent.timestamp()), sent, "{folder}");
        }
        assert!(found, "{id} ({}) not found in {path}", want.subject);
    }

    let again = restore(
        s.store.clone(),
        &graph,
        &job,
        RestoreOptions::default(),
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(again.skipped_existing, s.archived.len() as u64, "{again:?}");
    assert_eq!((again.restored, again.failed), (0, 0));
}
