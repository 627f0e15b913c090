//! Retention policies, legal holds and erasure as use cases (`retention`, `hold`,
//! `archive erase`): who may do what, the audit events every change leaves, and
//! which archive entries a caller may see while an erasure keeps them restricted.
//!
//! Roles: `compliance` (and the local administrator) add, remove and apply policies,
//! place and release holds and erase; `auditor` lists and shows policies and holds;
//! `user` and `admin` are refused (`Forbidden`, the refusal recorded). A compliance
//! officer whose reach is a list of archives manages only holds and policies naming
//! those archives, erases only their messages, and may not apply retention (which
//! acts on every archive).
//!
//! Audit, fail closed: every change is recorded *before* it is made, so a change
//! whose event cannot be recorded is not made. `apply` and `erase` then record what
//! they did (counts, the outcome per message); a change that fails after its event
//! leaves a `failed` event. A dry run is recorded like a read of content.
//!
//! The archive as retention sees it ([`retention::RetentionTarget`]) comes from
//! [`ServiceOptions::retention_target`](crate::ServiceOptions::retention_target) or
//! the data directory's wiring; policies and holds never need it, so they can be
//! managed before anything is archived.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use archive_store::MessageId;
use audit_log::{Action, Outcome, Target};
use chrono::{DateTime, Utc};
use retention::{
    ApplyReport, EntryKey, ErasureOutcome, ErasureVerdict, Expunged, FileGovernanceStore,
    GovernanceStore, Hold, MemoryGovernanceStore, Permit, Policy, Reference, Release,
    RetentionEngine, RetentionError, RetentionTarget, Selector,
};
use serde::Serialize;

use crate::datadir::Access;
use crate::error::ServiceError;
use crate::principal::Visible;
use crate::wiring;
use crate::{Principal, Service};

type Result<T> = std::result::Result<T, ServiceError>;

/// A retention policy to add (`retention add`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySpec {
    /// Unique name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Minimum retention in days (not negative).
    pub min_days: i64,
    /// Maximum retention in days (not below `min_days`); `None`: kept forever.
    pub max_days: Option<i64>,
    /// Only these archives (empty: every archive).
    pub users: Vec<String>,
    /// Only these folders and what lies below them (empty: every folder).
    pub folders: Vec<String>,
    /// Only messages matching this search.
    pub query: Option<String>,
    /// `received` (the default) or `archived`: the date the days count from.
    pub reference: Option<String>,
}

/// A legal hold to place (`hold create`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HoldSpec {
    /// The case name (unique; letters, digits, `-`, `_`, `.`).
    pub case: String,
    /// Why the hold is placed (required).
    pub reason: String,
    /// Only these archives (empty: every archive).
    pub users: Vec<String>,
    /// Only messages matching this search.
    pub query: Option<String>,
    /// Only messages received on or after.
    pub from: Option<DateTime<Utc>>,
    /// Only messages received before.
    pub to: Option<DateTime<Utc>>,
}

/// A hold as `hold show` gives it: the hold and the entries it keeps now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldDetails {
    /// The hold.
    #[serde(flatten)]
    pub hold: Hold,
    /// The archive entries it covers now, in the archives the caller may see
    /// (`None`: the archive cannot be consulted by retention in this installation).
    pub held: Option<Vec<EntryKey>>,
}

/// Stands for the archive where governance does not touch it (policies and holds
/// are kept without reading the archive).
struct Untouched;

fn untouched() -> RetentionError {
    RetentionError::Target("the archive is not consulted for this operation".into())
}

impl RetentionTarget for Untouched {
    fn entries(&self) -> std::result::Result<Vec<retention::EntryView>, RetentionError> {
        Err(untouched())
    }

    fn query(
        &self,
        _: &str,
    ) -> std::result::Result<std::collections::HashSet<EntryKey>, RetentionError> {
        Err(untouched())
    }

    fn expunge(
        &self,
        _: &[EntryKey],
        _: Permit<'_>,
    ) -> std::result::Result<Expunged, RetentionError> {
        Err(untouched())
    }

    fn set_restricted(&self, _: &EntryKey, _: bool) -> std::result::Result<(), RetentionError> {
        Err(untouched())
    }

