//! `profile` commands: create, list, show, test, run and remove archiving profiles
//! (one TOML file each under `profiles/`, the format of the design).

use std::process::ExitCode;

use anyhow::{Result, bail};
use archiver_service::{MailboxSelection, ProfileSpec};
use profile_engine::{
    CancellationToken, MailboxKinds, Profile, RunReport, RunStatus, Select, Source,
};
use serde::Serialize;

use crate::cli::{ProfileCommand, ProfileCreateArgs};
use crate::output::{Table, human_bytes};
use crate::progress::RunProgress;
use crate::{CALLER, Ctx};

/// Runs one `profile` command.
pub async fn run(ctx: &Ctx, cmd: ProfileCommand) -> Result<ExitCode> {
    match cmd {
        ProfileCommand::Create(args) => create(ctx, *args),
        ProfileCommand::List => list(ctx),
        ProfileCommand::Show { name } => show(ctx, &name),
        ProfileCommand::Test { name } => test(ctx, &name).await,
        ProfileCommand::Run { name } => run_profile(ctx, &name).await,
        ProfileCommand::Remove { name } => remove(ctx, &name),
    }
}

/// The profile `profile create` arguments describe, for the service.
pub fn spec_from_args(args: &ProfileCreateArgs) -> Result<ProfileSpec> {
    let selection = if let (Some(mailbox), Some(target_user)) = (&args.mailbox, &args.target_user) {
        MailboxSelection::Single {
            mailbox: mailbox.clone(),
            target_user: target_user.clone(),
        }
    } else if args.all {
        MailboxSelection::All
    } else if let Some(users) = &args.all_except {
        MailboxSelection::AllExcept(users.clone())
    } else if let Some(users) = &args.only {
        MailboxSelection::Only(users.clone())
    } else {
        bail!("choose the mailboxes: --mailbox with --target-user, --all, --all-except or --only");
    };
    Ok(ProfileSpec {
        name: args.name.clone(),
        credentials: args.credentials.clone(),
        selection,
        sync_directory: args.sync_directory,
        include_folders: args.include_folder.clone(),
        exclude_folders: args.exclude_folder.clone(),
        older_than_days: args.older_than_days,
        delete_mode: args.delete_mode.clone(),
        delete_after_days: args.delete_after_days,
        timeout_secs: args.timeout_secs,
        schedule: args.schedule.clone(),
    })
}

fn create(ctx: &Ctx, args: ProfileCreateArgs) -> Result<ExitCode> {
    create_profile(ctx, &args)?;
    Ok(ExitCode::SUCCESS)
}

/// `profile create --json`: the profile, and the warning when it selects no mailbox yet.
#[derive(Debug, Serialize)]
struct Created<'a> {
    #[serde(flatten)]
    profile: &'a Profile,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

/// Writes the profile `args` describe and prints it (`profile create`, also the demo's);
/// warns on stderr when it selects no mailbox today.
pub fn create_profile(ctx: &Ctx, args: &ProfileCreateArgs) -> Result<Profile> {
    let (profile, path) = ctx.service.create_profile(CALLER, &spec_from_args(args)?)?;
    let warning = ctx.service.empty_selection_warning(CALLER, &profile)?;
    if let Some(warning) = &warning
        && !ctx.out.quiet
    {
        eprintln!("warning: {warning}");
    }
    let created = Created {
        profile: &profile,
        warning,
    };
    ctx.out.emit(&created, || {
        format!(
            "profile `{}` written to {}\n\n{}",
            profile.name,
            path.display(),
            profile.to_toml()
        )
    })?;
    Ok(profile)
}

