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
}
