//! The web pages and the API over real HTTP against a real service and the
//! emulated tenant: sign-in (local and Entra), sessions, CSRF, rate limiting,
//! every role boundary and guessable id, downloads, export and restore.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use archiver_service::audit_log::{ListQuery, Outcome};
use archiver_service::{ApiScope, Principal, Role, SearchRequest};
use support::{Browser, Site};

/// One message id in `user`'s archive (the newest).
fn some_id(site: &Site, user: &str) -> String {
    site.service
        .search(
            &Principal::LocalAdministrator,
            &SearchRequest {
                text: String::new(),
                user: Some(user.into()),
                from_date: None,
                to_date: None,
                limit: 1,
            },
        )
        .unwrap()
        .first()
        .expect("the archive holds mail")
        .id
        .0
        .clone()
}

fn denials(site: &Site) -> usize {
    site.service
        .audit_events(
            &Principal::LocalAdministrator,
            &ListQuery {
                since: None,
                limit: None,
            },
        )
        .unwrap()
        .iter()
        .filter(|e| matches!(e.outcome, Outcome::Denied { .. }))
        .count()
}

async fn status(browser: &mut Browser, url: &str) -> u16 {
    browser.get(url).await.status().as_u16()
}

#[tokio::test]
async fn a_user_reaches_no_other_archive_by_any_id_query_or_url() {
    let site = support::site().await;
    let (a, b) = (site.users[0].0.clone(), site.users[1].0.clone());
    let theirs = some_id(&site, &b);
    let mine = some_id(&site, &a);
    let mut browser = Browser::new();
    browser.sign_in_local(&site, &a).await;

    // Their own archive works.
    let page: serde_json::Value = browser
        .get(&site.url("/api/v1/search?limit=500"))
        .await
        .json()
        .await
        .unwrap();
    let hits = page["hits"].as_array().unwrap();
    assert!(!hits.is_empty());
    for hit in hits {
        assert_eq!(hit["user"], a.as_str(), "{hit}");
        for key in ["id", "user", "folder", "date", "from", "subject"] {
            assert!(hit.get(key).is_some(), "{key} in {hit}");
        }
    }
    assert_eq!(
        status(&mut browser, &site.url(&format!("/api/v1/messages/{mine}"))).await,
        200
    );

    let before = denials(&site);
    let unknown = "0".repeat(64);
    for path in [
        format!("/api/v1/messages/{theirs}"),
        format!("/api/v1/messages/{theirs}/raw"),
        format!("/api/v1/messages/{theirs}/attachments/0"),
        format!("/api/v1/messages/{unknown}"),
        format!("/api/v1/messages/{}", theirs.to_uppercase()),
        format!("/api/v1/search?user={b}"),
        format!("/api/v1/folders?user={b}"),
        format!("/messages/{theirs}"),
        format!("/messages/{theirs}/body"),
        format!("/messages/{theirs}/inline/0"),
        format!("/folders?user={b}"),
        format!("/?q=x&user={b}"),
    ] {
        let response = browser.get(&site.url(&path)).await;
        let code = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(code, 403, "{path}: {body}");
        assert!(
            !body.contains(&theirs) || path.to_lowercase().contains(&theirs),
            "{path} names a message it was not asked about"
        );
    }
    let csrf = {
        let page = browser.get(&site.url("/")).await.text().await.unwrap();
        Browser::csrf_of(&page)
    };
    for (path, body) in [
        (
            "/api/v1/export",
            serde_json::json!({"user": b, "format": "mbox"}),
        ),
        ("/api/v1/restore", serde_json::json!({"ids": [theirs]})),
    ] {
        let response = browser
            .http
            .post(site.url(path))
            .header("cookie", browser.cookie.clone().unwrap())
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path}");
    }
    let after = denials(&site);
    assert!(
        after >= before + 12,
        "every refusal is recorded: {before} -> {after}"
    );
}

