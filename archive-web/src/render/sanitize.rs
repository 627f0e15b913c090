//! Mail HTML is hostile input: [`sanitize_html`] keeps a strict allow-list of
//! elements, attributes, URL schemes and CSS properties (ammonia over
//! html5ever, so the output is what a browser parses, not what a regex sees).
//!
//! The rules, in short:
//! - elements: text formatting, lists, tables, links and images only; the
//!   content of `script`, `style`, `title`, `template`, `noscript`, `textarea`,
//!   `select`, `iframe`, `object`, `embed`, `noembed`, `noframes`, `xmp` and
//!   `plaintext` is dropped with them; every other element outside the list
//!   (forms, inputs, `base`, `meta`, `link`, SVG, MathML, …) is removed and its
//!   text kept;
//! - no event handler, `id`, `class` or any attribute outside the list;
//! - links: `http`, `https` and `mailto` only, each with
//!   `rel="noopener noreferrer nofollow"` and `target="_blank"`; relative links
//!   are dropped (they would point into the archive itself);
//! - images: only `cid:` references the [`BodyPolicy`] maps to a same-origin
//!   URL; remote images (`src`, `srcset`, `background`, CSS `url()`) are
//!   removed and counted; `data:` URLs are refused everywhere (a `data:` image
//!   can carry SVG, and nothing legitimate in archived mail needs one that the
//!   MIME parts do not already hold);
//! - inline `style`: only the properties of [`SAFE_CSS_PROPERTIES`], and a
//!   declaration is dropped whole when its value holds `url(`, `expression`,
//!   `@`, a backslash escape, a comment or any function other than the
//!   colour functions (so no `@import`, `image-set()` or `var()` exfiltration).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ammonia::{Builder, UrlRelative};
use percent_encoding::percent_decode_str;

/// How one message body is rendered: which `cid:` references resolve to
/// which same-origin URLs.
#[derive(Debug, Clone, Default)]
pub struct BodyPolicy {
    cid: HashMap<String, String>,
}

impl BodyPolicy {
    /// A policy that resolves no `cid:` image.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps the inline part whose `Content-ID` is `content_id` (with or
    /// without its angle brackets) to `url`, a same-origin path such as
    /// `/messages/ID/inline/2`. A `url` that is not a plain absolute path
    /// (starting with one `/`, no backslash, no control character) is ignored,
    /// so a policy can never point an image at another origin.
    pub fn with_cid(mut self, content_id: &str, url: &str) -> Self {
        if is_same_origin_path(url) {
            self.cid.insert(normalize_cid(content_id), url.to_string());
        }
        self
    }

    fn resolve_cid(&self, reference: &str) -> Option<&str> {
        let rest = strip_prefix_ignore_case(reference.trim(), "cid:")?;
        let decoded = percent_decode_str(rest).decode_utf8_lossy();
        self.cid.get(&normalize_cid(&decoded)).map(String::as_str)
    }
}

/// The outcome of [`sanitize_html`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanitizedHtml {
    /// The HTML fragment a browser may render in the message frame.
    pub html: String,
    /// How many remote image references (`src`, `srcset`, `background`,
    /// CSS `url()`) were removed.
    pub blocked_remote_images: usize,
}

/// CSS properties an inline `style` attribute may keep (layout and text only;
/// no property that takes an image or changes positioning out of the frame).
pub const SAFE_CSS_PROPERTIES: &[&str] = &[
    "background-color",
    "border",
    "border-bottom",
    "border-collapse",
    "border-color",
    "border-left",
    "border-radius",
    "border-right",
    "border-spacing",
    "border-style",
    "border-top",
    "border-width",
    "color",
    "direction",
    "display",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-variant",
    "font-weight",
    "height",
    "letter-spacing",
    "line-height",
    "list-style-type",
    "margin",
    "margin-bottom",
    "margin-left",
    "margin-right",
    "margin-top",
    "max-width",
    "min-width",
    "padding",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "padding-top",
    "table-layout",
    "text-align",
    "text-decoration",
    "text-indent",
    "text-transform",
    "vertical-align",
    "white-space",
    "width",
    "word-break",
    "word-spacing",
    "word-wrap",
];

const TAGS: &[&str] = &[
    "a",
    "abbr",
    "address",
    "b",
    "bdi",
    "bdo",
    "big",
    "blockquote",
    "br",
    "caption",
    "center",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "del",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "font",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "ins",
    "kbd",
    "li",
    "mark",
    "ol",
    "p",
    "pre",
    "q",
    "s",
    "samp",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "tt",
    "u",
    "ul",
    "var",
    "wbr",
];

/// Elements removed together with everything inside them.
const DROP_WITH_CONTENT: &[&str] = &[
    "script",
    "style",
    "title",
    "template",
    "noscript",
    "textarea",
    "select",
    "iframe",
    "object",
    "embed",
    "noembed",
    "noframes",
    "xmp",
    "plaintext",
    "applet",
    "frameset",
    "frame",
    "head",
];

