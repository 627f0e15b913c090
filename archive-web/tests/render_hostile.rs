//! The sanitiser, the message frame and download names against a corpus of
//! hostile mail (`tests/hostile/*.html`): every file must come out inert,
//! with the expectations named per file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "hostile/support.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use archive_web::render::{
    BodyPolicy, SAFE_DOWNLOAD_HEADERS, SanitizedHtml, content_disposition, message_document,
    safe_file_name, sanitize_html, text_to_html,
};
use support::{assert_inert, start_tags};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

fn policy() -> BodyPolicy {
    BodyPolicy::new()
        .with_cid("<logo@example.com>", "/messages/m1/inline/1")
        .with_cid("chart@example.com", "/messages/m1/inline/2")
        .with_cid("ok@example", "/messages/m1/inline/3")
}

/// What one corpus file must and must not turn into.
struct Expect {
    file: &'static str,
    must_not_contain: &'static [&'static str],
    must_contain: &'static [&'static str],
    blocked: Option<usize>,
}

const fn expect(
    file: &'static str,
    must_not_contain: &'static [&'static str],
    must_contain: &'static [&'static str],
) -> Expect {
    Expect {
        file,
        must_not_contain,
        must_contain,
        blocked: None,
    }
}

const fn expect_blocked(
    file: &'static str,
    must_not_contain: &'static [&'static str],
    must_contain: &'static [&'static str],
    blocked: usize,
) -> Expect {
    Expect {
        file,
        must_not_contain,
        must_contain,
        blocked: Some(blocked),
    }
}

