//! Figures of the web layer (ignored: a measurement, run in release with
//! `cargo test --release -p archive-web --test web_figures -- --ignored --nocapture`;
//! `WEB_FIGURES_MESSAGES` sets the archive size, 100,000 by default): search
//! latency through `/api/v1/search` (p50, p99), the render time of the search page
//! and of a message page, and the peak memory of the process serving them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use archive_store::{ArchiveRequest, ArchiveStore, DiskArchiveStore, RawMessage, StoreOptions};
use archiver_service::{Principal, Service, ServiceOptions};

const WORDS: &[&str] = &[
    "budget",
    "contract",
    "review",
    "invoice",
    "meeting",
    "quarterly",
    "roadmap",
    "release",
    "hiring",
    "audit",
    "travel",
    "security",
    "customer",
    "renewal",
    "forecast",
    "design",
];

fn message(i: usize) -> Vec<u8> {
    let w = |k: usize| WORDS[(i / k + k) % WORDS.len()];
    format!(
        "From: Sender {s} <sender{s}@example{d}.org>\r\nTo: ann@example.org\r\nSubject: {} {} {i}\r\nDate: Mon, {day} Jan 2024 10:00:00 +0000\r\nMessage-ID: <{i}@bench>\r\n\r\nHello, the {} {} notes for item {i}.\r\n",
        w(1),
        w(3),
        w(5),
        w(7),
        s = i % 97,
        d = i % 13,
        day = 1 + i % 28,
    )
    .into_bytes()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
async fn search_latency_page_render_and_memory() {
    let n: usize = std::env::var("WEB_FIGURES_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let started = Instant::now();
    {
        let store = DiskArchiveStore::open(data.join("archive"), StoreOptions::default()).unwrap();
        for i in 0..n {
            let request = ArchiveRequest {
                user: "ann".into(),
                folder: ["Inbox", "Sent Items", "Projects"][i % 3].into(),
                source: None,
                received: None,
            };
            store
                .archive(&request, RawMessage::Bytes(&message(i)))
                .unwrap();
        }
    }
    let ingest = started.elapsed();
    let service = Service::new(&data, ServiceOptions::default());
    let admin = Principal::LocalAdministrator;
    service
        .add_user(&admin, "ann", &["ann@example.org".into()])
        .unwrap();
    let ann = service.principal_for("ann", chrono::Utc::now()).unwrap();
    let (_, secret) = service
        .create_api_token(&ann, "bench", vec![archiver_service::ApiScope::Read], None)
        .unwrap();
    use archiver_service::secrecy::ExposeSecret;
    let bearer = format!("Bearer {}", secret.expose_secret());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let config = archive_web::WebConfig::new(
        format!("{base}/").parse().unwrap(),
        dir.path().join("exports"),
    );
    let state = archive_web::WebState::new(service.clone(), config);
    tokio::spawn(archive_web::serve(
        listener,
        archive_web::router(state),
        None,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let mut search = Vec::new();
    let mut first_id = String::new();
    for q in 0..200 {
        let query = format!(
            "{} {}",
            WORDS[q % WORDS.len()],
            WORDS[(q * 7 + 3) % WORDS.len()]
        );
        let t = Instant::now();
        let response = http
            .get(format!("{base}/api/v1/search"))
            .query(&[("q", query.as_str()), ("limit", "50")])
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let page: serde_json::Value = response.json().await.unwrap();
        search.push(t.elapsed());
        if first_id.is_empty()
            && let Some(id) = page["hits"][0]["id"].as_str()
        {
            first_id = id.to_string();
        }
    }
    let mut pages = Vec::new();
    let mut messages = Vec::new();
    for q in 0..50 {
        let t = Instant::now();
        let response = http
            .get(format!("{base}/"))
            .query(&[("q", WORDS[q % WORDS.len()])])
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
        pages.push(t.elapsed());
        let t = Instant::now();
        let response = http
            .get(format!("{base}/messages/{first_id}"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
        messages.push(t.elapsed());
    }
    for v in [&mut search, &mut pages, &mut messages] {
        v.sort();
    }
    println!(
        "{}",
        serde_json::json!({
            "messages": n,
            "ingest_secs": ingest.as_secs_f64(),
            "api_search_p50_ms": percentile(&search, 0.5),
            "api_search_p99_ms": percentile(&search, 0.99),
            "search_page_p50_ms": percentile(&pages, 0.5),
            "search_page_p99_ms": percentile(&pages, 0.99),
            "message_page_p50_ms": percentile(&messages, 0.5),
            "message_page_p99_ms": percentile(&messages, 0.99),
            "peak_rss_mb": peak_rss_mb(),
        })
    );
}
