//! Microsoft Graph v1.0 wire types for mail: collection pages, `mailFolder`, `message`
//! (as selected for summaries), delta removals and `$batch` requests and answers (the
//! error body is `m365_auth::transport::GraphError`). Serde only, no logic beyond turning
//! a page's bytes into typed values with a precise error.
//!
//! Every field Graph may omit is optional: a summary with fields missing is still useful,
//! while an item without an `id` makes the page unusable and is reported as such.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use m365_auth::transport::GraphError;
use serde::{Deserialize, Serialize};

/// The `Integer 0x0E08` extended property (`PR_MESSAGE_SIZE`): the message size in bytes.
pub const MESSAGE_SIZE_PROPERTY: &str = "Integer 0x0E08";

/// The named extended property that marks a restored item with the archive's id of its
/// message (see [`crate::RestoreKey`]).
pub const RESTORE_KEY_PROPERTY: &str =
    "String {6f3b2a1e-5c7d-4e8f-9a0b-1c2d3e4f5a6b} Name ArchiveMessageId";

/// `PR_MESSAGE_FLAGS`: 1 read, 0 unread, never a draft (settable at creation only).
pub const MESSAGE_FLAGS_PROPERTY: &str = "Integer 0x0E07";

/// `PR_MESSAGE_DELIVERY_TIME`: when the message was received (creation only).
pub const DELIVERY_TIME_PROPERTY: &str = "SystemTime 0x0E06";

/// `PR_CLIENT_SUBMIT_TIME`: when the message was sent (creation only).
pub const SUBMIT_TIME_PROPERTY: &str = "SystemTime 0x0039";

/// `@odata.type` of a search folder.
pub const SEARCH_FOLDER_TYPE: &str = "#microsoft.graph.mailSearchFolder";

/// One page of a Graph collection (`value` plus paging links).
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    /// The items of this page (may be empty on a delta page that is not the last).
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    /// URL of the next page; follow verbatim.
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
    /// URL to keep for the next delta round; only on the last page of a delta round.
    #[serde(rename = "@odata.deltaLink", default)]
    pub delta_link: Option<String>,
}

/// `GET /beta/users/{id}/settings/exchange`: the mailbox ids of a user.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeSettings {
    /// The primary mailbox (`MBX:…`).
    #[serde(default)]
    pub primary_mailbox_id: Option<String>,
    /// The In-Place Archive (`MBX:…`); absent or `null` when the user has none.
    #[serde(default)]
    pub in_place_archive_mailbox_id: Option<String>,
}

/// A `mailFolder` (or `mailSearchFolder`) as listed by `mailFolders` / `childFolders`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailFolder {
    /// Folder id.
    pub id: String,
    /// `#microsoft.graph.mailSearchFolder` for search folders.
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Parent folder id.
    #[serde(default)]
    pub parent_folder_id: Option<String>,
    /// Number of direct child folders.
    #[serde(default)]
    pub child_folder_count: Option<u64>,
    /// Unread items.
    #[serde(default)]
    pub unread_item_count: Option<u64>,
    /// All items.
    #[serde(default)]
    pub total_item_count: Option<u64>,
    /// Hidden folder.
    #[serde(default)]
    pub is_hidden: Option<bool>,
    /// Present on search folders (`mailSearchFolder.filterQuery`).
    #[serde(default)]
    pub filter_query: Option<String>,
}

impl MailFolder {
    /// Whether this is a search folder (its items live in other folders).
    pub fn is_search_folder(&self) -> bool {
        self.odata_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(SEARCH_FOLDER_TYPE))
            || self.filter_query.is_some()
    }
}

/// Just the id of an object (`GET mailFolders/{well-known name}?$select=id`).
#[derive(Debug, Clone, Deserialize)]
pub struct IdOnly {
    /// The id.
    pub id: String,
}

/// Body of `POST $batch`: up to 20 inner requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRequest {
    /// The inner requests.
    pub requests: Vec<BatchRequestItem>,
}

/// One inner request of a `$batch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRequestItem {
    /// Id the answer will carry.
    pub id: String,
    /// HTTP method (`GET`).
    pub method: String,
    /// URL relative to the API root (`/users/{id}/mailFolders/inbox`).
    pub url: String,
    /// Request headers (`Prefer`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl BatchRequestItem {
    /// A `GET` of `url` (relative to the API root) with a `Prefer` header.
    pub fn get(id: impl Into<String>, url: impl Into<String>, prefer: &str) -> Self {
        Self {
            id: id.into(),
            method: "GET".into(),
            url: url.into(),
            headers: BTreeMap::from([("Prefer".to_string(), prefer.to_string())]),
        }
    }
}

