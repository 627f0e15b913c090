//! Random sequences of archive / hold / release / apply / erase against a simple model
//! written from the rules' wording: the archive's live and restricted sets always equal
//! the model's, and nothing held or under minimum retention ever leaves.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use retention::{
    EntryKey, EntryView, Hold, MemoryGovernanceStore, MemoryTarget, Policy, Reference, Release,
    RetentionEngine, RetentionTarget, Selector,
};

const USERS: &[&str] = &["adele", "alex", "megan"];
const FOLDERS: &[&str] = &["Inbox", "Inbox/Legal", "Sent Items"];
const WORDS: &[&str] = &["contract", "invoice", "lunch"];

fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
struct Mail {
    key: EntryKey,
    received: i64,
    archived: i64,
    word: usize,
}

#[derive(Debug, Clone)]
struct PolicySpec {
    min: u32,
    max: Option<u32>,
    users: Vec<usize>,
    folder: Option<usize>,
    query: Option<usize>,
    archived: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Archive(Mail),
    Hold {
        users: Vec<usize>,
        query: Option<usize>,
    },
    Release(usize),
    Apply(i64),
    Erase(usize, i64),
}

fn mail() -> impl Strategy<Value = Mail> {
    (
        0..USERS.len(),
        0..FOLDERS.len(),
        0..40u32,
        0..1500i64,
        0..60i64,
        0..WORDS.len(),
    )
        .prop_map(|(u, f, id, received, delay, word)| Mail {
            key: EntryKey {
                user: USERS[u].into(),
                id: format!("{id:04x}"),
                folder: FOLDERS[f].into(),
            },
            received,
            archived: received + delay,
            word,
        })
}

