//! A real Graph client (graph-rs-sdk, through `use_test_endpoint`) against the emulator: users,
//! folders, a message delta page and `$value`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use graph_rs_sdk::{GraphClient, GraphClientConfiguration};
use m365_emulator::EmulatorConfig;
use serde_json::Value;

#[tokio::test]
async fn graph_rs_sdk_lists_users_folders_delta_and_downloads_mime() {
    let emu = common::start_with(EmulatorConfig {
        users: 3,
        messages_per_user: 12,
        seed: 31,
        ..Default::default()
    })
    .await;
    let token = common::token(&emu).await;
    let mut client = GraphClient::from(
        GraphClientConfiguration::new()
            .access_token(token)
            .https_only(false),
    );
    client.use_test_endpoint(&url::Url::parse(&format!("{}v1.0", emu.graph_url())).unwrap());

    let users: Value = client
        .users()
        .list_user()
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: Vec<&str> = users["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), emu.users().len());
    let upn = emu.users()[0].upn.clone();
    assert!(listed.contains(&upn.as_str()));

    let response = client
        .user(&upn)
        .mail_folders()
        .list_mail_folders()
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let folders: Value = response.json().await.unwrap();
    assert!(
        folders["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["displayName"] == "Inbox")
    );
    assert!(folders["@odata.nextLink"].is_string());

    let response = client
        .user(&upn)
        .mail_folder("inbox")
        .messages()
        .delta()
        .header(
            reqwest::header::HeaderName::from_static("prefer"),
            reqwest::header::HeaderValue::from_static("odata.maxpagesize=50"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let page: Value = response.json().await.unwrap();
    assert!(
        page["@odata.deltaLink"].is_string() || page["@odata.nextLink"].is_string(),
        "{page}"
    );
    let id = page["value"][0]["id"]
        .as_str()
        .expect("inbox has messages")
        .to_owned();

    let response = client
        .user(&upn)
        .message(&id)
        .get_messages_content()
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.to_vec(), emu.message_mime(&upn, &id).unwrap());
}
