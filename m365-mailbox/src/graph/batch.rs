//! `POST $batch`: up to 20 inner requests in one, typed ([`wire::BatchRequest`]). Inner
//! 429s close the mailbox's gate for their `Retry-After`; [`Inner::batch_answered`] asks
//! the inner requests that were throttled, failed with 5xx or left out again.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use url::Url;

use super::op::{Op, Target};
use super::{Inner, MailboxCtx};
use crate::MailboxError;
use crate::wire::{self, BatchItem, BatchRequest, BatchRequestItem};

/// Most inner requests in one `$batch` (Graph's limit).
pub(super) const BATCH_LIMIT: usize = 20;

/// Characters escaped in one path segment of a `$batch` inner URL.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// One path segment escaped for an inner request's URL.
pub(super) fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

/// What the inner answers of one `$batch` asked for: how many were throttled and the
/// longest `Retry-After` among the throttled or failed ones.
#[derive(Debug, Default)]
struct Backpressure {
    throttled: u64,
    wait: Option<Duration>,
}

impl Inner {
    /// One `$batch` through the retry loop; inner 429s are counted and close the gate.
    pub(super) async fn batch_once(
        &self,
        ctx: &MailboxCtx,
        requests: Vec<BatchRequestItem>,
    ) -> Result<Vec<BatchItem>, MailboxError> {
        let op = Op::Batch(BatchRequest { requests });
        let response: wire::BatchResponse = self
            .json(ctx, &op, &Target::Mailbox)
            .await
            .map_err(|f| f.into_error(ctx, &op))?;
        let pressure = self.backpressure(&response.responses);
        ctx.counters.add_throttled(pressure.throttled);
        if pressure.throttled > 0
            && let Some(wait) = pressure.wait
        {
            ctx.gate.close_for(wait);
        }
        Ok(response.responses)
    }

    /// Answers to every request of `pending`, asking those throttled, failed with 5xx or
    /// left out again (after their `Retry-After`, or backoff) until the throttling budget
    /// runs out. Answers with other statuses are returned as they are.
    pub(super) async fn batch_answered(
        &self,
        ctx: &MailboxCtx,
        mut pending: Vec<BatchRequestItem>,
    ) -> Result<HashMap<String, BatchItem>, MailboxError> {
        let policy = self.transport.policy();
        let mut answers: HashMap<String, BatchItem> = HashMap::new();
        let mut rounds = 0u32;
        while !pending.is_empty() {
            let items = self.batch_once(ctx, pending.clone()).await?;
            let pressure = self.backpressure(&items);
            answers.extend(
                items
                    .into_iter()
                    .filter(|item| !is_repeatable(item))
                    .map(|item| (item.id.clone(), item)),
            );
            pending.retain(|r| !answers.contains_key(&r.id));
            if pending.is_empty() {
                break;
            }
            rounds += 1;
            if rounds > policy.max_throttled {
                return Err(MailboxError::RetriesExhausted {
                    mailbox: ctx.mailbox.clone(),
                    operation: Op::Batch(BatchRequest::default()).label(),
                    attempts: rounds,
                    last: format!("{} inner requests still unanswered", pending.len()),
                });
            }
            let delay = pressure.wait.unwrap_or_else(|| policy.backoff(rounds));
            tracing::debug!(mailbox = %ctx.mailbox, left = pending.len(), delay_ms = delay.as_millis() as u64, "inner batch requests throttled or failed; asking again");
            // Throttling closes the mailbox for everyone; a fault only delays this caller.
            if pressure.throttled > 0 {
                ctx.gate.close_for(delay);
            } else {
                tokio::time::sleep(delay).await;
            }
            ctx.counters.add_retry();
        }
        Ok(answers)
    }

    fn backpressure(&self, items: &[BatchItem]) -> Backpressure {
        let policy = self.transport.policy();
        let mut pressure = Backpressure::default();
        for item in items.iter().filter(|i| is_repeatable(i)) {
            if item.status == 429 {
                pressure.throttled += 1;
            }
            if let Some(after) = item
                .header("Retry-After")
                .and_then(|v| policy.retry_after(v, SystemTime::now()))
            {
                pressure.wait = Some(pressure.wait.map_or(after, |w| w.max(after)));
            }
        }
        pressure
    }

    /// `url` relative to the API root, for an inner `$batch` request; `None` if it is
    /// not below the root.
    pub(super) fn relative(&self, url: &Url) -> Option<String> {
        if url.origin() != self.api.origin() {
            return None;
        }
        let rest = url.path().strip_prefix(self.api.path())?;
        if !rest.starts_with('/') {
            return None;
        }
        Some(match url.query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
        })
    }
}

/// An inner answer worth asking again: throttled or a server fault.
fn is_repeatable(item: &BatchItem) -> bool {
    item.status == 429 || item.status >= 500
}

#[cfg(test)]
mod tests {
    use super::super::tests::source;
    use super::*;

    #[test]
    fn relative_urls_stay_below_the_api_root() {
        let s = source("http://127.0.0.1:9/");
        let rel = |u: &str| s.inner.relative(&Url::parse(u).unwrap());
        assert_eq!(
            rel("http://127.0.0.1:9/v1.0/users/a/mailFolders/F/messages/delta?$deltatoken=1")
                .as_deref(),
            Some("/users/a/mailFolders/F/messages/delta?$deltatoken=1")
        );
        assert_eq!(rel("http://127.0.0.1:10/v1.0/users/a"), None);
        assert_eq!(rel("http://127.0.0.1:9/beta/users/a"), None);
        assert_eq!(rel("http://127.0.0.1:9/v1.0x/users"), None);
    }

    #[test]
    fn user_segments_are_escaped() {
        assert_eq!(segment("ext_x.com#EXT#@c.com"), "ext_x.com%23EXT%23@c.com");
        assert_eq!(segment("a/b?c"), "a%2Fb%3Fc");
    }
}
