//! The [`MailboxSource`] contract, checked on both implementations: every rule below
//! runs once against [`GraphMailboxSource`] talking to the in-process emulator over
//! real HTTP, and once against [`MemoryMailboxSource`]. Callers (the profile engine)
//! rely on exactly these rules, whichever source they are given.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use m365_emulator::{Emulator, EmulatorConfig};
use m365_mailbox::{
    DeleteMode, DeltaCursor, DeltaEvent, Folder, GraphMailboxSource, MailboxError, MailboxMetrics,
    MailboxSource, MemoryMailboxSource, SourceLimits,
};
use proptest::prelude::*;

/// An address no implementation knows.
const UNKNOWN: &str = "nobody.here@contoso.onmicrosoft.com";
/// The mailbox of the memory fixture.
const MEMORY_MAILBOX: &str = "adele.vance@contoso.onmicrosoft.com";
/// Messages each fixture starts with.
const START_MESSAGES: usize = 6;

/// One implementation of the seam, with the means to change its mailbox from outside
/// (as another mail client or the mail flow would).
enum Fixture {
    Graph {
        emu: Box<Emulator>,
        source: GraphMailboxSource,
        upn: String,
    },
    Memory(MemoryMailboxSource),
}

impl Fixture {
    /// The emulator with one regular mailbox of [`START_MESSAGES`] generated messages.
    async fn graph() -> Fixture {
        let emu = emulator(EmulatorConfig {
            users: 1,
            messages_per_user: START_MESSAGES,
            seed: 41,
            ..Default::default()
        })
        .await;
        let source = source(&emu);
        let upn = first_user(&emu);
        Fixture::Graph {
            emu: Box::new(emu),
            source,
            upn,
        }
    }

    /// A memory mailbox with [`START_MESSAGES`] messages, one of them in a sub-folder.
    fn memory() -> Fixture {
        let source = MemoryMailboxSource::new();
        source.add_mailbox(MEMORY_MAILBOX);
        let projects = source
            .add_folder(MEMORY_MAILBOX, Some("inbox"), "Projects")
            .unwrap();
        for i in 0..START_MESSAGES {
            let folder = if i == 0 { projects.as_str() } else { "inbox" };
            source
                .deliver(MEMORY_MAILBOX, folder, mime(&format!("start-{i}")))
                .unwrap();
        }
        Fixture::Memory(source)
    }

    fn source(&self) -> &dyn MailboxSource {
        match self {
            Fixture::Graph { source, .. } => source,
            Fixture::Memory(source) => source,
        }
    }

    fn mailbox(&self) -> &str {
        match self {
            Fixture::Graph { upn, .. } => upn,
            Fixture::Memory(_) => MEMORY_MAILBOX,
        }
    }

    /// Delivers a message from outside into a well-known folder; its id.
    fn deliver(&self, folder: &str, mime: Vec<u8>) -> String {
        match self {
            Fixture::Graph { emu, upn, .. } => emu.deliver(upn, folder, mime).unwrap(),
            Fixture::Memory(source) => source.deliver(MEMORY_MAILBOX, folder, mime).unwrap(),
        }
    }

    /// Deletes a message from outside (another client).
    fn remove(&self, id: &str) {
        match self {
            Fixture::Graph { emu, upn, .. } => emu.delete_message(upn, id).unwrap(),
            Fixture::Memory(source) => source.remove_message(MEMORY_MAILBOX, id).unwrap(),
        }
    }

    /// Makes the service forget every delta state of the mailbox.
    fn expire_cursors(&self) {
        match self {
            Fixture::Graph { emu, upn, .. } => emu.expire_delta_tokens(upn).unwrap(),
            Fixture::Memory(source) => source.expire_cursors(MEMORY_MAILBOX),
        }
    }

    /// Ids of every message of the mailbox, as the service itself counts them.
    fn message_ids(&self) -> HashSet<String> {
        let ids = match self {
            Fixture::Graph { emu, upn, .. } => emu.message_ids(upn),
            Fixture::Memory(source) => source.message_ids(MEMORY_MAILBOX),
        };
        ids.into_iter().collect()
    }

    /// The bytes the service holds for a message.
    fn stored_mime(&self, id: &str) -> Vec<u8> {
        match self {
            Fixture::Graph { emu, upn, .. } => emu.message_mime(upn, id).unwrap(),
            Fixture::Memory(source) => source.mime(MEMORY_MAILBOX, id).unwrap().to_vec(),
        }
    }

    async fn folders(&self) -> Vec<Folder> {
        self.source().folders(self.mailbox()).await.unwrap()
    }