#[tokio::test]
async fn an_admin_without_an_unblock_sees_no_content_and_with_one_does() {
    let site = support::site().await;
    let admin = Principal::LocalAdministrator;
    site.service
        .add_user(&admin, "ops", &["ops@example.org".into()])
        .unwrap();
    site.service
        .set_local_password(&admin, "ops", support::LOCAL_PASSWORD)
        .unwrap();
    site.service
        .grant_access(
            &admin,
            "ops",
            Role::Admin,
            archiver_service::Reach::All,
            None,
        )
        .unwrap();
    let victim = site.users[0].0.clone();
    let id = some_id(&site, &victim);
    let mut browser = Browser::new();
    browser.sign_in_local(&site, "ops").await;
    assert_eq!(
        status(&mut browser, &site.url(&format!("/api/v1/messages/{id}"))).await,
        403
    );
    assert_eq!(
        status(
            &mut browser,
            &site.url(&format!("/api/v1/search?user={victim}"))
        )
        .await,
        403
    );
    let page: serde_json::Value = browser
        .get(&site.url("/api/v1/search"))
        .await
        .json()
        .await
        .unwrap_or_default();
    assert!(
        page["hits"].as_array().is_none_or(|h| h.is_empty()),
        "{page}"
    );
    site.service
        .unblock_content(
            &admin,
            "ops",
            "case 42: court order",
            chrono::Utc::now() + chrono::Duration::hours(1),
        )
        .unwrap();
    assert_eq!(
        status(&mut browser, &site.url(&format!("/api/v1/messages/{id}"))).await,
        200
    );
}

