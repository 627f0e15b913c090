//! Messages created through Graph (the restore side): what a JSON or MIME create set, the
//! extended properties stored on them, their attachments, and their MIME, rendered from all of
//! that (never a copy of bytes a client sent).
//!
//! Exchange honours the MAPI flags (`Integer 0x0E07`), the delivery time (`SystemTime 0x0E06`)
//! and the submit time (`SystemTime 0x0039`) only when an item is created; custom named
//! properties can be set and changed at any time.

use bytes::Bytes;

use super::mime::render;
use super::model::{Mailbox, MessageBody, MessageRecord, exchange_id};

/// A display name and an address.
pub(crate) type Person = (String, String);

/// `PR_MESSAGE_FLAGS` bit: read.
pub(crate) const MSGFLAG_READ: u32 = 0x1;
/// `PR_MESSAGE_FLAGS` bit: not yet sent (a draft).
pub(crate) const MSGFLAG_UNSENT: u32 = 0x8;
/// `PR_MESSAGE_FLAGS` bit: has attachments.
pub(crate) const MSGFLAG_HASATTACH: u32 = 0x10;

/// Body kind (`body.contentType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// `text`.
    Text,
    /// `html`.
    Html,
}

/// `importance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Importance {
    /// `low`.
    Low,
    /// `normal`.
    Normal,
    /// `high`.
    High,
}

impl Importance {
    /// Reads `low`, `normal` or `high` (any case).
    pub(crate) fn parse(text: &str) -> Option<Importance> {
        match text.trim().to_ascii_lowercase().as_str() {
            "low" => Some(Importance::Low),
            "normal" => Some(Importance::Normal),
            "high" => Some(Importance::High),
            _ => None,
        }
    }

    /// Graph's spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Importance::Low => "low",
            Importance::Normal => "normal",
            Importance::High => "high",
        }
    }
}

/// A file attachment of a created message.
#[derive(Clone)]
pub(crate) struct CreatedAttachment {
    /// Attachment id.
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) content_type: String,
    /// Without angle brackets.
    pub(crate) content_id: Option<String>,
    pub(crate) inline: bool,
    pub(crate) bytes: Bytes,
}

impl std::fmt::Debug for CreatedAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedAttachment")
            .field("name", &self.name)
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// What a create gave a message (and what later requests changed).
#[derive(Debug, Clone)]
pub(crate) struct CreatedMessage {
    pub(crate) subject: String,
    pub(crate) body_kind: BodyKind,
    pub(crate) body: String,
    pub(crate) from: Option<Person>,
    /// Only when it was given apart from `from`.
    pub(crate) sender: Option<Person>,
    pub(crate) to: Vec<Person>,
    pub(crate) cc: Vec<Person>,
    pub(crate) bcc: Vec<Person>,
    pub(crate) reply_to: Vec<Person>,
    /// With angle brackets.
    pub(crate) internet_message_id: String,
    /// `internetMessageHeaders` (names start with `x-`).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) importance: Importance,
    pub(crate) categories: Vec<String>,
    pub(crate) is_draft: bool,
    /// `sentDateTime`, Unix seconds.
    pub(crate) sent: i64,
    /// `createdDateTime`, Unix seconds.
    pub(crate) created: i64,
    /// Custom extended properties by canonical id (see [`PropertyId`]), in the order set.
    pub(crate) extended: Vec<(String, String)>,
    pub(crate) attachments: Vec<CreatedAttachment>,
    /// The MIME rendered from all of the above (kept up to date by [`CreatedMessage::refresh`]).
    pub(crate) mime: Bytes,
}

impl CreatedMessage {
    /// Renders the MIME again after a change.
    pub(crate) fn refresh(&mut self) {
        self.mime = Bytes::from(render::render(self));
    }

    /// The value of a stored extended property (canonical id).
    pub(crate) fn property(&self, canonical: &str) -> Option<&str> {
        self.extended
            .iter()
            .find(|(id, _)| id == canonical)
            .map(|(_, v)| v.as_str())
    }

    /// Sets (or replaces) a custom extended property.
    pub(crate) fn set_property(&mut self, canonical: String, value: String) {
        match self.extended.iter_mut().find(|(id, _)| *id == canonical) {
            Some(entry) => entry.1 = value,
            None => self.extended.push((canonical, value)),
        }
    }

    /// `PR_MESSAGE_FLAGS` as Exchange would compute them for this item.
    pub(crate) fn flags(&self, is_read: bool) -> u32 {
        let mut flags = 0;
        if is_read {
            flags |= MSGFLAG_READ;
        }
        if self.is_draft {
            flags |= MSGFLAG_UNSENT;
        }
        if !self.attachments.is_empty() {
            flags |= MSGFLAG_HASATTACH;
        }
        flags
    }
}

