//! Full-text search with tantivy: one document per archive entry (user, folder,
//! message), fields subject, from, to, cc, body, attachment names, date.
//!
//! Each commit carries the record-log offset it covers as its payload; on open the
//! store re-indexes every log record past that checkpoint, so a message whose
//! `archive` call returned is findable even after a crash. Searches are always
//! filtered to one user's archive unless the caller is an admin.

use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{
    DateOptions, FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, Value,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};

use crate::metadata::MessageMetadata;
use crate::{ArchiveError, MessageId, Scope, SearchHit, SearchQuery};

/// Commit after this many added documents...
const COMMIT_EVERY_DOCS: usize = 5_000;
/// ...or this long after the first uncommitted one.
const COMMIT_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
struct Fields {
    user: Field,
    folder: Field,
    id: Field,
    subject: Field,
    from: Field,
    to: Field,
    cc: Field,
    body: Field,
    attachment: Field,
    date: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        user: b.add_text_field("user", STRING | STORED),
        folder: b.add_text_field("folder", STRING | STORED),
        id: b.add_text_field("id", STRING | STORED),
        subject: b.add_text_field("subject", TEXT | STORED),
        from: b.add_text_field("from", TEXT | STORED),
        to: b.add_text_field("to", TEXT),
        cc: b.add_text_field("cc", TEXT),
        body: b.add_text_field("body", TEXT),
        attachment: b.add_text_field("attachment", TEXT),
        date: b.add_date_field("date", DateOptions::from(INDEXED) | STORED | FAST),
    };
    (b.build(), fields)
}

struct WriterState {
    writer: IndexWriter<TantivyDocument>,
    uncommitted: usize,
    first_uncommitted: Option<Instant>,
    /// Record-log offset covered by the documents added so far.
    covered: u64,
    /// Record-log offset of the last commit.
    committed: u64,
}

/// The tantivy index of one archive.
pub(crate) struct SearchIndex {
    index: Index,
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<WriterState>,
}

/// One document to index.
pub(crate) struct SearchDoc<'a> {
    pub(crate) user: &'a str,
    pub(crate) folder: &'a str,
    pub(crate) id: &'a str,
    pub(crate) meta: &'a MessageMetadata,
    pub(crate) received: Option<DateTime<Utc>>,
}

impl SearchIndex {
    /// Opens the index in `dir`, creating it (or recreating it when its schema is
    /// not ours: it is a cache).
    pub(crate) fn open(dir: &Path) -> Result<Self, ArchiveError> {
        std::fs::create_dir_all(dir).map_err(|e| ArchiveError::io(dir, e))?;
        let (schema, fields) = schema();
        let index = match Index::open_in_dir(dir) {
            Ok(index) if index.schema() == schema => index,
            Ok(_) | Err(_) if dir.join("meta.json").exists() => {
                tracing::warn!(dir = %dir.display(), "search index unusable; recreating it");
                std::fs::remove_dir_all(dir).map_err(|e| ArchiveError::io(dir, e))?;
                std::fs::create_dir_all(dir).map_err(|e| ArchiveError::io(dir, e))?;
                Index::create_in_dir(dir, schema).map_err(ArchiveError::search)?
            }
            _ => Index::create_in_dir(dir, schema).map_err(ArchiveError::search)?,
        };
        let writer = index
            .writer_with_num_threads(1, 40_000_000)
            .map_err(ArchiveError::search)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(ArchiveError::search)?;
        let covered = Self::payload_offset(&index)?.unwrap_or(0);
        Ok(SearchIndex {
            index,
            fields,
            reader,
            writer: Mutex::new(WriterState {
                writer,
                uncommitted: 0,
                first_uncommitted: None,
                covered,
                committed: covered,
            }),
        })
    }

    fn payload_offset(index: &Index) -> Result<Option<u64>, ArchiveError> {
        let metas = index.load_metas().map_err(ArchiveError::search)?;
        Ok(metas
            .payload
            .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
            .and_then(|v| v.get("log_offset").and_then(serde_json::Value::as_u64)))
    }

