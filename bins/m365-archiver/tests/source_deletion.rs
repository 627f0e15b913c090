//! Deletion at the source leaves its trail: a profile run whose deletion rules
//! remove mail from a mailbox writes one `source_deletion` audit event per
//! mailbox naming the messages that left it, and a mailbox whose archive is under
//! a legal hold keeps its mail and says which hold kept it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;

use m365_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;
use support::{Archiver, custom_cloud_args, strs};

const SECRET_VAR: &str = "CONTOSO_CLIENT_SECRET";

/// The audit events of `action`.
fn events(cli: &Archiver, action: &str) -> Vec<Value> {
    cli.json(&["audit", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_deletion_at_a_source_is_audited_by_mailbox_and_message() {
    let emu = Emulator::start(EmulatorConfig {
        users: 2,
        messages_per_user: 10,
        seed: 23,
        special_users: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut cli = Archiver::new(&data, vec![emu.client_secret()]);
    cli.env.push((SECRET_VAR.into(), emu.client_secret()));
    let mut add = custom_cloud_args(&emu, "contoso");
    add.extend(["--secret-env".into(), SECRET_VAR.into()]);
    cli.ok(&strs(&add));
    cli.ok(&["users", "sync", "--credentials", "contoso"]);
    let users = cli.json(&["users", "list"]);
    let mailboxes: Vec<(String, String)> = emu
        .users()
        .into_iter()
        .filter(|u| u.has_mailbox && u.enabled)
        .map(|u| {
            let mail = u.mail.clone().unwrap().to_lowercase();
            let name = users
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["email"].as_str().map(str::to_lowercase).as_deref() == Some(&mail))
                .unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string();
            (u.upn, name)
        })
        .collect();
    assert_eq!(mailboxes.len(), 2, "{users}");
    let (free, held) = (&mailboxes[0], &mailboxes[1]);
    let before: BTreeSet<String> = emu.message_ids(&free.0).into_iter().collect();

    cli.ok(&[
        "profile",
        "create",
        "purge",
        "--credentials",
        "contoso",
        "--all",
        "--delete",
        "move_to_deleted_items",
        "--delete-after-days",
        "1",
    ]);
    // Unread mail too (the command line keeps the default, which leaves it).
    let file = data.join("profiles/purge.toml");
    let toml = std::fs::read_to_string(&file).unwrap();
    assert!(toml.contains("keep_unread = true"), "{toml}");
    std::fs::write(
        &file,
        toml.replace("keep_unread = true", "keep_unread = false"),
    )
    .unwrap();
    cli.ok(&[
        "hold",
        "create",
        "case-9",
        "--reason",
        "litigation",
        "--user",
        &held.1,
    ]);

    let report = cli.json(&["profile", "run", "purge"]);
    let by_mailbox = |upn: &str| {
        report["mailboxes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mailbox"].as_str().unwrap().eq_ignore_ascii_case(upn))
            .unwrap()
            .clone()
    };
    let deleted = by_mailbox(&free.0)["deleted"].as_u64().unwrap();
    assert!(deleted > 0, "{report}");
    assert_eq!(by_mailbox(&held.0)["deleted"], 0, "{report}");
    assert_eq!(
        by_mailbox(&held.0)["deletion_held"][0],
        "case-9",
        "{report}"
    );

    let audited = events(&cli, "source_deletion");
    assert_eq!(audited.len(), 2, "{audited:?}");
    let of = |upn: &str| {
        audited
            .iter()
            .find(|e| {
                e["target"]["object"]
                    .as_str()
                    .unwrap()
                    .eq_ignore_ascii_case(upn)
            })
            .unwrap_or_else(|| panic!("no event for {upn}: {audited:?}"))
            .clone()
    };
    let freed = of(&free.0);
    let named: BTreeSet<String> = freed["target"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    assert_eq!(named.len() as u64, deleted, "{freed}");
    assert!(named.is_subset(&before), "ids of the mailbox: {freed}");
    assert_eq!(freed["details"]["mode"], "move_to_deleted_items", "{freed}");
    assert_eq!(freed["details"]["deleted"], deleted.to_string(), "{freed}");
    let kept = of(&held.0);
    assert_eq!(kept["details"]["held_by"], "case-9", "{kept}");
    assert!(kept["target"].get("messages").is_none(), "{kept}");
    let run = events(&cli, "profile_run");
    assert_eq!(run[0]["details"]["deleted"], deleted.to_string(), "{run:?}");

    // A rerun deletes nothing more, and says nothing more of the free mailbox.
    cli.ok(&["profile", "run", "purge"]);
    let again = events(&cli, "source_deletion");
    assert_eq!(
        again
            .iter()
            .filter(|e| e["target"]["object"] == freed["target"]["object"])
            .count(),
        1,
        "{again:?}"
    );
}
