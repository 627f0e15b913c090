//! The tenant's records: users, mailboxes, folders, messages, removal log, and the mutations on them.
//!
//! Each mailbox mutation takes the next value of the mailbox's sequence counter; messages remember
//! the sequence of their last change and removals are logged with theirs, which is all a delta
//! token needs to know.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;

use super::mime::{self, MimeSource, Recipe};
use super::{
    MailboxAccess, MailboxPurpose, NewUser, Tenant, TenantError, UserInfo, UserPatch,
    normalise_user_key,
};

/// A directory user with every property Graph can return.
#[derive(Debug, Clone)]
pub(crate) struct UserRecord {
    pub(crate) id: String,
    pub(crate) upn: String,
    pub(crate) mail: Option<String>,
    pub(crate) display_name: String,
    pub(crate) given_name: Option<String>,
    pub(crate) surname: Option<String>,
    pub(crate) job_title: Option<String>,
    pub(crate) office_location: Option<String>,
    pub(crate) enabled: bool,
    pub(crate) guest: bool,
    pub(crate) has_mailbox: bool,
    pub(crate) access_denied: bool,
    /// `SMTP:primary` first, then `smtp:alias` entries.
    pub(crate) proxy_addresses: Vec<String>,
    /// `mailboxSettings.userPurpose`.
    pub(crate) purpose: MailboxPurpose,
    /// Directory sequence of the last change (users delta).
    pub(crate) seq: u64,
}

impl UserRecord {
    /// The public view.
    pub(crate) fn info(&self) -> UserInfo {
        UserInfo {
            id: self.id.clone(),
            upn: self.upn.clone(),
            mail: self.mail.clone(),
            display_name: self.display_name.clone(),
            enabled: self.enabled,
            guest: self.guest,
            has_mailbox: self.has_mailbox,
            access_denied: self.access_denied,
            purpose: self.purpose,
        }
    }
}

/// What kind of folder a [`Folder`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FolderKind {
    /// A hidden root (msgfolderroot, Recoverable Items): addressable, never listed.
    Root,
    /// An ordinary mail folder.
    Mail,
    /// A `mailSearchFolder`: its items are the flagged messages of the mail folders.
    SearchFlagged,
}

/// A mail folder.
#[derive(Debug, Clone)]
pub(crate) struct Folder {
    pub(crate) id: String,
    pub(crate) display_name: String,
    /// Parent folder index; `None` only for roots.
    pub(crate) parent: Option<usize>,
    pub(crate) well_known: Option<&'static str>,
    pub(crate) hidden: bool,
    pub(crate) kind: FolderKind,
    /// In an archive mailbox: the folder's content lives in this auxiliary archive (its mailbox
    /// GUID); reads of it answer 308 Permanent Redirect there.
    pub(crate) redirect: Option<String>,
}

/// Where a message's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum MessageBody {
    /// Generated on request from a recipe.
    Generated(Recipe),
    /// Delivered through the control API or loaded from an `.eml` file: kept as given.
    Stored {
        bytes: bytes::Bytes,
        meta: Arc<mime::StoredMeta>,
    },
    /// Created through Graph (a JSON or MIME create): its MIME is rendered from its content.
    Created(Box<super::created::CreatedMessage>),
}

/// One message of a mailbox.
#[derive(Debug, Clone)]
pub(crate) struct MessageRecord {
    pub(crate) immutable_id: String,
    /// Current (non-immutable) id: changes when the message moves.
    pub(crate) id: String,
    pub(crate) folder: usize,
    /// Unix seconds.
    pub(crate) received: i64,
    pub(crate) is_read: bool,
    pub(crate) flagged: bool,
    /// Sequence of the last change.
    pub(crate) seq: u64,
    pub(crate) body: MessageBody,
    /// Graph cannot render this item as MIME: `$value` fails every time.
    pub(crate) unconvertible: bool,
}

