//! [`RetentionEngine`]: policies, holds and erasure requests kept in a
//! [`GovernanceStore`], applied to an archive through its [`RetentionTarget`].
//!
//! Every removal passes a permit that re-judges the entry, as the archive sees it at
//! that moment, against the policies and holds read at the start of the operation: an
//! entry under minimum retention or under a hold is refused there even if the plan said
//! otherwise (the choke point fails safe).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::RetentionError;
use crate::judge::{ErasureVerdict, Judge, Judgement, QueryAnswers, queries};
use crate::model::{EntryKey, EntryView, ErasureRequest, Hold, Policy, Release};
use crate::store::{GovernanceState, GovernanceStore};
use crate::target::RetentionTarget;

/// What `retention apply` did or would do (`--json`; the first six keys are fixed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Entries past their maximum retention (held ones included).
    pub candidates: u64,
    /// Entries expunged (by retention or by a pending erasure now allowed); in a dry
    /// run, those that would be.
    pub deleted: u64,
    /// Candidates kept by a legal hold.
    pub held: u64,
    /// Entries restricted by erasure requests that are not allowed yet.
    pub restricted: u64,
    /// Bytes of contents no live entry references any more.
    pub bytes_reclaimed: u64,
    /// Each entry concerned and why.
    pub items: Vec<ApplyItem>,
}

/// One entry of an [`ApplyReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyItem {
    /// The entry.
    #[serde(flatten)]
    pub key: EntryKey,
    /// `expunge`, `erase`, `held` or `restricted`.
    pub action: &'static str,
    /// Why, in words.
    pub reason: String,
}

/// What one erasure request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ErasureOutcome {
    /// Erased now.
    Erased {
        /// The entry.
        key: EntryKey,
    },
    /// Restricted now; erased by a later `apply` once allowed.
    Restricted {
        /// The entry.
        key: EntryKey,
        /// Why not now.
        #[serde(flatten)]
        verdict: ErasureVerdict,
    },
}

/// Retention, holds and erasure over one archive.
pub struct RetentionEngine<'a> {
    store: &'a dyn GovernanceStore,
    target: &'a dyn RetentionTarget,
}

impl std::fmt::Debug for RetentionEngine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionEngine").finish_non_exhaustive()
    }
}

struct Snapshot {
    state: GovernanceState,
    entries: Vec<EntryView>,
    answers: QueryAnswers,
}

impl<'a> RetentionEngine<'a> {
    /// An engine over this state and this archive.
    pub fn new(store: &'a dyn GovernanceStore, target: &'a dyn RetentionTarget) -> Self {
        Self { store, target }
    }

    fn snapshot(&self) -> Result<Snapshot, RetentionError> {
        let state = self.store.load()?;
        let entries = self.target.entries()?;
        let mut answers = QueryAnswers::default();
        for q in queries(&state.policies, &state.holds) {
            answers.insert(q, self.target.query(q)?);
        }
        Ok(Snapshot {
            state,
            entries,
            answers,
        })
    }

    /// The policies.
    pub fn policies(&self) -> Result<Vec<Policy>, RetentionError> {
        Ok(self.store.load()?.policies)
    }

    /// Adds a policy; a policy of that name must not exist (a policy is never
    /// shortened in place: remove it and add the new one, which is audited twice).
    pub fn add_policy(&self, policy: Policy) -> Result<(), RetentionError> {
        policy.validate()?;
        let mut state = self.store.load()?;
        if state.policies.iter().any(|p| p.name == policy.name) {
            return Err(RetentionError::Conflict(format!(
                "a retention policy named {} exists already",
                policy.name
            )));
        }
        state.policies.push(policy);
        self.store.save(&state)
    }

