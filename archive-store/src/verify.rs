//! `verify`: re-reads and re-hashes every chunk and every manifest, checks every
//! record of the record log, and names each broken object (pack file and offset)
//! with the messages and archives it affects. Also reports drift between the
//! record log and the caches (listing index, search index).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::crypto::to_hex;
use crate::log::{decode_record, log_path};
use crate::pack::{ScanEvent, kind, scan_file};
use crate::store::{DiskArchiveStore, decode_chunk, parse_manifest};
use crate::{ArchiveError, MessageId};

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

        // 3. The record log.
        let mut holders: HashMap<[u8; 32], Vec<(String, String)>> = HashMap::new();
        let mut log_entries: HashSet<(String, String, [u8; 32])> = HashSet::new();
        let mut new_entry_records = 0u64;
        // (user, source) → the message the last record of that source names.
        let mut log_sources: HashMap<Vec<u8>, (String, crate::SourceRef, [u8; 32])> =
            HashMap::new();
        let log_file = log_path(self.dir(), 1);
        let mut record_problems = Vec::new();
        scan_file(&log_file, 1, 0, Some(log_limit), |event| {
            match event {
                ScanEvent::Frame { loc, payload, .. } => {
                    report.records += 1;
                    match decode_record(&self.codec, payload) {
                        Ok((address, record)) => {
                            if record.new_entry {
                                new_entry_records += 1;
                            }
                            if !intact.contains(&address) {
                                record_problems.push((
                                    format!("records.log@{}", loc.offset),
                                    address,
                                    format!(
                                        "entry of {}/{} refers to message {} which is missing or damaged",
                                        record.user,
                                        record.folder,
                                        to_hex(&address)
                                    ),
                                ));
                            }
                            if let Some(source) = &record.source {
                                log_sources.insert(
                                    crate::index::source_key(&record.user, source),
                                    (record.user.clone(), source.clone(), address),
                                );
                            }
                            if log_entries.insert((
                                record.user.clone(),
                                record.folder.clone(),
                                address,
                            )) {
                                holders
                                    .entry(address)
                                    .or_default()
                                    .push((record.user, record.folder));
                            }
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
        for (user, folder, address) in &log_entries {
            if !self.caches().index.has_entry(address, user, folder)? {
                missing_listings += 1;
            }
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
        if docs != new_entry_records {
            report.drift.push(format!(
                "search index holds {docs} documents, the record log {new_entry_records} entries; run `archive reindex`"
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