fn policy() -> impl Strategy<Value = PolicySpec> {
    (
        0..900u32,
        proptest::option::of(0..900u32),
        proptest::collection::vec(0..USERS.len(), 0..2),
        proptest::option::of(0..FOLDERS.len()),
        proptest::option::of(0..WORDS.len()),
        any::<bool>(),
    )
        .prop_map(|(min, extra, users, folder, query, archived)| PolicySpec {
            min,
            max: extra.map(|e| min + e),
            users,
            folder,
            query,
            archived,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => mail().prop_map(Op::Archive),
        1 => (proptest::collection::vec(0..USERS.len(), 0..2), proptest::option::of(0..WORDS.len()))
            .prop_map(|(users, query)| Op::Hold { users, query }),
        1 => (0..4usize).prop_map(Op::Release),
        2 => (0..3000i64).prop_map(Op::Apply),
        1 => (0..64usize, 0..3000i64).prop_map(|(i, now)| Op::Erase(i, now)),
    ]
}

/// The model: entries with their words, policies, holds (active flag), pending erasures.
#[derive(Default)]
struct Model {
    live: Vec<Mail>,
    policies: Vec<PolicySpec>,
    holds: Vec<(Vec<usize>, Option<usize>, bool)>,
    pending: BTreeSet<EntryKey>,
}

impl Model {
    fn covers(&self, p: &PolicySpec, m: &Mail) -> bool {
        (p.users.is_empty() || p.users.iter().any(|&u| USERS[u] == m.key.user))
            && p.folder.is_none_or(|f| {
                m.key.folder == FOLDERS[f] || m.key.folder.starts_with(&format!("{}/", FOLDERS[f]))
            })
            && p.query
                .is_none_or(|q| self.words_of(&m.key.id).contains(&q))
    }

    /// Words of every copy of a content (a query matches the content).
    fn words_of(&self, id: &str) -> BTreeSet<usize> {
        self.live
            .iter()
            .filter(|m| m.key.id == id)
            .map(|m| m.word)
            .collect()
    }

    fn held(&self, m: &Mail) -> bool {
        self.holds.iter().any(|(users, query, active)| {
            *active
                && (users.is_empty() || users.iter().any(|&u| USERS[u] == m.key.user))
                && query.is_none_or(|q| self.words_of(&m.key.id).contains(&q))
        })
    }

    fn reference(p: &PolicySpec, m: &Mail) -> i64 {
        if p.archived { m.archived } else { m.received }
    }

    /// (minimum passed, maximum passed) at `now`, over every covering policy.
    fn ages(&self, m: &Mail, now: i64) -> Option<(bool, bool)> {
        let covering: Vec<&PolicySpec> =
            self.policies.iter().filter(|p| self.covers(p, m)).collect();
        if covering.is_empty() {
            return None;
        }
        let min_passed = covering
            .iter()
            .all(|p| now >= Self::reference(p, m) + i64::from(p.min));
        let max_passed = covering.iter().all(|p| {
            p.max
                .is_some_and(|max| now >= Self::reference(p, m) + i64::from(max))
        });
        Some((min_passed, max_passed))
    }

    fn erasable(&self, m: &Mail, now: i64) -> bool {
        !self.held(m) && self.ages(m, now).is_none_or(|(min, _)| min)
    }

    fn apply(&mut self, now: i64) {
        let expire: Vec<EntryKey> = self
            .live
            .iter()
            .filter(|m| self.ages(m, now).is_some_and(|(min, max)| min && max) && !self.held(m))
            .map(|m| m.key.clone())
            .collect();
        let erase: Vec<EntryKey> = self
            .live
            .iter()
            .filter(|m| self.pending.contains(&m.key) && self.erasable(m, now))
            .map(|m| m.key.clone())
            .collect();
        self.live
            .retain(|m| !expire.contains(&m.key) && !erase.contains(&m.key));
        let live: BTreeSet<EntryKey> = self.live.iter().map(|m| m.key.clone()).collect();
        self.pending.retain(|k| live.contains(k));
    }
}

fn day(d: i64) -> DateTime<Utc> {
    epoch() + Duration::days(d)
}

fn view(m: &Mail) -> EntryView {
    EntryView {
        key: m.key.clone(),
        received: Some(day(m.received)),
        archived: day(m.archived),
        size: 1000,
    }
}

fn to_policy(i: usize, p: &PolicySpec) -> Policy {
    Policy {
        name: format!("p{i}"),
        min_days: p.min,
        max_days: p.max,
        scope: Selector {
            users: p.users.iter().map(|&u| USERS[u].to_string()).collect(),
            folders: p
                .folder
                .map(|f| FOLDERS[f].to_string())
                .into_iter()
                .collect(),
            query: p.query.map(|q| WORDS[q].to_string()),
            ..Selector::default()
        },
        reference: if p.archived {
            Reference::Archived
        } else {
            Reference::Received
        },
        created: epoch(),
    }
}

fn run(policies: Vec<PolicySpec>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let store = MemoryGovernanceStore::new();
    let target = MemoryTarget::new();
    let engine = RetentionEngine::new(&store, &target);
    let mut model = Model::default();
    for (i, p) in policies.iter().enumerate() {
        engine
            .add_policy(to_policy(i, p))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    model.policies = policies;
    for op in ops {
        match op {
            Op::Archive(m) => {
                if model.live.iter().any(|x| x.key == m.key) {
                    continue;
                }
                // One content has one set of words: reuse the first copy's word.
                let m = match model.live.iter().find(|x| x.key.id == m.key.id) {
                    Some(first) => Mail {
                        word: first.word,
                        ..m
                    },
                    None => m,
                };
                target.add(view(&m), &[WORDS[m.word]]);
                model.live.push(m);
            }
            Op::Hold { users, query } => {
                let case = format!("case{}", model.holds.len());
                engine
                    .create_hold(Hold {
                        case,
                        reason: "litigation".into(),
                        scope: Selector {
                            users: users.iter().map(|&u| USERS[u].to_string()).collect(),
                            query: query.map(|q| WORDS[q].to_string()),
                            ..Selector::default()
                        },
                        created: epoch(),
                        created_by: "counsel".into(),
                        released: None,
                    })
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                model.holds.push((users, query, true));
            }
            Op::Release(i) => {
                if let Some(h) = model.holds.get_mut(i).filter(|h| h.2) {
                    h.2 = false;
                    engine
                        .release_hold(
                            &format!("case{i}"),
                            Release {
                                at: epoch(),
                                by: "counsel".into(),
                                reason: "settled".into(),
                            },
                        )
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
            }
            Op::Apply(now) => {
                let dry = engine
                    .apply(day(now), true)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let before = model.live.len();
                model.apply(now);
                let report = engine
                    .apply(day(now), false)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(report.deleted as usize, before - model.live.len());
                prop_assert_eq!(dry.deleted, report.deleted, "the dry run predicts apply");
            }
            Op::Erase(i, now) => {
                let Some(m) = model.live.get(i % model.live.len().max(1)).cloned() else {
                    continue;
                };
                engine
                    .erase(
                        std::slice::from_ref(&m.key),
                        "GDPR art. 17",
                        "dpo",
                        day(now),
                    )
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                if model.erasable(&m, now) {
                    model.live.retain(|x| x.key != m.key);
                    model.pending.remove(&m.key);
                } else {
                    model.pending.insert(m.key.clone());
                }
            }
        }
        let expected: BTreeSet<EntryKey> = model.live.iter().map(|m| m.key.clone()).collect();
        prop_assert_eq!(target.keys(), expected);
        for m in &model.live {
            let restricted = target
                .is_restricted(&m.key)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(
                restricted,
                model.pending.contains(&m.key),
                "restricted: {:?}",
                m.key
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn the_archive_always_equals_the_model(
        policies in proptest::collection::vec(policy(), 0..4),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(policies, ops)?;
    }
}
