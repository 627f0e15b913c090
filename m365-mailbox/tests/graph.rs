//! Acceptance tests of `GraphMailboxSource` against the in-process emulator over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use m365_emulator::{EmulatorConfig, FaultConfig};
use m365_mailbox::{
    DeleteMode, DeltaCursor, DeltaEvent, GateLimits, MailboxError, MailboxSource, ThrottleRegistry,
};

fn config(users: usize, messages: usize, seed: u64) -> EmulatorConfig {
    EmulatorConfig {
        users,
        messages_per_user: messages,
        seed,
        ..Default::default()
    }
}

#[tokio::test]
async fn every_folder_kind_is_traversed() {
    let emu = emulator(config(1, 60, 11)).await;
    let source = source(&emu);
    let upn = first_user(&emu);
    let folders = source.folders(&upn).await.unwrap();
    let by_path: HashMap<&str, _> = folders.iter().map(|f| (f.path.as_str(), f)).collect();

    for path in [
        "Inbox",
        "Inbox/Projects",
        "Inbox/Projects/2024/Q3 Reports",
        "Receipts\\/Invoices",
        "Müller & Søn – Verträge/日本語フォルダー",
        "Clients/Acme/Contracts/Signed",
        "Sync Issues/Conflicts",
    ] {
        assert!(
            by_path.contains_key(path),
            "missing {path}; got {:?}",
            by_path.keys()
        );
    }
    let hidden = by_path["Legal Hold (hidden)"];
    assert!(hidden.hidden);
    assert!(!hidden.search_folder);
    let search = folders
        .iter()
        .find(|f| f.display_name == "Flagged Items")
        .unwrap();
    assert!(search.search_folder);
    assert_eq!(folders.iter().filter(|f| f.search_folder).count(), 1);
    assert_eq!(
        by_path["Receipts\\/Invoices"].display_name,
        "Receipts/Invoices"
    );

    // Well-known names, also below the top level.
    for (path, name) in [
        ("Inbox", "inbox"),
        ("Sent Items", "sentitems"),
        ("Deleted Items", "deleteditems"),
        ("Sync Issues/Conflicts", "conflicts"),
    ] {
        assert_eq!(
            by_path[path].well_known_name.as_deref(),
            Some(name),
            "{path}"
        );
    }
    assert_eq!(by_path["Inbox/Projects"].well_known_name, None);

    // Parents before children, parent ids consistent with paths.
    let mut seen = HashSet::new();
    for f in &folders {
        match &f.parent_id {
            None => assert!(
                !f.path.contains("/") || f.path.contains("\\/"),
                "{}",
                f.path
            ),
            Some(parent) => {
                assert!(seen.contains(parent), "{} listed before its parent", f.path);
                let p = folders.iter().find(|p| &p.id == parent).unwrap();
                assert!(f.path.starts_with(&format!("{}/", p.path)));
            }
        }
        seen.insert(f.id.clone());
    }

    // Counts: every message lives in exactly one non-search folder of the tree.
    let total: u64 = folders
        .iter()
        .filter(|f| !f.search_folder)
        .map(|f| f.total_items)
        .sum();
    assert_eq!(total, emu.message_count(&upn) as u64);

    // Well-known names were asked once: a second listing does not ask again.
    let before = source.metrics(&upn).requests;
    source.folders(&upn).await.unwrap();
    let again = source.metrics(&upn).requests - before;
    assert!(again < 20, "second listing took {again} requests");
}

#[tokio::test]
async fn probe_names_what_is_wrong_with_each_mailbox() {
    let emu = emulator(config(1, 2, 12)).await;
    let source = source(&emu);
    for user in emu.users() {
        let result = source.probe(&user.upn).await;
        if !user.has_mailbox {
            assert!(
                matches!(result, Err(MailboxError::NoMailbox { .. })),
                "{}: {result:?}",
                user.upn
            );
        } else if user.access_denied {
            let Err(MailboxError::AccessDenied { code, .. }) = &result else {
                panic!("{}: {result:?}", user.upn);
            };
            assert_eq!(code, "ErrorAccessDenied");
        } else {
            assert!(result.is_ok(), "{}: {result:?}", user.upn);
        }
    }
    let result = source.probe("nobody.here@contoso.onmicrosoft.com").await;
    assert!(
        matches!(result, Err(MailboxError::UnknownUser { .. })),
        "{result:?}"
    );
    // Mailbox-wide errors are marked as such.
    assert!(result.unwrap_err().is_mailbox_wide());
}

