//! Acceptance of restore against the emulator over real HTTP, through the Graph writer:
//! 300 varied messages restored into another mailbox and archived again from there (a
//! reader sees the same mail, none is a draft, folder paths recreated), a rerun restoring
//! nothing, and exact MIME (byte-identical to the emulator's rendering, drafts, a refusal
//! of what does not fit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use archive_restore::{RestoreOptions, RestoreReport, RestoreRequest, Selection, restore};
use archive_store::{ArchiveRequest, ArchiveStore, DiskArchiveStore, MessageId, RawMessage};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use common::{b64, blob, header, seen};
use m365_mailbox::{GraphMailboxSource, MailboxSource, WriteLimits};

const USER: &str = "alice";
const DAY: &str = "2026-12-01";
const MESSAGES: usize = 300;
/// The one message with a 40 MB attachment.
const BIG: usize = 137;
const BIG_BYTES: usize = 40 * 1024 * 1024;

/// Nested folder paths of the archive.
const FOLDERS: [&str; 5] = [
    "Inbox",
    "Inbox/Projects",
    "Inbox/Projects/Alpha 2025",
    "Sent Items",
    "Archive/2025/Q3",
];

/// An RFC 2047 encoded word (UTF-8, base64).
fn word(text: &str) -> String {
    use base64::Engine as _;
    format!(
        "=?utf-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(text)
    )
}

/// An RFC 2231 extended parameter value (UTF-8, percent-encoded).
fn ext_value(text: &str) -> String {
    let mut out = String::from("utf-8''");
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn received_at(n: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).single().unwrap()
        + chrono::Duration::minutes(n as i64 * 97)
}

/// Message `n` of the generated archive: its folder and MIME. Shapes rotate (plain text,
/// HTML, text+HTML alternative, HTML with inline images by `cid:`, attachments with a
/// non-ASCII RFC 2231 name and an attached `.eml`, RFC 2047 subjects and names); cc, bcc,
/// reply-to, importance and categories come and go; message [`BIG`] carries 40 MB.
fn generated(n: usize) -> (&'static str, Vec<u8>) {
    let folder = FOLDERS[n % FOLDERS.len()];
    let mut h = String::new();
    let from_name = if n.is_multiple_of(3) {
        word(&format!("Zoë Ångström {n}"))
    } else {
        format!("\"Adele Vance {n}\"")
    };
    h.push_str(&format!("From: {from_name} <adele{n}@contoso.com>\r\n"));
    h.push_str(&format!(
        "To: Bob <bob@contoso.com>, carol{}@fabrikam.com\r\n",
        n % 7
    ));
    if n.is_multiple_of(2) {
        h.push_str(&format!("Cc: {} <dan@contoso.com>\r\n", word("Dän Müller")));
    }
    if n % 3 == 1 {
        h.push_str("Bcc: eve@contoso.com\r\n");
    }
    if n.is_multiple_of(4) {
        h.push_str("Reply-To: Help Desk <help@contoso.com>\r\n");
    }
    let subject = match n % 6 {
        5 => word(&format!("Grüße aus Köln – № {n}")),
        _ => format!("Generated message {n}"),
    };
    h.push_str(&format!("Subject: {subject}\r\n"));
    let sent = received_at(n) - chrono::Duration::seconds(42 + n as i64);
    h.push_str(&format!("Date: {}\r\n", sent.to_rfc2822()));
    h.push_str(&format!("Message-ID: <gen{n}@contoso.com>\r\n"));
    match n % 5 {
        1 => h.push_str("Importance: high\r\n"),
        2 => h.push_str("Importance: low\r\n"),
        _ => {}
    }
    if n.is_multiple_of(7) {
        h.push_str("Keywords: Red, Project Alpha\r\n");
    }
    h.push_str("MIME-Version: 1.0\r\n");
    let text = format!("Hello Bob,\r\nthis is message {n}.\r\nRegards\r\n");
    let html = format!("<p>Hello <b>Bob</b>, message {n}.</p>");
    let body = if n == BIG {
        format!(
            "Content-Type: multipart/mixed; boundary=\"big\"\r\n\r\n--big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}--big\r\nContent-Type: application/octet-stream; name=\"data-{n}.bin\"\r\nContent-Disposition: attachment; filename=\"data-{n}.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--big--\r\n",
            b64(&blob(BIG_BYTES, 11))
        )
    } else {
        match n % 6 {
            0 | 5 => format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{text}"),
            1 => format!("Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"),
            2 => format!(
                "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--alt--\r\n"
            ),
            3 => {
                let images = 1 + n % 2;
                let refs: String = (0..images)
                    .map(|k| format!("<img src=\"cid:img{k}.{n}@contoso.com\">"))
                    .collect();
                let mut out = format!(
                    "Content-Type: multipart/related; boundary=\"rel\"\r\n\r\n--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Logo {n}</p>{refs}\r\n"
                );
                for k in 0..images {
                    out.push_str(&format!(
                        "--rel\r\nContent-Type: image/png; name=\"logo{k}.png\"\r\nContent-ID: <img{k}.{n}@contoso.com>\r\nContent-Disposition: inline; filename=\"logo{k}.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                        b64(&blob(700 + 50 * k + n, k as u8))
                    ));
                }
                out.push_str("--rel--\r\n");
                out
            }
            _ => {
                let name = format!("Verträge {n} – Übersicht.pdf");
                format!(
                    "Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}--mix\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*={}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--mix\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"forwarded {n}.eml\"\r\n\r\nFrom: x@fabrikam.com\r\nTo: bob@contoso.com\r\nSubject: inner {n}\r\nMessage-ID: <inner{n}@fabrikam.com>\r\n\r\ninner body {n}\r\n--mix--\r\n",
                    ext_value(&name),
                    b64(&blob(5_000 + 13 * n, 3))
                )
            }
        }
    };
    h.push_str(&body);
    (folder, h.into_bytes())
}

