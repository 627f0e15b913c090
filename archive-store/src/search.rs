//! Full-text search with tantivy: one document per archive entry (user, folder,
//! message), fields subject, from, to, cc, body, attachment names, date.
//!
//! A lagging cache: each commit carries the record-log offset it covers as its
//! payload, and an indexing pass (any process: the writer after some group
//! commits, a search before it queries) adds the documents of the log records past
//! it, taking tantivy's writer lock only for that pass; a tombstone in the log
//! deletes its entry's document. Searches are always filtered to one user's
//! archive unless the caller is an admin or privileged (restricted entries are
//! filtered out by the store, against the listing index, unless privileged).

use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{
    DateOptions, FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema,
    TextFieldIndexing, TextOptions, Value,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};

use crate::metadata::MessageMetadata;
use crate::{ArchiveError, MessageId, Scope, SearchHit, SearchQuery};

mod tokenizer;

/// How long a search waits for another process that is bringing the index up to
/// date before it searches what is committed.
const INDEXER_WAIT: Duration = Duration::from_secs(5);
/// Memory budget of one indexing pass.
const WRITER_MEMORY: usize = 40_000_000;

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

/// A full-text field: our tokenizer, with positions (several CJK characters make a phrase).
fn text() -> TextOptions {
    TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(tokenizer::NAME)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    )
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        user: b.add_text_field("user", STRING | STORED),
        folder: b.add_text_field("folder", STRING | STORED),
        id: b.add_text_field("id", STRING | STORED),
        subject: b.add_text_field("subject", text() | STORED),
        from: b.add_text_field("from", text() | STORED),
        to: b.add_text_field("to", text()),
        cc: b.add_text_field("cc", text()),
        body: b.add_text_field("body", text()),
        attachment: b.add_text_field("attachment", text()),
        date: b.add_date_field("date", DateOptions::from(INDEXED) | STORED | FAST),
    };
    (b.build(), fields)
}

/// The tantivy index of one archive generation. The index writer (and tantivy's
/// writer lock) is taken only for one indexing pass, so any process can bring the
/// index up to date; readers in every process search what is committed.
pub(crate) struct SearchIndex {
    index: Index,
    fields: Fields,
    reader: IndexReader,
    /// One indexing pass at a time in this process.
    indexing: Mutex<()>,
}

