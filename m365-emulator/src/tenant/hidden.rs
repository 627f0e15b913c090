//! The hidden mail of a generated mailbox: soft-deleted messages in the Recoverable Items tree
//! (Deletions, a few in Purges and Versions) and the items whose MIME Graph cannot produce.
//! Everything is drawn from the tenant seed, so the same seed hides the same mail.

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use super::generate::{MAIL_EPOCH_END, kind_and_size};
use super::mime::{MimeKind, Recipe};
use super::model::{Mailbox, MessageBody, mix_all};

/// Generation slots of hidden messages start here, far from the regular ones.
const HIDDEN_SLOTS: u32 = 1 << 24;

/// Adds `count` generated messages to a folder, received between `from` and `to` (Unix
/// seconds); `tag` keeps the contents of different callers apart. Answers the immutable ids.
pub(crate) fn seed_messages(
    mailbox: &mut Mailbox,
    folder: usize,
    count: usize,
    tag: u64,
    (from, to): (i64, i64),
) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(mix_all(&[mailbox.key, 0x41DE, tag]));
    let mut ids = Vec::with_capacity(count);
    for k in 0..count {
        let slot = HIDDEN_SLOTS
            .saturating_add(u32::try_from(tag % 64).unwrap_or(0) << 16)
            .saturating_add(u32::try_from(k).unwrap_or(u32::MAX >> 8));
        let (kind, size) = kind_and_size(&mut rng);
        // Hidden items are ordinary mail: malformed MIME stays among the regular folders.
        let kind = if kind == MimeKind::Malformed {
            MimeKind::Plain
        } else {
            kind
        };
        let received = rng.gen_range(from..to.max(from + 1));
        let recipe = Recipe {
            content_seed: mix_all(&[mailbox.key, 0xC0DE, tag, k as u64]),
            mailbox_key: mailbox.key,
            slot,
            thread_start: slot,
            kind,
            size: size.min(400_000),
            received,
            group: None,
        };
        ids.push(mailbox.insert(
            folder,
            received,
            true,
            false,
            MessageBody::Generated(recipe),
        ));
    }
    ids
}

/// Soft-deleted mail: a tenth of the mailbox (at least two) in Deletions, two in Purges, one in
/// Versions; DiscoveryHolds stays empty.
pub(crate) fn fill_recoverable(mailbox: &mut Mailbox, messages_per_user: usize) {
    let recent = (MAIL_EPOCH_END - 90 * 86_400, MAIL_EPOCH_END);
    for (well_known, count, tag) in [
        (
            "recoverableitemsdeletions",
            (messages_per_user / 10).max(2),
            1,
        ),
        ("recoverableitemspurges", 2, 2),
        ("recoverableitemsversions", 1, 3),
    ] {
        if let Some(folder) = mailbox.folder_index(well_known) {
            seed_messages(mailbox, folder, count, tag, recent);
        }
    }
}

/// Marks one or two of the mailbox's regular messages (at least four needed) as items whose MIME
/// cannot be produced.
pub(crate) fn mark_unconvertible(mailbox: &mut Mailbox) {
    let visible = mailbox.visible_folders();
    let candidates: Vec<usize> = mailbox
        .live()
        .filter(|(_, m)| visible[m.folder])
        .map(|(slot, _)| slot)
        .collect();
    if candidates.len() < 4 {
        return;
    }
    let want = 1 + usize::from(mix_all(&[mailbox.key, 0xBAD]) % 2 == 1);
    let mut chosen = Vec::new();
    let mut k = 0u64;
    while chosen.len() < want && k < 64 {
        let pick =
            candidates[(mix_all(&[mailbox.key, 0xBAD, k]) % candidates.len() as u64) as usize];
        if !chosen.contains(&pick) {
            chosen.push(pick);
        }
        k += 1;
    }
    for slot in chosen {
        if let Some(Some(record)) = mailbox.messages.get_mut(slot) {
            record.unconvertible = true;
        }
    }
}
