//! Profiles: the fixed profile TOML parses, round-trips, and every bad value gets
//! an error naming the file, the field and the fix; the store writes atomically
//! with owner-only permissions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use profile_engine::{
    DeletionMode, EngineError, Profile, ProfileStore, RecoverableItems, Schedule, Select, Source,
    UnreadableItems,
};
use proptest::prelude::*;

const DESIGN_EXAMPLE: &str = r#"
name = "all-staff"
credentials = "contoso"
[source]
kind = "multiple"
select = "all"
users = []
sync_directory_first = true
[folders]
include = []
exclude = ["junkemail", "deleteditems"]
include_subfolders = true
recoverable_items = "deletions"
archive_mailbox = false
[filter]
older_than_days = 0
received_after = ""
[deletion]
mode = "never"
after_days = 90
keep_unread = true
[run]
timeout_secs = 300
parallel_mailboxes = 8
schedule = "manual"
"#;

const FILE: &str = "profiles/all-staff.toml";

#[test]
fn design_example_parses_and_round_trips() {
    let p = Profile::from_toml(FILE, DESIGN_EXAMPLE).unwrap();
    assert_eq!(p.name, "all-staff");
    assert_eq!(
        p.source,
        Source::Multiple {
            select: Select::All,
            users: vec![],
            sync_directory_first: true,
            mailbox_kinds: profile_engine::MailboxKinds::default(),
        }
    );
    assert_eq!(p.folders.exclude, vec!["junkemail", "deleteditems"]);
    assert_eq!(p.deletion.mode, DeletionMode::Never);
    assert_eq!(p.run.schedule, Schedule::Manual);
    assert_eq!(Profile::from_toml(FILE, &p.to_toml()).unwrap(), p);
}

#[test]
fn minimal_profile_gets_safe_defaults() {
    let p = Profile::from_toml(FILE, "name = \"x\"\ncredentials = \"c\"\n[source]\nkind = \"single\"\nmailbox = \"A@Contoso.com\"\ntarget_user = \"alice\"\n").unwrap();
    assert_eq!(
        p.source,
        Source::Single {
            mailbox: "a@contoso.com".into(),
            target_user: "alice".into()
        }
    );
    assert_eq!(
        p.deletion.mode,
        DeletionMode::Never,
        "by default nothing is deleted"
    );
    assert!(p.folders.include_subfolders);
    assert_eq!(p.run.parallel_mailboxes, 8);
    assert_eq!(
        p.folders.recoverable_items,
        RecoverableItems::Deletions,
        "soft-deleted mail is archived by default"
    );
    assert!(!p.folders.archive_mailbox, "the online archive is opt-in");
    assert_eq!(p.run.unreadable_items, UnreadableItems::Partial);
}

#[test]
fn hidden_mail_settings_parse_and_are_written_out() {
    for (recoverable, archive, unreadable) in [
        ("none", "true", "ok"),
        ("deletions", "false", "partial"),
        ("all", "true", "partial"),
    ] {
        let text = DESIGN_EXAMPLE
            .replacen(
                "recoverable_items = \"deletions\"",
                &format!("recoverable_items = \"{recoverable}\""),
                1,
            )
            .replacen(
                "archive_mailbox = false",
                &format!("archive_mailbox = {archive}"),
                1,
            )
            .replacen(
                "schedule = \"manual\"",
                &format!("schedule = \"manual\"\nunreadable_items = \"{unreadable}\""),
                1,
            );
        let p = Profile::from_toml(FILE, &text).unwrap();
        assert_eq!(p.folders.recoverable_items.as_str(), recoverable);
        assert_eq!(p.folders.archive_mailbox.to_string(), archive);
        assert_eq!(p.run.unreadable_items.as_str(), unreadable);
        let written = p.to_toml();
        for line in [
            format!("recoverable_items = \"{recoverable}\""),
            format!("archive_mailbox = {archive}"),
            format!("unreadable_items = \"{unreadable}\""),
        ] {
            assert!(written.contains(&line), "{line} not in {written}");
        }
        assert_eq!(Profile::from_toml(FILE, &written).unwrap(), p);
    }
}