/// A message that left a folder (deleted or moved away) at a sequence.
#[derive(Debug, Clone)]
pub(crate) struct Removal {
    pub(crate) folder: usize,
    pub(crate) immutable_id: String,
    pub(crate) id: String,
    pub(crate) seq: u64,
}

/// A mailbox: folders, messages, change log.
#[derive(Debug, Clone)]
pub(crate) struct Mailbox {
    pub(crate) upn: String,
    pub(crate) owner_name: String,
    /// Per-mailbox key for ids.
    pub(crate) key: u64,
    pub(crate) folders: Vec<Folder>,
    /// Slots; `None` once deleted for good.
    pub(crate) messages: Vec<Option<MessageRecord>>,
    /// Immutable and current ids → slot.
    pub(crate) by_id: HashMap<String, usize>,
    pub(crate) seq: u64,
    pub(crate) removals: Vec<Removal>,
    /// Counter for new ids (moves, deliveries).
    pub(crate) serial: u64,
    /// Sync-state generation: delta tokens of an older generation are refused (410).
    pub(crate) sync_epoch: u64,
    /// An In-Place Archive (main or auxiliary): reached by `MBX:` id on beta only, well-known
    /// folder names refused.
    pub(crate) archive: bool,
    /// Of a main archive: the GUIDs of its auxiliary archives.
    pub(crate) auxiliary: Vec<String>,
}

/// SplitMix64: a tiny, well-mixed hash step for deterministic ids.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes several words into one.
pub(crate) fn mix_all(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x6A09_E667_F3BC_C908, |acc, part| mix(acc ^ part))
}

/// An Exchange-looking id: a fixed prefix then url-safe base64 of deterministic bytes.
pub(crate) fn exchange_id(prefix: &str, parts: &[u64]) -> String {
    let mut bytes = Vec::with_capacity(48);
    let mut h = mix_all(parts);
    for _ in 0..6 {
        bytes.extend_from_slice(&h.to_le_bytes());
        h = mix(h);
    }
    bytes.push(0);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE.encode(bytes)
    )
}

/// Well-known folders that `/messages` and the message counts leave out.
const NOT_IN_MAILBOX_VIEW: [&str; 1] = ["recoverableitemsdeletions"];

impl Mailbox {
    /// An empty mailbox (folders added by the caller).
    pub(crate) fn new(upn: &str, owner_name: &str, key: u64) -> Self {
        Self {
            upn: upn.to_owned(),
            owner_name: owner_name.to_owned(),
            key,
            folders: Vec::new(),
            messages: Vec::new(),
            by_id: HashMap::new(),
            seq: 0,
            removals: Vec::new(),
            serial: 0,
            sync_epoch: 0,
            archive: false,
            auxiliary: Vec::new(),
        }
    }

    /// Adds a folder; answers its index.
    pub(crate) fn add_folder(
        &mut self,
        display_name: &str,
        parent: Option<usize>,
        well_known: Option<&'static str>,
        hidden: bool,
        kind: FolderKind,
    ) -> usize {
        let index = self.folders.len();
        let id = exchange_id("AAMkAD", &[self.key, 0xF0, index as u64]);
        self.folders.push(Folder {
            id,
            display_name: display_name.to_owned(),
            parent,
            well_known,
            hidden,
            kind,
            redirect: None,
        });
        index
    }

    /// Folder by id (case-sensitive, as Exchange ids are) or well-known name (case-insensitive).
    pub(crate) fn folder_index(&self, id_or_name: &str) -> Option<usize> {
        if let Some(index) = self.folders.iter().position(|f| f.id == id_or_name) {
            return Some(index);
        }
        let lower = id_or_name.to_ascii_lowercase();
        self.folders
            .iter()
            .position(|f| f.well_known == Some(lower.as_str()))
    }

    /// The msgfolderroot index.
    pub(crate) fn root(&self) -> usize {
        self.folders
            .iter()
            .position(|f| f.well_known == Some("msgfolderroot"))
            .unwrap_or(0)
    }

