//! Malformed MIME corpora: generated and committed broken messages are archived,
//! read back byte-exact and searched without a panic.

use super::*;

/// A seeded MIME input of one of several kinds; returns (kind, bytes).
fn random_mime(rng: &mut ChaCha8Rng, n: u32) -> (&'static str, Vec<u8>) {
    let boundary = format!("=_b{n}_{}", rng.gen_range(0..1_000_000));
    let text: String = (0..rng.gen_range(0..3_000))
        .map(|_| char::from(rng.gen_range(b' '..=b'~')))
        .collect();
    match rng.gen_range(0..6) {
        0 => {
            let s = format!(
                "From: \"Müller, Jörg\" <j@contoso.test>\r\nTo: a@b.test, \"x\" <y@z.test>\r\nSubject: =?utf-8?q?caf=C3=A9_{n}?=\r\n\
                 Date: Wed, 2 Jul 2025 08:00:00 +0200\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
                 --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--{boundary}\r\nContent-Type: text/html\r\n\r\n<p>{text}</p>\r\n--{boundary}--\r\n"
            );
            ("well_formed", s.into_bytes())
        }
        1 => {
            // Broken boundaries: undeclared, never closed, nested with the same name.
            let s = match rng.gen_range(0..3) {
                0 => format!(
                    "Subject: broken {n}\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--other\r\n\r\n{text}\r\n--other--\r\n"
                ),
                1 => format!(
                    "Subject: unclosed {n}\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n--{boundary}\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n--{boundary}\r\n{text}"
                ),
                _ => format!(
                    "Subject: empty boundary {n}\r\nContent-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n{text}\r\n----\r\n"
                ),
            };
            ("broken_boundary", s.into_bytes())
        }
        2 => {
            // Bad encodings: invalid base64 / quoted-printable, unknown charsets, raw 8-bit headers.
            let mut s = format!(
                "Subject: =?x-unknown?B?!!!{n}?=\r\nFrom: =?utf-8?Q?=ZZ=?= <bad@enc.test>\r\nContent-Type: text/plain; charset=\"x-klingon\"\r\n\
                 Content-Transfer-Encoding: {}\r\n\r\n",
                ["base64", "quoted-printable", "x-uuencode", "7bit"][rng.gen_range(0..4)]
            )
            .into_bytes();
            s.extend_from_slice(b"Zm9v!!!@@==\r\n=A=\r\n=\xff\xfe\r\nSubject: \xc3\x28\r\n");
            s.extend_from_slice(text.as_bytes());
            ("bad_encoding", s)
        }
        3 => {
            let mut bytes = vec![0u8; rng.gen_range(1..8_192)];
            rng.fill_bytes(&mut bytes);
            ("arbitrary_bytes", bytes)
        }
        4 => {
            // Headers only, no body, endless header line, bare LF, NULs.
            let mut s = b"Subject: ".to_vec();
            s.extend(std::iter::repeat_n(b'x', rng.gen_range(0..100_000)));
            s.extend_from_slice(b"\nX-Nul: a\0b\n\nbody\0\n");
            ("degenerate_headers", s)
        }
        _ => {
            // A well-formed message with random bytes spliced in.
            let mut s = format!(
                "Subject: spliced {n}\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\n{text}\r\n--{boundary}--\r\n"
            )
            .into_bytes();
            for _ in 0..rng.gen_range(1..20) {
                let at = rng.gen_range(0..=s.len());
                s.insert(at, rng.r#gen());
            }
            ("spliced", s)
        }
    }
}

/// The `.eml` files committed under `archive-store/tests/corpus/`, if the source tree is at hand.
fn committed_corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../archive-store/tests/corpus");
    let mut files = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("eml"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

pub(super) fn mime_corpus(plan: &Plan, seed: u64) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let store = DiskArchiveStore::open(dir.path().join("archive"), StoreOptions::default())?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x31E);
    let mut inputs: Vec<(String, &'static str, Vec<u8>)> = Vec::new();
    for path in committed_corpus() {
        let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
        inputs.push((path.display().to_string(), "committed_corpus", bytes));
    }
    let committed = inputs.len();
    for n in 0..plan.mime_inputs {
        let (kind, bytes) = random_mime(&mut rng, n);
        inputs.push((format!("random #{n}"), kind, bytes));
    }
    let clock = Instant::now();
    let (mut tried, mut mismatches, mut panics, mut unparseable) = (0u64, 0u64, 0u64, 0u64);
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for (n, (name, kind, bytes)) in inputs.iter().enumerate() {
        if clock.elapsed() > plan.section_budget {
            break;
        }
        tried += 1;
        *kinds.entry(kind).or_default() += 1;
        let request = ArchiveRequest {
            user: "corpus".into(),
            folder: (*kind).into(),
            source: Some(SourceRef {
                mailbox: "corpus@contoso.test".into(),
                message_id: format!("input-{n}"),
            }),
            received: None,
        };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<bool> {
            let outcome = store.archive(&request, RawMessage::Bytes(bytes))?;
            let back = store.read_message(&outcome.id)?;
            let info = store.show(&outcome.id)?;
            if info.metadata.unparseable {
                unparseable += 1;
            }
            Ok(back == *bytes && info.size == bytes.len() as u64)
        }));
        match outcome {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                mismatches += 1;
                eprintln!("   {name}: read back differs");
            }
            Ok(Err(e)) => {
                mismatches += 1;
                eprintln!("   {name}: {e:#}");
            }
            Err(_) => {
                panics += 1;
                eprintln!("   {name}: panicked");
            }
        }
    }
    let verify = store.verify()?;
    Ok(json!({
        "inputs": tried, "committed_files": committed, "kinds": kinds, "unparseable": unparseable,
        "mismatches": mismatches, "panics": panics,
        "verify_problems": verify.problems.len() + verify.drift.len(),
    }))
}
