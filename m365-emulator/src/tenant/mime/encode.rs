//! Header and body encodings of the rendered messages: RFC 2047 words, address
//! headers, quoted-printable, base64 lines and RFC 2231 file names.

use std::fmt::Write as _;

use base64::Engine as _;

/// RFC 2047 encoding of a header value when it is not plain ASCII (base64 words, ≤ 75 chars each).
pub(super) fn encode_header_value(value: &str) -> String {
    if value.is_ascii() {
        return value.to_owned();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for ch in value.chars() {
        if chunk.len() + ch.len_utf8() > 39 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(ch);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// `"Name" <addr>` with the name RFC 2047 Q-encoded when needed.
pub(super) fn mailbox_header(name: &str, addr: &str) -> String {
    if name.is_ascii() {
        format!("\"{name}\" <{addr}>")
    } else {
        let mut q = String::from("=?utf-8?Q?");
        for b in name.as_bytes() {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' => q.push(char::from(*b)),
                b' ' => q.push('_'),
                _ => {
                    let _ = write!(q, "={b:02X}");
                }
            }
        }
        q.push_str("?=");
        format!("{q} <{addr}>")
    }
}

pub(super) fn address_list(list: &[(String, String)]) -> String {
    list.iter()
        .map(|(n, a)| mailbox_header(n, a))
        .collect::<Vec<_>>()
        .join(",\r\n ")
}

/// Quoted-printable (RFC 2045) with CRLF line breaks.
pub(super) fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut col = 0;
        let bytes = line.as_bytes();
        for (j, &b) in bytes.iter().enumerate() {
            let last = j + 1 == bytes.len();
            let literal =
                (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let width = if literal { 1 } else { 3 };
            if col + width > 75 {
                out.push_str("=\r\n");
                col = 0;
            }
            if literal {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "={b:02X}");
            }
            col += width;
        }
    }
    out
}

pub(super) fn base64_lines(raw: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 38);
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push_str("\r\n");
    }
    out
}

/// `filename*=` parameter (RFC 2231) when the name is not ASCII, plain quoted otherwise.
pub(super) fn filename_params(name: &str) -> (String, String) {
    if name.is_ascii() {
        (format!("name=\"{name}\""), format!("filename=\"{name}\""))
    } else {
        let encoded: String =
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        (
            format!("name=\"{}\"", encode_header_value(name)),
            format!("filename*=utf-8''{encoded}"),
        )
    }
}
