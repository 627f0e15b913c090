//! [`ArchiveTarget`]: the real archive ([`DiskArchiveStore`]) as retention sees it.
//! Entries come from the listing index (restricted ones included), queries from
//! the full-text index across every archive (privileged: restricted entries
//! match too), removals go through the store's expunge (a tombstone per entry,
//! the permit asked with the entry as it is at that moment) and restriction
//! marks through its restriction records.

use std::collections::HashSet;

use archive_store::{
    ArchiveEntry, ArchiveError, ArchiveStore, DiskArchiveStore, EntryRef, MessageId, Scope,
    SearchQuery,
};

use crate::RetentionError;
use crate::model::{EntryKey, EntryView};
use crate::target::{Expunged, Permit, RetentionTarget};

/// The archive on disk as a [`RetentionTarget`].
#[derive(Debug, Clone, Copy)]
pub struct ArchiveTarget<'a> {
    store: &'a DiskArchiveStore,
}

impl<'a> ArchiveTarget<'a> {
    /// Retention over this archive (opened for writing).
    pub fn new(store: &'a DiskArchiveStore) -> Self {
        ArchiveTarget { store }
    }
}

fn archive_error(e: ArchiveError) -> RetentionError {
    RetentionError::Target(Box::new(e))
}

fn view(entry: &ArchiveEntry) -> EntryView {
    EntryView {
        key: EntryKey {
            user: entry.user.clone(),
            id: entry.id.0.clone(),
            folder: entry.folder.clone(),
        },
        received: entry.received,
        archived: entry.archived,
        size: entry.size,
    }
}

fn entry_ref(key: &EntryKey) -> EntryRef {
    EntryRef::new(
        key.user.clone(),
        key.folder.clone(),
        MessageId(key.id.clone()),
    )
}

fn entry_key(entry: &EntryRef) -> EntryKey {
    EntryKey {
        user: entry.user.clone(),
        id: entry.id.0.clone(),
        folder: entry.folder.clone(),
    }
}

impl RetentionTarget for ArchiveTarget<'_> {
    fn entries(&self) -> Result<Vec<EntryView>, RetentionError> {
        Ok(self
            .store
            .entries()
            .map_err(archive_error)?
            .iter()
            .map(view)
            .collect())
    }

    fn query(&self, query: &str) -> Result<HashSet<EntryKey>, RetentionError> {
        let everything = self.store.stats().map_err(archive_error)?.messages;
        let hits = self
            .store
            .search(
                &SearchQuery {
                    text: query.to_string(),
                    user: None,
                    from_date: None,
                    to_date: None,
                    limit: usize::try_from(everything).unwrap_or(usize::MAX).max(1),
                },
                &Scope::Privileged,
            )
            .map_err(archive_error)?;
        Ok(hits
            .into_iter()
            .map(|hit| EntryKey {
                user: hit.user,
                id: hit.id.0,
                folder: hit.folder,
            })
            .collect())
    }

    fn expunge(
        &self,
        entries: &[EntryKey],
        permit: Permit<'_>,
    ) -> Result<Expunged, RetentionError> {
        let refs: Vec<EntryRef> = entries.iter().map(entry_ref).collect();
        let report = self
            .store
            .expunge(&refs, &|entry: &ArchiveEntry| permit(&view(entry)))
            .map_err(archive_error)?;
        Ok(Expunged {
            entries: report.expunged.len() as u64,
            bytes_reclaimed: report.unreferenced_bytes,
            refused: report.refused.iter().map(entry_key).collect(),
            missing: report.missing.iter().map(entry_key).collect(),
        })
    }

    fn set_restricted(&self, entry: &EntryKey, restricted: bool) -> Result<(), RetentionError> {
        let report = self
            .store
            .set_restricted(&[entry_ref(entry)], restricted)
            .map_err(archive_error)?;
        if !report.missing.is_empty() {
            return Err(RetentionError::NotFound {
                what: "archive entry".into(),
                name: format!("{} in {} ({})", entry.id, entry.user, entry.folder),
            });
        }
        Ok(())
    }

    fn is_restricted(&self, entry: &EntryKey) -> Result<bool, RetentionError> {
        self.store
            .is_restricted(&entry_ref(entry))
            .map_err(archive_error)
    }
}