const GENERIC_ATTRIBUTES: &[&str] = &["title", "lang", "dir", "align", "style"];

const TAG_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("a", &["href"]),
    (
        "img",
        &[
            "src", "srcset", "alt", "width", "height", "border", "hspace", "vspace",
        ],
    ),
    (
        "table",
        &[
            "width",
            "border",
            "cellpadding",
            "cellspacing",
            "bgcolor",
            "background",
        ],
    ),
    (
        "td",
        &[
            "colspan",
            "rowspan",
            "width",
            "height",
            "valign",
            "bgcolor",
            "background",
            "nowrap",
        ],
    ),
    (
        "th",
        &[
            "colspan",
            "rowspan",
            "width",
            "height",
            "valign",
            "bgcolor",
            "background",
            "nowrap",
        ],
    ),
    ("tr", &["valign", "bgcolor", "background", "height"]),
    ("thead", &["valign"]),
    ("tbody", &["valign"]),
    ("tfoot", &["valign"]),
    ("col", &["span", "width", "valign"]),
    ("colgroup", &["span", "width", "valign"]),
    ("ol", &["start", "type", "reversed"]),
    ("ul", &["type"]),
    ("li", &["value", "type"]),
    ("font", &["color", "face", "size"]),
    ("hr", &["width", "size", "noshade"]),
];

/// Sanitises one message's HTML body under `policy`.
pub fn sanitize_html(html: &str, policy: &BodyPolicy) -> SanitizedHtml {
    let blocked = Arc::new(AtomicUsize::new(0));
    let tag_attributes: HashMap<&str, HashSet<&str>> = TAG_ATTRIBUTES
        .iter()
        .map(|(tag, attrs)| (*tag, attrs.iter().copied().collect()))
        .collect();
    let filter = AttributeFilter {
        policy: policy.clone(),
        blocked: Arc::clone(&blocked),
    };
    let html = Builder::empty()
        .tags(TAGS.iter().copied().collect())
        .clean_content_tags(DROP_WITH_CONTENT.iter().copied().collect())
        .generic_attributes(GENERIC_ATTRIBUTES.iter().copied().collect())
        .tag_attributes(tag_attributes)
        // Relative URLs reach the filter below, which keeps none but the
        // `cid:` rewrites it makes itself.
        .url_relative(UrlRelative::PassThrough)
        .url_schemes(["http", "https", "mailto", "cid"].into_iter().collect())
        .link_rel(Some("noopener noreferrer nofollow"))
        .set_tag_attribute_value("a", "target", "_blank")
        .strip_comments(true)
        .attribute_filter(move |element, attribute, value| filter.filter(element, attribute, value))
        .clean(html)
        .to_string();
    SanitizedHtml {
        html,
        blocked_remote_images: blocked.load(Ordering::Relaxed),
    }
}

struct AttributeFilter {
    policy: BodyPolicy,
    blocked: Arc<AtomicUsize>,
}