    /// True when the folder lies under msgfolderroot and is not a search folder.
    pub(crate) fn in_mailbox_view(&self, index: usize) -> bool {
        let root = self.root();
        let mut current = Some(index);
        let mut steps = 0;
        while let Some(i) = current {
            let folder = &self.folders[i];
            if folder.kind == FolderKind::SearchFlagged
                || folder
                    .well_known
                    .is_some_and(|w| NOT_IN_MAILBOX_VIEW.contains(&w))
            {
                return false;
            }
            if i == root {
                return true;
            }
            current = folder.parent;
            steps += 1;
            if steps > self.folders.len() {
                return false;
            }
        }
        false
    }

    /// Children of a folder, in creation order.
    pub(crate) fn children(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        self.folders
            .iter()
            .enumerate()
            .filter(move |(_, f)| f.parent == Some(index))
            .map(|(i, _)| i)
    }

    /// Live messages.
    pub(crate) fn live(&self) -> impl Iterator<Item = (usize, &MessageRecord)> + '_ {
        self.messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (i, m)))
    }

    /// The messages a folder shows: its own, or for a search folder the matching ones elsewhere.
    pub(crate) fn folder_items(&self, index: usize) -> Vec<(usize, &MessageRecord)> {
        match self.folders.get(index).map(|f| &f.kind) {
            Some(FolderKind::SearchFlagged) => self
                .live()
                .filter(|(_, m)| m.flagged && self.in_mailbox_view(m.folder))
                .collect(),
            Some(_) => self.live().filter(|(_, m)| m.folder == index).collect(),
            None => Vec::new(),
        }
    }

    /// Message count over the mailbox view.
    pub(crate) fn visible_message_count(&self) -> usize {
        let visible = self.visible_folders();
        self.live().filter(|(_, m)| visible[m.folder]).count()
    }

    /// Immutable ids over the mailbox view.
    pub(crate) fn visible_message_ids(&self) -> Vec<String> {
        let visible = self.visible_folders();
        self.live()
            .filter(|(_, m)| visible[m.folder])
            .map(|(_, m)| m.immutable_id.clone())
            .collect()
    }

    /// `in_mailbox_view` for every folder at once.
    pub(crate) fn visible_folders(&self) -> Vec<bool> {
        (0..self.folders.len())
            .map(|i| self.in_mailbox_view(i))
            .collect()
    }

    /// A message by immutable or current id.
    pub(crate) fn message(&self, id: &str) -> Option<&MessageRecord> {
        self.by_id
            .get(id)
            .and_then(|&slot| self.messages.get(slot))
            .and_then(Option::as_ref)
    }

    /// Slot of a message by either id.
    pub(crate) fn slot(&self, id: &str) -> Option<usize> {
        let slot = *self.by_id.get(id)?;
        self.messages.get(slot)?.as_ref().map(|_| slot)
    }

    /// The MIME source of one of this mailbox's messages.
    pub(crate) fn mime_source(&self, record: &MessageRecord) -> MimeSource {
        match &record.body {
            MessageBody::Generated(recipe) => {
                mime::render_recipe(recipe, &self.upn, &self.owner_name)
            }
            MessageBody::Stored { bytes, .. } => MimeSource::stored(bytes.clone()),
            MessageBody::Created(created) => MimeSource::stored(created.mime.clone()),
        }
    }

    /// Next sequence number.
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Inserts a message; ids are derived from the mailbox key and serial.
    pub(crate) fn insert(
        &mut self,
        folder: usize,
        received: i64,
        is_read: bool,
        flagged: bool,
        body: MessageBody,
    ) -> String {
        self.serial += 1;
        let immutable_id = exchange_id("AAkALg", &[self.key, 0x1D, self.serial]);
        let id = exchange_id("AAMkAG", &[self.key, 0x2D, self.serial]);
        let seq = self.next_seq();
        let slot = self.messages.len();
        self.by_id.insert(immutable_id.clone(), slot);
        self.by_id.insert(id.clone(), slot);
        self.messages.push(Some(MessageRecord {
            immutable_id: immutable_id.clone(),
            id,
            folder,
            received,
            is_read,
            flagged,
            seq,
            body,
            unconvertible: false,
        }));
        immutable_id
    }

    /// Stores delivered bytes (received now); answers the immutable id.
    pub(crate) fn deliver(&mut self, folder: usize, bytes: Vec<u8>) -> String {
        let meta = Arc::new(mime::StoredMeta::parse(&bytes));
        let received = chrono::Utc::now().timestamp();
        self.insert(
            folder,
            received,
            false,
            false,
            MessageBody::Stored {
                bytes: bytes.into(),
                meta,
            },
        )
    }

    /// Removes a message for good; logs the removal.
    pub(crate) fn remove_message(&mut self, id: &str) -> Option<MessageRecord> {
        let slot = self.slot(id)?;
        let record = self.messages.get_mut(slot)?.take()?;
        self.by_id.remove(&record.immutable_id);
        self.by_id.remove(&record.id);
        let seq = self.next_seq();
        self.removals.push(Removal {
            folder: record.folder,
            immutable_id: record.immutable_id.clone(),
            id: record.id.clone(),
            seq,
        });
        Some(record)
    }

    /// True when the folder is the Recoverable Items root or lies under it.
    pub(crate) fn in_recoverable_items(&self, index: usize) -> bool {
        let Some(root) = self.folder_index("recoverableitemsroot") else {
            return false;
        };
        let mut current = Some(index);
        for _ in 0..=self.folders.len() {
            match current {
                Some(i) if i == root => return true,
                Some(i) => current = self.folders.get(i).and_then(|f| f.parent),
                None => return false,
            }
        }
        false
    }

    /// Graph's `DELETE` of a message: into Recoverable Items/Deletions (the current id changes,
    /// the immutable id stays). An item already in Deletions goes on to Purges when the mailbox
    /// has the full tree, else it is gone; one in Purges, Versions or DiscoveryHolds is gone.
    /// (Graph's documentation is silent on deleting what is already in Recoverable Items; this
    /// follows Exchange's single item recovery.) Answers `None` for an unknown id.
    pub(crate) fn soft_delete(&mut self, id: &str) -> Option<()> {
        let folder = self.message(id)?.folder;
        let deletions = self.folder_index("recoverableitemsdeletions");
        if !self.in_recoverable_items(folder)
            && let Some(deletions) = deletions
        {
            self.move_message(id, deletions)?;
            return Some(());
        }
        let purges = self.folder_index("recoverableitemspurges");
        match purges {
            Some(purges) if Some(folder) == deletions => {
                self.move_message(id, purges)?;
            }
            _ => {
                self.remove_message(id)?;
            }
        }
        Some(())
    }

    /// Graph's `permanentDelete`: into Recoverable Items/Purges when the mailbox has it (an item
    /// already there is gone for good), else gone for good. Answers `None` for an unknown id.
    pub(crate) fn hard_delete(&mut self, id: &str) -> Option<()> {
        let folder = self.message(id)?.folder;
        match self.folder_index("recoverableitemspurges") {
            Some(purges) if folder != purges => {
                self.move_message(id, purges)?;
            }
            _ => {
                self.remove_message(id)?;
            }
        }
        Some(())
    }

    /// Moves a message; the current id changes, the immutable id stays. Answers the slot.
    pub(crate) fn move_message(&mut self, id: &str, destination: usize) -> Option<usize> {
        let slot = self.slot(id)?;
        self.serial += 1;
        let new_id = exchange_id("AAMkAG", &[self.key, 0x2D, self.serial]);
        let removal_seq = self.next_seq();
        let seq = self.next_seq();
        let record = self.messages.get_mut(slot)?.as_mut()?;
        let old = Removal {
            folder: record.folder,
            immutable_id: record.immutable_id.clone(),
            id: record.id.clone(),
            seq: removal_seq,
        };
        let old_id = std::mem::replace(&mut record.id, new_id.clone());
        record.folder = destination;
        record.seq = seq;
        self.by_id.remove(&old_id);
        self.by_id.insert(new_id, slot);
        self.removals.push(old);
        Some(slot)
    }
}

