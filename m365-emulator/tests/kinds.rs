//! Mailbox kinds: the shared, room and equipment mailboxes of a tenant generated with
//! `mailbox_kinds`, `mailboxSettings` (alone, one property, inside `$batch`), its app role, and
//! the purpose of users added through the control API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::graph::{Graph, assert_graph_error};
use common::*;
use m365_emulator::{Emulator, EmulatorConfig, MailboxPurpose};
use serde_json::{Value, json};

async fn kinds(seed: u64) -> Emulator {
    start_with(EmulatorConfig {
        users: 3,
        messages_per_user: 8,
        seed,
        mailbox_kinds: true,
        ..Default::default()
    })
    .await
}

/// The `userPurpose` Graph answers for a user.
async fn purpose(graph: &Graph, user: &str) -> Value {
    let (status, body) = graph
        .get(&format!("/users/{user}/mailboxSettings/userPurpose"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["value"].clone()
}

#[tokio::test]
async fn the_generated_tenant_holds_shared_room_and_equipment_mailboxes_with_disabled_accounts() {
    let emu = kinds(140).await;
    let graph = Graph::new(&emu).await;
    let users = emu.users();
    let by_kind = |kind: MailboxPurpose| -> Vec<_> {
        users
            .iter()
            .filter(|u| emu.mailbox_kind(&u.upn) == Some(kind))
            .collect()
    };
    let shared = by_kind(MailboxPurpose::Shared);
    let shared_names: Vec<&str> = shared.iter().map(|u| u.upn.as_str()).collect();
    assert_eq!(shared.len(), 3, "{shared_names:?}");
    assert!(shared_names.iter().any(|u| u.starts_with("info@")));
    assert!(shared_names.iter().any(|u| u.starts_with("support@")));
    assert_eq!(by_kind(MailboxPurpose::Room).len(), 1);
    assert_eq!(by_kind(MailboxPurpose::Equipment).len(), 1);
    for user in users.iter().filter(|u| u.purpose != MailboxPurpose::User) {
        assert!(
            !user.enabled && user.has_mailbox && user.mail.is_some(),
            "{user:?}"
        );
        assert!(emu.message_count(&user.upn) > 0, "{} holds mail", user.upn);
        assert_eq!(purpose(&graph, &user.upn).await, user.purpose.as_str());
        // The directory shows a disabled account, as Exchange creates them.
        let (status, body) = graph
            .get(&format!("/users/{}?$select=accountEnabled,mail", user.id))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accountEnabled"], false);
    }
    // Regular members, the disabled former employee and users without a mailbox are `user`.
    for user in users.iter().filter(|u| u.purpose == MailboxPurpose::User) {
        if user.has_mailbox && !user.access_denied {
            assert_eq!(purpose(&graph, &user.id).await, "user", "{}", user.upn);
        }
    }
    // Same seed, same tenant.
    let again = kinds(140).await;
    assert_eq!(again.users(), users);
}

#[tokio::test]
async fn mailbox_settings_answer_graphs_shape() {
    let emu = kinds(141).await;
    let graph = Graph::new(&emu).await;
    let shared = emu
        .users()
        .into_iter()
        .find(|u| u.upn.starts_with("support@"))
        .unwrap();
    let (status, body) = graph
        .get(&format!("/users/{}/mailboxSettings", shared.upn))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userPurpose"], "shared");
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/mailboxSettings")
    );
    for key in [
        "archiveFolder",
        "timeZone",
        "automaticRepliesSetting",
        "language",
        "dateFormat",
        "timeFormat",
        "workingHours",
        "delegateMeetingMessageDeliveryOptions",
    ] {
        assert!(!body[key].is_null(), "{key} in {body}");
    }
    assert_eq!(body["language"]["locale"], "en-US");
    let (status, body) = graph
        .get(&format!(
            "/users/{}/mailboxSettings?$select=userPurpose",
            shared.id
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userPurpose"], "shared");
    assert!(body.get("timeZone").is_none(), "{body}");
    let (status, body) = graph
        .get(&format!(
            "/users/{}/mailboxSettings/workingHours",
            shared.id
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["daysOfWeek"][0], "monday");
    // Form is lenient (case of segments), meaning is strict (unknown property, unknown user,
    // user without a mailbox).
    let (status, body) = graph
        .get(&format!(
            "/Users/{}/MailboxSettings/UserPurpose",
            shared.upn
        ))
        .await;
    assert_eq!((status, body["value"].clone()), (200, json!("shared")));
    graph
        .refuses(
            &format!("/users/{}/mailboxSettings?$select=nonsense", shared.id),
            400,
            "RequestBroker--ParseUri",
        )
        .await;
    graph
        .refuses(
            "/users/nobody@contoso.onmicrosoft.com/mailboxSettings",
            404,
            "ErrorInvalidUser",
        )
        .await;
    let no_mailbox = emu
        .users()
        .into_iter()
        .find(|u| !u.has_mailbox && !u.guest)
        .unwrap();
    graph
        .refuses(
            &format!("/users/{}/mailboxSettings", no_mailbox.id),
            404,
            "MailboxNotEnabledForRESTAPI",
        )
        .await;
}

#[tokio::test]
async fn mailbox_settings_need_their_app_role() {
    let emu = kinds(142).await;
    let graph = Graph::new(&emu).await;
    let upn = emu.users()[0].upn.clone();
    let path = format!("/users/{upn}/mailboxSettings");
    assert_eq!(graph.get(&path).await.0, 200);
    emu.set_withdrawn_app_roles(&["MailboxSettings.Read"]);
    graph.refuses(&path, 403, "ErrorAccessDenied").await;
    graph
        .refuses(&format!("{path}/userPurpose"), 403, "ErrorAccessDenied")
        .await;
    // Mail and the directory need other roles, still granted.
    assert_eq!(graph.get(&format!("/users/{upn}/messages")).await.0, 200);
    assert_eq!(graph.get("/users").await.0, 200);
    // Through the control API as well, and back.
    let admin = client();
    let response = admin
        .put(format!("{}app/withdrawn-roles", emu.admin_url()))
        .json(&json!(["User.Read.All"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(graph.get(&path).await.0, 200);
    graph
        .refuses("/users", 403, "Authorization_RequestDenied")
        .await;
    emu.set_withdrawn_app_roles(&[]);
    assert_eq!(graph.get("/users").await.0, 200);
}

#[tokio::test]
async fn mailbox_settings_are_served_inside_batch_and_throttled_per_mailbox() {
    let emu = kinds(143).await;
    let graph = Graph::new(&emu).await;
    let users: Vec<_> = emu.users().into_iter().filter(|u| u.has_mailbox).collect();
    let requests: Vec<Value> = users
        .iter()
        .enumerate()
        .take(20)
        .map(|(i, u)| {
            json!({"id": i.to_string(), "method": "GET",
                   "url": format!("/users/{}/mailboxSettings?$select=userPurpose", u.id)})
        })
        .collect();
    let (status, body) = graph
        .post("/$batch", json!({"requests": requests}), &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let responses = body["responses"].as_array().unwrap();
    assert_eq!(responses.len(), requests.len());
    for response in responses {
        let index: usize = response["id"].as_str().unwrap().parse().unwrap();
        let user = &users[index];
        if user.access_denied {
            assert_eq!(response["status"], 403, "{response}");
            continue;
        }
        assert_eq!(response["status"], 200, "{response}");
        assert_eq!(
            response["body"]["userPurpose"],
            user.purpose.as_str(),
            "{}",
            user.upn
        );
    }
    // Each inner request counted against its own mailbox.
    let stats = emu.stats().await;
    let info = users.iter().find(|u| u.upn.starts_with("info@")).unwrap();
    assert_eq!(stats.per_mailbox[&info.upn].requests, 1);
    emu.set_withdrawn_app_roles(&["MailboxSettings.Read"]);
    let (_, body) = graph
        .post("/$batch", json!({"requests": [requests[0].clone()]}), &[])
        .await;
    assert_eq!(body["responses"][0]["status"], 403, "{body}");
    assert_graph_error(&body["responses"][0]["body"], "ErrorAccessDenied");
}

#[tokio::test]
async fn users_added_through_the_control_api_may_carry_a_purpose() {
    let emu = start(144).await;
    let graph = Graph::new(&emu).await;
    let response = client()
        .post(format!("{}users", emu.admin_url()))
        .json(&json!({"upn": "board-room@contoso.onmicrosoft.com", "mail": "board-room@contoso.onmicrosoft.com",
                      "enabled": false, "purpose": "room"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let added: Value = response.json().await.unwrap();
    assert_eq!(added["purpose"], "room");
    assert_eq!(
        purpose(&graph, "board-room@contoso.onmicrosoft.com").await,
        "room"
    );
    let response = client()
        .post(format!("{}users", emu.admin_url()))
        .json(&json!({"upn": "odd@contoso.onmicrosoft.com", "purpose": "castle"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("purpose"));
    // Without mailbox_kinds the tenant has no such mailboxes.
    assert!(
        emu.users()
            .iter()
            .filter(|u| !u.upn.starts_with("board-room"))
            .all(|u| u.purpose == MailboxPurpose::User)
    );
}
