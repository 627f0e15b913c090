//! `/users`, `/users/{id|upn}` and `/users/delta`: the directory as Graph pages it.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::query::{Query, split_and};
use super::wire::{self, USER_DEFAULT, USER_PROPERTIES};
use super::{ApiError, Ctx, json_response, link_base, token};
use crate::state::AppState;
use crate::tenant::UserRecord;

/// Paging state of `/users` baked into its `$skiptoken`.
#[derive(Debug, Serialize, Deserialize)]
struct UsersPage {
    /// Kind tag, so a delta token is never taken for a page token.
    k: String,
    offset: usize,
    query: Vec<(String, String)>,
}

/// State of `/users/delta` links.
#[derive(Debug, Serialize, Deserialize)]
struct UsersDelta {
    k: String,
    /// Changes after this directory sequence...
    from: u64,
    /// ...up to this one (0 on a deltaLink: fixed when it is followed).
    to: u64,
    /// Last sequence already returned in this round.
    after: u64,
    initial: bool,
    select: Option<Vec<String>>,
}

/// One user filter clause.
enum UserClause {
    Eq(&'static str, String),
    StartsWith(&'static str, String),
    ProxyAddress(String),
    Enabled(bool),
}

fn unsupported(clause: &str) -> ApiError {
    ApiError::bad_request(
        "Request_UnsupportedQuery",
        format!("Unsupported or invalid query filter clause specified: '{clause}'."),
    )
}

fn quoted(value: &str) -> Option<String> {
    let value = value.trim();
    value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .map(|v| v.replace("''", "'"))
}

fn parse_user_filter(raw: &str) -> Result<Vec<UserClause>, ApiError> {
    let mut clauses = Vec::new();
    for clause in split_and(raw) {
        let lower = clause.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("startswith(") {
            if !rest.ends_with(')') {
                return Err(unsupported(&clause));
            }
            let inner = clause
                .get("startswith(".len()..clause.len() - 1)
                .ok_or_else(|| unsupported(&clause))?;
            let (property, value) = inner.split_once(',').ok_or_else(|| unsupported(&clause))?;
            let property = match property.trim().to_ascii_lowercase().as_str() {
                "displayname" => "displayName",
                "userprincipalname" => "userPrincipalName",
                "mail" => "mail",
                "givenname" => "givenName",
                "surname" => "surname",
                _ => return Err(unsupported(&clause)),
            };
            if !rest.ends_with(')') {
                return Err(unsupported(&clause));
            }
            clauses.push(UserClause::StartsWith(
                property,
                quoted(value).ok_or_else(|| unsupported(&clause))?,
            ));
        } else if lower.starts_with("proxyaddresses/any(") {
            // proxyAddresses/any(x:x eq 'smtp:a@b')
            let value = clause
                .split_once(" eq ")
                .or_else(|| clause.split_once(" EQ "))
                .map(|(_, v)| v.trim_end_matches(')'));
            let value = value.and_then(quoted).ok_or_else(|| unsupported(&clause))?;
            clauses.push(UserClause::ProxyAddress(value));
        } else {
            let tokens: Vec<&str> = clause.splitn(3, ' ').collect();
            let [property, op, value] = tokens.as_slice() else {
                return Err(unsupported(&clause));
            };
            if !op.eq_ignore_ascii_case("eq") {
                return Err(unsupported(&clause));
            }
            match property.to_ascii_lowercase().as_str() {
                "accountenabled" => match value.to_ascii_lowercase().as_str() {
                    "true" => clauses.push(UserClause::Enabled(true)),
                    "false" => clauses.push(UserClause::Enabled(false)),
                    _ => return Err(unsupported(&clause)),
                },
                name => {
                    let property = match name {
                        "id" => "id",
                        "userprincipalname" => "userPrincipalName",
                        "mail" => "mail",
                        "displayname" => "displayName",
                        "usertype" => "userType",
                        _ => return Err(unsupported(&clause)),
                    };
                    clauses.push(UserClause::Eq(
                        property,
                        quoted(value).ok_or_else(|| unsupported(&clause))?,
                    ));
                }
            }
        }
    }
    Ok(clauses)
}

fn property_text(user: &UserRecord, property: &str) -> Option<String> {
    match property {
        "id" => Some(user.id.clone()),
        "userPrincipalName" => Some(user.upn.clone()),
        "mail" => user.mail.clone(),
        "displayName" => Some(user.display_name.clone()),
        "givenName" => user.given_name.clone(),
        "surname" => user.surname.clone(),
        "userType" => Some(if user.guest { "Guest" } else { "Member" }.to_owned()),
        _ => None,
    }
}

fn matches(user: &UserRecord, clauses: &[UserClause]) -> bool {
    clauses.iter().all(|clause| match clause {
        UserClause::Eq(p, v) => property_text(user, p).is_some_and(|t| t.eq_ignore_ascii_case(v)),
        UserClause::StartsWith(p, v) => {
            property_text(user, p).is_some_and(|t| t.to_lowercase().starts_with(&v.to_lowercase()))
        }
        UserClause::ProxyAddress(v) => user
            .proxy_addresses
            .iter()
            .any(|p| p.eq_ignore_ascii_case(v)),
        UserClause::Enabled(e) => user.enabled == *e,
    })
}

fn select_of(query: &Query) -> Result<Vec<&'static str>, ApiError> {
    Ok(query
        .select(USER_PROPERTIES, "microsoft.graph.user")?
        .unwrap_or_else(|| USER_DEFAULT.to_vec()))
}

/// `GET /users`.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond(list_inner(&state, &ctx, raw.as_deref()))
}

