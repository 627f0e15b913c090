//! Mail in legacy charsets: 20 messages in GB2312/GBK, Big5, Shift_JIS, EUC-JP, ISO-2022-JP,
//! EUC-KR, KOI8-R and windows-125x (`tests/fixtures/charsets`, written by its `make.py` with
//! Python's `email` package) are archived; each one's subject and sender name in the archive's
//! metadata are what Python's `email` parser decodes, and a search for a word of it (Chinese,
//! Japanese and Korean words included, which have no spaces around them) finds it and only it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use archive_store::{ArchiveStore, RawMessage, Scope, SearchQuery};
use common::{open, request};
use serde::Deserialize;

/// One line of `expected.json`.
#[derive(Debug, Deserialize)]
struct Expected {
    file: String,
    charset: String,
    subject: String,
    from_name: String,
    word: String,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/charsets")
}

fn expected() -> Vec<Expected> {
    let path = fixtures().join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn legacy_charsets_decode_in_metadata_and_search() {
    let expected = expected();
    assert_eq!(expected.len(), 20);
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut ids = Vec::new();
    for message in &expected {
        let raw = std::fs::read(fixtures().join(&message.file)).unwrap();
        let outcome = store
            .archive(
                &request("charsets", "Inbox", Some(&message.file)),
                RawMessage::Bytes(&raw),
            )
            .unwrap();
        ids.push(outcome.id);
    }
    let mut failures = Vec::new();
    for (message, id) in expected.iter().zip(&ids) {
        let hits = store
            .search(
                &SearchQuery {
                    text: message.word.clone(),
                    user: None,
                    from_date: None,
                    to_date: None,
                    limit: 10,
                },
                &Scope::Admin,
            )
            .unwrap();
        let found: Vec<_> = hits.iter().map(|h| &h.id).collect();
        if found != [id] {
            failures.push(format!(
                "{} ({}): '{}' found {found:?}, not just {id:?}",
                message.file, message.charset, message.word
            ));
            continue;
        }
        let hit = &hits[0];
        if hit.subject.as_deref() != Some(message.subject.as_str()) {
            failures.push(format!(
                "{} ({}): subject {:?}, Python decodes {:?}",
                message.file, message.charset, hit.subject, message.subject
            ));
        }
        let from = format!("{} <", message.from_name);
        if !hit.from.as_deref().is_some_and(|f| f.starts_with(&from)) {
            failures.push(format!(
                "{} ({}): from {:?}, Python decodes the name {:?}",
                message.file, message.charset, hit.from, message.from_name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_cjk_word_matches_where_its_characters_stand_together() {
    // 会议 ("meeting") is in the GB2312 message only; 议会 (the same characters the other way
    // round, "parliament") is in none, though both characters are there: character tokens
    // are matched as a phrase.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for message in expected() {
        let raw = std::fs::read(fixtures().join(&message.file)).unwrap();
        store
            .archive(
                &request("charsets", "Inbox", Some(&message.file)),
                RawMessage::Bytes(&raw),
            )
            .unwrap();
    }
    let count = |text: &str| {
        let query = SearchQuery {
            text: text.to_owned(),
            user: None,
            from_date: None,
            to_date: None,
            limit: 50,
        };
        store.search(&query, &Scope::Admin).unwrap().len()
    };
    assert_eq!(count("会议"), 1);
    assert_eq!(count("议会"), 0);
    assert!(count("会") >= 1 && count("议") >= 1);
    assert_eq!(count("会议 通知"), 1, "two words: both must be there");
    assert_eq!(count("会议 报表"), 0);
}
