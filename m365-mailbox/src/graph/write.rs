//! [`MailboxWriter`] for [`GraphMailboxSource`]: the same object reads and writes, with one
//! gate per mailbox (4 requests in flight, the request budget, `Retry-After`) and one upload
//! budget per mailbox ([`crate::budget`]) for every write with a body.
//!
//! - Folder paths are walked from `msgfolderroot` with `childFolders?$filter=displayName eq
//!   '…'`, missing segments created (a 409 `ErrorFolderExists` is looked up again), and the
//!   resolved paths cached per mailbox.
//! - A message is one JSON create, attachments inside, when that request fits the request
//!   limit: atomic, its restore key complete at once. Otherwise it is created with its key
//!   marked incomplete, each attachment follows (one POST when it fits a request, an
//!   upload session in chunks otherwise, see [`super::upload`]), and a PATCH marks the key
//!   complete.
//! - A create whose answer was lost is looked up (by its restore key, or for a MIME create
//!   by its `Message-ID`) before it is sent again, so a fault never makes two items; an
//!   attachment POST whose answer was lost restarts the message (removed, created again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use m365_auth::transport::{RequestCounters, Transport};
use reqwest::Method;
use tracing::Instrument;

use super::compose;
use super::op::Target;
use super::request::{Body, Repeat, WriteFailure, WriteRequest};
use super::{GraphMailboxOptions, GraphMailboxSource, Inner, MailboxCtx, lock};
use crate::budget::{UploadBudget, UploadBudgets};
use crate::throttle::gate_key;
use crate::wire::{self, RESTORE_KEY_PROPERTY};
use crate::write::{
    FolderRestoreState, MailboxWriter, NewAttachment, NewMessage, RestoreKey, RestoredItem,
    WriteLimits,
};
use crate::{MailboxError, MailboxMetrics};

/// Times a message is created again after an attachment POST whose answer was lost.
const MAX_RESTARTS: u32 = 2;

/// The writer's share of [`Inner`].
pub(super) struct WriteState {
    /// The retry loop of [`Repeat::Once`] requests: one attempt per fault.
    pub(super) once: Transport,
    budgets: Arc<UploadBudgets>,
    metrics: Mutex<HashMap<String, Arc<RequestCounters>>>,
    /// Resolved folder paths: (mailbox, path) → folder id.
    folders: Mutex<HashMap<(String, Vec<String>), String>>,
}

impl WriteState {
    pub(super) fn new(transport: &Transport, options: &GraphMailboxOptions) -> Self {
        let policy = m365_auth::transport::RetryPolicy {
            max_attempts: 1,
            ..options.retry.clone()
        };
        Self {
            once: Transport::new(transport.tokens().clone(), policy, options.request_timeout),
            budgets: options
                .upload_budgets
                .clone()
                .unwrap_or_else(UploadBudgets::global),
            metrics: Mutex::new(HashMap::new()),
            folders: Mutex::new(HashMap::new()),
        }
    }
}

/// Per-mailbox context of one write call: the read side's context with the write
/// counters, and the upload budget.
pub(super) struct WriteCtx {
    pub(super) mailbox: MailboxCtx,
    pub(super) budget: Arc<UploadBudget>,
}

/// A message as listed for [`MailboxWriter::restored_in`].
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    id: String,
    #[serde(default)]
    internet_message_id: Option<String>,
    #[serde(default)]
    single_value_extended_properties: Option<Vec<wire::ExtendedProperty>>,
}

/// An upload session's answer, and a session's state.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Session {
    #[serde(default)]
    pub(super) upload_url: Option<String>,
    #[serde(default)]
    pub(super) next_expected_ranges: Vec<String>,
}

impl Inner {
    fn write_ctx(&self, mailbox: &str) -> WriteCtx {
        let mut ctx = self.ctx(mailbox);
        ctx.counters = lock(&self.writes.metrics)
            .entry(mailbox.to_lowercase())
            .or_default()
            .clone();
        let limits = &self.options.write_limits;
        // The service counts a body when it has arrived, a little after the draw: a
        // slightly longer window keeps its window under the limit too.
        let window = limits.upload_budget_window;
        let margin = (window / 50).max(std::time::Duration::from_millis(250));
        let budget = self.writes.budgets.budget(
            &gate_key(&self.api, mailbox),
            limits.upload_budget_bytes,
            window + margin,
        );
        WriteCtx {
            mailbox: ctx,
            budget,
        }
    }

