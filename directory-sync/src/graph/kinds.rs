//! Mailbox kinds through Graph: `GET /users/{id}/mailboxSettings` (its `userPurpose`),
//! twenty at a time in one `POST /$batch` (Graph's limit), through the same retry loop as
//! every other request of the source.
//!
//! Inner answers: 2xx gives the kind; 404 (no Exchange Online mailbox, or the user is
//! gone) counts as a user's mailbox; 429 and 5xx are asked again in a later batch after
//! their `Retry-After` (or backoff), as many rounds as the retry policy allows throttled
//! answers; 403 (the app lacks MailboxSettings.Read, or an application access policy
//! leaves the mailbox out) and anything else leave the object unclassified with a
//! warning. A refused `$batch` (403) stops the lookup with the permission warning; any
//! other failure of a batch stops it with a warning too: kinds never fail a sync, the
//! objects left out are asked again at the next one.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, SystemTime};

use m365_auth::AccessToken;
use m365_auth::transport::{BodyError, Exchange, Fault, GaveUp, Lane, Refusal, RequestCounters};
use serde::Deserialize;

use super::{GraphDirectorySource, MAX_PAGE_BYTES, graph_error};
use crate::kinds::permission_warning;
use crate::{DirectoryError, KindLookup, MailboxKind};

/// Most inner requests in one `$batch` (Graph's limit).
pub(super) const BATCH_LIMIT: usize = 20;

/// The answer to a `$batch`.
#[derive(Debug, Deserialize)]
struct BatchResponse {
    #[serde(default)]
    responses: Vec<BatchItem>,
}

/// One inner answer.
#[derive(Debug, Deserialize)]
struct BatchItem {
    id: String,
    status: u16,
    #[serde(default)]
    headers: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    body: serde_json::Value,
}

impl BatchItem {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
    }

    fn error_code(&self) -> String {
        m365_auth::transport::GraphError::from_value(&self.body)
            .map(|e| e.code)
            .unwrap_or_default()
    }
}

/// One `$batch` through the retry loop.
struct BatchFetch<'a> {
    source: &'a GraphDirectorySource,
    body: serde_json::Value,
    size: usize,
    label: String,
}

impl Exchange for BatchFetch<'_> {
    type Output = BatchResponse;
    type Error = DirectoryError;

    fn label(&self) -> String {
        self.label.clone()
    }

    fn weight(&self) -> (usize, usize) {
        (1, self.size)
    }

    fn send(
        &self,
        token: &AccessToken,
    ) -> impl Future<Output = Result<reqwest::Response, String>> + Send {
        let request = self
            .source
            .http
            .post(format!(
                "{}/$batch",
                self.source.api.as_str().trim_end_matches('/')
            ))
            .bearer_auth(token.secret())
            .json(&self.body);
        async move {
            request
                .send()
                .await
                .map_err(|e| m365_auth::transport::describe_reqwest(&e))
        }
    }

    async fn accept(
        &self,
        response: reqwest::Response,
        counters: &RequestCounters,
    ) -> Result<BatchResponse, BodyError<DirectoryError>> {
        let timeout = self.source.transport.timeout();
        let too_large = |limit| DirectoryError::InvalidResponse {
            request: self.label.clone(),
            reason: format!("the answer is larger than {limit} bytes"),
        };
        let body =
            m365_auth::transport::read_body(response, timeout, counters, MAX_PAGE_BYTES, too_large)
                .await?;
        serde_json::from_slice::<BatchResponse>(&body).map_err(|e| {
            BodyError::Retry(Fault::Body(format!(
                "the answer is not a Graph batch answer: {e}"
            )))
        })
    }

    fn failed(&self, refusal: Refusal) -> DirectoryError {
        graph_error(&self.label, &refusal)
    }

    fn gave_up(&self, gave_up: GaveUp) -> DirectoryError {
        super::gave_up_error(&self.label, gave_up)
    }

    fn no_token(&self, error: m365_auth::AuthError) -> DirectoryError {
        DirectoryError::Auth(error)
    }
}

/// The relative URL of an object's mailbox settings.
fn settings_url(id: &str) -> String {
    let escaped: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    format!("/users/{escaped}/mailboxSettings")
}

impl GraphDirectorySource {
    /// The mailbox kinds of `ids` (see the module documentation).
    pub(super) async fn read_kinds(&self, ids: &[String]) -> KindLookup {
        let mut kinds = BTreeMap::new();
        let mut warnings = BTreeSet::new();
        for chunk in ids.chunks(BATCH_LIMIT) {
            if let Err(stop) = self.read_chunk(chunk, &mut kinds, &mut warnings).await {
                warnings.insert(stop);
                break;
            }
        }
        KindLookup {
            kinds,
            warnings: warnings.into_iter().collect(),
        }
    }

