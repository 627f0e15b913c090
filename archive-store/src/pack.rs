//! Append-only, checksummed frame files: the pack files (chunks and manifests)
//! and the record log share one frame format.
//!
//! A frame is `magic(4) kind(1) len(4, LE) crc32(4, LE) payload(len)`; the CRC covers
//! kind, length and payload. The magic lets a scanner resynchronise after a damaged
//! frame, so one flipped byte never hides the frames behind it, and tells a torn tail
//! (nothing valid follows) from damage in the middle (valid frames follow).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::io::StoreIo;
use crate::{ArchiveError, IoFailure};

/// Frame magic.
pub(crate) const MAGIC: [u8; 4] = *b"ASf1";
/// Bytes before the payload.
pub(crate) const HEADER_LEN: u64 = 13;
/// Largest payload accepted when reading (chunks are at most 1 MiB; manifests of
/// 150 MB messages are far below this).
pub(crate) const MAX_PAYLOAD: u32 = 64 << 20;

/// Kinds of frames.
pub(crate) mod kind {
    /// A compressed chunk: `key(32) body`.
    pub(crate) const CHUNK: u8 = 1;
    /// A message manifest: `address(32) body`.
    pub(crate) const MANIFEST: u8 = 2;
    /// A record-log entry: `address(32) body`.
    pub(crate) const RECORD: u8 = 3;
}

/// Where a frame lives: file number, frame offset, payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Location {
    /// Pack number.
    pub(crate) file: u32,
    /// Offset of the frame header.
    pub(crate) offset: u64,
    /// Payload length.
    pub(crate) len: u32,
}

impl Location {
    /// 16-byte encoding for sled values.
    pub(crate) fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&self.file.to_le_bytes());
        out[4..12].copy_from_slice(&self.offset.to_le_bytes());
        out[12..].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// Inverse of [`Location::encode`].
    pub(crate) fn decode(raw: &[u8]) -> Option<Location> {
        if raw.len() < 16 {
            return None;
        }
        Some(Location {
            file: u32::from_le_bytes(raw[..4].try_into().ok()?),
            offset: u64::from_le_bytes(raw[4..12].try_into().ok()?),
            len: u32::from_le_bytes(raw[12..16].try_into().ok()?),
        })
    }

    /// Offset just past the frame.
    pub(crate) fn end(&self) -> u64 {
        self.offset + HEADER_LEN + u64::from(self.len)
    }
}

fn frame_crc(kind: u8, len: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(&len.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Serialises one frame.
pub(crate) fn encode_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(payload.len() + HEADER_LEN as usize);
    out.extend_from_slice(&MAGIC);
    out.push(kind);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&frame_crc(kind, len, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Path of pack number `n`.
pub(crate) fn pack_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("pack-{n:08}.pack"))
}

/// Pack numbers present in `dir`, ascending.
pub(crate) fn list_packs(dir: &Path) -> Result<Vec<u32>, ArchiveError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| ArchiveError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ArchiveError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(num) = name
            .strip_prefix("pack-")
            .and_then(|rest| rest.strip_suffix(".pack"))
            .and_then(|n| n.parse::<u32>().ok())
        {
            out.push(num);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Reads `buf.len()` bytes at `offset`.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let mut done = 0usize;
        while done < buf.len() {
            let n = file.seek_read(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
            }
            done += n;
        }
        Ok(())
    }
}

/// Decodes and checks a frame header; returns (kind, len, crc).
fn parse_header(header: &[u8; HEADER_LEN as usize]) -> Result<(u8, u32, u32), String> {
    if header[..4] != MAGIC {
        return Err("bad frame magic".into());
    }
    let kind = header[4];
    if !(kind::CHUNK..=kind::RECORD).contains(&kind) {
        return Err(format!("unknown frame kind {kind}"));
    }
    let len = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
    if len > MAX_PAYLOAD {
        return Err(format!("implausible frame length {len}"));
    }
    let crc = u32::from_le_bytes([header[9], header[10], header[11], header[12]]);
    Ok((kind, len, crc))
}

/// Random-access reader of frames in a set of numbered files.
pub(crate) struct FrameFiles {
    dir: PathBuf,
    naming: fn(&Path, u32) -> PathBuf,
    open: RwLock<HashMap<u32, Arc<File>>>,
}

impl FrameFiles {
    /// Reader over the files named by `naming` in `dir`.
    pub(crate) fn new(dir: PathBuf, naming: fn(&Path, u32) -> PathBuf) -> Self {
        FrameFiles {
            dir,
            naming,
            open: RwLock::new(HashMap::new()),
        }
    }