/// The MAPI property types an extended property id may name.
const PROPERTY_TYPES: &[&str] = &[
    "Binary",
    "Boolean",
    "CLSID",
    "Currency",
    "Double",
    "Float",
    "Integer",
    "Long",
    "Object",
    "Short",
    "String",
    "SystemTime",
];

/// An extended property id as Graph writes it: `{type} {proptag}` or
/// `{type} {guid} Name {name}` or `{type} {guid} Id {id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PropertyId {
    /// A tagged property (`Integer 0x0E07`).
    Tagged {
        /// Canonical type name.
        kind: &'static str,
        /// The property tag's id part.
        tag: u32,
    },
    /// A named property.
    Named {
        /// Canonical type name.
        kind: &'static str,
        /// The property set GUID, lower case.
        guid: String,
        /// `Name {name}` or `Id 0x…`, as given.
        name: String,
    },
}

impl PropertyId {
    /// Reads an id leniently (any case for the type and the GUID, any spacing); `None` when it
    /// is not one of the three forms.
    pub(crate) fn parse(text: &str) -> Option<PropertyId> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let first = words.first()?;
        let kind: &'static str = PROPERTY_TYPES
            .iter()
            .copied()
            .find(|k| k.eq_ignore_ascii_case(first))?;
        match words.as_slice() {
            [_, tag] => {
                let hex = tag.strip_prefix("0x").or_else(|| tag.strip_prefix("0X"))?;
                let tag = u32::from_str_radix(hex, 16).ok()?;
                Some(PropertyId::Tagged { kind, tag })
            }
            [_, guid, keyword, rest @ ..] if !rest.is_empty() => {
                let inner = guid.strip_prefix('{')?.strip_suffix('}')?;
                let guid = uuid::Uuid::parse_str(inner).ok()?;
                let keyword = if keyword.eq_ignore_ascii_case("name") {
                    "Name"
                } else if keyword.eq_ignore_ascii_case("id") {
                    "Id"
                } else {
                    return None;
                };
                Some(PropertyId::Named {
                    kind,
                    guid: guid.hyphenated().to_string(),
                    name: format!("{keyword} {}", rest.join(" ")),
                })
            }
            _ => None,
        }
    }

    /// The canonical spelling, as Graph answers it (`Integer 0xe07`,
    /// `String {6f3b…} Name ArchiveMessageId`).
    pub(crate) fn canonical(&self) -> String {
        match self {
            PropertyId::Tagged { kind, tag } => format!("{kind} 0x{tag:x}"),
            PropertyId::Named { kind, guid, name } => format!("{kind} {{{guid}}} {name}"),
        }
    }
}

impl Mailbox {
    /// Stores a created message (rendering its MIME); answers the immutable id.
    pub(crate) fn create_message(
        &mut self,
        folder: usize,
        received: i64,
        is_read: bool,
        mut message: CreatedMessage,
    ) -> String {
        message.refresh();
        self.insert(
            folder,
            received,
            is_read,
            false,
            MessageBody::Created(Box::new(message)),
        )
    }

    /// A fresh attachment id for a message of this mailbox.
    pub(crate) fn attachment_id(&mut self) -> String {
        self.serial += 1;
        exchange_id("AAMkAGAt", &[self.key, 0xA7, self.serial])
    }

    /// A created message for changing, by either id (its change sequence moves on, so delta
    /// reports it again).
    pub(crate) fn created_mut(&mut self, id: &str) -> Result<&mut MessageRecord, Lookup> {
        let slot = self.slot(id).ok_or(Lookup::Missing)?;
        if self.messages[slot]
            .as_ref()
            .and_then(MessageRecord::created)
            .is_none()
        {
            return Err(Lookup::NotCreated);
        }
        let seq = self.next_seq();
        let record = self.messages[slot].as_mut().ok_or(Lookup::Missing)?;
        record.seq = seq;
        Ok(record)
    }
}

/// Why [`Mailbox::created_mut`] found nothing to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// No message with this id.
    Missing,
    /// The message was delivered or generated, not created through Graph.
    NotCreated,
}

impl MessageRecord {
    /// The created message behind this record, if it was created through Graph.
    pub(crate) fn created(&self) -> Option<&CreatedMessage> {
        match &self.body {
            MessageBody::Created(created) => Some(created.as_ref()),
            _ => None,
        }
    }

    /// Mutable form of [`MessageRecord::created`].
    pub(crate) fn created_body_mut(&mut self) -> Option<&mut CreatedMessage> {
        match &mut self.body {
            MessageBody::Created(created) => Some(created.as_mut()),
            _ => None,
        }
    }

