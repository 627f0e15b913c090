//! The one error type of the service, and the category a front end maps it to
//! (the web layer answers 404, 403, 400, 409, 503 or 500 from [`ServiceError::category`]).

use std::path::PathBuf;

use archive_restore::RestoreError;
use archive_store::ArchiveError;
use directory_sync::DirectoryError;
use m365_auth::AuthError;
use m365_mailbox::MailboxError;
use profile_engine::EngineError;

/// What a failure means to the caller, independent of its cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// The thing asked for does not exist (or the caller could have seen it and it is not there).
    NotFound,
    /// The caller may not do this, or may not see what it asked for.
    Forbidden,
    /// The request itself is wrong: a bad name, argument or input file.
    Invalid,
    /// The request collides with what exists (already exists, already running, in use).
    Conflict,
    /// Something the service needs is not there right now (tenant, network, disk space, lock).
    Unavailable,
    /// A fault of the installation or a bug: storage, corruption, internal failure.
    Internal,
}

/// What went wrong in a use case. Each variant names the culprit; the library
/// errors keep their own variants (and sources) so nothing of them is lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Something named does not exist.
    #[error("{message}")]
    NotFound {
        /// What is missing, and how to create it.
        message: String,
    },
    /// The caller may not do this.
    #[error("{message}")]
    Forbidden {
        /// What was refused, and why.
        message: String,
    },
    /// The request is wrong.
    #[error("{message}")]
    Invalid {
        /// What is wrong, naming the argument, field or file.
        message: String,
    },
    /// The request collides with what exists.
    #[error("{message}")]
    Conflict {
        /// What collides.
        message: String,
    },
    /// Something needed is unavailable right now.
    #[error("{message}")]
    Unavailable {
        /// What is missing, and what to do about it.
        message: String,
    },
    /// A file of the data directory could not be read, written or created.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done (`cannot create data directory`, ...).
        action: String,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The directory or the local user store failed.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// Credentials or tokens failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A mailbox could not be read.
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    /// A profile, a run or its state failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Retention policies, legal holds or erasure failed.
    #[error(transparent)]
    Retention(#[from] retention::RetentionError),
    /// A restore failed as a whole.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] audit_log::AuditError),
    /// An error with what the service was doing when it happened.
    #[error("{context}")]
    Context {
        /// What was being done (`profile nightly`, `cannot open the archive DIR`, ...).
        context: String,
        /// The error.
        #[source]
        source: Box<ServiceError>,
    },
}

impl ServiceError {
    /// A [`ServiceError::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound {
            message: message.into(),
        }
    }

    /// A [`ServiceError::Forbidden`].
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden {
            message: message.into(),
        }
    }

    /// A [`ServiceError::Invalid`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
        }
    }

    /// A [`ServiceError::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict {
            message: message.into(),
        }
    }

    /// A [`ServiceError::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
        }
    }

    /// A [`ServiceError::Io`].
    pub fn io(action: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action: action.into(),
            path: path.into(),
            source,
        }
    }

    /// This error with `context` in front.
    pub fn context(self, context: impl Into<String>) -> Self {
        Self::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The error beneath any [`ServiceError::Context`] layers.
    pub fn root(&self) -> &ServiceError {
        match self {
            Self::Context { source, .. } => source.root(),
            other => other,
        }
    }

    /// What the failure means to the caller (how a front end answers it).
    pub fn category(&self) -> ErrorCategory {
        use ErrorCategory as C;
        match self {
            Self::NotFound { .. } => C::NotFound,
            Self::Forbidden { .. } => C::Forbidden,
            Self::Invalid { .. } => C::Invalid,
            Self::Conflict { .. } => C::Conflict,
            Self::Unavailable { .. } => C::Unavailable,
            Self::Io { source, .. } => io_category(source.kind()),
            Self::Archive(e) => archive_category(e),
            Self::Directory(e) => directory_category(e),
            Self::Auth(e) => auth_category(e),
            Self::Mailbox(e) => mailbox_category(e),
            Self::Engine(e) => engine_category(e),
            Self::Retention(e) => retention_category(e),
            Self::Restore(e) => restore_category(e),
            Self::Audit(e) => audit_category(e),
            Self::Context { source, .. } => source.category(),
        }
    }
}

