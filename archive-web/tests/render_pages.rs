//! The pages carry the forms and links the routes expect: field names,
//! actions, CSRF tokens, the search state in every link, and no script or
//! inline style (the page CSP allows neither).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "hostile/support.rs"]
mod support;

use archive_web::render::{
    APP_CSS, ArchiveOption, AttachmentView, AuditFilter, AuditRow, AuditView, ConversationItem,
    Facet, FacetKind, FacetValue, FolderCount, FoldersView, HoldRow, HoldsView, MessageView,
    PolicyRow, Role, SearchHit, SearchQuery, SearchView, Viewer, audit_page, error_page,
    folder_query_term, folders_page, holds_page, message_page, search_page, signin_page,
};
use support::{Tag, start_tags};

fn viewer(roles: Vec<Role>) -> Viewer {
    Viewer {
        name: "Anna Auditor".into(),
        roles,
        csrf: "csrf-123".into(),
    }
}

/// The names of the fields of the form posting to `action`.
fn form_fields(page: &str, action: &str) -> Vec<String> {
    let tags = start_tags(page);
    let start = tags
        .iter()
        .position(|t| t.name == "form" && t.attr("action") == Some(action))
        .unwrap_or_else(|| panic!("no form to {action} in {page}"));
    tags[start + 1..]
        .iter()
        .take_while(|t| t.name != "form")
        .filter(|t| matches!(t.name.as_str(), "input" | "select" | "textarea"))
        .filter_map(|t| t.attr("name").map(str::to_string))
        .collect()
}

fn links(page: &str) -> Vec<String> {
    start_tags(page)
        .iter()
        .filter(|t| t.name == "a")
        .filter_map(|t: &Tag| t.attr("href").map(str::to_string))
        .collect()
}

/// Every page is a whole document, with the stylesheet, and nothing the
/// page CSP forbids.
fn assert_standard(page: &str) {
    assert!(
        page.starts_with("<!DOCTYPE html><html lang=\"en\">"),
        "{page}"
    );
    assert!(page.ends_with("</html>"));
    assert!(page.contains("<link rel=\"stylesheet\" href=\"/static/app.css\">"));
    let lower = page.to_ascii_lowercase();
    assert!(!lower.contains("<script") && !lower.contains("<style"));
    for tag in start_tags(page) {
        for (name, _) in &tag.attrs {
            assert!(
                name != "style" && !name.starts_with("on"),
                "{name} in {page}"
            );
        }
    }
}

#[test]
fn signin_offers_the_local_form_and_microsoft() {
    let page = signin_page(
        "tok",
        Some("Wrong user name or password"),
        true,
        "/messages/7",
    );
    assert_standard(&page);
    assert_eq!(
        form_fields(&page, "/auth/local"),
        ["csrf", "return_to", "username", "password"]
    );
    assert!(page.contains("value=\"/messages/7\""));
    assert!(links(&page).contains(&"/auth/signin?return_to=%2Fmessages%2F7".to_string()));
    assert!(page.contains("Wrong user name or password"));
    assert!(!page.contains("Sign out"));
    let local_only = signin_page("tok", None, false, "/");
    assert!(!local_only.contains("/auth/signin"));
}

