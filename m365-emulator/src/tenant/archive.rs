//! In-Place (online) Archive mailboxes: `MBX:<mailbox guid>@<tenant guid>` ids, their
//! generation (older mail in a folder tree, one auto-expanded archive whose folder lives in an
//! auxiliary archive) and how a Graph route or the control API reaches them.
//!
//! Graph serves archives on beta only, by the id `settings/exchange` hands out; well-known folder
//! names are not supported there, and a read of an expanded folder (or of an item in it) answers
//! 308 Permanent Redirect to the auxiliary archive.

use super::hidden::seed_messages;
use super::model::{FolderKind, Mailbox, mix_all};
use super::{MailboxAccess, Tenant, TenantError, TenantSpec};

/// The `MBX:` prefix of Exchange mailbox ids.
const MBX_PREFIX: &str = "MBX:";

/// A parsed `MBX:<mailbox guid>@<tenant guid>` id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxId {
    /// The mailbox GUID.
    pub mailbox: uuid::Uuid,
    /// The tenant GUID.
    pub tenant: uuid::Uuid,
}

impl MailboxId {
    /// Parses an `MBX:` id as Graph hands it out, leniently on form: the prefix in any case,
    /// percent-encoded or not, GUIDs in any case with or without braces. `None` when the text is
    /// not such an id.
    pub fn parse(text: &str) -> Option<MailboxId> {
        let decoded = percent_encoding::percent_decode_str(text.trim()).decode_utf8_lossy();
        let decoded = decoded.trim();
        let prefix = decoded.get(..MBX_PREFIX.len())?;
        if !prefix.eq_ignore_ascii_case(MBX_PREFIX) {
            return None;
        }
        let rest = decoded.get(MBX_PREFIX.len()..)?;
        let (mailbox, tenant) = rest.split_once('@')?;
        let guid = |part: &str| {
            let part = part.trim();
            let part = part
                .strip_prefix('{')
                .and_then(|p| p.strip_suffix('}'))
                .unwrap_or(part);
            uuid::Uuid::try_parse(part).ok()
        };
        Some(MailboxId {
            mailbox: guid(mailbox)?,
            tenant: guid(tenant)?,
        })
    }

    /// The canonical text form (lower-case hyphenated GUIDs).
    pub fn format(mailbox: &str, tenant: &str) -> String {
        format!("{MBX_PREFIX}{mailbox}@{tenant}")
    }
}

impl std::fmt::Display for MailboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{MBX_PREFIX}{}@{}", self.mailbox, self.tenant)
    }
}

