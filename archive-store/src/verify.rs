//! `verify`: re-reads and re-hashes every chunk and every manifest, checks every
//! record of the record log, and names each broken object (pack file and offset)
//! with the messages and archives it affects. Also reports drift between the
//! record log and the caches (listing index, search index).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::crypto::to_hex;
use crate::log::{LogRecord, RecordKind, decode_record, log_path};
use crate::pack::{ScanEvent, kind, scan_file};
use crate::store::{DiskArchiveStore, decode_chunk, parse_manifest};
use crate::{ArchiveError, MessageId, SourceRef};

/// A message hit by a problem, with the archives holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AffectedMessage {
    /// Content address.
    pub id: MessageId,
    /// (user, folder) entries holding it.
    pub archives: Vec<(String, String)>,
}

/// One broken object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyProblem {
    /// The object: `packs/pack-00000001.pack@1234`, `records.log@99` or `message <id>`.
    pub object: String,
    /// What is wrong.
    pub detail: String,
    /// Messages whose bytes (or entries) are affected.
    pub affected: Vec<AffectedMessage>,
}

/// Result of `archive verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Pack files read.
    pub packs: u64,
    /// Chunk frames re-hashed.
    pub chunks: u64,
    /// Manifests checked.
    pub manifests: u64,
    /// Distinct messages re-assembled and re-hashed.
    pub messages: u64,
    /// Record-log entries checked.
    pub records: u64,
    /// Broken objects.
    pub problems: Vec<VerifyProblem>,
    /// Disagreements between the record log and the caches (`archive reindex` fixes them).
    pub drift: Vec<String>,
}

impl VerifyReport {
    /// No broken object and no drift.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.drift.is_empty()
    }
}

/// Copies of one message's manifest: (object name, chunk keys).
type ManifestCopies = Vec<(String, Vec<[u8; 32]>)>;

struct RawProblem {
    object: String,
    detail: String,
    keys: Vec<[u8; 32]>,
}

impl DiskArchiveStore {
    /// Re-reads and re-hashes everything; see [`VerifyReport`].
    pub fn verify(&self) -> Result<VerifyReport, ArchiveError> {
        // The first pass treats listings that disagree with the record log as damage
        // (rebuilt, then checked again); the pass after a rebuild reports what is left.
        let first = std::cell::Cell::new(true);
        self.healing(|| self.verify_raw(first.replace(false)))
    }