/// One line of `profile list`.
#[derive(Debug, Serialize)]
struct Listed {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    credentials: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_status: Option<RunStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn describe_source(source: &Source) -> String {
    match source {
        Source::Single {
            mailbox,
            target_user,
        } => format!("{mailbox} -> {target_user}"),
        Source::Multiple {
            select,
            users,
            sync_directory_first,
            mailbox_kinds,
        } => {
            let mut what = match select {
                Select::All => "all users".to_string(),
                Select::AllExcept => format!("all except {}", users.join(",")),
                Select::Only => format!("only {}", users.join(",")),
            };
            if *mailbox_kinds != MailboxKinds::default() {
                what.push_str(&format!(" [{mailbox_kinds}]"));
            }
            if *sync_directory_first {
                format!("{what} (directory sync)")
            } else {
                what
            }
        }
    }
}

fn list(ctx: &Ctx) -> Result<ExitCode> {
    let listed: Vec<Listed> = ctx
        .service
        .list_profiles(CALLER)?
        .into_iter()
        .map(|l| match l.profile {
            Ok(p) => Listed {
                name: l.name,
                credentials: Some(p.credentials.clone()),
                source: Some(describe_source(&p.source)),
                schedule: Some(p.run.schedule.to_string()),
                last_run: l.last_run.as_ref().map(|r| r.started_at.to_rfc3339()),
                last_status: l.last_run.as_ref().map(|r| r.report.status),
                error: None,
            },
            Err(e) => Listed {
                name: l.name,
                credentials: None,
                source: None,
                schedule: None,
                last_run: None,
                last_status: None,
                error: Some(e.to_string()),
            },
        })
        .collect();
    ctx.out.emit(&listed, || {
        if listed.is_empty() {
            return "no profiles (create one with `m365-archiver profile create`)".to_string();
        }
        let mut table = Table::new(&["NAME", "CREDENTIALS", "MAILBOXES", "SCHEDULE", "LAST RUN"]);
        for l in &listed {
            match &l.error {
                Some(e) => table.row(vec![
                    l.name.clone(),
                    format!("broken: {}", e.lines().next().unwrap_or_default()),
                ]),
                None => table.row(vec![
                    l.name.clone(),
                    l.credentials.clone().unwrap_or_default(),
                    l.source.clone().unwrap_or_default(),
                    l.schedule.clone().unwrap_or_default(),
                    match (&l.last_run, l.last_status) {
                        (Some(at), Some(status)) => format!("{at} ({})", status_word(status)),
                        _ => "never".to_string(),
                    },
                ]),
            }
        }
        table.render()
    })?;
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Ctx, name: &str) -> Result<ExitCode> {
    let profile = ctx.service.show_profile(CALLER, name)?;
    ctx.out.emit(&profile, || profile.to_toml())?;
    Ok(ExitCode::SUCCESS)
}

fn remove(ctx: &Ctx, name: &str) -> Result<ExitCode> {
    ctx.service.remove_profile(CALLER, name)?;
    ctx.out.emit(&serde_json::json!({ "removed": name }), || {
        format!("profile `{name}` removed (its archived mail stays in the archive)")
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn test(ctx: &Ctx, name: &str) -> Result<ExitCode> {
    let report = ctx.service.test_profile(CALLER, name).await?;
    ctx.out.emit(&report, || {
        let mut table = Table::new(&["MAILBOX", "USER", "READABLE", "WHY NOT"]);
        for m in &report.mailboxes {
            table.row(vec![
                m.mailbox.clone(),
                m.user.clone().unwrap_or_default(),
                if m.readable {
                    "yes".into()
                } else {
                    "NO".into()
                },
                m.error.clone().unwrap_or_default(),
            ]);
        }
        if report.mailboxes.is_empty() {
            return format!(
                "profile `{}` selects no mailbox yet: synchronise the users first (`users sync`)",
                report.profile
            );
        }
        format!(
            "{}\nprofile `{}`: {} of {} mailboxes readable",
            table.render(),
            report.profile,
            report.mailboxes.iter().filter(|m| m.readable).count(),
            report.mailboxes.len()
        )
    })?;
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn run_profile(ctx: &Ctx, name: &str) -> Result<ExitCode> {
    let report = run_and_print(ctx, name).await?;
    Ok(if report.status == RunStatus::Ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs profile `name` with progress, cancelled by Ctrl-C (checkpoints saved), and
/// prints its report (`profile run`, also the demo's).
pub async fn run_and_print(ctx: &Ctx, name: &str) -> Result<RunReport> {
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let progress = RunProgress::new(name, ctx.out.json || ctx.out.quiet);
    let report = ctx
        .service
        .run_profile(CALLER, name, &cancel, &progress)
        .await;
    watcher.abort();
    progress.finish();
    let report = report?;
    ctx.out.emit(&report, || render_report(&report))?;
    Ok(report)
}

/// `ok`, `partial`, `failed`, `cancelled`.
pub fn status_word(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Ok => "ok",
        RunStatus::Partial => "partial",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}

/// A run report for people: one line per mailbox, then the totals.
pub fn render_report(report: &RunReport) -> String {
    let mut table = Table::new(&[
        "MAILBOX",
        "STATUS",
        "FOLDERS",
        "ARCHIVED",
        "DUPLICATE",
        "FAILED",
        "BYTES",
        "DELETED",
        "NOTE",
    ]);
    for m in &report.mailboxes {
        table.row(vec![
            m.mailbox.clone(),
            serde_json::to_value(m.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            m.folders.to_string(),
            m.messages_archived.to_string(),
            m.messages_duplicate.to_string(),
            m.messages_failed.to_string(),
            human_bytes(m.bytes),
            m.deleted.to_string(),
            m.error.clone().unwrap_or_default(),
        ]);
    }
    let t = &report.totals;
    let mut notes = String::new();
    if let Some(error) = &report.error {
        notes.push_str(&format!("\nerror: {error}"));
    }
    for warning in &report.warnings {
        notes.push_str(&format!("\nwarning: {warning}"));
    }
    if t.messages_forgotten > 0 {
        notes.push_str(&format!(
            "\n{} messages expunged from the archive before (retention, erasure) were left alone",
            t.messages_forgotten
        ));
    }
    format!(
        "{}\nprofile `{}`: {} — {} mailboxes ({} failed, {} skipped), {} messages archived ({}), \
         {} duplicates, {} failed, {} deleted; {} requests, {} throttled, {} retries; {:.1} s{}",
        table.render(),
        report.profile,
        status_word(report.status),
        t.mailboxes,
        t.mailboxes_failed,
        t.mailboxes_skipped,
        t.messages_archived,
        human_bytes(t.bytes),
        t.messages_duplicate,
        t.messages_failed,
        t.deleted,
        report.requests,
        report.throttled,
        report.retries,
        report.duration_secs,
        notes
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use proptest::prelude::*;

    use super::*;
    use crate::cli::{Cli, Command};

    /// The profile `profile create` arguments describe (validated; nothing written).
    fn profile_from_args(args: &ProfileCreateArgs) -> Result<Profile> {
        Ok(archiver_service::profile_from_spec(&spec_from_args(args)?)?)
    }

    fn create_args(argv: &[String]) -> Option<ProfileCreateArgs> {
        let cli = Cli::try_parse_from(
            ["m365-archiver", "profile", "create"]
                .into_iter()
                .map(String::from)
                .chain(argv.iter().cloned()),
        )
        .ok()?;
        match cli.command {
            Command::Profile(ProfileCommand::Create(args)) => Some(*args),
            _ => None,
        }
    }

    proptest! {
        /// Whatever the arguments, `profile create` either builds a profile that survives
        /// its own TOML round trip, or says what is wrong: it never panics.
        #[test]
        fn create_arguments_give_a_valid_profile_or_an_error(
            name in "[A-Za-z0-9._ -]{0,12}",
            selection in prop_oneof![
                Just(vec!["--all".to_string()]),
                "[a-z,. ]{0,20}".prop_map(|u| vec!["--only".to_string(), u]),
                "[a-z,. ]{0,20}".prop_map(|u| vec!["--all-except".to_string(), u]),
                ("[a-z@.]{0,12}", "[a-z]{0,6}").prop_map(|(m, u)| vec![
                    "--mailbox".to_string(), m, "--target-user".to_string(), u
                ]),
            ],
            sync in any::<bool>(),
            folders in proptest::collection::vec("[A-Za-z/ ]{0,10}", 0..3),
            schedule in proptest::option::of(prop_oneof![
                Just("manual".to_string()),
                "every [0-9]{1,6}[mhd]?",
                "daily [0-9]{1,2}:[0-9]{1,2}",
                "weekly (mon|tue|xyz) [0-9]{1,2}:[0-9]{2}",
                ".{0,12}",
            ]),
            older in proptest::option::of(any::<u32>()),
            delete in proptest::option::of(prop_oneof![
                Just("never".to_string()),
                Just("move_to_deleted_items".to_string()),
                Just("hard-delete".to_string()),
                "[a-z_]{0,12}",
            ]),
        ) {
            let mut argv = vec![name, "--credentials".to_string(), "contoso".to_string()];
            argv.extend(selection);
            if sync {
                argv.push("--sync-directory".into());
            }
            for folder in folders {
                argv.extend(["--exclude-folder".to_string(), folder]);
            }
            if let Some(s) = schedule {
                argv.extend(["--schedule".to_string(), s]);
            }
            if let Some(days) = older {
                argv.extend(["--older-than-days".to_string(), days.to_string()]);
            }
            if let Some(mode) = delete {
                argv.extend(["--delete".to_string(), mode, "--delete-after-days".to_string(), "30".to_string()]);
            }
            if let Some(args) = create_args(&argv) {
                match profile_from_args(&args) {
                    Ok(profile) => {
                        let back = Profile::from_toml("round-trip.toml", &profile.to_toml());
                        prop_assert_eq!(back.ok(), Some(profile));
                    }
                    Err(e) => {
                        let message = format!("{e:#}");
                        prop_assert!(!message.is_empty());
                    }
                }
            }
        }

        /// Arbitrary command lines are parsed or refused, never a panic.
        #[test]
        fn arbitrary_command_lines_never_panic(argv in proptest::collection::vec(
            prop_oneof![
                Just("profile".to_string()), Just("create".to_string()), Just("archive".to_string()),
                Just("export".to_string()), Just("--json".to_string()), Just("--data-dir".to_string()),
                Just("--all".to_string()), Just("--only".to_string()), Just("credentials".to_string()),
                Just("add".to_string()), Just("--cloud".to_string()), Just("custom".to_string()),
                ".{0,8}",
            ],
            0..10,
        )) {
            let _ = Cli::try_parse_from(std::iter::once("m365-archiver".to_string()).chain(argv));
        }
    }
}
