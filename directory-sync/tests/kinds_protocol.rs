//! Mailbox kinds through `$batch`, against a scripted Graph served over real HTTP on
//! 127.0.0.1: batches of at most twenty, every `userPurpose` mapped, inner throttling
//! asked again after its `Retry-After`, and refusals (403, inner or outer) reported
//! as a warning naming MailboxSettings.Read instead of failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use directory_sync::{
    DirectorySource, GraphDirectoryOptions, GraphDirectorySource, MailboxKind, RetryPolicy,
};
use m365_auth::{AccessToken, StaticTokenProvider};
use serde_json::{Value, json};
use url::Url;

/// What the scripted Graph answers to one inner request: the batch round (0-based) and
/// the object id of its URL give `(status, headers, body)`.
type Inner = Arc<dyn Fn(usize, &str) -> (u16, Value, Value) + Send + Sync>;

#[derive(Clone)]
struct Fake {
    /// The inner URLs of each `$batch` received.
    batches: Arc<Mutex<Vec<Vec<String>>>>,
    inner: Inner,
    /// Answer every `$batch` with this status instead.
    outer: Option<u16>,
}

async fn batch(State(fake): State<Fake>, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap();
    let requests = request["requests"].as_array().unwrap().clone();
    let round = {
        let mut batches = fake.batches.lock().unwrap();
        batches.push(
            requests
                .iter()
                .map(|r| r["url"].as_str().unwrap().to_owned())
                .collect(),
        );
        batches.len() - 1
    };
    if let Some(status) = fake.outer {
        let body = json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}});
        return (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    let responses: Vec<Value> = requests
        .iter()
        .map(|r| {
            assert_eq!(r["method"], "GET");
            let url = r["url"].as_str().unwrap();
            let id = url
                .strip_prefix("/users/")
                .and_then(|rest| rest.strip_suffix("/mailboxSettings"))
                .unwrap_or_else(|| panic!("unexpected inner URL {url}"));
            let (status, headers, body) = (fake.inner)(round, id);
            json!({"id": r["id"], "status": status, "headers": headers, "body": body})
        })
        .collect();
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({ "responses": responses }).to_string(),
    )
        .into_response()
}

/// Serves the script; returns the source and the log of batches.
async fn serve(inner: Inner, outer: Option<u16>) -> (GraphDirectorySource, Fake) {
    let fake = Fake {
        batches: Arc::default(),
        inner,
        outer,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let root = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let app = Router::new()
        .route("/v1.0/$batch", post(batch))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let tokens = Arc::new(StaticTokenProvider::new(AccessToken::new(
        "t",
        SystemTime::now() + Duration::from_secs(3600),
    )));
    let options = GraphDirectoryOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(2),
        },
        ..Default::default()
    };
    (
        GraphDirectorySource::new(tokens, root, options).unwrap(),
        fake,
    )
}

fn settings(purpose: &str) -> (u16, Value, Value) {
    (
        200,
        json!({"content-type": "application/json"}),
        json!({"@odata.context": "…/mailboxSettings", "userPurpose": purpose, "timeZone": "UTC"}),
    )
}

fn refused(status: u16, code: &str) -> (u16, Value, Value) {
    (
        status,
        json!({}),
        json!({"error": {"code": code, "message": "refused"}}),
    )
}

/// The purpose each scripted object has: `u7-shared` is shared, and so on.
fn purpose_of(id: &str) -> &str {
    id.split_once('-').map_or("user", |(_, p)| p)
}

fn ids(n: usize) -> Vec<String> {
    let purposes = [
        "user",
        "linked",
        "shared",
        "room",
        "equipment",
        "others",
        "unknown",
    ];
    (0..n)
        .map(|i| format!("u{i}-{}", purposes[i % purposes.len()]))
        .collect()
}