    /// `PR_MESSAGE_FLAGS` of any message (delivered mail: read bit only, attachments aside).
    pub(crate) fn flags(&self) -> u32 {
        match self.created() {
            Some(created) => created.flags(self.is_read),
            None => u32::from(self.is_read),
        }
    }
}

/// What Graph holds on a message beside its MIME, for tests ([`crate::Emulator::message_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageState {
    /// Id of the folder holding it.
    pub folder_id: String,
    /// `isRead`.
    pub is_read: bool,
    /// `isDraft`.
    pub is_draft: bool,
    /// `PR_MESSAGE_FLAGS` (`Integer 0x0E07`) as Exchange computes them.
    pub flags: u32,
    /// `receivedDateTime` (`SystemTime 0x0E06`).
    pub received: chrono::DateTime<chrono::Utc>,
    /// `sentDateTime` (`SystemTime 0x0039`).
    pub sent: chrono::DateTime<chrono::Utc>,
    /// `categories`.
    pub categories: Vec<String>,
    /// Custom extended properties by canonical id (`String {guid} Name X`).
    pub extended_properties: std::collections::BTreeMap<String, String>,
    /// The attachments, in order.
    pub attachments: Vec<AttachmentInfo>,
    /// Created through Graph (a JSON or MIME create), not delivered or generated.
    pub created: bool,
}

/// One attachment of a created message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// File name.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Content id without angle brackets.
    pub content_id: Option<String>,
    /// Shown inline.
    pub inline: bool,
    /// The bytes.
    pub bytes: Bytes,
}

impl Mailbox {
    /// The state of one message (by either id).
    pub(crate) fn message_state(&self, id: &str) -> Option<MessageState> {
        let record = self.message(id)?;
        let created = record.created();
        let time = |unix: i64| chrono::DateTime::from_timestamp(unix, 0).unwrap_or_default();
        Some(MessageState {
            folder_id: self.folders.get(record.folder)?.id.clone(),
            is_read: record.is_read,
            is_draft: created.is_some_and(|c| c.is_draft),
            flags: record.flags(),
            received: time(record.received),
            sent: time(self.summary(record).sent),
            categories: created.map(|c| c.categories.clone()).unwrap_or_default(),
            extended_properties: created
                .map(|c| c.extended.iter().cloned().collect())
                .unwrap_or_default(),
            attachments: created
                .map(|c| {
                    c.attachments
                        .iter()
                        .map(|a| AttachmentInfo {
                            name: a.name.clone(),
                            content_type: a.content_type.clone(),
                            content_id: a.content_id.clone(),
                            inline: a.inline,
                            bytes: a.bytes.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            created: created.is_some(),
        })
    }

    /// The id of the folder at a path of display names below msgfolderroot (case-insensitive).
    pub(crate) fn folder_by_path(&self, path: &[&str]) -> Option<String> {
        let mut current = self.root();
        for name in path {
            current = self
                .children(current)
                .find(|&c| self.folders[c].display_name.eq_ignore_ascii_case(name))?;
        }
        Some(self.folders[current].id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn property_ids_are_read_leniently_and_written_canonically() {
        for (input, canonical) in [
            ("Integer 0x0E07", "Integer 0xe07"),
            ("integer   0x0e07", "Integer 0xe07"),
            ("SystemTime 0x0039", "SystemTime 0x39"),
            (
                "String {6F3B2A1E-5C7D-4E8F-9A0B-1C2D3E4F5A6B} Name ArchiveMessageId",
                "String {6f3b2a1e-5c7d-4e8f-9a0b-1c2d3e4f5a6b} Name ArchiveMessageId",
            ),
            (
                "string {6f3b2a1e-5c7d-4e8f-9a0b-1c2d3e4f5a6b} name ArchiveMessageId",
                "String {6f3b2a1e-5c7d-4e8f-9a0b-1c2d3e4f5a6b} Name ArchiveMessageId",
            ),
        ] {
            assert_eq!(
                PropertyId::parse(input).map(|p| p.canonical()).as_deref(),
                Some(canonical),
                "{input}"
            );
        }
        for bad in [
            "",
            "Integer",
            "Fancy 0x1",
            "Integer 0xZZ",
            "String {not-a-guid} Name X",
            "String {6f3b2a1e-5c7d-4e8f-9a0b-1c2d3e4f5a6b} Label X",
            "String {6f3b2a1e-5c7d-4e8f-9a0b-1c2d3e4f5a6b} Name",
        ] {
            assert_eq!(PropertyId::parse(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_property_id_text_is_read_or_refused(text in "\\PC{0,80}") {
            if let Some(id) = PropertyId::parse(&text) {
                prop_assert_eq!(PropertyId::parse(&id.canonical()), Some(id));
            }
        }
    }
}
