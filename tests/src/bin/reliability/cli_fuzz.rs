//! Fuzzed command lines: random argument vectors given to the CLI end with a clear
//! error or success, never a panic or a signal.

use super::*;
use crate::archive_kills::watchdog;

/// Words of the command line. Commands that reach the network or run long
/// (`demo`, `test`, `run`, `sync`) are left out: the suite contacts nothing but loopback.
const CLI_WORDS: &[&str] = &[
    "credentials",
    "users",
    "profile",
    "archive",
    "add",
    "list",
    "remove",
    "create",
    "show",
    "stats",
    "verify",
    "reindex",
    "search",
    "export",
    "import",
    "help",
];

/// Command groups and their subcommands (the network-bound ones left out, as above).
const CLI_COMMANDS: &[(&str, &[&str])] = &[
    ("credentials", &["add", "list", "remove"]),
    ("users", &["list", "add", "remove"]),
    ("profile", &["create", "list", "show", "remove"]),
    (
        "archive",
        &[
            "stats", "verify", "reindex", "search", "show", "export", "import",
        ],
    ),
];

const CLI_FLAGS: &[&str] = &[
    "--json",
    "--tenant",
    "--client-id",
    "--secret-env",
    "--secret-file",
    "--certificate",
    "--private-key",
    "--cloud",
    "--ca-file",
    "--email",
    "--credentials",
    "--mailbox",
    "--target-user",
    "--all",
    "--all-except",
    "--only",
    "--sync-directory",
    "--include-folder",
    "--exclude-folder",
    "--older-than-days",
    "--delete",
    "--delete-after-days",
    "--timeout-secs",
    "--schedule",
    "--user",
    "--limit",
    "--folder",
    "--query",
    "--format",
    "--out",
    "--include-disabled",
    "--include-guests",
    "--help",
    "--version",
    "-h",
    "--",
    "-",
];

const CLI_VALUES: &[&str] = &[
    "contoso",
    "alice",
    "alice@contoso.com",
    "0",
    "-1",
    "99999999999999999999999",
    "eml",
    "mbox",
    "pst",
    "every 30m",
    "daily 25:99",
    "hard_delete",
    "never",
    "global",
    "custom",
    "",
    " ",
    "a,b,,c",
    "Inbox/Projects",
    "00000000-0000-0000-0000-000000000000",
    "ünïcödé ✉ 名前",
    "\u{202e}rtl",
    "out.mbox",
    "exports",
    "missing.eml",
];

fn junk_arg(rng: &mut ChaCha8Rng) -> String {
    let len = if rng.gen_bool(0.1) {
        rng.gen_range(1_000..20_000)
    } else {
        rng.gen_range(0..24)
    };
    (0..len)
        .map(|_| {
            let c = match rng.gen_range(0..4) {
                0 => char::from(rng.gen_range(b'a'..=b'z')),
                1 => char::from_u32(rng.gen_range(0x80..0x3_0000)).unwrap_or('?'),
                2 => ['-', '=', ' ', '\\', '"', '\'', '*', '$', '\n', '\t'][rng.gen_range(0..10)],
                _ => char::from(rng.gen_range(b'!'..=b'~')),
            };
            // Never a path separator or NUL: junk must not name files outside the sandbox.
            if matches!(c, '/' | '\0') { '_' } else { c }
        })
        .collect()
}

