//! The search page (facets, paging, the URL as its state), the folder tree, and the
//! export form: the search or the archive as mbox or a zip of `.eml` files.

use super::*;

/// Hits a facet is computed over (the first ones of the search).
pub(super) const FACET_HITS: usize = 1000;

pub(super) fn sender_domain(from: &str) -> Option<String> {
    let address = from
        .rsplit_once('<')
        .map_or(from, |(_, rest)| rest.trim_end_matches('>'));
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

pub(super) fn facets(
    query: &models::SearchQuery,
    hits: &[archive_store::SearchHit],
) -> Vec<models::Facet> {
    let mut folders: BTreeMap<String, u64> = BTreeMap::new();
    let mut years: BTreeMap<i32, u64> = BTreeMap::new();
    let mut domains: BTreeMap<String, u64> = BTreeMap::new();
    for hit in hits {
        *folders.entry(hit.folder.clone()).or_default() += 1;
        if let Some(date) = hit.date {
            *years.entry(date.year()).or_default() += 1;
        }
        if let Some(domain) = hit.from.as_deref().and_then(sender_domain) {
            *domains.entry(domain).or_default() += 1;
        }
    }
    let top = |map: BTreeMap<String, u64>| {
        let mut v: Vec<(String, u64)> = map.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(10);
        v
    };
    let folder_values = top(folders)
        .into_iter()
        .map(|(path, count)| {
            let term = models::folder_query_term(&path);
            models::FacetValue {
                active: query.q.contains(&term),
                query: query.with_term(&term),
                label: path,
                count,
            }
        })
        .collect();
    let year_values = years
        .into_iter()
        .rev()
        .map(|(year, count)| {
            let (from, to) = (format!("{year}-01-01"), format!("{}-01-01", year + 1));
            models::FacetValue {
                active: query.from == from && query.to == to,
                query: query.with_dates(&from, &to),
                label: year.to_string(),
                count,
            }
        })
        .collect();
    let domain_values = top(domains)
        .into_iter()
        .map(|(domain, count)| {
            let term = format!("from:\"{domain}\"");
            models::FacetValue {
                active: query.q.contains(&term),
                query: query.with_term(&term),
                label: domain,
                count,
            }
        })
        .collect();
    vec![
        models::Facet {
            kind: models::FacetKind::Folder,
            values: folder_values,
        },
        models::Facet {
            kind: models::FacetKind::Year,
            values: year_values,
        },
        models::Facet {
            kind: models::FacetKind::SenderDomain,
            values: domain_values,
        },
    ]
}

/// `GET /`: the search page.
pub(super) async fn search(
    State(state): State<WebState>,
    caller: MaybeCaller,
    Query(params): Query<SearchParams>,
) -> Result<Response, PageError> {
    let query = models::SearchQuery {
        q: params.q.clone().unwrap_or_default(),
        user: params.user.clone().unwrap_or_default(),
        from: params.from.clone().unwrap_or_default(),
        to: params.to.clone().unwrap_or_default(),
    };
    let caller = match signed_in(
        caller,
        &query.href_with_cursor(params.cursor.as_deref().unwrap_or("")),
    ) {
        Ok(c) => c,
        Err(redirect) => return Ok(*redirect),
    };
    caller.require_scope(ApiScope::Read)?;
    let viewer = viewer(&caller);
    let can_export =
        caller.principal.visible(Utc::now()) != archiver_service::Visible::Only(Default::default());
    let searched = [&query.q, &query.user, &query.from, &query.to]
        .iter()
        .any(|v| !v.trim().is_empty());
    let principal = caller.principal.clone();
    let (archives, outcome) = blocking(&state, move |s| {
        let archives = s.visible_archives(&principal)?;
        if !searched {
            return Ok((archives, None));
        }
        let offset = api::decode_cursor(params.cursor.as_deref())?;
        let limit = params
            .limit
            .unwrap_or(api::DEFAULT_LIMIT)
            .clamp(1, api::MAX_LIMIT);
        let request = SearchRequest {
            text: params.q.clone().unwrap_or_default(),
            user: params.user.clone().filter(|u| !u.trim().is_empty()),
            from_date: params
                .from
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| api::parse_date("from", v))
                .transpose()?,
            to_date: params
                .to
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| api::parse_date("to", v))
                .transpose()?,
            limit: (offset + limit + 1).clamp(FACET_HITS, api::MAX_DEPTH),
        };
        let found = match s.search(&principal, &request) {
            Ok(found) => found,
            Err(e) if e.category() == archiver_service::ErrorCategory::Invalid => {
                return Ok((archives, Some(Err(archiver_service::chain(&e)))));
            }
            Err(e) => return Err(e.into()),
        };
        Ok((archives, Some(Ok((found, offset, limit)))))
    })
    .await?;
    let mut view = models::SearchView {
        viewer,
        archives: archives
            .into_iter()
            .map(|user| models::ArchiveOption {
                label: user.clone(),
                user,
            })
            .collect(),
        searched,
        hits: Vec::new(),
        total: None,
        facets: Vec::new(),
        next_cursor: None,
        prev_cursor: None,
        error: None,
        can_export,
        query,
    };
    match outcome {
        None => {}
        Some(Err(message)) => view.error = Some(message),
        Some(Ok((found, offset, limit))) => {
            view.facets = facets(&view.query, &found[..found.len().min(FACET_HITS)]);
            if found.len() < FACET_HITS.max(offset + limit + 1) {
                view.total = Some(found.len() as u64);
            }
            view.next_cursor =
                (found.len() > offset + limit).then(|| api::encode_cursor(offset + limit));
            view.prev_cursor = (offset > 0).then(|| {
                let prev = offset.saturating_sub(limit);
                if prev == 0 {
                    String::new()
                } else {
                    api::encode_cursor(prev)
                }
            });
            view.hits = found
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|h| models::SearchHit {
                    id: h.id.0,
                    user: h.user,
                    date: day(h.date),
                    from: h.from.unwrap_or_default(),
                    subject: h.subject.unwrap_or_default(),
                    folder: h.folder,
                    has_attachments: false,
                })
                .collect();
        }
    }
    Ok(page(render::search_page(&view)))
}

