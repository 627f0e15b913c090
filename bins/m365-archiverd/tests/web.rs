//! `m365-archiverd --web`: the pages and API served beside the scheduler on
//! loopback, and plain HTTP refused on an address other hosts can reach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use m365_emulator::{Emulator, EmulatorConfig};
use support::{daemon, prepare};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_serves_the_archive_s_pages_on_loopback() {
    let emu = Emulator::start(EmulatorConfig {
        users: 2,
        messages_per_user: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let data = prepare(&emu, root.path(), 1);
    // A free port, released for the service to bind.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = daemon(&data)
        .args([
            "--web",
            &format!("127.0.0.1:{port}"),
            "--credentials",
            "contoso",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the service never listened:\n{}", seen.join("\n")));
        let ready = line.contains("web pages and API listening");
        seen.push(line);
        if ready {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.contains(&format!("http://127.0.0.1:{port}/auth/callback"))),
        "{seen:?}"
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let signin = http.get(format!("{base}/signin")).send().await.unwrap();
    assert_eq!(signin.status(), 200);
    assert!(
        signin.text().await.unwrap().contains("/auth/signin"),
        "Entra sign-in is offered"
    );
    let start = http
        .get(format!("{base}/auth/signin"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303);
    assert!(
        start.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(emu.login_url().as_str())
    );
    assert_eq!(
        http.get(format!("{base}/api/v1/search"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let status = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        child.wait().unwrap().success(),
        "SIGTERM stops the service cleanly"
    );
}

#[test]
fn plain_http_off_loopback_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let out = daemon(&data)
        .args(["--web", "0.0.0.0:0", "--credentials", "contoso", "--once"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing plain HTTP on 0.0.0.0:0"),
        "{stderr}"
    );
}
