//! `POST /v1.0/$batch` (and `/beta/$batch`, whose inner URLs are relative to beta): up to 20 requests, ids unique, `dependsOn` honoured (424 when a
//! dependency failed), at most 4 running at once as Outlook does. Each inner request goes back
//! through the gated router, so it is authenticated and throttled on its own (inner 429s).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, Ctx, json_response};
use crate::state::AppState;

/// Most requests one batch may hold.
const MAX_REQUESTS: usize = 20;
/// Inner requests run at once.
const PARALLEL: usize = 4;

/// One inner request of the payload.
#[derive(Debug, Deserialize)]
struct InnerRequest {
    id: Value,
    method: String,
    url: String,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default, rename = "dependsOn")]
    depends_on: Vec<Value>,
}

/// The payload.
#[derive(Debug, Deserialize)]
struct Payload {
    requests: Vec<InnerRequest>,
}

fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `POST /v1.0/$batch`.
pub(crate) async fn batch(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let payload = match validate(&body) {
        Ok(p) => p,
        Err(e) => return ctx.error(e),
    };
    let version = if ctx.beta { "beta" } else { "v1.0" };
    let mut results: HashMap<String, Value> = HashMap::new();
    let mut failed: HashSet<String> = HashSet::new();
    let mut pending: Vec<(String, InnerRequest)> = payload;
    while !pending.is_empty() {
        let (ready, waiting): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, r)| {
            r.depends_on
                .iter()
                .filter_map(id_text)
                .all(|d| results.contains_key(&d))
        });
        pending = waiting;
        if ready.is_empty() {
            break;
        }
        let mut to_run = Vec::new();
        for (id, request) in ready {
            let dependency_failed = request
                .depends_on
                .iter()
                .filter_map(id_text)
                .any(|d| failed.contains(&d));
            if dependency_failed {
                failed.insert(id.clone());
                results.insert(
                    id.clone(),
                    json!({
                        "id": id,
                        "status": 424,
                        "headers": {"Content-Type": "application/json"},
                        "body": {"error": {"code": "FailedDependency", "message": "The request was not run because a request it depends on failed."}},
                    }),
                );
            } else {
                to_run.push((id, request));
            }
        }
        let outcomes: Vec<(String, u16, Value)> =
            futures::stream::iter(to_run.into_iter().map(|(id, request)| {
                let state = Arc::clone(&state);
                let headers = headers.clone();
                async move {
                    let (status, value) = run_one(&state, &headers, version, &id, request).await;
                    (id, status, value)
                }
            }))
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for (id, status, value) in outcomes {
            if status >= 400 {
                failed.insert(id.clone());
            }
            results.insert(id, value);
        }
    }
    let responses: Vec<Value> = results.into_values().collect();
    json_response(StatusCode::OK, &json!({"responses": responses}))
}

fn validate(body: &[u8]) -> Result<Vec<(String, InnerRequest)>, ApiError> {
    let payload: Payload = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("BadRequest", format!("Invalid batch payload format: {e}"))
    })?;
    if payload.requests.is_empty() {
        return Err(ApiError::bad_request(
            "BadRequest",
            "Invalid batch payload format: no requests.",
        ));
    }
    if payload.requests.len() > MAX_REQUESTS {
        return Err(ApiError::bad_request(
            "BadRequest",
            format!(
                "Batch request contains {} requests; the limit is {MAX_REQUESTS}.",
                payload.requests.len()
            ),
        ));
    }
    let mut ids = HashSet::new();
    let mut out = Vec::new();
    for request in payload.requests {
        let id = id_text(&request.id).ok_or_else(|| {
            ApiError::bad_request("BadRequest", "Every batch request needs a non-empty 'id'.")
        })?;
        if !ids.insert(id.clone()) {
            return Err(ApiError::bad_request(
                "BadRequest",
                format!("Batch request contains duplicate Id '{id}'."),
            ));
        }
        out.push((id, request));
    }
    for (id, request) in &out {
        for dependency in &request.depends_on {
            let dependency = id_text(dependency).unwrap_or_default();
            if !ids.contains(&dependency) || dependency == *id {
                return Err(ApiError::bad_request(
                    "BadRequest",
                    format!("Request '{id}' depends on '{dependency}', which is not in the batch."),
                ));
            }
        }
    }
    // Reject cycles: repeatedly peel requests whose dependencies are all peeled.
    let mut done: HashSet<&str> = HashSet::new();
    loop {
        let before = done.len();
        for (id, request) in &out {
            if request
                .depends_on
                .iter()
                .filter_map(id_text)
                .all(|d| done.contains(d.as_str()))
            {
                done.insert(id.as_str());
            }
        }
        if done.len() == out.len() {
            break;
        }
        if done.len() == before {
            return Err(ApiError::bad_request(
                "BadRequest",
                "The dependsOn relations of the batch form a cycle.",
            ));
        }
    }
    Ok(out)
}

