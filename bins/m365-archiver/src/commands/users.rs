//! `users` commands: local users (archive owners), synchronised from the tenant's
//! directory or added by hand. A sync never deletes anyone.

use std::process::ExitCode;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use directory_sync::{LocalUser, MailboxKind, Role, SyncOptions, UserOrigin};
use serde::Serialize;

use crate::cli::UsersCommand;
use crate::output::Table;
use crate::{CALLER, Ctx};

/// Runs one `users` command.
pub async fn run(ctx: &Ctx, cmd: UsersCommand) -> Result<ExitCode> {
    match cmd {
        UsersCommand::Sync {
            credentials,
            include_disabled,
            include_guests,
        } => sync(ctx, &credentials, include_disabled, include_guests).await,
        UsersCommand::List => list(ctx),
        UsersCommand::Add {
            name,
            email,
            password_file,
        } => add(ctx, &name, &email, password_file.as_deref()),
        UsersCommand::Remove { name } => remove(ctx, &name),
    }
}

/// Synchronises the local users from the directory of credential `credentials`
/// and prints the report (`users sync`, also the demo's).
pub async fn sync_and_print(
    ctx: &Ctx,
    credentials: &str,
    include_disabled: bool,
    include_guests: bool,
) -> Result<directory_sync::SyncReport> {
    let options = SyncOptions {
        include_disabled,
        include_guests,
        ..SyncOptions::default()
    };
    let progress = crate::progress::Progress::new("users sync", None, ctx.out.json);
    let report = ctx.service.sync_users(CALLER, credentials, &options).await;
    progress.finish();
    let report = report?;
    ctx.out.emit(&report, || {
        let mut text = format!(
            "directory sync: {} created, {} updated, {} deactivated, {} unchanged, {} skipped\n",
            report.created.len(),
            report.updated.len(),
            report.deactivated.len(),
            report.unchanged.len(),
            report.skipped.len()
        );
        for (user, reason) in &report.skipped {
            text.push_str(&format!("  skipped {user}: {reason}\n"));
        }
        for warning in &report.warnings {
            text.push_str(&format!("warning: {warning}\n"));
        }
        text
    })?;
    Ok(report)
}

async fn sync(
    ctx: &Ctx,
    credentials: &str,
    include_disabled: bool,
    include_guests: bool,
) -> Result<ExitCode> {
    sync_and_print(ctx, credentials, include_disabled, include_guests).await?;
    Ok(ExitCode::SUCCESS)
}

/// A local user as `users list --json` shows it.
#[derive(Debug, Serialize)]
struct ListedUser<'a> {
    name: &'a str,
    display_name: Option<&'a str>,
    email: Option<&'a str>,
    aliases: &'a [String],
    enabled: bool,
    /// `directory` or `manual`.
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_id: Option<&'a str>,
    role: Role,
    has_archive: bool,
    /// `user`, `shared`, `room` or `equipment`.
    kind: MailboxKind,
}

fn listed(user: &LocalUser) -> ListedUser<'_> {
    let (source, object_id) = match &user.origin {
        UserOrigin::Directory { object_id } => ("directory", Some(object_id.as_str())),
        UserOrigin::Manual => ("manual", None),
    };
    ListedUser {
        name: &user.name,
        display_name: user.display_name.as_deref(),
        email: user.email.as_deref(),
        aliases: &user.aliases,
        enabled: user.enabled,
        source,
        object_id,
        role: user.role,
        has_archive: user.has_archive,
        kind: user.mailbox_kind(),
    }
}

fn list(ctx: &Ctx) -> Result<ExitCode> {
    // Read-only: listing works on a full disk and never creates anything.
    let users = ctx.service.list_users(CALLER)?;
    let rows: Vec<ListedUser<'_>> = users.iter().map(listed).collect();
    ctx.out.emit(&rows, || {
        if rows.is_empty() {
            return "no users (synchronise them with `users sync` or add one with `users add`)"
                .to_string();
        }
        let mut table = Table::new(&[
            "NAME", "EMAIL", "KIND", "ALIASES", "ENABLED", "SOURCE", "ARCHIVE",
        ]);
        for u in &rows {
            table.row(vec![
                u.name.to_string(),
                u.email.unwrap_or("").to_string(),
                u.kind.to_string(),
                u.aliases.join(","),
                if u.enabled { "yes".into() } else { "no".into() },
                u.source.to_string(),
                if u.has_archive {
                    "yes".into()
                } else {
                    "".into()
                },
            ]);
        }
        table.render()
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The password kept in `path`: its content less one trailing newline. Warns when
/// others may read the file.
fn read_password_file(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read --password-file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "warning: --password-file {} may be read by other users (mode {:03o}): run `chmod 600` on it, and change the password if they could",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --password-file {}", path.display()))?;
    let password = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    archiver_service::check_password(password)
        .with_context(|| format!("--password-file {}", path.display()))?;
    Ok(password.to_string())
}

fn add(ctx: &Ctx, name: &str, emails: &[String], password_file: Option<&Path>) -> Result<ExitCode> {
    // The password is checked before the user exists, so a bad one adds nobody.
    let password = password_file.map(read_password_file).transpose()?;
    let user = ctx.service.add_user(CALLER, name, emails)?;
    if let Some(password) = password {
        ctx.service.set_local_password(CALLER, name, &password)?;
    }
    let addresses: Vec<String> = user.email.iter().chain(&user.aliases).cloned().collect();
    ctx.out.emit(&listed(&user), || {
        format!("user `{name}` added ({})", addresses.join(", "))
    })?;
    Ok(ExitCode::SUCCESS)
}

fn remove(ctx: &Ctx, name: &str) -> Result<ExitCode> {
    ctx.service.remove_user(CALLER, name)?;
    ctx.out.emit(&serde_json::json!({ "removed": name }), || {
        format!("user `{name}` removed")
    })?;
    Ok(ExitCode::SUCCESS)
}
