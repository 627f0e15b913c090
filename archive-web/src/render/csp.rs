//! Content Security Policies for the archive's pages and for the sandboxed
//! document that shows one message body, and the markup that frames it.
//!
//! A message body is never part of a page: the page holds an
//! [`iframe_tag`] whose document ([`message_document`]) is served under
//! [`MESSAGE_BODY_CSP`]. The frame is sandboxed without `allow-scripts` and
//! without `allow-same-origin`, so even markup the sanitiser missed runs no
//! script and reads nothing of the archive.

use crate::render::sanitize::escape_html;

/// The `Content-Security-Policy` header of every archive page: scripts,
/// styles and images from the archive only, no plugins, never framed by
/// another site, forms post back to the archive only.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self'; font-src 'self'; connect-src 'self'; frame-src 'self'; object-src 'none'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The `Content-Security-Policy` header of a message body document
/// (`/messages/{id}/body`): nothing loads but same-origin images (the
/// rewritten `cid:` parts) and the inline styles of the mail; no script, no
/// form, no plugin, no nested frame; only the archive's own pages may frame
/// it, and the `sandbox` directive confines it even when it is opened
/// directly.
///
/// `'self'` in a sandboxed document: CSP Level 3 matches `'self'` against the
/// origin of the document's URL, not the opaque origin the sandbox gives it,
/// so same-origin images still load (as Chromium and Firefox do).
pub const MESSAGE_BODY_CSP: &str = "default-src 'none'; img-src 'self'; \
style-src 'unsafe-inline'; font-src 'none'; script-src 'none'; connect-src 'none'; \
media-src 'none'; object-src 'none'; frame-src 'none'; child-src 'none'; worker-src 'none'; \
form-action 'none'; base-uri 'none'; frame-ancestors 'self'; \
sandbox allow-popups allow-popups-to-escape-sandbox";

/// The part of [`MESSAGE_BODY_CSP`] a `<meta>` element can carry
/// (`frame-ancestors` and `sandbox` count only as a header).
pub const MESSAGE_BODY_META_CSP: &str = "default-src 'none'; img-src 'self'; \
style-src 'unsafe-inline'; font-src 'none'; script-src 'none'; connect-src 'none'; \
media-src 'none'; object-src 'none'; frame-src 'none'; child-src 'none'; worker-src 'none'; \
form-action 'none'; base-uri 'none'";

/// The `sandbox` attribute of the message frame: links (which carry
/// `target="_blank"`) may open a new, unsandboxed top-level window; nothing
/// else is allowed.
pub const MESSAGE_FRAME_SANDBOX: &str = "allow-popups allow-popups-to-escape-sandbox";

/// A complete HTML document around an already sanitised body (the output of
/// [`crate::render::sanitize::sanitize_html`] or
/// [`crate::render::sanitize::text_to_html`]), with its CSP repeated in a
/// `<meta>` element.
pub fn message_document(sanitized_body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\
<meta name=\"referrer\" content=\"no-referrer\">\
<style>body{{margin:8px;font-family:system-ui,-apple-system,'Segoe UI',sans-serif;\
font-size:14px;color:#111;background:#fff;overflow-wrap:break-word}}\
img{{max-width:100%;height:auto}}blockquote{{margin-left:0.5em;padding-left:0.75em;\
border-left:3px solid #ccc}}</style></head>\n<body>{body}</body></html>\n",
        // A constant with no `"`, `<` or `&`: it stands in the attribute as is.
        csp = MESSAGE_BODY_META_CSP,
        body = sanitized_body
    )
}

/// The frame that shows a message body from `src` (a same-origin path),
/// sandboxed as [`MESSAGE_FRAME_SANDBOX`] says, sending no referrer.
pub fn iframe_tag(src: &str, title: &str) -> String {
    format!(
        "<iframe class=\"message-body\" src=\"{}\" title=\"{}\" sandbox=\"{}\" \
referrerpolicy=\"no-referrer\" loading=\"lazy\"></iframe>",
        escape_html(src),
        escape_html(title),
        MESSAGE_FRAME_SANDBOX
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_is_sandboxed_without_scripts_or_same_origin() {
        let tag = iframe_tag("/messages/a\"b/body", "<Subject>");
        assert!(tag.contains("sandbox=\"allow-popups allow-popups-to-escape-sandbox\""));
        assert!(!tag.contains("allow-scripts") && !tag.contains("allow-same-origin"));
        assert!(tag.contains("src=\"/messages/a&quot;b/body\""));
        assert!(tag.contains("title=\"&lt;Subject&gt;\""));
        assert!(tag.contains("referrerpolicy=\"no-referrer\""));
    }

    #[test]
    fn policies_forbid_scripts_and_plugins() {
        for csp in [PAGE_CSP, MESSAGE_BODY_CSP, MESSAGE_BODY_META_CSP] {
            assert!(csp.contains("object-src 'none'"));
            assert!(csp.contains("base-uri 'none'"));
            assert!(!csp.contains("unsafe-eval"));
        }
        assert!(MESSAGE_BODY_CSP.contains("script-src 'none'"));
        assert!(PAGE_CSP.contains("frame-ancestors 'none'"));
        let doc = message_document("<p>x</p>");
        assert!(doc.starts_with("<!DOCTYPE html>"));
        assert!(doc.contains("script-src 'none'"));
        assert!(doc.contains("<body><p>x</p></body>"));
    }
}
