//! The Graph writer ([`MailboxWriter`] on [`m365_mailbox::GraphMailboxSource`]) against the
//! in-process emulator over real HTTP: folder paths and the refusals a caller must be able
//! to act on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use m365_emulator::EmulatorConfig;
use m365_mailbox::{
    BodyKind, MailboxError, MailboxSource, MailboxWriter, NewAttachment, NewMessage, RestoreKey,
    WriteLimits,
};

fn config(users: usize, messages: usize, seed: u64) -> EmulatorConfig {
    EmulatorConfig {
        users,
        messages_per_user: messages,
        seed,
        ..EmulatorConfig::default()
    }
}

fn path(segments: &[&str]) -> Vec<String> {
    segments.iter().map(|s| s.to_string()).collect()
}

fn message(key: &str) -> NewMessage {
    NewMessage {
        key: RestoreKey(key.into()),
        subject: format!("restored {key}"),
        body_kind: BodyKind::Text,
        body: "text".into(),
        from: None,
        sender: None,
        to: vec![],
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        internet_message_id: None,
        headers: vec![],
        importance: None,
        categories: vec![],
        is_read: true,
        received: None,
        sent: None,
        attachments: vec![],
    }
}

#[tokio::test]
async fn existing_folder_paths_resolve_and_are_cached() {
    let emu = emulator(config(1, 5, 31)).await;
    let source = source(&emu);
    let upn = first_user(&emu);
    let folders = source.folders(&upn).await.unwrap();
    let inbox = folders
        .iter()
        .find(|f| f.well_known_name.as_deref() == Some("inbox"))
        .unwrap();
    let id = source
        .ensure_folder(&upn, &path(&[&inbox.display_name]))
        .await
        .unwrap();
    assert_eq!(id, inbox.id);
    let asked = source.write_metrics(&upn).requests;
    assert!(asked >= 1);
    // A name differing in case only is the same folder to Exchange.
    let upper = inbox.display_name.to_uppercase();
    assert_eq!(
        source.ensure_folder(&upn, &path(&[&upper])).await.unwrap(),
        inbox.id
    );
    // A resolved path is not asked for again.
    let asked = source.write_metrics(&upn).requests;
    source
        .ensure_folder(&upn, &path(&[&inbox.display_name]))
        .await
        .unwrap();
    assert_eq!(source.write_metrics(&upn).requests, asked);
    // Reads and writes are counted apart.
    assert!(source.metrics(&upn).requests > 0);
}

#[tokio::test]
async fn unknown_and_forbidden_mailboxes_are_clear_errors() {
    let emu = emulator(EmulatorConfig {
        special_users: true,
        ..config(1, 2, 33)
    })
    .await;
    let source = source(&emu);
    let denied = emu.users().into_iter().find(|u| u.access_denied).unwrap();
    let inbox = path(&["Inbox"]);
    let result = source.ensure_folder(&denied.upn, &inbox).await;
    let Err(error @ MailboxError::AccessDenied { .. }) = &result else {
        panic!("{result:?}");
    };
    assert!(error.is_mailbox_wide() && error.is_permanent());
    let result = source
        .ensure_folder("nobody.here@contoso.onmicrosoft.com", &inbox)
        .await;
    assert!(
        matches!(result, Err(MailboxError::UnknownUser { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn what_cannot_fit_is_refused_before_any_request() {
    let emu = emulator(config(1, 1, 34)).await;
    let mut options = test_options(&emu);
    options.write_limits = WriteLimits {
        max_attachment_bytes: 1024,
        ..WriteLimits::GRAPH
    };
    let source = source_with(&emu, provider(&emu), options);
    let upn = first_user(&emu);
    let limits = source.write_limits();

    let big = vec![b'a'; limits.max_mime_bytes as usize + 1];
    let result = source
        .create_from_mime(&upn, "inbox", &RestoreKey("K1".into()), &big)
        .await;
    let Err(MailboxError::RequestTooLarge {
        size,
        limit,
        limit_name,
        ..
    }) = &result
    else {
        panic!("{result:?}");
    };
    assert_eq!(
        (*size, *limit, limit_name.as_str()),
        (
            big.len() as u64,
            limits.max_mime_bytes,
            "an exact-MIME create"
        )
    );

    let mut m = message("K2");
    m.attachments.push(NewAttachment {
        name: "big.bin".into(),
        content_type: "application/octet-stream".into(),
        content_id: None,
        inline: false,
        bytes: Bytes::from(vec![0u8; 1025]),
    });
    let result = source.create_message(&upn, "inbox", &m).await;
    let Err(MailboxError::RequestTooLarge { what, limit, .. }) = &result else {
        panic!("{result:?}");
    };
    assert!(what.contains("big.bin"), "{what}");
    assert_eq!(*limit, 1024);
    assert_eq!(source.write_metrics(&upn).requests, 0);
    assert_eq!(source.upload_budget(&upn).total(), 0);
}
