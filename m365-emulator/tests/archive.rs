//! The online archive on beta: `settings/exchange`, archive mailboxes read by `MBX:` id
//! (folders, child folders, delta, `$value`), the error for well-known names there, the 308
//! Permanent Redirect of an auto-expanded archive, its own throttling bucket and the control
//! API's archive delivery.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::graph::Graph;
use common::*;
use m365_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

async fn archived(seed: u64) -> Emulator {
    start_with(EmulatorConfig {
        users: 5,
        messages_per_user: 15,
        seed,
        hidden_mail: true,
        ..Default::default()
    })
    .await
}

/// A Graph caller on beta.
async fn beta(emu: &Emulator) -> Graph {
    let mut graph = Graph::new(emu).await;
    graph.base = format!("{}beta", emu.graph_url());
    graph
}

/// A client that does not follow redirects.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// GET without following redirects: (status, Location, body).
async fn raw_get(graph: &Graph, url: &str) -> (u16, Option<String>, Vec<u8>) {
    let response = no_redirects()
        .get(graph.url(url))
        .bearer_auth(&graph.token)
        .header("Prefer", "IdType=\"ImmutableId\"")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, location, response.bytes().await.unwrap().to_vec())
}

/// Every message id a delta of an archive folder lists, following 308s as a client must.
async fn delta_ids(graph: &Graph, first: &str) -> Vec<String> {
    let mut link = first.to_owned();
    let mut ids = Vec::new();
    for _ in 0..200 {
        let (status, location, bytes) = raw_get(graph, &link).await;
        if status == 308 {
            link = location.unwrap();
            continue;
        }
        assert_eq!(status, 200, "{link}: {}", String::from_utf8_lossy(&bytes));
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        for item in body["value"].as_array().unwrap() {
            ids.push(item["id"].as_str().unwrap().to_owned());
        }
        match body["@odata.nextLink"].as_str() {
            Some(next) => link = next.to_owned(),
            None => break,
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

#[tokio::test]
async fn settings_exchange_names_the_mailboxes_on_beta_and_the_primary_only_on_v1() {
    let emu = archived(160).await;
    let (graph, beta) = (Graph::new(&emu).await, beta(&emu).await);
    let users = emu.users();
    let (with, without) = (&users[0], &users[1]);
    let (status, body) = beta
        .get(&format!("/users/{}/settings/exchange", with.upn))
        .await;
    assert_eq!(status, 200, "{body}");
    let archive = emu.archive_mailbox_id(&with.upn).unwrap();
    assert_eq!(body["inPlaceArchiveMailboxId"], archive.as_str());
    assert_eq!(
        body["primaryMailboxId"],
        emu.primary_mailbox_id(&with.upn).unwrap().as_str()
    );
    let tenant = emu.tenant_id();
    assert!(archive.starts_with("MBX:") && archive.ends_with(&format!("@{tenant}")));
    let parsed = m365_emulator::MailboxId::parse(&archive).unwrap();
    assert_eq!(parsed.tenant.to_string(), tenant);
    let (_, body) = beta
        .get(&format!("/users/{}/settings/exchange", without.id))
        .await;
    assert!(body["inPlaceArchiveMailboxId"].is_null(), "{body}");
    assert!(emu.archive_mailbox_id(&without.upn).is_none());
    let (status, body) = graph
        .get(&format!("/users/{}/settings/exchange", with.upn))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("inPlaceArchiveMailboxId").is_none(), "{body}");
    assert!(body["primaryMailboxId"].is_string());
    // Most regular members have an archive.
    let archived_users = users
        .iter()
        .take(5)
        .filter(|u| emu.archive_mailbox_id(&u.upn).is_some())
        .count();
    assert!(archived_users >= 3, "{archived_users}");
}

#[tokio::test]
async fn an_archive_reads_by_mbx_id_on_beta_with_ids_only() {
    let emu = archived(161).await;
    let (graph, beta) = (Graph::new(&emu).await, beta(&emu).await);
    let upn = emu
        .users()
        .iter()
        .take(5)
        .skip(2)
        .find(|u| emu.archive_mailbox_id(&u.upn).is_some())
        .map(|u| u.upn.clone())
        .unwrap();
    let mbx = emu.archive_mailbox_id(&upn).unwrap();
    let (items, _, _) = beta
        .all_pages(&format!("/users/{mbx}/mailFolders"), &[])
        .await;
    let top: Vec<&str> = items
        .iter()
        .map(|f| f["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(
        top,
        ["Inbox", "Sent Items", "Deleted Items", "Projects (old)"]
    );
    let inbox = items[0]["id"].as_str().unwrap();
    let (children, _, _) = beta
        .all_pages(
            &format!("/users/{mbx}/mailFolders/{inbox}/childFolders"),
            &[],
        )
        .await;
    assert_eq!(children[0]["displayName"], "2022");
    // Delta and $value over every folder find exactly the archive's messages.
    let mut seen = Vec::new();
    for folder in items.iter().chain(children.iter()) {
        let id = folder["id"].as_str().unwrap();
        seen.extend(
            delta_ids(
                &beta,
                &format!("/users/{mbx}/mailFolders/{id}/messages/delta"),
            )
            .await,
        );
    }
    seen.sort();
    let mut expected = emu.archive_message_ids(&upn);
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(seen.len(), emu.archive_message_count(&upn));
    let (status, _, bytes) = beta
        .bytes(&format!("/users/{mbx}/messages/{}/$value", seen[0]))
        .await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&bytes).contains("Subject:"));
    // Well-known names are refused there; v1.0 does not reach archives at all.
    for name in [
        "inbox",
        "ArchiveMsgFolderRoot",
        "msgfolderroot",
        "deleteditems",
    ] {
        let (status, body) = beta
            .get(&format!("/users/{mbx}/mailFolders/{name}/messages/delta"))
            .await;
        if name.eq_ignore_ascii_case("archivemsgfolderroot") {
            assert_eq!(status, 404, "{body}");
        } else {
            assert_eq!(status, 400, "{name}: {body}");
            assert_eq!(body["error"]["code"], "ErrorInvalidRequest");
        }
    }
    graph
        .refuses(
            &format!("/users/{mbx}/mailFolders"),
            404,
            "ErrorInvalidUser",
        )
        .await;
    // The archive is its own throttling bucket.
    let stats = emu.stats().await;
    assert!(
        stats.per_mailbox[&mbx].requests > 3,
        "{:?}",
        stats.per_mailbox.keys()
    );
    assert!(!stats.per_mailbox.contains_key(&upn));
}

#[tokio::test]
async fn an_auto_expanded_archive_answers_308_to_its_auxiliary_mailbox() {
    let emu = archived(162).await;
    let beta = beta(&emu).await;
    let upn = emu.users()[0].upn.clone();
    let mbx = emu.archive_mailbox_id(&upn).unwrap();
    let auxiliary = emu.auxiliary_archive_ids(&upn);
    assert_eq!(auxiliary.len(), 1);
    let expanded = emu
        .archive_folder_counts(&upn)
        .into_iter()
        .find(|f| f.mailbox_id.as_deref() == Some(auxiliary[0].as_str()))
        .unwrap();
    assert_eq!(expanded.path, ["Inbox", "2021"]);
    assert!(expanded.messages >= 3);
    // The folder shows in the main archive's tree...
    let (items, _, _) = beta
        .all_pages(&format!("/users/{mbx}/mailFolders"), &[])
        .await;
    let inbox = items[0]["id"].as_str().unwrap().to_owned();
    let (children, _, _) = beta
        .all_pages(
            &format!("/users/{mbx}/mailFolders/{inbox}/childFolders"),
            &[],
        )
        .await;
    assert!(children.iter().any(|c| c["id"] == expanded.id.as_str()));
    // ...but reading it redirects, same host, same path and query, other mailbox.
    let path = format!(
        "/users/{mbx}/mailFolders/{}/messages/delta?$select=subject",
        expanded.id
    );
    let (status, location, body) = raw_get(&beta, &path).await;
    assert_eq!(status, 308);
    assert!(body.is_empty());
    let location = location.unwrap();
    let expected = format!(
        "{}/users/{}/mailFolders/{}/messages/delta?$select=subject",
        beta.base, auxiliary[0], expanded.id
    );
    assert_eq!(location, expected);
    for suffix in ["", "/messages", "/childFolders"] {
        let (status, location, _) = raw_get(
            &beta,
            &format!("/users/{mbx}/mailFolders/{}{suffix}", expanded.id),
        )
        .await;
        assert_eq!(status, 308, "{suffix}");
        assert!(location.unwrap().contains(&auxiliary[0]));
    }
    // Followed, the delta lists the auxiliary archive's messages; an item read through the
    // main archive redirects as well.
    let ids = delta_ids(&beta, &path).await;
    assert_eq!(ids.len(), expanded.messages);
    let (status, location, _) =
        raw_get(&beta, &format!("/users/{mbx}/messages/{}/$value", ids[0])).await;
    assert_eq!(status, 308);
    let (status, _, bytes) = beta.bytes(&location.unwrap()).await;
    assert_eq!(status, 200);
    assert!(!bytes.is_empty());
    // Inside $batch the 308 and its Location come back as the inner response.
    let (status, body) = beta
        .post(
            "/$batch",
            serde_json::json!({"requests": [{"id": "1", "method": "GET",
                "url": format!("/users/{mbx}/mailFolders/{}/messages/delta", expanded.id)}]}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["responses"][0]["status"], 308, "{body}");
    assert!(
        body["responses"][0]["headers"]["Location"]
            .as_str()
            .unwrap()
            .contains(&auxiliary[0])
    );
    // The archive's counts: main folders plus the auxiliary one.
    let total: usize = emu
        .archive_folder_counts(&upn)
        .iter()
        .map(|f| f.messages)
        .sum();
    assert_eq!(total, emu.archive_message_count(&upn));
    assert_eq!(emu.archive_message_ids(&upn).len(), total);
}

#[tokio::test]
async fn the_control_api_delivers_into_the_archive() {
    let emu = archived(163).await;
    let beta = beta(&emu).await;
    let upn = emu.users()[0].upn.clone();
    let before = emu.archive_message_count(&upn);
    let mime = b"Subject: archived by hand\r\nFrom: a@b.example\r\n\r\nold mail\r\n".to_vec();
    let response = client()
        .post(format!(
            "{}mailboxes/{upn}/archive/messages?folder=2021",
            emu.admin_url()
        ))
        .body(mime.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let id: Value = response.json().await.unwrap();
    let id = id["id"].as_str().unwrap().to_owned();
    assert_eq!(emu.archive_message_count(&upn), before + 1);
    let aux = emu.auxiliary_archive_ids(&upn)[0].clone();
    let (status, _, bytes) = beta
        .bytes(&format!("/users/{aux}/messages/{id}/$value"))
        .await;
    assert_eq!((status, bytes), (200, mime.clone()));
    let id = emu.deliver_to_archive(&upn, None, mime).unwrap();
    assert!(emu.archive_message_ids(&upn).contains(&id));
    let without = emu.users()[1].upn.clone();
    let response = client()
        .post(format!(
            "{}mailboxes/{without}/archive/messages",
            emu.admin_url()
        ))
        .body("Subject: x\r\n\r\nx")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("archive"));
}
