//! The Graph client's handling of answers the emulator does not produce on demand
//! (429 with `Retry-After`, persistent 5xx, 401 twice, 403, garbled pages, foreign
//! links, delta pages with repeats and removals, group restriction), against small
//! scripted Graph endpoints served over real HTTP on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use directory_sync::{
    DirectoryError, DirectorySource, DirectoryToken, GraphDirectoryOptions, GraphDirectorySource,
    RetryPolicy,
};
use m365_auth::{AccessToken, AuthError, TokenProvider};
use serde_json::{Value, json};
use url::Url;

/// Tokens `tok-0`, `tok-1`, ...: a new one after each invalidation.
#[derive(Default)]
struct CountingTokens {
    generation: AtomicU64,
    invalidations: AtomicU64,
}

#[async_trait]
impl TokenProvider for CountingTokens {
    async fn token(&self) -> Result<AccessToken, AuthError> {
        let g = self.generation.load(Ordering::SeqCst);
        Ok(AccessToken::new(
            format!("tok-{g}"),
            SystemTime::now() + Duration::from_secs(3600),
        ))
    }

    fn invalidate(&self, rejected: &AccessToken) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        let g = self.generation.load(Ordering::SeqCst);
        if rejected.secret() == format!("tok-{g}") {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// One request the fake Graph saw.
#[derive(Debug, Clone)]
struct Seen {
    uri: String,
    authorization: String,
}

/// What a scripted endpoint answers to the n-th request (0-based) it sees.
type Script = Arc<dyn Fn(usize, &Seen, &str) -> Response + Send + Sync>;

#[derive(Clone)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Script,
    base: Arc<Mutex<String>>,
}

async fn answer(
    State(fake): State<Fake>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let seen = Seen {
        uri: uri.to_string(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    };
    let n = {
        let mut log = fake.seen.lock().unwrap();
        log.push(seen.clone());
        log.len() - 1
    };
    let base = fake.base.lock().unwrap().clone();
    (fake.script)(n, &seen, &base)
}

/// Serves `script` on every path; returns the Graph root and the request log.
async fn serve(script: Script) -> (Url, Arc<Mutex<Vec<Seen>>>) {
    let fake = Fake {
        seen: Arc::default(),
        script,
        base: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let root = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    *fake.base.lock().unwrap() = format!("{root}v1.0");
    let seen = fake.seen.clone();
    let app = Router::new().fallback(get(answer)).with_state(fake);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (root, seen)
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        json!({"error": {"code": code, "message": message,
            "innerError": {"date": "2025-01-01T00:00:00", "request-id": "rid-42", "client-request-id": "rid-42"}}}),
    )
}

fn user(id: &str, mail: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.user", "id": id, "userPrincipalName": mail, "mail": mail,
           "displayName": id, "accountEnabled": true, "proxyAddresses": [format!("SMTP:{mail}")],
           "userType": "Member"})
}

fn last_page(base: &str, users: Vec<Value>) -> Response {
    json_response(
        StatusCode::OK,
        json!({"value": users, "@odata.deltaLink": format!("{base}/users/delta?$deltatoken=next")}),
    )
}

fn retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(5),
    }
}

fn source_with(
    root: &Url,
    tokens: Arc<CountingTokens>,
    options: GraphDirectoryOptions,
) -> GraphDirectorySource {
    GraphDirectorySource::new(tokens, root.clone(), options).unwrap()
}

fn fresh_source(root: &Url, max_attempts: u32) -> (GraphDirectorySource, Arc<CountingTokens>) {
    let tokens = Arc::new(CountingTokens::default());
    let options = GraphDirectoryOptions {
        retry: retries(max_attempts),
        ..Default::default()
    };
    (source_with(root, tokens.clone(), options), tokens)
}

fn count(seen: &Arc<Mutex<Vec<Seen>>>) -> usize {
    seen.lock().unwrap().len()
}

#[tokio::test]
async fn the_first_request_selects_the_user_properties() {
    let (root, seen) = serve(Arc::new(|_, _, base| {
        last_page(base, vec![user("a", "a@x.com")])
    }))
    .await;
    let (source, _) = fresh_source(&root, 3);
    let changes = source.changes(None).await.unwrap();
    assert!(changes.full);
    assert_eq!(changes.users.len(), 1);
    let first = seen.lock().unwrap()[0].clone();
    let url = Url::parse(&format!("http://h{}", first.uri)).unwrap();
    assert!(
        url.path().starts_with("/v1.0/users/delta"),
        "{}",
        url.path()
    );
    let select: String = url
        .query_pairs()
        .find(|(k, _)| k == "$select")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert_eq!(
        select,
        "id,userPrincipalName,mail,displayName,accountEnabled,proxyAddresses,userType"
    );
    assert_eq!(first.authorization, "Bearer tok-0");
    assert_eq!(
        changes.next.0,
        format!("{root}v1.0/users/delta?$deltatoken=next")
    );
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after() {
    let (root, seen) = serve(Arc::new(|n, _, base| {
        if n == 0 {
            let mut r = graph_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests",
            );
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
            r
        } else {
            last_page(base, vec![user("a", "a@x.com")])
        }
    }))
    .await;
    let (source, _) = fresh_source(&root, 3);
    let started = Instant::now();
    let changes = source.changes(None).await.unwrap();
    assert_eq!(changes.users.len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After honoured"
    );
    assert_eq!(count(&seen), 2);
    let stats = source.stats();
    assert_eq!((stats.throttled, stats.retries, stats.requests), (1, 1, 2));
}

