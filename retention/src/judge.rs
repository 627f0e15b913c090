//! The rules, as pure functions: which policies and holds cover an entry, whether it
//! has passed its maximum, and whether it may be erased.
//!
//! When policies overlap, the longest minimum and the longest maximum win (a policy
//! without a maximum keeps forever), so adding a policy never shortens anything. An
//! entry no policy covers is kept: nothing leaves the archive without a policy saying
//! so. An active hold keeps whatever it covers, past every maximum.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::{EntryKey, EntryView, Hold, Policy, Selector};

/// The archive's answers to the queries of policies and holds: query → matching entries.
#[derive(Debug, Clone, Default)]
pub struct QueryAnswers {
    answers: HashMap<String, HashSet<EntryKey>>,
}

impl QueryAnswers {
    /// Records the entries matching `query`.
    pub fn insert(&mut self, query: &str, matches: HashSet<EntryKey>) {
        self.answers.insert(query.to_string(), matches);
    }

    /// Whether `key` matches `query`; `None` when the query was not asked.
    fn get(&self, query: &str, key: &EntryKey) -> Option<bool> {
        self.answers.get(query).map(|set| set.contains(key))
    }
}

/// The queries whose answers judging needs.
pub fn queries<'a>(policies: &'a [Policy], holds: &'a [Hold]) -> Vec<&'a str> {
    let mut all: Vec<&str> = policies
        .iter()
        .map(|p| &p.scope)
        .chain(holds.iter().filter(|h| h.is_active()).map(|h| &h.scope))
        .filter_map(|s| s.query.as_deref())
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// What retention says about one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Judgement {
    /// No policy covers it: kept.
    Unmanaged,
    /// Covered and within retention: kept (until the given date, or forever).
    Keep {
        /// When its maximum ends (`None`: never).
        until: Option<DateTime<Utc>>,
    },
    /// Past its maximum, but under a legal hold: kept.
    Held {
        /// The covering cases.
        cases: Vec<String>,
    },
    /// Past its maximum and its minimum, under no hold: it goes.
    Expire {
        /// The policies covering it.
        policies: Vec<String>,
        /// When its maximum ended.
        since: DateTime<Utc>,
    },
}

/// What an erasure request may do with one entry now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "erasure", rename_all = "snake_case")]
pub enum ErasureVerdict {
    /// Past minimum retention and under no hold: erase now.
    Allowed,
    /// Not yet: the entry is restricted and erased once allowed.
    Restricted {
        /// When minimum retention ends (`None` when it already has).
        minimum_until: Option<DateTime<Utc>>,
        /// Active holds covering it.
        holds: Vec<String>,
    },
}

/// Judges entries against one set of policies and holds.
#[derive(Debug)]
pub struct Judge<'a> {
    policies: &'a [Policy],
    holds: Vec<&'a Hold>,
    answers: &'a QueryAnswers,
}

impl<'a> Judge<'a> {
    /// A judge for these policies and holds (released holds are ignored) with the
    /// archive's answers to their queries.
    pub fn new(policies: &'a [Policy], holds: &'a [Hold], answers: &'a QueryAnswers) -> Self {
        Self {
            policies,
            holds: holds.iter().filter(|h| h.is_active()).collect(),
            answers,
        }
    }

    /// The policies covering the entry. A policy whose query was not answered covers
    /// nothing (so it can expunge nothing).
    pub fn policies_for(&self, entry: &EntryView) -> Vec<&'a Policy> {
        self.policies
            .iter()
            .filter(|p| self.covers(&p.scope, entry, false))
            .collect()
    }

    /// The active holds covering the entry. A hold whose query was not answered covers
    /// everything its other criteria match (failing safe: kept).
    pub fn holds_for(&self, entry: &EntryView) -> Vec<&'a Hold> {
        self.holds
            .iter()
            .copied()
            .filter(|h| self.covers(&h.scope, entry, true))
            .collect()
    }

    fn covers(&self, scope: &Selector, entry: &EntryView, unanswered: bool) -> bool {
        scope.matches(entry, || match scope.query.as_deref() {
            Some(q) => self.answers.get(q, &entry.key).unwrap_or(unanswered),
            None => true,
        })
    }

    /// When minimum retention ends for the entry (the latest of its policies'; `None`
    /// when no policy covers it).
    pub fn minimum_end(&self, entry: &EntryView) -> Option<DateTime<Utc>> {
        self.policies_for(entry)
            .iter()
            .map(|p| p.minimum_end(entry))
            .max()
    }

    /// What retention says about the entry at `now`.
    pub fn judge(&self, entry: &EntryView, now: DateTime<Utc>) -> Judgement {
        let policies = self.policies_for(entry);
        if policies.is_empty() {
            return Judgement::Unmanaged;
        }
        // The longest maximum wins; any policy without one keeps forever.
        let mut max_end = Some(DateTime::<Utc>::MIN_UTC);
        for p in &policies {
            max_end = match (max_end, p.maximum_end(entry)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        let min_end = policies.iter().map(|p| p.minimum_end(entry)).max();
        let Some(since) = max_end else {
            return Judgement::Keep { until: None };
        };
        if now < since || min_end.is_some_and(|m| now < m) {
            return Judgement::Keep {
                until: Some(min_end.map_or(since, |m| m.max(since))),
            };
        }
        let holds = self.holds_for(entry);
        if !holds.is_empty() {
            return Judgement::Held {
                cases: holds.iter().map(|h| h.case.clone()).collect(),
            };
        }
        Judgement::Expire {
            policies: policies.iter().map(|p| p.name.clone()).collect(),
            since,
        }
    }

    /// Whether the entry may be erased at `now`.
    pub fn erasure(&self, entry: &EntryView, now: DateTime<Utc>) -> ErasureVerdict {
        let minimum_until = self.minimum_end(entry).filter(|m| now < *m);
        let holds: Vec<String> = self
            .holds_for(entry)
            .iter()
            .map(|h| h.case.clone())
            .collect();
        if minimum_until.is_none() && holds.is_empty() {
            ErasureVerdict::Allowed
        } else {
            ErasureVerdict::Restricted {
                minimum_until,
                holds,
            }
        }
    }

    /// Whether the entry may leave the archive now, by retention or by erasure: the
    /// check the archive repeats for each entry at the moment it expunges it.
    pub fn may_leave(&self, entry: &EntryView, now: DateTime<Utc>, erasure: bool) -> bool {
        if erasure {
            self.erasure(entry, now) == ErasureVerdict::Allowed
        } else {
            matches!(self.judge(entry, now), Judgement::Expire { .. })
        }
    }
}
