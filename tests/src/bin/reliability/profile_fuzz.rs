//! Fuzzed profile TOML: mutated profiles are refused with an error or parsed, never
//! a panic, and what parses survives a save and reload.

use super::*;

/// Every key of the profile format; an error must name one of them or the file.
const PROFILE_FIELDS: &[&str] = &[
    "name",
    "credentials",
    "source",
    "kind",
    "select",
    "users",
    "sync_directory_first",
    "mailbox",
    "target_user",
    "folders",
    "include",
    "exclude",
    "include_subfolders",
    "filter",
    "older_than_days",
    "received_after",
    "deletion",
    "mode",
    "after_days",
    "keep_unread",
    "run",
    "timeout_secs",
    "parallel_mailboxes",
    "schedule",
];

const PROFILE_SEEDS: &[&str] = &[
    r#"name = "all-staff"
credentials = "contoso"
[source]
kind = "multiple"
select = "all"
users = []
sync_directory_first = true
[folders]
include = []
exclude = ["junkemail", "deleteditems"]
include_subfolders = true
[filter]
older_than_days = 0
received_after = ""
[deletion]
mode = "never"
after_days = 90
keep_unread = true
[run]
timeout_secs = 300
parallel_mailboxes = 8
schedule = "manual"
"#,
    r#"name = "ceo"
credentials = "contoso"
[source]
kind = "single"
mailbox = "ceo@contoso.com"
target_user = "alice"
[folders]
include = ["Inbox/Projects", "sentitems"]
[filter]
older_than_days = 30
received_after = "2024-01-01T00:00:00Z"
[deletion]
mode = "move_to_deleted_items"
after_days = 365
keep_unread = false
[run]
timeout_secs = 60
parallel_mailboxes = 1
schedule = "weekly mon 03:00"
"#,
    r#"name = "some"
credentials = "fabrikam"
[source]
kind = "multiple"
select = "all_except"
users = ["bob", "carol"]
[deletion]
mode = "hard_delete"
after_days = 1
[run]
schedule = "daily 02:00"
"#,
];

/// Replacement values that break types, ranges and enums.
const PROFILE_JUNK_VALUES: &[&str] = &[
    "-1",
    "0",
    "99999999999999999999",
    "1.5",
    "nan",
    "true",
    "\"\"",
    "\"every 0m\"",
    "\"daily 25:61\"",
    "\"weekly xyz 03:00\"",
    "\"../../etc/passwd\"",
    "\"ünïcödé\"",
    "[]",
    "[1, 2]",
    "{}",
    "{ a = 1 }",
    "\"2024-13-45T99:00:00Z\"",
    "\"soft_delete\"",
    "\"only\"",
    "\"single\"",
    "'''\nmulti\n'''",
];

fn mutate_profile(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let seed_text = PROFILE_SEEDS[rng.gen_range(0..PROFILE_SEEDS.len())];
    let mut lines: Vec<String> = seed_text.lines().map(str::to_owned).collect();
    for _ in 0..rng.gen_range(1..5) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let at = rng.gen_range(0..lines.len());
        match rng.gen_range(0..7) {
            0 => {
                lines.remove(at);
            }
            1 => {
                let line = lines[at].clone();
                lines.insert(at, line);
            }
            2 => {
                // Flip the value of a `key = value` line.
                if let Some((key, _)) = lines[at].split_once('=') {
                    let value = PROFILE_JUNK_VALUES[rng.gen_range(0..PROFILE_JUNK_VALUES.len())];
                    lines[at] = format!("{key}= {value}");
                }
            }
            3 => {
                let other = rng.gen_range(0..lines.len());
                lines.swap(at, other);
            }
            4 => {
                // Truncate a line.
                let cut = rng.gen_range(0..=lines[at].len());
                let cut = (0..=cut)
                    .rev()
                    .find(|c| lines[at].is_char_boundary(*c))
                    .unwrap_or(0);
                lines[at].truncate(cut);
            }
            5 => {
                let extra = ["[source]", "[run]", "[[run]]", "unknown_key = 1", "name ="];
                lines.insert(at, extra[rng.gen_range(0..extra.len())].to_owned());
            }
            _ => lines.shuffle(rng),
        }
    }
    let mut bytes = lines.join("\n").into_bytes();
    if rng.gen_bool(0.2) {
        for _ in 0..rng.gen_range(1..8) {
            let at = rng.gen_range(0..=bytes.len());
            bytes.insert(at, rng.r#gen());
        }
    }
    bytes
}

/// One input through `Profile::from_toml` (when it is UTF-8) and through `ProfileStore::load`.
type ParsedTwice = (Option<Result<Profile, String>>, Result<Profile, String>);

pub(super) fn profile_fuzz(plan: &Plan, seed: u64) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let store = ProfileStore::new(dir.path());
    let file = "profiles/fuzzed.toml";
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x70F);
    let clock = Instant::now();
    let (mut inputs, mut accepted, mut rejected, mut panics, mut unnamed, mut roundtrip) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let names_culprit = |msg: &str, file: &str| {
        msg.contains(file) || PROFILE_FIELDS.iter().any(|f| msg.contains(f))
    };
    for _ in 0..plan.profile_inputs {
        if clock.elapsed() > plan.section_budget {
            break;
        }
        inputs += 1;
        let bytes = mutate_profile(&mut rng);
        // Through the text parser (valid UTF-8 only) and through the store (any bytes).
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<ParsedTwice> {
            let parsed = std::str::from_utf8(&bytes)
                .ok()
                .map(|text| Profile::from_toml(file, text).map_err(|e| e.to_string()));
            std::fs::write(dir.path().join("fuzzed.toml"), &bytes)?;
            let loaded = store.load("fuzzed").map_err(|e| e.to_string());
            Ok((parsed, loaded))
        }));
        let Ok(outcome) = outcome else {
            panics += 1;
            eprintln!("   panic on input {:?}", String::from_utf8_lossy(&bytes));
            continue;
        };
        let (parsed, loaded) = outcome?;
        for (result, culprit) in [(parsed, file), (Some(loaded), "fuzzed")] {
            match result {
                Some(Ok(profile)) => {
                    accepted += 1;
                    // What parses must survive its own serialisation unchanged.
                    let again =
                        std::panic::catch_unwind(|| Profile::from_toml(file, &profile.to_toml()));
                    match again {
                        Ok(Ok(back)) if back == profile => {}
                        Ok(_) => {
                            roundtrip += 1;
                            eprintln!("   round trip differs for {:?}", profile.name);
                        }
                        Err(_) => panics += 1,
                    }
                }
                Some(Err(message)) => {
                    rejected += 1;
                    if !names_culprit(&message, culprit) {
                        unnamed += 1;
                        eprintln!("   error names neither field nor file: {message}");
                    }
                }
                None => {}
            }
        }
    }
    Ok(json!({
        "inputs": inputs, "accepted": accepted, "rejected": rejected, "panics": panics,
        "unnamed_errors": unnamed, "mismatches": roundtrip,
    }))
}
