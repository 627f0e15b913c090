//! The audit of the use cases, and the use cases of the audit log itself
//! (`audit list`, `audit verify`, `audit export`).
//!
//! What is recorded: every read of mail content (search with its query and hits,
//! show, export, restore) before the content is handed over, every change
//! (credentials, users, profiles, imports) once made, and every refusal
//! (`Forbidden`) of any use case. A read of content whose event cannot be recorded
//! fails and returns nothing (fail closed); a change whose event cannot be recorded
//! reports the error, saying the change was made. A refusal is recorded on a best
//! effort basis: the refusal stands whatever happens to its event.
//!
//! The log is [`audit_log::FileAuditLog`] in `<data dir>/audit/` unless
//! [`ServiceOptions::audit`](crate::ServiceOptions::audit) supplies another sink.

use std::path::Path;
use std::sync::Arc;

use audit_log::{
    Action, AuditEntry, AuditEvent, AuditSink, FileAuditLog, FileOptions, ListQuery, Outcome,
    Target, VerifyReport,
};

use crate::datadir::{Access, effective_uid};
use crate::error::{ErrorCategory, ResultExt, ServiceError};
use crate::{Principal, Service};

type Result<T> = std::result::Result<T, ServiceError>;

/// Who `principal` is, as the log records it.
pub(crate) fn actor(principal: &Principal, os_user: Option<&str>) -> String {
    match (principal, os_user) {
        (Principal::LocalAdministrator, Some(user)) => format!(
            "the local administrator (OS user {user}, uid {})",
            effective_uid()
        ),
        (Principal::LocalAdministrator, None) => {
            format!("the local administrator (uid {})", effective_uid())
        }
        (Principal::Account(_), _) => principal.label(),
    }
}

