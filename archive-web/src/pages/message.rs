//! The message page, its sandboxed body frame, the body's inline images (signed
//! links, the frame sends no cookie), and the restore form.

use super::*;

/// Subject without reply and forward prefixes, for the conversation.
pub(super) fn thread_subject(subject: &str) -> String {
    let mut s = subject.trim();
    loop {
        let lower = s.to_ascii_lowercase();
        let cut = ["re:", "fw:", "fwd:", "aw:", "wg:", "sv:", "tr:"]
            .iter()
            .find(|p| lower.starts_with(*p))
            .map(|p| p.len());
        match cut {
            Some(n) => s = s[n..].trim_start(),
            None => return s.to_string(),
        }
    }
}

/// `GET /messages/{id}`: the message page.
pub(super) async fn message(
    State(state): State<WebState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let caller = match signed_in(
        caller,
        &format!("/messages/{}", models::encode_component(&id)),
    ) {
        Ok(c) => c,
        Err(redirect) => return Ok(*redirect),
    };
    caller.require_scope(ApiScope::Read)?;
    let viewer = viewer(&caller);
    let can_restore =
        may_restore(&caller.principal) && state.config().restore_credentials.is_some();
    let principal = caller.principal.clone();
    let (message, conversation) = blocking(&state, move |s| {
        let message = s.message_view(&principal, &id)?;
        let subject = thread_subject(message.info.metadata.subject.as_deref().unwrap_or(""));
        let user = message.info.locations.first().map(|(u, _)| u.clone());
        let mut conversation = Vec::new();
        let words: String = subject
            .chars()
            .map(|c| if c.is_alphanumeric() { c } else { ' ' })
            .collect();
        if !words.trim().is_empty() {
            let request = SearchRequest {
                text: format!("subject:({})", words.trim()),
                user,
                from_date: None,
                to_date: None,
                limit: 50,
            };
            if let Ok(hits) = s.search(&principal, &request) {
                conversation = hits
                    .into_iter()
                    .filter(|h| thread_subject(h.subject.as_deref().unwrap_or("")) == subject)
                    .collect();
            }
        }
        Ok((message, conversation))
    })
    .await?;
    let body = message
        .html
        .as_deref()
        .map(|html| render::sanitize_html(html, &body_policy(&state, &caller.name, &message)));
    let mut conversation: Vec<_> = conversation
        .into_iter()
        .map(|h| {
            (
                h.date,
                models::ConversationItem {
                    id: h.id.0,
                    date: day(h.date),
                    from: h.from.unwrap_or_default(),
                    subject: h.subject.unwrap_or_default(),
                },
            )
        })
        .collect();
    conversation.sort_by_key(|c| c.0);
    conversation.dedup_by(|a, b| a.1.id == b.1.id);
    let (user, folder) = message.info.locations.first().cloned().unwrap_or_default();
    let meta = &message.info.metadata;
    let view = models::MessageView {
        viewer,
        id: message.info.id.0.clone(),
        user,
        folder,
        subject: meta.subject.clone().unwrap_or_default(),
        from: meta.from.clone().unwrap_or_default(),
        to: message.to.clone(),
        cc: message.cc.clone(),
        date: day(meta.date),
        attachments: message
            .attachments
            .iter()
            .map(|a| models::AttachmentView {
                index: a.index,
                file_name: a.name.clone(),
                content_type: a.content_type.clone(),
                size: a.size,
            })
            .collect(),
        blocked_remote_images: body.as_ref().map_or(0, |b| b.blocked_remote_images),
        conversation: conversation.into_iter().map(|(_, c)| c).collect(),
        can_restore,
    };
    Ok(page(render::message_page(&view)))
}

/// The sanitiser's policy for `message`'s body: each `cid:` image through a
/// signed link for account `user` (see [`crate::inline`]).
fn body_policy(
    state: &WebState,
    user: &str,
    message: &archiver_service::MessageView,
) -> render::BodyPolicy {
    let mut policy = render::BodyPolicy::new();
    for a in &message.attachments {
        if let Some(cid) = &a.content_id {
            let key = &state.inner.inline_key;
            let link = crate::inline::link(key, user, &message.info.id.0, a.index, state.now());
            policy = policy.with_cid(cid, &link);
        }
    }
    policy
}

