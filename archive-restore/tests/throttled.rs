//! 1,000 messages restored under Outlook's limits, against the emulator over real HTTP:
//! never more than 4 requests in flight on the mailbox, the upload budget never exceeded
//! (the emulator never had to refuse an upload), and every 429 honoured (the refused
//! request was sent again no sooner than its `Retry-After`).
//!
//! The client reaches the emulator through a recording proxy in this process: it sees
//! each request arrive and its answer leave, and answers a few requests 429 itself
//! (Outlook's `ApplicationThrottled` with `Retry-After: 1`) without passing them on.
//! The emulator runs at `time_scale` 120 (the 5-minute upload window lasts 2.5 s) with
//! a budget of a few megabytes, so the budget binds within seconds.
//!
//! The ignored `restore_rate_against_the_upload_budget` measures how close a long
//! restore comes to the budget's ceiling (run it in release with `--ignored --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod harness;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use archive_restore::{RestoreOptions, RestoreReport, restore};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::Response;
use harness::{Corpus, Mail, Tenant};
use m365_emulator::Emulator;
use m365_mailbox::{GraphMailboxSource, MailboxWriter, UploadBudgets, WriteLimits};

/// The 5-minute upload window at this scale lasts 2.5 s.
const TIME_SCALE: f64 = 120.0;

/// A request arriving this soon after a 429 was answered may have been sent before the
/// client read the 429.
const ON_ITS_WAY: Duration = Duration::from_millis(400);

/// What the proxy saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    /// Method, path with query, and body, hashed: a repeat of the request has the same.
    fingerprint: u64,
    /// `METHOD /path` for messages.
    label: String,
    arrived: Instant,
    answered: Instant,
    status: u16,
    retry_after: Option<u64>,
    /// Answered 429 by the proxy itself.
    injected: bool,
}

/// Shared by the proxy's handlers.
struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    seen: Mutex<Vec<Seen>>,
    count: AtomicU64,
    /// Every `inject_every`-th request is answered 429 by the proxy (0: none).
    inject_every: u64,
}

/// A recording proxy in front of the emulator's Graph listener.
struct Proxy {
    url: String,
    state: Arc<ProxyState>,
}

