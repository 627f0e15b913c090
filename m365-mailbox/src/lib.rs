//! Mailboxes over Microsoft Graph: folder tree, per-folder delta enumeration,
//! MIME download and deletion, with Outlook throttling handled inside.
//!
//! The [`MailboxSource`] trait is the seam the profile engine uses; callers never
//! see throttling or retries except in [`MailboxMetrics`]. [`MailboxWriter`] is the write
//! side (restore): folder paths and messages created, within the per-mailbox upload
//! budget ([`budget`]).
//!
//! Two implementations:
//! - [`GraphMailboxSource`]: Microsoft Graph v1.0 through graph-rs-sdk, with our own page
//!   loop ([`graph`]), per-mailbox admission control shared by the whole process
//!   ([`throttle`]) and retry rules ([`retry`]), both from `m365_auth::transport`.
//! - [`MemoryMailboxSource`]: an in-memory mailbox service with real delta semantics and
//!   injectable failures, for the tests of the crates built on this seam.

pub mod budget;
pub mod graph;
pub mod memory;
pub mod paths;
pub mod retry;
pub mod throttle;
pub mod wire;
pub mod write;

pub use budget::{UploadBudget, UploadBudgets};
pub use graph::{GraphMailboxOptions, GraphMailboxSource};
pub use memory::{InjectedFailure, MemoryMailboxSource, Operation, WrittenFlags};
pub use retry::RetryPolicy;
pub use throttle::{GateLimits, ThrottleRegistry};
pub use write::{
    BodyKind, FolderRestoreState, Importance, MailboxWriter, NewAttachment, NewMessage, Recipient,
    RestoreKey, RestoredItem, WriteLimits,
};

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

/// One folder of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// Graph folder id (immutable id form).
    pub id: String,
    /// Display path from the root, segments joined by `/`; a `/` or `\` inside a
    /// display name is escaped as `\/` or `\\`.
    pub path: String,
    /// The folder's own display name.
    pub display_name: String,
    /// Well-known name (`inbox`, `sentitems`, ...) when the folder is one.
    pub well_known_name: Option<String>,
    /// Parent folder id (`None` for children of the root).
    pub parent_id: Option<String>,
    /// Items in the folder (all kinds, as Graph counts them).
    pub total_items: u64,
    /// Unread items in the folder.
    pub unread_items: u64,
    /// Number of child folders.
    pub child_folders: u64,
    /// Hidden folder (`isHidden`).
    pub hidden: bool,
    /// A search folder (`mailSearchFolder`): its items live elsewhere, callers skip it.
    pub search_folder: bool,
}

/// Opaque position in a folder's delta sequence (a Graph `deltaLink`).
/// Persist it after the changes it follows are durably archived.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeltaCursor(pub String);

/// What Graph tells about one message in a delta or listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSummary {
    /// Immutable message id.
    pub id: String,
    /// Folder holding the message.
    pub folder_id: String,
    /// `receivedDateTime`.
    pub received: Option<DateTime<Utc>>,
    /// `internetMessageId` (the Message-ID header).
    pub internet_message_id: Option<String>,
    /// `isRead`.
    pub is_read: bool,
    /// Flag status is `flagged`.
    pub flagged: bool,
    /// `PR_MESSAGE_SIZE` in bytes, when Graph gave it.
    pub size: Option<u64>,
    /// Subject, for progress and logs.
    pub subject: Option<String>,
}

/// One item of a folder's change stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaEvent {
    /// A message was added or changed.
    Upsert(MessageSummary),
    /// A message left the folder (deleted or moved away).
    Removed {
        /// Immutable id of the message.
        id: String,
    },
    /// The saved cursor was rejected (410 / `syncStateNotFound`): the folder is being
    /// enumerated again from scratch; events after this one are a full listing.
    Restarted,
    /// The round is complete: save this cursor for the next incremental pass.
    /// Always the last item of a successful stream.
    Done(DeltaCursor),
}

/// How to delete a message from its mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// `move` to Deleted Items.
    MoveToDeletedItems,
    /// `DELETE` (to Recoverable Items).
    SoftDelete,
    /// `permanentDelete`.
    HardDelete,
}

/// Raw RFC 822 bytes of a message, complete and checked against the transfer length.
/// Small messages stay in memory; large ones are spooled to a private temporary file
/// so memory stays bounded whatever the message size.
#[derive(Debug)]
pub enum MimeContent {
    /// The bytes, in memory.
    Memory(Bytes),
    /// The bytes, in a temporary file deleted on drop.
    Spooled(tempfile::TempPath),
}

