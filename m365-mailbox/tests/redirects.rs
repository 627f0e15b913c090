//! Archive mailboxes are read through Graph beta, and an auto-expanded archive answers
//! `308 Permanent Redirect` with the `Location` to ask instead: the Graph source follows
//! it, and sends the bearer token only to the Graph origin. Two bare HTTP servers on
//! loopback play Graph (`127.0.0.1`) and a foreign host (`localhost`, another port) and
//! record what reached them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use m365_auth::{AccessToken, StaticTokenProvider};
use m365_mailbox::{GraphMailboxOptions, GraphMailboxSource, MailboxSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

/// What one server saw: (request target, the Authorization header if any).
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// An answer: status, extra headers, JSON body.
type Answer = (u16, Vec<(String, String)>, String);

/// Serves every connection with `answer(target)`, one request per connection.
async fn serve(answer: impl Fn(&str) -> Answer + Send + Sync + 'static) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let record = record.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let target = text
                    .lines()
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .unwrap_or_default()
                    .to_owned();
                let auth = text.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("authorization")
                        .then(|| v.trim().to_owned())
                });
                record.lock().unwrap().push((target.clone(), auth));
                let (status, headers, body) = answer(&target);
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                let _ = socket.write_all(out.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (port, seen)
}

fn source(port: u16) -> GraphMailboxSource {
    let tokens = Arc::new(StaticTokenProvider::new(AccessToken::new(
        "secret-token",
        SystemTime::now() + Duration::from_secs(3600),
    )));
    let mut options = GraphMailboxOptions::default();
    options.retry.max_attempts = 1;
    options.retry.base_delay = Duration::from_millis(1);
    let root = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    GraphMailboxSource::new(tokens, root, options).unwrap()
}

const FOLDERS: &str = r#"{"value":[{"id":"AAMk-inbox","displayName":"Inbox","childFolderCount":0,"totalItemCount":3}]}"#;

fn redirect(to: String) -> Answer {
    (308, vec![("Location".into(), to)], String::new())
}

#[tokio::test]
async fn a_redirect_on_the_graph_host_is_followed_with_the_token() {
    let (port, seen) = serve(|target| {
        if target.contains("MBX:main") {
            redirect(target.replace("MBX:main", "MBX:aux"))
        } else {
            (200, vec![], FOLDERS.to_owned())
        }
    })
    .await;
    let folders = source(port).folders("MBX:main@t").await.unwrap();
    assert_eq!(folders.len(), 1);
    assert_eq!(folders[0].path, "Inbox");
    assert_eq!(folders[0].well_known_name, None, "archives are read by ids");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[0].0.starts_with("/beta/users/MBX:main@t/mailFolders"),
        "{seen:?}"
    );
    assert!(
        seen[1].0.starts_with("/beta/users/MBX:aux@t/mailFolders"),
        "{seen:?}"
    );
    for (target, auth) in &seen {
        assert_eq!(auth.as_deref(), Some("Bearer secret-token"), "{target}");
    }
}

#[tokio::test]
async fn a_redirect_to_a_foreign_host_gets_no_token() {
    let (foreign, foreign_seen) = serve(|_| (200, vec![], FOLDERS.to_owned())).await;
    let (port, seen) =
        serve(move |target| redirect(format!("http://localhost:{foreign}{target}"))).await;
    let folders = source(port).folders("MBX:main@t").await.unwrap();
    assert_eq!(folders.len(), 1);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].1.as_deref(), Some("Bearer secret-token"));
    let foreign_seen = foreign_seen.lock().unwrap().clone();
    assert_eq!(foreign_seen.len(), 1, "the redirect was followed");
    assert_eq!(foreign_seen[0].1, None, "no token for a foreign host");
}

#[tokio::test]
async fn the_archive_is_found_through_beta_exchange_settings() {
    let (port, seen) = serve(|target| {
        if target.contains("has-archive") {
            (
                200,
                vec![],
                r#"{"primaryMailboxId":"MBX:p@t","inPlaceArchiveMailboxId":"MBX:a@t"}"#.to_owned(),
            )
        } else {
            (200, vec![], r#"{"primaryMailboxId":"MBX:p@t"}"#.to_owned())
        }
    })
    .await;
    let s = source(port);
    assert_eq!(
        s.archive_mailbox("has-archive@contoso.com").await.unwrap(),
        Some("MBX:a@t".to_owned())
    );
    assert_eq!(s.archive_mailbox("none@contoso.com").await.unwrap(), None);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[0].0,
        "/beta/users/has-archive@contoso.com/settings/exchange"
    );
    assert!(s.recoverable_folders("MBX:a@t").await.unwrap().is_empty());
}

#[tokio::test]
async fn endless_redirects_end_in_an_error() {
    let (port, _) = serve(|target| redirect(target.to_owned())).await;
    let err = source(port).folders("MBX:main@t").await.unwrap_err();
    assert!(err.to_string().contains("redirect"), "{err}");
}
