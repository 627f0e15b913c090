//! `retention` commands: add, list, show and remove policies, and apply them (with
//! `--dry-run`, what would go and why). `retention apply --json` prints exactly the
//! fixed keys `dry_run`, `candidates`, `deleted`, `held`, `restricted`,
//! `bytes_reclaimed`.

use std::process::ExitCode;

use anyhow::Result;
use archiver_service::PolicySpec;
use archiver_service::retention::{ApplyReport, Policy, Reference, Selector};
use serde::Serialize;

use crate::cli::{ReferenceArg, RetentionAddArgs, RetentionCommand};
use crate::output::{Table, human_bytes, truncate};
use crate::{CALLER, Ctx};

/// Runs one `retention` command.
pub fn run(ctx: &Ctx, cmd: RetentionCommand) -> Result<ExitCode> {
    match cmd {
        RetentionCommand::Add(args) => add(ctx, *args),
        RetentionCommand::List => list(ctx),
        RetentionCommand::Show { name } => show(ctx, &name),
        RetentionCommand::Remove { name } => remove(ctx, &name),
        RetentionCommand::Apply { dry_run } => apply(ctx, dry_run),
    }
}

/// What a selector covers, in words (`users alice,bob; folders Inbox; query "x"`).
pub fn scope_text(scope: &Selector) -> String {
    let mut parts = Vec::new();
    if !scope.users.is_empty() {
        parts.push(format!("users {}", scope.users.join(",")));
    }
    if !scope.folders.is_empty() {
        parts.push(format!("folders {}", scope.folders.join(",")));
    }
    if let Some(query) = &scope.query {
        parts.push(format!("query {query:?}"));
    }
    if let Some(from) = scope.from {
        parts.push(format!("from {}", from.format("%Y-%m-%d %H:%M")));
    }
    if let Some(to) = scope.to {
        parts.push(format!("to {}", to.format("%Y-%m-%d %H:%M")));
    }
    if parts.is_empty() {
        "everything".to_string()
    } else {
        parts.join("; ")
    }
}

fn reference_name(reference: Reference) -> &'static str {
    match reference {
        Reference::Received => "received",
        Reference::Archived => "archived",
    }
}

fn max_text(policy: &Policy) -> String {
    policy
        .max_days
        .map_or_else(|| "forever".to_string(), |d| d.to_string())
}

fn describe(policy: &Policy) -> String {
    format!(
        "retention policy {}: kept at least {} days and at most {} (counted from the {} date), \
         covering {}\n",
        policy.name,
        policy.min_days,
        policy
            .max_days
            .map_or_else(|| "forever".to_string(), |d| format!("{d} days")),
        reference_name(policy.reference),
        scope_text(&policy.scope)
    )
}

fn add(ctx: &Ctx, args: RetentionAddArgs) -> Result<ExitCode> {
    let spec = PolicySpec {
        name: args.name,
        min_days: args.min_days,
        max_days: args.max_days,
        users: args.user,
        folders: args.folder,
        query: args.query,
        reference: Some(
            match args.reference {
                ReferenceArg::Received => "received",
                ReferenceArg::Archived => "archived",
            }
            .to_string(),
        ),
    };
    let policy = ctx.service.add_retention_policy(CALLER, &spec)?;
    ctx.out
        .emit(&policy, || format!("added {}", describe(&policy)))?;
    Ok(ExitCode::SUCCESS)
}

fn list(ctx: &Ctx) -> Result<ExitCode> {
    let policies = ctx.service.retention_policies(CALLER)?;
    ctx.out.emit(&policies, || {
        if policies.is_empty() {
            return "no retention policies: nothing is ever removed (add one with `retention add`)"
                .to_string();
        }
        let mut table = Table::new(&["NAME", "MIN DAYS", "MAX DAYS", "FROM", "COVERS"]);
        for p in &policies {
            table.row(vec![
                p.name.clone(),
                p.min_days.to_string(),
                max_text(p),
                reference_name(p.reference).to_string(),
                truncate(&scope_text(&p.scope), 60),
            ]);
        }
        table.render()
    })?;
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Ctx, name: &str) -> Result<ExitCode> {
    let policy = ctx.service.retention_policy(CALLER, name)?;
    ctx.out.emit(&policy, || {
        format!(
            "{}created {}\n",
            describe(&policy),
            policy.created.to_rfc3339()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

fn remove(ctx: &Ctx, name: &str) -> Result<ExitCode> {
    let policy = ctx.service.remove_retention_policy(CALLER, name)?;
    ctx.out
        .emit(&policy, || format!("removed {}", describe(&policy)))?;
    Ok(ExitCode::SUCCESS)
}

/// `retention apply --json`: the fixed keys, nothing else.
#[derive(Debug, Serialize)]
pub struct ApplyJson {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Entries past their maximum retention (held ones included).
    pub candidates: u64,
    /// Entries removed (or, in a dry run, that would be).
    pub deleted: u64,
    /// Candidates kept by a legal hold.
    pub held: u64,
    /// Entries restricted by pending erasures.
    pub restricted: u64,
    /// Bytes no live entry references any more.
    pub bytes_reclaimed: u64,
}

impl From<&ApplyReport> for ApplyJson {
    fn from(r: &ApplyReport) -> Self {
        Self {
            dry_run: r.dry_run,
            candidates: r.candidates,
            deleted: r.deleted,
            held: r.held,
            restricted: r.restricted,
            bytes_reclaimed: r.bytes_reclaimed,
        }
    }
}

fn apply_text(report: &ApplyReport) -> String {
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut text = format!(
        "{}{verb} {} entries ({} reclaimable); {} past maximum retention, {} of them held; {} restricted\n",
        if report.dry_run { "dry run: " } else { "" },
        report.deleted,
        human_bytes(report.bytes_reclaimed),
        report.candidates,
        report.held,
        report.restricted
    );
    if !report.items.is_empty() {
        let mut table = Table::new(&["ACTION", "USER", "FOLDER", "ID", "WHY"]);
        for item in &report.items {
            table.row(vec![
                item.action.to_string(),
                item.key.user.clone(),
                truncate(&item.key.folder, 30),
                item.key.id.clone(),
                item.reason.clone(),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    text
}

fn apply(ctx: &Ctx, dry_run: bool) -> Result<ExitCode> {
    let report = ctx.service.apply_retention(CALLER, dry_run)?;
    ctx.out
        .emit(&ApplyJson::from(&report), || apply_text(&report))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_json_has_exactly_the_fixed_keys() {
        let report = ApplyReport {
            dry_run: true,
            candidates: 3,
            deleted: 2,
            held: 1,
            restricted: 4,
            bytes_reclaimed: 500,
            items: Vec::new(),
        };
        let json = serde_json::to_value(ApplyJson::from(&report)).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = [
            "dry_run",
            "candidates",
            "deleted",
            "held",
            "restricted",
            "bytes_reclaimed",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(json["deleted"], 2);
        assert_eq!(json["dry_run"], true);
    }
}