const CORPUS: &[Expect] = &[
    expect(
        "01-script-tags.html",
        &["alert(1)", "alert(3)", "<script", "evil.example", "cookie"],
        &["<p>Hello</p>", "after"],
    ),
    expect(
        "02-event-handlers.html",
        &["alert", "autofocus", "tabindex", "src="],
        &["<p>p</p>", "<img>", "<span>s</span>"],
    ),
    expect(
        "03-javascript-href.html",
        &["javascript", "href"],
        &["one", "two", "three"],
    ),
    expect(
        "04-javascript-src.html",
        &["javascript", "src="],
        &["alt=\"x\""],
    ),
    expect(
        "05-formaction.html",
        &["javascript", "formaction", "evil.example"],
        &["Click", "outside"],
    ),
    expect(
        "06-xlink-href.html",
        &[
            "javascript",
            "xlink:",
            "data:",
            "evil.example",
            "track.png",
            "<svg",
            "<use",
            "<image",
        ],
        &["html a with xlink"],
    ),
    expect(
        "07-svg-script.html",
        &["alert", "javascript", "animate", "evil.example"],
        &[],
    ),
    expect(
        "08-mathml.html",
        &["alert", "javascript", "onerror"],
        &["click"],
    ),
    expect_blocked(
        "09-css-url.html",
        &["url(", "tracker.example", "evil.example"],
        &["style=\"color:green\"", "style=\"color:red\"", "bg3"],
        4,
    ),
    expect(
        "10-css-import.html",
        &["@import", "evil.example", "background"],
        &[
            "<div style=\"color:blue\">import in attr</div>",
            "after styles",
        ],
    ),
    expect(
        "11-css-expression.html",
        &[
            "expression",
            "EXPRESSION",
            "behavior",
            "binding",
            "alert",
            "var(",
            "calc(",
        ],
        &[
            "<div style=\"color:red\">escaped</div>",
            "ie-expr",
            "beh",
            "bind",
        ],
    ),
    expect(
        "12-base.html",
        &[
            "<base",
            "evil.example",
            "/relative/path",
            "relative.png",
            "_top",
        ],
        &["relative"],
    ),
    expect(
        "13-meta-refresh.html",
        &["refresh", "evil.example", "Set-Cookie", "script-src"],
        &["text after meta"],
    ),
    expect(
        "14-link.html",
        &["<link", "evil.example", "tracker.example", "prefetch"],
        &["linked"],
    ),
    expect(
        "15-form.html",
        &[
            "<form",
            "<input",
            "password\"",
            "evil.example",
            "<textarea",
            "alert",
            "<select",
            "<button",
            "isindex",
        ],
        &["Your session expired", "Sign in"],
    ),
    expect_blocked(
        "16-srcset.html",
        &["srcset", "tracker.example", "<source", "<picture"],
        &["alt=\"set\"", "src=\"/messages/m1/inline/3\""],
        4,
    ),
    expect_blocked(
        "17-background.html",
        &["background", "tracker.example"],
        &["cell", "div"],
        3,
    ),
    expect(
        "18-entity-javascript.html",
        &["javascript", "alert(", "href"],
        &[
            "dec",
            "hex",
            "padded",
            "tab",
            "newline",
            "colon entity",
            "leading tab",
        ],
    ),
    expect(
        "19-case-mixed-schemes.html",
        &[
            "javascript",
            "JaVaScRiPt",
            "vbscript",
            "VBScript",
            "livescript",
            "data:",
            "file:",
        ],
        &["href=\"mailto:anna@example.com\""],
    ),
    expect(
        "20-comment-cdata-tricks.html",
        &[
            "<!--",
            "<script",
            "alert(1)",
            "alert(2)",
            "alert(4)",
            "onerror",
            "tracker.example",
            "xsl",
            "src=",
        ],
        &["<p>visible</p>"],
    ),
    expect(
        "21-unclosed-tags.html",
        &["onerror", "javascript", "alert(2)", "<script", "<div"],
        &["<b>bold <i>both"],
    ),
    expect(
        "22-nested-iframe.html",
        &["iframe", "srcdoc", "alert", "evil.example", "<frame"],
        &["after frames"],
    ),
    expect(
        "23-object-embed.html",
        &[
            "<object",
            "<embed",
            "<param",
            "<applet",
            "<portal",
            "swf",
            "evil.example",
            "fallback",
        ],
        &[],
    ),
    expect(
        "24-cid-images.html",
        &["cid:", "onerror", "alert"],
        &[
            "<img src=\"/messages/m1/inline/1\" alt=\"Company logo\" width=\"120\">",
            "<img src=\"/messages/m1/inline/2\" alt=\"chart\">",
            "<img alt=\"missing part\">",
        ],
    ),
    expect_blocked(
        "25-data-urls.html",
        &["data:", "base64", "alert"],
        &["alt=\"png\"", "data link"],
        0,
    ),
    expect_blocked(
        "26-remote-images.html",
        &["tracker.example", "TRACKER.EXAMPLE", "src="],
        &["width=\"1\""],
        5,
    ),
    expect(
        "27-noscript-mutation.html",
        &[
            "onerror",
            "src=",
            "alert(4)",
            "<noscript",
            "<xmp",
            "<template",
        ],
        &["<p>survives</p>"],
    ),
    expect_blocked(
        "28-css-exfiltration.html",
        &[
            "image-set",
            "url(",
            "\\72",
            "tracker.example",
            "evil.example",
            "position",
            "z-index",
        ],
        &[
            "style=\"color:red\"",
            "style=\"font-family:'Segoe UI'\"",
            "overlay",
        ],
        4,
    ),
    expect(
        "29-safe-formatting.html",
        &[],
        &[
            "<a href=\"https://example.com/report\" title=\"Report\" rel=\"noopener noreferrer nofollow\" target=\"_blank\">report</a>",
            "<a href=\"mailto:bob@example.com\" rel=\"noopener noreferrer nofollow\" target=\"_blank\">",
            "<b>Anna</b>",
            "<table border=\"1\" cellpadding=\"4\">",
            "<td align=\"right\">42</td>",
            "<blockquote>quoted &amp; kept</blockquote>",
            "<font color=\"red\" face=\"Arial\">font</font>",
            "style=\"font-family:Calibri, sans-serif;color:#333\"",
        ],
    ),
    expect(
        "30-attribute-breakout.html",
        &[
            "<script",
            "<img src=x",
            "onmouseover=\"alert",
            "contenteditable",
            "accesskey",
            "data-x",
            "class=",
            "id=",
        ],
        &["&lt;script&gt;", "title breakout", "attrs"],
    ),
    expect(
        "31-polyglot.html",
        &["onload=", "_top", "opener\"", "<svg", "<style", "onerror="],
        &["target=\"_blank\""],
    ),
];