fn random_argv(rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut argv = Vec::new();
    if rng.gen_bool(0.7) {
        // A real command, then plausible names and flags with values.
        let (group, subs) = CLI_COMMANDS[rng.gen_range(0..CLI_COMMANDS.len())];
        argv.push(group.to_owned());
        argv.push(subs[rng.gen_range(0..subs.len())].to_owned());
        if rng.gen_bool(0.6) {
            argv.push(CLI_VALUES[rng.gen_range(0..CLI_VALUES.len())].to_owned());
        }
        for _ in 0..rng.gen_range(0..3) {
            argv.push(CLI_FLAGS[rng.gen_range(0..CLI_FLAGS.len())].to_owned());
            if rng.gen_bool(0.8) {
                let value = if rng.gen_bool(0.8) {
                    CLI_VALUES[rng.gen_range(0..CLI_VALUES.len())].to_owned()
                } else {
                    junk_arg(rng)
                };
                argv.push(value);
            }
        }
    } else {
        if rng.gen_bool(0.8) {
            argv.push(CLI_WORDS[rng.gen_range(0..4)].to_owned());
            if rng.gen_bool(0.85) {
                argv.push(CLI_WORDS[rng.gen_range(4..CLI_WORDS.len())].to_owned());
            }
        }
        for _ in 0..rng.gen_range(0..8) {
            let arg = match rng.gen_range(0..10) {
                0..=3 => CLI_FLAGS[rng.gen_range(0..CLI_FLAGS.len())].to_owned(),
                4..=6 => CLI_VALUES[rng.gen_range(0..CLI_VALUES.len())].to_owned(),
                7 => CLI_WORDS[rng.gen_range(0..CLI_WORDS.len())].to_owned(),
                _ => junk_arg(rng),
            };
            argv.push(arg);
        }
    }
    // `credentials add` proves the credential by fetching a token: send it to a closed
    // loopback port, never to a real cloud.
    if argv.iter().any(|a| a == "credentials") && argv.iter().any(|a| a == "add") {
        let mut kept = Vec::new();
        let mut skip = false;
        for a in argv {
            if skip {
                skip = false;
                continue;
            }
            if matches!(a.as_str(), "--cloud" | "--login-url" | "--graph-url") {
                skip = true;
                continue;
            }
            kept.push(a);
        }
        argv = kept;
        argv.extend(
            [
                "--cloud",
                "custom",
                "--login-url",
                "http://127.0.0.1:9/",
                "--graph-url",
                "http://127.0.0.1:9/",
            ]
            .map(str::to_owned),
        );
    }
    argv
}

/// The `m365-archiver` binary built next to this one.
fn find_cli(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        // The child runs in a sandbox directory: a relative path must not be resolved there.
        return std::fs::canonicalize(path).with_context(|| format!("--cli {}", path.display()));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("directory of this binary")?;
    let cli = dir.join(format!("m365-archiver{}", std::env::consts::EXE_SUFFIX));
    if cli.is_file() {
        Ok(cli)
    } else {
        bail!(
            "{} not found; build it first with `cargo build --release -p m365-archiver` (or pass --cli PATH)",
            cli.display()
        )
    }
}

pub(super) fn cli_fuzz(plan: &Plan, seed: u64, explicit: Option<&Path>) -> Result<Value> {
    let cli = match find_cli(explicit) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("   skipped: {e:#}");
            return Ok(json!({"inputs": 0, "skipped": format!("{e:#}")}));
        }
    };
    let sandbox = tempfile::tempdir()?;
    let data = sandbox.path().join("data");
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC11);
    let clock = Instant::now();
    let (mut inputs, mut panics, mut bad_exit) = (0u64, 0u64, 0u64);
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..plan.cli_inputs {
        if clock.elapsed() > plan.section_budget {
            break;
        }
        inputs += 1;
        let mut argv = random_argv(&mut rng);
        // The data directory goes before or after the rest, as users write it.
        if rng.gen_bool(0.5) {
            argv.splice(0..0, ["--data-dir".to_owned(), data.display().to_string()]);
        } else {
            argv.extend(["--data-dir".to_owned(), data.display().to_string()]);
        }
        let mut child = Command::new(&cli)
            .args(&argv)
            .current_dir(sandbox.path())
            .env("M365_ARCHIVER_DATA", &data)
            .env("HOME", sandbox.path())
            .env("XDG_DATA_HOME", sandbox.path())
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("ALL_PROXY", "http://127.0.0.1:9")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", cli.display()))?;
        let done = watchdog(child.id(), Duration::from_secs(60));
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut pipe, &mut raw)?;
            stderr = String::from_utf8_lossy(&raw).into_owned();
        }
        let status = child.wait()?;
        let _ = done.send(());
        let code = status.code();
        *codes
            .entry(code.map_or("signal".into(), |c| c.to_string()))
            .or_default() += 1;
        if stderr.contains("panicked at ") {
            panics += 1;
            eprintln!("   panic for {argv:?}: {stderr}");
        } else if !matches!(code, Some(0..=2)) {
            bad_exit += 1;
            eprintln!("   exit {code:?} for {argv:?}: {stderr}");
        }
    }
    Ok(json!({
        "inputs": inputs, "exit_codes": codes, "panics": panics, "bad_exit_codes": bad_exit,
    }))
}
