//! The view models the pages are functions of: plain data, already decided
//! by the service (what the viewer may see, in which order), formatted for
//! display (dates as text). Every string in them is treated as untrusted and
//! escaped where it is shown.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// A role of the signed-in account, as the navigation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Searches, views, exports and restores their own archive.
    User,
    /// Reads the archives in reach and the audit log.
    Auditor,
    /// Retention policies, legal holds, erasure; reads as an auditor.
    Compliance,
    /// Profiles, users, runs and role grants; no mail by default.
    Admin,
}

/// An entry of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NavItem {
    /// `/`, everyone.
    Search,
    /// `/folders`, everyone.
    Folders,
    /// `/holds`, compliance officers.
    Holds,
    /// `/audit`, auditors.
    Audit,
    /// `/admin`, administrators.
    Admin,
}

/// The signed-in account, for the page frame.
#[derive(Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The name shown in the header.
    pub name: String,
    /// The account's roles (the navigation shows what they allow).
    pub roles: Vec<Role>,
    /// The session's CSRF token, put in every form as the field `csrf`.
    pub csrf: String,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .field("csrf", &"<redacted>")
            .finish()
    }
}

impl Viewer {
    /// Whether the account holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The state of a search as the URL of `GET /` carries it; an empty field
/// is absent from the URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// The query text (`q`).
    pub q: String,
    /// The archive searched (`user`); empty for every archive in reach.
    pub user: String,
    /// The first day (`from`, `YYYY-MM-DD`).
    pub from: String,
    /// The last day (`to`, `YYYY-MM-DD`).
    pub to: String,
}

impl SearchQuery {
    /// The link to this search's first page.
    pub fn href(&self) -> String {
        self.href_with_cursor("")
    }

    /// The link to the page of this search that starts at `cursor` (empty:
    /// the first page).
    pub fn href_with_cursor(&self, cursor: &str) -> String {
        let pairs = [
            ("q", self.q.as_str()),
            ("user", self.user.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
            ("cursor", cursor),
        ];
        let query: Vec<String> = pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", encode_component(v)))
            .collect();
        if query.is_empty() {
            "/".to_string()
        } else {
            format!("/?{}", query.join("&"))
        }
    }

    /// This search narrowed by one more query term (a facet's refinement).
    pub fn with_term(&self, term: &str) -> Self {
        let q = if self.q.trim().is_empty() {
            term.to_string()
        } else {
            format!("{} {term}", self.q.trim())
        };
        Self { q, ..self.clone() }
    }

    /// This search restricted to the days `from` to `to` (a year facet).
    pub fn with_dates(&self, from: &str, to: &str) -> Self {
        Self {
            from: from.to_string(),
            to: to.to_string(),
            ..self.clone()
        }
    }
}

/// The query term that finds the messages of one folder: `folder:"PATH"`,
/// with `"` and `\` escaped by a backslash.
pub fn folder_query_term(path: &str) -> String {
    let escaped = path.replace('\\', "\\\\").replace('"', "\\\"");
    format!("folder:\"{escaped}\"")
}

/// An archive the viewer may choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveOption {
    /// The archive's user name (the `user` parameter).
    pub user: String,
    /// What the list shows (a display name or address).
    pub label: String,
}

/// One message in a result list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// The archive id (`/messages/{id}`).
    pub id: String,
    /// The archive it belongs to.
    pub user: String,
    /// The date, formatted for display.
    pub date: String,
    /// The sender, formatted for display.
    pub from: String,
    /// The subject.
    pub subject: String,
    /// The folder path.
    pub folder: String,
    /// Whether the message has attachments.
    pub has_attachments: bool,
}

/// What a facet groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FacetKind {
    /// The folder path.
    Folder,
    /// The year received.
    Year,
    /// The sender's domain.
    SenderDomain,
    /// Whether the message has attachments.
    HasAttachment,
}

impl FacetKind {
    /// The facet's heading.
    pub fn title(self) -> &'static str {
        match self {
            FacetKind::Folder => "Folder",
            FacetKind::Year => "Year",
            FacetKind::SenderDomain => "Sender domain",
            FacetKind::HasAttachment => "Attachments",
        }
    }
}

/// One value of a facet and the search that selects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacetValue {
    /// What the link shows.
    pub label: String,
    /// How many results have it.
    pub count: u64,
    /// The search narrowed to it (see [`SearchQuery::with_term`],
    /// [`SearchQuery::with_dates`], [`folder_query_term`]).
    pub query: SearchQuery,
    /// Whether the current search already selects it.
    pub active: bool,
}

/// A facet: one grouping of the results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facet {
    /// What it groups by.
    pub kind: FacetKind,
    /// Its values, in display order.
    pub values: Vec<FacetValue>,
}

/// The search page (`GET /`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchView {
    /// The signed-in account.
    pub viewer: Viewer,
    /// The search as asked (empty for the first visit).
    pub query: SearchQuery,
    /// The archives the viewer may search, for the `user` choice.
    pub archives: Vec<ArchiveOption>,
    /// Whether a search was run (false: show the form only).
    pub searched: bool,
    /// This page's results.
    pub hits: Vec<SearchHit>,
    /// The number of results, when known.
    pub total: Option<u64>,
    /// The facets of the results.
    pub facets: Vec<Facet>,
    /// The cursor of the next page, if there is one.
    pub next_cursor: Option<String>,
    /// The cursor of the previous page, if there is one; an empty cursor is
    /// the first page.
    pub prev_cursor: Option<String>,
    /// A message for the viewer about the search (a query that does not
    /// parse), shown above the results.
    pub error: Option<String>,
    /// Whether the viewer may export (shows the export form).
    pub can_export: bool,
}