/// Sanitises `input` and checks the invariants, what must not appear and
/// what must.
fn check(
    name: &str,
    input: &str,
    must_not_contain: &[&str],
    must_contain: &[&str],
) -> SanitizedHtml {
    let out = sanitize_html(input, &policy());
    assert_inert(&out.html);
    for bad in must_not_contain {
        assert!(
            !out.html.contains(bad),
            "{name}: {bad:?} survived in {}",
            out.html
        );
    }
    let tags = start_tags(&out.html);
    for good in must_contain {
        // A start tag with attributes matches whatever their order.
        match start_tags(good).first() {
            Some(want) if good.starts_with('<') && !want.attrs.is_empty() => {
                let mut want_attrs = want.attrs.clone();
                want_attrs.sort();
                let found = tags.iter().any(|t| {
                    let mut attrs = t.attrs.clone();
                    attrs.sort();
                    t.name == want.name && attrs == want_attrs
                });
                assert!(found, "{name}: no tag like {good:?} in {}", out.html);
            }
            _ => assert!(
                out.html.contains(good),
                "{name}: {good:?} missing from {}",
                out.html
            ),
        }
    }
    out
}

fn sorted_tags(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    start_tags(html)
        .into_iter()
        .map(|t| {
            let mut attrs = t.attrs;
            attrs.sort();
            (t.name, attrs)
        })
        .collect()
}

#[test]
fn every_corpus_file_comes_out_inert() {
    let mut on_disk: BTreeSet<String> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".html"))
        .collect();
    assert!(on_disk.len() >= 25, "corpus has {} files", on_disk.len());
    for e in CORPUS {
        let input = std::fs::read_to_string(corpus_dir().join(e.file)).expect("corpus file");
        let out = check(e.file, &input, e.must_not_contain, e.must_contain);
        if let Some(n) = e.blocked {
            assert_eq!(out.blocked_remote_images, n, "{}: {}", e.file, out.html);
        }
        // Sanitising again keeps every element and attribute (the order of
        // a link's attributes may change).
        let again = sanitize_html(&out.html, &policy());
        assert_eq!(
            sorted_tags(&again.html),
            sorted_tags(&out.html),
            "{}",
            e.file
        );
        on_disk.remove(e.file);
    }
    assert!(
        on_disk.is_empty(),
        "corpus files without expectations: {on_disk:?}"
    );
}

#[test]
fn links_are_hardened_and_only_web_and_mail_links_survive() {
    let out = check(
        "links",
        "<a href=\"https://a.example/\" rel=\"opener\" target=\"_self\">a</a><a href=\"#frag\">f</a>\
         <a href=\"ftp://x.example/\">ftp</a><a href=\"tel:123\">tel</a><a href=\"cid:logo@example.com\">cid</a>",
        &["opener\"", "_self", "#frag", "ftp:", "tel:", "cid:"],
        &[
            "<a href=\"https://a.example/\" rel=\"noopener noreferrer nofollow\" target=\"_blank\">a</a>",
        ],
    );
    let anchors = start_tags(&out.html)
        .into_iter()
        .filter(|t| t.name == "a")
        .count();
    assert_eq!(
        anchors, 5,
        "every anchor is kept, stripped of what is unsafe"
    );
}

#[test]
fn a_policy_without_cid_mappings_shows_no_image_at_all() {
    let out = sanitize_html(
        "<img src=\"cid:logo@example.com\" alt=\"l\"><img src=\"https://t.example/x.png\">",
        &BodyPolicy::new(),
    );
    assert_inert(&out.html);
    assert!(!out.html.contains("src="), "{}", out.html);
    assert_eq!(out.blocked_remote_images, 1);
}