    /// Removes a policy by name, answering it.
    pub fn remove_policy(&self, name: &str) -> Result<Policy, RetentionError> {
        let mut state = self.store.load()?;
        let at = state
            .policies
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| RetentionError::not_found("retention policy", name))?;
        let removed = state.policies.remove(at);
        self.store.save(&state)?;
        Ok(removed)
    }

    /// Every hold, released ones included.
    pub fn holds(&self) -> Result<Vec<Hold>, RetentionError> {
        Ok(self.store.load()?.holds)
    }

    /// Places a hold; the case name must be new.
    pub fn create_hold(&self, hold: Hold) -> Result<(), RetentionError> {
        hold.validate()?;
        let mut state = self.store.load()?;
        if state.holds.iter().any(|h| h.case == hold.case) {
            return Err(RetentionError::Conflict(format!(
                "a legal hold for case {} exists already",
                hold.case
            )));
        }
        state.holds.push(hold);
        self.store.save(&state)
    }

    /// Releases an active hold, with a reason.
    pub fn release_hold(&self, case: &str, release: Release) -> Result<Hold, RetentionError> {
        if release.reason.trim().is_empty() {
            return Err(RetentionError::Invalid {
                field: "reason".into(),
                reason: format!("releasing the hold of case {case} needs a reason"),
            });
        }
        let mut state = self.store.load()?;
        let hold = state
            .holds
            .iter_mut()
            .find(|h| h.case == case)
            .ok_or_else(|| RetentionError::not_found("legal hold", case))?;
        if !hold.is_active() {
            return Err(RetentionError::Conflict(format!(
                "the hold of case {case} is released already"
            )));
        }
        hold.released = Some(release);
        let released = hold.clone();
        self.store.save(&state)?;
        Ok(released)
    }

    /// The entries an active hold covers now.
    pub fn held_by(&self, case: &str) -> Result<Vec<EntryKey>, RetentionError> {
        let snap = self.snapshot()?;
        let hold = snap
            .state
            .holds
            .iter()
            .find(|h| h.case == case)
            .ok_or_else(|| RetentionError::not_found("legal hold", case))?;
        let only = std::slice::from_ref(hold);
        let judge = Judge::new(&[], only, &snap.answers);
        Ok(snap
            .entries
            .iter()
            .filter(|e| !judge.holds_for(e).is_empty())
            .map(|e| e.key.clone())
            .collect())
    }

    /// Applies retention at `now`: expunges entries past their maximum (not held, past
    /// minimum) and pending erasures that became allowed; restricts the others. With
    /// `dry_run`, changes nothing and reports what would happen.
    pub fn apply(&self, now: DateTime<Utc>, dry_run: bool) -> Result<ApplyReport, RetentionError> {
        let snap = self.snapshot()?;
        let judge = Judge::new(&snap.state.policies, &snap.state.holds, &snap.answers);
        let mut report = ApplyReport {
            dry_run,
            ..ApplyReport::default()
        };
        let mut expire = Vec::new();
        for entry in &snap.entries {
            match judge.judge(entry, now) {
                Judgement::Expire { policies, since } => {
                    report.candidates += 1;
                    report.items.push(ApplyItem {
                        key: entry.key.clone(),
                        action: "expunge",
                        reason: format!(
                            "past maximum retention since {} ({})",
                            since.to_rfc3339(),
                            policies.join(", ")
                        ),
                    });
                    expire.push(entry.key.clone());
                }
                Judgement::Held { cases } => {
                    report.candidates += 1;
                    report.held += 1;
                    report.items.push(ApplyItem {
                        key: entry.key.clone(),
                        action: "held",
                        reason: format!("past maximum retention, under hold {}", cases.join(", ")),
                    });
                }
                Judgement::Unmanaged | Judgement::Keep { .. } => {}
            }
        }
        let by_key: std::collections::HashMap<&EntryKey, &EntryView> =
            snap.entries.iter().map(|e| (&e.key, e)).collect();
        let mut erase = Vec::new();
        let mut still_pending = Vec::new();
        for request in &snap.state.erasures {
            let Some(entry) = by_key.get(&request.key).copied() else {
                continue; // gone already (erased before a crash, or expunged)
            };
            match judge.erasure(entry, now) {
                ErasureVerdict::Allowed => {
                    report.items.push(ApplyItem {
                        key: entry.key.clone(),
                        action: "erase",
                        reason: format!("erasure requested: {}", request.reason),
                    });
                    erase.push(entry.key.clone());
                }
                verdict @ ErasureVerdict::Restricted { .. } => {
                    report.restricted += 1;
                    report.items.push(ApplyItem {
                        key: entry.key.clone(),
                        action: "restricted",
                        reason: restriction_reason(&verdict),
                    });
                    still_pending.push(request.clone());
                }
            }
        }
        if dry_run {
            report.deleted =
                (expire.len() + erase.iter().filter(|k| !expire.contains(k)).count()) as u64;
            report.bytes_reclaimed = reclaimable(&snap.entries, &expire, &erase);
            return Ok(report);
        }
        let permit = |view: &EntryView| judge.may_leave(view, now, false);
        let expired = self.target.expunge(&expire, &permit)?;
        let erase_permit = |view: &EntryView| judge.may_leave(view, now, true);
        let erased = self.target.expunge(&erase, &erase_permit)?;
        for request in &still_pending {
            if by_key.contains_key(&request.key) {
                self.target.set_restricted(&request.key, true)?;
            }
        }
        let mut state = snap.state;
        // Requests whose permit refused at the last moment stay pending.
        let refused: Vec<ErasureRequest> = state
            .erasures
            .iter()
            .filter(|r| erased.refused.contains(&r.key))
            .cloned()
            .collect();
        state.erasures = still_pending;
        state.erasures.extend(refused);
        self.store.save(&state)?;
        report.deleted = expired.entries + erased.entries;
        report.bytes_reclaimed = expired.bytes_reclaimed + erased.bytes_reclaimed;
        Ok(report)
    }

    /// Erases entries (GDPR): each one now when past minimum retention and under no
    /// hold, otherwise restricted and erased by a later [`RetentionEngine::apply`].
    pub fn erase(
        &self,
        keys: &[EntryKey],
        reason: &str,
        requested_by: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<ErasureOutcome>, RetentionError> {
        if reason.trim().is_empty() {
            return Err(RetentionError::Invalid {
                field: "reason".into(),
                reason: "an erasure needs a reason".into(),
            });
        }
        let snap = self.snapshot()?;
        let judge = Judge::new(&snap.state.policies, &snap.state.holds, &snap.answers);
        let mut views = Vec::new();
        for key in keys {
            let view = snap
                .entries
                .iter()
                .find(|e| &e.key == key)
                .ok_or_else(|| RetentionError::not_found("archive entry", &describe(key)))?;
            views.push(view);
        }
        let mut state = snap.state.clone();
        let mut outcomes = Vec::new();
        for view in views {
            match judge.erasure(view, now) {
                ErasureVerdict::Allowed => {
                    let permit = |v: &EntryView| judge.may_leave(v, now, true);
                    let done = self
                        .target
                        .expunge(std::slice::from_ref(&view.key), &permit)?;
                    if done.entries == 1 {
                        outcomes.push(ErasureOutcome::Erased {
                            key: view.key.clone(),
                        });
                        continue;
                    }
                    // Refused at the last moment: restrict like any other.
                    let verdict = judge.erasure(view, now);
                    self.restrict(&mut state, view, reason, requested_by, now)?;
                    outcomes.push(ErasureOutcome::Restricted {
                        key: view.key.clone(),
                        verdict,
                    });
                }
                verdict @ ErasureVerdict::Restricted { .. } => {
                    self.restrict(&mut state, view, reason, requested_by, now)?;
                    outcomes.push(ErasureOutcome::Restricted {
                        key: view.key.clone(),
                        verdict,
                    });
                }
            }
        }
        Ok(outcomes)
    }

    /// Records the request first (so a crash leaves it to `apply`), then marks the entry.
    fn restrict(
        &self,
        state: &mut GovernanceState,
        view: &EntryView,
        reason: &str,
        requested_by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), RetentionError> {
        if !state.erasures.iter().any(|r| r.key == view.key) {
            state.erasures.push(ErasureRequest {
                key: view.key.clone(),
                reason: reason.to_string(),
                requested_by: requested_by.to_string(),
                requested: now,
            });
            self.store.save(state)?;
        }
        self.target.set_restricted(&view.key, true)
    }
}