impl Tenant {
    /// A live user by object id or UPN (case-insensitive, percent-decoded).
    pub(crate) fn user(&self, id_or_upn: &str) -> Option<&UserRecord> {
        let key = normalise_user_key(id_or_upn);
        self.users
            .iter()
            .find(|u| u.id.eq_ignore_ascii_case(&key) || u.upn.to_lowercase() == key)
    }

    fn user_index(&self, id_or_upn: &str) -> Option<usize> {
        let key = normalise_user_key(id_or_upn);
        self.users
            .iter()
            .position(|u| u.id.eq_ignore_ascii_case(&key) || u.upn.to_lowercase() == key)
    }

    /// A mailbox by user id or UPN, whatever its access policy.
    pub(crate) fn mailbox(&self, id_or_upn: &str) -> Option<&Mailbox> {
        let user = self.user(id_or_upn)?;
        self.mailboxes.get(&user.id)
    }

    /// A mailbox as a Graph mail route reaches it: by user object id, UPN or `MBX:` id (primary
    /// mailbox or online archive).
    pub(crate) fn mailbox_checked(&self, id_or_upn: &str) -> Result<&Mailbox, MailboxAccess> {
        let id_or_upn = match self.mbx_target(id_or_upn) {
            Some(super::archive::MbxTarget::Archive(guid)) => return self.archive_checked(guid),
            Some(super::archive::MbxTarget::Primary(id)) => id,
            None => id_or_upn,
        };
        let user = self.user(id_or_upn).ok_or(MailboxAccess::UnknownUser)?;
        if user.access_denied {
            return Err(MailboxAccess::Denied);
        }
        self.mailboxes.get(&user.id).ok_or(MailboxAccess::NoMailbox)
    }