/// One archived message: folder, MIME, received time.
struct Archived {
    folder: String,
    mime: Vec<u8>,
    received: DateTime<Utc>,
}

/// An archive in a temporary directory holding `messages` for [`USER`].
fn archive_of(
    messages: impl IntoIterator<Item = (String, Vec<u8>, DateTime<Utc>)>,
) -> (tempfile::TempDir, Arc<DiskArchiveStore>, Vec<Archived>) {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskArchiveStore::open(dir.path(), Default::default()).unwrap();
    let mut archived = Vec::new();
    for (folder, mime, received) in messages {
        let request = ArchiveRequest {
            user: USER.into(),
            folder: folder.clone(),
            source: None,
            received: Some(received),
        };
        store.archive(&request, RawMessage::Bytes(&mime)).unwrap();
        archived.push(Archived {
            folder,
            mime,
            received,
        });
    }
    (dir, Arc::new(store), archived)
}

fn request(to_mailbox: &str, to_folder: Option<&str>, exact_mime: bool) -> RestoreRequest {
    RestoreRequest {
        user: USER.into(),
        selection: Selection::Folder(String::new()),
        to_mailbox: to_mailbox.into(),
        to_folder: to_folder.map(str::to_string),
        exact_mime,
        date: NaiveDate::parse_from_str(DAY, "%Y-%m-%d").unwrap(),
    }
}

async fn run(
    store: &Arc<DiskArchiveStore>,
    graph: &GraphMailboxSource,
    request: &RestoreRequest,
) -> RestoreReport {
    restore(
        store.clone(),
        graph,
        request,
        RestoreOptions::default(),
        &|_| {},
    )
    .await
    .unwrap()
}

/// Archives every message below `root` of `mailbox` into `store` as an archive run reads
/// it (folders, delta, `$value`), each under its path below `root`. Answers the ids of the
/// messages read, by (folder, Message-ID).
async fn archive_again(
    graph: &GraphMailboxSource,
    mailbox: &str,
    root: &str,
    store: &DiskArchiveStore,
) -> BTreeMap<(String, String), (String, MessageId)> {
    let prefix = format!("{root}/");
    let mut found = BTreeMap::new();
    for folder in graph.folders(mailbox).await.unwrap() {
        let Some(relative) = folder.path.strip_prefix(&prefix) else {
            continue;
        };
        for (summary, mime) in common::read_folder(graph, mailbox, &folder.id).await {
            let request = ArchiveRequest {
                user: USER.into(),
                folder: relative.to_string(),
                source: None,
                received: summary.received,
            };
            let outcome = store.archive(&request, RawMessage::Bytes(&mime)).unwrap();
            let message_id = header(&mime, "Message-ID").unwrap_or_default();
            let earlier = found.insert(
                (relative.to_string(), message_id.clone()),
                (summary.id, outcome.id),
            );
            assert!(earlier.is_none(), "{message_id} twice in {relative}");
        }
    }
    found
}

