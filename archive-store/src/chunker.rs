//! Cuts a message into chunks at MIME part boundaries, streaming.
//!
//! Headers, boundary lines and small part bodies are "glue" and stay together; a
//! leaf part body that grows past [`BODY_SPLIT`] bytes starts a chunk of its own
//! exactly where the body starts, and is cut further by content-defined chunking
//! (a gear hash) with a hard maximum of [`MAX_CHUNK`]. So an attachment carried by
//! copies whose headers (or boundaries) differ is cut into identical chunks and
//! stored once. Concatenating the chunks gives back the input exactly.
//!
//! While cutting, the chunker also keeps a bounded "skeleton" of the message for
//! metadata extraction: every header and small body, and the first bytes of each
//! large body, so attachment names and text survive without holding a 150 MB
//! attachment in memory.

use std::io::BufRead;

use crate::ArchiveError;

/// Largest chunk.
pub(crate) const MAX_CHUNK: usize = 1 << 20;
/// A leaf body this large gets chunks of its own.
pub(crate) const BODY_SPLIT: usize = 16 * 1024;
/// Smallest content-defined chunk.
const CDC_MIN: usize = 64 * 1024;
/// Average content-defined chunk ≈ CDC_MIN + 256 KiB.
const CDC_MASK: u64 = (1 << 18) - 1;
/// Longest line piece examined at once.
const PIECE: usize = 64 * 1024;
/// Skeleton: bytes kept per large body.
const SKELETON_PER_BODY: usize = 256 * 1024;
/// Skeleton: total cap.
const SKELETON_MAX: usize = 8 << 20;
/// Headers kept for Content-Type parsing.
const HEADER_KEEP: usize = 64 * 1024;

const fn gear_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut i = 0;
    while i < 256 {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
}

static GEAR: [u64; 256] = gear_table();

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Inside a header block.
    Headers,
    /// Preamble/epilogue of a multipart (glue).
    Glue,
    /// A leaf body.
    Leaf,
}

/// What a chunking pass produced besides the chunks.
pub(crate) struct ChunkSummary {
    /// Total bytes read.
    pub(crate) size: u64,
    /// Bounded copy of the message for metadata extraction.
    pub(crate) skeleton: Vec<u8>,
}

struct Chunker<'e> {
    emit: &'e mut dyn FnMut(&[u8]) -> Result<(), ArchiveError>,
    current: Vec<u8>,
    mode: Mode,
    headers: Vec<u8>,
    boundaries: Vec<Vec<u8>>,
    body_start: usize,
    separated: bool,
    gear: u64,
    skeleton: Vec<u8>,
    skeleton_body: usize,
}

/// Reads `reader` to its end, calling `emit` with each chunk in order.
pub(crate) fn chunk_stream(
    mut reader: impl BufRead,
    emit: &mut dyn FnMut(&[u8]) -> Result<(), ArchiveError>,
    read_error: &dyn Fn(std::io::Error) -> ArchiveError,
) -> Result<ChunkSummary, ArchiveError> {
    let mut chunker = Chunker {
        emit,
        current: Vec::with_capacity(64 * 1024),
        mode: Mode::Headers,
        headers: Vec::new(),
        boundaries: Vec::new(),
        body_start: 0,
        separated: false,
        gear: 0,
        skeleton: Vec::new(),
        skeleton_body: 0,
    };
    let mut piece = Vec::with_capacity(PIECE);
    let mut at_line_start = true;
    let mut size = 0u64;
    loop {
        piece.clear();
        let ends_line = next_piece(&mut reader, &mut piece).map_err(read_error)?;
        if piece.is_empty() {
            break;
        }
        size += piece.len() as u64;
        chunker.piece(&piece, at_line_start)?;
        at_line_start = ends_line;
    }
    chunker.finish()?;
    Ok(ChunkSummary {
        size,
        skeleton: chunker.skeleton,
    })
}

