//! Tests of the in-memory mail service: delta rounds, moves, deletion modes, caps and injected failures.

use super::*;

const MB: &str = "Adele@contoso.com";

fn mime(subject: &str) -> Vec<u8> {
    format!("Message-ID: <{subject}@x>\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n")
        .into_bytes()
}

async fn round(
    s: &MemoryMailboxSource,
    folder: &str,
    cursor: Option<DeltaCursor>,
) -> (Vec<DeltaEvent>, DeltaCursor) {
    round_in(s, MB, folder, cursor).await
}

fn ids(events: &[DeltaEvent]) -> (Vec<String>, Vec<String>) {
    let mut up = Vec::new();
    let mut rm = Vec::new();
    for e in events {
        match e {
            DeltaEvent::Upsert(s) => up.push(s.id.clone()),
            DeltaEvent::Removed { id } => rm.push(id.clone()),
            _ => {}
        }
    }
    (up, rm)
}

#[tokio::test]
async fn incremental_round_reports_exactly_the_changes() {
    let s = MemoryMailboxSource::new();
    s.add_mailbox(MB);
    let inbox = s.folder_id(MB, "inbox").unwrap();
    let a = s.deliver(MB, "inbox", mime("a")).unwrap();
    let b = s.deliver(MB, "inbox", mime("b")).unwrap();
    let c = s.deliver(MB, "inbox", mime("c")).unwrap();
    let (events, cursor) = round(&s, &inbox, None).await;
    assert_eq!(ids(&events).0, vec![a.clone(), b.clone(), c.clone()]);

    let d = s.deliver(MB, "inbox", mime("d")).unwrap();
    s.update(MB, &a, true, true).unwrap();
    s.move_message(MB, &b, "archive").unwrap();
    s.remove_message(MB, &c).unwrap();
    let (events, cursor2) = round(&s, &inbox, Some(cursor.clone())).await;
    let (up, rm) = ids(&events);
    assert_eq!(up, vec![a.clone(), d]);
    assert_eq!(rm, vec![b.clone(), c]);

    let archive = s.folder_id(MB, "archive").unwrap();
    let (events, _) = round(&s, &archive, None).await;
    assert_eq!(ids(&events).0, vec![b]);

    let (events, _) = round(&s, &inbox, Some(cursor2)).await;
    assert!(events.is_empty());
}

#[tokio::test]
async fn expired_cursor_restarts_with_full_listing() {
    let s = MemoryMailboxSource::new();
    s.add_mailbox(MB);
    let inbox = s.folder_id(MB, "inbox").unwrap();
    let a = s.deliver(MB, "inbox", mime("a")).unwrap();
    let (_, cursor) = round(&s, &inbox, None).await;
    s.expire_cursors(MB);
    let (events, _) = round(&s, &inbox, Some(cursor)).await;
    assert_eq!(events[0], DeltaEvent::Restarted);
    assert_eq!(ids(&events).0, vec![a]);
    let (events, _) = round(&s, &inbox, Some(DeltaCursor("garbage".into()))).await;
    assert_eq!(events[0], DeltaEvent::Restarted);
}

#[tokio::test]
async fn cursor_of_another_folder_is_not_trusted() {
    let s = MemoryMailboxSource::new();
    s.add_mailbox(MB);
    let inbox = s.folder_id(MB, "inbox").unwrap();
    let (_, cursor) = round(&s, &inbox, None).await;
    let sent = s.folder_id(MB, "sentitems").unwrap();
    let (events, _) = round(&s, &sent, Some(cursor)).await;
    assert_eq!(events, vec![DeltaEvent::Restarted]);
}

