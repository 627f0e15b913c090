//! The deterministic tenant generator: users, special users, folder trees and message recipes
//! from a seed (ChaCha8), plus `.eml` loading and the optional very large message.
//!
//! Sizes follow real mail: a log-normal body of median ~24 KB and a rare heavy tail of
//! attachments up to ~25 MB. Every tenth message of a user is a copy of a message shared with the
//! user's group of three colleagues: same content seed, different per-mailbox headers.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone as _, Utc};
use rand::{Rng as _, SeedableRng as _, seq::SliceRandom as _};
use rand_chacha::ChaCha8Rng;

use super::mime::{MimeKind, Recipe, SharedGroup};
use super::model::{FolderKind, Mailbox, MessageBody, UserRecord, mix_all};
use super::{MailboxPurpose, Tenant, TenantError, TenantSpec, names};

/// The tenant's initial domain.
pub(crate) const DOMAIN: &str = "contoso.onmicrosoft.com";
/// The vanity domain of aliases.
const VANITY_DOMAIN: &str = "contoso.com";
/// Generated mail ends at this instant (2026-01-01T00:00:00Z), so the same seed gives the same bytes any day.
pub(super) const MAIL_EPOCH_END: i64 = 1_767_225_600;
/// Generated mail spans two years before [`MAIL_EPOCH_END`].
const MAIL_SPAN_SECS: i64 = 2 * 365 * 86_400;
/// Messages per shared group.
const GROUP_SIZE: usize = 3;

