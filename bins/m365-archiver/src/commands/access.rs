//! `access` commands: role grants, an admin's unblock and API tokens.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Result;
use archiver_service::secrecy::ExposeSecret as _;
use archiver_service::{AccessEntry, ApiScope, Grant, Reach, Role, TokenInfo};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cli::{AccessCommand, TokenCommand};
use crate::output::Table;
use crate::{CALLER, Ctx};

/// Runs one `access` command.
pub fn run(ctx: &Ctx, cmd: AccessCommand) -> Result<ExitCode> {
    match cmd {
        AccessCommand::Grant {
            user,
            role,
            scope,
            until,
        } => grant(ctx, &user, role, scope, until),
        AccessCommand::Revoke { user, role } => {
            ctx.service.revoke_access(CALLER, &user, role)?;
            ctx.out.emit(
                &serde_json::json!({ "user": user, "revoked": role.name() }),
                || format!("role {role} taken from `{user}`"),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        AccessCommand::List => list(ctx),
        AccessCommand::Unblock {
            admin,
            reason,
            until,
        } => {
            let unblock = ctx
                .service
                .unblock_content(CALLER, &admin, &reason, until)?;
            let shown = ListedUnblock {
                reason: &unblock.reason,
                until: unblock.until,
            };
            ctx.out.emit(&shown, || {
                format!(
                    "`{admin}` may read every archive until {} ({})",
                    unblock.until.to_rfc3339(),
                    unblock.reason
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        AccessCommand::Token(cmd) => token(ctx, cmd),
    }
}

/// `--role`: user, auditor, compliance or admin.
pub fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
        .map_err(|e: archiver_service::ServiceError| e.to_string())
}

/// One `--scope` of an API token: read, export, restore, governance, audit or admin.
pub fn parse_scope(text: &str) -> Result<ApiScope, String> {
    text.parse()
        .map_err(|e: archiver_service::ServiceError| e.to_string())
}

/// A grant as `access list --json` shows it.
#[derive(Debug, Serialize)]
struct ListedGrant {
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<DateTime<Utc>>,
}

/// An unblock as `access list --json` and `access unblock --json` show it.
#[derive(Debug, Serialize)]
struct ListedUnblock<'a> {
    reason: &'a str,
    until: DateTime<Utc>,
}

/// One account as `access list --json` shows it.
#[derive(Debug, Serialize)]
struct ListedAccess<'a> {
    user: &'a str,
    grants: Vec<ListedGrant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unblock: Option<ListedUnblock<'a>>,
}

fn listed_grant(grant: &Grant) -> ListedGrant {
    ListedGrant {
        role: grant.role,
        scope: match &grant.reach {
            Reach::All => None,
            Reach::Users(users) => Some(users.iter().cloned().collect()),
        },
        until: grant.until,
    }
}

fn grant_text(grant: &ListedGrant) -> String {
    let mut text = grant.role.to_string();
    if let Some(scope) = &grant.scope {
        text.push_str(&format!(" over {}", scope.join(",")));
    }
    if let Some(until) = grant.until {
        text.push_str(&format!(" until {}", until.to_rfc3339()));
    }
    text
}

fn grant(
    ctx: &Ctx,
    user: &str,
    role: Role,
    scope: Option<Vec<String>>,
    until: Option<DateTime<Utc>>,
) -> Result<ExitCode> {
    let reach = match scope {
        None => Reach::All,
        Some(users) => Reach::Users(
            users
                .into_iter()
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect::<BTreeSet<_>>(),
        ),
    };
    let grant = ctx.service.grant_access(CALLER, user, role, reach, until)?;
    let shown = listed_grant(&grant);
    ctx.out.emit(&shown, || {
        format!("`{user}` now holds {}", grant_text(&shown))
    })?;
    Ok(ExitCode::SUCCESS)
}

fn listed(entry: &AccessEntry) -> ListedAccess<'_> {
    ListedAccess {
        user: &entry.user,
        grants: entry.grants.iter().map(listed_grant).collect(),
        unblock: entry.unblock.as_ref().map(|u| ListedUnblock {
            reason: &u.reason,
            until: u.until,
        }),
    }
}

fn list(ctx: &Ctx) -> Result<ExitCode> {
    let entries = ctx.service.list_access(CALLER)?;
    let rows: Vec<ListedAccess<'_>> = entries.iter().map(listed).collect();
    ctx.out.emit(&rows, || {
        if rows.is_empty() {
            return "no role grants: every user sees only their own archive (grant roles with `access grant`)"
                .to_string();
        }
        let mut table = Table::new(&["USER", "GRANTS", "UNBLOCK"]);
        for row in &rows {
            let grants: Vec<String> = row.grants.iter().map(grant_text).collect();
            table.row(vec![
                row.user.to_string(),
                grants.join("; "),
                row.unblock
                    .as_ref()
                    .map(|u| format!("until {} ({})", u.until.to_rfc3339(), u.reason))
                    .unwrap_or_default(),
            ]);
        }
        table.render()
    })?;
    Ok(ExitCode::SUCCESS)
}

fn scopes_text(token: &TokenInfo) -> String {
    let names: Vec<&str> = token.scopes.iter().map(|s| s.name()).collect();
    names.join(",")
}

fn token(ctx: &Ctx, cmd: TokenCommand) -> Result<ExitCode> {
    match cmd {
        TokenCommand::Create {
            user,
            name,
            scope,
            until,
        } => {
            let (info, secret) = ctx
                .service
                .create_api_token_for(CALLER, &user, &name, scope, until)?;
            let secret = secret.expose_secret();
            ctx.out.emit(
                &serde_json::json!({ "token": secret, "info": &info }),
                || {
                    format!(
                        "API token {} for `{user}` ({}): it is shown only now, keep it safe\n{secret}",
                        info.id,
                        scopes_text(&info)
                    )
                },
            )?;
        }
        TokenCommand::List => {
            let tokens = ctx.service.list_api_tokens(CALLER)?;
            ctx.out.emit(&tokens, || {
                if tokens.is_empty() {
                    return "no API tokens".to_string();
                }
                let mut table = Table::new(&["ID", "USER", "NAME", "SCOPES", "UNTIL", "STATUS"]);
                for t in &tokens {
                    table.row(vec![
                        t.id.clone(),
                        t.owner.clone(),
                        t.name.clone(),
                        scopes_text(t),
                        t.until.map(|u| u.to_rfc3339()).unwrap_or_default(),
                        if t.revoked.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                        .to_string(),
                    ]);
                }
                table.render()
            })?;
        }
        TokenCommand::Revoke { id } => {
            let info = ctx.service.revoke_api_token(CALLER, &id)?;
            ctx.out.emit(&info, || {
                format!("API token {} of `{}` revoked", info.id, info.owner)
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