fn check_error(replace: (&str, &str), expected: &str) {
    let text = DESIGN_EXAMPLE.replacen(replace.0, replace.1, 1);
    assert_ne!(
        text, DESIGN_EXAMPLE,
        "replacement {replace:?} did not apply"
    );
    let err = Profile::from_toml(FILE, &text).unwrap_err();
    assert!(matches!(err, EngineError::InvalidProfile(_)));
    let message = err.to_string();
    assert!(message.starts_with(FILE), "{message}");
    assert!(
        message.contains(expected),
        "expected {expected:?} in {message}"
    );
}

#[test]
fn errors_name_the_file_the_field_and_the_fix() {
    let cases: &[((&str, &str), &str)] = &[
        (
            ("select = \"all\"", "select = \"some\""),
            "[source] select = \"some\": expected one of \"all\", \"all_except\", \"only\"",
        ),
        (
            ("kind = \"multiple\"", "kind = \"many\""),
            "[source] kind = \"many\": expected one of \"single\", \"multiple\"",
        ),
        (
            ("mode = \"never\"", "mode = \"shred\""),
            "[deletion] mode = \"shred\": expected one of \"never\"",
        ),
        (
            ("after_days = 90", "after_days = 0"),
            "[deletion] after_days = 0: expected 1 to 36500",
        ),
        (
            ("schedule = \"manual\"", "schedule = \"hourly\""),
            "[run] schedule = \"hourly\": unknown form",
        ),
        (
            ("received_after = \"\"", "received_after = \"yesterday\""),
            "[filter] received_after = \"yesterday\": expected an RFC 3339 date",
        ),
        (
            ("parallel_mailboxes = 8", "parallel_mailboxes = 0"),
            "[run] parallel_mailboxes = 0: expected 1 to 64",
        ),
        (
            ("timeout_secs = 300", "timeout_secs = -1"),
            "[run] timeout_secs = -1",
        ),
        (
            ("older_than_days = 0", "older_than_days = -5"),
            "[filter] older_than_days = -5",
        ),
        (
            ("select = \"all\"", "select = \"only\""),
            "[source] users = []: select = \"only\" needs at least one",
        ),
        (
            ("users = []", "users = [\"bob\"]"),
            "select = \"all\" takes no users",
        ),
        (
            (
                "sync_directory_first = true",
                "sync_directory_first = true\nmailbox = \"a@b.c\"",
            ),
            "[source] mailbox = \"a@b.c\": only for kind = \"single\"",
        ),
        (
            ("name = \"all-staff\"", "name = \"../etc\""),
            "name = \"../etc\"",
        ),
        (
            (
                "keep_unread = true",
                "keep_unread = true\nkeep_flagged = true",
            ),
            "unknown field `keep_flagged`",
        ),
        (("[run]", "[runs]"), "unknown field `runs`"),
        (
            (
                "recoverable_items = \"deletions\"",
                "recoverable_items = \"purges\"",
            ),
            "[folders] recoverable_items = \"purges\": expected one of \"none\", \"deletions\"",
        ),
        (
            ("archive_mailbox = false", "archive_mailbox = \"yes\""),
            "archive_mailbox",
        ),
        (
            (
                "schedule = \"manual\"",
                "schedule = \"manual\"\nunreadable_items = \"fail\"",
            ),
            "[run] unreadable_items = \"fail\": expected \"partial\"",
        ),
    ];
    for (replace, expected) in cases {
        check_error(*replace, expected);
    }
}

