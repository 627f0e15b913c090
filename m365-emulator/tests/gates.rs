//! Throttling and fault injection over real HTTP: 16 parallel `$value` requests on one mailbox
//! meet 429 `ApplicationThrottled` with `Retry-After` while at most 4 are served at once; faults are
//! reproducible from the seed; truncated bodies announce more than they send; resets are resets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use m365_emulator::{EmulatorConfig, FaultConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn config(seed: u64) -> EmulatorConfig {
    EmulatorConfig {
        users: 2,
        messages_per_user: 20,
        seed,
        special_users: false,
        ..Default::default()
    }
}

async fn parallel_values(emu: &m365_emulator::Emulator, n: usize) -> Vec<reqwest::Response> {
    let token = token(emu).await;
    let upn = first_mailbox(emu);
    let ids = emu.message_ids(&upn);
    assert!(!ids.is_empty());
    let client = client();
    let requests = (0..n).map(|i| {
        let url = format!(
            "{}v1.0/users/{}/messages/{}/$value",
            emu.graph_url(),
            upn,
            ids[i % ids.len()]
        );
        client.get(url).bearer_auth(&token).send()
    });
    futures::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn sixteen_parallel_requests_on_one_mailbox_meet_429_with_retry_after() {
    // A mail service latency long enough that the 16 requests are in flight together.
    let emu = start_with(EmulatorConfig {
        mail_latency: Duration::from_millis(1000),
        ..config(31)
    })
    .await;
    let responses = parallel_values(&emu, 16).await;
    let mut served = 0;
    let mut throttled = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => {
                served += 1;
                assert!(!response.bytes().await.unwrap().is_empty());
            }
            429 => {
                throttled += 1;
                let retry_after: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry_after >= 1);
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "ApplicationThrottled");
                assert_eq!(
                    body["error"]["message"],
                    "Application is over its MailboxConcurrency limit."
                );
                assert!(body["error"]["innerError"]["request-id"].is_string());
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(served >= 4, "served {served}");
    assert!(throttled >= 1, "throttled {throttled}");
    let stats = emu.stats().await;
    let upn = first_mailbox(&emu);
    let mailbox = stats.per_mailbox[&upn];
    assert!(mailbox.max_concurrency <= 4, "{mailbox:?}");
    assert_eq!(
        mailbox.max_concurrency, 4,
        "the burst filled every slot: {mailbox:?}"
    );
    assert_eq!(mailbox.throttled, throttled);
    assert_eq!(stats.throttled_total, throttled);
    assert_eq!(mailbox.requests, 16);
    // Once the burst is over, the mailbox serves again.
    let again = parallel_values(&emu, 4).await;
    assert!(again.iter().all(|r| r.status() == 200));
}

#[tokio::test]
async fn throttling_off_serves_every_parallel_request() {
    let emu = start_with(EmulatorConfig {
        mail_latency: Duration::from_millis(1000),
        throttling: false,
        ..config(31)
    })
    .await;
    let responses = parallel_values(&emu, 8).await;
    assert!(responses.iter().all(|r| r.status() == 200));
    let stats = emu.stats().await;
    assert!(stats.per_mailbox[&first_mailbox(&emu)].max_concurrency > 4);
    assert_eq!(stats.throttled_total, 0);
}

/// What one request met: a status, and whether its body arrived whole.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    status: u16,
    retry_after: Option<String>,
    body_ok: bool,
}

async fn run_sequence(seed: u64, faults: FaultConfig) -> (Vec<Outcome>, u64) {
    let emu = start_with(EmulatorConfig {
        faults,
        ..config(seed)
    })
    .await;
    let token = token(&emu).await;
    let upn = first_mailbox(&emu);
    let ids = emu.message_ids(&upn);
    let mut outcomes = Vec::new();
    for round in 0..3 {
        for id in &ids {
            // A fresh connection per request: a reset or cut body must not spill onto the next one.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let url = format!(
                "{}v1.0/users/{}/messages/{}/$value",
                emu.graph_url(),
                upn,
                id
            );
            let response = client.get(url).bearer_auth(&token).send().await;
            let outcome = match response {
                Ok(response) => Outcome {
                    status: response.status().as_u16(),
                    retry_after: response
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_owned()),
                    body_ok: response.bytes().await.is_ok(),
                },
                Err(_) => Outcome {
                    status: 0,
                    retry_after: None,
                    body_ok: false,
                },
            };
            outcomes.push(outcome);
        }
        let _ = round;
    }
    let faults_total = emu.stats().await.faults_total;
    emu.shutdown().await;
    (outcomes, faults_total)
}