    /// Path of file `n`.
    pub(crate) fn path(&self, n: u32) -> PathBuf {
        (self.naming)(&self.dir, n)
    }

    fn file(&self, n: u32) -> Result<Arc<File>, ArchiveError> {
        if let Ok(map) = self.open.read()
            && let Some(file) = map.get(&n)
        {
            return Ok(file.clone());
        }
        let path = self.path(n);
        let file = Arc::new(File::open(&path).map_err(|e| ArchiveError::io(&path, e))?);
        if let Ok(mut map) = self.open.write() {
            map.insert(n, file.clone());
        }
        Ok(file)
    }

    /// Forgets the open handle of file `n` (removed by compaction).
    pub(crate) fn forget(&self, n: u32) {
        if let Ok(mut map) = self.open.write() {
            map.remove(&n);
        }
    }

    /// Reads and checks the frame at `loc`; returns (kind, payload).
    pub(crate) fn read(&self, loc: Location) -> Result<(u8, Vec<u8>), ArchiveError> {
        let file = self.file(loc.file)?;
        let path = self.path(loc.file);
        let mut buf = vec![0u8; HEADER_LEN as usize + loc.len as usize];
        read_exact_at(&file, &mut buf, loc.offset).map_err(|e| ArchiveError::io(&path, e))?;
        let corrupt = |detail: String| ArchiveError::CorruptObject {
            pack: Some(path.clone()),
            offset: Some(loc.offset),
            detail,
            affected: Vec::new(),
        };
        let mut header = [0u8; HEADER_LEN as usize];
        header.copy_from_slice(&buf[..HEADER_LEN as usize]);
        let (kind, len, crc) = parse_header(&header).map_err(corrupt)?;
        if len != loc.len {
            return Err(corrupt(format!(
                "frame length {len}, index says {}",
                loc.len
            )));
        }
        let payload = buf.split_off(HEADER_LEN as usize);
        if frame_crc(kind, len, &payload) != crc {
            return Err(corrupt("checksum mismatch".into()));
        }
        Ok((kind, payload))
    }

    /// Cheap check that `loc` still holds a frame of `kind` whose payload starts
    /// with `key` (guards against stale index entries after a crash).
    pub(crate) fn probe(&self, loc: Location, kind: u8, key: &[u8]) -> bool {
        let Ok(file) = self.file(loc.file) else {
            return false;
        };
        let mut buf = vec![0u8; HEADER_LEN as usize + key.len()];
        if read_exact_at(&file, &mut buf, loc.offset).is_err() {
            return false;
        }
        let mut header = [0u8; HEADER_LEN as usize];
        header.copy_from_slice(&buf[..HEADER_LEN as usize]);
        matches!(parse_header(&header), Ok((k, len, _)) if k == kind && len == loc.len)
            && &buf[HEADER_LEN as usize..] == key
    }
}

/// Appends frames to the newest file of a set, rolling to a new file past a size limit.
///
/// A failed write is undone (the file is cut back to its length before it) and the
/// appender refuses every later append, so a half-written frame is never followed
/// by good ones. A read-only appender only tracks where reading stops.
pub(crate) struct FrameAppender {
    dir: PathBuf,
    naming: fn(&Path, u32) -> PathBuf,
    number: u32,
    file: Option<Arc<File>>,
    len: u64,
    limit: u64,
    io: Arc<dyn StoreIo>,
    failed: Option<IoFailure>,
}