    fn is_restricted(&self, _: &EntryKey) -> std::result::Result<bool, RetentionError> {
        Err(untouched())
    }
}

/// Days as retention counts them, or an error naming `field`.
fn days(field: &str, value: i64) -> Result<u32> {
    if value < 0 {
        return Err(ServiceError::invalid(format!(
            "invalid {field}: {value} is negative (retention is counted in days from 0)"
        )));
    }
    u32::try_from(value).map_err(|_| {
        ServiceError::invalid(format!(
            "invalid {field}: {value} days is more than retention can count"
        ))
    })
}

/// A query as given, or an error when it is blank.
fn query(field: &str, value: &Option<String>) -> Result<Option<String>> {
    match value.as_deref().map(str::trim) {
        None => Ok(None),
        Some("") => Err(ServiceError::invalid(format!(
            "invalid {field}: the query is empty (leave it out to cover every message)"
        ))),
        Some(q) => Ok(Some(q.to_string())),
    }
}

fn join(items: &[String]) -> String {
    items.join(",")
}

/// The details an audit event keeps of a selector.
fn scope_details(scope: &Selector) -> Vec<(&'static str, String)> {
    let mut details = Vec::new();
    if !scope.users.is_empty() {
        details.push(("users", join(&scope.users)));
    }
    if !scope.folders.is_empty() {
        details.push(("folders", join(&scope.folders)));
    }
    if let Some(q) = &scope.query {
        details.push(("query", q.clone()));
    }
    if let Some(from) = scope.from {
        details.push(("from", from.to_rfc3339()));
    }
    if let Some(to) = scope.to {
        details.push(("to", to.to_rfc3339()));
    }
    details
}

fn describe(key: &EntryKey) -> String {
    format!("{} ({}: {})", key.id, key.user, key.folder)
}

/// Why an erasure leaves an entry restricted, in words (`minimum retention until …;
/// under hold …`).
pub fn restriction_text(verdict: &ErasureVerdict) -> String {
    match verdict {
        ErasureVerdict::Allowed => "refused at the last moment; erased by a later apply".into(),
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
            why.join("; ")
        }
    }
}

/// What happened to one entry, for its audit event.
fn outcome_text(outcome: &ErasureOutcome) -> (String, String) {
    match outcome {
        ErasureOutcome::Erased { key } => (describe(key), "erased".to_string()),
        ErasureOutcome::Restricted { key, verdict } => (
            describe(key),
            format!("restricted: {}", restriction_text(verdict)),
        ),
    }
}

fn report_details(report: &ApplyReport) -> Vec<(&'static str, String)> {
    vec![
        ("dry_run", report.dry_run.to_string()),
        ("candidates", report.candidates.to_string()),
        ("deleted", report.deleted.to_string()),
        ("held", report.held.to_string()),
        ("restricted", report.restricted.to_string()),
        ("bytes_reclaimed", report.bytes_reclaimed.to_string()),
    ]
}

impl Service {
    /// The archive as retention sees it: the one the options supply, else the data
    /// directory's, opened for writing only when `writable` (an apply or an erasure).
    fn retention_target(&self, writable: bool) -> Result<Arc<dyn RetentionTarget>> {
        if let Some(target) = &self.inner.options.retention_target {
            return Ok(target.clone());
        }
        let access = if writable {
            Access::Write
        } else {
            Access::Read
        };
        wiring::retention_target(&self.open(access)?, writable)
    }

    /// The governance state for a change (created when missing).
    fn governance_for_change(&self) -> Result<Box<dyn GovernanceStore>> {
        let dir = self.open(Access::Write)?;
        Ok(Box::new(FileGovernanceStore::open(dir.governance())?))
    }

    /// The governance state for reading (empty when none was ever written; nothing is
    /// created).
    fn governance_for_read(&self) -> Result<Box<dyn GovernanceStore>> {
        if !self.data_dir().is_dir() {
            return Ok(Box::new(MemoryGovernanceStore::new()));
        }
        let path = self.open(Access::Read)?.governance();
        if !path.is_dir() {
            return Ok(Box::new(MemoryGovernanceStore::new()));
        }
        Ok(Box::new(FileGovernanceStore::open(path)?))
    }

