//! The archive's pages in a real browser: headless Chromium driven over
//! WebDriver (chromedriver on 127.0.0.1) against the whole site — Entra
//! sign-in on the emulator's page, search, reading, an attachment download,
//! an mbox export, a restore and sign-out — and a hostile message whose
//! scripts must never run. Each step leaves a screenshot in
//! `target/browser-screenshots/`.
//!
//! The chromedriver binary is `$CHROMEDRIVER`, else `chromedriver` on `PATH`;
//! a machine without it fails these tests (CI installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use support::Site;

/// How long any one wait in the browser may take before the test fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause between two looks at a condition being waited for.
const POLL: Duration = Duration::from_millis(100);

/// A chromedriver child process, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The chromedriver binary: `$CHROMEDRIVER`, or `chromedriver` on `PATH`.
fn chromedriver_path() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMEDRIVER") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromedriver"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "chromedriver not found: set CHROMEDRIVER or put chromedriver on PATH \
             (Debian: apt-get install -y chromium chromium-driver)"
        )
    })
}

/// The Chromium binary, when one is on `PATH` under a usual name
/// (chromedriver's own search misses Debian's `/usr/bin/chromium` on some builds).
fn chromium_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROME") {
        return Some(PathBuf::from(path));
    }
    let paths = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
}

/// Starts chromedriver on a free loopback port and waits until its `/status`
/// says it is ready (bounded: it fails the test if that never happens).
async fn start_driver() -> Driver {
    let binary = chromedriver_path();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let child = Command::new(&binary)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let mut driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        if let Some(status) = driver.child.try_wait().unwrap() {
            panic!("{} exited before it was ready: {status}", binary.display());
        }
        let ready = match http.get(format!("{}/status", driver.url)).send().await {
            Ok(response) => response
                .json::<Value>()
                .await
                .is_ok_and(|v| v["value"]["ready"] == json!(true)),
            Err(_) => false,
        };
        if ready {
            return driver;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver on port {port} never answered ready on /status"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Chromium's DevTools command through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

/// A headless Chromium session saving downloads into `downloads`.
async fn browser(driver: &Driver, downloads: &Path) -> Client {
    let mut options = json!({
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,1024",
        ],
        "prefs": {
            "download.default_directory": downloads.to_str().unwrap(),
            "download.prompt_for_download": false,
            "download.directory_upgrade": true,
            "safebrowsing.enabled": false,
        },
    });
    if let Some(chromium) = chromium_path() {
        options["binary"] = json!(chromium.to_str().unwrap());
    }
    let mut caps = Capabilities::new();
    caps.insert("goog:chromeOptions".into(), options);
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("no browser session from chromedriver: {e}"));
    // Headless Chromium may ignore the download preference; the DevTools
    // command makes downloads land in the directory without a prompt.
    client
        .issue_cmd(Cdp {
            cmd: "Browser.setDownloadBehavior",
            params: json!({
                "behavior": "allow",
                "downloadPath": downloads.to_str().unwrap(),
                "eventsEnabled": false,
            }),
        })
        .await
        .unwrap();
    client
}

/// Numbered screenshots of the steps, in `target/browser-screenshots/`.
struct Shots {
    dir: PathBuf,
    n: u32,
}

impl Shots {
    fn new(prefix: &str) -> Self {
        // `CARGO_TARGET_TMPDIR` is `target/tmp`: its parent is the target directory.
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = tmp
            .parent()
            .unwrap_or(tmp)
            .join("browser-screenshots")
            .join(prefix);
        std::fs::create_dir_all(&dir).unwrap();
        Shots { dir, n: 0 }
    }

    async fn take(&mut self, client: &Client, step: &str) {
        self.n += 1;
        let png = client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(self.dir.join(format!("{:02}-{step}.png", self.n)), png).unwrap();
    }
}

/// Waits (bounded) for an element.
async fn wait_for(client: &Client, locator: Locator<'_>) -> fantoccini::elements::Element {
    let what = format!("{locator:?}");
    match client
        .wait()
        .at_most(STEP_TIMEOUT)
        .every(POLL)
        .for_element(locator)
        .await
    {
        Ok(element) => element,
        Err(e) => {
            let url = client.current_url().await.map(|u| u.to_string());
            let source = client.source().await.unwrap_or_default();
            panic!("no {what} on {url:?}: {e}\n{source}");
        }
    }
}

/// The path of the page the browser is on.
async fn path_of(client: &Client) -> String {
    client.current_url().await.unwrap().path().to_string()
}

