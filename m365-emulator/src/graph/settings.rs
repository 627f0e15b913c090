//! `/users/{u}/mailboxSettings` (and one property of it, e.g. `/mailboxSettings/userPurpose`):
//! the mailbox's purpose (`user`, `shared`, `room`, `equipment`, ...), time zone, language,
//! formats, working hours and automatic replies, as Graph returns them.
//!
//! The route needs the app role MailboxSettings.Read or MailboxSettings.ReadWrite (checked by the
//! permission gate) and counts against the mailbox's throttling bucket like any Outlook resource.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::folders::segment;
use super::query::Query;
use super::{ApiError, Ctx, json_response, link_base};
use crate::state::AppState;
use crate::tenant::{Mailbox, UserRecord, model_mix};

/// Properties of `mailboxSettings` (what `$select` and the property path may name).
const SETTINGS_PROPERTIES: &[&str] = &[
    "archiveFolder",
    "timeZone",
    "automaticRepliesSetting",
    "language",
    "dateFormat",
    "timeFormat",
    "delegateMeetingMessageDeliveryOptions",
    "userPurpose",
    "workingHours",
];

/// Time zones of the generated users (Windows names, Exchange's default format).
const TIME_ZONES: [&str; 4] = [
    "UTC",
    "W. Europe Standard Time",
    "Pacific Standard Time",
    "Tokyo Standard Time",
];

fn property_value(user: &UserRecord, mailbox: &Mailbox, property: &str) -> Value {
    let time_zone = TIME_ZONES[(model_mix(mailbox.key) % TIME_ZONES.len() as u64) as usize];
    match property {
        "archiveFolder" => mailbox
            .folder_index("archive")
            .map_or(Value::Null, |index| json!(mailbox.folders[index].id)),
        "timeZone" => json!(time_zone),
        "automaticRepliesSetting" => json!({
            "status": "disabled",
            "externalAudience": "all",
            "internalReplyMessage": "",
            "externalReplyMessage": "",
            "scheduledStartDateTime": {"dateTime": "2026-01-05T08:00:00.0000000", "timeZone": "UTC"},
            "scheduledEndDateTime": {"dateTime": "2026-01-06T08:00:00.0000000", "timeZone": "UTC"},
        }),
        "language" => json!({"locale": "en-US", "displayName": "English (United States)"}),
        "dateFormat" => json!("M/d/yyyy"),
        "timeFormat" => json!("h:mm tt"),
        "delegateMeetingMessageDeliveryOptions" => json!("sendToDelegateOnly"),
        "userPurpose" => json!(user.purpose.as_str()),
        "workingHours" => json!({
            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
            "startTime": "08:00:00.0000000",
            "endTime": "17:00:00.0000000",
            "timeZone": {"name": time_zone},
        }),
        _ => Value::Null,
    }
}

/// The user and mailbox a settings route reaches, or Graph's error.
fn reach<'a>(
    tenant: &'a crate::tenant::Tenant,
    user: &str,
) -> Result<(&'a UserRecord, &'a Mailbox), ApiError> {
    let mailbox = tenant
        .mailbox_checked(user)
        .map_err(|a| ApiError::mailbox(a, user))?;
    let record = tenant
        .user(user)
        .ok_or_else(|| ApiError::mailbox(crate::tenant::MailboxAccess::UnknownUser, user))?;
    Ok((record, mailbox))
}

/// `GET /users/{u}/mailboxSettings`.
pub(crate) async fn get_all(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path(user): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond((|| {
        let query = Query::parse(raw.as_deref())?;
        query.only(&["$select"])?;
        let select = query.select(SETTINGS_PROPERTIES, "microsoft.graph.mailboxSettings")?;
        let tenant = state.tenant.read();
        let (record, mailbox) = reach(&tenant, &user)?;
        let mut map = Map::new();
        map.insert(
            "@odata.context".into(),
            json!(format!(
                "{}/$metadata#users('{}')/mailboxSettings",
                link_base(&state, &ctx),
                segment(&user)
            )),
        );
        for &property in select.as_deref().unwrap_or(SETTINGS_PROPERTIES) {
            map.insert(
                property.to_owned(),
                property_value(record, mailbox, property),
            );
        }
        Ok(json_response(StatusCode::OK, &Value::Object(map)))
    })())
}

/// `GET /users/{u}/mailboxSettings/{property}`: a string property as `{"value": ...}`, a complex
/// one as the object itself.
pub(crate) async fn get_property(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((user, property)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    ctx.respond((|| {
        Query::parse(raw.as_deref())?.only(&[])?;
        let name = SETTINGS_PROPERTIES
            .iter()
            .find(|p| p.eq_ignore_ascii_case(&property))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "BadRequest",
                    format!("Resource not found for the segment '{property}'."),
                )
            })?;
        let tenant = state.tenant.read();
        let (record, mailbox) = reach(&tenant, &user)?;
        let context = format!(
            "{}/$metadata#users('{}')/mailboxSettings/{name}",
            link_base(&state, &ctx),
            segment(&user)
        );
        let body = match property_value(record, mailbox, name) {
            Value::Object(mut map) => {
                map.insert("@odata.context".into(), json!(context));
                Value::Object(map)
            }
            scalar => json!({"@odata.context": context, "value": scalar}),
        };
        Ok(json_response(StatusCode::OK, &body))
    })())
}
