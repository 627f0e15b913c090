//! The OpenAPI 3.1 document of `/api/v1`, served at `/api/v1/openapi.json`.

use serde_json::{Value, json};

fn param(name: &str, place: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": place, "required": place == "path", "description": description, "schema": schema})
}

fn error_responses() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let content = json!({"application/json": {"schema": error}});
    json!({
        "400": {"description": "a parameter or the body is wrong", "content": content},
        "401": {"description": "no valid session or API token", "content": content},
        "403": {"description": "outside the caller's archives or scopes (recorded in the audit log), or no CSRF token", "content": content},
        "404": {"description": "not found (only when the caller could have seen it)", "content": content}
    })
}

fn op(summary: &str, params: Vec<Value>, ok: Value) -> Value {
    let mut responses = error_responses();
    if let (Some(map), Some(ok)) = (responses.as_object_mut(), ok.as_object()) {
        for (k, v) in ok {
            map.insert(k.clone(), v.clone());
        }
    }
    json!({"summary": summary, "parameters": params, "responses": responses})
}

fn with_body(mut operation: Value, schema: Value) -> Value {
    operation["requestBody"] =
        json!({"required": true, "content": {"application/json": {"schema": schema}}});
    if let Some(params) = operation["parameters"].as_array_mut() {
        params.push(param(
            "X-CSRF-Token",
            "header",
            "the session's CSRF token (cookie sessions only)",
            json!({"type": "string"}),
        ));
    }
    operation
}

/// The document.
pub fn document() -> Value {
    let string = json!({"type": "string"});
    let id = param("id", "path", "message id (content address)", string.clone());
    let json_ok = |schema: Value| json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}});
    let file_ok = |ty: &str| json!({"200": {"description": "a download", "content": {ty: {"schema": {"type": "string", "format": "binary"}}}}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "m365-archiver archive API", "version": "1"},
        "components": {
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "description": "an API token (`m365-archiver access token create`)"},
                "session": {"type": "apiKey", "in": "cookie", "name": "archive_session"}
            },
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {"code": string, "message": string}}}},
                "Hit": {"type": "object", "properties": {"id": string, "user": string, "folder": string, "date": {"type": ["string", "null"], "format": "date-time"}, "from": {"type": ["string", "null"]}, "subject": {"type": ["string", "null"]}}},
                "SearchPage": {"type": "object", "properties": {"hits": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}}, "next_cursor": string}},
                "Restore": {"type": "object", "properties": {"restored": {"type": "integer"}, "skipped_existing": {"type": "integer"}, "failed": {"type": "integer"}, "bytes": {"type": "integer"}, "to_mailbox": string, "to_folder": string}}
            }
        },
        "security": [{"token": []}, {"session": []}],
        "paths": {
            "/api/v1/search": {"get": op("Full-text search over the caller's archives", vec![
                param("q", "query", "the search (field syntax)", string.clone()),
                param("user", "query", "only this archive", string.clone()),
                param("from", "query", "received on or after (YYYY-MM-DD or RFC 3339)", string.clone()),
                param("to", "query", "received before", string.clone()),
                param("limit", "query", "hits per page, 1..500 (default 50)", json!({"type": "integer"})),
                param("cursor", "query", "next_cursor of the previous page", string.clone()),
            ], json_ok(json!({"$ref": "#/components/schemas/SearchPage"})))},
            "/api/v1/messages/{id}": {"get": op("Metadata, text, recipients and attachments of a message", vec![id.clone()], json_ok(json!({"type": "object"})))},
            "/api/v1/messages/{id}/raw": {"get": op("The archived MIME bytes", vec![id.clone()], file_ok("message/rfc822"))},
            "/api/v1/messages/{id}/attachments/{n}": {"get": op("One attachment, as a download", vec![id, param("n", "path", "attachment index (0-based)", json!({"type": "integer"}))], file_ok("application/octet-stream"))},
            "/api/v1/folders": {"get": op("Folders of an archive with message counts", vec![param("user", "query", "the archive (default: the caller's own)", string.clone())], json_ok(json!({"type": "array"})))},
            "/api/v1/export": {"post": with_body(op("Export an archive, a folder or a search", vec![], file_ok("application/octet-stream")),
                json!({"type": "object", "required": ["user", "format"], "properties": {"user": string, "query": string, "folder": string, "format": {"enum": ["mbox", "eml-zip"]}}}))},
            "/api/v1/restore": {"post": with_body(op("Restore messages to a mailbox", vec![], json_ok(json!({"$ref": "#/components/schemas/Restore"}))),
                json!({"type": "object", "required": ["ids"], "properties": {"ids": {"type": "array", "items": string}, "to_mailbox": string, "to_folder": string}}))},
            "/api/v1/audit": {"get": op("Audit events", vec![param("since", "query", "events at or after", string.clone()), param("limit", "query", "at most (default 100)", json!({"type": "integer"}))], json_ok(json!({"type": "array"})))},
            "/api/v1/holds": {
                "get": op("Legal holds", vec![], json_ok(json!({"type": "array"}))),
                "post": with_body(op("Place a legal hold", vec![], json!({"201": {"description": "created"}})),
                    json!({"type": "object", "required": ["case", "reason"], "properties": {"case": string, "reason": string, "users": {"type": "array", "items": string}, "query": string, "from": string, "to": string}}))
            }
        }
    })
}