fn retention_category(e: &retention::RetentionError) -> ErrorCategory {
    use retention::RetentionError as R;
    match e {
        R::Invalid { .. } => ErrorCategory::Invalid,
        R::NotFound { .. } => ErrorCategory::NotFound,
        R::Conflict(_) => ErrorCategory::Conflict,
        R::Io { source, .. } => io_category(source.kind()),
        _ => ErrorCategory::Internal,
    }
}

fn io_category(kind: std::io::ErrorKind) -> ErrorCategory {
    use std::io::ErrorKind as K;
    match kind {
        K::NotFound => ErrorCategory::NotFound,
        K::PermissionDenied => ErrorCategory::Forbidden,
        K::StorageFull | K::QuotaExceeded => ErrorCategory::Unavailable,
        K::AlreadyExists => ErrorCategory::Conflict,
        _ => ErrorCategory::Internal,
    }
}

fn archive_category(e: &ArchiveError) -> ErrorCategory {
    use ErrorCategory as C;
    if e.is_disk_full() {
        return C::Unavailable;
    }
    match e {
        ArchiveError::NotFound { .. } => C::NotFound,
        ArchiveError::AccessDenied { .. } => C::Forbidden,
        ArchiveError::BadInput { .. } | ArchiveError::InvalidRequest { .. } => C::Invalid,
        ArchiveError::Locked { .. } | ArchiveError::ReadOnly { .. } => C::Unavailable,
        ArchiveError::Io { source, .. } => io_category(source.kind()),
        _ => C::Internal,
    }
}

fn directory_category(e: &DirectoryError) -> ErrorCategory {
    use ErrorCategory as C;
    match e {
        DirectoryError::HasArchive { .. } => C::Conflict,
        DirectoryError::Auth(a) => auth_category(a),
        DirectoryError::Graph { status, .. } => match status {
            401 | 403 => C::Forbidden,
            404 => C::NotFound,
            _ => C::Unavailable,
        },
        DirectoryError::Network { .. } => C::Unavailable,
        DirectoryError::GroupNotFound { .. } => C::NotFound,
        DirectoryError::Config { .. } => C::Invalid,
        _ => C::Internal,
    }
}

fn auth_category(e: &AuthError) -> ErrorCategory {
    use ErrorCategory as C;
    match e {
        AuthError::CredentialNotFound { .. } => C::NotFound,
        AuthError::CredentialExists { .. } => C::Conflict,
        AuthError::Unreachable { .. }
        | AuthError::Timeout { .. }
        | AuthError::ServiceUnavailable { .. }
        | AuthError::Tls { .. } => C::Unavailable,
        AuthError::Store { .. } | AuthError::Signing { .. } => C::Internal,
        // Refusals by the identity platform and unusable credential settings: the
        // credential is wrong, which the administrator fixes.
        _ => C::Invalid,
    }
}

fn mailbox_category(e: &MailboxError) -> ErrorCategory {
    use ErrorCategory as C;
    match e {
        MailboxError::NoMailbox { .. }
        | MailboxError::UnknownUser { .. }
        | MailboxError::FolderGone { .. }
        | MailboxError::MessageGone { .. } => C::NotFound,
        MailboxError::AccessDenied { .. } | MailboxError::TokenRejected { .. } => C::Forbidden,
        MailboxError::TooLarge { .. } | MailboxError::Config(_) => C::Invalid,
        MailboxError::RetriesExhausted { .. } | MailboxError::Timeout { .. } => C::Unavailable,
        MailboxError::Auth(a) => auth_category(a),
        _ => C::Internal,
    }
}

