//! The control API and the `serve` binary: counters, deliveries and deletions, users, the JSON line
//! the binary prints and its clean exit on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::BufRead as _;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn stats_count_requests_routes_and_bytes() {
    let emu = start(71).await;
    let token = token(&emu).await;
    let upn = first_mailbox(&emu);
    let id = emu.message_ids(&upn)[0].clone();
    let response = graph_get(
        &emu,
        &token,
        &format!("v1.0/users/{upn}/messages/{id}/$value"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let size = response.bytes().await.unwrap().len() as u64;
    let stats: Value = client()
        .get(format!("{}stats", emu.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in [
        "requests_total",
        "throttled_total",
        "faults_total",
        "bytes_served",
        "per_mailbox",
        "per_route",
    ] {
        assert!(stats.get(key).is_some(), "{key} missing: {stats}");
    }
    assert_eq!(stats["requests_total"], 1);
    assert_eq!(stats["token_requests"], 1);
    assert!(stats["bytes_served"].as_u64().unwrap() >= size);
    assert_eq!(stats["per_mailbox"][&upn]["requests"], 1);
    assert_eq!(stats["per_mailbox"][&upn]["max_concurrency"], 1);
    let routes = stats["per_route"].as_object().unwrap();
    assert!(
        routes
            .keys()
            .any(|r| r.starts_with("GET ") && r.ends_with("/$value")),
        "{routes:?}"
    );
    assert_eq!(serde_json::to_value(emu.stats().await).unwrap(), stats);
}

#[tokio::test]
async fn deliver_and_delete_through_the_control_api() {
    let emu = start(72).await;
    let upn = first_mailbox(&emu);
    let before = emu.message_count(&upn);
    let mime = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: control\r\nMessage-ID: <c1@example.com>\r\n\r\nhello\r\n".to_vec();
    let admin = client();
    let response = admin
        .post(format!(
            "{}mailboxes/{upn}/messages?folder=inbox",
            emu.admin_url()
        ))
        .body(mime.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(emu.message_count(&upn), before + 1);
    assert_eq!(emu.message_mime(&upn, &id).unwrap(), mime);
    // Unknown mailbox and unknown folder are named.
    let response = admin
        .post(format!(
            "{}mailboxes/nobody@contoso.onmicrosoft.com/messages",
            emu.admin_url()
        ))
        .body(mime.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("nobody@contoso.onmicrosoft.com")
    );
    let response = admin
        .post(format!(
            "{}mailboxes/{upn}/messages?folder=nosuchfolder",
            emu.admin_url()
        ))
        .body(mime)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("nosuchfolder"));
    let response = admin
        .delete(format!("{}mailboxes/{upn}/messages/{id}", emu.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(emu.message_count(&upn), before);
    let response = admin
        .delete(format!("{}mailboxes/{upn}/messages/{id}", emu.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn users_are_added_renamed_disabled_and_deleted() {
    let emu = start(73).await;
    let admin = client();
    let response = admin
        .post(format!("{}users", emu.admin_url()))
        .json(&json!({"upn": "new.hire@contoso.onmicrosoft.com", "display_name": "New Hire", "mail": "new.hire@contoso.onmicrosoft.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let user: Value = response.json().await.unwrap();
    let id = user["id"].as_str().unwrap().to_owned();
    assert!(emu.users().iter().any(|u| u.id == id && u.has_mailbox));
    let duplicate = admin
        .post(format!("{}users", emu.admin_url()))
        .json(&json!({"upn": "new.hire@contoso.onmicrosoft.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(duplicate.status(), 409);
    let patched: Value = admin
        .patch(format!("{}users/{id}", emu.admin_url()))
        .json(&json!({"display_name": "Renamed", "enabled": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["display_name"], "Renamed");
    assert_eq!(patched["enabled"], false);
    let bad = admin
        .patch(format!("{}users/{id}", emu.admin_url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        admin
            .delete(format!("{}users/{id}", emu.admin_url()))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert!(!emu.users().iter().any(|u| u.id == id));
    assert_eq!(
        admin
            .delete(format!("{}users/{id}", emu.admin_url()))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn serve_prints_its_json_line_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_m365-emulator"))
        .args([
            "serve",
            "--users",
            "2",
            "--messages-per-user",
            "3",
            "--seed",
            "7",
            "--tls",
            "--faults",
            "503=0.0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    for key in [
        "login_url",
        "graph_url",
        "tenant_id",
        "client_id",
        "client_secret",
        "certificate_pem",
        "private_key_pem",
        "ca_pem",
        "admin_url",
    ] {
        assert!(
            info[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key} missing: {line}"
        );
    }
    let read = |key: &str| std::fs::read_to_string(info[key].as_str().unwrap()).unwrap();
    assert!(read("certificate_pem").starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(read("private_key_pem").starts_with("-----BEGIN PRIVATE KEY-----"));
    let ca = read("ca_pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(info["private_key_pem"].as_str().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the private key is readable by others");
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
            .build()
            .unwrap();
        let url = format!(
            "{}{}/oauth2/v2.0/token",
            info["login_url"].as_str().unwrap(),
            info["tenant_id"].as_str().unwrap()
        );
        let scope = format!("{}.default", info["graph_url"].as_str().unwrap());
        let response = client
            .post(url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", info["client_id"].as_str().unwrap()),
                ("client_secret", info["client_secret"].as_str().unwrap()),
                ("scope", scope.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        !std::path::Path::new(info["private_key_pem"].as_str().unwrap()).exists(),
        "PEM files left behind"
    );
}

#[test]
fn serve_refuses_bad_arguments_with_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_m365-emulator"))
        .args(["serve", "--faults", "503=2"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("503"));
    let output = Command::new(env!("CARGO_BIN_EXE_m365-emulator"))
        .args(["serve", "--faults", "explode=0.1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("explode"));
    let output = Command::new(env!("CARGO_BIN_EXE_m365-emulator"))
        .args(["serve", "--users", "lots"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn the_same_seed_gives_the_same_registration_and_tenant() {
    let (a, b, c) = (start(74).await, start(74).await, start(75).await);
    assert_eq!(
        (
            a.tenant_id(),
            a.client_id(),
            a.client_secret(),
            a.expired_client_secret()
        ),
        (
            b.tenant_id(),
            b.client_id(),
            b.client_secret(),
            b.expired_client_secret()
        )
    );
    assert_eq!(
        (a.certificate_pem(), a.private_key_pem()),
        (b.certificate_pem(), b.private_key_pem())
    );
    assert_eq!(a.users(), b.users());
    let upn = first_mailbox(&a);
    assert_eq!(a.message_ids(&upn), b.message_ids(&upn));
    assert_ne!(a.tenant_id(), c.tenant_id());
    assert_ne!(a.certificate_pem(), c.certificate_pem());
    // Same answers over HTTP (ids and contents; request ids and dates aside).
    let (ta, tb) = (token(&a).await, token(&b).await);
    let path = format!("v1.0/users/{upn}/mailFolders?$top=50");
    let fa: Value = graph_get(&a, &ta, &path).await.json().await.unwrap();
    let fb: Value = graph_get(&b, &tb, &path).await.json().await.unwrap();
    assert_eq!(fa["value"], fb["value"]);
    let id = &a.message_ids(&upn)[0];
    let va = graph_get(&a, &ta, &format!("v1.0/users/{upn}/messages/{id}/$value"))
        .await
        .bytes()
        .await
        .unwrap();
    let vb = graph_get(&b, &tb, &format!("v1.0/users/{upn}/messages/{id}/$value"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(va, vb);
}