#[tokio::test]
async fn kinds_come_in_batches_of_twenty_with_every_purpose_mapped() {
    let (source, fake) = serve(Arc::new(|_, id| settings(purpose_of(id))), None).await;
    let ids = ids(45);
    let lookup = source.mailbox_kinds(&ids).await.unwrap();
    assert!(lookup.warnings.is_empty(), "{:?}", lookup.warnings);
    let expected: BTreeMap<String, MailboxKind> = ids
        .iter()
        .map(|id| {
            let kind = match purpose_of(id) {
                "shared" => MailboxKind::Shared,
                "room" => MailboxKind::Room,
                "equipment" => MailboxKind::Equipment,
                _ => MailboxKind::User,
            };
            (id.clone(), kind)
        })
        .collect();
    assert_eq!(lookup.kinds, expected);
    let sizes: Vec<usize> = fake.batches.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![20, 20, 5]);
    assert_eq!(source.stats().mailbox_settings_reads, 45);
    assert_eq!(source.stats().requests, 3);
}

#[tokio::test]
async fn throttled_inner_requests_are_asked_again() {
    // The first round throttles every other object (Retry-After 0) and fails one with 503.
    let (source, fake) = serve(
        Arc::new(|round, id| {
            let n: usize = id[1..].split('-').next().unwrap().parse().unwrap();
            match (round, n % 2, n) {
                (0, _, 3) => refused(503, "serviceNotAvailable"),
                (0, 0, _) => (
                    429,
                    json!({"Retry-After": "0"}),
                    json!({"error": {"code": "ApplicationThrottled", "message": "MailboxConcurrency"}}),
                ),
                _ => settings(purpose_of(id)),
            }
        }),
        None,
    )
    .await;
    let ids = ids(6);
    let lookup = source.mailbox_kinds(&ids).await.unwrap();
    assert!(lookup.warnings.is_empty(), "{:?}", lookup.warnings);
    assert_eq!(lookup.kinds.len(), 6);
    let batches = fake.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 2);
    assert_eq!(
        batches[1],
        ["u0-user", "u2-shared", "u3-room", "u4-equipment"]
            .map(|id| format!("/users/{id}/mailboxSettings"))
    );
    let stats = source.stats();
    assert_eq!(stats.throttled, 3);
    assert_eq!(stats.retries, 1);
}

#[tokio::test]
async fn refusals_leave_objects_unclassified_with_the_permission_named() {
    // An inner 403 (one mailbox out of scope) and an inner 404 (no mailbox).
    let (source, _) = serve(
        Arc::new(|_, id| match id {
            "u1-linked" => refused(403, "ErrorAccessDenied"),
            "u2-shared" => refused(404, "MailboxNotEnabledForRESTAPI"),
            _ => settings(purpose_of(id)),
        }),
        None,
    )
    .await;
    let lookup = source.mailbox_kinds(&ids(4)).await.unwrap();
    assert_eq!(
        lookup.kinds,
        BTreeMap::from([
            ("u0-user".to_string(), MailboxKind::User),
            ("u2-shared".to_string(), MailboxKind::User),
            ("u3-room".to_string(), MailboxKind::Room),
        ])
    );
    assert_eq!(lookup.warnings.len(), 1, "{:?}", lookup.warnings);
    assert!(
        lookup.warnings[0].contains("MailboxSettings.Read")
            && lookup.warnings[0].contains("ErrorAccessDenied"),
        "{:?}",
        lookup.warnings
    );

    // The whole batch refused: no error, nothing classified, one warning, no second batch.
    let (source, fake) = serve(Arc::new(|_, id| settings(purpose_of(id))), Some(403)).await;
    let lookup = source.mailbox_kinds(&ids(30)).await.unwrap();
    assert!(lookup.kinds.is_empty());
    assert_eq!(lookup.warnings.len(), 1);
    assert!(
        lookup.warnings[0].contains("MailboxSettings.Read"),
        "{:?}",
        lookup.warnings
    );
    assert_eq!(fake.batches.lock().unwrap().len(), 1);
}
