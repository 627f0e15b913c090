//! Graph wire shapes: the JSON of users, mail folders and messages as Graph v1.0 writes them,
//! with `$select` applied. Kept apart from the traversal logic of the handlers.

use serde_json::{Map, Value, json};

use super::query::graph_time;
use crate::tenant::created::BodyKind;
use crate::tenant::{Folder, FolderKind, MessageRecord, Summary, UserRecord};

/// Properties a user has (what `$select` may name).
pub(crate) const USER_PROPERTIES: &[&str] = &[
    "id",
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "accountEnabled",
    "proxyAddresses",
    "userType",
    "otherMails",
    "createdDateTime",
    "onPremisesSyncEnabled",
    "usageLocation",
    "assignedLicenses",
    "mailNickname",
];

/// Properties `/users` returns without `$select`.
pub(crate) const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// A user's JSON with the chosen properties (`id` always).
pub(crate) fn user(user: &UserRecord, select: &[&str]) -> Value {
    let mut map = Map::new();
    for &property in select {
        let value = match property {
            "id" => json!(user.id),
            "businessPhones" => json!([]),
            "displayName" => json!(user.display_name),
            "givenName" => json!(user.given_name),
            "jobTitle" => json!(user.job_title),
            "mail" => json!(user.mail),
            "mobilePhone" => Value::Null,
            "officeLocation" => json!(user.office_location),
            "preferredLanguage" => json!(if user.guest { None } else { Some("en-US") }),
            "surname" => json!(user.surname),
            "userPrincipalName" => json!(user.upn),
            "accountEnabled" => json!(user.enabled),
            "proxyAddresses" => json!(user.proxy_addresses),
            "userType" => json!(if user.guest { "Guest" } else { "Member" }),
            "otherMails" => json!([]),
            "createdDateTime" => json!(graph_time(
                1_640_995_200 + i64::try_from(user.seq).unwrap_or(0) * 3_600
            )),
            "onPremisesSyncEnabled" => Value::Null,
            "usageLocation" => json!(if user.has_mailbox { Some("US") } else { None }),
            "assignedLicenses" => {
                if user.has_mailbox {
                    json!([{"disabledPlans": [], "skuId": "6fd2c87f-b296-42f0-b197-1e91e994b900"}])
                } else {
                    json!([])
                }
            }
            "mailNickname" => json!(user.upn.split('@').next().unwrap_or_default()),
            _ => continue,
        };
        map.insert(property.to_owned(), value);
    }
    map.entry("id").or_insert_with(|| json!(user.id));
    Value::Object(map)
}

/// Properties a mail folder has in v1.0.
pub(crate) const FOLDER_PROPERTIES: &[&str] = &[
    "id",
    "displayName",
    "parentFolderId",
    "childFolderCount",
    "unreadItemCount",
    "totalItemCount",
    "isHidden",
];

/// Counts shown on a folder.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FolderCounts {
    pub(crate) children: usize,
    pub(crate) unread: usize,
    pub(crate) total: usize,
}

/// A mail folder's JSON (a `mailSearchFolder` carries its `@odata.type` and search properties).
pub(crate) fn folder(
    folder: &Folder,
    parent_id: &str,
    counts: FolderCounts,
    select: Option<&[&str]>,
    source_ids: &[String],
) -> Value {
    let mut map = Map::new();
    if folder.kind == FolderKind::SearchFlagged {
        map.insert(
            "@odata.type".into(),
            json!("#microsoft.graph.mailSearchFolder"),
        );
    }
    for &property in select.unwrap_or(FOLDER_PROPERTIES) {
        let value = match property {
            "id" => json!(folder.id),
            "displayName" => json!(folder.display_name),
            "parentFolderId" => json!(parent_id),
            "childFolderCount" => json!(counts.children),
            "unreadItemCount" => json!(counts.unread),
            "totalItemCount" => json!(counts.total),
            "isHidden" => json!(folder.hidden),
            _ => continue,
        };
        map.insert(property.to_owned(), value);
    }
    map.entry("id").or_insert_with(|| json!(folder.id));
    if folder.kind == FolderKind::SearchFlagged && select.is_none() {
        map.insert("isSupported".into(), json!(true));
        map.insert("includeNestedFolders".into(), json!(true));
        map.insert("sourceFolderIds".into(), json!(source_ids));
        map.insert("filterQuery".into(), json!("flag/flagStatus eq 'flagged'"));
    }
    Value::Object(map)
}

/// Properties a message has (what `$select` may name).
pub(crate) const MESSAGE_PROPERTIES: &[&str] = &[
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
    "body",
    "uniqueBody",
    "internetMessageHeaders",
];