fn guid(rng: &mut ChaCha8Rng) -> String {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(rng, &mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Builds the whole tenant.
pub(crate) fn generate(spec: &TenantSpec) -> Result<Tenant, TenantError> {
    let mut rng = ChaCha8Rng::seed_from_u64(mix_all(&[spec.seed, 0x05E2]));
    let mut tenant = Tenant {
        seed: spec.seed,
        tenant_id: spec.tenant_id.clone(),
        hidden_mail: spec.hidden_mail,
        ..Tenant::default()
    };

    // Regular members: distinct (given, surname) pairs in a seeded order.
    let mut pairs: Vec<(usize, usize)> = (0..names::GIVEN.len())
        .flat_map(|g| (0..names::SURNAMES.len()).map(move |s| (g, s)))
        .collect();
    pairs.shuffle(&mut rng);
    let mut regular = Vec::with_capacity(spec.users);
    for i in 0..spec.users {
        let (g, s) = pairs[i % pairs.len()];
        let given = names::GIVEN[g];
        let surname = names::SURNAMES[s];
        let suffix = if i >= pairs.len() {
            format!("{}", i / pairs.len() + 1)
        } else {
            String::new()
        };
        let local = format!(
            "{}.{}{suffix}",
            given.to_lowercase(),
            surname.to_lowercase()
        );
        let upn = format!("{local}@{DOMAIN}");
        let id = guid(&mut rng);
        tenant.directory_seq += 1;
        let proxy_addresses = vec![
            format!("SMTP:{upn}"),
            format!("smtp:{local}@{VANITY_DOMAIN}"),
            format!("smtp:{}{suffix}@{VANITY_DOMAIN}", given.to_lowercase()),
        ];
        tenant.users.push(UserRecord {
            id,
            upn: upn.clone(),
            mail: Some(upn),
            display_name: format!(
                "{given} {surname}{}",
                if suffix.is_empty() {
                    String::new()
                } else {
                    format!(" {suffix}")
                }
            ),
            given_name: Some(given.to_owned()),
            surname: Some(surname.to_owned()),
            job_title: Some(
                names::JOB_TITLES[rng.gen_range(0..names::JOB_TITLES.len())].to_owned(),
            ),
            office_location: Some(
                names::OFFICES[rng.gen_range(0..names::OFFICES.len())].to_owned(),
            ),
            enabled: true,
            guest: false,
            has_mailbox: true,
            access_denied: false,
            proxy_addresses,
            purpose: MailboxPurpose::User,
            seq: tenant.directory_seq,
        });
        regular.push(i);
    }

    if spec.special_users {
        add_special_users(&mut tenant, &mut rng);
    }
    if spec.mailbox_kinds {
        // The departed employee carries a name no regular member has.
        let (g, s) = pairs.get(spec.users).copied().unwrap_or((0, 0));
        add_kind_mailboxes(&mut tenant, spec, (names::GIVEN[g], names::SURNAMES[s]));
    }

    // Mailboxes: every user with one gets folders and messages.
    let groups: Vec<Arc<SharedGroup>> = regular
        .chunks(GROUP_SIZE)
        .map(|chunk| {
            Arc::new(SharedGroup {
                recipients: chunk
                    .iter()
                    .map(|&i| {
                        (
                            tenant.users[i].display_name.clone(),
                            tenant.users[i].upn.clone(),
                        )
                    })
                    .collect(),
            })
        })
        .collect();
    let users = tenant.users.clone();
    for (index, user) in users.iter().enumerate() {
        if !user.has_mailbox {
            continue;
        }
        let key = mix_all(&[spec.seed, 0x3A11, index as u64]);
        let mut mailbox = Mailbox::new(&user.upn, &user.display_name, key);
        standard_folders(&mut mailbox);
        custom_folders(&mut mailbox);
        if spec.hidden_mail {
            recoverable_tree(&mut mailbox);
        }
        let group = (index < spec.users)
            .then(|| (index / GROUP_SIZE, Arc::clone(&groups[index / GROUP_SIZE])));
        // Rooms and equipment receive little besides meeting requests.
        let count = match user.purpose {
            MailboxPurpose::Room | MailboxPurpose::Equipment => spec.messages_per_user / 4,
            _ => spec.messages_per_user,
        };
        fill_mailbox(&mut mailbox, spec, index, group, count);
        if spec.hidden_mail {
            super::hidden::fill_recoverable(&mut mailbox, count);
            super::hidden::mark_unconvertible(&mut mailbox);
        }
        tenant.mailboxes.insert(user.id.clone(), mailbox);
    }

    if spec.hidden_mail {
        super::archive::generate_archives(&mut tenant, spec);
    }
    let first = tenant
        .users
        .iter()
        .find(|u| u.has_mailbox)
        .map(|u| u.id.clone());
    if let Some(size) = spec.large_message_bytes {
        let first = first.as_ref().ok_or_else(|| {
            TenantError::InvalidSpec("large_message_bytes needs a user with a mailbox".into())
        })?;
        if let Some(mailbox) = tenant.mailboxes.get_mut(first) {
            let inbox = mailbox.folder_index("inbox").unwrap_or(0);
            let recipe = Recipe {
                content_seed: mix_all(&[spec.seed, 0x1A46E]),
                mailbox_key: mailbox.key,
                slot: u32::MAX,
                thread_start: u32::MAX,
                kind: MimeKind::Large,
                size,
                received: MAIL_EPOCH_END - 3_600,
                group: None,
            };
            mailbox.insert(
                inbox,
                recipe.received,
                false,
                false,
                MessageBody::Generated(recipe),
            );
        }
    }
    if let Some(dir) = &spec.eml_dir {
        let first = first.as_ref().ok_or_else(|| {
            TenantError::InvalidSpec("eml_dir needs a user with a mailbox".into())
        })?;
        if let Some(mailbox) = tenant.mailboxes.get_mut(first) {
            load_eml_dir(mailbox, dir)?;
        }
    }
    Ok(tenant)
}

/// A special user: display name, UPN, mail, enabled, guest, has mailbox, access denied.
type Special = (&'static str, String, Option<String>, bool, bool, bool, bool);

fn add_special_users(tenant: &mut Tenant, rng: &mut ChaCha8Rng) {
    // (display name, upn local part or full upn, mail, enabled, guest, has mailbox, access denied)
    let specials: [Special; 5] = [
        (
            "Former Employee",
            format!("former.employee@{DOMAIN}"),
            Some(format!("former.employee@{DOMAIN}")),
            false,
            false,
            true,
            false,
        ),
        (
            "Partner (Fabrikam)",
            format!("partner_fabrikam.com#EXT#@{DOMAIN}"),
            Some("partner@fabrikam.com".into()),
            true,
            true,
            false,
            false,
        ),
        (
            "Unlicensed User",
            format!("unlicensed.user@{DOMAIN}"),
            Some(format!("unlicensed.user@{DOMAIN}")),
            true,
            false,
            false,
            false,
        ),
        (
            "Restricted Executive",
            format!("restricted.exec@{DOMAIN}"),
            Some(format!("restricted.exec@{DOMAIN}")),
            true,
            false,
            true,
            true,
        ),
        (
            "Scanner Service Account",
            format!("svc-scanner@{DOMAIN}"),
            None,
            true,
            false,
            false,
            false,
        ),
    ];
    for (display, upn, mail, enabled, guest, has_mailbox, access_denied) in specials {
        tenant.directory_seq += 1;
        let proxy_addresses = mail.iter().map(|m| format!("SMTP:{m}")).collect();
        tenant.users.push(UserRecord {
            id: guid(rng),
            upn,
            mail,
            display_name: display.to_owned(),
            given_name: None,
            surname: None,
            job_title: None,
            office_location: None,
            enabled,
            guest,
            has_mailbox,
            access_denied,
            proxy_addresses,
            purpose: MailboxPurpose::User,
            seq: tenant.directory_seq,
        });
    }
}

/// Shared, room and equipment mailboxes: disabled accounts with mail, as Exchange creates them.
fn add_kind_mailboxes(tenant: &mut Tenant, spec: &TenantSpec, departed: (&str, &str)) {
    let mut rng = ChaCha8Rng::seed_from_u64(mix_all(&[spec.seed, 0x0B1D]));
    let (given, surname) = departed;
    let departed_local = format!("{}.{}", given.to_lowercase(), surname.to_lowercase());
    let kinds: [(String, String, MailboxPurpose); 5] = [
        ("Info".into(), "info".into(), MailboxPurpose::Shared),
        ("Support".into(), "support".into(), MailboxPurpose::Shared),
        (
            format!("{given} {surname} (departed)"),
            departed_local,
            MailboxPurpose::Shared,
        ),
        (
            "Conference Room Rainier".into(),
            "room.rainier".into(),
            MailboxPurpose::Room,
        ),
        (
            "Projector (Building 2)".into(),
            "projector.b2".into(),
            MailboxPurpose::Equipment,
        ),
    ];
    for (display, local, purpose) in kinds {
        if tenant.user(&format!("{local}@{DOMAIN}")).is_some() {
            continue;
        }
        tenant.directory_seq += 1;
        let upn = format!("{local}@{DOMAIN}");
        tenant.users.push(UserRecord {
            id: guid(&mut rng),
            upn: upn.clone(),
            mail: Some(upn.clone()),
            display_name: display,
            given_name: None,
            surname: None,
            job_title: None,
            office_location: None,
            enabled: false,
            guest: false,
            has_mailbox: true,
            access_denied: false,
            proxy_addresses: vec![
                format!("SMTP:{upn}"),
                format!("smtp:{local}@{VANITY_DOMAIN}"),
            ],
            purpose,
            seq: tenant.directory_seq,
        });
    }
}

/// The well-known folders every mailbox has.
pub(crate) fn standard_folders(mailbox: &mut Mailbox) {
    let root = mailbox.add_folder(
        "Top of Information Store",
        None,
        Some("msgfolderroot"),
        false,
        FolderKind::Root,
    );
    for (name, well_known) in [
        ("Inbox", "inbox"),
        ("Drafts", "drafts"),
        ("Sent Items", "sentitems"),
        ("Deleted Items", "deleteditems"),
        ("Junk Email", "junkemail"),
        ("Archive", "archive"),
        ("Outbox", "outbox"),
        ("Conversation History", "conversationhistory"),
        ("Scheduled", "scheduled"),
    ] {
        mailbox.add_folder(name, Some(root), Some(well_known), false, FolderKind::Mail);
    }
    let sync = mailbox.add_folder(
        "Sync Issues",
        Some(root),
        Some("syncissues"),
        false,
        FolderKind::Mail,
    );
    for (name, well_known) in [
        ("Conflicts", "conflicts"),
        ("Local Failures", "localfailures"),
        ("Server Failures", "serverfailures"),
    ] {
        mailbox.add_folder(name, Some(sync), Some(well_known), false, FolderKind::Mail);
    }
    let recoverable = mailbox.add_folder(
        "Recoverable Items",
        None,
        Some("recoverableitemsroot"),
        true,
        FolderKind::Root,
    );
    mailbox.add_folder(
        "Deletions",
        Some(recoverable),
        Some("recoverableitemsdeletions"),
        true,
        FolderKind::Mail,
    );
    mailbox.add_folder(
        "Finder",
        None,
        Some("searchfolders"),
        true,
        FolderKind::Root,
    );
}

/// The rest of the Recoverable Items tree (Deletions comes with the standard folders): Purges,
/// Versions and DiscoveryHolds, hidden like the root.
pub(crate) fn recoverable_tree(mailbox: &mut Mailbox) {
    let Some(root) = mailbox.folder_index("recoverableitemsroot") else {
        return;
    };
    for (name, well_known) in [
        ("Purges", "recoverableitemspurges"),
        ("Versions", "recoverableitemsversions"),
        ("DiscoveryHolds", "recoverableitemsdiscoveryholds"),
    ] {
        mailbox.add_folder(name, Some(root), Some(well_known), true, FolderKind::Mail);
    }
}

/// Nested, Unicode, slash-named, hidden and search folders of a generated mailbox.
fn custom_folders(mailbox: &mut Mailbox) {
    let root = mailbox.root();
    let inbox = mailbox.folder_index("inbox").unwrap_or(root);
    let projects = mailbox.add_folder("Projects", Some(inbox), None, false, FolderKind::Mail);
    let year = mailbox.add_folder("2024", Some(projects), None, false, FolderKind::Mail);
    mailbox.add_folder("Q3 Reports", Some(year), None, false, FolderKind::Mail);
    mailbox.add_folder("Newsletters", Some(inbox), None, false, FolderKind::Mail);
    mailbox.add_folder(
        "Receipts/Invoices",
        Some(root),
        None,
        false,
        FolderKind::Mail,
    );
    let vertraege = mailbox.add_folder(
        "Müller & Søn – Verträge",
        Some(root),
        None,
        false,
        FolderKind::Mail,
    );
    mailbox.add_folder(
        "日本語フォルダー",
        Some(vertraege),
        None,
        false,
        FolderKind::Mail,
    );
    let clients = mailbox.add_folder("Clients", Some(root), None, false, FolderKind::Mail);
    let acme = mailbox.add_folder("Acme", Some(clients), None, false, FolderKind::Mail);
    let contracts = mailbox.add_folder("Contracts", Some(acme), None, false, FolderKind::Mail);
    mailbox.add_folder("Signed", Some(contracts), None, false, FolderKind::Mail);
    mailbox.add_folder(
        "Legal Hold (hidden)",
        Some(root),
        None,
        true,
        FolderKind::Mail,
    );
    mailbox.add_folder(
        "Flagged Items",
        Some(root),
        None,
        false,
        FolderKind::SearchFlagged,
    );
}

/// Where generated messages land: (folder display name or well-known name, weight).
const FOLDER_WEIGHTS: &[(&str, u32)] = &[
    ("inbox", 40),
    ("sentitems", 14),
    ("archive", 9),
    ("deleteditems", 3),
    ("junkemail", 2),
    ("drafts", 1),
    ("conversationhistory", 1),
    ("Projects", 5),
    ("2024", 3),
    ("Q3 Reports", 3),
    ("Newsletters", 5),
    ("Receipts/Invoices", 3),
    ("Müller & Søn – Verträge", 2),
    ("日本語フォルダー", 2),
    ("Clients", 1),
    ("Acme", 1),
    ("Contracts", 1),
    ("Signed", 2),
    ("Legal Hold (hidden)", 2),
];

fn folder_by_name(mailbox: &Mailbox, name: &str) -> usize {
    mailbox
        .folder_index(name)
        .or_else(|| {
            mailbox
                .folders
                .iter()
                .position(|f| f.display_name == name && f.kind == FolderKind::Mail)
        })
        .unwrap_or_else(|| mailbox.root())
}

/// Kind and target size of a message, drawn like real mail.
pub(super) fn kind_and_size(rng: &mut ChaCha8Rng) -> (MimeKind, u64) {
    if rng.gen_ratio(1, 50) {
        return (MimeKind::Malformed, rng.gen_range(600..8_000));
    }
    if rng.gen_ratio(12, 1000) {
        // Heavy tail: log-uniform 1 MB .. 25 MB.
        let exp = rng.gen_range((1_000_000f64).ln()..(25_000_000f64).ln());
        return (MimeKind::Attachments, exp.exp() as u64);
    }
    // Log-normal, median 24 KB.
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.r#gen();
    let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let size = (24_000f64.ln() + 1.0 * normal)
        .exp()
        .clamp(1_200.0, 3_000_000.0) as u64;
    let kind = if size > 150_000 {
        if rng.gen_ratio(1, 5) {
            MimeKind::InlineImage
        } else {
            MimeKind::Attachments
        }
    } else {
        match rng.gen_range(0..100) {
            0..25 => MimeKind::Plain,
            25..70 => MimeKind::Alternative,
            70..80 => MimeKind::InlineImage,
            _ => MimeKind::Attachments,
        }
    };
    (kind, size)
}

fn fill_mailbox(
    mailbox: &mut Mailbox,
    spec: &TenantSpec,
    user_index: usize,
    group: Option<(usize, Arc<SharedGroup>)>,
    count: usize,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(mix_all(&[spec.seed, 0x55, user_index as u64]));
    let total_weight: u32 = FOLDER_WEIGHTS.iter().map(|(_, w)| w).sum();
    let folders: Vec<(usize, u32)> = FOLDER_WEIGHTS
        .iter()
        .map(|(n, w)| (folder_by_name(mailbox, n), *w))
        .collect();
    let spacing = MAIL_SPAN_SECS / i64::try_from(count.max(1)).unwrap_or(1);
    let mut thread_start = 0u32;
    for slot in 0..count {
        let slot32 = u32::try_from(slot).unwrap_or(u32::MAX);
        let base_time = MAIL_EPOCH_END - i64::try_from(count - slot).unwrap_or(0) * spacing;
        let shared = group
            .as_ref()
            .filter(|(_, g)| slot % 10 == 3 && g.recipients.len() > 1);
        let (content_seed, kind, size, received, group_arc) = if let Some((g, arc)) = shared {
            let content_seed = mix_all(&[spec.seed, 0x5AA, *g as u64, slot as u64]);
            let mut content_rng = ChaCha8Rng::seed_from_u64(mix_all(&[content_seed, 0xC0]));
            let (kind, size) = kind_and_size(&mut content_rng);
            let kind = if kind == MimeKind::Malformed {
                MimeKind::Attachments
            } else {
                kind
            };
            let received = base_time + content_rng.gen_range(0..spacing.max(1));
            thread_start = slot32;
            (
                content_seed,
                kind,
                size.max(40_000),
                received,
                Some(Arc::clone(arc)),
            )
        } else {
            let content_seed = mix_all(&[spec.seed, 0xC0DE, user_index as u64, slot as u64]);
            let (kind, size) = kind_and_size(&mut rng);
            let received = base_time + rng.gen_range(0..spacing.max(1));
            if slot32 == 0 || slot32 - thread_start >= 25 || !rng.gen_ratio(35, 100) {
                thread_start = slot32;
            }
            (content_seed, kind, size, received, None)
        };
        let mut pick = rng.gen_range(0..total_weight);
        let mut folder = folders[0].0;
        for (index, weight) in &folders {
            if pick < *weight {
                folder = *index;
                break;
            }
            pick -= weight;
        }
        let is_read = rng.gen_ratio(4, 5);
        let flagged = rng.gen_ratio(1, 20);
        let recipe = Recipe {
            content_seed,
            mailbox_key: mailbox.key,
            slot: slot32,
            thread_start: if group_arc.is_some() {
                slot32
            } else {
                thread_start
            },
            kind,
            size,
            received,
            group: group_arc,
        };
        mailbox.insert(
            folder,
            received,
            is_read,
            flagged,
            MessageBody::Generated(recipe),
        );
    }
}

/// Loads `.eml` files: files directly under `dir` go to the inbox, sub-directories become folders
/// (a sub-directory named like a well-known folder, e.g. `sentitems`, fills that folder).
fn load_eml_dir(mailbox: &mut Mailbox, dir: &Path) -> Result<(), TenantError> {
    let inbox = mailbox
        .folder_index("inbox")
        .unwrap_or_else(|| mailbox.root());
    let root = mailbox.root();
    load_eml_folder(mailbox, dir, inbox, root, 0)
}

fn load_eml_folder(
    mailbox: &mut Mailbox,
    dir: &Path,
    folder: usize,
    parent_for_subdirs: usize,
    depth: usize,
) -> Result<(), TenantError> {
    let io = |source| TenantError::EmlDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let file_type = entry.file_type().map_err(|source| TenantError::EmlDir {
            path: path.clone(),
            source,
        })?;
        if file_type.is_dir() && depth < 16 {
            let name = entry.file_name().to_string_lossy().into_owned();
            let sub = match mailbox.folder_index(&name) {
                Some(existing) if mailbox.folders[existing].kind == FolderKind::Mail => existing,
                _ => {
                    let existing = mailbox
                        .children(parent_for_subdirs)
                        .find(|&c| mailbox.folders[c].display_name == name);
                    match existing {
                        Some(index) => index,
                        None => mailbox.add_folder(
                            &name,
                            Some(parent_for_subdirs),
                            None,
                            false,
                            FolderKind::Mail,
                        ),
                    }
                }
            };
            load_eml_folder(mailbox, &path, sub, sub, depth + 1)?;
        } else if file_type.is_file()
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("eml"))
        {
            let bytes = std::fs::read(&path).map_err(|source| TenantError::EmlDir {
                path: path.clone(),
                source,
            })?;
            let meta = Arc::new(super::mime::StoredMeta::parse(&bytes));
            let received = date_header(&bytes).unwrap_or(MAIL_EPOCH_END);
            mailbox.insert(
                folder,
                received,
                true,
                false,
                MessageBody::Stored {
                    bytes: bytes.into(),
                    meta,
                },
            );
        }
    }
    Ok(())
}

/// The Date header of raw MIME, as Unix seconds.
fn date_header(bytes: &[u8]) -> Option<i64> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]);
    let line = head
        .lines()
        .take_while(|l| !l.is_empty())
        .find(|l| l.to_ascii_lowercase().starts_with("date:"))?;
    let value = line[5..].trim();
    DateTime::parse_from_rfc2822(value)
        .ok()
        .map(|d| d.with_timezone(&Utc).timestamp())
        .or_else(|| Utc.timestamp_opt(0, 0).single().map(|_| MAIL_EPOCH_END))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::TenantStore;

    fn spec(seed: u64) -> TenantSpec {
        TenantSpec {
            users: 6,
            messages_per_user: 40,
            seed,
            special_users: true,
            ..TenantSpec::default()
        }
    }

    #[test]
    fn same_seed_same_tenant_other_seed_other_tenant() {
        let (a, b, c) = (
            TenantStore::generate(&spec(3)).unwrap(),
            TenantStore::generate(&spec(3)).unwrap(),
            TenantStore::generate(&spec(4)).unwrap(),
        );
        assert_eq!(a.users(), b.users());
        assert_ne!(a.users(), c.users());
        for user in a.users().iter().filter(|u| u.has_mailbox) {
            assert_eq!(a.message_ids(&user.upn), b.message_ids(&user.upn));
            for id in a.message_ids(&user.upn).iter().take(5) {
                assert_eq!(a.message_mime(&user.upn, id), b.message_mime(&user.upn, id));
            }
        }
    }

    #[test]
    fn special_users_have_the_documented_shapes() {
        let store = TenantStore::generate(&spec(9)).unwrap();
        let users = store.users();
        assert_eq!(users.len(), 6 + 5);
        let regular: Vec<_> = users.iter().take(6).collect();
        assert!(regular.iter().all(|u| u.enabled
            && u.has_mailbox
            && !u.guest
            && u.mail.as_deref() == Some(u.upn.as_str())));
        assert!(
            regular.iter().all(|u| store.message_count(&u.upn) == 40),
            "exactly messages_per_user each"
        );
        assert!(users.iter().any(|u| !u.enabled && u.has_mailbox));
        assert!(
            users
                .iter()
                .any(|u| u.guest && u.upn.contains("#EXT#") && !u.has_mailbox)
        );
        assert!(
            users
                .iter()
                .any(|u| !u.guest && u.mail.is_some() && !u.has_mailbox)
        );
        assert!(users.iter().any(|u| u.access_denied && u.has_mailbox));
        assert!(users.iter().any(|u| u.mail.is_none() && !u.has_mailbox));
        let without = TenantStore::generate(&TenantSpec {
            special_users: false,
            ..spec(9)
        })
        .unwrap();
        assert_eq!(without.users().len(), 6);
    }

    #[test]
    fn shared_messages_reach_the_group_with_identical_message_ids() {
        let store = TenantStore::generate(&spec(5)).unwrap();
        let tenant = store.read();
        let message_ids = |upn: &str| -> std::collections::BTreeSet<String> {
            let mailbox = tenant.mailbox(upn).unwrap();
            mailbox
                .live()
                .map(|(_, m)| mailbox.summary(m).internet_message_id)
                .collect()
        };
        let users = store.users();
        let (a, b, c) = (
            message_ids(&users[0].upn),
            message_ids(&users[1].upn),
            message_ids(&users[3].upn),
        );
        let shared: Vec<_> = a.intersection(&b).collect();
        assert_eq!(
            shared.len(),
            4,
            "slots 3, 13, 23, 33 of a 40-message mailbox"
        );
        assert!(
            a.intersection(&c).next().is_none(),
            "another group shares nothing with this one"
        );
    }

    #[test]
    fn delivery_into_search_or_root_folders_is_refused_and_recoverable_items_are_not_counted() {
        let store = TenantStore::generate(&spec(6)).unwrap();
        let upn = store.users()[0].upn.clone();
        let search = {
            let tenant = store.read();
            let mailbox = tenant.mailbox(&upn).unwrap();
            mailbox
                .folders
                .iter()
                .find(|f| f.kind == FolderKind::SearchFlagged)
                .unwrap()
                .id
                .clone()
        };
        assert!(
            store
                .deliver(&upn, &search, b"Subject: x\r\n\r\nx".to_vec())
                .is_err()
        );
        assert!(
            store
                .deliver(&upn, "msgfolderroot", b"Subject: x\r\n\r\nx".to_vec())
                .is_err()
        );
        let before = store.message_count(&upn);
        store
            .deliver(
                &upn,
                "recoverableitemsdeletions",
                b"Subject: x\r\n\r\nx".to_vec(),
            )
            .unwrap();
        assert_eq!(store.message_count(&upn), before);
        let id = store
            .deliver(&upn, "Inbox", b"Subject: y\r\n\r\ny".to_vec())
            .unwrap();
        assert_eq!(store.message_count(&upn), before + 1);
        assert_eq!(
            store.message_mime(&upn, &id).unwrap(),
            b"Subject: y\r\n\r\ny"
        );
        store.delete_message(&upn, &id).unwrap();
        assert!(store.message_mime(&upn, &id).is_none());
        assert!(store.delete_message(&upn, &id).is_err());
    }
}
