//! Holds and retention (compliance officers) and the audit log (auditors).

use super::*;

pub(super) fn holds_view(
    caller: &Caller,
    service: &archiver_service::Service,
    notice: Option<String>,
) -> Result<models::HoldsView, WebError> {
    let holds = service.holds(&caller.principal)?;
    let policies = service.retention_policies(&caller.principal)?;
    let selector_scope = |users: &[String], folders: &[String], query: &Option<String>| {
        let mut parts = Vec::new();
        parts.push(if users.is_empty() {
            "all archives".to_string()
        } else {
            users.join(", ")
        });
        if !folders.is_empty() {
            parts.push(format!("folders {}", folders.join(", ")));
        }
        if let Some(q) = query {
            parts.push(format!("query {q}"));
        }
        parts.join("; ")
    };
    Ok(models::HoldsView {
        viewer: viewer(caller),
        holds: holds
            .into_iter()
            .map(|h| models::HoldRow {
                id: h.case.clone(),
                name: h.case,
                query: h.scope.query.clone().unwrap_or_default(),
                users: h.scope.users.clone(),
                created: day(Some(h.created)),
                created_by: h.created_by,
                released: h
                    .released
                    .map(|r| format!("{} by {}: {}", day(Some(r.at)), r.by, r.reason)),
            })
            .collect(),
        policies: policies
            .into_iter()
            .map(|p| models::PolicyRow {
                id: p.name.clone(),
                scope: selector_scope(&p.scope.users, &p.scope.folders, &p.scope.query),
                name: p.name,
                min_days: Some(p.min_days),
                max_days: p.max_days,
                basis: format!("{:?}", p.reference).to_lowercase(),
            })
            .collect(),
        notice,
    })
}

/// `GET /holds`: legal holds and retention policies.
pub(super) async fn holds(
    State(state): State<WebState>,
    caller: MaybeCaller,
) -> Result<Response, PageError> {
    let caller = match signed_in(caller, "/holds") {
        Ok(c) => c,
        Err(redirect) => return Ok(*redirect),
    };
    caller.require_scope(ApiScope::Governance)?;
    let view = blocking(&state, move |s| holds_view(&caller, s, None)).await?;
    Ok(page(render::holds_page(&view)))
}

pub(super) fn list(value: &Option<String>) -> Vec<String> {
    value
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The hold form.
#[derive(Deserialize)]
pub(super) struct HoldForm {
    #[serde(default)]
    csrf: Option<String>,
    name: String,
    reason: String,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    users: Option<String>,
}

pub(super) async fn governance_change(
    state: &WebState,
    caller: Caller,
    csrf: Option<&str>,
    change: impl FnOnce(&archiver_service::Service, &Principal) -> Result<String, WebError>
    + Send
    + 'static,
) -> Result<Response, PageError> {
    caller.require_scope(ApiScope::Governance)?;
    caller.check_csrf(csrf)?;
    let view = blocking(state, move |s| {
        let notice = change(s, &caller.principal)?;
        holds_view(&caller, s, Some(notice))
    })
    .await?;
    Ok(page(render::holds_page(&view)))
}

/// `POST /holds`: places a legal hold.
pub(super) async fn create_hold(
    State(state): State<WebState>,
    caller: Caller,
    Form(form): Form<HoldForm>,
) -> Result<Response, PageError> {
    let csrf = form.csrf.clone();
    governance_change(&state, caller, csrf.as_deref(), move |s, p| {
        let spec = HoldSpec {
            case: form.name.trim().to_string(),
            reason: form.reason,
            users: list(&form.users),
            query: form.query.filter(|q| !q.trim().is_empty()),
            from: None,
            to: None,
        };
        let hold = s.create_hold(p, &spec)?;
        Ok(format!("Hold {} placed.", hold.case))
    })
    .await
}

/// The release form.
#[derive(Deserialize)]
pub(super) struct ReleaseForm {
    #[serde(default)]
    csrf: Option<String>,
    id: String,
    reason: String,
}

/// `POST /holds/release`.
pub(super) async fn release_hold(
    State(state): State<WebState>,
    caller: Caller,
    Form(form): Form<ReleaseForm>,
) -> Result<Response, PageError> {
    let csrf = form.csrf.clone();
    governance_change(&state, caller, csrf.as_deref(), move |s, p| {
        let hold = s.release_hold(p, &form.id, &form.reason)?;
        Ok(format!("Hold {} released.", hold.case))
    })
    .await
}

/// The retention policy form.
#[derive(Deserialize)]
pub(super) struct PolicyForm {
    #[serde(default)]
    csrf: Option<String>,
    name: String,
    #[serde(default)]
    min_days: Option<String>,
    #[serde(default)]
    max_days: Option<String>,
    #[serde(default)]
    users: Option<String>,
    #[serde(default)]
    folders: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    basis: Option<String>,
}

pub(super) fn days(name: &str, value: &Option<String>) -> Result<Option<i64>, WebError> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            WebError::BadRequest(format!(
                "`{name}` must be a number of days, not `{}`",
                v.chars().take(20).collect::<String>()
            ))
        }),
    }
}