    /// Sends `request`; a failure becomes the caller's error.
    pub(super) async fn send_write(
        &self,
        ctx: &WriteCtx,
        request: &WriteRequest,
    ) -> Result<super::request::Answer, MailboxError> {
        self.write(&ctx.mailbox, &ctx.budget, request)
            .await
            .map_err(|f| f.into_error(&ctx.mailbox, &request.label))
    }

    fn request(
        &self,
        ctx: &WriteCtx,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Body,
    ) -> WriteRequest {
        let mailbox = &ctx.mailbox.mailbox;
        let label = format!("{method} {}", segments.join("/"));
        WriteRequest {
            url: self.user_url(mailbox, segments, query),
            method,
            body,
            what: format!("the request {label}"),
            label,
            target: Target::Mailbox,
            repeat: Repeat::Safe,
        }
    }

    // ---- folders ----

    /// The id of the child of `parent` named `name`, if there is one. An exact match wins
    /// over one differing in case only (Exchange compares folder names without case).
    async fn find_child(
        &self,
        ctx: &WriteCtx,
        parent: &str,
        name: &str,
    ) -> Result<Option<String>, MailboxError> {
        let filter = format!("displayName eq {}", compose::odata_string(name));
        let mut request = self.request(
            ctx,
            Method::GET,
            &["mailFolders", parent, "childFolders"],
            &[("$filter", &filter), ("$select", "id,displayName")],
            Body::Empty,
        );
        request.target = Target::Folder(parent.to_string());
        let children: Vec<wire::MailFolder> = self.all_pages(ctx, request).await?;
        let named = |exact: bool| {
            children.iter().find(|f| {
                f.display_name.as_deref().is_some_and(|n| {
                    if exact {
                        n == name
                    } else {
                        n.to_lowercase() == name.to_lowercase()
                    }
                })
            })
        };
        Ok(named(true).or_else(|| named(false)).map(|f| f.id.clone()))
    }

    /// Creates the child `name` of `parent`; `Ok(None)` when one exists already (409).
    async fn create_child(
        &self,
        ctx: &WriteCtx,
        parent: &str,
        name: &str,
    ) -> Result<Option<String>, MailboxError> {
        let mut request = self.request(
            ctx,
            Method::POST,
            &["mailFolders", parent, "childFolders"],
            &[],
            Body::json(&serde_json::json!({ "displayName": name })),
        );
        request.target = Target::Folder(parent.to_string());
        request.repeat = Repeat::CreateFolder;
        request.what = format!("the folder {name:?}");
        match self.write(&ctx.mailbox, &ctx.budget, &request).await {
            Ok(answer) => Ok(Some(
                answer.parse::<wire::IdOnly>(&ctx.mailbox, &request)?.id,
            )),
            Err(WriteFailure::Conflict) => Ok(None),
            Err(f) => Err(f.into_error(&ctx.mailbox, &request.label)),
        }
    }

    async fn ensure_folder(&self, ctx: &WriteCtx, path: &[String]) -> Result<String, MailboxError> {
        let mailbox = ctx.mailbox.mailbox.to_lowercase();
        let cached = |len: usize| {
            lock(&self.writes.folders)
                .get(&(mailbox.clone(), path[..len].to_vec()))
                .cloned()
        };
        if path.is_empty() {
            if let Some(id) = cached(0) {
                return Ok(id);
            }
            let request = self.request(
                ctx,
                Method::GET,
                &["mailFolders", "msgfolderroot"],
                &[("$select", "id")],
                Body::Empty,
            );
            let answer = self.send_write(ctx, &request).await?;
            let id = answer.parse::<wire::IdOnly>(&ctx.mailbox, &request)?.id;
            lock(&self.writes.folders).insert((mailbox, Vec::new()), id.clone());
            return Ok(id);
        }
        let (mut done, mut parent) = (1..=path.len())
            .rev()
            .find_map(|len| cached(len).map(|id| (len, id)))
            .unwrap_or((0, "msgfolderroot".to_string()));
        while done < path.len() {
            let name = &path[done];
            let id = match self.find_child(ctx, &parent, name).await? {
                Some(id) => id,
                None => match self.create_child(ctx, &parent, name).await? {
                    Some(id) => id,
                    // Created meanwhile by someone else (or by our own attempt whose answer
                    // was lost): look again.
                    None => self.find_child(ctx, &parent, name).await?.ok_or_else(|| {
                        MailboxError::Protocol {
                            mailbox: ctx.mailbox.mailbox.clone(),
                            operation: format!("POST mailFolders/{parent}/childFolders"),
                            detail: format!(
                                "the folder {name:?} exists (409) but is not among the children"
                            ),
                        }
                    })?,
                },
            };
            done += 1;
            lock(&self.writes.folders).insert((mailbox.clone(), path[..done].to_vec()), id.clone());
            parent = id;
        }
        Ok(parent)
    }