/// Acceptance, round trip: 300 archived messages of varied shape restored through the
/// Graph writer into another user's mailbox, then archived again from there as an archive
/// run reads mail. Per message a reader sees the same subject, addresses, dates, bodies
/// and attachments (names and bytes); none is a draft; every folder path is recreated
/// under `Restored/<date>`. Restoring the same selection again restores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_messages_round_trip_into_another_mailbox_and_back() {
    let emu = common::emulator(2, 21).await;
    // The 40 MB attachment and the rest stay well inside Outlook's 150 MB per 5 minutes;
    // the budget is raised anyway so that this test measures fidelity, not throttling
    // (the upload budget has its own test).
    emu.set_upload_budget(1024 * 1024 * 1024);
    let target = common::writable_users(&emu).remove(1);
    let graph = common::graph(&emu);
    let (_dir, store, archived) = archive_of((0..MESSAGES).map(|n| {
        let (folder, mime) = generated(n);
        (folder.to_string(), mime, received_at(n))
    }));
    assert_eq!(archived.len(), MESSAGES);

    let job = request(&target, None, false);
    let report = run(&store, &graph, &job).await;
    assert_eq!(
        (report.restored, report.failed, report.skipped_existing),
        (MESSAGES as u64, 0, 0),
        "{:?}",
        report.failures
    );
    assert_eq!(report.to_folder, format!("Restored/{DAY}"));
    let total: u64 = archived.iter().map(|a| a.mime.len() as u64).sum();
    assert_eq!(report.bytes, total);

    // Folder paths recreated.
    for folder in FOLDERS {
        let mut path = vec!["Restored", DAY];
        path.extend(folder.split('/'));
        assert!(
            emu.folder_id_by_path(&target, &path).is_some(),
            "{} not created",
            path.join("/")
        );
    }

    // Archived again from the target, as an archive run reads it.
    let again_dir = tempfile::tempdir().unwrap();
    let again = DiskArchiveStore::open(again_dir.path(), Default::default()).unwrap();
    let found = archive_again(&graph, &target, &format!("Restored/{DAY}"), &again).await;
    assert_eq!(found.len(), MESSAGES, "one copy of each, nothing more");
    let entries: BTreeMap<MessageId, archive_store::ArchiveEntry> = again
        .list(USER, None)
        .unwrap()
        .into_iter()
        .map(|e| (e.id.clone(), e))
        .collect();
    for (n, original) in archived.iter().enumerate() {
        let message_id = format!("gen{n}@contoso.com");
        let Some((graph_id, again_id)) = found.get(&(original.folder.clone(), message_id.clone()))
        else {
            panic!("message {n} not found in {}", original.folder);
        };
        let copy = again.read_message(again_id).unwrap();
        let (want, got) = (seen(&original.mime), seen(&copy));
        assert_eq!(want, got, "message {n} ({})", original.folder);
        let entry = &entries[again_id];
        assert_eq!(entry.received, Some(original.received), "received of {n}");
        assert_eq!(entry.date.map(|d| d.timestamp()), want.date, "sent of {n}");
        let state = emu.message_state(&target, graph_id).unwrap();
        assert!(!state.is_draft, "message {n} restored as a draft");
        assert_eq!(state.received, original.received, "received of {n}");
        assert_eq!(Some(state.sent.timestamp()), want.date, "sent of {n}");
        assert_eq!(
            state.categories,
            if n.is_multiple_of(7) {
                vec!["Red".to_string(), "Project Alpha".to_string()]
            } else {
                Vec::new()
            },
            "categories of {n}"
        );
        let importance = header(&copy, "Importance").map(|i| i.to_ascii_lowercase());
        let expected = match n % 5 {
            1 => Some("high"),
            2 => Some("low"),
            _ => None,
        };
        assert_eq!(importance.as_deref(), expected, "importance of {n}");
    }
    // The comparison saw the shapes that matter.
    let shapes = |n: usize| seen(&archived[n].mime);
    assert_eq!(shapes(BIG).attachments[0].2.len(), BIG_BYTES);
    assert_eq!(shapes(3).attachments.len(), 2, "two inline images");
    assert!(
        shapes(3)
            .attachments
            .iter()
            .all(|(_, cid, _)| cid.is_some())
    );
    assert!(shapes(2).html.is_some() && shapes(0).text.is_some());
    assert_eq!(shapes(5).subject, "Grüße aus Köln – № 5");
    assert_eq!(shapes(3).from, ["Zoë Ångström 3 <adele3@contoso.com>"]);
    let names: Vec<String> = shapes(4).attachments.into_iter().map(|a| a.0).collect();
    assert_eq!(names, ["Verträge 4 – Übersicht.pdf", "forwarded 4.eml"]);
    assert_eq!(shapes(4).bcc, [" <eve@contoso.com>"]);
    assert_eq!(shapes(0).reply_to, ["Help Desk <help@contoso.com>"]);

    // The same selection again restores nothing.
    let rerun = run(&store, &graph, &job).await;
    assert_eq!(
        (
            rerun.skipped_existing,
            rerun.restored,
            rerun.failed,
            rerun.bytes
        ),
        (MESSAGES as u64, 0, 0, 0),
        "{rerun:?}"
    );
    assert_eq!(emu.message_count(&target), MESSAGES, "no second copy");
}

