//! Graph v1.0 behaviour over real HTTP: users and paging, folder tree fields, message listings,
//! `$value`, move/delete, `$batch`, error bodies, determinism (delta rounds: `delta.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::graph::{Graph, IMMUTABLE, assert_graph_error, small};

use m365_emulator::EmulatorConfig;
use serde_json::{Value, json};

/// Requests refused the same way whatever the mailbox holds: (path, with `{upn}` for a
/// regular mailbox, status, Graph error code).
const REFUSALS: &[(&str, u16, &str)] = &[
    ("/users?$skip=2", 400, "Request_BadRequest"),
    (
        "/users?$filter=jobTitle eq 'x'",
        400,
        "Request_UnsupportedQuery",
    ),
    (
        "/users/nobody@contoso.onmicrosoft.com",
        404,
        "Request_ResourceNotFound",
    ),
    (
        "/users/nobody@contoso.onmicrosoft.com/messages",
        404,
        "ErrorInvalidUser",
    ),
    (
        "/users/{upn}/mailFolders/nonexistent",
        404,
        "ErrorFolderNotFound",
    ),
    (
        "/users/{upn}/mailFolders?$filter=totalItemCount gt 3",
        400,
        "ErrorInvalidUrlQueryFilter",
    ),
    (
        "/users/{upn}/mailFolders/delta?$deltatoken=nope",
        410,
        "syncStateNotFound",
    ),
    (
        "/users/{upn}/mailFolders/inbox/messages/delta?$deltatoken=bogus123",
        410,
        "syncStateNotFound",
    ),
];

#[tokio::test]
async fn unsupported_queries_unknown_objects_and_bogus_tokens_are_refused() {
    let emu = small(29).await;
    let graph = Graph::new(&emu).await;
    let upn = emu.users()[0].upn.clone();
    for (path, status, code) in REFUSALS {
        graph
            .refuses(&path.replace("{upn}", &upn), *status, code)
            .await;
    }
}

#[tokio::test]
async fn same_seed_gives_identical_users_and_mime() {
    let (a, b) = (small(11).await, small(11).await);
    let (ga, gb) = (Graph::new(&a).await, Graph::new(&b).await);
    let select = "/users?$select=id,userPrincipalName,displayName,proxyAddresses,accountEnabled,userType,mail";
    let (ua, ub) = (ga.get(select).await.1, gb.get(select).await.1);
    assert_eq!(ua["value"], ub["value"]);
    let upn = a.users()[0].upn.clone();
    assert_eq!(a.message_ids(&upn), b.message_ids(&upn));
    for id in a.message_ids(&upn).iter().take(8) {
        let (sa, _, ma) = ga
            .bytes(&format!("/users/{upn}/messages/{id}/$value"))
            .await;
        let (sb, _, mb) = gb
            .bytes(&format!("/users/{upn}/messages/{id}/$value"))
            .await;
        assert_eq!((sa, sb), (200, 200));
        assert_eq!(
            ma, mb,
            "message {id} differs between two emulators of the same seed"
        );
    }
    let other = small(12).await;
    assert_ne!(
        other.users()[0].id,
        a.users()[0].id,
        "another seed gives another tenant"
    );
}

#[tokio::test]
async fn users_page_with_next_links_and_refuse_skip_and_big_top() {
    let emu = common::start_with(EmulatorConfig {
        users: 7,
        messages_per_user: 2,
        seed: 3,
        ..Default::default()
    })
    .await;
    let graph = Graph::new(&emu).await;
    let (items, last, pages) = graph
        .all_pages(
            "/users?$top=3&$select=id,userPrincipalName,accountEnabled",
            &[],
        )
        .await;
    assert_eq!(items.len(), emu.users().len());
    assert!(pages >= 4, "12 users at 3 a page");
    assert!(last.get("@odata.nextLink").is_none());
    assert!(
        items
            .iter()
            .all(|u| u.get("accountEnabled").is_some() && u.get("displayName").is_none())
    );
    let upns: Vec<&str> = items
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap())
        .collect();
    assert!(
        upns.iter().any(|u| u.contains("#EXT#")),
        "guest listed: {upns:?}"
    );
    assert!(upns[0].ends_with("@contoso.onmicrosoft.com") && upns[0].contains('.'));

    let (status, _) = graph.get("/users?$top=1000").await;
    assert_eq!(status, 400);

    let (status, body) = graph
        .get("/users?$filter=accountEnabled eq false&$select=id,accountEnabled")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["value"].as_array().unwrap().len(),
        1,
        "the one disabled member: {body}"
    );
    let (_, body) = graph.get("/users?$select=proxyAddresses").await;
    let first = &body["value"][0]["proxyAddresses"];
    assert!(first[0].as_str().unwrap().starts_with("SMTP:"), "{first}");
    assert!(
        first
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().starts_with("smtp:"))
    );
    // Default properties only without $select.
    let (_, body) = graph.get("/users").await;
    assert!(
        body["value"][0].get("accountEnabled").is_none()
            && body["value"][0].get("userPrincipalName").is_some()
    );
}