    // ---- listing ----

    /// Every item of a collection, `request` first, then its nextLinks.
    async fn all_pages<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &WriteCtx,
        first: WriteRequest,
    ) -> Result<Vec<T>, MailboxError> {
        let mut items = Vec::new();
        let mut request = first;
        loop {
            let answer = self.send_write(ctx, &request).await?;
            let page: wire::Page<T> = answer.parse(&ctx.mailbox, &request)?;
            items.extend(page.value);
            match page.next_link {
                None => return Ok(items),
                Some(link) => {
                    request.url = self.check_link(&ctx.mailbox, &link)?;
                    request.label = format!("GET {}", request.url.path());
                }
            }
        }
    }

    async fn restored_in(
        &self,
        ctx: &WriteCtx,
        folder: &str,
    ) -> Result<FolderRestoreState, MailboxError> {
        let expand = format!(
            "singleValueExtendedProperties($filter=id eq {})",
            compose::odata_string(RESTORE_KEY_PROPERTY)
        );
        let top = self.options.page_size.max(1).to_string();
        let mut request = self.request(
            ctx,
            Method::GET,
            &["mailFolders", folder, "messages"],
            &[
                ("$select", "id,internetMessageId"),
                ("$expand", &expand),
                ("$top", &top),
            ],
            Body::Empty,
        );
        request.target = Target::Folder(folder.to_string());
        let listed: Vec<Listed> = self.all_pages(ctx, request).await?;
        Ok(restore_state(listed))
    }

    // ---- messages ----

    /// A create in `folder`, sent once per fault; when its answer is lost, `find` looks
    /// for what it may have created before it is sent again. Answers the item's id and
    /// whether it was found complete (made by an earlier attempt or run).
    async fn create_once(
        &self,
        ctx: &WriteCtx,
        folder: &str,
        request: &WriteRequest,
        find: &Find<'_>,
    ) -> Result<(String, bool), MailboxError> {
        let policy = self.transport.policy();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let error = match self.write(&ctx.mailbox, &ctx.budget, request).await {
                Ok(answer) => {
                    let id = answer.parse::<wire::IdOnly>(&ctx.mailbox, request)?.id;
                    return Ok((id, false));
                }
                Err(WriteFailure::Unsure(error)) => error,
                Err(f) => return Err(f.into_error(&ctx.mailbox, &request.label)),
            };
            let state = self.restored_in(ctx, folder).await?;
            if let Some(found) = find.in_state(&state) {
                tracing::info!(request = %request.label, "the create's answer was lost; the item it made was found");
                return Ok(found);
            }
            if attempt >= policy.max_attempts.max(1) {
                return Err(error);
            }
            tokio::time::sleep(policy.backoff(attempt)).await;
        }
    }

    async fn create_message(
        &self,
        ctx: &WriteCtx,
        folder: &str,
        message: &NewMessage,
    ) -> Result<String, MailboxError> {
        let limits = &self.options.write_limits;
        let mailbox = &ctx.mailbox.mailbox;
        for a in &message.attachments {
            if a.bytes.len() as u64 > limits.max_attachment_bytes {
                return Err(MailboxError::RequestTooLarge {
                    mailbox: mailbox.clone(),
                    what: format!("attachment {:?} of message {}", a.name, message.key.0),
                    size: a.bytes.len() as u64,
                    limit: limits.max_attachment_bytes,
                    limit_name: "an attachment (upload session)".into(),
                });
            }
        }
        let create = |with_attachments: bool, complete: bool| {
            let body = Body::json(&compose::create_body(message, with_attachments, complete));
            let mut request = self.request(
                ctx,
                Method::POST,
                &["mailFolders", folder, "messages"],
                &[],
                body,
            );
            request.target = Target::Folder(folder.to_string());
            request.repeat = Repeat::Once;
            request.what = format!("the create of message {}", message.key.0);
            request
        };
        let find = Find::Key(&message.key);
        // One atomic request when everything fits.
        let whole = create(true, true);
        if whole.body.len() <= limits.max_request_bytes {
            return Ok(self.create_once(ctx, folder, &whole, &find).await?.0);
        }
        let bare = create(false, false);
        if bare.body.len() > limits.max_request_bytes {
            return Err(MailboxError::RequestTooLarge {
                mailbox: mailbox.clone(),
                what: format!("the body of message {}", message.key.0),
                size: bare.body.len(),
                limit: limits.max_request_bytes,
                limit_name: "one request".into(),
            });
        }
        let mut restarts = 0;
        loop {
            let (id, complete) = self.create_once(ctx, folder, &bare, &find).await?;
            if complete {
                return Ok(id);
            }
            match self.add_attachments(ctx, &id, message).await {
                Ok(()) => {
                    self.set_key(ctx, &id, &message.key).await?;
                    return Ok(id);
                }
                Err(WriteFailure::Unsure(error)) if restarts < MAX_RESTARTS => {
                    restarts += 1;
                    tracing::info!(%error, message = %message.key.0, "an attachment's answer was lost; creating the message again");
                    self.remove(ctx, &id).await?;
                }
                Err(failure) => {
                    let error = failure
                        .into_error(&ctx.mailbox, &format!("POST messages/{id}/attachments"));
                    // Leave nothing half-done behind when possible (a rerun removes it
                    // otherwise: its key says incomplete).
                    if let Err(e) = self.remove(ctx, &id).await {
                        tracing::debug!(error = %e, "could not remove the incomplete item");
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Adds the attachments of `message` to the item `id`, in order.
    async fn add_attachments(
        &self,
        ctx: &WriteCtx,
        id: &str,
        message: &NewMessage,
    ) -> Result<(), WriteFailure> {
        let limits = &self.options.write_limits;
        for a in &message.attachments {
            let request = self.attachment_request(ctx, id, a);
            let fits = request.body.len() <= limits.max_request_bytes
                && a.bytes.len() as u64 <= limits.max_inline_attachment_bytes;
            if fits || a.bytes.is_empty() {
                self.write(&ctx.mailbox, &ctx.budget, &request)
                    .await
                    .map_err(|f| match f {
                        WriteFailure::Unsure(e) => WriteFailure::Unsure(e),
                        f => WriteFailure::Error(f.into_error(&ctx.mailbox, &request.label)),
                    })?;
            } else {
                self.upload(ctx, id, a).await?;
            }
        }
        Ok(())
    }

    fn attachment_request(&self, ctx: &WriteCtx, id: &str, a: &NewAttachment) -> WriteRequest {
        let mut request = self.request(
            ctx,
            Method::POST,
            &["messages", id, "attachments"],
            &[],
            Body::json(&compose::attachment(a)),
        );
        request.target = Target::Message(id.to_string());
        request.repeat = Repeat::Once;
        request.what = format!("attachment {:?}", a.name);
        request
    }

    /// PATCHes the restore key of `id` (complete).
    async fn set_key(
        &self,
        ctx: &WriteCtx,
        id: &str,
        key: &RestoreKey,
    ) -> Result<(), MailboxError> {
        let mut request = self.request(
            ctx,
            Method::PATCH,
            &["messages", id],
            &[],
            Body::json(&compose::key_patch(key, true)),
        );
        request.target = Target::Message(id.to_string());
        self.send_write(ctx, &request).await.map(|_| ())
    }

    /// Removes `id` for good (see [`MailboxWriter::remove_incomplete`]).
    async fn remove(&self, ctx: &WriteCtx, id: &str) -> Result<(), MailboxError> {
        // `permanentDelete` rather than `DELETE`: a soft-deleted item lands in Recoverable
        // Items, where the next archive run of this mailbox would find the half-restored
        // copy and archive it as mail.
        let mut request = self.request(
            ctx,
            Method::POST,
            &["messages", id, "permanentDelete"],
            &[],
            Body::Empty,
        );
        request.target = Target::Message(id.to_string());
        request.repeat = Repeat::Delete;
        match self.write(&ctx.mailbox, &ctx.budget, &request).await {
            Ok(_) | Err(WriteFailure::AlreadyDone) => Ok(()),
            Err(f) => Err(f.into_error(&ctx.mailbox, &request.label)),
        }
    }

    async fn create_from_mime(
        &self,
        ctx: &WriteCtx,
        folder: &str,
        key: &RestoreKey,
        mime: &[u8],
    ) -> Result<String, MailboxError> {
        let limit = self.options.write_limits.max_mime_bytes;
        if mime.len() as u64 > limit {
            return Err(MailboxError::RequestTooLarge {
                mailbox: ctx.mailbox.mailbox.clone(),
                what: format!("the MIME of message {}", key.0),
                size: mime.len() as u64,
                limit,
                limit_name: "an exact-MIME create".into(),
            });
        }
        let body = base64::engine::general_purpose::STANDARD.encode(mime);
        let mut request = self.request(
            ctx,
            Method::POST,
            &["mailFolders", folder, "messages"],
            &[],
            Body::Text(body.into()),
        );
        request.target = Target::Folder(folder.to_string());
        request.repeat = Repeat::Once;
        request.what = format!("the MIME of message {}", key.0);
        let message_id = compose::mime_message_id(mime);
        let find = Find::Mime {
            key,
            message_id: message_id.as_deref(),
        };
        let (id, complete) = self.create_once(ctx, folder, &request, &find).await?;
        if !complete {
            self.set_key(ctx, &id, key).await?;
        }
        Ok(id)
    }
}

/// What a lost create may have made.
enum Find<'a> {
    /// An item carrying this restore key.
    Key(&'a RestoreKey),
    /// An exact-MIME create: the key (if a PATCH got through) or, unmarked, the MIME's
    /// `Message-ID` (without one, nothing can be recognised).
    Mime {
        key: &'a RestoreKey,
        message_id: Option<&'a str>,
    },
}

impl Find<'_> {
    fn in_state(&self, state: &FolderRestoreState) -> Option<(String, bool)> {
        let marked = |key: &RestoreKey| {
            state
                .marked
                .get(key)
                .map(|item| (item.message_id.clone(), item.complete))
        };
        match self {
            Find::Key(key) => marked(key),
            Find::Mime { key, message_id } => marked(key).or_else(|| {
                message_id
                    .and_then(|id| state.unmarked.get(id))
                    .map(|item| (item.clone(), false))
            }),
        }
    }
}

/// What a listing says of earlier restores: keyed items (a complete one wins over an
/// incomplete one with the same key), and unkeyed ones by `internetMessageId`.
fn restore_state(listed: Vec<Listed>) -> FolderRestoreState {
    let mut state = FolderRestoreState::default();
    for item in listed {
        let key = item
            .single_value_extended_properties
            .iter()
            .flatten()
            .find(|p| compose::is_restore_key_property(&p.id))
            .and_then(|p| p.value.as_deref())
            .and_then(compose::decode_key);
        match key {
            Some((key, complete)) => {
                let keep = state.marked.get(&key).is_some_and(|held| held.complete);
                if keep {
                    tracing::warn!(key = %key.0, duplicate = %item.id, "two restored items carry the same key");
                } else {
                    state.marked.insert(
                        key,
                        RestoredItem {
                            message_id: item.id,
                            complete,
                        },
                    );
                }
            }
            None => {
                if let Some(id) = item.internet_message_id.filter(|id| !id.is_empty()) {
                    state.unmarked.insert(id, item.id);
                }
            }
        }
    }
    state
}

impl GraphMailboxSource {
    /// The upload budget writes to `mailbox` draw from (shared by the process's writers of
    /// that mailbox): bytes in the current window, total, time waited.
    pub fn upload_budget(&self, mailbox: &str) -> Arc<UploadBudget> {
        self.inner.write_ctx(mailbox).budget
    }
}

#[async_trait]
impl MailboxWriter for GraphMailboxSource {
    async fn ensure_folder(&self, mailbox: &str, path: &[String]) -> Result<String, MailboxError> {
        let span = tracing::info_span!("ensure_folder", mailbox, depth = path.len());
        let ctx = self.inner.write_ctx(mailbox);
        self.inner.ensure_folder(&ctx, path).instrument(span).await
    }

    async fn restored_in(
        &self,
        mailbox: &str,
        folder_id: &str,
    ) -> Result<FolderRestoreState, MailboxError> {
        let span = tracing::info_span!("restored_in", mailbox, folder = folder_id);
        let ctx = self.inner.write_ctx(mailbox);
        self.inner
            .restored_in(&ctx, folder_id)
            .instrument(span)
            .await
    }

    async fn create_message(
        &self,
        mailbox: &str,
        folder_id: &str,
        message: &NewMessage,
    ) -> Result<String, MailboxError> {
        let span = tracing::info_span!("create_message", mailbox, key = %message.key.0);
        let ctx = self.inner.write_ctx(mailbox);
        self.inner
            .create_message(&ctx, folder_id, message)
            .instrument(span)
            .await
    }

    async fn create_from_mime(
        &self,
        mailbox: &str,
        folder_id: &str,
        key: &RestoreKey,
        mime: &[u8],
    ) -> Result<String, MailboxError> {
        let span = tracing::info_span!("create_from_mime", mailbox, key = %key.0);
        let ctx = self.inner.write_ctx(mailbox);
        self.inner
            .create_from_mime(&ctx, folder_id, key, mime)
            .instrument(span)
            .await
    }

    async fn mark_restored(
        &self,
        mailbox: &str,
        message_id: &str,
        key: &RestoreKey,
    ) -> Result<(), MailboxError> {
        let span = tracing::info_span!("mark_restored", mailbox, message = message_id);
        let ctx = self.inner.write_ctx(mailbox);
        self.inner
            .set_key(&ctx, message_id, key)
            .instrument(span)
            .await
    }

    async fn remove_incomplete(&self, mailbox: &str, message_id: &str) -> Result<(), MailboxError> {
        let span = tracing::info_span!("remove_incomplete", mailbox, message = message_id);
        let ctx = self.inner.write_ctx(mailbox);
        self.inner.remove(&ctx, message_id).instrument(span).await
    }

    fn write_metrics(&self, mailbox: &str) -> MailboxMetrics {
        super::metrics_of(&self.inner.writes.metrics, mailbox)
    }

    fn write_limits(&self) -> WriteLimits {
        self.inner.options.write_limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(id: &str, imid: Option<&str>, key: Option<&str>) -> Listed {
        Listed {
            id: id.into(),
            internet_message_id: imid.map(str::to_string),
            single_value_extended_properties: key.map(|value| {
                vec![wire::ExtendedProperty {
                    id: RESTORE_KEY_PROPERTY.to_lowercase(),
                    value: Some(value.into()),
                }]
            }),
        }
    }

    #[test]
    fn a_listing_tells_complete_incomplete_and_unmarked_items() {
        let state = restore_state(vec![
            listed("m1", Some("<1@x>"), Some("A")),
            listed("m2", None, Some("B#incomplete")),
            listed("m3", Some("<3@x>"), None),
            listed("m4", None, None),
            // A complete item wins over an incomplete duplicate, whatever the order.
            listed("m5", None, Some("C#incomplete")),
            listed("m6", None, Some("C")),
            listed("m7", None, Some("C#incomplete")),
            listed("m8", None, Some("")),
        ]);
        let item = |id: &str, complete| RestoredItem {
            message_id: id.into(),
            complete,
        };
        let expected: HashMap<RestoreKey, RestoredItem> = [
            ("A", item("m1", true)),
            ("B", item("m2", false)),
            ("C", item("m6", true)),
        ]
        .into_iter()
        .map(|(k, v)| (RestoreKey(k.into()), v))
        .collect();
        assert_eq!(state.marked, expected);
        assert_eq!(
            state.unmarked,
            HashMap::from([("<3@x>".to_string(), "m3".to_string())])
        );
        let find = Find::Mime {
            key: &RestoreKey("Z".into()),
            message_id: Some("<3@x>"),
        };
        assert_eq!(find.in_state(&state), Some(("m3".into(), false)));
        assert_eq!(
            Find::Key(&RestoreKey("A".into())).in_state(&state),
            Some(("m1".into(), true))
        );
    }
}