/// Acceptance, exact MIME. "Byte-identical in MIME as the emulator renders" means: mail
/// the emulator served (its `$value`, which it renders from what a create set) and that
/// was archived from there comes back from an exact-MIME restore with a `$value`
/// byte-for-byte equal to the archived bytes. Each restored item is a draft (the
/// documented price of exact MIME), and a message over the limit is refused with an error
/// naming the limit and the default mode, leaving nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_mime_restores_the_emulators_rendering_byte_for_byte_as_drafts() {
    let emu = common::emulator(2, 22).await;
    let users = common::writable_users(&emu);
    let (source, target) = (users[0].clone(), users[1].clone());
    let graph = common::graph(&emu);

    // Small messages of every shape, restored into the source mailbox and archived from
    // there as an archive run reads them: what the second archive holds is the emulator's
    // rendering.
    let small: Vec<usize> = (0..12).collect();
    let (_dir, first, _) = archive_of(small.iter().map(|&n| {
        let (folder, mime) = generated(n);
        (folder.to_string(), mime, received_at(n))
    }));
    let seeded = run(&first, &graph, &request(&source, Some("Seed"), false)).await;
    assert_eq!(seeded.restored, small.len() as u64, "{seeded:?}");
    let rendered_dir = tempfile::tempdir().unwrap();
    let rendered = DiskArchiveStore::open(rendered_dir.path(), Default::default()).unwrap();
    let found = archive_again(&graph, &source, "Seed", &rendered).await;
    assert_eq!(found.len(), small.len());
    // One message over the exact-MIME limit (its attachment alone is 3.5 MB).
    let too_large = format!(
        "From: adele@contoso.com\r\nTo: bob@contoso.com\r\nSubject: Too large\r\nDate: Mon, 7 Jul 2025 07:00:00 +0000\r\nMessage-ID: <toolarge@contoso.com>\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nlarge\r\n--m\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--m--\r\n",
        b64(&blob(3_500_000, 5))
    );
    let too_large_id = rendered
        .archive(
            &ArchiveRequest {
                user: USER.into(),
                folder: "Inbox".into(),
                source: None,
                received: Some(received_at(999)),
            },
            RawMessage::Bytes(too_large.as_bytes()),
        )
        .unwrap()
        .id;
    let rendered = Arc::new(rendered);

    let exact = request(&target, Some("Review/Exact"), true);
    let report = run(&rendered, &graph, &exact).await;
    assert_eq!(
        (report.restored, report.failed, report.skipped_existing),
        (small.len() as u64, 1, 0),
        "{report:?}"
    );
    let failure = &report.failures[0];
    assert_eq!(failure.id, too_large_id.0);
    let limit = WriteLimits::GRAPH.max_mime_bytes.to_string();
    for needle in [limit.as_str(), "without --exact-mime", &too_large_id.0] {
        assert!(
            failure.error.contains(needle),
            "{needle}: {}",
            failure.error
        );
    }

    // Every restored item is the archived rendering, byte for byte, and a draft; the
    // refused message left nothing behind.
    let scratch_dir = tempfile::tempdir().unwrap();
    let scratch = DiskArchiveStore::open(scratch_dir.path(), Default::default()).unwrap();
    let restored = archive_again(&graph, &target, "Review/Exact", &scratch).await;
    assert_eq!(
        restored.len(),
        small.len(),
        "nothing but the restored items"
    );
    for ((folder, message_id), (_, archived_id)) in &found {
        let Some((graph_id, _)) = restored.get(&(folder.clone(), message_id.clone())) else {
            panic!("{message_id} not restored into {folder}");
        };
        let archived = rendered.read_message(archived_id).unwrap();
        let served =
            common::mime_bytes(graph.fetch_mime(&target, graph_id, u64::MAX).await.unwrap());
        assert!(
            served == archived,
            "{message_id} differs:\n--- archived\n{}\n--- served\n{}",
            String::from_utf8_lossy(&archived),
            String::from_utf8_lossy(&served)
        );
        let state = emu.message_state(&target, graph_id).unwrap();
        assert!(
            state.is_draft,
            "{message_id}: an exact-MIME create lands as a draft"
        );
    }
    assert!(
        !restored.keys().any(|(_, id)| id.contains("toolarge")),
        "the refused message was not written"
    );
    assert_eq!(emu.message_count(&target), small.len());

    // And a rerun finds them all (their restore key was set after the create).
    let rerun = run(&rendered, &graph, &exact).await;
    assert_eq!(
        (rerun.restored, rerun.skipped_existing, rerun.failed),
        (0, small.len() as u64, 1),
        "{rerun:?}"
    );
}