impl AttributeFilter {
    fn filter<'u>(&self, element: &str, attribute: &str, value: &'u str) -> Option<Cow<'u, str>> {
        match (element, attribute) {
            ("a", "href") => is_allowed_link(value).then_some(Cow::Borrowed(value)),
            ("img", "src") => {
                if let Some(url) = self.policy.resolve_cid(value) {
                    return Some(Cow::Owned(url.to_string()));
                }
                // An URL the policy itself rewrites to (sanitising twice
                // changes nothing).
                if self.policy.cid.values().any(|url| url == value) {
                    return Some(Cow::Borrowed(value));
                }
                if is_remote(value) {
                    self.block(1);
                }
                None
            }
            ("img", "srcset") => {
                let remote = value
                    .split(',')
                    .filter(|candidate| is_remote(candidate.trim()))
                    .count();
                self.block(remote);
                None
            }
            (_, "background") => {
                if is_remote(value) {
                    self.block(1);
                }
                None
            }
            (_, "style") => {
                let (kept, remote) = filter_style(value);
                self.block(remote);
                (!kept.is_empty()).then_some(Cow::Owned(kept))
            }
            _ => Some(Cow::Borrowed(value)),
        }
    }

    fn block(&self, n: usize) {
        if n > 0 {
            self.blocked.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// A link target a message may keep: an absolute `http`, `https` or
/// `mailto` URL (ammonia has already parsed the scheme; this also refuses
/// the relative links it lets through).
fn is_allowed_link(value: &str) -> bool {
    let v = value.trim_start();
    ["http://", "https://", "mailto:"]
        .iter()
        .any(|prefix| strip_prefix_ignore_case(v, prefix).is_some())
}

/// Whether a URL would load something from another host: an absolute
/// `http`/`https` URL or a scheme-relative `//host/…` one.
fn is_remote(value: &str) -> bool {
    let v: String = value
        .trim()
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && !c.is_control())
        .collect();
    v.starts_with("//")
        || v.starts_with("\\\\")
        || strip_prefix_ignore_case(&v, "http:").is_some()
        || strip_prefix_ignore_case(&v, "https:").is_some()
}

/// Keeps the declarations of an inline style whose property is in
/// [`SAFE_CSS_PROPERTIES`] and whose value is inert; answers the kept style
/// and how many remote `url()`s were dropped.
fn filter_style(style: &str) -> (String, usize) {
    let mut kept = Vec::new();
    let mut remote = 0;
    for declaration in style.split(';') {
        let lower = declaration.to_ascii_lowercase();
        remote += count_remote_css_urls(&lower);
        let Some((property, value)) = lower.split_once(':') else {
            continue;
        };
        let property = property.trim();
        let value = value.trim();
        if value.is_empty()
            || !SAFE_CSS_PROPERTIES.contains(&property)
            || !is_inert_css_value(value)
        {
            continue;
        }
        // The original spelling of the value (font names keep their case).
        let original = declaration
            .split_once(':')
            .map(|(_, v)| v.trim())
            .unwrap_or(value);
        kept.push(format!("{property}:{original}"));
    }
    (kept.join(";"), remote)
}

/// The remote images one declaration references: each `url()` of another
/// host, or one for any other spelling of a remote URL (`image-set("…")`,
/// an escaped `u\72l(…)`).
fn count_remote_css_urls(lower: &str) -> usize {
    let urls = lower
        .match_indices("url(")
        .filter(|(i, _)| {
            let rest = lower[i + 4..].trim_start().trim_start_matches(['"', '\'']);
            is_remote(rest)
        })
        .count();
    if urls == 0 && (lower.contains("http:") || lower.contains("https:")) {
        1
    } else {
        urls
    }
}

/// A CSS value with no way to fetch, import or evaluate anything.
fn is_inert_css_value(value: &str) -> bool {
    const FORBIDDEN: &[&str] = &[
        "url",
        "expression",
        "@",
        "\\",
        "/*",
        "*/",
        "<",
        ">",
        "{",
        "}",
        "javascript",
        "vbscript",
        "behavior",
        "binding",
        "image",
        "&",
        "!ie",
    ];
    if FORBIDDEN.iter().any(|f| value.contains(f)) || value.chars().any(char::is_control) {
        return false;
    }
    // The only functions allowed are colour ones: `rgb(`, `rgba(`, `hsl(`, `hsla(`.
    value.match_indices('(').all(|(i, _)| {
        let head = &value[..i];
        let before = head.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '-');
        let name = &head[before.len()..];
        matches!(name, "rgb" | "rgba" | "hsl" | "hsla")
    })
}

fn normalize_cid(content_id: &str) -> String {
    content_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_ascii_lowercase()
}

fn is_same_origin_path(url: &str) -> bool {
    url.starts_with('/')
        && !url.starts_with("//")
        && !url.contains('\\')
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Escapes text for an HTML text node or a double- or single-quoted
/// attribute value.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A plain-text body as HTML: escaped, in a block that keeps its line breaks
/// and wraps long lines.
pub fn text_to_html(text: &str) -> String {
    format!(
        "<pre class=\"plain-text\" style=\"white-space:pre-wrap;word-wrap:break-word;font-family:inherit\">{}</pre>",
        escape_html(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_references_resolve_with_or_without_brackets_and_encoding() {
        let policy = BodyPolicy::new().with_cid("<Logo@Example>", "/messages/m1/inline/2");
        assert_eq!(
            policy.resolve_cid("cid:logo@example"),
            Some("/messages/m1/inline/2")
        );
        assert_eq!(
            policy.resolve_cid("CID:Logo%40Example"),
            Some("/messages/m1/inline/2")
        );
        assert_eq!(policy.resolve_cid("cid:other"), None);
    }

    #[test]
    fn a_policy_refuses_urls_of_other_origins() {
        let policy = BodyPolicy::new()
            .with_cid("a", "https://evil.example/x")
            .with_cid("b", "//evil.example/x")
            .with_cid("c", "/\\evil.example");
        assert_eq!(policy.resolve_cid("cid:a"), None);
        assert_eq!(policy.resolve_cid("cid:b"), None);
        assert_eq!(policy.resolve_cid("cid:c"), None);
    }

    #[test]
    fn styles_keep_safe_declarations_only() {
        let (kept, remote) = filter_style(
            "color: Red; background: url(https://t.example/p.gif); font-family: 'Segoe UI'; \
             width: expression(alert(1)); color: rgb(1,2,3); x: y; margin: var(--a)",
        );
        assert_eq!(kept, "color:Red;font-family:'Segoe UI';color:rgb(1,2,3)");
        assert_eq!(remote, 1);
        let (kept, _) = filter_style("color: é(1); color: rgbé(1); color: Ärgb(1,2,3)");
        assert_eq!(kept, "color:Ärgb(1,2,3)");
    }

    #[test]
    fn escaping_covers_the_five_characters() {
        assert_eq!(
            escape_html("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