    /// Mutable form of [`Tenant::mailbox_checked`].
    pub(crate) fn mailbox_access_mut(
        &mut self,
        id_or_upn: &str,
    ) -> Result<&mut Mailbox, MailboxAccess> {
        let id_or_upn = match self.mbx_target(id_or_upn) {
            Some(super::archive::MbxTarget::Archive(guid)) => {
                self.archive_checked(guid)?;
                let guid = guid.to_owned();
                return self
                    .archives
                    .get_mut(&guid)
                    .ok_or(MailboxAccess::UnknownUser);
            }
            Some(super::archive::MbxTarget::Primary(id)) => id.to_owned(),
            None => id_or_upn.to_owned(),
        };
        let index = self
            .user_index(&id_or_upn)
            .ok_or(MailboxAccess::UnknownUser)?;
        let user = &self.users[index];
        if user.access_denied {
            return Err(MailboxAccess::Denied);
        }
        let id = user.id.clone();
        self.mailboxes.get_mut(&id).ok_or(MailboxAccess::NoMailbox)
    }

    /// A mailbox for the control API (access policies do not apply to the administrator).
    pub(crate) fn mailbox_mut_checked(
        &mut self,
        id_or_upn: &str,
    ) -> Result<&mut Mailbox, TenantError> {
        let index = self
            .user_index(id_or_upn)
            .ok_or_else(|| TenantError::UnknownUser(id_or_upn.to_owned()))?;
        let id = self.users[index].id.clone();
        let upn = self.users[index].upn.clone();
        self.mailboxes
            .get_mut(&id)
            .ok_or(TenantError::NoMailbox(upn))
    }

