//! Shared helpers of the integration tests: an emulator, a real token provider for it,
//! a Graph source, and a full enumeration of a mailbox.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use m365_auth::{
    AppRegistration, ClientCredential, ClientCredentialsProvider, Cloud, ProviderOptions,
};
use m365_emulator::{Emulator, EmulatorConfig};
use m365_mailbox::{
    DeltaCursor, DeltaEvent, Folder, GraphMailboxOptions, GraphMailboxSource, MailboxSource,
    MessageSummary, MimeContent,
};

/// A started emulator.
pub async fn emulator(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.expect("emulator starts")
}

/// The client-credentials provider of the emulator's app (secret).
pub fn provider(emu: &Emulator) -> Arc<ClientCredentialsProvider> {
    let cloud = Cloud::custom(emu.login_url().as_str(), emu.graph_url().as_str()).unwrap();
    let registration = AppRegistration::new(
        &emu.tenant_id(),
        &emu.client_id(),
        ClientCredential::secret(emu.client_secret()),
        cloud,
    )
    .unwrap();
    let options = ProviderOptions {
        extra_ca_pem: emu.ca_pem(),
        ..ProviderOptions::default()
    };
    Arc::new(ClientCredentialsProvider::new(registration, options).unwrap())
}

/// Options suited to tests: short backoffs so fault-heavy runs stay quick.
pub fn test_options(emu: &Emulator) -> GraphMailboxOptions {
    let mut options = GraphMailboxOptions {
        extra_ca_pem: emu.ca_pem(),
        page_size: 25,
        ..GraphMailboxOptions::default()
    };
    options.retry.base_delay = std::time::Duration::from_millis(20);
    options.retry.max_delay = std::time::Duration::from_millis(500);
    options.retry.max_attempts = 12;
    options
}

/// A Graph source for the emulator.
pub fn source_with(
    emu: &Emulator,
    tokens: Arc<ClientCredentialsProvider>,
    options: GraphMailboxOptions,
) -> GraphMailboxSource {
    GraphMailboxSource::new(tokens, emu.graph_url(), options).unwrap()
}

/// A Graph source for the emulator with [`test_options`].
pub fn source(emu: &Emulator) -> GraphMailboxSource {
    source_with(emu, provider(emu), test_options(emu))
}

/// UPN of the first regular user.
pub fn first_user(emu: &Emulator) -> String {
    regular_users(emu).remove(0)
}

/// UPNs of regular users (enabled members with a mailbox the app may read).
pub fn regular_users(emu: &Emulator) -> Vec<String> {
    emu.users()
        .into_iter()
        .filter(|u| u.enabled && !u.guest && u.has_mailbox && !u.access_denied)
        .map(|u| u.upn)
        .collect()
}

/// One delta round of a folder: events before `Done`, and the new cursor.
pub async fn round(
    source: &dyn MailboxSource,
    mailbox: &str,
    folder: &str,
    cursor: Option<DeltaCursor>,
) -> (Vec<DeltaEvent>, DeltaCursor) {
    let mut events = Vec::new();
    let mut stream = source.changes(mailbox, folder, cursor);
    while let Some(event) = stream.next().await {
        match event.unwrap_or_else(|e| panic!("delta of {folder} failed: {e}")) {
            DeltaEvent::Done(cursor) => {
                assert!(stream.next().await.is_none(), "events after Done");
                return (events, cursor);
            }
            other => events.push(other),
        }
    }
    panic!("delta stream of {folder} ended without Done");
}

/// Every message of the mailbox (all folders but search folders): id → summary, plus the
/// folders and each folder's cursor.
pub async fn enumerate(
    source: &dyn MailboxSource,
    mailbox: &str,
) -> (
    HashMap<String, MessageSummary>,
    Vec<Folder>,
    HashMap<String, DeltaCursor>,
) {
    let folders = source.folders(mailbox).await.unwrap();
    let mut messages = HashMap::new();
    let mut cursors = HashMap::new();
    for folder in folders.iter().filter(|f| !f.search_folder) {
        let (events, cursor) = round(source, mailbox, &folder.id, None).await;
        for event in events {
            match event {
                DeltaEvent::Upsert(summary) => {
                    messages.insert(summary.id.clone(), summary);
                }
                other => panic!("unexpected event in a first round: {other:?}"),
            }
        }
        cursors.insert(folder.id.clone(), cursor);
    }
    (messages, folders, cursors)
}

/// The bytes of a fetched message.
pub fn bytes_of(content: &MimeContent) -> Vec<u8> {
    match content {
        MimeContent::Memory(b) => b.to_vec(),
        MimeContent::Spooled(path) => std::fs::read(path).unwrap(),
    }
}

/// A small RFC 822 message.
pub fn mime(subject: &str) -> Vec<u8> {
    format!(
        "From: Test <test@example.com>\r\nTo: someone@contoso.onmicrosoft.com\r\n\
         Subject: {subject}\r\nMessage-ID: <{subject}@example.com>\r\n\
         Date: Mon, 04 Mar 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nBody of {subject}.\r\n"
    )
    .into_bytes()
}

/// The emulator's counters of one mailbox (case-insensitive UPN).
pub async fn mailbox_stats(emu: &Emulator, upn: &str) -> m365_emulator::MailboxStats {
    emu.stats()
        .await
        .per_mailbox
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(upn))
        .map(|(_, v)| v)
        .unwrap_or_default()
}
