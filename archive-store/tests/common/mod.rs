//! Shared helpers of the archive-store integration tests: opening stores, requests
//! and generated MIME messages.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use archive_store::{ArchiveRequest, DiskArchiveStore, SourceRef, StoreOptions};
use chrono::{DateTime, Utc};

/// Opens (creating) a plain store.
pub fn open(dir: &Path) -> DiskArchiveStore {
    DiskArchiveStore::open(dir, StoreOptions::default()).expect("open store")
}

/// A request for `user`/`folder` with an optional source id.
pub fn request(user: &str, folder: &str, source: Option<&str>) -> ArchiveRequest {
    ArchiveRequest {
        user: user.to_string(),
        folder: folder.to_string(),
        source: source.map(|id| SourceRef {
            mailbox: format!("{user}@contoso.test"),
            message_id: id.to_string(),
        }),
        received: None,
    }
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Standard base64 with CRLF every 76 characters, as mail clients write it.
pub fn base64_lines(data: &[u8]) -> Vec<u8> {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + data.len() / 38 + 4);
    let mut col = 0;
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = [
            ABC[(n >> 18) as usize & 63],
            ABC[(n >> 12) as usize & 63],
            if chunk.len() > 1 {
                ABC[(n >> 6) as usize & 63]
            } else {
                b'='
            },
            if chunk.len() > 2 {
                ABC[n as usize & 63]
            } else {
                b'='
            },
        ];
        out.extend_from_slice(&chars);
        col += 4;
        if col == 76 {
            out.extend_from_slice(b"\r\n");
            col = 0;
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A message with a text body and base64 attachments.
pub struct Mail<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub date: DateTime<Utc>,
    pub body: &'a str,
    pub attachments: &'a [(&'a str, &'a [u8])],
    pub extra_headers: &'a str,
    pub boundary: &'a str,
}

impl Mail<'_> {
    pub fn render(&self) -> Vec<u8> {
        let mut m = format!(
            "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <{}@test>\r\n{}MIME-Version: 1.0\r\n",
            self.from,
            self.to,
            self.subject,
            self.date.to_rfc2822(),
            blake3::hash(self.subject.as_bytes()).to_hex(),
            self.extra_headers
        )
        .into_bytes();
        if self.attachments.is_empty() {
            m.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n\r\n");
            m.extend_from_slice(self.body.as_bytes());
            m.extend_from_slice(b"\r\n");
            return m;
        }
        let b = self.boundary;
        m.extend_from_slice(
            format!(
                "Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\nThis is a multi-part message.\r\n--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
                self.body
            )
            .as_bytes(),
        );
        for (name, data) in self.attachments {
            m.extend_from_slice(
                format!(
                    "--{b}\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                )
                .as_bytes(),
            );
            m.extend_from_slice(&base64_lines(data));
        }
        m.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        m
    }
}

/// A date in July 2025 (`day` 1..=28).
pub fn july(day: u32) -> DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(2025, 7, day, 9, 30, 0).unwrap()
}
