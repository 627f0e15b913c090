//! The seam to the archive: [`RetentionTarget`] lists entries, answers queries, and
//! expunges or restricts entries — each expunge re-checked, entry by entry, by the
//! caller's permit at the moment it happens. [`MemoryTarget`] is an in-memory archive
//! for tests.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Mutex, MutexGuard};

use crate::RetentionError;
use crate::model::{EntryKey, EntryView};

/// What an expunge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expunged {
    /// Entries removed.
    pub entries: u64,
    /// Bytes of contents no live entry references any more (reclaimed by compaction).
    pub bytes_reclaimed: u64,
    /// Entries the permit refused at the last moment (kept).
    pub refused: Vec<EntryKey>,
    /// Entries that were no longer there.
    pub missing: Vec<EntryKey>,
}

/// Decides, for one entry as it is now, whether it may leave the archive.
pub type Permit<'a> = &'a (dyn Fn(&EntryView) -> bool + Sync);

/// The archive as retention sees it.
pub trait RetentionTarget: Send + Sync {
    /// Every live entry (restricted ones included).
    fn entries(&self) -> Result<Vec<EntryView>, RetentionError>;

    /// The entries matching a full-text query, across every archive.
    fn query(&self, query: &str) -> Result<HashSet<EntryKey>, RetentionError>;

    /// Removes these entries, asking `permit` for each one (with its current view)
    /// right before removing it; a refused or missing entry is kept and reported.
    fn expunge(&self, entries: &[EntryKey], permit: Permit<'_>)
    -> Result<Expunged, RetentionError>;

    /// Marks an entry restricted (hidden from everyone but auditors and compliance
    /// officers) or lifts the mark.
    fn set_restricted(&self, entry: &EntryKey, restricted: bool) -> Result<(), RetentionError>;

    /// Whether an entry is restricted.
    fn is_restricted(&self, entry: &EntryKey) -> Result<bool, RetentionError>;
}

#[derive(Debug, Default)]
struct Inner {
    entries: BTreeMap<EntryKey, EntryView>,
    /// Words of each content, for queries.
    words: BTreeMap<String, BTreeSet<String>>,
    restricted: BTreeSet<EntryKey>,
}

/// An in-memory archive: entries, their words for queries, restriction marks.
#[derive(Debug, Default)]
pub struct MemoryTarget {
    inner: Mutex<Inner>,
}

impl MemoryTarget {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an entry whose content holds these words (lower-case).
    pub fn add(&self, entry: EntryView, words: &[&str]) {
        let mut inner = self.lock();
        inner
            .words
            .entry(entry.key.id.clone())
            .or_default()
            .extend(words.iter().map(|w| w.to_lowercase()));
        inner.entries.insert(entry.key.clone(), entry);
    }

    /// The live entries' keys.
    pub fn keys(&self) -> BTreeSet<EntryKey> {
        self.lock().entries.keys().cloned().collect()
    }
}

impl RetentionTarget for MemoryTarget {
    fn entries(&self) -> Result<Vec<EntryView>, RetentionError> {
        Ok(self.lock().entries.values().cloned().collect())
    }

    fn query(&self, query: &str) -> Result<HashSet<EntryKey>, RetentionError> {
        let inner = self.lock();
        let terms: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        Ok(inner
            .entries
            .keys()
            .filter(|k| {
                inner
                    .words
                    .get(&k.id)
                    .is_some_and(|w| terms.iter().all(|t| w.contains(t)))
            })
            .cloned()
            .collect())
    }

    fn expunge(
        &self,
        entries: &[EntryKey],
        permit: Permit<'_>,
    ) -> Result<Expunged, RetentionError> {
        let mut inner = self.lock();
        let mut done = Expunged::default();
        let mut touched = BTreeSet::new();
        for key in entries {
            let Some(view) = inner.entries.get(key) else {
                done.missing.push(key.clone());
                continue;
            };
            if !permit(view) {
                done.refused.push(key.clone());
                continue;
            }
            let size = view.size;
            inner.entries.remove(key);
            inner.restricted.remove(key);
            done.entries += 1;
            touched.insert((key.id.clone(), size));
        }
        for (id, size) in touched {
            if !inner.entries.keys().any(|k| k.id == id) {
                inner.words.remove(&id);
                done.bytes_reclaimed += size;
            }
        }
        Ok(done)
    }

    fn set_restricted(&self, entry: &EntryKey, restricted: bool) -> Result<(), RetentionError> {
        let mut inner = self.lock();
        if !inner.entries.contains_key(entry) {
            return Err(RetentionError::NotFound {
                what: "archive entry".into(),
                name: format!("{} in {} ({})", entry.id, entry.user, entry.folder),
            });
        }
        if restricted {
            inner.restricted.insert(entry.clone());
        } else {
            inner.restricted.remove(entry);
        }
        Ok(())
    }

    fn is_restricted(&self, entry: &EntryKey) -> Result<bool, RetentionError> {
        Ok(self.lock().restricted.contains(entry))
    }
}
