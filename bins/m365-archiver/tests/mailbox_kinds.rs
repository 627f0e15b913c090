//! Mailbox kinds and empty selections through the command line, against an emulated
//! tenant over real HTTP: a profile that selects nothing is flagged when it is created
//! and fails when it runs, both with the advice to fill the user list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use m365_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;
use support::{Archiver, custom_cloud_args, strs};

const SECRET_VAR: &str = "CONTOSO_CLIENT_SECRET";

/// The CLI on a fresh data directory with credential `contoso` for `emu`.
fn archiver(emu: &Emulator, data: &std::path::Path) -> Archiver {
    let mut cli = Archiver::new(data, vec![emu.client_secret()]);
    cli.env.push((SECRET_VAR.into(), emu.client_secret()));
    let mut add = custom_cloud_args(emu, "contoso");
    add.extend(["--secret-env".into(), SECRET_VAR.into()]);
    cli.ok(&strs(&add));
    cli
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_selecting_no_mailbox_is_flagged_and_its_run_fails() {
    let emu = Emulator::start(EmulatorConfig {
        users: 2,
        messages_per_user: 3,
        seed: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cli = archiver(&emu, &tmp.path().join("data"));

    // No local users yet: created, with the warning on stderr and in the JSON.
    let created = cli.ok(&[
        "profile",
        "create",
        "everyone",
        "--credentials",
        "contoso",
        "--all",
        "--json",
    ]);
    let json: Value = serde_json::from_str(&created.stdout).unwrap();
    assert_eq!(json["name"], "everyone");
    assert_eq!(
        json["source"]["mailbox_kinds"],
        serde_json::json!(["user", "shared"])
    );
    let warning = json["warning"].as_str().unwrap();
    for advice in ["users sync --credentials contoso", "--sync-directory"] {
        assert!(warning.contains(advice), "{warning}");
        assert!(created.stderr.contains(advice), "{}", created.stderr);
    }
    let shown = cli.ok(&["profile", "show", "everyone"]);
    assert!(
        shown.stdout.contains("mailbox_kinds") && shown.stdout.contains("\"shared\""),
        "{}",
        shown.stdout
    );

    // Its run archives nothing: a failure with the same advice, not "ok".
    let run = cli.run(&["profile", "run", "everyone", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["status"], "failed");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("users sync --credentials contoso"),
        "{report}"
    );

    // Once the users are there, a new profile selects them without a warning.
    cli.ok(&["users", "sync", "--credentials", "contoso"]);
    let created = cli.json(&[
        "profile",
        "create",
        "staff",
        "--credentials",
        "contoso",
        "--all",
    ]);
    assert!(created.get("warning").is_none(), "{created}");
    // A profile that synchronises the directory first needs no warning either.
    let synced = cli.json(&[
        "profile",
        "create",
        "synced",
        "--credentials",
        "contoso",
        "--all",
        "--sync-directory",
    ]);
    assert!(synced.get("warning").is_none(), "{synced}");
    emu.shutdown().await;
}
