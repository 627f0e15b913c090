//! The readable text of an archived message, for `archive show` and the web view.

/// The readable text of a message (its first text part, HTML reduced to text by the
/// parser), or a note when it has none or cannot be parsed. The parser runs inside
/// `catch_unwind`: a message that makes it panic is reported, never a crash.
pub fn message_text(raw: &[u8]) -> String {
    let parsed = std::panic::catch_unwind(|| {
        mail_parser::MessageParser::default()
            .parse(raw)
            .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
    });
    match parsed {
        Ok(Some(text)) => text,
        Ok(None) => "(no text part)".to_string(),
        Err(_) => "(the message could not be parsed)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &[u8], expected: &str) {
        assert_eq!(message_text(raw).trim_end(), expected, "{raw:?}");
    }

    #[test]
    fn text_of_plain_html_and_textless_messages() {
        check(
            b"From: a@b.c\r\nSubject: s\r\n\r\nHello there.\r\n",
            "Hello there.",
        );
        check(
            b"From: a@b.c\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>you</b></p>\r\n",
            "Hello you",
        );
        check(
            b"From: a@b.c\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n",
            "(no text part)",
        );
    }

    #[test]
    fn text_in_legacy_charsets_is_decoded() {
        // 会议通知 in GB2312, base64; Привет in KOI8-R, 8bit; ハロー in ISO-2022-JP.
        check(
            b"From: a@b.c\r\nContent-Type: text/plain; charset=gb2312\r\nContent-Transfer-Encoding: base64\r\n\r\nu+HS6c2o1qo=\r\n",
            "会议通知",
        );
        check(
            b"From: a@b.c\r\nContent-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xf0\xd2\xc9\xd7\xc5\xd4\r\n",
            "Привет",
        );
        check(
            b"From: a@b.c\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B%O%m!<\x1b(B\r\n",
            "ハロー",
        );
    }
}
