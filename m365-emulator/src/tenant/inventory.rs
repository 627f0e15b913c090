//! What a mailbox holds, as tests need it to compute exact expectations: per folder (mailbox
//! view, Recoverable Items, online archive including auxiliary archives) the message counts, and
//! the items whose `$value` fails.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{FolderKind, Mailbox};
use super::{TenantError, TenantStore};

/// Which part of a mailbox a folder belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FolderArea {
    /// Under msgfolderroot (what `/messages` and [`crate::Emulator::message_count`] cover),
    /// hidden folders there included.
    Mailbox,
    /// The Recoverable Items tree (Deletions, Purges, Versions, DiscoveryHolds).
    RecoverableItems,
    /// The online archive (main or auxiliary archive mailbox).
    Archive,
}

/// One mail folder and how many messages it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderCount {
    /// The folder id (in an auto-expanded archive, the id of the expanded folder, the same in
    /// the main and the auxiliary archive).
    pub id: String,
    /// Display names from below the root down to the folder, e.g. `["Inbox", "Projects"]` or
    /// `["Deletions"]` (the Recoverable Items root and msgfolderroot are left out).
    pub path: Vec<String>,
    /// The well-known name (`inbox`, `recoverableitemsdeletions`, ...), if any.
    pub well_known: Option<String>,
    /// `isHidden`.
    pub hidden: bool,
    /// Which part of the mailbox it is.
    pub area: FolderArea,
    /// Live messages in it (for an expanded archive folder: those in the auxiliary archive).
    pub messages: usize,
    /// For archive folders: the `MBX:` id of the mailbox holding the messages.
    pub mailbox_id: Option<String>,
}

/// An item whose MIME Graph cannot produce (`$value` fails every time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnconvertibleItem {
    /// Immutable id.
    pub id: String,
    /// Current (non-immutable) id.
    pub current_id: String,
    /// Subject as Graph's JSON shows it.
    pub subject: String,
    /// Folder path as in [`FolderCount::path`].
    pub folder: Vec<String>,
}

/// Display names from below the root to `index` (roots left out).
fn path_of(mailbox: &Mailbox, index: usize) -> Vec<String> {
    let mut path = Vec::new();
    let mut current = Some(index);
    for _ in 0..=mailbox.folders.len() {
        let Some(i) = current else { break };
        let folder = &mailbox.folders[i];
        if folder.kind == FolderKind::Root {
            break;
        }
        path.push(folder.display_name.clone());
        current = folder.parent;
    }
    path.reverse();
    path
}

/// The mail folders of one mailbox with their counts (search folders and roots left out).
fn counts_of(mailbox: &Mailbox, area_of: &dyn Fn(usize) -> Option<FolderArea>) -> Vec<FolderCount> {
    let mut per_folder = vec![0usize; mailbox.folders.len()];
    for (_, message) in mailbox.live() {
        if let Some(count) = per_folder.get_mut(message.folder) {
            *count += 1;
        }
    }
    mailbox
        .folders
        .iter()
        .enumerate()
        .filter(|(_, f)| f.kind == FolderKind::Mail)
        .filter_map(|(index, folder)| {
            Some(FolderCount {
                id: folder.id.clone(),
                path: path_of(mailbox, index),
                well_known: folder.well_known.map(str::to_owned),
                hidden: folder.hidden,
                area: area_of(index)?,
                messages: per_folder[index],
                mailbox_id: None,
            })
        })
        .collect()
}

impl TenantStore {
    /// Every mail folder of a user's primary mailbox (mailbox view and Recoverable Items) with
    /// its message count; empty for an unknown user or one without a mailbox.
    pub fn folder_counts(&self, upn: &str) -> Vec<FolderCount> {
        let tenant = self.read();
        let Some(mailbox) = tenant.mailbox(upn) else {
            return Vec::new();
        };
        let visible = mailbox.visible_folders();
        counts_of(mailbox, &|index| {
            if visible[index] {
                Some(FolderArea::Mailbox)
            } else if mailbox.in_recoverable_items(index) {
                Some(FolderArea::RecoverableItems)
            } else {
                None
            }
        })
    }