/// An indexing pass: holds tantivy's writer lock until committed or dropped.
pub(crate) struct SearchWriter<'a> {
    search: &'a SearchIndex,
    writer: IndexWriter<TantivyDocument>,
    _pass: std::sync::MutexGuard<'a, ()>,
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
        index
            .tokenizers()
            .register(tokenizer::NAME, tokenizer::analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(ArchiveError::search)?;
        Ok(SearchIndex {
            index,
            fields,
            reader,
            indexing: Mutex::new(()),
        })
    }

    /// Record-log offset covered by the last commit (of any process).
    pub(crate) fn committed_offset(&self) -> Result<u64, ArchiveError> {
        let metas = self.index.load_metas().map_err(ArchiveError::search)?;
        Ok(metas
            .payload
            .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
            .and_then(|v| v.get("log_offset").and_then(serde_json::Value::as_u64))
            .unwrap_or(0))
    }

    /// Starts an indexing pass: takes tantivy's writer lock, waiting up to `wait`
    /// while another process holds it; `None` when it stayed busy.
    pub(crate) fn writer(&self, wait: Duration) -> Result<Option<SearchWriter<'_>>, ArchiveError> {
        let pass = self
            .indexing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(2);
        loop {
            match self.index.writer_with_num_threads(1, WRITER_MEMORY) {
                Ok(writer) => {
                    return Ok(Some(SearchWriter {
                        search: self,
                        writer,
                        _pass: pass,
                    }));
                }
                Err(tantivy::TantivyError::LockFailure(
                    tantivy::directory::error::LockError::LockBusy,
                    _,
                )) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(tantivy::TantivyError::LockFailure(
                    tantivy::directory::error::LockError::LockBusy,
                    _,
                )) => return Ok(None),
                Err(e) => return Err(ArchiveError::search(e)),
            }
        }
    }

    /// How long a search waits for another process's indexing pass.
    pub(crate) fn default_wait() -> Duration {
        INDEXER_WAIT
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

    /// Reloads the reader to see the latest commit of any process (retried: another
    /// process may remove old segment files while the reader opens them).
    pub(crate) fn reload(&self) -> Result<(), ArchiveError> {
        let mut last = None;
        for _ in 0..3 {
            match self.reader.reload() {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(ArchiveError::search(last.map_or_else(
            || "reload failed".to_string(),
            |e| e.to_string(),
        )))
    }

    /// Committed documents.
    pub(crate) fn num_docs(&self) -> Result<u64, ArchiveError> {
        self.reload()?;
        Ok(self.reader.searcher().num_docs())
    }

    /// Runs a query within `scope`.
    pub(crate) fn search(
        &self,
        query: &SearchQuery,
        scope: &Scope,
    ) -> Result<Vec<SearchHit>, ArchiveError> {
        let f = self.fields;
        let user = match scope {
            Scope::Admin | Scope::Privileged => query.user.clone(),
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

impl SearchWriter<'_> {
    /// Adds one entry's document.
    pub(crate) fn add(&mut self, doc: &SearchDoc<'_>) -> Result<(), ArchiveError> {
        let d = self.search.document(doc);
        self.writer.add_document(d).map_err(ArchiveError::search)?;
        Ok(())
    }

    /// Deletes the document of one entry (an expunge); documents added after this
    /// call in the same pass stay.
    pub(crate) fn delete(
        &mut self,
        user: &str,
        folder: &str,
        id: &str,
    ) -> Result<(), ArchiveError> {
        let f = self.search.fields;
        let term = |field, value: &str| -> (Occur, Box<dyn Query>) {
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(field, value),
                    IndexRecordOption::Basic,
                )),
            )
        };
        let query = BooleanQuery::new(vec![
            term(f.user, user),
            term(f.folder, folder),
            term(f.id, id),
        ]);
        self.writer
            .delete_query(Box::new(query))
            .map_err(ArchiveError::search)?;
        Ok(())
    }

    /// Deletes every document (a rebuild from offset 0).
    pub(crate) fn clear(&mut self) -> Result<(), ArchiveError> {
        self.writer
            .delete_all_documents()
            .map_err(ArchiveError::search)?;
        Ok(())
    }

    /// Commits what was added as covering the record log up to `offset`, releases
    /// the writer lock and makes the commit visible to this process's searches.
    pub(crate) fn commit(mut self, offset: u64) -> Result<(), ArchiveError> {
        let payload = serde_json::json!({ "log_offset": offset }).to_string();
        let mut prepared = self.writer.prepare_commit().map_err(ArchiveError::search)?;
        prepared.set_payload(&payload);
        prepared.commit().map_err(ArchiveError::search)?;
        let search = self.search;
        self.writer
            .wait_merging_threads()
            .map_err(ArchiveError::search)?;
        search.reload()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_written_with_another_tokenizer_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        // An index as tantivy's default tokenizer wrote it, caught up to some log offset.
        let mut old_schema = Schema::builder();
        old_schema.add_text_field("subject", tantivy::schema::TEXT | STORED);
        let old = Index::create_in_dir(dir.path(), old_schema.build()).unwrap();
        let mut writer: IndexWriter<TantivyDocument> =
            old.writer_with_num_threads(1, 15_000_000).unwrap();
        let mut prepared = writer.prepare_commit().unwrap();
        prepared.set_payload(r#"{"log_offset":77}"#);
        prepared.commit().unwrap();
        drop(writer);
        drop(old);
        let search = SearchIndex::open(dir.path()).unwrap();
        assert_eq!(search.index.schema(), schema().0);
        // Covering nothing: the next pass indexes the whole record log again.
        assert_eq!(search.committed_offset().unwrap(), 0);
        assert_eq!(search.num_docs().unwrap(), 0);
    }
}
