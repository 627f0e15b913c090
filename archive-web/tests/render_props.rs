//! Properties of the renderer over arbitrary input: sanitised mail is inert
//! whatever it was, download names and headers are always safe, and every
//! page escapes every value of its view model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "hostile/support.rs"]
mod support;

use archive_web::render::{
    ArchiveOption, AttachmentView, AuditFilter, AuditRow, AuditView, BodyPolicy, ConversationItem,
    Facet, FacetKind, FacetValue, FolderCount, FoldersView, HoldRow, HoldsView, MessageView,
    PolicyRow, Role, SearchHit, SearchQuery, SearchView, Viewer, audit_page, content_disposition,
    error_page, folders_page, holds_page, message_page, safe_file_name, sanitize_html, search_page,
    signin_page,
};
use proptest::prelude::*;
use support::{assert_inert, start_tags};

/// Pieces of hostile and ordinary mail, combined in any order (also cutting
/// tags and attributes in half).
const PIECES: &[&str] = &[
    "<script>alert(1)</script>",
    "<script",
    "</script>",
    "<img src=x onerror=alert(1)>",
    "<img src=\"https://t.example/p.gif\">",
    "<img src=\"cid:logo@example.com\">",
    "<img srcset=\"//t.example/a 2x\">",
    "<a href=\"javascript:alert(1)\">",
    "<a href=\"https://ok.example/\">",
    "<a href=\"",
    "<img src=\"",
    "<p style=\"",
    "<div title=\"",
    "\"",
    "'",
    ">",
    "<",
    "javascript:alert(1)",
    "JaVaScRiPt&#58;alert(1)",
    "&#106;avascript:",
    "https://t.example/x",
    "url(https://t.example/y)",
    "expression(alert(1))",
    "@import 'https://t.example/z';",
    "color:red;",
    " onclick=alert(1) ",
    " onmouseover=\"alert(1)\" ",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<style>@import url(https://t.example/s.css)</style>",
    "<style>",
    "<iframe src=\"https://t.example/\">",
    "<iframe srcdoc=\"<script>alert(1)</script>\">",
    "<object data=\"https://t.example/o\">",
    "<embed src=\"https://t.example/e\">",
    "<base href=\"https://t.example/\">",
    "<meta http-equiv=refresh content=\"0;url=https://t.example/\">",
    "<link rel=stylesheet href=\"https://t.example/l.css\">",
    "<form action=\"https://t.example/f\"><input name=p><button formaction=javascript:alert(1)>",
    "<table background=\"https://t.example/b.png\"><tr><td>",
    "</td></tr></table>",
    "<!--",
    "-->",
    "<![CDATA[",
    "]]>",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
    "<xmp>",
    "<textarea>",
    "<template>",
    "<b>bold</b>",
    "<p>text</p>",
    "plain text ",
    "&amp;",
    "\u{202E}",
    "\0",
];

fn hostile_html() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..16).prop_map(|parts| parts.concat())
}

fn policy() -> BodyPolicy {
    BodyPolicy::new().with_cid("logo@example.com", "/messages/m/inline/1")
}