    fn verify_raw(&self, heal_listings: bool) -> Result<VerifyReport, ArchiveError> {
        let span = tracing::info_span!("verify", dir = %self.dir().display());
        let _enter = span.enter();
        let mut report = VerifyReport::default();
        let mut problems: Vec<RawProblem> = Vec::new();
        let (pack_limits, log_limit) = self.lengths()?;

        // 1. Every frame of every pack; chunks re-hashed.
        let mut good_chunks: HashSet<[u8; 32]> = HashSet::new();
        let mut manifests: BTreeMap<[u8; 32], ManifestCopies> = BTreeMap::new();
        for &(n, limit) in &pack_limits {
            report.packs += 1;
            let path = self.packs.path(n);
            let name = format!("packs/pack-{n:08}.pack");
            scan_file(&path, n, 0, Some(limit), |event| {
                match event {
                    ScanEvent::Frame {
                        loc,
                        kind: k,
                        payload,
                    } => {
                        let object = format!("{name}@{}", loc.offset);
                        let Some((key, n)) = split_head(payload) else {
                            problems.push(RawProblem {
                                object,
                                detail: "frame too short".into(),
                                keys: Vec::new(),
                            });
                            return Ok(());
                        };
                        match k {
                            kind::CHUNK => {
                                report.chunks += 1;
                                match decode_chunk(&self.codec, &key, &payload[40..], n) {
                                    Ok(chunk) if self.codec.hash(&chunk) == key => {
                                        good_chunks.insert(key);
                                    }
                                    Ok(_) => problems.push(RawProblem {
                                        object,
                                        detail: format!(
                                            "chunk {} does not match its hash",
                                            to_hex(&key)
                                        ),
                                        keys: vec![key],
                                    }),
                                    Err(detail) => problems.push(RawProblem {
                                        object,
                                        detail: format!("chunk {}: {detail}", to_hex(&key)),
                                        keys: vec![key],
                                    }),
                                }
                            }
                            kind::MANIFEST => {
                                report.manifests += 1;
                                match self
                                    .codec
                                    .open(kind::MANIFEST, &key, &payload[40..])
                                    .ok()
                                    .and_then(|b| parse_manifest(&b))
                                {
                                    Some(list) => manifests
                                        .entry(key)
                                        .or_default()
                                        .push((object, list.into_iter().map(|(k, _)| k).collect())),
                                    None => problems.push(RawProblem {
                                        object,
                                        detail: format!(
                                            "manifest of message {} is undecodable",
                                            to_hex(&key)
                                        ),
                                        keys: vec![key],
                                    }),
                                }
                            }
                            _ => {}
                        }
                    }
                    ScanEvent::Damaged {
                        offset,
                        resume,
                        detail,
                        key,
                    } => {
                        let end =
                            resume.map_or("end of file".to_string(), |r| format!("offset {r}"));
                        problems.push(RawProblem {
                            object: format!("{name}@{offset}"),
                            detail: format!("{detail} (damaged up to {end})"),
                            keys: key
                                .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
                                .into_iter()
                                .collect(),
                        });
                    }
                }
                Ok(())
            })?;
        }

        // 2. Manifests: every chunk present and intact, the whole message re-hashed.
        let mut intact: HashSet<[u8; 32]> = HashSet::new();
        let mut missing: BTreeMap<[u8; 32], BTreeSet<[u8; 32]>> = BTreeMap::new();
        for (address, copies) in &manifests {
            for (object, keys) in copies {
                let absent: Vec<[u8; 32]> = keys
                    .iter()
                    .filter(|k| !good_chunks.contains(*k))
                    .copied()
                    .collect();
                if !absent.is_empty() {
                    for k in &absent {
                        missing.entry(*k).or_default().insert(*address);
                    }
                    continue;
                }
                let mut hasher = self.codec.hasher();
                let mut ok = true;
                for k in keys {
                    match self.read_chunk(k, address) {
                        Ok(chunk) => {
                            hasher.update(&chunk);
                        }
                        Err(_) => {
                            ok = false;
                            break;
                        }
                    }
                }
                if ok && hasher.finalize().as_bytes() == address {
                    intact.insert(*address);
                    break;
                }
                if ok {
                    problems.push(RawProblem {
                        object: object.clone(),
                        detail: format!(
                            "message {} re-assembled does not match its address",
                            to_hex(address)
                        ),
                        keys: vec![*address],
                    });
                }
            }
            report.messages += 1;
        }

        // 3. The record log, applied as the listing index applies it (tombstones
        // remove entries, restriction records mark them).
        let mut model = LogModel::default();
        let log_file = log_path(self.dir(), 1);
        scan_file(&log_file, 1, 0, Some(log_limit), |event| {
            match event {
                ScanEvent::Frame { loc, payload, .. } => {
                    report.records += 1;
                    match decode_record(&self.codec, payload) {
                        Ok((address, record)) => {
                            model.apply(format!("records.log@{}", loc.offset), address, record);
                        }
                        Err(detail) => problems.push(RawProblem {
                            object: format!("records.log@{}", loc.offset),
                            detail,
                            keys: Vec::new(),
                        }),
                    }
                }
                ScanEvent::Damaged {
                    offset,
                    detail,
                    key,
                    ..
                } => problems.push(RawProblem {
                    object: format!("records.log@{offset}"),
                    detail,
                    keys: key
                        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
                        .into_iter()
                        .collect(),
                }),
            }
            Ok(())
        })?;
        // Live entries whose message is missing or damaged (an expunged entry's
        // message may be compacted away).
        let mut record_problems = Vec::new();
        let mut holders: HashMap<[u8; 32], Vec<(String, String)>> = HashMap::new();
        for ((user, folder, address), live) in &model.entries {
            holders
                .entry(*address)
                .or_default()
                .push((user.clone(), folder.clone()));
            if !intact.contains(address) {
                record_problems.push((
                    live.first_record.clone(),
                    *address,
                    format!(
                        "entry of {user}/{folder} refers to message {} which is missing or damaged",
                        to_hex(address)
                    ),
                ));
            }
        }
        record_problems.sort();
        for list in holders.values_mut() {
            list.sort();
        }
        let log_entries = &model.entries;
        let log_sources = &model.sources;

        // Name the messages each problem affects.
        let affected = |addresses: &mut dyn Iterator<Item = [u8; 32]>| -> Vec<AffectedMessage> {
            let set: BTreeSet<[u8; 32]> = addresses.collect();
            set.into_iter()
                .map(|a| AffectedMessage {
                    id: MessageId(to_hex(&a)),
                    archives: holders.get(&a).cloned().unwrap_or_default(),
                })
                .collect()
        };
        let mut reported_missing: HashSet<[u8; 32]> = HashSet::new();
        for p in problems {
            let mut addrs: Vec<[u8; 32]> = Vec::new();
            for k in &p.keys {
                if let Some(msgs) = missing.get(k) {
                    addrs.extend(msgs.iter().copied());
                    reported_missing.insert(*k);
                }
                if manifests.contains_key(k) && !intact.contains(k)
                    || (holders.contains_key(k) && !intact.contains(k))
                {
                    addrs.push(*k);
                }
            }
            report.problems.push(VerifyProblem {
                object: p.object,
                detail: p.detail,
                affected: affected(&mut addrs.into_iter()),
            });
        }
        for (k, msgs) in &missing {
            if reported_missing.contains(k) {
                continue;
            }
            report.problems.push(VerifyProblem {
                object: format!("chunk {}", to_hex(k)),
                detail: "no intact copy of this chunk in any pack".into(),
                affected: affected(&mut msgs.iter().copied()),
            });
        }
        for (object, address, detail) in record_problems {
            report.problems.push(VerifyProblem {
                object,
                detail,
                affected: affected(&mut std::iter::once(address)),
            });
        }

        // 4. Drift between the log and the caches. Damage to the lookup database that
        // loses rows silently is found here first: an index error, so `verify` rebuilds
        // the caches and checks again.
        self.caches().index.check_pages()?;
        let listed = self.caches().index.count(crate::index::Table::Entries)?;
        if listed != log_entries.len() as u64 {
            report.drift.push(format!(
                "listing index has {listed} entries, the record log {}; run `archive reindex`",
                log_entries.len()
            ));
        }
        let mut missing_listings = 0u64;
        for (user, folder, address) in log_entries.keys() {
            if !self.caches().index.has_entry(address, user, folder)? {
                missing_listings += 1;
            }
        }
        let marked = self.caches().index.count(crate::index::Table::Restricted)?;
        let mut unmarked = 0u64;
        for (user, folder, address) in &model.restricted {
            if !self.caches().index.is_restricted(address, user, folder)? {
                unmarked += 1;
            }
        }
        if marked != model.restricted.len() as u64 || unmarked > 0 {
            report.drift.push(format!(
                "listing index has {marked} restricted entries, the record log {} ({unmarked} missing); run `archive reindex`",
                model.restricted.len()
            ));
        }
        if missing_listings > 0 {
            report.drift.push(format!(
                "{missing_listings} entries of the record log are missing from the listing index; run `archive reindex`"
            ));
        }
        let mut missing_sources = 0u64;
        for (user, source, address) in log_sources.values() {
            if self.caches().index.source(user, source)? != Some(*address) {
                missing_sources += 1;
            }
        }
        let mut missing_chunks = 0u64;
        for key in &good_chunks {
            if self.caches().index.chunk(key)?.is_none() {
                missing_chunks += 1;
            }
        }
        if missing_chunks > 0 {
            report.drift.push(format!(
                "{missing_chunks} stored chunks are missing from the listing index; run `archive reindex`"
            ));
        }
        // Every live entry's message is located (a lost row would make it unreadable).
        let mut unlocated = 0u64;
        for address in holders.keys() {
            if intact.contains(address) && self.caches().index.message(address)?.is_none() {
                unlocated += 1;
            }
        }
        if unlocated > 0 {
            report.drift.push(format!(
                "{unlocated} archived messages are missing from the listing index; run `archive reindex`"
            ));
        }
        let mut missing_metadata = 0u64;
        for address in holders.keys() {
            if intact.contains(address)
                && !self.caches().index.with(|db| db.has_metadata(address))?
            {
                missing_metadata += 1;
            }
        }
        if missing_metadata > 0 {
            report.drift.push(format!(
                "{missing_metadata} archived messages have no metadata in the listing index; run `archive reindex`"
            ));
        }
        if missing_sources > 0 {
            report.drift.push(format!(
                "{missing_sources} sources of the record log are missing from the listing index; run `archive reindex`"
            ));
        }
        // The listing index reflects the log up to the position stored with its rows, so
        // any disagreement is damage (a key mangled in place passes every page check).
        if heal_listings && !report.drift.is_empty() {
            return Err(ArchiveError::listing(report.drift.join("; ")));
        }
        let docs = self.search_docs()?;
        if docs != log_entries.len() as u64 {
            report.drift.push(format!(
                "search index holds {docs} documents, the record log {} live entries; run `archive reindex`",
                log_entries.len()
            ));
        }
        tracing::info!(
            problems = report.problems.len(),
            drift = report.drift.len(),
            "verify finished"
        );
        Ok(report)
    }
}

