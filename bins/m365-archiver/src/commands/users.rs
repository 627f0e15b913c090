//! `users` commands: local users (archive owners), synchronised from the tenant's
//! directory or added by hand. A sync never deletes anyone.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use directory_sync::{LocalUser, Role, SyncOptions, UserOrigin};
use m365_archiver::datadir::{Access, DataDir};
use m365_archiver::wiring;
use serde::Serialize;

use crate::Ctx;
use crate::cli::UsersCommand;
use crate::output::Table;

/// Runs one `users` command.
pub async fn run(ctx: &Ctx, cmd: UsersCommand) -> Result<ExitCode> {
    match cmd {
        UsersCommand::Sync {
            credentials,
            include_disabled,
            include_guests,
        } => sync(ctx, &credentials, include_disabled, include_guests).await,
        UsersCommand::List => list(ctx),
        UsersCommand::Add { name, email } => add(ctx, &name, &email),
        UsersCommand::Remove { name } => remove(ctx, &name),
    }
}

/// Synchronises the local users from the directory of credential `credentials`
/// and prints the report (`users sync`, also the demo's).
pub async fn sync_and_print(
    ctx: &Ctx,
    dir: &DataDir,
    credentials: &str,
    include_disabled: bool,
    include_guests: bool,
) -> Result<directory_sync::SyncReport> {
    let credential = wiring::load_credential(dir, credentials)?;
    let connection = wiring::connect(&credential)?;
    let Some(directory) = wiring::directory_source(&connection)? else {
        bail!("directory synchronisation is not available in this build");
    };
    let store = wiring::open_user_store(dir)?;
    let options = SyncOptions {
        include_disabled,
        include_guests,
    };
    let progress = crate::progress::Progress::new("users sync", None, ctx.out.json);
    let report = directory_sync::sync(directory.as_ref(), store.as_ref(), &options)
        .await
        .with_context(|| format!("directory sync with credential `{credentials}`"))?;
    progress.finish();
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
    // The credential must exist before anything is written.
    let existing = DataDir::open(&ctx.data_dir, Access::Read)
        .with_context(|| format!("no credential named `{credentials}`"))?;
    wiring::load_credential(&existing, credentials)?;
    let dir = DataDir::open(&ctx.data_dir, Access::Write)?;
    sync_and_print(ctx, &dir, credentials, include_disabled, include_guests).await?;
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
    }
}

fn list(ctx: &Ctx) -> Result<ExitCode> {
    // Read-only: listing works on a full disk and never creates anything.
    let users = if ctx.data_dir.is_dir() {
        let dir = DataDir::open(&ctx.data_dir, Access::Read)?;
        match wiring::open_user_store_read_only(&dir)? {
            Some(store) => store.list()?,
            None => Vec::new(),
        }
    } else {
        Vec::new()
    };
    let rows: Vec<ListedUser<'_>> = users.iter().map(listed).collect();
    ctx.out.emit(&rows, || {
        if rows.is_empty() {
            return "no users (synchronise them with `users sync` or add one with `users add`)"
                .to_string();
        }
        let mut table = Table::new(&["NAME", "EMAIL", "ALIASES", "ENABLED", "SOURCE", "ARCHIVE"]);
        for u in &rows {
            table.row(vec![
                u.name.to_string(),
                u.email.unwrap_or("").to_string(),
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

fn add(ctx: &Ctx, name: &str, emails: &[String]) -> Result<ExitCode> {
    if let Err(why) = directory_sync::validate_name(name) {
        bail!("user name `{name}`: {why}");
    }
    let mut addresses = Vec::new();
    for email in emails {
        let Some(address) = directory_sync::normalize_address(email) else {
            bail!("--email `{email}` is not a mail address");
        };
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    let dir = DataDir::open(&ctx.data_dir, Access::Write)?;
    let store = wiring::open_user_store(&dir)?;
    if store.get(name)?.is_some() {
        bail!("a user named `{name}` already exists");
    }
    for address in &addresses {
        if let Some(owner) = store.find_by_address(address)? {
            bail!("address {address} already belongs to user `{}`", owner.name);
        }
    }
    let user = LocalUser {
        name: name.to_string(),
        display_name: None,
        email: addresses.first().cloned(),
        aliases: addresses.iter().skip(1).cloned().collect(),
        origin: UserOrigin::Manual,
        enabled: true,
        role: Role::User,
        has_archive: false,
    };
    store.put(&user)?;
    ctx.out.emit(&listed(&user), || {
        format!("user `{name}` added ({})", addresses.join(", "))
    })?;
    Ok(ExitCode::SUCCESS)
}

fn remove(ctx: &Ctx, name: &str) -> Result<ExitCode> {
    if !ctx.data_dir.is_dir() {
        bail!("no user named `{name}`");
    }
    let dir = DataDir::open(&ctx.data_dir, Access::Write)?;
    if !wiring::has_user_store(&dir) {
        bail!("no user named `{name}`");
    }
    let store = wiring::open_user_store(&dir)?;
    if store.get(name)?.is_none() {
        bail!("no user named `{name}` (see `users list`)");
    }
    store.remove(name)?;
    ctx.out.emit(&serde_json::json!({ "removed": name }), || {
        format!("user `{name}` removed")
    })?;
    Ok(ExitCode::SUCCESS)
}