#[tokio::test]
async fn faults_are_reproducible_from_the_seed() {
    let faults = FaultConfig {
        status_503: 0.15,
        status_504: 0.1,
        reset: 0.1,
        truncate: 0.1,
        slow_ms: 0,
    };
    let (first, first_total) = run_sequence(41, faults).await;
    let (second, second_total) = run_sequence(41, faults).await;
    assert_eq!(first, second);
    assert_eq!(first_total, second_total);
    let count = |f: &dyn Fn(&Outcome) -> bool| first.iter().filter(|o| f(o)).count();
    let s503 = count(&|o| o.status == 503);
    let s504 = count(&|o| o.status == 504);
    let cut = count(&|o| !o.body_ok);
    let fine = count(&|o| o.status == 200 && o.body_ok);
    assert!(
        s503 > 0 && s504 > 0 && cut > 0 && fine > 0,
        "503 {s503}, 504 {s504}, cut {cut}, fine {fine}"
    );
    assert!(
        first
            .iter()
            .any(|o| o.status == 503 && o.retry_after.is_some())
    );
    assert_eq!(u64::try_from(first.len() - fine).unwrap(), first_total);
    // Another seed meets other faults.
    let (third, _) = run_sequence(42, faults).await;
    assert_ne!(first, third);
}