    /// Record-log offset covered by the last commit.
    pub(crate) fn committed_offset(&self) -> Result<u64, ArchiveError> {
        Ok(Self::payload_offset(&self.index)?.unwrap_or(0))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, WriterState>, ArchiveError> {
        self.writer
            .lock()
            .map_err(|_| ArchiveError::search("search writer lock poisoned"))
    }

    /// Adds one entry's document.
    pub(crate) fn add(&self, doc: &SearchDoc<'_>) -> Result<(), ArchiveError> {
        let d = self.document(doc);
        let mut state = self.lock()?;
        state.writer.add_document(d).map_err(ArchiveError::search)?;
        state.uncommitted += 1;
        state.first_uncommitted.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Adds the documents of a batch of log records and notes the offset they reach,
    /// atomically with respect to commits.
    pub(crate) fn add_all(&self, docs: &[SearchDoc<'_>], covered: u64) -> Result<(), ArchiveError> {
        let built: Vec<TantivyDocument> = docs.iter().map(|d| self.document(d)).collect();
        let mut state = self.lock()?;
        for d in built {
            state.writer.add_document(d).map_err(ArchiveError::search)?;
            state.uncommitted += 1;
        }
        if !docs.is_empty() {
            state.first_uncommitted.get_or_insert_with(Instant::now);
        }
        state.covered = covered;
        Ok(())
    }

    fn document(&self, doc: &SearchDoc<'_>) -> TantivyDocument {
        let f = self.fields;
        let mut d = TantivyDocument::default();
        d.add_text(f.user, doc.user);
        d.add_text(f.folder, doc.folder);
        d.add_text(f.id, doc.id);
        if let Some(subject) = &doc.meta.subject {
            d.add_text(f.subject, subject);
        }
        if let Some(from) = &doc.meta.from {
            d.add_text(f.from, from);
        }
        for to in &doc.meta.to {
            d.add_text(f.to, to);
        }
        for cc in &doc.meta.cc {
            d.add_text(f.cc, cc);
        }
        if !doc.meta.body_text.is_empty() {
            d.add_text(f.body, &doc.meta.body_text);
        }
        for name in &doc.meta.attachments {
            d.add_text(f.attachment, name);
        }
        if let Some(date) = doc.received.or(doc.meta.date) {
            d.add_date(
                f.date,
                tantivy::DateTime::from_timestamp_secs(date.timestamp()),
            );
        }
        d
    }

    /// Notes that documents for every log record before `offset` have been added.
    pub(crate) fn cover(&self, offset: u64) -> Result<(), ArchiveError> {
        self.lock()?.covered = offset;
        Ok(())
    }

    /// Commits when enough has accumulated (or always with `force`).
    pub(crate) fn maybe_commit(&self, force: bool) -> Result<(), ArchiveError> {
        let mut state = self.lock()?;
        let due = state.uncommitted >= COMMIT_EVERY_DOCS
            || state
                .first_uncommitted
                .is_some_and(|t| t.elapsed() >= COMMIT_EVERY);
        let covered_changed = state.committed != state.covered;
        if !(due || (force && (state.uncommitted > 0 || covered_changed))) {
            return Ok(());
        }
        let payload = serde_json::json!({ "log_offset": state.covered }).to_string();
        let mut prepared = state
            .writer
            .prepare_commit()
            .map_err(ArchiveError::search)?;
        prepared.set_payload(&payload);
        prepared.commit().map_err(ArchiveError::search)?;
        state.committed = state.covered;
        state.uncommitted = 0;
        state.first_uncommitted = None;
        drop(state);
        self.reader.reload().map_err(ArchiveError::search)?;
        Ok(())
    }

    /// Whether documents wait for a commit.
    pub(crate) fn dirty(&self) -> Result<bool, ArchiveError> {
        Ok(self.lock()?.uncommitted > 0)
    }

    /// Deletes every document (for `reindex`) and commits with offset 0.
    pub(crate) fn clear(&self) -> Result<(), ArchiveError> {
        let mut state = self.lock()?;
        state
            .writer
            .delete_all_documents()
            .map_err(ArchiveError::search)?;
        state.covered = 0;
        state.committed = 0;
        let payload = serde_json::json!({ "log_offset": 0 }).to_string();
        let mut prepared = state
            .writer
            .prepare_commit()
            .map_err(ArchiveError::search)?;
        prepared.set_payload(&payload);
        prepared.commit().map_err(ArchiveError::search)?;
        state.uncommitted = 0;
        state.first_uncommitted = None;
        drop(state);
        self.reader.reload().map_err(ArchiveError::search)?;
        Ok(())
    }

    /// Committed documents.
    pub(crate) fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Runs a query within `scope`.
    pub(crate) fn search(
        &self,
        query: &SearchQuery,
        scope: &Scope,
    ) -> Result<Vec<SearchHit>, ArchiveError> {
        if self.dirty()? {
            self.maybe_commit(true)?;
        }
        let f = self.fields;
        let user = match scope {
            Scope::Admin => query.user.clone(),
            Scope::User(me) => {
                if let Some(requested) = &query.user
                    && requested != me
                {
                    return Err(ArchiveError::AccessDenied {
                        caller: me.clone(),
                        requested: requested.clone(),
                    });
                }
                Some(me.clone())
            }
        };
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if query.text.trim().is_empty() {
            clauses.push((Occur::Must, Box::new(AllQuery)));
        } else {
            let mut parser = QueryParser::for_index(
                &self.index,
                vec![f.subject, f.from, f.to, f.cc, f.body, f.attachment],
            );
            parser.set_conjunction_by_default();
            // Lenient: a stray `:` or quote in what a user typed must not fail the search.
            let (q, _errors) = parser.parse_query_lenient(&query.text);
            clauses.push((Occur::Must, q));
        }
        if let Some(user) = &user {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.user, user),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if query.from_date.is_some() || query.to_date.is_some() {
            let bound = |d: DateTime<Utc>| {
                Term::from_field_date_for_search(
                    f.date,
                    tantivy::DateTime::from_timestamp_secs(d.timestamp()),
                )
            };
            let lower = query
                .from_date
                .map_or(Bound::Unbounded, |d| Bound::Included(bound(d)));
            let upper = query
                .to_date
                .map_or(Bound::Unbounded, |d| Bound::Excluded(bound(d)));
            clauses.push((Occur::Must, Box::new(RangeQuery::new(lower, upper))));
        }
        let q = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        // Free text: best matches first. No text (a listing, e.g. by date range): newest first.
        let top: Vec<DocAddress> = if query.text.trim().is_empty() {
            searcher
                .search(
                    &q,
                    &TopDocs::with_limit(query.limit)
                        .order_by_fast_field::<tantivy::DateTime>("date", Order::Desc),
                )
                .map_err(ArchiveError::search)?
                .into_iter()
                .map(|(_, addr)| addr)
                .collect()
        } else {
            searcher
                .search(&q, &TopDocs::with_limit(query.limit).order_by_score())
                .map_err(ArchiveError::search)?
                .into_iter()
                .map(|(_, addr)| addr)
                .collect()
        };
        let mut hits = Vec::with_capacity(top.len());
        for addr in top {
            let doc: TantivyDocument = searcher.doc(addr).map_err(ArchiveError::search)?;
            let text = |field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            hits.push(SearchHit {
                id: MessageId(text(f.id).unwrap_or_default()),
                user: text(f.user).unwrap_or_default(),
                folder: text(f.folder).unwrap_or_default(),
                date: doc
                    .get_first(f.date)
                    .and_then(|v| v.as_datetime())
                    .and_then(|d| Utc.timestamp_opt(d.into_timestamp_secs(), 0).single()),
                from: text(f.from),
                subject: text(f.subject),
            });
        }
        Ok(hits)
    }
}