fn list_inner(state: &AppState, ctx: &Ctx, raw: Option<&str>) -> Result<Response, ApiError> {
    let seed = state.tenant.read().seed;
    let mut query = Query::parse(raw)?;
    let mut offset = 0;
    if let Some(skiptoken) = query.get("$skiptoken") {
        let page: UsersPage = token::decode(seed, skiptoken)
            .filter(|p: &UsersPage| p.k == "users")
            .ok_or_else(|| {
                ApiError::bad_request("Request_BadRequest", "Invalid or expired skip token.")
            })?;
        offset = page.offset;
        query = Query::from_pairs(page.query);
    }
    if query.get("$skip").is_some() {
        return Err(ApiError::bad_request(
            "Request_BadRequest",
            "'$skip' is not supported by the service.",
        ));
    }
    query.only(&[
        "$select",
        "$top",
        "$filter",
        "$count",
        "$orderby",
        "$search",
        "$expand",
        "$skiptoken",
    ])?;
    let top = query.top(100, 999, "Request_BadRequest")?;
    let select = select_of(&query)?;
    let clauses = match query.get("$filter") {
        Some(filter) => parse_user_filter(filter)?,
        None => Vec::new(),
    };
    if query.get("$search").is_some()
        && !ctx
            .headers
            .get("consistencylevel")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"eventual"))
    {
        return Err(ApiError::bad_request(
            "Request_UnsupportedQuery",
            "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
        ));
    }
    let eventual = ctx
        .headers
        .get("consistencylevel")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"eventual"));
    if query
        .get("$count")
        .is_some_and(|c| c.eq_ignore_ascii_case("true"))
        && !eventual
    {
        return Err(ApiError::bad_request(
            "Request_BadRequest",
            "$count is not currently supported without the header 'ConsistencyLevel: eventual'.",
        ));
    }
    if let Some(orderby) = query.get("$orderby") {
        let property = orderby.split_whitespace().next().unwrap_or_default();
        if !property.eq_ignore_ascii_case("displayName")
            && !property.eq_ignore_ascii_case("userPrincipalName")
        {
            return Err(ApiError::bad_request(
                "Request_UnsupportedQuery",
                format!("Sorting not supported for '{property}'."),
            ));
        }
    }
    let tenant = state.tenant.read();
    let mut users: Vec<&UserRecord> = tenant
        .users
        .iter()
        .filter(|u| matches(u, &clauses))
        .collect();
    if let Some(search) = query.get("$search") {
        let needle = search
            .trim_matches('"')
            .split_once(':')
            .map_or(search, |(_, v)| v)
            .trim_matches('"')
            .to_lowercase();
        users.retain(|u| {
            u.display_name.to_lowercase().contains(&needle)
                || u.upn.to_lowercase().contains(&needle)
        });
    }
    if let Some(orderby) = query.get("$orderby") {
        let desc = orderby.to_ascii_lowercase().ends_with(" desc");
        let by_name = orderby.to_ascii_lowercase().starts_with("displayname");
        users.sort_by(|a, b| {
            let (x, y) = if by_name {
                (&a.display_name, &b.display_name)
            } else {
                (&a.upn, &b.upn)
            };
            if desc {
                y.to_lowercase().cmp(&x.to_lowercase())
            } else {
                x.to_lowercase().cmp(&y.to_lowercase())
            }
        });
    }
    let total = users.len();
    let page: Vec<Value> = users
        .iter()
        .skip(offset)
        .take(top)
        .map(|u| wire::user(u, &select))
        .collect();
    let base = link_base(state, ctx);
    let mut body = json!({"@odata.context": format!("{base}/$metadata#users")});
    if query
        .get("$count")
        .is_some_and(|c| c.eq_ignore_ascii_case("true"))
    {
        body["@odata.count"] = json!(total);
    }
    if offset + top < total {
        let next = UsersPage {
            k: "users".into(),
            offset: offset + top,
            query: query.pairs().to_vec(),
        };
        body["@odata.nextLink"] = json!(format!(
            "{base}/users?$skiptoken={}",
            token::encode(seed, &next)
        ));
    }
    body["value"] = Value::Array(page);
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /users/{id|upn}`.
pub(crate) async fn get_one(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path(user): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond((|| {
        let query = Query::parse(raw.as_deref())?;
        query.only(&["$select", "$expand"])?;
        let select = select_of(&query)?;
        let tenant = state.tenant.read();
        let record = tenant
            .user(&user)
            .ok_or_else(|| ApiError::user_not_found(&user))?;
        let mut body = wire::user(record, &select);
        body["@odata.context"] = json!(format!(
            "{}/$metadata#users/$entity",
            link_base(&state, &ctx)
        ));
        Ok(json_response(StatusCode::OK, &body))
    })())
}

/// `GET /users/delta` and `/users/delta()`.
pub(crate) async fn delta(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond(delta_inner(&state, &ctx, raw.as_deref()))
}

fn delta_inner(state: &AppState, ctx: &Ctx, raw: Option<&str>) -> Result<Response, ApiError> {
    let tenant = state.tenant.read();
    let seed = tenant.seed;
    let base = link_base(state, ctx);
    let query = Query::parse(raw)?;
    let gone = || {
        let mut error = ApiError::new(
            StatusCode::GONE,
            "syncStateNotFound",
            "The sync state generation is not found or has expired. Restart the synchronization with a fresh delta request.",
        );
        error.location = Some(format!("{base}/users/delta"));
        error
    };
    let mut cursor: UsersDelta = if let Some(t) = query.get("$deltatoken") {
        if t.eq_ignore_ascii_case("latest") {
            let next = UsersDelta {
                k: "udelta".into(),
                from: tenant.directory_seq,
                to: 0,
                after: 0,
                initial: false,
                select: None,
            };
            let body = json!({
                "@odata.context": format!("{base}/$metadata#users"),
                "@odata.deltaLink": format!("{base}/users/delta?$deltatoken={}", token::encode(seed, &next)),
                "value": [],
            });
            return Ok(json_response(StatusCode::OK, &body));
        }
        let mut c: UsersDelta = token::decode(seed, t)
            .filter(|c: &UsersDelta| c.k == "udelta")
            .ok_or_else(gone)?;
        if c.from > tenant.directory_seq {
            return Err(gone());
        }
        c.to = tenant.directory_seq;
        c.after = c.from;
        c
    } else if let Some(t) = query.get("$skiptoken") {
        token::decode(seed, t)
            .filter(|c: &UsersDelta| c.k == "udelta")
            .ok_or_else(gone)?
    } else {
        query.only(&["$select", "$filter"])?;
        if query.get("$top").is_some()
            || query.get("$orderby").is_some()
            || query.get("$expand").is_some()
        {
            return Err(ApiError::bad_request(
                "Request_UnsupportedQuery",
                "Unsupported query option for delta.",
            ));
        }
        let select = query
            .select(USER_PROPERTIES, "microsoft.graph.user")?
            .map(|s| s.iter().map(|p| (*p).to_owned()).collect());
        UsersDelta {
            k: "udelta".into(),
            from: 0,
            to: tenant.directory_seq,
            after: 0,
            initial: true,
            select,
        }
    };
    let select: Vec<&'static str> = match &cursor.select {
        Some(names) => USER_PROPERTIES
            .iter()
            .copied()
            .filter(|p| names.iter().any(|n| n == p))
            .collect(),
        None => USER_DEFAULT.to_vec(),
    };
    let page_size = ctx.max_page_size().unwrap_or(100).clamp(1, 999);
    // Events of this round, ordered by sequence: (seq, value).
    let mut events: Vec<(u64, Value)> = tenant
        .users
        .iter()
        .filter(|u| {
            u.seq > cursor.after && u.seq <= cursor.to && (cursor.initial || u.seq > cursor.from)
        })
        .map(|u| (u.seq, wire::user(u, &select)))
        .collect();
    if !cursor.initial {
        events.extend(
            tenant
                .removed_users
                .iter()
                .filter(|(_, seq)| *seq > cursor.after && *seq <= cursor.to)
                .map(|(id, seq)| (*seq, json!({"id": id, "@removed": {"reason": "changed"}}))),
        );
    }
    events.sort_by_key(|(seq, _)| *seq);
    let more = events.len() > page_size;
    events.truncate(page_size);
    let mut body = json!({"@odata.context": format!("{base}/$metadata#users")});
    if more {
        cursor.after = events.last().map_or(cursor.after, |(seq, _)| *seq);
        body["@odata.nextLink"] = json!(format!(
            "{base}/users/delta?$skiptoken={}",
            token::encode(seed, &cursor)
        ));
    } else {
        let next = UsersDelta {
            k: "udelta".into(),
            from: cursor.to,
            to: 0,
            after: 0,
            initial: false,
            select: cursor.select.clone(),
        };
        body["@odata.deltaLink"] = json!(format!(
            "{base}/users/delta?$deltatoken={}",
            token::encode(seed, &next)
        ));
    }
    body["value"] = Value::Array(events.into_iter().map(|(_, v)| v).collect());
    Ok(json_response(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any filter text is parsed or refused with Request_UnsupportedQuery, never a panic.
        #[test]
        fn arbitrary_user_filters_never_panic(raw in "[ -~äé]{0,80}") {
            if let Err(error) = parse_user_filter(&raw) {
                prop_assert_eq!(error.code, "Request_UnsupportedQuery");
            }
        }
    }

    #[test]
    fn the_documented_filter_subset_parses() {
        assert_eq!(
            parse_user_filter("accountEnabled eq true and userType eq 'Member'")
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            parse_user_filter("startswith(displayName,'Ad')")
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            parse_user_filter("proxyAddresses/any(x:x eq 'smtp:a@b.com')")
                .unwrap()
                .len(),
            1
        );
        assert!(parse_user_filter("startswith(").is_err());
        assert!(parse_user_filter("jobTitle eq 'x'").is_err());
    }
}
