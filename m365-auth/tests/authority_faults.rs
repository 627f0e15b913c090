//! The provider against a scripted token endpoint (a tiny axum server on 127.0.0.1):
//! retries with backoff on 5xx/429/network errors but never on a refusal, timeouts,
//! unreachable authorities, the explicit proxy, and arbitrary answers (proptest).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use m365_auth::{
    AppRegistration, AuthError, ClientCredential, ClientCredentialsProvider, Cloud,
    ProviderOptions, TokenProvider,
};
use proptest::prelude::*;
use secrecy::SecretString;

const TENANT: &str = "contoso.onmicrosoft.com";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const GRANT: &str = r#"{"token_type":"Bearer","expires_in":3599,"access_token":"tok.en.value"}"#;

#[derive(Clone)]
struct Reply {
    status: u16,
    body: Vec<u8>,
    delay: Duration,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        body: body.as_bytes().to_vec(),
        delay: Duration::ZERO,
    }
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    /// Served once the script is exhausted.
    fallback: Mutex<Option<Reply>>,
    requests: AtomicU64,
    last_form: Mutex<String>,
}

async fn token(State(script): State<Arc<Script>>, body: Bytes) -> Response {
    script.requests.fetch_add(1, Ordering::SeqCst);
    *script.last_form.lock().unwrap() = String::from_utf8_lossy(&body).into_owned();
    let next = script.replies.lock().unwrap().pop_front();
    let reply = next
        .or_else(|| script.fallback.lock().unwrap().clone())
        .unwrap_or_else(|| reply(500, "script exhausted"));
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    (
        StatusCode::from_u16(reply.status).unwrap(),
        [("content-type", "application/json")],
        reply.body,
    )
        .into_response()
}

async fn authority(replies: Vec<Reply>) -> (SocketAddr, Arc<Script>) {
    let script = Arc::new(Script {
        replies: Mutex::new(replies.into()),
        ..Default::default()
    });
    let app = axum::Router::new()
        .route("/{tenant}/oauth2/v2.0/token", axum::routing::post(token))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, script)
}

fn options() -> ProviderOptions {
    ProviderOptions {
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_attempts: 3,
        ..Default::default()
    }
}

fn provider_at(login: &str, options: ProviderOptions) -> ClientCredentialsProvider {
    let cloud = Cloud::custom(login, "http://127.0.0.1:9/").unwrap();
    let registration = AppRegistration::new(
        TENANT,
        CLIENT_ID,
        ClientCredential::secret("the-client-secret"),
        cloud,
    )
    .unwrap();
    ClientCredentialsProvider::new(registration, options).unwrap()
}

fn provider(addr: SocketAddr, options: ProviderOptions) -> ClientCredentialsProvider {
    provider_at(&format!("http://{addr}"), options)
}

#[tokio::test]
async fn server_errors_are_retried_until_a_token_comes() {
    let (addr, script) = authority(vec![
        reply(503, ""),
        reply(500, "<html>oops</html>"),
        reply(200, GRANT),
    ])
    .await;
    let p = provider(addr, options());
    let token = p.token().await.unwrap();
    assert_eq!(token.secret(), "tok.en.value");
    assert_eq!(script.requests.load(Ordering::SeqCst), 3);
    // The form is the client-credentials grant.
    let form = script.last_form.lock().unwrap().clone();
    for field in [
        "grant_type=client_credentials",
        "client_id=11111111-2222-3333-4444-555555555555",
        "client_secret=the-client-secret",
        "scope=http%3A%2F%2F127.0.0.1%3A9%2F.default",
    ] {
        assert!(form.contains(field), "{field} missing in {form}");
    }
}