impl FrameAppender {
    /// Opens (creating) file `number` for appending at its current end.
    pub(crate) fn open(
        dir: &Path,
        naming: fn(&Path, u32) -> PathBuf,
        number: u32,
        limit: u64,
        io: Arc<dyn StoreIo>,
    ) -> Result<Self, ArchiveError> {
        let path = naming(dir, number);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ArchiveError::io(&path, e))?;
        let len = file
            .metadata()
            .map_err(|e| ArchiveError::io(&path, e))?
            .len();
        Ok(FrameAppender {
            dir: dir.to_path_buf(),
            naming,
            number,
            file: Some(Arc::new(file)),
            len,
            limit,
            io,
            failed: None,
        })
    }

    /// A read-only view of file `number` (which may be missing: then it is empty).
    pub(crate) fn read_only(
        dir: &Path,
        naming: fn(&Path, u32) -> PathBuf,
        number: u32,
    ) -> Result<Self, ArchiveError> {
        let path = naming(dir, number);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(ArchiveError::io(&path, e)),
        };
        Ok(FrameAppender {
            dir: dir.to_path_buf(),
            naming,
            number,
            file: None,
            len,
            limit: u64::MAX,
            io: Arc::new(crate::io::RealIo),
            failed: Some(IoFailure::other("the archive is open read-only")),
        })
    }

    /// Path of the current file.
    pub(crate) fn path(&self) -> PathBuf {
        (self.naming)(&self.dir, self.number)
    }

    /// Current file number.
    pub(crate) fn number(&self) -> u32 {
        self.number
    }

    /// Current length of the current file (for a read-only view: where reading stops).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Stops a read-only view at `len` (a torn tail it must not cut).
    pub(crate) fn stop_at(&mut self, len: u64) {
        if self.file.is_none() {
            self.len = len;
        }
    }

    fn writable(&self) -> Result<&Arc<File>, ArchiveError> {
        match (&self.failed, &self.file) {
            (None, Some(file)) => Ok(file),
            (Some(failure), _) => Err(ArchiveError::Poisoned {
                failure: failure.clone(),
            }),
            (None, None) => Err(ArchiveError::Poisoned {
                failure: IoFailure::other("the archive is open read-only"),
            }),
        }
    }

    /// Writes `buf` at the end; on failure cuts the file back and refuses later writes.
    fn write(&mut self, buf: &[u8]) -> Result<(), ArchiveError> {
        let file = self.writable()?.clone();
        let path = self.path();
        if let Err(e) = self.io.write(&file, &path, buf) {
            let err = ArchiveError::io(&path, e);
            if let Err(cut) = file.set_len(self.len) {
                tracing::error!(file = %path.display(), error = %cut, "cannot cut back a failed write; it is cut on next open");
            }
            self.failed = Some(IoFailure::of(&err));
            return Err(err);
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Makes the current file durable; a failure refuses later writes.
    pub(crate) fn sync(&mut self) -> Result<(), ArchiveError> {
        let (file, path) = self.handle()?;
        self.io.sync(&file, &path).map_err(|e| {
            let err = ArchiveError::io(&path, e);
            self.failed = Some(IoFailure::of(&err));
            err
        })
    }

    /// Handle for fsync outside the writer's lock.
    pub(crate) fn handle(&self) -> Result<(Arc<File>, PathBuf), ArchiveError> {
        Ok((self.writable()?.clone(), self.path()))
    }

    /// Appends one frame (not synced); rolls over first when the file is full.
    pub(crate) fn append(&mut self, kind: u8, payload: &[u8]) -> Result<Location, ArchiveError> {
        let frame = encode_frame(kind, payload);
        self.writable()?;
        if self.len > 0 && self.len + frame.len() as u64 > self.limit {
            self.roll()?;
        }
        let offset = self.len;
        self.write(&frame)?;
        Ok(Location {
            file: self.number,
            offset,
            len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        })
    }

    /// Appends several frames with one write (not synced); never rolls.
    pub(crate) fn append_many(
        &mut self,
        frames: &[(u8, Vec<u8>)],
    ) -> Result<Vec<Location>, ArchiveError> {
        let mut buf = Vec::new();
        let mut locs = Vec::with_capacity(frames.len());
        for (kind, payload) in frames {
            locs.push(Location {
                file: self.number,
                offset: self.len + buf.len() as u64,
                len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            });
            buf.extend_from_slice(&encode_frame(*kind, payload));
        }
        self.write(&buf)?;
        Ok(locs)
    }

    /// Continues in a new file numbered after the current one (the current one is
    /// fsynced first), whatever the current length.
    pub(crate) fn start_next(&mut self) -> Result<(), ArchiveError> {
        self.writable()?;
        self.roll()
    }

    fn roll(&mut self) -> Result<(), ArchiveError> {
        self.sync()?;
        let next = FrameAppender::open(
            &self.dir,
            self.naming,
            self.number + 1,
            self.limit,
            self.io.clone(),
        )?;
        if let Err(e) = sync_dir(&*self.io, &self.dir) {
            self.failed = Some(IoFailure::of(&e));
            return Err(e);
        }
        *self = next;
        Ok(())
    }
}

/// Fsyncs a directory so new files in it survive a crash.
pub(crate) fn sync_dir(io: &dyn StoreIo, dir: &Path) -> Result<(), ArchiveError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| io.sync(&d, dir))
            .map_err(|e| ArchiveError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    {
        let _ = (io, dir);
    }
    Ok(())
}