proptest! {
    #[test]
    fn sanitized_hostile_mail_is_inert(html in hostile_html()) {
        let out = sanitize_html(&html, &policy());
        assert_inert(&out.html);
        prop_assert!(!out.html.to_ascii_lowercase().contains("<script"));
    }

    #[test]
    fn sanitized_arbitrary_text_is_inert(html in any::<String>()) {
        assert_inert(&sanitize_html(&html, &policy()).html);
    }

    #[test]
    fn sanitized_markup_like_text_is_inert(html in "[<>a-zA-Z0-9 =\"'/:;&#()!\\[\\]-]{0,300}") {
        assert_inert(&sanitize_html(&html, &policy()).html);
    }

    #[test]
    fn sanitized_styles_are_inert(style in "([ -~]|é|\\u{2028}){0,120}") {
        let html = format!("<p style=\"{}\">x</p><img src=\"cid:logo@example.com\" style='{}'>", style.replace('"', "&quot;"), style.replace('\'', "&#39;"));
        assert_inert(&sanitize_html(&html, &policy()).html);
    }

    #[test]
    fn safe_file_names_are_safe(name in any::<String>()) {
        let safe = safe_file_name(&name);
        prop_assert!(!safe.is_empty());
        prop_assert!(safe != "." && safe != "..");
        prop_assert!(!safe.starts_with('.'));
        prop_assert!(!safe.contains(['/', '\\']), "{:?}", safe);
        prop_assert!(!safe.chars().any(char::is_control), "{:?}", safe);
        prop_assert!(!safe.chars().any(|c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')), "{:?}", safe);
        prop_assert!(safe.len() <= 150);
        prop_assert_eq!(safe_file_name(&safe), safe.clone(), "not a fixed point");
    }

    #[test]
    fn safe_file_names_from_paths(parts in prop::collection::vec("[a-zA-Z.\\u{202E} ]{0,6}", 0..6), sep in prop::sample::select(&["/", "\\"][..])) {
        let safe = safe_file_name(&parts.join(sep));
        prop_assert!(!safe.is_empty() && !safe.starts_with('.') && !safe.contains(['/', '\\']));
    }

    #[test]
    fn content_disposition_is_one_valid_header_line(name in any::<String>()) {
        let header = content_disposition(&name);
        prop_assert!(header.bytes().all(|b| (0x20..0x7f).contains(&b)), "{:?}", header);
        let rest = header.strip_prefix("attachment; filename=\"").expect("prefix");
        let (quoted, ext) = rest.split_once("\"; filename*=UTF-8''").expect("two parameters");
        prop_assert!(!quoted.contains(['"', '\\']));
        prop_assert!(ext.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~%".contains(&b)), "{:?}", ext);
        let decoded = percent_decode(ext);
        prop_assert_eq!(decoded, safe_file_name(&name));
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// Generates distinct hostile values: each field gets one.
struct Values {
    base: String,
    n: usize,
}

impl Values {
    fn next(&mut self) -> String {
        self.n += 1;
        format!("{}\"><x-evil{} onevil=\"{}'&", self.base, self.n, self.n)
    }
    fn list(&mut self) -> Vec<String> {
        vec![self.next(), self.next()]
    }
}

fn viewer(v: &mut Values) -> Viewer {
    Viewer {
        name: v.next(),
        roles: vec![Role::User, Role::Auditor, Role::Compliance, Role::Admin],
        csrf: v.next(),
    }
}

fn query(v: &mut Values) -> SearchQuery {
    SearchQuery {
        q: v.next(),
        user: v.next(),
        from: v.next(),
        to: v.next(),
    }
}

/// No value of the view model reached the page unescaped, and every URL
/// the page builds stays in the archive.
fn assert_escaped(page: &str) {
    assert!(!page.contains("<x-evil"), "{page}");
    for tag in start_tags(page) {
        for (name, value) in &tag.attrs {
            assert!(
                !name.starts_with("on") && !name.starts_with("x-evil"),
                "{name} in {page}"
            );
            if matches!(name.as_str(), "href" | "src" | "action") {
                assert!(
                    value.starts_with('/') && !value.starts_with("//"),
                    "{name}={value:?}"
                );
                assert!(!value.contains(['"', '<', '>', ' ']), "{name}={value:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_page_escapes_every_value(base in "[ -~]{0,6}") {
        let v = &mut Values { base, n: 0 };
        let archives = vec![ArchiveOption { user: v.next(), label: v.next() }, ArchiveOption { user: v.next(), label: v.next() }];
        let search = SearchView {
            viewer: viewer(v),
            query: query(v),
            archives: archives.clone(),
            searched: true,
            hits: vec![SearchHit { id: v.next(), user: v.next(), date: v.next(), from: v.next(), subject: v.next(), folder: v.next(), has_attachments: true }],
            total: Some(7),
            facets: vec![Facet { kind: FacetKind::Folder, values: vec![
                FacetValue { label: v.next(), count: 3, query: query(v), active: false },
                FacetValue { label: v.next(), count: 1, query: query(v), active: true },
            ] }],
            next_cursor: Some(v.next()),
            prev_cursor: Some(v.next()),
            error: Some(v.next()),
            can_export: true,
        };
        assert_escaped(&search_page(&search));

        let message = MessageView {
            viewer: viewer(v),
            id: v.next(),
            user: v.next(),
            folder: v.next(),
            subject: v.next(),
            from: v.next(),
            to: v.list(),
            cc: v.list(),
            date: v.next(),
            attachments: vec![AttachmentView { index: 0, file_name: v.next(), content_type: v.next(), size: 12345 }],
            blocked_remote_images: 2,
            conversation: vec![
                ConversationItem { id: v.next(), date: v.next(), from: v.next(), subject: v.next() },
                ConversationItem { id: v.next(), date: v.next(), from: v.next(), subject: v.next() },
            ],
            can_restore: true,
        };
        assert_escaped(&message_page(&message));

        let folders = FoldersView {
            viewer: viewer(v),
            user: v.next(),
            archives,
            folders: vec![FolderCount { path: format!("{}/{}", v.next(), v.next()), count: 4 }, FolderCount { path: v.next(), count: 1 }],
        };
        assert_escaped(&folders_page(&folders));

        let holds = HoldsView {
            viewer: viewer(v),
            holds: vec![
                HoldRow { id: v.next(), name: v.next(), query: v.next(), users: v.list(), created: v.next(), created_by: v.next(), released: None },
                HoldRow { id: v.next(), name: v.next(), query: v.next(), users: vec![], created: v.next(), created_by: v.next(), released: Some(v.next()) },
            ],
            policies: vec![PolicyRow { id: v.next(), name: v.next(), min_days: Some(1), max_days: None, scope: v.next(), basis: v.next() }],
            notice: Some(v.next()),
        };
        assert_escaped(&holds_page(&holds));

        let audit = AuditView {
            viewer: viewer(v),
            filter: AuditFilter { since: v.next(), actor: v.next(), limit: v.next() },
            events: vec![AuditRow { seq: 1, time: v.next(), actor: v.next(), action: v.next(), target: v.next(), outcome: v.next(), detail: v.next() }],
            next_since: Some(v.next()),
        };
        assert_escaped(&audit_page(&audit));

        assert_escaped(&signin_page(&v.next(), Some(&v.next()), true, &v.next()));
        assert_escaped(&signin_page(&v.next(), None, false, &format!("/{}", v.next())));
        assert_escaped(&error_page(403, &v.next()));
    }
}