/// `GET /static/app.css`.
pub(super) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        render::APP_CSS,
    )
        .into_response()
}

/// The query of `GET /folders`.
#[derive(Deserialize)]
pub(super) struct FoldersQuery {
    #[serde(default)]
    user: Option<String>,
}

/// `GET /folders`: the folder tree of an archive.
pub(super) async fn folders(
    State(state): State<WebState>,
    caller: MaybeCaller,
    Query(query): Query<FoldersQuery>,
) -> Result<Response, PageError> {
    let caller = match signed_in(caller, "/folders") {
        Ok(c) => c,
        Err(redirect) => return Ok(*redirect),
    };
    caller.require_scope(ApiScope::Read)?;
    let viewer = viewer(&caller);
    let principal = caller.principal.clone();
    let asked = query.user.filter(|u| !u.trim().is_empty());
    let own = caller.name.clone();
    let (user, archives, folders) = blocking(&state, move |s| {
        let archives = s.visible_archives(&principal)?;
        let user = asked.unwrap_or_else(|| {
            if archives.contains(&own) {
                own.clone()
            } else {
                archives.first().cloned().unwrap_or(own)
            }
        });
        // An archive outside the visible ones goes to the service all the same,
        // which refuses it and records the refusal.
        let folders = s.archive_folders(&principal, &user)?;
        Ok((user, archives, folders))
    })
    .await?;
    let view = models::FoldersView {
        viewer,
        user,
        archives: archives
            .into_iter()
            .map(|user| models::ArchiveOption {
                label: user.clone(),
                user,
            })
            .collect(),
        folders: folders
            .into_iter()
            .map(|f| models::FolderCount {
                path: f.path,
                count: f.messages,
            })
            .collect(),
    };
    Ok(page(render::folders_page(&view)))
}

/// The export form of the search page.
#[derive(Deserialize)]
pub(super) struct ExportForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    folder: Option<String>,
    format: String,
}

/// The search text with the form's date range as a query term.
pub(super) fn with_date_range(
    q: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<String, WebError> {
    let bound = |name: &str, v: Option<&str>| -> Result<Option<String>, WebError> {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| {
                api::parse_date(name, v)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            })
            .transpose()
    };
    let (from, to) = (bound("from", from)?, bound("to", to)?);
    if from.is_none() && to.is_none() {
        return Ok(q.to_string());
    }
    let range = format!(
        "date:[{} TO {}}}",
        from.unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
        to.unwrap_or_else(|| "9999-12-31T00:00:00Z".into())
    );
    Ok(format!("{} {range}", q.trim()).trim().to_string())
}

/// `POST /export`: the search (or the archive) as an mbox or a zip of `.eml`.
pub(super) async fn export(
    State(state): State<WebState>,
    caller: Caller,
    Form(form): Form<ExportForm>,
) -> Result<Response, PageError> {
    caller.require_scope(ApiScope::Export)?;
    caller.check_csrf(form.csrf.as_deref())?;
    let user = form
        .user
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| caller.name.clone());
    let query = with_date_range(
        form.q.as_deref().unwrap_or(""),
        form.from.as_deref(),
        form.to.as_deref(),
    )?;
    let body = ExportBody {
        query: Some(query),
        user,
        folder: form.folder,
        format: form.format,
    };
    Ok(api::export_download(&state, caller.principal, body).await?)
}