#[test]
fn plain_text_is_escaped_in_a_wrapping_block() {
    let html = text_to_html("<script>alert(1)</script>\n> quoted & \"more\"");
    assert!(html.starts_with("<pre ") && html.ends_with("</pre>"));
    assert!(html.contains("white-space:pre-wrap"));
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;\n&gt; quoted &amp; &quot;more&quot;")
    );
    assert!(!html.contains("<script"));
}

#[test]
fn the_message_document_carries_its_policy_and_the_body() {
    let body = sanitize_html("<p onclick=x>Hi</p><script>alert(1)</script>", &policy());
    let doc = message_document(&body.html);
    assert!(doc.starts_with("<!DOCTYPE html>"));
    assert!(
        doc.contains("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';")
    );
    assert!(doc.contains("script-src 'none'"));
    assert!(doc.contains("<body><p>Hi</p></body>"));
    assert_eq!(doc.matches("<script").count(), 0);
}

/// Hostile attachment names and what each becomes.
const NAMES: &[(&str, &str)] = &[
    ("../../etc/passwd", "passwd"),
    ("..\\..\\Windows\\System32\\evil.dll", "evil.dll"),
    ("/etc/shadow", "shadow"),
    ("a\u{202E}gnp.exe", "agnp.exe"),
    ("invoice\u{2066}fdp.exe\u{2069}", "invoicefdp.exe"),
    ("CON.txt", "_CON.txt"),
    ("nul", "_nul"),
    ("Com1.tar.gz", "_Com1.tar.gz"),
    ("LPT9", "_LPT9"),
    ("report\r\nContent-Type: text/html", "html"),
    ("report\r\nContent-Type: text", "reportContent-Type_ text"),
    ("name\"; filename=evil.exe", "name_; filename=evil.exe"),
    ("...", "attachment"),
    (".", "attachment"),
    ("..", "attachment"),
    ("", "attachment"),
    ("   ", "attachment"),
    ("\u{0}\u{7}\u{1b}", "attachment"),
    (".bashrc", "bashrc"),
    ("trailing dots... ", "trailing dots"),
    ("what?*<>|:.pdf", "what______.pdf"),
    ("zero\u{200B}width\u{FEFF}.txt", "zerowidth.txt"),
    ("Résumé 2024.pdf", "Résumé 2024.pdf"),
];

#[test]
fn hostile_attachment_names_become_safe_names() {
    for (input, want) in NAMES {
        assert_eq!(safe_file_name(input), *want, "{input:?}");
        let header = content_disposition(input);
        assert!(!header.contains(['\r', '\n']), "{header:?}");
        assert!(header.is_ascii(), "{header:?}");
        assert!(header.starts_with("attachment; filename=\""), "{header:?}");
    }
    let long = format!("{}.docx", "x".repeat(500));
    let safe = safe_file_name(&long);
    assert!(safe.ends_with(".docx") && safe.len() <= 150, "{safe}");
}

#[test]
fn content_disposition_carries_the_exact_name_encoded() {
    assert_eq!(
        content_disposition("../Résumé \"2024\".pdf"),
        "attachment; filename=\"R_sum_ _2024_.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20_2024_.pdf"
    );
    assert_eq!(
        content_disposition("a\u{202E}gnp.exe"),
        "attachment; filename=\"agnp.exe\"; filename*=UTF-8''agnp.exe"
    );
}

#[test]
fn downloads_are_never_sniffed_rendered_or_cached() {
    let get = |name: &str| {
        SAFE_DOWNLOAD_HEADERS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    assert_eq!(get("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(
        get("Content-Security-Policy"),
        Some("sandbox; default-src 'none'")
    );
    assert!(get("Cache-Control").is_some_and(|v| v.contains("no-store") && v.contains("private")));
}
