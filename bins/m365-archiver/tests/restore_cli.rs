//! `archive restore` as a script drives it, against an emulated tenant over real HTTP:
//! the `--json` report has its fixed keys, a rerun restores nothing, an exact-MIME
//! message over the limit is refused by name, and bad input (unknown archive user,
//! unknown id, a mailbox the app may not write, no such mailbox, Mail.ReadWrite withdrawn)
//! fails with exit 1 and an error naming the culprit, writing nothing a rerun would not
//! finish.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use m365_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;
use support::{Archiver, custom_cloud_args, strs, tail};

const SECRET_VAR: &str = "CONTOSO_CLIENT_SECRET";
/// Messages imported into alice's Inbox and Inbox/Projects.
const SMALL: usize = 5;

/// The keys of the `archive restore --json` report (design.md).
const REPORT_KEYS: [&str; 7] = [
    "restored",
    "skipped_existing",
    "failed",
    "bytes",
    "to_mailbox",
    "to_folder",
    "failures",
];

struct Setup {
    emu: Emulator,
    _tmp: tempfile::TempDir,
    cli: Archiver,
    /// A regular mailbox the app may write.
    target: String,
}

fn write_eml(dir: &Path, name: &str, mime: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), mime).unwrap();
}

/// A tenant, a data directory with the app's credential (`contoso`) and alice's archive:
/// [`SMALL`] small messages in Inbox and Inbox/Projects, and one of 3.5 MB in `Big`.
async fn setup() -> Setup {
    let emu = Emulator::start(EmulatorConfig {
        users: 2,
        messages_per_user: 0,
        seed: 31,
        special_users: true,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut cli = Archiver::new(&tmp.path().join("data"), vec![emu.client_secret()]);
    cli.env.push((SECRET_VAR.into(), emu.client_secret()));
    let mut add = custom_cloud_args(&emu, "contoso");
    add.extend(["--secret-env".into(), SECRET_VAR.into()]);
    cli.ok(&strs(&add));
    let target = emu
        .users()
        .into_iter()
        .find(|u| u.enabled && !u.guest && u.has_mailbox && !u.access_denied)
        .unwrap()
        .upn;
    cli.ok(&["users", "add", "alice", "--email", "alice@example.com"]);

    let mail = tmp.path().join("mail");
    for n in 0..SMALL {
        let sub = if n % 2 == 0 { "inbox" } else { "projects" };
        write_eml(
            &mail.join(sub),
            &format!("{n}.eml"),
            &format!(
                "From: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: Restorable {n}\r\nDate: Tue, 1 Jul 2025 10:0{n}:00 +0000\r\nMessage-ID: <restorable{n}@example.com>\r\n\r\nText {n}.\r\n"
            ),
        );
    }
    let big = "x".repeat(76);
    let body: String = (0..3_500_000 / 78).map(|_| format!("{big}\r\n")).collect();
    write_eml(
        &mail.join("big"),
        "big.eml",
        &format!(
            "From: bob@example.com\r\nTo: alice@example.com\r\nSubject: Oversized\r\nDate: Wed, 2 Jul 2025 10:00:00 +0000\r\nMessage-ID: <oversized@example.com>\r\n\r\n{body}"
        ),
    );
    for (sub, folder) in [
        ("inbox", "Inbox"),
        ("projects", "Inbox/Projects"),
        ("big", "Big"),
    ] {
        let path = mail.join(sub);
        cli.ok(&[
            "archive",
            "import",
            "--user",
            "alice",
            "--folder",
            folder,
            path.to_str().unwrap(),
        ]);
    }
    Setup {
        emu,
        _tmp: tmp,
        cli,
        target,
    }
}

impl Setup {
    /// `archive restore --user alice --credentials contoso ARGS --json`.
    fn restore(&self, args: &[&str]) -> support::Run {
        let mut all = vec!["archive", "restore", "--credentials", "contoso", "--json"];
        all.extend_from_slice(args);
        self.cli.run(&all)
    }
}

/// The report on stdout, with exactly the fixed keys.
fn report(run: &support::Run) -> Value {
    let value: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "no single JSON document ({e}):\n{}\n{}",
            run.stdout,
            tail(&run.stderr)
        )
    });
    let keys: BTreeSet<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(REPORT_KEYS), "{value}");
    value
}