    fn next_directory_seq(&mut self) -> u64 {
        self.directory_seq += 1;
        self.directory_seq
    }

    /// Control API: add a user.
    pub(crate) fn add_user(&mut self, new: NewUser) -> Result<UserInfo, TenantError> {
        let upn = new.upn.trim().to_owned();
        let Some((local, domain)) = upn.split_once('@') else {
            return Err(TenantError::InvalidUser {
                field: "upn",
                reason: format!("'{upn}' is not local@domain"),
            });
        };
        if local.is_empty() || domain.is_empty() || upn.contains(char::is_whitespace) {
            return Err(TenantError::InvalidUser {
                field: "upn",
                reason: format!("'{upn}' is not local@domain"),
            });
        }
        if self.user(&upn).is_some() {
            return Err(TenantError::DuplicateUser(upn));
        }
        self.added_users += 1;
        let id = uuid::Builder::from_random_bytes(
            [
                mix_all(&[self.seed, 0xADD, self.added_users]),
                mix_all(&[self.seed, 0xADE, self.added_users]),
            ]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect::<Vec<u8>>()
            .try_into()
            .unwrap_or([0; 16]),
        )
        .into_uuid()
        .to_string();
        let display_name = if new.display_name.trim().is_empty() {
            local.to_owned()
        } else {
            new.display_name
        };
        let mut proxy_addresses = Vec::new();
        if let Some(mail) = &new.mail {
            proxy_addresses.push(format!("SMTP:{mail}"));
        }
        proxy_addresses.extend(new.aliases.iter().map(|a| format!("smtp:{a}")));
        let seq = self.next_directory_seq();
        let has_mailbox = new.has_mailbox && !new.guest;
        let record = UserRecord {
            id: id.clone(),
            upn: upn.clone(),
            mail: new.mail,
            display_name: display_name.clone(),
            given_name: None,
            surname: None,
            job_title: None,
            office_location: None,
            enabled: new.enabled,
            guest: new.guest,
            has_mailbox,
            access_denied: new.access_denied,
            proxy_addresses,
            purpose: new.purpose,
            seq,
        };
        if has_mailbox {
            let key = mix_all(&[self.seed, 0x3A11, self.added_users, 1 << 40]);
            let mut mailbox = Mailbox::new(&upn, &display_name, key);
            super::generate::standard_folders(&mut mailbox);
            if self.hidden_mail {
                super::generate::recoverable_tree(&mut mailbox);
            }
            self.mailboxes.insert(id, mailbox);
        }
        let info = record.info();
        self.users.push(record);
        Ok(info)
    }

    /// Control API: change a user.
    pub(crate) fn update_user(
        &mut self,
        id_or_upn: &str,
        patch: UserPatch,
    ) -> Result<UserInfo, TenantError> {
        let index = self
            .user_index(id_or_upn)
            .ok_or_else(|| TenantError::UnknownUser(id_or_upn.to_owned()))?;
        if let Some(name) = &patch.display_name
            && name.trim().is_empty()
        {
            return Err(TenantError::InvalidUser {
                field: "display_name",
                reason: "must not be empty".into(),
            });
        }
        if let Some(alias) = &patch.add_alias
            && !alias.contains('@')
        {
            return Err(TenantError::InvalidUser {
                field: "add_alias",
                reason: format!("'{alias}' is not an address"),
            });
        }
        let seq = self.next_directory_seq();
        let user = &mut self.users[index];
        if let Some(name) = patch.display_name {
            user.display_name = name;
        }
        if let Some(enabled) = patch.enabled {
            user.enabled = enabled;
        }
        if let Some(alias) = patch.add_alias {
            let entry = format!("smtp:{alias}");
            if !user
                .proxy_addresses
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&entry))
            {
                user.proxy_addresses.push(entry);
            }
        }
        user.seq = seq;
        Ok(user.info())
    }

    /// Control API: delete a user and its mailbox.
    pub(crate) fn delete_user(&mut self, id_or_upn: &str) -> Result<(), TenantError> {
        let index = self
            .user_index(id_or_upn)
            .ok_or_else(|| TenantError::UnknownUser(id_or_upn.to_owned()))?;
        let seq = self.next_directory_seq();
        let user = self.users.remove(index);
        self.mailboxes.remove(&user.id);
        if let Some(main) = self.archive_of.remove(&user.id)
            && let Some(archive) = self.archives.remove(&main)
        {
            for aux in archive.auxiliary {
                self.archives.remove(&aux);
            }
        }
        self.removed_users.push((user.id, seq));
        Ok(())
    }
}

