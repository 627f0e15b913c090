//! `retention`, `hold` and `archive erase` as a script drives them: the JSON
//! documents, the audit events each change leaves, and bad input refused with an
//! error naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::Archiver;

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

fn actions(cli: &Archiver) -> Vec<String> {
    cli.json(&["audit", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn policies_and_holds_are_kept_listed_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let cli = Archiver::new(&tmp.path().join("data"), Vec::new());
    let added = cli.json(&[
        "retention",
        "add",
        "mail-10y",
        "--min-days",
        "3650",
        "--user",
        "alice",
        "--user",
        "bob",
        "--folder",
        "Inbox",
        "--reference",
        "archived",
    ]);
    assert_eq!(added["name"], "mail-10y");
    assert_eq!(added["min_days"], 3650);
    assert_eq!(added["max_days"], Value::Null);
    assert_eq!(added["reference"], "archived");
    assert_eq!(added["scope"]["users"], serde_json::json!(["alice", "bob"]));
    cli.ok(&[
        "retention",
        "add",
        "junk",
        "--min-days",
        "0",
        "--max-days",
        "30",
        "--query",
        "newsletter",
    ]);
    let listed = cli.json(&["retention", "list"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mail-10y", "junk"]);
    let shown = cli.json(&["retention", "show", "junk"]);
    assert_eq!(
        (shown["max_days"].as_u64(), shown["scope"]["query"].as_str()),
        (Some(30), Some("newsletter"))
    );
    let table = cli.ok(&["retention", "list"]).stdout;
    assert!(
        table.contains("mail-10y") && table.contains("forever"),
        "{table}"
    );
    cli.ok(&["retention", "remove", "junk"]);

    let hold = cli.json(&[
        "hold",
        "create",
        "case-17",
        "--reason",
        "litigation 17",
        "--user",
        "alice",
        "--from",
        "2025-01-01",
        "--to",
        "2026-01-01T00:00:00Z",
    ]);
    assert_eq!(hold["case"], "case-17");
    assert_eq!(hold["scope"]["from"], "2025-01-01T00:00:00Z");
    assert_eq!(hold["released"], Value::Null);
    let shown = cli.json(&["hold", "show", "case-17"]);
    assert_eq!(shown["reason"], "litigation 17");
    let released = cli.json(&["hold", "release", "case-17", "--reason", "case closed"]);
    assert_eq!(released["released"]["reason"], "case closed");
    let holds = cli.json(&["hold", "list"]);
    assert_eq!(holds.as_array().unwrap().len(), 1);
    assert!(cli.ok(&["hold", "list"]).stdout.contains("released"));

    let recorded = actions(&cli);
    let changes: Vec<&str> = recorded
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "audit_read")
        .collect();
    assert_eq!(
        changes,
        [
            "retention_policy_change",
            "retention_policy_change",
            "retention_policy_change",
            "hold_create",
            "hold_release"
        ]
    );
    let verify = cli.json(&["audit", "verify"]);
    assert_eq!(verify["ok"], true);
}

#[test]
fn bad_input_is_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let cli = Archiver::new(&tmp.path().join("data"), Vec::new());
    cli.ok(&["retention", "add", "keep", "--min-days", "1"]);
    cli.ok(&["hold", "create", "case-1", "--reason", "r"]);
    let cases: [(&[&str], &[&str]); 9] = [
        (
            &["retention", "add", "p", "--min-days", "-3"],
            &["min_days", "-3"],
        ),
        (
            &[
                "retention",
                "add",
                "p",
                "--min-days",
                "30",
                "--max-days",
                "10",
            ],
            &["max_days", "10"],
        ),
        (
            &["retention", "add", "bad name", "--min-days", "1"],
            &["policy name"],
        ),
        (
            &["retention", "add", "keep", "--min-days", "1"],
            &["keep", "exists"],
        ),
        (&["retention", "show", "nope"], &["nope"]),
        (&["retention", "remove", "nope"], &["nope"]),
        (&["hold", "show", "nope"], &["nope"]),
        (&["hold", "release", "nope", "--reason", "r"], &["nope"]),
        (
            &["hold", "release", "case-1", "--reason", " "],
            &["reason", "case-1"],
        ),
    ];
    for (args, culprits) in cases {
        cli.fails(args, culprits);
    }
    // Usage errors (exit 2) name the flag.
    for (args, flag) in [
        (&["hold", "release", "case-1"][..], "--reason"),
        (
            &[
                "hold",
                "create",
                "c2",
                "--reason",
                "r",
                "--from",
                "yesterday",
            ][..],
            "--from",
        ),
        (&["archive", "erase", "ab12"][..], "--reason"),
        (
            &[
                "retention",
                "add",
                "p",
                "--min-days",
                "1",
                "--reference",
                "sent",
            ][..],
            "--reference",
        ),
    ] {
        let run = cli.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(flag), "{args:?}: {}", run.stderr);
    }
    // Nothing was changed by the refusals.
    let policies = cli.json(&["retention", "list"]);
    assert_eq!(policies.as_array().unwrap().len(), 1);
    assert_eq!(
        cli.json(&["hold", "show", "case-1"])["released"],
        Value::Null
    );
}

#[test]
fn apply_and_erase_print_their_fixed_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let cli = support::with_mail(tmp.path(), &["note 0", "note 1"]);
    cli.ok(&[
        "retention",
        "add",
        "short",
        "--min-days",
        "0",
        "--max-days",
        "0",
        "--reference",
        "archived",
    ]);
    let dry = cli.json(&["retention", "apply", "--dry-run"]);
    assert_eq!(
        keys(&dry),
        [
            "bytes_reclaimed",
            "candidates",
            "deleted",
            "dry_run",
            "held",
            "restricted"
        ]
    );
    assert_eq!(
        (dry["dry_run"].as_bool(), dry["deleted"].as_u64()),
        (Some(true), Some(2))
    );
    let hits = cli.json(&["archive", "search", "note"]);
    let id = hits[0]["id"].as_str().unwrap().to_string();
    let erased = cli.json(&["archive", "erase", &id, "--reason", "GDPR art. 17"]);
    assert_eq!(keys(&erased), ["entries", "erased", "restricted"]);
    assert_eq!(erased["erased"], 1);
    let applied = cli.json(&["retention", "apply"]);
    assert_eq!(
        (applied["dry_run"].as_bool(), applied["deleted"].as_u64()),
        (Some(false), Some(1))
    );
    let recorded = actions(&cli);
    for action in ["retention_apply", "erasure"] {
        assert!(
            recorded.iter().any(|a| a == action),
            "no {action} in {recorded:?}"
        );
    }
}
