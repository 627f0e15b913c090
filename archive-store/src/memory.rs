//! [`MemoryArchiveStore`]: the [`ArchiveStore`] seam in memory, for other crates'
//! tests. Same semantics as the disk store (content addressing, per-folder
//! entries, source lookup, scoped search over the same metadata), no durability.
//! It can be told to fail writes, to refuse some messages or to report its copies
//! damaged, to test callers' handling of archive failures.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};

use crate::crypto::to_hex;
use crate::metadata::{MessageMetadata, extract};
use crate::{
    ArchiveEntry, ArchiveError, ArchiveOutcome, ArchiveRequest, ArchiveStats, ArchiveStore,
    EntryRef, ExpungeReport, MessageId, RawMessage, RestrictReport, Scope, SearchHit, SearchQuery,
    SourceRef, SourceState,
};

#[derive(Default)]
struct Inner {
    contents: HashMap<MessageId, (Vec<u8>, MessageMetadata)>,
    /// (user, folder, id) → (received, archived)
    entries: BTreeMap<Key, (Option<DateTime<Utc>>, DateTime<Utc>)>,
    sources: HashMap<(String, SourceRef), MessageId>,
    restricted: BTreeSet<Key>,
    /// Sources whose entries were expunged, with the content they held.
    forgotten_sources: HashMap<(String, SourceRef), MessageId>,
    /// (user, content) expunged from that user's archive.
    forgotten_contents: BTreeSet<(String, MessageId)>,
}

/// An entry: (user, folder, id).
type Key = (String, String, MessageId);

/// An in-memory archive.
#[derive(Default)]
pub struct MemoryArchiveStore {
    inner: Mutex<Inner>,
    fail_writes: AtomicBool,
    refuse_marker: Mutex<Option<Vec<u8>>>,
    damaged: AtomicBool,
}

impl std::fmt::Debug for MemoryArchiveStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryArchiveStore").finish_non_exhaustive()
    }
}

