//! `hold` commands: place, list, show and release legal holds.

use std::process::ExitCode;

use anyhow::Result;
use archiver_service::HoldSpec;
use archiver_service::retention::Hold;
use chrono::{DateTime, NaiveDate, Utc};

use super::retention::scope_text;
use crate::cli::{HoldCommand, HoldCreateArgs};
use crate::output::{Table, truncate};
use crate::{CALLER, Ctx};

/// Runs one `hold` command.
pub fn run(ctx: &Ctx, cmd: HoldCommand) -> Result<ExitCode> {
    match cmd {
        HoldCommand::Create(args) => create(ctx, *args),
        HoldCommand::List => list(ctx),
        HoldCommand::Show { case } => show(ctx, &case),
        HoldCommand::Release { case, reason } => release(ctx, &case, &reason),
    }
}

/// `--from` / `--to`: a day (`YYYY-MM-DD`, midnight UTC) or an RFC 3339 time.
pub fn parse_date(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!(
                "`{text}` is neither a date (YYYY-MM-DD) nor an RFC 3339 time (2026-03-01T09:00:00Z)"
            )
        })
}

fn status(hold: &Hold) -> String {
    match &hold.released {
        None => "active".to_string(),
        Some(r) => format!("released {}", r.at.format("%Y-%m-%d")),
    }
}

fn describe(hold: &Hold) -> String {
    let mut text = format!(
        "legal hold {} ({}): covers {}\nplaced {} by {}: {}\n",
        hold.case,
        status(hold),
        scope_text(&hold.scope),
        hold.created.to_rfc3339(),
        hold.created_by,
        hold.reason
    );
    if let Some(r) = &hold.released {
        text.push_str(&format!(
            "released {} by {}: {}\n",
            r.at.to_rfc3339(),
            r.by,
            r.reason
        ));
    }
    text
}

fn create(ctx: &Ctx, args: HoldCreateArgs) -> Result<ExitCode> {
    let spec = HoldSpec {
        case: args.case,
        reason: args.reason,
        users: args.user,
        query: args.query,
        from: args.from,
        to: args.to,
    };
    let hold = ctx.service.create_hold(CALLER, &spec)?;
    ctx.out.emit(&hold, || describe(&hold))?;
    Ok(ExitCode::SUCCESS)
}

fn list(ctx: &Ctx) -> Result<ExitCode> {
    let holds = ctx.service.holds(CALLER)?;
    ctx.out.emit(&holds, || {
        if holds.is_empty() {
            return "no legal holds".to_string();
        }
        let mut table = Table::new(&["CASE", "STATUS", "PLACED", "COVERS", "REASON"]);
        for h in &holds {
            table.row(vec![
                h.case.clone(),
                status(h),
                h.created.format("%Y-%m-%d").to_string(),
                truncate(&scope_text(&h.scope), 50),
                truncate(&h.reason, 50),
            ]);
        }
        table.render()
    })?;
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Ctx, case: &str) -> Result<ExitCode> {
    let details = ctx.service.hold(CALLER, case)?;
    ctx.out.emit(&details, || {
        let mut text = describe(&details.hold);
        match &details.held {
            None => text.push_str("the entries it keeps cannot be listed in this installation\n"),
            Some(keys) if keys.is_empty() => text.push_str("it keeps no archived message now\n"),
            Some(keys) => {
                text.push_str(&format!("it keeps {} archive entries:\n", keys.len()));
                let mut table = Table::new(&["USER", "FOLDER", "ID"]);
                for k in keys {
                    table.row(vec![k.user.clone(), k.folder.clone(), k.id.clone()]);
                }
                text.push_str(&table.render());
            }
        }
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

fn release(ctx: &Ctx, case: &str, reason: &str) -> Result<ExitCode> {
    let hold = ctx.service.release_hold(CALLER, case, reason)?;
    ctx.out.emit(&hold, || describe(&hold))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_days_or_rfc3339_times() {
        assert_eq!(
            parse_date("2026-03-01").unwrap().to_rfc3339(),
            "2026-03-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_date("2026-03-01T09:30:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2026-03-01T08:30:00+00:00"
        );
        let error = parse_date("March 1st").unwrap_err();
        assert!(error.contains("March 1st"), "{error}");
    }
}
