//! `audit list | verify | export` as a script drives them: the commands that touch
//! mail leave their events, `audit verify --json` has its fixed shape, and a
//! changed byte of the log is named by sequence number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::Archiver;

/// `audit verify --json` and its exit code.
fn verify(cli: &Archiver) -> (i32, Value) {
    let run = cli.run(&["audit", "verify", "--json"]);
    let json = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("no JSON document ({e}):\n{}\n{}", run.stdout, run.stderr));
    (run.code, json)
}

#[test]
fn commands_that_touch_mail_leave_events_and_verify_names_a_changed_one() {
    let tmp = tempfile::tempdir().unwrap();
    let cli = support::with_mail(tmp.path(), &["budget 2026", "holiday plans"]);
    let hits = cli.json(&["archive", "search", "budget"]);
    let id = hits[0]["id"].as_str().unwrap().to_string();
    cli.ok(&["archive", "show", &id]);

    let events = cli.json(&["audit", "list"]);
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "user_add",
            "content_import",
            "content_search",
            "content_show",
            "audit_read"
        ]
    );
    let show = &events[3];
    assert_eq!(show["target"]["messages"][0], id.as_str());
    assert!(
        show["actor"]
            .as_str()
            .unwrap()
            .contains("local administrator"),
        "{show}"
    );
    assert_eq!(events[2]["target"]["query"], "budget");
    let limited = cli.json(&["audit", "list", "--limit", "2"]);
    assert_eq!(limited.as_array().unwrap().len(), 2);
    let since = events[3]["time"].as_str().unwrap();
    let from = cli.json(&["audit", "list", "--since", since]);
    assert!(
        from.as_array()
            .unwrap()
            .iter()
            .all(|e| e["seq"].as_u64() >= Some(4))
    );
    let bad_since = cli.run(&["audit", "list", "--since", "yesterday"]);
    assert_eq!(bad_since.code, 2, "{}", bad_since.stderr);

    let (code, report) = verify(&cli);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    assert!(report["events"].as_u64().unwrap() >= 6, "{report}");
    assert!(report.get("first_bad").is_none(), "{report}");
    assert_eq!(report["head"]["seq"], report["events"]);

    let out = tmp.path().join("audit.jsonl");
    let exported = cli.json(&["audit", "export", "--out", out.to_str().unwrap()]);
    let lines = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        exported["events"].as_u64(),
        Some(lines.lines().count() as u64)
    );

    // One byte of the fourth event changed.
    let log = cli.data.join("audit/audit.log");
    let bytes = std::fs::read(&log).unwrap();
    let start = bytes
        .split_inclusive(|b| *b == b'\n')
        .take(3)
        .map(<[u8]>::len)
        .sum::<usize>();
    let mut changed = bytes.clone();
    let at = start + 100;
    changed[at] = if changed[at] == b'x' { b'y' } else { b'x' };
    std::fs::write(&log, &changed).unwrap();
    let (code, report) = verify(&cli);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["first_bad"]["seq"], 4, "{report}");
    assert!(
        report["first_bad"]["reason"]
            .as_str()
            .unwrap()
            .contains("event 4")
    );
    // With its last record damaged the log takes no event, so mail is not shown.
    let mut last_damaged = bytes.clone();
    let at = bytes.len() - 10;
    last_damaged[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
    std::fs::write(&log, &last_damaged).unwrap();
    let refused = cli.fails(&["archive", "show", &id], &["audit log"]);
    assert!(!refused.stdout.contains("Text 0."), "{}", refused.stdout);
}