/// Answer of `POST $batch`: one response per inner request, in any order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BatchResponse {
    /// The inner responses.
    #[serde(default)]
    pub responses: Vec<BatchItem>,
}

/// One inner response of a `$batch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchItem {
    /// The id of the inner request it answers.
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    /// Its HTTP status.
    pub status: u16,
    /// Its headers (`Retry-After` on a 429).
    #[serde(default)]
    pub headers: serde_json::Map<String, serde_json::Value>,
    /// Its JSON body, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

impl BatchItem {
    /// A header value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
    }

    /// Whether the inner request succeeded (2xx).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The Graph error of a failed inner response.
    pub fn error(&self) -> Option<GraphError> {
        self.body.as_ref().and_then(GraphError::from_value)
    }

    /// The body as a `T`, when it is one.
    pub fn body_as<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        self.body.as_ref().and_then(|b| T::deserialize(b).ok())
    }
}

/// A batch id sent as a string may come back as a number.
fn id_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "batch response id {other} is neither a string nor a number"
        ))),
    }
}

/// `@removed` marker of a delta item.
#[derive(Debug, Clone, Deserialize)]
pub struct Removed {
    /// `deleted` (messages), `changed` (directory objects).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `followupFlag` of a message.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowupFlag {
    /// `notFlagged`, `complete` or `flagged`.
    #[serde(default)]
    pub flag_status: Option<String>,
}

/// One single-value extended property.
#[derive(Debug, Clone, Deserialize)]
pub struct ExtendedProperty {
    /// Property id, e.g. `Integer 0xe08`.
    pub id: String,
    /// Value as a string.
    #[serde(default)]
    pub value: Option<String>,
}

/// A message as selected for summaries, or a delta removal marker.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Message id.
    pub id: String,
    /// Present when the item left the folder.
    #[serde(rename = "@removed", default)]
    pub removed: Option<Removed>,
    /// `receivedDateTime` (an unparseable value counts as absent).
    #[serde(default, deserialize_with = "lenient_date_time")]
    pub received_date_time: Option<DateTime<Utc>>,
    /// `internetMessageId`.
    #[serde(default)]
    pub internet_message_id: Option<String>,
    /// `isRead`.
    #[serde(default)]
    pub is_read: Option<bool>,
    /// `flag`.
    #[serde(default)]
    pub flag: Option<FollowupFlag>,
    /// `parentFolderId`.
    #[serde(default)]
    pub parent_folder_id: Option<String>,
    /// `subject`.
    #[serde(default)]
    pub subject: Option<String>,
    /// Expanded extended properties (only `PR_MESSAGE_SIZE` is asked for).
    #[serde(default)]
    pub single_value_extended_properties: Option<Vec<ExtendedProperty>>,
}

impl Message {
    /// `PR_MESSAGE_SIZE` when Graph returned it. Graph normalises the property id
    /// (`Integer 0xe08`), so the tag is compared numerically.
    pub fn size(&self) -> Option<u64> {
        self.single_value_extended_properties
            .as_ref()?
            .iter()
            .find(|p| is_message_size_property(&p.id))
            .and_then(|p| p.value.as_deref())
            .and_then(|v| v.trim().parse::<u64>().ok())
    }

    /// Flag status is `flagged`.
    pub fn is_flagged(&self) -> bool {
        self.flag
            .as_ref()
            .and_then(|f| f.flag_status.as_deref())
            .is_some_and(|s| s.eq_ignore_ascii_case("flagged"))
    }
}

/// Accepts any JSON value; keeps it only when it is an RFC 3339 date-time.
fn lenient_date_time<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc)))
}