#[tokio::test]
async fn server_errors_exhaust_retries_into_an_actionable_error() {
    let (root, seen) = serve(Arc::new(|_, _, _| {
        graph_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            "Service unavailable",
        )
    }))
    .await;
    let (source, _) = fresh_source(&root, 3);
    let err = source.changes(None).await.unwrap_err();
    assert_eq!(count(&seen), 3, "three attempts");
    assert!(err.is_transient());
    match &err {
        DirectoryError::Graph {
            status,
            code,
            request_id,
            request,
            ..
        } => {
            assert_eq!((*status, code.as_str()), (503, "serviceNotAvailable"));
            assert_eq!(request_id.as_deref(), Some("rid-42"));
            assert!(request.contains("/users/delta"), "{request}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("try again later"), "{err}");
}

#[tokio::test]
async fn a_401_refreshes_the_token_once() {
    let (root, seen) = serve(Arc::new(|_, s: &Seen, base| {
        if s.authorization == "Bearer tok-0" {
            graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token has expired.",
            )
        } else {
            last_page(base, vec![])
        }
    }))
    .await;
    let (source, tokens) = fresh_source(&root, 3);
    source.changes(None).await.unwrap();
    assert_eq!(count(&seen), 2);
    assert_eq!(tokens.invalidations.load(Ordering::SeqCst), 1);
    assert_eq!(source.stats().token_refreshes, 1);

    // Refused again with the fresh token: an error after exactly one refresh.
    let (root, seen) = serve(Arc::new(|_, _, _| {
        graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token validation failure.",
        )
    }))
    .await;
    let (source, tokens) = fresh_source(&root, 3);
    let err = source.changes(None).await.unwrap_err();
    assert_eq!(count(&seen), 2);
    assert_eq!(tokens.invalidations.load(Ordering::SeqCst), 1);
    assert!(
        matches!(err, DirectoryError::Graph { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("credential"), "{err}");
}

#[tokio::test]
async fn permission_errors_name_the_permission_and_are_not_retried() {
    let (root, seen) = serve(Arc::new(|_, _, _| {
        graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }))
    .await;
    let (source, _) = fresh_source(&root, 5);
    let err = source.changes(None).await.unwrap_err();
    assert_eq!(count(&seen), 1);
    assert!(!err.is_transient());
    let text = err.to_string();
    for needle in [
        "403",
        "Authorization_RequestDenied",
        "User.Read.All",
        "Insufficient privileges",
    ] {
        assert!(text.contains(needle), "{text} lacks {needle}");
    }
    assert!(!text.contains("tok-0"), "no token in errors");
}

#[tokio::test]
async fn a_garbled_page_is_retried() {
    let (root, seen) = serve(Arc::new(|n, _, base| {
        if n == 0 {
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                "{\"value\": [{\"id\"",
            )
                .into_response()
        } else {
            last_page(base, vec![user("a", "a@x.com")])
        }
    }))
    .await;
    let (source, _) = fresh_source(&root, 3);
    assert_eq!(source.changes(None).await.unwrap().users.len(), 1);
    assert_eq!(count(&seen), 2);
    assert_eq!(source.stats().retries, 1);
}

#[tokio::test]
async fn delta_pages_merge_repeats_and_removals() {
    let (root, seen) = serve(Arc::new(|_, s: &Seen, base| {
        let page = |v: Value, next: &str| {
            json_response(StatusCode::OK, {
                let mut body = json!({"value": v});
                body["@odata.nextLink"] = json!(format!("{base}/users/delta?$skiptoken={next}"));
                body
            })
        };
        if s.uri.contains("deltatoken=saved") {
            page(
                json!([user("a", "old@x.com"), {"id": "b", "@removed": {"reason": "deleted"}},
                        user("c", "c@x.com")]),
                "p2",
            )
        } else if s.uri.contains("skiptoken=p2") {
            page(json!([]), "p3") // an empty page in the middle of a round
        } else if s.uri.contains("skiptoken=p3") {
            json_response(
                StatusCode::OK,
                json!({
                "value": [user("a", "new@x.com"), {"id": "c", "@removed": {"reason": "changed"}},
                          {"@odata.type": "#microsoft.graph.user", "displayName": "no id"}],
                "@odata.deltaLink": format!("{base}/users/delta?$deltatoken=after")}),
            )
        } else {
            graph_error(StatusCode::BAD_REQUEST, "BadRequest", "unexpected")
        }
    }))
    .await;
    let (source, _) = fresh_source(&root, 3);
    let saved = DirectoryToken(format!("{root}v1.0/users/delta?$deltatoken=saved"));
    let changes = source.changes(Some(&saved)).await.unwrap();
    assert!(!changes.full);
    assert_eq!(changes.users.len(), 1);
    assert_eq!(
        changes.users[0].mail.as_deref(),
        Some("new@x.com"),
        "the last word wins"
    );
    assert_eq!(changes.removed, vec!["b".to_string(), "c".to_string()]);
    assert!(changes.next.0.ends_with("$deltatoken=after"));
    assert_eq!(count(&seen), 3);
    assert_eq!(source.stats().delta_reads, 1);
}

#[tokio::test]
async fn a_saved_link_refused_with_400_falls_back_to_a_full_listing() {
    let (root, seen) = serve(Arc::new(|_, s: &Seen, base| {
        if s.uri.contains("deltatoken=") {
            graph_error(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                "Badly formed token.",
            )
        } else {
            last_page(base, vec![user("a", "a@x.com")])
        }
    }))
    .await;
    let (source, _) = fresh_source(&root, 3);
    let saved = DirectoryToken(format!("{root}v1.0/users/delta?$deltatoken=expired"));
    let changes = source.changes(Some(&saved)).await.unwrap();
    assert!(changes.full);
    assert_eq!(changes.users.len(), 1);
    assert_eq!(count(&seen), 2);
    assert_eq!(source.stats().links_refused, 1);
}

#[tokio::test]
async fn links_to_another_host_never_get_the_token() {
    let (elsewhere, elsewhere_seen) = serve(Arc::new(|_, _, base| last_page(base, vec![]))).await;
    let target = elsewhere.clone();
    let (root, _) = serve(Arc::new(move |_, _, _| {
        json_response(
            StatusCode::OK,
            json!({"value": [],
            "@odata.nextLink": format!("{target}v1.0/users/delta?$skiptoken=x")}),
        )
    }))
    .await;
    let (source, _) = fresh_source(&root, 3);
    let err = source.changes(None).await.unwrap_err();
    assert!(
        matches!(err, DirectoryError::InvalidResponse { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("refusing to send the token"),
        "{err}"
    );
    // A saved token naming another host is not followed either: full listing here.
    let saved = DirectoryToken(format!("{elsewhere}v1.0/users/delta?$deltatoken=x"));
    let _ = source.changes(Some(&saved)).await;
    assert_eq!(count(&elsewhere_seen), 0);
}

#[tokio::test]
async fn a_round_without_a_delta_link_is_an_error() {
    let (root, _) = serve(Arc::new(|_, _, _| {
        json_response(StatusCode::OK, json!({"value": []}))
    }))
    .await;
    let (source, _) = fresh_source(&root, 3);
    let err = source.changes(None).await.unwrap_err();
    assert!(err.to_string().contains("without a deltaLink"), "{err}");
}

#[tokio::test]
async fn a_group_restriction_lists_its_transitive_user_members() {
    let (root, seen) = serve(Arc::new(|_, s: &Seen, base| {
        if s.uri.contains("/groups/g-1/transitiveMembers") && !s.uri.contains("skiptoken") {
            json_response(StatusCode::OK, json!({
                "value": [user("a", "a@x.com"),
                          {"@odata.type": "#microsoft.graph.group", "id": "nested", "displayName": "Nested"}],
                "@odata.nextLink": format!("{base}/groups/g-1/transitiveMembers?$skiptoken=2")}))
        } else if s.uri.contains("skiptoken=2") {
            json_response(StatusCode::OK, json!({
                "value": [user("b", "b@x.com"),
                          {"@odata.type": "#microsoft.graph.device", "id": "dev", "displayName": "PC"}]}))
        } else {
            graph_error(StatusCode::NOT_FOUND, "Request_ResourceNotFound", "no such group")
        }
    }))
    .await;
    let tokens = Arc::new(CountingTokens::default());
    let options = |group: &str| GraphDirectoryOptions {
        group_id: Some(group.into()),
        retry: retries(3),
        ..Default::default()
    };
    let source = source_with(&root, tokens.clone(), options("g-1"));
    let changes = source.changes(None).await.unwrap();
    assert!(changes.full);
    let ids: Vec<&str> = changes.users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "only users");
    // Transitive membership has no delta: the next read is a full listing again.
    let again = source.changes(Some(&changes.next)).await.unwrap();
    assert!(again.full);
    assert_eq!(count(&seen), 4);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|s| s.uri.contains("/groups/g-1/"))
    );

    let missing = source_with(&root, tokens, options("nope"));
    let err = missing.changes(None).await.unwrap_err();
    assert!(matches!(err, DirectoryError::GroupNotFound { .. }), "{err}");
}