/// Properties returned without `$select` (the body is left out: it is served by `$value`).
pub(crate) const MESSAGE_DEFAULT: &[&str] = &[
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "importance",
    "parentFolderId",
    "conversationId",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
];

fn recipient((name, address): &(String, String)) -> Value {
    json!({"emailAddress": {"name": name, "address": address}})
}

fn people(list: &[(String, String)]) -> Value {
    Value::Array(list.iter().map(recipient).collect())
}

/// What a message's JSON needs besides the record.
pub(crate) struct MessageView<'a> {
    pub(crate) record: &'a MessageRecord,
    pub(crate) summary: &'a Summary,
    pub(crate) folder_id: &'a str,
    pub(crate) immutable: bool,
    /// The `singleValueExtendedProperties` asked for by `$expand` (left out when none matched).
    pub(crate) extended: Option<Vec<Value>>,
    /// `bodyPreview`, when asked for.
    pub(crate) preview: Option<String>,
    /// `body` (text), when asked for.
    pub(crate) body: Option<String>,
}

/// A message's JSON.
pub(crate) fn message(view: &MessageView<'_>, select: Option<&[&str]>, delta: bool) -> Value {
    let record = view.record;
    let summary = view.summary;
    let id = if view.immutable {
        &record.immutable_id
    } else {
        &record.id
    };
    let created = record.created();
    let change_key = format!("CQAAABYAAAD{:016X}", record.seq);
    let mut map = Map::new();
    if delta {
        map.insert("@odata.type".into(), json!("#microsoft.graph.message"));
    }
    map.insert("@odata.etag".into(), json!(format!("W/\"{change_key}\"")));
    for &property in select.unwrap_or(MESSAGE_DEFAULT) {
        let value = match property {
            "id" => json!(id),
            "createdDateTime" => json!(graph_time(created.map_or(record.received, |c| c.created))),
            "receivedDateTime" => json!(graph_time(record.received)),
            "lastModifiedDateTime" => {
                json!(graph_time(created.map_or(record.received + 60, |c| {
                    c.created.max(record.received)
                })))
            }
            "changeKey" => json!(change_key),
            "categories" => json!(created.map_or(&[][..], |c| &c.categories[..])),
            "bccRecipients" => people(created.map_or(&[][..], |c| &c.bcc[..])),
            "replyTo" => people(created.map_or(&[][..], |c| &c.reply_to[..])),
            "internetMessageHeaders" => Value::Array(
                created
                    .map_or(&[][..], |c| &c.headers[..])
                    .iter()
                    .map(|(name, value)| json!({"name": name, "value": value}))
                    .collect(),
            ),
            "sentDateTime" => json!(graph_time(summary.sent)),
            "hasAttachments" => json!(summary.has_attachments),
            "internetMessageId" => json!(summary.internet_message_id),
            "subject" => json!(summary.subject),
            "bodyPreview" => json!(view.preview.as_deref().unwrap_or_default()),
            "importance" => json!(created.map_or("normal", |c| c.importance.as_str())),
            "parentFolderId" => json!(view.folder_id),
            "conversationId" => json!(format!("AAQkAD{:016X}", summary.conversation)),
            "conversationIndex" => json!(format!("AQHZ{:016X}", summary.conversation)),
            "isDeliveryReceiptRequested" | "isReadReceiptRequested" => json!(false),
            "isDraft" => json!(created.is_some_and(|c| c.is_draft)),
            "isRead" => json!(record.is_read),
            "webLink" => json!(format!(
                "https://outlook.office365.com/owa/?ItemID={id}&exvsurl=1&viewmodel=ReadMessageItem"
            )),
            "inferenceClassification" => json!("focused"),
            "from" => summary.from.as_ref().map_or(Value::Null, recipient),
            "sender" => created
                .and_then(|c| c.sender.as_ref())
                .or(summary.from.as_ref())
                .map_or(Value::Null, recipient),
            "toRecipients" => people(&summary.to),
            "ccRecipients" => people(&summary.cc),
            "flag" => json!({"flagStatus": if record.flagged { "flagged" } else { "notFlagged" }}),
            "body" | "uniqueBody" => {
                let kind = match created.map(|c| c.body_kind) {
                    Some(BodyKind::Html) => "html",
                    _ => "text",
                };
                json!({"contentType": kind, "content": view.body.as_deref().unwrap_or_default()})
            }
            _ => continue,
        };
        map.insert(property.to_owned(), value);
    }
    map.entry("id").or_insert_with(|| json!(id));
    if let Some(extended) = &view.extended {
        map.insert(
            "singleValueExtendedProperties".into(),
            Value::Array(extended.clone()),
        );
    }
    Value::Object(map)
}

/// A removed message in a delta page.
pub(crate) fn removed_message(id: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.message", "id": id, "@removed": {"reason": "deleted"}})
}