/// Waits (bounded) for a finished download in `dir` other than `seen`; answers its path.
async fn wait_for_download(dir: &Path, seen: &[PathBuf]) -> PathBuf {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let finished: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                !seen.contains(path) && !name.ends_with(".crdownload") && !name.starts_with('.')
            })
            .collect();
        if let Some(path) = finished.into_iter().next() {
            return path;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no download appeared in {}",
            dir.display()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The browser's cookies for the site, as one `Cookie` header.
async fn cookie_header(client: &Client) -> String {
    client
        .get_all_cookies()
        .await
        .unwrap()
        .iter()
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The test message with an attachment: a unique word in its subject and body.
fn message_with_attachment(word: &str, attachment: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(attachment);
    format!(
        "From: Ann Example <ann@example.org>\r\nTo: someone@example.org\r\n\
         Subject: Budget {word} review\r\nDate: Tue, 01 Dec 2026 09:00:00 +0000\r\n\
         Message-ID: <{word}@example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"SEP\"\r\n\r\n\
         --SEP\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         The {word} figures are attached.\r\n\
         --SEP\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"figures.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--SEP--\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_with_microsoft_searches_reads_downloads_exports_restores_and_signs_out() {
    let site: Site = support::site().await;
    let (user, upn, _) = site.users[0].clone();
    let word = "zephyrquokka";
    let attachment: Vec<u8> = (0u8..=255).cycle().take(3000).collect();
    let id = site.archive_eml(&user, &message_with_attachment(word, &attachment));

    let driver = start_driver().await;
    let downloads = tempfile::tempdir().unwrap();
    let client = browser(&driver, downloads.path()).await;
    let mut shots = Shots::new("journey");

    // Not signed in: the archive sends the browser to its sign-in page.
    client.goto(&site.base).await.unwrap();
    let entra = wait_for(&client, Locator::LinkText("Sign in with Microsoft")).await;
    assert_eq!(path_of(&client).await, "/signin");
    shots.take(&client, "signin").await;

    // Microsoft's (the emulator's) sign-in page.
    entra.click().await.unwrap();
    let username = wait_for(&client, Locator::Css("input[name=username]")).await;
    let at = client.current_url().await.unwrap();
    assert!(
        !at.as_str().starts_with(&site.base),
        "the sign-in left the archive for the identity provider: {at}"
    );
    assert!(
        client
            .find(Locator::Css("input[type=hidden][name=ctx]"))
            .await
            .is_ok()
    );
    username.send_keys(&upn).await.unwrap();
    client
        .find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(&site.password)
        .await
        .unwrap();
    shots.take(&client, "entra-signin").await;
    client
        .find(Locator::Id("idSIButton9"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Back on the archive, signed in: the search page with a sign-out form.
    let query = wait_for(&client, Locator::Css("form.search-form input[name=q]")).await;
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .starts_with(&site.base)
    );
    assert_eq!(path_of(&client).await, "/");
    assert!(client.find(Locator::Css("form.signout")).await.is_ok());
    shots.take(&client, "signed-in").await;

    // Search for the word in the user's mail.
    query.send_keys(word).await.unwrap();
    client
        .find(Locator::Css("form.search-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let hit = wait_for(&client, Locator::Css("table.hits td.subject a")).await;
    assert!(hit.text().await.unwrap().contains(word));
    shots.take(&client, "results").await;
    let results_url = client.current_url().await.unwrap();

    // Read it.
    hit.click().await.unwrap();
    let link = wait_for(&client, Locator::Css("section.attachments a")).await;
    let message_url = client.current_url().await.unwrap();
    assert_eq!(message_url.path(), format!("/messages/{id}"));
    let heading = client
        .find(Locator::Css("article.message h1"))
        .await
        .unwrap();
    assert!(heading.text().await.unwrap().contains(word));
    shots.take(&client, "message").await;

    // Download the attachment: the file holds the attachment's bytes, as the API gives them.
    let href = link
        .attr("href")
        .await
        .unwrap()
        .expect("the link has a target");
    assert_eq!(href, format!("/api/v1/messages/{id}/attachments/0"));
    link.click().await.unwrap();
    let downloaded = wait_for_download(downloads.path(), &[]).await;
    let bytes = std::fs::read(&downloaded).unwrap();
    assert_eq!(
        bytes,
        attachment,
        "{} is the attachment",
        downloaded.display()
    );
    let through_api = reqwest::Client::new()
        .get(site.url(&href))
        .header("cookie", cookie_header(&client).await)
        .send()
        .await
        .unwrap();
    assert_eq!(through_api.status(), 200);
    assert_eq!(
        through_api.bytes().await.unwrap().as_ref(),
        bytes.as_slice()
    );
    shots.take(&client, "downloaded").await;

    // Export the search as mbox.
    client.goto(results_url.as_str()).await.unwrap();
    let format = wait_for(&client, Locator::Css("form.export select[name=format]")).await;
    format.select_by_value("mbox").await.unwrap();
    shots.take(&client, "export").await;
    client
        .find(Locator::Css("form.export button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mbox_path = wait_for_download(downloads.path(), std::slice::from_ref(&downloaded)).await;
    let mbox = std::fs::read(&mbox_path).unwrap();
    assert!(
        mbox.starts_with(b"From "),
        "{} is an mbox",
        mbox_path.display()
    );
    assert!(
        mbox.windows(word.len()).any(|w| w == word.as_bytes()),
        "the mbox holds the found message"
    );

    // Restore it into the user's mailbox.
    client.goto(message_url.as_str()).await.unwrap();
    let restore = wait_for(&client, Locator::Css("form.restore button[type=submit]")).await;
    let before = site.emulator.message_count(&upn);
    restore.click().await.unwrap();
    let result = wait_for(&client, Locator::Css("p.restore-result")).await;
    let text = result.text().await.unwrap();
    assert!(text.starts_with("Restored 1 message(s)"), "{text}");
    assert!(text.contains("0 failed"), "{text}");
    assert_eq!(site.emulator.message_count(&upn), before + 1, "{text}");
    shots.take(&client, "restored").await;

    // Sign out: back on the sign-in page, and the archive asks for sign-in again.
    client
        .find(Locator::Css("form.signout button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&client, Locator::LinkText("Sign in with Microsoft")).await;
    assert_eq!(path_of(&client).await, "/signin");
    shots.take(&client, "signed-out").await;
    client.goto(&site.base).await.unwrap();
    wait_for(&client, Locator::LinkText("Sign in with Microsoft")).await;
    assert_eq!(path_of(&client).await, "/signin");
    assert!(client.find(Locator::Css("form.signout")).await.is_err());
    shots.take(&client, "still-signed-out").await;

    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_message_renders_without_running_any_of_its_script() {
    let site: Site = support::site().await;
    let (user, _, _) = site.users[0].clone();
    let raw = b"From: Mallory <mallory@example.org>\r\nTo: victim@example.org\r\n\
Subject: Invoice hostilepayload\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\
Message-ID: <hostilepayload@example.org>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n\
<html><head><script>window.__pwned=1;alert('script')</script></head>\
<body onload=\"window.__pwned=1;alert('onload')\"><p>Please pay hostilepayload.</p>\
<script>window.__pwned=1</script>\
<img src=x onerror=\"window.__pwned=1;alert('onerror')\">\
<a id=\"js\" href=\"javascript:window.__pwned=1;alert('link')\">pay now</a>\
<svg><script>window.__pwned=1</script></svg>\
<iframe src=\"javascript:parent.__pwned=1\"></iframe>\
</body></html>\r\n";
    let id = site.archive_eml(&user, raw);

    let driver = start_driver().await;
    let downloads = tempfile::tempdir().unwrap();
    let client = browser(&driver, downloads.path()).await;
    let mut shots = Shots::new("hostile");

    // Sign in with the local account: this test is about the message page.
    client.goto(&site.url("/signin")).await.unwrap();
    let form = client
        .form(Locator::Css("form[action='/auth/local']"))
        .await
        .unwrap();
    form.set_by_name("username", &user)
        .await
        .unwrap()
        .set_by_name("password", support::LOCAL_PASSWORD)
        .await
        .unwrap();
    form.submit_with(Locator::Css("button[type=submit]"))
        .await
        .unwrap();
    wait_for(&client, Locator::Css("form.signout")).await;

    client
        .goto(&site.url(&format!("/messages/{id}")))
        .await
        .unwrap();
    let frame = wait_for(&client, Locator::Css("iframe.message-body")).await;
    // The frame's document is loaded once its body text is there.
    frame.enter_frame().await.unwrap();
    let body = wait_for(&client, Locator::Css("body")).await;
    assert!(
        body.text()
            .await
            .unwrap()
            .contains("Please pay hostilepayload"),
        "the message body rendered"
    );
    // A click on the link must run nothing either.
    if let Ok(link) = client.find(Locator::LinkText("pay now")).await {
        let _ = link.click().await;
    }
    let in_frame = client
        .execute("return typeof window.__pwned", vec![])
        .await
        .unwrap();
    assert_eq!(
        in_frame,
        json!("undefined"),
        "no script ran in the message frame"
    );
    client.enter_parent_frame().await.unwrap();
    shots.take(&client, "message").await;

    assert!(
        client.get_alert_text().await.is_err(),
        "no alert was opened by the message"
    );
    let in_page = client
        .execute("return typeof window.__pwned", vec![])
        .await
        .unwrap();
    assert_eq!(in_page, json!("undefined"), "no script ran in the page");
    assert_eq!(path_of(&client).await, format!("/messages/{id}"));

    client.close().await.unwrap();
}
