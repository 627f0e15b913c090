//! The archive's pages, each a pure function of a view model
//! ([`crate::render::models`]) returning a complete HTML document. The
//! templates are maud's, which escapes every interpolated value; the only
//! unescaped markup is what these functions build themselves (the message
//! frame from [`iframe_tag`]). No page needs JavaScript, and none carries
//! an inline style or script, so [`crate::render::csp::PAGE_CSP`] holds.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::render::csp::iframe_tag;
use crate::render::disposition::safe_file_name;
use crate::render::models::{
    ArchiveOption, AuditView, FolderCount, FoldersView, HoldsView, MessageView, NavItem, Role,
    SearchView, Viewer, encode_component, folder_query_term,
};
pub use crate::render::style::APP_CSS;

/// A complete page: the head (stylesheet `/static/app.css`), the navigation
/// the viewer's roles allow with `active` marked, the signed-in name and
/// the sign-out form (with the CSRF field `csrf`), and `content`.
/// Without a viewer (sign-in, errors) the page has no navigation.
pub fn layout(
    viewer: Option<&Viewer>,
    active: Option<NavItem>,
    title: &str,
    content: Markup,
) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " · Mail archive" }
                link rel="stylesheet" href="/static/app.css";
            }
            body {
                header.top {
                    a.brand href="/" { "Mail archive" }
                    @if let Some(viewer) = viewer {
                        nav aria-label="Main" {
                            ul {
                                @for (item, href, label) in nav_items(viewer) {
                                    li {
                                        @if Some(item) == active {
                                            a.active href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        div.account {
                            span.who { (viewer.name) }
                            form.signout method="post" action="/auth/signout" {
                                input type="hidden" name="csrf" value=(viewer.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (content) }
            }
        }
    }
    .into_string()
}

fn nav_items(viewer: &Viewer) -> Vec<(NavItem, &'static str, &'static str)> {
    let mut items = vec![
        (NavItem::Search, "/", "Search"),
        (NavItem::Folders, "/folders", "Folders"),
    ];
    if viewer.has(Role::Compliance) {
        items.push((NavItem::Holds, "/holds", "Holds & retention"));
    }
    if viewer.has(Role::Auditor) {
        items.push((NavItem::Audit, "/audit", "Audit"));
    }
    if viewer.has(Role::Admin) {
        items.push((NavItem::Admin, "/admin", "Admin"));
    }
    items
}

/// A `return_to` that stays in the archive: a path starting with one `/`
/// (no `//host`, no backslash, no control character), otherwise `/`.
pub fn safe_return_to(return_to: &str) -> &str {
    let ok = return_to.starts_with('/')
        && !return_to.starts_with("//")
        && !return_to.contains('\\')
        && !return_to.chars().any(char::is_control);
    if ok { return_to } else { "/" }
}

/// The sign-in page: the local account form (`POST /auth/local` with
/// `username`, `password`, `csrf`, `return_to`) and, when `entra_enabled`,
/// the link to `/auth/signin?return_to=…`. `return_to` goes through
/// [`safe_return_to`].
pub fn signin_page(
    csrf: &str,
    error: Option<&str>,
    entra_enabled: bool,
    return_to: &str,
) -> String {
    let return_to = safe_return_to(return_to);
    let entra_href = format!("/auth/signin?return_to={}", encode_component(return_to));
    let content = html! {
        section.signin {
            h1 { "Sign in" }
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
            @if entra_enabled {
                p { a.button.primary href=(entra_href) { "Sign in with Microsoft" } }
                p.or { "or with a local account" }
            }
            form method="post" action="/auth/local" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="return_to" value=(return_to);
                label { "User name" input type="text" name="username" autocomplete="username" required; }
                label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        }
    };
    layout(None, None, "Sign in", content)
}

fn archive_select(
    name: &str,
    archives: &[ArchiveOption],
    selected: &str,
    all_label: Option<&str>,
) -> Markup {
    html! {
        select name=(name) {
            @if let Some(all) = all_label {
                option value="" selected[selected.is_empty()] { (all) }
            }
            @for a in archives {
                option value=(a.user) selected[a.user == selected] { (a.label) }
            }
        }
    }
}

fn message_href(id: &str) -> String {
    format!("/messages/{}", encode_component(id))
}

/// The search page: the form (`GET /` with `q`, `user`, `from`, `to`), the
/// results (date, sender, subject linking to the message, folder, an
/// attachment mark), the facets as links keeping the search, the paging
/// links and the export form (`POST /export` with `format`, `csrf` and the
/// search's fields).
pub fn search_page(view: &SearchView) -> String {
    let q = &view.query;
    let all = (view.archives.len() > 1).then_some("All archives");
    let content = html! {
        section.search {
            h1 { "Search" }
            form.search-form method="get" action="/" role="search" {
                label.q { "Query" input type="search" name="q" value=(q.q) autofocus; }
                @if !view.archives.is_empty() {
                    label { "Archive" (archive_select("user", &view.archives, &q.user, all)) }
                }
                label { "From" input type="date" name="from" value=(q.from); }
                label { "To" input type="date" name="to" value=(q.to); }
                button type="submit" { "Search" }
            }
            @if let Some(error) = &view.error {
                p.error role="alert" { (error) }
            }
            @if view.searched {
                div.results-layout {
                    @if !view.facets.is_empty() {
                        aside.facets aria-label="Refine" {
                            @for facet in &view.facets {
                                @if !facet.values.is_empty() {
                                    h2 { (facet.kind.title()) }
                                    ul {
                                        @for v in &facet.values {
                                            li {
                                                @if v.active {
                                                    span.active { (v.label) }
                                                } @else {
                                                    a href=(v.query.href()) { (v.label) }
                                                }
                                                " " span.count { (v.count) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    div.results {
                        p.summary {
                            @match view.total {
                                Some(1) => "1 message",
                                Some(n) => { (n) " messages" },
                                None => { (view.hits.len()) " messages on this page" },
                            }
                        }
                        @if view.hits.is_empty() {
                            p.empty { "No messages match." }
                        } @else {
                            table.hits {
                                thead { tr { th { "Date" } th { "From" } th { "Subject" } th { "Folder" } th { span.sr { "Attachments" } } } }
                                tbody {
                                    @for hit in &view.hits {
                                        tr {
                                            td.date { (hit.date) }
                                            td.from { (hit.from) }
                                            td.subject {
                                                a href=(message_href(&hit.id)) {
                                                    @if hit.subject.trim().is_empty() { "(no subject)" } @else { (hit.subject) }
                                                }
                                            }
                                            td.folder { (hit.folder) }
                                            td.attach {
                                                @if hit.has_attachments {
                                                    span title="Has attachments" aria-label="Has attachments" { "📎" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        nav.paging aria-label="Pages" {
                            @if let Some(prev) = &view.prev_cursor {
                                a rel="prev" href=(q.href_with_cursor(prev)) { "← Previous" }
                            }
                            @if let Some(next) = &view.next_cursor {
                                a rel="next" href=(q.href_with_cursor(next)) { "Next →" }
                            }
                        }
                        @if view.can_export {
                            form.export method="post" action="/export" {
                                input type="hidden" name="csrf" value=(view.viewer.csrf);
                                input type="hidden" name="q" value=(q.q);
                                input type="hidden" name="user" value=(q.user);
                                input type="hidden" name="from" value=(q.from);
                                input type="hidden" name="to" value=(q.to);
                                label { "Export as "
                                    select name="format" {
                                        option value="mbox" selected { "mbox" }
                                        option value="eml-zip" { "EML files (zip)" }
                                    }
                                }
                                button type="submit" { "Export" }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(Some(&view.viewer), Some(NavItem::Search), "Search", content)
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The message page: the headers, the attachments with their download
/// links (`/api/v1/messages/{id}/attachments/{n}`), the body in the
/// sandboxed frame on `/messages/{id}/body`, a note of the remote images
/// removed, the raw download link, the restore form (`POST /restore` with
/// `csrf`, `id`, optional `to_folder`) and the conversation.
pub fn message_page(view: &MessageView) -> String {
    let id = encode_component(&view.id);
    let subject = if view.subject.trim().is_empty() {
        "(no subject)"
    } else {
        view.subject.as_str()
    };
    let frame = iframe_tag(
        &format!("/messages/{id}/body"),
        &format!("Message: {subject}"),
    );
    let content = html! {
        article.message {
            h1 { (subject) }
            dl.headers {
                dt { "From" } dd { (view.from) }
                @if !view.to.is_empty() { dt { "To" } dd { (view.to.join(", ")) } }
                @if !view.cc.is_empty() { dt { "Cc" } dd { (view.cc.join(", ")) } }
                dt { "Date" } dd { (view.date) }
                dt { "Archive" } dd { (view.user) }
                dt { "Folder" } dd {
                    a href=(crate::render::models::SearchQuery { q: folder_query_term(&view.folder), user: view.user.clone(), ..Default::default() }.href()) { (view.folder) }
                }
            }
            @if !view.attachments.is_empty() {
                section.attachments {
                    h2 { "Attachments" }
                    ul {
                        @for a in &view.attachments {
                            li {
                                a href=(format!("/api/v1/messages/{id}/attachments/{}", a.index)) download=(safe_file_name(&a.file_name)) {
                                    (safe_file_name(&a.file_name))
                                }
                                " " span.meta { (a.content_type) ", " (human_size(a.size)) }
                            }
                        }
                    }
                }
            }
            @if view.blocked_remote_images > 0 {
                p.notice {
                    @if view.blocked_remote_images == 1 { "Blocked 1 remote image." }
                    @else { "Blocked " (view.blocked_remote_images) " remote images." }
                    " Remote content is never loaded from archived mail."
                }
            }
            div.body { (PreEscaped(frame)) }
            p.actions {
                a href=(format!("/api/v1/messages/{id}/raw")) download=(format!("{}.eml", safe_file_name(subject))) { "Download original (.eml)" }
            }
            @if view.can_restore {
                form.restore method="post" action="/restore" {
                    input type="hidden" name="csrf" value=(view.viewer.csrf);
                    input type="hidden" name="id" value=(view.id);
                    label { "Restore to folder (optional)" input type="text" name="to_folder" placeholder="Restored/YYYY-MM-DD"; }
                    button type="submit" { "Restore to mailbox" }
                }
            }
            @if view.conversation.len() > 1 {
                section.conversation {
                    h2 { "Conversation" }
                    ol {
                        @for item in &view.conversation {
                            li {
                                @if item.id == view.id {
                                    span.current aria-current="true" { (item.date) " · " (item.from) " · " (item.subject) }
                                } @else {
                                    a href=(message_href(&item.id)) { (item.date) " · " (item.from) " · " (item.subject) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(Some(&view.viewer), Some(NavItem::Search), subject, content)
}

/// A node of the folder tree built from `/`-separated paths.
#[derive(Default)]
struct FolderNode<'a> {
    name: &'a str,
    path: String,
    count: Option<u64>,
    children: Vec<FolderNode<'a>>,
}

fn folder_tree(folders: &[FolderCount]) -> FolderNode<'_> {
    let mut sorted: Vec<&FolderCount> = folders.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut root = FolderNode::default();
    for folder in sorted {
        let mut node = &mut root;
        let mut path = String::new();
        for part in folder.path.split('/').filter(|p| !p.is_empty()) {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            let index = match node.children.iter().position(|c| c.name == part) {
                Some(i) => i,
                None => {
                    node.children.push(FolderNode {
                        name: part,
                        path: path.clone(),
                        count: None,
                        children: Vec::new(),
                    });
                    node.children.len() - 1
                }
            };
            node = &mut node.children[index];
        }
        node.count = Some(node.count.unwrap_or(0) + folder.count);
    }
    root
}

fn folder_list(nodes: &[FolderNode<'_>], user: &str) -> Markup {
    html! {
        ul {
            @for node in nodes {
                li {
                    @let query = crate::render::models::SearchQuery { q: folder_query_term(&node.path), user: user.to_string(), ..Default::default() };
                    a href=(query.href()) { (node.name) }
                    @if let Some(count) = node.count { " " span.count { (count) } }
                    @if !node.children.is_empty() { (folder_list(&node.children, user)) }
                }
            }
        }
    }
}

/// The folders page: the archive's folder tree with counts, each folder a
/// link to the search `folder:"PATH"` in that archive.
pub fn folders_page(view: &FoldersView) -> String {
    let tree = folder_tree(&view.folders);
    let content = html! {
        section.folders {
            h1 { "Folders" }
            @if view.archives.len() > 1 {
                form method="get" action="/folders" {
                    label { "Archive" (archive_select("user", &view.archives, &view.user, None)) }
                    button type="submit" { "Show" }
                }
            }
            @if tree.children.is_empty() {
                p.empty { "No folders." }
            } @else {
                nav.tree aria-label="Folders" { (folder_list(&tree.children, &view.user)) }
            }
        }
    };
    layout(
        Some(&view.viewer),
        Some(NavItem::Folders),
        "Folders",
        content,
    )
}

fn days(value: Option<u32>) -> String {
    value.map_or_else(|| "—".to_string(), |d| d.to_string())
}

/// The holds and retention page: the legal holds (with a release form,
/// `POST /holds/release`: `csrf`, `id`, `reason`), the form creating one
/// (`POST /holds`: `csrf`, `name`, `query`, `users`, `reason`), the
/// retention policies (remove: `POST /retention/remove` with `csrf`, `id`)
/// and the form adding one (`POST /retention`: `csrf`, `name`, `min_days`,
/// `max_days`, `users`, `folders`, `query`, `basis`).
pub fn holds_page(view: &HoldsView) -> String {
    let csrf = &view.viewer.csrf;
    let content = html! {
        section.holds {
            h1 { "Holds & retention" }
            @if let Some(notice) = &view.notice { p.notice role="status" { (notice) } }
            h2 { "Legal holds" }
            @if view.holds.is_empty() {
                p.empty { "No legal holds." }
            } @else {
                table {
                    thead { tr { th { "Case" } th { "Query" } th { "Archives" } th { "Created" } th { "Status" } } }
                    tbody {
                        @for h in &view.holds {
                            tr {
                                td { (h.name) }
                                td { code { (h.query) } }
                                td { @if h.users.is_empty() { "all" } @else { (h.users.join(", ")) } }
                                td { (h.created) " by " (h.created_by) }
                                td {
                                    @if let Some(released) = &h.released {
                                        "Released: " (released)
                                    } @else {
                                        form.inline method="post" action="/holds/release" {
                                            input type="hidden" name="csrf" value=(csrf);
                                            input type="hidden" name="id" value=(h.id);
                                            input type="text" name="reason" placeholder="Reason" required aria-label="Reason for release";
                                            button type="submit" { "Release" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.create method="post" action="/holds" {
                h3 { "New legal hold" }
                input type="hidden" name="csrf" value=(csrf);
                label { "Case name" input type="text" name="name" required; }
                label { "Query (empty: everything)" input type="text" name="query"; }
                label { "Archives (comma-separated, empty: all)" input type="text" name="users"; }
                label { "Reason" input type="text" name="reason" required; }
                button type="submit" { "Create hold" }
            }
            h2 { "Retention policies" }
            @if view.policies.is_empty() {
                p.empty { "No retention policies: everything is kept." }
            } @else {
                table {
                    thead { tr { th { "Policy" } th { "Minimum days" } th { "Maximum days" } th { "Counted from" } th { "Covers" } th { } } }
                    tbody {
                        @for p in &view.policies {
                            tr {
                                td { (p.name) }
                                td { (days(p.min_days)) }
                                td { (days(p.max_days)) }
                                td { (p.basis) }
                                td { (p.scope) }
                                td {
                                    form.inline method="post" action="/retention/remove" {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="id" value=(p.id);
                                        button type="submit" { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.create method="post" action="/retention" {
                h3 { "New retention policy" }
                input type="hidden" name="csrf" value=(csrf);
                label { "Name" input type="text" name="name" required; }
                label { "Minimum days" input type="number" name="min_days" min="0"; }
                label { "Maximum days" input type="number" name="max_days" min="0"; }
                label { "Archives (comma-separated, empty: all)" input type="text" name="users"; }
                label { "Folders (comma-separated, empty: all)" input type="text" name="folders"; }
                label { "Query (empty: everything)" input type="text" name="query"; }
                label { "Counted from"
                    select name="basis" {
                        option value="received" selected { "received date" }
                        option value="archived" { "archive date" }
                    }
                }
                button type="submit" { "Add policy" }
            }
        }
    };
    layout(
        Some(&view.viewer),
        Some(NavItem::Holds),
        "Holds & retention",
        content,
    )
}

/// The audit page: the filter form (`GET /audit` with `since`, `actor`,
/// `limit`), the events and a link to the next page.
pub fn audit_page(view: &AuditView) -> String {
    let f = &view.filter;
    let next_href = view.next_since.as_ref().map(|since| {
        let mut href = format!("/audit?since={}", encode_component(since));
        for (k, v) in [("actor", &f.actor), ("limit", &f.limit)] {
            if !v.is_empty() {
                href.push_str(&format!("&{k}={}", encode_component(v)));
            }
        }
        href
    });
    let content = html! {
        section.audit {
            h1 { "Audit log" }
            form.filter method="get" action="/audit" {
                label { "Since" input type="text" name="since" value=(f.since) placeholder="sequence or YYYY-MM-DD"; }
                label { "Actor" input type="text" name="actor" value=(f.actor); }
                label { "Limit" input type="number" name="limit" value=(f.limit) min="1"; }
                button type="submit" { "Filter" }
            }
            @if view.events.is_empty() {
                p.empty { "No events." }
            } @else {
                table.events {
                    thead { tr { th { "#" } th { "Time" } th { "Actor" } th { "Action" } th { "Target" } th { "Outcome" } th { "Detail" } } }
                    tbody {
                        @for e in &view.events {
                            tr {
                                td { (e.seq) } td { (e.time) } td { (e.actor) } td { (e.action) }
                                td { (e.target) } td { (e.outcome) } td { (e.detail) }
                            }
                        }
                    }
                }
            }
            @if let Some(href) = next_href {
                nav.paging { a rel="next" href=(href) { "Next →" } }
            }
        }
    };
    layout(
        Some(&view.viewer),
        Some(NavItem::Audit),
        "Audit log",
        content,
    )
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad request",
        401 => "Sign-in required",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method not allowed",
        409 => "Conflict",
        413 => "Too large",
        429 => "Too many requests",
        500 => "Internal error",
        502 => "Bad gateway",
        503 => "Unavailable",
        507 => "Insufficient storage",
        _ => "Error",
    }
}

/// An error page for `status` with `message` (no navigation: the viewer
/// may be unknown).
pub fn error_page(status: u16, message: &str) -> String {
    let phrase = reason_phrase(status);
    let content = html! {
        section.error-page {
            h1 { (status) " " (phrase) }
            p { (message) }
            p { a href="/" { "Back to search" } }
        }
    };
    layout(None, None, &format!("{status} {phrase}"), content)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(roles: Vec<Role>) -> Viewer {
        Viewer {
            name: "Anna".into(),
            roles,
            csrf: "tok".into(),
        }
    }

    #[test]
    fn navigation_follows_roles() {
        let page = layout(Some(&viewer(vec![Role::User])), None, "t", html! {});
        assert!(page.contains("href=\"/folders\""));
        assert!(
            !page.contains("href=\"/holds\"")
                && !page.contains("href=\"/audit\"")
                && !page.contains("href=\"/admin\"")
        );
        let page = layout(
            Some(&viewer(vec![Role::Compliance, Role::Auditor, Role::Admin])),
            Some(NavItem::Audit),
            "t",
            html! {},
        );
        assert!(page.contains("href=\"/holds\"") && page.contains("href=\"/admin\""));
        assert!(
            page.contains("<a class=\"active\" href=\"/audit\" aria-current=\"page\">Audit</a>")
        );
        assert!(page.contains("name=\"csrf\" value=\"tok\""));
    }

    #[test]
    fn return_to_stays_local() {
        assert_eq!(safe_return_to("/messages/1"), "/messages/1");
        assert_eq!(safe_return_to("//evil.example"), "/");
        assert_eq!(safe_return_to("https://evil.example"), "/");
        assert_eq!(safe_return_to("/\\evil.example"), "/");
        let page = signin_page("c", Some("Wrong password"), true, "//evil.example/");
        assert!(page.contains("/auth/signin?return_to=%2F\""));
        assert!(page.contains("Wrong password"));
    }

    #[test]
    fn folders_form_a_tree_with_counts() {
        let folders = [
            FolderCount {
                path: "Inbox/Sub".into(),
                count: 2,
            },
            FolderCount {
                path: "Inbox".into(),
                count: 5,
            },
            FolderCount {
                path: "Archive/2020/Q1".into(),
                count: 1,
            },
        ];
        let tree = folder_tree(&folders);
        let names: Vec<&str> = tree.children.iter().map(|c| c.name).collect();
        assert_eq!(names, ["Archive", "Inbox"]);
        assert_eq!(tree.children[1].count, Some(5));
        assert_eq!(tree.children[1].children[0].path, "Inbox/Sub");
        assert_eq!(tree.children[0].count, None);
        assert_eq!(tree.children[0].children[0].children[0].count, Some(1));
    }

    #[test]
    fn sizes_read_as_humans_write_them() {
        assert_eq!(human_size(10), "10 B");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(5 * 1024 * 1024), "5.0 MB");
    }
}