/// `GET /messages/{id}/body`: the sanitised body as its own document, for the
/// sandboxed frame (its own CSP: no script, images only from this site).
pub(super) async fn message_body(
    State(state): State<WebState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    caller.require_scope(ApiScope::Read)?;
    let name = caller.name.clone();
    let principal = caller.principal;
    let message = blocking(&state, move |s| Ok(s.message_view(&principal, &id)?)).await?;
    let body = match message.html.as_deref() {
        Some(html) => render::sanitize_html(html, &body_policy(&state, &name, &message)).html,
        None => render::text_to_html(&message.text),
    };
    let mut response = page(render::message_document(&body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(render::MESSAGE_BODY_CSP),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    Ok(response)
}

/// Image types shown inline (never SVG, which can carry script).
pub(super) const INLINE_IMAGE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
];

/// `GET /messages/{id}/inline/{n}`: an inline image of the body (`cid:`).
/// The signature of an inline image link (see [`crate::inline`]).
#[derive(Deserialize, Default)]
pub(super) struct InlineLink {
    #[serde(default)]
    u: Option<String>,
    #[serde(default)]
    e: Option<i64>,
    #[serde(default)]
    t: Option<String>,
}

pub(super) async fn inline_part(
    State(state): State<WebState>,
    caller: MaybeCaller,
    Path((id, n)): Path<(String, usize)>,
    Query(link): Query<InlineLink>,
) -> Result<Response, PageError> {
    let principal = match (caller.0, link.u, link.e, link.t) {
        (Some(caller), _, _, _) => {
            caller.require_scope(ApiScope::Read)?;
            caller.principal
        }
        (None, Some(user), Some(expires), Some(token)) => {
            let now = state.now();
            let key = &state.inner.inline_key;
            if !crate::inline::verify(key, &user, &id, n, expires, &token, now) {
                return Err(WebError::Unauthenticated.into());
            }
            state
                .service()
                .principal_for(&user, now)
                .map_err(|_| WebError::Unauthenticated)?
        }
        _ => return Err(WebError::Unauthenticated.into()),
    };
    let part = blocking(&state, move |s| {
        Ok(s.message_attachment(&principal, &id, n)?)
    })
    .await?;
    let content_type = part.info.content_type.as_str();
    if !INLINE_IMAGE_TYPES.contains(&content_type) {
        return Err(WebError::NotFound("no inline image here".into()).into());
    }
    let mut response = (StatusCode::OK, part.bytes).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}

/// The restore form of the message page.
#[derive(Deserialize)]
pub(super) struct RestoreForm {
    #[serde(default)]
    csrf: Option<String>,
    id: String,
    #[serde(default)]
    to_folder: Option<String>,
}

/// `POST /restore`: restores one message; answers a page with the outcome.
pub(super) async fn restore(
    State(state): State<WebState>,
    caller: Caller,
    Form(form): Form<RestoreForm>,
) -> Result<Response, PageError> {
    caller.require_scope(ApiScope::Restore)?;
    caller.check_csrf(form.csrf.as_deref())?;
    let viewer = viewer(&caller);
    let body = RestoreBody {
        ids: vec![form.id.clone()],
        to_mailbox: None,
        to_folder: form.to_folder,
    };
    let answer = api::run_restore(&state, caller.principal, body).await?;
    let text = format!(
        "Restored {} message(s) to {} in folder {} ({} already there, {} failed).",
        answer.restored,
        answer.to_mailbox,
        answer.to_folder,
        answer.skipped_existing,
        answer.failed
    );
    let content = maud::html! {
        section.notice {
            h1 { "Restore" }
            p.restore-result { (text) }
            p { a href=(format!("/messages/{}", models::encode_component(&form.id))) { "Back to the message" } }
        }
    };
    Ok(page(render::layout(
        Some(&viewer),
        None,
        "Restore",
        content,
    )))
}
