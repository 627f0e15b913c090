//! Shared by the restore tests against the in-process emulator: generated mail archived in
//! a temporary directory, the Graph writer for an emulator's tenant, and the check that a
//! target mailbox holds every archived message exactly once with its attachments.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use archive_restore::{RestoreRequest, Selection};
use archive_store::{ArchiveRequest, ArchiveStore, DiskArchiveStore, MessageId, RawMessage};
use chrono::{NaiveDate, TimeZone, Utc};
use m365_auth::{
    AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud, ProviderOptions,
};
use m365_emulator::{Emulator, EmulatorConfig};
use m365_mailbox::{GraphMailboxOptions, GraphMailboxSource};
use serde::{Deserialize, Serialize};

/// The archive owner of every generated message.
pub const USER: &str = "alice";
/// The restore key's extended property, as the emulator lists it.
pub const KEY_PROPERTY: &str =
    "String {6f3b2a1e-5c7d-4e8f-9a0b-1c2d3e4f5a6b} Name ArchiveMessageId";
/// Suffix of a restore key while attachments are still being added.
pub const INCOMPLETE: &str = "#incomplete";
/// The day naming the default target folder.
pub const DAY: &str = "2026-12-01";

/// One generated message: its folder, subject and attachments.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Folder in the archive.
    pub folder: &'static str,
    /// Unique subject.
    pub subject: String,
    /// (file name, bytes).
    pub attachments: Vec<(String, Vec<u8>)>,
}