    /// Messages per Recoverable Items folder, by display name (`Deletions`, `Purges`, `Versions`,
    /// `DiscoveryHolds`; only `Deletions` without `hidden_mail`).
    pub fn recoverable_counts(&self, upn: &str) -> BTreeMap<String, usize> {
        self.folder_counts(upn)
            .into_iter()
            .filter(|f| f.area == FolderArea::RecoverableItems)
            .map(|f| (f.path.join("/"), f.messages))
            .collect()
    }

    /// The folders of a user's online archive with their counts; an expanded folder counts the
    /// messages of the auxiliary archive holding them (its `mailbox_id` names that archive).
    /// Empty for a user without an archive.
    pub fn archive_folder_counts(&self, upn: &str) -> Vec<FolderCount> {
        let tenant = self.read();
        let Some(main) = tenant.archive_of_user(upn) else {
            return Vec::new();
        };
        let main_guid = tenant
            .user(upn)
            .and_then(|u| tenant.archive_of.get(&u.id))
            .cloned()
            .unwrap_or_default();
        let mut folders = counts_of(main, &|_| Some(FolderArea::Archive));
        for (folder, source) in folders
            .iter_mut()
            .zip(main.folders.iter().filter(|f| f.kind == FolderKind::Mail))
        {
            match &source.redirect {
                Some(aux) => {
                    folder.messages = tenant.archives.get(aux).map_or(0, |m| {
                        m.folder_index(&folder.id)
                            .map_or(0, |i| m.folder_items(i).len())
                    });
                    folder.mailbox_id = Some(tenant.mbx(aux));
                }
                None => folder.mailbox_id = Some(tenant.mbx(&main_guid)),
            }
        }
        folders
    }

    /// Messages in a user's online archive, auxiliary archives included (0 without one).
    pub fn archive_message_count(&self, upn: &str) -> usize {
        self.archive_folder_counts(upn)
            .iter()
            .map(|f| f.messages)
            .sum()
    }

    /// Immutable ids of the messages [`TenantStore::archive_message_count`] counts.
    pub fn archive_message_ids(&self, upn: &str) -> Vec<String> {
        let tenant = self.read();
        let Some(main) = tenant.archive_of_user(upn) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = main.live().map(|(_, m)| m.immutable_id.clone()).collect();
        for aux in &main.auxiliary {
            if let Some(mailbox) = tenant.archives.get(aux) {
                ids.extend(mailbox.live().map(|(_, m)| m.immutable_id.clone()));
            }
        }
        ids
    }

    /// The `MBX:` ids of a user's mailboxes: primary, main archive, auxiliary archives.
    pub fn mailbox_ids(&self, upn: &str) -> Option<(String, Option<String>, Vec<String>)> {
        let tenant = self.read();
        let user = tenant.user(upn).filter(|u| u.has_mailbox)?;
        let primary = tenant.mbx(&tenant.primary_mailbox_guid(&user.id));
        let main = tenant.archive_of.get(&user.id);
        let auxiliary = main
            .and_then(|guid| tenant.archives.get(guid))
            .map(|m| m.auxiliary.iter().map(|a| tenant.mbx(a)).collect())
            .unwrap_or_default();
        Some((primary, main.map(|g| tenant.mbx(g)), auxiliary))
    }

    /// The items of a user's primary mailbox whose `$value` fails.
    pub fn unconvertible_items(&self, upn: &str) -> Vec<UnconvertibleItem> {
        let tenant = self.read();
        let Some(mailbox) = tenant.mailbox(upn) else {
            return Vec::new();
        };
        mailbox
            .live()
            .filter(|(_, m)| m.unconvertible)
            .map(|(_, m)| UnconvertibleItem {
                id: m.immutable_id.clone(),
                current_id: m.id.clone(),
                subject: mailbox.summary(m).subject,
                folder: path_of(mailbox, m.folder),
            })
            .collect()
    }

    /// Stores raw MIME in a user's online archive (folder by id or display name; Inbox when
    /// `None`); answers the immutable id.
    ///
    /// # Errors
    /// Unknown user, user without an archive, unknown folder.
    pub fn deliver_to_archive(
        &self,
        upn: &str,
        folder: Option<&str>,
        mime: Vec<u8>,
    ) -> Result<String, TenantError> {
        self.write().deliver_to_archive(upn, folder, mime)
    }
}
