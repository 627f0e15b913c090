//! A Graph caller for the HTTP-level tests: GET, POST, raw bytes and paging with a
//! token of the emulator's app, and the checks of Graph error bodies.

use m365_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

/// A Graph caller: base URL, token, HTTP client.
pub struct Graph {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Graph {
    pub async fn new(emu: &Emulator) -> Graph {
        Graph {
            base: format!("{}v1.0", emu.graph_url()),
            token: super::token(emu).await,
            http: super::client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self.http.get(self.url(path)).bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_with(path, &[]).await
    }

    /// GETs `path` and checks that it is refused with this status and a well-formed Graph
    /// error of this code.
    pub async fn refuses(&self, path: &str, status: u16, code: &str) {
        let (got, body) = self.get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_graph_error(&body, code);
    }

    pub async fn post(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn bytes(&self, path: &str) -> (u16, Option<String>, Vec<u8>) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let length = response
            .headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, length, response.bytes().await.unwrap().to_vec())
    }

    /// Follows nextLinks; answers every item and the final page's body.
    pub async fn all_pages(
        &self,
        first: &str,
        headers: &[(&str, &str)],
    ) -> (Vec<Value>, Value, usize) {
        let mut items = Vec::new();
        let mut link = first.to_owned();
        let mut pages = 0;
        loop {
            let (status, body) = self.get_with(&link, headers).await;
            assert_eq!(status, 200, "{link}: {body}");
            pages += 1;
            items.extend(body["value"].as_array().unwrap().iter().cloned());
            match body["@odata.nextLink"].as_str() {
                Some(next) => link = next.to_owned(),
                None => return (items, body, pages),
            }
            assert!(pages < 10_000, "paging does not end");
        }
    }
}

/// Checks a Graph error body: this code, a message and the inner error fields.
pub fn assert_graph_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let inner = &body["error"]["innerError"];
    assert!(
        inner["request-id"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert!(inner["client-request-id"].as_str().is_some(), "{body}");
    assert!(inner["date"].as_str().is_some(), "{body}");
}

/// An emulator of four users with 25 messages each.
pub async fn small(seed: u64) -> Emulator {
    super::start_with(EmulatorConfig {
        users: 4,
        messages_per_user: 25,
        seed,
        ..Default::default()
    })
    .await
}

/// The header asking Graph for immutable ids.
pub const IMMUTABLE: (&str, &str) = ("Prefer", "IdType=\"ImmutableId\"");
