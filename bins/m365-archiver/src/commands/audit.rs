//! `audit` commands: list the events, verify the chain (naming the first broken
//! event and printing the head to note down), export them as JSON lines.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use archiver_service::audit_log::{AuditEvent, ListQuery, Outcome, Target};
use chrono::{DateTime, Utc};

use crate::cli::AuditCommand;
use crate::output::{Table, truncate};
use crate::{CALLER, Ctx};

/// Runs one `audit` command.
pub fn run(ctx: &Ctx, cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::List { since, limit } => list(ctx, since, limit),
        AuditCommand::Verify => verify(ctx),
        AuditCommand::Export { out } => export(ctx, &out),
    }
}

/// `--since`: an RFC 3339 time.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{text}` is not an RFC 3339 time (like 2026-03-01T09:00:00Z): {e}"))
}

fn target_text(target: &Target) -> String {
    let mut parts = Vec::new();
    if let Some(user) = &target.user {
        parts.push(format!("user {user}"));
    }
    if let Some(object) = &target.object {
        parts.push(object.clone());
    }
    match target.messages.as_slice() {
        [] => {}
        [one] => parts.push(format!("message {one}")),
        many => parts.push(format!("{} messages", many.len())),
    }
    if let Some(query) = &target.query {
        parts.push(format!("query {query:?}"));
    }
    parts.join(", ")
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Allowed => "allowed".to_string(),
        Outcome::Denied { reason } => format!("DENIED: {reason}"),
        Outcome::Failed { reason } => format!("FAILED: {reason}"),
        _ => "?".to_string(),
    }
}

fn list(ctx: &Ctx, since: Option<DateTime<Utc>>, limit: Option<usize>) -> Result<ExitCode> {
    let events: Vec<AuditEvent> = ctx
        .service
        .audit_events(CALLER, &ListQuery { since, limit })?;
    ctx.out.emit(&events, || {
        if events.is_empty() {
            return "no audit events".to_string();
        }
        let mut table = Table::new(&["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME"]);
        for e in &events {
            table.row(vec![
                e.seq.to_string(),
                e.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                truncate(&e.actor, 40),
                e.action.name(),
                truncate(&target_text(&e.target), 60),
                truncate(&outcome_text(&e.outcome), 60),
            ]);
        }
        table.render()
    })?;
    Ok(ExitCode::SUCCESS)
}

fn verify(ctx: &Ctx) -> Result<ExitCode> {
    let report = ctx.service.verify_audit(CALLER)?;
    ctx.out.emit(&report, || {
        let mut text = match &report.first_bad {
            None => format!("audit chain intact: {} events\n", report.events),
            Some(bad) => format!(
                "AUDIT CHAIN BROKEN at event {}: {}\n({} records read)\n",
                bad.seq, bad.reason, report.events
            ),
        };
        text.push_str(&format!(
            "head: event {} hash {} (note it down: a later log that does not hold this event was rewritten)\n",
            report.head.seq, report.head.hash
        ));
        if let Some(bad) = &report.first_bad_checkpoint {
            text.push_str(&format!("SIGNED CHECKPOINT BROKEN: {}\n", bad.reason));
        }
        if let Some(key) = &report.public_key {
            text.push_str(&format!(
                "{} signed checkpoints checked with public key {key} (keep it elsewhere too)\n",
                report.checkpoints
            ));
        }
        if let Some(anchor) = &report.anchor {
            text.push_str(&format!("anchored at event {} hash {}\n", anchor.seq, anchor.hash));
        }
        if report.unfinished_bytes > 0 {
            text.push_str(&format!(
                "{} bytes of an unfinished write follow the last event (cut at the next append)\n",
                report.unfinished_bytes
            ));
        }
        text
    })?;
    if !report.ok {
        bail!("the audit log failed verification (see above for the first broken event)");
    }
    Ok(ExitCode::SUCCESS)
}

fn export(ctx: &Ctx, out: &Path) -> Result<ExitCode> {
    let count = ctx.service.export_audit(CALLER, out)?;
    let json = serde_json::json!({ "events": count, "out": out });
    ctx.out.emit(&json, || {
        format!(
            "{count} audit events written to {} (JSON lines)",
            out.display()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