#[tokio::test]
async fn folder_tree_keeps_parents_first_and_escapes_names() {
    let s = MemoryMailboxSource::new();
    s.add_mailbox(MB);
    let p = s.add_folder(MB, Some("inbox"), "Projects").unwrap();
    s.add_folder(MB, Some(&p), "Q1/Q2").unwrap();
    s.add_folder_with(MB, None, "Hidden", true, false).unwrap();
    s.add_folder_with(MB, None, "Unread mail", false, true)
        .unwrap();
    s.add_folder(MB, Some("inbox"), "Ünïcødé").unwrap();
    s.deliver(MB, &p, mime("x")).unwrap();
    let folders = s.folders(MB).await.unwrap();
    let pos = |path: &str| folders.iter().position(|f| f.path == path).unwrap();
    assert!(pos("Inbox") < pos("Inbox/Projects"));
    assert!(pos("Inbox/Projects") < pos("Inbox/Projects/Q1\\/Q2"));
    assert!(folders[pos("Hidden")].hidden);
    assert!(folders[pos("Unread mail")].search_folder);
    assert_eq!(folders[pos("Inbox")].child_folders, 2);
    assert_eq!(folders[pos("Inbox/Projects")].total_items, 1);
    assert!(s.folder_id(MB, "Inbox/Projects/Q1\\/Q2").is_some());
}

#[tokio::test]
async fn deletes_in_three_modes() {
    let s = MemoryMailboxSource::new();
    s.add_mailbox(MB);
    let a = s.deliver(MB, "inbox", mime("a")).unwrap();
    let b = s.deliver(MB, "inbox", mime("b")).unwrap();
    let c = s.deliver(MB, "inbox", mime("c")).unwrap();
    s.delete(MB, &a, DeleteMode::MoveToDeletedItems)
        .await
        .unwrap();
    s.delete(MB, &b, DeleteMode::SoftDelete).await.unwrap();
    s.delete(MB, &c, DeleteMode::HardDelete).await.unwrap();
    assert_eq!(
        s.message(MB, &a).unwrap().folder_id,
        s.folder_id(MB, "deleteditems").unwrap()
    );
    assert_eq!(s.message_ids(MB), vec![a.clone()]);
    assert_eq!(
        s.recoverable_message_ids(MB),
        vec![b.clone()],
        "soft: to Deletions"
    );
    assert_eq!(s.deletions(MB).len(), 3);
    assert!(matches!(
        s.delete(MB, &c, DeleteMode::HardDelete).await,
        Err(MailboxError::MessageGone { .. })
    ));
}

#[tokio::test]
async fn an_online_archive_is_a_mailbox_of_its_own_read_by_ids() {
    let s = MemoryMailboxSource::new();
    s.add_mailbox(MB);
    assert_eq!(s.archive_mailbox(MB).await.unwrap(), None);
    let archive = s.add_archive_mailbox(MB).unwrap();
    assert!(crate::is_archive_mailbox_id(&archive), "{archive}");
    assert_eq!(s.archive_mailbox(MB).await.unwrap(), Some(archive.clone()));
    let folders = s.folders(&archive).await.unwrap();
    assert!(
        folders.iter().all(|f| f.well_known_name.is_none()),
        "ids only"
    );
    assert!(s.recoverable_folders(&archive).await.unwrap().is_empty());
    let inbox = folders.iter().find(|f| f.path == "Inbox").unwrap();
    let id = s.deliver(&archive, "Inbox", mime("old")).unwrap();
    let (events, _) = round_in(&s, &archive, &inbox.id, None).await;
    assert_eq!(ids(&events).0, vec![id.clone()]);
    assert!(s.message_ids(MB).is_empty(), "the primary holds none of it");
    s.fail(MB, Operation::ArchiveMailbox, InjectedFailure::AccessDenied);
    assert!(matches!(
        s.archive_mailbox(MB).await,
        Err(MailboxError::AccessDenied { .. })
    ));
}

