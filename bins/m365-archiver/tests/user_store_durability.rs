//! The user store through the command line, killed at random points: `users add` and
//! `users sync` (against the emulator) are SIGKILLed while they run; after every kill
//! `users list --json` works and holds every user whose command finished, manual users
//! included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use m365_emulator::{Emulator, EmulatorConfig, NewUser};
use rand::{Rng, SeedableRng};
use support::{Archiver, custom_cloud_args, strs};

const SECRET_VAR: &str = "CONTOSO_CLIENT_SECRET";
const ROUNDS: u32 = 24;

/// Mail addresses of the directory users a sync takes in.
fn eligible(emu: &Emulator) -> BTreeSet<String> {
    emu.users()
        .into_iter()
        .filter(|u| u.enabled && !u.guest)
        .filter_map(|u| u.mail.map(|m| m.to_lowercase()))
        .collect()
}

/// Emails and names `users list --json` shows.
fn listed(cli: &Archiver) -> (BTreeSet<String>, BTreeSet<String>) {
    let users = cli.json(&["users", "list"]);
    let users = users.as_array().unwrap();
    let emails = users
        .iter()
        .filter_map(|u| u["email"].as_str().map(str::to_owned))
        .collect();
    let names = users
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect();
    (emails, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_user_commands_never_lose_a_finished_one() {
    let emu = Emulator::start(EmulatorConfig {
        users: 4,
        messages_per_user: 1,
        seed: 5,
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut cli = Archiver::new(&data, vec![emu.client_secret()]);
    cli.env.push((SECRET_VAR.into(), emu.client_secret()));
    let mut add = custom_cloud_args(&emu, "contoso");
    add.extend(["--secret-env".into(), SECRET_VAR.into()]);
    cli.ok(&strs(&add));

    let seed: u64 = std::env::var("USER_STORE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00C1_1DEA);
    eprintln!("kill test seed {seed} (USER_STORE_KILL_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut manual_done: BTreeSet<String> = BTreeSet::new();
    let mut synced_done: BTreeSet<String> = BTreeSet::new();
    let (mut finished, mut killed) = (0, 0);
    for round in 0..ROUNDS {
        let upn = format!("hire{round}@{}", emu.tenant_domain());
        emu.add_user(NewUser {
            upn: upn.clone(),
            mail: Some(upn.clone()),
            ..Default::default()
        })
        .unwrap();
        let manual = format!("manual{round}");
        let manual_mail = format!("{manual}@example.com");
        let sync = round % 2 == 1;
        let args: Vec<&str> = if sync {
            vec!["users", "sync", "--credentials", "contoso"]
        } else {
            vec!["users", "add", &manual, "--email", &manual_mail]
        };
        let expected = eligible(&emu);
        let mut child = Command::new(env!("CARGO_BIN_EXE_m365-archiver"))
            .arg("--data-dir")
            .arg(&data)
            .args(&args)
            .env(SECRET_VAR, emu.client_secret())
            .env_remove("M365_ARCHIVER_DATA")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The kill lands at a random point of the command's run (a delay to spread
        // the kill, not to wait for anything); a command done by then finished.
        let jitter = rng.gen_range(0..if sync { 400_000 } else { 60_000 });
        tokio::time::sleep(Duration::from_micros(jitter)).await;
        let status = match child.try_wait().unwrap() {
            Some(status) => status,
            None => {
                child.kill().unwrap();
                child.wait().unwrap()
            }
        };
        if status.success() {
            finished += 1;
            if sync {
                synced_done.extend(expected);
            } else {
                manual_done.insert(manual.clone());
            }
        } else {
            killed += 1;
        }
        let (emails, names) = listed(&cli);
        for name in &manual_done {
            assert!(
                names.contains(name),
                "round {round}: lost manual user {name}"
            );
        }
        for mail in &synced_done {
            assert!(
                emails.contains(mail),
                "round {round}: lost synced user {mail}"
            );
        }
    }
    eprintln!("{finished} commands finished, {killed} killed");
    // Every command run to its end afterwards still works and completes the set.
    cli.ok(&["users", "sync", "--credentials", "contoso"]);
    let (emails, names) = listed(&cli);
    assert!(eligible(&emu).is_subset(&emails));
    assert!(manual_done.is_subset(&names));
    emu.shutdown().await;
}