fn describe(key: &EntryKey) -> String {
    format!("{} in the archive of {} ({})", key.id, key.user, key.folder)
}

fn restriction_reason(verdict: &ErasureVerdict) -> String {
    match verdict {
        ErasureVerdict::Allowed => "erasure allowed".into(),
        ErasureVerdict::Restricted {
            minimum_until,
            holds,
        } => {
            let mut why = Vec::new();
            if let Some(until) = minimum_until {
                why.push(format!("minimum retention until {}", until.to_rfc3339()));
            }
            if !holds.is_empty() {
                why.push(format!("under hold {}", holds.join(", ")));
            }
            format!("erasure requested, restricted: {}", why.join("; "))
        }
    }
}

/// Bytes that removing these entries would leave unreferenced.
fn reclaimable(entries: &[EntryView], expire: &[EntryKey], erase: &[EntryKey]) -> u64 {
    let gone: HashSet<&EntryKey> = expire.iter().chain(erase).collect();
    let mut live_ids = HashSet::new();
    let mut sizes = std::collections::HashMap::new();
    for e in entries {
        if gone.contains(&e.key) {
            sizes.insert(e.key.id.as_str(), e.size);
        } else {
            live_ids.insert(e.key.id.as_str());
        }
    }
    sizes
        .iter()
        .filter(|(id, _)| !live_ids.contains(*id))
        .map(|(_, size)| size)
        .sum()
}
