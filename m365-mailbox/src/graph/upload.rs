//! Large attachments through an upload session: `createUploadSession` answers a
//! pre-authenticated `uploadUrl`, the bytes follow in `PUT` chunks of at most
//! [`CHUNK_BYTES`] with `Content-Range`, each answered 200 with `nextExpectedRanges` until
//! the final one answers 201. Every chunk draws from the upload budget and holds one of
//! the mailbox's slots like any request.
//!
//! A chunk that failed after its retries is not the end: it is sent again from the last
//! `nextExpectedRanges`; a range the session then refuses (416) was taken by the attempt
//! whose answer was lost, and the upload goes on after it. A session gone (404 expired,
//! 401 token unknown) is replaced by a new one, except after the final chunk's lost
//! answer: a session forgets its token once complete.

use reqwest::{Method, StatusCode};
use url::Url;

use super::Inner;
use super::compose;
use super::op::Target;
use super::request::{Body, Repeat, WriteFailure, WriteRequest, session_gone};
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
        // The current range is being sent again after a failed round.
        let mut resumed = false;
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
            match self.write(&ctx.mailbox, &ctx.budget, &request).await {
                Ok(answer) if answer.status == StatusCode::CREATED => return Ok(()),
                Ok(answer) => {
                    let session: Session = answer.parse(&ctx.mailbox, &request)?;
                    match first_expected(&session.next_expected_ranges) {
                        Some(start) if start > next && start < total => {
                            next = start;
                            resumed = false;
                            continue;
                        }
                        // No progress: send the same range again.
                        _ => {}
                    }
                }
                // An attempt whose answer was lost delivered the chunk.
                Err(WriteFailure::AlreadyDone) if last => return Ok(()),
                Err(WriteFailure::AlreadyDone) => {
                    next = end;
                    resumed = false;
                    continue;
                }
                // Sent again after a failed round: the range refused was taken.
                Err(WriteFailure::Session(r))
                    if resumed && r.status == StatusCode::RANGE_NOT_SATISFIABLE =>
                {
                    if last {
                        return Ok(());
                    }
                    next = end;
                    resumed = false;
                    continue;
                }
                Err(WriteFailure::Session(r)) if resumed && last && session_gone(r.status) => {
                    return Ok(());
                }
                Err(WriteFailure::Session(_)) => {
                    resumes += 1;
                    if resumes > MAX_RESUMES {
                        return Err(stalled(ctx, a, next, resumes));
                    }
                    tracing::info!(attachment = %a.name, "the upload session is gone or out of step; opening a new one");
                    url = self.open_session(ctx, id, a).await?;
                    next = 0;
                    resumed = false;
                    continue;
                }
                // Faults beyond the retries: resume from the last expected byte.
                Err(WriteFailure::Error(e)) if e.is_transient() => {}
                Err(f) => {
                    return Err(WriteFailure::Error(
                        f.into_error(&ctx.mailbox, &request.label),
                    ));
                }
            }
            resumes += 1;
            resumed = true;
            if resumes > MAX_RESUMES {
                return Err(stalled(ctx, a, next, resumes));
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
}

/// The error of an upload that stopped making progress.
fn stalled(ctx: &WriteCtx, a: &NewAttachment, next: u64, rounds: u32) -> WriteFailure {
    WriteFailure::Error(MailboxError::RetriesExhausted {
        mailbox: ctx.mailbox.mailbox.clone(),
        operation: format!("the upload of attachment {:?}", a.name),
        attempts: rounds,
        last: format!(
            "the session made no progress past byte {next} of {}",
            a.bytes.len()
        ),
    })
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