/// Replaces `path` with `bytes` atomically: write a temporary file, fsync it,
/// rename it over `path`, fsync the directory.
pub(crate) fn write_atomic(
    io: &dyn StoreIo,
    path: &Path,
    bytes: &[u8],
) -> Result<(), ArchiveError> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp).map_err(|e| ArchiveError::io(&tmp, e))?;
    io.write(&file, &tmp, bytes)
        .and_then(|()| io.sync(&file, &tmp))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ArchiveError::io(&tmp, e)
        })?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| ArchiveError::io(path, e))?;
    if let Some(parent) = path.parent() {
        sync_dir(io, parent)?;
    }
    Ok(())
}

/// What a sequential scan met.
pub(crate) enum ScanEvent<'a> {
    /// A frame whose checksum holds.
    Frame {
        /// Its location.
        loc: Location,
        /// Its kind.
        kind: u8,
        /// Its payload.
        payload: &'a [u8],
    },
    /// A damaged region from `offset` to `resume` (the next good frame) or to the end.
    Damaged {
        /// Where the damage starts.
        offset: u64,
        /// The next good frame, if any.
        resume: Option<u64>,
        /// What was wrong at `offset`.
        detail: String,
        /// First 32 payload bytes if the header was readable (the object's key).
        key: Option<Vec<u8>>,
    },
}

/// Result of a scan.
pub(crate) struct ScanSummary {
    /// Offset after the last good frame that is not followed by damage to the end.
    pub(crate) valid_end: u64,
    /// Length of the file.
    pub(crate) file_len: u64,
}

impl ScanSummary {
    /// The file ends in a damaged region with nothing valid after it (a torn write).
    pub(crate) fn torn_tail(&self) -> bool {
        self.valid_end < self.file_len
    }
}

/// A good frame's (kind, length), or what is wrong and the key if readable.
type FrameCheck = Result<(u8, u32), (String, Option<Vec<u8>>)>;

struct Scanner {
    reader: BufReader<File>,
    pos: u64,
    len: u64,
}

impl Scanner {
    fn seek(&mut self, pos: u64) -> io::Result<()> {
        if pos != self.pos {
            self.reader.seek(SeekFrom::Start(pos))?;
            self.pos = pos;
        }
        Ok(())
    }

    /// Tries to read a frame at `pos`; Ok(Err(detail)) when it is not a good frame.
    fn frame_at(&mut self, pos: u64, payload: &mut Vec<u8>) -> io::Result<FrameCheck> {
        if pos + HEADER_LEN > self.len {
            return Ok(Err(("truncated frame header".into(), None)));
        }
        self.seek(pos)?;
        let mut header = [0u8; HEADER_LEN as usize];
        self.reader.read_exact(&mut header)?;
        self.pos += HEADER_LEN;
        let (kind, len, crc) = match parse_header(&header) {
            Ok(h) => h,
            Err(detail) => return Ok(Err((detail, None))),
        };
        let avail = self.len - self.pos;
        let take = u64::from(len).min(avail) as usize;
        payload.clear();
        payload.resize(take, 0);
        self.reader.read_exact(payload)?;
        self.pos += take as u64;
        let key = payload.get(..32).map(<[u8]>::to_vec);
        if (take as u64) < u64::from(len) {
            return Ok(Err(("truncated frame payload".into(), key)));
        }
        if frame_crc(kind, len, payload) != crc {
            return Ok(Err(("checksum mismatch".into(), key)));
        }
        Ok(Ok((kind, len)))
    }

    /// Finds the next offset ≥ `from` holding a good frame.
    fn resync(&mut self, from: u64) -> io::Result<Option<u64>> {
        let mut scratch = Vec::new();
        let mut pos = from;
        let mut window = vec![0u8; 64 * 1024];
        while pos + HEADER_LEN <= self.len {
            self.seek(pos)?;
            let want = window.len().min((self.len - pos) as usize);
            self.reader.read_exact(&mut window[..want])?;
            self.pos += want as u64;
            let hay = &window[..want];
            let mut found = None;
            let mut i = 0;
            while i + 4 <= hay.len() {
                if hay[i..i + 4] == MAGIC {
                    found = Some(i);
                    break;
                }
                i += 1;
            }
            match found {
                Some(i) => {
                    let candidate = pos + i as u64;
                    if self.frame_at(candidate, &mut scratch)?.is_ok() {
                        return Ok(Some(candidate));
                    }
                    pos = candidate + 1;
                }
                None => {
                    if want < 4 {
                        break;
                    }
                    pos += (want - 3) as u64;
                }
            }
        }
        Ok(None)
    }
}

