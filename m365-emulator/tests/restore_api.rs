//! The write side of the emulator (restore) over real HTTP: JSON and MIME creates with the MAPI
//! flags honoured at creation only, PATCH, folders with 409 on duplicates, attachments in one
//! request and through upload sessions, the 4 MB body limit, the upload budget, Mail.ReadWrite,
//! and restored messages served by listings, `$expand`, delta and `$value` like any other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use m365_emulator::{Emulator, EmulatorConfig};
use reqwest::Method;
use serde_json::{Value, json};

const KEY: &str = "String {6f3b2a1e-5c7d-4e8f-9a0b-1c2d3e4f5a6b} Name ArchiveMessageId";

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
    user: String,
}

/// One request and what it must answer.
struct Call<'a> {
    method: Method,
    path: &'a str,
    /// JSON body, or raw text with `Content-Type: text/plain` when `mime` is set.
    body: Value,
    mime: Option<String>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: &'a str, body: Value) -> Self {
        Call {
            method,
            path,
            body,
            mime: None,
        }
    }

    fn mime(path: &'a str, text: String) -> Self {
        Call {
            method: Method::POST,
            path,
            body: Value::Null,
            mime: Some(text),
        }
    }
}

impl Api {
    async fn new(emu: &Emulator) -> Api {
        Api {
            base: format!("{}v1.0", emu.graph_url()),
            token: common::token(emu).await,
            http: common::client(),
            user: emu.users()[0].upn.clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}/users/{}{path}", self.base, self.user)
        }
    }

    async fn send(&self, call: Call<'_>) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .http
            .request(call.method, self.url(call.path))
            .bearer_auth(&self.token)
            .header("Prefer", "IdType=\"ImmutableId\"");
        request = match call.mime {
            Some(text) => request.header("Content-Type", "text/plain").body(text),
            None if call.body.is_null() => request,
            None => request.json(&call.body),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn get(&self, path: &str) -> Value {
        let (status, _, body) = self.send(Call::new(Method::GET, path, Value::Null)).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn value(&self, id: &str) -> Vec<u8> {
        let response = self
            .http
            .get(self.url(&format!("/messages/{id}/$value")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.bytes().await.unwrap().to_vec()
    }

    /// A JSON create that must succeed; answers the message.
    async fn create(&self, folder: &str, body: Value) -> Value {
        let path = format!("/mailFolders/{folder}/messages");
        check(self, Call::new(Method::POST, &path, body), 201, None).await
    }
}

/// Sends a call and checks its status and, for errors, Graph's error code; answers the body.
async fn check(api: &Api, call: Call<'_>, status: u16, code: Option<&str>) -> Value {
    let description = format!("{} {}", call.method, call.path);
    let (got, _, body) = api.send(call).await;
    assert_eq!(got, status, "{description}: {body}");
    if let Some(code) = code {
        common::graph::assert_graph_error(&body, code);
    }
    body
}

async fn emulator() -> Emulator {
    common::start_with(EmulatorConfig {
        users: 2,
        messages_per_user: 3,
        seed: 15,
        ..Default::default()
    })
    .await
}

fn person(name: &str, address: &str) -> Value {
    json!({"emailAddress": {"name": name, "address": address}})
}

fn restored(key: &str, flags: u32) -> Value {
    json!({
        "subject": "Quarterly numbers — Größe",
        "body": {"contentType": "html", "content": "<p>See <img src=\"cid:logo@x\"></p>"},
        "from": person("Ada Lovelace", "ada@example.com"),
        "sender": person("Assistant", "assistant@example.com"),
        "toRecipients": [person("Bob", "bob@example.com")],
        "ccRecipients": [person("Zoë", "zoe@example.com")],
        "bccRecipients": [person("Hidden", "hidden@example.com")],
        "replyTo": [person("Replies", "replies@example.com")],
        "internetMessageId": "<q1.2024@example.com>",
        "internetMessageHeaders": [{"name": "X-Archive-Source", "value": "archive one"}],
        "importance": "high",
        "categories": ["Red", "Project X"],
        "singleValueExtendedProperties": [
            {"id": "Integer 0x0E07", "value": flags.to_string()},
            {"id": "SystemTime 0x0E06", "value": "2024-03-01T10:00:00Z"},
            {"id": "SystemTime 0x0039", "value": "2024-03-01T09:59:00Z"},
            {"id": KEY, "value": key},
        ],
        "attachments": [
            {"@odata.type": "#microsoft.graph.fileAttachment", "name": "logo.png",
             "contentType": "image/png", "contentBytes": STANDARD.encode(b"\x89PNG tiny"),
             "contentId": "logo@x", "isInline": true},
            {"@odata.type": "#microsoft.graph.fileAttachment", "name": "Übersicht.pdf",
             "contentType": "application/pdf", "contentBytes": STANDARD.encode(b"%PDF-1.4 body")},
        ],
    })
}

#[tokio::test]
async fn json_creates_honour_the_mapi_flags_and_serve_back_what_was_set() {
    let emu = emulator().await;
    let api = Api::new(&emu).await;
    let message = api.create("inbox", restored("archive-1", 1)).await;
    let id = message["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("AAkALg"), "immutable id: {id}");
    assert_eq!(message["isDraft"], false, "{message}");
    assert_eq!(message["isRead"], true);
    assert_eq!(message["receivedDateTime"], "2024-03-01T10:00:00Z");
    assert_eq!(message["sentDateTime"], "2024-03-01T09:59:00Z");
    assert_eq!(message["importance"], "high");
    assert_eq!(message["hasAttachments"], true);
    assert_eq!(
        message["bccRecipients"][0]["emailAddress"]["address"],
        "hidden@example.com"
    );
    assert_eq!(
        message["sender"]["emailAddress"]["address"],
        "assistant@example.com"
    );
    assert_eq!(message["body"]["contentType"], "html");

    let state = emu.message_state(&api.user, &id).unwrap();
    assert!(state.created && !state.is_draft && state.is_read);
    assert_eq!(state.flags, 0x1 | 0x10, "read, has attachments, not unsent");
    assert_eq!(
        state.extended_properties.get(KEY).map(String::as_str),
        Some("archive-1")
    );
    assert_eq!(state.attachments.len(), 2);
    assert_eq!(&state.attachments[1].bytes[..], b"%PDF-1.4 body");

    // Unread and without the flags: the first is unread, not a draft; the second a draft.
    let unread = api.create("inbox", restored("archive-2", 0)).await;
    assert_eq!(
        (unread["isRead"].clone(), unread["isDraft"].clone()),
        (json!(false), json!(false))
    );
    let draft = api
        .create(
            "inbox",
            json!({"subject": "no flags", "body": {"contentType": "text", "content": "x"}}),
        )
        .await;
    assert_eq!(
        draft["isDraft"], true,
        "without 0x0E07 Graph creates a draft"
    );
    let drafts_folder = api.get("/mailFolders/drafts").await["id"].clone();
    let in_drafts = check(
        &api,
        Call::new(Method::POST, "/messages", json!({"subject": "d"})),
        201,
        None,
    )
    .await;
    assert_eq!(in_drafts["parentFolderId"], drafts_folder);

    // The MIME is rendered from what was created.
    let mime = String::from_utf8(api.value(&id).await).unwrap();
    for needle in [
        "From: \"Ada Lovelace\" <ada@example.com>",
        "Sender: \"Assistant\" <assistant@example.com>",
        "To: \"Bob\" <bob@example.com>",
        "Bcc: \"Hidden\" <hidden@example.com>",
        "Reply-To: \"Replies\" <replies@example.com>",
        "Date: Fri, 1 Mar 2024 09:59:00 +0000",
        "Message-ID: <q1.2024@example.com>",
        "Importance: high",
        "Keywords: Red, Project X",
        "X-Archive-Source: archive one",
        "multipart/related",
        "Content-ID: <logo@x>",
        "filename*=utf-8''%C3%9Cbersicht%2Epdf",
    ] {
        assert!(mime.contains(needle), "{needle} missing from\n{mime}");
    }
    assert!(!mime.contains("Received:"), "no transport headers");
}

#[tokio::test]
async fn listings_expand_the_restore_key_select_and_page() {
    let emu = emulator().await;
    let api = Api::new(&emu).await;
    let folder = check(
        &api,
        Call::new(
            Method::POST,
            "/mailFolders/msgfolderroot/childFolders",
            json!({"displayName": "Lookup"}),
        ),
        201,
        None,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(api.create(&folder, restored(&format!("key-{n}"), 1)).await["id"].clone());
    }
    api.create(&folder, json!({"subject": "unmarked"})).await;
    let filter = format!(
        "/mailFolders/{folder}/messages?$select=id,internetMessageId&$expand=singleValueExtendedProperties($filter=id eq '{KEY}')&$top=2"
    );
    let mut keys = Vec::new();
    let mut link = filter.clone();
    let mut pages = 0;
    loop {
        let page = api.get(&link).await;
        pages += 1;
        for item in page["value"].as_array().unwrap() {
            assert!(item.get("subject").is_none(), "$select applies: {item}");
            assert!(item["internetMessageId"].is_string());
            if let Some(props) = item.get("singleValueExtendedProperties") {
                assert_eq!(props[0]["id"], KEY);
                keys.push(props[0]["value"].as_str().unwrap().to_owned());
            }
        }
        match page["@odata.nextLink"].as_str() {
            Some(next) => link = next.to_owned(),
            None => break,
        }
    }
    keys.sort();
    assert_eq!(keys, ["key-0", "key-1", "key-2"]);
    assert_eq!(pages, 2, "four items by two");

    // The tagged properties Exchange computes can be expanded too.
    let one = api
        .get(&format!(
            "/messages/{}?$expand=singleValueExtendedProperties($filter=id eq 'Integer 0x0E07' or id eq 'SystemTime 0x0E06')",
            ids[0].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        one["singleValueExtendedProperties"],
        json!([{"id": "Integer 0xe07", "value": "17"}, {"id": "SystemTime 0xe06", "value": "2024-03-01T10:00:00Z"}])
    );

    // Delta serves restored messages like any other.
    let delta = api
        .get(&format!("/mailFolders/{folder}/messages/delta"))
        .await;
    let listed: Vec<&Value> = delta["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["id"])
        .collect();
    for id in &ids {
        assert!(listed.contains(&id), "{id} in delta");
    }
}

#[tokio::test]
async fn patch_changes_named_properties_and_ignores_the_creation_only_flags() {
    let emu = emulator().await;
    let api = Api::new(&emu).await;
    let created = api
        .create("inbox", restored("archive-9#incomplete", 1))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let before = emu.message_state(&api.user, &id).unwrap();
    let path = format!("/messages/{id}");
    let patched = check(
        &api,
        Call::new(
            Method::PATCH,
            &path,
            json!({
                "isRead": false,
                "categories": ["Blue"],
                "singleValueExtendedProperties": [
                    {"id": KEY, "value": "archive-9"},
                    {"id": "Integer 0x0E07", "value": "8"},
                    {"id": "SystemTime 0x0E06", "value": "2020-01-01T00:00:00Z"},
                    {"id": "SystemTime 0x0039", "value": "2020-01-01T00:00:00Z"},
                ],
            }),
        ),
        200,
        None,
    )
    .await;
    assert_eq!(patched["isRead"], false);
    assert_eq!(
        patched["isDraft"], false,
        "0x0E07 is honoured at creation only"
    );
    assert_eq!(patched["categories"], json!(["Blue"]));
    let after = emu.message_state(&api.user, &id).unwrap();
    assert_eq!((after.received, after.sent), (before.received, before.sent));
    assert_eq!(
        after.extended_properties.get(KEY).map(String::as_str),
        Some("archive-9")
    );
    assert!(
        String::from_utf8(api.value(&id).await)
            .unwrap()
            .contains("Keywords: Blue")
    );
    // A sent (non-draft) item keeps its recipients.
    check(
        &api,
        Call::new(
            Method::PATCH,
            &path,
            json!({"toRecipients": [person("X", "x@example.com")]}),
        ),
        400,
        Some("ErrorInvalidPropertyUpdateSentMessage"),
    )
    .await;
}

#[tokio::test]
async fn folders_are_created_once_and_found_by_name() {
    let emu = emulator().await;
    let api = Api::new(&emu).await;
    let restored_folder = check(
        &api,
        Call::new(
            Method::POST,
            "/mailFolders/msgfolderroot/childFolders",
            json!({"displayName": "Restored"}),
        ),
        201,
        None,
    )
    .await;
    let parent = restored_folder["id"].as_str().unwrap().to_owned();
    let children = format!("/mailFolders/{parent}/childFolders");
    let child = check(
        &api,
        Call::new(Method::POST, &children, json!({"displayName": "O'Brien"})),
        201,
        None,
    )
    .await;
    assert_eq!(child["parentFolderId"], parent.as_str());
    check(
        &api,
        Call::new(Method::POST, &children, json!({"displayName": "o'brien"})),
        409,
        Some("ErrorFolderExists"),
    )
    .await;
    let found = api
        .get(&format!("{children}?$filter=displayName eq 'O''Brien'"))
        .await;
    assert_eq!(found["value"].as_array().unwrap().len(), 1);
    assert_eq!(found["value"][0]["id"], child["id"]);
    assert_eq!(
        emu.folder_id_by_path(&api.user, &["Restored", "O'Brien"])
            .as_deref(),
        child["id"].as_str()
    );
    check(
        &api,
        Call::new(Method::POST, &children, json!({"displayName": ""})),
        400,
        Some("ErrorInvalidParameter"),
    )
    .await;
}

#[tokio::test]
async fn mime_creates_land_as_drafts_and_re_render_byte_identically() {
    let emu = emulator().await;
    let api = Api::new(&emu).await;
    let original = api.create("inbox", restored("archive-m", 1)).await;
    let bytes = api.value(original["id"].as_str().unwrap()).await;
    let encoded = STANDARD.encode(&bytes);
    // Line breaks inside the base64 are form, not meaning.
    let wrapped: String = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", String::from_utf8_lossy(c)))
        .collect();
    let copy = check(
        &api,
        Call::mime("/mailFolders/inbox/messages", wrapped),
        201,
        None,
    )
    .await;
    assert_eq!(copy["isDraft"], true, "a MIME create is a draft");
    assert_eq!(copy["subject"], original["subject"]);
    assert_eq!(copy["sentDateTime"], original["sentDateTime"]);
    let again = api.value(copy["id"].as_str().unwrap()).await;
    assert_eq!(
        String::from_utf8_lossy(&again),
        String::from_utf8_lossy(&bytes)
    );
    let state = emu
        .message_state(&api.user, copy["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(state.attachments.len(), 2);
}

#[tokio::test]
async fn bad_requests_are_refused_like_graph() {
    let emu = emulator().await;
    let api = Api::new(&emu).await;
    let inbox = "/mailFolders/inbox/messages";
    let big = "A".repeat(4 * 1024 * 1024 + 1);
    let cases: Vec<(Call<'_>, u16, &str)> = vec![
        (
            Call::mime(inbox, "not base64 at all!".into()),
            400,
            "ErrorMimeContentInvalidBase64String",
        ),
        (
            Call::new(
                Method::POST,
                inbox,
                json!({"internetMessageHeaders": [{"name": "Subject-Extra", "value": "v"}]}),
            ),
            400,
            "InvalidInternetMessageHeader",
        ),
        (
            Call::new(
                Method::POST,
                inbox,
                json!({"attachments": [{"@odata.type": "#microsoft.graph.fileAttachment", "name": "a", "contentBytes": "%%%"}]}),
            ),
            400,
            "ErrorInvalidRequest",
        ),
        (
            Call::new(
                Method::POST,
                inbox,
                json!({"singleValueExtendedProperties": [{"id": "Integer 0xZZ", "value": "1"}]}),
            ),
            400,
            "ErrorInvalidProperty",
        ),
        (
            Call::new(
                Method::POST,
                inbox,
                json!({"singleValueExtendedProperties": [{"id": "SystemTime 0x0E06", "value": "yesterday"}]}),
            ),
            400,
            "ErrorInvalidExtendedPropertyValue",
        ),
        (
            Call::new(Method::POST, inbox, json!({"subjectt": "typo"})),
            400,
            "RequestBroker--ParseUri",
        ),
        (
            Call::new(Method::POST, inbox, json!({"subject": big})),
            413,
            "ErrorRequestEntityTooLarge",
        ),
        (
            Call::mime(inbox, big.clone()),
            413,
            "ErrorRequestEntityTooLarge",
        ),
        (
            Call::new(Method::POST, "/mailFolders/nope/messages", json!({})),
            404,
            "ErrorFolderNotFound",
        ),
    ];
    for (call, status, code) in cases {
        check(&api, call, status, Some(code)).await;
    }
    assert_eq!(emu.message_count(&api.user), 3, "nothing was created");
}

/// PUTs a chunk to an upload URL without a bearer token; answers (status, headers, body).
async fn put_chunk(
    url: &str,
    data: &[u8],
    start: usize,
    end: usize,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = common::client()
        .put(url)
        .header("Content-Type", "application/octet-stream")
        .header(
            "Content-Range",
            format!("bytes {start}-{}/{}", end - 1, data.len()),
        )
        .body(data[start..end].to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn large_attachments_go_through_pre_authenticated_upload_sessions() {
    let emu = emulator().await;
    let api = Api::new(&emu).await;
    let message = api
        .create("inbox", restored("archive-big#incomplete", 1))
        .await;
    let id = message["id"].as_str().unwrap().to_owned();
    let path = format!("/messages/{id}/attachments/createUploadSession");
    let item = |size: usize| json!({"AttachmentItem": {"attachmentType": "file", "name": "backup.bin", "size": size, "contentType": "application/octet-stream"}});
    check(
        &api,
        Call::new(Method::POST, &path, item(1000)),
        400,
        Some("ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"),
    )
    .await;
    check(
        &api,
        Call::new(Method::POST, &path, item(151 * 1024 * 1024)),
        400,
        Some("ErrorAttachmentSizeLimitExceeded"),
    )
    .await;

    let data: Vec<u8> = (0..5 * 1024 * 1024 + 17)
        .map(|i: usize| (i % 251) as u8)
        .collect();
    let session = check(
        &api,
        Call::new(Method::POST, &path, item(data.len())),
        201,
        None,
    )
    .await;
    assert_eq!(session["nextExpectedRanges"], json!(["0-"]));
    assert!(session["expirationDateTime"].is_string());
    let url = session["uploadUrl"].as_str().unwrap().to_owned();
    assert!(url.contains("authtoken="), "{url}");
    let chunk = 4 * 1024 * 1024;
    let (status, _, body) = put_chunk(&url, &data, 0, chunk).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["nextExpectedRanges"], json!([chunk.to_string()]));
    // Out of order, and a guessed token.
    let (status, _, body) = put_chunk(&url, &data, 0, 10).await;
    assert_eq!(status, 416, "{body}");
    let forged = format!("{}x", &url[..url.len() - 1]);
    assert_eq!(put_chunk(&forged, &data, chunk, data.len()).await.0, 401);
    let (status, headers, _) = put_chunk(&url, &data, chunk, data.len()).await;
    assert_eq!(status, 201);
    let location = headers["location"].to_str().unwrap();
    assert!(location.contains("/Attachments('"), "{location}");

    let state = emu.message_state(&api.user, &id).unwrap();
    let uploaded = state
        .attachments
        .iter()
        .find(|a| a.name == "backup.bin")
        .unwrap();
    assert_eq!(&uploaded.bytes[..], &data[..]);
    let mime = api.value(&id).await;
    assert!(String::from_utf8_lossy(&mime).contains("filename=\"backup.bin\""));

    // An expired session takes no more chunks.
    let session = check(
        &api,
        Call::new(Method::POST, &path, item(data.len())),
        201,
        None,
    )
    .await;
    emu.expire_upload_sessions();
    let (status, _, body) =
        put_chunk(session["uploadUrl"].as_str().unwrap(), &data, 0, chunk).await;
    assert_eq!(status, 404, "{body}");
    common::graph::assert_graph_error(&body, "ErrorItemNotFound");
}

#[tokio::test]
async fn the_upload_budget_answers_429_with_retry_after() {
    let emu = emulator().await;
    let api = Api::new(&emu).await;
    let budget = 3 * 1024 * 1024;
    emu.set_upload_budget(budget);
    let body = json!({"subject": "bulk", "body": {"contentType": "text", "content": "z".repeat(1024 * 1024)}});
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let (status, headers, reply) = api
            .send(Call::new(
                Method::POST,
                "/mailFolders/inbox/messages",
                body.clone(),
            ))
            .await;
        if status == 429 {
            common::graph::assert_graph_error(&reply, "ApplicationThrottled");
            retry_after = headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        [201, 201, 429, 429],
        "two 1 MB creates fit in 3 MB, a third does not"
    );
    let retry_after = retry_after.expect("Retry-After on 429");
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    assert!(emu.upload_bytes_in_window(&api.user) <= budget);
    assert!(emu.mailbox_stats(&api.user).await.throttled >= 2);
}

#[tokio::test]
async fn writes_count_in_the_mailbox_gate_and_need_mail_read_write() {
    let emu = emulator().await;
    let api = Api::new(&emu).await;
    let before = emu.mailbox_stats(&api.user).await.requests;
    let calls = (0..12).map(|n| {
        api.send(Call::new(
            Method::POST,
            "/mailFolders/inbox/messages",
            json!({"subject": format!("parallel {n}")}),
        ))
    });
    let statuses: Vec<u16> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|(status, _, _)| status)
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 429),
        "{statuses:?}"
    );
    let stats = emu.mailbox_stats(&api.user).await;
    assert!(stats.requests >= before + 12, "writes count per mailbox");
    assert!((1..=4).contains(&stats.max_concurrency), "{stats:?}");

    let id = api.create("inbox", restored("archive-p", 1)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    emu.set_withdrawn_app_roles(&["Mail.ReadWrite"]);
    let patch = format!("/messages/{id}");
    let upload = format!("/messages/{id}/attachments/createUploadSession");
    for call in [
        Call::new(
            Method::POST,
            "/mailFolders/inbox/messages",
            json!({"subject": "x"}),
        ),
        Call::new(Method::PATCH, &patch, json!({"isRead": false})),
        Call::new(
            Method::POST,
            "/mailFolders/msgfolderroot/childFolders",
            json!({"displayName": "X"}),
        ),
        Call::new(
            Method::POST,
            &upload,
            json!({"AttachmentItem": {"size": 4_000_000}}),
        ),
    ] {
        check(&api, call, 403, Some("ErrorAccessDenied")).await;
    }
}