/// Reads up to the next newline (included) or [`PIECE`] bytes; true when the piece ends a line.
pub(crate) fn next_piece(reader: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<bool> {
    loop {
        let available = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(false);
        }
        let room = PIECE - out.len();
        let window = &available[..available.len().min(room)];
        if let Some(nl) = window.iter().position(|&b| b == b'\n') {
            out.extend_from_slice(&window[..=nl]);
            reader.consume(nl + 1);
            return Ok(true);
        }
        let n = window.len();
        out.extend_from_slice(window);
        reader.consume(n);
        if out.len() >= PIECE {
            return Ok(false);
        }
    }
}

impl Chunker<'_> {
    fn piece(&mut self, piece: &[u8], at_line_start: bool) -> Result<(), ArchiveError> {
        if at_line_start && piece.starts_with(b"--") && !self.boundaries.is_empty() {
            let hit = self
                .boundaries
                .iter()
                .rposition(|b| is_delimiter(piece, b))
                .map(|i| (i, piece[self.boundaries[i].len()..].starts_with(b"--")));
            if let Some((index, closing)) = hit {
                self.end_leaf()?;
                if closing {
                    self.boundaries.truncate(index);
                    self.mode = Mode::Glue;
                } else {
                    self.boundaries.truncate(index + 1);
                    self.mode = Mode::Headers;
                    self.headers.clear();
                }
                self.glue(piece)?;
                return Ok(());
            }
        }
        match self.mode {
            Mode::Headers => {
                self.glue(piece)?;
                if self.headers.len() < HEADER_KEEP {
                    self.headers.extend_from_slice(piece);
                }
                if at_line_start && (piece == b"\r\n" || piece == b"\n") {
                    match multipart_boundary(&self.headers) {
                        Some(boundary) => {
                            let mut delimiter = b"--".to_vec();
                            delimiter.extend_from_slice(&boundary);
                            self.boundaries.push(delimiter);
                            self.mode = Mode::Glue;
                        }
                        None => {
                            self.mode = Mode::Leaf;
                            self.body_start = self.current.len();
                            self.separated = false;
                            self.skeleton_body = 0;
                        }
                    }
                    self.headers.clear();
                }
            }
            Mode::Glue => self.glue(piece)?,
            Mode::Leaf => self.leaf(piece)?,
        }
        Ok(())
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = SKELETON_MAX.saturating_sub(self.skeleton.len());
        self.skeleton
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn glue(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.keep(bytes);
        if self.current.len() + bytes.len() > MAX_CHUNK {
            self.flush()?;
        }
        self.current.extend_from_slice(bytes);
        Ok(())
    }

    fn leaf(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        if self.skeleton_body < SKELETON_PER_BODY {
            self.skeleton_body += bytes.len();
            self.keep(bytes);
        }
        if self.separated {
            return self.cdc(bytes);
        }
        self.current.extend_from_slice(bytes);
        if self.current.len() - self.body_start >= BODY_SPLIT {
            // The body is large: give it chunks of its own, starting at the body.
            let body = self.current.split_off(self.body_start);
            self.flush()?;
            self.separated = true;
            self.gear = 0;
            self.cdc(&body)?;
        }
        Ok(())
    }

    fn cdc(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            self.gear = (self.gear << 1).wrapping_add(GEAR[b as usize]);
            let len = self.current.len() + (i + 1 - start);
            if (len >= CDC_MIN && self.gear & CDC_MASK == 0) || len >= MAX_CHUNK {
                self.current.extend_from_slice(&bytes[start..=i]);
                start = i + 1;
                self.flush()?;
                self.gear = 0;
            }
        }
        self.current.extend_from_slice(&bytes[start..]);
        Ok(())
    }

    fn end_leaf(&mut self) -> Result<(), ArchiveError> {
        if self.mode == Mode::Leaf && self.separated {
            self.flush()?;
        }
        self.separated = false;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ArchiveError> {
        if !self.current.is_empty() {
            (self.emit)(&self.current)?;
            self.current.clear();
        }
        self.body_start = 0;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ArchiveError> {
        self.flush()
    }
}

fn is_delimiter(line: &[u8], delimiter: &[u8]) -> bool {
    if !line.starts_with(delimiter) {
        return false;
    }
    let mut rest = &line[delimiter.len()..];
    if let Some(r) = rest.strip_prefix(b"--") {
        rest = r;
    }
    rest.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// The boundary of a multipart Content-Type in a header block, if any.
pub(crate) fn multipart_boundary(headers: &[u8]) -> Option<Vec<u8>> {
    // Unfold, then look for the Content-Type field.
    let text = String::from_utf8_lossy(headers);
    let mut fields: Vec<String> = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            fields.push(line.to_string());
        }
    }
    let value = fields.iter().find_map(|f| {
        let (name, value) = f.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-type")
            .then(|| value.trim().to_string())
    })?;
    let lower = value.to_ascii_lowercase();
    if !lower.starts_with("multipart/") {
        return None;
    }
    let at = lower.find("boundary=")? + "boundary=".len();
    let rest = &value[at..];
    let boundary = if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next()?
    } else {
        rest.split([';', ' ', '\t']).next()?
    };
    (!boundary.is_empty()).then(|| boundary.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(input: &[u8]) -> (Vec<Vec<u8>>, ChunkSummary) {
        let mut out = Vec::new();
        let summary = chunk_stream(
            input,
            &mut |c: &[u8]| {
                out.push(c.to_vec());
                Ok(())
            },
            &|e| ArchiveError::io("test", e),
        )
        .unwrap();
        (out, summary)
    }

    fn message(headers: &str, boundary: &str, attachment: &[u8]) -> Vec<u8> {
        let mut m = format!(
            "{headers}Content-Type: multipart/mixed;\r\n boundary=\"{boundary}\"\r\n\r\npreamble\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{boundary}\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        )
        .into_bytes();
        m.extend_from_slice(attachment);
        m.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        m
    }

    fn base64ish(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut x: u32 = 12345;
        while out.len() < n {
            for _ in 0..76 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                out.push(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                        [(x >> 16) as usize % 64],
                );
            }
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn concatenated_chunks_equal_input() {
        let m = message("Subject: a\r\n", "b1", &base64ish(3 << 20));
        let (parts, summary) = chunks(&m);
        assert_eq!(parts.concat(), m);
        assert_eq!(summary.size, m.len() as u64);
        assert!(
            parts
                .iter()
                .all(|p| p.len() <= MAX_CHUNK + BODY_SPLIT + PIECE)
        );
        assert!(summary.skeleton.len() < 400 * 1024);
    }

    #[test]
    fn shared_attachment_gives_shared_chunks_despite_other_headers_and_boundary() {
        let att = base64ish(2 << 20);
        let (a, _) = chunks(&message("Subject: one\r\nTo: x@y\r\n", "AAA", &att));
        let (b, _) = chunks(&message("Subject: two, longer\r\n", "BBBBBB", &att));
        let shared: usize = a.iter().filter(|c| b.contains(c)).map(Vec::len).sum();
        assert!(
            shared > att.len() - 1024,
            "shared {shared} of {}",
            att.len()
        );
    }

    #[test]
    fn small_message_is_one_chunk() {
        let m = b"Subject: hi\r\n\r\nbody\r\n".to_vec();
        let (parts, summary) = chunks(&m);
        assert_eq!(parts, vec![m.clone()]);
        assert_eq!(summary.skeleton, m);
    }

    #[test]
    fn boundary_parsing() {
        assert_eq!(
            multipart_boundary(b"Content-Type: multipart/mixed;\r\n\tboundary=abc; x=y\r\n\r\n"),
            Some(b"abc".to_vec())
        );
        assert_eq!(
            multipart_boundary(b"content-type: text/plain\r\n\r\n"),
            None
        );
    }
}