impl MemoryArchiveStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, every `archive` call fails (`true`) or works again (`false`).
    pub fn set_fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// From now on, every `archive` call whose message contains `marker` (every call,
    /// for an empty marker) is refused with [`ArchiveError::InvalidRequest`]: the
    /// message is refused, the storage is fine. `None` accepts every message again.
    pub fn refuse_writes_containing(&self, marker: Option<&[u8]>) {
        *self
            .refuse_marker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = marker.map(<[u8]>::to_vec);
    }

    /// From now on, every stored copy fails verification (`true`) or is checked
    /// again (`false`).
    pub fn set_damaged(&self, damaged: bool) {
        self.damaged.store(damaged, Ordering::SeqCst);
    }

    /// The sources recorded for `user`'s archive, sorted.
    pub fn sources(&self, user: &str) -> Vec<SourceRef> {
        let mut sources: Vec<SourceRef> = self
            .inner()
            .sources
            .keys()
            .filter(|(u, _)| u == user)
            .map(|(_, source)| source.clone())
            .collect();
        sources.sort_by(|a, b| (&a.mailbox, &a.message_id).cmp(&(&b.mailbox, &b.message_id)));
        sources
    }

    fn refuses(&self, bytes: &[u8]) -> bool {
        let marker = self
            .refuse_marker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        marker
            .as_deref()
            .is_some_and(|m| m.is_empty() || bytes.windows(m.len()).any(|w| w == m))
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// (folder, id) pairs of `user`'s archive (restricted entries left out).
    pub fn list(&self, user: &str) -> Vec<(String, MessageId)> {
        let inner = self.inner();
        inner
            .entries
            .keys()
            .filter(|k| k.0 == user && !inner.restricted.contains(*k))
            .map(|(_, f, id)| (f.clone(), id.clone()))
            .collect()
    }

    /// Every entry, restricted ones included (as [`crate::DiskArchiveStore::entries`]).
    pub fn entries(&self) -> Vec<ArchiveEntry> {
        let inner = self.inner();
        inner.entries.keys().filter_map(|k| inner.view(k)).collect()
    }

    /// Expunges entries, asking `permit` for each one's current view first (as
    /// [`crate::DiskArchiveStore::expunge`]); the content goes with its last entry.
    pub fn expunge(
        &self,
        entries: &[EntryRef],
        permit: &dyn Fn(&ArchiveEntry) -> bool,
    ) -> Result<ExpungeReport, ArchiveError> {
        let mut inner = self.inner();
        let mut report = ExpungeReport::default();
        for entry in entries {
            let key = (entry.user.clone(), entry.folder.clone(), entry.id.clone());
            let Some(view) = inner.view(&key) else {
                report.missing.push(entry.clone());
                continue;
            };
            if !permit(&view) {
                report.refused.push(entry.clone());
                continue;
            }
            inner.entries.remove(&key);
            inner.restricted.remove(&key);
            report.expunged.push(entry.clone());
            if !inner
                .entries
                .keys()
                .any(|(u, _, id)| u == &entry.user && id == &entry.id)
            {
                let gone: Vec<(String, SourceRef)> = inner
                    .sources
                    .iter()
                    .filter(|((user, _), id)| user == &entry.user && *id == &entry.id)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in gone {
                    inner.sources.remove(&k);
                    inner.forgotten_sources.insert(k, entry.id.clone());
                }
                inner
                    .forgotten_contents
                    .insert((entry.user.clone(), entry.id.clone()));
            }
            if !inner.entries.keys().any(|(_, _, id)| id == &entry.id)
                && inner.contents.remove(&entry.id).is_some()
            {
                report.unreferenced_messages += 1;
                report.unreferenced_bytes += view.size;
            }
        }
        Ok(report)
    }

    /// Marks entries restricted or lifts the mark (as
    /// [`crate::DiskArchiveStore::set_restricted`]).
    pub fn set_restricted(
        &self,
        entries: &[EntryRef],
        restricted: bool,
    ) -> Result<RestrictReport, ArchiveError> {
        let mut inner = self.inner();
        let mut report = RestrictReport::default();
        for entry in entries {
            let key = (entry.user.clone(), entry.folder.clone(), entry.id.clone());
            if !inner.entries.contains_key(&key) {
                report.missing.push(entry.clone());
            } else if inner.restricted.contains(&key) == restricted {
                report.unchanged.push(entry.clone());
            } else {
                if restricted {
                    inner.restricted.insert(key);
                } else {
                    inner.restricted.remove(&key);
                }
                report.changed.push(entry.clone());
            }
        }
        Ok(report)
    }

    /// Whether the entry is restricted.
    pub fn is_restricted(&self, entry: &EntryRef) -> bool {
        self.inner().restricted.contains(&(
            entry.user.clone(),
            entry.folder.clone(),
            entry.id.clone(),
        ))
    }

    /// Users with an archive.
    pub fn users(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .inner()
            .entries
            .keys()
            .map(|(u, _, _)| u.clone())
            .collect();
        set.into_iter().collect()
    }
}