/// One raw HTTP/1.1 GET; answers the announced Content-Length, the body bytes received and the
/// read error, if any.
async fn raw_get(
    emu: &m365_emulator::Emulator,
    token: &str,
    path: &str,
) -> (usize, usize, Option<std::io::ErrorKind>) {
    let addr = format!(
        "{}:{}",
        emu.graph_url().host_str().unwrap(),
        emu.graph_url().port().unwrap()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut error = None;
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => {
                error = Some(e.kind());
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&received);
    let head_end = text.find("\r\n\r\n").expect("headers arrived") + 4;
    let length: usize = text[..head_end]
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    (length, received.len() - head_end, error)
}

#[tokio::test]
async fn truncated_body_announces_more_than_it_sends_and_reset_resets() {
    let emu = start_with(config(51)).await;
    let token = token(&emu).await;
    let upn = first_mailbox(&emu);
    let id = emu.message_ids(&upn)[0].clone();
    let path = format!("/v1.0/users/{upn}/messages/{id}/$value");
    let full = emu.message_mime(&upn, &id).unwrap().len();

    emu.set_faults(FaultConfig {
        truncate: 1.0,
        ..Default::default()
    });
    let (length, received, _) = raw_get(&emu, &token, &path).await;
    assert_eq!(length, full);
    assert!(received < length, "received {received} of {length}");

    emu.set_faults(FaultConfig {
        reset: 1.0,
        ..Default::default()
    });
    let (length, received, error) = raw_get(&emu, &token, &path).await;
    assert_eq!(length, full);
    assert!(received < length);
    assert_eq!(error, Some(std::io::ErrorKind::ConnectionReset));

    // Faults set through the control API; invalid rates are refused naming the field.
    let admin = client();
    let refused = admin
        .post(format!("{}faults", emu.admin_url()))
        .json(&serde_json::json!({"status_503": 1.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("status_503"));
    let set = admin
        .post(format!("{}faults", emu.admin_url()))
        .json(&serde_json::json!({"status_503": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(graph_get(&emu, &token, &path).await.status(), 503);
    emu.set_faults(FaultConfig::default());
    let response = graph_get(&emu, &token, &path).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), full);
    assert!(emu.stats().await.faults_total >= 3);
}

#[tokio::test]
async fn tls_serves_with_the_generated_ca() {
    let emu = start_with(EmulatorConfig {
        tls: true,
        ..config(61)
    })
    .await;
    let ca = emu.ca_pem().expect("a CA with tls");
    for url in [emu.login_url(), emu.graph_url(), emu.admin_url()] {
        assert_eq!(url.scheme(), "https");
    }
    let trusted = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let (id, secret, scope) = (emu.client_id(), emu.client_secret(), graph_scope(&emu));
    let body: Value = trusted
        .post(token_url(&emu, &emu.tenant_id()))
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
    let token = body["access_token"].as_str().unwrap();
    let users = trusted
        .get(format!("{}v1.0/users", emu.graph_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 200);
    let stats = trusted
        .get(format!("{}stats", emu.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 200);
    // Without the CA the certificate is not trusted.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(
        untrusting
            .get(format!("{}v1.0/users", emu.graph_url()))
            .send()
            .await
            .is_err()
    );
    // Plain http on an https listener fails too.
    let plain = format!("{}v1.0/users", emu.graph_url()).replacen("https://", "http://", 1);
    assert!(
        !client()
            .get(plain)
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    );
}

#[tokio::test]
async fn ten_thousand_requests_in_ten_minutes_then_429_until_the_window_moves() {
    // 500 batches of 20 inner requests: each inner request counts against the mailbox on its own.
    let emu = start_with(EmulatorConfig {
        mail_latency: Duration::ZERO,
        ..config(81)
    })
    .await;
    let token = token(&emu).await;
    let upn = first_mailbox(&emu);
    let client = client();
    let batch_url = format!("{}v1.0/$batch", emu.graph_url());
    let batch = serde_json::json!({
        "requests": (0..20).map(|i| serde_json::json!({
            "id": i.to_string(), "method": "GET", "url": format!("/users/{upn}/mailFolders/inbox")
        })).collect::<Vec<_>>()
    });
    let send = || {
        client
            .post(&batch_url)
            .bearer_auth(&token)
            .json(&batch)
            .send()
    };
    for round in 0..500 {
        let body: Value = send().await.unwrap().json().await.unwrap();
        let statuses: Vec<u64> = body["responses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "round {round}: {statuses:?}"
        );
    }
    let body: Value = send().await.unwrap().json().await.unwrap();
    for inner in body["responses"].as_array().unwrap() {
        assert_eq!(inner["status"], 429, "{inner}");
        let retry_after: u64 = match &inner["headers"]["Retry-After"] {
            Value::String(s) => s.parse().unwrap(),
            Value::Number(n) => n.as_u64().unwrap(),
            other => match &inner["headers"]["retry-after"] {
                Value::String(s) => s.parse().unwrap(),
                _ => panic!("no Retry-After: {other} in {inner}"),
            },
        };
        // The window frees when the first requests are ten minutes old.
        assert!(
            (500..=600).contains(&retry_after),
            "Retry-After {retry_after}"
        );
    }
    let direct = graph_get(&emu, &token, &format!("v1.0/users/{upn}/mailFolders/inbox")).await;
    assert_eq!(direct.status(), 429);
    assert!(direct.headers().contains_key("retry-after"));
    let stats = emu.stats().await.per_mailbox[&upn];
    assert_eq!(stats.requests, 10_021);
    assert_eq!(stats.throttled, 21);
    // Another mailbox is not affected.
    let other = emu
        .users()
        .into_iter()
        .find(|u| u.has_mailbox && !u.access_denied && u.upn != upn)
        .unwrap()
        .upn;
    assert_eq!(
        graph_get(
            &emu,
            &token,
            &format!("v1.0/users/{other}/mailFolders/inbox")
        )
        .await
        .status(),
        200
    );
}

#[tokio::test]
async fn four_workers_that_read_whole_responses_are_never_throttled() {
    // A client that keeps at most 4 requests in flight, as Outlook asks, is never refused: a slot
    // is free again by the time the client has read its response.
    let emu = start_with(config(91)).await;
    let token = token(&emu).await;
    let upn = first_mailbox(&emu);
    let ids = emu.message_ids(&upn);
    let client = client();
    let workers = (0..4).map(|w| {
        let (client, token, upn, ids, base) = (
            client.clone(),
            token.clone(),
            upn.clone(),
            ids.clone(),
            emu.graph_url(),
        );
        async move {
            let mut statuses = Vec::new();
            for i in 0..30 {
                let id = &ids[(w * 7 + i) % ids.len()];
                let url = format!("{base}v1.0/users/{upn}/messages/{id}/$value");
                let response = client.get(url).bearer_auth(&token).send().await.unwrap();
                statuses.push(response.status().as_u16());
                response.bytes().await.unwrap();
            }
            statuses
        }
    });
    let statuses: Vec<u16> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let stats = emu.stats().await.per_mailbox[&upn];
    assert_eq!(stats.throttled, 0);
    assert!(stats.max_concurrency <= 4);
}
