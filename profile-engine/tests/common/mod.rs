//! Small fakes of the user store, directory and archive seams for the engine's
//! tests, plus helpers to build engines and messages.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use archive_store::{
    ArchiveError, ArchiveOutcome, ArchiveRequest, ArchiveStats, ArchiveStore, MessageId,
    RawMessage, Scope, SearchHit, SearchQuery, SourceRef,
};
use directory_sync::{DirectoryError, DirectoryToken, LocalUser, Role, UserOrigin, UserStore};

/// Local users in memory.
#[derive(Default)]
pub struct FakeUsers {
    users: Mutex<BTreeMap<String, LocalUser>>,
    token: Mutex<Option<DirectoryToken>>,
}

impl FakeUsers {
    pub fn add(&self, name: &str, email: Option<&str>, enabled: bool) {
        self.put(&LocalUser {
            name: name.to_owned(),
            display_name: None,
            email: email.map(str::to_ascii_lowercase),
            aliases: Vec::new(),
            origin: UserOrigin::Manual,
            enabled,
            role: Role::User,
            has_archive: false,
        })
        .unwrap();
    }
}

impl UserStore for FakeUsers {
    fn get(&self, name: &str) -> Result<Option<LocalUser>, DirectoryError> {
        Ok(self.users.lock().unwrap().get(name).cloned())
    }
    fn list(&self) -> Result<Vec<LocalUser>, DirectoryError> {
        Ok(self.users.lock().unwrap().values().cloned().collect())
    }
    fn find_by_address(&self, address: &str) -> Result<Option<LocalUser>, DirectoryError> {
        Ok(self
            .users
            .lock()
            .unwrap()
            .values()
            .find(|u| {
                u.email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(address))
                    || u.aliases.iter().any(|a| a.eq_ignore_ascii_case(address))
            })
            .cloned())
    }
    fn put(&self, user: &LocalUser) -> Result<(), DirectoryError> {
        self.users
            .lock()
            .unwrap()
            .insert(user.name.clone(), user.clone());
        Ok(())
    }
    fn remove(&self, name: &str) -> Result<(), DirectoryError> {
        let mut users = self.users.lock().unwrap();
        if users.get(name).is_some_and(|u| u.has_archive) {
            return Err(DirectoryError::HasArchive {
                name: name.to_owned(),
            });
        }
        users.remove(name);
        Ok(())
    }
    fn mark_has_archive(&self, name: &str) -> Result<(), DirectoryError> {
        if let Some(u) = self.users.lock().unwrap().get_mut(name) {
            u.has_archive = true;
        }
        Ok(())
    }
    fn directory_token(&self) -> Result<Option<DirectoryToken>, DirectoryError> {
        Ok(self.token.lock().unwrap().clone())
    }
    fn set_directory_token(&self, token: Option<&DirectoryToken>) -> Result<(), DirectoryError> {
        *self.token.lock().unwrap() = token.cloned();
        Ok(())
    }
}

/// One archive entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub user: String,
    pub folder: String,
    pub source: Option<SourceRef>,
    pub id: MessageId,
}

/// An archive in memory, addressed by BLAKE3, with switchable write failures.
#[derive(Default)]
pub struct FakeArchive {
    pub entries: Mutex<Vec<Entry>>,
    pub contents: Mutex<HashMap<MessageId, Vec<u8>>>,
    pub fail_writes: AtomicBool,
    /// Fail every write whose message bytes contain this marker.
    pub fail_marker: Mutex<Option<Vec<u8>>>,
    pub writes: AtomicUsize,
    /// `verify_message` reports every stored message as damaged.
    pub damaged: AtomicBool,
}

impl FakeArchive {
    pub fn entries_for(&self, user: &str) -> Vec<Entry> {
        self.entries
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.user == user)
            .cloned()
            .collect()
    }
    pub fn sources(&self, user: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .entries_for(user)
            .into_iter()
            .filter_map(|e| e.source.map(|s| s.message_id))
            .collect();
        ids.sort();
        ids
    }
}

impl ArchiveStore for FakeArchive {
    fn archive(
        &self,
        request: &ArchiveRequest,
        raw: RawMessage<'_>,
    ) -> Result<ArchiveOutcome, ArchiveError> {
        let bytes = match raw {
            RawMessage::Bytes(b) => b.to_vec(),
            RawMessage::File(p) => std::fs::read(p).unwrap(),
        };
        let marker = self.fail_marker.lock().unwrap().clone();
        let marked = marker.is_some_and(|m| bytes.windows(m.len()).any(|w| w == &m[..]));
        if self.fail_writes.load(Ordering::SeqCst) || marked {
            return Err(ArchiveError::Corrupt {
                object: "pack".into(),
                detail: "disk full (test)".into(),
            });
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        let id = MessageId(blake3::hash(&bytes).to_hex().to_string());
        let mut contents = self.contents.lock().unwrap();
        let new_content = !contents.contains_key(&id);
        contents.insert(id.clone(), bytes);
        let mut entries = self.entries.lock().unwrap();
        let exists = entries.iter().any(|e| {
            e.user == request.user
                && ((request.source.is_some() && e.source == request.source)
                    || (e.id == id && e.folder == request.folder))
        });
        if !exists {
            entries.push(Entry {
                user: request.user.clone(),
                folder: request.folder.clone(),
                source: request.source.clone(),
                id: id.clone(),
            });
        }
        Ok(ArchiveOutcome {
            id,
            new_content,
            new_entry: !exists,
        })
    }
    fn find_source(
        &self,
        user: &str,
        source: &SourceRef,
    ) -> Result<Option<MessageId>, ArchiveError> {
        Ok(self
            .entries
            .lock()
            .unwrap()
            .iter()
            .find(|e| e.user == user && e.source.as_ref() == Some(source))
            .map(|e| e.id.clone()))
    }
    fn verify_message(&self, id: &MessageId) -> Result<bool, ArchiveError> {
        if self.damaged.load(Ordering::SeqCst) {
            return Ok(false);
        }
        Ok(self
            .contents
            .lock()
            .unwrap()
            .get(id)
            .is_some_and(|b| blake3::hash(b).to_hex().as_str() == id.0))
    }
    fn read_message(&self, id: &MessageId) -> Result<Vec<u8>, ArchiveError> {
        self.contents
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or(ArchiveError::Corrupt {
                object: id.0.clone(),
                detail: "missing".into(),
            })
    }
    fn holds_exactly(
        &self,
        id: &MessageId,
        offered: &mut dyn std::io::Read,
    ) -> Result<bool, ArchiveError> {
        let mut bytes = Vec::new();
        offered.read_to_end(&mut bytes).unwrap();
        Ok(self.verify_message(id)? && blake3::hash(&bytes).to_hex().as_str() == id.0)
    }
    fn search(&self, _query: &SearchQuery, _scope: &Scope) -> Result<Vec<SearchHit>, ArchiveError> {
        Ok(Vec::new())
    }
    fn stats(&self) -> Result<ArchiveStats, ArchiveError> {
        Ok(ArchiveStats {
            messages: self.entries.lock().unwrap().len() as u64,
            ..Default::default()
        })
    }
}

/// A small unique RFC 822 message.
pub fn mime(tag: &str) -> Vec<u8> {
    format!(
        "From: sender@example.com\r\nTo: someone@contoso.com\r\nSubject: {tag}\r\nMessage-ID: <{tag}@example.com>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nBody of {tag}\r\n"
    )
    .into_bytes()
}