impl Inner {
    fn view(&self, key: &Key) -> Option<ArchiveEntry> {
        let (received, archived) = *self.entries.get(key)?;
        let (bytes, meta) = self.contents.get(&key.2)?;
        Some(ArchiveEntry {
            id: key.2.clone(),
            user: key.0.clone(),
            folder: key.1.clone(),
            received,
            archived,
            sources: self
                .sources
                .iter()
                .filter(|((u, _), id)| u == &key.0 && *id == &key.2)
                .map(|((_, s), _)| s.clone())
                .collect(),
            size: bytes.len() as u64,
            subject: meta.subject.clone(),
            from: meta.from.clone(),
            date: meta.date,
            unparseable: meta.unparseable,
            restricted: self.restricted.contains(key),
        })
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl ArchiveStore for MemoryArchiveStore {
    fn archive(
        &self,
        request: &ArchiveRequest,
        raw: RawMessage<'_>,
    ) -> Result<ArchiveOutcome, ArchiveError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(ArchiveError::NotDurable {
                failure: crate::IoFailure::other("writes are switched off in this test store"),
            });
        }
        crate::validate(request)?;
        let bytes = match raw {
            RawMessage::Bytes(b) => b.to_vec(),
            RawMessage::File(p) => std::fs::read(p).map_err(|e| ArchiveError::io(p, e))?,
        };
        if self.refuses(&bytes) {
            return Err(ArchiveError::InvalidRequest {
                field: "message",
                detail: "refused by this test store".into(),
            });
        }
        let id = MessageId(blake3::hash(&bytes).to_hex().to_string());
        let mut inner = self.inner();
        if inner
            .forgotten_contents
            .contains(&(request.user.clone(), id.clone()))
        {
            return Ok(ArchiveOutcome {
                id,
                new_content: false,
                new_entry: false,
                forgotten: true,
            });
        }
        let new_content = !inner.contents.contains_key(&id);
        if new_content {
            let meta = extract(&bytes, bytes.len() as u64);
            inner.contents.insert(id.clone(), (bytes, meta));
        }
        let key = (request.user.clone(), request.folder.clone(), id.clone());
        let new_entry = !inner.entries.contains_key(&key);
        if new_entry {
            inner.entries.insert(key, (request.received, Utc::now()));
        }
        if let Some(source) = &request.source {
            let key = (request.user.clone(), source.clone());
            inner.forgotten_sources.remove(&key);
            inner.sources.insert(key, id.clone());
        }
        Ok(ArchiveOutcome {
            id,
            new_content,
            new_entry,
            forgotten: false,
        })
    }

    fn source_state(&self, user: &str, source: &SourceRef) -> Result<SourceState, ArchiveError> {
        let inner = self.inner();
        let key = (user.to_string(), source.clone());
        Ok(
            match (inner.sources.get(&key), inner.forgotten_sources.get(&key)) {
                (Some(id), _) => SourceState::Archived(id.clone()),
                (None, Some(id)) => SourceState::Forgotten(id.clone()),
                (None, None) => SourceState::Unknown,
            },
        )
    }

    fn verify_message(&self, id: &MessageId) -> Result<bool, ArchiveError> {
        match self.inner().contents.get(id) {
            Some(_) if self.damaged.load(Ordering::SeqCst) => Ok(false),
            Some((bytes, _)) => Ok(to_hex(blake3::hash(bytes).as_bytes()) == id.0),
            None => Err(ArchiveError::NotFound { id: id.0.clone() }),
        }
    }