const HOP_BY_HOP: [HeaderName; 4] = [
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

impl Proxy {
    async fn start(emu: &Emulator, inject_every: u64) -> Proxy {
        let upstream = emu.graph_url().as_str().trim_end_matches('/').to_string();
        let state = Arc::new(ProxyState {
            upstream,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            seen: Mutex::new(Vec::new()),
            count: AtomicU64::new(0),
            inject_every,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Proxy { url, state }
    }

    /// What it saw, in order of arrival.
    fn seen(&self) -> Vec<Seen> {
        let mut seen = self.state.seen.lock().unwrap().clone();
        seen.sort_by_key(|s| s.arrived);
        seen
    }
}

fn throttled() -> Response {
    let body = serde_json::json!({"error": {
        "code": "ApplicationThrottled",
        "message": "Application is over its MailboxConcurrency limit.",
    }});
    Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::RETRY_AFTER, "1")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// Passes a request on to the emulator (its `Host` kept, so the links the emulator
/// writes point back at the proxy), or answers 429 itself; records both.
async fn forward(State(proxy): State<Arc<ProxyState>>, request: Request) -> Response {
    let arrived = Instant::now();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut hasher = DefaultHasher::new();
    (parts.method.as_str(), &target, &body[..]).hash(&mut hasher);
    let n = proxy.count.fetch_add(1, Ordering::SeqCst) + 1;
    let injected = proxy.inject_every > 0 && n % proxy.inject_every == 0;
    let response = if injected {
        throttled()
    } else {
        let mut headers = parts.headers.clone();
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        let answer = proxy
            .client
            .request(parts.method.clone(), format!("{}{target}", proxy.upstream))
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap();
        let mut response = Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            if !HOP_BY_HOP.contains(name) {
                response = response.header(name, value);
            }
        }
        response
            .body(Body::from(answer.bytes().await.unwrap()))
            .unwrap()
    };
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    proxy.seen.lock().unwrap().push(Seen {
        fingerprint: hasher.finish(),
        label: format!("{} {}", parts.method, parts.uri.path()),
        arrived,
        answered: Instant::now(),
        status: response.status().as_u16(),
        retry_after,
        injected,
    });
    response
}

/// Each 429 the proxy saw and the first repeat of the refused request: (429, repeat).
fn repeats(seen: &[Seen]) -> Vec<(&Seen, Option<&Seen>)> {
    seen.iter()
        .enumerate()
        .filter(|(_, s)| s.status == 429)
        .map(|(i, s)| {
            let repeat = seen[i + 1..]
                .iter()
                .find(|t| t.fingerprint == s.fingerprint);
            (s, repeat)
        })
        .collect()
}

/// 1,000 messages: 600 plain, 300 with an 8–24 kB attachment, 95 with a 60–120 kB one
/// (all inside their create), 5 with a 3.5 MB one (an upload session).
fn mails(count: usize) -> Vec<Mail> {
    (0..count)
        .map(|n| {
            let folder = if n % 4 == 0 {
                "Inbox/Projects"
            } else {
                "Inbox"
            };
            let seed = n as u64 * 13 + 5;
            let size = match n % 10 {
                _ if n % 200 == 199 => 3_500_000,
                6..=8 => 8_000 + (n * 7919) % 16_000,
                9 => 60_000 + (n * 7919) % 60_000,
                _ => 0,
            };
            let attachments = if size == 0 {
                vec![]
            } else {
                vec![(format!("part-{n}.bin"), harness::blob(size, seed))]
            };
            Mail::new(n, folder, attachments)
        })
        .collect()
}

/// The Graph writer through `graph` with an upload budget of `budget` bytes per the
/// window of an emulator at `scale`, and budgets of its own.
fn writer(emu: &Emulator, graph: &str, budget: u64, scale: f64) -> GraphMailboxSource {
    let mut options = harness::options();
    options.write_limits = WriteLimits {
        upload_budget_bytes: budget,
        upload_budget_window: WriteLimits::GRAPH.upload_budget_window.div_f64(scale),
        ..WriteLimits::GRAPH
    };
    options.upload_budgets = Some(Arc::new(UploadBudgets::new()));
    Tenant::of(emu).graph(graph, options)
}

/// Restores the whole corpus into `mailbox`, sampling the emulator's upload window
/// meanwhile: the report, the time taken, the most bytes the window held.
async fn restore_sampled(
    emu: &Arc<Emulator>,
    graph: &GraphMailboxSource,
    mailbox: &str,
    corpus: &Corpus,
) -> (RestoreReport, Duration, u64) {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (emu, done, mailbox) = (emu.clone(), done.clone(), mailbox.to_string());
        tokio::spawn(async move {
            let mut peak = 0;
            while !done.load(Ordering::SeqCst) {
                peak = peak.max(emu.upload_bytes_in_window(&mailbox));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak
        })
    };
    let started = Instant::now();
    let report = restore(
        corpus.store(),
        graph,
        &harness::request(mailbox),
        RestoreOptions::default(),
        &|_| {},
    )
    .await
    .unwrap();
    let elapsed = started.elapsed();
    done.store(true, Ordering::SeqCst);
    (report, elapsed, sampler.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_keep_to_outlook_limits_and_honour_every_429() {
    let emu = Arc::new(harness::emulator(TIME_SCALE).await);
    let budget = 6 << 20;
    emu.set_upload_budget(budget);
    let mailbox = harness::target(&emu);
    let corpus = Corpus::archive(mails(1_000));
    let proxy = Proxy::start(&emu, 150).await;
    let graph = writer(&emu, &proxy.url, budget, TIME_SCALE);

    let (report, elapsed, peak) = restore_sampled(&emu, &graph, &mailbox, &corpus).await;
    let stats = emu.mailbox_stats(&mailbox).await;
    let seen = proxy.seen();
    let uploaded = graph.upload_budget(&mailbox).total();
    let waited = graph.upload_budget(&mailbox).waited();
    println!(
        "{} messages, {} archived bytes, {uploaded} bytes uploaded in {elapsed:?} \
         (budget {budget} per {:?}, peak window {peak}); emulator: {stats:?}; client: {:?}; \
         budget waits {waited:?}",
        report.restored,
        corpus.bytes(),
        WriteLimits::GRAPH.upload_budget_window.div_f64(TIME_SCALE),
        graph.write_metrics(&mailbox),
    );
    assert_eq!(
        (report.restored, report.failed),
        (1_000, 0),
        "{:?}",
        report.failures
    );
    harness::assert_exactly_once(&emu, &mailbox, &corpus);

    // Never more than 4 in flight on the mailbox, as the emulator counted them.
    assert!((1..=4).contains(&stats.max_concurrency), "{stats:?}");
    // The emulator never had to refuse: neither the concurrency, nor the request rate,
    // nor the upload budget was exceeded.
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert!(peak <= budget, "{peak} bytes in one window");
    // The budget did bind: the upload needed several windows and the client waited.
    assert!(uploaded > 3 * budget, "{uploaded}");
    assert!(waited > Duration::ZERO);

    // Every 429 (the proxy's own) was waited out before the request went again.
    let answered = repeats(&seen);
    assert!(answered.len() >= 5, "{} answers 429", answered.len());
    for (refused, repeat) in answered {
        let Some(repeat) = repeat else {
            panic!("{} answered 429 was never sent again", refused.label);
        };
        let wait = Duration::from_secs(refused.retry_after.unwrap_or_default());
        let after = repeat.arrived.duration_since(refused.answered);
        assert!(
            after >= wait,
            "{} sent again {after:?} after a 429 asking for {wait:?}",
            refused.label
        );
        assert!(refused.injected);
        // The whole mailbox waited: nothing arrived during the wait but what was on its
        // way when the 429 was answered.
        let during: Vec<(Duration, &str)> = seen
            .iter()
            .filter(|t| {
                t.arrived > refused.answered + ON_ITS_WAY && t.arrived < refused.answered + wait
            })
            .map(|t| (t.arrived.duration_since(refused.answered), t.label.as_str()))
            .collect();
        assert!(
            during.is_empty(),
            "sent during the wait of a 429 on {}: {during:?}",
            refused.label
        );
    }
}

/// Scale of the figure's run: the 5-minute window lasts 15 s, long enough for the
/// client's margin (a fiftieth of the window) to be what it is against Outlook.
const FIGURE_SCALE: f64 = 20.0;

/// The figure: a long restore's rate against the upload budget's ceiling (the budget per
/// window; a ratio of 1 uploads as fast as the budget allows, which against Outlook's
/// 150 MB per 5 minutes is 0.5 MB/s per mailbox), and the same corpus restored into the
/// second mailbox without a budget (what the client and the emulator manage here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
async fn restore_rate_against_the_upload_budget() {
    let emu = Arc::new(harness::emulator(FIGURE_SCALE).await);
    let budget: u64 = 30 << 20;
    emu.set_upload_budget(budget);
    let mailboxes = harness::targets(&emu);
    let corpus = Corpus::archive(mails(5_000));
    let mb = 1024.0 * 1024.0;
    let window = WriteLimits::GRAPH
        .upload_budget_window
        .div_f64(FIGURE_SCALE)
        .as_secs_f64();

    let graph = writer(&emu, emu.graph_url().as_str(), budget, FIGURE_SCALE);
    let (report, elapsed, peak) = restore_sampled(&emu, &graph, &mailboxes[0], &corpus).await;
    assert_eq!((report.restored, report.failed), (5_000, 0));
    let stats = emu.mailbox_stats(&mailboxes[0]).await;
    let uploaded = graph.upload_budget(&mailboxes[0]).total() as f64;
    let secs = elapsed.as_secs_f64();
    let ceiling = budget as f64 / window;
    // The first window's budget goes at once; the steady rate is what follows it.
    let steady = (uploaded - budget as f64) / secs;
    let ratio = steady / ceiling;
    let per_upload = report.restored as f64 / uploaded;
    println!(
        "restore under the budget: {} messages, {:.1} MB archived, {:.1} MB uploaded in \
         {secs:.1} s: {:.0} msg/s, {:.2} MB/s archived, {:.2} MB/s uploaded; budget {:.0} MB \
         per {window} s = {:.2} MB/s ceiling; steady {:.2} MB/s = {ratio:.2} of the ceiling \
         (peak window {:.1} MB; emulator {stats:?}). Against Outlook's 150 MB / 5 min: \
         {:.2} MB/s uploaded, {:.1} msg/s of this mix per mailbox",
        report.restored,
        corpus.bytes() as f64 / mb,
        uploaded / mb,
        report.restored as f64 / secs,
        corpus.bytes() as f64 / mb / secs,
        uploaded / mb / secs,
        budget as f64 / mb,
        ceiling / mb,
        steady / mb,
        peak as f64 / mb,
        ratio * 0.5,
        ratio * 0.5 * mb * per_upload,
    );

    emu.set_upload_budget(u64::MAX / 4);
    let free = writer(&emu, emu.graph_url().as_str(), u64::MAX / 4, FIGURE_SCALE);
    let (report, elapsed, _) = restore_sampled(&emu, &free, &mailboxes[1], &corpus).await;
    assert_eq!((report.restored, report.failed), (5_000, 0));
    let secs = elapsed.as_secs_f64();
    let uploaded = free.upload_budget(&mailboxes[1]).total() as f64;
    println!(
        "restore without a budget: {} messages in {secs:.1} s: {:.0} msg/s, {:.2} MB/s \
         archived, {:.2} MB/s uploaded ({:.0} times Outlook's ceiling)",
        report.restored,
        report.restored as f64 / secs,
        corpus.bytes() as f64 / mb / secs,
        uploaded / mb / secs,
        uploaded / mb / secs / 0.5,
    );
}