    /// Classifies one chunk (at most [`BATCH_LIMIT`] objects); `Err` with a warning
    /// stops the whole lookup.
    async fn read_chunk(
        &self,
        chunk: &[String],
        kinds: &mut BTreeMap<String, MailboxKind>,
        warnings: &mut BTreeSet<String>,
    ) -> Result<(), String> {
        let label = format!("POST {}/$batch", self.api.path());
        let policy = m365_auth::RetryPolicy::from(&self.options.retry);
        // Inner request id = position in the chunk.
        let mut pending: Vec<usize> = (0..chunk.len()).collect();
        let mut rounds = 0u32;
        while !pending.is_empty() {
            let requests: Vec<serde_json::Value> = pending
                .iter()
                .map(|&i| {
                    serde_json::json!({
                        "id": i.to_string(),
                        "method": "GET",
                        "url": settings_url(&chunk[i]),
                    })
                })
                .collect();
            let exchange = BatchFetch {
                source: self,
                body: serde_json::json!({ "requests": requests }),
                size: pending.len(),
                label: label.clone(),
            };
            let lane = Lane {
                gate: None,
                counters: &self.requests,
            };
            super::bump_by(&self.counters.mailbox_settings, pending.len() as u64);
            let answer = match self.transport.run(&exchange, lane).await {
                Ok(answer) => answer,
                Err(DirectoryError::Graph {
                    status: 403, code, ..
                }) => return Err(permission_warning(&format!("403 {code} to {label}"))),
                Err(e) => {
                    return Err(format!(
                        "mailbox kinds could not be read ({e}); the users concerned count \
                         as user mailboxes and are looked up again at the next sync"
                    ));
                }
            };
            let mut again = Vec::new();
            let mut wait: Option<Duration> = None;
            let mut throttled = 0u64;
            let mut answered = BTreeSet::new();
            for item in answer.responses {
                let Some(index) = item
                    .id
                    .parse::<usize>()
                    .ok()
                    .filter(|i| pending.contains(i))
                else {
                    continue;
                };
                if !answered.insert(index) {
                    continue;
                }
                let id = &chunk[index];
                match item.status {
                    200..=299 => {
                        let purpose = item
                            .body
                            .get("userPurpose")
                            .and_then(|p| p.as_str())
                            .unwrap_or("unknown");
                        kinds.insert(id.clone(), MailboxKind::from_user_purpose(purpose));
                    }
                    404 => {
                        kinds.insert(id.clone(), MailboxKind::User);
                    }
                    403 => {
                        warnings.insert(permission_warning(&format!(
                            "403 {} to GET /users/{{id}}/mailboxSettings",
                            item.error_code()
                        )));
                    }
                    429 | 500..=599 => {
                        throttled += u64::from(item.status == 429);
                        if let Some(after) = item
                            .header("Retry-After")
                            .and_then(|v| policy.retry_after(v, SystemTime::now()))
                        {
                            wait = Some(wait.map_or(after, |w| w.max(after)));
                        }
                        again.push(index);
                    }
                    status => {
                        warnings.insert(format!(
                            "Graph answered {status} {} to GET /users/{{id}}/mailboxSettings; \
                             those users count as user mailboxes and are looked up again at \
                             the next sync",
                            item.error_code()
                        ));
                    }
                }
            }
            // Left out of the answer: ask again.
            again.extend(pending.iter().filter(|i| !answered.contains(*i)));
            self.requests.add_throttled(throttled);
            if again.is_empty() {
                break;
            }
            rounds += 1;
            if rounds > policy.max_throttled {
                warnings.insert(format!(
                    "Graph kept throttling the mailbox settings of {} users; they count as \
                     user mailboxes and are looked up again at the next sync",
                    again.len()
                ));
                break;
            }
            self.requests.add_retry();
            tokio::time::sleep(wait.unwrap_or_else(|| policy.backoff(rounds))).await;
            again.sort_unstable();
            pending = again;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_urls_escape_the_id() {
        assert_eq!(
            settings_url("0b5c1c2e-1111-4c9e-9d5e-3f2f1c1b0a01"),
            "/users/0b5c1c2e-1111-4c9e-9d5e-3f2f1c1b0a01/mailboxSettings"
        );
        assert_eq!(settings_url("a/b?c"), "/users/a%2Fb%3Fc/mailboxSettings");
    }
}
