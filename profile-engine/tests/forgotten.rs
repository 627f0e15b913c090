//! Mail expunged from the archive (by retention or erasure) stays out: a full
//! resync of the mailbox neither archives it again (by its source, or by its
//! content when a copy turns up under a new id) nor deletes it at the source on
//! the strength of a copy that is gone; the run counts it as forgotten.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use archive_store::{EntryRef, MemoryArchiveStore, MessageId};
use chrono::{Duration, Utc};
use common::{Archived, Users, all_mailboxes, mime, run_at};
use directory_sync::MemoryUserStore;
use m365_mailbox::MemoryMailboxSource;
use profile_engine::DeletionMode;

const A: &str = "adele@contoso.com";

#[tokio::test]
async fn a_full_resync_neither_archives_nor_deletes_expunged_mail() {
    let dir = tempfile::tempdir().unwrap();
    let mail = Arc::new(MemoryMailboxSource::new());
    let users = Arc::new(MemoryUserStore::new());
    let archive = Arc::new(MemoryArchiveStore::new());
    mail.add_mailbox(A);
    users.add("adele", Some(A), true);
    let now = Utc::now();
    let ids: Vec<String> = (0..4)
        .map(|i| {
            let id = mail
                .deliver_at(
                    A,
                    "inbox",
                    mime(&format!("old{i}")),
                    now - Duration::days(60),
                )
                .unwrap();
            mail.update(A, &id, true, false).unwrap();
            id
        })
        .collect();
    let mut profile = all_mailboxes("staff");
    let first = run_at(
        mail.clone(),
        users.clone(),
        archive.clone(),
        &dir.path().join("first"),
        &profile,
        Some(now),
    )
    .await;
    assert_eq!(first.totals.messages_archived, 4);

    // Retention (or an erasure) expunges two of them; a copy of one turns up in
    // another folder under a new id.
    let content = |tag: &str| MessageId(blake3::hash(&mime(tag)).to_hex().to_string());
    let gone = [content("old0"), content("old1")];
    let entries: Vec<EntryRef> = gone
        .iter()
        .map(|id| EntryRef::new("adele", "Inbox", id.clone()))
        .collect();
    assert_eq!(
        archive.expunge(&entries, &|_| true).unwrap().expunged.len(),
        2
    );
    let copy = mail
        .deliver_at(A, "sentitems", mime("old0"), now - Duration::days(60))
        .unwrap();
    mail.update(A, &copy, true, false).unwrap();

    // A full resync with a deletion rule now on.
    profile.deletion.mode = DeletionMode::MoveToDeletedItems;
    profile.deletion.after_days = 30;
    let resync = run_at(
        mail.clone(),
        users.clone(),
        archive.clone(),
        &dir.path().join("resync"),
        &profile,
        Some(now),
    )
    .await;
    let t = &resync.totals;
    assert_eq!(
        (
            t.messages_archived,
            t.messages_forgotten,
            t.messages_duplicate,
            t.deleted
        ),
        // Duplicates: the two kept ones in the Inbox, and again in Deleted Items
        // once moved there (an immutable id follows its message).
        (0, 3, 4, 2),
        "{resync:?}"
    );
    let mut deleted: Vec<String> = mail.deletions(A).into_iter().map(|(id, _)| id).collect();
    deleted.sort();
    let mut expected = vec![ids[2].clone(), ids[3].clone()];
    expected.sort();
    assert_eq!(
        deleted, expected,
        "only mail whose copy is in the archive leaves"
    );
    let mut reported = resync.mailboxes[0].deleted_ids.clone();
    reported.sort();
    assert_eq!(reported, expected, "the report names what left the mailbox");
    assert_eq!(archive.archived("adele"), expected);
    for id in [&ids[0], &ids[1], &copy] {
        assert!(mail.message(A, id).is_some(), "{id} stays in the mailbox");
    }
    let json = serde_json::to_value(&resync).unwrap();
    assert_eq!(json["totals"]["messages_forgotten"], 3);
    assert!(json["mailboxes"][0].get("deleted_ids").is_none(), "{json}");
}