/// Runs one inner request; answers its status and its JSON for the `responses` array.
async fn run_one(
    state: &AppState,
    outer: &HeaderMap,
    version: &str,
    id: &str,
    request: InnerRequest,
) -> (u16, Value) {
    let inner_error = |status: u16, message: String| {
        (
            status,
            json!({"id": id, "status": status, "headers": {"Content-Type": "application/json"},
                   "body": {"error": {"code": "BadRequest", "message": message}}}),
        )
    };
    let Ok(method) = Method::from_bytes(request.method.trim().to_ascii_uppercase().as_bytes())
    else {
        return inner_error(400, format!("Invalid method '{}'.", request.method));
    };
    let url = request.url.trim();
    if url.contains("://") {
        return inner_error(
            400,
            "The URL of a batch request must be relative to the Graph version root.".into(),
        );
    }
    let uri = format!("/{version}/{}", url.trim_start_matches('/'));
    let mut builder = Request::builder().method(method).uri(&uri);
    if let Some(host) = outer.get(header::HOST) {
        builder = builder.header(header::HOST, host.clone());
    }
    for (name, value) in &request.headers {
        if let Some(text) = value.as_str() {
            builder = builder.header(name.as_str(), text);
        }
    }
    let body = match &request.body {
        Some(Value::String(s)) => Body::from(s.clone()),
        Some(other) => {
            if !request
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("content-type"))
            {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
            }
            Body::from(serde_json::to_vec(other).unwrap_or_default())
        }
        None => Body::empty(),
    };
    let Ok(inner) = builder.body(body) else {
        return inner_error(400, format!("Invalid URL or headers for request '{id}'."));
    };
    let response = state.dispatch_inner(outer, inner).await;
    to_json(id, response).await
}

async fn to_json(id: &str, response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let mut headers = Map::new();
    for (name, value) in response.headers() {
        let name = name.as_str();
        if matches!(name, "content-length" | "transfer-encoding" | "connection") {
            continue;
        }
        if let Ok(text) = value.to_str() {
            let key = match name {
                "content-type" => "Content-Type".to_owned(),
                "retry-after" => "Retry-After".to_owned(),
                "location" => "Location".to_owned(),
                other => other.to_owned(),
            };
            headers.insert(key, json!(text));
        }
    }
    let is_json = headers
        .get("Content-Type")
        .and_then(Value::as_str)
        .is_some_and(|c| c.contains("json"));
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut value = json!({"id": id, "status": status, "headers": headers});
    if !bytes.is_empty() {
        value["body"] = if is_json {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
        } else {
            json!(base64::engine::general_purpose::STANDARD.encode(&bytes))
        };
    }
    (status, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(id: &str, depends: &[&str]) -> Value {
        json!({"id": id, "method": "GET", "url": "/users", "dependsOn": depends})
    }

    proptest! {
        /// Arbitrary bytes are a 400, never a panic.
        #[test]
        fn arbitrary_payloads_are_refused_or_accepted(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = validate(&bytes);
        }

        /// Random dependency graphs: accepted exactly when every dependency exists and none loops.
        #[test]
        fn dependency_graphs_are_checked(edges in proptest::collection::vec((0usize..6, 0usize..7), 0..8)) {
            let mut requests = Vec::new();
            for i in 0..6 {
                let deps: Vec<String> = edges.iter().filter(|(from, _)| *from == i).map(|(_, to)| to.to_string()).collect();
                let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
                requests.push(request(&i.to_string(), &deps));
            }
            let result = validate(serde_json::to_vec(&json!({"requests": requests})).unwrap().as_slice());
            let dangling = edges.iter().any(|(from, to)| *to >= 6 || from == to);
            // A cycle exists when a topological peel does not finish.
            let mut done = [false; 6];
            loop {
                let mut progressed = false;
                for i in 0..6 {
                    if !done[i] && edges.iter().filter(|(f, _)| *f == i).all(|(_, t)| *t < 6 && done[*t]) {
                        done[i] = true;
                        progressed = true;
                    }
                }
                if !progressed { break; }
            }
            let cyclic = done.iter().any(|d| !d);
            prop_assert_eq!(result.is_ok(), !dangling && !cyclic);
        }
    }

    #[test]
    fn batch_limits_and_duplicate_ids() {
        let many: Vec<Value> = (0..21).map(|i| request(&i.to_string(), &[])).collect();
        assert!(validate(&serde_json::to_vec(&json!({"requests": many})).unwrap()).is_err());
        let twenty: Vec<Value> = (0..20).map(|i| request(&i.to_string(), &[])).collect();
        assert!(validate(&serde_json::to_vec(&json!({"requests": twenty})).unwrap()).is_ok());
        let duplicate = json!({"requests": [request("a", &[]), request("a", &[])]});
        assert!(validate(&serde_json::to_vec(&duplicate).unwrap()).is_err());
    }
}