impl MimeContent {
    /// Path of the spooled file, if spooled.
    pub fn path(&self) -> Option<&Path> {
        match self {
            MimeContent::Memory(_) => None,
            MimeContent::Spooled(p) => Some(p),
        }
    }
}

/// Request counters for one mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MailboxMetrics {
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// Responses that were 429.
    pub throttled: u64,
    /// Requests repeated after a throttle, fault or timeout.
    pub retries: u64,
    /// Body bytes received.
    pub bytes: u64,
}

/// The seam between the profile engine and a mail service.
#[async_trait]
pub trait MailboxSource: Send + Sync {
    /// Can this mailbox be read, and if not, why (the "Test" button).
    async fn probe(&self, mailbox: &str) -> Result<(), MailboxError>;

    /// The whole folder tree, parents before children. Hidden folders under the
    /// mailbox's root are included; the Recoverable Items tree (outside that root) is not:
    /// see [`MailboxSource::recoverable_folders`].
    async fn folders(&self, mailbox: &str) -> Result<Vec<Folder>, MailboxError>;

    /// The Recoverable Items tree (Graph: `mailFolders/RecoverableItemsRoot/childFolders`
    /// with hidden folders): Deletions, Purges, Versions, DiscoveryHolds and what else the
    /// mailbox holds there, parents before children, each with [`Folder::hidden`] set, paths
    /// under [`RECOVERABLE_ITEMS_PATH`] and the well-known names of [`RECOVERABLE_FOLDERS`].
    /// Empty when the mailbox has no such tree, and for archive mailboxes (which are read
    /// by ids only). The default has none.
    async fn recoverable_folders(&self, mailbox: &str) -> Result<Vec<Folder>, MailboxError> {
        let _ = mailbox;
        Ok(Vec::new())
    }

    /// The id (`MBX:…`) of the mailbox's In-Place (online) Archive, `None` when it has none
    /// (Graph beta: `settings/exchange` → `inPlaceArchiveMailboxId`). The id is a mailbox
    /// for every other method of this trait: its folders, changes and MIME are read through
    /// the archive's own requests (by ids only) and gate. The default knows no archive.
    async fn archive_mailbox(&self, mailbox: &str) -> Result<Option<String>, MailboxError> {
        let _ = mailbox;
        Ok(None)
    }

    /// Changes in one folder since `cursor` (all messages when `None`), page by page,
    /// ending with [`DeltaEvent::Done`]. Pages are fetched as the stream is polled.
    fn changes(
        &self,
        mailbox: &str,
        folder_id: &str,
        cursor: Option<DeltaCursor>,
    ) -> BoxStream<'static, Result<DeltaEvent, MailboxError>>;

    /// A hint that [`MailboxSource::changes`] is about to be called for these folders
    /// with these cursors: a source may fetch their first pages together (Graph: one
    /// `$batch` per 20 folders) and start each stream from the page it holds. Failures
    /// are not reported here: the stream then asks on its own. The default does nothing.
    async fn prefetch_changes(&self, mailbox: &str, folders: &[(String, Option<DeltaCursor>)]) {
        let _ = (mailbox, folders);
    }

    /// The raw MIME bytes of a message; at most `max_bytes`.
    async fn fetch_mime(
        &self,
        mailbox: &str,
        message_id: &str,
        max_bytes: u64,
    ) -> Result<MimeContent, MailboxError>;

    /// Deletes a message in the given mode.
    async fn delete(
        &self,
        mailbox: &str,
        message_id: &str,
        mode: DeleteMode,
    ) -> Result<(), MailboxError>;

    /// Counters for a mailbox so far.
    fn metrics(&self, mailbox: &str) -> MailboxMetrics;

    /// What this source can take at once; callers size their concurrency from it.
    fn limits(&self) -> SourceLimits;
}

/// Display path of the Recoverable Items root: its folders' paths start with it and `/`.
pub const RECOVERABLE_ITEMS_PATH: &str = "Recoverable Items";

/// The Recoverable Items folders an archiver may read: (well-known name, display name).
/// Deletions holds soft-deleted mail; Purges what was purged from it (or hard-deleted);
/// Versions earlier versions of changed items; DiscoveryHolds what a hold keeps.
pub const RECOVERABLE_FOLDERS: &[(&str, &str)] = &[
    ("recoverableitemsdeletions", "Deletions"),
    ("recoverableitemspurges", "Purges"),
    ("recoverableitemsversions", "Versions"),
    ("recoverableitemsdiscoveryholds", "DiscoveryHolds"),
];