#[tokio::test]
async fn an_unconvertible_item_fails_alone_every_time() {
    let s = MemoryMailboxSource::new();
    s.add_mailbox(MB);
    let bad = s.deliver(MB, "inbox", mime("bad")).unwrap();
    let good = s.deliver(MB, "inbox", mime("good")).unwrap();
    s.fail_message(MB, &bad, InjectedFailure::Unconvertible);
    for _ in 0..2 {
        let err = s.fetch_mime(MB, &bad, 1 << 20).await.unwrap_err();
        let MailboxError::Unconvertible { message_id, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(message_id, &bad);
        assert!(err.is_permanent() && !err.is_mailbox_wide());
    }
    assert!(s.fetch_mime(MB, &good, 1 << 20).await.is_ok());
}

async fn round_in(
    s: &MemoryMailboxSource,
    mailbox: &str,
    folder: &str,
    cursor: Option<DeltaCursor>,
) -> (Vec<DeltaEvent>, DeltaCursor) {
    let events: Vec<DeltaEvent> = s
        .changes(mailbox, folder, cursor)
        .map(|e| e.unwrap())
        .collect()
        .await;
    let Some(DeltaEvent::Done(c)) = events.last().cloned() else {
        panic!("round did not end with Done: {events:?}");
    };
    (events[..events.len() - 1].to_vec(), c)
}

#[tokio::test]
async fn injected_failures_hit_only_their_mailbox_and_operation() {
    let s = MemoryMailboxSource::new();
    s.add_mailbox(MB);
    s.add_mailbox("other@contoso.com");
    s.fail(MB, Operation::Folders, InjectedFailure::AccessDenied);
    s.fail_times(MB, Operation::Probe, InjectedFailure::Timeout, 1);
    s.fail(
        "nobox@contoso.com",
        Operation::Any,
        InjectedFailure::NoMailbox,
    );
    assert!(matches!(
        s.folders(MB).await,
        Err(MailboxError::AccessDenied { .. })
    ));
    assert!(matches!(
        s.probe(MB).await,
        Err(MailboxError::Timeout { .. })
    ));
    assert!(s.probe(MB).await.is_ok());
    assert!(s.folders("other@contoso.com").await.is_ok());
    assert!(matches!(
        s.probe("nobox@contoso.com").await,
        Err(MailboxError::NoMailbox { .. })
    ));
    assert!(matches!(
        s.probe("nobody@contoso.com").await,
        Err(MailboxError::UnknownUser { .. })
    ));
    let a = s.deliver(MB, "inbox", mime("a")).unwrap();
    let b = s.deliver(MB, "inbox", mime("b")).unwrap();
    s.fail_message(MB, &a, InjectedFailure::RetriesExhausted);
    assert!(s.fetch_mime(MB, &a, 1 << 20).await.is_err());
    assert!(s.fetch_mime(MB, &b, 1 << 20).await.is_ok());
    s.clear_failures(MB);
    assert!(s.fetch_mime(MB, &a, 1 << 20).await.is_ok());
}

#[tokio::test]
async fn fetch_caps_size_and_spools_large_bodies() {
    let s = MemoryMailboxSource::new();
    s.add_mailbox(MB);
    let body = vec![b'x'; 10_000];
    let a = s.deliver(MB, "inbox", body.clone()).unwrap();
    assert!(matches!(
        s.fetch_mime(MB, &a, 9_999).await,
        Err(MailboxError::TooLarge { size: 10_000, .. })
    ));
    s.set_spool_threshold(Some(1_000));
    let got = s.fetch_mime(MB, &a, 10_000).await.unwrap();
    let path = got.path().unwrap().to_path_buf();
    assert_eq!(std::fs::read(&path).unwrap(), body);
    drop(got);
    assert!(!path.exists());
    assert_eq!(s.metrics(MB).bytes, 10_000);
}

#[test]
fn headers_are_read_unfolded() {
    let m = b"Subject: a\r\n long\r\nMessage-ID: <x@y>\r\n\r\nSubject: not this";
    assert_eq!(header(m, "subject").as_deref(), Some("a long"));
    assert_eq!(header(m, "message-id").as_deref(), Some("<x@y>"));
    assert_eq!(header(m, "from"), None);
}

#[test]
fn cursor_round_trip() {
    assert_eq!(
        parse_cursor("memory:a@x:F1:2:17"),
        Some(("a@x".into(), "F1".into(), 2, 17))
    );
    assert_eq!(parse_cursor("https://graph/x"), None);
    assert_eq!(parse_cursor("memory:a:b:c:d"), None);
}