#[test]
fn store_saves_atomically_privately_and_lists_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::new(dir.path().join("profiles"));
    let mut p = Profile::from_toml(FILE, DESIGN_EXAMPLE).unwrap();
    let path = store.save(&p).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    p.run.schedule = "daily 02:00".parse().unwrap();
    store.save(&p).unwrap();
    assert_eq!(store.load("all-staff").unwrap(), p);
    assert_eq!(store.names().unwrap(), vec!["all-staff"]);
    let leftovers: Vec<_> = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
    assert!(matches!(
        store.load("nope"),
        Err(EngineError::ProfileNotFound { .. })
    ));
    assert!(matches!(
        store.load("../x"),
        Err(EngineError::InvalidName { .. })
    ));

    // A file whose name differs from its `name` is refused, naming both.
    std::fs::write(store.dir().join("other.toml"), DESIGN_EXAMPLE).unwrap();
    let err = store.load("other").unwrap_err().to_string();
    assert!(
        err.contains("other.toml") && err.contains("must equal the file name"),
        "{err}"
    );
    store.remove("all-staff").unwrap();
    assert!(!store.exists("all-staff").unwrap());
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = Profile::from_toml(FILE, &text);
    }

    #[test]
    fn valid_profiles_round_trip(
        days in 0u32..5000, after in 1u32..5000, keep in any::<bool>(), sub in any::<bool>(),
        parallel in 1usize..=64, timeout in 1u64..=3600,
        include in proptest::collection::vec("[A-Za-z][A-Za-z0-9 ]{0,10}(/[A-Za-z0-9]{1,8})?", 0..4),
        schedule in prop_oneof![Just("manual"), Just("every 45m"), Just("daily 23:15"), Just("weekly fri 06:05")],
    ) {
        let mut p = Profile::from_toml(FILE, DESIGN_EXAMPLE).unwrap();
        p.filter.older_than_days = days;
        p.deletion.after_days = after;
        p.deletion.keep_unread = keep;
        p.deletion.mode = DeletionMode::SoftDelete;
        p.folders.include_subfolders = sub;
        p.folders.include = include.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        p.run.parallel_mailboxes = parallel;
        p.run.timeout_secs = timeout;
        p.run.schedule = schedule.parse().unwrap();
        p.folders.recoverable_items = RecoverableItems::ALL[days as usize % 3];
        p.folders.archive_mailbox = keep;
        p.run.unreadable_items = UnreadableItems::ALL[after as usize % 2];
        let text = p.to_toml();
        prop_assert_eq!(Profile::from_toml(FILE, &text).unwrap(), p);
    }
}

/// `[source] mailbox_kinds`: the default, a list parsed and written back, and every bad
/// value named with the field.
#[test]
fn mailbox_kinds_parse_round_trip_and_bad_values_are_named() {
    use profile_engine::{MailboxKind, MailboxKinds};
    let with = |line: &str| {
        DESIGN_EXAMPLE.replace(
            "sync_directory_first = true",
            &format!("sync_directory_first = true\n{line}"),
        )
    };
    let kinds_of = |p: &Profile| match &p.source {
        Source::Multiple { mailbox_kinds, .. } => *mailbox_kinds,
        other => panic!("{other:?}"),
    };
    let default = Profile::from_toml(FILE, DESIGN_EXAMPLE).unwrap();
    assert_eq!(kinds_of(&default), MailboxKinds::default());
    let written = default.to_toml();
    assert!(written.contains("mailbox_kinds"), "{written}");
    assert_eq!(Profile::from_toml(FILE, &written).unwrap(), default);
    let rooms = Profile::from_toml(
        FILE,
        &with("mailbox_kinds = [\"room\", \"user\", \"shared\"]"),
    )
    .unwrap();
    assert_eq!(
        kinds_of(&rooms),
        MailboxKinds::default().with(MailboxKind::Room)
    );
    assert_eq!(Profile::from_toml(FILE, &rooms.to_toml()).unwrap(), rooms);
    for (line, expected) in [
        (
            "mailbox_kinds = [\"user\", \"Room\"]",
            "[source] mailbox_kinds = [\"user\", \"Room\"]: \"Room\" is not a mailbox kind",
        ),
        (
            "mailbox_kinds = []",
            "[source] mailbox_kinds = []: list at least one of",
        ),
        (
            "mailbox_kinds = [\"shared\", \"shared\"]",
            "\"shared\" is listed twice",
        ),
        ("mailbox_kinds = \"user\"", "mailbox_kinds"),
    ] {
        let err = Profile::from_toml(FILE, &with(line))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(FILE) && err.contains(expected),
            "{line}: {err}"
        );
    }
    let single = "name = \"one\"\ncredentials = \"c\"\n[source]\nkind = \"single\"\n\
                  mailbox = \"a@b.c\"\ntarget_user = \"a\"\nmailbox_kinds = [\"user\"]\n";
    let err = Profile::from_toml(FILE, single).unwrap_err().to_string();
    assert!(
        err.contains("[source] mailbox_kinds") && err.contains("only for kind = \"multiple\""),
        "{err}"
    );
}