/// Deterministic, poorly compressible bytes.
pub fn blob(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn b64_lines(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(text.len() + text.len() / 38 + 2);
    for line in text.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

impl Mail {
    /// The message numbered `n` with these attachments.
    pub fn new(n: usize, folder: &'static str, attachments: Vec<(String, Vec<u8>)>) -> Self {
        Self {
            folder,
            subject: format!("restore test message {n}"),
            attachments,
        }
    }

    /// Its MIME.
    pub fn mime(&self, n: usize) -> Vec<u8> {
        let head = format!(
            "From: Adele Vance <adele@contoso.com>\r\nTo: Bob <bob@contoso.com>\r\n\
             Subject: {}\r\nDate: Tue, 1 Jul 2025 10:{:02}:00 +0000\r\n\
             Message-ID: <restore.{n}@contoso.test>\r\nMIME-Version: 1.0\r\n",
            self.subject,
            n % 60
        );
        if self.attachments.is_empty() {
            return format!(
                "{head}Content-Type: text/plain; charset=utf-8\r\n\r\nbody of message {n}\r\n"
            )
            .into_bytes();
        }
        let mut out = format!(
            "{head}Content-Type: multipart/mixed; boundary=\"b{n}\"\r\n\r\n--b{n}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nbody of message {n}\r\n"
        );
        for (name, bytes) in &self.attachments {
            out.push_str(&format!(
                "--b{n}\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
                 Content-Disposition: attachment; filename=\"{name}\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}",
                b64_lines(bytes)
            ));
        }
        out.push_str(&format!("--b{n}--\r\n"));
        out.into_bytes()
    }
}

/// A message as archived.
#[derive(Debug, Clone)]
pub struct Archived {
    /// Its archive id (the restore key).
    pub id: MessageId,
    /// What was generated.
    pub mail: Mail,
    /// Its archived size.
    pub size: u64,
}

/// Generated mail archived in a temporary directory.
pub struct Corpus {
    /// Keeps the directory.
    pub dir: tempfile::TempDir,
    /// The archive's directory.
    pub archive: PathBuf,
    /// The messages, in order.
    pub messages: Vec<Archived>,
}

impl Corpus {
    /// Archives `mails` for [`USER`] (the store is closed again when this returns).
    pub fn archive(mails: Vec<Mail>) -> Corpus {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        let store = DiskArchiveStore::open(&archive, Default::default()).unwrap();
        let mut messages = Vec::with_capacity(mails.len());
        for (n, mail) in mails.into_iter().enumerate() {
            let mime = mail.mime(n);
            let request = ArchiveRequest {
                user: USER.into(),
                folder: mail.folder.into(),
                source: None,
                received: Utc.timestamp_opt(1_751_000_000 + n as i64 * 60, 0).single(),
            };
            let outcome = store.archive(&request, RawMessage::Bytes(&mime)).unwrap();
            messages.push(Archived {
                id: outcome.id,
                mail,
                size: mime.len() as u64,
            });
        }
        Corpus {
            dir,
            archive,
            messages,
        }
    }

    /// The archive, opened.
    pub fn store(&self) -> Arc<DiskArchiveStore> {
        Arc::new(DiskArchiveStore::open(&self.archive, Default::default()).unwrap())
    }

    /// Archived bytes of all messages.
    pub fn bytes(&self) -> u64 {
        self.messages.iter().map(|m| m.size).sum()
    }
}

/// The whole archive of [`USER`] into `mailbox`, under `Restored/<DAY>`.
pub fn request(mailbox: &str) -> RestoreRequest {
    RestoreRequest {
        user: USER.into(),
        selection: Selection::Folder(String::new()),
        to_mailbox: mailbox.into(),
        to_folder: None,
        exact_mime: false,
        date: NaiveDate::parse_from_str(DAY, "%Y-%m-%d").unwrap(),
    }
}

/// An emulator with two empty mailboxes and no special users.
pub async fn emulator(time_scale: f64) -> Emulator {
    Emulator::start(EmulatorConfig {
        users: 2,
        messages_per_user: 0,
        seed: 15,
        time_scale,
        special_users: false,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap()
}

/// The regular mailboxes of the emulator.
pub fn targets(emu: &Emulator) -> Vec<String> {
    emu.users()
        .into_iter()
        .filter(|u| u.enabled && !u.guest && u.has_mailbox && !u.access_denied)
        .map(|u| u.upn)
        .collect()
}

/// The first regular mailbox of the emulator: the restore target.
pub fn target(emu: &Emulator) -> String {
    targets(emu).remove(0)
}

/// What a process needs to reach an emulator's tenant (a child process gets it as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    /// Login listener.
    pub login: String,
    /// Graph listener.
    pub graph: String,
    /// Tenant id.
    pub tenant: String,
    /// The app's client id.
    pub client_id: String,
    /// Its secret.
    pub secret: String,
}

impl Tenant {
    /// The emulator's tenant.
    pub fn of(emu: &Emulator) -> Tenant {
        Tenant {
            login: emu.login_url().to_string(),
            graph: emu.graph_url().to_string(),
            tenant: emu.tenant_id(),
            client_id: emu.client_id(),
            secret: emu.client_secret(),
        }
    }

    /// The Graph reader and writer for it, talking to `graph` (the Graph listener or a
    /// proxy in front of it); tokens are asked for the Graph listener's resource.
    pub fn graph(&self, graph: &str, options: GraphMailboxOptions) -> GraphMailboxSource {
        let cloud = Cloud::custom(&self.login, &self.graph).unwrap();
        let registration = AppRegistration::new(
            &self.tenant,
            &self.client_id,
            ClientCredential::secret(self.secret.clone()),
            cloud,
        )
        .unwrap();
        let tokens = Arc::new(
            ClientCredentialsProvider::new(registration, ProviderOptions::default()).unwrap(),
        );
        GraphMailboxSource::new(tokens, url::Url::parse(graph).unwrap(), options).unwrap()
    }
}

/// Options with short backoffs, so fault retries stay quick.
pub fn options() -> GraphMailboxOptions {
    let mut options = GraphMailboxOptions::default();
    options.retry.base_delay = std::time::Duration::from_millis(20);
    options.retry.max_delay = std::time::Duration::from_millis(500);
    options
}

/// The restore keys of the messages in `mailbox`: key → message ids carrying it (items
/// without a key under "").
pub fn keys_in(emu: &Emulator, mailbox: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in emu.message_ids(mailbox) {
        let Some(state) = emu.message_state(mailbox, &id) else {
            continue;
        };
        let key = state
            .extended_properties
            .get(KEY_PROPERTY)
            .cloned()
            .unwrap_or_default();
        out.entry(key).or_default().push(id);
    }
    out
}

/// Message ids of the items in `mailbox` still marked incomplete.
pub fn incomplete_in(emu: &Emulator, mailbox: &str) -> Vec<String> {
    keys_in(emu, mailbox)
        .into_iter()
        .filter(|(key, _)| key.ends_with(INCOMPLETE))
        .flat_map(|(_, ids)| ids)
        .collect()
}

/// Asserts that `mailbox` holds every message of `corpus` exactly once and nothing else:
/// one complete item per restore key, none marked incomplete, none a draft, each in its
/// original folder below `Restored/<DAY>` with the original attachment names and bytes.
pub fn assert_exactly_once(emu: &Emulator, mailbox: &str, corpus: &Corpus) {
    let keys = keys_in(emu, mailbox);
    let strays: Vec<(&String, &Vec<String>)> = keys
        .iter()
        .filter(|(key, _)| !corpus.messages.iter().any(|m| &m.id.0 == *key))
        .collect();
    assert!(
        strays.is_empty(),
        "items with no or a foreign key: {strays:?}"
    );
    let mut folders: BTreeMap<&str, String> = BTreeMap::new();
    for message in &corpus.messages {
        let Some(ids) = keys.get(&message.id.0) else {
            panic!("{} ({}) not restored", message.id, message.mail.subject);
        };
        assert_eq!(ids.len(), 1, "{} restored {} times", message.id, ids.len());
        let state = emu.message_state(mailbox, &ids[0]).unwrap();
        assert!(!state.is_draft, "{} is a draft", message.id);
        let folder = folders.entry(message.mail.folder).or_insert_with(|| {
            let mut path = vec!["Restored", DAY];
            path.extend(message.mail.folder.split('/'));
            emu.folder_id_by_path(mailbox, &path)
                .unwrap_or_else(|| panic!("{path:?} not created"))
        });
        assert_eq!(&state.folder_id, folder, "{} in another folder", message.id);
        let mut got: Vec<(&str, &[u8])> = state
            .attachments
            .iter()
            .map(|a| (a.name.as_str(), &a.bytes[..]))
            .collect();
        got.sort();
        let mut want: Vec<(&str, &[u8])> = message
            .mail
            .attachments
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        want.sort();
        assert!(
            got == want,
            "{}: attachments differ: got {:?}, want {:?}",
            message.id,
            got.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>(),
            want.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>()
        );
    }
}