/// Whether `mailbox` is an Exchange mailbox id (`MBX:<guid>@<tenant guid>`) as
/// [`MailboxSource::archive_mailbox`] returns, rather than an address.
pub fn is_archive_mailbox_id(mailbox: &str) -> bool {
    mailbox
        .get(..4)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("MBX:"))
}

/// How much a [`MailboxSource`] serves at once, so callers need not know its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    /// Requests served concurrently for one mailbox; more are queued or refused.
    pub requests_per_mailbox: usize,
    /// Folders whose first delta pages one [`MailboxSource::prefetch_changes`] call
    /// fetches together.
    pub prefetch_folders: usize,
}

impl SourceLimits {
    /// Exchange Online through Graph: four concurrent requests per mailbox, twenty
    /// requests in a `$batch`.
    pub const GRAPH: SourceLimits = SourceLimits {
        requests_per_mailbox: 4,
        prefetch_folders: 20,
    };
}

/// What went wrong with a mailbox, in terms a caller can act on.
///
/// Throttling, transient faults and a single expired token never surface here: they are
/// retried inside. What does surface is either permanent for this mailbox (no mailbox,
/// access denied, unknown user), permanent for one object (folder or message gone, too
/// large), or the end of patience ([`MailboxError::RetriesExhausted`], [`MailboxError::Timeout`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// The user has no Exchange Online mailbox (unlicensed, guest or on-premises).
    #[error("{mailbox} has no Exchange Online mailbox (unlicensed, guest or on-premises)")]
    NoMailbox {
        /// The mailbox address.
        mailbox: String,
    },
    /// Graph refused access to this mailbox: usually an Exchange application access policy
    /// that leaves the mailbox out of the app's scope, or a missing `Mail.Read` permission
    /// (`Mail.ReadWrite` to delete or write mail).
    #[error(
        "access to {mailbox} denied ({code}: {message}); check the Exchange application access \
         policy and the app's Mail.Read application permission (Mail.ReadWrite to delete or \
         restore mail)"
    )]
    AccessDenied {
        /// The mailbox address.
        mailbox: String,
        /// Graph error code, e.g. `ErrorAccessDenied`.
        code: String,
        /// Graph's message.
        message: String,
    },
    /// No such user in the tenant.
    #[error("{mailbox} is not a user of this tenant ({code}); check the address")]
    UnknownUser {
        /// The mailbox address.
        mailbox: String,
        /// Graph error code, e.g. `ErrorInvalidUser`.
        code: String,
    },
    /// The folder no longer exists (deleted or moved out of reach since it was listed).
    #[error("folder {folder_id} of {mailbox} no longer exists")]
    FolderGone {
        /// The mailbox address.
        mailbox: String,
        /// The folder id that was asked for.
        folder_id: String,
    },
    /// The message no longer exists (deleted or moved since it was listed).
    #[error("message {message_id} of {mailbox} no longer exists")]
    MessageGone {
        /// The mailbox address.
        mailbox: String,
        /// The message id that was asked for.
        message_id: String,
    },
    /// The message is larger than the size cap given to [`MailboxSource::fetch_mime`].
    #[error(
        "message {message_id} of {mailbox} exceeds the {limit}-byte cap ({size} bytes or more)"
    )]
    TooLarge {
        /// The mailbox address.
        mailbox: String,
        /// The message id.
        message_id: String,
        /// Bytes known so far (announced length, or what arrived before the cap was hit).
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// A write would exceed what the service takes in one request (Graph: 4 MB), e.g. an
    /// exact-MIME create of a large message.
    #[error(
        "{mailbox}: {what} is {size} bytes, over the service's limit of {limit} bytes for {limit_name}"
    )]
    RequestTooLarge {
        /// The mailbox address.
        mailbox: String,
        /// What was to be sent (e.g. `the MIME of message <id>`).
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
        /// The limit's name, e.g. `an exact-MIME create`.
        limit_name: String,
    },
    /// The service cannot render this one item as MIME (Graph: "text does not support
    /// structured data"); it fails the same way every time, the mailbox goes on.
    #[error(
        "message {message_id} of {mailbox} cannot be converted to MIME by the service ({code}: {message})"
    )]
    Unconvertible {
        /// The mailbox address.
        mailbox: String,
        /// The message id.
        message_id: String,
        /// Graph error code (`""` when the answer carried none).
        code: String,
        /// Graph's message.
        message: String,
    },
    /// Transient failures (5xx, connection resets, truncated bodies, throttling) persisted
    /// beyond the retry limits.
    #[error("{mailbox}: gave up after {attempts} attempts of {operation}: {last}")]
    RetriesExhausted {
        /// The mailbox address.
        mailbox: String,
        /// What was being done (e.g. `GET messages/{id}/$value`).
        operation: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure seen.
        last: String,
    },
    /// Requests kept exceeding the per-request timeout.
    #[error("{mailbox}: {operation} timed out after {after:?} ({attempts} attempts)")]
    Timeout {
        /// The mailbox address.
        mailbox: String,
        /// What was being done.
        operation: String,
        /// The per-request timeout.
        after: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// No access token could be obtained.
    #[error(transparent)]
    Auth(#[from] m365_auth::AuthError),
    /// Graph rejected a freshly acquired token too (401 twice in a row).
    #[error(
        "{mailbox}: Graph rejected a freshly acquired token ({code}: {message}); check the \
         app's application permissions, admin consent and the cloud (Graph URL)"
    )]
    TokenRejected {
        /// The mailbox address.
        mailbox: String,
        /// Graph error code, e.g. `InvalidAuthenticationToken`.
        code: String,
        /// Graph's message.
        message: String,
    },
    /// Graph refused a request with a status this client has no better error for.
    #[error("{mailbox}: Graph refused {operation} ({})", refusal_text(*.status, .code, .message))]
    Refused {
        /// The mailbox address.
        mailbox: String,
        /// What was being done.
        operation: String,
        /// The HTTP status.
        status: u16,
        /// Graph error code (`""` when the answer carried none).
        code: String,
        /// Graph's message.
        message: String,
    },
    /// A successful answer whose body is not what Graph documents.
    #[error("{mailbox}: malformed answer to {operation}: {source}")]
    Malformed {
        /// The mailbox address.
        mailbox: String,
        /// What was being done.
        operation: String,
        /// What was wrong with the JSON.
        #[source]
        source: wire::PageError,
    },
    /// Graph answered something this client does not understand or did not expect.
    #[error("{mailbox}: unexpected answer to {operation}: {detail}")]
    Protocol {
        /// The mailbox address.
        mailbox: String,
        /// What was being done.
        operation: String,
        /// What was wrong (status, Graph error code, parse error).
        detail: String,
    },
    /// A local I/O failure (spooling a large message to disk).
    #[error("{mailbox}: local I/O failed while {doing}: {source}")]
    Io {
        /// The mailbox address.
        mailbox: String,
        /// What was being done.
        doing: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The source was configured wrongly (bad Graph URL, unreadable CA certificate).
    #[error("mailbox source misconfigured: {0}")]
    Config(String),
}