#[tokio::test]
async fn users_delta_reports_changes_and_deletions() {
    let emu = small(5).await;
    let graph = Graph::new(&emu).await;
    let (items, last, _) = graph
        .all_pages("/users/delta()", &[("Prefer", "odata.maxpagesize=3")])
        .await;
    assert_eq!(items.len(), emu.users().len());
    let delta = last["@odata.deltaLink"].as_str().unwrap().to_owned();
    let (_, replay) = graph.get(&delta).await;
    assert_eq!(replay["value"].as_array().unwrap().len(), 0, "{replay}");

    let victim = emu.users()[1].id.clone();
    emu.delete_user(&victim).unwrap();
    let renamed = emu.users()[0].id.clone();
    emu.update_user(
        &renamed,
        m365_emulator::UserPatch {
            display_name: Some("Renamed".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let (_, changes) = graph
        .get(replay["@odata.deltaLink"].as_str().unwrap())
        .await;
    let values = changes["value"].as_array().unwrap();
    assert_eq!(values.len(), 2, "{changes}");
    assert!(
        values
            .iter()
            .any(|v| v["id"] == victim.as_str() && v["@removed"]["reason"].is_string())
    );
    assert!(
        values
            .iter()
            .any(|v| v["id"] == renamed.as_str() && v["displayName"] == "Renamed")
    );

    let (_, latest) = graph.get("/users/delta?$deltatoken=latest").await;
    assert_eq!(latest["value"].as_array().unwrap().len(), 0);
    assert!(latest["@odata.deltaLink"].is_string());
}

#[tokio::test]
async fn folder_tree_has_documented_fields_paging_hidden_and_search_folders() {
    let emu = small(7).await;
    let graph = Graph::new(&emu).await;
    let upn = emu.users()[0].upn.clone();
    let (status, first) = graph.get(&format!("/users/{upn}/mailFolders")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["value"].as_array().unwrap().len(),
        10,
        "default page of 10"
    );
    assert!(
        first["@odata.nextLink"]
            .as_str()
            .unwrap()
            .contains("skip=10")
    );
    let (visible, _, _) = graph
        .all_pages(&format!("/users/{upn}/mailFolders"), &[])
        .await;
    let (all, _, _) = graph
        .all_pages(
            &format!("/users/{upn}/mailFolders?includeHiddenFolders=true&$top=5"),
            &[],
        )
        .await;
    assert_eq!(all.len(), visible.len() + 1, "one hidden folder");
    for folder in &all {
        for field in [
            "id",
            "displayName",
            "parentFolderId",
            "childFolderCount",
            "unreadItemCount",
            "totalItemCount",
            "isHidden",
        ] {
            assert!(folder.get(field).is_some(), "{field} missing in {folder}");
        }
        assert!(folder.get("sizeInBytes").is_none());
    }
    let names: Vec<&str> = all
        .iter()
        .map(|f| f["displayName"].as_str().unwrap())
        .collect();
    for expected in [
        "Inbox",
        "Sent Items",
        "Deleted Items",
        "Archive",
        "Receipts/Invoices",
        "Müller & Søn – Verträge",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    let search: Vec<&Value> = all
        .iter()
        .filter(|f| f["@odata.type"] == "#microsoft.graph.mailSearchFolder")
        .collect();
    assert_eq!(search.len(), 1);
    assert!(all.iter().any(|f| f["isHidden"] == true));

    // Well-known names, nested children, Unicode.
    let (_, inbox) = graph.get(&format!("/users/{upn}/mailFolders/inbox")).await;
    assert_eq!(inbox["displayName"], "Inbox");
    let (_, children) = graph
        .get(&format!("/users/{upn}/mailFolders/Inbox/childFolders"))
        .await;
    let projects = children["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["displayName"] == "Projects")
        .unwrap();
    assert_eq!(projects["parentFolderId"], inbox["id"]);
    assert_eq!(projects["childFolderCount"], 1);
    let (_, nested) = graph
        .get(&format!(
            "/users/{upn}/mailFolders/{}/childFolders",
            projects["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(nested["value"][0]["displayName"], "2024");

    // Counts add up to the mailbox's messages (search folders and recoverable items left out).
    let mut total = 0;
    let mut stack: Vec<Value> = all
        .iter()
        .filter(|f| f.get("@odata.type").is_none())
        .cloned()
        .collect();
    while let Some(folder) = stack.pop() {
        total += folder["totalItemCount"].as_u64().unwrap();
        if folder["childFolderCount"].as_u64().unwrap() > 0 {
            let (children, _, _) = graph
                .all_pages(
                    &format!(
                        "/users/{upn}/mailFolders/{}/childFolders?includeHiddenFolders=true",
                        folder["id"].as_str().unwrap()
                    ),
                    &[],
                )
                .await;
            stack.extend(children);
        }
    }
    assert_eq!(total as usize, emu.message_count(&upn));
}

#[tokio::test]
async fn messages_page_filter_select_and_size() {
    let emu = small(9).await;
    let graph = Graph::new(&emu).await;
    let upn = emu.users()[0].upn.clone();
    let (items, _, pages) = graph
        .all_pages(
            &format!("/users/{upn}/messages?$top=7&$select=id,receivedDateTime"),
            &[IMMUTABLE],
        )
        .await;
    assert_eq!(items.len(), emu.message_count(&upn));
    assert!(pages >= 4);
    let mut ids: Vec<String> = items
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected = emu.message_ids(&upn);
    expected.sort();
    assert_eq!(ids, expected, "immutable ids as message_ids gives them");
    let times: Vec<&str> = items
        .iter()
        .map(|m| m["receivedDateTime"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

    let cut = times[times.len() / 2];
    let (status, body) = graph
        .get(&format!(
            "/users/{upn}/mailFolders/inbox/messages?$filter=receivedDateTime ge {cut}&$top=1000"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["receivedDateTime"].as_str().unwrap() >= cut)
    );

    graph.refuses(&format!("/users/{upn}/mailFolders/inbox/messages?$filter=isRead eq false and receivedDateTime ge {cut}&$orderby=receivedDateTime desc"), 400, "InefficientFilter").await;
    let (status, _) = graph.get(&format!("/users/{upn}/messages?$top=1001")).await;
    assert_eq!(status, 400);
    let (status, _) = graph.get(&format!("/users/{upn}/messages?$top=0")).await;
    assert_eq!(status, 400);

    let (status, body) = graph
        .get_with(
            &format!("/users/{upn}/mailFolders/inbox/messages?$select=id,subject,internetMessageId,isRead,flag,parentFolderId&$expand=singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')&$top=3"),
            &[IMMUTABLE],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let message = &body["value"][0];
    let size: usize = message["singleValueExtendedProperties"][0]["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mime = emu
        .message_mime(&upn, message["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(size, mime.len(), "PR_MESSAGE_SIZE is the $value length");
    assert!(
        message["internetMessageId"]
            .as_str()
            .unwrap()
            .starts_with('<')
    );
    assert!(message.get("from").is_none(), "$select honoured");
    let (status, body) = graph
        .get(&format!(
            "/users/{upn}/messages?$select=bodyPreview,body&$top=1"
        ))
        .await;
    assert_eq!(status, 200);
    let preview = body["value"][0]["bodyPreview"].as_str().unwrap();
    assert!(
        preview.starts_with("Hi ") && preview.len() <= 255 * 4,
        "{preview}"
    );
    let text = body["value"][0]["body"]["content"].as_str().unwrap();
    assert!(text.contains("Best regards"), "{text}");
}

#[tokio::test]
async fn value_serves_the_exact_mime_bytes_with_length_and_percent_encoded_upn() {
    let emu = small(13).await;
    let graph = Graph::new(&emu).await;
    let upn = emu.users()[1].upn.clone();
    let encoded = upn.replace('@', "%40");
    for id in emu.message_ids(&upn).iter().take(6) {
        let (status, length, bytes) = graph
            .bytes(&format!("/users/{encoded}/messages/{id}/$value"))
            .await;
        assert_eq!(status, 200);
        assert_eq!(length.unwrap().parse::<usize>().unwrap(), bytes.len());
        assert_eq!(bytes, emu.message_mime(&upn, id).unwrap());
        assert!(
            bytes
                .windows(12)
                .any(|w| w.eq_ignore_ascii_case(b"Message-ID: ")),
            "RFC 822 headers"
        );
    }
    let id = emu
        .users()
        .iter()
        .find(|u| u.upn == upn)
        .unwrap()
        .id
        .clone();
    let (status, body) = graph
        .get(&format!("/users/{}/mailFolders", id.to_uppercase()))
        .await;
    assert_eq!(status, 200, "object id works too: {body}");
    let message = &emu.message_ids(&upn)[0];
    let (status, _, bytes) = graph
        .bytes(&format!("/users/{encoded}/Messages/{message}/%24value"))
        .await;
    assert_eq!(
        status, 200,
        "segments are case-insensitive and may be percent-encoded"
    );
    assert_eq!(bytes, emu.message_mime(&upn, message).unwrap());
}

#[tokio::test]
async fn large_message_streams_at_its_announced_length() {
    let emu = common::start_with(EmulatorConfig {
        users: 1,
        messages_per_user: 1,
        seed: 2,
        special_users: false,
        large_message_bytes: Some(12 * 1024 * 1024),
        ..Default::default()
    })
    .await;
    let graph = Graph::new(&emu).await;
    let upn = emu.users()[0].upn.clone();
    let (_, body) = graph
        .get(&format!("/users/{upn}/mailFolders/inbox/messages?$select=id&$expand=singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')&$top=50"))
        .await;
    let largest = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["singleValueExtendedProperties"][0]["value"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
                m["id"].as_str().unwrap().to_owned(),
            )
        })
        .max()
        .unwrap();
    assert!(
        largest.0 > 12 * 1024 * 1024 - 4096 && largest.0 < 12 * 1024 * 1024 + 4096,
        "{largest:?}"
    );
    let (status, length, bytes) = graph
        .bytes(&format!("/users/{upn}/messages/{}/$value", largest.1))
        .await;
    assert_eq!(status, 200);
    assert_eq!(length.unwrap().parse::<u64>().unwrap(), largest.0);
    assert_eq!(bytes.len() as u64, largest.0);
    assert!(bytes.ends_with(b"--\r\n"), "closing boundary present");
}

#[tokio::test]
async fn delete_and_permanent_delete_and_move_without_immutable_ids() {
    let emu = small(17).await;
    let graph = Graph::new(&emu).await;
    let upn = emu.users()[0].upn.clone();
    let before = emu.message_count(&upn);
    let ids = emu.message_ids(&upn);
    let response = graph
        .http
        .delete(graph.url(&format!("/users/{upn}/messages/{}", ids[0])))
        .bearer_auth(&graph.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(
        emu.message_count(&upn),
        before - 1,
        "moved to Recoverable Items"
    );
    let (_, deletions) = graph
        .get(&format!(
            "/users/{upn}/mailFolders/recoverableitemsdeletions/messages"
        ))
        .await;
    assert_eq!(deletions["value"].as_array().unwrap().len(), 1);

    let (status, _) = graph
        .post(
            &format!("/users/{upn}/messages/{}/permanentDelete", ids[1]),
            json!({}),
            &[],
        )
        .await;
    assert_eq!(status, 204);
    graph
        .refuses(
            &format!("/users/{upn}/messages/{}", ids[1]),
            404,
            "ErrorItemNotFound",
        )
        .await;

    let (status, moved) = graph
        .post(
            &format!("/users/{upn}/messages/{}/move", ids[2]),
            json!({"destinationId": "deleteditems"}),
            &[],
        )
        .await;
    assert_eq!(status, 201);
    let new_id = moved["id"].as_str().unwrap();
    assert_ne!(new_id, ids[2], "a move gives a new id without ImmutableId");
    let (status, _) = graph.get(&format!("/users/{upn}/messages/{new_id}")).await;
    assert_eq!(status, 200);
    let (status, body) = graph
        .post(
            &format!("/users/{upn}/messages/{}/move", ids[3]),
            json!({"destinationId": "nowhere"}),
            &[],
        )
        .await;
    assert_eq!(status, 404);
    assert_graph_error(&body, "ErrorFolderNotFound");
}

#[tokio::test]
async fn mail_routes_answer_graph_errors_for_special_users() {
    let emu = small(19).await;
    let graph = Graph::new(&emu).await;
    let users = emu.users();
    let guest = users.iter().find(|u| u.guest).unwrap();
    let unlicensed = users
        .iter()
        .find(|u| !u.guest && u.mail.is_some() && !u.has_mailbox)
        .unwrap();
    let denied = users.iter().find(|u| u.access_denied).unwrap();
    let no_mail = users.iter().find(|u| u.mail.is_none()).unwrap();
    let disabled = users.iter().find(|u| !u.enabled).unwrap();
    for (user, status, code) in [
        (&unlicensed.upn, 404, "MailboxNotEnabledForRESTAPI"),
        (&guest.id, 404, "MailboxNotEnabledForRESTAPI"),
        (&no_mail.id, 404, "MailboxNotEnabledForRESTAPI"),
        (&denied.upn, 403, "ErrorAccessDenied"),
    ] {
        let (got, body) = graph
            .get(&format!("/users/{}/mailFolders", user.replace('#', "%23")))
            .await;
        assert_eq!(got, status, "{user}: {body}");
        assert_graph_error(&body, code);
    }
    let (status, _) = graph
        .get(&format!("/users/{}/mailFolders", disabled.upn))
        .await;
    assert_eq!(status, 200, "a disabled user's mailbox is still there");
}

#[tokio::test]
async fn batch_runs_requests_honours_depends_on_and_refuses_bad_payloads() {
    let emu = small(23).await;
    let graph = Graph::new(&emu).await;
    let upn = emu.users()[0].upn.clone();
    let id = emu.message_ids(&upn)[0].clone();
    let (status, body) = graph
        .post(
            "/$batch",
            json!({"requests": [
                {"id": "1", "method": "GET", "url": format!("/users/{upn}/mailFolders/inbox")},
                {"id": "2", "method": "GET", "url": format!("/users/{upn}/mailFolders/nowhere")},
                {"id": "3", "method": "GET", "url": format!("/users/{upn}/messages"), "dependsOn": ["2"]},
                {"id": "4", "method": "GET", "url": format!("users/{upn}/messages/{id}?$select=subject"), "dependsOn": ["1"]},
                {"id": "5", "method": "POST", "url": format!("/users/{upn}/messages/{id}/move"),
                 "headers": {"Content-Type": "application/json"}, "body": {"destinationId": "archive"}, "dependsOn": ["4"]},
            ]}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let by_id = |i: &str| {
        body["responses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == i)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("1")["status"], 200);
    assert_eq!(by_id("1")["body"]["displayName"], "Inbox");
    assert_eq!(by_id("2")["status"], 404);
    assert_eq!(by_id("2")["body"]["error"]["code"], "ErrorFolderNotFound");
    assert_eq!(by_id("3")["status"], 424, "failed dependency");
    assert_eq!(by_id("4")["status"], 200);
    assert_eq!(by_id("5")["status"], 201);

    let too_many: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"}))
        .collect();
    let (status, body) = graph
        .post("/$batch", json!({ "requests": too_many }), &[])
        .await;
    assert_eq!(status, 400);
    assert_graph_error(&body, "BadRequest");
    let (status, _) = graph
        .post("/$batch", json!({"requests": [{"id": "1", "method": "GET", "url": "/users"}, {"id": "1", "method": "GET", "url": "/users"}]}), &[])
        .await;
    assert_eq!(status, 400, "duplicate ids");
}

#[tokio::test]
async fn batch_inner_requests_are_throttled_on_their_own() {
    let emu = small(29).await;
    let graph = Graph::new(&emu).await;
    let upn = emu.users()[0].upn.clone();
    let ids = emu.message_ids(&upn);
    // Hold the mailbox's 4 concurrent slots with slow outer downloads, then batch into it.
    let requests: Vec<Value> = ids
        .iter()
        .take(20)
        .enumerate()
        .map(|(i, id)| json!({"id": i.to_string(), "method": "GET", "url": format!("/users/{upn}/messages/{id}/$value")}))
        .collect();
    let batches =
        (0..4).map(|_| graph.post("/$batch", json!({ "requests": requests.clone() }), &[]));
    let results = futures::future::join_all(batches).await;
    let mut statuses = Vec::new();
    for (status, body) in results {
        assert_eq!(status, 200, "the batch itself succeeds");
        for response in body["responses"].as_array().unwrap() {
            let inner = response["status"].as_u64().unwrap();
            if inner == 429 {
                assert!(response["headers"]["Retry-After"].is_string(), "{response}");
            }
            statuses.push(inner);
        }
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "four batches of 4 concurrent requests exceed 4 per mailbox"
    );
    assert!(statuses.contains(&200));
}

#[tokio::test]
async fn eml_dir_fills_the_first_mailbox_byte_exact_with_folders_from_directories() {
    let dir = std::env::temp_dir().join(format!("m365-emulator-eml-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("Kunden Ä/2024")).unwrap();
    let top = b"From: a@example.org\r\nSubject: top\r\nMessage-ID: <top@example.org>\r\nDate: Tue, 1 Oct 2024 10:00:00 +0000\r\n\r\nbody\r\n".to_vec();
    let nested =
        b"From: b@example.org\nSubject: nested\nMessage-ID: <nested@example.org>\n\nbare LF body\n"
            .to_vec();
    std::fs::write(dir.join("one.eml"), &top).unwrap();
    std::fs::write(dir.join("Kunden Ä/2024/two.EML"), &nested).unwrap();
    std::fs::write(dir.join("ignored.txt"), b"not mail").unwrap();
    let emu = common::start_with(EmulatorConfig {
        users: 2,
        messages_per_user: 3,
        seed: 8,
        eml_dir: Some(dir.clone()),
        ..Default::default()
    })
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
    let graph = Graph::new(&emu).await;
    let upn = emu.users()[0].upn.clone();
    assert_eq!(emu.message_count(&upn), 3 + 2);
    assert_eq!(emu.message_count(&emu.users()[1].upn), 3);

    let (_, roots) = graph
        .get(&format!("/users/{upn}/mailfolders?$top=50"))
        .await;
    let kunden = roots["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["displayName"] == "Kunden Ä")
        .expect("folder from directory");
    let (_, children) = graph
        .get(&format!(
            "/users/{upn}/mailFolders/{}/childfolders",
            kunden["id"].as_str().unwrap()
        ))
        .await;
    let year = &children["value"][0];
    assert_eq!(year["displayName"], "2024");
    assert_eq!(year["totalItemCount"], 1);
    let (_, listed) = graph
        .get_with(
            &format!(
                "/users/{upn}/mailFolders/{}/messages",
                year["id"].as_str().unwrap()
            ),
            &[IMMUTABLE],
        )
        .await;
    let id = listed["value"][0]["id"].as_str().unwrap();
    assert_eq!(listed["value"][0]["subject"], "nested");
    let (_, _, bytes) = graph
        .bytes(&format!("/users/{upn}/messages/{id}/$value"))
        .await;
    assert_eq!(bytes, nested, "stored as given");
    let (_, inbox) = graph.get(&format!("/users/{upn}/mailFolders/inbox/messages?$filter=receivedDateTime eq 2024-10-01T10:00:00Z")).await;
    assert_eq!(
        inbox["value"][0]["subject"], "top",
        "received time from the Date header: {inbox}"
    );
}

#[tokio::test]
async fn folder_filter_by_display_name_and_users_count_needs_eventual_consistency() {
    let emu = small(37).await;
    let graph = Graph::new(&emu).await;
    let upn = emu.users()[0].upn.clone();
    let (status, body) = graph
        .get(&format!(
            "/users/{upn}/mailFolders?$filter=displayName eq 'Receipts/Invoices'"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"].as_array().unwrap().len(), 1);
    assert_eq!(body["value"][0]["displayName"], "Receipts/Invoices");

    let (status, _) = graph.get("/users?$count=true").await;
    assert_eq!(status, 400);
    let (status, body) = graph
        .get_with("/users?$count=true", &[("ConsistencyLevel", "eventual")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["@odata.count"].as_u64().unwrap() as usize,
        emu.users().len()
    );
}

#[tokio::test]
async fn next_links_follow_the_listener_scheme_under_tls() {
    let emu = common::start_with(EmulatorConfig {
        users: 3,
        messages_per_user: 2,
        seed: 41,
        tls: true,
        ..Default::default()
    })
    .await;
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(emu.ca_pem().unwrap().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let scope = common::graph_scope(&emu);
    let (id, secret) = (emu.client_id(), emu.client_secret());
    let token: Value = http
        .post(common::token_url(&emu, &emu.tenant_id()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", &scope),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let graph = Graph {
        base: format!("{}v1.0", emu.graph_url()),
        token: token["access_token"].as_str().unwrap().to_owned(),
        http,
    };
    let (_, first) = graph.get("/users?$top=2").await;
    let next = first["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{}v1.0/users?", emu.graph_url())),
        "{next}"
    );
    let (items, _, _) = graph.all_pages("/users?$top=2", &[]).await;
    assert_eq!(items.len(), emu.users().len());
}