    fn read_message(&self, id: &MessageId) -> Result<Vec<u8>, ArchiveError> {
        self.inner()
            .contents
            .get(id)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| ArchiveError::NotFound { id: id.0.clone() })
    }

    fn holds_exactly(
        &self,
        id: &MessageId,
        offered: &mut dyn std::io::Read,
    ) -> Result<bool, ArchiveError> {
        if !self.verify_message(id)? {
            return Ok(false);
        }
        let offered = crate::hash_reader(blake3::Hasher::new(), offered, "offered message")?;
        Ok(to_hex(&offered) == id.0)
    }

    fn search(&self, query: &SearchQuery, scope: &Scope) -> Result<Vec<SearchHit>, ArchiveError> {
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
        let wanted = words(&query.text);
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let inner = self.inner();
        let mut hits = Vec::new();
        for (key, (received, _)) in &inner.entries {
            let (u, folder, id) = key;
            if user.as_ref().is_some_and(|want| want != u)
                || (!scope.sees_restricted() && inner.restricted.contains(key))
            {
                continue;
            }
            let Some((_, meta)) = inner.contents.get(id) else {
                continue;
            };
            let date = received.or(meta.date);
            if query
                .from_date
                .is_some_and(|from| date.is_none_or(|d| d < from))
                || query.to_date.is_some_and(|to| date.is_none_or(|d| d >= to))
            {
                continue;
            }
            let haystack = [
                meta.subject.clone().unwrap_or_default(),
                meta.from.clone().unwrap_or_default(),
                meta.to.join(" "),
                meta.cc.join(" "),
                meta.body_text.clone(),
                meta.attachments.join(" "),
            ]
            .join(" ");
            let have = words(&haystack);
            if wanted.iter().all(|w| have.contains(w)) {
                hits.push(SearchHit {
                    id: id.clone(),
                    user: u.clone(),
                    folder: folder.clone(),
                    date,
                    from: meta.from.clone(),
                    subject: meta.subject.clone(),
                });
            }
            if hits.len() >= query.limit {
                break;
            }
        }
        Ok(hits)
    }

    fn stats(&self) -> Result<ArchiveStats, ArchiveError> {
        let inner = self.inner();
        let mut stats = ArchiveStats {
            messages: inner.entries.len() as u64,
            unique_messages: inner.contents.len() as u64,
            chunks: inner.contents.len() as u64,
            logical_bytes: inner.contents.values().map(|(b, _)| b.len() as u64).sum(),
            ..ArchiveStats::default()
        };
        stats.stored_bytes = stats.logical_bytes;
        for (user, _, _) in inner.entries.keys() {
            *stats.users.entry(user.clone()).or_insert(0) += 1;
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_dedups_and_searches_per_user() {
        let store = MemoryArchiveStore::new();
        let raw = b"From: a@b.c\r\nSubject: Budget review\r\n\r\nhi\r\n";
        let req = |user: &str| ArchiveRequest {
            user: user.into(),
            folder: "Inbox".into(),
            source: Some(SourceRef {
                mailbox: "a@b.c".into(),
                message_id: "1".into(),
            }),
            received: None,
        };
        let a = store
            .archive(&req("alice"), RawMessage::Bytes(raw))
            .unwrap();
        let b = store.archive(&req("bob"), RawMessage::Bytes(raw)).unwrap();
        assert!(a.new_content && !b.new_content && b.new_entry);
        assert!(
            !store
                .archive(&req("bob"), RawMessage::Bytes(raw))
                .unwrap()
                .new_entry
        );
        let q = SearchQuery {
            text: "budget".into(),
            user: None,
            from_date: None,
            to_date: None,
            limit: 10,
        };
        assert_eq!(
            store
                .search(&q, &Scope::User("alice".into()))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(store.search(&q, &Scope::Admin).unwrap().len(), 2);
        store.set_fail_writes(true);
        assert!(
            store
                .archive(&req("carol"), RawMessage::Bytes(raw))
                .is_err()
        );
    }

    #[test]
    fn test_knobs_refuse_marked_messages_and_damage_copies() {
        let store = MemoryArchiveStore::new();
        let req = ArchiveRequest {
            user: "alice".into(),
            folder: "Inbox".into(),
            source: Some(SourceRef {
                mailbox: "a@b.c".into(),
                message_id: "1".into(),
            }),
            received: None,
        };
        store.refuse_writes_containing(Some(b"POISON"));
        let refused = store.archive(&req, RawMessage::Bytes(b"Subject: POISON\r\n\r\n"));
        assert!(matches!(refused, Err(ArchiveError::InvalidRequest { .. })));
        let kept = store
            .archive(&req, RawMessage::Bytes(b"Subject: fine\r\n\r\n"))
            .unwrap();
        store.refuse_writes_containing(Some(b""));
        assert!(store.archive(&req, RawMessage::Bytes(b"x")).is_err());
        store.refuse_writes_containing(None);
        assert_eq!(store.sources("alice"), vec![req.source.clone().unwrap()]);
        assert!(store.sources("bob").is_empty());
        assert!(store.verify_message(&kept.id).unwrap());
        store.set_damaged(true);
        assert!(!store.verify_message(&kept.id).unwrap());
        let mut offered: &[u8] = b"Subject: fine\r\n\r\n";
        assert!(!store.holds_exactly(&kept.id, &mut offered).unwrap());
    }
}