/// `POST /retention`: adds a retention policy.
pub(super) async fn add_policy(
    State(state): State<WebState>,
    caller: Caller,
    Form(form): Form<PolicyForm>,
) -> Result<Response, PageError> {
    let csrf = form.csrf.clone();
    let min_days = days("min_days", &form.min_days)?.unwrap_or(0);
    let max_days = days("max_days", &form.max_days)?;
    governance_change(&state, caller, csrf.as_deref(), move |s, p| {
        let spec = PolicySpec {
            name: form.name.trim().to_string(),
            min_days,
            max_days,
            users: list(&form.users),
            folders: list(&form.folders),
            query: form.query.filter(|q| !q.trim().is_empty()),
            reference: form.basis.filter(|b| !b.trim().is_empty()),
        };
        let policy = s.add_retention_policy(p, &spec)?;
        Ok(format!("Policy {} added.", policy.name))
    })
    .await
}

/// The policy removal form.
#[derive(Deserialize)]
pub(super) struct RemovePolicyForm {
    #[serde(default)]
    csrf: Option<String>,
    id: String,
}

/// `POST /retention/remove`.
pub(super) async fn remove_policy(
    State(state): State<WebState>,
    caller: Caller,
    Form(form): Form<RemovePolicyForm>,
) -> Result<Response, PageError> {
    let csrf = form.csrf.clone();
    governance_change(&state, caller, csrf.as_deref(), move |s, p| {
        let policy = s.remove_retention_policy(p, &form.id)?;
        Ok(format!("Policy {} removed.", policy.name))
    })
    .await
}

/// The audit filter.
#[derive(Deserialize, Default)]
pub(super) struct AuditQuery {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// `GET /audit`: the audit log, filtered.
pub(super) async fn audit(
    State(state): State<WebState>,
    caller: MaybeCaller,
    Query(query): Query<AuditQuery>,
) -> Result<Response, PageError> {
    let caller = match signed_in(caller, "/audit") {
        Ok(c) => c,
        Err(redirect) => return Ok(*redirect),
    };
    caller.require_scope(ApiScope::Audit)?;
    let viewer = viewer(&caller);
    let limit = match query
        .limit
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| WebError::BadRequest("`limit` must be 1 to 10000".into()))?,
    };
    let since = query
        .since
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| api::parse_date("since", v))
        .transpose()?;
    let actor = query.actor.clone().unwrap_or_default();
    let principal = caller.principal.clone();
    let events = blocking(&state, move |s| {
        Ok(s.audit_events(
            &principal,
            &archiver_service::audit_log::ListQuery {
                since,
                limit: Some(limit),
            },
        )?)
    })
    .await?;
    let rows: Vec<models::AuditRow> = events
        .into_iter()
        .filter(|e| actor.trim().is_empty() || e.actor.contains(actor.trim()))
        .map(|e| models::AuditRow {
            seq: e.seq,
            time: e.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            actor: e.actor,
            action: e.action.name(),
            target: [
                e.target.user.clone().map(|u| format!("archive {u}")),
                e.target.object.clone(),
                e.target.query.clone().map(|q| format!("query {q}")),
                (!e.target.messages.is_empty())
                    .then(|| format!("{} message(s)", e.target.messages.len())),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; "),
            outcome: match &e.outcome {
                archiver_service::audit_log::Outcome::Allowed => "allowed".to_string(),
                other => format!("{other:?}"),
            },
            detail: e
                .details
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let view = models::AuditView {
        viewer,
        filter: models::AuditFilter {
            since: query.since.unwrap_or_default(),
            actor: query.actor.unwrap_or_default(),
            limit: limit.to_string(),
        },
        events: rows,
        next_since: None,
    };
    Ok(page(render::audit_page(&view)))
}