    /// Whether `principal` may see the archive entry `entry` as far as erasure is
    /// concerned: a restricted entry (an erasure is pending) is visible only to
    /// auditors, compliance officers and the local administrator. Whether the
    /// caller may read `entry.user`'s archive at all is checked by the caller.
    pub(crate) fn visible(&self, principal: &Principal, entry: &EntryKey) -> Result<bool> {
        if sees_restricted(principal) {
            return Ok(true);
        }
        match &self.inner.options.retention_target {
            Some(target) => Ok(!target.is_restricted(entry)?),
            // The disk archive hides restricted entries from ordinary reads itself.
            None => Ok(true),
        }
    }

    /// The messages an export of `user`'s archive by `principal` may take: `ids` (the
    /// whole archive when `None`) less every message with an entry of that archive
    /// the caller may not see ([`Service::visible`]; a message restricted in one
    /// folder is left out of every folder).
    pub(crate) fn without_restricted(
        &self,
        principal: &Principal,
        user: &str,
        ids: Option<BTreeSet<MessageId>>,
    ) -> Result<Option<BTreeSet<MessageId>>> {
        if sees_restricted(principal) {
            return Ok(ids);
        }
        // The disk archive leaves restricted entries out of ordinary exports itself.
        let Some(target) = self.inner.options.retention_target.clone() else {
            return Ok(ids);
        };
        let entries: Vec<EntryKey> = target
            .entries()?
            .into_iter()
            .filter(|e| e.key.user == user)
            .map(|e| e.key)
            .collect();
        let mut hidden = BTreeSet::new();
        for key in &entries {
            if !self.visible(principal, key)? {
                hidden.insert(key.id.clone());
            }
        }
        if hidden.is_empty() {
            return Ok(ids);
        }
        let all = ids.unwrap_or_else(|| entries.iter().map(|k| MessageId(k.id.clone())).collect());
        Ok(Some(
            all.into_iter()
                .filter(|id| !hidden.contains(&id.0))
                .collect(),
        ))
    }

    fn compliance_only(
        &self,
        principal: &Principal,
        what: &str,
        action: Action,
        target: &Target,
    ) -> Result<()> {
        principal
            .require_compliance(what, Self::now())
            .map_err(|e| self.denial(principal, action, target.clone(), e))
    }

    /// Refuses (recording it) unless the caller may read retention and holds.
    fn governance_reader(&self, principal: &Principal, what: &str, target: Target) -> Result<()> {
        principal
            .require_audit_reader(what, Self::now())
            .map_err(|e| self.denial(principal, Action::ConfigurationRead, target, e))
    }

    /// Refuses (recording it) a scope reaching beyond the caller's archives: a
    /// caller who does not see every archive must name archives it sees.
    fn within_reach(
        &self,
        principal: &Principal,
        users: &[String],
        what: &str,
        action: Action,
        target: &Target,
    ) -> Result<()> {
        let Visible::Only(reach) = principal.visible(Self::now()) else {
            return Ok(());
        };
        if !users.is_empty() && users.iter().all(|u| reach.contains(u)) {
            return Ok(());
        }
        let reach: Vec<&str> = reach.iter().map(String::as_str).collect();
        let error = ServiceError::forbidden(format!(
            "{} may not {what} beyond the archives in its reach ({}): name only those archives",
            principal.label(),
            if reach.is_empty() {
                "none".to_string()
            } else {
                reach.join(", ")
            }
        ));
        Err(self.denial(principal, action, target.clone(), error))
    }

    /// Records a change before it is made: when the event cannot be recorded, the
    /// change is not made.
    fn record_change(
        &self,
        principal: &Principal,
        action: Action,
        target: &Target,
        details: &[(&str, String)],
    ) -> Result<()> {
        self.record(principal, action, target.clone(), details, Outcome::Allowed)
            .map_err(|e| e.context("the audit log cannot record this change, so it was not made"))
    }

    /// Records that a change recorded before failed (best effort: the failure is
    /// what the caller gets either way) and gives the error back.
    fn change_failed(
        &self,
        principal: &Principal,
        action: Action,
        target: &Target,
        error: ServiceError,
    ) -> ServiceError {
        let reason = crate::chain(&error);
        if let Err(e) = self.record(
            principal,
            action,
            target.clone(),
            &[],
            Outcome::failed(reason),
        ) {
            tracing::warn!(error = %crate::chain(&e), "a failed change could not be recorded in the audit log");
        }
        error
    }