    /// The id of a well-known folder.
    async fn well_known(&self, name: &str) -> String {
        self.folders()
            .await
            .into_iter()
            .find(|f| f.well_known_name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no well-known folder {name}"))
            .id
    }

    /// One delta round of a folder (events before `Done`, and the cursor).
    async fn round(
        &self,
        folder: &str,
        cursor: Option<DeltaCursor>,
    ) -> (Vec<DeltaEvent>, DeltaCursor) {
        round(self.source(), self.mailbox(), folder, cursor).await
    }
}

/// Ids of the upserts and of the removals among `events`, in order.
fn split(events: &[DeltaEvent]) -> (Vec<String>, Vec<String>) {
    let (mut upserts, mut removals) = (Vec::new(), Vec::new());
    for event in events {
        match event {
            DeltaEvent::Upsert(summary) => upserts.push(summary.id.clone()),
            DeltaEvent::Removed { id } => removals.push(id.clone()),
            other => panic!("unexpected {other:?}"),
        }
    }
    (upserts, removals)
}

/// The (lower-cased) names of the header fields of an RFC 822 message (lines without a
/// colon, which the emulator's malformed messages carry on purpose, are skipped).
fn header_names(mime: &[u8]) -> HashSet<String> {
    let text = String::from_utf8_lossy(mime);
    let head = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .map_or(&*text, |(head, _)| head);
    head.lines()
        .filter(|line| !line.starts_with([' ', '\t']))
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_ascii_lowercase())
        .collect()
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
    probe_tells_a_known_mailbox_from_an_unknown_one,
    folders_come_parents_first_with_the_well_known_ones,
    a_first_round_lists_every_message_once_and_ends_with_done,
    a_rerun_from_the_cursor_yields_no_change,
    a_new_message_shows_up_after_the_cursor,
    a_moved_message_leaves_one_folder_and_enters_another,
    a_message_deleted_elsewhere_shows_up_as_removed,
    an_expired_cursor_restarts_with_a_full_listing,
    an_unknown_folder_is_gone,
    fetch_mime_gives_the_exact_bytes_within_the_cap,
    soft_and_hard_deletes_remove_the_message,
    metrics_count_requests_and_bytes,
    limits_are_graphs,
    recoverable_items_are_listed_apart_and_keep_soft_deleted_mail,
);

async fn recoverable_items_are_listed_apart_and_keep_soft_deleted_mail(f: Fixture) {
    let (source, mailbox) = (f.source(), f.mailbox());
    let recoverable = source.recoverable_folders(mailbox).await.unwrap();
    let deletions = recoverable
        .iter()
        .find(|r| r.well_known_name.as_deref() == Some("recoverableitemsdeletions"))
        .unwrap_or_else(|| panic!("no Deletions in {recoverable:?}"));
    assert_eq!(deletions.path, "Recoverable Items/Deletions");
    assert!(recoverable.iter().all(|r| r.hidden), "{recoverable:?}");
    assert!(
        recoverable
            .iter()
            .all(|r| r.path.starts_with("Recoverable Items/")),
        "{recoverable:?}"
    );
    let mut seen = HashSet::new();
    for folder in &recoverable {
        if let Some(parent) = &folder.parent_id {
            assert!(seen.contains(parent), "{} before its parent", folder.path);
        }
        seen.insert(folder.id.clone());
    }
    let mailbox_view: HashSet<String> = f.folders().await.into_iter().map(|f| f.id).collect();
    assert!(
        recoverable.iter().all(|r| !mailbox_view.contains(&r.id)),
        "Recoverable Items are not part of the folder tree"
    );
    assert_eq!(
        source.recoverable_folders(mailbox).await.unwrap(),
        recoverable,
        "a second listing is the same"
    );

    let inbox = f.well_known("inbox").await;
    let id = f.deliver("inbox", mime("shift-deleted"));
    let (_, inbox_cursor) = f.round(&inbox, None).await;
    let (_, cursor) = f.round(&deletions.id, None).await;
    source
        .delete(mailbox, &id, DeleteMode::SoftDelete)
        .await
        .unwrap();
    let (events, _) = f.round(&deletions.id, Some(cursor)).await;
    let [DeltaEvent::Upsert(summary)] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(
        summary.id, id,
        "a soft-deleted message keeps its immutable id"
    );
    assert_eq!(summary.folder_id, deletions.id);
    assert_eq!(summary.subject.as_deref(), Some("shift-deleted"));
    let (events, _) = f.round(&inbox, Some(inbox_cursor)).await;
    assert_eq!(split(&events), (vec![], vec![id.clone()]));
    let got = source.fetch_mime(mailbox, &id, 1 << 20).await.unwrap();
    assert_eq!(bytes_of(&got), mime("shift-deleted"));
    assert!(
        !f.message_ids().contains(&id),
        "not in the mailbox's view any more"
    );

    let err = source.recoverable_folders(UNKNOWN).await.unwrap_err();
    assert!(matches!(err, MailboxError::UnknownUser { .. }), "{err:?}");
}

