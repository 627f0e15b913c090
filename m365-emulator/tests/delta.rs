//! Graph v1.0 delta over real HTTP: per-folder message delta (full pass, empty replay,
//! changes, 410 for an expired state, empty pages) and the mail folder delta of the tree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::graph::{Graph, IMMUTABLE, small};
use m365_emulator::EmulatorConfig;
use serde_json::{Value, json};

/// Runs a delta round to its deltaLink; answers (items, deltaLink, pages).
async fn delta_round(graph: &Graph, link: &str, page: usize) -> (Vec<Value>, String, usize) {
    let prefer = format!("odata.maxpagesize={page}");
    let (items, last, pages) = graph
        .all_pages(link, &[("Prefer", &prefer), IMMUTABLE])
        .await;
    (
        items,
        last["@odata.deltaLink"]
            .as_str()
            .expect("round ends with a deltaLink")
            .to_owned(),
        pages,
    )
}

fn ids_of(items: &[Value]) -> std::collections::BTreeSet<String> {
    items
        .iter()
        .filter(|i| i.get("@removed").is_none())
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn folder_delta_full_pass_empty_replay_then_changes() {
    let emu = common::start_with(EmulatorConfig {
        users: 1,
        messages_per_user: 120,
        seed: 21,
        ..Default::default()
    })
    .await;
    let graph = Graph::new(&emu).await;
    let upn = emu.users()[0].upn.clone();
    let (_, inbox) = graph.get(&format!("/users/{upn}/mailFolders/inbox")).await;
    let inbox_count = inbox["totalItemCount"].as_u64().unwrap() as usize;
    let inbox_id = inbox["id"].as_str().unwrap().to_owned();

    let first = format!(
        "/users/{upn}/mailFolders/inbox/messages/delta()?$select=id,receivedDateTime,parentFolderId"
    );
    let (items, delta_link, pages) = delta_round(&graph, &first, 4).await;
    assert_eq!(
        ids_of(&items).len(),
        inbox_count,
        "every inbox message once (repeats allowed)"
    );
    assert!(pages > inbox_count / 4, "pages of at most 4");
    assert!(delta_link.contains("$deltatoken="));
    assert!(
        items.iter().all(|i| i.get("subject").is_none()),
        "the first call's $select is baked into the links"
    );

    let (replay, delta_link, _) = delta_round(&graph, &delta_link, 4).await;
    assert!(replay.is_empty(), "no change, empty replay: {replay:?}");

    // Changes: a delivery, a deletion, a move out, a move in.
    let delivered = emu
        .deliver(
            &upn,
            "inbox",
            b"From: a@example.org\r\nSubject: new\r\nMessage-ID: <n1@example.org>\r\n\r\nhello\r\n"
                .to_vec(),
        )
        .unwrap();
    let in_inbox: Vec<String> = ids_of(&items).into_iter().collect();
    emu.delete_message(&upn, &in_inbox[0]).unwrap();
    let (status, moved) = graph
        .post(
            &format!("/users/{upn}/messages/{}/move", in_inbox[1]),
            json!({"destinationId": "archive"}),
            &[IMMUTABLE],
        )
        .await;
    assert_eq!(status, 201, "{moved}");
    assert_eq!(
        moved["id"],
        in_inbox[1].as_str(),
        "immutable id survives the move"
    );
    let (_, archive_page) = graph
        .get(&format!(
            "/users/{upn}/mailFolders/archive/messages?$top=1000&$select=id"
        ))
        .await;
    let from_archive = archive_page["value"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = graph
        .post(
            &format!("/users/{upn}/messages/{from_archive}/move"),
            json!({"destinationId": inbox_id}),
            &[],
        )
        .await;
    assert_eq!(status, 201);

    let (changes, after_changes, _) = delta_round(&graph, &delta_link, 4).await;
    let removed: Vec<&str> = changes
        .iter()
        .filter(|c| c["@removed"]["reason"] == "deleted")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(
        removed.contains(&in_inbox[0].as_str()),
        "deleted message reported: {changes:?}"
    );
    assert!(
        removed.contains(&in_inbox[1].as_str()),
        "moved-away message reported"
    );
    let present = ids_of(&changes);
    assert!(present.contains(&delivered), "delivered message appears");
    assert_eq!(present.len(), 2, "delivered + moved in: {present:?}");

    // An expired sync state: the last deltaLink answers 410, a fresh full pass starts over.
    emu.expire_delta_tokens(&upn).unwrap();
    graph
        .refuses(&after_changes, 410, "syncStateNotFound")
        .await;
    let (_, inbox_now) = graph.get(&format!("/users/{upn}/mailFolders/inbox")).await;
    let (again, _, _) = delta_round(&graph, &first, 50).await;
    assert_eq!(
        ids_of(&again).len() as u64,
        inbox_now["totalItemCount"].as_u64().unwrap()
    );

    let response = graph
        .http
        .get(graph.url(&format!(
            "/users/{upn}/mailFolders/inbox/messages/delta?$skiptoken=AAAA"
        )))
        .bearer_auth(&graph.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 410);
    assert!(response.headers().get("location").is_some());
}

#[tokio::test]
async fn delta_pages_are_sometimes_empty_yet_always_reach_a_delta_link() {
    let emu = common::start_with(EmulatorConfig {
        users: 1,
        messages_per_user: 300,
        seed: 4,
        ..Default::default()
    })
    .await;
    let graph = Graph::new(&emu).await;
    let upn = emu.users()[0].upn.clone();
    let mut empty_pages = 0;
    let mut link = format!("/users/{upn}/mailFolders/inbox/messages/delta?$select=id");
    loop {
        let (status, body) = graph
            .get_with(&link, &[("Prefer", "odata.maxpagesize=2")])
            .await;
        assert_eq!(status, 200);
        if body["value"].as_array().unwrap().is_empty() && body["@odata.nextLink"].is_string() {
            empty_pages += 1;
        }
        match body["@odata.nextLink"].as_str() {
            Some(next) => link = next.to_owned(),
            None => {
                assert!(body["@odata.deltaLink"].is_string());
                break;
            }
        }
    }
    assert!(empty_pages > 0, "Graph's empty nextLink pages are emulated");
}

#[tokio::test]
async fn mail_folder_delta_lists_the_whole_tree_then_only_new_folders() {
    let emu = small(43).await;
    let graph = Graph::new(&emu).await;
    let upn = emu.users()[0].upn.clone();
    let (folders, last, pages) = graph
        .all_pages(
            &format!("/users/{upn}/mailFolders/delta()"),
            &[("Prefer", "odata.maxpagesize=5")],
        )
        .await;
    assert!(pages > 3);
    let names: Vec<&str> = folders
        .iter()
        .map(|f| f["displayName"].as_str().unwrap())
        .collect();
    for expected in [
        "Inbox",
        "Q3 Reports",
        "日本語フォルダー",
        "Signed",
        "Conflicts",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        !names.contains(&"Flagged Items"),
        "search folders are not mail folders"
    );
    let (_, replay) = graph.get(last["@odata.deltaLink"].as_str().unwrap()).await;
    assert_eq!(replay["value"].as_array().unwrap().len(), 0, "{replay}");
}