/// Attachments of every size class arrive whole: the largest that fit a POST, those just
/// under 3 MB whose base64 no longer fits one 4 MB request (they go through an upload
/// session), those over 3 MB, several small ones that together pass 4 MB (one POST each
/// after the create), and an empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_of_every_size_class_arrive_whole() {
    const MIB: usize = 1024 * 1024;
    let emu = common::emulator(2, 23).await;
    emu.set_upload_budget(1024 * 1024 * 1024);
    let target = common::writable_users(&emu).remove(0);
    let graph = common::graph(&emu);
    // Attachment sizes, one message each.
    let cases: [&[usize]; 8] = [
        &[3 * MIB - 4_000],
        &[3 * MIB - 200],
        &[3 * MIB - 64],
        &[3 * MIB - 1],
        &[3 * MIB],
        &[3 * MIB + 1],
        &[900_000; 5],
        &[0, 10],
    ];
    let (_dir, store, archived) = archive_of(cases.iter().enumerate().map(|(n, sizes)| {
        let parts: String = sizes
            .iter()
            .enumerate()
            .map(|(k, &size)| {
                format!(
                    "--m\r\nContent-Type: application/octet-stream; name=\"a{k}.bin\"\r\nContent-Disposition: attachment; filename=\"a{k}.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                    b64(&blob(size, (n * 8 + k) as u8))
                )
            })
            .collect();
        let mime = format!(
            "From: adele@contoso.com\r\nTo: bob@contoso.com\r\nSubject: case {n}\r\nDate: Mon, 7 Jul 2025 07:00:00 +0000\r\nMessage-ID: <case{n}@contoso.com>\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\n{sizes:?}\r\n{parts}--m--\r\n"
        );
        ("Inbox".to_string(), mime.into_bytes(), received_at(n))
    }));
    let report = run(&store, &graph, &request(&target, None, false)).await;
    assert_eq!(
        (report.restored, report.failed),
        (cases.len() as u64, 0),
        "{:#?}",
        report.failures
    );
    let scratch_dir = tempfile::tempdir().unwrap();
    let scratch = DiskArchiveStore::open(scratch_dir.path(), Default::default()).unwrap();
    let found = archive_again(&graph, &target, &format!("Restored/{DAY}"), &scratch).await;
    for (n, (sizes, original)) in cases.iter().zip(&archived).enumerate() {
        let (_, id) = &found[&("Inbox".to_string(), format!("case{n}@contoso.com"))];
        let copy = seen(&scratch.read_message(id).unwrap());
        let got: Vec<usize> = copy.attachments.iter().map(|a| a.2.len()).collect();
        assert_eq!(&got, sizes, "case {n}");
        assert_eq!(seen(&original.mime), copy, "case {n}: {sizes:?}");
    }
}