#[tokio::test]
async fn delta_full_then_incremental_sees_exactly_the_changes() {
    let emu = emulator(config(1, 50, 13)).await;
    let source = source(&emu);
    let upn = first_user(&emu);

    let (messages, folders, cursors) = enumerate(&source, &upn).await;
    let expected: HashSet<String> = emu.message_ids(&upn).into_iter().collect();
    let got: HashSet<String> = messages.keys().cloned().collect();
    assert_eq!(got, expected);
    for m in messages.values() {
        assert!(m.size.is_some_and(|s| s > 0), "size missing for {}", m.id);
        assert!(m.received.is_some());
        assert!(folders.iter().any(|f| f.id == m.folder_id));
    }

    let inbox = folders
        .iter()
        .find(|f| f.well_known_name.as_deref() == Some("inbox"))
        .unwrap();
    let deleted_items = folders
        .iter()
        .find(|f| f.well_known_name.as_deref() == Some("deleteditems"))
        .unwrap();
    let mut in_inbox: Vec<&String> = messages
        .values()
        .filter(|m| m.folder_id == inbox.id)
        .map(|m| &m.id)
        .collect();
    in_inbox.sort();
    assert!(in_inbox.len() >= 6, "inbox too small for the test");

    // Changes: 3 new, 2 deleted by someone else, 1 moved by us, 1 soft-deleted, 1 hard-deleted.
    let new: HashSet<String> = (0..3)
        .map(|i| {
            emu.deliver(&upn, "inbox", mime(&format!("new-{i}")))
                .unwrap()
        })
        .collect();
    let gone_elsewhere: HashSet<String> = in_inbox[..2].iter().map(|s| (*s).clone()).collect();
    for id in &gone_elsewhere {
        emu.delete_message(&upn, id).unwrap();
    }
    let moved = in_inbox[2].clone();
    source
        .delete(&upn, &moved, DeleteMode::MoveToDeletedItems)
        .await
        .unwrap();
    let soft = in_inbox[3].clone();
    source
        .delete(&upn, &soft, DeleteMode::SoftDelete)
        .await
        .unwrap();
    let hard = in_inbox[4].clone();
    source
        .delete(&upn, &hard, DeleteMode::HardDelete)
        .await
        .unwrap();

    let ids_now: HashSet<String> = emu.message_ids(&upn).into_iter().collect();
    assert!(
        ids_now.contains(&moved),
        "a moved message keeps its immutable id"
    );
    assert!(!ids_now.contains(&soft) && !ids_now.contains(&hard));

    // Incremental pass over every folder.
    let mut upserts: HashMap<String, HashSet<String>> = HashMap::new();
    let mut removals: HashMap<String, HashSet<String>> = HashMap::new();
    for folder in folders.iter().filter(|f| !f.search_folder) {
        let (events, _) = round(&source, &upn, &folder.id, cursors.get(&folder.id).cloned()).await;
        for event in events {
            match event {
                DeltaEvent::Upsert(s) => {
                    upserts.entry(folder.id.clone()).or_default().insert(s.id);
                }
                DeltaEvent::Removed { id } => {
                    removals.entry(folder.id.clone()).or_default().insert(id);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let mut want_inbox_removed = gone_elsewhere.clone();
    want_inbox_removed.extend([moved.clone(), soft.clone(), hard.clone()]);
    assert_eq!(upserts.remove(&inbox.id).unwrap_or_default(), new);
    assert_eq!(
        removals.remove(&inbox.id).unwrap_or_default(),
        want_inbox_removed
    );
    assert_eq!(
        upserts.remove(&deleted_items.id).unwrap_or_default(),
        HashSet::from([moved.clone()])
    );
    assert!(upserts.is_empty(), "unexpected upserts {upserts:?}");
    assert!(removals.is_empty(), "unexpected removals {removals:?}");

    // Deleting something already gone is reported, not hidden.
    let again = source.delete(&upn, &hard, DeleteMode::HardDelete).await;
    assert!(
        matches!(again, Err(MailboxError::MessageGone { .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn stale_delta_token_restarts_the_folder() {
    let emu = emulator(config(1, 40, 14)).await;
    let source = source(&emu);
    let upn = first_user(&emu);
    let folders = source.folders(&upn).await.unwrap();
    let inbox = folders
        .iter()
        .find(|f| f.well_known_name.as_deref() == Some("inbox"))
        .unwrap();
    let sent = folders
        .iter()
        .find(|f| f.well_known_name.as_deref() == Some("sentitems"))
        .unwrap();
    let (first, cursor) = round(&source, &upn, &inbox.id, None).await;
    let all: HashSet<String> = first
        .iter()
        .filter_map(|e| match e {
            DeltaEvent::Upsert(s) => Some(s.id.clone()),
            _ => None,
        })
        .collect();

    // A token the service no longer knows: 410 syncStateNotFound.
    let (base, _) = cursor.0.split_once("$deltatoken=").unwrap();
    let stale = DeltaCursor(format!("{base}$deltatoken=AAAAexpired"));
    // And a valid token of another folder: also refused by Graph.
    let (_, foreign) = round(&source, &upn, &sent.id, None).await;
    for (what, bad) in [("stale", stale), ("foreign", foreign)] {
        let (events, fresh) = round(&source, &upn, &inbox.id, Some(bad)).await;
        assert_eq!(
            events.first(),
            Some(&DeltaEvent::Restarted),
            "{what} cursor"
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| **e == DeltaEvent::Restarted)
                .count(),
            1
        );
        let relisted: HashSet<String> = events
            .iter()
            .filter_map(|e| match e {
                DeltaEvent::Upsert(s) => Some(s.id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(relisted, all);
        // The fresh cursor works: nothing changed since.
        let (events, _) = round(&source, &upn, &inbox.id, Some(fresh)).await;
        assert!(events.is_empty(), "{events:?}");
    }

    // A cursor that is not a Graph link of ours restarts too (never sent anywhere).
    let (events, _) = round(
        &source,
        &upn,
        &inbox.id,
        Some(DeltaCursor("https://elsewhere.example/x".into())),
    )
    .await;
    assert_eq!(events.first(), Some(&DeltaEvent::Restarted));

    // A folder that no longer exists is an error the caller can act on.
    let mut gone = source.changes(&upn, "AAMkAD-no-such-folder=", None);
    let first = gone.next().await.unwrap();
    assert!(
        matches!(first, Err(MailboxError::FolderGone { .. })),
        "{first:?}"
    );
    assert!(gone.next().await.is_none());
}

/// Enumerates and fetches every message of `upns` with `tasks` concurrent fetchers per
/// mailbox; panics on any error; returns the number of messages checked.
async fn archive_everything(
    emu: &m365_emulator::Emulator,
    source: &m365_mailbox::GraphMailboxSource,
    upns: &[String],
    tasks: usize,
) -> usize {
    let mut checked = 0;
    for upn in upns {
        let (messages, _, _) = enumerate(source, upn).await;
        let expected: HashSet<String> = emu.message_ids(upn).into_iter().collect();
        assert_eq!(
            messages.keys().cloned().collect::<HashSet<_>>(),
            expected,
            "{upn}"
        );
        let results = futures::stream::iter(messages.keys().cloned())
            .map(|id| async move {
                let content = source.fetch_mime(upn, &id, 64 << 20).await;
                (id, content)
            })
            .buffer_unordered(tasks)
            .collect::<Vec<_>>()
            .await;
        for (id, content) in results {
            let content = content.unwrap_or_else(|e| panic!("fetch {id}: {e}"));
            assert_eq!(
                bytes_of(&content),
                emu.message_mime(upn, &id).unwrap(),
                "bytes of {id}"
            );
            checked += 1;
        }
    }
    checked
}

#[tokio::test]
async fn faults_and_429_storms_never_reach_the_caller() {
    let emu = emulator(EmulatorConfig {
        faults: FaultConfig {
            status_503: 0.10,
            status_504: 0.02,
            reset: 0.05,
            truncate: 0.05,
            slow_ms: 0,
        },
        ..config(2, 40, 15)
    })
    .await;
    let upns: Vec<String> = regular_users(&emu);
    let ours = source(&emu);

    // A second, uncoordinated client of the same app (its own gates, allowed 8 in flight)
    // hammers the same mailboxes at the same time: Outlook answers both with 429 storms.
    let mut greedy_options = test_options(&emu);
    greedy_options.registry = Some(Arc::new(ThrottleRegistry::new()));
    greedy_options.limits = GateLimits {
        max_in_flight: 8,
        ..GateLimits::default()
    };
    let greedy = source_with(&emu, provider(&emu), greedy_options);

    let (a, b) = tokio::join!(
        archive_everything(&emu, &ours, &upns, 8),
        archive_everything(&emu, &greedy, &upns, 16),
    );
    assert_eq!(a, b);
    assert_eq!(a, upns.iter().map(|u| emu.message_count(u)).sum::<usize>());

    let stats = emu.stats().await;
    assert!(
        stats.faults_total > 20,
        "too few faults injected: {}",
        stats.faults_total
    );
    assert!(stats.throttled_total > 0, "no 429 storm happened");
    let retries: u64 = upns
        .iter()
        .map(|u| ours.metrics(u).retries + greedy.metrics(u).retries)
        .sum();
    let throttled: u64 = upns
        .iter()
        .map(|u| ours.metrics(u).throttled + greedy.metrics(u).throttled)
        .sum();
    assert!(
        retries >= stats.faults_total,
        "retries {retries} < faults {}",
        stats.faults_total
    );
    assert_eq!(throttled, stats.throttled_total);
}

#[tokio::test]
async fn thirty_two_tasks_never_put_more_than_four_in_flight() {
    // Throttling off: the emulator admits everything and reports the true concurrency.
    let emu = emulator(EmulatorConfig {
        throttling: false,
        ..config(1, 80, 16)
    })
    .await;
    let source = Arc::new(source(&emu));
    let upn = first_user(&emu);
    let (messages, _, _) = enumerate(source.as_ref(), &upn).await;
    let ids: Arc<Vec<String>> = Arc::new(messages.keys().cloned().collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..32 {
        let (source, ids, next, upn) = (source.clone(), ids.clone(), next.clone(), upn.clone());
        tasks.push(tokio::spawn(async move {
            let mut fetched = 0;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= ids.len() * 2 {
                    return fetched;
                }
                if i % 16 == t % 16 {
                    source.probe(&upn).await.unwrap();
                }
                source
                    .fetch_mime(&upn, &ids[i % ids.len()], 64 << 20)
                    .await
                    .unwrap();
                fetched += 1;
            }
        }));
    }
    let mut fetched = 0;
    for t in tasks {
        fetched += t.await.unwrap();
    }
    assert_eq!(fetched, ids.len() * 2);
    let stats = mailbox_stats(&emu, &upn).await;
    assert!(
        stats.max_concurrency <= 4,
        "{} in flight at once",
        stats.max_concurrency
    );
    assert_eq!(stats.max_concurrency, 4, "the allowance of 4 was not used");
}

#[tokio::test]
async fn no_request_arrives_before_retry_after_expires() {
    let emu = Arc::new(emulator(config(1, 40, 17)).await);
    let upn = first_user(&emu);
    let source = Arc::new(source(&emu));
    // No Graph traffic to the mailbox before the hogs below.
    let ids: Vec<String> = emu.message_ids(&upn).into_iter().take(12).collect();

    // Another client of the app occupies the mailbox's 4 slots for ~600 ms (every answer
    // is slowed down from now on, ours too).
    let tokens = provider(&emu);
    let token = m365_auth::TokenProvider::token(tokens.as_ref())
        .await
        .unwrap();
    emu.set_faults(FaultConfig {
        slow_ms: 600,
        ..FaultConfig::default()
    });
    let url = emu
        .graph_url()
        .join(&format!("v1.0/users/{upn}/mailFolders/inbox"))
        .unwrap();
    let http = reqwest::Client::new();
    let hogs: Vec<_> = (0..4)
        .map(|_| {
            let request = http.get(url.clone()).bearer_auth(token.secret()).send();
            tokio::spawn(async move { request.await.map(|r| r.status()) })
        })
        .collect();
    // Wait until the four hold their slots (the emulator counts them as they are admitted).
    let deadline = Instant::now() + Duration::from_secs(5);
    while mailbox_stats(&emu, &upn).await.max_concurrency < 4 {
        assert!(Instant::now() < deadline, "hogs never got their slots");
        tokio::task::yield_now().await;
    }

    // 12 tasks now want the mailbox: the first answers are 429 with Retry-After: 1.
    let start = Instant::now();
    let fetches: Vec<_> = ids
        .iter()
        .cloned()
        .map(|id| {
            let source = source.clone();
            let upn = upn.clone();
            tokio::spawn(async move {
                source
                    .fetch_mime(&upn, &id, 64 << 20)
                    .await
                    .map(|c| (id, c))
            })
        })
        .collect();
    for f in fetches {
        let (id, content) = f.await.unwrap().unwrap();
        assert_eq!(bytes_of(&content), emu.message_mime(&upn, &id).unwrap());
    }
    for h in hogs {
        let status = h.await.unwrap().unwrap();
        assert!(status.is_success(), "{status}");
    }
    let throttled = mailbox_stats(&emu, &upn).await.throttled;
    // Only the first wave (at most the 4 requests our gate lets out at once) met the
    // closed mailbox; nothing was sent again before Retry-After expired.
    assert!(
        (1..=4).contains(&throttled),
        "{throttled} requests throttled"
    );
    assert_eq!(source.metrics(&upn).throttled, throttled);
    assert!(start.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn revoked_token_is_replaced_once_and_the_run_continues() {
    let emu = Arc::new(emulator(config(1, 60, 18)).await);
    let upn = first_user(&emu);
    let tokens = provider(&emu);
    let source = Arc::new(source_with(&emu, tokens.clone(), test_options(&emu)));
    let (messages, _, _) = enumerate(source.as_ref(), &upn).await;
    assert_eq!(tokens.token_requests(), 1);
    let fetched = Arc::new(AtomicUsize::new(0));
    let results = futures::stream::iter(messages.keys().cloned())
        .map(|id| {
            let (source, emu, upn, fetched) =
                (source.clone(), emu.clone(), upn.clone(), fetched.clone());
            async move {
                let content = source.fetch_mime(&upn, &id, 64 << 20).await;
                if fetched.fetch_add(1, Ordering::SeqCst) == 15 {
                    emu.revoke_tokens();
                }
                (id, content)
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for (id, content) in results {
        let content = content.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(bytes_of(&content), emu.message_mime(&upn, &id).unwrap());
    }
    assert_eq!(
        tokens.token_requests(),
        2,
        "the token was not replaced exactly once"
    );
    assert!(source.metrics(&upn).retries >= 1);
}

#[tokio::test]
async fn too_large_message_is_refused_without_retrying() {
    let emu = emulator(config(1, 10, 19)).await;
    let source = source(&emu);
    let upn = first_user(&emu);
    let (messages, _, _) = enumerate(&source, &upn).await;
    let (id, summary) = messages.iter().max_by_key(|(_, m)| m.size).unwrap();
    let size = emu.message_mime(&upn, id).unwrap().len() as u64;
    let before = source.metrics(&upn).requests;
    let result = source.fetch_mime(&upn, id, size - 1).await;
    let Err(MailboxError::TooLarge { limit, .. }) = result else {
        panic!("{result:?} (summary {summary:?})");
    };
    assert_eq!(limit, size - 1);
    assert_eq!(source.metrics(&upn).requests, before + 1);
    let exact = source.fetch_mime(&upn, id, size).await.unwrap();
    assert_eq!(bytes_of(&exact).len() as u64, size);

    let missing = source
        .fetch_mime(&upn, "AAMkAD-no-such-message=", 1 << 20)
        .await;
    assert!(
        matches!(missing, Err(MailboxError::MessageGone { .. })),
        "{missing:?}"
    );
}

#[tokio::test]
async fn large_bodies_are_spooled_to_a_private_file() {
    let emu = emulator(config(1, 20, 20)).await;
    let mut options = test_options(&emu);
    options.spool_threshold = 1024;
    let dir = tempfile::tempdir().unwrap();
    options.spool_dir = Some(dir.path().to_path_buf());
    let source = source_with(&emu, provider(&emu), options);
    let upn = first_user(&emu);
    let (messages, _, _) = enumerate(&source, &upn).await;
    let (id, _) = messages.iter().max_by_key(|(_, m)| m.size).unwrap();
    let content = source.fetch_mime(&upn, id, 1 << 30).await.unwrap();
    let path = content.path().expect("spooled").to_path_buf();
    assert!(path.starts_with(dir.path()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "spool file readable by others: {mode:o}");
    }
    assert_eq!(bytes_of(&content), emu.message_mime(&upn, id).unwrap());
    drop(content);
    assert!(!path.exists(), "spool file left behind");
}

#[tokio::test]
async fn https_emulator_with_extra_ca() {
    let emu = emulator(EmulatorConfig {
        tls: true,
        ..config(1, 10, 21)
    })
    .await;
    assert_eq!(emu.graph_url().scheme(), "https");
    let source = source(&emu);
    let upn = first_user(&emu);
    source.probe(&upn).await.unwrap();
    let (messages, _, _) = enumerate(&source, &upn).await;
    assert_eq!(messages.len(), emu.message_count(&upn));
    let id = messages.keys().next().unwrap();
    let content = source.fetch_mime(&upn, id, 64 << 20).await.unwrap();
    assert_eq!(bytes_of(&content), emu.message_mime(&upn, id).unwrap());

    // Without the CA the server is not trusted, and the error says so.
    let mut options = test_options(&emu);
    options.extra_ca_pem = None;
    options.retry.max_attempts = 2;
    let untrusting = source_with(&emu, provider(&emu), options);
    let result = untrusting.probe(&upn).await;
    assert!(
        matches!(result, Err(MailboxError::RetriesExhausted { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn probe_and_folder_tree_cost_one_request() {
    let emu = emulator(config(1, 20, 11)).await;
    let upn = first_user(&emu);
    // The tree as the walk sees it: one request per lookup and per parent.
    let walker = source_with(
        &emu,
        provider(&emu),
        m365_mailbox::GraphMailboxOptions {
            batch: false,
            ..test_options(&emu)
        },
    );
    let walked = walker.folders(&upn).await.unwrap();
    assert!(walker.metrics(&upn).requests > 10);

    let source = source(&emu);
    let before = emu.stats().await;
    source.probe(&upn).await.unwrap();
    let folders = source.folders(&upn).await.unwrap();
    let after = emu.stats().await;
    let sent = source.metrics(&upn).requests;
    assert_eq!(sent, 1, "probe + folders sent {sent} requests");
    let routed = |route: &str| {
        after.per_route.get(route).copied().unwrap_or(0)
            - before.per_route.get(route).copied().unwrap_or(0)
    };
    assert_eq!(routed("POST /v1.0/$batch"), 1);
    // Only the Recoverable Items root's children, asked inside the `$batch` for
    // `recoverable_folders`.
    assert_eq!(
        routed("GET /v1.0/users/{user}/mailFolders/{folder}/childFolders"),
        1
    );
    // Same tree, same order, same well-known names, same counts.
    assert_eq!(folders, walked);

    // Without a probe just before, `folders` makes its own survey.
    let again = source.folders(&upn).await.unwrap();
    assert_eq!(again, walked);
    assert_eq!(source.metrics(&upn).requests, 2);
}

#[tokio::test]
async fn prefetched_first_pages_give_the_same_rounds_in_one_request_per_20_folders() {
    let emu = emulator(config(1, 40, 14)).await;
    let upn = first_user(&emu);
    let source = source(&emu);

    // First rounds from prefetched pages: the same messages as rounds asked one by one.
    let (expected, folders, _) = enumerate(&source, &upn).await;
    let mail: Vec<&m365_mailbox::Folder> = folders.iter().filter(|f| !f.search_folder).collect();
    assert!(mail.len() > 20, "need more than one batch of folders");
    let fresh: Vec<(String, Option<DeltaCursor>)> =
        mail.iter().map(|f| (f.id.clone(), None)).collect();
    source.prefetch_changes(&upn, &fresh).await;
    let mut got = HashMap::new();
    let mut cursors = HashMap::new();
    for folder in &mail {
        let (events, cursor) = round(&source, &upn, &folder.id, None).await;
        for event in events {
            let DeltaEvent::Upsert(summary) = event else {
                panic!("unexpected {event:?}");
            };
            got.insert(summary.id.clone(), summary);
        }
        cursors.insert(folder.id.clone(), cursor);
    }
    assert_eq!(got, expected);

    // A change in the inbox, then a rerun: one batch per 20 folders and nothing else.
    let inbox = mail
        .iter()
        .find(|f| f.well_known_name.as_deref() == Some("inbox"))
        .unwrap();
    let new = emu
        .deliver(&upn, "inbox", mime("after the cursor"))
        .unwrap();
    let with_cursors: Vec<(String, Option<DeltaCursor>)> = mail
        .iter()
        .map(|f| (f.id.clone(), Some(cursors[&f.id].clone())))
        .collect();
    let before = source.metrics(&upn).requests;
    source.prefetch_changes(&upn, &with_cursors).await;
    let mut seen = Vec::new();
    for folder in &mail {
        let (events, _) = round(&source, &upn, &folder.id, Some(cursors[&folder.id].clone())).await;
        for event in events {
            match event {
                DeltaEvent::Upsert(s) => seen.push((folder.id.clone(), s.id)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(seen, vec![(inbox.id.clone(), new)]);
    let sent = source.metrics(&upn).requests - before;
    assert_eq!(
        sent as usize,
        mail.len().div_ceil(20),
        "rerun sent {sent} requests"
    );

    // A prefetched page is used once, and only for the cursor it was fetched for.
    let before = source.metrics(&upn).requests;
    round(&source, &upn, &inbox.id, Some(cursors[&inbox.id].clone())).await;
    assert_eq!(source.metrics(&upn).requests - before, 1);
}