fn search_view() -> SearchView {
    let query = SearchQuery {
        q: "budget 2024".into(),
        user: "anna".into(),
        from: "2024-01-01".into(),
        to: String::new(),
    };
    SearchView {
        viewer: viewer(vec![Role::Auditor]),
        query: query.clone(),
        archives: vec![
            ArchiveOption {
                user: "anna".into(),
                label: "Anna".into(),
            },
            ArchiveOption {
                user: "bob".into(),
                label: "Bob".into(),
            },
        ],
        searched: true,
        hits: vec![SearchHit {
            id: "m/1".into(),
            user: "anna".into(),
            date: "2024-03-01".into(),
            from: "Bob".into(),
            subject: "Budget".into(),
            folder: "Inbox".into(),
            has_attachments: true,
        }],
        total: Some(12),
        facets: vec![
            Facet {
                kind: FacetKind::Folder,
                values: vec![FacetValue {
                    label: "Inbox".into(),
                    count: 9,
                    query: query.with_term(&folder_query_term("Inbox")),
                    active: false,
                }],
            },
            Facet {
                kind: FacetKind::Year,
                values: vec![FacetValue {
                    label: "2024".into(),
                    count: 12,
                    query: query.with_dates("2024-01-01", "2024-12-31"),
                    active: true,
                }],
            },
        ],
        next_cursor: Some("c-2".into()),
        prev_cursor: Some(String::new()),
        error: None,
        can_export: true,
    }
}

#[test]
fn search_keeps_its_state_in_forms_facets_and_paging() {
    let view = search_view();
    let page = search_page(&view);
    assert_standard(&page);
    assert_eq!(form_fields(&page, "/"), ["q", "user", "from", "to"]);
    assert_eq!(
        form_fields(&page, "/export"),
        ["csrf", "q", "user", "from", "to", "format"]
    );
    assert!(page.contains("<option value=\"mbox\" selected>"));
    assert!(page.contains("<option value=\"eml-zip\">"));
    assert!(page.contains("<option value=\"anna\" selected>Anna</option>"));
    let hrefs = links(&page);
    assert!(hrefs.contains(&"/messages/m%2F1".to_string()), "{hrefs:?}");
    assert!(hrefs.contains(
        &"/?q=budget%202024%20folder%3A%22Inbox%22&user=anna&from=2024-01-01".to_string()
    ));
    assert!(hrefs.contains(&"/?q=budget%202024&user=anna&from=2024-01-01&cursor=c-2".to_string()));
    assert!(hrefs.contains(&"/?q=budget%202024&user=anna&from=2024-01-01".to_string()));
    assert!(page.contains("12 messages"));
    assert!(page.contains("<span class=\"active\">2024</span>"));
    assert!(page.contains("aria-label=\"Has attachments\""));
    let no_export = search_page(&SearchView {
        can_export: false,
        ..view
    });
    assert!(!no_export.contains("/export"));
}

#[test]
fn message_page_frames_the_body_and_offers_downloads_and_restore() {
    let view = MessageView {
        viewer: viewer(vec![Role::User]),
        id: "m1".into(),
        user: "anna".into(),
        folder: "Inbox".into(),
        subject: "Quarterly".into(),
        from: "Bob <bob@example.com>".into(),
        to: vec!["anna@example.com".into()],
        cc: vec![],
        date: "2024-03-01 09:00".into(),
        attachments: vec![AttachmentView {
            index: 1,
            file_name: "../../etc/passwd".into(),
            content_type: "text/plain".into(),
            size: 10,
        }],
        blocked_remote_images: 4,
        conversation: vec![
            ConversationItem {
                id: "m0".into(),
                date: "d0".into(),
                from: "Anna".into(),
                subject: "Quarterly".into(),
            },
            ConversationItem {
                id: "m1".into(),
                date: "d1".into(),
                from: "Bob".into(),
                subject: "Re: Quarterly".into(),
            },
        ],
        can_restore: true,
    };
    let page = message_page(&view);
    assert_standard(&page);
    let tags = start_tags(&page);
    let frame = tags.iter().find(|t| t.name == "iframe").expect("frame");
    assert_eq!(frame.attr("src"), Some("/messages/m1/body"));
    assert_eq!(
        frame.attr("sandbox"),
        Some("allow-popups allow-popups-to-escape-sandbox")
    );
    assert_eq!(frame.attr("referrerpolicy"), Some("no-referrer"));
    let hrefs = links(&page);
    assert!(hrefs.contains(&"/api/v1/messages/m1/attachments/1".to_string()));
    assert!(hrefs.contains(&"/api/v1/messages/m1/raw".to_string()));
    assert!(hrefs.contains(&"/messages/m0".to_string()));
    assert!(
        !hrefs.contains(&"/messages/m1".to_string()),
        "the current message is no link"
    );
    assert!(page.contains(">passwd</a>"));
    assert!(page.contains("Blocked 4 remote images."));
    assert_eq!(form_fields(&page, "/restore"), ["csrf", "id", "to_folder"]);
    let read_only = message_page(&MessageView {
        can_restore: false,
        blocked_remote_images: 0,
        ..view
    });
    assert!(!read_only.contains("/restore") && !read_only.contains("remote image"));
}