async fn probe_tells_a_known_mailbox_from_an_unknown_one(f: Fixture) {
    f.source().probe(f.mailbox()).await.unwrap();
    let err = f.source().probe(UNKNOWN).await.unwrap_err();
    assert!(matches!(err, MailboxError::UnknownUser { .. }), "{err:?}");
    assert!(err.is_mailbox_wide());
    let err = f.source().folders(UNKNOWN).await.unwrap_err();
    assert!(matches!(err, MailboxError::UnknownUser { .. }), "{err:?}");
}

async fn folders_come_parents_first_with_the_well_known_ones(f: Fixture) {
    let folders = f.folders().await;
    let mut seen = HashSet::new();
    for folder in &folders {
        if let Some(parent) = &folder.parent_id {
            assert!(seen.contains(parent), "{} before its parent", folder.path);
            let parent = folders.iter().find(|p| &p.id == parent).unwrap();
            assert!(folder.path.starts_with(&format!("{}/", parent.path)));
            assert!(
                parent.child_folders > 0,
                "{} counts no children",
                parent.path
            );
        }
        assert!(seen.insert(folder.id.clone()), "{} listed twice", folder.id);
    }
    for (name, path) in [
        ("inbox", "Inbox"),
        ("sentitems", "Sent Items"),
        ("deleteditems", "Deleted Items"),
        ("drafts", "Drafts"),
    ] {
        let folder = folders
            .iter()
            .find(|f| f.well_known_name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {folders:?}"));
        assert_eq!(folder.path, path);
        assert_eq!(folder.parent_id, None);
    }
    let total: u64 = folders
        .iter()
        .filter(|f| !f.search_folder)
        .map(|f| f.total_items)
        .sum();
    assert_eq!(total, f.message_ids().len() as u64);
    assert_eq!(f.folders().await, folders, "a second listing is the same");
}

async fn a_first_round_lists_every_message_once_and_ends_with_done(f: Fixture) {
    let folders = f.folders().await;
    let mut listed = Vec::new();
    for folder in folders.iter().filter(|f| !f.search_folder) {
        // `round` fails the test unless the stream ends with Done and nothing after it.
        let (events, _) = f.round(&folder.id, None).await;
        for event in events {
            let DeltaEvent::Upsert(summary) = event else {
                panic!("{event:?} in a first round");
            };
            assert_eq!(summary.folder_id, folder.id);
            assert!(summary.size.is_some_and(|s| s > 0), "{summary:?}");
            assert!(summary.received.is_some(), "{summary:?}");
            listed.push(summary.id);
        }
    }
    let once: HashSet<String> = listed.iter().cloned().collect();
    assert_eq!(
        once.len(),
        listed.len(),
        "a message listed twice: {listed:?}"
    );
    assert_eq!(once, f.message_ids());
    assert!(once.len() >= START_MESSAGES);
}

async fn a_rerun_from_the_cursor_yields_no_change(f: Fixture) {
    let (_, _, cursors) = enumerate(f.source(), f.mailbox()).await;
    for (folder, cursor) in cursors {
        let (events, next) = f.round(&folder, Some(cursor)).await;
        assert!(events.is_empty(), "{folder}: {events:?}");
        let (events, _) = f.round(&folder, Some(next)).await;
        assert!(events.is_empty(), "{folder} (second rerun): {events:?}");
    }
}

async fn a_new_message_shows_up_after_the_cursor(f: Fixture) {
    let inbox = f.well_known("inbox").await;
    let sent = f.well_known("sentitems").await;
    let (_, inbox_cursor) = f.round(&inbox, None).await;
    let (_, sent_cursor) = f.round(&sent, None).await;
    let raw = mime("arrived-later");
    let id = f.deliver("inbox", raw.clone());

    let (events, cursor) = f.round(&inbox, Some(inbox_cursor)).await;
    let [DeltaEvent::Upsert(summary)] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(summary.id, id);
    assert_eq!(summary.folder_id, inbox);
    assert_eq!(summary.subject.as_deref(), Some("arrived-later"));
    assert_eq!(
        summary.internet_message_id.as_deref(),
        Some("<arrived-later@example.com>")
    );
    assert!(!summary.is_read && !summary.flagged);
    assert_eq!(summary.size, Some(f.stored_mime(&id).len() as u64));
    assert!(f.round(&inbox, Some(cursor)).await.0.is_empty());
    assert!(f.round(&sent, Some(sent_cursor)).await.0.is_empty());
}

async fn a_moved_message_leaves_one_folder_and_enters_another(f: Fixture) {
    let inbox = f.well_known("inbox").await;
    let deleted = f.well_known("deleteditems").await;
    let id = f.deliver("inbox", mime("to-be-moved"));
    let (_, inbox_cursor) = f.round(&inbox, None).await;
    let (_, deleted_cursor) = f.round(&deleted, None).await;

    f.source()
        .delete(f.mailbox(), &id, DeleteMode::MoveToDeletedItems)
        .await
        .unwrap();

    let (events, _) = f.round(&inbox, Some(inbox_cursor)).await;
    assert_eq!(split(&events), (vec![], vec![id.clone()]));
    let (events, _) = f.round(&deleted, Some(deleted_cursor)).await;
    let [DeltaEvent::Upsert(summary)] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(summary.id, id, "a moved message keeps its immutable id");
    assert_eq!(summary.folder_id, deleted);
    assert!(f.message_ids().contains(&id));
}

async fn a_message_deleted_elsewhere_shows_up_as_removed(f: Fixture) {
    let inbox = f.well_known("inbox").await;
    let id = f.deliver("inbox", mime("to-be-deleted"));
    let (_, cursor) = f.round(&inbox, None).await;
    f.remove(&id);
    let (events, cursor) = f.round(&inbox, Some(cursor)).await;
    assert_eq!(split(&events), (vec![], vec![id.clone()]));
    assert!(f.round(&inbox, Some(cursor)).await.0.is_empty());
    assert!(!f.message_ids().contains(&id));
}

async fn an_expired_cursor_restarts_with_a_full_listing(f: Fixture) {
    let inbox = f.well_known("inbox").await;
    let (first, cursor) = f.round(&inbox, None).await;
    let (all, _) = split(&first);
    f.expire_cursors();
    let (events, fresh) = f.round(&inbox, Some(cursor)).await;
    assert_eq!(events.first(), Some(&DeltaEvent::Restarted), "{events:?}");
    let (relisted, removed) = split(&events[1..]);
    assert_eq!(
        relisted.into_iter().collect::<HashSet<_>>(),
        all.into_iter().collect::<HashSet<_>>()
    );
    assert!(removed.is_empty());
    assert!(f.round(&inbox, Some(fresh)).await.0.is_empty());
}

async fn an_unknown_folder_is_gone(f: Fixture) {
    use futures::StreamExt;
    let mut stream = f
        .source()
        .changes(f.mailbox(), "AAMkAD-no-such-folder=", None);
    let first = stream.next().await.unwrap();
    assert!(
        matches!(first, Err(MailboxError::FolderGone { .. })),
        "{first:?}"
    );
    assert!(stream.next().await.is_none(), "nothing after the error");
}

async fn fetch_mime_gives_the_exact_bytes_within_the_cap(f: Fixture) {
    let (messages, _, _) = enumerate(f.source(), f.mailbox()).await;
    for id in messages.keys() {
        let stored = f.stored_mime(id);
        let size = stored.len() as u64;
        let got = f.source().fetch_mime(f.mailbox(), id, size).await.unwrap();
        let got = bytes_of(&got);
        assert_eq!(got, stored, "{id}: the exact bytes at a cap of their size");
        assert!(
            header_names(&got).contains("subject"),
            "{id} has no Subject header"
        );

        let err = f
            .source()
            .fetch_mime(f.mailbox(), id, size - 1)
            .await
            .unwrap_err();
        let MailboxError::TooLarge {
            message_id, limit, ..
        } = &err
        else {
            panic!("{id}: {err:?}");
        };
        assert_eq!((message_id.as_str(), *limit), (id.as_str(), size - 1));
        assert!(!err.is_mailbox_wide());
    }
    let err = f
        .source()
        .fetch_mime(f.mailbox(), "AAMkAD-no-such-message=", 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, MailboxError::MessageGone { .. }), "{err:?}");
}