/// `HTTP 400 ErrorInvalidIdMalformed: message`, or `HTTP 405` without a Graph error.
fn refusal_text(status: u16, code: &str, message: &str) -> String {
    if code.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status} {code}: {message}")
    }
}

impl MailboxError {
    /// Whether the error concerns the whole mailbox (no point trying its other folders or
    /// messages now), as opposed to one folder or message.
    pub fn is_mailbox_wide(&self) -> bool {
        matches!(
            self,
            MailboxError::NoMailbox { .. }
                | MailboxError::AccessDenied { .. }
                | MailboxError::UnknownUser { .. }
                | MailboxError::Auth(_)
                | MailboxError::TokenRejected { .. }
                | MailboxError::Config(_)
        )
    }

    /// Whether trying again later may succeed: the retry limits ran out on throttling,
    /// faults or timeouts, or Graph refused with a server-side status.
    pub fn is_transient(&self) -> bool {
        match self {
            MailboxError::RetriesExhausted { .. } | MailboxError::Timeout { .. } => true,
            MailboxError::Refused { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            MailboxError::Auth(e) => e.is_transient(),
            _ => false,
        }
    }

    /// Whether the same request will fail the same way until something changes (the
    /// mailbox, the message, the app's permissions or the configuration).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            MailboxError::NoMailbox { .. }
                | MailboxError::AccessDenied { .. }
                | MailboxError::UnknownUser { .. }
                | MailboxError::FolderGone { .. }
                | MailboxError::MessageGone { .. }
                | MailboxError::TooLarge { .. }
                | MailboxError::RequestTooLarge { .. }
                | MailboxError::Unconvertible { .. }
                | MailboxError::TokenRejected { .. }
                | MailboxError::Config(_)
        )
    }
}