#[test]
fn folders_are_a_tree_of_search_links() {
    let page = folders_page(&FoldersView {
        viewer: viewer(vec![Role::User]),
        user: "anna".into(),
        archives: vec![],
        folders: vec![
            FolderCount {
                path: "Inbox".into(),
                count: 3,
            },
            FolderCount {
                path: "Inbox/Projects".into(),
                count: 2,
            },
        ],
    });
    assert_standard(&page);
    assert!(page.contains(
        "<li><a href=\"/?q=folder%3A%22Inbox%22&amp;user=anna\">Inbox</a> <span class=\"count\">3</span><ul><li><a href=\"/?q=folder%3A%22Inbox%2FProjects%22&amp;user=anna\">Projects</a>"
    ), "{page}");
}

#[test]
fn holds_and_audit_pages_carry_their_forms() {
    let holds = holds_page(&HoldsView {
        viewer: viewer(vec![Role::Compliance]),
        holds: vec![HoldRow {
            id: "h1".into(),
            name: "Case 7".into(),
            query: "from:bob".into(),
            users: vec!["anna".into()],
            created: "2024-01-01".into(),
            created_by: "carol".into(),
            released: None,
        }],
        policies: vec![PolicyRow {
            id: "p1".into(),
            name: "Seven years".into(),
            min_days: Some(2555),
            max_days: None,
            scope: "all archives".into(),
            basis: "received".into(),
        }],
        notice: None,
    });
    assert_standard(&holds);
    assert_eq!(
        form_fields(&holds, "/holds/release"),
        ["csrf", "id", "reason"]
    );
    assert_eq!(
        form_fields(&holds, "/holds"),
        ["csrf", "name", "query", "users", "reason"]
    );
    assert_eq!(form_fields(&holds, "/retention/remove"), ["csrf", "id"]);
    assert_eq!(
        form_fields(&holds, "/retention"),
        [
            "csrf", "name", "min_days", "max_days", "users", "folders", "query", "basis"
        ]
    );
    assert!(holds.contains("href=\"/holds\" aria-current=\"page\""));

    let audit = audit_page(&AuditView {
        viewer: viewer(vec![Role::Auditor]),
        filter: AuditFilter {
            since: "100".into(),
            actor: "anna".into(),
            limit: String::new(),
        },
        events: vec![AuditRow {
            seq: 101,
            time: "t".into(),
            actor: "anna".into(),
            action: "read".into(),
            target: "m1".into(),
            outcome: "ok".into(),
            detail: String::new(),
        }],
        next_since: Some("102".into()),
    });
    assert_standard(&audit);
    assert_eq!(form_fields(&audit, "/audit"), ["since", "actor", "limit"]);
    assert!(links(&audit).contains(&"/audit?since=102&actor=anna".to_string()));
    assert!(audit.contains("<td>101</td>"));
}

#[test]
fn error_pages_say_what_happened() {
    let page = error_page(404, "No such message.");
    assert_standard(&page);
    assert!(page.contains("<h1>404 Not found</h1>"));
    assert!(page.contains("No such message."));
}

#[test]
fn the_stylesheet_styles_the_message_frame() {
    assert!(APP_CSS.contains("iframe.message-body"));
    assert!(!APP_CSS.contains("url("), "the stylesheet loads nothing");
}
