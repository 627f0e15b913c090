//! The SIGKILL loop over archive writes: a child process archives deterministic
//! messages until killed; after every kill the archive reopens, verifies clean and holds
//! every message the child acknowledged.

use super::*;

/// A deterministic message of the archive-kill loop: sizes from 300 bytes to ~70 KB,
/// every fourth one carrying an attachment shared by many messages.
fn crash_message(seed: u64, run: u64, writer: u64, i: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(
        seed ^ run.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (writer << 48) ^ i.wrapping_mul(31),
    );
    let body_len = rng.gen_range(100..20_000);
    let body: String = (0..body_len)
        .map(|k| {
            if k % 72 == 71 {
                '\n'
            } else {
                char::from(rng.gen_range(b' '..=b'~'))
            }
        })
        .collect();
    let boundary = format!("b-{run}-{writer}-{i}");
    let mut out = format!(
        "From: crash@contoso.test\r\nTo: victim@contoso.test\r\nSubject: run {run} writer {writer} message {i}\r\n\
         Date: Tue, 1 Jul 2025 10:{:02}:00 +0000\r\nMessage-ID: <{run}.{writer}.{i}@contoso.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        i % 60
    );
    if i.is_multiple_of(4) {
        // Shared across every run: exercises single-instance storage under kills.
        let mut shared = ChaCha8Rng::seed_from_u64(seed ^ 0x5A5A);
        let mut blob = vec![0u8; 48_000];
        shared.fill_bytes(&mut blob);
        out.push_str(&format!(
            "--{boundary}\r\nContent-Type: application/octet-stream; name=\"shared.bin\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            base64_lines(&blob)
        ));
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out.into_bytes()
}

fn base64_lines(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 * 2 + 4);
    for (n, chunk) in data.chunks(3).enumerate() {
        if n > 0 && n % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(TABLE[((v >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn crash_source(run: u64, writer: u64, i: u64) -> SourceRef {
    SourceRef {
        mailbox: "victim@contoso.test".into(),
        message_id: format!("run{run}-w{writer}-m{i}"),
    }
}

/// `--child-archive DIR RUN SEED`: archives until killed, one `ack` line per returned call.
pub(super) fn child_archive(args: &[String]) -> Result<()> {
    let [dir, run, seed] = args else {
        bail!("--child-archive DIR RUN SEED");
    };
    let run: u64 = run.parse().context("RUN")?;
    let seed: u64 = seed.parse().context("SEED")?;
    let store = Arc::new(DiskArchiveStore::open(dir, StoreOptions::default())?);
    println!("ready");
    let mut writers = Vec::new();
    for writer in 0..ARCHIVE_WRITERS {
        let store = store.clone();
        writers.push(std::thread::spawn(move || -> Result<()> {
            for i in 0.. {
                let bytes = crash_message(seed, run, writer, i);
                let request = ArchiveRequest {
                    user: CRASH_USER.into(),
                    folder: "Inbox".into(),
                    source: Some(crash_source(run, writer, i)),
                    received: None,
                };
                let outcome = store.archive(&request, RawMessage::Bytes(&bytes))?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {writer} {i} {}", outcome.id)?;
                out.flush()?;
            }
            Ok(())
        }));
    }
    for writer in writers {
        writer
            .join()
            .map_err(|_| anyhow!("writer thread panicked"))??;
    }
    Ok(())
}

/// Kills a child with SIGKILL when `deadline` passes unless `done` is set first.
pub(super) fn watchdog(pid: u32, deadline: Duration) -> std::sync::mpsc::Sender<()> {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(deadline) {
            // std offers no kill by pid; `kill -KILL` is the portable Unix way.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    });
    done
}

pub(super) fn archive_kills(plan: &Plan, seed: u64) -> Result<Value> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let archive_dir = dir.path().join("archive");
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xA11);
    let clock = Instant::now();
    let (mut runs, mut kills, mut acknowledged, mut lost, mut verify_problems) = (0u64, 0, 0, 0, 0);
    let mut child_failures = 0u64;
    let mut acked: Vec<(u64, u64, u64, String)> = Vec::new();
    for run in 0..u64::from(plan.archive_kills) {
        if clock.elapsed() > plan.section_budget {
            break;
        }
        runs += 1;
        let kill_after: u64 = rng.gen_range(0..=60);
        let mut child = Command::new(&exe)
            .arg("--child-archive")
            .arg(&archive_dir)
            .arg(run.to_string())
            .arg(seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning the archive child")?;
        let done = watchdog(child.id(), Duration::from_secs(120));
        let stdout = child.stdout.take().context("child stdout")?;
        let lines = BufReader::new(stdout).lines();
        let mut seen = 0u64;
        let mut killed = false;
        if kill_after == 0 {
            // Somewhere inside open/recovery.
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..40)));
            child.kill().context("SIGKILL")?;
            killed = true;
        }
        for line in lines {
            let line = line.context("reading the child")?;
            if let Some(rest) = line.strip_prefix("ack ") {
                let parts: Vec<&str> = rest.split(' ').collect();
                if let [w, i, id] = parts.as_slice() {
                    acked.push((run, w.parse()?, i.parse()?, (*id).to_owned()));
                    seen += 1;
                }
                if !killed && seen >= kill_after {
                    child.kill().context("SIGKILL")?;
                    killed = true;
                }
            }
        }
        // Lines still in the pipe after the kill were printed after durable writes: counted above.
        let status = child.wait()?;
        let _ = done.send(());
        if killed || status.code().is_none() {
            kills += 1;
        } else {
            // The child archives forever: ending on its own means it failed.
            child_failures += 1;
            eprintln!("   run {run}: the child stopped by itself ({status})");
        }

        // Reopen, verify, and check every acknowledged message so far.
        let store = DiskArchiveStore::open(&archive_dir, StoreOptions::default())
            .with_context(|| format!("reopening after kill {run}"))?;
        let report = store.verify()?;
        if !report.is_clean() {
            verify_problems += (report.problems.len() + report.drift.len()) as u64;
            eprintln!(
                "   run {run}: verify found {:?} {:?}",
                report.problems, report.drift
            );
        }
        drop(store);
    }
    let store = DiskArchiveStore::open(&archive_dir, StoreOptions::default())?;
    for (run, writer, i, id) in &acked {
        acknowledged += 1;
        let expected = crash_message(seed, *run, *writer, *i);
        let id = MessageId(id.clone());
        let intact = matches!(store.read_message(&id), Ok(bytes) if bytes == expected);
        let recorded = store
            .find_source(CRASH_USER, &crash_source(*run, *writer, *i))?
            .is_some_and(|found| found == id);
        if !intact || !recorded {
            lost += 1;
            eprintln!("   lost: run {run} writer {writer} message {i} ({id})");
        }
    }
    Ok(json!({
        "runs": runs, "kills": kills, "acknowledged": acknowledged, "lost": lost,
        "verify_problems": verify_problems, "child_failures": child_failures,
    }))
}