/// Header-level facts of a message for Graph's JSON (no body rendering).
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) subject: String,
    pub(crate) internet_message_id: String,
    pub(crate) from: Option<(String, String)>,
    pub(crate) to: Vec<(String, String)>,
    pub(crate) cc: Vec<(String, String)>,
    pub(crate) has_attachments: bool,
    /// Unix seconds.
    pub(crate) sent: i64,
    /// Thread key for `conversationId`.
    pub(crate) conversation: u64,
}

impl Mailbox {
    /// The text body of a message (Graph's `body` as text).
    pub(crate) fn body_text(&self, record: &MessageRecord) -> String {
        match &record.body {
            MessageBody::Generated(recipe) => {
                mime::body_text_for(recipe, &self.upn, &self.owner_name)
            }
            MessageBody::Stored { bytes, .. } => {
                let text = String::from_utf8_lossy(bytes);
                let body = text
                    .split_once("\r\n\r\n")
                    .or_else(|| text.split_once("\n\n"))
                    .map_or("", |(_, b)| b);
                body.to_owned()
            }
            MessageBody::Created(created) => created.body.clone(),
        }
    }

    /// Graph's `bodyPreview`: up to 255 characters of the text body, whitespace collapsed.
    pub(crate) fn preview(&self, record: &MessageRecord) -> String {
        match &record.body {
            MessageBody::Generated(recipe) => {
                mime::preview_for(recipe, &self.upn, &self.owner_name)
            }
            MessageBody::Stored { .. } | MessageBody::Created(_) => {
                let text = self.body_text(record);
                text.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .chars()
                    .take(255)
                    .collect()
            }
        }
    }

    /// The summary of one of this mailbox's messages.
    pub(crate) fn summary(&self, record: &MessageRecord) -> Summary {
        match &record.body {
            MessageBody::Generated(recipe) => {
                let plan = mime::plan(recipe, &self.upn, &self.owner_name);
                Summary {
                    subject: plan.subject,
                    internet_message_id: plan.message_id,
                    from: Some(plan.from),
                    to: plan.to,
                    cc: plan.cc,
                    has_attachments: plan.has_attachments,
                    sent: plan.date.timestamp(),
                    conversation: if recipe.group.is_some() {
                        recipe.content_seed
                    } else {
                        mix_all(&[recipe.mailbox_key, u64::from(recipe.thread_start)])
                    },
                }
            }
            MessageBody::Stored { meta, .. } => Summary {
                subject: meta.subject.clone(),
                internet_message_id: meta.internet_message_id.clone(),
                from: meta.from.clone(),
                to: meta.to.clone(),
                cc: Vec::new(),
                has_attachments: false,
                sent: record.received,
                conversation: mix_all(&[self.key, record.received.unsigned_abs()]),
            },
            MessageBody::Created(created) => Summary {
                subject: created.subject.clone(),
                internet_message_id: created.internet_message_id.clone(),
                from: created.from.clone(),
                to: created.to.clone(),
                cc: created.cc.clone(),
                has_attachments: !created.attachments.is_empty(),
                sent: created.sent,
                conversation: mix_all(&[self.key, created.sent.unsigned_abs(), 0xC4]),
            },
        }
    }
}