/// One attachment of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentView {
    /// Its index (`/api/v1/messages/{id}/attachments/{index}`).
    pub index: usize,
    /// Its name as the message gives it (shown through `safe_file_name`).
    pub file_name: String,
    /// Its media type.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A message of the same conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationItem {
    /// Its archive id.
    pub id: String,
    /// Its date, formatted for display.
    pub date: String,
    /// Its sender, formatted for display.
    pub from: String,
    /// Its subject.
    pub subject: String,
}

/// The message page (`GET /messages/{id}`); its body is a sandboxed frame
/// on `/messages/{id}/body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    /// The signed-in account.
    pub viewer: Viewer,
    /// The archive id.
    pub id: String,
    /// The archive it belongs to.
    pub user: String,
    /// Its folder path.
    pub folder: String,
    /// The subject.
    pub subject: String,
    /// The sender.
    pub from: String,
    /// The `To` recipients.
    pub to: Vec<String>,
    /// The `Cc` recipients.
    pub cc: Vec<String>,
    /// The date, formatted for display.
    pub date: String,
    /// The attachments.
    pub attachments: Vec<AttachmentView>,
    /// How many remote images the sanitiser removed from the body.
    pub blocked_remote_images: usize,
    /// The conversation, in date order (this message included).
    pub conversation: Vec<ConversationItem>,
    /// Whether the viewer may restore it (shows the restore form).
    pub can_restore: bool,
}

/// A folder of an archive and how many messages it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderCount {
    /// The folder path, `/`-separated.
    pub path: String,
    /// Its messages.
    pub count: u64,
}

/// The folders page (`GET /folders?user=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldersView {
    /// The signed-in account.
    pub viewer: Viewer,
    /// The archive shown.
    pub user: String,
    /// The archives the viewer may browse.
    pub archives: Vec<ArchiveOption>,
    /// Its folders (any order).
    pub folders: Vec<FolderCount>,
}

/// A legal hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRow {
    /// Its id (the release form's `id`).
    pub id: String,
    /// The case name.
    pub name: String,
    /// The query it keeps (empty: everything of its archives).
    pub query: String,
    /// The archives it covers (empty: all).
    pub users: Vec<String>,
    /// When it was created, formatted for display.
    pub created: String,
    /// Who created it.
    pub created_by: String,
    /// For a released hold: when, by whom and why, formatted for display.
    pub released: Option<String>,
}

/// A retention policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    /// Its id (the remove form's `id`).
    pub id: String,
    /// Its name.
    pub name: String,
    /// The minimum days kept, if any.
    pub min_days: Option<u32>,
    /// The maximum days kept, if any.
    pub max_days: Option<u32>,
    /// What it covers, described (archives, folders, query).
    pub scope: String,
    /// What the days count from (`received` or `archived`).
    pub basis: String,
}

/// The holds and retention page (`GET /holds`, compliance officers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldsView {
    /// The signed-in account.
    pub viewer: Viewer,
    /// The legal holds, active and released.
    pub holds: Vec<HoldRow>,
    /// The retention policies.
    pub policies: Vec<PolicyRow>,
    /// The outcome of the last change, shown above the tables.
    pub notice: Option<String>,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Its sequence number.
    pub seq: u64,
    /// When, formatted for display.
    pub time: String,
    /// Who.
    pub actor: String,
    /// What (the event kind).
    pub action: String,
    /// On what (archive, message, profile…).
    pub target: String,
    /// The outcome (`ok`, `refused`, …).
    pub outcome: String,
    /// Further detail.
    pub detail: String,
}

/// The filter of the audit page, as its URL carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Events from this time or sequence number on (`since`).
    pub since: String,
    /// Only this actor's events (`actor`).
    pub actor: String,
    /// At most this many events (`limit`).
    pub limit: String,
}

/// The audit page (`GET /audit`, auditors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditView {
    /// The signed-in account.
    pub viewer: Viewer,
    /// The filter applied.
    pub filter: AuditFilter,
    /// The events, oldest first.
    pub events: Vec<AuditRow>,
    /// The `since` of the next page, if there is one.
    pub next_since: Option<String>,
}

/// Everything but RFC 3986 unreserved characters is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a URL query value or path segment.
pub fn encode_component(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_urls_keep_the_state_and_encode_it() {
        let q = SearchQuery {
            q: "a&b=c".into(),
            user: "anna".into(),
            from: String::new(),
            to: "2024-12-31".into(),
        };
        assert_eq!(q.href(), "/?q=a%26b%3Dc&user=anna&to=2024-12-31");
        assert_eq!(
            q.href_with_cursor("x y"),
            "/?q=a%26b%3Dc&user=anna&to=2024-12-31&cursor=x%20y"
        );
        assert_eq!(SearchQuery::default().href(), "/");
        assert_eq!(q.with_term("has:attachment").q, "a&b=c has:attachment");
        assert_eq!(folder_query_term("In\"box\\x"), "folder:\"In\\\"box\\\\x\"");
    }

    #[test]
    fn the_csrf_token_stays_out_of_debug() {
        let v = Viewer {
            name: "n".into(),
            roles: vec![Role::User],
            csrf: "secret-token".into(),
        };
        assert!(!format!("{v:?}").contains("secret-token"));
    }
}
