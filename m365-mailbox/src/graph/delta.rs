//! Per-folder message delta: the change stream of one folder (pages fetched as it is
//! polled, restarts when the service forgot the delta state, cursors of another folder
//! refused), and the first pages of many folders fetched ahead in `$batch`es.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use tracing::Instrument;
use url::Url;

use super::batch::BATCH_LIMIT;
use super::op::{Failure, Op, Target};
use super::{Inner, MailboxCtx, lock};
use crate::wire::{self, BatchRequestItem};
use crate::{DeltaCursor, DeltaEvent, MailboxError, MessageSummary};

/// How long a first delta page fetched by `prefetch_changes` waits for its `changes`
/// call before it is dropped (and fetched again if asked).
const PREFETCH_KEEP: Duration = Duration::from_secs(600);
/// How many times one folder's delta may be restarted in one stream.
const MAX_DELTA_RESTARTS: u32 = 3;

/// A folder's first delta page, fetched in a batch before its stream asked for it.
#[derive(Debug)]
pub(super) struct Prefetched {
    /// The cursor the page continues from (`None`: a full enumeration).
    cursor: Option<DeltaCursor>,
    fetched: std::time::Instant,
    page: wire::Page<wire::Message>,
}

impl Inner {
    /// Fetches the first delta page of each folder, 20 folders per `$batch`, and keeps
    /// the pages for the streams. Folders whose answer is not a page (throttled, stale
    /// cursor, gone) are left to their stream.
    pub(super) async fn prefetch(
        &self,
        ctx: &MailboxCtx,
        folders: &[(String, Option<DeltaCursor>)],
    ) {
        let key = ctx.mailbox.to_lowercase();
        lock(&self.prefetched).retain(|(m, _), p| m != &key || p.fetched.elapsed() < PREFETCH_KEEP);
        let mut wanted: Vec<(String, Option<DeltaCursor>, String)> = Vec::new();
        for (folder, cursor) in folders {
            let url = match cursor {
                None => Some(
                    self.build(&ctx.mailbox, &Op::FolderDelta(folder.clone()))
                        .url()
                        .clone(),
                ),
                Some(DeltaCursor(link)) => Url::parse(link)
                    .ok()
                    .filter(|u| link_folder(u).is_none_or(|f| &f == folder)),
            };
            if let Some(relative) = url.as_ref().and_then(|u| self.relative(u)) {
                wanted.push((folder.clone(), cursor.clone(), relative));
            }
        }
        let prefer = self.prefer(self.options.page_size);
        for chunk in wanted.chunks(BATCH_LIMIT) {
            let requests = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, _, url))| BatchRequestItem::get(i.to_string(), url.clone(), &prefer))
                .collect();
            let items = match self.batch_once(ctx, requests).await {
                Ok(items) => items,
                Err(e) => {
                    tracing::debug!(mailbox = %ctx.mailbox, error = %e, "delta prefetch failed; folders ask on their own");
                    return;
                }
            };
            let kept: Vec<_> = items
                .into_iter()
                .filter(|item| item.is_success())
                .filter_map(|item| {
                    let (folder, cursor, _) =
                        item.id.parse::<usize>().ok().and_then(|i| chunk.get(i))?;
                    let page = item.body_as::<wire::Page<wire::Message>>()?;
                    Some((
                        (key.clone(), folder.clone()),
                        Prefetched {
                            cursor: cursor.clone(),
                            fetched: std::time::Instant::now(),
                            page,
                        },
                    ))
                })
                .collect();
            lock(&self.prefetched).extend(kept);
        }
    }

    /// The prefetched first page of a folder's stream starting at `cursor`, if any.
    fn take_prefetched(
        &self,
        ctx: &MailboxCtx,
        folder: &str,
        cursor: Option<&DeltaCursor>,
    ) -> Option<wire::Page<wire::Message>> {
        let key = (ctx.mailbox.to_lowercase(), folder.to_string());
        let found = lock(&self.prefetched).remove(&key)?;
        (found.cursor.as_ref() == cursor && found.fetched.elapsed() < PREFETCH_KEEP)
            .then_some(found.page)
    }
}

/// The change stream of one folder since `cursor` (everything when `None`).
pub(super) fn changes(
    inner: Arc<Inner>,
    mailbox: &str,
    folder_id: &str,
    cursor: Option<DeltaCursor>,
) -> BoxStream<'static, Result<DeltaEvent, MailboxError>> {
    let ctx = inner.ctx(mailbox);
    let mut ready = inner.take_prefetched(&ctx, folder_id, cursor.as_ref());
    let mut run = DeltaRun {
        span: tracing::info_span!("changes", mailbox, folder = folder_id),
        ready: None,
        inner,
        ctx,
        folder_id: folder_id.to_string(),
        next: Some(Op::FolderDelta(folder_id.to_string())),
        restarts: 0,
    };
    let mut first: Vec<Result<DeltaEvent, MailboxError>> = Vec::new();
    match cursor {
        None => run.ready = ready.take(),
        Some(DeltaCursor(link)) => match run.inner.check_link(&run.ctx, &link) {
            Ok(url) if link_folder(&url).is_some_and(|f| f != folder_id) => {
                tracing::warn!(
                    mailbox,
                    folder = folder_id,
                    "delta cursor of another folder"
                );
                first = run.restart("the saved delta cursor belongs to another folder");
            }
            Ok(url) => {
                run.next = Some(Op::Link(url));
                run.ready = ready.take();
            }
            Err(e) => {
                tracing::warn!(mailbox, folder = folder_id, error = %e, "unusable delta cursor");
                first = run.restart("the saved delta cursor is unusable");
            }
        },
    }
    let pages = stream::unfold(run, |mut run| async move {
        run.next.as_ref()?;
        let span = run.span.clone();
        let events = run.step().instrument(span).await;
        if events.iter().any(|e| e.is_err()) {
            run.next = None;
        }
        Some((stream::iter(events), run))
    })
    .flatten();
    stream::iter(first).chain(pages).boxed()
}