fn split_head(payload: &[u8]) -> Option<([u8; 32], u64)> {
    let key = payload.get(..32)?.try_into().ok()?;
    let n = u64::from_le_bytes(payload.get(32..40)?.try_into().ok()?);
    Some((key, n))
}

/// A live entry as the record log leaves it.
struct LiveEntry {
    /// The record that made it live (named when its message is damaged).
    first_record: String,
    /// Sources its records carried.
    sources: Vec<SourceRef>,
}

/// (user, folder, message).
type EntryId = (String, String, [u8; 32]);

/// The record log applied in order, as `index.db` applies it: live entries, the
/// source mappings and the restriction marks.
#[derive(Default)]
struct LogModel {
    entries: HashMap<EntryId, LiveEntry>,
    /// (user, source) key → (user, source, message of the last record naming it).
    sources: HashMap<Vec<u8>, (String, SourceRef, [u8; 32])>,
    restricted: HashSet<EntryId>,
    /// (user, message) → folders holding it.
    folders: HashMap<(String, [u8; 32]), HashSet<String>>,
}

impl LogModel {
    fn apply(&mut self, object: String, address: [u8; 32], record: LogRecord) {
        let id = (record.user.clone(), record.folder.clone(), address);
        match record.kind {
            RecordKind::Entry => {
                self.folders
                    .entry((record.user.clone(), address))
                    .or_default()
                    .insert(record.folder.clone());
                let entry = self.entries.entry(id).or_insert_with(|| LiveEntry {
                    first_record: object,
                    sources: Vec::new(),
                });
                if let Some(source) = record.source {
                    if !entry.sources.contains(&source) {
                        entry.sources.push(source.clone());
                    }
                    self.sources.insert(
                        crate::index::source_key(&record.user, &source),
                        (record.user, source, address),
                    );
                }
            }
            RecordKind::Tombstone => {
                let Some(gone) = self.entries.remove(&id) else {
                    return;
                };
                self.restricted.remove(&id);
                let others = self
                    .folders
                    .get_mut(&(record.user.clone(), address))
                    .map(|folders| {
                        folders.remove(&record.folder);
                        folders.iter().cloned().collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                for source in gone.sources {
                    let listed = others.iter().any(|folder| {
                        self.entries
                            .get(&(record.user.clone(), folder.clone(), address))
                            .is_some_and(|e| e.sources.contains(&source))
                    });
                    let key = crate::index::source_key(&record.user, &source);
                    if !listed
                        && self
                            .sources
                            .get(&key)
                            .is_some_and(|(_, _, a)| *a == address)
                    {
                        self.sources.remove(&key);
                    }
                }
            }
            RecordKind::Restrict => {
                if self.entries.contains_key(&id) {
                    self.restricted.insert(id);
                }
            }
            RecordKind::Unrestrict => {
                self.restricted.remove(&id);
            }
        }
    }
}