impl Service {
    /// The audit sink: the one the options supply, else the file log of the data
    /// directory (opened on first use; the data directory must exist).
    fn audit_sink(&self) -> Result<Arc<dyn AuditSink>> {
        let mut slot = self
            .inner
            .audit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sink) = slot.as_ref() {
            return Ok(sink.clone());
        }
        let dir = self.open(Access::Read)?;
        let path = dir.audit();
        let log = FileAuditLog::open(&path, FileOptions::default())
            .context_with(|| format!("cannot open the audit log in {}", path.display()))?;
        let sink: Arc<dyn AuditSink> = Arc::new(log);
        *slot = Some(sink.clone());
        Ok(sink)
    }

    fn entry(&self, principal: &Principal, action: Action, target: Target) -> AuditEntry {
        let mut entry = AuditEntry::new(
            actor(principal, self.inner.options.os_user.as_deref()),
            action,
            target,
        );
        if let Principal::Account(account) = principal
            && let Some(unblock) = &account.unblock
            && Self::now() < unblock.until
        {
            entry = entry
                .detail("unblock_reason", unblock.reason.clone())
                .detail("unblock_until", unblock.until.to_rfc3339());
        }
        entry
    }

    /// Records an allowed `action`; an error when the event could not be recorded.
    pub(crate) fn audit(
        &self,
        principal: &Principal,
        action: Action,
        target: Target,
        details: &[(&str, String)],
    ) -> Result<()> {
        self.record(principal, action, target, details, Outcome::Allowed)
            .map_err(|e| {
                let what = if action.is_content() {
                    "the audit log cannot record this access to mail, so nothing is handed over"
                } else {
                    "the audit log cannot record this action (it was carried out)"
                };
                e.context(what)
            })
    }

    /// Records `action` with `outcome`; the error of the sink as it is when the event
    /// could not be recorded (callers say what that means for them).
    pub(crate) fn record(
        &self,
        principal: &Principal,
        action: Action,
        target: Target,
        details: &[(&str, String)],
        outcome: Outcome,
    ) -> Result<()> {
        let mut entry = self.entry(principal, action, target).with_outcome(outcome);
        for (key, value) in details {
            entry = entry.detail(*key, value.clone());
        }
        self.audit_sink()
            .and_then(|sink| Ok(sink.append(entry)?))
            .map(drop)
    }

    /// Records an allowed `action`, logging (not returning) a failure to record it.
    pub(crate) fn audit_or_warn(
        &self,
        principal: &Principal,
        action: Action,
        target: Target,
        details: &[(&str, String)],
    ) {
        if let Err(e) = self.audit(principal, action, target, details) {
            tracing::warn!(error = %crate::chain(&e), "an action could not be recorded in the audit log");
        }
    }

    /// Records the refusal `error` of `action` (when it is one) and gives it back.
    pub(crate) fn denial(
        &self,
        principal: &Principal,
        action: Action,
        target: Target,
        error: ServiceError,
    ) -> ServiceError {
        if error.category() == ErrorCategory::Forbidden {
            let entry = self
                .entry(principal, action, target)
                .with_outcome(Outcome::denied(error.to_string()));
            // The refusal stands whether or not its event could be recorded.
            if let Err(e) = self.audit_sink().and_then(|s| Ok(s.append(entry)?)) {
                tracing::warn!(
                    error = %crate::chain(&e),
                    "a refusal could not be recorded in the audit log"
                );
            }
        }
        error
    }

    /// Refuses (and records the refusal) unless the caller manages the installation.
    pub(crate) fn admin_only(
        &self,
        principal: &Principal,
        what: &str,
        action: Action,
        target: Target,
    ) -> Result<()> {
        principal
            .require_admin(what, Self::now())
            .map_err(|e| self.denial(principal, action, target, e))
    }

    /// Refuses (and records the refusal) unless the caller may read the audit log.
    fn audit_reader(&self, principal: &Principal, what: &str) -> Result<()> {
        principal
            .require_audit_reader(what, Self::now())
            .map_err(|e| self.denial(principal, Action::AuditRead, Target::default(), e))
    }

    /// Events of the audit log (`audit list`): auditors, compliance officers and the
    /// local administrator. The reading is recorded too (before the list is taken).
    pub fn audit_events(
        &self,
        principal: &Principal,
        query: &ListQuery,
    ) -> Result<Vec<AuditEvent>> {
        self.audit_reader(principal, "read the audit log")?;
        let sink = self.audit_sink()?;
        // A log too damaged to take more events is still readable.
        self.audit_or_warn(principal, Action::AuditRead, Target::default(), &[]);
        Ok(sink.list(query)?)
    }

    /// Walks the whole audit chain (`audit verify`); the report names the first broken
    /// event and gives the head to note down.
    pub fn verify_audit(&self, principal: &Principal) -> Result<VerifyReport> {
        self.audit_reader(principal, "verify the audit log")?;
        Ok(self.audit_sink()?.verify()?)
    }

    /// Writes every event to `out` as JSON lines, exactly as stored (`audit export`);
    /// returns how many. `out` is replaced atomically.
    pub fn export_audit(&self, principal: &Principal, out: &Path) -> Result<u64> {
        self.audit_reader(principal, "export the audit log")?;
        let sink = self.audit_sink()?;
        self.audit_or_warn(
            principal,
            Action::AuditRead,
            Target::default(),
            &[("out", out.display().to_string())],
        );
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let failed = |e| ServiceError::io("cannot write the audit export", out, e);
        let mut tmp = tempfile::Builder::new()
            .prefix(".audit-export")
            .tempfile_in(parent)
            .map_err(failed)?;
        let count = {
            let mut writer = std::io::BufWriter::new(tmp.as_file_mut());
            sink.export(&mut writer)?
        };
        tmp.as_file().sync_all().map_err(failed)?;
        tmp.persist(out).map_err(|e| failed(e.error))?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_administrator_is_named_with_the_os_user() {
        let named = actor(&Principal::LocalAdministrator, Some("alice"));
        assert!(
            named.starts_with("the local administrator (OS user alice, uid "),
            "{named}"
        );
        assert_eq!(
            actor(&Principal::user("bob"), Some("root")),
            "account `bob`"
        );
    }
}