/// State of one folder's change stream.
struct DeltaRun {
    span: tracing::Span,
    /// The first page, when it was fetched ahead in a batch.
    ready: Option<wire::Page<wire::Message>>,
    inner: Arc<Inner>,
    ctx: MailboxCtx,
    folder_id: String,
    next: Option<Op>,
    restarts: u32,
}

impl DeltaRun {
    /// Fetches the next page and turns it into events (possibly none: empty pages).
    async fn step(&mut self) -> Vec<Result<DeltaEvent, MailboxError>> {
        let Some(op) = self.next.take() else {
            return Vec::new();
        };
        let target = Target::Folder(self.folder_id.clone());
        let page: Result<wire::Page<wire::Message>, Failure> = match self.ready.take() {
            Some(page) => Ok(page),
            None => self.inner.json(&self.ctx, &op, &target).await,
        };
        let page = match page {
            Err(Failure::SyncReset(_)) => {
                return self.restart("the service no longer knows this delta state");
            }
            Err(Failure::AlreadyDone) => return Vec::new(),
            Err(Failure::Error(e)) => return vec![Err(e)],
            Ok(page) => page,
        };
        let mut events: Vec<Result<DeltaEvent, MailboxError>> = page
            .value
            .into_iter()
            .map(|m| Ok(to_event(m, &self.folder_id)))
            .collect();
        if let Some(next) = page.next_link {
            match self.inner.check_link(&self.ctx, &next) {
                Ok(url) => self.next = Some(Op::Link(url)),
                Err(e) => events.push(Err(e)),
            }
        } else if let Some(delta) = page.delta_link {
            match self.inner.check_link(&self.ctx, &delta) {
                Ok(_) => events.push(Ok(DeltaEvent::Done(DeltaCursor(delta)))),
                Err(e) => events.push(Err(e)),
            }
        } else {
            events.push(Err(MailboxError::Protocol {
                mailbox: self.ctx.mailbox.clone(),
                operation: op.label(),
                detail: "delta page carries neither @odata.nextLink nor @odata.deltaLink".into(),
            }));
        }
        events
    }

    fn restart(&mut self, why: &str) -> Vec<Result<DeltaEvent, MailboxError>> {
        self.restarts += 1;
        if self.restarts > MAX_DELTA_RESTARTS {
            return vec![Err(MailboxError::Protocol {
                mailbox: self.ctx.mailbox.clone(),
                operation: format!("delta of folder {}", self.folder_id),
                detail: format!("delta state lost {} times in a row", self.restarts),
            })];
        }
        tracing::info!(mailbox = %self.ctx.mailbox, folder = %self.folder_id, "{why}; enumerating the folder again");
        self.next = Some(Op::FolderDelta(self.folder_id.clone()));
        vec![Ok(DeltaEvent::Restarted)]
    }
}

/// The folder a delta link names (`.../mailFolders/{id}/...` or `mailFolders('{id}')`), if
/// it names one in a form we recognise.
fn link_folder(url: &Url) -> Option<String> {
    let segments: Vec<String> = url
        .path_segments()?
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    for (i, segment) in segments.iter().enumerate() {
        if segment.eq_ignore_ascii_case("mailFolders") {
            return segments.get(i + 1).cloned();
        }
        if let Some(rest) = segment.strip_prefix("mailFolders(") {
            let id = rest.strip_suffix(')')?;
            return Some(id.trim_matches('\'').to_string());
        }
    }
    None
}

fn to_event(m: wire::Message, folder_id: &str) -> DeltaEvent {
    if m.removed.is_some() {
        return DeltaEvent::Removed { id: m.id };
    }
    DeltaEvent::Upsert(MessageSummary {
        size: m.size(),
        flagged: m.is_flagged(),
        folder_id: m
            .parent_folder_id
            .clone()
            .unwrap_or_else(|| folder_id.to_string()),
        received: m.received_date_time,
        internet_message_id: m.internet_message_id,
        is_read: m.is_read.unwrap_or(false),
        subject: m.subject,
        id: m.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_links_name_their_folder() {
        let folder = |u: &str| link_folder(&Url::parse(u).unwrap());
        assert_eq!(
            folder("https://g/v1.0/users/a/mailFolders/AQ%2Fx=/messages/delta?$deltatoken=1")
                .as_deref(),
            Some("AQ/x=")
        );
        assert_eq!(
            folder("https://g/v1.0/users('a')/mailFolders('AQx=')/messages/delta()?$deltatoken=1")
                .as_deref(),
            Some("AQx=")
        );
        assert_eq!(folder("https://g/v1.0/delta?$deltatoken=1"), None);
    }
}
