//! `access grant | revoke | list | unblock | token` and `users add --password-file`
//! as a script drives them: `access list --json` has its fixed shape, and what the
//! command line stores is what the web's sign-in and API tokens then find.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt as _;

use archiver_service::secrecy::SecretString;
use archiver_service::{ErrorCategory, Service, ServiceOptions};
use serde_json::{Value, json};
use support::Archiver;

const PASSWORD: &str = "a long enough password";

fn with_users(root: &std::path::Path, names: &[&str]) -> Archiver {
    let cli = Archiver::new(&root.join("data"), vec![PASSWORD.to_string()]);
    for name in names {
        cli.ok(&[
            "users",
            "add",
            name,
            "--email",
            &format!("{name}@example.com"),
        ]);
    }
    cli
}

/// `users add NAME --email NAME@example.com --password-file FILE`.
fn add_with_password(cli: &Archiver, name: &str, file: &std::path::Path) -> support::Run {
    let email = format!("{name}@example.com");
    let args = ["users", "add", name, "--email", &email, "--password-file"];
    let mut args = args.to_vec();
    args.push(file.to_str().unwrap());
    cli.run(&args)
}

fn service(cli: &Archiver) -> Service {
    Service::new(&cli.data, ServiceOptions::default())
}

#[test]
fn grants_are_listed_in_the_fixed_shape_and_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let cli = with_users(tmp.path(), &["alice", "carol", "root"]);
    assert_eq!(cli.json(&["access", "list"]), json!([]));
    cli.ok(&[
        "access",
        "grant",
        "carol",
        "--role",
        "auditor",
        "--scope",
        "alice,bob",
        "--until",
        "2999-01-01",
    ]);
    cli.ok(&["access", "grant", "root", "--role", "admin"]);
    let until = chrono::Utc::now() + chrono::Duration::days(1);
    let unblocked = cli.json(&[
        "access",
        "unblock",
        "root",
        "--reason",
        "case 12",
        "--until",
        &until.to_rfc3339(),
    ]);
    assert_eq!(unblocked["reason"], "case 12");
    let listed = cli.json(&["access", "list"]);
    assert_eq!(
        listed[0],
        json!({"user": "carol", "grants": [
            {"role": "auditor", "scope": ["alice", "bob"], "until": "2999-01-01T00:00:00Z"}
        ]})
    );
    assert_eq!(listed[1]["user"], "root");
    assert_eq!(listed[1]["grants"], json!([{"role": "admin"}]));
    assert_eq!(listed[1]["unblock"]["reason"], "case 12");

    cli.ok(&["access", "revoke", "carol", "--role", "auditor"]);
    cli.ok(&["access", "revoke", "root", "--role", "admin"]);
    assert_eq!(cli.json(&["access", "list"]), json!([]));
    cli.fails(
        &["access", "revoke", "carol", "--role", "auditor"],
        &["carol", "auditor"],
    );
    cli.fails(
        &["access", "grant", "nobody", "--role", "auditor"],
        &["nobody"],
    );
    assert_eq!(
        cli.run(&["access", "grant", "carol", "--role", "root"])
            .code,
        2
    );

    let actions: Vec<String> = support::audit_actions(&cli)
        .into_iter()
        .filter(|a| a.starts_with("role_") || a == "access_unblock")
        .collect();
    assert_eq!(
        actions,
        [
            "role_grant",
            "role_grant",
            "access_unblock",
            "role_revoke",
            "role_revoke"
        ]
    );
}

#[test]
fn a_user_added_with_a_password_file_signs_in_locally() {
    let tmp = tempfile::tempdir().unwrap();
    let cli = with_users(tmp.path(), &[]);
    let file = tmp.path().join("password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let added = add_with_password(&cli, "dave", &file);
    assert_eq!(added.code, 0, "{}", added.stderr);
    assert!(!added.stderr.contains("warning"), "{}", added.stderr);
    let now = chrono::Utc::now();
    let service = service(&cli);
    let principal = service.sign_in_local("dave", PASSWORD, now).unwrap();
    assert_eq!(principal, service.principal_for("dave", now).unwrap());
    let wrong = service.sign_in_local("dave", &format!("{PASSWORD}\n"), now);
    assert_eq!(wrong.unwrap_err().category(), ErrorCategory::Forbidden);

    // A short password adds nobody; a file others may read is warned about.
    std::fs::write(&file, "short\n").unwrap();
    let short = add_with_password(&cli, "erin", &file);
    assert_eq!(short.code, 1);
    let error = support::error_line(&short.stderr);
    assert!(
        error.contains("password") && error.contains("12"),
        "{error}"
    );

    let users = cli.json(&["users", "list"]);
    assert_eq!(users.as_array().unwrap().len(), 1);
    std::fs::write(&file, PASSWORD).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warned = add_with_password(&cli, "erin", &file);
    assert_eq!(warned.code, 0, "{}", warned.stderr);
    assert!(warned.stderr.contains("chmod 600"), "{}", warned.stderr);
    assert!(service.sign_in_local("erin", PASSWORD, now).is_ok());
}

#[test]
fn a_token_created_on_the_command_line_works_until_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let cli = with_users(tmp.path(), &["alice"]);
    let created = cli.json(&[
        "access",
        "token",
        "create",
        "--user",
        "alice",
        "--name",
        "ci",
        "--scope",
        "read,export",
    ]);
    let secret = created["token"].as_str().unwrap().to_string();
    let id = created["info"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["info"]["scopes"], json!(["read", "export"]));
    let listed = cli.run(&["access", "token", "list", "--json"]);
    assert!(!listed.stdout.contains(&secret));
    let tokens: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(tokens[0]["id"], id.as_str());

    let service = service(&cli);
    let now = chrono::Utc::now();
    let token = SecretString::from(secret);
    assert!(service.principal_for_api_token(&token, now).is_ok());
    cli.ok(&["access", "token", "revoke", &id]);
    let refused = service.principal_for_api_token(&token, now).unwrap_err();
    assert_eq!(refused.category(), ErrorCategory::Forbidden);
}