    /// Adds a retention policy (`retention add`): compliance only. A policy is never
    /// changed in place: remove it and add the new one.
    pub fn add_retention_policy(&self, principal: &Principal, spec: &PolicySpec) -> Result<Policy> {
        let action = Action::RetentionPolicyChange;
        let target = Target::object(spec.name.clone());
        self.compliance_only(principal, "add retention policies", action, &target)?;
        self.within_reach(
            principal,
            &spec.users,
            "add a retention policy",
            action,
            &target,
        )?;
        let policy = Policy {
            name: spec.name.clone(),
            min_days: days("min_days", spec.min_days)?,
            max_days: spec.max_days.map(|d| days("max_days", d)).transpose()?,
            scope: Selector {
                users: spec.users.clone(),
                folders: spec.folders.clone(),
                query: query("query", &spec.query)?,
                from: None,
                to: None,
            },
            reference: match &spec.reference {
                Some(name) => Reference::from_name(name)?,
                None => Reference::default(),
            },
            created: Self::now(),
        };
        policy.validate()?;
        let store = self.governance_for_change()?;
        if store.load()?.policies.iter().any(|p| p.name == policy.name) {
            return Err(ServiceError::conflict(format!(
                "a retention policy named `{}` exists already (remove it first to replace it)",
                policy.name
            )));
        }
        let mut details = vec![
            ("change", "add".to_string()),
            ("min_days", policy.min_days.to_string()),
            (
                "reference",
                format!("{:?}", policy.reference).to_lowercase(),
            ),
        ];
        if let Some(max) = policy.max_days {
            details.push(("max_days", max.to_string()));
        }
        details.extend(scope_details(&policy.scope));
        self.record_change(principal, action, &target, &details)?;
        RetentionEngine::new(store.as_ref(), &Untouched)
            .add_policy(policy.clone())
            .map_err(|e| self.change_failed(principal, action, &target, e.into()))?;
        Ok(policy)
    }

    /// The retention policies (`retention list`): auditors and compliance.
    pub fn retention_policies(&self, principal: &Principal) -> Result<Vec<Policy>> {
        self.governance_reader(principal, "list retention policies", Target::default())?;
        Ok(self.governance_for_read()?.load()?.policies)
    }