fn counts(report: &Value) -> (u64, u64, u64) {
    (
        report["restored"].as_u64().unwrap(),
        report["skipped_existing"].as_u64().unwrap(),
        report["failed"].as_u64().unwrap(),
    )
}

/// Today's default target folder, read around a run (a run across midnight may take
/// either day).
fn default_folders() -> [String; 2] {
    let today = chrono::Utc::now().date_naive();
    [
        format!("Restored/{today}"),
        format!("Restored/{}", today.succ_opt().unwrap()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_report_has_its_fixed_keys_and_a_rerun_restores_nothing() {
    let s = setup().await;
    let folders = default_folders();
    let run = s.restore(&[
        "--user",
        "alice",
        "--folder",
        "Inbox",
        "--to-mailbox",
        &s.target,
    ]);
    assert_eq!(run.code, 0, "{}", tail(&run.stderr));
    let first = report(&run);
    assert_eq!(counts(&first), (SMALL as u64, 0, 0), "{first}");
    assert_eq!(first["to_mailbox"], s.target.as_str());
    assert!(
        folders.iter().any(|f| first["to_folder"] == f.as_str()),
        "{first}"
    );
    assert!(first["bytes"].as_u64().unwrap() > 0);
    assert_eq!(first["failures"], Value::Array(Vec::new()));
    let ids = s.emu.message_ids(&s.target);
    assert_eq!(ids.len(), SMALL);
    for id in &ids {
        let state = s.emu.message_state(&s.target, id).unwrap();
        assert!(!state.is_draft && state.created, "{state:?}");
    }
    let to_folder = first["to_folder"].as_str().unwrap();
    let mut path: Vec<&str> = to_folder.split('/').collect();
    path.extend(["Inbox", "Projects"]);
    assert!(s.emu.folder_id_by_path(&s.target, &path).is_some());

    let again = s.restore(&[
        "--user",
        "alice",
        "--folder",
        "Inbox",
        "--to-mailbox",
        &s.target,
    ]);
    assert_eq!(again.code, 0, "{}", tail(&again.stderr));
    let again = report(&again);
    assert_eq!(counts(&again), (0, SMALL as u64, 0), "{again}");
    assert_eq!(again["bytes"], 0);
    assert_eq!(s.emu.message_count(&s.target), SMALL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_mime_over_the_limit_is_refused_by_name_in_the_report() {
    let s = setup().await;
    let run = s.restore(&[
        "--user",
        "alice",
        "--folder",
        "Big",
        "--to-mailbox",
        &s.target,
        "--exact-mime",
    ]);
    assert_eq!(run.code, 1, "{}", tail(&run.stderr));
    let refused = report(&run);
    assert_eq!(counts(&refused), (0, 0, 1), "{refused}");
    let error = refused["failures"][0]["error"].as_str().unwrap();
    for needle in ["3145728", "without --exact-mime"] {
        assert!(error.contains(needle), "{needle}: {error}");
    }
    assert_eq!(refused["failures"][0]["folder"], "Big");
    assert!(
        support::error_line(&run.stderr).contains("run the same restore again"),
        "{}",
        tail(&run.stderr)
    );
    assert_eq!(s.emu.message_count(&s.target), 0, "nothing written");

    // The default mode restores it.
    let run = s.restore(&[
        "--user",
        "alice",
        "--folder",
        "Big",
        "--to-mailbox",
        &s.target,
    ]);
    assert_eq!(run.code, 0, "{}", tail(&run.stderr));
    assert_eq!(counts(&report(&run)), (1, 0, 0));
}

/// Each part of an error chain (`a: b: c`) is said once: a cause is not repeated by the
/// error that wraps it.
fn said_once(case: &str, error: &str) {
    let parts: Vec<&str> = error
        .trim_start_matches("error: ")
        .split(": ")
        .map(str::trim)
        .filter(|p| p.len() > 12)
        .collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..]
                .iter()
                .any(|later| later.contains(part) || part.contains(later)),
            "{case}: {part:?} is said twice: {error}"
        );
    }
}

/// One bad-input case: extra arguments, the culprits its error must name, and what to do
/// to the tenant before (and undo after) the run.
struct Case<'a> {
    name: &'a str,
    args: Vec<String>,
    culprits: Vec<String>,
    withdraw: &'a [&'a str],
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_culprit_and_leaves_nothing_half_done() {
    let s = setup().await;
    let denied = s
        .emu
        .users()
        .into_iter()
        .find(|u| u.access_denied && u.has_mailbox)
        .unwrap()
        .upn;
    let ghost = format!("ghost@{}", s.emu.tenant_domain());
    let unknown_id = "0".repeat(64);
    let args = |extra: &[&str]| -> Vec<String> { extra.iter().map(|a| a.to_string()).collect() };
    let inbox = ["--user", "alice", "--folder", "Inbox"];
    let to = |mailbox: &str| {
        let mut a = args(&inbox);
        a.extend(["--to-mailbox".to_string(), mailbox.to_string()]);
        a
    };
    let cases = [
        Case {
            name: "unknown archive user",
            args: args(&[
                "--user",
                "nobody",
                "--folder",
                "Inbox",
                "--to-mailbox",
                &s.target,
            ]),
            culprits: vec!["nobody".into()],
            withdraw: &[],
        },
        Case {
            name: "unknown message id",
            args: args(&[
                "--user",
                "alice",
                "--id",
                &unknown_id,
                "--to-mailbox",
                &s.target,
            ]),
            culprits: vec![unknown_id.clone(), "alice".into()],
            withdraw: &[],
        },
        Case {
            name: "mailbox outside the app's access policy (403)",
            args: to(&denied),
            culprits: vec![denied.clone(), "ErrorAccessDenied".into()],
            withdraw: &[],
        },
        Case {
            name: "no such mailbox",
            args: to(&ghost),
            culprits: vec![ghost.clone()],
            withdraw: &[],
        },
        Case {
            name: "Mail.ReadWrite withdrawn",
            args: to(&s.target),
            culprits: vec![s.target.clone(), "Mail.ReadWrite".into()],
            withdraw: &["Mail.ReadWrite"],
        },
    ];
    let check = |case: &Case<'_>| {
        let denied_before = s.emu.message_count(&denied);
        s.emu.set_withdrawn_app_roles(case.withdraw);
        let run = s.restore(&strs(&case.args));
        s.emu.set_withdrawn_app_roles(&[]);
        assert_eq!(run.code, 1, "{}: {}", case.name, tail(&run.stderr));
        assert!(
            run.stdout.trim().is_empty(),
            "{}: a stopped restore prints no report: {}",
            case.name,
            run.stdout
        );
        let error = support::error_line(&run.stderr);
        said_once(case.name, &error);
        for culprit in &case.culprits {
            assert!(
                error.contains(culprit.as_str()),
                "{}: the error does not name {culprit:?}: {error}",
                case.name
            );
        }
        assert_eq!(
            s.emu.message_count(&s.target),
            0,
            "{}: wrote to the target",
            case.name
        );
        assert_eq!(s.emu.message_count(&denied), denied_before, "{}", case.name);
    };
    for case in &cases {
        check(case);
    }

    // Nothing half-done: the same restore, now allowed, completes with one copy of each.
    let run = s.restore(&to(&s.target).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(run.code, 0, "{}", tail(&run.stderr));
    assert_eq!(counts(&report(&run)), (SMALL as u64, 0, 0));
    assert_eq!(s.emu.message_count(&s.target), SMALL);
}