fn is_message_size_property(id: &str) -> bool {
    let mut parts = id.split_whitespace();
    let (Some(kind), Some(tag), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if !kind.eq_ignore_ascii_case("Integer") {
        return false;
    }
    let hex = tag
        .strip_prefix("0x")
        .or_else(|| tag.strip_prefix("0X"))
        .unwrap_or(tag);
    u32::from_str_radix(hex, 16).is_ok_and(|t| t == 0x0E08)
}

/// Why a page could not be used.
#[derive(Debug, thiserror::Error)]
#[error("malformed Graph page ({len} bytes): {source}")]
pub struct PageError {
    len: usize,
    #[source]
    source: serde_json::Error,
}

impl PageError {
    /// Whether the bytes ended early (a truncated body, worth retrying) rather than being
    /// complete but wrong.
    pub fn is_truncation(&self) -> bool {
        self.source.is_eof()
    }
}

/// Parses a collection page.
pub fn parse_page<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<Page<T>, PageError> {
    serde_json::from_slice(bytes).map_err(|source| PageError {
        len: bytes.len(),
        source,
    })
}

/// Parses a single object.
pub fn parse_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, PageError> {
    serde_json::from_slice(bytes).map_err(|source| PageError {
        len: bytes.len(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn delta_page_with_upsert_and_removal_parses() {
        let json = br##"{
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(message)",
            "@odata.nextLink": "https://graph.microsoft.com/v1.0/users/a/mailFolders/inbox/messages/delta?$skiptoken=abc",
            "value": [
                {"@odata.type": "#microsoft.graph.message", "@odata.etag": "W/\"x\"",
                 "id": "AAMkAD1=", "receivedDateTime": "2024-03-01T10:00:00Z",
                 "internetMessageId": "<a@b>", "isRead": false, "subject": "Hi",
                 "parentFolderId": "F1", "flag": {"flagStatus": "flagged"},
                 "singleValueExtendedProperties": [{"id": "Integer 0xe08", "value": "12345"}]},
                {"@odata.type": "#microsoft.graph.message", "id": "AAMkAD2=",
                 "@removed": {"reason": "deleted"}}
            ]
        }"##;
        let page: Page<Message> = parse_page(json).unwrap();
        assert!(page.next_link.is_some());
        assert!(page.delta_link.is_none());
        assert_eq!(page.value.len(), 2);
        let m = &page.value[0];
        assert_eq!(m.size(), Some(12345));
        assert!(m.is_flagged());
        assert_eq!(m.is_read, Some(false));
        assert!(m.removed.is_none());
        assert_eq!(
            page.value[1].removed.as_ref().unwrap().reason.as_deref(),
            Some("deleted")
        );
    }

    #[test]
    fn empty_delta_page_with_delta_link_parses() {
        let page: Page<Message> =
            parse_page(br#"{"value": [], "@odata.deltaLink": "https://x/delta?$deltatoken=t"}"#)
                .unwrap();
        assert!(page.value.is_empty());
        assert_eq!(
            page.delta_link.as_deref(),
            Some("https://x/delta?$deltatoken=t")
        );
    }

    #[test]
    fn size_property_id_is_matched_numerically() {
        for id in [
            "Integer 0x0E08",
            "Integer 0xe08",
            "integer 0xE08",
            "Integer  0x00000e08",
        ] {
            assert!(is_message_size_property(id), "{id}");
        }
        for id in [
            "Integer 0x0E09",
            "String 0x0E08",
            "Integer",
            "Integer 0xzz",
            "",
        ] {
            assert!(!is_message_size_property(id), "{id}");
        }
    }

    #[test]
    fn search_folder_is_recognised_by_type_or_filter() {
        let f: MailFolder = parse_object(
            br##"{"@odata.type":"#microsoft.graph.mailSearchFolder","id":"S","displayName":"Unread"}"##,
        )
        .unwrap();
        assert!(f.is_search_folder());
        let f: MailFolder = parse_object(br#"{"id":"S","filterQuery":"isRead eq false"}"#).unwrap();
        assert!(f.is_search_folder());
        let f: MailFolder =
            parse_object(br#"{"id":"F","displayName":"Inbox","isHidden":false}"#).unwrap();
        assert!(!f.is_search_folder());
    }

    #[test]
    fn truncated_page_is_recognised() {
        let err = parse_page::<Message>(br#"{"value": [{"id": "a"#).unwrap_err();
        assert!(err.is_truncation());
        let err = parse_page::<Message>(br#"{"value": 5}"#).unwrap_err();
        assert!(!err.is_truncation());
    }

    #[test]
    fn item_without_id_makes_the_page_unusable() {
        assert!(parse_page::<Message>(br#"{"value": [{"subject": "x"}]}"#).is_err());
    }

    #[test]
    fn graph_error_body_parses() {
        let e = GraphError::parse(
            br#"{"error":{"code":"ErrorAccessDenied","message":"Access to OData is disabled.","innerError":{"date":"x","request-id":"r1"}}}"#,
        )
        .unwrap();
        assert_eq!(e.code, "ErrorAccessDenied");
        assert_eq!(e.request_id.as_deref(), Some("r1"));
        assert!(GraphError::parse(b"<html>").is_none());
    }

    /// The request shape Graph documents for JSON batching.
    #[test]
    fn batch_request_serialises_to_the_documented_shape() {
        let batch = BatchRequest {
            requests: vec![
                BatchRequestItem::get(
                    "1",
                    "/users/a@x/mailFolders/inbox?$select=id",
                    "odata.maxpagesize=1",
                ),
                BatchRequestItem {
                    id: "2".into(),
                    method: "GET".into(),
                    url: "/users/a@x/mailFolders".into(),
                    headers: BTreeMap::new(),
                },
            ],
        };
        let json = serde_json::to_value(&batch).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"requests": [
                {"id": "1", "method": "GET", "url": "/users/a@x/mailFolders/inbox?$select=id",
                 "headers": {"Prefer": "odata.maxpagesize=1"}},
                {"id": "2", "method": "GET", "url": "/users/a@x/mailFolders"}
            ]})
        );
        let back: BatchRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, batch);
    }

    /// The answer shape Graph documents, through a serialise/parse round trip.
    #[test]
    fn batch_response_round_trips() {
        let documented = serde_json::json!({"responses": [
            {"id": "1", "status": 200, "headers": {"Content-Type": "application/json"},
             "body": {"id": "AAMk"}},
            {"id": "2", "status": 429, "headers": {"Retry-After": "3"},
             "body": {"error": {"code": "ApplicationThrottled", "message": "slow down"}}},
            {"id": "3", "status": 204, "headers": {}}
        ]});
        let parsed: BatchResponse = serde_json::from_value(documented.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), documented);
        assert!(parsed.responses[0].is_success());
        assert_eq!(parsed.responses[0].body_as::<IdOnly>().unwrap().id, "AAMk");
        assert_eq!(
            parsed.responses[1].error().unwrap().code,
            "ApplicationThrottled"
        );
        assert!(parsed.responses[2].body.is_none());
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            ".{0,12}".prop_map(serde_json::Value::String),
            prop_oneof![
                Just("id"),
                Just("value"),
                Just("@odata.nextLink"),
                Just("@removed"),
                Just("flag"),
                Just("singleValueExtendedProperties"),
                Just("receivedDateTime"),
            ]
            .prop_map(|s| serde_json::Value::String(s.to_string())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("id".to_string()),
                            Just("value".to_string()),
                            Just("@odata.nextLink".to_string()),
                            Just("@odata.deltaLink".to_string()),
                            Just("@removed".to_string()),
                            Just("flag".to_string()),
                            Just("isRead".to_string()),
                            Just("receivedDateTime".to_string()),
                            Just("singleValueExtendedProperties".to_string()),
                            ".{0,8}",
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn batch_answers_parse_with_string_or_number_ids() {
        let bytes = br#"{"responses":[
            {"id":"wk-inbox","status":200,"headers":{"Content-Type":"application/json"},"body":{"id":"AAMk"}},
            {"id":7,"status":429,"headers":{"Retry-After":"3"},"body":{"error":{"code":"ApplicationThrottled","message":"slow down"}}},
            {"id":"x","status":404}
        ]}"#;
        let batch = parse_object::<BatchResponse>(bytes).unwrap();
        assert_eq!(batch.responses.len(), 3);
        assert_eq!(batch.responses[0].id, "wk-inbox");
        assert_eq!(batch.responses[1].id, "7");
        assert_eq!(batch.responses[1].header("retry-after"), Some("3"));
        assert_eq!(
            batch.responses[1].error().unwrap().code,
            "ApplicationThrottled"
        );
        assert!(batch.responses[2].error().is_none());
        assert!(
            parse_object::<BatchResponse>(br#"{"responses":[{"id":null,"status":200}]}"#).is_err()
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_page::<Message>(&bytes);
            let _ = parse_page::<MailFolder>(&bytes);
            let _ = parse_object::<IdOnly>(&bytes);
            if let Ok(batch) = parse_object::<BatchResponse>(&bytes) {
                for item in &batch.responses {
                    let _ = (item.header("Retry-After"), item.error());
                }
            }
        }

        #[test]
        fn arbitrary_json_batches_parse_or_fail_cleanly(v in arb_json()) {
            let bytes = serde_json::to_vec(&serde_json::json!({"responses": [v]})).unwrap();
            if let Ok(batch) = parse_object::<BatchResponse>(&bytes) {
                for item in &batch.responses {
                    let _ = (item.header("retry-after"), item.error());
                }
            }
        }

        #[test]
        fn arbitrary_json_pages_parse_or_fail_cleanly(v in arb_json()) {
            let bytes = serde_json::to_vec(&v).unwrap();
            if let Ok(page) = parse_page::<Message>(&bytes) {
                for m in &page.value {
                    let _ = (m.size(), m.is_flagged());
                }
            }
            if let Ok(page) = parse_page::<MailFolder>(&bytes) {
                for f in &page.value {
                    let _ = f.is_search_folder();
                }
            }
        }

        #[test]
        fn truncating_a_valid_page_is_detected(cut in 0usize..200) {
            let full = br#"{"value":[{"id":"AAMk=","isRead":true,"subject":"x"}],"@odata.deltaLink":"https://g/d?$deltatoken=1"}"#;
            let cut = cut.min(full.len() - 1);
            let result = parse_page::<Message>(&full[..cut]);
            prop_assert!(result.is_err());
        }
    }
}
