//! The command line driven as an administrator's script would drive it, against an
//! emulated tenant over real HTTP: every command is a real process, every output is
//! checked for secrets and panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use m365_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;
use support::{Archiver, custom_cloud_args, snapshot, strs, write_pems};

const SECRET_VAR: &str = "CONTOSO_CLIENT_SECRET";

async fn small_tenant(special_users: bool) -> Emulator {
    Emulator::start(EmulatorConfig {
        users: 3,
        messages_per_user: 12,
        seed: 11,
        special_users,
        ..Default::default()
    })
    .await
    .expect("emulator starts")
}

fn secrets_of(emu: &Emulator) -> Vec<String> {
    let key_body: String = emu
        .private_key_pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .take(2)
        .collect();
    vec![emu.client_secret(), emu.expired_client_secret(), key_body]
}

fn regular_users(emu: &Emulator) -> Vec<String> {
    emu.users()
        .into_iter()
        .filter(|u| u.enabled && !u.guest && u.has_mailbox && !u.access_denied && u.mail.is_some())
        .map(|u| u.upn)
        .collect()
}

fn header(mime: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(mime);
    let prefix = format!("{}:", name.to_ascii_lowercase());
    text.lines()
        .take_while(|l| !l.is_empty())
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
}

fn files_under(dir: &Path) -> Vec<Vec<u8>> {
    support::snapshot(dir).into_values().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_script_archives_searches_exports_and_verifies() {
    let emu = small_tenant(false).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut cli = Archiver::new(&data, secrets_of(&emu));
    cli.env.push((SECRET_VAR.into(), emu.client_secret()));

    // Credentials: a secret kept as an environment reference, then a certificate.
    let mut add = custom_cloud_args(&emu, "contoso");
    add.extend(["--secret-env".into(), SECRET_VAR.into()]);
    cli.ok(&strs(&add));
    let (cert, key) = write_pems(&emu, tmp.path());
    let mut add_cert = custom_cloud_args(&emu, "contoso-cert");
    add_cert.extend([
        "--certificate".into(),
        cert.display().to_string(),
        "--private-key".into(),
        key.display().to_string(),
    ]);
    cli.ok(&strs(&add_cert));
    let secret_file = tmp.path().join("client-secret.txt");
    std::fs::write(&secret_file, format!("{}\n", emu.client_secret())).unwrap();
    let mut add_file = custom_cloud_args(&emu, "contoso-file");
    add_file.extend(["--secret-file".into(), secret_file.display().to_string()]);
    cli.ok(&strs(&add_file));
    cli.ok(&["credentials", "test", "contoso-file"]);
    cli.ok(&["credentials", "remove", "contoso-file"]);
    let stored = std::fs::read_to_string(data.join("credentials/contoso.toml")).unwrap();
    assert!(
        stored.contains(SECRET_VAR),
        "the secret stays an environment reference"
    );
    use std::os::unix::fs::PermissionsExt;
    for path in [
        data.clone(),
        data.join("credentials"),
        data.join("credentials/contoso.toml"),
    ] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o077;
        assert_eq!(mode, 0, "{} is open to group or others", path.display());
    }
    let listed = cli.json(&["credentials", "list"]);
    let names: BTreeSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["contoso", "contoso-cert"]));

    let upns = regular_users(&emu);
    cli.ok(&["credentials", "test", "contoso"]);
    cli.ok(&["credentials", "test", "contoso-cert", "--mailbox", &upns[0]]);

    // Users from the directory.
    cli.ok(&["users", "sync", "--credentials", "contoso"]);
    let users = cli.json(&["users", "list"]);
    let emails: BTreeSet<String> = users
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["email"].as_str().map(str::to_lowercase))
        .collect();
    for upn in &upns {
        let mail = emu
            .users()
            .into_iter()
            .find(|u| &u.upn == upn)
            .unwrap()
            .mail
            .unwrap();
        assert!(
            emails.contains(&mail.to_lowercase()),
            "{mail} not synchronised: {emails:?}"
        );
    }

    // An all-mailboxes profile with directory sync, run once.
    cli.ok(&[
        "profile",
        "create",
        "all-staff",
        "--credentials",
        "contoso",
        "--all",
        "--sync-directory",
    ]);
    let probe = cli.json(&["profile", "test", "all-staff"]);
    assert_eq!(probe["ok"], true, "{probe}");
    let shown = cli.ok(&["profile", "show", "all-staff"]);
    assert!(shown.stdout.contains("all-staff"));
    let report = cli.json(&["profile", "run", "all-staff"]);
    assert_eq!(report["profile"], "all-staff");
    let mailboxes = report["mailboxes"].as_array().unwrap();
    let mut expected_total = 0;
    for upn in &upns {
        let expected = emu.message_count(upn) as u64;
        expected_total += expected;
        let mailbox = mailboxes
            .iter()
            .find(|m| m["mailbox"].as_str().unwrap().eq_ignore_ascii_case(upn))
            .unwrap_or_else(|| panic!("{upn} missing from the report: {report}"));
        assert_eq!(
            mailbox["messages_archived"].as_u64(),
            Some(expected),
            "{upn}: {mailbox}"
        );
        assert_eq!(
            mailbox["messages_failed"].as_u64(),
            Some(0),
            "{upn}: {mailbox}"
        );
    }
    assert_eq!(
        report["totals"]["messages_archived"].as_u64(),
        Some(expected_total)
    );
    let stats = cli.json(&["archive", "stats"]);
    assert_eq!(stats["messages"].as_u64(), Some(expected_total), "{stats}");

    // A second run archives nothing new.
    let again = cli.json(&["profile", "run", "all-staff"]);
    assert_eq!(
        again["totals"]["messages_archived"].as_u64(),
        Some(0),
        "{again}"
    );

    // Search by a word of a real subject.
    let first = &upns[0];
    let ids = emu.message_ids(first);
    let (subject_word, probe_id) = ids
        .iter()
        .find_map(|id| {
            let mime = emu.message_mime(first, id)?;
            let subject = header(&mime, "Subject")?;
            let word = subject
                .split(|c: char| !c.is_alphanumeric())
                .find(|w| w.len() >= 5 && w.is_ascii())?
                .to_string();
            Some((word, id.clone()))
        })
        .expect("a message with a plain subject word");
    let hits = cli.json(&["archive", "search", &subject_word, "--limit", "50"]);
    let hits = hits.as_array().unwrap();
    assert!(!hits.is_empty(), "no hit for {subject_word:?}");
    let hit_id = hits[0]["id"].as_str().unwrap().to_string();
    let shown = cli.ok(&["archive", "show", &hit_id]);
    assert!(!shown.stdout.is_empty());

    // Export: the files are exactly the bytes Graph served.
    let user_name = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| {
            u["email"].as_str().is_some_and(|e| {
                let mail = emu
                    .users()
                    .into_iter()
                    .find(|x| &x.upn == first)
                    .unwrap()
                    .mail
                    .unwrap();
                e.eq_ignore_ascii_case(&mail)
            })
        })
        .map(|u| u["name"].as_str().unwrap().to_string())
        .unwrap();
    let out = tmp.path().join("export");
    cli.ok(&[
        "archive",
        "export",
        "--user",
        &user_name,
        "--format",
        "eml",
        "--out",
        out.to_str().unwrap(),
    ]);
    let exported: BTreeSet<Vec<u8>> = files_under(&out).into_iter().collect();
    let served: BTreeSet<Vec<u8>> = ids
        .iter()
        .filter_map(|id| emu.message_mime(first, id))
        .collect();
    assert_eq!(exported.len(), served.len());
    assert!(exported == served, "exported bytes differ from $value");
    assert!(exported.contains(&emu.message_mime(first, &probe_id).unwrap()));

    // mbox export and re-import into another archive adds the same messages once.
    let mbox = tmp.path().join("export.mbox");
    cli.ok(&[
        "archive",
        "export",
        "--user",
        &user_name,
        "--format",
        "mbox",
        "--out",
        mbox.to_str().unwrap(),
    ]);
    cli.ok(&[
        "users",
        "add",
        "restored",
        "--email",
        "restored@example.com",
    ]);
    cli.ok(&[
        "archive",
        "import",
        "--user",
        "restored",
        "--folder",
        "Restored",
        mbox.to_str().unwrap(),
    ]);
    cli.ok(&[
        "archive",
        "import",
        "--user",
        "restored",
        "--folder",
        "Restored",
        mbox.to_str().unwrap(),
    ]);
    let stats = cli.json(&["archive", "stats"]);
    assert_eq!(
        stats["users"]["restored"].as_u64(),
        Some(served.len() as u64),
        "{stats}"
    );

    // Integrity.
    let verify = cli.json(&["archive", "verify"]);
    assert!(verify.is_object(), "{verify}");
    let hits = cli.json(&["archive", "search", &subject_word, "--limit", "50"]);
    let hits = hits.as_array().unwrap();
    cli.ok(&["archive", "reindex"]);
    let hits_after = cli.json(&["archive", "search", &subject_word, "--limit", "50"]);
    assert_eq!(hits_after.as_array().unwrap().len(), hits.len());

    // Profiles and credentials can be removed.
    cli.ok(&["profile", "remove", "all-staff"]);
    cli.fails(&["profile", "show", "all-staff"], &["all-staff"]);
    cli.ok(&["credentials", "remove", "contoso-cert"]);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_culprit_and_writes_nothing() {
    let emu = small_tenant(true).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut cli = Archiver::new(&data, secrets_of(&emu));
    cli.env.push((SECRET_VAR.into(), emu.client_secret()));
    cli.env
        .push(("WRONG_SECRET".into(), format!("{}x", emu.client_secret())));

    let mut add = custom_cloud_args(&emu, "contoso");
    add.extend(["--secret-env".into(), SECRET_VAR.into()]);
    cli.ok(&strs(&add));
    std::fs::create_dir_all(data.join("profiles")).unwrap();
    std::fs::write(
        data.join("profiles").join("broken.toml"),
        "name = \"broken\"\n[source\nkind = 7\n",
    )
    .unwrap();

    let check = |args: &[&str], culprits: &[&str]| {
        let before = snapshot(&data);
        cli.fails(args, culprits);
        assert!(
            before == snapshot(&data),
            "{args:?} changed the data directory"
        );
    };

    // Missing profile, malformed profile, unknown credentials.
    check(&["profile", "run", "nobody"], &["nobody"]);
    check(&["profile", "show", "nobody"], &["nobody"]);
    check(&["profile", "run", "broken"], &["broken.toml"]);
    check(
        &["profile", "create", "p", "--credentials", "ghost", "--all"],
        &["ghost"],
    );
    check(&["users", "sync", "--credentials", "ghost"], &["ghost"]);
    check(&["credentials", "test", "ghost"], &["ghost"]);

    // Unreachable login URL and wrong secret: nothing is stored.
    let mut unreachable = custom_cloud_args(&emu, "offline");
    let at = unreachable.iter().position(|a| a == "--login-url").unwrap();
    unreachable[at + 1] = "http://127.0.0.1:9/".into();
    unreachable.extend(["--secret-env".into(), SECRET_VAR.into()]);
    check(&strs(&unreachable), &["127.0.0.1:9"]);
    let mut wrong = custom_cloud_args(&emu, "wrong");
    wrong.extend(["--secret-env".into(), "WRONG_SECRET".into()]);
    check(&strs(&wrong), &["AADSTS7000215"]);
    let mut unset = custom_cloud_args(&emu, "unset");
    unset.extend(["--secret-env".into(), "NO_SUCH_VARIABLE_SET".into()]);
    check(&strs(&unset), &["NO_SUCH_VARIABLE_SET"]);
    let mut no_file = custom_cloud_args(&emu, "nofile");
    no_file.extend(["--secret-file".into(), "/nonexistent/secret.txt".into()]);
    check(&strs(&no_file), &["/nonexistent/secret.txt"]);

    // A data directory that cannot be written: its path is named, nothing appears.
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let unwritable = blocker.join("data");
    let cli2 = Archiver::new(&unwritable, secrets_of(&emu));
    let run = cli2.fails(
        &["users", "add", "alice", "--email", "alice@example.com"],
        &[],
    );
    assert!(support::error_line(&run.stderr).contains(&unwritable.display().to_string()));
    assert!(!unwritable.exists());

    // A group-writable data directory is refused for credentials and profiles.
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o775)).unwrap();
    let cli3 = Archiver::new(&shared, secrets_of(&emu));
    let mut add_shared = custom_cloud_args(&emu, "contoso");
    add_shared.extend(["--secret-env".into(), SECRET_VAR.into()]);
    let run = cli3.fails(&strs(&add_shared), &["writable"]);
    assert!(support::error_line(&run.stderr).contains(&shared.display().to_string()));
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0);

    // Usage errors exit 2.
    let run = cli.run(&["profile", "create", "p", "--credentials", "contoso"]);
    assert_eq!(run.code, 2);
    let run = cli.run(&["archive", "frobnicate"]);
    assert_eq!(run.code, 2);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_mailbox_fails_the_run_but_not_the_others() {
    let emu = small_tenant(true).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut cli = Archiver::new(&data, secrets_of(&emu));
    cli.env.push((SECRET_VAR.into(), emu.client_secret()));
    let mut add = custom_cloud_args(&emu, "contoso");
    add.extend(["--secret-env".into(), SECRET_VAR.into()]);
    cli.ok(&strs(&add));
    cli.ok(&[
        "profile",
        "create",
        "everyone",
        "--credentials",
        "contoso",
        "--all",
        "--sync-directory",
    ]);
    let run = cli.run(&["profile", "run", "everyone", "--json"]);
    assert_eq!(run.code, 1, "a run with a failed mailbox exits 1");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let denied = emu.users().into_iter().find(|u| u.access_denied).unwrap();
    let mailboxes = report["mailboxes"].as_array().unwrap();
    let failed = mailboxes
        .iter()
        .find(|m| {
            m["mailbox"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(&denied.upn)
        })
        .unwrap();
    let why = failed["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("needs the application permission Mail.Read (this profile deletes nothing")
            && why.contains("User.Read.All")
            && why.contains("MailboxSettings.Read"),
        "the advice names what this profile needs: {failed}"
    );
    for upn in regular_users(&emu) {
        let m = mailboxes
            .iter()
            .find(|m| m["mailbox"].as_str().unwrap().eq_ignore_ascii_case(&upn))
            .unwrap();
        assert_eq!(
            m["messages_archived"].as_u64(),
            Some(emu.message_count(&upn) as u64)
        );
    }
    // Now that the users are synchronised, the access check names the denied mailbox.
    let denied_upn = emu
        .users()
        .into_iter()
        .find(|u| u.access_denied)
        .unwrap()
        .upn;
    let probe = cli.run(&["profile", "test", "everyone"]);
    assert_eq!(
        probe.code, 1,
        "a profile with an unreadable mailbox fails its test"
    );
    assert!(probe.stdout.contains(&denied_upn), "{}", probe.stdout);
    emu.shutdown().await;
}

#[cfg(feature = "demo")]
#[test]
fn the_demo_archives_its_tenant_and_then_only_the_new_mail() {
    let tmp = tempfile::tempdir().unwrap();
    let cli = Archiver::new(&tmp.path().join("demo-data"), Vec::new());
    let summary = cli.json(&["demo", "--users", "3", "--messages-per-user", "10"]);
    let first = &summary["first_run"]["totals"];
    // Three regular mailboxes of 10 plus the disabled member's; the denied and the
    // unlicensed mailboxes are reported, not archived.
    assert_eq!(
        first["messages_archived"].as_u64(),
        summary["stats"]["messages"].as_u64().map(|m| m - 3)
    );
    assert!(
        first["messages_archived"].as_u64().unwrap() >= 30,
        "{summary}"
    );
    assert_eq!(first["messages_failed"].as_u64(), Some(0), "{summary}");
    assert_eq!(
        summary["second_run"]["totals"]["messages_archived"].as_u64(),
        Some(3),
        "{summary}"
    );
    assert!(summary["search_hits"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["kept"], true);
    // The demo's data directory is a normal one: the real commands read it.
    let mut stats = cli.json(&["archive", "stats"]);
    let space = stats.as_object_mut().unwrap();
    for key in ["free_bytes", "filesystem_bytes", "reserve_bytes"] {
        assert!(space.remove(key).is_some(), "stats show {key}");
    }
    assert_eq!(stats, summary["stats"]);
}