async fn soft_and_hard_deletes_remove_the_message(f: Fixture) {
    let inbox = f.well_known("inbox").await;
    let soft = f.deliver("inbox", mime("soft"));
    let hard = f.deliver("inbox", mime("hard"));
    let (_, cursor) = f.round(&inbox, None).await;
    let (source, mailbox) = (f.source(), f.mailbox());

    source
        .delete(mailbox, &soft, DeleteMode::SoftDelete)
        .await
        .unwrap();
    assert!(!f.message_ids().contains(&soft));
    // A soft-deleted message moves to Recoverable Items, where its id still answers.
    let after_soft = source.fetch_mime(mailbox, &soft, 1 << 20).await;
    assert_eq!(bytes_of(&after_soft.unwrap()), mime("soft"));

    source
        .delete(mailbox, &hard, DeleteMode::HardDelete)
        .await
        .unwrap();
    assert!(!f.message_ids().contains(&hard));
    let err = source
        .fetch_mime(mailbox, &hard, 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, MailboxError::MessageGone { .. }), "{err:?}");
    let again = source
        .delete(mailbox, &hard, DeleteMode::HardDelete)
        .await
        .unwrap_err();
    assert!(
        matches!(again, MailboxError::MessageGone { .. }),
        "deleting twice is reported: {again:?}"
    );

    let (events, _) = f.round(&inbox, Some(cursor)).await;
    let (upserts, removals) = split(&events);
    assert!(upserts.is_empty());
    assert_eq!(
        removals.into_iter().collect::<HashSet<_>>(),
        HashSet::from([soft, hard])
    );
}

