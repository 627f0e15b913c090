//! Downloads: a file name from a mail attachment that is safe on every
//! operating system, the `Content-Disposition` header that carries it, and
//! the headers every download is served with.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The longest file name [`safe_file_name`] answers, in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 150;

/// The longest extension [`safe_file_name`] keeps whole when it shortens a
/// name, in bytes (with its dot).
const MAX_KEPT_EXTENSION_BYTES: usize = 16;

/// The name used when nothing of an attachment's name is left.
pub const FALLBACK_FILE_NAME: &str = "attachment";

/// Headers for every download of archived content (attachments, raw MIME,
/// exports): no content sniffing, a CSP sandbox should a browser render it
/// anyway, never cached by a shared cache or kept on disk, no referrer, not
/// embeddable by other sites.
pub const SAFE_DOWNLOAD_HEADERS: &[(&str, &str)] = &[
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "sandbox; default-src 'none'"),
    ("Cache-Control", "private, no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
];

/// Characters removed from names: controls, bidirectional overrides and
/// isolates (which make `a\u{202E}gnp.exe` display as `aexe.png`), and
/// invisible joiners and marks.
fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// Characters Windows refuses in names, replaced by `_`.
fn is_reserved_char(c: char) -> bool {
    matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*')
}

fn is_windows_reserved_stem(stem: &str) -> bool {
    let upper = stem.trim_end_matches([' ', '.']).to_ascii_uppercase();
    if matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) {
        return true;
    }
    // COM0-COM9 and LPT0-LPT9, also with a superscript digit.
    match upper
        .strip_prefix("COM")
        .or_else(|| upper.strip_prefix("LPT"))
    {
        Some(rest) => {
            let mut chars = rest.chars();
            matches!(
                (chars.next(), chars.next()),
                (Some('0'..='9' | '\u{00B9}' | '\u{00B2}' | '\u{00B3}'), None)
            )
        }
        None => false,
    }
}

/// A file name safe to save anywhere: the last path component of `name`
/// without control, bidirectional or invisible characters, with Windows'
/// reserved characters replaced, no leading dots, no trailing dots or
/// spaces, a Windows device name (`CON`, `NUL`, `COM1`, …) prefixed with
/// `_`, at most [`MAX_FILE_NAME_BYTES`] bytes (shortened before the
/// extension), and never empty ([`FALLBACK_FILE_NAME`]).
pub fn safe_file_name(name: &str) -> String {
    let visible: String = name.chars().filter(|c| !is_hidden_char(*c)).collect();
    let last = visible
        .rsplit(['/', '\\'])
        .map(str::trim)
        .find(|part| !part.trim_matches('.').is_empty())
        .unwrap_or("");
    let replaced: String = last
        .chars()
        .map(|c| if is_reserved_char(c) { '_' } else { c })
        .collect();
    let trimmed = replaced
        .trim()
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    if trimmed.is_empty() {
        return FALLBACK_FILE_NAME.to_string();
    }
    let stem = trimmed.split('.').next().unwrap_or(trimmed);
    let mut out = if is_windows_reserved_stem(stem) {
        format!("_{trimmed}")
    } else {
        trimmed.to_string()
    };
    if out.len() > MAX_FILE_NAME_BYTES {
        out = shorten(&out);
    }
    out
}

/// Cuts a name to [`MAX_FILE_NAME_BYTES`] at a character boundary, keeping
/// a short extension.
fn shorten(name: &str) -> String {
    let extension = name
        .rfind('.')
        .map(|i| &name[i..])
        .filter(|ext| ext.len() <= MAX_KEPT_EXTENSION_BYTES && ext.len() < name.len())
        .unwrap_or("");
    let budget = MAX_FILE_NAME_BYTES - extension.len();
    let stem = &name[..name.len() - extension.len()];
    let mut cut = budget.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    let stem = stem[..cut].trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    let stem = if stem.is_empty() {
        FALLBACK_FILE_NAME
    } else {
        stem
    };
    format!("{stem}{extension}")
}

/// RFC 8187 `attr-char`: everything else is percent-encoded.
const ATTR_CHAR_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The `Content-Disposition` value for downloading `file_name` (made safe
/// with [`safe_file_name`] first): `attachment`, an ASCII `filename` for old
/// clients (other characters become `_`) and the exact name as RFC 8187
/// `filename*`. Always one line of visible ASCII.
pub fn content_disposition(file_name: &str) -> String {
    let safe = safe_file_name(file_name);
    let ascii: String = safe
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        utf8_percent_encode(&safe, ATTR_CHAR_ENCODE)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_become_plain_names() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("C:\\Users\\x\\report.pdf"), "report.pdf");
        assert_eq!(safe_file_name("a\u{202E}gnp.exe"), "agnp.exe");
        assert_eq!(safe_file_name("CON.txt"), "_CON.txt");
        assert_eq!(safe_file_name("lpt1"), "_lpt1");
        assert_eq!(safe_file_name("com10.txt"), "com10.txt");
        assert_eq!(safe_file_name("evil\r\nSet-Cookie: x"), "evilSet-Cookie_ x");
        assert_eq!(safe_file_name(".htaccess"), "htaccess");
        assert_eq!(safe_file_name(".."), "attachment");
        assert_eq!(safe_file_name("  "), "attachment");
        assert_eq!(safe_file_name("dir/"), "dir");
        assert_eq!(safe_file_name("a?b*.doc."), "a_b_.doc");
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.pdf", "é".repeat(200));
        let safe = safe_file_name(&long);
        assert!(safe.len() <= MAX_FILE_NAME_BYTES);
        assert!(safe.ends_with(".pdf"));
        let no_ext = "x".repeat(400);
        assert_eq!(safe_file_name(&no_ext).len(), MAX_FILE_NAME_BYTES);
    }

    #[test]
    fn disposition_has_an_ascii_fallback_and_the_exact_name() {
        assert_eq!(
            content_disposition("Rapport März \"final\".pdf"),
            "attachment; filename=\"Rapport M_rz _final_.pdf\"; \
             filename*=UTF-8''Rapport%20M%C3%A4rz%20_final_.pdf"
        );
    }
}
