//! Checks shared by the rendering tests: a tokenizer for the sanitiser's
//! output (html5ever's serialisation: every attribute double-quoted, every
//! `<` outside markup escaped) and the invariants every sanitised body holds.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

/// One start tag of the output.
#[derive(Debug, Clone)]
pub struct Tag {
    /// The element name, lower case.
    pub name: String,
    /// The attributes, names lower case, values with entities decoded.
    pub attrs: Vec<(String, String)>,
}

impl Tag {
    /// The value of `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Decodes the entities html5ever's serialiser writes.
pub fn decode(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The start tags of serialised HTML. Panics on markup the serialiser
/// never writes (an unquoted attribute, a `<` that starts nothing), which
/// would itself mean the output is not what was checked.
pub fn start_tags(html: &str) -> Vec<Tag> {
    let bytes = html.as_bytes();
    let mut tags = Vec::new();
    let mut i = 0;
    while let Some(offset) = html[i..].find('<') {
        i += offset + 1;
        match bytes.get(i) {
            Some(b'/') => {
                let end = html[i..].find('>').expect("closing tag ends");
                i += end + 1;
            }
            Some(b'!') => {
                let end = html[i..].find('>').expect("comment or doctype ends");
                i += end + 1;
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let name_len = html[i..]
                    .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                    .expect("tag name ends");
                let name = html[i..i + name_len].to_ascii_lowercase();
                i += name_len;
                let mut attrs = Vec::new();
                loop {
                    while bytes.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
                        i += 1;
                    }
                    match bytes.get(i) {
                        Some(b'>') => {
                            i += 1;
                            break;
                        }
                        Some(b'/') => {
                            i += 1;
                        }
                        Some(_) => {
                            let len = html[i..]
                                .find(|c: char| c == '=' || c.is_whitespace() || c == '>')
                                .expect("attribute name ends");
                            let attr = html[i..i + len].to_ascii_lowercase();
                            i += len;
                            let mut value = String::new();
                            if bytes.get(i) == Some(&b'=') {
                                assert_eq!(
                                    bytes.get(i + 1),
                                    Some(&b'"'),
                                    "unquoted attribute in {html}"
                                );
                                let end = html[i + 2..].find('"').expect("attribute value ends");
                                value = decode(&html[i + 2..i + 2 + end]);
                                i += 2 + end + 1;
                            }
                            attrs.push((attr, value));
                        }
                        None => panic!("unterminated tag in {html}"),
                    }
                }
                tags.push(Tag { name, attrs });
            }
            _ => panic!("raw `<` outside markup in {html}"),
        }
    }
    tags
}

/// Elements the sanitiser may emit.
pub const ALLOWED_TAGS: &[&str] = &[
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

/// Attributes the sanitiser may emit.
pub const ALLOWED_ATTRS: &[&str] = &[
    "title",
    "lang",
    "dir",
    "align",
    "style",
    "href",
    "rel",
    "target",
    "src",
    "alt",
    "width",
    "height",
    "border",
    "hspace",
    "vspace",
    "cellpadding",
    "cellspacing",
    "bgcolor",
    "colspan",
    "rowspan",
    "valign",
    "nowrap",
    "span",
    "start",
    "type",
    "reversed",
    "value",
    "color",
    "face",
    "size",
    "noshade",
];

/// A value as a browser's URL parser sees it: without ASCII whitespace and
/// controls, lower case.
pub fn squeeze(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Every invariant of a sanitised body: only allowed elements and
/// attributes, no handler, no script-bearing URL anywhere, no URL to
/// another host except in a link's `href`, images only from same-origin
/// paths, links hardened, styles without `url()`, `expression`, `@import`
/// or escapes. Text content may mention anything: it is escaped.
pub fn assert_inert(html: &str) {
    let lower = html.to_ascii_lowercase();
    for raw in [
        "<script",
        "<style",
        "<iframe",
        "<object",
        "<embed",
        "<base",
        "<meta",
        "<link",
        "<form",
        "<input",
        "<button",
        "<textarea",
        "<select",
        "<svg",
        "<math",
        "<frame",
        "<template",
        "<noscript",
        "<applet",
        "<!--",
    ] {
        assert!(!lower.contains(raw), "{raw} in {html}");
    }
    for tag in start_tags(html) {
        assert!(
            ALLOWED_TAGS.contains(&tag.name.as_str()),
            "element {} in {html}",
            tag.name
        );
        for (name, value) in &tag.attrs {
            assert!(!name.starts_with("on"), "handler {name} in {html}");
            assert!(
                ALLOWED_ATTRS.contains(&name.as_str()),
                "attribute {name} in {html}"
            );
            // `title` and `alt` are text the browser never resolves as a URL.
            if name == "title" || name == "alt" {
                continue;
            }
            let v = squeeze(value);
            for scheme in ["javascript:", "vbscript:", "livescript:", "data:", "file:"] {
                assert!(!v.contains(scheme), "{scheme} in {name}={value:?}");
            }
            let is_link = tag.name == "a" && name == "href";
            if !is_link {
                assert!(
                    !v.contains("http:") && !v.contains("https:") && !v.starts_with("//"),
                    "remote URL in {}[{name}]={value:?}",
                    tag.name
                );
            }
            if name == "style" {
                for bad in [
                    "url(",
                    "expression",
                    "@",
                    "\\",
                    "image-set",
                    "binding",
                    "behavior",
                ] {
                    assert!(!v.contains(bad), "{bad} in style {value:?}");
                }
            }
        }
        if tag.name == "a" {
            if let Some(href) = tag.attr("href") {
                let h = squeeze(href);
                assert!(
                    h.starts_with("http://")
                        || h.starts_with("https://")
                        || h.starts_with("mailto:"),
                    "link {href:?}"
                );
            }
            assert_eq!(
                tag.attr("rel"),
                Some("noopener noreferrer nofollow"),
                "rel in {html}"
            );
            assert_eq!(tag.attr("target"), Some("_blank"), "target in {html}");
        }
        if tag.name == "img"
            && let Some(src) = tag.attr("src")
        {
            assert!(
                src.starts_with('/') && !src.starts_with("//"),
                "img src {src:?}"
            );
        }
    }
}