async fn metrics_count_requests_and_bytes(f: Fixture) {
    let (source, mailbox) = (f.source(), f.mailbox());
    assert_eq!(
        source.metrics("never.asked@contoso.onmicrosoft.com"),
        MailboxMetrics::default()
    );
    let mut last = source.metrics(mailbox);
    let mut grew = |what: &str, fetched: u64| {
        let now = source.metrics(mailbox);
        assert!(now.requests > last.requests, "{what}: {last:?} → {now:?}");
        assert!(
            now.bytes >= last.bytes + fetched,
            "{what}: {last:?} → {now:?}"
        );
        assert_eq!(
            (now.throttled, now.retries),
            (0, 0),
            "{what}: nothing to retry"
        );
        last = now;
    };
    // A probe may answer from the folder survey it makes (Graph does): count them together.
    source.probe(mailbox).await.unwrap();
    let folders = source.folders(mailbox).await.unwrap();
    grew("probe and folders", 0);
    let inbox = folders
        .iter()
        .find(|f| f.well_known_name.as_deref() == Some("inbox"))
        .unwrap();
    let (events, _) = round(source, mailbox, &inbox.id, None).await;
    grew("changes", 0);
    let (ids, _) = split(&events);
    let content = source.fetch_mime(mailbox, &ids[0], 1 << 20).await.unwrap();
    grew("fetch_mime", bytes_of(&content).len() as u64);
    source
        .delete(mailbox, &ids[0], DeleteMode::HardDelete)
        .await
        .unwrap();
    grew("delete", 0);
}

async fn limits_are_graphs(f: Fixture) {
    // Both serve what Exchange Online serves, so callers size the same way.
    assert_eq!(f.source().limits(), SourceLimits::GRAPH);
}

/// Subjects of any printable text come back unchanged in the delta summary and the
/// message bytes, on both implementations.
#[test]
fn delivered_subjects_and_bytes_round_trip() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fixtures = runtime.block_on(async { [Fixture::graph().await, Fixture::memory()] });
    let inboxes: Vec<(String, DeltaCursor)> = runtime.block_on(async {
        let mut out = Vec::new();
        for f in &fixtures {
            let inbox = f.well_known("inbox").await;
            let (_, cursor) = f.round(&inbox, None).await;
            out.push((inbox, cursor));
        }
        out
    });
    let cursors = std::cell::RefCell::new(inboxes);
    let config = ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    };
    proptest!(config, |(subject in "[A-Za-z0-9][A-Za-z0-9 .,!?'()-]{0,60}[A-Za-z0-9]")| {
        for (f, (inbox, cursor)) in fixtures.iter().zip(cursors.borrow_mut().iter_mut()) {
            let raw = format!(
                "From: a@example.com\r\nSubject: {subject}\r\nMessage-ID: <p@example.com>\r\n\r\nbody\r\n"
            )
            .into_bytes();
            let id = f.deliver("inbox", raw.clone());
            let (events, next) = runtime.block_on(f.round(inbox, Some(cursor.clone())));
            *cursor = next;
            let summaries: HashMap<String, _> = events
                .into_iter()
                .filter_map(|e| match e {
                    DeltaEvent::Upsert(s) => Some((s.id.clone(), s)),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(summaries.len(), 1);
            prop_assert_eq!(summaries[&id].subject.as_deref(), Some(subject.as_str()));
            let got = runtime
                .block_on(f.source().fetch_mime(f.mailbox(), &id, 1 << 20))
                .unwrap();
            prop_assert_eq!(bytes_of(&got), raw);
        }
    });
}