/// A deterministic GUID from words.
pub(crate) fn guid_from(parts: &[u64]) -> String {
    let a = mix_all(parts);
    let b = mix_all(&[a, 0x6D62_7867]);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..].copy_from_slice(&b.to_le_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// A word hashed from text (user object ids).
fn text_word(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// Where a `MBX:` id leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MbxTarget<'a> {
    /// A user's primary mailbox (its object id).
    Primary(&'a str),
    /// An archive mailbox (main or auxiliary) by GUID.
    Archive(&'a str),
}

impl Tenant {
    /// The GUID of a user's primary mailbox (`primaryMailboxId`).
    pub(crate) fn primary_mailbox_guid(&self, user_id: &str) -> String {
        guid_from(&[self.seed, 0x9B1, text_word(user_id)])
    }

    /// The `MBX:` id of a mailbox GUID in this tenant.
    pub(crate) fn mbx(&self, guid: &str) -> String {
        MailboxId::format(guid, &self.tenant_id)
    }

    /// What an `MBX:` id names in this tenant (`None`: not an id of ours).
    pub(crate) fn mbx_target(&self, text: &str) -> Option<MbxTarget<'_>> {
        let id = MailboxId::parse(text)?;
        let tenant = uuid::Uuid::try_parse(&self.tenant_id).ok()?;
        if id.tenant != tenant {
            return None;
        }
        let guid = id.mailbox.to_string();
        if let Some((key, _)) = self.archives.get_key_value(&guid) {
            return Some(MbxTarget::Archive(key));
        }
        self.users
            .iter()
            .filter(|u| u.has_mailbox)
            .find(|u| self.primary_mailbox_guid(&u.id) == guid)
            .map(|u| MbxTarget::Primary(u.id.as_str()))
    }

    /// The owner (user object id) of an archive mailbox GUID.
    pub(crate) fn archive_owner(&self, guid: &str) -> Option<&str> {
        self.archive_of.iter().find_map(|(user, main)| {
            let owns = main == guid
                || self
                    .archives
                    .get(main)
                    .is_some_and(|m| m.auxiliary.iter().any(|a| a == guid));
            owns.then_some(user.as_str())
        })
    }

    /// An archive mailbox as a Graph route reaches it (the owner's access policy applies).
    pub(crate) fn archive_checked(&self, guid: &str) -> Result<&Mailbox, MailboxAccess> {
        let owner = self.archive_owner(guid).ok_or(MailboxAccess::UnknownUser)?;
        if self.users.iter().any(|u| u.id == owner && u.access_denied) {
            return Err(MailboxAccess::Denied);
        }
        self.archives.get(guid).ok_or(MailboxAccess::UnknownUser)
    }

    /// The main archive of a user (by id or UPN).
    pub(crate) fn archive_of_user(&self, id_or_upn: &str) -> Option<&Mailbox> {
        let user = self.user(id_or_upn)?;
        self.archives.get(self.archive_of.get(&user.id)?)
    }

    /// The auxiliary archive holding an item of a main archive, as its `MBX:` id.
    pub(crate) fn auxiliary_holding(&self, main: &Mailbox, id: &str) -> Option<String> {
        main.auxiliary
            .iter()
            .find(|aux| {
                self.archives
                    .get(aux.as_str())
                    .is_some_and(|m| m.message(id).is_some())
            })
            .map(|aux| self.mbx(aux))
    }

    /// Control API: stores raw MIME in a user's archive. `folder` names an archive folder by id
    /// or display name (case-insensitive; the first folder, Inbox, when `None`); an expanded
    /// folder's mail goes to its auxiliary archive. Answers the immutable id.
    pub(crate) fn deliver_to_archive(
        &mut self,
        id_or_upn: &str,
        folder: Option<&str>,
        mime: Vec<u8>,
    ) -> Result<String, TenantError> {
        let user = self
            .user(id_or_upn)
            .ok_or_else(|| TenantError::UnknownUser(id_or_upn.to_owned()))?;
        let upn = user.upn.clone();
        let main = self
            .archive_of
            .get(&user.id)
            .cloned()
            .ok_or_else(|| TenantError::NoArchive(upn.clone()))?;
        let not_found = |name: &str| TenantError::FolderNotFound {
            mailbox: format!("{upn} (online archive)"),
            folder: name.to_owned(),
        };
        let mailbox = self
            .archives
            .get(&main)
            .ok_or_else(|| not_found("(root)"))?;
        let index = match folder {
            None => mailbox
                .folders
                .iter()
                .position(|f| f.kind == FolderKind::Mail)
                .ok_or_else(|| not_found("(first folder)"))?,
            Some(name) => mailbox
                .folders
                .iter()
                .position(|f| {
                    f.kind == FolderKind::Mail
                        && (f.id == name || f.display_name.eq_ignore_ascii_case(name))
                })
                .ok_or_else(|| not_found(name))?,
        };
        let (target, folder_id) = match &mailbox.folders[index].redirect {
            Some(aux) => (aux.clone(), mailbox.folders[index].id.clone()),
            None => (main.clone(), mailbox.folders[index].id.clone()),
        };
        let mailbox = self
            .archives
            .get_mut(&target)
            .ok_or_else(|| not_found(&folder_id))?;
        let index = mailbox
            .folders
            .iter()
            .position(|f| f.id == folder_id)
            .ok_or_else(|| not_found(&folder_id))?;
        Ok(mailbox.deliver(index, mime))
    }
}

/// An archive mailbox with a root and no folders yet.
fn empty_archive(upn: &str, owner: &str, key: u64) -> Mailbox {
    let mut mailbox = Mailbox::new(upn, owner, key);
    mailbox.archive = true;
    mailbox.add_folder(
        "Top of Information Store",
        None,
        None,
        false,
        FolderKind::Root,
    );
    mailbox
}

/// Older mail (two to five years before the primary mailbox's) for archives.
fn archive_span() -> (i64, i64) {
    let end = super::generate::MAIL_EPOCH_END - 2 * 365 * 86_400;
    (end - 3 * 365 * 86_400, end)
}

/// Gives most regular members an online archive: the first always, with an auto-expanded folder
/// whose content lives in an auxiliary archive; the second never; the others three times in four.
pub(crate) fn generate_archives(tenant: &mut Tenant, spec: &TenantSpec) {
    let per_archive = (spec.messages_per_user / 3).max(4);
    for index in 0..spec.users.min(tenant.users.len()) {
        let has_archive = index == 0
            || (index != 1 && !mix_all(&[spec.seed, 0xA4C, index as u64]).is_multiple_of(4));
        if !has_archive {
            continue;
        }
        let user = &tenant.users[index];
        let (user_id, upn, name) = (user.id.clone(), user.upn.clone(), user.display_name.clone());
        let key = mix_all(&[spec.seed, 0xA4C1, index as u64]);
        let mut main = empty_archive(&upn, &name, key);
        let root = main.root();
        let inbox = main.add_folder("Inbox", Some(root), None, false, FolderKind::Mail);
        let sent = main.add_folder("Sent Items", Some(root), None, false, FolderKind::Mail);
        let deleted = main.add_folder("Deleted Items", Some(root), None, false, FolderKind::Mail);
        let year = main.add_folder("2022", Some(inbox), None, false, FolderKind::Mail);
        let projects = main.add_folder("Projects (old)", Some(root), None, false, FolderKind::Mail);
        let span = archive_span();
        let spread = [
            (inbox, 4),
            (sent, 2),
            (deleted, 1),
            (year, 2),
            (projects, 1),
        ];
        let weight: usize = spread.iter().map(|(_, w)| w).sum();
        let mut placed = 0;
        for (n, (folder, w)) in spread.iter().enumerate() {
            let count = if n + 1 == spread.len() {
                per_archive - placed
            } else {
                per_archive * w / weight
            };
            placed += count;
            seed_messages(&mut main, *folder, count, 0x100 + n as u64, span);
        }
        let guid = guid_from(&[key, 0x9B2]);
        if index == 0 {
            let aux_key = mix_all(&[spec.seed, 0xA4C2, index as u64]);
            let aux_guid = guid_from(&[aux_key, 0x9B3]);
            let expanded = main.add_folder("2021", Some(inbox), None, false, FolderKind::Mail);
            main.folders[expanded].redirect = Some(aux_guid.clone());
            let mut aux = empty_archive(&upn, &name, aux_key);
            let aux_root = aux.root();
            let holder = aux.add_folder("2021", Some(aux_root), None, false, FolderKind::Mail);
            aux.folders[holder].id = main.folders[expanded].id.clone();
            seed_messages(
                &mut aux,
                holder,
                (spec.messages_per_user / 5).max(3),
                0x200,
                span,
            );
            main.auxiliary.push(aux_guid.clone());
            tenant.archives.insert(aux_guid, aux);
        }
        tenant.archives.insert(guid.clone(), main);
        tenant.archive_of.insert(user_id, guid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mbx_ids_parse_leniently_on_form() {
        let mailbox = "e0643f21-1c2b-4f0e-9d5b-0a1b2c3d4e5f";
        let tenant = "a7809c93-0000-4000-8000-000000000001";
        let canonical = MailboxId::format(mailbox, tenant);
        let parsed = MailboxId::parse(&canonical).unwrap();
        assert_eq!(parsed.to_string(), canonical);
        for form in [
            format!("mbx:{}@{}", mailbox.to_uppercase(), tenant),
            format!("MBX%3A{mailbox}%40{tenant}"),
            format!(" MBX:{{{mailbox}}}@{tenant} "),
        ] {
            assert_eq!(MailboxId::parse(&form), Some(parsed), "{form}");
        }
        for bad in [
            "",
            "MBX:",
            "MBX:e0643f21@a7809c93",
            "alex@contoso.com",
            &format!("MBX:{mailbox}"),
            &format!("MBY:{mailbox}@{tenant}"),
        ] {
            assert_eq!(MailboxId::parse(bad), None, "{bad}");
        }
    }

    proptest! {
        /// Any text is an id or not, never a panic; what parses prints back to a parsable id.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,90}") {
            if let Some(id) = MailboxId::parse(&text) {
                prop_assert_eq!(MailboxId::parse(&id.to_string()), Some(id));
            }
        }

        /// Every pair of GUIDs round-trips, whatever the case of the text.
        #[test]
        fn guids_round_trip(a in any::<u128>(), b in any::<u128>(), upper in any::<bool>()) {
            let (m, t) = (uuid::Uuid::from_u128(a), uuid::Uuid::from_u128(b));
            let mut text = MailboxId::format(&m.to_string(), &t.to_string());
            if upper {
                text = text.to_uppercase();
            }
            prop_assert_eq!(MailboxId::parse(&text), Some(MailboxId { mailbox: m, tenant: t }));
        }
    }
}