/// Scans `path` from `start` to its end, reporting good frames and damaged regions.
pub(crate) fn scan_file(
    path: &Path,
    number: u32,
    start: u64,
    end: Option<u64>,
    mut visit: impl FnMut(ScanEvent<'_>) -> Result<(), ArchiveError>,
) -> Result<ScanSummary, ArchiveError> {
    let io_err = |e| ArchiveError::io(path, e);
    let file = match File::open(path) {
        Ok(file) => file,
        // A record log not created yet (a read-only open of a new archive) is empty.
        Err(e) if e.kind() == io::ErrorKind::NotFound && start == 0 => {
            return Ok(ScanSummary {
                valid_end: 0,
                file_len: 0,
            });
        }
        Err(e) => return Err(io_err(e)),
    };
    let len = file.metadata().map_err(io_err)?.len();
    let len = end.map_or(len, |e| e.min(len));
    let mut scanner = Scanner {
        reader: BufReader::with_capacity(1 << 20, file),
        pos: 0,
        len,
    };
    scanner.reader.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let mut payload = Vec::new();
    let mut pos = start.min(len);
    let mut valid_end = pos;
    while pos < len {
        match scanner.frame_at(pos, &mut payload).map_err(io_err)? {
            Ok((kind, plen)) => {
                let loc = Location {
                    file: number,
                    offset: pos,
                    len: plen,
                };
                visit(ScanEvent::Frame {
                    loc,
                    kind,
                    payload: &payload,
                })?;
                pos = loc.end();
                valid_end = pos;
            }
            Err((detail, key)) => {
                // Fast path: the header was intact, only the payload is damaged.
                let mut resume = None;
                if key.is_some() {
                    let mut header = [0u8; HEADER_LEN as usize];
                    if pos + HEADER_LEN <= len {
                        read_exact_at(scanner.reader.get_ref(), &mut header, pos)
                            .map_err(io_err)?;
                        if let Ok((_, plen, _)) = parse_header(&header) {
                            let next = pos + HEADER_LEN + u64::from(plen);
                            let mut scratch = Vec::new();
                            if next < len
                                && scanner
                                    .frame_at(next, &mut scratch)
                                    .map_err(io_err)?
                                    .is_ok()
                            {
                                resume = Some(next);
                            }
                        }
                    }
                }
                if resume.is_none() {
                    resume = scanner.resync(pos + 1).map_err(io_err)?;
                }
                visit(ScanEvent::Damaged {
                    offset: pos,
                    resume,
                    detail,
                    key,
                })?;
                match resume {
                    Some(next) => pos = next,
                    None => break,
                }
            }
        }
    }
    Ok(ScanSummary {
        valid_end,
        file_len: len,
    })
}

/// Cuts a torn tail off `path` at `valid_end` and syncs.
pub(crate) fn truncate_tail(
    io: &dyn StoreIo,
    path: &Path,
    valid_end: u64,
) -> Result<(), ArchiveError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| ArchiveError::io(path, e))?;
    file.set_len(valid_end)
        .map_err(|e| ArchiveError::io(path, e))?;
    io.sync(&file, path)
        .map_err(|e| ArchiveError::io(path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn appender(dir: &Path) -> FrameAppender {
        FrameAppender::open(dir, pack_path, 1, 1 << 30, Arc::new(crate::io::RealIo)).unwrap()
    }

    #[test]
    fn scan_finds_frames_and_resyncs_after_a_flipped_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = appender(dir.path());
        let a = app.append(kind::CHUNK, &[7u8; 100]).unwrap();
        let b = app.append(kind::CHUNK, &[8u8; 100]).unwrap();
        let c = app.append(kind::MANIFEST, &[9u8; 50]).unwrap();
        let path = pack_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[b.offset as usize + 40] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let summary = scan_file(&path, 1, 0, None, |ev| {
            match ev {
                ScanEvent::Frame { loc, .. } => good.push(loc),
                ScanEvent::Damaged { offset, resume, .. } => bad.push((offset, resume)),
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(good, vec![a, c]);
        assert_eq!(bad, vec![(b.offset, Some(c.offset))]);
        assert!(!summary.torn_tail());
    }

    #[test]
    fn torn_tail_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = appender(dir.path());
        let a = app.append(kind::CHUNK, &[7u8; 100]).unwrap();
        app.append(kind::CHUNK, &[8u8; 100]).unwrap();
        let path = pack_path(dir.path(), 1);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let summary = scan_file(&path, 1, 0, None, |_| Ok(())).unwrap();
        assert!(summary.torn_tail());
        assert_eq!(summary.valid_end, a.end());
    }
}