    /// One retention policy (`retention show`): auditors and compliance.
    pub fn retention_policy(&self, principal: &Principal, name: &str) -> Result<Policy> {
        self.governance_reader(principal, "read retention policies", Target::object(name))?;
        self.governance_for_read()?
            .load()?
            .policies
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| no_policy(name))
    }

    /// Removes a retention policy (`retention remove`): compliance only; returns it.
    pub fn remove_retention_policy(&self, principal: &Principal, name: &str) -> Result<Policy> {
        let action = Action::RetentionPolicyChange;
        let target = Target::object(name);
        self.compliance_only(principal, "remove retention policies", action, &target)?;
        let store = self.governance_for_change()?;
        let existing = store
            .load()?
            .policies
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| no_policy(name))?;
        self.within_reach(
            principal,
            &existing.scope.users,
            "remove a retention policy",
            action,
            &target,
        )?;
        self.record_change(principal, action, &target, &[("change", "remove".into())])?;
        RetentionEngine::new(store.as_ref(), &Untouched)
            .remove_policy(name)
            .map_err(|e| self.change_failed(principal, action, &target, e.into()))
    }

    /// Applies retention now (`retention apply`): compliance over every archive.
    /// Expunges what is past its maximum (not held, past minimum) and pending
    /// erasures now allowed; with `dry_run`, changes nothing and says what would go.
    pub fn apply_retention(&self, principal: &Principal, dry_run: bool) -> Result<ApplyReport> {
        let action = Action::RetentionApply;
        let target = Target::default();
        self.compliance_only(principal, "apply retention", action, &target)?;
        if principal.visible(Self::now()) != Visible::All {
            let error = ServiceError::forbidden(format!(
                "{} may not apply retention: it acts on every archive, and its reach is limited",
                principal.label()
            ));
            return Err(self.denial(principal, action, target, error));
        }
        let archive = self.retention_target(!dry_run)?;
        let planned = |report: &ApplyReport| Target {
            messages: report
                .items
                .iter()
                .filter(|i| matches!(i.action, "expunge" | "erase"))
                .map(|i| i.key.id.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            ..Target::default()
        };
        if dry_run {
            let store = self.governance_for_read()?;
            let report =
                RetentionEngine::new(store.as_ref(), archive.as_ref()).apply(Self::now(), true)?;
            // What would go names messages: recorded before it is handed over.
            self.record(
                principal,
                action,
                planned(&report),
                &report_details(&report),
                Outcome::Allowed,
            )
            .map_err(|e| {
                e.context("the audit log cannot record this dry run, so nothing is handed over")
            })?;
            return Ok(report);
        }
        let store = self.governance_for_change()?;
        self.record_change(
            principal,
            action,
            &target,
            &[("dry_run", "false".into()), ("phase", "start".into())],
        )?;
        let report = RetentionEngine::new(store.as_ref(), archive.as_ref())
            .apply(Self::now(), false)
            .map_err(|e| self.change_failed(principal, action, &target, e.into()))?;
        let mut details = report_details(&report);
        details.push(("phase", "done".into()));
        self.audit(principal, action, planned(&report), &details)?;
        Ok(report)
    }

    /// Places a legal hold (`hold create`): compliance only.
    pub fn create_hold(&self, principal: &Principal, spec: &HoldSpec) -> Result<Hold> {
        let action = Action::HoldCreate;
        let target = Target::object(spec.case.clone());
        self.compliance_only(principal, "place legal holds", action, &target)?;
        self.within_reach(principal, &spec.users, "place a hold", action, &target)?;
        let hold = Hold {
            case: spec.case.clone(),
            reason: spec.reason.trim().to_string(),
            scope: Selector {
                users: spec.users.clone(),
                folders: Vec::new(),
                query: query("query", &spec.query)?,
                from: spec.from,
                to: spec.to,
            },
            created: Self::now(),
            created_by: principal.label(),
            released: None,
        };
        hold.validate()?;
        let store = self.governance_for_change()?;
        if store.load()?.holds.iter().any(|h| h.case == hold.case) {
            return Err(ServiceError::conflict(format!(
                "a legal hold for case `{}` exists already (released holds keep their case name)",
                hold.case
            )));
        }
        let mut details = vec![("reason", hold.reason.clone())];
        details.extend(scope_details(&hold.scope));
        self.record_change(principal, action, &target, &details)?;
        RetentionEngine::new(store.as_ref(), &Untouched)
            .create_hold(hold.clone())
            .map_err(|e| self.change_failed(principal, action, &target, e.into()))?;
        Ok(hold)
    }

    /// Every legal hold, released ones included (`hold list`): auditors and compliance.
    pub fn holds(&self, principal: &Principal) -> Result<Vec<Hold>> {
        self.governance_reader(principal, "list legal holds", Target::default())?;
        Ok(self.governance_for_read()?.load()?.holds)
    }

    /// One legal hold and the entries it keeps now, in the archives the caller sees
    /// (`hold show`): auditors and compliance.
    pub fn hold(&self, principal: &Principal, case: &str) -> Result<HoldDetails> {
        self.governance_reader(principal, "read legal holds", Target::object(case))?;
        let store = self.governance_for_read()?;
        let hold = store
            .load()?
            .holds
            .into_iter()
            .find(|h| h.case == case)
            .ok_or_else(|| no_hold(case))?;
        let archive = self.retention_target(false)?;
        let visible = principal.visible(Self::now());
        let keys = RetentionEngine::new(store.as_ref(), archive.as_ref()).held_by(case)?;
        let held = Some(
            keys.into_iter()
                .filter(|k| visible.contains(&k.user))
                .collect(),
        );
        Ok(HoldDetails { hold, held })
    }

    /// Releases a legal hold, with a reason (`hold release`): compliance only.
    pub fn release_hold(&self, principal: &Principal, case: &str, reason: &str) -> Result<Hold> {
        let action = Action::HoldRelease;
        let target = Target::object(case);
        self.compliance_only(principal, "release legal holds", action, &target)?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ServiceError::invalid(format!(
                "invalid reason: releasing the hold of case `{case}` needs a reason"
            )));
        }
        let store = self.governance_for_change()?;
        let existing = store
            .load()?
            .holds
            .into_iter()
            .find(|h| h.case == case)
            .ok_or_else(|| no_hold(case))?;
        self.within_reach(
            principal,
            &existing.scope.users,
            "release a hold",
            action,
            &target,
        )?;
        if !existing.is_active() {
            return Err(ServiceError::conflict(format!(
                "the hold of case `{case}` is released already"
            )));
        }
        self.record_change(principal, action, &target, &[("reason", reason.into())])?;
        let release = Release {
            at: Self::now(),
            by: principal.label(),
            reason: reason.to_string(),
        };
        RetentionEngine::new(store.as_ref(), &Untouched)
            .release_hold(case, release)
            .map_err(|e| self.change_failed(principal, action, &target, e.into()))
    }

    /// Erases messages on request (`archive erase`, GDPR): compliance only, for the
    /// archives in reach. Each archive entry of each id is erased now when past
    /// minimum retention and under no hold, otherwise restricted (hidden from all
    /// but auditors and compliance) and erased by a later `apply` once allowed.
    pub fn erase_messages(
        &self,
        principal: &Principal,
        ids: &[String],
        reason: &str,
    ) -> Result<Vec<ErasureOutcome>> {
        let action = Action::Erasure;
        let ids: Vec<String> = ids
            .iter()
            .map(|id| id.trim().to_ascii_lowercase())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let target = Target::messages(ids.clone());
        self.compliance_only(principal, "erase mail", action, &target)?;
        if ids.is_empty() || ids.iter().any(String::is_empty) {
            return Err(ServiceError::invalid(
                "invalid message id: name at least one message id (as `archive search` prints it)",
            ));
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ServiceError::invalid(
                "invalid reason: an erasure needs a reason",
            ));
        }
        let archive = self.retention_target(true)?;
        let visible = principal.visible(Self::now());
        let mut by_id: BTreeMap<&str, Vec<EntryKey>> =
            ids.iter().map(|id| (id.as_str(), Vec::new())).collect();
        for entry in archive.entries()? {
            if let Some(keys) = by_id.get_mut(entry.key.id.as_str())
                && visible.contains(&entry.key.user)
            {
                keys.push(entry.key);
            }
        }
        let mut keys = Vec::new();
        for (id, found) in by_id {
            if found.is_empty() {
                // A caller who cannot see every archive learns nothing of other archives.
                let error = if visible == Visible::All {
                    ServiceError::not_found(format!("message {id} is not in the archive"))
                } else {
                    self.denial(
                        principal,
                        action,
                        target.clone(),
                        ServiceError::forbidden(format!(
                            "{} may not erase message {id}",
                            principal.label()
                        )),
                    )
                };
                return Err(error);
            }
            keys.extend(found);
        }
        let store = self.governance_for_change()?;
        self.record_change(
            principal,
            action,
            &target,
            &[
                ("reason", reason.into()),
                ("entries", keys.len().to_string()),
                ("phase", "start".into()),
            ],
        )?;
        let outcomes = RetentionEngine::new(store.as_ref(), archive.as_ref())
            .erase(&keys, reason, &principal.label(), Self::now())
            .map_err(|e| self.change_failed(principal, action, &target, e.into()))?;
        let mut details: Vec<(String, String)> = vec![
            ("reason".into(), reason.into()),
            ("phase".into(), "done".into()),
        ];
        details.extend(outcomes.iter().map(outcome_text));
        let details: Vec<(&str, String)> = details
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        self.audit(principal, action, target, &details)?;
        Ok(outcomes)
    }
}

/// Whether the caller sees restricted entries: auditors, compliance officers and the
/// local administrator.
pub(crate) fn sees_restricted(principal: &Principal) -> bool {
    principal
        .require_audit_reader("see restricted mail", Service::now())
        .is_ok()
}

fn no_policy(name: &str) -> ServiceError {
    ServiceError::not_found(format!(
        "no retention policy named `{name}` (see `retention list`)"
    ))
}

fn no_hold(case: &str) -> ServiceError {
    ServiceError::not_found(format!("no legal hold for case `{case}` (see `hold list`)"))
}