#[tokio::test]
async fn throttling_is_retried() {
    let (addr, script) = authority(vec![reply(429, "{}"), reply(200, GRANT)]).await;
    provider(addr, options()).token().await.unwrap();
    assert_eq!(script.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn persistent_outage_gives_service_unavailable_after_max_attempts() {
    let (addr, script) = authority(vec![]).await;
    *script.fallback.lock().unwrap() = Some(reply(503, ""));
    let err = provider(addr, options()).token().await.unwrap_err();
    match &err {
        AuthError::ServiceUnavailable {
            status, attempts, ..
        } => {
            assert_eq!(*status, 503);
            assert_eq!(*attempts, 3);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_transient());
    assert_eq!(script.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_refused_credential_is_never_retried() {
    let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#;
    let (addr, script) = authority(vec![reply(401, body), reply(200, GRANT)]).await;
    let err = provider(addr, options()).token().await.unwrap_err();
    assert!(
        matches!(err, AuthError::InvalidClientSecret { .. }),
        "{err:?}"
    );
    assert_eq!(script.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unknown_aadsts_codes_keep_their_code_and_advice() {
    let body = r#"{"error":"invalid_request","error_description":"AADSTS53003: Access has been blocked by Conditional Access policies.","error_codes":[53003]}"#;
    let (addr, _) = authority(vec![reply(400, body)]).await;
    let err = provider(addr, options()).token().await.unwrap_err();
    assert_eq!(err.aadsts_code(), Some("AADSTS53003"));
    assert!(err.to_string().contains("Conditional Access"), "{err}");
}

#[tokio::test]
async fn malformed_success_is_an_error_without_retry() {
    let (addr, script) = authority(vec![reply(200, "{\"access_token\":"), reply(200, GRANT)]).await;
    let err = provider(addr, options()).token().await.unwrap_err();
    assert!(
        matches!(err, AuthError::MalformedResponse { status: 200, .. }),
        "{err:?}"
    );
    assert_eq!(script.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn slow_authority_times_out_per_request() {
    let slow = Reply {
        delay: Duration::from_secs(5),
        ..reply(200, GRANT)
    };
    let (addr, script) = authority(vec![slow.clone(), slow]).await;
    let err = provider(
        addr,
        ProviderOptions {
            request_timeout: Duration::from_millis(150),
            max_attempts: 2,
            ..options()
        },
    )
    .token()
    .await
    .unwrap_err();
    assert!(matches!(err, AuthError::Timeout { .. }), "{err:?}");
    assert_eq!(script.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let p = provider(addr, options());
    let err = p.token().await.unwrap_err();
    assert!(matches!(err, AuthError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(p.token_requests(), 3);
}

#[tokio::test]
async fn explicit_proxy_carries_the_token_request() {
    // The scripted server doubles as an HTTP proxy: absolute-form requests reach its routes.
    let (addr, script) = authority(vec![reply(200, GRANT)]).await;
    let p = provider_at(
        "http://login.unresolvable.invalid",
        ProviderOptions {
            proxy: Some(SecretString::from(format!("http://user:pw@{addr}"))),
            ..options()
        },
    );
    assert!(!format!("{p:?}").contains("pw@"));
    p.token().await.unwrap();
    assert_eq!(script.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn invalid_proxy_and_ca_bundle_are_refused_by_name() {
    let cloud = Cloud::Global;
    let registration = || {
        AppRegistration::new(
            TENANT,
            CLIENT_ID,
            ClientCredential::secret("s"),
            cloud.clone(),
        )
        .unwrap()
    };
    let err = ClientCredentialsProvider::new(
        registration(),
        ProviderOptions {
            proxy: Some(SecretString::from("::not a url with secret::")),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::InvalidOption {
                option: "proxy",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("secret::"));
    let err = ClientCredentialsProvider::new(
        registration(),
        ProviderOptions {
            extra_ca_pem: Some("not a pem".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::InvalidOption {
                option: "CA bundle",
                ..
            }
        ),
        "{err:?}"
    );
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        Just(GRANT.as_bytes()[..GRANT.len() / 2].to_vec()),
        (any::<i64>(), ".*").prop_map(|(n, t)| format!(
            r#"{{"access_token":{},"expires_in":{n}}}"#,
            serde_json::Value::String(t)
        )
        .into_bytes()),
        (any::<f64>(), any::<bool>()).prop_map(|(f, b)| format!(
            r#"{{"access_token":{b},"expires_in":{f},"error_codes":[{f}]}}"#
        )
        .into_bytes()),
        ".*".prop_map(|s| format!(
            r#"{{"error":{},"error_codes":["x"]}}"#,
            serde_json::Value::String(s)
        )
        .into_bytes()),
        (1usize..300_000).prop_map(|n| format!(
            r#"{{"access_token":"{}","expires_in":99}}"#,
            "a".repeat(n)
        )
        .into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Over real HTTP, whatever the endpoint answers, the provider returns (never panics)
    /// and agrees with the parser on whether it is a token.
    #[test]
    fn arbitrary_answers_over_http_never_panic(
        status in prop_oneof![Just(200u16), Just(400), Just(401), Just(404), Just(502)],
        body in body_strategy(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (addr, script) = authority(vec![Reply { status, body: body.clone(), delay: Duration::ZERO }]).await;
            let result = provider(addr, ProviderOptions { max_attempts: 1, ..options() }).token().await;
            let parsed = m365_auth::wire::parse_token_response(status, &body);
            prop_assert_eq!(result.is_ok(), parsed.is_ok());
            prop_assert_eq!(script.requests.load(Ordering::SeqCst), 1);
            Ok(())
        })?;
    }
}