fn restore_category(e: &RestoreError) -> ErrorCategory {
    use ErrorCategory as C;
    match e {
        RestoreError::UnknownIds { .. } | RestoreError::UnknownFolder { .. } => C::NotFound,
        RestoreError::InvalidRequest { .. }
        | RestoreError::Unparseable { .. }
        | RestoreError::ExactMimeTooLarge { .. } => C::Invalid,
        RestoreError::Archive { source } => archive_category(source),
        RestoreError::Mailbox { source, .. } => mailbox_category(source),
        _ => C::Internal,
    }
}

fn audit_category(e: &audit_log::AuditError) -> ErrorCategory {
    use audit_log::AuditError as A;
    if e.is_disk_full() {
        return ErrorCategory::Unavailable;
    }
    match e {
        A::Io { source, .. } => io_category(source.kind()),
        A::Unavailable(_) => ErrorCategory::Unavailable,
        _ => ErrorCategory::Internal,
    }
}

fn engine_category(e: &EngineError) -> ErrorCategory {
    use ErrorCategory as C;
    match e {
        EngineError::InvalidProfile(_)
        | EngineError::InvalidName { .. }
        | EngineError::InvalidSchedule { .. } => C::Invalid,
        EngineError::ProfileNotFound { .. } | EngineError::TargetUserMissing { .. } => C::NotFound,
        EngineError::AlreadyRunning { .. } => C::Conflict,
        EngineError::Auth(a) => auth_category(a),
        EngineError::Directory(d) => directory_category(d),
        EngineError::Archive(a) => archive_category(a),
        EngineError::Io { source, .. } => io_category(source.kind()),
        EngineError::Checkpoint { .. }
        | EngineError::TaskFailed(_)
        | EngineError::Incomplete(_) => C::Internal,
        _ => C::Internal,
    }
}

/// `error` and each of its causes, separated by `: ` (as `anyhow`'s `{:#}` prints them).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Adds context to a fallible result (the service's counterpart of `anyhow::Context`).
pub trait ResultExt<T> {
    /// Puts `context()` in front of the error.
    fn context_with(self, context: impl FnOnce() -> String) -> Result<T, ServiceError>;
}

impl<T, E: Into<ServiceError>> ResultExt<T> for Result<T, E> {
    fn context_with(self, context: impl FnOnce() -> String) -> Result<T, ServiceError> {
        self.map_err(|e| e.into().context(context()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: ServiceError, expected: ErrorCategory) {
        let text = error.to_string();
        assert_eq!(error.category(), expected, "{text}");
    }

    #[test]
    fn each_error_has_its_category() {
        use ErrorCategory as C;
        check(ServiceError::not_found("x"), C::NotFound);
        check(ServiceError::forbidden("x").context("outer"), C::Forbidden);
        check(
            ArchiveError::NotFound { id: "ab".into() }.into(),
            C::NotFound,
        );
        check(
            ArchiveError::Locked {
                dir: "/a".into(),
                lock: "/a/LOCK".into(),
            }
            .into(),
            C::Unavailable,
        );
        check(
            AuthError::CredentialNotFound { name: "c".into() }.into(),
            C::NotFound,
        );
        check(
            EngineError::ProfileNotFound { name: "p".into() }.into(),
            C::NotFound,
        );
        check(EngineError::InvalidProfile("bad".into()).into(), C::Invalid);
        check(
            ServiceError::io(
                "cannot write",
                "/x",
                std::io::Error::from(std::io::ErrorKind::StorageFull),
            ),
            C::Unavailable,
        );
        check(
            DirectoryError::HasArchive { name: "a".into() }.into(),
            C::Conflict,
        );
    }

    #[test]
    fn context_keeps_the_source_chain() {
        let error = ServiceError::from(ArchiveError::NotFound { id: "ab".into() })
            .context("cannot open the archive /d");
        assert_eq!(error.to_string(), "cannot open the archive /d");
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("message ab is not in the archive"));
        assert!(matches!(
            error.root(),
            ServiceError::Archive(ArchiveError::NotFound { .. })
        ));
    }
}