#[tokio::test]
async fn forms_and_cookie_writes_need_the_csrf_token() {
    let site = support::site().await;
    let user = site.users[0].0.clone();
    let mut browser = Browser::new();
    browser.get(&site.url("/signin")).await;
    let response = browser
        .post_form(
            &site.url("/auth/local"),
            &[("username", &user), ("password", support::LOCAL_PASSWORD)],
        )
        .await;
    assert_eq!(response.status(), 403, "sign-in without the form's token");
    let response = browser
        .post_form(
            &site.url("/auth/local"),
            &[
                ("username", &user),
                ("password", support::LOCAL_PASSWORD),
                ("csrf", "forged"),
            ],
        )
        .await;
    assert_eq!(response.status(), 403);

    browser.sign_in_local(&site, &user).await;
    let response = browser
        .http
        .post(site.url("/api/v1/export"))
        .header("cookie", browser.cookie.clone().unwrap())
        .json(&serde_json::json!({"user": user, "format": "mbox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        403,
        "a cookie write without X-CSRF-Token"
    );
    for path in ["/export", "/restore", "/auth/signout", "/holds"] {
        let response = browser
            .post_form(
                &site.url(path),
                &[
                    ("format", "mbox"),
                    ("id", "x"),
                    ("name", "n"),
                    ("reason", "r"),
                ],
            )
            .await;
        assert_eq!(response.status(), 403, "{path}");
    }
    // Still signed in: the refused sign-out did nothing.
    assert_eq!(status(&mut browser, &site.url("/api/v1/search")).await, 200);
}

#[tokio::test]
async fn sign_in_rotates_the_session_and_never_redirects_off_site() {
    let site = support::site().await;
    let user = site.users[0].0.clone();
    let mut browser = Browser::new();
    let page = browser
        .get(&site.url("/signin"))
        .await
        .text()
        .await
        .unwrap();
    let before = browser.cookie.clone().expect("an anonymous session");
    let csrf = Browser::csrf_of(&page);
    let response = browser
        .post_form(
            &site.url("/auth/local"),
            &[
                ("username", &user),
                ("password", support::LOCAL_PASSWORD),
                ("csrf", &csrf),
                ("return_to", "//evil.example/x"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/");
    let after = browser.cookie.clone().unwrap();
    assert_ne!(before, after, "a new session id at sign-in");
    // The id known before sign-in (a planted one) is not signed in.
    let mut planted = Browser::new();
    planted.cookie = Some(before);
    assert_eq!(status(&mut planted, &site.url("/api/v1/search")).await, 401);
    let response = planted.get(&site.url("/")).await;
    assert_eq!(response.status(), 303);
    assert!(
        response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/signin")
    );
    // Signing out ends the session.
    let page = browser.get(&site.url("/")).await.text().await.unwrap();
    let csrf = Browser::csrf_of(&page);
    let old = browser.cookie.clone().unwrap();
    let response = browser
        .post_form(&site.url("/auth/signout"), &[("csrf", &csrf)])
        .await;
    assert_eq!(response.status(), 303);
    let mut replay = Browser::new();
    replay.cookie = Some(old);
    assert_eq!(status(&mut replay, &site.url("/api/v1/search")).await, 401);
}

#[tokio::test]
async fn failed_sign_ins_are_rate_limited() {
    let site = support::site().await;
    let user = site.users[0].0.clone();
    let mut browser = Browser::new();
    let attempt = async |browser: &mut Browser, password: &str| {
        let page = browser
            .get(&site.url("/signin"))
            .await
            .text()
            .await
            .unwrap();
        let csrf = Browser::csrf_of(&page);
        browser
            .post_form(
                &site.url("/auth/local"),
                &[("username", &user), ("password", password), ("csrf", &csrf)],
            )
            .await
    };
    for _ in 0..5 {
        assert_eq!(attempt(&mut browser, "wrong password!").await.status(), 401);
    }
    let response = attempt(&mut browser, support::LOCAL_PASSWORD).await;
    assert_eq!(
        response.status(),
        429,
        "the right password is not even tried"
    );
    assert!(response.headers().contains_key("retry-after"));
}

/// The query parameters of a Location URL.
fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Signs `upn` in through the emulator's Entra page; answers the callback URL.
async fn entra_callback(site: &Site, browser: &mut Browser, upn: &str, password: &str) -> String {
    let response = browser
        .get(&site.url("/auth/signin?return_to=/folders"))
        .await;
    assert_eq!(response.status(), 303);
    let authorize = response.headers()["location"].to_str().unwrap().to_string();
    assert!(
        authorize.starts_with(site.emulator.login_url().as_str()),
        "{authorize}"
    );
    let params = query_of(&authorize);
    assert_eq!(params["code_challenge_method"], "S256");
    assert!(params.contains_key("nonce") && params.contains_key("state"));
    let idp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = idp
        .get(&authorize)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let action = {
        let at = page.find("action=\"").unwrap() + 8;
        page[at..at + page[at..].find('"').unwrap()].replace("&amp;", "&")
    };
    let ctx = {
        let at = page.find("name=\"ctx\" value=\"").unwrap() + 18;
        page[at..at + page[at..].find('"').unwrap()].to_string()
    };
    let action = url::Url::parse(&authorize).unwrap().join(&action).unwrap();
    let response = idp
        .post(action)
        .form(&[
            ("ctx", ctx.as_str()),
            ("username", upn),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        302,
        "{}",
        response.text().await.unwrap_or_default()
    );
    response.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn entra_sign_in_matches_the_user_on_oid_and_its_answer_is_single_use() {
    let site = support::site().await;
    let (name, upn, _) = site.users[0].clone();
    let mut browser = Browser::new();
    let callback = entra_callback(&site, &mut browser, &upn, &site.password).await;
    assert!(
        callback.starts_with(&site.url("/auth/callback")),
        "{callback}"
    );
    let anonymous = browser.cookie.clone();
    let response = browser.get(&callback).await;
    assert_eq!(
        response.status(),
        303,
        "{}",
        response.text().await.unwrap_or_default()
    );
    assert_eq!(response.headers()["location"], "/folders");
    assert_ne!(browser.cookie, anonymous, "a new session id");
    let page: serde_json::Value = browser
        .get(&site.url("/api/v1/search"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        page["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["user"] == name.as_str())
    );

    // The same answer again, and from another browser: refused.
    assert_eq!(Browser::new().get(&callback).await.status(), 403);
    assert_eq!(browser.get(&callback).await.status(), 403);

    // An answer begun in one browser and finished in another is refused.
    let mut first = Browser::new();
    let callback = entra_callback(&site, &mut first, &upn, &site.password).await;
    let mut other = Browser::new();
    other.get(&site.url("/signin")).await;
    let response = other.get(&callback).await;
    assert_eq!(response.status(), 403);
    assert_eq!(status(&mut other, &site.url("/api/v1/search")).await, 401);

    // A forged state is refused.
    let mut forged = Browser::new();
    forged.get(&site.url("/signin")).await;
    let response = forged
        .get(&site.url("/auth/callback?code=abc&state=forged"))
        .await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn api_tokens_do_what_their_scopes_allow() {
    let site = support::site().await;
    let user = site.users[0].0.clone();
    let principal = site
        .service
        .principal_for(&user, chrono::Utc::now())
        .unwrap();
    let (_, secret) = site
        .service
        .create_api_token(&principal, "script", vec![ApiScope::Read], None)
        .unwrap();
    use archiver_service::secrecy::ExposeSecret;
    let bearer = format!("Bearer {}", secret.expose_secret());
    let http = reqwest::Client::new();
    let response = http
        .get(site.url("/api/v1/search"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = http
        .post(site.url("/api/v1/export"))
        .header("authorization", &bearer)
        .json(&serde_json::json!({"user": user, "format": "mbox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "no export scope");
    let response = http
        .get(site.url("/api/v1/search"))
        .header("authorization", "Bearer m365a_forged")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn downloads_exports_and_restore_move_the_archived_bytes() {
    let site = support::site().await;
    let (user, upn, _) = site.users[0].clone();
    let raw = b"From: Ann <ann@example.org>\r\nTo: x@example.org\r\nSubject: Quarterly contract\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/html\r\n\r\n<p>See <script>window.__pwned=1</script><img src=\"https://tracker.example/p.gif\">the contract</p>\r\n--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"../../contract\r\n.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--B--\r\n";
    let id = site.archive_eml(&user, raw);
    let mut browser = Browser::new();
    browser.sign_in_local(&site, &user).await;

    let response = browser
        .get(&site.url(&format!("/api/v1/messages/{id}/raw")))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.bytes().await.unwrap().as_ref(), raw);

    let response = browser
        .get(&site.url(&format!("/api/v1/messages/{id}/attachments/0")))
        .await;
    assert_eq!(response.status(), 200);
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment;") && !disposition.contains('/'),
        "{disposition}"
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"%PDF-1.4\n");
    assert_eq!(
        status(
            &mut browser,
            &site.url(&format!("/api/v1/messages/{id}/attachments/9"))
        )
        .await,
        404
    );

    let response = browser
        .get(&site.url(&format!("/messages/{id}/body")))
        .await;
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'none'"),
        "{csp}"
    );
    let body = response.text().await.unwrap();
    assert!(
        !body.contains("<script")
            && !body.contains("tracker.example")
            && body.contains("the contract"),
        "{body}"
    );
    let page = browser
        .get(&site.url(&format!("/messages/{id}")))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Quarterly contract") && page.contains("/api/v1/messages/"),
        "{page}"
    );

    let csrf = Browser::csrf_of(&page);
    let export = |format: &'static str| {
        browser
            .http
            .post(site.url("/api/v1/export"))
            .header("cookie", browser.cookie.clone().unwrap())
            .header("x-csrf-token", csrf.clone())
            .json(&serde_json::json!({"user": user, "query": "contract", "format": format}))
            .send()
    };
    let mbox = export("mbox").await.unwrap().bytes().await.unwrap();
    assert!(mbox.starts_with(b"From "), "an mbox");
    assert!(mbox.windows(18).any(|w| w == b"Quarterly contract"));
    let zip = export("eml-zip").await.unwrap().bytes().await.unwrap();
    assert!(zip.starts_with(b"PK"), "a zip");

    let before = site.emulator.message_count(&upn);
    let response = browser
        .http
        .post(site.url("/api/v1/restore"))
        .header("cookie", browser.cookie.clone().unwrap())
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"ids": [id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["restored"], 1, "{answer}");
    assert_eq!(site.emulator.message_count(&upn), before + 1);
}

#[tokio::test]
async fn pages_carry_their_security_headers_and_the_api_describes_itself() {
    let site = support::site().await;
    let mut browser = Browser::new();
    let response = browser.get(&site.url("/signin")).await;
    for (name, needle) in [
        ("content-security-policy", "frame-ancestors 'none'"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        let value = response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(value.contains(needle), "{name}: {value}");
    }
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let doc: serde_json::Value = browser
        .get(&site.url("/api/v1/openapi.json"))
        .await
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/search",
        "/api/v1/messages/{id}/raw",
        "/api/v1/export",
        "/api/v1/restore",
        "/api/v1/holds",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
    assert_eq!(status(&mut browser, &site.url("/api/v1/search")).await, 401);
}

#[tokio::test]
async fn inline_images_load_from_the_sandboxed_frame_through_signed_links_only() {
    let site = support::site().await;
    let user = site.users[0].0.clone();
    let raw = b"From: a@example.org\r\nSubject: Logo inside\r\nMIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=R\r\n\r\n--R\r\nContent-Type: text/html\r\n\r\n<p>logo <img src=\"cid:logo@x\"></p>\r\n--R\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline; filename=\"logo.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--R--\r\n";
    let id = site.archive_eml(&user, raw);
    let mut browser = Browser::new();
    browser.sign_in_local(&site, &user).await;
    let body = browser
        .get(&site.url(&format!("/messages/{id}/body")))
        .await
        .text()
        .await
        .unwrap();
    let at = body
        .find(&format!("/messages/{id}/inline/0?"))
        .expect("a signed image link");
    let link = body[at..at + body[at..].find('"').unwrap()].replace("&amp;", "&");
    // The frame's requests carry no cookie: the signature alone lets the image through.
    let anonymous = reqwest::Client::new();
    let response = anonymous.get(site.url(&link)).send().await.unwrap();
    assert_eq!(response.status(), 200, "{link}");
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        b"\x89PNG\r\n\x1a\n"
    );
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for forged in [
        link.replace("/inline/0?", "/inline/1?"),
        link.replace(&format!("u={user}"), &format!("u={}", site.users[1].0)),
        {
            let last = if link.ends_with('0') { '1' } else { '0' };
            format!("{}{last}", &link[..link.len() - 1])
        },
        format!("/messages/{id}/inline/0"),
    ] {
        let response = no_redirects.get(site.url(&forged)).send().await.unwrap();
        assert_ne!(response.status(), 200, "{forged}");
    }
}
