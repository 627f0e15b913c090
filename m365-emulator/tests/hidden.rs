//! Hidden mail in the primary mailbox: the Recoverable Items tree (listing only with
//! `includeHiddenFolders`, well-known names, seeded soft-deleted mail, delta and `$value` there),
//! `DELETE` → Deletions keeping the immutable id, `permanentDelete` → Purges, the control API's
//! soft and hard deletions, and the items whose `$value` always fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::graph::Graph;
use common::*;
use m365_emulator::{Emulator, EmulatorConfig, FolderArea};
use serde_json::Value;

const IMMUTABLE: (&str, &str) = ("Prefer", "IdType=\"ImmutableId\"");

async fn hidden(seed: u64) -> Emulator {
    start_with(EmulatorConfig {
        users: 3,
        messages_per_user: 20,
        seed,
        hidden_mail: true,
        ..Default::default()
    })
    .await
}

fn first_user(emu: &Emulator) -> String {
    emu.users()[0].upn.clone()
}

/// Display names of the folders a listing answers.
async fn names(graph: &Graph, path: &str) -> Vec<String> {
    let (items, _, _) = graph.all_pages(path, &[]).await;
    items
        .iter()
        .map(|f| f["displayName"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs a folder's delta to its end; answers (present ids, removed ids, deltaLink).
async fn delta(graph: &Graph, link: &str) -> (Vec<String>, Vec<String>, String) {
    let (items, last, _) = graph.all_pages(link, &[IMMUTABLE]).await;
    let (mut present, mut removed) = (Vec::new(), Vec::new());
    for item in items {
        let id = item["id"].as_str().unwrap().to_owned();
        if item.get("@removed").is_some() {
            removed.push(id);
        } else {
            present.push(id);
        }
    }
    present.sort();
    present.dedup();
    removed.sort();
    removed.dedup();
    (
        present,
        removed,
        last["@odata.deltaLink"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn the_recoverable_items_tree_is_hidden_unless_asked_for() {
    let emu = hidden(150).await;
    let graph = Graph::new(&emu).await;
    let upn = first_user(&emu);
    let root = format!("/users/{upn}/mailFolders/RecoverableItemsRoot");
    let (status, body) = graph.get(&root).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["isHidden"], true);
    assert!(
        names(&graph, &format!("{root}/childFolders"))
            .await
            .is_empty()
    );
    assert_eq!(
        names(
            &graph,
            &format!("{root}/childFolders?includeHiddenFolders=true")
        )
        .await,
        ["Deletions", "Purges", "Versions", "DiscoveryHolds"]
    );
    // Not among the top-level folders, hidden or not.
    for listing in [
        format!("/users/{upn}/mailFolders?$top=100"),
        format!("/users/{upn}/mailFolders?$top=100&includeHiddenFolders=true"),
    ] {
        let top = names(&graph, &listing).await;
        assert!(
            !top.iter()
                .any(|n| n == "Recoverable Items" || n == "Deletions"),
            "{top:?}"
        );
    }
    // Every well-known name answers its folder, whatever the case.
    let counts = emu.recoverable_counts(&upn);
    for (name, display) in [
        ("recoverableitemsroot", "Recoverable Items"),
        ("RecoverableItemsDeletions", "Deletions"),
        ("recoverableitemspurges", "Purges"),
        ("recoverableitemsversions", "Versions"),
        ("recoverableitemsdiscoveryholds", "DiscoveryHolds"),
    ] {
        let (status, body) = graph.get(&format!("/users/{upn}/mailFolders/{name}")).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["displayName"], display);
        assert_eq!(body["isHidden"], true);
        if let Some(count) = counts.get(display) {
            assert_eq!(body["totalItemCount"], *count as u64, "{name}");
        }
    }
    assert!(counts["Deletions"] >= 2 && counts["Purges"] == 2 && counts["Versions"] == 1);
    assert_eq!(counts["DiscoveryHolds"], 0);
}

#[tokio::test]
async fn seeded_soft_deleted_mail_reads_like_any_folder_and_stays_out_of_the_mailbox_view() {
    let emu = hidden(151).await;
    let graph = Graph::new(&emu).await;
    let upn = first_user(&emu);
    let view: usize = emu
        .folder_counts(&upn)
        .iter()
        .filter(|f| f.area == FolderArea::Mailbox)
        .map(|f| f.messages)
        .sum();
    assert_eq!(view, emu.message_count(&upn));
    assert_eq!(
        emu.message_count(&upn),
        20,
        "soft-deleted mail is not counted"
    );
    let (items, _, _) = graph
        .all_pages(&format!("/users/{upn}/messages?$top=100"), &[])
        .await;
    assert_eq!(items.len(), 20);
    for (name, display) in [
        ("recoverableitemsdeletions", "Deletions"),
        ("recoverableitemspurges", "Purges"),
    ] {
        let (present, removed, _) = delta(
            &graph,
            &format!("/users/{upn}/mailFolders/{name}/messages/delta"),
        )
        .await;
        assert!(removed.is_empty());
        assert_eq!(present.len(), emu.recoverable_counts(&upn)[display]);
        for id in &present {
            let (status, _, bytes) = graph
                .bytes(&format!("/users/{upn}/messages/{id}/$value"))
                .await;
            assert_eq!(status, 200);
            assert_eq!(Some(bytes), emu.message_mime(&upn, id));
        }
    }
}

#[tokio::test]
async fn delete_moves_to_deletions_keeping_the_immutable_id_and_permanent_delete_to_purges() {
    let emu = hidden(152).await;
    let graph = Graph::new(&emu).await;
    let upn = first_user(&emu);
    let inbox = format!("/users/{upn}/mailFolders/inbox/messages/delta");
    let deletions = format!("/users/{upn}/mailFolders/recoverableitemsdeletions/messages/delta");
    let purges = format!("/users/{upn}/mailFolders/recoverableitemspurges/messages/delta");
    let (inbox_ids, _, inbox_link) = delta(&graph, &inbox).await;
    let (_, _, deletions_link) = delta(&graph, &deletions).await;
    let (_, _, purges_link) = delta(&graph, &purges).await;
    let victim = inbox_ids[0].clone();
    let (status, before) = graph
        .get(&format!("/users/{upn}/messages/{victim}?$select=subject"))
        .await;
    assert_eq!(status, 200);
    let before_count = emu.message_count(&upn);
    let deletions_before = emu.recoverable_counts(&upn)["Deletions"];

    let response = graph
        .http
        .delete(graph.url(&format!("/users/{upn}/messages/{victim}")))
        .bearer_auth(&graph.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(emu.message_count(&upn), before_count - 1);
    assert_eq!(
        emu.recoverable_counts(&upn)["Deletions"],
        deletions_before + 1
    );
    // The immutable id reaches it in Deletions; the current id changed.
    let (status, moved) = graph
        .get_with(
            &format!("/users/{upn}/messages/{victim}?$select=subject,parentFolderId"),
            &[IMMUTABLE],
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["subject"], before["subject"]);
    let (_, folder) = graph
        .get(&format!(
            "/users/{upn}/mailFolders/recoverableitemsdeletions"
        ))
        .await;
    assert_eq!(moved["parentFolderId"], folder["id"]);
    let (_, current) = graph
        .get(&format!("/users/{upn}/messages/{victim}?$select=id"))
        .await;
    assert_ne!(current["id"], Value::String(victim.clone()));
    // Delta: removed from the inbox, arrived in Deletions.
    let (present, removed, _) = delta(&graph, &inbox_link).await;
    assert_eq!((present.len(), removed), (0, vec![victim.clone()]));
    let (present, removed, deletions_link) = delta(&graph, &deletions_link).await;
    assert_eq!((present, removed.len()), (vec![victim.clone()], 0));

    // permanentDelete: from Deletions to Purges, same immutable id.
    let (status, _) = graph
        .post(
            &format!("/users/{upn}/messages/{victim}/permanentDelete"),
            Value::Null,
            &[],
        )
        .await;
    assert_eq!(status, 204);
    let (_, removed, _) = delta(&graph, &deletions_link).await;
    assert_eq!(removed, vec![victim.clone()]);
    let (present, _, _) = delta(&graph, &purges_link).await;
    assert_eq!(present, vec![victim.clone()]);
    assert_eq!(emu.recoverable_counts(&upn)["Deletions"], deletions_before);
    assert_eq!(emu.recoverable_counts(&upn)["Purges"], 3);
    // Purged from Purges: gone.
    let (status, _) = graph
        .post(
            &format!("/users/{upn}/messages/{victim}/permanentDelete"),
            Value::Null,
            &[],
        )
        .await;
    assert_eq!(status, 204);
    graph
        .refuses(
            &format!("/users/{upn}/messages/{victim}"),
            404,
            "ErrorItemNotFound",
        )
        .await;
}

#[tokio::test]
async fn the_control_api_soft_and_hard_deletes_and_keeps_its_old_meaning() {
    let emu = hidden(153).await;
    let upn = first_user(&emu);
    let ids = emu.message_ids(&upn);
    let admin = client();
    let delete = |id: &str, mode: &str| {
        let url = format!("{}mailboxes/{upn}/messages/{id}{mode}", emu.admin_url());
        admin.delete(url).send()
    };
    let counts = emu.recoverable_counts(&upn);
    assert_eq!(delete(&ids[0], "?mode=soft").await.unwrap().status(), 204);
    assert_eq!(delete(&ids[1], "?mode=hard").await.unwrap().status(), 204);
    assert_eq!(delete(&ids[2], "").await.unwrap().status(), 204);
    assert_eq!(
        delete(&ids[3], "?mode=sideways").await.unwrap().status(),
        400
    );
    let after = emu.recoverable_counts(&upn);
    assert_eq!(after["Deletions"], counts["Deletions"] + 1);
    assert_eq!(after["Purges"], counts["Purges"] + 1);
    assert_eq!(emu.message_count(&upn), 20 - 3);
    assert!(
        emu.message_mime(&upn, &ids[0]).is_some(),
        "soft-deleted, still there"
    );
    assert!(emu.message_mime(&upn, &ids[2]).is_none(), "gone for good");
    // The Rust API does the same.
    let new_id = emu.soft_delete_message(&upn, &ids[4]).unwrap().unwrap();
    assert_ne!(new_id, ids[4]);
    assert!(emu.hard_delete_message(&upn, &ids[4]).unwrap().is_some());
    assert_eq!(emu.recoverable_counts(&upn)["Purges"], counts["Purges"] + 2);
}

#[tokio::test]
async fn without_hidden_mail_nothing_changes() {
    let emu = start(154).await;
    let graph = Graph::new(&emu).await;
    let upn = first_user(&emu);
    let recoverable = emu.recoverable_counts(&upn);
    assert_eq!(recoverable.keys().collect::<Vec<_>>(), ["Deletions"]);
    assert_eq!(recoverable["Deletions"], 0);
    assert!(emu.unconvertible_items(&upn).is_empty());
    graph
        .refuses(
            &format!("/users/{upn}/mailFolders/recoverableitemspurges"),
            404,
            "ErrorFolderNotFound",
        )
        .await;
    // permanentDelete removes for good, DELETE still moves to Deletions.
    let ids = emu.message_ids(&upn);
    let (status, _) = graph
        .post(
            &format!("/users/{upn}/messages/{}/permanentDelete", ids[0]),
            Value::Null,
            &[],
        )
        .await;
    assert_eq!(status, 204);
    assert!(emu.message_mime(&upn, &ids[0]).is_none());
    assert!(emu.soft_delete_message(&upn, &ids[1]).unwrap().is_some());
    assert_eq!(emu.recoverable_counts(&upn)["Deletions"], 1);
}

#[tokio::test]
async fn unconvertible_items_fail_every_time_and_only_them() {
    let emu = hidden(155).await;
    let graph = Graph::new(&emu).await;
    for user in emu
        .users()
        .iter()
        .filter(|u| u.has_mailbox && !u.access_denied)
    {
        let upn = &user.upn;
        let bad = emu.unconvertible_items(upn);
        assert!((1..=2).contains(&bad.len()), "{upn}: {bad:?}");
        for item in &bad {
            assert!(
                !item.subject.is_empty() && !item.folder.is_empty(),
                "{item:?}"
            );
            for _ in 0..2 {
                let (status, body) = graph
                    .get(&format!("/users/{upn}/messages/{}/$value", item.id))
                    .await;
                assert_eq!(status, 500, "{body}");
                let message = body["error"]["message"].as_str().unwrap().to_lowercase();
                assert!(
                    message.contains("text does not support structured data"),
                    "{body}"
                );
            }
            // The item lists and reads as JSON like any other.
            let (status, body) = graph
                .get(&format!(
                    "/users/{upn}/messages/{}?$select=subject",
                    item.id
                ))
                .await;
            assert_eq!(
                (status, body["subject"].as_str()),
                (200, Some(item.subject.as_str()))
            );
            assert!(emu.message_mime(upn, &item.id).is_none());
        }
        let bad_ids: Vec<&str> = bad.iter().map(|b| b.id.as_str()).collect();
        let good = emu
            .message_ids(upn)
            .into_iter()
            .find(|id| !bad_ids.contains(&id.as_str()))
            .unwrap();
        let (status, _, _) = graph
            .bytes(&format!("/users/{upn}/messages/{good}/$value"))
            .await;
        assert_eq!(status, 200);
    }
    // Deterministic from the seed.
    let again = hidden(155).await;
    let upn = first_user(&emu);
    assert_eq!(
        again.unconvertible_items(&upn),
        emu.unconvertible_items(&upn)
    );
}
