//! Large attachments through an upload session: `createUploadSession` answers a
//! pre-authenticated `uploadUrl`, the bytes follow in `PUT` chunks of at most
//! [`CHUNK_BYTES`] with `Content-Range`, each answered 200 with `nextExpectedRanges` until
//! the final one answers 201. Every chunk draws from the upload budget and holds one of
//! the mailbox's slots like any request.
//!
//! A chunk that failed after its retries, or that the session refuses (416), is not the
//! end: the session is asked where it stands (`GET uploadUrl`) and the upload goes on
//! from its first expected byte; a session gone (404, expired) is replaced by a new one.
//! A final chunk repeated after a fault that finds the session gone was taken by the
//! first attempt.

use reqwest::{Method, StatusCode};
use url::Url;

use super::Inner;
use super::compose;
use super::op::Target;
use super::request::{Body, Repeat, WriteFailure, WriteRequest};
use super::write::{Session, WriteCtx};
use crate::MailboxError;
use crate::write::NewAttachment;

/// Largest chunk sent: a multiple of 320 KiB (the service's chunk granularity) under 4 MB.
pub(super) const CHUNK_BYTES: u64 = 12 * 320 * 1024;
const _: () = assert!(CHUNK_BYTES < 4 * 1024 * 1024 && CHUNK_BYTES.is_multiple_of(320 * 1024));

/// Times one upload asks its session where it stands (or starts a new one) before it
/// gives up.
const MAX_RESUMES: u32 = 6;

impl Inner {
    /// Uploads `a` to the message `id` through an upload session.
    pub(super) async fn upload(
        &self,
        ctx: &WriteCtx,
        id: &str,
        a: &NewAttachment,
    ) -> Result<(), WriteFailure> {
        let total = a.bytes.len() as u64;
        let mut url = self.open_session(ctx, id, a).await?;
        let mut next = 0u64;
        let mut resumes = 0u32;
        loop {
            let end = (next + CHUNK_BYTES).min(total);
            let last = end == total;
            let request = WriteRequest {
                method: Method::PUT,
                url: url.clone(),
                body: Body::Chunk {
                    bytes: a.bytes.slice(next as usize..end as usize),
                    first: next,
                    total,
                },
                label: format!("PUT uploadUrl of {:?} (bytes {next}-{end}/{total})", a.name),
                target: Target::Message(id.to_string()),
                repeat: Repeat::Chunk { last },
                what: format!("a chunk of attachment {:?}", a.name),
            };
            let failure = match self.write(&ctx.mailbox, &ctx.budget, &request).await {
                Ok(answer) if answer.status == StatusCode::CREATED => return Ok(()),
                Ok(answer) => {
                    let session: Session = answer.parse(&ctx.mailbox, &request)?;
                    match first_expected(&session.next_expected_ranges) {
                        Some(start) if start > next && start < total => {
                            next = start;
                            continue;
                        }
                        // No progress, or an answer that says nothing usable: ask.
                        _ => None,
                    }
                }
                Err(WriteFailure::AlreadyDone) => return Ok(()),
                Err(WriteFailure::Session(refusal)) => Some(refusal.status),
                Err(WriteFailure::Error(e)) if e.is_transient() => None,
                Err(f) => {
                    return Err(WriteFailure::Error(
                        f.into_error(&ctx.mailbox, &request.label),
                    ));
                }
            };
            resumes += 1;
            if resumes > MAX_RESUMES {
                return Err(WriteFailure::Error(MailboxError::RetriesExhausted {
                    mailbox: ctx.mailbox.mailbox.clone(),
                    operation: format!("the upload of attachment {:?}", a.name),
                    attempts: resumes,
                    last: format!("the session made no progress past byte {next} of {total}"),
                }));
            }
            if failure == Some(StatusCode::NOT_FOUND) {
                tracing::info!(attachment = %a.name, "the upload session is gone; opening a new one");
                url = self.open_session(ctx, id, a).await?;
                next = 0;
                continue;
            }
            match self.session_state(ctx, &url, id).await {
                Ok(Some(start)) => next = start.min(total.saturating_sub(1)),
                Ok(None) => return Ok(()),
                Err(WriteFailure::Session(_)) => {
                    url = self.open_session(ctx, id, a).await?;
                    next = 0;
                }
                Err(f) => return Err(f),
            }
        }
    }

    /// `createUploadSession` for `a` on message `id`: its upload URL.
    async fn open_session(
        &self,
        ctx: &WriteCtx,
        id: &str,
        a: &NewAttachment,
    ) -> Result<Url, WriteFailure> {
        let request = WriteRequest {
            method: Method::POST,
            url: self.user_url(
                &ctx.mailbox.mailbox,
                &["messages", id, "attachments", "createUploadSession"],
                &[],
            ),
            body: Body::json(&compose::upload_session(a)),
            label: format!("POST messages/{id}/attachments/createUploadSession"),
            target: Target::Message(id.to_string()),
            repeat: Repeat::Safe,
            what: format!("the upload session of attachment {:?}", a.name),
        };
        let answer = self
            .write(&ctx.mailbox, &ctx.budget, &request)
            .await
            .map_err(|f| WriteFailure::Error(f.into_error(&ctx.mailbox, &request.label)))?;
        let session: Session = answer.parse(&ctx.mailbox, &request)?;
        let raw = session.upload_url.unwrap_or_default();
        upload_url(&raw).map_err(|detail| {
            WriteFailure::Error(MailboxError::Protocol {
                mailbox: ctx.mailbox.mailbox.clone(),
                operation: request.label.clone(),
                detail,
            })
        })
    }

    /// Where a session stands: its first expected byte (`None`: it expects nothing more).
    async fn session_state(
        &self,
        ctx: &WriteCtx,
        url: &Url,
        id: &str,
    ) -> Result<Option<u64>, WriteFailure> {
        let request = WriteRequest {
            method: Method::GET,
            url: url.clone(),
            body: Body::Empty,
            label: "GET uploadUrl".into(),
            target: Target::Message(id.to_string()),
            repeat: Repeat::Chunk { last: false },
            what: "the state of an upload session".into(),
        };
        let answer = self.write(&ctx.mailbox, &ctx.budget, &request).await?;
        let session: Session = answer.parse(&ctx.mailbox, &request)?;
        Ok(first_expected(&session.next_expected_ranges))
    }
}

/// The first byte of the first range of `nextExpectedRanges` (`"12345-"`, `"0-1023"`).
pub(super) fn first_expected(ranges: &[String]) -> Option<u64> {
    ranges
        .iter()
        .filter_map(|r| r.trim().split('-').next()?.trim().parse::<u64>().ok())
        .min()
}

/// The upload URL of a session's answer, if it is an http(s) URL.
fn upload_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("uploadUrl is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("uploadUrl has the scheme {:?}", url.scheme()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn expected_ranges_give_the_first_missing_byte() {
        let ranges = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (given, expected) in [
            (&["3932160-"][..], Some(3_932_160)),
            (&["0-1023", "4096-"], Some(0)),
            (&["77-", "12-40"], Some(12)),
            (&[], None),
            (&["garbage"], None),
        ] {
            assert_eq!(first_expected(&ranges(given)), expected, "{given:?}");
        }
        assert!(upload_url("https://outlook.office.com/api/up?x=1").is_ok());
        assert!(upload_url("file:///etc/passwd").is_err() && upload_url("").is_err());
    }

    proptest! {
        #[test]
        fn any_ranges_parse_without_panic(r in proptest::collection::vec(".{0,20}", 0..4)) {
            let _ = first_expected(&r);
        }
    }
}
